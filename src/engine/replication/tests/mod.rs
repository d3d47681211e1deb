//! The engine with an app: mutations and guarded SQL as tabs send them
//! (`local`), and sync driven through the host contract against the
//! in-process reference server (`SqliteServer`, from `server`; the host's
//! I/O done by hand: each effect carried out, its outcome fed back). Shared here: one device.

mod local;
mod server;

use super::*;
use crate::engine::live::TabId;
use crate::engine::request::{Request, Response};
use crate::engine::sync::{Event, StatusErrorCode, SyncStatus};
use crate::engine::{AppOpened, Engine};
use crate::storage::{open_backend, perform, LogConfig, MemoryBackend};
use ferrydb_server::store::SqliteServer;
use serde_json::{json, Value as Json};
use std::cell::Cell;
use std::rc::Rc;

pub fn app_json() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/app.json"
    ))
    .unwrap()
}

pub fn app_version(version: u32) -> String {
    let mut app: Json = serde_json::from_str(&app_json()).unwrap();
    app["version"] = json!(version);
    app.to_string()
}

/// One device: an engine over an in-memory database, its clock, and what
/// the host was told to show.
pub struct Device {
    pub engine: Engine,
    /// The tab that opened the app.
    pub opener: TabId,
    pub now: Rc<Cell<u64>>,
    pub user: String,
    pub timer: Option<u64>,
    pub settled: Vec<Settled>,
    pub emitted: Vec<SyncEvent>,
    pub status: Option<SyncStatus>,
    /// What the token provider does: `Err` simulates a provider that throws.
    pub token: Result<String, String>,
    /// Requests and token asks the host has yet to carry out.
    pub io: Vec<Effect>,
}

impl Device {
    pub fn new(client_id: &str, user: &str, sync: bool) -> Device {
        Device::with_engine(Engine::open_in_memory().unwrap(), client_id, user, sync)
    }

    /// A syncing device whose engine logs its commits to `backend` (the
    /// browser's storage, in memory), written by [`Device::flush`]; made
    /// again from the same backend, it is the device restarted after a
    /// crash. `client_id` is used only if the backend is empty.
    pub fn on_disk(backend: &MemoryBackend, client_id: &str, user: &str) -> Device {
        let recovered = open_backend(backend, LogConfig::default()).unwrap();
        let engine = Engine::open_durable(recovered).unwrap();
        Device::with_engine(engine, client_id, user, true)
    }

    fn with_engine(mut engine: Engine, client_id: &str, user: &str, sync: bool) -> Device {
        let now = Rc::new(Cell::new(1_000));
        let clock = now.clone();
        engine.set_clock(Box::new(move || crate::engine::Now::at(clock.get())));
        let opener = engine.connect_tab();
        let opened = engine
            .open_app(opener, &app_json(), client_id, sync.then_some(7))
            .unwrap();
        assert_eq!(opened, AppOpened::Now { sync });
        Device {
            engine,
            opener,
            now,
            user: user.into(),
            timer: None,
            settled: vec![],
            emitted: vec![],
            status: None,
            token: Ok(user.into()),
            io: vec![],
        }
    }

    pub fn tab(&mut self) -> TabId {
        self.engine.connect_tab()
    }

    pub fn mutate(&mut self, tab: TabId, name: &str, args: Json) -> crate::Result<u64> {
        let handled = self.engine.handle(
            tab,
            Request::Mutate {
                name: name.into(),
                args,
            },
        );
        self.take(handled.sync);
        match handled.reply? {
            Response::Mutated { mutation_id } => Ok(mutation_id),
            other => panic!("not a mutation reply: {other:?}"),
        }
    }

    pub fn add_todo(&mut self, tab: TabId, id: &str, owner: &str) -> crate::Result<u64> {
        self.mutate(
            tab,
            "addTodo",
            json!({"id": id, "listId": "l1", "owner": owner, "title": id}),
        )
    }

