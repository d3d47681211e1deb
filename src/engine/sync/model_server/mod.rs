//! The model server: the protocol's server side over one SQLite database, in
//! process. It is what the reference server does, minus HTTP and Postgres:
//! runs mutators from its own copy of the app definition, checks the write
//! rule on every row a mutator touched (before and after), records each
//! client's last mutation ID in the same transaction, remembers rejections so
//! a retried push gets the same answer, and serves pulls filtered by the
//! read rule from row versions and tombstones. Tests drive it directly, and
//! the reference server (`ferrydb-server`) runs it as its SQLite store, so the
//! seeded simulation proves the same code that serves real clients.
//!
//! Client IDs belong to the user who first used them: a request naming a
//! client or client group of another user is refused (`forbidden`), so no one
//! can push as someone else's client or read its `lastMutationID`s.

mod tables;

use super::error::{Error, Result};
use super::mutator::{compile_all, in_savepoint, CompiledMutator};
use super::schema::{self, INTERNAL_TABLES};
use super::values::{key_from_json, key_to_json, to_json};
use crate::engine::database::Database;
use crate::engine::value::Value;
use ferrydb_protocol::{
    AppDefinition, Cookie, MismatchAction, Mutation, MutationResult, PatchOp, PullOk, PullRequest,
    PullResponse, PushRequest, PushResponse, RejectionCode, Row, SchemaMismatch,
};
use std::collections::{BTreeMap, BTreeSet};
use tables::ServerTable;

pub struct ModelServer {
    db: Database,
    app: AppDefinition,
    tables: Vec<ServerTable>,
    mutators: Vec<CompiledMutator>,
    /// Rows per page of a full sync (`more` pages the rest).
    page_size: usize,
    /// Client groups whose next pull is answered with `resetReplica`.
    reset_demanded: BTreeSet<String>,
}

impl ModelServer {
    /// A server over a fresh in-memory database.
    pub fn new(app: AppDefinition) -> Result<ModelServer> {
        Self::open(Database::open_in_memory()?, app)
    }

    /// A server over `db`: a new database gets ferrydb's tables and the app's;
    /// one a server used before keeps its data. Tables the app added since are
    /// created; a table whose definition changed is refused (`invalid_app`),
    /// since the server cannot migrate data in place.
    pub fn open(mut db: Database, app: AppDefinition) -> Result<ModelServer> {
        app.validate()?;
        let known = !db
            .rows(
                "SELECT 1 FROM sqlite_master WHERE name = '_ferry_version'",
                &[],
            )?
            .rows
            .is_empty();
        in_savepoint(&mut db, "server_open", |db| {
            if !known {
                create_bookkeeping(db)?;
            }
            for table in &app.tables {
                let def = serde_json::to_string(table).expect("a table serializes");
                let key = Value::Text(format!("table:{}", table.name));
                let stored = db.rows(
                    "SELECT value FROM _ferry_meta WHERE key = ?1",
                    std::slice::from_ref(&key),
                )?;
                match stored.rows.first() {
                    Some(r) if text(&r[0]) == def => {}
                    Some(_) => {
                        return Err(Error::InvalidApp(format!(
                            "table `{}` changed since this server's database was created; \
                             migrate the database or start with a new one",
                            table.name
                        )))
                    }
                    None => {
                        let server = ServerTable::new(table);
                        for sql in schema::create_synced(table).iter().chain(&server.create) {
                            db.execute(sql, &[])?;
                        }
                        db.execute(
                            "INSERT INTO _ferry_meta (key, value) VALUES (?1, ?2)",
                            &[key, Value::Text(def)],
                        )?;
                    }
                }
            }
            Ok(())
        })?;
        let tables: Vec<ServerTable> = app.tables.iter().map(ServerTable::new).collect();
        let mutators = compile_all(&mut db, &app)?;
        Ok(ModelServer {
            db,
            app,
            tables,
            mutators,
            page_size: 100,
            reset_demanded: BTreeSet::new(),
        })
    }

    pub fn with_page_size(mut self, rows: usize) -> Self {
        self.page_size = rows.max(1);
        self
    }

    /// Runs `body` (any number of pushes and pulls) in one transaction, so a
    /// file-backed server syncs to disk once for all of them (group commit).
    /// Each push inside still commits or rolls back each mutation on its own
    /// savepoint. Fails if the commit fails: then nothing of `body` is kept.
    pub fn in_transaction<T>(&mut self, body: impl FnOnce(&mut Self) -> T) -> Result<T> {
        self.db.execute("BEGIN IMMEDIATE", &[])?;
        let value = body(self);
        if let Err(e) = self.db.execute("COMMIT", &[]) {
            let _ = self.db.execute("ROLLBACK", &[]);
            return Err(e.into());
        }
        Ok(value)
    }

