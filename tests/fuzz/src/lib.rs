//! Fuzzing for ferrydb's decoders, without a fuzzing engine: seeded,
//! replayable cases that start from valid inputs (the golden fixtures, real
//! storage files) and damage them, plus purely random bytes. Every decoder
//! of bytes from outside has a fuzz test built on this crate:
//!
//! - `protocol/tests/fuzz.rs`: the wire messages, cookies, the app definition;
//! - `src/storage/tests/fuzz.rs`: frames, manifests, file names, recovery;
//! - `src/engine/sync/tests/fuzz.rs`: pulls applied by a client, pushes and
//!   paging cursors read by the model server.
//!
//! The properties are the ones a decoder owes any input: no panic, a typed
//! error for what it refuses, and (where the type can be written back) the
//! same value again after a round trip.
//!
//! - [`Rng`]: SplitMix64, so every case replays from its seed;
//! - [`bytes`]: byte-level damage (flips, truncations, splices, odd integers);
//! - [`json`]: tree-level damage (other types, deep nesting, huge numbers,
//!   unicode, missing and unknown fields) and random JSON;
//! - [`run`]: runs a target's cases, prints how many, and on a panic prints
//!   the seed that replays it (`FERRYDB_FUZZ_SEED`; `FERRYDB_FUZZ_CASES` for
//!   more cases).

pub mod bytes;
pub mod json;
mod rng;
mod runner;

pub use bytes::Bytes;
pub use rng::Rng;
pub use runner::{run, thousands};
