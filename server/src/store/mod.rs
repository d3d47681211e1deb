//! Where the server keeps its data: the synced tables, row versions and
//! tombstones, each client's last mutation ID, remembered rejections and the
//! mutation log. Two stores with one behaviour: [`SqliteStore`] (embedded, the
//! default) and `PostgresStore` (production; several instances share one
//! database). Both run mutators from the server's own app definition, never
//! SQL from a request.
//!
//! On start a store brings its schema to the app definition's, additive
//! changes only ([`evolve`], written once for both); [`migrate`] plans and
//! applies the rest.
//!
//! A store pokes through [`Pokes`] after every push that moved its version,
//! so the HTTP layer never has to guess whether something changed.

pub mod evolve;
mod postgres;
mod sqlite;
pub(crate) mod table_text;

pub use crate::sync::{Result, StoreError};
pub use postgres::PostgresStore;
pub use sqlite::{SqliteServer, SqliteStore};

use crate::sync::Listener;
use ferrydb_protocol::{AppDefinition, PullRequest, PullResponse, PushRequest, PushResponse};
use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;
use tokio::sync::broadcast;

/// What to open: `sqlite:PATH` (created on first start), `memory` (an
/// in-memory SQLite database, gone at exit) or `postgres://…`.
pub async fn open(url: &str, app: AppDefinition, options: StoreOptions) -> Result<Store> {
    if let Some(path) = url.strip_prefix("sqlite:") {
        return Ok(Store::Sqlite(SqliteStore::open(
            Some(path.into()),
            app,
            options,
        )?));
    }
    if url == "memory" {
        return Ok(Store::Sqlite(SqliteStore::open(None, app, options)?));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Store::Postgres(Box::new(
            PostgresStore::open(url, app, options).await?,
        )));
    }
    Err(StoreError::InvalidApp(format!(
        "unknown store {url:?}: expected sqlite:PATH, memory or postgres://…"
    )))
}

/// `ferrydb-server migrate`: the steps that bring the store at `url` to
/// `app`'s tables (breaking ones too), applied in one transaction when
/// `apply`, else only planned. A server then starts on it as usual.
pub async fn migrate(url: &str, app: &AppDefinition, apply: bool) -> Result<evolve::Plan> {
    if let Some(path) = url.strip_prefix("sqlite:") {
        return SqliteStore::migrate(Some(path.into()), app, apply);
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return PostgresStore::migrate(url, app, apply).await;
    }
    Err(StoreError::InvalidApp(format!(
        "cannot migrate {url:?}: expected sqlite:PATH or postgres://…"
    )))
}

#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Rows per page of a full (initial) sync.
    pub page_size: usize,
    pub pokes: Pokes,
}

/// The server moved to this version: every realtime connection hears it.
/// Also remembers when the newest version was announced, which is when this
/// server learned of its commit (its own SQLite commit, or a Postgres
/// notification from any instance): the start of the sync lag a realtime
/// connection measures when it writes the poke.
#[derive(Clone, Debug)]
pub struct Pokes {
    sender: broadcast::Sender<i64>,
    newest: Arc<RwLock<Option<(i64, Instant)>>>,
    /// For the most recent pokes, the version of the poke before, whose
    /// commits the poke's come after: what a v2 channel's routing reads
    /// (`sync::route`). A poke not listed (sent by [`Pokes::send`], or long
    /// gone) may have touched anything.
    after: Arc<Mutex<VecDeque<(i64, i64)>>>,
}

/// How many pokes' predecessors are remembered (as many as a receiver may
/// fall behind before it skips to the newest).
const REMEMBERED: usize = 64;

impl Pokes {
    pub fn new() -> Pokes {
        // Receivers that fall this far behind skip to the newest poke: a poke
        // only says "pull", so skipping loses nothing.
        Pokes {
            sender: broadcast::channel(REMEMBERED).0,
            newest: Arc::default(),
            after: Arc::default(),
        }
    }

    /// Pokes `version`, whose commits are exactly those after version
    /// `since`.
    pub fn send_after(&self, version: i64, since: i64) {
        {
            let mut after = self.after.lock().expect("pokes");
            if after.len() == REMEMBERED {
                after.pop_front();
            }
            after.push_back((version, since));
        }
        self.send(version);
    }

