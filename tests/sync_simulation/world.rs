//! The simulated world: clients (each a replica over its own SQLite file, a
//! sync state machine and a timer), the reference server's SQLite store
//! (`SqliteServer`, over a file that the sharing world's oracle reads with a
//! connection of its own), and a network of messages with delivery times,
//! where faults are injected.

use super::oracle::{Key, Oracle};
use super::Stats;
use ferrydb::engine::database::Database;
use ferrydb::engine::sync::{Effect, Event, Opened, Replica, SplitMix64, SyncClient, SyncConfig};
use ferrydb::engine::Now;
use ferrydb_protocol::{
    AppDefinition, MutationResult, PullRequest, PullResponse, PushRequest, PushResponse,
    ServerEvent,
};
use ferrydb_server::store::SqliteServer;
use serde_json::Value as Json;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

pub type Counters = BTreeMap<String, i64>;
/// Synced rows per table, as a replica snapshot or the server's view of a user.
pub type View = BTreeMap<String, Vec<ferrydb_protocol::Row>>;

/// What a world syncs, and so what a replica must converge to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Protocol v1 over the sample app (`tests/fixtures/app.json`): every
    /// row its user's access rules let it read.
    Rules,
    /// Protocol v2 over lists shared through a members table
    /// (`tests/fixtures/sharing_simulation.json`): exactly the rows its
    /// group's subscriptions select for its user, as the oracle computes
    /// them.
    Subscriptions,
}

impl Mode {
    pub fn app(self) -> AppDefinition {
        static RULES: std::sync::OnceLock<AppDefinition> = std::sync::OnceLock::new();
        static SHARING: std::sync::OnceLock<AppDefinition> = std::sync::OnceLock::new();
        let (cell, file) = match self {
            Mode::Rules => (&RULES, "app.json"),
            Mode::Subscriptions => (&SHARING, "sharing_simulation.json"),
        };
        let load = || {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures")
                .join(file);
            AppDefinition::from_json(&std::fs::read_to_string(path).unwrap()).unwrap()
        };
        cell.get_or_init(load).clone()
    }

    pub fn users(self) -> &'static [&'static str] {
        match self {
            Mode::Rules => &["alice", "bob"],
            Mode::Subscriptions => &["ada", "bob", "cy"],
        }
    }

    /// Clients in all, one replica (client group) each; client `i` belongs
    /// to user `i % users`.
    pub fn clients(self) -> usize {
        match self {
            Mode::Rules => 4,
            Mode::Subscriptions => 6,
        }
    }
}

pub fn config() -> SyncConfig {
    SyncConfig {
        push_batch: 5,
        poke_debounce_ms: 20,
        request_timeout_ms: 1_000,
        backoff_base_ms: 50,
        backoff_max_ms: 2_000,
        pull_interval_ms: Some(5_000),
    }
}

pub enum Payload {
    Push(u64, PushRequest),
    Pull(u64, PullRequest),
    /// An event for the client; for the reply to an incremental pull, also what
    /// the server held for the user when it answered (see `Sim::check_optimistic`).
    Reply(Event, Option<View>),
    Token,
}

pub struct Message {
    pub at: u64,
    pub client: usize,
    /// Messages to or from an earlier life of a restarted client are lost.
    pub life: u32,
    pub payload: Payload,
}

pub struct Node {
    pub replica: Replica,
    pub db: Database,
    pub sync: SyncClient,
}

pub struct Client {
    pub id: String,
    pub user: &'static str,
    pub path: PathBuf,
    pub life: u32,
    pub node: Node,
    pub timer: Option<u64>,
    pub online: bool,
    /// Every mutation that applied locally: (id, name, args).
    pub mutations: Vec<(u64, String, Json)>,
    /// The mutations whose target row (an item, a list) this replica
    /// showed when it ran them: their user could read it then.
    pub saw_target: BTreeSet<u64>,
    /// Every key the server ever sent this group in a `put`, in any response
    /// (lost ones too).
    pub sent: BTreeSet<Key>,
    /// Every key the group's subscriptions selected for its user when a
    /// pull of it was answered: the only keys a `del` may name.
    pub selectable: BTreeSet<Key>,
}

