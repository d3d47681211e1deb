//! The production store: the sync core (`crate::sync`, which the seeded
//! simulation proves over the SQLite store) over Postgres: this file answers
//! the core's questions, so a client cannot tell the two stores apart.
//! Several server instances may share one database.
//!
//! How it stays correct with many instances:
//!
//! - **One version counter, one lock.** `_ferry_version` has one row. A push
//!   locks it (`FOR UPDATE`) before it processes anything and holds it until
//!   it commits, and bumps it once per processed mutation. So mutations are
//!   processed one at a time across all instances, versions are assigned in
//!   commit order, and a pull (one `REPEATABLE READ` snapshot) that sees
//!   version `v` sees every row written with a version `<= v`: nothing is
//!   ever skipped by a later incremental pull.
//! - **Row versions and tombstones by triggers.** Every insert, update or
//!   delete of a synced table stamps the row's key with the current version
//!   in `_ferry_rowver_<table>` (a delete keeps its entry: the tombstone).
//! - **Write rules before and after.** While a push runs, BEFORE triggers
//!   keep the first image of each row a mutation touches in
//!   `_ferry_touched_<table>`; after the mutator, one query checks the write
//!   rule on those images and on the rows as they are now.
//! - **A savepoint per mutation.** A rejected mutation (unknown mutator, bad
//!   arguments, `forbidden`, a failing statement) is rolled back alone; its
//!   `lastMutationID`, rejection record and log entry commit with the push.
//!   A push commits every [`CHUNK`] mutations, so one transaction never holds
//!   more subtransactions than Postgres caches per backend.
//! - **Pokes through LISTEN/NOTIFY** (see [`listen`]): `pg_notify` in the
//!   push's transaction, heard by every instance.
//! - **Writes outside pushes** (an operator in psql, a backfill) get a
//!   version of their own per statement and a poke, from a statement
//!   trigger, so clients pull them; `TRUNCATE`, which leaves no tombstones,
//!   is refused.
//!
//! Round trips are what the version lock is held for, so they are few:
//! requests that do not depend on each other's answers are pipelined on the
//! connection (Postgres runs them in order; after a failure the rest fail
//! unrun and the first error is the one that counts). A mutation costs two
//! round trips, an incremental pull four. Pulls never wait for pushes: they
//! never take the version lock, pushes may hold only [`PUSH_SLOTS`] of the
//! pool's connections, and
//! read a snapshot on their own pooled connection.
//!
//! TLS to the database follows the URL's `sslmode` and `sslrootcert`
//! ([`tls`]); whenever TLS is used, the server's certificate is verified.

mod error;
mod listen;
mod schema;
mod tls;
mod values;

use super::evolve::{evolve, served_apps, Mode, Plan, SchemaTx};
use super::table_text::{
    part_count, part_rows, part_select, part_select_written, processed_clients, tables_touched,
    view_tables, written_keys, ViewText, VIEW_ROW_CONFLICT, VIEW_ROW_SENT_CONFLICT,
};
use super::{LoggedMutation, Result, StoreError, StoreOptions};
use crate::sync::{
    self, pull_subscribed, push_mutations, Call, Change, ClientState, HeldRow, Holder, LazyTx,
    Listener, Page, PartRows, PatchedRows, Processed, PullTx, PushTx, Rejected, RouteTx, Selected,
    Versions, ViewHead, ViewTx, Who,
};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Transaction};
use error::{pool_error, statement_message};
use ferrydb_protocol::sql::Placeholders;
use ferrydb_protocol::{
    AppDefinition, ColumnType, PullRequest, PullResponse, PushRequest, PushResponse, RejectionCode,
    Row, Table, Value, PROTOCOL_VERSION_SUBSCRIPTIONS, USER_ID_PARAM,
};
use futures_util::future::{join_all, try_join_all};
use schema::{pg_type, PgTable};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::LazyLock;
use std::time::Duration;
use tokio_postgres::types::ToSql;
use tokio_postgres::types::Type;
use tokio_postgres::IsolationLevel;
use tokio_postgres_rustls::MakeRustlsConnect;
use values::{refs, Param};

