//! Schema evolution and rolling deploys, on every store of
//! `common::store_urls()`: a server restarted on a new app definition keeps
//! its data and applies additive changes itself; clients of the previous
//! version keep syncing (their columns, their mutators); a breaking change
//! is refused until `ferrydb-server migrate --apply` applies it; a changed
//! read rule is applied to rows clients already hold; the same over HTTP;
//! and two instances on one Postgres database, one on each version, serve
//! clients of both (a rolling deploy).

mod common;

use common::*;
use ferrydb_protocol::{
    AppDefinition, Cookie, MismatchAction, Mutation, MutationResult, PatchOp, PullRequest,
    PullResponse, PushRequest, PushResponse, Row, PROTOCOL_VERSION,
};
use ferrydb_server::store::{self, Pokes, Store, StoreError, StoreOptions};
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

async fn open(url: &str, app: &AppDefinition) -> Result<Store, StoreError> {
    let options = StoreOptions {
        page_size: 2,
        pokes: Pokes::new(),
    };
    store::open(url, app.clone(), options).await
}

/// Version 2 of the sample app: a new nullable column on `lists`, a new
/// table, a mutator that writes both, and `createList` unchanged.
fn v2() -> AppDefinition {
    let mut json = app_json();
    json["version"] = json!(2);
    json["tables"][0]["columns"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "color", "type": "text", "nullable": true}));
    json["tables"].as_array_mut().unwrap().push(json!({
        "name": "notes", "columns": [{"name": "id", "type": "text"}, {"name": "body", "type": "text", "nullable": true}],
        "primaryKey": ["id"], "access": {"read": "true", "write": "true"}
    }));
    let mutators = json["mutators"].as_array_mut().unwrap();
    mutators.push(json!({
        "name": "paintList", "params": [{"name": "id", "type": "text"}, {"name": "color", "type": "text"}],
        "sql": ["UPDATE lists SET color = :color WHERE id = :id", "INSERT INTO notes (id, body) VALUES (:id, :color)"]
    }));
    app_def(&json)
}

/// A client of one schema version: pushes its mutations in order and keeps
/// a replica from its pulls.
struct Client {
    user: &'static str,
    id: &'static str,
    version: u32,
    next: u64,
    cookie: Option<Cookie>,
    rows: BTreeMap<(String, String), Row>,
}

impl Client {
    fn new(user: &'static str, id: &'static str, version: u32) -> Client {
        Client {
            user,
            id,
            version,
            next: 1,
            cookie: None,
            rows: BTreeMap::new(),
        }
    }

    async fn push(&mut self, store: &Store, name: &str, args: Json) -> PushResponse {
        let request = PushRequest {
            protocol_version: PROTOCOL_VERSION,
            schema_version: self.version,
            client_group_id: self.id.into(),
            client_id: self.id.into(),
            mutations: vec![Mutation {
                id: self.next,
                name: name.into(),
                args,
                timestamp: 0,
            }],
        };
        let response = store.push(self.user, request).await.unwrap();
        if matches!(&response, PushResponse::Ok { .. }) {
            self.next += 1;
        }
        response
    }

    /// Pushes one mutation the server must apply.
    async fn apply(&mut self, store: &Store, name: &str, args: Json) {
        let response = self.push(store, name, args).await;
        assert!(
            matches!(&response, PushResponse::Ok { results } if matches!(results[..], [MutationResult::Ok { .. }])),
            "{}: {response:?}",
            self.id
        );
    }

    async fn pull_once(&mut self, store: &Store) -> PullResponse {
        let request = PullRequest {
            protocol_version: PROTOCOL_VERSION,
            schema_version: self.version,
            client_group_id: self.id.into(),
            client_id: self.id.into(),
            cookie: self.cookie.clone(),
            subscriptions: None,
        };
        store.pull(self.user, request).await.unwrap()
    }

    /// Pulls until caught up.
    async fn sync(&mut self, store: &Store) {
        loop {
            let PullResponse::Ok(ok) = self.pull_once(store).await else {
                panic!("{}: not served", self.id);
            };
            for op in &ok.patch {
                match op {
                    PatchOp::Clear => self.rows.clear(),
                    PatchOp::Put { table, row } => {
                        self.rows.insert((table.clone(), id(row)), row.clone());
                    }
                    PatchOp::Del { table, key } => {
                        self.rows.remove(&(table.clone(), id(key)));
                    }
                }
            }
            self.cookie = Some(ok.cookie);
            if !ok.more {
                return;
            }
        }
    }

    fn row(&self, table: &str, id: &str) -> Json {
        Json::Object(self.rows[&(table.to_owned(), id.to_owned())].clone())
    }

