//! Schema evolution, written once for both stores: what a store does to its
//! database when it starts with an app definition other than the one it
//! last served, and what `ferrydb-server migrate` plans and applies.
//!
//! The store records each synced table's definition (`table:<name>` in
//! `_ferry_meta`) and each app definition it served (`app:<version>`, which
//! tells later servers what clients of that version know: see
//! `sync::Versions`). On start, additive changes ([`ferrydb_protocol::evolve`]:
//! new tables, new nullable columns, new rules or mutators) are applied in
//! the store's opening transaction, under its lock; a breaking change is
//! refused with a message naming the command that plans and applies it,
//! unless the server is an instance of an earlier version than the database
//! already serves, whose tables the database's extend additively (a rolling
//! deploy in progress, or rolled back): that one starts and changes nothing. The
//! stores only say how each [`Step`] is written in their SQL ([`SchemaTx`]).

use super::table_text::meta_key;
use super::{Result, StoreError};
use ferrydb_protocol::evolve::{breaking_changes, table_change, TableChange};
use ferrydb_protocol::{AppDefinition, Column, ColumnType, Table};
use std::fmt;
use std::future::Future;

/// Why the store's schema is being brought to the app definition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A server starting: additive steps only; a breaking one refuses.
    Start,
    /// `migrate --plan`: work out the steps, change nothing.
    Plan,
    /// `migrate --apply`: every step, breaking ones included.
    Apply,
}

/// One change to the database.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    Create(Table),
    /// New nullable columns (NULL in every row), and perhaps new access
    /// rules too (`resend`, as [`Step::Resend`]).
    AddColumns {
        table: Table,
        added: Vec<Column>,
        resend: bool,
    },
    /// The access rules changed: every row gets a new version, so each
    /// client pulls it again and the new read rule decides whether it keeps it.
    Resend(Table),
    /// A breaking change to a table: its rows are copied into the new
    /// definition (the columns both have, cast to the new types) and every
    /// row is sent again.
    Rebuild {
        old: Table,
        table: Table,
        reasons: Vec<String>,
    },
    /// A table the app no longer defines: gone with its rows.
    Drop(Table),
}

impl Step {
    fn breaking(&self) -> bool {
        matches!(self, Step::Rebuild { .. } | Step::Drop(_))
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Create(table) => write!(f, "create table `{}`", table.name),
            Step::AddColumns {
                table,
                added,
                resend,
            } => {
                let columns: Vec<String> = added
                    .iter()
                    .map(|c| format!("`{}` ({}, nullable)", c.name, c.ty.as_str()))
                    .collect();
                write!(f, "add to `{}`: {}", table.name, columns.join(", "))?;
                if *resend {
                    write!(f, "; new access rules: every row is sent to clients again")?;
                }
                Ok(())
            }
            Step::Resend(table) => write!(
                f,
                "new access rules for `{}`: every row is sent to clients again",
                table.name
            ),
            Step::Rebuild { table, reasons, .. } => write!(
                f,
                "BREAKING: rebuild `{}` ({}): rows are copied, values of dropped columns are lost",
                table.name,
                reasons.join("; ")
            ),
            Step::Drop(table) => {
                write!(f, "BREAKING: drop table `{}` and all its rows", table.name)
            }
        }
    }
}

/// The steps from the tables a store recorded to an app definition's.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub steps: Vec<Step>,
}

impl Plan {
    pub fn new(recorded: &[Table], app: &AppDefinition) -> Plan {
        let mut steps: Vec<Step> = app
            .tables
            .iter()
            .filter_map(|table| {
                let old = recorded.iter().find(|t| t.name == table.name);
                let step = match table_change(old, table) {
                    TableChange::Same => return None,
                    TableChange::New => Step::Create(table.clone()),
                    TableChange::Additive {
                        added,
                        rules_changed,
                    } if !added.is_empty() => Step::AddColumns {
                        added: added.into_iter().cloned().collect(),
                        table: table.clone(),
                        resend: rules_changed,
                    },
                    TableChange::Additive { .. } => Step::Resend(table.clone()),
                    TableChange::Breaking(reasons) => Step::Rebuild {
                        old: old.expect("a changed table was recorded").clone(),
                        table: table.clone(),
                        reasons,
                    },
                };
                Some(step)
            })
            .collect();
        steps.extend(
            recorded
                .iter()
                .filter(|t| app.tables.iter().all(|n| n.name != t.name))
                .map(|t| Step::Drop(t.clone())),
        );
        Plan { steps }
    }

