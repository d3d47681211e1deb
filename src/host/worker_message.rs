//! Every message the worker sends a tab, defined once: [`WorkerMessage`],
//! its one encoder ([`WorkerMessage::encode`], over an [`Encoder`]: JS
//! values in the worker, JSON in native tests and the golden fixtures) and
//! its wire shapes ([`WorkerMessage::SHAPES`], what the TypeScript types are
//! generated from; `host::tests::messages` checks the encoder against them).

use super::tab_message::{CallId, Shape};
use crate::engine::error::ErrorData;
use crate::engine::live::LiveUpdate;
use crate::engine::patch::{Patch, Segment};
use crate::engine::replication::Settled;
use crate::engine::request::Response;
use crate::engine::sync::{SubscriptionStatus, SyncEvent, SyncStatus};
use crate::engine::value::Value;
use ferrydb_protocol::SubscriptionPhase;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq)]
pub enum WorkerMessage {
    /// The answer to call `id`; `seq` is the commit it made, for `durable`.
    Reply {
        id: CallId,
        result: Result<Response, ErrorData>,
        seq: Option<u64>,
    },
    /// Where the replica is stored, how much is on disk, why not more.
    Storage(StorageReport),
    /// `deleteDatabase` ran: every live query has ended.
    Reset,
    /// One tab's live-query changes of one commit.
    Live(Vec<LiveUpdate>),
    SyncStatus(SyncStatus),
    SyncEvent(SyncEvent),
    /// The server decided on a mutation (every tab hears; the one that made it resolves `server`).
    Settled(Settled),
    /// Call the app's token provider and answer with `token`.
    NeedToken {
        ask: u32,
    },
    /// The state of the sync subscription the tab holds as `hold`: on
    /// holding, then on every change.
    SyncState {
        hold: u32,
        status: SubscriptionStatus,
    },
}

/// What tabs are told about storage.
#[derive(Clone, Debug, PartialEq)]
pub struct StorageReport {
    /// `indexeddb+opfs`, `opfs`, `opfs-sync` (a leader tab's worker: the
    /// log through OPFS sync access handles), `indexeddb` or `memory`.
    pub backend: String,
    pub durable_seq: u64,
    pub error: Option<ErrorData>,
}

/// Builds the values a message is made of.
pub trait Encoder {
    type Out;
    fn text(&mut self, s: &str) -> Self::Out;
    fn number(&mut self, n: f64) -> Self::Out;
    fn flag(&mut self, b: bool) -> Self::Out;
    /// No value (`undefined` in JS, `null` in JSON).
    fn nothing(&mut self) -> Self::Out;
    /// `null` (in JS too).
    fn null(&mut self) -> Self::Out;
    /// A SQLite value (integers past 2^53 as bigint, blobs as bytes).
    fn sql(&mut self, v: &Value) -> Self::Out;
    fn list(&mut self, items: Vec<Self::Out>) -> Self::Out;
    fn object(&mut self, fields: Vec<(&'static str, Self::Out)>) -> Self::Out;
    /// A small, rare structure (sync status, events), through serde.
    fn serialized<T: Serialize>(&mut self, value: &T) -> Self::Out;
    /// The worker's memory in bytes, for `stats` (0 where there is none).
    fn memory_bytes(&mut self) -> f64 {
        0.0
    }
}

/// One wire shape per message tag.
const fn shape(tag: &'static str, fields: &'static [(&'static str, &'static str, bool)]) -> Shape {
    Shape { tag, fields }
}

impl WorkerMessage {
    /// The wire shapes: tag, then (field, TypeScript type, optional). `reply`
    /// carries `ok` or `error`.
    pub const SHAPES: &'static [Shape] = &[
        shape(
            "reply",
            &[
                ("id", "number", false),
                ("ok", "unknown", true),
                ("error", "ErrorData", true),
                ("seq", "number", true),
            ],
        ),
        shape(
            "storage",
            &[
                ("backend", "StorageBackend", false),
                ("durableSeq", "number", false),
                ("error", "ErrorData", true),
            ],
        ),
        shape("reset", &[]),
        shape("live", &[("updates", "LiveUpdate[]", false)]),
        shape("syncStatus", &[("status", "WorkerSyncStatus", false)]),
        shape("syncEvent", &[("event", "SyncEventMessage", false)]),
        shape("settled", &[("settled", "Settled", false)]),
        shape("needToken", &[("ask", "number", false)]),
        shape(
            "syncState",
            &[
                ("hold", "number", false),
                ("status", "SyncSubscriptionStatus", false),
            ],
        ),
    ];

    pub fn tag(&self) -> &'static str {
        match self {
            WorkerMessage::Reply { .. } => "reply",
            WorkerMessage::Storage(_) => "storage",
            WorkerMessage::Reset => "reset",
            WorkerMessage::Live(_) => "live",
            WorkerMessage::SyncStatus(_) => "syncStatus",
            WorkerMessage::SyncEvent(_) => "syncEvent",
            WorkerMessage::Settled(_) => "settled",
            WorkerMessage::NeedToken { .. } => "needToken",
            WorkerMessage::SyncState { .. } => "syncState",
        }
    }

