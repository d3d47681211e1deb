//! The client side of sync over one SQLite database: synced tables built from
//! the app definition, the outbox of pending mutations, the rejection log and
//! the client's identity and cookie. Every method takes the [`Database`] the
//! engine owns; the replica keeps no state that is not also in SQLite, so a
//! restart is `Replica::open` on the same database.

use super::error::{Error, Result};
use super::meta;
use super::migrate;
use super::mutator::{compile_all, in_savepoint, CompiledMutator};
use super::schema::{TableSql, OUTBOX, REJECTIONS};
use super::subscriptions::{load_desired, Desired};
use crate::engine::database::{Database, StatementAccess, TableSet};
use crate::engine::value::Value;
use ferrydb_protocol::values::to_json;
use ferrydb_protocol::Row;
use ferrydb_protocol::{
    AppDefinition, Cookie, Mutation, MutationResult, PullRequest, PushRequest, SubscriptionState,
    PROTOCOL_VERSION, PROTOCOL_VERSION_SUBSCRIPTIONS,
};
use serde::Serialize;
use serde_json::Value as Json;
use std::collections::BTreeMap;

/// The synced side of one database: open it with [`Replica::open`], then
/// pass the same [`Database`] to every call.
pub struct Replica {
    pub(super) app: AppDefinition,
    pub(super) client_id: String,
    pub(super) tables: Vec<TableSql>,
    /// In the app's order, found by name with a scan: an app has tens of
    /// mutators, and a `HashMap` instantiation costs the wasm kilobytes.
    pub(super) mutators: Vec<CompiledMutator>,
    /// Cached copy of `_ferry_meta.cookie`, updated only after a commit.
    pub(super) cookie: Option<Cookie>,
    synced: TableSet,
    /// Protocol v2: the subscriptions the group wants (`_ferry_meta`).
    pub(super) desired: Vec<Desired>,
    /// Protocol v2: the server's last word on each wanted subscription.
    pub(super) states: Vec<SubscriptionState>,
}

/// What opening did to the replica's schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opened {
    /// A new database: tables created, a client ID assigned.
    Created,
    /// Same schema as last time.
    Unchanged,
    /// Tables or nullable columns were added in place; synced data is pulled
    /// again in full.
    Migrated,
    /// An incompatible change: synced tables dropped and recreated empty; the
    /// outbox was kept and its mutations re-run.
    Rebuilt,
}

/// A mutation that applied locally and is queued for the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mutated {
    pub id: u64,
    /// Tables whose contents changed (synced tables written, and the outbox).
    pub changed: TableSet,
}

/// One outbox entry, as the pending-mutations view shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingMutation {
    pub id: u64,
    pub name: String,
    pub args: Json,
    pub created_at: u64,
}

/// One entry of the rejection log.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rejection {
    pub mutation_id: u64,
    pub name: String,
    pub args: Json,
    pub code: String,
    pub message: String,
    pub created_at: u64,
    pub rejected_at: u64,
}

/// What a push reply changed locally.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PushApplied {
    pub rejected: Vec<Rejection>,
    pub changed: TableSet,
}

impl Replica {
    /// Opens (creating, migrating or rebuilding as needed) the replica for
    /// `app` in `db`. `new_client_id` is used only when the database is new: it
    /// must be unique (the host draws it from `crypto.randomUUID()`).
    ///
    /// Fails with `app_outdated` if a newer build already opened this
    /// database, and `invalid_app` if a mutator does not prepare against the
    /// schema; either way nothing is changed.
    pub fn open(
        db: &mut Database,
        app: AppDefinition,
        new_client_id: &str,
    ) -> Result<(Replica, Opened)> {
        app.validate()?;
        in_savepoint(db, "ferry_open", |db| {
            let opened = migrate::prepare(db, &app, new_client_id)?;
            let mutators = compile_all(db, &app)?;
            let client_id = meta::get_text(db, "client_id")?.ok_or_else(|| {
                Error::Engine(crate::engine::error::Error::Internal(
                    "replica has no client id".into(),
                ))
            })?;
            let replica = Replica {
                synced: app.tables.iter().map(|t| t.name.clone()).collect(),
                tables: app.tables.iter().map(TableSql::new).collect(),
                cookie: meta::get_cookie(db)?,
                desired: load_desired(db, &app)?,
                states: Vec::new(),
                app,
                client_id,
                mutators,
            };
            if opened == Opened::Rebuilt {
                replica.rerun_pending(db)?;
            }
            Ok((replica, opened))
        })
    }

