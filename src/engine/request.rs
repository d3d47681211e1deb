//! The engine's requests and replies. On the wire they are tab messages
//! (`crate::host::tab_message`, which defines them once for Rust and
//! TypeScript) and worker messages (`crate::host::worker_message`).

use super::database::ExecResult;
use super::live::SubscriptionId;
use super::value::{QueryResult, Value};
use serde::Serialize;

/// A tab message becomes one of these (`TabMessage::into_request`).
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    Exec {
        sql: String,
        params: Vec<Value>,
    },
    /// One statement, run once per parameter set in one transaction.
    ExecMany {
        sql: String,
        rows: Vec<Vec<Value>>,
    },
    Query {
        sql: String,
        params: Vec<Value>,
    },
    Subscribe {
        subscription: SubscriptionId,
        sql: String,
        params: Vec<Value>,
    },
    Unsubscribe {
        subscription: SubscriptionId,
    },
    /// Runs the app's mutator `name` with `args` (a JSON object) and queues
    /// it for the server.
    Mutate {
        name: String,
        args: serde_json::Value,
    },
    /// Empties the rejection log (the app showed the rejections to the user).
    ClearRejections,
    /// Stops syncing (every tab of this worker sees `paused`); mutations keep
    /// queueing. Not persisted: a new worker syncs again.
    PauseSync,
    /// Syncs again at once, draining the outbox.
    ResumeSync,
    Stats,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Response {
    Exec(ExecResult),
    Rows(QueryResult),
    /// A live query's first result, and whether it is complete (it reads no
    /// table the replica is still waiting for).
    Live {
        rows: QueryResult,
        complete: bool,
    },
    Stats(Stats),
    /// The mutation applied locally and is queued under this id.
    Mutated {
        mutation_id: u64,
    },
    Done,
}

/// What the worker holds, for tests and debugging.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub tabs: usize,
    pub live_queries: usize,
    pub subscriptions: usize,
}
