//! The production store: the protocol's server side over Postgres, with the
//! behaviour of the SDK's `ModelServer` (which the seeded sync simulation
//! proves), so a client cannot tell the two stores apart. Several server
//! instances may share one database.
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

use super::{LoggedMutation, Result, StoreError, StoreOptions};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Transaction};
use error::{pool_error, statement_message};
use ferrydb::engine::sync::values::{bind_args, key_from_json, key_to_json};
use ferrydb::engine::sync::Error as SyncError;
use ferrydb::engine::value::Value;
use ferrydb_protocol::sql::Placeholders;
use ferrydb_protocol::{
    AppDefinition, ColumnType, Cookie, MismatchAction, Mutation, MutationResult, Mutator, PatchOp,
    PullOk, PullRequest, PullResponse, PushRequest, PushResponse, RejectionCode, Row,
    SchemaMismatch,
};
use futures_util::future::join_all;
use schema::{pg_type, PgTable};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use tokio_postgres::types::ToSql;
use tokio_postgres::types::Type;
use tokio_postgres::IsolationLevel;
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
    /// The app's schema version, compared on every exchange.
    schema_version: u32,
    tables: Vec<PgTable>,
    mutators: HashMap<String, PgMutator>,
    write_check: String,
    finish: String,
    page_size: usize,
    push_slots: tokio::sync::Semaphore,
    _listener: listen::Listener,
}

struct PgMutator {
    def: Mutator,
    statements: Vec<PgStatement>,
}

struct PgStatement {
    sql: String,
    /// For each placeholder in order, the index of the declared parameter.
    args: Vec<usize>,
    types: Vec<Type>,
}

/// Why a mutation was rejected (an outcome, not an error of the store).
struct Rejected(RejectionCode, String);

/// A push's progress through one transaction.
struct Chunk {
    results: Vec<MutationResult>,
    /// The chunk limit was reached with mutations left to process.
    more: bool,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://…` or `postgresql://…`), creates the
    /// bookkeeping and the app's tables on first start and tables the app
    /// added since; a table whose definition changed is refused
    /// (`InvalidApp`), as the SQLite store does. Returns once the poke
    /// listener is listening.
    pub async fn open(url: &str, app: AppDefinition, options: StoreOptions) -> Result<Self> {
        app.validate()
            .map_err(|e| StoreError::InvalidApp(e.to_string()))?;
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
        {
            let mut client = pool.get().await.map_err(pool_error)?;
            let tx = client.transaction().await?;
            create_tables(&tx, &app, &tables).await?;
            tx.commit().await?;
        }
        let mutators = compile(&pool, &app).await?;
        let listener = listen::Listener::start(config, tls, options.pokes.clone()).await?;
        Ok(PostgresStore {
            write_check: schema::write_check(&tables),
            finish: schema::finish_mutation(&tables),
            pool,
            schema_version: app.version,
            tables,
            mutators,
            page_size: options.page_size.max(1),
            push_slots: tokio::sync::Semaphore::new(PUSH_SLOTS),
            _listener: listener,
        })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.pool.get().await.map_err(pool_error)
    }

    fn mismatch(&self, client_version: u32) -> Option<SchemaMismatch> {
        SchemaMismatch::between(client_version, self.schema_version)
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

    /// Handles `POST push` for the authenticated `user_id`.
    pub async fn push(&self, user_id: &str, request: PushRequest) -> Result<PushResponse> {
        if let Some(m) = self.mismatch(request.schema_version) {
            return Ok(PushResponse::SchemaMismatch(m));
        }
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
            let rest = &request.mutations[results.len()..];
            let tx = client.transaction().await?;
            let chunk = self.push_chunk(&tx, user_id, &request, rest).await?;
            tx.commit().await?;
            results.extend(chunk.results);
            if !chunk.more {
                break;
            }
        }
        Ok(PushResponse::Ok { results })
    }