    pub fn encode<E: Encoder>(&self, e: &mut E) -> E::Out {
        let mut fields = vec![("type", e.text(self.tag()))];
        match self {
            WorkerMessage::Reply { id, result, seq } => {
                fields.push(("id", e.number(*id as f64)));
                match result {
                    Ok(response) => {
                        let ok = response_value(e, response);
                        fields.push(("ok", ok));
                    }
                    Err(error) => fields.push(("error", error_value(e, error))),
                }
                if let Some(seq) = seq {
                    fields.push(("seq", e.number(*seq as f64)));
                }
            }
            WorkerMessage::Storage(report) => {
                fields.push(("backend", e.text(&report.backend)));
                fields.push(("durableSeq", e.number(report.durable_seq as f64)));
                if let Some(error) = &report.error {
                    fields.push(("error", error_value(e, error)));
                }
            }
            WorkerMessage::Reset => {}
            WorkerMessage::Live(updates) => {
                let list = updates
                    .iter()
                    .map(|update| {
                        let subscription = e.number(f64::from(update.subscription));
                        let change = match &update.change {
                            Ok(patch) => ("patch", patch_value(e, patch)),
                            Err(error) => ("error", error_value(e, error)),
                        };
                        let complete = e.flag(update.complete);
                        e.object(vec![
                            ("subscription", subscription),
                            change,
                            ("complete", complete),
                        ])
                    })
                    .collect();
                fields.push(("updates", e.list(list)));
            }
            WorkerMessage::SyncStatus(status) => fields.push(("status", sync_status(e, status))),
            WorkerMessage::SyncEvent(event) => fields.push(("event", sync_event(e, event))),
            WorkerMessage::Settled(settled) => {
                let rejection = match &settled.rejection {
                    Some(r) => code_and_message(e, &r.code, &r.message),
                    None => e.null(),
                };
                let id = e.number(settled.mutation_id as f64);
                let settled = e.object(vec![("mutationId", id), ("rejection", rejection)]);
                fields.push(("settled", settled));
            }
            WorkerMessage::NeedToken { ask } => fields.push(("ask", e.number(f64::from(*ask)))),
            WorkerMessage::SyncState { hold, status } => {
                fields.push(("hold", e.number(f64::from(*hold))));
                fields.push(("status", subscription_status(e, status)));
            }
        }
        e.object(fields)
    }
}

/// `{state, synced, total, error?}`, by hand: through serde it costs the
/// wasm a kilobyte more.
fn subscription_status<E: Encoder>(e: &mut E, status: &SubscriptionStatus) -> E::Out {
    let state = match status.state {
        SubscriptionPhase::Pending => "pending",
        SubscriptionPhase::Complete => "complete",
        SubscriptionPhase::Error => "error",
    };
    let mut fields = vec![
        ("state", e.text(state)),
        ("synced", e.number(status.synced as f64)),
        ("total", e.number(status.total as f64)),
    ];
    if let Some(error) = &status.error {
        fields.push(("error", code_and_message(e, &error.code, &error.message)));
    }
    e.object(fields)
}

