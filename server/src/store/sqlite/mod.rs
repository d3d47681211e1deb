//! The embedded store: [`SqliteServer`] (the sync core over one SQLite
//! connection, which the seeded sync simulation drives too) over a SQLite
//! file, owned by one thread. SQLite has one writer at a time anyway, and the
//! connection is not `Sync`; requests reach the thread as jobs and answer
//! through a oneshot channel.
//!
//! Group commit: the thread runs every job waiting in its queue in one
//! transaction and answers them only after that transaction is on disk, so
//! concurrent pushes share one fsync and no answer ever precedes durability.

mod checkpoint;
mod schema;
mod server;

pub use server::SqliteServer;

use super::evolve::Plan;
use super::{moved, LoggedMutation, Result, StoreError, StoreOptions};
use crate::sync::Listener;
use ferrydb_protocol::{AppDefinition, PullRequest, PullResponse, PushRequest, PushResponse};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{mpsc, Arc};
use tokio::sync::oneshot;

/// A job runs on the store thread and returns how to deliver its answer once
/// the transaction it ran in has committed. If the commit fails, the answers
/// are dropped and every caller of the group gets `Unavailable`.
type Job = Box<dyn FnOnce(&mut SqliteServer) -> Deliver + Send>;
type Deliver = Box<dyn FnOnce() + Send>;

/// Most jobs in one transaction: bounds how long the first one waits.
const GROUP_LIMIT: usize = 256;

pub struct SqliteStore {
    jobs: mpsc::Sender<Job>,
    /// Jobs sent and not yet started by the store thread (`/metrics`).
    queued: Arc<AtomicUsize>,
    options: StoreOptions,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, or an in-memory one.
    pub fn open(path: Option<PathBuf>, app: AppDefinition, options: StoreOptions) -> Result<Self> {
        let (jobs, inbox) = mpsc::channel::<Job>();
        let (ready, opened) = mpsc::channel();
        let page_size = options.page_size;
        let queued = Arc::new(AtomicUsize::new(0));
        let started = queued.clone();
        std::thread::Builder::new()
            .name("ferrydb-sqlite-store".into())
            .spawn(move || {
                let server = open_model(path, app).map(|s| s.with_page_size(page_size));
                let mut server = match server {
                    Ok(server) => {
                        let _ = ready.send(Ok(()));
                        server
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return;
                    }
                };
                // Ends when the last sender (the store) is dropped.
                while let Ok(first) = inbox.recv() {
                    let mut group = vec![first];
                    while group.len() < GROUP_LIMIT {
                        match inbox.try_recv() {
                            Ok(job) => group.push(job),
                            Err(_) => break,
                        }
                    }
                    started.fetch_sub(group.len(), Relaxed);
                    let delivered = server.in_transaction(|server| {
                        group.into_iter().map(|job| job(server)).collect::<Vec<_>>()
                    });
                    match delivered {
                        Ok(deliveries) => deliveries.into_iter().for_each(|deliver| deliver()),
                        Err(e) => tracing::error!(error = %e, "store commit failed"),
                    }
                }
            })
            .map_err(|e| StoreError::Internal(format!("cannot start the store thread: {e}")))?;
        opened
            .recv()
            .map_err(|_| StoreError::Internal("the store thread died while opening".into()))??;
        Ok(SqliteStore {
            jobs,
            queued,
            options,
        })
    }

    /// See [`super::migrate`].
    pub fn migrate(path: Option<PathBuf>, app: &AppDefinition, apply: bool) -> Result<Plan> {
        SqliteServer::migrate(&connect(path)?, app, apply)
    }

    async fn call<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut SqliteServer) -> T + Send + 'static,
    ) -> Result<T> {
        let (reply, answer) = oneshot::channel::<T>();
        // Counted before it is sent, so the thread never subtracts first.
        self.queued.fetch_add(1, Relaxed);
        self.jobs
            .send(Box::new(move |server| {
                let value = job(server);
                Box::new(move || {
                    let _ = reply.send(value);
                })
            }))
            .map_err(|_| {
                self.queued.fetch_sub(1, Relaxed);
                StoreError::Unavailable("the store thread has stopped".into())
            })?;
        answer.await.map_err(|_| {
            StoreError::Unavailable("the store could not commit the transaction".into())
        })
    }

    pub async fn push(&self, user_id: &str, request: PushRequest) -> Result<PushResponse> {
        let user = user_id.to_owned();
        let (response, before, after) = self
            .call(move |s| {
                let before = s.version()?;
                let response = s.push(&user, &request)?;
                Ok::<_, StoreError>((response, before, s.version()?))
            })
            .await??;
        if moved(&response) {
            self.options.pokes.send_after(after, before);
        }
        Ok(response)
    }

    /// See `Store::group_reads`.
    pub async fn group_reads(&self, user_id: &str, group_id: &str) -> Result<BTreeSet<String>> {
        let (user, group) = (user_id.to_owned(), group_id.to_owned());
        self.call(move |s| s.group_reads(&user, &group)).await?
    }

    /// See `Store::route`: one job, so one transaction.
    pub async fn route(&self, since: i64, listeners: Vec<Listener>) -> Result<BTreeSet<Listener>> {
        self.call(move |s| s.route(since, &listeners)).await?
    }

    pub async fn pull(&self, user_id: &str, request: PullRequest) -> Result<PullResponse> {
        let user = user_id.to_owned();
        self.call(move |s| s.pull(&user, &request)).await?
    }

    /// Jobs waiting for the store thread.
    pub fn queued(&self) -> usize {
        self.queued.load(Relaxed)
    }

    pub async fn version(&self) -> Result<i64> {
        self.call(|s| s.version()).await?
    }

    pub async fn mutation_log(&self) -> Result<Vec<LoggedMutation>> {
        self.call(|s| s.mutation_log()).await?
    }
}

fn open_model(path: Option<PathBuf>, app: AppDefinition) -> Result<SqliteServer> {
    let mut conn = connect(path.clone())?;
    if let Some(path) = &path {
        checkpoint::checkpoint_off_thread(&mut conn, path)?;
    }
    SqliteServer::open(conn, app)
}

fn connect(path: Option<PathBuf>) -> Result<rusqlite::Connection> {
    let conn = match &path {
        Some(path) => rusqlite::Connection::open(path),
        None => rusqlite::Connection::open_in_memory(),
    }
    .map_err(|e| StoreError::Unavailable(format!("cannot open {path:?}: {e}")))?;
    // WAL: readers never wait for the writer. synchronous=FULL: a push the
    // server confirmed survives a power cut, since the client then forgets it.
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
    Ok(conn)
}