    fn has(&self, table: &str, id: &str) -> bool {
        self.rows.contains_key(&(table.to_owned(), id.to_owned()))
    }
}

/// The key of a row of the tables used here (all keyed by `id`).
fn id(row: &Row) -> String {
    row["id"].as_str().unwrap().to_owned()
}

fn list(id: &str, name: &str) -> Json {
    json!({"id": id, "owner": "alice", "name": name})
}

fn mismatch(response: PullResponse) -> MismatchAction {
    match response {
        PullResponse::SchemaMismatch(m) => m.action,
        other => panic!("served: {other:?}"),
    }
}

/// A v1 server on `url` that ran list `l1` and `more` of a v1 client,
/// which synced and is returned; the server is gone.
async fn served_on_v1(url: &str, more: &[(&str, Json)]) -> Client {
    let first = open(url, &app_def(&app_json())).await.unwrap();
    let mut old = Client::new("alice", "old", 1);
    old.apply(&first, "createList", list("l1", "groceries"))
        .await;
    for (name, args) in more {
        old.apply(&first, name, args.clone()).await;
    }
    old.sync(&first).await;
    old
}

#[tokio::test]
async fn an_additive_change_is_applied_on_start_and_clients_of_both_versions_sync() {
    for url in store_urls().await {
        let mut old = served_on_v1(&url, &[]).await;

        let store = open(&url, &v2()).await.unwrap();
        // The v1 client is still served, from its cookie, and its
        // mutator still runs.
        old.apply(&store, "createList", list("l2", "books")).await;
        old.sync(&store).await;
        assert_eq!(
            old.row("lists", "l2"),
            json!({"id": "l2", "owner": "alice", "name": "books"}),
            "{url}"
        );
        // A v2 client gets the data kept, with the new column.
        let mut new = Client::new("alice", "new", 2);
        new.sync(&store).await;
        assert_eq!(new.row("lists", "l1")["color"], Json::Null, "{url}");
        new.apply(&store, "paintList", json!({"id": "l1", "color": "red"}))
            .await;
        new.sync(&store).await;
        assert_eq!(new.row("lists", "l1")["color"], "red", "{url}");
        assert_eq!(new.row("notes", "l1")["body"], "red", "{url}");
        // The v1 client hears of the change in the columns it knows, and
        // of no table it does not know.
        old.sync(&store).await;
        assert_eq!(
            old.row("lists", "l1"),
            json!({"id": "l1", "owner": "alice", "name": "groceries"}),
            "{url}"
        );
        assert!(!old.has("notes", "l1"), "{url}");
        // A full sync of a v1 client, paged, has v1's columns only.
        let mut fresh = Client::new("alice", "fresh", 1);
        fresh.sync(&store).await;
        assert_eq!(fresh.rows, old.rows, "{url}");
        // A v2 mutator is not a v1 client's.
        let response = old
            .push(&store, "paintList", json!({"id": "l1", "color": "blue"}))
            .await;
        assert!(
            matches!(&response, PushResponse::Ok { results } if matches!(&results[..], [MutationResult::Rejected { .. }])),
            "{url}: {response:?}"
        );
        // A client newer than the server waits for the deploy.
        let mut newer = Client::new("alice", "newer", 3);
        assert_eq!(
            mismatch(newer.pull_once(&store).await),
            MismatchAction::RetryLater,
            "{url}"
        );
        drop(store);
        // The deploy rolled back: v1 starts on the database as v2 left it,
        // changing nothing, and its clients sync on.
        let store = open(&url, &app_def(&app_json())).await.unwrap();
        old.apply(&store, "renameList", json!({"id": "l1", "name": "food"}))
            .await;
        old.sync(&store).await;
        assert_eq!(old.row("lists", "l1")["name"], "food", "{url}");
        drop(store);
        // Started again on v2: nothing left to change, both still served,
        // the value v2 wrote kept.
        let store = open(&url, &v2()).await.unwrap();
        old.sync(&store).await;
        new.sync(&store).await;
        assert_eq!(new.row("lists", "l2")["name"], "books", "{url}");
        assert_eq!(new.row("lists", "l1")["name"], "food", "{url}");
        assert_eq!(new.row("lists", "l1")["color"], "red", "{url}");
    }
}

/// Writes `app` to a file of `dir` and runs `ferrydb-server migrate` with
/// it (off the test's runtime, which keeps driving the connections of the
/// stores the test dropped).
async fn migrate(dir: &Path, url: &str, app: &AppDefinition, how: &str) -> (bool, String) {
    let file = dir.join(format!("app-{}.json", app.version));
    std::fs::write(&file, serde_json::to_string(app).unwrap()).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_ferrydb-server"));
    command
        .args(["migrate", how, "--app"])
        .arg(&file)
        .args(["--store", url]);
    let out = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test]