    /// Processes mutations from the start of `mutations` in `tx`, up to
    /// [`CHUNK`] of them, stopping at a gap.
    async fn push_chunk(
        &self,
        tx: &Transaction<'_>,
        user_id: &str,
        request: &PushRequest,
        mutations: &[Mutation],
    ) -> Result<Chunk> {
        let (client_id, group_id) = (&request.client_id, &request.client_group_id);
        let state = tx
            .prepare_typed_cached(CLIENT_STATE, &[Type::TEXT, Type::TEXT, Type::TEXT])
            .await?;
        let state_params: [&(dyn ToSql + Sync); 3] = [client_id, group_id, &user_id];
        // Without the lock: `lastMutationID` only grows and a rejection
        // commits with it, so what is already processed can be answered now.
        let mut last = client_state(tx.query_one(&state, &state_params).await?, request)?;
        let mut locked = false;
        let mut processed = 0;
        let mut version = None;
        let mut results = Vec::new();
        let mut more = false;
        for mutation in mutations {
            if mutation.id > last && !locked {
                // From here on this push owns the version row until it
                // commits. Ownership and `lastMutationID` may have moved
                // while we waited: read them again (a statement of its own,
                // so it sees everything committed before the lock was ours).
                let lock = tx.prepare_typed_cached(LOCK, &[Type::TEXT]).await?;
                let (lock, now) = tokio::join!(
                    tx.query_one(&lock, &[&schema::RECORDING]),
                    tx.query_one(&state, &state_params)
                );
                lock?;
                last = client_state(now?, request)?;
                locked = true;
            }
            if mutation.id <= last {
                results.push(recorded(tx, client_id, mutation.id).await?);
                continue;
            }
            if mutation.id > last + 1 {
                // A gap: an earlier mutation has not arrived. Stop; the client resends.
                break;
            }
            if processed == CHUNK {
                more = true;
                break;
            }
            let (result, v) = self.process(tx, user_id, request, mutation).await?;
            results.push(result);
            last = mutation.id;
            processed += 1;
            version = Some(v);
        }
        if let Some(version) = version {
            // Delivered when (and only if) this transaction commits.
            let notify = tx.prepare_cached("SELECT pg_notify($1, $2)").await?;
            tx.execute(&notify, &[&schema::POKE_CHANNEL, &version.to_string()])
                .await?;
        }
        Ok(Chunk { results, more })
    }

