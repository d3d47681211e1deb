//! Mutators compiled for SQLite: each statement rendered with positional
//! placeholders, checked against the real schema once (it must prepare, and
//! may only write synced tables), and run inside the caller's savepoint.

use super::error::{Error, Result};
use crate::engine::database::{Database, TableSet};
use crate::engine::value::Value;
use ferrydb_protocol::sql::Placeholders;
use ferrydb_protocol::values::bind_args;
use ferrydb_protocol::{AppDefinition, Mutator};
use serde_json::Value as Json;

#[derive(Clone, Debug)]
pub struct CompiledMutator {
    pub def: Mutator,
    statements: Vec<CompiledStatement>,
    /// The synced tables its statements may write: what a run of it changes.
    pub writes: TableSet,
}

#[derive(Clone, Debug)]
struct CompiledStatement {
    sql: String,
    /// For each placeholder in order, the index of the declared parameter.
    args: Vec<usize>,
}

/// Compiles every mutator of `app` against the schema in `db`, which must
/// already hold the synced tables.
pub fn compile_all(db: &mut Database, app: &AppDefinition) -> Result<Vec<CompiledMutator>> {
    let synced: TableSet = app.tables.iter().map(|t| t.name.clone()).collect();
    let mut compiled = Vec::new();
    for def in &app.mutators {
        let mut statements = Vec::new();
        let mut writes = TableSet::new();
        for (index, (sql, args)) in def.rendered(Placeholders::Question).into_iter().enumerate() {
            let invalid = |message: String| {
                Error::InvalidApp(format!(
                    "statement {} of mutator `{}`: {message}",
                    index + 1,
                    def.name
                ))
            };
            let access = db.access(&sql).map_err(|e| invalid(e.to_string()))?;
            for table in &access.writes {
                // Triggers write ferrydb's bookkeeping (the undo log); that
                // is ours, not the mutator's. The app definition cannot name
                // such tables itself.
                if table.starts_with("_ferry") {
                    continue;
                }
                if !synced.contains(table) {
                    return Err(invalid(format!(
                        "writes `{table}`, which is not a synced table"
                    )));
                }
                writes.insert(table.clone());
            }
            statements.push(CompiledStatement { sql, args });
        }
        compiled.push(CompiledMutator {
            def: def.clone(),
            statements,
            writes,
        });
    }
    Ok(compiled)
}

impl CompiledMutator {
    /// Checks and converts `args` (see [`bind_args`]).
    pub fn bind(&self, args: &Json) -> Result<Vec<Value>> {
        Ok(bind_args(&self.def, args)?)
    }

    /// Runs the statements in order. The caller owns the savepoint that makes
    /// them one unit and rolls back on error.
    pub fn run(&self, db: &mut Database, values: &[Value]) -> Result<()> {
        let mut params = Vec::new();
        for statement in &self.statements {
            params.clear();
            params.extend(statement.args.iter().map(|&i| values[i].clone()));
            db.execute(&statement.sql, &params)
                .map_err(|e| Error::MutatorFailed {
                    mutator: self.def.name.clone(),
                    message: e.to_string(),
                })?;
        }
        Ok(())
    }
}

/// Runs `body` inside `SAVEPOINT name`: released on success, rolled back (and
/// released) on error, so a failure leaves nothing behind.
pub fn in_savepoint<T>(
    db: &mut Database,
    name: &str,
    body: impl FnOnce(&mut Database) -> Result<T>,
) -> Result<T> {
    db.execute(&format!("SAVEPOINT {name}"), &[])?;
    match body(db) {
        Ok(value) => {
            db.execute(&format!("RELEASE {name}"), &[])?;
            Ok(value)
        }
        Err(e) => {
            db.execute(&format!("ROLLBACK TO {name}"), &[])?;
            db.execute(&format!("RELEASE {name}"), &[])?;
            Err(e)
        }
    }
}
