//! Tabs and their calls: what each connected tab may do (its app may be
//! refused), how a call becomes an engine request and its reply, and the
//! control messages (`hello`, `open`, `token`, `bye`, `deleteDatabase`).

use super::tab_message::{CallId, TabMessage, Undecodable};
use super::worker_message::WorkerMessage;
use super::{Host, Output};
use crate::engine::error::ErrorData;
use crate::engine::live::TabId;
use crate::engine::replication;
use crate::engine::request::Request;
use crate::engine::sync::{SyncEvent, TokenTab};
use crate::engine::AppOpened;

#[derive(Debug, Default)]
pub struct TabState {
    /// For a tab that opened the app with a server: whether it has a token
    /// provider to ask. `None`: it does not sync.
    pub auth: Option<bool>,
    /// Why this tab may not use the replica (its app is older than the one
    /// the worker runs); every call it makes gets this error.
    refused: Option<ErrorData>,
}

/// The connected tabs in connection order. A `Vec` scanned by id: a worker
/// serves a handful of tabs, and each map type costs the wasm kilobytes.
#[derive(Debug, Default)]
pub struct Tabs(Vec<(TabId, TabState)>);

impl Tabs {
    pub fn insert(&mut self, id: TabId) {
        self.0.retain(|(t, _)| *t != id);
        self.0.push((id, TabState::default()));
    }

    pub fn get(&self, id: TabId) -> Option<&TabState> {
        self.0.iter().find(|(t, _)| *t == id).map(|(_, s)| s)
    }

    fn get_mut(&mut self, id: TabId) -> Option<&mut TabState> {
        self.0.iter_mut().find(|(t, _)| *t == id).map(|(_, s)| s)
    }

    fn remove(&mut self, id: TabId) -> bool {
        let before = self.0.len();
        self.0.retain(|(t, _)| *t != id);
        self.0.len() != before
    }

    /// Why `tab` may not use the replica, if it may not.
    pub fn refusal(&self, tab: TabId) -> Option<ErrorData> {
        self.get(tab).and_then(|t| t.refused.clone())
    }

    /// The tabs as token asks see them, in connection order. A refused tab
    /// (an older build the replica was upgraded past) is asked for nothing:
    /// its app, and so its token provider, is not the one that runs.
    pub fn token_tabs(&self) -> Vec<TokenTab> {
        self.0
            .iter()
            .filter(|(_, s)| s.refused.is_none())
            .map(|(id, s)| (*id, s.auth))
            .collect()
    }
}

impl Host {
    pub(super) fn tab_message(&mut self, tab: TabId, message: Result<TabMessage, Undecodable>) {
        let message = match message {
            Ok(message) => message,
            Err(Undecodable { id, error }) => {
                if let Some(id) = id {
                    self.reply(
                        tab,
                        id,
                        Err(crate::Error::BadRequest(error).to_data()),
                        None,
                    );
                }
                return;
            }
        };
        let message = match message.into_request() {
            Ok((id, request, key)) => return self.call(tab, id, request, key.as_deref()),
            Err(control) => control,
        };
        match message {
            TabMessage::Hello { lock } => self.out.push(Output::WatchTab { tab, lock }),
            TabMessage::Open {
                id,
                app,
                server,
                auth,
            } => self.open_app(tab, id, app, server, auth),
            TabMessage::Token { ask, token, error } => {
                let answer = match error {
                    Some(why) => Err(why),
                    None => Ok(token),
                };
                self.token_answered(tab, ask, answer);
            }
            TabMessage::Bye {} => self.tab_gone(tab),
            TabMessage::DeleteDatabase { id } => self.delete_database(tab, id),
            TabMessage::SyncHold {
                id,
                hold,
                query,
                args,
                ttl,
            } => self.sync_hold(tab, id, hold, &query, &args, ttl),
            TabMessage::SyncRelease { id, hold } => self.sync_release(tab, id, hold),
            // Requests were handled above.
            _ => {}
        }
    }

    pub(super) fn tab_gone(&mut self, tab: TabId) {
        if !self.tabs.remove(tab) {
            return;
        }
        self.engine.disconnect_tab(tab);
        self.out.push(Output::CloseTab { tab });
        self.sync_tab_gone(tab);
        // If it was asked for a token, another tab is.
        self.token_tab_gone(tab);
    }

    pub(super) fn reply(
        &mut self,
        tab: TabId,
        id: CallId,
        result: Result<crate::engine::request::Response, ErrorData>,
        seq: Option<u64>,
    ) {
        self.post(tab, WorkerMessage::Reply { id, result, seq });
    }

    fn call(&mut self, tab: TabId, id: CallId, request: Request, key: Option<&str>) {
        if let Some(refusal) = self.tabs.refusal(tab) {
            return self.reply(tab, id, Err(refusal), None);
        }
        let handled = self.engine.handle_once(tab, request, key);
        // Updates first: a tab that awaits its write then finds it in its live queries.
        for updates in handled.updates {
            self.post(updates.tab, WorkerMessage::Live(updates.updates));
        }
        // The tab resolves the write's `durable` once `durableSeq` reaches `seq`.
        let result = handled.reply.map_err(|e| e.to_data());
        self.reply(tab, id, result, handled.commit_seq);
        self.carry_out(handled.sync);
    }