    /// Runs one mutation (the next one of its client) and records it, in two
    /// round trips: the version bump, the savepoint, the mutator's
    /// statements and the write-rule check go out together (Postgres runs
    /// them in order; after a failing statement the rest fail unrun), then
    /// the end of the savepoint and the bookkeeping.
    async fn process(
        &self,
        tx: &Transaction<'_>,
        user_id: &str,
        request: &PushRequest,
        mutation: &Mutation,
    ) -> Result<(MutationResult, i64)> {
        let id = mutation.id;
        // Everything this mutation runs is prepared first: once a statement
        // of the mutator fails, the transaction accepts nothing (not even a
        // Parse) until the savepoint is rolled back.
        let bump = tx.prepare_cached(BUMP).await?;
        let finish = tx
            .prepare_typed_cached(&self.finish, schema::FINISH_TYPES)
            .await?;
        let (version, outcome, end) = match self.bind(mutation) {
            // Nothing to run, nothing to roll back.
            Err(rejected) => {
                let version: i64 = tx.query_one(&bump, &[]).await?.get(0);
                (version, Err(rejected), None)
            }
            Ok((mutator, values)) => {
                let mut prepared = Vec::with_capacity(mutator.statements.len());
                for statement in &mutator.statements {
                    prepared.push(
                        tx.prepare_typed_cached(&statement.sql, &statement.types)
                            .await?,
                    );
                }
                let check = tx
                    .prepare_typed_cached(&self.write_check, &[Type::TEXT])
                    .await?;
                let params: Vec<Vec<Param>> = mutator
                    .statements
                    .iter()
                    .map(|statement| {
                        statement
                            .args
                            .iter()
                            .map(|&i| values::to_param(mutator.def.params[i].ty, &values[i]))
                            .collect()
                    })
                    .collect();
                let params: Vec<Vec<&(dyn ToSql + Sync)>> =
                    params.iter().map(|p| refs(p)).collect();
                let statements = join_all(
                    prepared
                        .iter()
                        .zip(&params)
                        .map(|(statement, params)| tx.execute(statement, params)),
                );
                // The run has a savepoint of its own: a rejection rolls back
                // the mutator's effects but keeps the bookkeeping.
                let user: [&(dyn ToSql + Sync); 1] = [&user_id];
                let (bumped, savepoint, executed, checked) = tokio::join!(
                    tx.query_one(&bump, &[]),
                    tx.batch_execute("SAVEPOINT ferry_run"),
                    statements,
                    tx.query_one(&check, &user),
                );
                let version: i64 = bumped?.get(0);
                savepoint?;
                let outcome = self.judge(mutator, user_id, executed, checked)?;
                let end = match outcome {
                    Ok(()) => "RELEASE SAVEPOINT ferry_run",
                    Err(_) => "ROLLBACK TO SAVEPOINT ferry_run; RELEASE SAVEPOINT ferry_run",
                };
                (version, outcome, Some(end))
            }
        };
        let result = match outcome {
            Ok(()) => MutationResult::Ok { id },
            Err(Rejected(code, message)) => MutationResult::Rejected { id, code, message },
        };
        let (outcome, message) = match &result {
            MutationResult::Rejected { code, message, .. } => {
                (code.as_str().to_owned(), Some(message.clone()))
            }
            _ => ("ok".to_owned(), None),
        };
        let end = async {
            match end {
                Some(sql) => tx.batch_execute(sql).await,
                None => Ok(()),
            }
        };
        let mutation_id = id as i64;
        let params: [&(dyn ToSql + Sync); 8] = [
            &request.client_id,
            &request.client_group_id,
            &mutation_id,
            &version,
            &user_id,
            &mutation.name,
            &outcome,
            &message,
        ];
        let (ended, finished) = tokio::join!(end, tx.execute(&finish, &params));
        ended?;
        finished?;
        Ok((result, version))
    }

    /// The server's mutator of that name with the arguments checked and
    /// converted, or why not.
    fn bind(&self, mutation: &Mutation) -> Result<(&PgMutator, Vec<Value>), Rejected> {
        let Some(mutator) = self.mutators.get(&mutation.name) else {
            let e = SyncError::UnknownMutator(mutation.name.clone());
            return Err(Rejected(RejectionCode::UnknownMutator, e.to_string()));
        };
        match bind_args(&mutator.def, &mutation.args) {
            Ok(values) => Ok((mutator, values)),
            Err(e) => Err(Rejected(RejectionCode::BadArguments, e.to_string())),
        }
    }

    /// What the mutator's run came to: the first failing statement rejects it
    /// (`mutator_failed`; a connection failure is the store's error instead),
    /// else a row that breaks a write rule before or after (`forbidden`).
    fn judge(
        &self,
        mutator: &PgMutator,
        user_id: &str,
        executed: Vec<Result<u64, tokio_postgres::Error>>,
        checked: Result<tokio_postgres::Row, tokio_postgres::Error>,
    ) -> Result<Result<(), Rejected>> {
        let failed = |e: &tokio_postgres::Error| {
            let e = SyncError::MutatorFailed {
                mutator: mutator.def.name.clone(),
                message: statement_message(e),
            };
            Rejected(RejectionCode::MutatorFailed, e.to_string())
        };
        // A rule that fails at run time (a type error on this row) is the
        // mutation's failure too, as in SQLite.
        let first = match executed.into_iter().find_map(Result::err) {
            Some(e) => Err(e),
            None => checked,
        };
        let violations: Vec<bool> = match first {
            Ok(row) => row.try_get(0)?,
            Err(e) if error::is_transient(&e) || e.as_db_error().is_none() => return Err(e.into()),
            Err(e) => return Ok(Err(failed(&e))),
        };
        if let Some(i) = violations.iter().position(|&broken| broken) {
            return Ok(Err(Rejected(
                RejectionCode::Forbidden,
                format!(
                    "the write rule of `{}` does not allow this change for user {user_id}",
                    self.tables[i].name
                ),
            )));
        }
        Ok(Ok(()))
    }