async fn a_breaking_change_is_refused_on_start_then_applied_by_migrate() {
    let dir = std::env::temp_dir().join(format!("ferrydb-schema-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for url in store_urls().await {
        let v1 = app_def(&app_json());
        let mut old = served_on_v1(&url, &[("increment", json!({"id": "c", "by": 2}))]).await;
        // v2 drops `lists.name` and the `counters` table.
        let mut json = app_json();
        json["version"] = json!(2);
        let lists = json["tables"][0]["columns"].as_array_mut().unwrap();
        lists.retain(|c| c["name"] != "name");
        json["tables"]
            .as_array_mut()
            .unwrap()
            .retain(|t| t["name"] != "counters");
        json["mutators"] = json!([{
            "name": "createList", "params": [{"name": "id", "type": "text"}, {"name": "owner", "type": "text"}],
            "sql": "INSERT INTO lists (id, owner) VALUES (:id, :owner)"
        }]);
        let v2 = app_def(&json);
        let Err(StoreError::InvalidApp(refusal)) = open(&url, &v2).await else {
            panic!("{url}: a breaking change was applied on start");
        };
        for part in [
            "column `lists.name` was dropped",
            "drop table `counters`",
            "ferrydb-server migrate --plan",
            "ferrydb-server migrate --apply",
        ] {
            assert!(refusal.contains(part), "{url}: {refusal}");
        }
        // The plan changes nothing: v1 still starts and serves.
        let (ok, plan) = migrate(&dir, &url, &v2, "--plan").await;
        assert!(ok, "{url}: {plan}");
        assert!(plan.contains("BREAKING: rebuild `lists`"), "{plan}");
        assert!(plan.contains("BREAKING: drop table `counters`"), "{plan}");
        assert!(plan.contains("nothing changed"), "{plan}");
        let store = open(&url, &v1).await.unwrap();
        old.sync(&store).await;
        drop(store);
        // Applied: the rows of `lists` are kept without `name`.
        let (ok, applied) = migrate(&dir, &url, &v2, "--apply").await;
        assert!(ok, "{url}: {applied}");
        assert!(applied.contains("applied"), "{applied}");
        let store = open(&url, &v2).await.unwrap();
        let mut new = Client::new("alice", "new", 2);
        new.sync(&store).await;
        assert_eq!(
            new.row("lists", "l1"),
            json!({"id": "l1", "owner": "alice"}),
            "{url}"
        );
        new.apply(&store, "createList", json!({"id": "l2", "owner": "alice"}))
            .await;
        // A v1 client cannot be served any more: it updates its app.
        assert_eq!(
            mismatch(old.pull_once(&store).await),
            MismatchAction::UpdateApp,
            "{url}"
        );
        // Nothing is left to migrate.
        let (ok, again) = migrate(&dir, &url, &v2, "--plan").await;
        assert!(ok && again.contains("nothing to change"), "{url}: {again}");
    }
}

#[tokio::test]
async fn a_rolling_deploy_serves_clients_of_both_versions_from_one_postgres() {
    let urls: Vec<String> = store_urls()
        .await
        .into_iter()
        .filter(|url| url.starts_with("postgres"))
        .collect();
    if urls.is_empty() {
        eprintln!("skipped: FERRYDB_TEST_POSTGRES_URL is not set");
    }
    for url in urls {
        let v1 = app_def(&app_json());
        let old_instance = open(&url, &v1).await.unwrap();
        let mut old = Client::new("alice", "old", 1);
        old.apply(&old_instance, "createList", list("l1", "groceries"))
            .await;
        let two = v2();
        // Two v2 instances start together while the v1 one serves: the
        // change is applied once, under the lock.
        let (new_instance, other) = tokio::join!(open(&url, &two), open(&url, &two));
        let (new_instance, _other) = (new_instance.unwrap(), other.unwrap());
        // v1 clients keep syncing through either instance.
        old.apply(&old_instance, "createList", list("l2", "books"))
            .await;
        old.apply(
            &new_instance,
            "renameList",
            json!({"id": "l1", "name": "food"}),
        )
        .await;
        let mut new = Client::new("alice", "new", 2);
        new.apply(
            &new_instance,
            "paintList",
            json!({"id": "l2", "color": "red"}),
        )
        .await;
        old.sync(&old_instance).await;
        old.sync(&new_instance).await;
        new.sync(&new_instance).await;
        assert_eq!(old.row("lists", "l1")["name"], "food", "{url}");
        assert_eq!(
            old.row("lists", "l2"),
            json!({"id": "l2", "owner": "alice", "name": "books"}),
            "{url}"
        );
        assert_eq!(new.row("lists", "l1")["name"], "food", "{url}");
        assert_eq!(new.row("lists", "l2")["color"], "red", "{url}");
        // The v1 instance waits v2 clients out until the deploy reaches it.
        let mut early = Client::new("alice", "early", 2);
        assert_eq!(
            mismatch(early.pull_once(&old_instance).await),
            MismatchAction::RetryLater,
            "{url}"
        );
        // The v1 instance's write rule still sees rows the v2 one widened.
        let response = old
            .push(
                &old_instance,
                "renameList",
                json!({"id": "l2", "name": "mine"}),
            )
            .await;
        assert!(
            matches!(&response, PushResponse::Ok { results } if matches!(results[..], [MutationResult::Ok { .. }])),
            "{url}: {response:?}"
        );
        new.sync(&new_instance).await;
        assert_eq!(new.row("lists", "l2")["name"], "mine", "{url}");
        assert_eq!(new.row("lists", "l2")["color"], "red", "{url}");
        // A v1 instance (re)starting mid-deploy starts on the database as
        // the v2 ones left it.
        drop(old_instance);
        let restarted = open(&url, &v1).await.unwrap();
        let mut late = Client::new("alice", "late", 1);
        late.sync(&restarted).await;
        old.sync(&restarted).await;
        assert_eq!(late.rows, old.rows, "{url}");
        assert_eq!(late.row("lists", "l2")["name"], "mine", "{url}");
    }
}

#[tokio::test]
async fn a_changed_read_rule_sends_every_row_again_to_be_judged() {
    for url in store_urls().await {
        let mut old = served_on_v1(&url, &[("increment", json!({"id": "c", "by": 1}))]).await;
        assert!(old.has("counters", "c"), "{url}");
        let mut json = app_json();
        json["version"] = json!(2);
        // New rules for `lists`, and for `counters` with a new column.
        json["tables"][0]["access"]["read"] = json!("owner = :user_id AND name <> 'groceries'");
        json["tables"][3]["access"]["read"] = json!("id <> 'c'");
        json["tables"][3]["columns"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "note", "type": "text", "nullable": true}));
        let store = open(&url, &app_def(&json)).await.unwrap();
        // The v1 client's cookie predates the rules: its next pull brings
        // every row again, and the rows it may no longer read go.
        old.sync(&store).await;
        assert!(!old.has("counters", "c"), "{url}");
        assert!(!old.has("lists", "l1"), "{url}");
    }
}