/// Most mutations processed in one transaction (each has a savepoint;
/// Postgres caches 64 subtransactions per backend before every snapshot in
/// the cluster gets slower).
pub const CHUNK: usize = 32;
/// Connections per store for pushes and pulls (the listener has its own).
const POOL_SIZE: usize = 16;
/// Pushes of one instance that may hold a connection at once. Pushes run one
/// at a time across all instances anyway (the version lock); the rest of the
/// pool stays free for pulls, so a burst of pushes never starves them.
const PUSH_SLOTS: usize = 4;
/// How long a request waits for a connection before it is `Unavailable`.
const POOL_WAIT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Session limits: how long one statement (a push's wait for the version
/// lock included) may take, and how long a transaction may sit idle (a
/// server that hung or lost its network mid-push must not hold the version
/// lock for long). Either ends the request with `Unavailable`. Options in the
/// URL come after these, so a deployment can override them.
const SESSION_LIMITS: &str =
    "-c statement_timeout=15000 -c idle_in_transaction_session_timeout=30000";

/// Takes the version row (the lock that orders all mutations) and turns
/// the touched-row triggers on for this transaction.
const LOCK: &str = "SELECT set_config($1, 'on', true) FROM _ferry_version FOR UPDATE";
/// The next version, for the mutation about to run.
const BUMP: &str = "UPDATE _ferry_version SET value = value + 1 RETURNING value";
/// A client's `lastMutationID` (NULL: never seen) and whether the client or
/// its group belongs to another user. `$1` client, `$2` group, `$3` user.
const CLIENT_STATE: &str = "SELECT \
     (SELECT last_mutation_id FROM _ferry_clients WHERE client_id = $1), \
     EXISTS (SELECT 1 FROM _ferry_clients \
             WHERE (client_id = $1 OR client_group_id = $2) AND user_id <> $3)";
/// The version and the same ownership test, for a pull.
const PULL_STATE: &str = "SELECT v.value, \
     EXISTS (SELECT 1 FROM _ferry_clients \
             WHERE (client_id = $1 OR client_group_id = $2) AND user_id <> $3) \
     FROM _ferry_version v";
/// Clients of a group whose `lastMutationID` moved after version `$2`.
const CHANGED_CLIENTS: &str = "SELECT client_id, last_mutation_id FROM _ferry_clients \
     WHERE client_group_id = $1 AND version > $2";

pub struct PostgresStore {
    pool: Pool,
    /// The app definitions served: the server's own and earlier ones.
    versions: Versions,
    tables: Vec<PgTable>,
    /// Per served schema version and mutator name.
    mutators: HashMap<(u32, String), PgMutator>,
    write_check: String,
    finish: String,
    /// Per query of the app and part: the statement selecting its rows.
    parts: Vec<Vec<PgPart>>,
    /// Per query of the app and part: the statement selecting its rows
    /// among those written after a version (poke routing).
    written_parts: Vec<Vec<String>>,
    /// Per table: the keys written after a version.
    written: Vec<String>,
    /// Per table: the rows with the keys in its key columns' arrays.
    by_key: Vec<String>,
    view: ViewText,
    page_size: usize,
    push_slots: tokio::sync::Semaphore,
    _listener: listen::Listener,
}

/// A query part's statement, and the type each placeholder binds.
struct PgPart {
    sql: String,
    table: usize,
    types: Vec<ColumnType>,
}

struct PgMutator {
    statements: Vec<PgStatement>,
}

struct PgStatement {
    sql: String,
    /// For each placeholder in order, the index of the declared parameter.
    args: Vec<usize>,
    types: Vec<Type>,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://…` or `postgresql://…`), creates the
    /// bookkeeping and the app's tables on first start, and applies the
    /// additive changes of the app since (`evolve`); a breaking change is
    /// refused (`InvalidApp`), as the SQLite store does. Returns once the
    /// poke listener is listening.
    pub async fn open(url: &str, app: AppDefinition, options: StoreOptions) -> Result<Self> {
        app.validate()
            .map_err(|e| StoreError::InvalidApp(e.to_string()))?;
        let (pool, config, tls) = connect(url)?;
        let tables: Vec<PgTable> = app.tables.iter().map(PgTable::new).collect();
        for name in tables.iter().flat_map(PgTable::identifiers) {
            if name.len() > schema::MAX_IDENTIFIER {
                return Err(StoreError::InvalidApp(format!(
                    "the Postgres store needs the name `{name}`, longer than Postgres allows \
                     ({} bytes): shorten the table name",
                    schema::MAX_IDENTIFIER
                )));
            }
        }
        let recorded = schema_transaction(&pool, &app, Mode::Start).await?.1;
        let versions = Versions::new(app, recorded);
        let mutators = compile(&pool, &versions).await?;
        prepare_write_rules(&pool, &versions.current().app.tables).await?;
        analyze_touched_logs(&pool, &tables).await?;
        let parts = compile_queries(&pool, &versions.current().app).await?;
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
                        let table = app.table(&part.table).expect("validated: a synced table");
                        // `$1` the version, `$2` the lists' numbers, then
                        // one array per parameter.
                        let arrays = statement
                            .params
                            .iter()
                            .enumerate()
                            .map(|(i, name)| {
                                let ty = match query.param(name) {
                                    Some(param) => param.ty,
                                    None => ColumnType::Text,
                                };
                                format!(", ${}::{}[]", i + 3, pg_type(ty).name())
                            })
                            .collect::<String>();
                        let columns = (1..=statement.params.len())
                            .map(|i| format!(", _ferry_p{i}"))
                            .collect::<String>();
                        let args =
                            format!("unnest($2::int8[]{arrays}) AS _ferry_a (_ferry_i{columns})");
                        part_select_written(
                            table,
                            &statement.render(Placeholders::Columns("_ferry_a._ferry_p")),
                            "$1",
                            Some(&args),
                        )
                    })
                    .collect()
            })
            .collect();
        let written = app.tables.iter().map(|t| written_keys(t, '$')).collect();
        let listener = listen::Listener::start(config, tls, options.pokes.clone()).await?;
        Ok(PostgresStore {
            write_check: schema::write_check(&versions.current().app.tables),
            finish: schema::finish_mutation(&tables),
            parts,
            written_parts,
            written,
            by_key: versions
                .current()
                .app
                .tables
                .iter()
                .map(schema::rows_by_keys)
                .collect(),
            view: ViewText::new('$', &schema::DIALECT),
            pool,
            versions,
            tables,
            mutators,
            page_size: options.page_size.max(1),
            push_slots: tokio::sync::Semaphore::new(PUSH_SLOTS),
            _listener: listener,
        })
    }

    /// See [`super::migrate`].
    pub async fn migrate(url: &str, app: &AppDefinition, apply: bool) -> Result<Plan> {
        app.validate()
            .map_err(|e| StoreError::InvalidApp(e.to_string()))?;
        let (pool, _, _) = connect(url)?;
        let mode = if apply { Mode::Apply } else { Mode::Plan };
        Ok(schema_transaction(&pool, app, mode).await?.0)
    }

    /// Requests waiting for a pooled connection.
    pub fn pool_waiting(&self) -> usize {
        self.pool.status().waiting
    }

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.pool.get().await.map_err(pool_error)
    }

    /// The current version (what a caught-up client's cookie is).
    pub async fn version(&self) -> Result<i64> {
        let client = self.client().await?;
        let row = client
            .query_one("SELECT value FROM _ferry_version", &[])
            .await?;
        Ok(row.get(0))
    }

    /// Every time a mutation was processed, in order.
    pub async fn mutation_log(&self) -> Result<Vec<LoggedMutation>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT client_id, mutation_id, name, outcome FROM _ferry_mutation_log ORDER BY seq",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| LoggedMutation {
                client_id: r.get(0),
                id: r.get::<_, i64>(1) as u64,
                name: r.get(2),
                outcome: r.get(3),
            })
            .collect())
    }

    /// Handles `POST push` for the authenticated `user_id`: the core's push,
    /// in transactions of at most [`CHUNK`] new mutations each.
    pub async fn push(&self, user_id: &str, request: PushRequest) -> Result<PushResponse> {
        let served = match self.versions.serve(request.schema_version) {
            Ok(served) => served,
            Err(m) => return Ok(PushResponse::SchemaMismatch(m)),
        };
        let _slot = match tokio::time::timeout(POOL_WAIT, self.push_slots.acquire()).await {
            Ok(Ok(slot)) => slot,
            Ok(Err(_)) => return Err(StoreError::Internal("the push slots were closed".into())),
            Err(_) => {
                return Err(StoreError::Unavailable(
                    "postgres: too many pushes waiting for the database".into(),
                ))
            }
        };
        let mut client = self.client().await?;
        let mut results = Vec::new();
        loop {
            let tx = client.transaction().await?;
            let pg = PgTx::new(self, &tx);
            let from = results.len();
            let chunk = push_mutations(&pg, &served.app, user_id, &request, from, CHUNK).await?;
            if let Some(version) = chunk.version {
                // Delivered when (and only if) this transaction commits.
                let notify = tx.prepare_cached("SELECT pg_notify($1, $2)").await?;
                tx.execute(&notify, &[&schema::POKE_CHANNEL, &version.to_string()])
                    .await?;
            }
            tx.commit().await?;
            results.extend(chunk.results);
            if !chunk.more {
                break;
            }
        }
        Ok(PushResponse::Ok { results })
    }

    /// See `Store::group_reads`.
    pub async fn group_reads(&self, user_id: &str, group_id: &str) -> Result<BTreeSet<String>> {
        let client = self.client().await?;
        let reads = client
            .prepare_typed_cached(&self.view.reads, &[Type::TEXT])
            .await?;
        let view = client
            .query_opt(&reads, &[&group_id])
            .await?
            .map(|row| (row.get(0), row.get(1)));
        sync::group_reads(&self.versions.current().app, user_id, group_id, view)
    }

    /// See `Store::route`: one read-only snapshot, its questions pipelined.
    pub async fn route(&self, since: i64, listeners: &[Listener]) -> Result<BTreeSet<Listener>> {
        let mut client = self.client().await?;
        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        // Every statement here runs for many groups in a row: planned once
        // (the written keys are read by index, whatever the estimate).
        tx.batch_execute("SET LOCAL plan_cache_mode = force_generic_plan")
            .await?;
        let pg = PgTx::new(self, &tx);
        let concerned = sync::route(&pg, &self.versions, since, listeners).await?;
        tx.commit().await?;
        Ok(concerned)
    }

    /// Handles `POST pull` for the authenticated `user_id`: the core's pull
    /// over one snapshot, so the version and the rows agree.
    pub async fn pull(&self, user_id: &str, request: PullRequest) -> Result<PullResponse> {
        if request.protocol_version == PROTOCOL_VERSION_SUBSCRIPTIONS {
            return self.pull_subscribed(user_id, request).await;
        }
        let mut client = self.client().await?;
        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let pg = PgTx::new(self, &tx);
        let response = sync::pull(&pg, &self.versions, self.page_size, user_id, &request).await?;
        tx.commit().await?;
        Ok(response)
    }
}

