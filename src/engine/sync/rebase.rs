//! Rebase: bring the server's changes in under the pending mutations, in one
//! transaction.
//!
//! 1. recording off; put back the undo images → the replica is the last
//!    server-confirmed state;
//! 2. apply the patch (`clear`, `put`, `del`) and store the new cookie;
//! 3. mark mutations the server has processed (`lastMutationIDChanges`) as
//!    acknowledged; drop those the server also confirmed;
//! 4. recording on; re-run every unacknowledged mutation by name and
//!    arguments, oldest first, each in its own savepoint. A mutation that now
//!    fails locally leaves no effect but stays queued: the server decides.
//!
//! Re-running (not replaying old row values) is what makes concurrent edits
//! compose: an increment re-run on top of another client's increment adds to
//! it instead of overwriting it.

use super::error::{Error, Result};
use super::meta;
use super::mutator::in_savepoint;
use super::replica::{int, Replica};
use super::schema::{self, TableSql, OUTBOX, RECORDING_OFF, RECORDING_ON};
use crate::engine::database::{Database, TableSet};
use crate::engine::value::Value;
use ferrydb_protocol::values::from_json;
use ferrydb_protocol::{PatchOp, PullOk, Row};

impl Replica {
    /// Applies a pull response under the pending mutations (see the module
    /// docs). Returns the tables whose contents may have changed, once for the
    /// whole rebase. On error nothing changes, the cookie included.
    pub fn apply_pull(&mut self, db: &mut Database, pull: &PullOk) -> Result<TableSet> {
        let last_acked = pull.last_mutation_id_changes.get(&self.client_id).copied();
        let changed = in_savepoint(db, "ferry_rebase", |db| {
            db.execute(RECORDING_OFF, &[])?;
            let mut changed = self.undo_all(db)?;
            self.apply_patch(db, &pull.patch, &mut changed)?;
            meta::set_cookie(db, Some(&pull.cookie))?;
            if let Some(last) = last_acked {
                let last = Value::Integer(last as i64);
                db.execute(
                    "UPDATE _ferry_outbox SET acked = 1 WHERE id <= ?1 AND acked = 0",
                    &[last],
                )?;
                let (r, _) = db.execute(
                    "DELETE FROM _ferry_outbox WHERE acked = 1 AND confirmed = 1",
                    &[],
                )?;
                if r.rows_affected > 0 {
                    changed.insert(OUTBOX.to_owned());
                }
            }
            db.execute(RECORDING_ON, &[])?;
            changed.extend(self.rerun_pending(db)?);
            Ok(changed)
        })?;
        self.cookie = Some(pull.cookie.clone());
        self.record_states(&pull.subscriptions);
        Ok(changed)
    }

    /// Rebuilds the synced tables empty from the app definition (the server
    /// asked for a reset), keeping the outbox and re-running it; the next pull
    /// is a full one. Returns every synced table as changed.
    pub fn reset(&mut self, db: &mut Database) -> Result<TableSet> {
        let names: Vec<String> = self.app.tables.iter().map(|t| t.name.clone()).collect();
        in_savepoint(db, "ferry_reset", |db| self.rebuild_synced(db, &names))?;
        self.cookie = None;
        self.forget_states();
        Ok(self.synced_tables().clone())
    }

    /// Drops `old_names` and creates the app's synced tables, clears the
    /// cookie and re-runs pending mutations. Runs inside the caller's savepoint.
    pub(super) fn rebuild_synced(&self, db: &mut Database, old_names: &[String]) -> Result<()> {
        rebuild_tables(db, &self.app, old_names)?;
        self.rerun_pending(db)?;
        Ok(())
    }

    /// Restores every saved image; returns the tables that had any.
    fn undo_all(&self, db: &mut Database) -> Result<TableSet> {
        let mut changed = TableSet::new();
        for table in &self.tables {
            let has = db.rows(&table.has_undo, &[])?;
            if int(&has.rows[0][0]) == 0 {
                continue;
            }
            for sql in &table.undo {
                db.execute(sql, &[])?;
            }
            changed.insert(table.name.clone());
        }
        Ok(changed)
    }

    /// Applies `patch` in order. Runs of puts to one table go a batch of
    /// rows per statement ([`TableSql::put_batch`]); the outcome, errors
    /// included, is that of applying every op on its own.
    fn apply_patch(
        &self,
        db: &mut Database,
        patch: &[PatchOp],
        changed: &mut TableSet,
    ) -> Result<()> {
        let mut rest = patch;
        while let Some(op) = rest.first() {
            let PatchOp::Put { table: name, .. } = op else {
                self.apply_op(db, op, changed)?;
                rest = &rest[1..];
                continue;
            };
            let table = self.table_sql(name)?;
            let run = rest
                .iter()
                .take(table.put_batch_rows)
                .take_while(|op| matches!(op, PatchOp::Put { table: t, .. } if t == name))
                .count();
            if run < table.put_batch_rows {
                // A short run (an incremental pull): one statement per row.
                for op in &rest[..run] {
                    self.apply_op(db, op, changed)?;
                }
            } else {
                self.put_batch(db, table, &rest[..run])?;
                changed.insert(table.name.clone());
            }
            rest = &rest[run..];
        }
        Ok(())
    }

