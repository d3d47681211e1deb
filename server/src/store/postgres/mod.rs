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

mod error;
mod listen;
mod schema;
mod values;

use super::{LoggedMutation, Result, StoreError, StoreOptions};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Transaction};
use error::{pool_error, statement_message};
use ferrydb::engine::sync::values::bind_args;
use ferrydb::engine::sync::Error as SyncError;
use ferrydb::engine::value::Value;
use ferrydb_protocol::sql::Placeholders;
use ferrydb_protocol::{
    AppDefinition, ColumnType, Cookie, MismatchAction, Mutation, MutationResult, Mutator, PatchOp,
    PullOk, PullRequest, PullResponse, PushRequest, PushResponse, RejectionCode, Row,
    SchemaMismatch,
};
use schema::{pg_type, PgTable};
use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::time::Duration;
use tokio_postgres::types::Type;
use tokio_postgres::{IsolationLevel, NoTls};
use values::{refs, Param};

/// Most mutations processed in one transaction (each has a savepoint;
/// Postgres caches 64 subtransactions per backend before every snapshot in
/// the cluster gets slower).
pub const CHUNK: usize = 32;
/// Connections per store for pushes and pulls (the listener has its own).
const POOL_SIZE: usize = 16;
/// How long a request waits for a connection before it is `Unavailable`.
const POOL_WAIT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub struct PostgresStore {
    pool: Pool,
    app: AppDefinition,
    tables: Vec<PgTable>,
    mutators: HashMap<String, PgMutator>,
    write_check: String,
    finish: String,
    page_size: usize,
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
        let mut config = tokio_postgres::Config::from_str(url).map_err(|e| {
            StoreError::InvalidApp(format!("invalid Postgres URL: {}", error::describe(&e)))
        })?;
        if config.get_application_name().is_none() {
            config.application_name("ferrydb-server");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
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
        let listener = listen::Listener::start(config, options.pokes.clone()).await?;
        Ok(PostgresStore {
            write_check: schema::write_check(&tables),
            finish: schema::finish_mutation(&tables),
            pool,
            app,
            tables,
            mutators,
            page_size: options.page_size.max(1),
            _listener: listener,
        })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.pool.get().await.map_err(pool_error)
    }

    fn mismatch(&self, client_version: u32) -> Option<SchemaMismatch> {
        let server = self.app.version;
        let action = match client_version.cmp(&server) {
            std::cmp::Ordering::Equal => return None,
            std::cmp::Ordering::Less => MismatchAction::UpdateApp,
            std::cmp::Ordering::Greater => MismatchAction::RetryLater,
        };
        Some(SchemaMismatch {
            server_schema_version: server,
            action,
        })
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
        let client_id = &request.client_id;
        check_owner(tx, user_id, client_id, &request.client_group_id).await?;
        // Without the lock: `lastMutationID` only grows and a rejection
        // commits with it, so what is already processed can be answered now.
        let mut last = last_mutation_id(tx, client_id).await?;
        let mut locked = false;
        let mut processed = 0;
        let mut version = None;
        let mut results = Vec::new();
        let mut more = false;
        for mutation in mutations {
            if mutation.id > last && !locked {
                // From here on this push owns the version row until it
                // commits. Ownership and `lastMutationID` may have moved
                // while we waited: read them again.
                tx.query_one(
                    "SELECT set_config($1, 'on', true) FROM _ferry_version FOR UPDATE",
                    &[&schema::RECORDING],
                )
                .await?;
                locked = true;
                check_owner(tx, user_id, client_id, &request.client_group_id).await?;
                last = last_mutation_id(tx, client_id).await?;
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
            tx.execute(
                "SELECT pg_notify($1, $2)",
                &[&schema::POKE_CHANNEL, &version.to_string()],
            )
            .await?;
        }
        Ok(Chunk { results, more })
    }

    /// Runs one mutation (the next one of its client) and records it.
    async fn process(
        &self,
        tx: &Transaction<'_>,
        user_id: &str,
        request: &PushRequest,
        mutation: &Mutation,
    ) -> Result<(MutationResult, i64)> {
        let id = mutation.id;
        let version: i64 = tx
            .query_one(
                "UPDATE _ferry_version SET value = value + 1 RETURNING value",
                &[],
            )
            .await?
            .get(0);
        // The run has a savepoint of its own: a rejection rolls back the
        // mutator's effects but keeps the bookkeeping below.
        tx.batch_execute("SAVEPOINT ferry_run").await?;
        let outcome = self.run_checked(tx, user_id, mutation).await;
        let result = match outcome {
            Ok(Ok(())) => {
                tx.batch_execute("RELEASE SAVEPOINT ferry_run").await?;
                MutationResult::Ok { id }
            }
            Ok(Err(Rejected(code, message))) => {
                tx.batch_execute("ROLLBACK TO SAVEPOINT ferry_run; RELEASE SAVEPOINT ferry_run")
                    .await?;
                MutationResult::Rejected { id, code, message }
            }
            // The database failed under us: the whole push is retried.
            Err(e) => return Err(e),
        };
        let (outcome, message) = match &result {
            MutationResult::Rejected { code, message, .. } => {
                (code.as_str().to_owned(), Some(message.clone()))
            }
            _ => ("ok".to_owned(), None),
        };
        let finish = tx
            .prepare_typed_cached(&self.finish, schema::FINISH_TYPES)
            .await?;
        tx.execute(
            &finish,
            &[
                &request.client_id,
                &request.client_group_id,
                &(id as i64),
                &version,
                &user_id,
                &mutation.name,
                &outcome,
                &message,
            ],
        )
        .await?;
        Ok((result, version))
    }

    /// Runs the server's mutator of that name with the arguments, then checks
    /// the write rule on every row it touched, before and after.
    async fn run_checked(
        &self,
        tx: &Transaction<'_>,
        user_id: &str,
        mutation: &Mutation,
    ) -> Result<Result<(), Rejected>> {
        let Some(mutator) = self.mutators.get(&mutation.name) else {
            let e = SyncError::UnknownMutator(mutation.name.clone());
            return Ok(Err(Rejected(RejectionCode::UnknownMutator, e.to_string())));
        };
        let values = match bind_args(&mutator.def, &mutation.args) {
            Ok(values) => values,
            Err(e) => return Ok(Err(Rejected(RejectionCode::BadArguments, e.to_string()))),
        };
        let failed = |e: &tokio_postgres::Error| {
            let e = SyncError::MutatorFailed {
                mutator: mutator.def.name.clone(),
                message: statement_message(e),
            };
            Rejected(RejectionCode::MutatorFailed, e.to_string())
        };
        for statement in &mutator.statements {
            let params: Vec<Param> = statement
                .args
                .iter()
                .map(|&i| values::to_param(mutator.def.params[i].ty, &values[i]))
                .collect();
            let outcome = match tx
                .prepare_typed_cached(&statement.sql, &statement.types)
                .await
            {
                Ok(prepared) => tx.execute(&prepared, &refs(&params)).await.map(drop),
                Err(e) => Err(e),
            };
            match outcome {
                Ok(()) => {}
                Err(e) if error::is_transient(&e) || e.as_db_error().is_none() => {
                    return Err(e.into())
                }
                Err(e) => return Ok(Err(failed(&e))),
            }
        }
        let check = tx
            .prepare_typed_cached(&self.write_check, &[Type::TEXT])
            .await?;
        let violations: Vec<bool> = match tx.query_one(&check, &[&user_id]).await {
            Ok(row) => row.get(0),
            // A rule that fails at run time (a type error on this row) is
            // the mutation's failure, as in SQLite.
            Err(e) if !error::is_transient(&e) && e.as_db_error().is_some() => {
                return Ok(Err(failed(&e)))
            }
            Err(e) => return Err(e.into()),
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
        check_owner(&tx, user_id, &request.client_id, &request.client_group_id).await?;
        let version: i64 = tx
            .query_one("SELECT value FROM _ferry_version", &[])
            .await?
            .get(0);
        let reset = PullResponse::SchemaMismatch(SchemaMismatch {
            server_schema_version: self.app.version,
            action: MismatchAction::ResetReplica,
        });
        let (since, patch, cookie, more) = match &request.cookie {
            Some(Cookie::Integer(since)) if *since > version => return Ok(reset),
            Some(Cookie::Integer(since)) => (
                *since,
                self.changes_since(&tx, user_id, *since).await?,
                Cookie::Integer(version),
                false,
            ),
            None => self.full_page(&tx, user_id, version, 0, None).await?,
            Some(Cookie::Text(cursor)) => match self.parse_cursor(cursor) {
                Some((at, table, after)) if at <= version => {
                    self.full_page(&tx, user_id, at, table, Some(after)).await?
                }
                _ => return Ok(reset),
            },
        };
        let rows = tx
            .query(
                "SELECT client_id, last_mutation_id FROM _ferry_clients \
                 WHERE client_group_id = $1 AND version > $2",
                &[&request.client_group_id, &since],
            )
            .await?;
        let last_mutation_id_changes: BTreeMap<String, u64> = rows
            .iter()
            .map(|r| (r.get(0), r.get::<_, i64>(1) as u64))
            .collect();
        tx.commit().await?;
        Ok(PullResponse::Ok(PullOk {
            cookie,
            last_mutation_id_changes,
            patch,
            more,
        }))
    }

    async fn changes_since(
        &self,
        tx: &Transaction<'_>,
        user_id: &str,
        since: i64,
    ) -> Result<Vec<PatchOp>> {
        let mut patch = Vec::new();
        for table in &self.tables {
            let query = tx
                .prepare_typed_cached(&table.changes, &[Type::TEXT, Type::INT8])
                .await?;
            let rows = tx.query(&query, &[&user_id, &since]).await?;
            let key_len = table.key.len();
            for r in &rows {
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
    ) -> Result<(i64, Vec<PatchOp>, Cookie, bool)> {
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
            return Ok((-1, patch, Cookie::Integer(at), false));
        }
        let key: Vec<serde_json::Value> =
            after.unwrap_or_default().iter().map(key_to_json).collect();
        let cursor = format!("full:{at}:{table}:{}", serde_json::Value::Array(key));
        Ok((-1, patch, Cookie::Text(cursor), true))
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

/// Refuses a request that names a client, or a client group, that another
/// user's requests created.
async fn check_owner(
    tx: &Transaction<'_>,
    user_id: &str,
    client_id: &str,
    group_id: &str,
) -> Result<()> {
    let other = tx
        .query_opt(
            "SELECT 1 FROM _ferry_clients \
             WHERE (client_id = $1 OR client_group_id = $2) AND user_id <> $3 LIMIT 1",
            &[&client_id, &group_id, &user_id],
        )
        .await?;
    match other {
        Some(_) => Err(StoreError::Forbidden(format!(
            "client `{client_id}` (group `{group_id}`) belongs to another user"
        ))),
        None => Ok(()),
    }
}

async fn last_mutation_id(tx: &Transaction<'_>, client_id: &str) -> Result<u64> {
    let row = tx
        .query_opt(
            "SELECT last_mutation_id FROM _ferry_clients WHERE client_id = $1",
            &[&client_id],
        )
        .await?;
    Ok(row.map_or(0, |r| r.get::<_, i64>(0) as u64))
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

/// Keys are integers or text (validated), so JSON carries them exactly.
fn key_to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Integer(i) => (*i).into(),
        Value::Text(t) => t.clone().into(),
        _ => serde_json::Value::Null,
    }
}

fn key_from_json(j: &serde_json::Value) -> Option<Value> {
    match j {
        serde_json::Value::String(s) => Some(Value::Text(s.clone())),
        serde_json::Value::Number(n) => n.as_i64().map(Value::Integer),
        _ => None,
    }
}