/// `{code, message}`.
fn code_and_message<E: Encoder>(e: &mut E, code: &str, message: &str) -> E::Out {
    let fields = vec![("code", e.text(code)), ("message", e.text(message))];
    e.object(fields)
}

/// `SyncStatus` as serde would write it (absent values `null`), by hand:
/// through serde it costs the wasm half a kilobyte more.
fn sync_status<E: Encoder>(e: &mut E, status: &SyncStatus) -> E::Out {
    let number_or_null = |e: &mut E, n: Option<u64>| match n {
        Some(n) => e.number(n as f64),
        None => e.null(),
    };
    let last_synced_at = number_or_null(e, status.last_synced_at);
    let error = match &status.error {
        Some(error) => code_and_message(e, error.code.as_str(), &error.message),
        None => e.null(),
    };
    let initial_sync = match &status.initial_sync {
        Some(progress) => {
            let received = e.number(progress.received as f64);
            let total = number_or_null(e, progress.total);
            e.object(vec![("received", received), ("total", total)])
        }
        None => e.null(),
    };
    let fields = vec![
        ("connected", e.flag(status.connected)),
        ("uploading", e.flag(status.uploading)),
        ("downloading", e.flag(status.downloading)),
        (
            "pendingMutations",
            e.number(status.pending_mutations as f64),
        ),
        ("lastSyncedAt", last_synced_at),
        ("error", error),
        ("paused", e.flag(status.paused)),
        ("initialSync", initial_sync),
    ];
    e.object(fields)
}

/// `SyncEvent` as serde would write it (`type` its tag), by hand but for
/// mutator arguments (any JSON): through serde it costs the wasm a kilobyte more.
fn sync_event<E: Encoder>(e: &mut E, event: &SyncEvent) -> E::Out {
    let (tag, mut fields) = match event {
        SyncEvent::UpdateNeeded {
            server_schema_version,
        } => (
            "updateNeeded",
            vec![(
                "serverSchemaVersion",
                e.number(f64::from(*server_schema_version)),
            )],
        ),
        SyncEvent::SchemaReset {
            server_schema_version,
        } => (
            "schemaReset",
            vec![(
                "serverSchemaVersion",
                e.number(f64::from(*server_schema_version)),
            )],
        ),
        SyncEvent::Rejected { rejections } => {
            let list = rejections
                .iter()
                .map(|r| {
                    let fields = vec![
                        ("mutationId", e.number(r.mutation_id as f64)),
                        ("name", e.text(&r.name)),
                        ("args", e.serialized(&r.args)),
                        ("code", e.text(&r.code)),
                        ("message", e.text(&r.message)),
                        ("createdAt", e.number(r.created_at as f64)),
                        ("rejectedAt", e.number(r.rejected_at as f64)),
                    ];
                    e.object(fields)
                })
                .collect();
            ("rejected", vec![("rejections", e.list(list))])
        }
        SyncEvent::Unauthorized => ("unauthorized", Vec::new()),
        SyncEvent::AppOutdated { schema_version } => (
            "appOutdated",
            vec![("schemaVersion", e.number(f64::from(*schema_version)))],
        ),
    };
    fields.push(("type", e.text(tag)));
    e.object(fields)
}

/// `{code, message, retryable}`: what `FerryError` is built from.
pub fn error_value<E: Encoder>(e: &mut E, error: &ErrorData) -> E::Out {
    let fields = vec![
        ("code", e.text(error.code.as_str())),
        ("message", e.text(&error.message)),
        ("retryable", e.flag(error.retryable)),
    ];
    e.object(fields)
}

