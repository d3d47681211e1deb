//! The reference server over HTTP (`oneshot`, no socket), against every store:
//! golden round trips, idempotency, gaps, access rules, bad input, schema
//! mismatches, realtime pokes, limits and metrics.

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::*;
use ferrydb_protocol::{PullResponse, PushResponse, NEXT_COOKIE_HEADER};
use ferrydb_server::{Config, Limits};
use http_body_util::BodyExt;
use serde_json::{json, Value as Json};
use std::time::Duration;
use tower::ServiceExt;

fn todo(id: &str, owner: &str) -> Json {
    json!({"id": id, "listId": "l1", "owner": owner, "title": "Buy milk"})
}

/// Pulls from `cookie` until `more` is false; returns the last reply's body
/// and every patch operation in order.
async fn pull_all(
    server: &TestServer,
    user: &str,
    client: &str,
    cookie: Json,
) -> (Json, Vec<Json>) {
    let mut cookie = cookie;
    let mut ops = Vec::new();
    loop {
        let reply = server
            .post("/sync/pull", user, &pull_body(client, cookie))
            .await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{}: {}",
            server.url,
            reply.body
        );
        ops.extend(reply.body["patch"].as_array().unwrap().iter().cloned());
        cookie = reply.body["cookie"].clone();
        if !reply.body["more"].as_bool().unwrap_or(false) {
            return (reply.body, ops);
        }
    }
}

fn puts<'a>(ops: &'a [Json], table: &str) -> Vec<&'a Json> {
    ops.iter()
        .filter(|op| op["type"] == "put" && op["table"] == table)
        .map(|op| &op["row"])
        .collect()
}

#[tokio::test]
async fn golden_push_and_pull_round_trip() {
    for url in store_urls().await {
        let server = sample_server(&url).await;
        // The fixture's client already sent mutations 1–6.
        let earlier: Vec<_> = (1..=6)
            .map(|id| (id, "increment", json!({"id": "visits", "by": 1})))
            .collect();
        let golden = fixture("push-request.json");
        let mut first = push_body("c-19be", &earlier);
        first["clientGroupID"] = golden["clientGroupID"].clone();
        let reply = server.post("/sync/push", "alice", &first).await;
        assert_eq!(codes(&reply), vec!["ok"; 6], "{url}");
        let reply = server.post("/sync/push", "alice", &golden).await;
        assert_eq!(codes(&reply), ["ok", "ok", "ok"], "{url}");
        serde_json::from_value::<PushResponse>(reply.body.clone()).unwrap();
        // The same push again (its reply was lost): nothing runs twice.
        let again = server.post("/sync/push", "alice", &golden).await;
        assert_eq!(codes(&again), vec!["alreadyProcessed"; 3], "{url}");

        let reply = server
            .post("/sync/pull", "alice", &fixture("pull-request-initial.json"))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{url}: {}", reply.body);
        let parsed: PullResponse = serde_json::from_value(reply.body.clone()).unwrap();
        assert!(matches!(parsed, PullResponse::Ok(_)));
        let ops = reply.body["patch"].as_array().unwrap();
        assert_eq!(ops[0], json!({"type": "clear"}), "{url}");
        assert_eq!(
            puts(ops, "todos"),
            [
                &json!({"id": "t1", "list_id": "l1", "owner": "alice", "title": "Buy milk",
                     "done": false, "meta": {"color": "red", "tags": ["a", "b"]}})
            ],
            "{url}"
        );
        assert_eq!(
            puts(ops, "counters"),
            [&json!({"id": "visits", "value": 7})],
            "{url}"
        );
        assert_eq!(
            reply.body["lastMutationIDChanges"],
            json!({"c-19be": 9}),
            "{url}"
        );
        assert_eq!(reply.body["more"], json!(false), "{url}");
        // Caught up: the next pull is empty and keeps the cookie.
        let cookie = reply.body["cookie"].clone();
        assert!(cookie.is_i64(), "{url}: {cookie}");
        let next = server
            .post("/sync/pull", "alice", &pull_body("c-19be", cookie.clone()))
            .await;
        assert_eq!(next.body["patch"], json!([]), "{url}");
        assert_eq!(next.body["cookie"], cookie, "{url}");
    }
}