impl PostgresStore {
    /// A v2 pull: one `REPEATABLE READ` snapshot, so the rows it selects,
    /// the values it sends and the `lastMutationID`s it reports agree, and
    /// read-write, for the view it records. Its first statement locks the
    /// group's view row; a second pull of the same group (on any instance)
    /// that committed after this snapshot was taken makes the lock fail with
    /// a serialization error, which the client retries (503): never a view
    /// recorded over another.
    async fn pull_subscribed(&self, user_id: &str, request: PullRequest) -> Result<PullResponse> {
        let mut client = self.client().await?;
        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .start()
            .await?;
        let pg = PgTx::new(self, &tx);
        let response =
            pull_subscribed(&pg, &self.versions, self.page_size, user_id, &request).await?;
        tx.commit().await?;
        Ok(response)
    }
}

/// One transaction of the store, answering the core's questions. Questions
/// that do not depend on each other are pipelined on its connection.
struct PgTx<'a> {
    store: &'a PostgresStore,
    tx: &'a Transaction<'a>,
    /// `run` left the mutator's savepoint open for `finish` to end.
    savepoint_open: AtomicBool,
}

impl<'a> PgTx<'a> {
    fn new(store: &'a PostgresStore, tx: &'a Transaction<'a>) -> Self {
        PgTx {
            store,
            tx,
            savepoint_open: AtomicBool::new(false),
        }
    }

    async fn client_row(&self, who: Who<'_>) -> Result<ClientState> {
        let state = self
            .tx
            .prepare_typed_cached(CLIENT_STATE, &[Type::TEXT, Type::TEXT, Type::TEXT])
            .await?;
        let row = self
            .tx
            .query_one(&state, &[&who.client_id, &who.group_id, &who.user_id])
            .await?;
        Ok(ClientState {
            last_mutation_id: row.try_get::<_, Option<i64>>(0)?.unwrap_or(0) as u64,
            foreign: row.try_get(1)?,
        })
    }

    /// What the mutator's run came to: the first failing statement rejects it
    /// (`mutator_failed`; a connection failure is the store's error instead),
    /// else a row that breaks a write rule before or after (`forbidden`).
    fn judge(
        &self,
        mutator: &str,
        user_id: &str,
        executed: Vec<Result<u64, tokio_postgres::Error>>,
        checked: Result<tokio_postgres::Row, tokio_postgres::Error>,
    ) -> Result<Result<(), Rejected>> {
        // A rule that fails at run time (a type error on this row) is the
        // mutation's failure too, as in SQLite.
        let first = match executed.into_iter().find_map(Result::err) {
            Some(e) => Err(e),
            None => checked,
        };
        let violations: Vec<bool> = match first {
            Ok(row) => row.try_get(0)?,
            Err(e) if error::is_transient(&e) || e.as_db_error().is_none() => return Err(e.into()),
            Err(e) => return Ok(Err(Rejected::failed(mutator, statement_message(&e)))),
        };
        if let Some(i) = violations.iter().position(|&broken| broken) {
            return Ok(Err(Rejected::forbidden(
                &self.store.tables[i].name,
                user_id,
            )));
        }
        Ok(Ok(()))
    }
}

