//! The stores at the store interface (no HTTP), in two parts.
//!
//! 1. One standard for both stores, written once (the store behaviour
//!    tests; nothing else tests the stores' behaviour at this interface) —
//!    every rejection code, idempotent retries, write rules before and
//!    after, gaps, ownership, read filtering with tombstones, schema checks,
//!    unservable cookies, reopening, paging — run against every store of
//!    `common::store_urls()`, plus a differential test that runs one script
//!    on SQLite and Postgres and wants the same answers, value for value.
//! 2. What only Postgres does: several server instances on one database
//!    (pokes across instances, a listener that reconnects, concurrent pushes
//!    through two instances with a puller that must never miss a row,
//!    instances opening a fresh database together), and a database that goes
//!    away (`Unavailable`) and comes back.
//!
//! Part 2 needs `FERRYDB_TEST_POSTGRES_URL`; without it those tests say so
//! and pass (with `CI` set they fail, as `common::store_urls` does).

mod common;

use common::*;
use ferrydb_protocol::{
    AppDefinition, Cookie, MismatchAction, Mutation, MutationResult, PatchOp, PullOk, PullRequest,
    PullResponse, PushRequest, PushResponse, RejectionCode, Row, PROTOCOL_VERSION,
};
use ferrydb_server::store::{self, Pokes, Store, StoreError, StoreOptions};
use ferrydb_server::{Config, ServerState};
use serde_json::{json, Value as Json};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

// ---------------------------------------------------------------- helpers

fn options(page_size: usize) -> StoreOptions {
    StoreOptions {
        page_size,
        pokes: Pokes::new(),
    }
}

async fn open(url: &str, app: AppDefinition) -> Store {
    store::open(url, app, options(100))
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"))
}

fn sample() -> AppDefinition {
    app_def(&app_json())
}

fn push_request(client: &str, mutations: &[(u64, &str, Json)]) -> PushRequest {
    PushRequest {
        protocol_version: PROTOCOL_VERSION,
        schema_version: 1,
        client_group_id: client.into(),
        client_id: client.into(),
        mutations: mutations
            .iter()
            .map(|(id, name, args)| Mutation {
                id: *id,
                name: (*name).into(),
                args: args.clone(),
                timestamp: 0,
            })
            .collect(),
    }
}

fn pull_request(client: &str, cookie: Option<Cookie>) -> PullRequest {
    PullRequest {
        protocol_version: PROTOCOL_VERSION,
        schema_version: 1,
        client_group_id: client.into(),
        client_id: client.into(),
        cookie,
        subscriptions: None,
    }
}

async fn results(store: &Store, user: &str, request: &PushRequest) -> Vec<MutationResult> {
    match store.push(user, request.clone()).await.unwrap() {
        PushResponse::Ok { results } => results,
        other => panic!("{other:?}"),
    }
}

fn code(result: &MutationResult) -> &str {
    match result {
        MutationResult::Ok { .. } => "ok",
        MutationResult::AlreadyProcessed { .. } => "alreadyProcessed",
        MutationResult::Rejected { code, .. } => code.as_str(),
    }
}

fn codes(results: &[MutationResult]) -> Vec<&str> {
    results.iter().map(code).collect()
}

async fn pull(store: &Store, user: &str, request: PullRequest) -> PullOk {
    match store.pull(user, request).await.unwrap() {
        PullResponse::Ok(ok) => ok,
        other => panic!("{other:?}"),
    }
}

/// A replica's synced state: (table, key) → row, with the key columns of
/// each table taken from the app definition.
#[derive(Clone, Debug, Default, PartialEq)]
struct Replica {
    rows: BTreeMap<(String, String), Row>,
    keys: BTreeMap<String, Vec<String>>,
}

impl Replica {
    fn of(app: &AppDefinition) -> Replica {
        Replica {
            rows: BTreeMap::new(),
            keys: app
                .tables
                .iter()
                .map(|t| (t.name.clone(), t.primary_key.clone()))
                .collect(),
        }
    }

    fn key(&self, table: &str, row: &Row) -> (String, String) {
        let key: Vec<&Json> = self.keys[table].iter().map(|k| &row[k]).collect();
        (table.to_owned(), serde_json::to_string(&key).unwrap())
    }

    fn apply(&mut self, patch: &[PatchOp]) {
        for op in patch {
            match op {
                PatchOp::Clear => self.rows.clear(),
                PatchOp::Put { table, row } => {
                    let key = self.key(table, row);
                    self.rows.insert(key, row.clone());
                }
                PatchOp::Del { table, key } => {
                    let key = self.key(table, key);
                    self.rows.remove(&key);
                }
            }
        }
    }

    fn table(&self, table: &str) -> Vec<&Row> {
        self.rows
            .iter()
            .filter(|((t, _), _)| t == table)
            .map(|(_, row)| row)
            .collect()
    }
}

/// Pulls from `cookie` until `more` is false, applying every page.
async fn sync(
    store: &Store,
    user: &str,
    client: &str,
    replica: &mut Replica,
    cookie: Option<Cookie>,
) -> PullOk {
    let mut cookie = cookie;
    loop {
        let ok = pull(store, user, pull_request(client, cookie.clone())).await;
        replica.apply(&ok.patch);
        cookie = Some(ok.cookie.clone());
        if !ok.more {
            return ok;
        }
    }
}

/// Everything `user` may read, from a full sync of a fresh client.
async fn readable(store: &Store, app: &AppDefinition, user: &str) -> Replica {
    static READERS: AtomicU32 = AtomicU32::new(0);
    let client = format!("reader-{user}-{}", READERS.fetch_add(1, Ordering::Relaxed));
    let mut replica = Replica::of(app);
    let mut cookie = None;
    loop {
        let mut request = pull_request(&client, cookie);
        request.schema_version = app.version;
        let ok = pull(store, user, request).await;
        replica.apply(&ok.patch);
        cookie = Some(ok.cookie.clone());
        if !ok.more {
            return replica;
        }
    }
}

fn todo(id: &str, owner: &str) -> Json {
    json!({"id": id, "listId": "l", "owner": owner, "title": "x"})
}

/// The admin URL of the Postgres under test, or `None` (the test then says
/// it skipped; under CI that is a failure).
fn postgres() -> Option<String> {
    match std::env::var("FERRYDB_TEST_POSTGRES_URL") {
        Ok(url) => Some(url),
        Err(_) if std::env::var_os("CI").is_some() => {
            panic!("CI: FERRYDB_TEST_POSTGRES_URL is not set, so Postgres would go untested")
        }
        Err(_) => {
            eprintln!("skipped: FERRYDB_TEST_POSTGRES_URL is not set");
            None
        }
    }
}

/// A fresh database for one Postgres-only test (numbered apart from the
/// ones `store_urls` makes in this process).
async fn fresh_database(admin: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(10_000);
    fresh_postgres_database(admin, NEXT.fetch_add(1, Ordering::Relaxed)).await
}