#[tokio::test]
async fn incremental_pulls_send_changes_and_tombstones() {
    for url in store_urls().await {
        let server = sample_server(&url).await;
        let setup = [
            (
                1,
                "createList",
                json!({"id": "l1", "owner": "alice", "name": "Home"}),
            ),
            (2, "addTodo", todo("t1", "alice")),
            (3, "addTodo", todo("t2", "alice")),
        ];
        assert_eq!(
            codes(
                &server
                    .post("/sync/push", "alice", &push_body("a", &setup))
                    .await
            ),
            ["ok"; 3]
        );
        let (first, _) = pull_all(&server, "alice", "a", Json::Null).await;
        let cookie = first["cookie"].clone();
        let more = [
            (4, "renameTodo", json!({"id": "t1", "title": "Oat milk"})),
            (5, "deleteTodo", json!({"id": "t2"})),
        ];
        assert_eq!(
            codes(
                &server
                    .post("/sync/push", "alice", &push_body("a", &more))
                    .await
            ),
            ["ok"; 2]
        );
        let (last, ops) = pull_all(&server, "alice", "a", cookie.clone()).await;
        assert!(
            last["cookie"].as_i64().unwrap() > cookie.as_i64().unwrap(),
            "{url}"
        );
        assert_eq!(puts(&ops, "todos")[0]["title"], "Oat milk", "{url}");
        assert!(
            ops.contains(&json!({"type": "del", "table": "todos", "key": {"id": "t2"}})),
            "{url}: {ops:?}"
        );
        assert!(!ops.iter().any(|op| op["type"] == "clear"), "{url}");
    }
}

#[tokio::test]
async fn initial_sync_pages_with_more() {
    for url in store_urls().await {
        let config = Config {
            limits: Limits {
                page_size: 3,
                ..Limits::default()
            },
            ..Config::default()
        };
        let server = server(&url, app_def(&app_json()), config).await;
        let mutations: Vec<_> = (1..=10)
            .map(|i| (i, "increment", json!({"id": format!("k{i:02}"), "by": i})))
            .collect();
        assert_eq!(
            codes(
                &server
                    .post("/sync/push", "u", &push_body("c", &mutations))
                    .await
            )
            .len(),
            10
        );
        let mut cookie = Json::Null;
        let mut pages = 0;
        let mut rows = Vec::new();
        loop {
            let reply = server
                .post("/sync/pull", "u", &pull_body("c", cookie))
                .await;
            pages += 1;
            rows.extend(
                puts(reply.body["patch"].as_array().unwrap(), "counters")
                    .into_iter()
                    .cloned(),
            );
            cookie = reply.body["cookie"].clone();
            // The page's cookie again in a header, read before the body
            // is decoded, on every page with more and only there.
            let hint = reply.headers.get(NEXT_COOKIE_HEADER);
            let hint = hint.map(|h| serde_json::from_slice::<Json>(h.as_bytes()).unwrap());
            if reply.body["more"] != json!(true) {
                assert_eq!(hint, None, "{url}: the last page has no next cookie");
                break;
            }
            assert_eq!(hint, Some(cookie.clone()), "{url}");
            assert!(cookie.is_string(), "{url}: a paging cookie is a cursor");
        }
        assert!(pages >= 4, "{url}: {pages} pages");
        assert_eq!(rows.len(), 10, "{url}");
        assert_eq!(rows[9], json!({"id": "k10", "value": 10}), "{url}");
        assert!(cookie.is_i64(), "{url}");
    }
}

#[tokio::test]
async fn concurrent_duplicate_pushes_run_each_mutation_once() {
    for url in store_urls().await {
        let server = sample_server(&url).await;
        let body = push_body(
            "c",
            &[
                (1, "increment", json!({"id": "n", "by": 1})),
                (2, "increment", json!({"id": "n", "by": 10})),
            ],
        );
        let replies =
            futures_util::future::join_all((0..6).map(|_| server.post("/sync/push", "u", &body)))
                .await;
        for reply in &replies {
            let codes = codes(reply);
            assert!(
                codes.iter().all(|c| c == "ok" || c == "alreadyProcessed"),
                "{url}: {codes:?}"
            );
        }
        let (_, ops) = pull_all(&server, "u", "c", Json::Null).await;
        assert_eq!(
            puts(&ops, "counters"),
            [&json!({"id": "n", "value": 11})],
            "{url}"
        );
        let log = server
            .state
            .store
            .as_ref()
            .unwrap()
            .mutation_log()
            .await
            .unwrap();
        assert_eq!(log.len(), 2, "{url}: {log:?}");
    }
}