    /// Puts `table.put_batch_rows` rows (`puts`, all `Put`s to `table`) in one
    /// statement. A row that does not convert or does not apply fails the
    /// batch; the rows are then applied one by one, so the error (and what
    /// ran before it) is exactly that of the unbatched path.
    fn put_batch(&self, db: &mut Database, table: &TableSql, puts: &[PatchOp]) -> Result<()> {
        let mut values = Vec::with_capacity(puts.len() * table.columns.len());
        for op in puts {
            let PatchOp::Put { row, .. } = op else {
                unreachable!("a run of puts");
            };
            if push_values(table, &table.columns, row, false, &mut values).is_err() {
                return self.put_each(db, puts);
            }
        }
        if db.execute(&table.put_batch, &values).is_err() {
            // The failed statement left nothing behind (statement rollback).
            return self.put_each(db, puts);
        }
        Ok(())
    }

    fn put_each(&self, db: &mut Database, puts: &[PatchOp]) -> Result<()> {
        let mut changed = TableSet::new();
        for op in puts {
            self.apply_op(db, op, &mut changed)?;
        }
        Ok(())
    }

    fn apply_op(&self, db: &mut Database, op: &PatchOp, changed: &mut TableSet) -> Result<()> {
        match op {
            PatchOp::Clear => {
                for table in &self.tables {
                    db.execute(&table.clear, &[])?;
                    changed.insert(table.name.clone());
                }
            }
            PatchOp::Put { table, row } => {
                let table = self.table_sql(table)?;
                let values = values_of(table, &table.columns, row, false)?;
                db.execute(&table.put, &values)
                    .map_err(|e| bad_row(table, row, &e.to_string()))?;
                changed.insert(table.name.clone());
            }
            PatchOp::Del { table, key } => {
                let table = self.table_sql(table)?;
                let values = values_of(table, &table.key, key, true)?;
                db.execute(&table.delete, &values)?;
                changed.insert(table.name.clone());
            }
        }
        Ok(())
    }

    fn table_sql(&self, name: &str) -> Result<&TableSql> {
        self.tables
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| Error::BadResponse(format!("patch for unknown table `{name}`")))
    }

    /// Re-runs the unacknowledged mutations in order; returns the tables they wrote.
    pub(super) fn rerun_pending(&self, db: &mut Database) -> Result<TableSet> {
        let pending = db.rows(
            "SELECT name, args FROM _ferry_outbox WHERE acked = 0 ORDER BY id",
            &[],
        )?;
        let mut changed = TableSet::new();
        for row in pending.rows {
            let Some(mutator) = self.mutator(&row[0].text()) else {
                // Queued by an older app that had this mutator: the server judges it.
                continue;
            };
            let args = serde_json::from_str(&row[1].text()).unwrap_or_default();
            let Ok(values) = mutator.bind(&args) else {
                continue;
            };
            let ran = in_savepoint(db, "ferry_rerun", |db| mutator.run(db, &values));
            match ran {
                Ok(()) => changed.extend(mutator.writes.iter().cloned()),
                Err(Error::MutatorFailed { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(changed)
    }
}

/// Drops `old_names` (and their undo twins) and creates the app's synced
/// tables empty, with no cookie. Shared by reset and by open-time rebuilds.
pub(super) fn rebuild_tables(
    db: &mut Database,
    app: &ferrydb_protocol::AppDefinition,
    old_names: &[String],
) -> Result<()> {
    for name in old_names {
        for sql in schema::drop_synced(name) {
            db.execute(&sql, &[])?;
        }
    }
    for table in &app.tables {
        for sql in schema::create_synced(table) {
            db.execute(&sql, &[])?;
        }
    }
    meta::set_cookie(db, None)
}

/// The values of `columns` in `row`, in order. Key columns must be present;
/// other missing columns are NULL (a NOT NULL column then fails the put).
/// Columns the client does not know are ignored: a server may add columns
/// for newer clients.
fn values_of(
    table: &TableSql,
    columns: &[(String, ferrydb_protocol::ColumnType)],
    row: &Row,
    key_only: bool,
) -> Result<Vec<Value>> {
    let mut values = Vec::with_capacity(columns.len());
    push_values(table, columns, row, key_only, &mut values)?;
    Ok(values)
}

/// [`values_of`], appended to `values` (a batch's, without a `Vec` a row).
fn push_values(
    table: &TableSql,
    columns: &[(String, ferrydb_protocol::ColumnType)],
    row: &Row,
    key_only: bool,
    values: &mut Vec<Value>,
) -> Result<()> {
    for (name, ty) in columns {
        let is_key = key_only || table.key.iter().any(|(k, _)| k == name);
        values.push(match row.get(name) {
            None if is_key => {
                return Err(bad_row(table, row, &format!("key column `{name}` missing")))
            }
            None => Value::Null,
            Some(json) => from_json(*ty, json)
                .map_err(|e| bad_row(table, row, &format!("column `{name}`: {e}")))?,
        });
    }
    Ok(())
}

fn bad_row(table: &TableSql, row: &Row, why: &str) -> Error {
    Error::BadResponse(format!(
        "cannot apply row {} to `{}`: {why}",
        serde_json::Value::Object(row.clone()),
        table.name
    ))
}