    /// Whether applying it gives rows a new version (clients must pull).
    pub fn moves_version(&self) -> bool {
        self.steps.iter().any(|step| {
            matches!(
                step,
                Step::Resend(_) | Step::Rebuild { .. } | Step::AddColumns { resend: true, .. }
            )
        })
    }

    pub fn breaking(&self) -> impl Iterator<Item = &Step> {
        self.steps.iter().filter(|s| s.breaking())
    }

    /// The refusal of a server asked to start with breaking changes.
    fn refusal(&self) -> StoreError {
        let steps: Vec<String> = self.breaking().map(|s| s.to_string()).collect();
        StoreError::InvalidApp(format!(
            "the app definition changes this database in ways a starting server does not \
             apply (data would be lost or rewritten): {}. See every change with \
             `ferrydb-server migrate --plan --app FILE --store URL`, then apply them with \
             `ferrydb-server migrate --apply --app FILE --store URL`",
            steps.join("; ")
        ))
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.steps.is_empty() {
            return writeln!(f, "nothing to change");
        }
        for step in &self.steps {
            writeln!(f, "- {step}")?;
        }
        Ok(())
    }
}

/// What the evolution asks of a store, inside its opening transaction
/// (which holds the store's lock: SQLite's write lock, Postgres's
/// advisory lock).
pub trait SchemaTx {
    /// The `_ferry_meta` entries whose key starts with `prefix`.
    fn recorded(&self, prefix: &str) -> impl Future<Output = Result<Vec<(String, String)>>>;
    /// Sets (`Some`) or removes (`None`) a `_ferry_meta` entry.
    fn record(&self, key: &str, value: Option<&str>) -> impl Future<Output = Result<()>>;
    fn execute(&self, sql: &str) -> impl Future<Output = Result<()>>;
    /// Creates a synced table with its row versions, touched log and triggers.
    fn create(&self, table: &Table) -> Vec<String>;
    /// Makes the triggers that name every column of `table` again, after
    /// columns were added to it and to its touched log.
    fn refresh_triggers(&self, table: &Table) -> Vec<String>;
    /// What the store made for a synced table besides its tables (and the
    /// triggers on them), to drop after them.
    fn drop_extras(&self, table: &Table) -> Vec<String>;
    fn sql_type(&self, ty: ColumnType) -> &'static str;
}

/// Brings the store's tables to `app`'s as `mode` allows and records what it
/// serves; returns the plan. In [`Mode::Plan`] nothing is changed.
pub async fn evolve<T: SchemaTx>(tx: &T, app: &AppDefinition, mode: Mode) -> Result<Plan> {
    let mut recorded = Vec::new();
    for (key, json) in tx.recorded("table:").await? {
        let table = serde_json::from_str(&json)
            .map_err(|e| e.to_string())
            .and_then(|json| Table::decode(json, "").map_err(|e| e.to_string()))
            .map_err(|e| StoreError::Internal(format!("_ferry_meta `{key}`: {e}")))?;
        recorded.push(table);
    }
    let plan = Plan::new(&recorded, app);
    match mode {
        Mode::Plan => return Ok(plan),
        Mode::Start if plan.breaking().next().is_some() => {
            if !older_instance(tx, app, &recorded).await? {
                return Err(plan.refusal());
            }
            // Serves its version of the database as it is.
            record_app(tx, app).await?;
            return Ok(Plan::default());
        }
        Mode::Start | Mode::Apply => {}
    }
    for step in &plan.steps {
        for sql in step_sql(tx, step) {
            tx.execute(&sql).await.map_err(|e| match e {
                StoreError::Unavailable(_) => e,
                e => StoreError::InvalidApp(format!("cannot {step}: {e}")),
            })?;
        }
        match step {
            Step::Drop(table) => tx.record(&meta_key(table), None).await?,
            Step::Create(table)
            | Step::AddColumns { table, .. }
            | Step::Resend(table)
            | Step::Rebuild { table, .. } => {
                let def = serde_json::to_string(table).expect("a table serializes");
                tx.record(&meta_key(table), Some(&def)).await?;
            }
        }
    }
    record_app(tx, app).await?;
    Ok(plan)
}

