//! Native tests of the worker host: a [`Harness`] drives a [`Host`] with a
//! hand-moved clock and fixed seeds, plays the platform (answers fetches,
//! fires timers, performs storage I/O in memory) and reads what it was told
//! to do. One file per decision area.

mod handover;
mod messages;
mod realtime;
mod storage;
mod sync;
mod sync_subscriptions;
mod tabs;
mod tokens;
mod typescript;

use super::interface::{Env, FetchId, HttpRequest, HttpResponse, Input, Output, Timer};
use super::worker_message::{JsonEncoder, WorkerMessage};
use super::{Host, TabMessage};
use crate::engine::live::TabId;
use crate::engine::Now;
use crate::storage::{IoRequest, LogConfig, MemoryBackend};
use serde_json::{json, Value as Json};
use std::cell::Cell;
use std::rc::Rc;

/// A clock the test moves, seeds and client IDs that count up.
#[derive(Default)]
pub struct TestEnv {
    pub now: Cell<u64>,
    seeds: Cell<u64>,
    ids: Cell<u32>,
}

impl Env for TestEnv {
    fn now(&self) -> Now {
        Now::at(self.now.get())
    }
    fn seed(&self) -> u64 {
        self.seeds.set(self.seeds.get() + 1);
        self.seeds.get()
    }
    fn client_id(&self) -> String {
        self.ids.set(self.ids.get() + 1);
        format!("client-{}", self.ids.get())
    }
}

pub const SERVER: &str = "https://sync.test/sync";

pub fn app_json() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/app.json"
    ))
    .unwrap()
}

/// The app definition with another schema version.
pub fn app_json_version(version: u32) -> String {
    let mut app: Json = serde_json::from_str(&app_json()).unwrap();
    app["version"] = json!(version);
    app.to_string()
}

pub struct Harness {
    pub host: Host,
    pub env: Rc<TestEnv>,
    /// Everything the host asked for since the last `take`.
    pub out: Vec<Output>,
    pub disk: MemoryBackend,
    next_call: u64,
}

impl Harness {
    pub fn new() -> Harness {
        Harness::with_log(LogConfig::default())
    }

    /// A harness whose log is tuned by `config` (to checkpoint early, say).
    pub fn with_log(config: LogConfig) -> Harness {
        let env = Rc::new(TestEnv::default());
        let host = Host::open(Ok(Vec::new()), config, "memory".into(), true, env.clone()).unwrap();
        Harness {
            host,
            env,
            out: Vec::new(),
            disk: MemoryBackend::default(),
            next_call: 1,
        }
    }

    pub fn connect(&mut self) -> TabId {
        let (tab, out) = self.host.connect_tab();
        self.out.extend(out);
        tab
    }

    /// Feeds `input`, and `Continue` whenever the host asks for it, as the
    /// platform does.
    pub fn input(&mut self, input: Input) {
        let mut out = self.host.handle(input);
        while let Some(at) = out.iter().position(|o| matches!(o, Output::Continue)) {
            out.remove(at);
            self.out.extend(out);
            out = self.host.handle(Input::Continue);
        }
        self.out.extend(out);
    }

    /// Sends a tab message given as JSON, as a tab would.
    pub fn send(&mut self, tab: TabId, message: Json) {
        let message = TabMessage::read(&message);
        self.input(Input::Tab { tab, message });
    }

    /// A call with a fresh id; returns the id.
    pub fn call(&mut self, tab: TabId, mut message: Json) -> u64 {
        let id = self.next_call;
        self.next_call += 1;
        message["id"] = json!(id);
        self.send(tab, message);
        id
    }

    /// Opens the shared test app from `tab`, with the sync server when `sync`.
    pub fn open_app(&mut self, tab: TabId, app: &str, sync: bool, auth: bool) -> u64 {
        let mut open = json!({ "type": "open", "app": app, "auth": auth });
        if sync {
            open["server"] = json!(SERVER);
        }
        self.call(tab, open)
    }