async fn instance(url: &str, app: AppDefinition) -> Arc<ServerState> {
    ServerState::start(Config::default(), Some((app, url)))
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"))
}

fn store_of(state: &ServerState) -> &Store {
    state.store.as_ref().unwrap()
}

/// Waits for a poke of at least `version`.
async fn poked(pokes: &mut broadcast::Receiver<i64>, version: i64, within: Duration) -> bool {
    tokio::time::timeout(within, async {
        loop {
            match pokes.recv().await {
                Ok(v) if v >= version => return,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
            }
        }
    })
    .await
    .is_ok()
}

// ------------------------------------------- one standard for both stores

#[tokio::test]
async fn every_rejection_code_and_idempotent_retries() {
    for url in store_urls().await {
        let store = open(&url, sample()).await;
        let request = push_request(
            "c",
            &[
                (1, "addTodo", todo("t1", "alice")),
                (2, "addTodo", todo("t2", "bob")), // a row alice may not own
                (3, "nope", json!({})),            // unknown mutator
                (4, "increment", json!({"id": "c"})), // missing argument
                (5, "addTodo", todo("t1", "alice")), // duplicate key on the server
                (6, "increment", json!({"id": "c", "by": 1})),
                (7, "increment", json!({"id": "c", "by": "two"})), // mistyped
                (8, "increment", json!({"id": "c", "by": 1, "extra": 1})), // unknown argument
            ],
        );
        let first = results(&store, "alice", &request).await;
        let expected = [
            "ok",
            "forbidden",
            "unknown_mutator",
            "bad_arguments",
            "mutator_failed",
            "ok",
            "bad_arguments",
            "bad_arguments",
        ];
        assert_eq!(codes(&first), expected, "{url}");
        let messages: Vec<String> = first
            .iter()
            .filter_map(|r| match r {
                MutationResult::Rejected { message, .. } => Some(message.clone()),
                _ => None,
            })
            .collect();
        assert!(
            messages[0].contains("write rule of `todos`"),
            "{url}: {messages:?}"
        );
        assert!(messages[1].contains("`nope`"), "{url}: {messages:?}");
        assert!(
            messages[2].contains("`by` is required"),
            "{url}: {messages:?}"
        );
        assert!(
            messages[3].contains("mutator `addTodo` failed"),
            "{url}: {messages:?}"
        );
        // The same push again (a lost reply): nothing runs twice, rejections
        // come back the same, messages included.
        let again = results(&store, "alice", &request).await;
        let replayed = expected.map(|c| if c == "ok" { "alreadyProcessed" } else { c });
        assert_eq!(codes(&again), replayed, "{url}");
        for (a, b) in first.iter().zip(&again) {
            if let MutationResult::Rejected { .. } = a {
                assert_eq!(a, b, "{url}");
            }
        }
        let log = store.mutation_log().await.unwrap();
        assert_eq!(log.len(), 8, "{url}: {log:?}");
        let outcomes: Vec<&str> = log.iter().map(|m| m.outcome.as_str()).collect();
        assert_eq!(outcomes, expected, "{url}");
        assert_eq!(log[2].name, "nope", "{url}");
        assert_eq!(
            store.version().await.unwrap(),
            8,
            "{url}: one version per processing"
        );
        let alice = readable(&store, &sample(), "alice").await;
        assert_eq!(alice.table("todos").len(), 1, "{url}");
        assert_eq!(alice.table("counters")[0]["value"], 1, "{url}");
        assert!(readable(&store, &sample(), "bob")
            .await
            .table("todos")
            .is_empty());
        // lastMutationID counts rejected mutations too.
        let ok = pull(&store, "alice", pull_request("c", None)).await;
        assert_eq!(ok.last_mutation_id_changes["c"], 8, "{url}");
    }
}

/// The first thing a fresh store (fresh connections) does is a mutator that
/// fails: still a `mutator_failed` rejection, and the push goes on.
#[tokio::test]
async fn a_failing_mutator_first_on_a_fresh_store_is_rejected_not_an_error() {
    let mut json = app_json();
    json["mutators"].as_array_mut().unwrap().push(json!({
        "name": "fail", "params": [{"name": "id", "type": "text"}],
        "sql": "INSERT INTO counters (id, value) VALUES (:id, 1), (:id, 2)"
    }));
    for url in store_urls().await {
        let store = open(&url, app_def(&json)).await;
        let request = push_request(
            "c",
            &[
                (1, "fail", json!({"id": "x"})),
                (2, "increment", json!({"id": "x", "by": 1})),
            ],
        );
        let r = results(&store, "u", &request).await;
        assert_eq!(codes(&r), ["mutator_failed", "ok"], "{url}: {r:?}");
    }
}

#[tokio::test]
async fn write_rules_check_the_row_before_and_after() {
    let mut json = app_json();
    json["mutators"].as_array_mut().unwrap().push(json!({
        "name": "giveAway", "params": [{"name": "id", "type": "text"}, {"name": "to", "type": "text"}],
        "sql": "UPDATE todos SET owner = :to WHERE id = :id"
    }));
    json["mutators"].as_array_mut().unwrap().push(json!({
        "name": "giveAndTakeBack", "params": [{"name": "id", "type": "text"}, {"name": "to", "type": "text"}],
        "sql": ["UPDATE todos SET owner = :to WHERE id = :id",
                "UPDATE todos SET owner = 'alice', title = 'back' WHERE id = :id"]
    }));
    let app = app_def(&json);
    for url in store_urls().await {
        let store = open(&url, app.clone()).await;
        let r = results(
            &store,
            "alice",
            &push_request("a", &[(1, "addTodo", todo("t1", "alice"))]),
        )
        .await;
        assert_eq!(codes(&r), ["ok"], "{url}");
        // bob may not touch alice's row (the old image fails the rule) …
        let r = results(
            &store,
            "bob",
            &push_request(
                "b",
                &[(1, "renameTodo", json!({"id": "t1", "title": "mine"}))],
            ),
        )
        .await;
        assert!(
            matches!(&r[0], MutationResult::Rejected { code: RejectionCode::Forbidden, message, .. } if message.contains("todos")),
            "{url}: {r:?}"
        );
        // … nor delete it …
        let r = results(
            &store,
            "bob",
            &push_request("b", &[(2, "deleteTodo", json!({"id": "t1"}))]),
        )
        .await;
        assert_eq!(codes(&r), ["forbidden"], "{url}");
        // … and alice may not give her row away (the new image fails it) …
        let r = results(
            &store,
            "alice",
            &push_request("a", &[(2, "giveAway", json!({"id": "t1", "to": "bob"}))]),
        )
        .await;
        assert_eq!(codes(&r), ["forbidden"], "{url}");
        // … but what counts is before and after the whole mutator.
        let r = results(
            &store,
            "alice",
            &push_request(
                "a",
                &[(3, "giveAndTakeBack", json!({"id": "t1", "to": "bob"}))],
            ),
        )
        .await;
        assert_eq!(codes(&r), ["ok"], "{url}");
        // A rejected mutator left nothing behind; the applied one did.
        let alice = readable(&store, &app, "alice").await;
        assert_eq!(alice.table("todos")[0]["title"], "back", "{url}");
        assert_eq!(alice.table("todos")[0]["owner"], "alice", "{url}");
        // Inserting a row for someone else is an "after" violation too.
        let r = results(
            &store,
            "bob",
            &push_request("b", &[(3, "addTodo", todo("t9", "alice"))]),
        )
        .await;
        assert_eq!(codes(&r), ["forbidden"], "{url}");
        assert_eq!(
            readable(&store, &app, "alice").await.table("todos").len(),
            1,
            "{url}"
        );
    }
}

