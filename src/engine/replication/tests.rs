//! The engine with an app: mutations and guarded SQL as tabs send them, and
//! sync driven through the host contract against the in-process model server
//! (the host's I/O done by hand: each effect carried out, its outcome fed back).

use super::*;
use crate::engine::live::TabId;
use crate::engine::request::{Request, Response};
use crate::engine::sync::{Event, ModelServer, StatusErrorCode, SyncStatus};
use crate::engine::{AppOpened, Engine};
use serde_json::{json, Value as Json};
use std::cell::Cell;
use std::rc::Rc;

fn app_json() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/app.json"
    ))
    .unwrap()
}

fn app_version(version: u32) -> String {
    let mut app: Json = serde_json::from_str(&app_json()).unwrap();
    app["version"] = json!(version);
    app.to_string()
}

/// One device: an engine over an in-memory database, its clock, and what
/// the host was told to show.
struct Device {
    engine: Engine,
    now: Rc<Cell<u64>>,
    user: String,
    timer: Option<u64>,
    settled: Vec<Settled>,
    emitted: Vec<SyncEvent>,
    status: Option<SyncStatus>,
    /// What the token provider does: `Err` simulates a provider that throws.
    token: Result<String, String>,
    /// Requests and token asks the host has yet to carry out.
    io: Vec<Effect>,
}

