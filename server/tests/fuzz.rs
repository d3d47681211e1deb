//! Fuzz tests of the reference server's way in (see `tests/fuzz`, the
//! `ferrydb-fuzz` crate), over HTTP (`oneshot`) against every store: push
//! and pull bodies damaged from the golden fixtures, and pulls with damaged
//! cookies and paging cursors. Whatever a client sends, the server answers
//! with a status it chose for it (a 4xx, or 200), never a 500 or a panic;
//! and the paging cursors it hands out always lead on to the end of a sync.
//!
//! One server per store serves all of a target's cases, so a case may see
//! the pushes of the cases before it: a failure replays with
//! `FERRYDB_FUZZ_CASES=<its seed>` (all cases up to it); `FERRYDB_FUZZ_SEED`
//! replays it alone. Each target prints its number of cases. Test names
//! start with `fuzzed_`: `scripts/test.sh` runs them in a step of their own.

mod common;

use axum::http::StatusCode;
use common::*;
use ferrydb_fuzz::{bytes, json, run, Bytes, Rng};
use ferrydb_server::{Config, Limits};
use serde_json::{json, Value as Json};
use tokio::runtime::Runtime;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The sample app's server with a page of two rows (so full syncs page with
/// cursors), no rate limit (the cases come fast), and rows of alice's.
async fn server_with_rows(url: &str) -> TestServer {
    let limits = Limits {
        page_size: 2,
        requests_per_second: 0,
        ..Limits::default()
    };
    let config = Config {
        limits,
        ..Config::default()
    };
    let server = server(url, app_def(&app_json()), config).await;
    let mutations = [
        (
            1,
            "createList",
            json!({"id": "l1", "owner": "alice", "name": "a"}),
        ),
        (
            2,
            "createList",
            json!({"id": "l2", "owner": "alice", "name": "b"}),
        ),
        (
            3,
            "addTodo",
            json!({"id": "t1", "listId": "l1", "owner": "alice", "title": "x"}),
        ),
        (
            4,
            "addTodo",
            json!({"id": "t2", "listId": "l1", "owner": "alice", "title": "y"}),
        ),
        (
            5,
            "tagTodo",
            json!({"todoId": "t1", "tag": "home", "owner": "alice"}),
        ),
        (6, "increment", json!({"id": "visits", "by": 3})),
    ];
    let reply = server
        .post("/sync/push", "alice", &push_body("c1", &mutations))
        .await;
    assert_eq!(codes(&reply), vec!["ok"; 6], "{url}");
    server
}

fn store_name(url: &str) -> &'static str {
    if url.starts_with("sqlite:") {
        "sqlite"
    } else {
        "postgres"
    }
}

/// A status the server chose for what the client sent.
fn chosen(status: StatusCode) -> bool {
    status == StatusCode::OK || status.is_client_error()
}

#[test]
fn fuzzed_push_and_pull_bodies_from_clients() {
    let rt = runtime();
    let seeds: Vec<Json> = [
        "push-request.json",
        "pull-request.json",
        "pull-request-initial.json",
        "pull-request-text-cookie.json",
    ]
    .map(fixture)
    .into();
    for url in rt.block_on(store_urls()) {
        let server = rt.block_on(server_with_rows(&url));
        let generate = |rng: &mut Rng| {
            let body = match rng.below(3) {
                0 => Bytes(json::input(rng, &seeds)),
                _ => {
                    let seed = &seeds[rng.below(seeds.len())];
                    Bytes(serde_json::to_vec(&json::mutate_values(rng, seed)).unwrap())
                }
            };
            let path = *rng.pick(&["/sync/push", "/sync/pull"]);
            (path, body)
        };
        let target = format!("server {} bodies", store_name(&url));
        run(&target, 5_000, generate, |(path, body)| {
            let reply = rt.block_on(server.post_raw(path, Some("alice"), body.0.clone()));
            assert!(chosen(reply.status), "{}: {}", reply.status, reply.body);
        });
    }
}

/// The cursors a full sync of alice's rows hands out, page by page.
fn real_cursors(rt: &Runtime, server: &TestServer) -> Vec<String> {
    let mut cursors = Vec::new();
    let mut cookie = Json::Null;
    loop {
        let reply = rt.block_on(server.post("/sync/pull", "alice", &pull_body("c1", cookie)));
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        cookie = reply.body["cookie"].clone();
        if let Json::String(cursor) = &cookie {
            cursors.push(cursor.clone());
        }
        if reply.body["more"] != true {
            assert!(cursors.len() >= 2, "{cursors:?}");
            return cursors;
        }
    }
}

/// A cookie: a real cursor with one part damaged, or damaged anywhere, or
/// any JSON value.
fn cookie(rng: &mut Rng, cursors: &[String]) -> Json {
    let cursor = &cursors[rng.below(cursors.len())];
    match rng.below(4) {
        0 => json::random(rng, 2),
        1 => {
            let damaged = bytes::mutate(rng, cursor.as_bytes(), &[b"full:", b"[\""]);
            Json::String(String::from_utf8_lossy(&damaged).into_owned())
        }
        _ => {
            let mut parts: Vec<String> = cursor.splitn(4, ':').map(str::to_owned).collect();
            let part = &mut parts[1 + rng.below(3)];
            *part = match rng.below(3) {
                0 => rng
                    .pick(&[
                        "-1",
                        "0",
                        "9223372036854775807",
                        "99999999999999999999",
                        "1.5",
                        "",
                        "+2",
                    ])
                    .to_string(),
                1 => json::random(rng, 2).to_string(),
                _ => {
                    String::from_utf8_lossy(&bytes::mutate(rng, part.as_bytes(), &[])).into_owned()
                }
            };
            Json::String(parts.join(":"))
        }
    }
}

#[test]
fn fuzzed_cookies_and_cursors_from_clients() {
    let rt = runtime();
    for url in rt.block_on(store_urls()) {
        let server = rt.block_on(server_with_rows(&url));
        let cursors = real_cursors(&rt, &server);
        let target = format!("server {} cookies", store_name(&url));
        run(
            &target,
            5_000,
            |rng| cookie(rng, &cursors),
            |cookie| {
                let mut reply = rt.block_on(server.post(
                    "/sync/pull",
                    "alice",
                    &pull_body("c1", cookie.clone()),
                ));
                // Paging carries on from any cursor the server hands out, and
                // ends at an integer cookie.
                for _ in 0..20 {
                    assert!(chosen(reply.status), "{}: {}", reply.status, reply.body);
                    if reply.status != StatusCode::OK || reply.body["type"] != "ok" {
                        return;
                    }
                    let next = reply.body["cookie"].clone();
                    if reply.body["more"] != true {
                        assert!(next.is_i64(), "{}", reply.body);
                        return;
                    }
                    reply = rt.block_on(server.post("/sync/pull", "alice", &pull_body("c1", next)));
                    assert_eq!(
                        reply.body["type"], "ok",
                        "the server's own cursor: {}",
                        reply.body
                    );
                }
                panic!("paging did not end");
            },
        );
    }
}