impl PushTx for PgTx<'_> {
    async fn client_state(&self, who: Who<'_>) -> Result<ClientState> {
        self.client_row(who).await
    }

    /// Takes the version row (the lock that orders all mutations) and turns
    /// the touched-row triggers on; reads the client again in the same round
    /// trip (a statement of its own, so it sees everything committed before
    /// the lock was ours).
    async fn lock(&self, who: Who<'_>) -> Result<ClientState> {
        let lock = self.tx.prepare_typed_cached(LOCK, &[Type::TEXT]).await?;
        let (locked, state) = tokio::join!(
            self.tx.query_one(&lock, &[&schema::RECORDING]),
            self.client_row(who)
        );
        locked?;
        state
    }

    async fn rejection(&self, client_id: &str, mutation_id: u64) -> Result<Option<Rejected>> {
        let row = self
            .tx
            .query_opt(
                "SELECT code, message FROM _ferry_server_rejections \
                 WHERE client_id = $1 AND mutation_id = $2",
                &[&client_id, &(mutation_id as i64)],
            )
            .await?;
        Ok(row.map(|r| Rejected {
            code: RejectionCode::parse(r.get(0)),
            message: r.get(1),
        }))
    }

    /// One round trip: the version bump, the savepoint, the mutator's
    /// statements and the write-rule check go out together (Postgres runs
    /// them in order; after a failing statement the rest fail unrun). The
    /// savepoint stays open for `finish`.
    async fn run(
        &self,
        user_id: &str,
        call: Option<Call<'_>>,
    ) -> Result<(i64, Result<(), Rejected>)> {
        let tx = self.tx;
        // Everything this mutation runs is prepared first: once a statement
        // of the mutator fails, the transaction accepts nothing (not even a
        // Parse) until the savepoint is rolled back.
        let bump = tx.prepare_cached(BUMP).await?;
        // `finish`'s statement too (cached: `finish` then finds it).
        tx.prepare_typed_cached(&self.store.finish, schema::FINISH_TYPES)
            .await?;
        let Some(Call {
            schema_version,
            mutator,
            args: values,
        }) = call
        else {
            // Nothing to run, nothing to roll back.
            let version: i64 = tx.query_one(&bump, &[]).await?.get(0);
            return Ok((version, Ok(())));
        };
        let compiled = &self.store.mutators[&(schema_version, mutator.name.clone())];
        let mut prepared = Vec::with_capacity(compiled.statements.len());
        for statement in &compiled.statements {
            prepared.push(
                tx.prepare_typed_cached(&statement.sql, &statement.types)
                    .await?,
            );
        }
        let check = tx
            .prepare_typed_cached(&self.store.write_check, &[Type::TEXT])
            .await?;
        let params: Vec<Vec<Param>> = compiled
            .statements
            .iter()
            .map(|statement| {
                statement
                    .args
                    .iter()
                    .map(|&i| values::to_param(mutator.params[i].ty, &values[i]))
                    .collect()
            })
            .collect();
        let params: Vec<Vec<&(dyn ToSql + Sync)>> = params.iter().map(|p| refs(p)).collect();
        let statements = join_all(
            prepared
                .iter()
                .zip(&params)
                .map(|(statement, params)| tx.execute(statement, params)),
        );
        let user: [&(dyn ToSql + Sync); 1] = [&user_id];
        let (bumped, savepoint, executed, checked) = tokio::join!(
            tx.query_one(&bump, &[]),
            tx.batch_execute("SAVEPOINT ferry_run"),
            statements,
            tx.query_one(&check, &user),
        );
        let version: i64 = bumped?.get(0);
        savepoint?;
        self.savepoint_open.store(true, Ordering::Relaxed);
        let outcome = self.judge(&mutator.name, user_id, executed, checked)?;
        Ok((version, outcome))
    }

    /// One round trip: the end of the savepoint (kept or rolled back) and
    /// the bookkeeping statement.
    async fn finish(&self, processed: Processed<'_>) -> Result<()> {
        // Prepared by `run` (cached), since after a failed statement the
        // transaction takes no Parse until the savepoint is rolled back.
        let finish = self
            .tx
            .prepare_typed_cached(&self.store.finish, schema::FINISH_TYPES)
            .await?;
        let end = match (
            self.savepoint_open.swap(false, Ordering::Relaxed),
            processed.rejected,
        ) {
            (false, _) => None,
            (true, None) => Some("RELEASE SAVEPOINT ferry_run"),
            (true, Some(_)) => Some("ROLLBACK TO SAVEPOINT ferry_run; RELEASE SAVEPOINT ferry_run"),
        };
        let end = async {
            match end {
                Some(sql) => self.tx.batch_execute(sql).await,
                None => Ok(()),
            }
        };
        let who = processed.who;
        let mutation_id = processed.mutation_id as i64;
        let outcome = processed.rejected.map_or("ok", |r| r.code.as_str());
        let message = processed.rejected.map(|r| r.message.as_str());
        let params: [&(dyn ToSql + Sync); 8] = [
            &who.client_id,
            &who.group_id,
            &mutation_id,
            &processed.version,
            &who.user_id,
            &processed.name,
            &outcome,
            &message,
        ];
        let (ended, finished) = tokio::join!(end, self.tx.execute(&finish, &params));
        ended?;
        finished?;
        Ok(())
    }
}

impl PullTx for PgTx<'_> {
    async fn state(&self, who: Who<'_>) -> Result<(i64, bool)> {
        let state = self
            .tx
            .prepare_typed_cached(PULL_STATE, &[Type::TEXT, Type::TEXT, Type::TEXT])
            .await?;
        let row = self
            .tx
            .query_one(&state, &[&who.client_id, &who.group_id, &who.user_id])
            .await?;
        Ok((row.try_get(0)?, row.try_get(1)?))
    }

    async fn changes(&self, table: usize, user_id: &str, since: i64) -> Result<Vec<Change>> {
        let t = &self.store.tables[table];
        let query = self
            .tx
            .prepare_typed_cached(&t.changes, &[Type::TEXT, Type::INT8])
            .await?;
        let rows = self.tx.query(&query, &[&user_id, &since]).await?;
        let key_len = t.key.len();
        rows.iter()
            .map(|r| {
                let readable: Option<bool> = r.try_get(key_len)?;
                Ok(if readable == Some(true) {
                    Change::Put(to_row(r, key_len + 1, &t.columns)?)
                } else {
                    Change::Del(to_row(r, 0, &t.key)?)
                })
            })
            .collect()
    }

    async fn page(&self, page: Page<'_>) -> Result<Vec<Row>> {
        let t = &self.store.tables[page.table];
        let mut params: Vec<Param> = vec![Box::new(page.user_id.to_owned())];
        let (sql, types) = match page.after {
            Some(key) => {
                for ((_, ty), value) in t.key.iter().zip(key) {
                    params.push(values::key_param(*ty, value).ok_or_else(|| {
                        StoreError::Internal(format!(
                            "a cursor key of the wrong type for `{}`",
                            t.name
                        ))
                    })?);
                }
                (&t.next_page, t.page_types(false))
            }
            None => (&t.first_page, t.page_types(true)),
        };
        params.push(Box::new(page.limit as i64));
        let query = self.tx.prepare_typed_cached(sql, &types).await?;
        let rows = self.tx.query(&query, &refs(&params)).await?;
        rows.iter().map(|r| to_row(r, 0, &t.columns)).collect()
    }

    async fn changed_clients(&self, group_id: &str, since: i64) -> Result<BTreeMap<String, u64>> {
        let query = self
            .tx
            .prepare_typed_cached(CHANGED_CLIENTS, &[Type::TEXT, Type::INT8])
            .await?;
        let rows = self.tx.query(&query, &[&group_id, &since]).await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get::<_, i64>(1)? as u64)))
            .collect()
    }
}