    /// Handles `POST pull` for the authenticated `user_id`.
    pub async fn pull(&self, user_id: &str, request: PullRequest) -> Result<PullResponse> {
        if let Some(m) = self.mismatch(request.schema_version) {
            return Ok(PullResponse::SchemaMismatch(m));
        }
        let mut client = self.client().await?;
        // One snapshot: the version and the rows agree.
        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let state = tx
            .prepare_typed_cached(PULL_STATE, &[Type::TEXT, Type::TEXT, Type::TEXT])
            .await?;
        let (client_id, group_id) = (&request.client_id, &request.client_group_id);
        let state = tx
            .query_one(&state, &[client_id, group_id, &user_id])
            .await?;
        if state.try_get::<_, bool>(1)? {
            return Err(foreign(client_id, group_id));
        }
        let version: i64 = state.try_get(0)?;
        let reset = PullResponse::SchemaMismatch(SchemaMismatch {
            server_schema_version: self.schema_version,
            action: MismatchAction::ResetReplica,
        });
        // The patch and the clients that moved, queried together.
        let ((patch, cookie, more), changed) = match &request.cookie {
            Some(Cookie::Integer(since)) if *since > version => return Ok(reset),
            Some(Cookie::Integer(since)) => {
                let (patch, changed) = tokio::join!(
                    self.changes_since(&tx, user_id, *since),
                    changed_clients(&tx, group_id, *since)
                );
                ((patch?, Cookie::Integer(version), false), changed?)
            }
            None => {
                let (page, changed) = tokio::join!(
                    self.full_page(&tx, user_id, version, 0, None),
                    changed_clients(&tx, group_id, -1)
                );
                (page?, changed?)
            }
            Some(Cookie::Text(cursor)) => match self.parse_cursor(cursor) {
                Some((at, table, after)) if at <= version => {
                    let (page, changed) = tokio::join!(
                        self.full_page(&tx, user_id, at, table, Some(after)),
                        changed_clients(&tx, group_id, -1)
                    );
                    (page?, changed?)
                }
                _ => return Ok(reset),
            },
        };
        tx.commit().await?;
        Ok(PullResponse::Ok(PullOk {
            cookie,
            last_mutation_id_changes: changed,
            patch,
            more,
        }))
    }

    /// Every row or tombstone with a version after `since`, table by table
    /// (all tables queried at once): a put if the user may read the row, a
    /// del if it is gone or no longer readable.
    async fn changes_since(
        &self,
        tx: &Transaction<'_>,
        user_id: &str,
        since: i64,
    ) -> Result<Vec<PatchOp>> {
        let mut queries = Vec::with_capacity(self.tables.len());
        for table in &self.tables {
            queries.push(
                tx.prepare_typed_cached(&table.changes, &[Type::TEXT, Type::INT8])
                    .await?,
            );
        }
        let params: [&(dyn ToSql + Sync); 2] = [&user_id, &since];
        let answers = join_all(queries.iter().map(|q| tx.query(q, &params))).await;
        let mut patch = Vec::new();
        for (table, rows) in self.tables.iter().zip(answers) {
            let key_len = table.key.len();
            for r in &rows? {
                let readable: Option<bool> = r.try_get(key_len)?;
                if readable == Some(true) {
                    patch.push(PatchOp::Put {
                        table: table.name.clone(),
                        row: to_row(r, key_len + 1, &table.columns)?,
                    });
                } else {
                    patch.push(PatchOp::Del {
                        table: table.name.clone(),
                        key: to_row(r, 0, &table.key)?,
                    });
                }
            }
        }
        Ok(patch)
    }