#[tokio::test]
async fn a_gap_stops_the_batch() {
    for url in store_urls().await {
        let store = open(&url, sample()).await;
        let r = results(
            &store,
            "u",
            &push_request("c", &[(2, "increment", json!({"id": "c", "by": 1}))]),
        )
        .await;
        assert!(r.is_empty(), "{url}: {r:?}");
        assert!(store.mutation_log().await.unwrap().is_empty(), "{url}");
        // Processed ones before a gap are answered; the rest waits.
        let r = results(
            &store,
            "u",
            &push_request(
                "c",
                &[
                    (1, "increment", json!({"id": "c", "by": 1})),
                    (3, "increment", json!({"id": "c", "by": 1})),
                ],
            ),
        )
        .await;
        assert_eq!(codes(&r), ["ok"], "{url}");
        assert_eq!(store.version().await.unwrap(), 1, "{url}");
    }
}

/// A push longer than one Postgres transaction's share (32 mutations) is
/// processed whole, rejections included, and retried whole just as well.
#[tokio::test]
async fn a_long_push_is_processed_whole() {
    for url in store_urls().await {
        let store = open(&url, sample()).await;
        let mutations: Vec<(u64, &str, Json)> = (1..=100)
            .map(|id| match id % 25 {
                0 => (id, "increment", json!({"id": "n"})), // bad_arguments
                _ => (id, "increment", json!({"id": "n", "by": 1})),
            })
            .collect();
        let request = push_request("c", &mutations);
        let first = results(&store, "u", &request).await;
        assert_eq!(first.len(), 100, "{url}");
        let rejected: Vec<u64> = first
            .iter()
            .filter(|r| code(r) == "bad_arguments")
            .map(MutationResult::id)
            .collect();
        assert_eq!(rejected, [25, 50, 75, 100], "{url}");
        let again = results(&store, "u", &request).await;
        assert_eq!(
            codes(&again)
                .iter()
                .filter(|c| **c == "alreadyProcessed")
                .count(),
            96
        );
        assert_eq!(store.version().await.unwrap(), 100, "{url}");
        let state = readable(&store, &sample(), "u").await;
        assert_eq!(state.table("counters")[0]["value"], 96, "{url}");
        assert_eq!(store.mutation_log().await.unwrap().len(), 100, "{url}");
    }
}

#[tokio::test]
async fn pulls_send_only_readable_rows_and_tombstones_for_the_rest() {
    for url in store_urls().await {
        let store = open(&url, sample()).await;
        results(
            &store,
            "alice",
            &push_request(
                "a",
                &[
                    (1, "addTodo", todo("t1", "alice")),
                    (2, "increment", json!({"id": "n", "by": 1})),
                ],
            ),
        )
        .await;
        let first = pull(&store, "bob", pull_request("b", None)).await;
        assert_eq!(first.patch[0], PatchOp::Clear, "{url}");
        let tables: Vec<&str> = first.patch[1..]
            .iter()
            .map(|op| match op {
                PatchOp::Put { table, .. } => table.as_str(),
                _ => "?",
            })
            .collect();
        assert_eq!(
            tables,
            ["counters"],
            "{url}: bob sees the counter, not alice's todo"
        );
        assert!(first.last_mutation_id_changes.is_empty(), "{url}");
        assert_eq!(first.cookie, Cookie::Integer(2), "{url}");
        results(
            &store,
            "alice",
            &push_request(
                "a",
                &[
                    (3, "deleteTodo", json!({"id": "t1"})),
                    (4, "increment", json!({"id": "n", "by": 1})),
                ],
            ),
        )
        .await;
        let next = pull(&store, "bob", pull_request("b", Some(first.cookie.clone()))).await;
        assert!(
            next.patch.contains(&PatchOp::Del {
                table: "todos".into(),
                key: json!({"id": "t1"}).as_object().unwrap().clone()
            }),
            "{url}: {:?}",
            next.patch
        );
        assert!(next.patch.iter().any(
            |op| matches!(op, PatchOp::Put { table, row } if table == "counters" && row["value"] == 2)
        ));
        assert_eq!(
            next.cookie,
            Cookie::Integer(store.version().await.unwrap()),
            "{url}"
        );
        // Caught up: nothing more.
        let idle = pull(&store, "bob", pull_request("b", Some(next.cookie.clone()))).await;
        assert!(idle.patch.is_empty(), "{url}: {:?}", idle.patch);
        // alice's own pull reports her last mutation, only when it moved.
        let hers = pull(
            &store,
            "alice",
            pull_request("a", Some(first.cookie.clone())),
        )
        .await;
        assert_eq!(hers.last_mutation_id_changes["a"], 4, "{url}");
        let again = pull(&store, "alice", pull_request("a", Some(hers.cookie))).await;
        assert!(again.last_mutation_id_changes.is_empty(), "{url}");
    }
}

#[tokio::test]
async fn schema_versions_are_compared_on_every_exchange() {
    let mut app = sample();
    app.version = 2;
    for url in store_urls().await {
        let store = open(&url, app.clone()).await;
        let mut request = push_request("c", &[(1, "increment", json!({"id": "c", "by": 1}))]);
        let PushResponse::SchemaMismatch(m) = store.push("u", request.clone()).await.unwrap()
        else {
            panic!("{url}")
        };
        assert_eq!(
            (m.server_schema_version, m.action),
            (2, MismatchAction::UpdateApp)
        );
        request.schema_version = 3;
        let PushResponse::SchemaMismatch(m) = store.push("u", request).await.unwrap() else {
            panic!("{url}")
        };
        assert_eq!(m.action, MismatchAction::RetryLater, "{url}");
        let PullResponse::SchemaMismatch(m) =
            store.pull("u", pull_request("c", None)).await.unwrap()
        else {
            panic!("{url}")
        };
        assert_eq!(m.action, MismatchAction::UpdateApp, "{url}");
        assert!(store.mutation_log().await.unwrap().is_empty(), "{url}");
    }
}