    pub fn exec(&mut self, tab: TabId, sql: &str) -> crate::Result<Response> {
        self.engine
            .handle(
                tab,
                Request::Exec {
                    sql: sql.into(),
                    params: vec![],
                },
            )
            .reply
    }

    pub fn column(&mut self, tab: TabId, sql: &str) -> Vec<Value> {
        match self
            .engine
            .handle(
                tab,
                Request::Query {
                    sql: sql.into(),
                    params: vec![],
                },
            )
            .reply
            .unwrap()
        {
            Response::Rows(r) => r.rows.into_iter().map(|mut r| r.remove(0)).collect(),
            other => panic!("{other:?}"),
        }
    }

    /// Records what the host shows; queues the I/O to carry out.
    pub fn take(&mut self, work: SyncWork) {
        self.settled.extend(work.settled);
        for effect in work.effects {
            match effect {
                Effect::SetTimer { at } => self.timer = Some(at),
                Effect::Emit(e) => self.emitted.push(e),
                Effect::Status(s) => self.status = Some(s),
                other => self.io.push(other),
            }
        }
    }

    pub fn event(&mut self, event: Event) {
        let handled = self.engine.sync_event(event).unwrap();
        self.take(handled.work);
    }

    /// Writes what waits for storage to `backend`, as the browser host does,
    /// and takes the sync work of mutations that reached the disk.
    pub fn flush(&mut self, backend: &mut MemoryBackend) {
        while let Some(request) = self.engine.next_io() {
            let result = perform(backend, &request);
            if let Some(handled) = self.engine.io_done(request.id, result).unwrap().sync {
                self.take(handled.work);
            }
        }
    }

    /// Carries out the queued I/O against `server` (or fails it with
    /// `down`'s status) until nothing is left to do.
    pub fn run(&mut self, server: &mut SqliteServer, down: Option<u16>) {
        while !self.io.is_empty() {
            for effect in std::mem::take(&mut self.io) {
                let event = match (effect, down) {
                    (Effect::NeedToken, _) => match self.token.clone() {
                        Ok(token) => Event::Token(Some(token)),
                        Err(why) => Event::TokenFailed(why),
                    },
                    (Effect::SendPush { id, .. } | Effect::SendPull { id, .. }, Some(status)) => {
                        Event::HttpError { id, status }
                    }
                    (Effect::SendPush { id, request, .. }, None) => Event::PushResponse {
                        id,
                        response: server.push(&self.user, &request).unwrap(),
                    },
                    (Effect::SendPull { id, request, .. }, None) => Event::PullResponse {
                        id,
                        response: server.pull(&self.user, &request).unwrap(),
                    },
                    (other, _) => panic!("not I/O: {other:?}"),
                };
                self.event(event);
            }
        }
    }

    /// Runs I/O and fires timers due within `horizon` ms, until quiet.
    pub fn settle_for(&mut self, server: &mut SqliteServer, down: Option<u16>, horizon: u64) {
        let until = self.now.get() + horizon;
        for _ in 0..1_000 {
            self.run(server, down);
            match self.timer {
                Some(at) if at <= until => {
                    self.timer = None;
                    self.now.set(self.now.get().max(at));
                    self.event(Event::Timer);
                }
                _ => return,
            }
        }
        panic!("never settled");
    }

    pub fn sync(&mut self, server: &mut SqliteServer) {
        self.settle_for(server, None, 5_000);
    }

    pub fn start(&mut self, server: &mut SqliteServer) {
        self.event(Event::Online);
        self.sync(server);
    }
}

fn rejected_ids(device: &Device) -> Vec<(u64, Option<String>)> {
    device
        .settled
        .iter()
        .map(|s| (s.mutation_id, s.rejection.as_ref().map(|r| r.code.clone())))
        .collect()
}

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

fn server() -> SqliteServer {
    SqliteServer::new(AppDefinition::from_json(&app_json()).unwrap()).unwrap()
}