    pub fn app(&self) -> &AppDefinition {
        &self.app
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The client group is the replica: one worker, one outbox, one client.
    pub fn client_group_id(&self) -> &str {
        &self.client_id
    }

    pub fn cookie(&self) -> Option<&Cookie> {
        self.cookie.as_ref()
    }

    pub fn synced_tables(&self) -> &TableSet {
        &self.synced
    }

    /// Refuses a plain SQL statement that would write a synced table or one of
    /// ferrydb's own: the engine calls this with `Database::access(sql)` before
    /// running SQL from a tab. Local tables and reads pass.
    pub fn guard(&self, access: &StatementAccess) -> Result<()> {
        // Name the app's own table when there is one (a write to a synced table
        // also shows its undo log, written by a trigger).
        let synced = access.writes.iter().find(|t| self.synced.contains(t));
        match synced.or_else(|| access.writes.iter().find(|t| t.starts_with("_ferry"))) {
            Some(table) => Err(Error::WriteOutsideMutator {
                table: table.clone(),
            }),
            None => Ok(()),
        }
    }

    pub(super) fn mutator(&self, name: &str) -> Option<&CompiledMutator> {
        self.mutators.iter().find(|m| m.def.name == name)
    }

    /// Runs mutator `name` with `args` (a JSON object) in one savepoint, and
    /// queues it in the outbox. On any failure nothing is applied or queued.
    pub fn mutate(&self, db: &mut Database, name: &str, args: &Json, now: u64) -> Result<Mutated> {
        let mutator = self
            .mutator(name)
            .ok_or_else(|| Error::UnknownMutator(name.to_owned()))?;
        let values = mutator.bind(args)?;
        let args_text = args.to_string();
        let id = in_savepoint(db, "ferry_mutate", |db| {
            mutator.run(db, &values)?;
            let id = meta::get_int(db, "next_mutation_id")?.unwrap_or(1);
            meta::set(db, "next_mutation_id", Value::Integer(id + 1))?;
            db.execute(
                "INSERT INTO _ferry_outbox (id, name, args, created_at) VALUES (?1, ?2, ?3, ?4)",
                &[
                    Value::Integer(id),
                    Value::Text(name.to_owned()),
                    Value::Text(args_text),
                    Value::Integer(now as i64),
                ],
            )?;
            Ok(id as u64)
        })?;
        let mut changed = mutator.writes.clone();
        changed.insert(OUTBOX.to_owned());
        Ok(Mutated { id, changed })
    }

    /// Mutations not yet settled with the server, oldest first.
    pub fn pending(&self, db: &mut Database) -> Result<Vec<PendingMutation>> {
        let rows = db.rows(
            "SELECT id, name, args, created_at FROM _ferry_outbox ORDER BY id",
            &[],
        )?;
        Ok(rows
            .rows
            .into_iter()
            .map(|r| PendingMutation {
                id: int(&r[0]),
                name: r[1].text(),
                args: serde_json::from_str(&r[2].text()).unwrap_or(Json::Null),
                created_at: int(&r[3]),
            })
            .collect())
    }

    /// How many mutations the outbox holds.
    pub fn pending_count(&self, db: &mut Database) -> Result<u64> {
        let rows = db.rows("SELECT count(*) FROM _ferry_outbox", &[])?;
        Ok(int(&rows.rows[0][0]))
    }

    /// The push to send next: up to `limit` mutations the server has not
    /// confirmed, oldest first, none from `below` on; `None` if there are none.
    pub fn push_request(
        &self,
        db: &mut Database,
        limit: usize,
        below: Option<u64>,
    ) -> Result<Option<PushRequest>> {
        let rows = db.rows(
            "SELECT id, name, args, created_at FROM _ferry_outbox \
             WHERE confirmed = 0 AND id < ?2 ORDER BY id LIMIT ?1",
            &[
                Value::Integer(limit as i64),
                Value::Integer(below.map_or(i64::MAX, |b| b as i64)),
            ],
        )?;
        if rows.rows.is_empty() {
            return Ok(None);
        }
        let mutations = rows
            .rows
            .into_iter()
            .map(|r| Mutation {
                id: int(&r[0]),
                name: r[1].text(),
                args: serde_json::from_str(&r[2].text()).unwrap_or(Json::Null),
                timestamp: int(&r[3]),
            })
            .collect();
        Ok(Some(PushRequest {
            protocol_version: PROTOCOL_VERSION,
            schema_version: self.app.version,
            client_group_id: self.client_group_id().to_owned(),
            client_id: self.client_id.clone(),
            mutations,
        }))
    }

    /// The pull to send: v1, or v2 with the whole desired set when the app
    /// defines queries.
    pub fn pull_request(&self) -> PullRequest {
        let subscriptions = self.subscriptions();
        PullRequest {
            protocol_version: if subscriptions.is_some() {
                PROTOCOL_VERSION_SUBSCRIPTIONS
            } else {
                PROTOCOL_VERSION
            },
            schema_version: self.app.version,
            client_group_id: self.client_group_id().to_owned(),
            client_id: self.client_id.clone(),
            cookie: self.cookie.clone(),
            subscriptions,
        }
    }

    /// Records a push reply. Committed mutations are marked confirmed (they
    /// leave the outbox once a pull also acknowledges them, so their effects
    /// never blink out in between). Rejected ones move to the rejection log at
    /// once; their effects disappear at the next rebase. Results for mutations
    /// no longer in the outbox (a duplicated reply) change nothing.
    pub fn apply_push(
        &mut self,
        db: &mut Database,
        results: &[MutationResult],
        now: u64,
    ) -> Result<PushApplied> {
        in_savepoint(db, "ferry_push", |db| {
            let mut applied = PushApplied::default();
            for result in results {
                let id = Value::Integer(result.id() as i64);
                let MutationResult::Rejected { code, message, .. } = result else {
                    let (r, _) = db.execute(
                        "UPDATE _ferry_outbox SET confirmed = 1 WHERE id = ?1 AND confirmed = 0",
                        &[id],
                    )?;
                    if r.rows_affected > 0 {
                        applied.changed.insert(OUTBOX.to_owned());
                    }
                    continue;
                };
                let (r, _) = db.execute(
                    "INSERT OR REPLACE INTO _ferry_rejections \
                     SELECT id, name, args, ?2, ?3, created_at, ?4 FROM _ferry_outbox WHERE id = ?1",
                    &[
                        id.clone(),
                        Value::Text(code.as_str().to_owned()),
                        Value::Text(message.clone()),
                        Value::Integer(now as i64),
                    ],
                )?;
                if r.rows_affected == 0 {
                    continue;
                }
                db.execute(
                    "DELETE FROM _ferry_outbox WHERE id = ?1",
                    std::slice::from_ref(&id),
                )?;
                applied
                    .changed
                    .extend([OUTBOX.to_owned(), REJECTIONS.to_owned()]);
                applied.rejected.extend(self.rejection(db, result.id())?);
            }
            let (r, _) = db.execute(
                "DELETE FROM _ferry_outbox WHERE acked = 1 AND confirmed = 1",
                &[],
            )?;
            if r.rows_affected > 0 {
                applied.changed.insert(OUTBOX.to_owned());
            }
            Ok(applied)
        })
    }

    /// The rejection log, newest first.
    pub fn rejections(&self, db: &mut Database) -> Result<Vec<Rejection>> {
        let rows = db.rows(
            "SELECT mutation_id, name, args, code, message, created_at, rejected_at \
             FROM _ferry_rejections ORDER BY mutation_id DESC",
            &[],
        )?;
        Ok(rows.rows.iter().map(|r| rejection_from_row(r)).collect())
    }

    fn rejection(&self, db: &mut Database, id: u64) -> Result<Option<Rejection>> {
        let rows = db.rows(
            "SELECT mutation_id, name, args, code, message, created_at, rejected_at \
             FROM _ferry_rejections WHERE mutation_id = ?1",
            &[Value::Integer(id as i64)],
        )?;
        Ok(rows.rows.first().map(|r| rejection_from_row(r)))
    }

    /// Every synced row, per table in key order, in wire form: for tests,
    /// debugging and devtools (it compares directly with what the server
    /// holds for the user).
    pub fn snapshot(&self, db: &mut Database) -> Result<BTreeMap<String, Vec<Row>>> {
        let mut all = BTreeMap::new();
        for table in &self.tables {
            let rows = db.rows(&table.all, &[])?;
            let rows = rows
                .rows
                .iter()
                .map(|r| {
                    table
                        .columns
                        .iter()
                        .zip(r)
                        .map(|((name, ty), v)| (name.clone(), to_json(*ty, v)))
                        .collect()
                })
                .collect();
            all.insert(table.name.clone(), rows);
        }
        Ok(all)
    }

    /// Empties the rejection log (the app showed the rejections to the user).
    pub fn clear_rejections(&self, db: &mut Database) -> Result<TableSet> {
        db.execute("DELETE FROM _ferry_rejections", &[])?;
        Ok(TableSet::from_iter([REJECTIONS.to_owned()]))
    }
}

fn rejection_from_row(r: &[Value]) -> Rejection {
    Rejection {
        mutation_id: int(&r[0]),
        name: r[1].text(),
        args: serde_json::from_str(&r[2].text()).unwrap_or(Json::Null),
        code: r[3].text(),
        message: r[4].text(),
        created_at: int(&r[5]),
        rejected_at: int(&r[6]),
    }
}

pub(super) fn int(v: &Value) -> u64 {
    match v {
        Value::Integer(i) => *i as u64,
        _ => 0,
    }
}
