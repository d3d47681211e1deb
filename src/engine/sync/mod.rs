//! Sync, platform-free and sans-IO: the replica (synced tables, outbox,
//! rebase, rejections, schema-version check) over the engine's [`Database`],
//! and the [`SyncClient`] state machine that decides when to push, pull,
//! back off or ask for a token, and
//! [`TokenAsks`], which decides which tab is asked for it. The host performs the HTTP requests and
//! timers the client asks for; nothing here blocks or touches a socket.
//!
//! [`ModelServer`] is the in-memory twin of the reference server, used by the
//! tests (and by anyone who wants the protocol's server side over SQLite).
//!
//! [`Database`]: crate::engine::database::Database

mod backoff;
mod client;
mod error;
mod events;
mod meta;
mod migrate;
mod model_server;
mod mutator;
mod rebase;
mod replica;
mod schema;
mod token_asks;
pub mod values;

pub use backoff::{Backoff, SplitMix64};
pub use client::SyncClient;
pub use error::{Error, Result};
pub use events::{
    Effect, Event, InitialSync, StatusError, StatusErrorCode, SyncConfig, SyncEvent, SyncStatus,
};
pub use model_server::{LoggedMutation, ModelServer};
pub use replica::{Mutated, Opened, PendingMutation, PushApplied, Rejection, Replica};
pub use token_asks::{TokenAsk, TokenAsks, TokenTab, TOKEN_TIMEOUT_MS};

#[cfg(test)]
mod tests;