impl RouteTx for PgTx<'_> {
    async fn views(&self, groups: &[String]) -> Result<Vec<(String, ViewHead)>> {
        let head = self
            .tx
            .prepare_typed_cached(&self.store.view.head, &[Type::TEXT])
            .await?;
        let head = &head;
        let views = try_join_all(
            groups
                .iter()
                .map(|group| async move { self.tx.query_opt(head, &[group]).await }),
        )
        .await?;
        groups
            .iter()
            .zip(views)
            .filter_map(|(group, row)| row.map(|row| (group, row)))
            .map(|(group, row)| {
                let head = ViewHead {
                    version: row.try_get(0)?,
                    user_id: row.try_get(1)?,
                    clients: row.try_get(2)?,
                    subscriptions: row.try_get(3)?,
                };
                Ok((group.clone(), head))
            })
            .collect()
    }

    async fn written(&self, table: usize, since: i64) -> Result<Vec<Selected>> {
        let statement = self
            .tx
            .prepare_typed_cached(&self.store.written[table], &[Type::INT8])
            .await?;
        let rows = self.tx.query(&statement, &[&since]).await?;
        let key = &self.store.tables[table].key;
        rows.iter()
            .map(|r| Ok((to_row(r, 0, key)?, r.try_get(key.len())?)))
            .collect()
    }

    async fn processed(&self, since: i64) -> Result<Vec<(String, String, u64)>> {
        let statement = self
            .tx
            .prepare_typed_cached(&processed_clients('$'), &[Type::INT8])
            .await?;
        let rows = self.tx.query(&statement, &[&since]).await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get::<_, i64>(2)? as u64)))
            .collect()
    }

    async fn holders(&self, table: &str, keys: &[String]) -> Result<Vec<Holder>> {
        let holders = self
            .tx
            .prepare_typed_cached(&self.store.view.holders, &[Type::TEXT, Type::TEXT])
            .await?;
        let holders = &holders;
        let found = try_join_all(
            keys.iter()
                .map(|key| async move { self.tx.query(holders, &[&table, key]).await }),
        )
        .await?;
        found
            .iter()
            .flatten()
            .map(|r| {
                Ok((
                    r.try_get(0)?,
                    r.try_get(1)?,
                    r.try_get(2)?,
                    r.try_get::<_, i64>(3)? != 0,
                ))
            })
            .collect()
    }

    /// One statement for every argument list: each parameter's values as
    /// an array, unnested into one row per list.
    async fn select_written(
        &self,
        query: usize,
        part: usize,
        params: &[&[Value]],
        since: i64,
    ) -> Result<Vec<(usize, Selected)>> {
        let sql = &self.store.written_parts[query][part];
        let part = &self.store.parts[query][part];
        let mut types = vec![Type::INT8, Type::INT8_ARRAY];
        let mut bound: Vec<Param> = vec![
            Box::new(since),
            Box::new((0..params.len() as i64).collect::<Vec<i64>>()),
        ];
        for (i, ty) in part.types.iter().enumerate() {
            types.push(values::array_type(*ty));
            bound.push(values::to_array(*ty, params.iter().map(|list| &list[i])));
        }
        let statement = self.tx.prepare_typed_cached(sql, &types).await?;
        let rows = self.tx.query(&statement, &refs(&bound)).await?;
        let key = &self.store.tables[part.table].key;
        rows.iter()
            .map(|r| {
                let list = r.try_get::<_, i64>(0)? as usize;
                Ok((list, (to_row(r, 1, key)?, r.try_get(key.len() + 1)?)))
            })
            .collect()
    }
}

impl PgTx<'_> {
    /// The app's query part `part` of `query`: its table, its condition
    /// (rendered for Postgres), and its placeholders' types.
    fn part_text(&self, query: usize, part: usize) -> (&Table, String, Vec<Type>) {
        let app = &self.store.versions.current().app;
        let compiled = &self.store.parts[query][part];
        let part = &app.queries[query].parts[part];
        let condition = part.statement().render(Placeholders::Dollar);
        let types = compiled.types.iter().map(|ty| pg_type(*ty)).collect();
        (&app.tables[compiled.table], condition, types)
    }

    fn bound(&self, query: usize, part: usize, params: &[Value]) -> Vec<Param> {
        self.store.parts[query][part]
            .types
            .iter()
            .zip(params)
            .map(|(ty, value)| values::to_param(*ty, value))
            .collect()
    }
}