#[tokio::test]
async fn a_gap_is_refused_without_applying_later_mutations() {
    for url in store_urls().await {
        let server = sample_server(&url).await;
        let gap = push_body(
            "c",
            &[
                (2, "increment", json!({"id": "n", "by": 5})),
                (3, "increment", json!({"id": "n", "by": 5})),
            ],
        );
        let reply = server.post("/sync/push", "u", &gap).await;
        assert_eq!(codes(&reply), Vec::<String>::new(), "{url}");
        let (_, ops) = pull_all(&server, "u", "c", Json::Null).await;
        assert!(puts(&ops, "counters").is_empty(), "{url}");
        let fill = push_body(
            "c",
            &[
                (1, "increment", json!({"id": "n", "by": 1})),
                (2, "increment", json!({"id": "n", "by": 5})),
            ],
        );
        assert_eq!(
            codes(&server.post("/sync/push", "u", &fill).await),
            ["ok", "ok"],
            "{url}"
        );
    }
}

#[tokio::test]
async fn one_user_can_neither_read_nor_write_another_users_rows() {
    for url in store_urls().await {
        let server = sample_server(&url).await;
        let alice = [
            (
                1,
                "createList",
                json!({"id": "l1", "owner": "alice", "name": "Secret"}),
            ),
            (2, "addTodo", todo("t1", "alice")),
        ];
        assert_eq!(
            codes(
                &server
                    .post("/sync/push", "alice", &push_body("ca", &alice))
                    .await
            ),
            ["ok", "ok"]
        );
        let (alice_view, _) = pull_all(&server, "alice", "ca", Json::Null).await;

        // Writes: bob's own client, with alice's ids and alice as the owner.
        let attempts = [
            (1, "renameTodo", json!({"id": "t1", "title": "pwned"})),
            (2, "addTodo", todo("t9", "alice")),
            (3, "deleteList", json!({"id": "l1"})),
            (4, "setTodoMeta", json!({"id": "t1", "meta": {"x": 1}})),
        ];
        let reply = server
            .post("/sync/push", "bob", &push_body("cb", &attempts))
            .await;
        assert_eq!(codes(&reply), ["forbidden"; 4], "{url}: {}", reply.body);
        // A forged client id or client group: the whole request is refused.
        let forged = push_body(
            "ca",
            &[(3, "renameTodo", json!({"id": "t1", "title": "pwned"}))],
        );
        let reply = server.post("/sync/push", "bob", &forged).await;
        assert_eq!(
            (reply.status, reply.body["code"].clone()),
            (StatusCode::FORBIDDEN, json!("forbidden")),
            "{url}"
        );
        let mut joined = pull_body("cb", Json::Null);
        joined["clientGroupID"] = json!("ca");
        let reply = server.post("/sync/pull", "bob", &joined).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{url}");

        // Reads: bob's full sync, and a pull with alice's cookie, show nothing of alice's.
        let (_, ops) = pull_all(&server, "bob", "cb", Json::Null).await;
        assert!(
            puts(&ops, "lists").is_empty() && puts(&ops, "todos").is_empty(),
            "{url}: {ops:?}"
        );
        let (_, ops) = pull_all(&server, "bob", "cb", json!(0)).await;
        assert!(
            !ops.iter()
                .any(|op| op["type"] == "put" && op["table"] != "counters"),
            "{url}: {ops:?}"
        );
        // And alice's data is untouched.
        let (_, ops) = pull_all(&server, "alice", "ca", Json::Null).await;
        assert_eq!(puts(&ops, "todos")[0]["title"], "Buy milk", "{url}");
        assert_eq!(puts(&ops, "todos")[0]["meta"], Json::Null, "{url}");
        assert_eq!(puts(&ops, "lists").len(), 1, "{url}");
        assert!(alice_view["cookie"].is_i64());
    }
}