impl Device {
    fn new(client_id: &str, user: &str, sync: bool) -> Device {
        let mut engine = Engine::open_in_memory().unwrap();
        let now = Rc::new(Cell::new(1_000));
        let clock = now.clone();
        engine.set_clock(Box::new(move || clock.get()));
        let opened = engine
            .open_app(&app_json(), client_id, sync.then_some(7))
            .unwrap();
        assert_eq!(opened, AppOpened::Now { sync });
        Device {
            engine,
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

    fn tab(&mut self) -> TabId {
        self.engine.connect_tab()
    }

    fn mutate(&mut self, tab: TabId, name: &str, args: Json) -> crate::Result<u64> {
        let handled = self.engine.handle(
            tab,
            Request::Mutate {
                name: name.into(),
                args,
            },
        );
        self.take(handled.sync);
        match handled.reply? {
            Response::Mutated { mutation_id } => {
                assert!(handled.commit_seq.is_none(), "in-memory: no log");
                Ok(mutation_id)
            }
            other => panic!("not a mutation reply: {other:?}"),
        }
    }

    fn add_todo(&mut self, tab: TabId, id: &str, owner: &str) -> crate::Result<u64> {
        self.mutate(
            tab,
            "addTodo",
            json!({"id": id, "listId": "l1", "owner": owner, "title": id}),
        )
    }

    fn exec(&mut self, tab: TabId, sql: &str) -> crate::Result<Response> {
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

    fn column(&mut self, tab: TabId, sql: &str) -> Vec<Value> {
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
    fn take(&mut self, work: SyncWork) {
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

    fn event(&mut self, event: Event) {
        let handled = self.engine.sync_event(event).unwrap();
        self.take(handled.work);
    }

    /// Carries out the queued I/O against `server` (or fails it with
    /// `down`'s status) until nothing is left to do.
    fn run(&mut self, server: &mut ModelServer, down: Option<u16>) {
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
    fn settle_for(&mut self, server: &mut ModelServer, down: Option<u16>, horizon: u64) {
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

    fn sync(&mut self, server: &mut ModelServer) {
        self.settle_for(server, None, 5_000);
    }

    fn start(&mut self, server: &mut ModelServer) {
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

fn server() -> ModelServer {
    ModelServer::new(AppDefinition::from_json(&app_json()).unwrap()).unwrap()
}

#[test]
fn a_mutation_applies_at_once_in_every_tab_and_queues_in_the_outbox() {
    let mut device = Device::new("c1", "alice", false);
    let (a, b) = (device.tab(), device.tab());
    for (tab, subscription, sql) in [
        (a, 1, "SELECT id FROM todos"),
        (b, 1, "SELECT id FROM todos"),
        (b, 2, "SELECT id, name FROM _ferry_outbox"),
    ] {
        device
            .engine
            .handle(
                tab,
                Request::Subscribe {
                    subscription,
                    sql: sql.into(),
                    params: vec![],
                },
            )
            .reply
            .unwrap();
    }
    let handled = device.engine.handle(
        a,
        Request::Mutate {
            name: "addTodo".into(),
            args: json!({"id": "t1", "listId": "l1", "owner": "alice", "title": "milk"}),
        },
    );
    assert_eq!(handled.reply.unwrap(), Response::Mutated { mutation_id: 1 });
    let tabs: Vec<_> = handled
        .updates
        .iter()
        .map(|u| (u.tab, u.updates.len()))
        .collect();
    assert_eq!(
        tabs,
        [(a, 1), (b, 2)],
        "todos in both tabs, the outbox in b"
    );
    assert!(
        handled.sync.effects.is_empty(),
        "no server: nothing to send"
    );
    assert_eq!(device.add_todo(a, "t2", "alice").unwrap(), 2);
    assert_eq!(
        device.column(b, "SELECT name FROM _ferry_outbox ORDER BY id"),
        [text("addTodo"), text("addTodo")]
    );
}

#[test]
fn a_mutation_that_fails_locally_leaves_nothing_behind() {
    let mut device = Device::new("c1", "alice", false);
    let tab = device.tab();
    device.add_todo(tab, "t1", "alice").unwrap();
    let failures = [
        ("nope", json!({}), ErrorCode::UnknownMutator),
        ("addTodo", json!({"id": "t2"}), ErrorCode::BadArguments),
        (
            "addTodo",
            json!({"id": "t1", "listId": "l1", "owner": "alice", "title": "again"}),
            ErrorCode::MutatorFailed,
        ),
    ];
    for (name, args, code) in failures {
        let error = device.mutate(tab, name, args).unwrap_err();
        assert_eq!(error.code(), code, "{error}");
    }
    assert_eq!(
        device.column(tab, "SELECT count(*) FROM _ferry_outbox"),
        [Value::Integer(1)]
    );
    assert_eq!(device.column(tab, "SELECT title FROM todos"), [text("t1")]);
    assert_eq!(
        device.add_todo(tab, "t3", "alice").unwrap(),
        2,
        "no id used up"
    );
}

#[test]
fn plain_sql_may_write_local_tables_but_not_synced_ones() {
    let mut device = Device::new("c1", "alice", false);
    let tab = device.tab();
    for sql in [
        "INSERT INTO todos (id, list_id, owner, title, done) VALUES ('x', 'l', 'alice', 'x', 0)",
        "DELETE FROM lists",
        "UPDATE _ferry_outbox SET confirmed = 1",
        "INSERT INTO todos (id, list_id, owner, title, done) VALUES ('y', 'l', 'alice', 'y', 0) RETURNING id",
    ] {
        let error = device.exec(tab, sql).unwrap_err();
        assert_eq!(error.code(), ErrorCode::WriteOutsideMutator, "{sql}");
    }
    device
        .exec(tab, "INSERT INTO drafts (id, body) VALUES ('d1', 'hi')")
        .unwrap();
    assert_eq!(device.column(tab, "SELECT body FROM drafts"), [text("hi")]);
    assert!(device.column(tab, "SELECT id FROM todos").is_empty());
}

#[test]
fn a_tab_with_another_schema_version_is_refused() {
    let mut device = Device::new("c1", "alice", false);
    assert_eq!(
        device
            .engine
            .open_app(&app_json(), "ignored", None)
            .unwrap(),
        AppOpened::Already
    );
    let newer = device.engine.open_app(&app_version(2), "x", None);
    assert_eq!(newer.unwrap_err().code(), ErrorCode::WorkerOutdated);

    let mut engine = Engine::open_in_memory().unwrap();
    engine.open_app(&app_version(3), "c1", None).unwrap();
    let older = engine.open_app(&app_json(), "x", None);
    assert_eq!(older.unwrap_err().code(), ErrorCode::AppOutdated);
    let invalid =
        Engine::open_in_memory()
            .unwrap()
            .open_app(r#"{"version": 0, "tables": []}"#, "c", None);
    assert_eq!(invalid.unwrap_err().code(), ErrorCode::InvalidApp);
}

#[test]
fn a_replica_migrated_by_a_newer_build_refuses_an_older_one() {
    let dir = std::env::temp_dir().join(format!("ferrydb-replication-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("outdated.db");
    let _ = std::fs::remove_file(&path);
    let open = || {
        crate::engine::database::Database::from_connection(
            rusqlite::Connection::open(&path).unwrap(),
        )
        .unwrap()
    };
    Engine::new(open())
        .open_app(&app_version(2), "c1", None)
        .unwrap();
    let error = Engine::new(open())
        .open_app(&app_json(), "c1", None)
        .unwrap_err();
    assert_eq!(error.code(), ErrorCode::AppOutdated);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_mutation_reaches_another_device_and_settles_ok() {
    let mut server = server();
    let mut alice = Device::new("a", "alice", true);
    let mut phone = Device::new("p", "alice", true);
    alice.start(&mut server);
    phone.start(&mut server);
    let tab = alice.tab();
    let id = alice.add_todo(tab, "t1", "alice").unwrap();
    assert_eq!(alice.status.as_ref().unwrap().pending, 1);
    alice.sync(&mut server);
    assert_eq!(rejected_ids(&alice), [(id, None)]);
    assert_eq!(alice.status.as_ref().unwrap().pending, 0);
    assert!(alice.status.as_ref().unwrap().connected);

    let phone_tab = phone.tab();
    phone.event(Event::Server(ferrydb_protocol::ServerEvent::Poke {
        cookie: None,
    }));
    phone.sync(&mut server);
    assert_eq!(
        phone.column(phone_tab, "SELECT id FROM todos"),
        [text("t1")]
    );
    assert_eq!(
        server.executions().unwrap().values().sum::<u32>(),
        1,
        "once on the server"
    );
}

#[test]
fn a_rejected_mutation_settles_with_the_servers_code_and_its_row_goes() {
    let mut server = server();
    let mut alice = Device::new("a", "alice", true);
    alice.start(&mut server);
    let tab = alice.tab();
    let bad = alice.add_todo(tab, "theirs", "bob").unwrap();
    let good = alice.add_todo(tab, "mine", "alice").unwrap();
    assert_eq!(
        alice.column(tab, "SELECT count(*) FROM todos"),
        [Value::Integer(2)]
    );
    alice.sync(&mut server);
    assert_eq!(
        rejected_ids(&alice),
        [(bad, Some("forbidden".into())), (good, None)]
    );
    assert!(
        matches!(&alice.emitted[..], [SyncEvent::Rejected { rejections }] if rejections[0].code == "forbidden")
    );
    assert_eq!(alice.column(tab, "SELECT id FROM todos"), [text("mine")]);
    assert_eq!(
        alice.column(tab, "SELECT code FROM _ferry_rejections"),
        [text("forbidden")]
    );
    let later = alice.add_todo(tab, "later", "alice").unwrap();
    alice.sync(&mut server);
    assert_eq!(rejected_ids(&alice).last(), Some(&(later, None)));
}

#[test]
fn server_failures_back_off_and_recover_without_losing_or_repeating_writes() {
    let mut server = server();
    let mut alice = Device::new("a", "alice", true);
    alice.start(&mut server);
    let tab = alice.tab();
    let ids: Vec<u64> = (0..3)
        .map(|i| alice.add_todo(tab, &format!("t{i}"), "alice").unwrap())
        .collect();
    alice.settle_for(&mut server, Some(500), 20_000);
    let status = alice.status.clone().unwrap();
    assert_eq!(
        status.error.map(|e| e.code),
        Some(StatusErrorCode::ServerError)
    );
    assert_eq!(status.pending, 3);
    assert!(alice.settled.is_empty());
    // The server is back: the next retry (after the backoff) goes through.
    alice.settle_for(&mut server, None, 120_000);
    let settled: Vec<u64> = alice.settled.iter().map(|s| s.mutation_id).collect();
    assert_eq!(settled, ids);
    assert_eq!(alice.status.as_ref().unwrap().error, None);
    assert!(server.executions().unwrap().values().all(|&n| n == 1));
}

#[test]
fn a_token_provider_that_fails_is_reported_and_local_writes_go_on() {
    let mut server = server();
    let mut alice = Device::new("a", "alice", true);
    alice.token = Err("the provider threw".into());
    alice.start(&mut server);
    let status = alice.status.clone().unwrap();
    assert_eq!(
        status.error.map(|e| e.code),
        Some(StatusErrorCode::AuthRequired)
    );
    let tab = alice.tab();
    alice.add_todo(tab, "t1", "alice").unwrap();
    assert_eq!(alice.status.as_ref().unwrap().pending, 1);
    // The provider works again: asked after the backoff, and the write goes out.
    alice.token = Ok("alice".into());
    alice.settle_for(&mut server, None, 120_000);
    assert_eq!(alice.settled.len(), 1);
    assert_eq!(alice.status.as_ref().unwrap().error, None);
}

#[test]
fn a_newer_server_schema_stops_sync_keeps_local_writes_and_stays_known() {
    let mut server = ModelServer::new(AppDefinition::from_json(&app_version(2)).unwrap()).unwrap();
    let mut alice = Device::new("a", "alice", true);
    alice.start(&mut server);
    assert!(matches!(
        alice.emitted[..],
        [SyncEvent::UpdateNeeded {
            server_schema_version: 2
        }]
    ));
    let sticky: Vec<_> = alice
        .engine
        .replication()
        .unwrap()
        .sticky_events()
        .collect();
    assert_eq!(sticky.len(), 1, "told to tabs that connect later");
    let tab = alice.tab();
    alice.add_todo(tab, "t1", "alice").unwrap();
    alice.sync(&mut server);
    assert!(alice.io.is_empty());
    assert_eq!(alice.column(tab, "SELECT id FROM todos"), [text("t1")]);
    assert_eq!(
        alice
            .status
            .as_ref()
            .unwrap()
            .error
            .as_ref()
            .map(|e| e.code),
        Some(StatusErrorCode::UpdateNeeded)
    );
}

#[test]
fn an_unparseable_reply_is_a_bad_response_and_is_retried() {
    let mut server = server();
    let mut alice = Device::new("a", "alice", true);
    alice.event(Event::Online);
    assert_eq!(alice.io, [Effect::NeedToken]);
    alice.io.clear();
    alice.event(Event::Token(Some("alice".into())));
    let Some(Effect::SendPull { id, .. }) = alice.io.pop() else {
        panic!("no pull: {:?}", alice.io);
    };
    alice.event(Event::InvalidResponse {
        id,
        message: "expected value at line 1".into(),
    });
    assert_eq!(
        alice
            .status
            .as_ref()
            .unwrap()
            .error
            .as_ref()
            .map(|e| e.code),
        Some(StatusErrorCode::BadResponse)
    );
    alice.settle_for(&mut server, None, 120_000);
    let status = alice.status.clone().unwrap();
    assert!(status.connected && status.error.is_none() && status.last_synced_at.is_some());
}

#[test]
fn a_replica_opened_without_a_server_can_start_syncing_later() {
    let mut server = server();
    let mut alice = Device::new("a", "alice", false);
    let tab = alice.tab();
    let id = alice.add_todo(tab, "early", "alice").unwrap();
    assert!(!alice.engine.syncing());
    assert!(alice.engine.enable_sync(3));
    assert!(!alice.engine.enable_sync(4), "once");
    alice.start(&mut server);
    // Made before syncing started: its `server` outcome still comes.
    assert_eq!(rejected_ids(&alice), [(id, None)]);
    assert_eq!(alice.status.as_ref().unwrap().pending, 0);
    assert_eq!(server.last_mutation_id("a").unwrap(), id);
}
