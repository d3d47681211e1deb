//! The worker's brain, free of any platform: it serves requests from tabs
//! against one SQLite replica and decides which tabs must hear about a commit.
//! The host (`crate::wasm` in the browser, tests natively) only moves messages.

pub mod database;
pub mod durability;
pub mod error;
pub mod live;
pub mod patch;
pub mod replication;
pub mod request;
pub mod sync;
pub mod table_set;
pub mod value;

use crate::storage::{self, IoRequest, Recovered};
use database::{Database, TableSet};
use durability::Durability;
use error::Error;
use error::Result;
use live::{LiveQueries, TabId, TabUpdates};
use replication::{Replication, SyncWork};
use request::{Request, Response, Stats};

/// The two times the engine reads, in milliseconds. The host supplies them
/// (`Date.now` and `performance.now` in the browser, a hand-moved clock in
/// tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Now {
    /// Since the Unix epoch, as the device's clock says: what timestamps
    /// record and show (`created_at`, `lastSyncedAt`). It jumps whenever the
    /// clock is set (by the user, or by NTP after a wrong start).
    pub wall: u64,
    /// A clock that never jumps and only moves forward, from any origin:
    /// what every timer, deadline and backoff is measured on, so that a
    /// wall clock set back an hour cannot postpone a retry by an hour, nor
    /// one set forward time out a request that was just sent.
    pub monotonic: u64,
}

impl Now {
    /// Both clocks reading `ms` (tests, where the wall clock does not jump).
    pub fn at(ms: u64) -> Now {
        Now {
            wall: ms,
            monotonic: ms,
        }
    }
}

pub type Clock = Box<dyn Fn() -> Now>;

pub struct Engine {
    db: Database,
    /// `None` for a plain in-memory database (tests): nothing to persist.
    durability: Option<Durability>,
    live: LiveQueries,
    /// Connected tabs, in connection order, with the schema version of the
    /// app each opened (0: none yet). A handful: a `Vec` costs the wasm less
    /// code than a map.
    tabs: Vec<(TabId, u32)>,
    next_tab: TabId,
    /// The app's synced side, once a tab opened the database with an app.
    replication: Option<Replication>,
    /// What `open_app` was given, to reopen the replica after `deleteDatabase`.
    app_json: Option<String>,
    clock: Clock,
}

/// What handling one request produced: live-query updates for any tabs (to be
/// delivered first, so a tab that awaits its write sees it in its queries) and
/// the reply to the requesting tab.
pub struct Handled {
    pub updates: Vec<TabUpdates>,
    pub reply: Result<Response>,
    /// The log sequence number of the last transaction this request committed:
    /// the write is on disk once [`Engine::durable_seq`] reaches it.
    pub commit_seq: Option<u64>,
    /// Sync effects for the host (a mutation wakes the sync client).
    pub sync: SyncWork,
}

/// What a sync event produced: live-query updates, the host's sync work, and
/// the commit (a pull's rebase) to make durable.
#[derive(Debug, Default)]
pub struct SyncHandled {
    pub updates: Vec<TabUpdates>,
    pub work: SyncWork,
    pub commit_seq: Option<u64>,
}

/// What finishing one piece of storage I/O changed.
#[derive(Debug, Default)]
pub struct IoDone {
    /// Every commit up to this sequence number is on disk.
    pub durable_seq: u64,
    /// Mutations reached the disk, so the sync client may now push them:
    /// the work that follows, for the host to carry out.
    pub sync: Option<SyncHandled>,
}

/// The outcome of a tab's `open` with an app definition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppOpened {
    /// The replica was opened now; with `sync`, the host should start syncing
    /// (send `Online` when the network is up).
    Now { sync: bool },
    /// Another tab opened it already with the same schema version.
    Already,
    /// A tab of a newer build: the replica was migrated to its schema in
    /// place (the outbox kept, so no write of an older tab is lost), and the
    /// sync client, if one ran, starts over on it. The tabs in `outdated`
    /// run an older app: every request of theirs is refused from now on,
    /// and they must be told (`SyncEvent::AppOutdated`) to reload.
    Upgraded { outdated: Vec<TabId> },
}