#[tokio::test]
async fn unservable_cookies_get_a_reset() {
    for url in store_urls().await {
        let store = open(&url, sample()).await;
        results(
            &store,
            "u",
            &push_request("c", &[(1, "increment", json!({"id": "c", "by": 1}))]),
        )
        .await;
        let cookies = [
            Cookie::Integer(99),                           // from the future
            Cookie::Text("nonsense".into()),               // unparseable
            Cookie::Text("full:99:0:[]".into()),           // a cursor from the future
            Cookie::Text("full:1:9:[\"a\"]".into()),       // no such table
            Cookie::Text("full:1:0:[\"a\",\"b\"]".into()), // a key of the wrong length
            Cookie::Text("full:1:0:[1.5]".into()),         // a key of the wrong type
            // Found by the fuzz tests: a text key with a NUL failed the
            // Postgres query (500); no cursor the core writes holds one.
            Cookie::Text("full:1:0:[\"\\u0000\"]".into()),
        ];
        for cookie in cookies {
            let answer = store
                .pull("u", pull_request("c", Some(cookie.clone())))
                .await
                .unwrap();
            let PullResponse::SchemaMismatch(m) = answer else {
                panic!("{url}: {cookie:?} got {answer:?}")
            };
            assert_eq!(m.action, MismatchAction::ResetReplica, "{url}: {cookie:?}");
        }
    }
}

#[tokio::test]
async fn a_client_belongs_to_the_user_who_first_used_it() {
    for url in store_urls().await {
        let store = open(&url, sample()).await;
        results(
            &store,
            "alice",
            &push_request("a", &[(1, "increment", json!({"id": "c", "by": 1}))]),
        )
        .await;
        // bob can neither push as alice's client nor join its group …
        let forged = push_request("a", &[(2, "increment", json!({"id": "c", "by": 5}))]);
        let err = store.push("bob", forged).await.unwrap_err();
        assert!(matches!(err, StoreError::Forbidden(_)), "{url}: {err:?}");
        let mut joined = push_request("b", &[(1, "increment", json!({"id": "c", "by": 5}))]);
        joined.client_group_id = "a".into();
        let err = store.push("bob", joined).await.unwrap_err();
        assert!(matches!(err, StoreError::Forbidden(_)), "{url}: {err:?}");
        // … nor pull its lastMutationIDs.
        let mut pull_req = pull_request("b", None);
        pull_req.client_group_id = "a".into();
        let err = store.pull("bob", pull_req).await.unwrap_err();
        assert!(matches!(err, StoreError::Forbidden(_)), "{url}: {err:?}");
        // Nothing bob sent ran.
        let bob = readable(&store, &sample(), "bob").await;
        assert_eq!(bob.table("counters")[0]["value"], 1, "{url}");
        assert_eq!(store.mutation_log().await.unwrap().len(), 1, "{url}");
    }
}

#[tokio::test]
async fn reopening_keeps_state_adds_tables_and_refuses_changed_ones() {
    for url in store_urls().await {
        let first = open(&url, sample()).await;
        results(
            &first,
            "alice",
            &push_request("a", &[(1, "addTodo", todo("t1", "alice"))]),
        )
        .await;
        let cookie = pull(&first, "alice", pull_request("a", None)).await.cookie;
        drop(first);
        // A newer app that only adds a table: data and bookkeeping survive;
        // the retried push is recognised as processed.
        let mut json = app_json();
        json["version"] = json!(2);
        json["tables"].as_array_mut().unwrap().push(json!({
            "name": "notes", "columns": [{"name": "id", "type": "text"}],
            "primaryKey": ["id"], "access": {"read": "true", "write": "true"}
        }));
        json["mutators"].as_array_mut().unwrap().push(json!({
            "name": "addNote", "params": [{"name": "id", "type": "text"}],
            "sql": "INSERT INTO notes (id) VALUES (:id)"
        }));
        let app = app_def(&json);
        let second = open(&url, app.clone()).await;
        let mut retry = push_request(
            "a",
            &[
                (1, "addTodo", todo("t1", "alice")),
                (2, "addNote", json!({"id": "n1"})),
            ],
        );
        retry.schema_version = 2;
        assert_eq!(
            codes(&results(&second, "alice", &retry).await),
            ["alreadyProcessed", "ok"],
            "{url}"
        );
        let alice = readable(&second, &app, "alice").await;
        assert_eq!(alice.table("todos").len(), 1, "{url}");
        assert_eq!(alice.table("notes").len(), 1, "{url}");
        assert_eq!(second.version().await.unwrap(), 2, "{url}");
        let log = second.mutation_log().await.unwrap();
        assert_eq!(
            log.iter()
                .map(|m| (m.id, m.name.as_str(), m.outcome.as_str()))
                .collect::<Vec<_>>(),
            [(1, "addTodo", "ok"), (2, "addNote", "ok")],
            "{url}"
        );
        // The old cookie still works after the restart.
        let mut pull_req = pull_request("a", Some(cookie));
        pull_req.schema_version = 2;
        let PullResponse::Ok(next) = second.pull("alice", pull_req).await.unwrap() else {
            panic!("{url}")
        };
        assert_eq!(next.patch.len(), 1, "{url}: {:?}", next.patch);
        drop(second);
        // A column change cannot be migrated in place: refused, nothing touched.
        let mut changed = app_json();
        changed["tables"][0]["columns"][2]["type"] = json!("integer");
        let err = store::open(&url, app_def(&changed), options(100))
            .await
            .err()
            .unwrap();
        assert!(
            matches!(&err, StoreError::InvalidApp(m) if m.contains("`lists`")),
            "{url}: {err:?}"
        );
        let third = open(&url, app.clone()).await;
        assert_eq!(third.version().await.unwrap(), 2, "{url}");
    }
}

