//! Writes applied once across a leader handover. In the leader-tab topology
//! a tab sends its unanswered and not-yet-durable writes again to the new
//! leader, each with the key it was first sent with. The key is recorded in
//! the write's own commit (the same frame on disk), so the new leader, which
//! recovered from that disk, finds it exactly when the write survived, and
//! answers it from the record instead of applying it again.
//!
//! The record keeps what the reply needs: a mutation's id (its `server`
//! promise waits on it), an `exec`'s counts. Only the latest [`KEPT`] keys
//! are kept: a tab resends only what it sent since it last heard the write
//! was durable, which is far fewer.

use super::database::{Database, ExecResult};
use super::error::Result;
use super::request::Response;
use super::value::Value;

const KEPT: i64 = 4096;

const TABLE: &str = "CREATE TABLE IF NOT EXISTS _ferry_once \
     (key TEXT PRIMARY KEY, mutation_id INTEGER, rows_affected INTEGER, last_insert_rowid INTEGER)";

/// The reply recorded under `key`, if a write with it was applied.
pub fn applied(db: &mut Database, key: &str) -> Result<Option<Response>> {
    db.execute(TABLE, &[])?;
    let found = db.rows(
        "SELECT mutation_id, rows_affected, last_insert_rowid FROM _ferry_once WHERE key = ?1",
        &[Value::Text(key.to_owned())],
    )?;
    let int = |v: &Value| match v {
        Value::Integer(i) => Some(*i),
        _ => None,
    };
    Ok(found.rows.first().map(|row| match int(&row[0]) {
        Some(id) => Response::Mutated {
            mutation_id: id as u64,
        },
        None => Response::Exec(ExecResult {
            rows_affected: int(&row[1]).unwrap_or(0) as usize,
            last_insert_rowid: int(&row[2]).unwrap_or(0),
        }),
    }))
}

/// Records `key` with the reply `done`, in the transaction that applied it.
pub fn record(db: &mut Database, key: &str, done: &Response) -> Result<()> {
    let (mutation, rows, rowid) = match done {
        Response::Mutated { mutation_id } => (Value::Integer(*mutation_id as i64), 0, 0),
        Response::Exec(r) => (Value::Null, r.rows_affected as i64, r.last_insert_rowid),
        // Reads are safe to repeat.
        _ => return Ok(()),
    };
    db.execute(
        "INSERT OR REPLACE INTO _ferry_once VALUES (?1, ?2, ?3, ?4)",
        &[
            Value::Text(key.to_owned()),
            mutation,
            Value::Integer(rows),
            Value::Integer(rowid),
        ],
    )?;
    db.execute(
        "DELETE FROM _ferry_once WHERE rowid <= last_insert_rowid() - ?1",
        &[Value::Integer(KEPT)],
    )?;
    Ok(())
}
