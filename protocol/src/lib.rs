//! Wire types of the ferrydb sync protocol and the app-definition format,
//! shared by the SDK and the reference server so they cannot drift.
//!
//! - [`app`]: the app definition (tables, local tables, mutators, access rules)
//!   and [`validate`], the checks it passes before anyone runs it;
//! - [`wire`]: push, pull, the realtime channel and error bodies;
//! - [`evolve`]: which changes between two definitions are additive;
//! - [`sql`]: the small SQL lexer both use to find `:named` parameters;
//! - [`value`] and [`values`]: one SQL value, and how each column type
//!   travels between JSON and SQL (mutator arguments are checked here, once).

pub mod app;
#[cfg(feature = "sql-checks")]
mod condition;
pub mod decode;
pub mod evolve;
mod problem;
pub mod sql;
pub mod validate;
pub mod value;
pub mod values;
pub mod wire;
mod wire_de;

pub use app::{
    Access, AppDefinition, Column, ColumnType, LocalTable, Mutator, Param, Query, QueryPart,
    Statements, Table, USER_ID_PARAM,
};
pub use validate::{AppError, Problem};
pub use value::Value;
pub use wire::{
    Cookie, ErrorBody, MismatchAction, Mutation, MutationResult, PatchOp, PullOk, PullRequest,
    PullResponse, PushRequest, PushResponse, RejectionCode, Row, SchemaMismatch, ServerEvent,
    Subscription, SubscriptionError, SubscriptionPhase, SubscriptionState,
};

/// The sync protocol version. A server that speaks another version refuses the
/// exchange (HTTP 400, code `protocol_version`) instead of guessing.
pub const PROTOCOL_VERSION: u32 = 1;

/// Protocol v2: sync by subscription (`docs/protocol.md` §11). A pull names
/// the group's subscriptions; the server keeps a view of what each group
/// holds and sends only the difference.
pub const PROTOCOL_VERSION_SUBSCRIPTIONS: u32 = 2;

/// A response header of a pull page with `more`: its `cookie`, as JSON. A
/// hint, read before the body is decoded so that the next page can be asked
/// for at once (`docs/protocol.md` §5); the body's cookie is what counts.
pub const NEXT_COOKIE_HEADER: &str = "ferry-next-cookie";