#[tokio::test]
async fn a_full_sync_pages_in_key_order_and_the_next_pull_catches_up() {
    let app = sample();
    for url in store_urls().await {
        let store = store::open(&url, app.clone(), options(3)).await.unwrap();
        let mut mutations = Vec::new();
        for i in 1..=5 {
            mutations.push(("addTodo", todo(&format!("t{i}"), "alice")));
        }
        for tag in ["a", "b", "c"] {
            mutations.push((
                "tagTodo",
                json!({"todoId": "t1", "tag": tag, "owner": "alice"}),
            ));
        }
        mutations.push((
            "tagTodo",
            json!({"todoId": "t2", "tag": "a", "owner": "alice"}),
        ));
        mutations.push(("addTodo", todo("bobs", "bob")));
        mutations.push(("increment", json!({"id": "n", "by": 3})));
        let numbered: Vec<(u64, &str, Json)> = mutations
            .iter()
            .enumerate()
            .map(|(i, (name, args))| (i as u64 + 1, *name, args.clone()))
            .collect();
        let r = results(&store, "alice", &push_request("a", &numbered)).await;
        let rejected: Vec<&str> = codes(&r).into_iter().filter(|c| *c != "ok").collect();
        assert_eq!(rejected, ["forbidden"], "{url}: bob's todo");
        // Page by page, no page over 3 rows, a cursor between pages.
        let mut replica = Replica::of(&app);
        let mut cookie = None;
        let mut pages = 0;
        let mut puts = 0;
        loop {
            let ok = pull(&store, "alice", pull_request("p", cookie.clone())).await;
            pages += 1;
            let page_puts = ok
                .patch
                .iter()
                .filter(|op| matches!(op, PatchOp::Put { .. }))
                .count();
            assert!(page_puts <= 3, "{url}: {page_puts}");
            assert_eq!(
                ok.patch.first() == Some(&PatchOp::Clear),
                pages == 1,
                "{url}"
            );
            puts += page_puts;
            replica.apply(&ok.patch);
            if pages == 1 {
                // Changes while paging: the next incremental pull brings them.
                results(
                    &store,
                    "alice",
                    &push_request(
                        "a",
                        &[
                            (12, "renameTodo", json!({"id": "t1", "title": "renamed"})),
                            (13, "deleteTodo", json!({"id": "t5"})),
                            (14, "addTodo", todo("t0", "alice")),
                        ],
                    ),
                )
                .await;
            }
            cookie = Some(ok.cookie.clone());
            if !ok.more {
                assert_eq!(
                    ok.cookie,
                    Cookie::Integer(11),
                    "{url}: the version it started at"
                );
                break;
            }
            assert!(
                matches!(&ok.cookie, Cookie::Text(c) if c.starts_with("full:11:")),
                "{url}: {:?}",
                ok.cookie
            );
        }
        assert!(pages >= 4, "{url}: {pages} pages");
        // 10 rows, less t5 (deleted after the first page); t0 (added then)
        // sorts before the cursor and comes with the next pull.
        assert_eq!(puts, 9, "{url}: rows");
        let ok = sync(&store, "alice", "p", &mut replica, cookie).await;
        assert_eq!(ok.cookie, Cookie::Integer(14), "{url}");
        assert_eq!(replica, readable(&store, &app, "alice").await, "{url}");
        assert_eq!(replica.table("todos").len(), 5, "{url}");
        assert_eq!(replica.table("todo_tags").len(), 4, "{url}");
        assert_eq!(
            replica.table("todos")[1]["title"],
            "renamed",
            "{url}: t1 after t0"
        );
    }
}

/// An app with every column type, to compare the stores value for value.
fn typed_app() -> AppDefinition {
    app_def(&json!({
        "version": 1,
        "tables": [{
            "name": "things",
            "columns": [
                {"name": "id", "type": "integer"},
                {"name": "owner", "type": "text"},
                {"name": "r", "type": "real"},
                {"name": "t", "type": "text"},
                {"name": "b", "type": "blob"},
                {"name": "f", "type": "boolean"},
                {"name": "j", "type": "json", "nullable": true},
                {"name": "n", "type": "integer", "nullable": true}
            ],
            "primaryKey": ["id"],
            "access": {"read": "owner = :user_id OR f", "write": "owner = :user_id"}
        }],
        "mutators": [
            {"name": "put", "params": [
                {"name": "id", "type": "integer"}, {"name": "owner", "type": "text"},
                {"name": "r", "type": "real"}, {"name": "t", "type": "text"},
                {"name": "b", "type": "blob"}, {"name": "f", "type": "boolean"},
                {"name": "j", "type": "json", "nullable": true},
                {"name": "n", "type": "integer", "nullable": true}],
             "sql": "INSERT INTO things (id, owner, r, t, b, f, j, n) VALUES (:id, :owner, :r, :t, :b, :f, :j, :n) \
                     ON CONFLICT (id) DO UPDATE SET r = excluded.r, t = excluded.t, b = excluded.b, f = excluded.f, j = excluded.j, n = excluded.n"},
            {"name": "flip", "params": [{"name": "id", "type": "integer"}],
             "sql": "UPDATE things SET f = NOT f WHERE id = :id"},
            {"name": "scale", "params": [{"name": "id", "type": "integer"}, {"name": "by", "type": "real"}],
             "sql": "UPDATE things SET r = r * :by, n = coalesce(n, 0) + 1 WHERE id = :id"},
            {"name": "hide", "params": [{"name": "id", "type": "integer"}],
             "sql": "UPDATE things SET f = false WHERE id = :id"},
            {"name": "move", "params": [{"name": "id", "type": "integer"}, {"name": "to", "type": "integer"}],
             "sql": "UPDATE things SET id = :to WHERE id = :id"},
            {"name": "drop", "params": [{"name": "id", "type": "integer"}],
             "sql": "DELETE FROM things WHERE id = :id"}
        ]
    }))
}