    /// One page of a full sync of the state at `at`, resuming in table
    /// `table` after key `after` (as `ModelServer::full_page`). Rows changed
    /// after `at` may already show here; the final cookie is `at`, so the
    /// next pull sends them again (harmless) along with rows deleted meanwhile.
    async fn full_page(
        &self,
        tx: &Transaction<'_>,
        user_id: &str,
        at: i64,
        mut table: usize,
        mut after: Option<Vec<Value>>,
    ) -> Result<(Vec<PatchOp>, Cookie, bool)> {
        let mut patch = if after.is_none() && table == 0 {
            vec![PatchOp::Clear]
        } else {
            vec![]
        };
        let mut room = self.page_size;
        while table < self.tables.len() && room > 0 {
            let t = &self.tables[table];
            let mut params: Vec<Param> = vec![Box::new(user_id.to_owned())];
            let (sql, types) = match &after {
                Some(key) => {
                    for ((_, ty), value) in t.key.iter().zip(key) {
                        // Checked by `parse_cursor`.
                        params.push(values::key_param(*ty, value).expect("cursor key type"));
                    }
                    (&t.next_page, t.page_types(false))
                }
                None => (&t.first_page, t.page_types(true)),
            };
            params.push(Box::new(room as i64));
            let query = tx.prepare_typed_cached(sql, &types).await?;
            let rows = tx.query(&query, &refs(&params)).await?;
            room -= rows.len();
            for r in &rows {
                patch.push(PatchOp::Put {
                    table: t.name.clone(),
                    row: to_row(r, 0, &t.columns)?,
                });
            }
            if room == 0 {
                let last = rows.last().expect("a full page has rows");
                let key = t
                    .key_index
                    .iter()
                    .zip(&t.key)
                    .map(|(&i, (_, ty))| values::key_value(last, i, *ty))
                    .collect::<Result<Vec<_>, _>>()?;
                after = Some(key);
            } else {
                table += 1;
                after = None;
            }
        }
        if table >= self.tables.len() {
            return Ok((patch, Cookie::Integer(at), false));
        }
        let key: Vec<serde_json::Value> =
            after.unwrap_or_default().iter().map(key_to_json).collect();
        let cursor = format!("full:{at}:{table}:{}", serde_json::Value::Array(key));
        Ok((patch, Cookie::Text(cursor), true))
    }

    /// `full:<version>:<table index>:<JSON array of the last key>`, with a
    /// table that exists and a key of its key's length and types.
    fn parse_cursor(&self, cursor: &str) -> Option<(i64, usize, Vec<Value>)> {
        let mut parts = cursor.splitn(4, ':');
        if parts.next()? != "full" {
            return None;
        }
        let at = parts.next()?.parse().ok()?;
        let table: usize = parts.next()?.parse().ok()?;
        let key: Vec<serde_json::Value> = serde_json::from_str(parts.next()?).ok()?;
        let key = key.iter().map(key_from_json).collect::<Option<Vec<_>>>()?;
        let t = self.tables.get(table)?;
        let fits = key.len() == t.key.len()
            && t.key
                .iter()
                .zip(&key)
                .all(|((_, ty), v)| values::key_param(*ty, v).is_some());
        fits.then_some((at, table, key))
    }
}

/// Creates the bookkeeping (first start) and the app's new tables, and
/// refuses a table whose definition changed. Holds an advisory lock, so
/// instances starting together do not race.
async fn create_tables(
    tx: &Transaction<'_>,
    app: &AppDefinition,
    tables: &[PgTable],
) -> Result<()> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&schema::OPEN_LOCK])
        .await?;
    let known: bool = tx
        .query_one("SELECT to_regclass('_ferry_version') IS NOT NULL", &[])
        .await?
        .get(0);
    if !known {
        for sql in schema::BOOKKEEPING {
            tx.batch_execute(sql).await?;
        }
    }
    for (table, sql) in app.tables.iter().zip(tables) {
        let def = serde_json::to_string(table).expect("a table serializes");
        let key = format!("table:{}", table.name);
        let stored = tx
            .query_opt("SELECT value FROM _ferry_meta WHERE key = $1", &[&key])
            .await?;
        match stored {
            Some(row) if row.get::<_, String>(0) == def => {}
            Some(_) => {
                return Err(StoreError::InvalidApp(format!(
                    "table `{}` changed since this server's database was created; \
                     migrate the database or start with a new one",
                    table.name
                )))
            }
            None => {
                for statement in &sql.create {
                    tx.batch_execute(statement).await.map_err(|e| {
                        if error::is_transient(&e) {
                            e.into()
                        } else {
                            StoreError::InvalidApp(format!(
                                "cannot create table `{}`: {}",
                                table.name,
                                error::describe(&e)
                            ))
                        }
                    })?;
                }
                tx.execute(
                    "INSERT INTO _ferry_meta (key, value) VALUES ($1, $2)",
                    &[&key, &def],
                )
                .await?;
            }
        }
    }
    Ok(())
}