/// Whether `app` is an earlier version than one the database already
/// serves, whose tables extend `app`'s additively: an instance of the
/// previous version starting during a rolling deploy (or after one was
/// rolled back). Its SQL names only the columns it knows, so it runs on
/// the database as it is, changing nothing.
async fn older_instance<T: SchemaTx>(
    tx: &T,
    app: &AppDefinition,
    recorded: &[Table],
) -> Result<bool> {
    let newer = served_apps(tx)
        .await?
        .iter()
        .any(|served| served.version > app.version);
    Ok(newer && breaking_changes(&app.tables, recorded).is_empty())
}

async fn record_app<T: SchemaTx>(tx: &T, app: &AppDefinition) -> Result<()> {
    let def = serde_json::to_string(app).expect("an app definition serializes");
    tx.record(&app_key(app.version), Some(&def)).await
}

/// The app definitions the store served, as recorded (unreadable ones, of
/// a newer server, are skipped: nothing can be served from them).
pub async fn served_apps<T: SchemaTx>(tx: &T) -> Result<Vec<AppDefinition>> {
    Ok(tx
        .recorded("app:")
        .await?
        .into_iter()
        .filter_map(|(_, json)| AppDefinition::from_json(&json).ok())
        .collect())
}

fn app_key(version: u32) -> String {
    format!("app:{version}")
}

/// Moves the version, and stamps every row of `table` with it.
fn resend(table: &str) -> Vec<String> {
    vec![
        "UPDATE _ferry_version SET value = value + 1".into(),
        format!("UPDATE _ferry_rowver_{table} SET version = (SELECT value FROM _ferry_version)"),
    ]
}

/// Drops a synced table and everything the store made for it.
fn drop<T: SchemaTx>(tx: &T, table: &Table) -> Vec<String> {
    let t = &table.name;
    let mut sql = vec![
        format!("DROP TABLE {t}"),
        format!("DROP TABLE _ferry_rowver_{t}"),
        format!("DROP TABLE _ferry_touched_{t}"),
    ];
    sql.extend(tx.drop_extras(table));
    sql
}

fn step_sql<T: SchemaTx>(tx: &T, step: &Step) -> Vec<String> {
    match step {
        Step::Create(table) => tx.create(table),
        Step::AddColumns {
            table,
            added,
            resend: again,
        } => {
            let t = &table.name;
            let mut sql: Vec<String> = added
                .iter()
                .flat_map(|c| {
                    let ty = tx.sql_type(c.ty);
                    [
                        format!("ALTER TABLE {t} ADD COLUMN {} {ty}", c.name),
                        format!("ALTER TABLE _ferry_touched_{t} ADD COLUMN {} {ty}", c.name),
                    ]
                })
                .collect();
            sql.extend(tx.refresh_triggers(table));
            if *again {
                sql.extend(resend(t));
            }
            sql
        }
        Step::Resend(table) => resend(&table.name),
        Step::Drop(table) => drop(tx, table),
        Step::Rebuild { old, table, .. } => {
            let t = &table.name;
            let kept: Vec<&Column> = table
                .columns
                .iter()
                .filter(|c| old.column(&c.name).is_some())
                .collect();
            let names: Vec<&str> = kept.iter().map(|c| c.name.as_str()).collect();
            let cast: Vec<String> = kept
                .iter()
                .map(|c| format!("CAST({} AS {})", c.name, tx.sql_type(c.ty)))
                .collect();
            let mut sql = vec![format!("CREATE TABLE _ferry_rebuild AS SELECT * FROM {t}")];
            sql.extend(drop(tx, old));
            sql.extend(tx.create(table));
            // The copied rows are stamped with a new version: every client
            // pulls them again.
            sql.push("UPDATE _ferry_version SET value = value + 1".into());
            sql.push(format!(
                "INSERT INTO {t} ({}) SELECT {} FROM _ferry_rebuild",
                names.join(", "),
                cast.join(", ")
            ));
            sql.push("DROP TABLE _ferry_rebuild".into());
            sql
        }
    }
}