/// A request that must be refused: path, bearer token, body, status, code.
type BadCase = (
    &'static str,
    Option<&'static str>,
    Vec<u8>,
    u16,
    &'static str,
);

#[tokio::test]
async fn bad_requests_get_a_code_and_apply_nothing() {
    for url in store_urls().await {
        let config = Config {
            limits: Limits {
                body_bytes: 2048,
                push_batch: 3,
                ..Limits::default()
            },
            ..Config::default()
        };
        let server = server(&url, app_def(&app_json()), config).await;
        let increment = |id| (id, "increment", json!({"id": "n", "by": 1}));
        let cases: Vec<BadCase> = vec![
            (
                "/sync/push",
                Some("u"),
                b"{not json".to_vec(),
                400,
                "bad_request",
            ),
            (
                "/sync/push",
                Some("u"),
                b"[1, 2]".to_vec(),
                400,
                "bad_request",
            ),
            (
                "/sync/push",
                Some("u"),
                br#"{"protocolVersion": 1, "clientID": "c"}"#.to_vec(),
                400,
                "bad_request",
            ),
            (
                "/sync/pull",
                Some("u"),
                br#"{"protocolVersion": 1, "cookie": {"x": 1}}"#.to_vec(),
                400,
                "bad_request",
            ),
            (
                "/sync/push",
                Some("u"),
                {
                    let mut body = push_body("c", &[increment(1)]);
                    body["protocolVersion"] = json!(3);
                    body.to_string().into_bytes()
                },
                400,
                "protocol_version",
            ),
            (
                "/sync/push",
                None,
                push_body("c", &[increment(1)]).to_string().into_bytes(),
                401,
                "unauthorized",
            ),
            // Found by the fuzz tests: Postgres text cannot hold NUL, and the
            // Postgres store failed (500) on names carrying one.
            (
                "/sync/push",
                Some("u"),
                push_body("c\u{0}", &[increment(1)])
                    .to_string()
                    .into_bytes(),
                400,
                "bad_request",
            ),
            (
                "/sync/push",
                Some("u"),
                push_body("c", &[(1, "incre\u{0}ment", json!({}))])
                    .to_string()
                    .into_bytes(),
                400,
                "bad_request",
            ),
            (
                "/sync/push",
                Some("u"),
                push_body("c", &[(1, "increment", json!({"i\u{0}d": "n", "by": 1}))])
                    .to_string()
                    .into_bytes(),
                400,
                "bad_request",
            ),
            (
                "/sync/pull",
                Some("u"),
                pull_body("c\u{0}", Json::Null).to_string().into_bytes(),
                400,
                "bad_request",
            ),
            (
                "/sync/push",
                Some("u"),
                push_body(
                    "c",
                    &[(1, "increment", json!({"id": "x".repeat(4000), "by": 1}))],
                )
                .to_string()
                .into_bytes(),
                413,
                "too_large",
            ),
            (
                "/sync/push",
                Some("u"),
                push_body("c", &(1..=4).map(increment).collect::<Vec<_>>())
                    .to_string()
                    .into_bytes(),
                413,
                "too_large",
            ),
        ];
        for (path, token, body, status, code) in cases {
            let reply = server.post_raw(path, token, body).await;
            assert_eq!(
                reply.status.as_u16(),
                status,
                "{url} {path}: {}",
                reply.body
            );
            assert_eq!(reply.body["code"], code, "{url} {path}: {}", reply.body);
            assert!(reply.body["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()));
        }
        // Mutations the server cannot run are rejected one by one (the queue
        // behind them moves on), never applied.
        let wrong = [
            (1, "dropEverything", json!({})),
            (2, "increment", json!({"id": "n", "by": "lots"})),
            (3, "increment", json!({"id": "n"})),
        ];
        let reply = server
            .post("/sync/push", "u", &push_body("c", &wrong))
            .await;
        assert_eq!(
            codes(&reply),
            ["unknown_mutator", "bad_arguments", "bad_arguments"],
            "{url}"
        );
        let (_, ops) = pull_all(&server, "u", "c", Json::Null).await;
        assert!(puts(&ops, "counters").is_empty(), "{url}: {ops:?}");
    }
}

#[tokio::test]
async fn schema_versions_are_checked_on_every_exchange() {
    for url in store_urls().await {
        let mut app = app_json();
        app["version"] = json!(2);
        let server = server(&url, app_def(&app), Config::default()).await;
        let old = push_body("c", &[(1, "increment", json!({"id": "n", "by": 1}))]);
        let reply = server.post("/sync/push", "u", &old).await;
        assert_eq!(
            reply.body,
            json!({"type": "schemaMismatch", "serverSchemaVersion": 2, "action": "updateApp"}),
            "{url}"
        );
        let mut newer = pull_body("c", Json::Null);
        newer["schemaVersion"] = json!(3);
        let reply = server.post("/sync/pull", "u", &newer).await;
        assert_eq!(reply.body["action"], "retryLater", "{url}");
        // A cookie from the future (another database, a restored backup) resets.
        let mut future = pull_body("c", json!(999));
        future["schemaVersion"] = json!(2);
        let reply = server.post("/sync/pull", "u", &future).await;
        assert_eq!(reply.body["action"], "resetReplica", "{url}");
        assert!(server
            .state
            .store
            .as_ref()
            .unwrap()
            .mutation_log()
            .await
            .unwrap()
            .is_empty());
    }
}

/// Reads SSE `data:` payloads from a streaming response body.
struct Events {
    body: Body,
    buffer: String,
}

impl Events {
    async fn next(&mut self) -> Json {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let frame: String = self.buffer.drain(..end + 2).collect();
                if let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data: ")) {
                    return serde_json::from_str(data).unwrap();
                }
                continue;
            }
            let frame = tokio::time::timeout(Duration::from_secs(5), self.body.frame())
                .await
                .expect("an event within 5 s")
                .expect("the stream is open")
                .unwrap();
            if let Ok(data) = frame.into_data() {
                self.buffer.push_str(std::str::from_utf8(&data).unwrap());
            }
        }
    }
}

