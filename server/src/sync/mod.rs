//! The protocol's server side, written once: push processing (ordering,
//! idempotent retries, gaps, rejection classification, ownership) and pull
//! (incremental changes, paged full syncs and their cursor, resets). It
//! decides everything a client can observe; a store only answers the narrow
//! questions of [`PushTx`], [`PullTx`] and [`ViewTx`] (protocol v2's view of
//! each client group) inside a transaction it owns.
//!
//! Both traits are async because the Postgres store talks to its database
//! over the network (and pipelines the questions it can); the SQLite store
//! answers at once and drives these functions with [`ready`]. Their futures
//! carry no `Send` bound: the core is only ever instantiated with a concrete
//! store, whose futures' `Send` the compiler sees through.

mod cursor;
mod lazy;
mod pull;
mod push;
mod routing;
mod versions;
mod view;

pub use lazy::{LazyTx, PartRows};
pub use pull::{pull, reset, Change, Page, PullTx, TableShape};
pub use push::{push_mutations, Call, Chunk, ClientState, Processed, PushTx, Rejected, Who};
pub use routing::{route, Holder, Listener, RouteTx};
pub use versions::{Served, Versions};
pub use view::{group_reads, pull_subscribed, HeldRow, PatchedRows, Selected, ViewHead, ViewTx};

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Why a request could not be served (as opposed to a mutation the server
/// rejected, which is an answer: [`Rejected`]).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The request names a client or client group of another user.
    #[error("{0}")]
    Forbidden(String),
    /// The store cannot serve this app definition (a table changed).
    #[error("{0}")]
    InvalidApp(String),
    /// The database is unreachable or overloaded; the client retries.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A bug or an unexpected database error.
    #[error("store error: {0}")]
    Internal(String),
}

/// The value of a future that never waits: the SQLite store's answers are
/// computed in place, so the core's futures over it complete on their first
/// poll. Panics otherwise (that would be a store that waits: a bug).
pub fn ready<T>(future: impl Future<Output = T>) -> T {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(value) => value,
        Poll::Pending => panic!("a synchronous store's future waited"),
    }
}
