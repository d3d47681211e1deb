//! Shared pieces of the server's HTTP tests: a server per store under test,
//! requests through `oneshot` (no socket), and the golden fixtures.
//!
//! Every test runs once per store: the embedded SQLite store always, and
//! Postgres when `FERRYDB_TEST_POSTGRES_URL` points at a server the test may
//! create databases on (`scripts/test.sh` starts one). With `CI` set a
//! missing Postgres fails the run instead of skipping it.
#![allow(dead_code)]

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use ferrydb_protocol::AppDefinition;
use ferrydb_server::{Config, ServerState};
use http_body_util::BodyExt;
use serde_json::Value as Json;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
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

/// Creates an empty database on the Postgres server at `admin` and returns
/// its URL. Implemented with the Postgres store.
pub async fn fresh_postgres_database(admin: &str, n: u32) -> String {
    let _ = (admin, n);
    unimplemented!("the Postgres store is not built yet")
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
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Json::String(String::from_utf8_lossy(&bytes).into_owned()));
        Reply { status, body }
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