async fn subscribe(server: &TestServer, token: Option<&str>) -> Result<Events, (StatusCode, Json)> {
    let mut request = Request::get("/sync/events");
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let response = server
        .router
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    if status != StatusCode::OK {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        return Err((status, serde_json::from_slice(&bytes).unwrap()));
    }
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/event-stream"
    );
    Ok(Events {
        body: response.into_body(),
        buffer: String::new(),
    })
}

#[tokio::test]
async fn realtime_subscribers_are_poked_after_each_change() {
    for url in store_urls().await {
        let server = sample_server(&url).await;
        let (status, body) = subscribe(&server, None).await.err().unwrap();
        assert_eq!(
            (status, body["code"].clone()),
            (StatusCode::UNAUTHORIZED, json!("unauthorized"))
        );
        let mut alice = subscribe(&server, Some("alice")).await.unwrap();
        let mut bob = subscribe(&server, Some("bob")).await.unwrap();
        assert_eq!(
            alice.next().await,
            json!({"type": "poke", "cookie": 0}),
            "{url}"
        );
        assert_eq!(
            bob.next().await,
            json!({"type": "poke", "cookie": 0}),
            "{url}"
        );
        let push = push_body("c", &[(1, "increment", json!({"id": "n", "by": 1}))]);
        assert_eq!(
            codes(&server.post("/sync/push", "alice", &push).await),
            ["ok"]
        );
        for events in [&mut alice, &mut bob] {
            let poke = events.next().await;
            assert_eq!(poke["type"], "poke", "{url}");
            assert!(poke["cookie"].as_i64().unwrap() >= 1, "{url}: {poke}");
        }
        // A retried push changes nothing, so it pokes no one: the next poke
        // anyone sees comes from the next real change.
        server.post("/sync/push", "alice", &push).await;
        let next = push_body("c", &[(2, "increment", json!({"id": "n", "by": 1}))]);
        server.post("/sync/push", "alice", &next).await;
        let poke = alice.next().await;
        let version = server
            .state
            .store
            .as_ref()
            .unwrap()
            .version()
            .await
            .unwrap();
        assert_eq!(poke["cookie"], json!(version), "{url}");
    }
}

