//! The golden message fixtures (`tests/fixtures/messages/`): every tab
//! message is read from its fixture and written back unchanged; every
//! worker message is written as its fixture says, with exactly the fields
//! its shape (the TypeScript type's source) lists. The fixtures are also
//! checked against the TypeScript types (`tests/types/messages.test-d.ts`,
//! generated here, compiled by `tsc`).

use super::typescript::check;
use crate::engine::error::{ErrorCode, ErrorData};
use crate::engine::live::LiveUpdate;
use crate::engine::patch::{Patch, Segment};
use crate::engine::replication::{RejectionReason, Settled};
use crate::engine::request::{Response, Stats};
use crate::engine::sync::{
    InitialSync, Rejection, StatusError, StatusErrorCode, SubscriptionStatus, SyncEvent, SyncStatus,
};
use crate::engine::value::{QueryResult, Value};
use crate::host::tab_message::{Shape, TabMessage};
use crate::host::worker_message::{JsonEncoder, StorageReport, WorkerMessage};
use ferrydb_protocol::{SubscriptionError, SubscriptionPhase};
use serde_json::Value as Json;
use std::path::PathBuf;

fn dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/messages"
    ))
}

/// The fixtures whose name starts with `prefix`, by name, sorted.
fn fixtures(prefix: &str) -> Vec<(String, Json)> {
    let mut found: Vec<(String, Json)> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.starts_with(prefix) && name.ends_with(".json"))
        .map(|name| {
            let text = std::fs::read_to_string(dir().join(&name)).unwrap();
            let stem = name.trim_end_matches(".json").to_owned();
            (stem, serde_json::from_str(&text).unwrap())
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

fn error(code: ErrorCode, message: &str) -> ErrorData {
    ErrorData {
        code,
        message: message.into(),
        retryable: false,
    }
}

/// One worker message of every shape (and the variants a shape has).
fn worker_messages() -> Vec<(&'static str, WorkerMessage)> {
    let rows = QueryResult {
        columns: vec!["id".into(), "title".into()],
        rows: vec![
            vec![Value::Integer(1), Value::Text("milk".into())],
            vec![Value::Integer(9_007_199_254_740_993), Value::Null],
        ],
    };
    vec![
        (
            "reply-rows",
            WorkerMessage::Reply {
                id: 4,
                result: Ok(Response::Rows(rows.clone())),
                seq: None,
            },
        ),
        (
            "reply-live",
            WorkerMessage::Reply {
                id: 5,
                result: Ok(Response::Live {
                    rows,
                    complete: false,
                }),
                seq: None,
            },
        ),
        (
            "reply-mutated",
            WorkerMessage::Reply {
                id: 8,
                result: Ok(Response::Mutated { mutation_id: 3 }),
                seq: Some(12),
            },
        ),
        (
            "reply-stats",
            WorkerMessage::Reply {
                id: 13,
                result: Ok(Response::Stats(Stats {
                    tabs: 2,
                    live_queries: 1,
                    subscriptions: 3,
                })),
                seq: None,
            },
        ),
        (
            "reply-error",
            WorkerMessage::Reply {
                id: 2,
                result: Err(error(ErrorCode::SqlError, "no such table: todo")),
                seq: None,
            },
        ),
        (
            "storage",
            WorkerMessage::Storage(StorageReport {
                backend: "indexeddb+opfs".into(),
                durable_seq: 41,
                error: None,
            }),
        ),
        (
            "storage-stalled",
            WorkerMessage::Storage(StorageReport {
                backend: "opfs".into(),
                durable_seq: 41,
                error: Some(ErrorData {
                    retryable: true,
                    ..error(ErrorCode::StorageQuota, "createWritable failed: quota")
                }),
            }),
        ),
        ("reset", WorkerMessage::Reset),
        (
            "live",
            WorkerMessage::Live(vec![
                LiveUpdate {
                    subscription: 6,
                    change: Ok(Patch {
                        columns: None,
                        segments: vec![
                            Segment::Keep { from: 0, count: 2 },
                            Segment::Rows(vec![vec![Value::Integer(3), Value::Real(2.5)]]),
                        ],
                    }),
                    complete: false,
                },
                LiveUpdate {
                    subscription: 7,
                    change: Err(error(ErrorCode::SqlError, "no such table: gone")),
                    complete: true,
                },
            ]),
        ),
        (
            "syncStatus",
            WorkerMessage::SyncStatus(SyncStatus {
                connected: false,
                pending_mutations: 2,
                last_synced_at: Some(1_764_800_000_000),
                error: Some(StatusError::new(StatusErrorCode::AuthRequired, "no token")),
                ..SyncStatus::default()
            }),
        ),
        (
            "syncEvent",
            WorkerMessage::SyncEvent(SyncEvent::UpdateNeeded {
                server_schema_version: 3,
            }),
        ),
        (
            "settled",
            WorkerMessage::Settled(Settled {
                mutation_id: 3,
                rejection: Some(RejectionReason {
                    code: "forbidden".into(),
                    message: "not yours".into(),
                }),
            }),
        ),
        ("needToken", WorkerMessage::NeedToken { ask: 3 }),
        (
            "syncState",
            WorkerMessage::SyncState {
                hold: 2,
                status: SubscriptionStatus {
                    state: SubscriptionPhase::Pending,
                    synced: 40,
                    total: 120,
                    error: None,
                },
            },
        ),
        (
            "syncState-error",
            WorkerMessage::SyncState {
                hold: 3,
                status: SubscriptionStatus {
                    state: SubscriptionPhase::Error,
                    synced: 0,
                    total: 0,
                    error: Some(SubscriptionError {
                        code: "bad_arguments".into(),
                        message: "`list_id` is required".into(),
                    }),
                },
            },
        ),
    ]
}

fn shape_of(shapes: &'static [Shape], tag: &str) -> &'static Shape {
    shapes
        .iter()
        .find(|s| s.tag == tag)
        .unwrap_or_else(|| panic!("no shape `{tag}`"))
}

#[test]
fn every_tab_message_fixture_reads_and_writes_back_unchanged() {
    let found = fixtures("tab-");
    for shape in TabMessage::SHAPES {
        assert!(
            found.iter().any(|(_, json)| json["type"] == shape.tag),
            "no fixture for tab message `{}`",
            shape.tag
        );
    }
    for (name, json) in &found {
        let message = TabMessage::read(json).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(&message.to_json(), json, "{name} round trip");
    }
}

#[test]
fn every_worker_message_matches_its_fixture_and_its_shape() {
    let messages = worker_messages();
    for shape in WorkerMessage::SHAPES {
        assert!(
            messages.iter().any(|(_, m)| m.tag() == shape.tag),
            "no fixture for worker message `{}`",
            shape.tag
        );
    }
    for (name, message) in &messages {
        let json = message.encode(&mut JsonEncoder);
        let shape = shape_of(WorkerMessage::SHAPES, message.tag());
        let object = json.as_object().unwrap();
        for key in object.keys().filter(|k| *k != "type") {
            assert!(
                shape.fields.iter().any(|(f, _, _)| f == key),
                "{name}: field `{key}` is not in the shape"
            );
        }
        for (field, _, optional) in shape.fields {
            assert!(
                *optional || object.contains_key(*field),
                "{name}: `{field}` missing"
            );
        }
        let text = serde_json::to_string_pretty(&json).unwrap() + "\n";
        check(
            &format!("tests/fixtures/messages/worker-{name}.json"),
            &text,
        );
    }
}

#[test]
fn typescript_accepts_every_message_fixture() {
    let mut ts = String::from(
        "/**\n * Generated by `cargo test -p ferrydb messages` from tests/fixtures/messages/: \
         do not edit.\n * Every golden message must satisfy its TypeScript type.\n */\n\
         import type { TabMessage, WorkerMessage } from '../../js/protocol.js';\n\n",
    );
    for (prefix, ty) in [("tab-", "TabMessage"), ("worker-", "WorkerMessage")] {
        for (name, json) in fixtures(prefix) {
            let ident = name.replace('-', "_");
            let value = serde_json::to_string_pretty(&json).unwrap();
            ts.push_str(&format!(
                "export const {ident} = {value} satisfies {ty};\n\n"
            ));
        }
    }
    check(
        "tests/types/messages.test-d.ts",
        &(ts.trim_end().to_owned() + "\n"),
    );
}

/// The sync status, events and outcomes are written by hand (smaller wasm): exactly
/// as serde writes them, `null` for what is absent, in every variant.
#[test]
fn hand_written_status_events_and_outcomes_match_serde() {
    let statuses = [
        SyncStatus::default(),
        SyncStatus {
            connected: true,
            uploading: true,
            downloading: true,
            pending_mutations: 4,
            last_synced_at: Some(1_764_800_000_000),
            error: Some(StatusError::new(StatusErrorCode::Timeout, "slow")),
            paused: true,
            initial_sync: Some(InitialSync {
                received: 10,
                total: Some(20),
            }),
        },
        SyncStatus {
            initial_sync: Some(InitialSync::default()),
            ..SyncStatus::default()
        },
    ];
    for status in statuses {
        let written = WorkerMessage::SyncStatus(status.clone()).encode(&mut JsonEncoder);
        assert_eq!(written["status"], serde_json::to_value(&status).unwrap());
    }
    let outcomes = [
        Settled {
            mutation_id: 1,
            rejection: None,
        },
        Settled {
            mutation_id: 2,
            rejection: Some(RejectionReason {
                code: "forbidden".into(),
                message: "no".into(),
            }),
        },
    ];
    let events = [
        SyncEvent::UpdateNeeded {
            server_schema_version: 3,
        },
        SyncEvent::SchemaReset {
            server_schema_version: 4,
        },
        SyncEvent::Unauthorized,
        SyncEvent::AppOutdated { schema_version: 5 },
        SyncEvent::Rejected {
            rejections: vec![Rejection {
                mutation_id: 7,
                name: "addTodo".into(),
                args: serde_json::json!({ "id": "t1", "tags": ["a", 1, null], "n": 2.5 }),
                code: "forbidden".into(),
                message: "not yours".into(),
                created_at: 1,
                rejected_at: 2,
            }],
        },
    ];
    for event in events {
        let written = WorkerMessage::SyncEvent(event.clone()).encode(&mut JsonEncoder);
        assert_eq!(written["event"], serde_json::to_value(&event).unwrap());
    }
    for settled in outcomes {
        let written = WorkerMessage::Settled(settled.clone()).encode(&mut JsonEncoder);
        assert_eq!(written["settled"], serde_json::to_value(&settled).unwrap());
    }
}
