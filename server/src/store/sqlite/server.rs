//! [`SqliteServer`]: the sync core over one SQLite connection, in process
//! and synchronous. The store thread (`mod.rs`) serves HTTP requests with it;
//! the SDK's tests and the seeded simulation sync against it directly, so
//! what they prove is what serves clients.
//!
//! Client IDs belong to the user who first used them: a request naming a
//! client or client group of another user is refused (`forbidden`), so no one
//! can push as someone else's client or read its `lastMutationID`s.

use super::schema::{
    bookkeeping, undo_leftovers, SqliteTable, WriteCheck, DIALECT, LAYOUT, LAYOUT_1_LEFTOVERS,
};
use crate::store::evolve::{evolve, served_apps, Mode, Plan, SchemaTx};
use crate::store::table_text::{
    meta_key, part_count, part_rows, part_select, part_select_written, processed_clients,
    row_by_key, tables_touched, view_tables, written_keys, ViewText,
};
use crate::store::LoggedMutation;
use crate::sync::{
    self, pull_subscribed, push_mutations, ready, Call, Change, ClientState, HeldRow, Holder,
    LazyTx, Listener, Page, PartRows, PatchedRows, Processed, PullTx, PushTx, Rejected, Result,
    RouteTx, Selected, StoreError, Versions, ViewHead, ViewTx, Who,
};
use ferrydb_protocol::sql::Placeholders;
use ferrydb_protocol::values::to_json;
use ferrydb_protocol::{
    AppDefinition, ColumnType, PullRequest, PullResponse, PushRequest, PushResponse, RejectionCode,
    Row, Table, Value, PROTOCOL_VERSION_SUBSCRIPTIONS,
};
use rusqlite::{params_from_iter, Connection, OptionalExtension};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

/// Per served schema version and mutator: each statement with, per
/// placeholder, the index of the declared parameter it binds.
type Mutators = BTreeMap<(u32, String), Vec<(String, Vec<usize>)>>;

pub struct SqliteServer {
    conn: Connection,
    versions: Versions,
    tables: Vec<SqliteTable>,
    /// Per table, in the order of `tables`.
    write_checks: Vec<WriteCheck>,
    mutators: Mutators,
    /// Per query of the app and part: the statement selecting its rows.
    parts: Vec<Vec<String>>,
    /// Per query of the app and part: the statement selecting its rows
    /// among those written after a version (poke routing).
    written_parts: Vec<Vec<String>>,
    /// Per table: the keys written after a version.
    written: Vec<String>,
    /// Per table: a row by key.
    by_key: Vec<String>,
    view: ViewText,
    /// Rows per page of a full sync (`more` pages the rest).
    page_size: usize,
    /// Client groups whose next pull is answered with `resetReplica`.
    reset_demanded: BTreeSet<String>,
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Internal(e.to_string())
    }
}

impl SqliteServer {
    /// A server over a fresh in-memory database.
    pub fn new(app: AppDefinition) -> Result<SqliteServer> {
        Self::open(Connection::open_in_memory()?, app)
    }

    /// A server over `conn`: a new database gets the bookkeeping and the
    /// app's tables; one a server used before keeps its data, and gets the
    /// additive changes of the app since (`evolve`) in the same transaction.
    /// A breaking change is refused (`InvalidApp`): `migrate` applies it.
    pub fn open(conn: Connection, app: AppDefinition) -> Result<SqliteServer> {
        app.validate()
            .map_err(|e| StoreError::InvalidApp(e.to_string()))?;
        let tables: Vec<SqliteTable> = app.tables.iter().map(SqliteTable::new).collect();
        let write_checks: Vec<WriteCheck> = app
            .tables
            .iter()
            .map(|table| WriteCheck::new(table, &app.tables))
            .collect();
        let recorded = schema_transaction(&conn, &app, Mode::Start)?.1;
        let versions = Versions::new(app, recorded);
        // Every statement the server runs stays prepared: a handful per
        // table, the bookkeeping and the view's, each served mutator's and
        // each query part's (rusqlite keeps 16).
        let mutators: usize = versions.all().map(|v| v.app.mutators.len()).sum();
        let parts: usize = versions
            .current()
            .app
            .queries
            .iter()
            .map(|q| q.parts.len())
            .sum();
        conn.set_prepared_statement_cache_capacity(
            16 + 10 * tables.len() + mutators * 4 + 5 * parts,
        );
        let mutators = compile(&conn, &versions)?;
        // A rule the validation let through but SQLite cannot run (a
        // syntax error in a subquery) refuses the app now, naming its table,
        // rather than failing every mutation later.
        for (check, table) in write_checks.iter().zip(&versions.current().app.tables) {
            if let Err(e) = conn.prepare_cached(&check.sql) {
                return Err(StoreError::InvalidApp(format!(
                    "write rule of table `{}`: {e}",
                    table.name
                )));
            }
        }
        let parts = compile_queries(&conn, &versions.current().app)?;
        let app = &versions.current().app;
        let written_parts = app
            .queries
            .iter()
            .map(|query| {
                query
                    .parts
                    .iter()
                    .map(|part| {
                        let statement = part.statement();
                        let since = format!("?{}", statement.params.len() + 1);
                        let table = app.table(&part.table).expect("validated: a synced table");
                        part_select_written(
                            table,
                            &statement.render(Placeholders::Question),
                            &since,
                            None,
                        )
                    })
                    .collect()
            })
            .collect();
        let written = app.tables.iter().map(|t| written_keys(t, '?')).collect();
        let by_key = versions
            .current()
            .app
            .tables
            .iter()
            .map(|t| row_by_key(t, '?'))
            .collect();
        Ok(SqliteServer {
            conn,
            versions,
            tables,
            write_checks,
            mutators,
            parts,
            written_parts,
            written,
            by_key,
            view: ViewText::new('?', &DIALECT),
            page_size: 100,
            reset_demanded: BTreeSet::new(),
        })
    }

