//! The worker host, platform-free and sans-IO: what the worker does with
//! each tab message, fetch outcome, timer, finished storage request,
//! network change and departed tab. [`Host::handle`] takes an [`Input`] and
//! returns the [`Output`]s the platform performs (post, fetch, stream, timer,
//! storage I/O). Every decision lives here and is tested natively
//! (`host::tests`): which tab is asked for a token and what a missed
//! deadline means, which replies are stale after a restart, when a
//! prefetched page is used, when storage and the realtime channel retry
//! (one [`Backoff`] with jitter, as sync's), which tabs are refused.
//! `src/wasm/` only performs the outputs.
//!
//! The parts, one file each: tabs and their calls (`tabs.rs`), the sync
//! client's requests and token asks (`sync_link.rs`), the realtime channel
//! (`realtime.rs`), the storage writer (`storage.rs`).

pub mod interface;
mod realtime;
mod storage;
mod sync_link;
mod sync_subscriptions;
pub mod tab_message;
mod tabs;
pub mod worker_message;

#[cfg(test)]
mod tests;

pub use interface::{Env, FetchId, HttpRequest, HttpResponse, Input, Output, Timer};
pub use tab_message::{CallId, MessageFields, TabMessage, Undecodable};
pub use worker_message::{Encoder, StorageReport, WorkerMessage};

use crate::engine::live::TabId;
use crate::engine::Engine;
use crate::storage::{recover, LogConfig};
use std::rc::Rc;
use storage::StorageWriter;
use sync_link::SyncLink;
use sync_subscriptions::SyncSubscriptions;
use tabs::Tabs;

/// Reconnects of the realtime channel and retries of stalled storage use
/// the sync client's backoff policy (doubling, equal jitter) with these bounds.
pub use crate::engine::sync::Backoff;

pub struct Host {
    engine: Engine,
    env: Rc<dyn Env>,
    out: Vec<Output>,
    tabs: Tabs,
    storage: StorageWriter,
    /// As the platform last said (`navigator.onLine`, then its events).
    online: bool,
    /// Set once a tab opened the app with a sync server.
    sync: Option<SyncLink>,
    /// What the tabs hold of the app's queries (protocol v2).
    sync_subscriptions: SyncSubscriptions,
    next_fetch: FetchId,
}

impl Host {
    /// A host over the replica recovered from `files` (every stored file,
    /// as read from `backend`). Storage that cannot be read must not lock
    /// the app out: the host then serves an empty replica from memory and
    /// tells the tabs why. `config` tunes the log (its default in browsers).
    pub fn open(
        files: crate::storage::Result<Vec<(String, Vec<u8>)>>,
        config: LogConfig,
        backend: String,
        online: bool,
        env: Rc<dyn Env>,
    ) -> crate::Result<Host> {
        let opened = files
            .and_then(|files| recover(files, config.clone()))
            .map_err(crate::Error::Storage)
            .and_then(Engine::open_durable);
        let (mut engine, error) = match opened {
            Ok(engine) => (engine, None),
            Err(e) => {
                let error = match e {
                    crate::Error::Storage(e) => e,
                    other => crate::storage::Error::Unavailable(other.to_string()),
                };
                let empty = recover(Vec::new(), config)?;
                (Engine::open_durable(empty)?, Some(error))
            }
        };
        let clock = env.clone();
        engine.set_clock(Box::new(move || clock.now()));
        let storage = StorageWriter::new(backend, engine.durable_seq(), error, env.seed());
        Ok(Host {
            engine,
            env,
            out: Vec::new(),
            tabs: Tabs::default(),
            storage,
            online,
            sync: None,
            sync_subscriptions: SyncSubscriptions::default(),
            next_fetch: 1,
        })
    }

    /// A tab connected: its id, and what to tell it at once.
    pub fn connect_tab(&mut self) -> (TabId, Vec<Output>) {
        let tab = self.engine.connect_tab();
        self.tabs.insert(tab);
        let report = self.storage.report();
        self.post(tab, WorkerMessage::Storage(report));
        (tab, self.take())
    }

    /// Handles one input; returns what to do, in order.
    pub fn handle(&mut self, input: Input) -> Vec<Output> {
        match input {
            Input::Tab { tab, message } => self.tab_message(tab, message),
            Input::TabGone { tab } => self.tab_gone(tab),
            Input::Fetched { fetch, response } => self.fetched(fetch, response),
            Input::StreamData { stream, bytes } => self.stream_data(stream, &bytes),
            Input::StreamEnded { stream } => self.stream_ended(stream),
            Input::TimerFired(timer) => self.timer_fired(timer),
            Input::Continue => self.continue_sync(),
            Input::StorageDone { id, result } => self.storage_done(id, result),
            Input::StorageCleared { why } => self.storage_cleared(why),
            Input::FilesDeleted {
                result,
                backend,
                log,
            } => self.files_deleted(result, backend, log),
            Input::Network { online } => self.network(online),
        }
        self.pump_storage();
        self.take()
    }

    fn timer_fired(&mut self, timer: Timer) {
        match timer {
            Timer::Sync => self.sync_event(crate::engine::sync::Event::Timer),
            Timer::TokenDeadline => self.token_deadline(),
            Timer::StorageRetry => self.storage_retry(),
            Timer::Realtime => self.realtime_reconnect(),
            Timer::Checkpoint => self.checkpoint_fired(),
            Timer::SyncSubscriptions => self.sync_subscriptions_expire(),
        }
    }

    fn network(&mut self, online: bool) {
        self.online = online;
        if self.sync.is_none() {
            return;
        }
        if online {
            // A reconnect waiting out its backoff goes now.
            self.realtime_wake();
            self.sync_event(crate::engine::sync::Event::Online);
        } else {
            self.sync_event(crate::engine::sync::Event::Offline);
        }
    }

    fn take(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.out)
    }

    fn post(&mut self, tab: TabId, message: WorkerMessage) {
        if self.tabs.get(tab).is_some() {
            self.out.push(Output::Post { tab, message });
        }
    }

    fn broadcast(&mut self, message: WorkerMessage) {
        self.out.push(Output::Broadcast(message));
    }

    fn fetch_id(&mut self) -> FetchId {
        let id = self.next_fetch;
        self.next_fetch += 1;
        id
    }

    fn at(&self, delay_ms: u64) -> u64 {
        self.env.now().monotonic + delay_ms
    }
}
