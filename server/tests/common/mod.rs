//! Shared pieces of the server's HTTP tests: a server per store under test,
//! requests through `oneshot` (no socket), and the golden fixtures.
//!
//! Every test runs once per store: the embedded SQLite store always, and
//! Postgres when `FERRYDB_TEST_POSTGRES_URL` points at a server the test may
//! create databases on (`scripts/test.sh` starts one). With `CI` set a
//! missing Postgres fails the run instead of skipping it.
#![allow(dead_code)]

use axum::body::Body;
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::Router;
use ferrydb_protocol::AppDefinition;
use ferrydb_server::{Config, ServerState};
use http_body_util::BodyExt;
use serde_json::Value as Json;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use tower::ServiceExt;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn fixture(name: &str) -> Json {
    let path = repo().join("tests/fixtures/protocol").join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

pub fn app_json() -> Json {
    let path = repo().join("tests/fixtures/app.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

pub fn app_def(json: &Json) -> AppDefinition {
    AppDefinition::from_json(&json.to_string()).unwrap()
}

/// The stores every test runs against: a fresh, empty one each call.
pub async fn store_urls() -> Vec<String> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("ferrydb-server-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("store-{n}.db"));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
    }
    let mut urls = vec![format!("sqlite:{}", file.display())];
    match std::env::var("FERRYDB_TEST_POSTGRES_URL") {
        Ok(admin) => urls.push(fresh_postgres_database(&admin, n).await),
        Err(_) if std::env::var_os("CI").is_some() => {
            panic!("CI: FERRYDB_TEST_POSTGRES_URL is not set, so Postgres would go untested")
        }
        Err(_) => {}
    }
    urls
}

/// Creates an empty database on the Postgres server at `admin` (a
/// `postgres://…/DB` URL of a user who may create databases) and returns its
/// URL: the same server, user and options, database
/// `ferrydb_test_<pid>_<n>` (dropped first if a crashed run left it).
pub async fn fresh_postgres_database(admin: &str, n: u32) -> String {
    let name = format!("ferrydb_test_{}_{n}", std::process::id());
    let (client, connection) = tokio_postgres::connect(admin, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to FERRYDB_TEST_POSTGRES_URL: {e}"));
    let driver = tokio::spawn(connection);
    // One statement per call: a multi-statement batch is one transaction,
    // where neither may run.
    for sql in [
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        format!("CREATE DATABASE {name}"),
    ] {
        client.batch_execute(&sql).await.unwrap();
    }
    drop(client);
    let _ = driver.await;
    with_database(admin, &name)
}

/// The number of rows of table `table` in the store at `url` whose
/// `group_id` is `group` (the server's own tables, read behind its back).
pub async fn count_of_group(url: &str, table: &str, group: &str) -> i64 {
    let sql = format!("SELECT COUNT(*) FROM {table} WHERE group_id = $1");
    match url.strip_prefix("sqlite:") {
        Some(path) => rusqlite::Connection::open(path)
            .unwrap()
            .query_row(&sql, [group], |r| r.get(0))
            .unwrap(),
        None => {
            let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .unwrap();
            let driver = tokio::spawn(connection);
            let count = client.query_one(&sql, &[&group]).await.unwrap().get(0);
            drop(client);
            let _ = driver.await;
            count
        }
    }
}

/// `url` with its database (the path) replaced by `name`, keeping any query.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[authority..]
        .find('/')
        .map_or(base.len(), |i| authority + i);
    let mut out = format!("{}/{name}", &base[..host_end]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

pub struct TestServer {
    pub state: Arc<ServerState>,
    pub router: Router,
    pub url: String,
}

pub async fn server(url: &str, app: AppDefinition, config: Config) -> TestServer {
    let state = ServerState::start(config, Some((app, url))).await.unwrap();
    TestServer {
        router: ferrydb_server::app(state.clone()),
        state,
        url: url.to_owned(),
    }
}

pub async fn sample_server(url: &str) -> TestServer {
    server(url, app_def(&app_json()), Config::default()).await
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Json,
}

impl TestServer {
    /// POSTs `body` (raw bytes) to `path` with the bearer `token`, if any.
    pub async fn post_raw(&self, path: &str, token: Option<&str>, body: Vec<u8>) -> Reply {
        let mut request = Request::post(path).header(header::CONTENT_TYPE, "application/json");
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let response = self
            .router
            .clone()
            .oneshot(request.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Json::String(String::from_utf8_lossy(&bytes).into_owned()));
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn post(&self, path: &str, token: &str, body: &Json) -> Reply {
        self.post_raw(path, Some(token), body.to_string().into_bytes())
            .await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, String) {
        let response = self
            .router
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }
}

pub fn push_body(client: &str, mutations: &[(u64, &str, Json)]) -> Json {
    serde_json::json!({
        "protocolVersion": 1, "schemaVersion": 1,
        "clientGroupID": client, "clientID": client,
        "mutations": mutations.iter().map(|(id, name, args)| serde_json::json!({
            "id": id, "name": name, "args": args, "timestamp": 1767225600000u64
        })).collect::<Vec<_>>()
    })
}

pub fn pull_body(client: &str, cookie: Json) -> Json {
    serde_json::json!({
        "protocolVersion": 1, "schemaVersion": 1,
        "clientGroupID": client, "clientID": client, "cookie": cookie
    })
}

/// The result codes of a push reply: `ok`, `alreadyProcessed` or the rejection code.
pub fn codes(reply: &Reply) -> Vec<String> {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| match r["type"].as_str().unwrap() {
            "rejected" => r["code"].as_str().unwrap().to_owned(),
            other => other.to_owned(),
        })
        .collect()
}

/// A server on an app definition of the repository, spoken to over protocol
/// v2 as users: each user is one client, in a group named after them, with
/// its own next mutation ID.
pub struct AppServer {
    pub server: TestServer,
    schema_version: u32,
    next_ids: Mutex<HashMap<String, u64>>,
}

impl AppServer {
    /// `path` is relative to the repository's root.
    pub async fn start(url: &str, path: &str) -> AppServer {
        let text = std::fs::read_to_string(repo().join(path)).unwrap();
        let app = AppDefinition::from_json(&text).unwrap();
        AppServer {
            schema_version: app.version,
            server: server(url, app, Config::default()).await,
            next_ids: Mutex::default(),
        }
    }

    /// Pushes one mutation as `user`; returns `ok` or the rejection's code.
    pub async fn push(&self, user: &str, name: &str, args: Json) -> String {
        let id = {
            let mut ids = self.next_ids.lock().unwrap();
            let next = ids.entry(user.to_owned()).or_insert(0);
            *next += 1;
            *next
        };
        let body = serde_json::json!({
            "protocolVersion": 2, "schemaVersion": self.schema_version,
            "clientGroupID": user, "clientID": user,
            "mutations": [{"id": id, "name": name, "args": args, "timestamp": 0}],
        });
        let reply = self.server.post("/sync/push", user, &body).await;
        let codes = codes(&reply);
        assert_eq!(codes.len(), 1, "{}", reply.body);
        codes[0].clone()
    }

    /// A v2 pull of `user`'s group from `cookie` with `subscriptions`.
    pub async fn pull(&self, user: &str, cookie: &Json, subscriptions: &[Json]) -> Json {
        let body = serde_json::json!({
            "protocolVersion": 2, "schemaVersion": self.schema_version,
            "clientGroupID": user, "clientID": user,
            "cookie": cookie, "subscriptions": subscriptions,
        });
        let reply = self.server.post("/sync/pull", user, &body).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        reply.body
    }
}