impl LazyTx for PgTx<'_> {
    async fn count(&self, query: usize, part: usize, params: &[Value]) -> Result<u64> {
        let (table, condition, types) = self.part_text(query, part);
        let statement = self
            .tx
            .prepare_typed_cached(&part_count(table, &condition), &types)
            .await?;
        let bound = self.bound(query, part, params);
        let row = self.tx.query_one(&statement, &refs(&bound)).await?;
        Ok(row.try_get::<_, i64>(0)? as u64)
    }

    async fn part_rows(&self, rows: PartRows<'_>) -> Result<Vec<(Row, i64)>> {
        let (table, condition, mut types) = self.part_text(rows.query, rows.part);
        let t = &self.store.tables[self.store.parts[rows.query][rows.part].table];
        let mut bound = self.bound(rows.query, rows.part, rows.params);
        if let Some(after) = rows.after {
            for ((_, ty), value) in t.key.iter().zip(after) {
                types.push(pg_type(*ty));
                bound.push(values::key_param(*ty, value).ok_or_else(|| {
                    StoreError::Internal(format!("a cursor key of the wrong type for `{}`", t.name))
                })?);
            }
        }
        types.push(Type::INT8);
        bound.push(Box::new(rows.limit as i64));
        let sql = part_rows(
            table,
            &condition,
            rows.params.len(),
            rows.after.is_some(),
            '$',
        );
        let statement = self.tx.prepare_typed_cached(&sql, &types).await?;
        let found = self.tx.query(&statement, &refs(&bound)).await?;
        let width = t.columns.len();
        found
            .iter()
            .map(|r| Ok((to_row(r, 0, &t.columns)?, r.try_get(width)?)))
            .collect()
    }

    /// Compared by Postgres, in the key columns' collation (the database's,
    /// as the table's own), as the pages' range is.
    async fn keys_after(
        &self,
        table: usize,
        keys: &[Vec<Value>],
        after: &[Value],
    ) -> Result<Vec<bool>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let t = &self.store.tables[table];
        let (mut bound, mut types) = key_arrays(t, keys)?;
        let n = t.key.len();
        for ((_, ty), value) in t.key.iter().zip(after) {
            types.push(pg_type(*ty));
            bound.push(values::key_param(*ty, value).ok_or_else(|| {
                StoreError::Internal(format!("a cursor key of the wrong type for `{}`", t.name))
            })?);
        }
        let list = |from: usize, prefix: &str| {
            (from..from + n)
                .map(|i| format!("{prefix}{i}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let sql = format!(
            "SELECT ({}) > ({}) FROM unnest({}) WITH ORDINALITY AS u({}, _ferry_i) ORDER BY _ferry_i",
            list(0, "k"),
            list(n + 1, "$"),
            list(1, "$"),
            list(0, "k"),
        );
        let statement = self.tx.prepare_typed_cached(&sql, &types).await?;
        let found = self.tx.query(&statement, &refs(&bound)).await?;
        found.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    async fn record_sent(&self, group_id: &str, rows: &[HeldRow]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let statement = self
            .tx
            .prepare_typed_cached(
                &UPSERT_SENT_VIEW_ROWS,
                &[
                    Type::TEXT,
                    Type::TEXT_ARRAY,
                    Type::TEXT_ARRAY,
                    Type::INT8_ARRAY,
                    Type::INT8_ARRAY,
                    Type::INT8_ARRAY,
                ],
            )
            .await?;
        let tables: Vec<&str> = rows.iter().map(|r| r.table.as_str()).collect();
        let keys: Vec<&str> = rows.iter().map(|r| r.key.as_str()).collect();
        let row_versions: Vec<i64> = rows.iter().map(|r| r.row_version).collect();
        let patch_versions: Vec<i64> = rows.iter().map(|r| r.patch_version).collect();
        let presence: Vec<i64> = rows.iter().map(|r| r.present as i64).collect();
        self.tx
            .execute(
                &statement,
                &[
                    &group_id,
                    &tables,
                    &keys,
                    &row_versions,
                    &patch_versions,
                    &presence,
                ],
            )
            .await?;
        Ok(())
    }

    async fn forget(&self, group_id: &str) -> Result<()> {
        let statement = self
            .tx
            .prepare_typed_cached(&self.store.view.forget, &[Type::TEXT])
            .await?;
        self.tx.execute(&statement, &[&group_id]).await?;
        Ok(())
    }
}

impl ViewTx for PgTx<'_> {
    async fn open_view(&self, group_id: &str, user_id: &str) -> Result<ViewHead> {
        let view = &self.store.view;
        let create = self
            .tx
            .prepare_typed_cached(&view.create, &[Type::TEXT, Type::TEXT])
            .await?;
        self.tx.execute(&create, &[&group_id, &user_id]).await?;
        let head = self
            .tx
            .prepare_typed_cached(&format!("{} FOR UPDATE", view.head), &[Type::TEXT])
            .await?;
        let row = self.tx.query_one(&head, &[&group_id]).await?;
        Ok(ViewHead {
            version: row.try_get(0)?,
            user_id: row.try_get(1)?,
            clients: row.try_get(2)?,
            subscriptions: row.try_get(3)?,
        })
    }

    async fn select(&self, query: usize, part: usize, params: &[Value]) -> Result<Vec<Selected>> {
        let part = &self.store.parts[query][part];
        let types: Vec<Type> = part.types.iter().map(|ty| pg_type(*ty)).collect();
        let statement = self.tx.prepare_typed_cached(&part.sql, &types).await?;
        let bound: Vec<Param> = part
            .types
            .iter()
            .zip(params)
            .map(|(ty, value)| values::to_param(*ty, value))
            .collect();
        let rows = self.tx.query(&statement, &refs(&bound)).await?;
        let key = &self.store.tables[part.table].key;
        rows.iter()
            .map(|r| Ok((to_row(r, 0, key)?, r.try_get(key.len())?)))
            .collect()
    }

    async fn held(&self, group_id: &str) -> Result<Vec<HeldRow>> {
        let held = self
            .tx
            .prepare_typed_cached(&self.store.view.held, &[Type::TEXT])
            .await?;
        let rows = self.tx.query(&held, &[&group_id]).await?;
        rows.iter().map(held_row).collect()
    }

    /// One round trip: the head and every changed row, pipelined.
    async fn record(
        &self,
        group_id: &str,
        head: &ViewHead,
        subscriptions: &str,
        rows: &[HeldRow],
    ) -> Result<()> {
        let view = &self.store.view;
        let text = Type::TEXT;
        let update = self
            .tx
            .prepare_typed_cached(
                &view.update_head,
                &[text.clone(), Type::INT8, text.clone(), text.clone()],
            )
            .await?;
        let upsert = self
            .tx
            .prepare_typed_cached(
                &UPSERT_VIEW_ROWS,
                &[
                    text.clone(),
                    Type::TEXT_ARRAY,
                    Type::TEXT_ARRAY,
                    Type::INT8_ARRAY,
                    Type::INT8_ARRAY,
                    Type::INT8_ARRAY,
                ],
            )
            .await?;
        let tables: Vec<&str> = rows.iter().map(|r| r.table.as_str()).collect();
        let keys: Vec<&str> = rows.iter().map(|r| r.key.as_str()).collect();
        let row_versions: Vec<i64> = rows.iter().map(|r| r.row_version).collect();
        let patch_versions: Vec<i64> = rows.iter().map(|r| r.patch_version).collect();
        let presence: Vec<i64> = rows.iter().map(|r| r.present as i64).collect();
        let row_params: [&(dyn ToSql + Sync); 6] = [
            &group_id,
            &tables,
            &keys,
            &row_versions,
            &patch_versions,
            &presence,
        ];
        let head_params: [&(dyn ToSql + Sync); 4] =
            [&group_id, &head.version, &subscriptions, &head.clients];
        let (updated, upserted) = tokio::join!(
            self.tx.execute(&update, &head_params),
            self.tx.execute(&upsert, &row_params)
        );
        updated?;
        upserted?;
        Ok(())
    }

    async fn patched(&self, rows: PatchedRows<'_>) -> Result<Vec<HeldRow>> {
        let text = Type::TEXT;
        let statement = self
            .tx
            .prepare_typed_cached(
                &self.store.view.patched,
                &[
                    text.clone(),
                    text.clone(),
                    text,
                    Type::INT8,
                    Type::INT8,
                    Type::INT8,
                    Type::INT8,
                ],
            )
            .await?;
        let present = rows.present_only as i64;
        let limit = rows.limit as i64;
        let found = self
            .tx
            .query(
                &statement,
                &[
                    &rows.group_id,
                    &rows.table,
                    &rows.after,
                    &rows.at,
                    &rows.base,
                    &present,
                    &limit,
                ],
            )
            .await?;
        found.iter().map(held_row).collect()
    }

    async fn paging(&self, group_id: &str) -> Result<Option<String>> {
        let statement = self
            .tx
            .prepare_typed_cached(&self.store.view.paging, &[Type::TEXT])
            .await?;
        let row = self.tx.query_opt(&statement, &[&group_id]).await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    async fn record_paging(&self, group_id: &str, paging: &str) -> Result<()> {
        let statement = self
            .tx
            .prepare_typed_cached(&self.store.view.record_paging, &[Type::TEXT, Type::TEXT])
            .await?;
        self.tx.execute(&statement, &[&group_id, &paging]).await?;
        Ok(())
    }

    async fn floor(&self, group_id: &str) -> Result<i64> {
        let statement = self
            .tx
            .prepare_typed_cached(&self.store.view.floor, &[Type::TEXT])
            .await?;
        let row = self.tx.query_opt(&statement, &[&group_id]).await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?.unwrap_or(0))
    }

    /// One round trip: the rows forgotten and the floor, pipelined.
    async fn prune(&self, group_id: &str, through: i64) -> Result<()> {
        let view = &self.store.view;
        let prune = self
            .tx
            .prepare_typed_cached(&view.prune, &[Type::TEXT, Type::INT8])
            .await?;
        let floor = self
            .tx
            .prepare_typed_cached(&view.record_floor, &[Type::TEXT, Type::INT8])
            .await?;
        let params: [&(dyn ToSql + Sync); 2] = [&group_id, &through];
        let (pruned, floored) = tokio::join!(
            self.tx.execute(&prune, &params),
            self.tx.execute(&floor, &params)
        );
        pruned?;
        floored?;
        Ok(())
    }

    async fn touched(&self, from: i64, to: i64) -> Result<BTreeSet<String>> {
        let app = &self.store.versions.current().app;
        if app.tables.is_empty() || from >= to {
            return Ok(BTreeSet::new());
        }
        let statement = self
            .tx
            .prepare_typed_cached(&tables_touched(&app.tables, '$'), &[Type::INT8, Type::INT8])
            .await?;
        let names = self.tx.query(&statement, &[&from, &to]).await?;
        names.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    /// One statement for all the keys: each key column's values as an array,
    /// unnested back into key tuples.
    async fn rows(&self, table: usize, keys: &[Vec<Value>]) -> Result<Vec<Row>> {
        let t = &self.store.tables[table];
        let (columns, types) = key_arrays(t, keys)?;
        let statement = self
            .tx
            .prepare_typed_cached(&self.store.by_key[table], &types)
            .await?;
        let found = self.tx.query(&statement, &refs(&columns)).await?;
        let mut rows = Vec::with_capacity(found.len());
        for row in &found {
            rows.push(to_row(row, 0, &t.columns)?);
        }
        Ok(rows)
    }
}

/// Keys of table `t` as one array per key column, for `unnest`, with the
/// arrays' types.
fn key_arrays(t: &PgTable, keys: &[Vec<Value>]) -> Result<(Vec<Param>, Vec<Type>)> {
    let wrong = || StoreError::Internal(format!("a view key of the wrong type for `{}`", t.name));
    let mut columns: Vec<Param> = Vec::with_capacity(t.key.len());
    for (i, (_, ty)) in t.key.iter().enumerate() {
        let values = keys.iter().map(|key| key.get(i));
        columns.push(match ty {
            ColumnType::Integer => Box::new(
                values
                    .map(|v| match v {
                        Some(Value::Integer(n)) => Some(*n),
                        _ => None,
                    })
                    .collect::<Option<Vec<i64>>>()
                    .ok_or_else(wrong)?,
            ),
            _ => Box::new(
                values
                    .map(|v| match v {
                        Some(Value::Text(text)) if !text.contains('\0') => Some(text.clone()),
                        _ => None,
                    })
                    .collect::<Option<Vec<String>>>()
                    .ok_or_else(wrong)?,
            ),
        });
    }
    let types: Vec<Type> = t
        .key
        .iter()
        .map(|(_, ty)| match ty {
            ColumnType::Integer => Type::INT8_ARRAY,
            _ => Type::TEXT_ARRAY,
        })
        .collect();
    Ok((columns, types))
}

/// A view row, as `ViewText` selects it.
fn held_row(r: &tokio_postgres::Row) -> Result<HeldRow> {
    Ok(HeldRow {
        table: r.try_get(0)?,
        key: r.try_get(1)?,
        row_version: r.try_get(2)?,
        patch_version: r.try_get(3)?,
        present: r.try_get::<_, i64>(4)? != 0,
    })
}

/// Records view rows in one statement, whatever their number: `1` the
/// group, then per column an array with each row's table, key, row
/// version, patch version and present (0/1).
static UPSERT_VIEW_ROWS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO _ferry_view_rows \
         (group_id, table_name, row_key, row_version, patch_version, present) \
         SELECT $1, * FROM unnest($2::text[], $3::text[], $4::int8[], $5::int8[], $6::int8[]) \
         {VIEW_ROW_CONFLICT}"
    )
});

