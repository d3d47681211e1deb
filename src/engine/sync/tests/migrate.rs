//! The schema-version check on open: create, reopen, additive migration,
//! rebuild keeping the outbox, local-table changes, `app_outdated`,
//! `invalid_app`.

use super::*;
use ferrydb_protocol::Cookie;

fn app(json: &Json) -> AppDefinition {
    AppDefinition::from_json(&json.to_string()).unwrap()
}

fn table<'a>(app: &'a mut Json, name: &str) -> &'a mut Json {
    app["tables"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|t| t["name"] == name)
        .unwrap()
}

/// A replica with a synced row from the server, a pending mutation, a draft
/// and a cookie: everything a migration must treat right.
fn populated() -> (Database, Replica) {
    let mut server = server();
    let (mut replica, mut db) = client("c1");
    add_todo(&replica, &mut db, "t1", "u", "synced");
    sync(&mut replica, &mut db, &mut server, "u");
    add_todo(&replica, &mut db, "t2", "u", "pending");
    db.execute("INSERT INTO drafts (id, body) VALUES ('d', 'draft')", &[])
        .unwrap();
    assert!(replica.cookie().is_some());
    (db, replica)
}

#[test]
fn reopening_with_the_same_app_changes_nothing() {
    let (mut db, replica) = populated();
    drop(replica);
    let (replica, opened) = Replica::open(&mut db, sample_app(), "other").unwrap();
    assert_eq!(opened, Opened::Unchanged);
    assert_eq!(replica.client_id(), "c1", "the client ID is kept");
    assert!(replica.cookie().is_some());
    assert_eq!(
        column(&mut db, "SELECT id FROM todos"),
        [text("t1"), text("t2")]
    );
    assert_eq!(
        add_todo(&replica, &mut db, "t3", "u", "x"),
        3,
        "mutation IDs continue"
    );
}

#[test]
fn additions_migrate_in_place_and_pull_again_in_full() {
    let (mut db, replica) = populated();
    drop(replica);
    let mut next = sample_json();
    next["version"] = json!(2);
    table(&mut next, "todos")["columns"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "due", "type": "integer", "nullable": true}));
    next["tables"].as_array_mut().unwrap().push(json!({
        "name": "notes", "columns": [{"name": "id", "type": "text"}], "primaryKey": ["id"],
        "access": {"read": "true", "write": "true"}
    }));
    next["localTables"][0]["columns"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "pinned", "type": "boolean", "nullable": true}));
    next["localTables"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "ui", "columns": [{"name": "k", "type": "text"}]}));
    let (replica, opened) = Replica::open(&mut db, app(&next), "x").unwrap();
    assert_eq!(opened, Opened::Migrated);
    assert_eq!(replica.cookie(), None, "new columns need a full pull");
    assert_eq!(
        column(&mut db, "SELECT id FROM todos"),
        [text("t1"), text("t2")]
    );
    assert_eq!(column(&mut db, "SELECT body FROM drafts"), [text("draft")]);
    assert_eq!(replica.pending_count(&mut db).unwrap(), 1);
    db.execute("INSERT INTO ui (k) VALUES ('x')", &[]).unwrap();
    // The undo log follows the new column: a rebase restores it too.
    mutate(&replica, &mut db, "toggleTodo", json!({"id": "t1"}));
    assert_eq!(
        column(
            &mut db,
            "SELECT count(*) FROM _ferry_undo_todos WHERE due IS NULL"
        ),
        [Value::Integer(2)]
    );
}

#[test]
fn incompatible_changes_rebuild_synced_tables_and_keep_the_outbox() {
    let (mut db, replica) = populated();
    drop(replica);
    let mut next = sample_json();
    next["version"] = json!(2);
    // `meta` is dropped: not something ALTER can do portably.
    table(&mut next, "todos")["columns"]
        .as_array_mut()
        .unwrap()
        .pop();
    next["mutators"]
        .as_array_mut()
        .unwrap()
        .retain(|m| m["name"] != "setTodoMeta");
    let (replica, opened) = Replica::open(&mut db, app(&next), "x").unwrap();
    assert_eq!(opened, Opened::Rebuilt);
    assert_eq!(replica.cookie(), None);
    // The server's row is gone until the next pull; the pending one was re-run.
    assert_eq!(column(&mut db, "SELECT id FROM todos"), [text("t2")]);
    assert_eq!(replica.pending_count(&mut db).unwrap(), 1);
    assert_eq!(
        column(&mut db, "SELECT body FROM drafts"),
        [text("draft")],
        "unchanged local tables stay"
    );
}