impl Engine {
    pub fn new(db: Database) -> Self {
        Engine {
            db,
            durability: None,
            live: LiveQueries::default(),
            tabs: Vec::new(),
            next_tab: 1,
            replication: None,
            app_json: None,
            clock: Box::new(|| Now::at(0)),
        }
    }

    /// Sets where the engine reads the time (mutation timestamps, sync timing).
    pub fn set_clock(&mut self, clock: Clock) {
        self.clock = clock;
    }

    /// Opens the replica of the app `app_json` for `tab` (its `open`), with a
    /// sync client when `sync_seed` is given. A later tab with the same
    /// schema version shares it; an older one gets `app_outdated`; a newer
    /// one upgrades it (see [`AppOpened::Upgraded`]): during a deploy, the
    /// new build works at once and the old tabs are told to reload, rather
    /// than the new build waiting for every old tab to close. Fails with
    /// `invalid_app` / `app_outdated` (a newer build migrated this replica)
    /// leaving the database and the running app untouched.
    pub fn open_app(
        &mut self,
        tab: TabId,
        app_json: &str,
        new_client_id: &str,
        sync_seed: Option<u64>,
    ) -> Result<AppOpened> {
        let version = replication::parse_app(app_json)?.version;
        let opened = match self.replication.take() {
            None => {
                let opened = Replication::open(&mut self.db, app_json, new_client_id, sync_seed)?;
                self.replication = Some(opened);
                AppOpened::Now {
                    sync: sync_seed.is_some(),
                }
            }
            Some(running) if version <= running.app().version => {
                let same = running.check_not_older(version);
                self.replication = Some(running);
                same?;
                AppOpened::Already
            }
            Some(mut running) => {
                // Migrates in a savepoint: on failure nothing changed.
                match Replication::open(&mut self.db, app_json, new_client_id, None) {
                    Ok(mut upgraded) => {
                        upgraded.take_over(&mut running, sync_seed);
                        self.replication = Some(upgraded);
                    }
                    Err(e) => {
                        self.replication = Some(running);
                        return Err(e);
                    }
                }
                let outdated = self
                    .tabs
                    .iter_mut()
                    .filter(|(_, v)| (1..version).contains(v))
                    .map(|(t, v)| {
                        *v = 0;
                        *t
                    })
                    .collect();
                AppOpened::Upgraded { outdated }
            }
        };
        if let Some(entry) = self.tabs.iter_mut().find(|(t, _)| *t == tab) {
            entry.1 = version;
        }
        self.app_json = Some(app_json.to_owned());
        if let Some(d) = self.durability.as_mut() {
            d.capture();
        }
        Ok(opened)
    }

    /// Starts a sync client for a replica opened without one (a later tab
    /// named a server). Returns whether it started now.
    pub fn enable_sync(&mut self, seed: u64) -> bool {
        match self.replication.as_mut() {
            Some(r) if r.client.is_none() => {
                r.start_client(seed);
                true
            }
            _ => false,
        }
    }

    pub fn replication(&self) -> Option<&Replication> {
        self.replication.as_ref()
    }

    /// The sync status, when the app syncs.
    pub fn sync_status(&self) -> Option<&sync::SyncStatus> {
        self.replication.as_ref()?.status()
    }

    /// Whether a sync client runs (the app was opened with a server).
    pub fn syncing(&self) -> bool {
        self.replication
            .as_ref()
            .is_some_and(|r| r.client.is_some())
    }

    /// Feeds one event to the sync client (host contract, `docs/protocol.md`
    /// §9): refreshes live queries over what changed and returns the rest.
    /// Errors are SQLite failures of the replica itself.
    pub fn sync_event(&mut self, event: sync::Event) -> Result<SyncHandled> {
        let now = (self.clock)();
        let Some(replication) = self.replication.as_mut() else {
            return Ok(SyncHandled::default());
        };
        let work = replication.handle(now, event, &mut self.db)?;
        let commit_seq = self.durability.as_mut().and_then(Durability::capture);
        let flipped = self.live.set_incomplete(replication.incomplete_tables());
        let updates = if work.changed.is_empty() && !flipped {
            Vec::new()
        } else {
            self.live.refresh(&mut self.db, &work.changed)
        };
        Ok(SyncHandled {
            updates,
            work,
            commit_seq,
        })
    }