/// As [`UPSERT_VIEW_ROWS`], for the rows a lazy page sends.
static UPSERT_SENT_VIEW_ROWS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO _ferry_view_rows \
         (group_id, table_name, row_key, row_version, patch_version, present) \
         SELECT $1, * FROM unnest($2::text[], $3::text[], $4::int8[], $5::int8[], $6::int8[]) \
         {VIEW_ROW_SENT_CONFLICT}"
    )
});

/// The connection pool for `url`, and what the poke listener connects with.
fn connect(url: &str) -> Result<(Pool, tokio_postgres::Config, MakeRustlsConnect)> {
    let (mut config, tls) = tls::parse(url)?;
    if config.get_application_name().is_none() {
        config.application_name("ferrydb-server");
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    let session = match config.get_options() {
        Some(theirs) => format!("{SESSION_LIMITS} {theirs}"),
        None => SESSION_LIMITS.to_owned(),
    };
    config.options(session);
    let manager = Manager::from_config(
        config.clone(),
        tls.clone(),
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager)
        .max_size(POOL_SIZE)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(POOL_WAIT))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .build()
        .map_err(|e| StoreError::Internal(format!("cannot build the connection pool: {e}")))?;
    Ok((pool, config, tls))
}

/// One transaction holding the advisory lock that serialises schema work
/// across instances (a second instance starting waits, then sees the first
/// one's changes): the bookkeeping on first start, the schema steps `mode`
/// allows, and the app definitions served so far. Rolled back in
/// [`Mode::Plan`] and on any error.
async fn schema_transaction(
    pool: &Pool,
    app: &AppDefinition,
    mode: Mode,
) -> Result<(Plan, Vec<AppDefinition>)> {
    let mut client = pool.get().await.map_err(pool_error)?;
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&schema::OPEN_LOCK])
        .await?;
    if mode == Mode::Apply {
        // Rebuilding a large table takes longer than a request may.
        tx.batch_execute("SET LOCAL statement_timeout = 0").await?;
    }
    let known: bool = tx
        .query_one("SELECT to_regclass('_ferry_version') IS NOT NULL", &[])
        .await?
        .get(0);
    if !known {
        let bookkeeping = schema::bookkeeping(&schema::DIALECT);
        let extra = schema::BOOKKEEPING_EXTRA.iter().map(|sql| sql.to_string());
        for sql in bookkeeping.into_iter().chain(extra) {
            tx.batch_execute(&sql).await?;
        }
    }
    for sql in view_tables(&schema::DIALECT) {
        tx.batch_execute(&sql).await?;
    }
    let schema = Schema(&tx);
    let done = match evolve(&schema, app, mode).await {
        Ok(plan) => served_apps(&schema).await.map(|served| (plan, served)),
        Err(e) => Err(e),
    };
    match done {
        Ok(done) if mode != Mode::Plan => {
            if done.0.moves_version() {
                // Clients of every instance pull the rows sent again.
                tx.execute(
                    "SELECT pg_notify($1, value::text) FROM _ferry_version",
                    &[&schema::POKE_CHANNEL],
                )
                .await?;
            }
            tx.commit().await?;
            Ok(done)
        }
        // Rolled back before the connection goes back to the pool (or
        // away), so no lock outlives the refusal.
        done => {
            tx.rollback().await?;
            done
        }
    }
}