    /// The server's position: the cookie of a pull that is fully caught up.
    pub fn version(&mut self) -> Result<i64> {
        let rows = self.db.rows("SELECT value FROM _ferry_version", &[])?;
        Ok(integer(&rows.rows[0][0]))
    }

    /// How many times each (client, mutation ID) was processed, applied or
    /// rejected: every entry must be 1.
    pub fn executions(&mut self) -> Result<BTreeMap<(String, u64), u32>> {
        let mut counts = BTreeMap::new();
        for entry in self.mutation_log()? {
            *counts.entry((entry.client_id, entry.id)).or_default() += 1;
        }
        Ok(counts)
    }

    /// Every time the server processed a mutation, in order.
    pub fn mutation_log(&mut self) -> Result<Vec<LoggedMutation>> {
        let rows = self.db.rows(
            "SELECT client_id, mutation_id, name, outcome FROM _ferry_mutation_log ORDER BY seq",
            &[],
        )?;
        Ok(rows
            .rows
            .iter()
            .map(|r| LoggedMutation {
                client_id: text(&r[0]),
                id: integer(&r[1]) as u64,
                name: text(&r[2]),
                outcome: text(&r[3]),
            })
            .collect())
    }

    pub fn last_mutation_id(&mut self, client_id: &str) -> Result<u64> {
        let rows = self.db.rows(
            "SELECT last_mutation_id FROM _ferry_clients WHERE client_id = ?1",
            &[Value::Text(client_id.to_owned())],
        )?;
        Ok(rows.rows.first().map_or(0, |r| integer(&r[0]) as u64))
    }

    /// The mutation IDs of `client_id` the server rejected, with their codes.
    pub fn rejections(&mut self, client_id: &str) -> Result<Vec<(u64, String)>> {
        let rows = self.db.rows(
            "SELECT mutation_id, code FROM _ferry_server_rejections WHERE client_id = ?1 ORDER BY mutation_id",
            &[Value::Text(client_id.to_owned())],
        )?;
        Ok(rows
            .rows
            .iter()
            .map(|r| (integer(&r[0]) as u64, text(&r[1])))
            .collect())
    }

    /// The next pull of this client group is told to reset its replica.
    pub fn demand_reset(&mut self, client_group_id: &str) {
        self.reset_demanded.insert(client_group_id.to_owned());
    }

    /// Every row `user_id` may read, per table, in key order: what a caught-up
    /// replica of that user must hold.
    pub fn readable_rows(&mut self, user_id: &str) -> Result<BTreeMap<String, Vec<Row>>> {
        let mut all = BTreeMap::new();
        for table in &self.tables {
            let params = if table.read_uses_user {
                vec![Value::Text(user_id.to_owned())]
            } else {
                vec![]
            };
            let rows = self.db.rows(&table.read_rows, &params)?;
            all.insert(
                table.sql.name.clone(),
                rows.rows
                    .iter()
                    .map(|r| to_row(&table.sql.columns, r))
                    .collect(),
            );
        }
        Ok(all)
    }

    fn mismatch(&self, client_version: u32) -> Option<SchemaMismatch> {
        SchemaMismatch::between(client_version, self.app.version)
    }