/// The same over HTTP, as a deployed client sees it: a v2 server answers a
/// v1 client's pull with v1's columns and runs its push; a v3 client waits.
#[tokio::test]
async fn over_http_a_server_serves_the_previous_version_and_waits_out_the_next() {
    for url in store_urls().await {
        drop(served_on_v1(&url, &[]).await);
        let server = server(&url, v2(), ferrydb_server::Config::default()).await;
        let push = push_body("c1", &[(1, "createList", list("l2", "books"))]);
        let reply = server.post("/sync/push", "alice", &push).await;
        assert_eq!(codes(&reply), ["ok"], "{url}");
        let reply = server
            .post("/sync/pull", "alice", &pull_body("c1", Json::Null))
            .await;
        let rows: Vec<&Json> = reply.body["patch"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|op| op["table"] == "lists")
            .map(|op| &op["row"])
            .collect();
        assert_eq!(
            rows,
            [
                &json!({"id": "l1", "owner": "alice", "name": "groceries"}),
                &json!({"id": "l2", "owner": "alice", "name": "books"})
            ],
            "{url}: {}",
            reply.body
        );
        let mut newer = pull_body("c3", Json::Null);
        newer["schemaVersion"] = json!(3);
        let reply = server.post("/sync/pull", "alice", &newer).await;
        assert_eq!(
            reply.body,
            json!({"type": "schemaMismatch", "serverSchemaVersion": 2, "action": "retryLater"}),
            "{url}"
        );
    }
}

/// Rows sent again by a schema change are poked to the clients of every
/// instance on the database, not only pulled on their next chance.
#[tokio::test]
async fn a_schema_change_that_sends_rows_again_pokes_every_instance() {
    for url in store_urls().await {
        if !url.starts_with("postgres") {
            continue;
        }
        let pokes = Pokes::new();
        let mut heard = pokes.subscribe();
        let options = StoreOptions {
            page_size: 2,
            pokes,
        };
        let running = store::open(&url, app_def(&app_json()), options)
            .await
            .unwrap();
        let mut json = app_json();
        json["version"] = json!(2);
        json["tables"][3]["access"]["read"] = json!("id <> 'c'");
        let _new = open(&url, &app_def(&json)).await.unwrap();
        assert_eq!(
            heard.recv().await.unwrap(),
            running.version().await.unwrap(),
            "{url}"
        );
    }
}
