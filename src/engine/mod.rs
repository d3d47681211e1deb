//! The worker's brain, free of any platform: it serves requests from tabs
//! against one SQLite replica and decides which tabs must hear about a commit.
//! The host (`crate::wasm` in the browser, tests natively) only moves messages.

pub mod database;
pub mod error;
pub mod live;
pub mod patch;
pub mod request;
pub mod value;

use database::{Database, TableSet};
use error::Result;
use live::{LiveQueries, TabId, TabUpdates};
use request::{Request, Response, Stats};
use std::collections::BTreeSet;

pub struct Engine {
    db: Database,
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
}

impl Engine {
    pub fn new(db: Database) -> Self {
        Engine {
            db,
            live: LiveQueries::default(),
            tabs: BTreeSet::new(),
            next_tab: 1,
        }
    }

    pub fn open_in_memory() -> Result<Self> {
        Ok(Self::new(Database::open_in_memory()?))
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
        let updates = match changed {
            Some(tables) => self.live.refresh(&mut self.db, &tables),
            None => Vec::new(),
        };
        Handled { updates, reply }
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
mod tests;