    /// `open`: the first tab with an app opens the replica (and starts
    /// syncing if it names a server); a later tab of the same schema shares
    /// it, an older one is refused, a newer one upgrades it in place and the
    /// older tabs are refused from then on.
    fn open_app(
        &mut self,
        tab: TabId,
        id: CallId,
        app: Option<String>,
        server: Option<String>,
        auth: bool,
    ) {
        let mut start = false;
        let mut restart = false;
        let mut opened_replica = false;
        let was_paused = self.engine.sync_status().is_some_and(|s| s.paused);
        let result = match &app {
            None => Ok(()),
            Some(app) => {
                let seed = server.as_ref().map(|_| self.env.seed());
                let client_id = self.env.client_id();
                match self.engine.open_app(tab, app, &client_id, seed) {
                    Ok(opened) => {
                        opened_replica = opened != AppOpened::Already;
                        start = match (opened, seed) {
                            (AppOpened::Now { sync }, _) => sync,
                            // The first tab gave no server; this one does.
                            (AppOpened::Already, Some(seed)) => self.engine.enable_sync(seed),
                            (AppOpened::Already, None) => false,
                            (AppOpened::Upgraded { outdated }, _) => {
                                self.refuse_outdated(&outdated);
                                restart = self.sync.is_some();
                                !restart && self.engine.syncing()
                            }
                        };
                        Ok(())
                    }
                    Err(e) => Err(e.to_data()),
                }
            }
        };
        let syncing = self.engine.syncing();
        if let Some(t) = self.tabs.get_mut(tab) {
            match &result {
                Ok(()) => t.auth = (syncing && server.is_some()).then_some(auth),
                Err(e) => t.refused = Some(e.clone()),
            }
        }
        if opened_replica {
            // Before the first pull, so that it carries them.
            self.sync_subscriptions_opened();
        }
        if let (true, Some(base)) = (start, &server) {
            self.start_sync(base);
        }
        if restart {
            self.restart_sync(was_paused);
        }
        self.reply(
            tab,
            id,
            result.map(|()| crate::engine::request::Response::Done),
            None,
        );
        // What the tab must know now, not only at the next change.
        if let Some(status) = self.engine.sync_status().cloned() {
            self.post(tab, WorkerMessage::SyncStatus(status));
        }
        let sticky: Vec<SyncEvent> = self
            .engine
            .replication()
            .map(|r| r.sticky_events().cloned().collect())
            .unwrap_or_default();
        for event in sticky {
            self.post(tab, WorkerMessage::SyncEvent(event));
        }
    }

    /// A newer build upgraded the replica: these tabs' app is older. Their
    /// calls are refused from now on, and they are told so.
    fn refuse_outdated(&mut self, outdated: &[TabId]) {
        let Some(running) = self.engine.replication().map(|r| r.app().version) else {
            return;
        };
        let refusal = replication::outdated(running).to_data();
        for &tab in outdated {
            if let Some(t) = self.tabs.get_mut(tab) {
                t.refused = Some(refusal.clone());
                self.post(
                    tab,
                    WorkerMessage::SyncEvent(SyncEvent::AppOutdated {
                        schema_version: running,
                    }),
                );
            }
        }
    }

    fn delete_database(&mut self, tab: TabId, id: CallId) {
        self.storage.deleting.push((tab, id));
        // A write in flight goes first (`storage_done`): an OPFS file open
        // for writing cannot be removed.
        if self.storage.deleting.len() == 1 && self.storage.writing.is_none() {
            self.out.push(Output::DeleteFiles);
        }
    }

    /// The files are gone: start over with an empty replica (a new client
    /// to the server, since the old one's mutation IDs are spent), end every
    /// live query, answer the callers.
    pub(super) fn files_deleted(
        &mut self,
        result: crate::storage::Result<()>,
        backend: String,
        log: crate::storage::LogConfig,
    ) {
        let was_paused = self.engine.sync_status().is_some_and(|s| s.paused);
        let replaced = result.map_err(crate::Error::Storage).and_then(|()| {
            let empty = crate::storage::recover(Vec::new(), log)?;
            let client_id = self.env.client_id();
            self.engine
                .replace_replica(empty, &client_id, Some(self.env.seed()))
        });
        let replaced_ok = replaced.is_ok();
        if replaced_ok {
            self.storage.replaced(backend);
        }
        self.broadcast(WorkerMessage::Reset);
        let result = replaced
            .map(|()| crate::engine::request::Response::Done)
            .map_err(|e| e.to_data());
        for (tab, id) in std::mem::take(&mut self.storage.deleting) {
            self.reply(tab, id, result.clone(), None);
        }
        let report = self.storage.report();
        self.broadcast(WorkerMessage::Storage(report));
        if replaced_ok {
            // The new replica syncs what the tabs hold.
            self.sync_subscriptions_opened();
            self.restart_sync(was_paused);
        }
    }
}