/// Renders every mutator statement for Postgres and prepares it once against
/// the real schema: one that does not prepare refuses the app.
async fn compile(pool: &Pool, app: &AppDefinition) -> Result<HashMap<String, PgMutator>> {
    let client = pool.get().await.map_err(pool_error)?;
    let mut compiled = HashMap::new();
    for def in &app.mutators {
        let mut statements = Vec::new();
        for (index, (sql, names)) in def.rendered(Placeholders::Dollar).into_iter().enumerate() {
            let args: Vec<usize> = names
                .iter()
                .map(|n| {
                    def.params
                        .iter()
                        .position(|p| &p.name == n)
                        .expect("validated param")
                })
                .collect();
            let types: Vec<Type> = args.iter().map(|&i| pg_type(def.params[i].ty)).collect();
            if let Err(e) = client.prepare_typed(&sql, &types).await {
                if error::is_transient(&e) {
                    return Err(e.into());
                }
                return Err(StoreError::InvalidApp(format!(
                    "statement {} of mutator `{}` does not run on Postgres: {}",
                    index + 1,
                    def.name,
                    error::describe(&e)
                )));
            }
            statements.push(PgStatement { sql, args, types });
        }
        compiled.insert(
            def.name.clone(),
            PgMutator {
                def: def.clone(),
                statements,
            },
        );
    }
    Ok(compiled)
}

/// For clients of `group_id` whose `lastMutationID` moved after `since`, the
/// new value.
async fn changed_clients(
    tx: &Transaction<'_>,
    group_id: &str,
    since: i64,
) -> Result<BTreeMap<String, u64>> {
    let query = tx
        .prepare_typed_cached(CHANGED_CLIENTS, &[Type::TEXT, Type::INT8])
        .await?;
    let rows = tx.query(&query, &[&group_id, &since]).await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get::<_, i64>(1)? as u64)))
        .collect()
}

/// The `lastMutationID` from a [`CLIENT_STATE`] row, or `Forbidden` if the
/// client or its group belongs to another user.
fn client_state(row: tokio_postgres::Row, request: &PushRequest) -> Result<u64> {
    if row.try_get::<_, bool>(1)? {
        return Err(foreign(&request.client_id, &request.client_group_id));
    }
    Ok(row.try_get::<_, Option<i64>>(0)?.unwrap_or(0) as u64)
}

/// A request that names a client, or a client group, that another user's
/// requests created.
fn foreign(client_id: &str, group_id: &str) -> StoreError {
    StoreError::Forbidden(format!(
        "client `{client_id}` (group `{group_id}`) belongs to another user"
    ))
}

/// The answer for a mutation processed before: the remembered rejection, or
/// `alreadyProcessed`.
async fn recorded(tx: &Transaction<'_>, client_id: &str, id: u64) -> Result<MutationResult> {
    let row = tx
        .query_opt(
            "SELECT code, message FROM _ferry_server_rejections \
             WHERE client_id = $1 AND mutation_id = $2",
            &[&client_id, &(id as i64)],
        )
        .await?;
    Ok(match row {
        Some(r) => MutationResult::Rejected {
            id,
            code: RejectionCode::parse(r.get(0)),
            message: r.get(1),
        },
        None => MutationResult::AlreadyProcessed { id },
    })
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
