//! Where the server keeps its data: the synced tables, row versions and
//! tombstones, each client's last mutation ID, remembered rejections and the
//! mutation log. Two stores with one behaviour: [`SqliteStore`] (embedded, the
//! default) and `PostgresStore` (production; several instances share one
//! database). Both run mutators from the server's own app definition, never
//! SQL from a request.
//!
//! A store pokes through [`Pokes`] after every push that moved its version,
//! so the HTTP layer never has to guess whether something changed.

mod postgres;
mod sqlite;

pub use ferrydb::engine::sync::LoggedMutation;
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

use ferrydb_protocol::{AppDefinition, PullRequest, PullResponse, PushRequest, PushResponse};
use tokio::sync::broadcast;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The request names a client or client group of another user.
    #[error("{0}")]
    Forbidden(String),
    /// The store cannot serve this app definition (a table changed).
    #[error("{0}")]
    InvalidApp(String),
    /// The database is unreachable or overloaded; the client retries.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A bug or an unexpected database error.
    #[error("store error: {0}")]
    Internal(String),
}

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
        return Ok(Store::Postgres(
            PostgresStore::open(url, app, options).await?,
        ));
    }
    Err(StoreError::InvalidApp(format!(
        "unknown store {url:?}: expected sqlite:PATH, memory or postgres://…"
    )))
}

#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Rows per page of a full (initial) sync.
    pub page_size: usize,
    pub pokes: Pokes,
}

/// The server moved to this version: every realtime connection hears it.
#[derive(Clone, Debug)]
pub struct Pokes(broadcast::Sender<i64>);

impl Pokes {
    pub fn new() -> Pokes {
        // Receivers that fall this far behind skip to the newest poke: a poke
        // only says "pull", so skipping loses nothing.
        Pokes(broadcast::channel(64).0)
    }

    pub fn send(&self, version: i64) {
        // No receivers is fine: nobody is listening.
        let _ = self.0.send(version);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<i64> {
        self.0.subscribe()
    }

    pub fn listeners(&self) -> usize {
        self.0.receiver_count()
    }
}

impl Default for Pokes {
    fn default() -> Self {
        Pokes::new()
    }
}

pub enum Store {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
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

    pub fn kind(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }
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
