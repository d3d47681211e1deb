//! Fuzz tests of what the sync client reads from the other side (see
//! `tests/fuzz`, the `ferrydb-fuzz` crate): a client handling whatever a
//! server replies. Inputs start from the golden fixtures, damaged; nothing
//! may panic, and the client must take any reply in its stride (its errors
//! are reserved for its own database failing). What a client may send the
//! server is fuzzed on the server's side, over HTTP and both stores
//! (`server/tests/fuzz.rs`).
//!
//! Each target prints its number of cases; `FERRYDB_FUZZ_CASES=n` runs n of
//! each, `FERRYDB_FUZZ_SEED=s` replays the case a failure names.

use super::*;
use ferrydb_fuzz::{json, run, Bytes, Rng};

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