pub struct Sim {
    pub mode: Mode,
    pub rng: SplitMix64,
    pub now: u64,
    pub server: SqliteServer,
    /// Reads the server's tables (the sharing world only).
    pub oracle: Option<Oracle>,
    pub clients: Vec<Client>,
    pub network: Vec<Message>,
    pub faults: bool,
    pub stats: Stats,
    pub seed: u64,
}

pub fn open_node(mode: Mode, path: &PathBuf, id: &str, seed: u64) -> (Node, Opened) {
    let conn = rusqlite::Connection::open(path).unwrap();
    // A clean close is all a restart needs; skipping fsync keeps the simulation fast.
    conn.execute_batch("PRAGMA synchronous = OFF").unwrap();
    let mut db = Database::from_connection(conn).unwrap();
    let (replica, opened) = Replica::open(&mut db, mode.app(), id).unwrap();
    let sync = SyncClient::new(config(), seed);
    (Node { replica, db, sync }, opened)
}

impl Sim {
    pub fn new(mode: Mode, seed: u64, dir: &Path) -> Sim {
        let mut rng = SplitMix64::new(seed);
        let users = mode.users();
        let clients = (0..mode.clients())
            .map(|i| {
                let id = format!("client{i}");
                let path = dir.join(format!("{id}.db"));
                let (node, opened) = open_node(mode, &path, &id, rng.next_u64());
                assert_eq!(opened, Opened::Created);
                Client {
                    id,
                    user: users[i % users.len()],
                    path,
                    life: 0,
                    node,
                    timer: None,
                    online: false,
                    mutations: Vec::new(),
                    saw_target: BTreeSet::new(),
                    sent: BTreeSet::new(),
                    selectable: BTreeSet::new(),
                }
            })
            .collect();
        let page = 2 + rng.below(20) as usize;
        let path = dir.join("server.db");
        let conn = rusqlite::Connection::open(&path).unwrap();
        // WAL lets the oracle's connection read between requests; the
        // server's durability is not what this simulates.
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF")
            .unwrap();
        let server = SqliteServer::open(conn, mode.app()).unwrap();
        Sim {
            mode,
            rng,
            now: 0,
            server: server.with_page_size(page),
            oracle: (mode == Mode::Subscriptions).then(|| Oracle::open(&path)),
            clients,
            network: Vec::new(),
            faults: true,
            stats: Stats::default(),
            seed,
        }
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.faults && self.rng.chance(p)
    }

    /// Delivers `event` to client `c` and carries out the effects.
    pub fn handle(&mut self, c: usize, event: Event) {
        if matches!(event, Event::Online) {
            self.clients[c].online = true;
        }
        if matches!(event, Event::Offline) {
            self.clients[c].online = false;
        }
        let client = &mut self.clients[c];
        let node = &mut client.node;
        let effects = node
            .sync
            .handle(Now::at(self.now), event, &mut node.replica, &mut node.db)
            .unwrap();
        let life = client.life;
        for effect in effects {
            let delay = self.rng.below(150);
            let at = self.now + delay;
            let payload = match effect {
                Effect::SendPush { id, request, .. } => Payload::Push(id, request),
                Effect::SendPull { id, request, .. } => Payload::Pull(id, request),
                Effect::NeedToken => Payload::Token,
                Effect::SetTimer { at } => {
                    self.clients[c].timer = Some(at);
                    continue;
                }
                Effect::Changed(_) | Effect::Emit(_) | Effect::Status(_) => continue,
            };
            if matches!(payload, Payload::Push(..) | Payload::Pull(..)) && self.chance(0.05) {
                self.stats.dropped += 1;
                continue;
            }
            let copies = if self.chance(0.05) { 2 } else { 1 };
            for copy in 0..copies {
                let payload = match (&payload, copy) {
                    (_, 0) => clone_payload(&payload),
                    (p, _) => {
                        self.stats.duplicated += 1;
                        clone_payload(p)
                    }
                };
                let at = at + copy * self.rng.below(300);
                self.network.push(Message {
                    at,
                    client: c,
                    life,
                    payload,
                });
            }
        }
    }