    pub fn take(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.out)
    }

    /// A new host over the files this one stored (a worker restart), its
    /// clock at `now`.
    pub fn reopened(&self, now: u64) -> Harness {
        let env = Rc::new(TestEnv::default());
        env.now.set(now);
        let stored = self
            .disk
            .files
            .keys()
            .map(|n| (n.clone(), self.disk.files.get(n).unwrap().clone()))
            .collect();
        let host = Host::open(
            Ok(stored),
            LogConfig::default(),
            "memory".into(),
            true,
            env.clone(),
        )
        .unwrap();
        Harness {
            host,
            env,
            out: Vec::new(),
            disk: self.disk.clone(),
            next_call: 1,
        }
    }

    /// Performs every storage request asked for, successfully, until none is left.
    pub fn settle_storage(&mut self) {
        while let Some(request) = self.take_storage() {
            let result = crate::storage::perform(&mut self.disk, &request);
            self.input(Input::StorageDone {
                id: request.id,
                result,
            });
        }
    }

    /// The storage request asked for, removed from the outputs.
    pub fn take_storage(&mut self) -> Option<IoRequest> {
        let at = self
            .out
            .iter()
            .position(|o| matches!(o, Output::StorageIo(_)))?;
        match self.out.remove(at) {
            Output::StorageIo(request) => Some(request),
            _ => unreachable!(),
        }
    }

    /// The fetches asked for (id, request), removed from the outputs.
    pub fn take_fetches(&mut self) -> Vec<(FetchId, HttpRequest)> {
        let mut fetches = Vec::new();
        self.out.retain(|o| match o {
            Output::Fetch { fetch, request } => {
                fetches.push((*fetch, request.clone()));
                false
            }
            _ => true,
        });
        fetches
    }

    /// Answers fetch `fetch` with a 200 and `body`.
    pub fn reply(&mut self, fetch: FetchId, body: Json) {
        self.input(Input::Fetched {
            fetch,
            response: Some(HttpResponse {
                status: 200,
                body: body.to_string(),
                next_cookie: None,
            }),
        });
    }

    /// When `timer` was last set to fire, if it is set.
    pub fn timer(&self, timer: Timer) -> Option<u64> {
        let mut at = None;
        for o in &self.out {
            match o {
                Output::SetTimer { timer: t, at: when } if *t == timer => at = Some(*when),
                Output::ClearTimer(t) if *t == timer => at = None,
                _ => {}
            }
        }
        at
    }

    /// Moves the clock to `at` and fires `timer`.
    pub fn fire(&mut self, timer: Timer, at: u64) {
        self.env.now.set(at);
        self.input(Input::TimerFired(timer));
    }

    /// The messages posted to `tab` (directly or by broadcast), as JSON, removed.
    pub fn posted(&mut self, tab: TabId) -> Vec<Json> {
        let mut posted = Vec::new();
        self.out.retain(|o| match o {
            Output::Post { tab: t, message } if *t == tab => {
                posted.push(message.encode(&mut JsonEncoder));
                false
            }
            Output::Broadcast(message) => {
                posted.push(message.encode(&mut JsonEncoder));
                true
            }
            _ => true,
        });
        posted
    }

    /// The messages of type `tag` posted to `tab`.
    pub fn posted_of(&mut self, tab: TabId, tag: &str) -> Vec<Json> {
        self.posted(tab)
            .into_iter()
            .filter(|m| m["type"] == tag)
            .collect()
    }

    /// The latest sync status broadcast, if any.
    pub fn status(&self) -> Option<Json> {
        self.out.iter().rev().find_map(|o| match o {
            Output::Broadcast(m @ WorkerMessage::SyncStatus(_)) => {
                Some(m.encode(&mut JsonEncoder)["status"].clone())
            }
            _ => None,
        })
    }
}

/// An empty page of a pull: caught up.
pub fn pull_ok(cookie: u64, more: bool) -> Json {
    json!({ "type": "ok", "cookie": cookie, "lastMutationIDChanges": {}, "patch": [], "more": more })
}

/// The fetches in `fetches` to `path` (`push`, `pull`).
pub fn to(path: &str, fetches: &[(FetchId, HttpRequest)]) -> Vec<(FetchId, HttpRequest)> {
    fetches
        .iter()
        .filter(|(_, r)| r.url.ends_with(&format!("/{path}")))
        .cloned()
        .collect()
}

/// A syncing host with one tab that answered its token ask with `token`,
/// and whose first pull is in flight: (harness, tab, the pull's fetch).
pub fn syncing() -> (Harness, TabId, FetchId) {
    syncing_with(&app_json())
}

/// [`syncing`] for the app definition `app`.
pub fn syncing_with(app: &str) -> (Harness, TabId, FetchId) {
    let mut h = Harness::new();
    let tab = h.connect();
    h.send(tab, json!({ "type": "hello", "lock": "tab-lock" }));
    h.open_app(tab, app, true, true);
    h.settle_storage();
    let ask = h.posted_of(tab, "needToken");
    assert_eq!(ask.len(), 1, "the client asks for a token first");
    h.send(
        tab,
        json!({ "type": "token", "ask": ask[0]["ask"], "token": "t1" }),
    );
    let fetches = h.take_fetches();
    let pulls = to("pull", &fetches);
    assert_eq!(pulls.len(), 1, "{fetches:?}");
    assert_eq!(pulls[0].1.bearer.as_deref(), Some("t1"));
    (h, tab, pulls[0].0)
}