    /// Handles `POST push` for the authenticated `user_id`.
    pub fn push(&mut self, user_id: &str, request: &PushRequest) -> Result<PushResponse> {
        if let Some(m) = self.mismatch(request.schema_version) {
            return Ok(PushResponse::SchemaMismatch(m));
        }
        self.check_owner(user_id, &request.client_id, &request.client_group_id)?;
        // One transaction for the whole push, a savepoint per mutation: each
        // mutation is still all-or-nothing with its `lastMutationID`, and a
        // file-backed database syncs once per push instead of per mutation.
        // A crash loses the whole push, which the client sends again.
        self.db.execute("SAVEPOINT server_push", &[])?;
        let mut results = Vec::new();
        let mut outcome = Ok(());
        for mutation in &request.mutations {
            match self.process(user_id, request, mutation) {
                Ok(Some(result)) => results.push(result),
                // A gap: an earlier mutation has not arrived. Stop; the client resends.
                Ok(None) => break,
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
        }
        match outcome {
            Ok(()) => {
                self.db.execute("RELEASE server_push", &[])?;
                Ok(PushResponse::Ok { results })
            }
            Err(e) => {
                self.db.execute("ROLLBACK TO server_push", &[])?;
                self.db.execute("RELEASE server_push", &[])?;
                Err(e)
            }
        }
    }

    /// Refuses a request that names a client, or a client group, that another
    /// user's requests created.
    fn check_owner(&mut self, user_id: &str, client_id: &str, group_id: &str) -> Result<()> {
        let rows = self.db.rows(
            "SELECT client_id FROM _ferry_clients \
             WHERE (client_id = ?1 OR client_group_id = ?2) AND user_id != ?3 LIMIT 1",
            &[
                Value::Text(client_id.to_owned()),
                Value::Text(group_id.to_owned()),
                Value::Text(user_id.to_owned()),
            ],
        )?;
        match rows.rows.first() {
            Some(_) => Err(Error::Forbidden(format!(
                "client `{client_id}` (group `{group_id}`) belongs to another user"
            ))),
            None => Ok(()),
        }
    }

    fn process(
        &mut self,
        user_id: &str,
        request: &PushRequest,
        mutation: &Mutation,
    ) -> Result<Option<MutationResult>> {
        let client = Value::Text(request.client_id.clone());
        let last = self.last_mutation_id(&request.client_id)?;
        let id = mutation.id;
        if id <= last {
            let rows = self.db.rows(
                "SELECT code, message FROM _ferry_server_rejections WHERE client_id = ?1 AND mutation_id = ?2",
                &[client, Value::Integer(id as i64)],
            )?;
            return Ok(Some(match rows.rows.first() {
                Some(r) => MutationResult::Rejected {
                    id,
                    code: RejectionCode::parse(&text(&r[0])),
                    message: text(&r[1]),
                },
                None => MutationResult::AlreadyProcessed { id },
            }));
        }
        if id > last + 1 {
            return Ok(None);
        }
        let Self {
            db,
            tables,
            mutators,
            ..
        } = self;
        let result = in_savepoint(db, "server_mutation", |db| {
            db.execute("UPDATE _ferry_version SET value = value + 1", &[])?;
            // The run has a savepoint of its own: a rejection rolls back the
            // mutator's effects but keeps the bookkeeping below.
            db.execute("SAVEPOINT server_run", &[])?;
            let outcome = run_checked(db, tables, mutators, user_id, mutation);
            if outcome.is_err() {
                db.execute("ROLLBACK TO server_run", &[])?;
            }
            db.execute("RELEASE server_run", &[])?;
            let result = match outcome {
                Ok(()) => MutationResult::Ok { id },
                Err(Rejected(code, message)) => {
                    db.execute(
                        "INSERT INTO _ferry_server_rejections VALUES (?1, ?2, ?3, ?4)",
                        &[
                            client.clone(),
                            Value::Integer(id as i64),
                            Value::Text(code.as_str().to_owned()),
                            Value::Text(message.clone()),
                        ],
                    )?;
                    MutationResult::Rejected { id, code, message }
                }
            };
            for table in tables.iter() {
                db.execute(
                    &format!("DELETE FROM {}", schema::undo_table(&table.sql.name)),
                    &[],
                )?;
            }
            db.execute(
                "INSERT INTO _ferry_clients VALUES (?1, ?2, ?3, (SELECT value FROM _ferry_version), ?4) \
                 ON CONFLICT (client_id) DO UPDATE SET last_mutation_id = excluded.last_mutation_id, version = excluded.version",
                &[
                    client.clone(),
                    Value::Text(request.client_group_id.clone()),
                    Value::Integer(id as i64),
                    Value::Text(user_id.to_owned()),
                ],
            )?;
            let outcome = match &result {
                MutationResult::Rejected { code, .. } => code.as_str().to_owned(),
                _ => "ok".to_owned(),
            };
            db.execute(
                "INSERT INTO _ferry_mutation_log (client_id, mutation_id, name, outcome) VALUES (?1, ?2, ?3, ?4)",
                &[
                    client,
                    Value::Integer(id as i64),
                    Value::Text(mutation.name.clone()),
                    Value::Text(outcome),
                ],
            )?;
            Ok(result)
        })?;
        Ok(Some(result))
    }

    /// Handles `POST pull` for the authenticated `user_id`.
    pub fn pull(&mut self, user_id: &str, request: &PullRequest) -> Result<PullResponse> {
        if let Some(m) = self.mismatch(request.schema_version) {
            return Ok(PullResponse::SchemaMismatch(m));
        }
        self.check_owner(user_id, &request.client_id, &request.client_group_id)?;
        let version = self.version()?;
        let reset = PullResponse::SchemaMismatch(SchemaMismatch {
            server_schema_version: self.app.version,
            action: MismatchAction::ResetReplica,
        });
        if request.cookie.is_some() && self.reset_demanded.remove(&request.client_group_id) {
            return Ok(reset);
        }
        let user = Value::Text(user_id.to_owned());
        let (since, patch, cookie, more) = match &request.cookie {
            Some(Cookie::Integer(since)) if *since > version => return Ok(reset),
            Some(Cookie::Integer(since)) => (
                *since,
                self.changes_since(&user, *since)?,
                Cookie::Integer(version),
                false,
            ),
            None => self.full_page(&user, version, 0, None)?,
            Some(Cookie::Text(cursor)) => match parse_cursor(cursor) {
                // A cursor this server could have written: its table exists
                // and its key has that table's key columns (else the next
                // page's query would not bind, or would end the sync early).
                Some((at, table, after))
                    if at <= version
                        && self
                            .tables
                            .get(table)
                            .is_some_and(|t| t.sql.key.len() == after.len()) =>
                {
                    self.full_page(&user, at, table, Some(after))?
                }
                _ => return Ok(reset),
            },
        };
        let rows = self.db.rows(
            "SELECT client_id, last_mutation_id FROM _ferry_clients WHERE client_group_id = ?1 AND version > ?2",
            &[Value::Text(request.client_group_id.clone()), Value::Integer(since)],
        )?;
        let last_mutation_id_changes = rows
            .rows
            .iter()
            .map(|r| (text(&r[0]), integer(&r[1]) as u64))
            .collect();
        Ok(PullResponse::Ok(PullOk {
            cookie,
            last_mutation_id_changes,
            patch,
            more,
        }))
    }

    fn changes_since(&mut self, user: &Value, since: i64) -> Result<Vec<PatchOp>> {
        let mut patch = Vec::new();
        for table in &self.tables {
            let rows = self
                .db
                .rows(&table.changes, &[user.clone(), Value::Integer(since)])?;
            let key_len = table.sql.key.len();
            for r in &rows.rows {
                let name = table.sql.name.clone();
                if integer(&r[key_len]) == 1 {
                    patch.push(PatchOp::Put {
                        table: name,
                        row: to_row(&table.sql.columns, &r[key_len + 1..]),
                    });
                } else {
                    patch.push(PatchOp::Del {
                        table: name,
                        key: to_row(&table.sql.key, &r[..key_len]),
                    });
                }
            }
        }
        Ok(patch)
    }

    /// One page of a full sync of the state at `at`, resuming in table
    /// `table` after key `after`. Rows changed after `at` may already show
    /// here; the final cookie is `at`, so the next pull sends them again
    /// (harmless) along with any rows deleted meanwhile.
    fn full_page(
        &mut self,
        user: &Value,
        at: i64,
        mut table: usize,
        mut after: Option<Vec<Value>>,
    ) -> Result<(i64, Vec<PatchOp>, Cookie, bool)> {
        let mut patch = if after.is_none() && table == 0 {
            vec![PatchOp::Clear]
        } else {
            vec![]
        };
        let mut room = self.page_size;
        while table < self.tables.len() && room > 0 {
            let t = &self.tables[table];
            let mut params = vec![user.clone()];
            let sql = match &after {
                Some(key) => {
                    params.extend(key.iter().cloned());
                    &t.next_page
                }
                None => &t.first_page,
            };
            params.push(Value::Integer(room as i64));
            let rows = self.db.rows(sql, &params)?;
            room -= rows.rows.len();
            for r in &rows.rows {
                patch.push(PatchOp::Put {
                    table: t.sql.name.clone(),
                    row: to_row(&t.sql.columns, r),
                });
            }
            if room == 0 {
                let last = rows.rows.last().expect("a full page has rows");
                let key = t.sql.key.iter().map(|(k, _)| {
                    let i = t
                        .sql
                        .columns
                        .iter()
                        .position(|(c, _)| c == k)
                        .expect("key column");
                    last[i].clone()
                });
                after = Some(key.collect());
            } else {
                table += 1;
                after = None;
            }
        }
        if table >= self.tables.len() {
            return Ok((-1, patch, Cookie::Integer(at), false));
        }
        let key: Vec<serde_json::Value> =
            after.unwrap_or_default().iter().map(key_to_json).collect();
        let cursor = format!("full:{at}:{table}:{}", serde_json::Value::Array(key));
        Ok((-1, patch, Cookie::Text(cursor), true))
    }
}

/// One entry of the server's mutation log.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LoggedMutation {
    #[serde(rename = "clientID")]
    pub client_id: String,
    pub id: u64,
    pub name: String,
    /// `ok`, or the rejection code.
    pub outcome: String,
}

