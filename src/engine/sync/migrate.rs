//! The schema-version check on open. The replica remembers the schema
//! version and table definitions it was built from, and on open with an app
//! definition:
//!
//! - nothing stored → create everything, assign the client ID;
//! - stored version newer than the app → `app_outdated` (an old tab or build
//!   must not touch a replica a newer one migrated);
//! - same tables → nothing to do;
//! - only additions (tables, nullable columns) → `ALTER`/`CREATE` in place,
//!   and forget the cookie so the next pull brings the new columns' values;
//! - anything else on synced tables (a column dropped, retyped, made NOT
//!   NULL, a key changed, a table removed) → rebuild them empty, keep the
//!   outbox, re-run it, pull in full.
//!
//! Local tables follow the same rules one table at a time; an incompatible
//! local table is recreated empty (its data was never synced, so it is lost).

use super::error::{Error, Result};
use super::meta;
use super::rebase::rebuild_tables;
use super::replica::Opened;
use super::schema::{self, INTERNAL_TABLES};
use crate::engine::database::Database;
use crate::engine::value::Value;
use ferrydb_protocol::decode::{self, Fields};
use ferrydb_protocol::{AppDefinition, Column, LocalTable, Table};
use serde::Serialize;

/// The table definitions a replica was built from, kept in `_ferry_meta`.
#[derive(Serialize)]
struct Stored {
    tables: Vec<Table>,
    local_tables: Vec<LocalTable>,
}

impl Stored {
    fn from_json(text: &str) -> std::result::Result<Stored, String> {
        let json = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let read = |json| -> decode::Result<Stored> {
            let mut f = Fields::of(json, "")?;
            Ok(Stored {
                tables: f.get("tables", |v, p| decode::list(v, p, Table::decode))?,
                local_tables: f.get("local_tables", |v, p| {
                    decode::list(v, p, LocalTable::decode)
                })?,
            })
        };
        read(json).map_err(|e| e.to_string())
    }
}

/// Brings the schema in `db` to `app`'s. Runs inside the caller's savepoint;
/// pending mutations are re-run by the caller after a rebuild.
pub fn prepare(db: &mut Database, app: &AppDefinition, new_client_id: &str) -> Result<Opened> {
    for sql in INTERNAL_TABLES {
        db.execute(sql, &[])?;
    }
    db.execute(
        "INSERT OR IGNORE INTO _ferry_meta (key, value) VALUES ('recording', 1)",
        &[],
    )?;
    let opened = match meta::get_int(db, "schema_version")? {
        None => {
            for table in &app.tables {
                for sql in schema::create_synced(table) {
                    db.execute(&sql, &[])?;
                }
            }
            for table in &app.local_tables {
                db.execute(&schema::create_local(table), &[])?;
            }
            meta::set(db, "client_id", Value::Text(new_client_id.to_owned()))?;
            meta::set(db, "next_mutation_id", Value::Integer(1))?;
            meta::set_cookie(db, None)?;
            Opened::Created
        }
        Some(stored) if stored > app.version as i64 => {
            return Err(Error::AppOutdated {
                app_version: app.version,
                replica_version: stored as u32,
            })
        }
        Some(_) => {
            let text = meta::get_text(db, "tables")?.unwrap_or_default();
            let stored = Stored::from_json(&text).map_err(|e| {
                Error::Engine(crate::engine::error::Error::Internal(format!(
                    "stored table definitions are unreadable: {e}"
                )))
            })?;
            migrate(db, &stored, app)?
        }
    };
    meta::set(db, "schema_version", Value::Integer(app.version as i64))?;
    let stored = Stored {
        tables: app.tables.clone(),
        local_tables: app.local_tables.clone(),
    };
    let text = serde_json::to_string(&stored).expect("definitions serialize");
    meta::set(db, "tables", Value::Text(text))?;
    Ok(opened)
}

fn migrate(db: &mut Database, old: &Stored, app: &AppDefinition) -> Result<Opened> {
    let mut opened = Opened::Unchanged;
    // Local tables that go away or change incompatibly are dropped first: a
    // synced table created below may take over the name.
    let mut local_plans = Vec::new();
    for old_local in &old.local_tables {
        let new = app.local_tables.iter().find(|t| t.name == old_local.name);
        let added = new.and_then(|n| {
            added_columns(
                &old_local.columns,
                &old_local.primary_key,
                &n.columns,
                &n.primary_key,
            )
        });
        if added.is_none() {
            db.execute(&format!("DROP TABLE IF EXISTS {}", old_local.name), &[])?;
            opened = Opened::Migrated;
        }
        local_plans.push((old_local.name.clone(), added));
    }

    let compatible: Option<Vec<(&Table, Vec<Column>)>> = old
        .tables
        .iter()
        .map(|o| {
            let new = app.table(&o.name)?;
            Some((
                new,
                added_columns(&o.columns, &o.primary_key, &new.columns, &new.primary_key)?,
            ))
        })
        .collect();
    match compatible {
        None => {
            let names: Vec<String> = old.tables.iter().map(|t| t.name.clone()).collect();
            rebuild_tables(db, app, &names)?;
            opened = Opened::Rebuilt;
        }
        Some(kept) => {
            let mut synced_changed = false;
            for (table, added) in kept.into_iter().filter(|(_, a)| !a.is_empty()) {
                for column in &added {
                    for sql in schema::add_column(&table.name, column, true) {
                        db.execute(&sql, &[])?;
                    }
                }
                for sql in schema::drop_triggers(&table.name)
                    .into_iter()
                    .chain(schema::create_triggers(table))
                {
                    db.execute(&sql, &[])?;
                }
                synced_changed = true;
            }
            for table in app
                .tables
                .iter()
                .filter(|t| !old.tables.iter().any(|o| o.name == t.name))
            {
                for sql in schema::create_synced(table) {
                    db.execute(&sql, &[])?;
                }
                synced_changed = true;
            }
            if synced_changed {
                // Rows already here have no values for the new columns, and
                // their versions on the server did not move: pull everything.
                meta::set_cookie(db, None)?;
                opened = Opened::Migrated;
            }
        }
    }

    for table in &app.local_tables {
        match local_plans.iter().find(|(name, _)| *name == table.name) {
            Some((_, Some(added))) => {
                for column in added {
                    for sql in schema::add_column(&table.name, column, false) {
                        db.execute(&sql, &[])?;
                    }
                    opened = opened.max_with(Opened::Migrated);
                }
            }
            _ => {
                db.execute(&schema::create_local(table), &[])?;
                opened = opened.max_with(Opened::Migrated);
            }
        }
    }
    Ok(opened)
}

/// The columns `new` adds to `old`, if that is all that changed (same key,
/// every old column kept as it was, every new one nullable); `None` if the
/// change is incompatible.
fn added_columns(
    old: &[Column],
    old_key: &[String],
    new: &[Column],
    new_key: &[String],
) -> Option<Vec<Column>> {
    if old_key != new_key || !old.iter().all(|o| new.contains(o)) {
        return None;
    }
    let added: Vec<Column> = new
        .iter()
        .filter(|n| !old.iter().any(|o| o.name == n.name))
        .cloned()
        .collect();
    added.iter().all(|c| c.nullable).then_some(added)
}

impl Opened {
    /// The more drastic of two outcomes (a rebuild stays a rebuild).
    fn max_with(self, other: Opened) -> Opened {
        if self == Opened::Rebuilt || other == Opened::Unchanged {
            self
        } else {
            other
        }
    }
}