    /// Replaces the group's desired subscriptions (protocol v2) and
    /// persists them; a changed set wakes the sync client for a pull.
    pub fn set_desired(&mut self, desired: Vec<sync::Desired>) -> Result<SyncHandled> {
        let Some(replication) = self.replication.as_mut() else {
            return Ok(SyncHandled::default());
        };
        let changed = replication.replica.set_desired(&mut self.db, desired)?;
        let commit_seq = self.durability.as_mut().and_then(Durability::capture);
        let mut handled = if changed {
            self.sync_event(sync::Event::SubscriptionsChanged)?
        } else {
            SyncHandled::default()
        };
        handled.commit_seq = handled.commit_seq.or(commit_seq);
        Ok(handled)
    }

    pub fn open_in_memory() -> Result<Self> {
        Ok(Self::new(Database::open_in_memory()?))
    }

    /// An engine on a recovered page image whose commits go to the frame log.
    pub fn open_durable(recovered: Recovered) -> Result<Self> {
        let (durability, conn) = Durability::open(recovered)?;
        let mut engine = Self::new(Database::from_connection(conn)?);
        engine.durability = Some(durability);
        Ok(engine)
    }

    /// Swaps in a new replica (after `deleteDatabase`). Tabs stay connected;
    /// their live queries end, and the host tells them so.
    /// The app's replica is opened again, empty, under `new_client_id` (a
    /// new client to the server: the old one's mutation IDs are spent).
    pub fn replace_replica(
        &mut self,
        recovered: Recovered,
        new_client_id: &str,
        sync_seed: Option<u64>,
    ) -> Result<()> {
        let (durability, conn) = Durability::open(recovered)?;
        self.db = Database::from_connection(conn)?;
        self.durability = Some(durability);
        self.live = LiveQueries::default();
        let had_client = self.syncing();
        self.replication = None;
        if let Some(app_json) = self.app_json.clone() {
            let sync_seed = sync_seed.filter(|_| had_client);
            self.replication = Some(Replication::open(
                &mut self.db,
                &app_json,
                new_client_id,
                sync_seed,
            )?);
            if let Some(d) = self.durability.as_mut() {
                d.capture();
            }
        }
        Ok(())
    }

    /// The next piece of storage I/O for the host to perform.
    pub fn next_io(&mut self) -> Option<IoRequest> {
        self.durability.as_mut()?.next_io()
    }

    /// The host finished `id`: the new durable sequence number, and the sync
    /// work of any mutations that are now on disk (and may be pushed).
    pub fn io_done(&mut self, id: u64, result: storage::Result<()>) -> Result<IoDone> {
        let Some(d) = self.durability.as_mut() else {
            return Ok(IoDone::default());
        };
        d.io_done(id, result);
        let durable_seq = d.durable_seq();
        let saved = self
            .replication
            .as_mut()
            .is_some_and(|r| r.saved_through(durable_seq));
        let sync = if saved {
            Some(self.sync_event(sync::Event::Mutated)?)
        } else {
            self.release_if_cleared()?
        };
        Ok(IoDone { durable_seq, sync })
    }

    /// Once the storage is cleared for good, mutations held until they were
    /// on disk go to the server from memory (see [`Replication::disk_gone`]);
    /// returns the sync work that follows, if any were held.
    fn release_if_cleared(&mut self) -> Result<Option<SyncHandled>> {
        let cleared = self
            .storage_stalled()
            .is_some_and(|e| e.code() == "storage_cleared");
        let released = cleared && self.replication.as_mut().is_some_and(|r| r.disk_gone());
        if released {
            Ok(Some(self.sync_event(sync::Event::Mutated)?))
        } else {
            Ok(None)
        }
    }