    /// The version whose successors the commits poked as `version` are, if
    /// known.
    pub fn since(&self, version: i64) -> Option<i64> {
        let after = self.after.lock().expect("pokes");
        after
            .iter()
            .rev()
            .find(|(v, _)| *v == version)
            .map(|(_, since)| *since)
    }

    pub fn send(&self, version: i64) {
        *self.newest.write().expect("pokes") = Some((version, Instant::now()));
        // No receivers is fine: nobody is listening.
        let _ = self.sender.send(version);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<i64> {
        self.sender.subscribe()
    }

    pub fn listeners(&self) -> usize {
        self.sender.receiver_count()
    }

    /// When `version` was announced, if it is still the newest (a receiver
    /// behind the newest poke measures its lag at that one instead).
    pub fn announced_at(&self, version: i64) -> Option<Instant> {
        match *self.newest.read().expect("pokes") {
            Some((newest, at)) if newest == version => Some(at),
            _ => None,
        }
    }

    /// Pokes sent that some connection has not received yet.
    pub fn backlog(&self) -> usize {
        self.sender.len()
    }
}

impl Default for Pokes {
    fn default() -> Self {
        Pokes::new()
    }
}

pub enum Store {
    Sqlite(SqliteStore),
    Postgres(Box<PostgresStore>),
}

impl Store {
    /// Processes `POST push` for the authenticated `user_id`.
    pub async fn push(&self, user_id: &str, request: PushRequest) -> Result<PushResponse> {
        match self {
            Store::Sqlite(s) => s.push(user_id, request).await,
            Store::Postgres(s) => s.push(user_id, request).await,
        }
    }

    /// Answers `POST pull` for the authenticated `user_id`.
    pub async fn pull(&self, user_id: &str, request: PullRequest) -> Result<PullResponse> {
        match self {
            Store::Sqlite(s) => s.pull(user_id, request).await,
            Store::Postgres(s) => s.pull(user_id, request).await,
        }
    }

    /// The synced tables the subscriptions of `group_id`'s last pull read
    /// (protocol v2: what can change what it selects); empty if it never
    /// pulled. Another user's group is `Forbidden`: not even the fact that
    /// it changed may reach them.
    pub async fn group_reads(&self, user_id: &str, group_id: &str) -> Result<BTreeSet<String>> {
        match self {
            Store::Sqlite(s) => s.group_reads(user_id, group_id).await,
            Store::Postgres(s) => s.group_reads(user_id, group_id).await,
        }
    }

    /// Of these `listeners` (v2 realtime channels of this instance), those
    /// whose groups the commits after version `since` concern
    /// (`sync::route`), computed in one transaction.
    pub async fn route(&self, since: i64, listeners: Vec<Listener>) -> Result<BTreeSet<Listener>> {
        match self {
            Store::Sqlite(s) => s.route(since, listeners).await,
            Store::Postgres(s) => s.route(since, &listeners).await,
        }
    }

    /// The current version (what a caught-up client's cookie is).
    pub async fn version(&self) -> Result<i64> {
        match self {
            Store::Sqlite(s) => s.version().await,
            Store::Postgres(s) => s.version().await,
        }
    }

    /// Every time a mutation was processed, in order (demo mode shows it).
    pub async fn mutation_log(&self) -> Result<Vec<LoggedMutation>> {
        match self {
            Store::Sqlite(s) => s.mutation_log().await,
            Store::Postgres(s) => s.mutation_log().await,
        }
    }

    /// Requests waiting for the store, by queue: SQLite jobs waiting for the
    /// store thread, Postgres requests waiting for a pooled connection.
    pub fn queue_depth(&self) -> (&'static str, usize) {
        match self {
            Store::Sqlite(s) => ("sqlite_jobs", s.queued()),
            Store::Postgres(s) => ("postgres_pool_waiting", s.pool_waiting()),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
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

/// Whether a push processed anything new (so the version moved and clients
/// must hear about it).
pub fn moved(response: &PushResponse) -> bool {
    match response {
        PushResponse::Ok { results } => results
            .iter()
            .any(|r| !matches!(r, ferrydb_protocol::MutationResult::AlreadyProcessed { .. })),
        PushResponse::SchemaMismatch(_) => false,
    }
}