/// The Postgres store's side of the schema steps.
struct Schema<'a>(&'a Transaction<'a>);

impl SchemaTx for Schema<'_> {
    async fn recorded(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        let rows = self
            .0
            .query(
                "SELECT key, value FROM _ferry_meta WHERE starts_with(key, $1) ORDER BY key",
                &[&prefix],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn record(&self, key: &str, value: Option<&str>) -> Result<()> {
        match value {
            Some(value) => {
                self.0
                    .execute(
                        "INSERT INTO _ferry_meta (key, value) VALUES ($1, $2) \
                         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                        &[&key, &value],
                    )
                    .await?
            }
            None => {
                self.0
                    .execute("DELETE FROM _ferry_meta WHERE key = $1", &[&key])
                    .await?
            }
        };
        Ok(())
    }

    async fn execute(&self, sql: &str) -> Result<()> {
        self.0.batch_execute(sql).await.map_err(|e| {
            if error::is_transient(&e) {
                e.into()
            } else {
                StoreError::InvalidApp(error::describe(&e))
            }
        })
    }

    fn create(&self, table: &Table) -> Vec<String> {
        PgTable::new(table).create
    }

    fn refresh_triggers(&self, table: &Table) -> Vec<String> {
        vec![PgTable::new(table).record_function]
    }

    fn drop_extras(&self, table: &Table) -> Vec<String> {
        let t = &table.name;
        vec![format!(
            "DROP FUNCTION _ferry_stamp_{t}(), _ferry_record_{t}()"
        )]
    }

    fn sql_type(&self, ty: ColumnType) -> &'static str {
        ty.postgres_type()
    }
}

/// Renders every served mutator statement for Postgres and prepares it
/// once against the real schema: one that does not prepare refuses the app.
async fn compile(pool: &Pool, versions: &Versions) -> Result<HashMap<(u32, String), PgMutator>> {
    let client = pool.get().await.map_err(pool_error)?;
    let mut compiled = HashMap::new();
    for served in versions.all() {
        let version = served.app.version;
        for def in &served.app.mutators {
            let mut statements = Vec::new();
            for (index, (sql, args)) in def.rendered(Placeholders::Dollar).into_iter().enumerate() {
                let types: Vec<Type> = args.iter().map(|&i| pg_type(def.params[i].ty)).collect();
                if let Err(e) = client.prepare_typed(&sql, &types).await {
                    if error::is_transient(&e) {
                        return Err(e.into());
                    }
                    return Err(StoreError::InvalidApp(format!(
                        "statement {} of mutator `{}` (schema version {version}) does not run on \
                         Postgres: {}",
                        index + 1,
                        def.name,
                        error::describe(&e)
                    )));
                }
                statements.push(PgStatement { sql, args, types });
            }
            compiled.insert((version, def.name.clone()), PgMutator { statements });
        }
    }
    Ok(compiled)
}

/// Gives Postgres statistics for the touched logs, which hold rows only
/// inside a push's transaction. A log never analysed is estimated at
/// thousands of rows, and the write check's plan then turns a rule's
/// `EXISTS` into a hash over the whole table it reads (10 ms per push with
/// 100,000 memberships) instead of an index lookup per touched row (0.1 ms).
/// Analysed while empty, a log is estimated at one row; autovacuum, which
/// only ever sees it empty, keeps it so. Cheap, and run on every start so
/// databases made by earlier servers get it too.
async fn analyze_touched_logs(pool: &Pool, tables: &[PgTable]) -> Result<()> {
    if tables.is_empty() {
        return Ok(());
    }
    let logs: Vec<String> = tables
        .iter()
        .map(|t| schema::touched_table(&t.name))
        .collect();
    let client = pool.get().await.map_err(pool_error)?;
    client
        .batch_execute(&format!("ANALYZE {}", logs.join(", ")))
        .await?;
    Ok(())
}

/// Prepares each table's write-rule check once, alone, so a rule the
/// validation let through but Postgres cannot run (a syntax or type error in
/// a subquery) refuses the app at start, naming its table, instead of
/// failing every mutation later.
async fn prepare_write_rules(pool: &Pool, synced: &[Table]) -> Result<()> {
    let client = pool.get().await.map_err(pool_error)?;
    for table in synced {
        let sql = format!("SELECT {}", schema::write_violation(table, synced));
        if let Err(e) = client.prepare_typed(&sql, &[Type::TEXT]).await {
            if error::is_transient(&e) {
                return Err(e.into());
            }
            return Err(StoreError::InvalidApp(format!(
                "write rule of table `{}` does not run on Postgres: {}",
                table.name,
                error::describe(&e)
            )));
        }
    }
    Ok(())
}

/// Renders every part of the app's queries for Postgres and prepares it
/// once against the real schema: one that does not prepare refuses the
/// app, naming the query and the part.
async fn compile_queries(pool: &Pool, app: &AppDefinition) -> Result<Vec<Vec<PgPart>>> {
    let client = pool.get().await.map_err(pool_error)?;
    let mut compiled = Vec::with_capacity(app.queries.len());
    for query in &app.queries {
        let mut parts = Vec::with_capacity(query.parts.len());
        for part in &query.parts {
            let table = app
                .tables
                .iter()
                .position(|t| t.name == part.table)
                .expect("validated: a part's table is synced");
            let statement = part.statement();
            let types: Vec<ColumnType> = statement
                .params
                .iter()
                .map(|name| match query.param(name) {
                    Some(param) => param.ty,
                    None if name == USER_ID_PARAM => ColumnType::Text,
                    None => unreachable!("validated: every parameter is declared or :user_id"),
                })
                .collect();
            let sql = part_select(&app.tables[table], &statement.render(Placeholders::Dollar));
            let pg_types: Vec<Type> = types.iter().map(|ty| pg_type(*ty)).collect();
            if let Err(e) = client.prepare_typed(&sql, &pg_types).await {
                if error::is_transient(&e) {
                    return Err(e.into());
                }
                return Err(StoreError::InvalidApp(format!(
                    "part `{}` of query `{}` does not run on Postgres: {}",
                    part.table,
                    query.name,
                    error::describe(&e)
                )));
            }
            parts.push(PgPart { sql, table, types });
        }
        compiled.push(parts);
    }
    Ok(compiled)
}

fn to_row(
    row: &tokio_postgres::Row,
    start: usize,
    columns: &[(String, ColumnType)],
) -> Result<Row> {
    columns
        .iter()
        .enumerate()
        .map(|(i, (name, ty))| Ok((name.clone(), values::to_json(row, start + i, *ty)?)))
        .collect()
}