/// The server's own tables: the version counter, each client's last mutation
/// ID (and its owner), remembered rejections and the mutation log.
fn create_bookkeeping(db: &mut Database) -> Result<()> {
    for sql in INTERNAL_TABLES {
        db.execute(sql, &[])?;
    }
    // The undo log records what each mutator touched, for the write rule.
    db.execute(
        "INSERT INTO _ferry_meta (key, value) VALUES ('recording', 1)",
        &[],
    )?;
    for sql in [
        "CREATE TABLE _ferry_version (id INTEGER PRIMARY KEY CHECK (id = 1), value INTEGER NOT NULL)",
        "INSERT INTO _ferry_version VALUES (1, 0)",
        "CREATE TABLE _ferry_clients (client_id TEXT PRIMARY KEY, client_group_id TEXT NOT NULL, \
         last_mutation_id INTEGER NOT NULL, version INTEGER NOT NULL, user_id TEXT NOT NULL)",
        "CREATE INDEX _ferry_clients_group ON _ferry_clients (client_group_id)",
        "CREATE TABLE _ferry_server_rejections (client_id TEXT NOT NULL, mutation_id INTEGER NOT NULL, \
         code TEXT NOT NULL, message TEXT NOT NULL, PRIMARY KEY (client_id, mutation_id))",
        "CREATE TABLE _ferry_mutation_log (seq INTEGER PRIMARY KEY, client_id TEXT NOT NULL, \
         mutation_id INTEGER NOT NULL, name TEXT NOT NULL, outcome TEXT NOT NULL)",
    ] {
        db.execute(sql, &[])?;
    }
    Ok(())
}

