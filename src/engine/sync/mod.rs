//! Sync, platform-free and sans-IO: the replica (synced tables, outbox,
//! rebase, rejections, schema-version check) over the engine's [`Database`],
//! and the [`SyncClient`] state machine that decides when to push, pull,
//! back off or ask for a token, and
//! [`TokenAsks`], which decides which tab is asked for it. The host performs the HTTP requests and
//! timers the client asks for; nothing here blocks or touches a socket.
//!
//! The protocol's server side is not here: it lives in the server crate
//! (`ferrydb-server`), whose SQLite store the tests sync against.
//!
//! [`Database`]: crate::engine::database::Database

mod backoff;
mod client;
mod error;
mod events;
mod meta;
mod migrate;
mod mutator;
mod rebase;
mod replica;
mod schema;
mod subscriptions;
mod token_asks;

pub use backoff::{Backoff, SplitMix64};
pub use client::SyncClient;
pub use error::{Error, Result};
pub use events::{
    Effect, Event, InitialSync, StatusError, StatusErrorCode, SyncConfig, SyncEvent, SyncStatus,
};
pub use replica::{Mutated, Opened, PendingMutation, PushApplied, Rejection, Replica};
pub use subscriptions::{canonical, Desired, SubscriptionStatus, DEFAULT_TTL_MS};
pub use token_asks::{TokenAsk, TokenAsks, TokenTab, TOKEN_TIMEOUT_MS};

#[cfg(test)]
mod tests;