/// One script on SQLite and on Postgres: the same results, the same patches,
/// the same cookies (mutator_failed messages quote each engine's own error).
#[tokio::test]
async fn both_stores_answer_the_same_value_for_value() {
    let Some(admin) = postgres() else { return };
    let app = typed_app();
    let dir = std::env::temp_dir().join(format!("ferrydb-pg-diff-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("diff.db");
    let _ = std::fs::remove_file(&file);
    let sqlite = store::open(
        &format!("sqlite:{}", file.display()),
        app.clone(),
        options(2),
    )
    .await
    .unwrap();
    let pg = store::open(&fresh_database(&admin).await, app.clone(), options(2))
        .await
        .unwrap();
    let thing = |id: i64, f: bool, j: Json| {
        json!({"id": id, "owner": "alice", "r": 2.0, "t": "héllo \"wörld\" ✓", "b": [0, 1, 127, 128, 255],
               "f": f, "j": j, "n": null})
    };
    let script: Vec<(&str, &str, Json)> = vec![
        (
            "alice",
            "put",
            thing(
                1,
                true,
                json!({"a": [1, "x", null, {"b": true}], "z": 1.5, "big": 9007199254740991i64}),
            ),
        ),
        ("alice", "put", thing(2, false, json!("just a string"))),
        ("alice", "put", thing(3, true, Json::Null)),
        ("alice", "put", thing(-4, true, json!([]))),
        (
            "alice",
            "put",
            json!({"id": 5.0, "owner": "alice", "r": 7, "t": "", "b": [], "f": false, "n": -9007199254740991i64}),
        ),
        ("alice", "flip", json!({"id": 2})),
        ("alice", "scale", json!({"id": 1, "by": 0.1})),
        ("alice", "hide", json!({"id": 3})),
        ("alice", "drop", json!({"id": -4})),
        (
            "alice",
            "put",
            json!({"id": 6, "owner": "alice", "r": 1, "t": "x", "b": [256], "f": true}),
        ),
        (
            "alice",
            "put",
            json!({"id": 6, "owner": "alice", "r": 1, "t": "x", "b": [], "f": 1}),
        ),
        (
            "alice",
            "put",
            json!({"id": 1.5, "owner": "alice", "r": 1, "t": "x", "b": [], "f": true}),
        ),
        ("bob", "flip", json!({"id": 1})),
        // A key change: a tombstone for the old key, a row at the new one;
        // and the write rule holds for both images.
        ("alice", "move", json!({"id": 2, "to": 20})),
        ("bob", "move", json!({"id": 1, "to": 30})),
        ("alice", "move", json!({"id": 20, "to": 5})), // taken: mutator_failed
    ];
    let mut next_id: BTreeMap<&str, u64> = BTreeMap::new();
    let mut cookies: BTreeMap<&str, Option<Cookie>> = BTreeMap::new();
    for (step, (user, name, args)) in script.iter().enumerate() {
        let id = next_id.entry(user).or_insert(0);
        *id += 1;
        let request = push_request(user, &[(*id, name, args.clone())]);
        let a = results(&sqlite, user, &request).await;
        let b = results(&pg, user, &request).await;
        assert_eq!(codes(&a), codes(&b), "step {step}: {a:?} vs {b:?}");
        if code(&a[0]) != "mutator_failed" {
            assert_eq!(a, b, "step {step}");
        }
        // Both users pull after every step, incrementally and (paged) from
        // scratch: every answer must be the same.
        for reader in ["alice", "bob"] {
            let cookie = cookies.entry(reader).or_insert(None);
            loop {
                let request = pull_request(&format!("{reader}-reader"), cookie.clone());
                let a = sqlite.pull(reader, request.clone()).await.unwrap();
                let b = pg.pull(reader, request).await.unwrap();
                assert_eq!(a, b, "step {step}, {reader}");
                let PullResponse::Ok(ok) = a else { panic!() };
                *cookie = Some(ok.cookie);
                if !ok.more {
                    break;
                }
            }
            assert_eq!(
                readable(&sqlite, &app, reader).await,
                readable(&pg, &app, reader).await,
                "step {step}, {reader}"
            );
        }
    }
    let things = readable(&pg, &app, "alice").await;
    let one = *things
        .table("things")
        .iter()
        .find(|r| r["id"] == 1)
        .unwrap();
    assert_eq!(one["j"]["a"][3]["b"], json!(true));
    assert_eq!(one["b"], json!([0, 1, 127, 128, 255]));
    assert_eq!(one["n"], json!(1));
    let ids: Vec<&Json> = things.table("things").iter().map(|r| &r["id"]).collect();
    assert_eq!(
        ids,
        [&json!(1), &json!(20), &json!(3), &json!(5)],
        "in key text order; 6 was refused"
    );
    assert_eq!(
        sqlite.mutation_log().await.unwrap(),
        pg.mutation_log().await.unwrap()
    );
    std::fs::remove_dir_all(dir).unwrap();
}

// ------------------------------------------------------- Postgres only

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_through_one_instance_pokes_the_others() {
    let Some(admin) = postgres() else { return };
    let url = fresh_database(&admin).await;
    let a = instance(&url, sample()).await;
    let b = instance(&url, sample()).await;
    let mut at_a = a.pokes.subscribe();
    let mut at_b = b.pokes.subscribe();
    let r = results(
        store_of(&a),
        "u",
        &push_request("c", &[(1, "increment", json!({"id": "n", "by": 1}))]),
    )
    .await;
    assert_eq!(codes(&r), ["ok"]);
    assert!(
        poked(&mut at_b, 1, Duration::from_secs(5)).await,
        "instance B heard the push through A"
    );
    assert!(
        poked(&mut at_a, 1, Duration::from_secs(5)).await,
        "and so did A itself, once"
    );
    // Nothing processed (a retry): no poke.
    results(
        store_of(&a),
        "u",
        &push_request("c", &[(1, "increment", json!({"id": "n", "by": 1}))]),
    )
    .await;
    assert!(!poked(&mut at_b, 2, Duration::from_millis(300)).await);
    // B pulls what A committed the moment it is poked.
    let ok = pull(store_of(&b), "u", pull_request("c", None)).await;
    assert_eq!(ok.cookie, Cookie::Integer(1));
    assert_eq!(ok.last_mutation_id_changes["c"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_poke_listener_reconnects_when_its_connection_drops() {
    let Some(admin) = postgres() else { return };
    let url = fresh_database(&admin).await;
    let a = instance(&url, sample()).await;
    let b = instance(&url, sample()).await;
    let mut at_b = b.pokes.subscribe();
    let (killer, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let killed = killer
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = 'ferrydb-listen' AND datname = current_database()",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(killed.len(), 2, "one listener per instance");
    // Pushes through A reach B again once its listener is back.
    let mut heard = false;
    for id in 1..=40 {
        let request = push_request("c", &[(id, "increment", json!({"id": "n", "by": 1}))]);
        assert_eq!(codes(&results(store_of(&a), "u", &request).await), ["ok"]);
        if poked(&mut at_b, id as i64, Duration::from_millis(250)).await {
            heard = true;
            break;
        }
    }
    assert!(heard, "B's listener came back within 10 s");
}

/// Many clients push through two instances at once, with retries and
/// duplicates, while a replica pulls incrementally the whole time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pushes_through_two_instances_apply_every_mutation_once() {
    let Some(admin) = postgres() else { return };
    let url = fresh_database(&admin).await;
    let app = sample();
    let a = instance(&url, app.clone()).await;
    let b = instance(&url, app.clone()).await;
    const CLIENTS: u64 = 8;
    const PER_CLIENT: u64 = 30;
    let started = std::time::Instant::now();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The watcher: an incremental puller through B that must end up with
    // exactly what a full sync gives.
    let watcher = {
        let (b, app, done) = (b.clone(), app.clone(), done.clone());
        tokio::spawn(async move {
            let mut replica = Replica::of(&app);
            let mut cookie = None;
            let mut pulls = 0;
            loop {
                let finished = done.load(Ordering::SeqCst);
                let ok = sync(store_of(&b), "u0", "watcher", &mut replica, cookie.clone()).await;
                cookie = Some(ok.cookie);
                pulls += 1;
                if finished {
                    return (replica, pulls);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let pushers: Vec<JoinHandle<()>> = (0..CLIENTS)
        .map(|c| {
            let instances = [a.clone(), b.clone()];
            tokio::spawn(async move {
                let user = format!("u{}", c % 4);
                let client = format!("client{c}");
                let mutation = |id: u64| -> (u64, &'static str, Json) {
                    if id.is_multiple_of(2) {
                        (id, "increment", json!({"id": "shared", "by": 1}))
                    } else {
                        (
                            id,
                            "addTodo",
                            json!({"id": format!("{client}-{id}"), "listId": "l",
                                                "owner": user, "title": "t"}),
                        )
                    }
                };
                let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ (c + 1);
                let mut random = move |n: u64| {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    rng % n
                };
                let mut confirmed = 0;
                let mut push = 0;
                while confirmed < PER_CLIENT {
                    // Sometimes resend from before what was confirmed (a lost reply).
                    let from = confirmed + 1 - random(confirmed.min(3) + 1);
                    let to = (confirmed + 1 + random(5)).min(PER_CLIENT);
                    let batch: Vec<_> = (from..=to).map(&mutation).collect();
                    let request = push_request(&client, &batch);
                    let first = (push % 2) as usize;
                    push += 1;
                    // Every third push goes to both instances at once (a
                    // retry racing the original): each new mutation must be
                    // `ok` in exactly one of the two replies.
                    let replies = if random(3) == 0 {
                        let (x, y) = tokio::join!(
                            results(store_of(&instances[0]), &user, &request),
                            results(store_of(&instances[1]), &user, &request)
                        );
                        vec![x, y]
                    } else {
                        vec![results(store_of(&instances[first]), &user, &request).await]
                    };
                    for r in &replies {
                        assert_eq!(r.len(), batch.len(), "no gaps in these batches");
                    }
                    for (i, (id, _, _)) in batch.iter().enumerate() {
                        let got: Vec<&str> = replies.iter().map(|r| code(&r[i])).collect();
                        assert!(replies.iter().all(|r| r[i].id() == *id));
                        let oks = got.iter().filter(|c| **c == "ok").count();
                        let expected = usize::from(*id > confirmed);
                        assert_eq!(oks, expected, "{client} mutation {id}: {got:?}");
                        assert!(got.iter().all(|c| *c == "ok" || *c == "alreadyProcessed"));
                    }
                    confirmed = to;
                }
            })
        })
        .collect();
    for pusher in pushers {
        pusher.await.unwrap();
    }
    let elapsed = started.elapsed();
    done.store(true, Ordering::SeqCst);
    let (watched, pulls) = watcher.await.unwrap();
    let total = CLIENTS * PER_CLIENT;
    eprintln!(
        "{total} mutations from {CLIENTS} clients through 2 instances in {elapsed:?} \
         ({:.0}/s, with retries), watcher pulled {pulls} times",
        total as f64 / elapsed.as_secs_f64()
    );
    // Every mutation exactly once, each with its own version.
    let log = store_of(&a).mutation_log().await.unwrap();
    assert_eq!(log.len() as u64, total);
    let once: BTreeSet<(String, u64)> = log.iter().map(|m| (m.client_id.clone(), m.id)).collect();
    assert_eq!(once.len() as u64, total);
    assert!(log.iter().all(|m| m.outcome == "ok"));
    assert_eq!(store_of(&b).version().await.unwrap(), total as i64);
    // A client's mutations were processed in its order.
    for c in 0..CLIENTS {
        let ids: Vec<u64> = log
            .iter()
            .filter(|m| m.client_id == format!("client{c}"))
            .map(|m| m.id)
            .collect();
        assert_eq!(ids, (1..=PER_CLIENT).collect::<Vec<_>>());
    }
    // The state is complete, and the incremental watcher missed nothing.
    let full = readable(store_of(&a), &app, "u0").await;
    assert_eq!(
        full.table("counters")[0]["value"],
        json!(CLIENTS * PER_CLIENT / 2)
    );
    assert_eq!(
        full.table("todos").len() as u64,
        2 * PER_CLIENT / 2,
        "u0 owns clients 0 and 4"
    );
    assert_eq!(watched, full);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_opening_a_new_database_together_both_start() {
    let Some(admin) = postgres() else { return };
    let url = fresh_database(&admin).await;
    let (a, b, c) = tokio::join!(
        store::open(&url, sample(), options(100)),
        store::open(&url, sample(), options(100)),
        store::open(&url, sample(), options(100)),
    );
    let (a, b, _c) = (a.unwrap(), b.unwrap(), c.unwrap());
    results(
        &a,
        "u",
        &push_request("c", &[(1, "increment", json!({"id": "n", "by": 1}))]),
    )
    .await;
    assert_eq!(b.version().await.unwrap(), 1);
}

/// An operator's write in psql (outside any push) gets a version of its own
/// and a poke, so clients pull it; TRUNCATE, which would leave no
/// tombstones, is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_outside_pushes_reach_clients_and_truncate_is_refused() {
    let Some(admin) = postgres() else { return };
    let url = fresh_database(&admin).await;
    let state = instance(&url, sample()).await;
    let store = store_of(&state);
    let request = push_request(
        "c",
        &[
            (1, "increment", json!({"id": "n", "by": 1})),
            (2, "increment", json!({"id": "m", "by": 1})),
        ],
    );
    results(store, "u", &request).await;
    let caught_up = pull(store, "u", pull_request("c", None)).await;
    let mut pokes = state.pokes.subscribe();
    let (psql, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    psql.batch_execute(
        "UPDATE counters SET value = 42 WHERE id = 'n'; DELETE FROM counters WHERE id = 'm'",
    )
    .await
    .unwrap();
    assert!(poked(&mut pokes, 3, Duration::from_secs(5)).await);
    let next = pull(store, "u", pull_request("c", Some(caught_up.cookie))).await;
    assert_eq!(next.cookie, Cookie::Integer(4), "one version per statement");
    assert_eq!(
        next.patch,
        [
            PatchOp::Put {
                table: "counters".into(),
                row: json!({"id": "n", "value": 42}).as_object().unwrap().clone()
            },
            PatchOp::Del {
                table: "counters".into(),
                key: json!({"id": "m"}).as_object().unwrap().clone()
            }
        ]
    );
    let err = psql.batch_execute("TRUNCATE counters").await.unwrap_err();
    assert!(
        err.as_db_error()
            .unwrap()
            .message()
            .contains("not TRUNCATE"),
        "{err}"
    );
    // Pushes after the manual writes carry on from there.
    let request = push_request("c", &[(3, "increment", json!({"id": "n", "by": 1}))]);
    assert_eq!(codes(&results(store, "u", &request).await), ["ok"]);
    assert_eq!(store.version().await.unwrap(), 5);
    assert!(store.mutation_log().await.unwrap().len() == 3);
}

/// Pushes queue behind the version lock (held here by an operator's
/// transaction); pulls still answer at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_are_served_while_pushes_wait_for_the_version_lock() {
    let Some(admin) = postgres() else { return };
    let url = fresh_database(&admin).await;
    let state = instance(&url, sample()).await;
    let (mut psql, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let holder = psql.transaction().await.unwrap();
    holder
        .execute("SELECT value FROM _ferry_version FOR UPDATE", &[])
        .await
        .unwrap();
    let pushes: Vec<JoinHandle<Vec<MutationResult>>> = (0..24)
        .map(|c| {
            let state = state.clone();
            tokio::spawn(async move {
                let request = push_request(
                    &format!("c{c}"),
                    &[(1, "increment", json!({"id": "n", "by": 1}))],
                );
                results(store_of(&state), "u", &request).await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..5 {
        let pulled = tokio::time::timeout(
            Duration::from_secs(3),
            store_of(&state).pull("u", pull_request(&format!("reader{i}"), None)),
        )
        .await
        .expect("a pull while 24 pushes wait")
        .unwrap();
        assert!(matches!(pulled, PullResponse::Ok(_)));
    }
    assert!(
        pushes.iter().all(|p| !p.is_finished()),
        "the pushes are still waiting"
    );
    holder.commit().await.unwrap();
    for push in pushes {
        assert_eq!(codes(&push.await.unwrap()), ["ok"]);
    }
    assert_eq!(store_of(&state).version().await.unwrap(), 24);
}

#[tokio::test]
async fn a_mutator_that_does_not_run_on_postgres_is_refused_at_open() {
    let Some(admin) = postgres() else { return };
    let mut json = app_json();
    json["mutators"].as_array_mut().unwrap().push(json!({
        "name": "bump", "params": [{"name": "id", "type": "text"}],
        "sql": "UPDATE counters SET value = ifnull(value, 0) + 1 WHERE id = :id"
    }));
    let url = fresh_database(&admin).await;
    let err = store::open(&url, app_def(&json), options(100))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(&err, StoreError::InvalidApp(m) if m.contains("mutator `bump`")),
        "{err:?}"
    );
}

/// A TCP proxy in front of the test's Postgres that can be cut and restored.
struct Proxy {
    addr: SocketAddr,
    target: SocketAddr,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = Proxy {
            addr: listener.local_addr().unwrap(),
            target,
            tasks: Arc::default(),
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&self, listener: TcpListener) {
        let (target, tasks) = (self.target, self.tasks.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let pipe = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tasks.lock().unwrap().push(pipe);
            }
        });
        self.tasks.lock().unwrap().push(accept);
    }

    /// Drops every connection and stops accepting: the database is "down".
    async fn cut(&self) {
        let tasks: Vec<JoinHandle<()>> = self.tasks.lock().unwrap().drain(..).collect();
        for task in tasks {
            task.abort();
            // Returns once the task (and its sockets) are gone.
            let _ = task.await;
        }
    }

    async fn restore(&self) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }

    /// `url` with its host and port replaced by the proxy's.
    fn url(&self, url: &str) -> String {
        let authority = url.find("://").unwrap() + 3;
        let end = authority + url[authority..].find('/').unwrap();
        let host = authority + url[authority..end].find('@').map_or(0, |i| i + 1);
        format!("{}{}{}", &url[..host], self.addr, &url[end..])
    }
}

fn target(admin: &str) -> SocketAddr {
    let config: tokio_postgres::Config = admin.parse().unwrap();
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(host) => host.clone(),
        other => panic!("the test Postgres must be on TCP, not {other:?}"),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let host = if host == "localhost" {
        "127.0.0.1".into()
    } else {
        host
    };
    format!("{host}:{port}").parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_goes_away_is_unavailable_until_it_is_back() {
    let Some(admin) = postgres() else { return };
    let proxy = Proxy::start(target(&admin)).await;
    let url = proxy.url(&fresh_database(&admin).await);
    let state = instance(&url, sample()).await;
    let store = store_of(&state);
    let mut pokes = state.pokes.subscribe();
    results(
        store,
        "u",
        &push_request("c", &[(1, "increment", json!({"id": "n", "by": 1}))]),
    )
    .await;
    proxy.cut().await;
    let push = store
        .push(
            "u",
            push_request("c", &[(2, "increment", json!({"id": "n", "by": 1}))]),
        )
        .await;
    assert!(matches!(push, Err(StoreError::Unavailable(_))), "{push:?}");
    let pulled = store.pull("u", pull_request("c", None)).await;
    assert!(
        matches!(pulled, Err(StoreError::Unavailable(_))),
        "{pulled:?}"
    );
    assert!(matches!(
        store.version().await,
        Err(StoreError::Unavailable(_))
    ));
    proxy.restore().await;
    // The next request gets a fresh connection; mutation 2 was not applied
    // by the failed push, so it is applied now, once.
    let mut answer = None;
    for _ in 0..20 {
        let push = store
            .push(
                "u",
                push_request("c", &[(2, "increment", json!({"id": "n", "by": 1}))]),
            )
            .await;
        match push {
            Ok(PushResponse::Ok { results }) => {
                answer = Some(results);
                break;
            }
            Ok(other) => panic!("{other:?}"),
            Err(StoreError::Unavailable(_)) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(codes(&answer.expect("back within 2 s")), ["ok"]);
    assert_eq!(
        readable(store, &sample(), "u").await.table("counters")[0]["value"],
        2
    );
    // The listener reconnected too: pokes flow again.
    assert!(
        poked(&mut pokes, 2, Duration::from_secs(10)).await,
        "a poke after the outage"
    );
    // A store that cannot reach its database at all does not open.
    proxy.cut().await;
    let err = store::open(&url, sample(), options(100))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
}

/// The URL of the TLS-only cluster (`scripts/postgres.sh start --tls`), or
/// `None` (skipped; under CI that is a failure).
fn postgres_tls() -> Option<String> {
    match std::env::var("FERRYDB_TEST_POSTGRES_TLS_URL") {
        Ok(url) => Some(url),
        Err(_) if std::env::var_os("CI").is_some() => {
            panic!("CI: FERRYDB_TEST_POSTGRES_TLS_URL is not set, so TLS to Postgres would go untested")
        }
        Err(_) => {
            eprintln!("skipped: FERRYDB_TEST_POSTGRES_TLS_URL is not set");
            None
        }
    }
}

#[tokio::test]
async fn tls_to_postgres_verifies_the_certificate_and_plaintext_is_not_used() {
    let Some(url) = postgres_tls() else { return };
    // The cluster takes only TLS, so a store that opens and syncs used it,
    // verified against the CA the URL names (`sslrootcert`).
    let store = open(&url, sample()).await;
    let request = push_request("c", &[(1, "increment", json!({"id": "n", "by": 1}))]);
    assert_eq!(codes(&results(&store, "u", &request).await), ["ok"]);
    assert_eq!(
        readable(&store, &sample(), "u").await.table("counters")[0]["value"],
        1
    );
    drop(store);

    // Without that CA, Mozilla's roots do not vouch for the server: refused,
    // and the error says it is the certificate.
    let (without_ca, _) = url.split_once("&sslrootcert=").unwrap();
    let err = store::open(without_ca, sample(), options(100))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(&err, StoreError::Unavailable(m) if m.contains("certificate")),
        "{err:?}"
    );

    // Asking for no TLS gets no connection from a server that requires it.
    let plain = without_ca.replace("sslmode=require", "sslmode=disable");
    let err = store::open(&plain, sample(), options(100))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(&err, StoreError::Unavailable(m) if m.contains("pg_hba")),
        "{err:?}"
    );
}