    /// Delivers one message: a request reaches the server (whose reply, or
    /// failure, goes back on the network), a reply or token reaches its client.
    pub fn deliver(&mut self, message: Message) {
        let c = message.client;
        let user = self.clients[c].user;
        let mut view = None;
        let reply = match message.payload {
            Payload::Token => {
                self.reply(c, message.life, Event::Token(Some(format!("token-{user}"))));
                return;
            }
            Payload::Reply(event, view) => {
                if message.life == self.clients[c].life {
                    // The cookie of a response the client takes (a late one
                    // is ignored: the replica is then not at its state).
                    let cookie = match &event {
                        Event::PullResponse {
                            id,
                            response: PullResponse::Ok(ok),
                        } if self.clients[c].node.sync.awaits(*id) => Some(ok.cookie.clone()),
                        _ => None,
                    };
                    self.handle(c, event);
                    if let (Some(cookie), Some(view)) = (cookie, view) {
                        if self.clients[c].node.replica.cookie() == Some(&cookie) {
                            self.check_optimistic(c, &view);
                        }
                    }
                }
                return;
            }
            _ if self.chance(0.03) => {
                self.stats.http_errors += 1;
                let status = if self.rng.chance(0.3) { 401 } else { 503 };
                let (Payload::Push(id, _) | Payload::Pull(id, _)) = message.payload else {
                    unreachable!("tokens and replies were matched above")
                };
                self.reply(c, message.life, Event::HttpError { id, status });
                return;
            }
            Payload::Push(id, request) => {
                self.stats.pushes += 1;
                let prediction = self.predict_push(c, &request);
                let response = self.server.push(user, &request).unwrap();
                self.check_push(c, &request, &response, prediction);
                if let PushResponse::Ok { results } = &response {
                    if results
                        .iter()
                        .any(|r| matches!(r, MutationResult::Ok { .. }))
                    {
                        self.poke_all();
                    }
                }
                Event::PushResponse { id, response }
            }
            Payload::Pull(id, request) => {
                self.stats.pulls += 1;
                if self.chance(0.01) {
                    self.stats.resets += 1;
                    self.server.demand_reset(&request.client_group_id);
                }
                let incremental =
                    matches!(request.cookie, Some(ferrydb_protocol::Cookie::Integer(_)));
                let response: PullResponse = self.server.pull(user, &request).unwrap();
                self.check_pull(c, &request, &response);
                if incremental && matches!(&response, PullResponse::Ok(ok) if !ok.more) {
                    view = Some(self.server_view(c, &request));
                }
                Event::PullResponse { id, response }
            }
        };
        if self.chance(0.05) {
            // The server did the work; the reply is lost. The client times out.
            self.stats.dropped += 1;
            return;
        }
        let at = self.now + self.rng.below(150);
        let payload = Payload::Reply(reply, view);
        self.network.push(Message {
            at,
            client: c,
            life: message.life,
            payload,
        });
    }

    pub fn reply(&mut self, c: usize, life: u32, event: Event) {
        let at = self.now + self.rng.below(150);
        self.network.push(Message {
            at,
            client: c,
            life,
            payload: Payload::Reply(event, None),
        });
    }

    pub fn poke_all(&mut self) {
        // A v2 poke carries no cookie: view versions are per group.
        let cookie = match self.mode {
            Mode::Rules => Some(ferrydb_protocol::Cookie::Integer(
                self.server.version().unwrap(),
            )),
            Mode::Subscriptions => None,
        };
        for c in 0..self.clients.len() {
            if self.chance(0.2) {
                continue;
            }
            let event = Event::Server(ServerEvent::Poke {
                cookie: cookie.clone(),
            });
            let life = self.clients[c].life;
            self.reply(c, life, event);
        }
    }