/// Why a mutation was rejected (the server-side outcome, not an error of the server).
struct Rejected(RejectionCode, String);

impl From<Error> for Rejected {
    fn from(e: Error) -> Self {
        match e {
            Error::UnknownMutator(_) => Rejected(RejectionCode::UnknownMutator, e.to_string()),
            Error::BadArguments { .. } => Rejected(RejectionCode::BadArguments, e.to_string()),
            other => Rejected(RejectionCode::MutatorFailed, other.to_string()),
        }
    }
}

fn run_checked(
    db: &mut Database,
    tables: &[ServerTable],
    mutators: &[CompiledMutator],
    user_id: &str,
    mutation: &Mutation,
) -> Result<(), Rejected> {
    let mutator = mutators
        .iter()
        .find(|m| m.def.name == mutation.name)
        .ok_or_else(|| Error::UnknownMutator(mutation.name.clone()))?;
    let values = mutator.bind(&mutation.args)?;
    mutator.run(db, &values)?;
    for table in tables {
        let params = if table.write_uses_user {
            vec![Value::Text(user_id.to_owned())]
        } else {
            vec![]
        };
        for sql in &table.write_violations {
            let rows = db.rows(sql, &params).map_err(Error::from)?;
            if integer(&rows.rows[0][0]) != 0 {
                return Err(Rejected(
                    RejectionCode::Forbidden,
                    format!(
                        "the write rule of `{}` does not allow this change for user {user_id}",
                        table.sql.name
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn parse_cursor(cursor: &str) -> Option<(i64, usize, Vec<Value>)> {
    let mut parts = cursor.splitn(4, ':');
    if parts.next()? != "full" {
        return None;
    }
    let at = parts.next()?.parse().ok()?;
    let table = parts.next()?.parse().ok()?;
    let key: Vec<serde_json::Value> = serde_json::from_str(parts.next()?).ok()?;
    let key = key.iter().map(key_from_json).collect::<Option<Vec<_>>>()?;
    Some((at, table, key))
}

fn to_row(columns: &[(String, ferrydb_protocol::ColumnType)], values: &[Value]) -> Row {
    columns
        .iter()
        .zip(values)
        .map(|((name, ty), v)| (name.clone(), to_json(*ty, v)))
        .collect()
}

fn integer(v: &Value) -> i64 {
    match v {
        Value::Integer(i) => *i,
        _ => 0,
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::Text(t) => t.clone(),
        _ => String::new(),
    }
}
