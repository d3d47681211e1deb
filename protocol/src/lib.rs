//! Wire types shared by the SDK and the reference server. The push/pull message
//! types and the app-definition format arrive with the sync engine; until then
//! this crate pins the protocol version both sides announce.

/// The sync protocol version. A server that speaks another version refuses the
/// exchange instead of guessing.
pub const PROTOCOL_VERSION: u32 = 1;