    /// Every commit up to this sequence number is on disk.
    pub fn durable_seq(&self) -> u64 {
        self.durability.as_ref().map_or(0, Durability::durable_seq)
    }

    /// Why commits are not reaching the disk, while they are not.
    pub fn storage_stalled(&self) -> Option<&storage::Error> {
        self.durability.as_ref()?.stalled()
    }

    /// Whether the log has grown enough to be folded into segments.
    pub fn checkpoint_due(&self) -> bool {
        self.durability
            .as_ref()
            .is_some_and(Durability::checkpoint_due)
    }

    /// Starts a checkpoint if the log is due one (see [`Durability::checkpoint_if_due`]).
    pub fn checkpoint_if_due(&mut self) -> bool {
        self.durability
            .as_mut()
            .is_some_and(Durability::checkpoint_if_due)
    }

    /// Tries storage writes again after a failure.
    pub fn resume_storage(&mut self) {
        if let Some(d) = self.durability.as_mut() {
            d.resume();
        }
    }

    /// The host learned that the browser deleted the replica's files: no
    /// more storage writes; [`Engine::storage_stalled`] says `storage_cleared`.
    /// Returns the sync work of mutations that may now be pushed.
    pub fn storage_cleared(&mut self, why: String) -> Result<Option<SyncHandled>> {
        if let Some(d) = self.durability.as_mut() {
            d.files_cleared(why);
        }
        self.release_if_cleared()
    }

    /// A new tab connected; returns the id its requests are handled under.
    pub fn connect_tab(&mut self) -> TabId {
        let tab = self.next_tab;
        self.next_tab += 1;
        self.tabs.push((tab, 0));
        tab
    }

    /// A tab closed or died: everything it held is released.
    pub fn disconnect_tab(&mut self, tab: TabId) {
        self.tabs.retain(|(t, _)| *t != tab);
        self.live.remove_tab(tab);
    }

    pub fn handle(&mut self, tab: TabId, request: Request) -> Handled {
        self.handle_once(tab, request, None)
    }

    /// [`Engine::handle`] for a write a tab may send again (to a new leader
    /// tab, see `docs/architecture.md`): `key` is recorded in the write's own
    /// commit, so a write seen again once its commit is on disk (or in
    /// memory) is answered from the record, never applied twice. Its reply
    /// then carries the last commit's sequence number if that is not on disk
    /// yet (the record may be among what is not), and none once it is.
    pub fn handle_once(&mut self, tab: TabId, request: Request, key: Option<&str>) -> Handled {
        if let Some(key) = key {
            match once::applied(&mut self.db, key) {
                Ok(None) => {}
                reply => {
                    let appended = self.durability.as_ref().map(Durability::appended_seq);
                    return Handled {
                        updates: Vec::new(),
                        reply: reply.map(|r| r.unwrap_or(Response::Done)),
                        commit_seq: appended.filter(|&seq| seq > self.durable_seq()),
                        sync: SyncWork::default(),
                    };
                }
            }
        }
        let mut changed: Option<TableSet> = None;
        let sync_event = match request {
            Request::Mutate { .. } => Some(sync::Event::Mutated),
            Request::PauseSync => Some(sync::Event::Pause),
            Request::ResumeSync => Some(sync::Event::Resume),
            _ => None,
        };
        // A query subscribed now is told its completeness as of now.
        let flipped = self
            .replication
            .as_ref()
            .is_some_and(|r| self.live.set_incomplete(r.incomplete_tables()));
        let mut reply = self.dispatch(tab, request, &mut changed);
        if let (Some(key), Ok(done)) = (key, &reply) {
            // Before the capture: the record is in the write's own frame.
            if let Err(e) = once::record(&mut self.db, key, done) {
                reply = Err(e);
            }
        }
        let mut commit_seq = self.durability.as_mut().and_then(Durability::capture);
        if let (Ok(Response::Mutated { mutation_id }), Some(seq), Some(r)) =
            (&reply, commit_seq, self.replication.as_mut())
        {
            // Not pushed before it is on disk (see `Replication::saving`).
            r.saving(*mutation_id, seq);
        }
        let mut sync = SyncWork::default();
        if let Some(event) = sync_event.filter(|_| reply.is_ok()) {
            let was_mutation = event == sync::Event::Mutated;
            match self.sync_event(event) {
                Ok(handled) => {
                    // These events change no rows: nothing for live queries.
                    debug_assert!(handled.updates.is_empty());
                    commit_seq = handled.commit_seq.or(commit_seq);
                    sync = handled.work;
                }
                // The new outbox entry wakes the client (a push). A failure
                // here is the replica's own SQLite failing; the mutation is
                // safely queued and goes out with the next event, so its
                // reply stays a success. A pause or resume that failed did not
                // happen: say so.
                Err(e) if !was_mutation => reply = Err(e),
                Err(_) => {}
            }
        }
        let updates = match changed {
            Some(tables) => self.live.refresh(&mut self.db, &tables),
            None if flipped => self.live.refresh(&mut self.db, &TableSet::new()),
            None => Vec::new(),
        };
        Handled {
            updates,
            reply,
            commit_seq,
            sync,
        }
    }