    pub fn restart(&mut self, c: usize) {
        self.stats.restarts += 1;
        let seed = self.rng.next_u64();
        let client = &mut self.clients[c];
        client.life += 1;
        client.timer = None;
        // The new connection opens the file before the old one closes (SQLite
        // allows that); the old one holds no transaction, so this is a restart.
        let (node, opened) = open_node(self.mode, &client.path, &client.id, seed);
        assert_eq!(opened, Opened::Unchanged);
        client.node = node;
        self.handle(c, Event::Online);
    }

    /// Runs every message and timer due at `now`.
    pub fn deliver_due(&mut self) {
        loop {
            let due: Vec<usize> = (0..self.network.len())
                .filter(|&i| self.network[i].at <= self.now)
                .collect();
            let timers: Vec<usize> = (0..self.clients.len())
                .filter(|&c| self.clients[c].timer.is_some_and(|t| t <= self.now))
                .collect();
            if due.is_empty() && timers.is_empty() {
                return;
            }
            if !due.is_empty() {
                // Any due message may go first: reordering within the window.
                let pick = due[self.rng.below(due.len() as u64) as usize];
                let message = self.network.swap_remove(pick);
                self.deliver(message);
            } else {
                let c = timers[0];
                self.clients[c].timer = None;
                self.handle(c, Event::Timer);
            }
        }
    }

    pub fn step(&mut self) {
        self.now += self.rng.below(25);
        for c in 0..self.clients.len() {
            let online = self.clients[c].online;
            // Offline clients act too (that is the point), just less.
            if self.rng.chance(if online { 0.15 } else { 0.02 }) {
                match self.mode {
                    Mode::Rules => self.random_mutation(c),
                    Mode::Subscriptions => self.random_sharing_action(c),
                }
            }
            if self.chance(0.004) {
                let event = if self.clients[c].online {
                    Event::Offline
                } else {
                    Event::Online
                };
                self.handle(c, event);
            }
            if self.chance(0.002) {
                self.restart(c);
            }
        }
        self.deliver_due();
    }

    /// No faults any more: run until nothing is in flight, nothing is pending
    /// and everyone pulled after the last change.
    pub fn settle(&mut self) {
        self.faults = false;
        for c in 0..self.clients.len() {
            if !self.clients[c].online {
                self.handle(c, Event::Online);
            }
        }
        for round in 0..2 {
            for _ in 0..100_000 {
                self.deliver_due();
                let next_message = self.network.iter().map(|m| m.at).min();
                if next_message.is_none() && self.all_settled() {
                    break;
                }
                let next_timer = self.clients.iter().filter_map(|c| c.timer).min();
                match next_message.into_iter().chain(next_timer).min() {
                    Some(at) => self.now = self.now.max(at),
                    None => panic!("seed {}: stuck with nothing scheduled", self.seed),
                }
            }
            assert!(self.all_settled(), "seed {}: did not settle", self.seed);
            if round == 0 {
                // A last poke to everyone, so each pulls after the final change.
                let cookie = None;
                for c in 0..self.clients.len() {
                    self.handle(
                        c,
                        Event::Server(ServerEvent::Poke {
                            cookie: cookie.clone(),
                        }),
                    );
                }
            }
        }
    }

    pub fn all_settled(&mut self) -> bool {
        self.network.is_empty()
            && self.clients.iter_mut().all(|c| {
                c.node.sync.is_idle() && c.node.replica.pending_count(&mut c.node.db).unwrap() == 0
            })
    }
}

pub fn clone_payload(p: &Payload) -> Payload {
    match p {
        Payload::Push(id, r) => Payload::Push(*id, r.clone()),
        Payload::Pull(id, r) => Payload::Pull(*id, r.clone()),
        Payload::Reply(e, c) => Payload::Reply(e.clone(), c.clone()),
        Payload::Token => Payload::Token,
    }
}
