//! Fuzz tests of what the sync core reads from the other side (see
//! `tests/fuzz`, the `ferrydb-fuzz` crate): a client handling whatever a
//! server replies, and the reference server's SQLite store (`SqliteServer`)
//! handling whatever a client pushes and the cookies it pulls with,
//! paging cursors included. Inputs start from the golden fixtures, damaged;
//! nothing may panic, the client must take any reply in its stride (its
//! errors are reserved for its own database failing), and the server's
//! paging must carry on from any cursor it hands out.
//!
//! Each target prints its number of cases; `FERRYDB_FUZZ_CASES=n` runs n of
//! each, `FERRYDB_FUZZ_SEED=s` replays the case a failure names.

use super::*;
use ferrydb_fuzz::{bytes, json, run, Bytes, Rng};
use ferrydb_protocol::{
    Cookie, Mutation, MutationResult, PullRequest, PushRequest, PROTOCOL_VERSION,
};

fn fixture(name: &str) -> Json {
    let path = format!(
        "{}/tests/fixtures/protocol/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A reply's text: a fixture damaged in its values only (so it decodes and
/// reaches the client's logic), damaged any way, or a patch of made-up rows.
fn reply_text(rng: &mut Rng, seeds: &[Json]) -> Bytes {
    match rng.below(5) {
        0 | 1 => {
            let seed = &seeds[rng.below(seeds.len())];
            Bytes(serde_json::to_vec(&json::mutate_values(rng, seed)).unwrap())
        }
        2 => Bytes(made_up_pull(rng).to_string().into_bytes()),
        _ => Bytes(json::input(rng, seeds)),
    }
}

fn cached_app() -> &'static AppDefinition {
    static APP: std::sync::OnceLock<AppDefinition> = std::sync::OnceLock::new();
    APP.get_or_init(sample_app)
}

/// A pull reply whose patch puts and deletes rows of the sample app's
/// tables (and some other), with columns missing, extra or of other types.
fn made_up_pull(rng: &mut Rng) -> Json {
    let app = cached_app();
    let ops: Vec<Json> = (0..rng.below(6))
        .map(|_| {
            let table = match app.tables.get(rng.below(app.tables.len() + 1)) {
                Some(table) => table.clone(),
                None => app.tables[0].clone(),
            };
            let name = if rng.chance(90) {
                table.name.clone()
            } else {
                "drafts".into()
            };
            let mut row = serde_json::Map::new();
            for column in &table.columns {
                if rng.chance(90) {
                    row.insert(column.name.clone(), json::random(rng, 1));
                }
            }
            match rng.below(5) {
                0 => json!({"type": "del", "table": name, "key": row}),
                1 => json!({"type": "clear"}),
                _ => json!({"type": "put", "table": name, "row": row}),
            }
        })
        .collect();
    json!({
        "type": "ok",
        "cookie": json::random(rng, 0),
        "lastMutationIDChanges": {"c1": json::random(rng, 0)},
        "patch": ops,
        "more": rng.chance(20),
    })
}

/// A client with two mutations waiting, online with a token: it has sent a
/// push and a pull, and waits for their replies.
struct WaitingClient {
    client: SyncClient,
    replica: Replica,
    db: Database,
    push_id: u64,
    pull_id: u64,
}

fn waiting_client() -> WaitingClient {
    let (mut replica, mut db) = client("c1");
    mutate(
        &replica,
        &mut db,
        "increment",
        json!({"id": "visits", "by": 2}),
    );
    mutate(
        &replica,
        &mut db,
        "createList",
        json!({"id": "l1", "owner": "alice", "name": "x"}),
    );
    let mut client = SyncClient::new(SyncConfig::default(), 42);
    let mut sent = Vec::new();
    for event in [Event::Online, Event::Token(Some("tok".into()))] {
        sent.extend(
            client
                .handle(crate::engine::Now::at(1_000), event, &mut replica, &mut db)
                .unwrap(),
        );
    }
    let id_of = |push: bool| {
        sent.iter().find_map(|effect| match effect {
            Effect::SendPush { id, .. } if push => Some(*id),
            Effect::SendPull { id, .. } if !push => Some(*id),
            _ => None,
        })
    };
    let (push_id, pull_id) = (id_of(true).expect("a push"), id_of(false).expect("a pull"));
    WaitingClient {
        client,
        replica,
        db,
        push_id,
        pull_id,
    }
}

/// The host's way in (`src/wasm/sync.rs`, `parse_reply`): text parsed, then
/// decoded; a reply that does not decode is an `InvalidResponse`.
fn reply_event<T>(
    id: u64,
    text: &Bytes,
    decode: ferrydb_protocol::decode::Decoder<T>,
    event: fn(u64, T) -> Event,
) -> Event {
    let text = String::from_utf8_lossy(&text.0);
    let decoded = serde_json::from_str(&text)
        .map_err(|e| e.to_string())
        .and_then(|json| decode(json, "").map_err(|e| e.to_string()));
    match decoded {
        Ok(response) => event(id, response),
        Err(message) => Event::InvalidResponse { id, message },
    }
}

#[test]
fn server_replies_are_taken_in_the_clients_stride() {
    let pulls = [
        fixture("pull-response"),
        fixture("pull-response-initial"),
        fixture("pull-response-schema-mismatch"),
    ];
    let pushes = [
        fixture("push-response"),
        fixture("push-response-custom-rejection"),
        fixture("push-response-schema-mismatch"),
    ];
    let generate = |rng: &mut Rng| {
        let pull = rng.chance(60);
        let text = if pull {
            reply_text(rng, &pulls)
        } else {
            Bytes(json::input(rng, &pushes))
        };
        (pull, text)
    };
    run("SyncClient replies", 2_000, generate, |(pull, text)| {
        let mut w = waiting_client();
        let event = if *pull {
            reply_event(w.pull_id, text, PullResponse::decode, |id, response| {
                Event::PullResponse { id, response }
            })
        } else {
            reply_event(w.push_id, text, PushResponse::decode, |id, response| {
                Event::PushResponse { id, response }
            })
        };
        let handled = w.client.handle(
            crate::engine::Now::at(2_000),
            event,
            &mut w.replica,
            &mut w.db,
        );
        if let Err(e) = handled {
            panic!("a server reply failed the client: {e}");
        }
        // The replica is still whole.
        w.replica.snapshot(&mut w.db).unwrap();
        w.replica.pending(&mut w.db).unwrap();
    });
}

/// A server with the sample app, a page of two rows (so a full pull pages
/// with cursors), and rows of alice's in every table.
fn server_with_rows() -> SqliteServer {
    let mut server = server().with_page_size(2);
    let mutations = [
        (
            "createList",
            json!({"id": "l1", "owner": "alice", "name": "a"}),
        ),
        (
            "createList",
            json!({"id": "l2", "owner": "alice", "name": "b"}),
        ),
        (
            "addTodo",
            json!({"id": "t1", "listId": "l1", "owner": "alice", "title": "x"}),
        ),
        (
            "addTodo",
            json!({"id": "t2", "listId": "l1", "owner": "alice", "title": "y"}),
        ),
        (
            "addTodo",
            json!({"id": "t3", "listId": "l2", "owner": "alice", "title": "z"}),
        ),
        (
            "tagTodo",
            json!({"todoId": "t1", "tag": "home", "owner": "alice"}),
        ),
        ("increment", json!({"id": "visits", "by": 3})),
        ("deleteTodo", json!({"id": "t3"})),
    ];
    let request = PushRequest {
        protocol_version: PROTOCOL_VERSION,
        schema_version: 1,
        client_group_id: "g1".into(),
        client_id: "c1".into(),
        mutations: mutations
            .into_iter()
            .zip(1..)
            .map(|((name, args), id)| Mutation {
                id,
                name: name.into(),
                args,
                timestamp: 0,
            })
            .collect(),
    };
    let PushResponse::Ok { results } = server.push("alice", &request).unwrap() else {
        panic!("schema mismatch");
    };
    assert!(results
        .iter()
        .all(|r| matches!(r, MutationResult::Ok { .. })));
    server
}

fn pull_request(cookie: Option<Cookie>) -> PullRequest {
    PullRequest {
        protocol_version: PROTOCOL_VERSION,
        schema_version: 1,
        client_group_id: "g1".into(),
        client_id: "c1".into(),
        cookie,
    }
}

/// The cursors a full pull of `server` hands out, page by page.
fn real_cursors(server: &mut SqliteServer) -> Vec<String> {
    let mut cursors = Vec::new();
    let mut cookie = None;
    loop {
        let PullResponse::Ok(ok) = server.pull("alice", &pull_request(cookie)).unwrap() else {
            panic!("schema mismatch");
        };
        if let Cookie::Text(cursor) = &ok.cookie {
            cursors.push(cursor.clone());
        }
        if !ok.more {
            break;
        }
        cookie = Some(ok.cookie);
    }
    assert!(cursors.len() >= 3, "{cursors:?}");
    cursors
}

/// A cookie a client might send: a real cursor with one part damaged (so
/// most get past the parser to the checks behind it) or damaged anywhere,
/// any string, an integer on the edges, or none.
fn client_cookie(rng: &mut Rng, cursors: &[String]) -> Option<Cookie> {
    let cursor = &cursors[rng.below(cursors.len())];
    Some(match rng.below(10) {
        0 | 1 => {
            let junk: [&[u8]; 3] = [b"full:", b"[\"", b"]"];
            let damaged = bytes::mutate(rng, cursor.as_bytes(), &junk);
            Cookie::Text(String::from_utf8_lossy(&damaged).into_owned())
        }
        2..=6 => {
            let mut parts: Vec<String> = cursor.splitn(4, ':').map(str::to_owned).collect();
            let part = &mut parts[1 + rng.below(3)];
            *part = match rng.below(3) {
                0 => rng
                    .pick(&[
                        "-1",
                        "0",
                        "9223372036854775807",
                        "-9223372036854775808",
                        "99999999999999999999",
                        "1.5",
                        " 1",
                        "",
                        "+2",
                    ])
                    .to_string(),
                1 => json::random(rng, 2).to_string(),
                _ => {
                    String::from_utf8_lossy(&bytes::mutate(rng, part.as_bytes(), &[])).into_owned()
                }
            };
            Cookie::Text(parts.join(":"))
        }
        7 => match json::random(rng, 0) {
            Json::String(text) => Cookie::Text(text),
            other => Cookie::Text(other.to_string()),
        },
        8 => Cookie::Integer(*rng.pick(&[i64::MIN, -1, 0, 1, 5, 8, 9, 10, i64::MAX])),
        _ => return None,
    })
}

#[test]
fn cookies_and_cursors_from_clients_are_taken_by_the_server() {
    let server = std::cell::RefCell::new(server_with_rows());
    let cursors = real_cursors(&mut server.borrow_mut());
    let generate = |rng: &mut Rng| client_cookie(rng, &cursors);
    run("SqliteServer::pull cookies", 5_000, generate, |cookie| {
        let server = &mut server.borrow_mut();
        let mut response = match server.pull("alice", &pull_request(cookie.clone())) {
            Ok(PullResponse::Ok(ok)) => ok,
            Ok(PullResponse::SchemaMismatch(_)) => return,
            Err(e) => panic!("a cookie failed the server: {e}"),
        };
        // Paging carries on from whatever cursor the server hands out, and
        // ends at an integer cookie.
        for _ in 0..20 {
            if !response.more {
                assert!(
                    matches!(response.cookie, Cookie::Integer(_)),
                    "{response:?}"
                );
                return;
            }
            let next = pull_request(Some(response.cookie.clone()));
            match server.pull("alice", &next) {
                Ok(PullResponse::Ok(ok)) => response = ok,
                other => panic!(
                    "the server's own cursor {:?} gave {other:?}",
                    response.cookie
                ),
            }
        }
        panic!("paging did not end");
    });
}

/// A push as the server gets it: the fixture damaged, or mutations of the
/// sample app's mutators with made-up arguments.
fn push_body(rng: &mut Rng, seeds: &[Json]) -> Bytes {
    if rng.chance(50) {
        return Bytes(json::input(rng, seeds));
    }
    let app = cached_app();
    let mutations: Vec<Json> = (0..rng.below(5))
        .map(|i| {
            let mutator = &app.mutators[rng.below(app.mutators.len())];
            let mut args = serde_json::Map::new();
            for param in &mutator.params {
                if rng.chance(90) {
                    let value = match rng.below(3) {
                        0 => json::random(rng, 1),
                        _ => json!(rng.pick(&["l1", "t1", "alice", "bob", ""])),
                    };
                    args.insert(param.name.clone(), value);
                }
            }
            let id = if rng.chance(90) {
                json!(i + 1)
            } else {
                json::random(rng, 0)
            };
            json!({"id": id, "name": mutator.name, "args": args, "timestamp": 0})
        })
        .collect();
    let mut body = seeds[0].clone();
    body["mutations"] = Json::Array(mutations);
    Bytes(body.to_string().into_bytes())
}

#[test]
fn pushes_from_clients_are_taken_by_the_server() {
    let seeds = [fixture("push-request")];
    run(
        "SqliteServer::push",
        2_000,
        |rng| push_body(rng, &seeds),
        |body| {
            // The server's way in (`server/src/sync_routes.rs`): serde over the body.
            let Ok(request) = serde_json::from_slice::<PushRequest>(&body.0) else {
                return;
            };
            let mut server = server();
            match server.push("alice", &request) {
                Ok(PushResponse::Ok { results }) => {
                    // Results follow the request's order, without gaps.
                    let sent: Vec<u64> = request.mutations.iter().map(|m| m.id).collect();
                    let answered: Vec<u64> = results.iter().map(MutationResult::id).collect();
                    assert_eq!(answered, sent[..answered.len()]);
                }
                Ok(PushResponse::SchemaMismatch(_)) => {}
                Err(e) => assert!(!e.to_string().is_empty()),
            }
            // Whatever happened, the server still serves.
            server.pull("alice", &pull_request(None)).unwrap();
        },
    );
}