    /// Refuses plain SQL that writes a synced (or ferrydb's own) table.
    fn guard(&mut self, sql: &str) -> Result<()> {
        if let Some(replication) = &self.replication {
            let access = self.db.access(sql)?;
            replication.replica.guard(&access)?;
        }
        Ok(())
    }

    fn dispatch(
        &mut self,
        tab: TabId,
        request: Request,
        changed: &mut Option<TableSet>,
    ) -> Result<Response> {
        match request {
            Request::Exec { sql, params } => {
                self.guard(&sql)?;
                let (result, tables) = self.db.execute(&sql, &params)?;
                *changed = tables;
                Ok(Response::Exec(result))
            }
            Request::ExecMany { sql, rows } => {
                self.guard(&sql)?;
                let (result, tables) = self.db.execute_many(&sql, &rows)?;
                *changed = tables;
                Ok(Response::Exec(result))
            }
            Request::Query { sql, params } => {
                self.guard(&sql)?;
                let (result, tables) = self.db.query(&sql, &params)?;
                *changed = tables;
                Ok(Response::Rows(result))
            }
            Request::Subscribe {
                subscription,
                sql,
                params,
            } => {
                let (rows, complete) =
                    self.live
                        .subscribe(&mut self.db, (tab, subscription), &sql, params)?;
                Ok(Response::Live { rows, complete })
            }
            Request::Unsubscribe { subscription } => {
                self.live.unsubscribe((tab, subscription))?;
                Ok(Response::Done)
            }
            Request::Mutate { name, args } => {
                let now = (self.clock)().wall;
                let replication = self.replication.as_mut().ok_or_else(|| {
                    Error::BadRequest("mutate needs an app: open the database with `app`".into())
                })?;
                let mutated = replication
                    .replica
                    .mutate(&mut self.db, &name, &args, now)?;
                replication.await_outcome(mutated.id);
                *changed = Some(mutated.changed);
                Ok(Response::Mutated {
                    mutation_id: mutated.id,
                })
            }
            Request::ClearRejections => {
                let replication = self.replication.as_ref().ok_or_else(|| {
                    Error::BadRequest(
                        "clearRejections needs an app: open the database with `app`".into(),
                    )
                })?;
                *changed = Some(replication.replica.clear_rejections(&mut self.db)?);
                Ok(Response::Done)
            }
            // Fed to the sync client by `handle`; without a server there is
            // nothing to pause, which is no error.
            Request::PauseSync | Request::ResumeSync => Ok(Response::Done),
            Request::Stats => Ok(Response::Stats(Stats {
                tabs: self.tabs.len(),
                live_queries: self.live.query_count(),
                subscriptions: self.live.subscription_count(),
            })),
        }
    }
}

mod once;
#[cfg(test)]
mod test_rng;
#[cfg(test)]
mod tests;