fn names<E: Encoder>(e: &mut E, names: &[String]) -> E::Out {
    let list = names.iter().map(|n| e.text(n)).collect();
    e.list(list)
}

/// Rows as arrays: compact to post; the tab makes each row object once.
fn rows<E: Encoder>(e: &mut E, rows: &[Vec<Value>]) -> E::Out {
    let list = rows
        .iter()
        .map(|row| {
            let values = row.iter().map(|v| e.sql(v)).collect();
            e.list(values)
        })
        .collect();
    e.list(list)
}

/// `{columns?, segments}`; a kept run is `[from, count]`, new rows `{rows}`.
fn patch_value<E: Encoder>(e: &mut E, patch: &Patch) -> E::Out {
    let segments = patch
        .segments
        .iter()
        .map(|segment| match segment {
            Segment::Keep { from, count } => {
                let run = vec![e.number(*from as f64), e.number(*count as f64)];
                e.list(run)
            }
            Segment::Rows(new) => {
                let new = rows(e, new);
                e.object(vec![("rows", new)])
            }
        })
        .collect();
    let segments = e.list(segments);
    match &patch.columns {
        Some(columns) => {
            let columns = names(e, columns);
            e.object(vec![("columns", columns), ("segments", segments)])
        }
        None => e.object(vec![("segments", segments)]),
    }
}

fn response_value<E: Encoder>(e: &mut E, response: &Response) -> E::Out {
    match response {
        Response::Exec(result) => {
            let fields = vec![
                ("rowsAffected", e.number(result.rows_affected as f64)),
                (
                    "lastInsertRowid",
                    e.sql(&Value::Integer(result.last_insert_rowid)),
                ),
            ];
            e.object(fields)
        }
        Response::Rows(result) | Response::Live { rows: result, .. } => {
            let mut fields = vec![
                ("columns", names(e, &result.columns)),
                ("rows", rows(e, &result.rows)),
            ];
            if let Response::Live { complete, .. } = response {
                fields.push(("complete", e.flag(*complete)));
            }
            e.object(fields)
        }
        Response::Stats(stats) => {
            let fields = vec![
                ("tabs", e.number(stats.tabs as f64)),
                ("liveQueries", e.number(stats.live_queries as f64)),
                ("subscriptions", e.number(stats.subscriptions as f64)),
                // The replica's pages live in wasm memory: most of the worker's footprint.
            ];
            let mut fields = fields;
            let memory = e.memory_bytes();
            fields.push(("wasmMemoryBytes", e.number(memory)));
            e.object(fields)
        }
        Response::Mutated { mutation_id } => {
            let id = e.number(*mutation_id as f64);
            e.object(vec![("mutationId", id)])
        }
        Response::Done => e.nothing(),
    }
}

/// Builds worker messages as JSON: the golden fixtures, native tests.
pub struct JsonEncoder;

impl Encoder for JsonEncoder {
    type Out = serde_json::Value;
    fn text(&mut self, s: &str) -> serde_json::Value {
        s.into()
    }
    fn number(&mut self, n: f64) -> serde_json::Value {
        if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 {
            (n as i64).into()
        } else {
            n.into()
        }
    }
    fn flag(&mut self, b: bool) -> serde_json::Value {
        b.into()
    }
    fn nothing(&mut self) -> serde_json::Value {
        serde_json::Value::Null
    }
    fn null(&mut self) -> serde_json::Value {
        serde_json::Value::Null
    }
    fn sql(&mut self, v: &Value) -> serde_json::Value {
        serde_json::to_value(v).unwrap_or_default()
    }
    fn list(&mut self, items: Vec<serde_json::Value>) -> serde_json::Value {
        items.into()
    }
    fn object(&mut self, fields: Vec<(&'static str, serde_json::Value)>) -> serde_json::Value {
        serde_json::Value::Object(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }
    fn serialized<T: Serialize>(&mut self, value: &T) -> serde_json::Value {
        serde_json::to_value(value).unwrap_or_default()
    }
}
