//! Unit tests of the sync core. Shared helpers: the sample app, replicas over
//! in-memory databases, and a direct (network-free) push/pull against the
//! reference server's SQLite store (`SqliteServer`).

mod client;
mod fuzz;
mod migrate;
mod rebase;
mod replica;
mod subscriptions;
mod token_asks;

use super::*;
use crate::engine::database::Database;
use crate::engine::value::Value;
use ferrydb_protocol::{AppDefinition, PullResponse, PushResponse};
pub use ferrydb_server::store::SqliteServer;
use serde_json::{json, Value as Json};

pub fn sample_json() -> Json {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/app.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

pub fn sample_app() -> AppDefinition {
    AppDefinition::from_json(&sample_json().to_string()).unwrap()
}

/// A replica of the sample app over a fresh in-memory database.
pub fn client(id: &str) -> (Replica, Database) {
    let mut db = Database::open_in_memory().unwrap();
    let (replica, opened) = Replica::open(&mut db, sample_app(), id).unwrap();
    assert_eq!(opened, Opened::Created);
    (replica, db)
}

/// A replica of a variant of the sample app.
pub fn client_with(app: Json) -> (Replica, Database) {
    let app = AppDefinition::from_json(&app.to_string()).unwrap();
    let mut db = Database::open_in_memory().unwrap();
    let (replica, _) = Replica::open(&mut db, app, "c1").unwrap();
    (replica, db)
}

/// The sample app with queries (so it syncs by subscription, protocol v2).
pub fn app_with_queries() -> Json {
    let mut app = sample_json();
    app["queries"] = json!([
        {
            "name": "todosOf",
            "params": [
                { "name": "list_id", "type": "text" },
                { "name": "min_done", "type": "integer", "nullable": true }
            ],
            "parts": [{ "table": "todos", "where": "list_id = :list_id AND owner = :user_id AND (:min_done IS NULL OR done >= :min_done)" }]
        },
        {
            "name": "myLists", "params": [], "syncOnOpen": true,
            "parts": [{ "table": "lists", "where": "owner = :user_id" }]
        }
    ]);
    app
}

pub fn server() -> SqliteServer {
    SqliteServer::new(sample_app()).unwrap()
}

/// Pushes everything unconfirmed, then pulls until caught up.
pub fn sync(replica: &mut Replica, db: &mut Database, server: &mut SqliteServer, user: &str) {
    push(replica, db, server, user);
    pull(replica, db, server, user);
}

pub fn push(
    replica: &mut Replica,
    db: &mut Database,
    server: &mut SqliteServer,
    user: &str,
) -> Vec<Rejection> {
    let Some(request) = replica.push_request(db, 1000, None).unwrap() else {
        return vec![];
    };
    let PushResponse::Ok { results } = server.push(user, &request).unwrap() else {
        panic!("schema mismatch");
    };
    replica.apply_push(db, &results, 0).unwrap().rejected
}

pub fn pull(replica: &mut Replica, db: &mut Database, server: &mut SqliteServer, user: &str) {
    loop {
        let PullResponse::Ok(ok) = server.pull(user, &replica.pull_request()).unwrap() else {
            panic!("schema mismatch");
        };
        replica.apply_pull(db, &ok).unwrap();
        if !ok.more {
            break;
        }
    }
}

pub fn mutate(replica: &Replica, db: &mut Database, name: &str, args: Json) -> u64 {
    replica.mutate(db, name, &args, 0).unwrap().id
}

pub fn add_todo(replica: &Replica, db: &mut Database, id: &str, owner: &str, title: &str) -> u64 {
    mutate(
        replica,
        db,
        "addTodo",
        json!({"id": id, "listId": "l1", "owner": owner, "title": title}),
    )
}

/// One column of one table, in key order.
pub fn column(db: &mut Database, sql: &str) -> Vec<Value> {
    db.rows(sql, &[])
        .unwrap()
        .rows
        .into_iter()
        .map(|mut r| r.remove(0))
        .collect()
}

pub fn text(s: &str) -> Value {
    Value::Text(s.into())
}