#[test]
fn a_changed_key_or_retyped_column_also_rebuilds() {
    for edit in [
        (|a: &mut Json| table(a, "todo_tags")["primaryKey"] = json!(["tag", "todo_id"]))
            as fn(&mut Json),
        |a| table(a, "counters")["columns"][1]["type"] = json!("real"),
        |a| table(a, "lists")["columns"][2]["nullable"] = json!(true),
        |a| {
            a["tables"]
                .as_array_mut()
                .unwrap()
                .retain(|t| t["name"] != "counters");
            a["mutators"]
                .as_array_mut()
                .unwrap()
                .retain(|m| m["name"] != "increment");
        },
    ] {
        let (mut db, replica) = populated();
        drop(replica);
        let mut next = sample_json();
        next["version"] = json!(2);
        edit(&mut next);
        let (_, opened) = Replica::open(&mut db, app(&next), "x").unwrap();
        assert_eq!(opened, Opened::Rebuilt, "{next}");
    }
}

#[test]
fn an_incompatible_local_table_is_recreated_alone() {
    let (mut db, replica) = populated();
    drop(replica);
    let mut next = sample_json();
    next["localTables"][0]["columns"][1]["nullable"] = json!(false);
    let (replica, opened) = Replica::open(&mut db, app(&next), "x").unwrap();
    assert_eq!(opened, Opened::Migrated);
    assert!(column(&mut db, "SELECT id FROM drafts").is_empty());
    assert!(replica.cookie().is_some(), "synced data is untouched");
    assert_eq!(
        column(&mut db, "SELECT id FROM todos"),
        [text("t1"), text("t2")]
    );
}

#[test]
fn an_older_app_than_the_replica_is_refused_and_changes_nothing() {
    let (mut db, replica) = populated();
    drop(replica);
    let mut next = sample_json();
    next["version"] = json!(3);
    Replica::open(&mut db, app(&next), "x").unwrap();
    let Err(err) = Replica::open(&mut db, sample_app(), "x") else {
        panic!("opened")
    };
    assert_eq!(err.code(), "app_outdated");
    assert!(
        err.to_string().contains("schema version 1")
            && err.to_string().contains("schema version 3"),
        "{err}"
    );
    let (_, opened) = Replica::open(&mut db, app(&next), "x").unwrap();
    assert_eq!(opened, Opened::Unchanged);
}

#[test]
fn mutators_that_do_not_prepare_are_an_invalid_app() {
    let mut bad = sample_json();
    bad["mutators"][1]["sql"] = json!("UPDATE lists SET nam = :name WHERE id = :id");
    let mut db = Database::open_in_memory().unwrap();
    let Err(err) = Replica::open(&mut db, app(&bad), "c1") else {
        panic!("opened")
    };
    assert_eq!(err.code(), "invalid_app");
    assert!(
        err.to_string().contains("mutator `renameList`") && err.to_string().contains("nam"),
        "{err}"
    );
    assert!(
        column(&mut db, "SELECT name FROM sqlite_master").is_empty(),
        "nothing was created"
    );
    // A definition that fails validation is refused the same way.
    let mut invalid = sample_app();
    invalid.version = 0;
    let Err(err) = Replica::open(&mut db, invalid, "c1") else {
        panic!("opened")
    };
    assert_eq!(err.code(), "invalid_app");
}

#[test]
fn a_server_demanded_reset_keeps_the_outbox() {
    let (mut db, mut replica) = populated();
    let changed = replica.reset(&mut db).unwrap();
    assert!(changed.contains("todos"));
    assert_eq!(replica.cookie(), None);
    assert_eq!(column(&mut db, "SELECT id FROM todos"), [text("t2")]);
    assert_eq!(replica.pending_count(&mut db).unwrap(), 1);
    let (replica, _) = Replica::open(&mut db, sample_app(), "x").unwrap();
    assert_eq!(replica.cookie(), None::<&Cookie>);
}