#[tokio::test]
async fn realtime_connections_are_limited_and_counted() {
    for url in store_urls().await {
        let config = Config {
            limits: Limits {
                realtime_connections: 1,
                ..Limits::default()
            },
            ..Config::default()
        };
        let server = server(&url, app_def(&app_json()), config).await;
        let first = subscribe(&server, Some("u")).await.unwrap();
        let (status, body) = subscribe(&server, Some("v")).await.err().unwrap();
        assert_eq!(
            (status, body["code"].clone()),
            (StatusCode::SERVICE_UNAVAILABLE, json!("unavailable"))
        );
        assert_eq!(body["retryable"], json!(true));
        let (_, metrics) = server.get("/metrics").await;
        assert!(
            metrics.contains("ferrydb_realtime_clients 1\n"),
            "{metrics}"
        );
        drop(first);
        let _again = subscribe(&server, Some("v")).await.unwrap();
    }
}

#[tokio::test]
async fn a_user_over_the_request_budget_gets_429_and_others_do_not() {
    for url in store_urls().await {
        let config = Config {
            limits: Limits {
                requests_per_second: 1,
                request_burst: 2,
                ..Limits::default()
            },
            ..Config::default()
        };
        let server = server(&url, app_def(&app_json()), config).await;
        let pull = |user: &'static str| {
            let server = &server;
            async move {
                server
                    .post(
                        "/sync/pull",
                        user,
                        &pull_body(&format!("c-{user}"), Json::Null),
                    )
                    .await
            }
        };
        assert_eq!(pull("u").await.status, StatusCode::OK);
        assert_eq!(pull("u").await.status, StatusCode::OK);
        let refused = pull("u").await;
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.body["code"], json!("rate_limited"));
        assert_eq!(refused.body["retryable"], json!(true));
        assert_eq!(refused.headers[header::RETRY_AFTER], "1");
        // Pushes draw on the same budget; other users have their own.
        let push = server
            .post(
                "/sync/push",
                "u",
                &push_body("c-u", &[(1, "increment", json!({"id": "x", "by": 1}))]),
            )
            .await;
        assert_eq!(push.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(pull("v").await.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn health_and_metrics_report_what_happened() {
    for url in store_urls().await {
        let server = sample_server(&url).await;
        assert_eq!(server.get("/healthz").await, (StatusCode::OK, "ok".into()));
        let push = push_body(
            "c",
            &[
                (1, "increment", json!({"id": "n", "by": 1})),
                (2, "nope", json!({})),
            ],
        );
        server.post("/sync/push", "u", &push).await;
        server.post("/sync/push", "u", &push).await;
        server.post_raw("/sync/pull", None, b"{}".to_vec()).await;
        let (_, _) = pull_all(&server, "u", "c", Json::Null).await;
        let (status, metrics) = server.get("/metrics").await;
        assert_eq!(status, StatusCode::OK);
        for line in [
            "ferrydb_requests_total{endpoint=\"push\"} 2",
            "ferrydb_requests_total{endpoint=\"pull\"} 2",
            "ferrydb_mutations_total{outcome=\"ok\"} 1",
            "ferrydb_mutations_total{outcome=\"rejected\"} 2",
            "ferrydb_mutations_total{outcome=\"already_processed\"} 1",
            "ferrydb_failed_requests_total 1",
            "ferrydb_pull_rows_total 2",
        ] {
            assert!(
                metrics.contains(&format!("{line}\n")),
                "{url}: missing {line}:\n{metrics}"
            );
        }
    }
}

/// The value of the sample `series` (name and labels) in a `/metrics` text.
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in:\n{metrics}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn metrics_of_latency_lag_pull_size_realtime_clients_and_queues_move() {
    for url in store_urls().await {
        let server = sample_server(&url).await;
        let kind = server.state.store.as_ref().unwrap().kind();
        let push_count =
            format!("ferrydb_sync_duration_seconds_count{{endpoint=\"push\",store=\"{kind}\"}}");
        let pull_count =
            format!("ferrydb_sync_duration_seconds_count{{endpoint=\"pull\",store=\"{kind}\"}}");
        let store_queue = match kind {
            "sqlite" => "ferrydb_queue_depth{queue=\"sqlite_jobs\"}",
            _ => "ferrydb_queue_depth{queue=\"postgres_pool_waiting\"}",
        };
        let scrape = || async { server.get("/metrics").await.1 };
        let before = scrape().await;
        for series in [
            push_count.as_str(),
            pull_count.as_str(),
            "ferrydb_sync_lag_seconds_count",
            "ferrydb_pull_bytes_total",
            "ferrydb_realtime_clients",
            "ferrydb_queue_depth{queue=\"pokes\"}",
            store_queue,
        ] {
            assert_eq!(sample(&before, series), 0.0, "{url}: {series}");
        }

        let mut alice = subscribe(&server, Some("alice")).await.unwrap();
        alice.next().await;
        assert_eq!(sample(&scrape().await, "ferrydb_realtime_clients"), 1.0);
        let push = push_body("c", &[(1, "increment", json!({"id": "n", "by": 1}))]);
        assert_eq!(
            codes(&server.post("/sync/push", "alice", &push).await),
            ["ok"]
        );
        // The stream has not read the poke yet: one is waiting.
        let poke_waiting = |metrics: &str| sample(metrics, "ferrydb_queue_depth{queue=\"pokes\"}");
        if kind == "sqlite" {
            // (Postgres pokes after its notification comes back, which the
            // stream's read below waits for.)
            assert_eq!(poke_waiting(&scrape().await), 1.0, "{url}");
        }
        alice.next().await;
        let after = scrape().await;
        assert_eq!(poke_waiting(&after), 0.0, "{url}");
        assert_eq!(
            sample(&after, "ferrydb_sync_lag_seconds_count"),
            1.0,
            "{url}"
        );
        assert!(
            sample(&after, "ferrydb_sync_lag_seconds_sum") > 0.0,
            "{url}"
        );
        assert_eq!(sample(&after, &push_count), 1.0, "{url}");
        assert!(sample(&after, &push_count.replace("_count", "_sum")) > 0.0);

        let (_, ops) = pull_all(&server, "alice", "c", Json::Null).await;
        let after = scrape().await;
        assert_eq!(sample(&after, &pull_count), 1.0, "{url}");
        assert_eq!(sample(&after, "ferrydb_pull_rows_total"), ops.len() as f64);
        // The whole response: the patch and its envelope.
        let patch_bytes = serde_json::to_vec(&ops).unwrap().len() as f64;
        assert!(
            sample(&after, "ferrydb_pull_bytes_total") > patch_bytes,
            "{url}"
        );
        let inf = format!("ferrydb_sync_duration_seconds_bucket{{endpoint=\"pull\",store=\"{kind}\",le=\"+Inf\"}}");
        assert_eq!(sample(&after, &inf), 1.0, "{url}");

        drop(alice);
        assert_eq!(sample(&scrape().await, "ferrydb_realtime_clients"), 0.0);
    }
}

#[tokio::test]
async fn jwt_auth_takes_the_user_from_sub_and_refuses_expired_tokens() {
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    let secret = b"a-test-secret-of-some-length";
    let token = |sub: &str, exp: u64| {
        encode(
            &Header::new(Algorithm::HS256),
            &json!({"sub": sub, "exp": exp}),
            &EncodingKey::from_secret(secret).unwrap(),
        )
        .unwrap()
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for url in store_urls().await {
        let config = Config {
            auth: ferrydb_server::Auth::hs256(secret).unwrap(),
            ..Config::default()
        };
        let server = server(&url, app_def(&app_json()), config).await;
        let push = push_body(
            "c",
            &[(
                1,
                "createList",
                json!({"id": "l", "owner": "alice", "name": "x"}),
            )],
        );
        assert_eq!(
            codes(
                &server
                    .post("/sync/push", &token("alice", now + 60), &push)
                    .await
            ),
            ["ok"]
        );
        let reply = server
            .post(
                "/sync/pull",
                &token("alice", now - 120),
                &pull_body("c", Json::Null),
            )
            .await;
        assert_eq!(
            (reply.status, reply.body["code"].clone()),
            (StatusCode::UNAUTHORIZED, json!("unauthorized"))
        );
        assert_eq!(reply.body["retryable"], json!(true));
        // The user id as a dev token means nothing here.
        let reply = server
            .post("/sync/pull", "alice", &pull_body("c", Json::Null))
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
}
