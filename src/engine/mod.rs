//! The worker's brain, free of any platform: it serves requests from tabs
//! against one SQLite replica and decides which tabs must hear about a commit.
//! The host (`crate::wasm` in the browser, tests natively) only moves messages.

pub mod database;
pub mod durability;
pub mod error;
pub mod live;
pub mod patch;
pub mod request;
pub mod sync;
pub mod value;

use crate::storage::{self, IoRequest, Recovered};
use database::{Database, TableSet};
use durability::Durability;
use error::Result;
use live::{LiveQueries, TabId, TabUpdates};
use request::{Request, Response, Stats};
use std::collections::BTreeSet;

pub struct Engine {
    db: Database,
    /// `None` for a plain in-memory database (tests): nothing to persist.
    durability: Option<Durability>,
    live: LiveQueries,
    tabs: BTreeSet<TabId>,
    next_tab: TabId,
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
}

impl Engine {
    pub fn new(db: Database) -> Self {
        Engine {
            db,
            durability: None,
            live: LiveQueries::default(),
            tabs: BTreeSet::new(),
            next_tab: 1,
        }
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
    pub fn replace_replica(&mut self, recovered: Recovered) -> Result<()> {
        let (durability, conn) = Durability::open(recovered)?;
        self.db = Database::from_connection(conn)?;
        self.durability = Some(durability);
        self.live = LiveQueries::default();
        Ok(())
    }

    /// The next piece of storage I/O for the host to perform.
    pub fn next_io(&mut self) -> Option<IoRequest> {
        self.durability.as_mut()?.next_io()
    }

    /// The host finished `id`; returns the new durable sequence number.
    pub fn io_done(&mut self, id: u64, result: storage::Result<()>) -> u64 {
        match self.durability.as_mut() {
            Some(d) => {
                d.io_done(id, result);
                d.durable_seq()
            }
            None => 0,
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

    /// A new tab connected; returns the id its requests are handled under.
    pub fn connect_tab(&mut self) -> TabId {
        let tab = self.next_tab;
        self.next_tab += 1;
        self.tabs.insert(tab);
        tab
    }

    /// A tab closed or died: everything it held is released.
    pub fn disconnect_tab(&mut self, tab: TabId) {
        self.tabs.remove(&tab);
        self.live.remove_tab(tab);
    }

    pub fn handle(&mut self, tab: TabId, request: Request) -> Handled {
        let mut changed: Option<TableSet> = None;
        let reply = self.dispatch(tab, request, &mut changed);
        let commit_seq = self.durability.as_mut().and_then(Durability::capture);
        let updates = match changed {
            Some(tables) => self.live.refresh(&mut self.db, &tables),
            None => Vec::new(),
        };
        Handled {
            updates,
            reply,
            commit_seq,
        }
    }

    fn dispatch(
        &mut self,
        tab: TabId,
        request: Request,
        changed: &mut Option<TableSet>,
    ) -> Result<Response> {
        match request {
            Request::Exec { sql, params } => {
                let (result, tables) = self.db.execute(&sql, &params)?;
                *changed = tables;
                Ok(Response::Exec(result))
            }
            Request::ExecMany { sql, rows } => {
                let (result, tables) = self.db.execute_many(&sql, &rows)?;
                *changed = tables;
                Ok(Response::Exec(result))
            }
            Request::Query { sql, params } => {
                let (result, tables) = self.db.query(&sql, &params)?;
                *changed = tables;
                Ok(Response::Rows(result))
            }
            Request::Subscribe {
                subscription,
                sql,
                params,
            } => {
                let rows = self
                    .live
                    .subscribe(&mut self.db, (tab, subscription), &sql, params)?;
                Ok(Response::Rows(rows))
            }
            Request::Unsubscribe { subscription } => {
                self.live.unsubscribe((tab, subscription))?;
                Ok(Response::Done)
            }
            Request::Stats => Ok(Response::Stats(Stats {
                tabs: self.tabs.len(),
                live_queries: self.live.query_count(),
                subscriptions: self.live.subscription_count(),
            })),
        }
    }
}

#[cfg(test)]
mod test_rng;
#[cfg(test)]
mod tests;
