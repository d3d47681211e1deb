//! The TypeScript and README copies of the Rust definitions: the error-code
//! unions, the tab and worker message types (`js/generated/wire.ts`) and
//! the README's code tables are generated from the Rust tables; these tests
//! fail when a copy differs. `FERRYDB_BLESS=1 cargo test -p ferrydb
//! host::tests -- --test-threads=1` rewrites them (and the worker message
//! fixtures), one test at a time since some read what others write.

use crate::engine::error::ErrorCode;
use crate::engine::sync::StatusErrorCode;
use crate::host::tab_message::{Shape, TabMessage};
use crate::host::worker_message::WorkerMessage;
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Compares `path` with `expected`, or rewrites it under `FERRYDB_BLESS`.
pub fn check(path: &str, expected: &str) {
    let path = root().join(path);
    if std::env::var_os("FERRYDB_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, expected).unwrap();
        return;
    }
    let actual = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        actual == expected,
        "{} differs from the Rust definitions; run `FERRYDB_BLESS=1 cargo test -p ferrydb host::tests -- --test-threads=1` \
         and review the diff.\n--- expected ---\n{expected}",
        path.display()
    );
}

fn union(codes: &[&str]) -> String {
    codes
        .iter()
        .map(|c| format!("\n  | '{c}'"))
        .collect::<String>()
}

fn message_union(shapes: &[Shape]) -> String {
    let mut out = String::new();
    for shape in shapes {
        out.push_str(&format!("\n  | {{ type: '{}'", shape.tag));
        for (name, ts, optional) in shape.fields {
            let mark = if *optional { "?" } else { "" };
            out.push_str(&format!("; {name}{mark}: {ts}"));
        }
        out.push_str(" }");
    }
    out
}

pub fn wire_ts() -> String {
    let error_codes: Vec<&str> = ErrorCode::ALL.iter().map(|(_, c, _)| *c).collect();
    let status_codes: Vec<&str> = StatusErrorCode::ALL.iter().map(|(_, c, _)| *c).collect();
    format!(
        "/**
 * Generated from the Rust definitions by `cargo test -p ferrydb typescript`
 * (`src/host/tests/typescript.rs`): do not edit. The error codes come from
 * `ErrorCode` and `StatusErrorCode`, the messages from `TabMessage` and
 * `WorkerMessage` (`src/host/`).
 */
import type {{ ErrorData }} from '../errors.js';
import type {{ LiveUpdate, SqlParam, StorageBackend }} from '../protocol.js';
import type {{ Settled, SyncEventMessage, WorkerSyncStatus }} from '../sync.js';
import type {{ SyncSubscriptionStatus }} from '../subscriptions.js';

/** Stable error codes (`FerryError.code`). A code is never renamed once shipped. */
export type FerryErrorCode ={error_codes};

/** Why syncing is failing (`syncStatus.error.code`); stable. */
export type SyncErrorCode ={status_codes};

/** Every message a tab sends the worker. */
export type TabMessage ={tab};

/** Every message the worker sends a tab (`fatal` comes from the worker's JS entry, not from Rust). */
export type WorkerMessage ={worker};
",
        error_codes = union(&error_codes),
        status_codes = union(&status_codes),
        tab = message_union(TabMessage::SHAPES),
        worker = message_union(WorkerMessage::SHAPES),
    )
}

fn table(rows: &[(&str, &str)]) -> String {
    let mut out = String::from("| code | when |\n|---|---|\n");
    for (code, when) in rows {
        out.push_str(&format!("| `{code}` | {when} |\n"));
    }
    out
}

/// `text` with the part between `<!-- {name}:begin -->` and `<!-- {name}:end -->` replaced.
fn with_section(text: &str, name: &str, body: &str) -> String {
    let begin =
        format!("<!-- {name}:begin (generated from Rust: src/host/tests/typescript.rs) -->\n");
    let end = format!("<!-- {name}:end -->");
    let (Some(b), Some(e)) = (text.find(&begin), text.find(&end)) else {
        panic!("README.md lacks the `{name}` markers");
    };
    format!("{}{begin}{body}{}", &text[..b], &text[e..])
}

#[test]
fn typescript_copies_of_codes_and_messages_match_rust() {
    check("js/generated/wire.ts", &wire_ts());
}

#[test]
fn typescript_readme_code_tables_match_rust() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let errors: Vec<(&str, &str)> = ErrorCode::ALL.iter().map(|(_, c, w)| (*c, *w)).collect();
    let statuses: Vec<(&str, &str)> = StatusErrorCode::ALL
        .iter()
        .map(|(_, c, w)| (*c, *w))
        .collect();
    let expected = with_section(&readme, "error-codes", &table(&errors));
    let expected = with_section(&expected, "sync-status-codes", &table(&statuses));
    check("README.md", &expected);
}

#[test]
fn every_code_has_a_distinct_wire_string() {
    for table in [
        ErrorCode::ALL
            .iter()
            .map(|(_, c, _)| *c)
            .collect::<Vec<_>>(),
        StatusErrorCode::ALL.iter().map(|(_, c, _)| *c).collect(),
    ] {
        let mut sorted = table.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), table.len(), "{table:?}");
    }
}
