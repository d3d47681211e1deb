//! Requests a tab sends to the worker and the worker's replies. The TypeScript
//! client (`js/protocol.ts`) mirrors these shapes.

use super::database::ExecResult;
use super::live::SubscriptionId;
use super::value::{QueryResult, Value};
use serde::{Deserialize, Serialize};

/// The worker reads these by hand (`src/wasm/tabs.rs`, `parse_request`): a
/// new variant needs its arm there too.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Request {
    Exec {
        sql: String,
        #[serde(default)]
        params: Vec<Value>,
    },
    /// One statement, run once per parameter set in one transaction.
    ExecMany {
        sql: String,
        rows: Vec<Vec<Value>>,
    },
    Query {
        sql: String,
        #[serde(default)]
        params: Vec<Value>,
    },
    Subscribe {
        subscription: SubscriptionId,
        sql: String,
        #[serde(default)]
        params: Vec<Value>,
    },
    Unsubscribe {
        subscription: SubscriptionId,
    },
    /// Runs the app's mutator `name` with `args` (a JSON object) and queues
    /// it for the server.
    Mutate {
        name: String,
        #[serde(default)]
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