    /// `ferrydb-server migrate`: the steps from the database's tables to
    /// `app`'s, applied (breaking ones included) when `apply`.
    pub fn migrate(conn: &Connection, app: &AppDefinition, apply: bool) -> Result<Plan> {
        app.validate()
            .map_err(|e| StoreError::InvalidApp(e.to_string()))?;
        let mode = if apply { Mode::Apply } else { Mode::Plan };
        Ok(schema_transaction(conn, app, mode)?.0)
    }

    pub fn with_page_size(mut self, rows: usize) -> Self {
        self.page_size = rows.max(1);
        self
    }

    /// Runs `body` (any number of pushes and pulls) in one transaction, so a
    /// file-backed server syncs to disk once for all of them (group commit).
    /// Each push inside still commits or rolls back on its own savepoint.
    /// Fails if the commit fails: then nothing of `body` is kept.
    pub fn in_transaction<T>(&mut self, body: impl FnOnce(&mut Self) -> T) -> Result<T> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        let value = body(self);
        if let Err(e) = self.conn.execute_batch("COMMIT") {
            let _ = self.conn.execute_batch("ROLLBACK");
            return Err(e.into());
        }
        Ok(value)
    }

    /// Handles `POST push` for the authenticated `user_id`: the whole push
    /// in one savepoint (a store error keeps nothing of it; the client sends
    /// it again).
    pub fn push(&mut self, user_id: &str, request: &PushRequest) -> Result<PushResponse> {
        let served = match self.versions.serve(request.schema_version) {
            Ok(served) => served,
            Err(m) => return Ok(PushResponse::SchemaMismatch(m)),
        };
        self.conn.execute_batch("SAVEPOINT server_push")?;
        let chunk = ready(push_mutations(
            &*self,
            &served.app,
            user_id,
            request,
            0,
            usize::MAX,
        ));
        match chunk {
            Ok(chunk) => {
                self.conn.execute_batch("RELEASE server_push")?;
                Ok(PushResponse::Ok {
                    results: chunk.results,
                })
            }
            Err(e) => {
                self.conn
                    .execute_batch("ROLLBACK TO server_push; RELEASE server_push")?;
                Err(e)
            }
        }
    }

    /// Handles `POST pull` for the authenticated `user_id`.
    pub fn pull(&mut self, user_id: &str, request: &PullRequest) -> Result<PullResponse> {
        let current = self.versions.current().app.version;
        if request.cookie.is_some()
            && request.schema_version == current
            && self.reset_demanded.remove(&request.client_group_id)
        {
            return Ok(sync::reset(current));
        }
        if request.protocol_version == PROTOCOL_VERSION_SUBSCRIPTIONS {
            // The view is written: a pull that fails keeps none of it (the
            // store thread's transaction commits its other jobs).
            self.conn.execute_batch("SAVEPOINT server_pull")?;
            let answer = ready(pull_subscribed(
                &*self,
                &self.versions,
                self.page_size,
                user_id,
                request,
            ));
            let end = match answer {
                Ok(_) => "RELEASE server_pull",
                Err(_) => "ROLLBACK TO server_pull; RELEASE server_pull",
            };
            self.conn.execute_batch(end)?;
            return answer;
        }
        ready(sync::pull(
            &*self,
            &self.versions,
            self.page_size,
            user_id,
            request,
        ))
    }

    /// The synced tables with a row written at a version in `(from, to]`:
    /// what the pushes between those versions touched.
    pub fn tables_touched(&self, from: i64, to: i64) -> Result<BTreeSet<String>> {
        let app = &self.versions.current().app;
        if app.tables.is_empty() || from >= to {
            return Ok(BTreeSet::new());
        }
        let mut statement = self
            .conn
            .prepare_cached(&tables_touched(&app.tables, '?'))?;
        let names = statement.query_map([from, to], |r| r.get::<_, String>(0))?;
        Ok(names.collect::<Result<_, _>>()?)
    }

    /// See `Store::route`.
    pub fn route(&self, since: i64, listeners: &[Listener]) -> Result<BTreeSet<Listener>> {
        ready(sync::route(self, &self.versions, since, listeners))
    }

    /// See `Store::group_reads`.
    pub fn group_reads(&self, user_id: &str, group_id: &str) -> Result<BTreeSet<String>> {
        let view = self
            .conn
            .prepare_cached(&self.view.reads)?
            .query_row([group_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        sync::group_reads(&self.versions.current().app, user_id, group_id, view)
    }

    /// The server's position: the cookie of a pull that is fully caught up.
    pub fn version(&self) -> Result<i64> {
        Ok(self
            .conn
            .query_row("SELECT value FROM _ferry_version", [], |r| r.get(0))?)
    }

    /// Every time the server processed a mutation, in order.
    pub fn mutation_log(&self) -> Result<Vec<LoggedMutation>> {
        let mut statement = self.conn.prepare_cached(
            "SELECT client_id, mutation_id, name, outcome FROM _ferry_mutation_log ORDER BY seq",
        )?;
        let rows = statement.query_map([], |r| {
            Ok(LoggedMutation {
                client_id: r.get(0)?,
                id: r.get::<_, i64>(1)? as u64,
                name: r.get(2)?,
                outcome: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// How many times each (client, mutation ID) was processed, applied or
    /// rejected: every entry must be 1.
    pub fn executions(&self) -> Result<BTreeMap<(String, u64), u32>> {
        let mut counts = BTreeMap::new();
        for entry in self.mutation_log()? {
            *counts.entry((entry.client_id, entry.id)).or_default() += 1;
        }
        Ok(counts)
    }

    pub fn last_mutation_id(&self, client_id: &str) -> Result<u64> {
        Ok(ready(self.client_state(Who {
            user_id: "",
            client_id,
            group_id: "",
        }))?
        .last_mutation_id)
    }

    /// The mutation IDs of `client_id` the server rejected, with their codes.
    pub fn rejections(&self, client_id: &str) -> Result<Vec<(u64, String)>> {
        let mut statement = self.conn.prepare_cached(
            "SELECT mutation_id, code FROM _ferry_server_rejections WHERE client_id = ?1 ORDER BY mutation_id",
        )?;
        let rows = statement.query_map([client_id], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get::<_, String>(1)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The next pull of this client group (with a cookie) is told to reset
    /// its replica, as after a restore from a backup.
    pub fn demand_reset(&mut self, client_group_id: &str) {
        self.reset_demanded.insert(client_group_id.to_owned());
    }

    /// Every row `user_id` may read, per table, in key order: what a
    /// caught-up replica of that user must hold.
    pub fn readable_rows(&self, user_id: &str) -> Result<BTreeMap<String, Vec<Row>>> {
        let mut all = BTreeMap::new();
        for (table, shape) in self.tables.iter().zip(&self.versions.current().shapes) {
            let user = table.read_uses_user.then_some(user_id);
            let rows = self.rows(&table.readable, params_from_iter(user), &shape.columns, 0)?;
            all.insert(shape.name.clone(), rows);
        }
        Ok(all)
    }

    /// Runs `sql` and converts each row's columns from `start` on to a wire row.
    fn rows(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        columns: &[(String, ColumnType)],
        start: usize,
    ) -> Result<Vec<Row>> {
        let mut statement = self.conn.prepare_cached(sql)?;
        let rows = statement.query_map(params, |r| wire_row(r, start, columns))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn state(&self, who: Who<'_>) -> Result<ClientState> {
        let mut statement = self.conn.prepare_cached(
            "SELECT (SELECT last_mutation_id FROM _ferry_clients WHERE client_id = ?1), \
             EXISTS (SELECT 1 FROM _ferry_clients \
                     WHERE (client_id = ?1 OR client_group_id = ?2) AND user_id != ?3)",
        )?;
        Ok(
            statement.query_row([who.client_id, who.group_id, who.user_id], |r| {
                Ok(ClientState {
                    last_mutation_id: r.get::<_, Option<i64>>(0)?.unwrap_or(0) as u64,
                    foreign: r.get(1)?,
                })
            })?,
        )
    }

    /// Runs a mutator's statements, then every table's write-rule check.
    fn run_checked(&self, user_id: &str, call: Call<'_>) -> Result<Result<(), Rejected>> {
        let Call {
            schema_version,
            mutator,
            args,
        } = call;
        let statements = &self.mutators[&(schema_version, mutator.name.clone())];
        for (sql, indexes) in statements {
            let bound = indexes.iter().map(|&i| &args[i]);
            let mut statement = self.conn.prepare_cached(sql)?;
            if let Err(e) = statement.execute(params_from_iter(bound)) {
                return Ok(Err(Rejected::failed(&mutator.name, e)));
            }
        }
        for (check, shape) in self
            .write_checks
            .iter()
            .zip(&self.versions.current().shapes)
        {
            let user = check.uses_user.then_some(user_id);
            let mut statement = self.conn.prepare_cached(&check.sql)?;
            // A rule that fails at run time (a type error on this row) is
            // the mutation's failure, as on Postgres.
            match statement.query_row(params_from_iter(user), |r| r.get::<_, bool>(0)) {
                Ok(false) => {}
                Ok(true) => return Ok(Err(Rejected::forbidden(&shape.name, user_id))),
                Err(e) => return Ok(Err(Rejected::failed(&mutator.name, e))),
            }
        }
        Ok(Ok(()))
    }
}

impl PushTx for SqliteServer {
    async fn client_state(&self, who: Who<'_>) -> Result<ClientState> {
        self.state(who)
    }

    /// The store thread's transaction is `BEGIN IMMEDIATE`: it already holds
    /// SQLite's one write lock.
    async fn lock(&self, who: Who<'_>) -> Result<ClientState> {
        self.state(who)
    }

    async fn rejection(&self, client_id: &str, mutation_id: u64) -> Result<Option<Rejected>> {
        let mut statement = self.conn.prepare_cached(
            "SELECT code, message FROM _ferry_server_rejections WHERE client_id = ?1 AND mutation_id = ?2",
        )?;
        Ok(statement
            .query_row(rusqlite::params![client_id, mutation_id as i64], |r| {
                Ok(Rejected {
                    code: RejectionCode::parse(&r.get::<_, String>(0)?),
                    message: r.get(1)?,
                })
            })
            .optional()?)
    }

    async fn run(
        &self,
        user_id: &str,
        call: Option<Call<'_>>,
    ) -> Result<(i64, Result<(), Rejected>)> {
        let version: i64 = self.conn.query_row(
            "UPDATE _ferry_version SET value = value + 1 RETURNING value",
            [],
            |r| r.get(0),
        )?;
        let Some(call) = call else {
            return Ok((version, Ok(())));
        };
        // The run has a savepoint of its own: a rejection rolls back the
        // mutator's effects but keeps the version and the bookkeeping.
        self.conn.execute_batch("SAVEPOINT server_run")?;
        let outcome = self.run_checked(user_id, call)?;
        if outcome.is_err() {
            self.conn.execute_batch("ROLLBACK TO server_run")?;
        }
        self.conn.execute_batch("RELEASE server_run")?;
        Ok((version, outcome))
    }

    async fn finish(&self, processed: Processed<'_>) -> Result<()> {
        for table in &self.tables {
            self.conn
                .prepare_cached(&table.clear_touched)?
                .execute([])?;
        }
        let who = processed.who;
        let id = processed.mutation_id as i64;
        self.conn
            .prepare_cached(
                "INSERT INTO _ferry_clients VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (client_id) DO UPDATE \
                 SET last_mutation_id = excluded.last_mutation_id, version = excluded.version",
            )?
            .execute(rusqlite::params![
                who.client_id,
                who.group_id,
                id,
                processed.version,
                who.user_id
            ])?;
        let outcome = processed.rejected.map_or("ok", |r| r.code.as_str());
        self.conn
            .prepare_cached(
                "INSERT INTO _ferry_mutation_log (client_id, mutation_id, name, outcome) \
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(rusqlite::params![
                who.client_id,
                id,
                processed.name,
                outcome
            ])?;
        if let Some(rejected) = processed.rejected {
            self.conn
                .prepare_cached("INSERT INTO _ferry_server_rejections VALUES (?1, ?2, ?3, ?4)")?
                .execute(rusqlite::params![
                    who.client_id,
                    id,
                    rejected.code.as_str(),
                    rejected.message
                ])?;
        }
        Ok(())
    }
}

impl PullTx for SqliteServer {
    async fn state(&self, who: Who<'_>) -> Result<(i64, bool)> {
        Ok((self.version()?, SqliteServer::state(self, who)?.foreign))
    }

    async fn changes(&self, table: usize, user_id: &str, since: i64) -> Result<Vec<Change>> {
        let shape = &self.versions.current().shapes[table];
        let key_len = shape.key.len();
        let mut statement = self.conn.prepare_cached(&self.tables[table].changes)?;
        let rows = statement.query_map(rusqlite::params![user_id, since], |r| {
            Ok(if r.get::<_, Option<bool>>(key_len)? == Some(true) {
                Change::Put(wire_row(r, key_len + 1, &shape.columns)?)
            } else {
                Change::Del(wire_row(r, 0, &shape.key)?)
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    async fn page(&self, page: Page<'_>) -> Result<Vec<Row>> {
        let Page {
            table,
            user_id,
            after,
            limit,
        } = page;
        let sql = match after {
            Some(_) => &self.tables[table].next_page,
            None => &self.tables[table].first_page,
        };
        let mut params = vec![Value::Text(user_id.to_owned())];
        params.extend(after.unwrap_or_default().iter().cloned());
        params.push(Value::Integer(limit as i64));
        self.rows(
            sql,
            params_from_iter(params),
            &self.versions.current().shapes[table].columns,
            0,
        )
    }

    async fn changed_clients(&self, group_id: &str, since: i64) -> Result<BTreeMap<String, u64>> {
        let mut statement = self.conn.prepare_cached(
            "SELECT client_id, last_mutation_id FROM _ferry_clients \
             WHERE client_group_id = ?1 AND version > ?2",
        )?;
        let rows = statement.query_map(rusqlite::params![group_id, since], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

impl ViewTx for SqliteServer {
    /// The store thread's transaction (`BEGIN IMMEDIATE`) already holds
    /// SQLite's one write lock: the view is this pull's alone.
    async fn open_view(&self, group_id: &str, user_id: &str) -> Result<ViewHead> {
        self.conn
            .prepare_cached(&self.view.create)?
            .execute([group_id, user_id])?;
        let mut head = self.conn.prepare_cached(&self.view.head)?;
        Ok(head.query_row([group_id], |r| {
            Ok(ViewHead {
                version: r.get(0)?,
                user_id: r.get(1)?,
                clients: r.get(2)?,
                subscriptions: r.get(3)?,
            })
        })?)
    }

    async fn select(&self, query: usize, part: usize, params: &[Value]) -> Result<Vec<Selected>> {
        let app = &self.versions.current().app;
        let table = app
            .tables
            .iter()
            .position(|t| t.name == app.queries[query].parts[part].table)
            .expect("validated: a part's table is synced");
        let key = &self.versions.current().shapes[table].key;
        let mut statement = self.conn.prepare_cached(&self.parts[query][part])?;
        let rows = statement.query_map(params_from_iter(params), |r| {
            Ok((wire_row(r, 0, key)?, r.get(key.len())?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    async fn held(&self, group_id: &str) -> Result<Vec<HeldRow>> {
        let mut statement = self.conn.prepare_cached(&self.view.held)?;
        let rows = statement.query_map([group_id], held_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    async fn record(
        &self,
        group_id: &str,
        head: &ViewHead,
        subscriptions: &str,
        rows: &[HeldRow],
    ) -> Result<()> {
        self.conn
            .prepare_cached(&self.view.update_head)?
            .execute(rusqlite::params![
                group_id,
                head.version,
                subscriptions,
                head.clients
            ])?;
        // Many rows a statement: an initial sync records every row it sends.
        for chunk in rows.chunks(VIEW_ROWS_PER_STATEMENT) {
            let mut upsert = self
                .conn
                .prepare_cached(&self.view.upsert_rows(chunk.len()))?;
            // Bound by reference: no copy of a row's text.
            let params = chunk.iter().flat_map(|row| -> [&dyn rusqlite::ToSql; 6] {
                [
                    &group_id,
                    &row.table,
                    &row.key,
                    &row.row_version,
                    &row.patch_version,
                    &row.present,
                ]
            });
            upsert.execute(params_from_iter(params))?;
        }
        Ok(())
    }

    async fn patched(&self, rows: PatchedRows<'_>) -> Result<Vec<HeldRow>> {
        let mut statement = self.conn.prepare_cached(&self.view.patched)?;
        let found = statement.query_map(
            rusqlite::params![
                rows.group_id,
                rows.table,
                rows.after,
                rows.at,
                rows.base,
                rows.present_only,
                rows.limit as i64
            ],
            held_row,
        )?;
        Ok(found.collect::<Result<_, _>>()?)
    }

    async fn paging(&self, group_id: &str) -> Result<Option<String>> {
        let mut statement = self.conn.prepare_cached(&self.view.paging)?;
        Ok(statement.query_row([group_id], |r| r.get(0)).optional()?)
    }

    async fn record_paging(&self, group_id: &str, paging: &str) -> Result<()> {
        self.conn
            .prepare_cached(&self.view.record_paging)?
            .execute([group_id, paging])?;
        Ok(())
    }

    async fn touched(&self, from: i64, to: i64) -> Result<BTreeSet<String>> {
        self.tables_touched(from, to)
    }

    async fn floor(&self, group_id: &str) -> Result<i64> {
        let mut statement = self.conn.prepare_cached(&self.view.floor)?;
        let floor = statement.query_row([group_id], |r| r.get(0)).optional()?;
        Ok(floor.unwrap_or(0))
    }

    async fn prune(&self, group_id: &str, through: i64) -> Result<()> {
        self.conn
            .prepare_cached(&self.view.prune)?
            .execute(rusqlite::params![group_id, through])?;
        self.conn
            .prepare_cached(&self.view.record_floor)?
            .execute(rusqlite::params![group_id, through])?;
        Ok(())
    }

    async fn rows(&self, table: usize, keys: &[Vec<Value>]) -> Result<Vec<Row>> {
        let columns = &self.versions.current().shapes[table].columns;
        let mut statement = self.conn.prepare_cached(&self.by_key[table])?;
        let mut found = Vec::with_capacity(keys.len());
        for key in keys {
            let row = statement
                .query_row(params_from_iter(key), |r| wire_row(r, 0, columns))
                .optional()?;
            found.extend(row);
        }
        Ok(found)
    }
}

impl SqliteServer {
    /// The app's query part `part` of `query`: its table and condition
    /// (rendered for SQLite) and its number of placeholders.
    fn part_text(&self, query: usize, part: usize) -> (&Table, String, usize) {
        let app = &self.versions.current().app;
        let part = &app.queries[query].parts[part];
        let table = app
            .table(&part.table)
            .expect("validated: a part's table is synced");
        let statement = part.statement();
        let condition = statement.render(Placeholders::Question);
        (table, condition, statement.params.len())
    }
}

impl LazyTx for SqliteServer {
    async fn count(&self, query: usize, part: usize, params: &[Value]) -> Result<u64> {
        let (table, condition, _) = self.part_text(query, part);
        let mut statement = self.conn.prepare_cached(&part_count(table, &condition))?;
        let count: i64 = statement.query_row(params_from_iter(params), |r| r.get(0))?;
        Ok(count as u64)
    }

    async fn part_rows(&self, rows: PartRows<'_>) -> Result<Vec<(Row, i64)>> {
        let (table, condition, count) = self.part_text(rows.query, rows.part);
        let index = self
            .versions
            .current()
            .app
            .tables
            .iter()
            .position(|t| t.name == table.name)
            .expect("a part's table is served");
        let columns = &self.versions.current().shapes[index].columns;
        let sql = part_rows(table, &condition, count, rows.after.is_some(), '?');
        let mut statement = self.conn.prepare_cached(&sql)?;
        let bound = rows
            .params
            .iter()
            .chain(rows.after.unwrap_or_default())
            .cloned()
            .chain([Value::Integer(rows.limit as i64)]);
        let found = statement.query_map(params_from_iter(bound), |r| {
            Ok((wire_row(r, 0, columns)?, r.get(columns.len())?))
        })?;
        Ok(found.collect::<Result<_, _>>()?)
    }

    /// Compared here as SQLite compares the keys: integers by value, text
    /// bytewise (`BINARY`), column by column.
    async fn keys_after(
        &self,
        _table: usize,
        keys: &[Vec<Value>],
        after: &[Value],
    ) -> Result<Vec<bool>> {
        let order = |a: &Value, b: &Value| match (a, b) {
            (Value::Integer(a), Value::Integer(b)) => a.cmp(b),
            (Value::Text(a), Value::Text(b)) => a.as_bytes().cmp(b.as_bytes()),
            (Value::Integer(_), _) => std::cmp::Ordering::Less,
            (_, Value::Integer(_)) => std::cmp::Ordering::Greater,
            _ => std::cmp::Ordering::Equal,
        };
        Ok(keys
            .iter()
            .map(|key| {
                key.iter()
                    .zip(after)
                    .map(|(a, b)| order(a, b))
                    .find(|o| o.is_ne())
                    .is_some_and(|o| o.is_gt())
            })
            .collect())
    }

    async fn record_sent(&self, group_id: &str, rows: &[HeldRow]) -> Result<()> {
        // A page records thousands of rows: the full statement's text is
        // made once, not per chunk.
        static FULL: LazyLock<String> = LazyLock::new(|| {
            ViewText::new('?', &DIALECT).upsert_sent_rows(VIEW_ROWS_PER_STATEMENT)
        });
        for chunk in rows.chunks(VIEW_ROWS_PER_STATEMENT) {
            let text = match chunk.len() {
                VIEW_ROWS_PER_STATEMENT => None,
                n => Some(self.view.upsert_sent_rows(n)),
            };
            let mut upsert = self.conn.prepare_cached(text.as_deref().unwrap_or(&FULL))?;
            let params = chunk.iter().flat_map(|row| -> [&dyn rusqlite::ToSql; 6] {
                [
                    &group_id,
                    &row.table,
                    &row.key,
                    &row.row_version,
                    &row.patch_version,
                    &row.present,
                ]
            });
            upsert.execute(params_from_iter(params))?;
        }
        Ok(())
    }

    async fn forget(&self, group_id: &str) -> Result<()> {
        self.conn
            .prepare_cached(&self.view.forget)?
            .execute([group_id])?;
        Ok(())
    }
}

impl RouteTx for SqliteServer {
    async fn views(&self, groups: &[String]) -> Result<Vec<(String, ViewHead)>> {
        let mut statement = self.conn.prepare_cached(&self.view.head)?;
        let mut views = Vec::with_capacity(groups.len());
        for group in groups {
            let view = statement
                .query_row([group], |r| {
                    Ok(ViewHead {
                        version: r.get(0)?,
                        user_id: r.get(1)?,
                        clients: r.get(2)?,
                        subscriptions: r.get(3)?,
                    })
                })
                .optional()?;
            views.extend(view.map(|head| (group.clone(), head)));
        }
        Ok(views)
    }

    async fn written(&self, table: usize, since: i64) -> Result<Vec<Selected>> {
        let key = &self.versions.current().shapes[table].key;
        let mut statement = self.conn.prepare_cached(&self.written[table])?;
        let rows =
            statement.query_map([since], |r| Ok((wire_row(r, 0, key)?, r.get(key.len())?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    async fn processed(&self, since: i64) -> Result<Vec<(String, String, u64)>> {
        let mut statement = self.conn.prepare_cached(&processed_clients('?'))?;
        let rows = statement.query_map([since], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    async fn holders(&self, table: &str, keys: &[String]) -> Result<Vec<Holder>> {
        let mut statement = self.conn.prepare_cached(&self.view.holders)?;
        let mut holders = Vec::new();
        for key in keys {
            let rows = statement.query_map([table, key], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?;
            for row in rows {
                holders.push(row?);
            }
        }
        Ok(holders)
    }

    /// One statement run per argument list: in process, a run costs
    /// microseconds.
    async fn select_written(
        &self,
        query: usize,
        part: usize,
        params: &[&[Value]],
        since: i64,
    ) -> Result<Vec<(usize, Selected)>> {
        let app = &self.versions.current().app;
        let table = app
            .tables
            .iter()
            .position(|t| t.name == app.queries[query].parts[part].table)
            .expect("validated: a part's table is synced");
        let key = &self.versions.current().shapes[table].key;
        let mut statement = self.conn.prepare_cached(&self.written_parts[query][part])?;
        let mut selected = Vec::new();
        for (i, params) in params.iter().enumerate() {
            let bound = params.iter().cloned().chain([Value::Integer(since)]);
            let rows = statement.query_map(params_from_iter(bound), |r| {
                Ok((wire_row(r, 0, key)?, r.get(key.len())?))
            })?;
            for row in rows {
                selected.push((i, row?));
            }
        }
        Ok(selected)
    }
}

/// A view row, as `ViewText` selects it.
fn held_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<HeldRow> {
    Ok(HeldRow {
        table: r.get(0)?,
        key: r.get(1)?,
        row_version: r.get(2)?,
        patch_version: r.get(3)?,
        present: r.get(4)?,
    })
}

/// View rows recorded per statement: 6 parameters each, well below
/// SQLite's 32,766.
const VIEW_ROWS_PER_STATEMENT: usize = 500;

/// Columns `start..` of a result row in their wire form.
fn wire_row(
    r: &rusqlite::Row<'_>,
    start: usize,
    columns: &[(String, ColumnType)],
) -> rusqlite::Result<Row> {
    columns
        .iter()
        .enumerate()
        .map(|(i, (name, ty))| {
            Ok((
                name.clone(),
                to_json(*ty, &Value::from(r.get_ref(start + i)?)),
            ))
        })
        .collect()
}

/// One transaction holding SQLite's write lock (`BEGIN IMMEDIATE`: a
/// second process starting on the same file waits for it, then sees its
/// changes): the bookkeeping on first start, the layout check, the schema
/// steps `mode` allows, and the app definitions served so far. Rolled back
/// in [`Mode::Plan`] and on any error.
fn schema_transaction(
    conn: &Connection,
    app: &AppDefinition,
    mode: Mode,
) -> Result<(Plan, Vec<AppDefinition>)> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let done = prepare_schema(conn, app, mode);
    match done {
        Ok(done) if mode != Mode::Plan => {
            conn.execute_batch("COMMIT")?;
            Ok(done)
        }
        done => {
            conn.execute_batch("ROLLBACK")?;
            done
        }
    }
}

fn prepare_schema(
    conn: &Connection,
    app: &AppDefinition,
    mode: Mode,
) -> Result<(Plan, Vec<AppDefinition>)> {
    let known: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = '_ferry_version')",
        [],
        |r| r.get(0),
    )?;
    if !known {
        for sql in bookkeeping(&DIALECT) {
            conn.execute_batch(&sql)?;
        }
        conn.execute("INSERT INTO _ferry_meta VALUES ('layout', ?1)", [LAYOUT])?;
    }
    let layout: Option<String> = conn
        .query_row(
            "SELECT value FROM _ferry_meta WHERE key = 'layout'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    match layout.as_deref() {
        Some(LAYOUT) => {}
        None => move_from_layout_1(conn, app)?,
        Some(other) => {
            return Err(StoreError::InvalidApp(format!(
                "this database has layout `{other}`, which this ferrydb-server does not \
                 read (a newer server made it?): start this server on a new database"
            )))
        }
    }
    for sql in view_tables(&DIALECT) {
        conn.execute_batch(&sql)?;
    }
    let schema = Schema(conn);
    let plan = ready(evolve(&schema, app, mode))?;
    Ok((plan, ready(served_apps(&schema))?))
}

/// The SQLite store's side of the schema steps.
struct Schema<'a>(&'a Connection);

impl SchemaTx for Schema<'_> {
    async fn recorded(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        let mut statement = self.0.prepare(
            "SELECT key, value FROM _ferry_meta WHERE substr(key, 1, length(?1)) = ?1 ORDER BY key",
        )?;
        let rows = statement.query_map([prefix], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    async fn record(&self, key: &str, value: Option<&str>) -> Result<()> {
        match value {
            Some(value) => self.0.execute(
                "INSERT INTO _ferry_meta VALUES (?1, ?2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [key, value],
            )?,
            None => self
                .0
                .execute("DELETE FROM _ferry_meta WHERE key = ?1", [key])?,
        };
        Ok(())
    }

    async fn execute(&self, sql: &str) -> Result<()> {
        Ok(self.0.execute_batch(sql)?)
    }

    fn create(&self, table: &Table) -> Vec<String> {
        let sql = SqliteTable::new(table);
        sql.create.into_iter().chain(sql.create_log).collect()
    }

    fn refresh_triggers(&self, table: &Table) -> Vec<String> {
        SqliteTable::new(table).refresh_log_triggers
    }

    fn drop_extras(&self, _table: &Table) -> Vec<String> {
        vec![]
    }

    fn sql_type(&self, ty: ColumnType) -> &'static str {
        ty.sqlite_type()
    }
}

/// Moves a database of an earlier server (layout 1: the SDK's replica
/// tables, its undo log as the touched log) to this layout, keeping every
/// row, row version, client and rejection: the undo log gives way to the
/// touched log, the SDK's tables go.
fn move_from_layout_1(conn: &Connection, app: &AppDefinition) -> Result<()> {
    for table in &app.tables {
        let served: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM _ferry_meta WHERE key = ?1)",
            [meta_key(table)],
            |r| r.get(0),
        )?;
        if !served {
            continue;
        }
        for sql in undo_leftovers(&table.name)
            .iter()
            .chain(&SqliteTable::new(table).create_log)
        {
            conn.execute_batch(sql)?;
        }
    }
    for sql in LAYOUT_1_LEFTOVERS {
        conn.execute_batch(sql)?;
    }
    conn.execute("INSERT INTO _ferry_meta VALUES ('layout', ?1)", [LAYOUT])?;
    Ok(())
}

/// Renders every served mutator statement for SQLite and prepares it once
/// against the real schema: one that does not prepare refuses the app.
fn compile(conn: &Connection, versions: &Versions) -> Result<Mutators> {
    let mut compiled = BTreeMap::new();
    for served in versions.all() {
        let version = served.app.version;
        for def in &served.app.mutators {
            let mut statements = Vec::new();
            for (index, (sql, args)) in def.rendered(Placeholders::Question).into_iter().enumerate()
            {
                if let Err(e) = conn.prepare_cached(&sql) {
                    return Err(StoreError::InvalidApp(format!(
                        "statement {} of mutator `{}` (schema version {version}): {e}",
                        index + 1,
                        def.name
                    )));
                }
                statements.push((sql, args));
            }
            compiled.insert((version, def.name.clone()), statements);
        }
    }
    Ok(compiled)
}

/// Renders every part of the app's queries for SQLite and prepares it once
/// against the real schema: one that does not prepare refuses the app,
/// naming the query and the part.
fn compile_queries(conn: &Connection, app: &AppDefinition) -> Result<Vec<Vec<String>>> {
    app.queries
        .iter()
        .map(|query| {
            query
                .parts
                .iter()
                .map(|part| {
                    let table = app.table(&part.table).expect("validated: a synced table");
                    let sql = part_select(table, &part.statement().render(Placeholders::Question));
                    match conn.prepare_cached(&sql) {
                        Ok(_) => Ok(sql),
                        Err(e) => Err(StoreError::InvalidApp(format!(
                            "part `{}` of query `{}` does not run on SQLite: {e}",
                            part.table, query.name
                        ))),
                    }
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> AppDefinition {
        AppDefinition::from_json(
            r#"{"version": 1, "tables": [{"name": "notes", "columns": [{"name": "id", "type": "text"}],
                "primaryKey": ["id"], "access": {"read": "true", "write": "true"}}], "mutators": []}"#,
        )
        .unwrap()
    }

    /// A database of a newer layout is refused with a message, never
    /// half-read.
    #[test]
    fn a_database_of_an_unknown_layout_is_refused_with_a_message() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE _ferry_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL); \
             CREATE TABLE _ferry_version (id INTEGER PRIMARY KEY, value INTEGER NOT NULL); \
             INSERT INTO _ferry_version VALUES (1, 7); \
             INSERT INTO _ferry_meta VALUES ('layout', 'ferrydb-sqlite-9');",
        )
        .unwrap();
        let Err(StoreError::InvalidApp(message)) = SqliteServer::open(conn, app()) else {
            panic!("an unknown layout was opened");
        };
        assert!(message.contains("`ferrydb-sqlite-9`"), "{message}");
    }

    fn push(client: &str, id: u64, name: &str, args: serde_json::Value) -> PushRequest {
        serde_json::from_value(serde_json::json!({
            "protocolVersion": 1, "schemaVersion": 1, "clientGroupID": "g1", "clientID": client,
            "mutations": [{"id": id, "name": name, "args": args, "timestamp": 0}],
        }))
        .unwrap()
    }

    /// A database an earlier server wrote (layout 1, made by the server of
    /// the previous commit and dumped: `tests/fixtures/sqlite-layout-1.sql`)
    /// opens with its rows, clients and rejections, and serves on.
    #[test]
    fn a_database_of_layout_1_is_moved_to_this_layout_keeping_everything() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(include_str!("../../../tests/fixtures/sqlite-layout-1.sql"))
            .unwrap();
        let app =
            AppDefinition::from_json(include_str!("../../../../tests/fixtures/app.json")).unwrap();
        let mut server = SqliteServer::open(conn, app).unwrap();
        assert_eq!(server.version().unwrap(), 3);
        assert_eq!(server.last_mutation_id("c1").unwrap(), 3);
        let counters: Vec<_> = server.readable_rows("ada").unwrap()["counters"]
            .iter()
            .map(|row| (row["id"].clone(), row["value"].clone()))
            .collect();
        assert_eq!(counters, [("a".into(), 2.into()), ("b".into(), 5.into())]);
        // A retry is answered from the record; the next mutation runs, and
        // the write rule sees what it touched.
        let retried = server.push("ada", &push("c1", 3, "nope", serde_json::json!({})));
        assert!(matches!(
            retried.unwrap(),
            PushResponse::Ok { results } if matches!(&results[..], [ferrydb_protocol::MutationResult::Rejected { code: RejectionCode::UnknownMutator, .. }])
        ));
        let args = serde_json::json!({"id": "l1", "owner": "grace", "name": "not ada's"});
        let PushResponse::Ok { results } = server
            .push("ada", &push("c1", 4, "createList", args))
            .unwrap()
        else {
            panic!("schema mismatch");
        };
        assert!(
            matches!(
                &results[..],
                [ferrydb_protocol::MutationResult::Rejected {
                    code: RejectionCode::Forbidden,
                    ..
                }]
            ),
            "{results:?}"
        );
        let leftovers: i64 = server
            .conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name LIKE '\\_ferry\\_undo%' ESCAPE '\\' \
                 OR name IN ('_ferry_outbox', '_ferry_rejections')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(leftovers, 0);
    }

    #[test]
    fn the_database_holds_none_of_the_clients_tables() {
        let server = SqliteServer::new(app()).unwrap();
        let mut names = server
            .conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .unwrap();
        let names: Vec<String> = names
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            names,
            [
                "_ferry_clients",
                "_ferry_meta",
                "_ferry_mutation_log",
                "_ferry_rowver_notes",
                "_ferry_server_rejections",
                "_ferry_touched_notes",
                "_ferry_version",
                "_ferry_view_floors",
                "_ferry_view_pages",
                "_ferry_view_rows",
                "_ferry_views",
                "notes"
            ]
        );
    }
}
