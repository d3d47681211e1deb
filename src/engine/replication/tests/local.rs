//! An app's local side: mutations, refused SQL, schema versions.

use super::*;

#[test]
fn a_mutation_applies_at_once_in_every_tab_and_queues_in_the_outbox() {
    let mut device = Device::new("c1", "alice", false);
    let (a, b) = (device.tab(), device.tab());
    for (tab, subscription, sql) in [
        (a, 1, "SELECT id FROM todos"),
        (b, 1, "SELECT id FROM todos"),
        (b, 2, "SELECT id, name FROM _ferry_outbox"),
    ] {
        device
            .engine
            .handle(
                tab,
                Request::Subscribe {
                    subscription,
                    sql: sql.into(),
                    params: vec![],
                },
            )
            .reply
            .unwrap();
    }
    let handled = device.engine.handle(
        a,
        Request::Mutate {
            name: "addTodo".into(),
            args: json!({"id": "t1", "listId": "l1", "owner": "alice", "title": "milk"}),
        },
    );
    assert_eq!(handled.reply.unwrap(), Response::Mutated { mutation_id: 1 });
    let tabs: Vec<_> = handled
        .updates
        .iter()
        .map(|u| (u.tab, u.updates.len()))
        .collect();
    assert_eq!(
        tabs,
        [(a, 1), (b, 2)],
        "todos in both tabs, the outbox in b"
    );
    assert!(
        handled.sync.effects.is_empty(),
        "no server: nothing to send"
    );
    assert_eq!(device.add_todo(a, "t2", "alice").unwrap(), 2);
    assert_eq!(
        device.column(b, "SELECT name FROM _ferry_outbox ORDER BY id"),
        [text("addTodo"), text("addTodo")]
    );
}

#[test]
fn a_mutation_that_fails_locally_leaves_nothing_behind() {
    let mut device = Device::new("c1", "alice", false);
    let tab = device.tab();
    device.add_todo(tab, "t1", "alice").unwrap();
    let failures = [
        ("nope", json!({}), ErrorCode::UnknownMutator),
        ("addTodo", json!({"id": "t2"}), ErrorCode::BadArguments),
        (
            "addTodo",
            json!({"id": "t1", "listId": "l1", "owner": "alice", "title": "again"}),
            ErrorCode::MutatorFailed,
        ),
    ];
    for (name, args, code) in failures {
        let error = device.mutate(tab, name, args).unwrap_err();
        assert_eq!(error.code(), code, "{error}");
    }
    assert_eq!(
        device.column(tab, "SELECT count(*) FROM _ferry_outbox"),
        [Value::Integer(1)]
    );
    assert_eq!(device.column(tab, "SELECT title FROM todos"), [text("t1")]);
    assert_eq!(
        device.add_todo(tab, "t3", "alice").unwrap(),
        2,
        "no id used up"
    );
}

#[test]
fn plain_sql_may_write_local_tables_but_not_synced_ones() {
    let mut device = Device::new("c1", "alice", false);
    let tab = device.tab();
    for sql in [
        "INSERT INTO todos (id, list_id, owner, title, done) VALUES ('x', 'l', 'alice', 'x', 0)",
        "DELETE FROM lists",
        "UPDATE _ferry_outbox SET confirmed = 1",
        "INSERT INTO todos (id, list_id, owner, title, done) VALUES ('y', 'l', 'alice', 'y', 0) RETURNING id",
    ] {
        let error = device.exec(tab, sql).unwrap_err();
        assert_eq!(error.code(), ErrorCode::WriteOutsideMutator, "{sql}");
    }
    device
        .exec(tab, "INSERT INTO drafts (id, body) VALUES ('d1', 'hi')")
        .unwrap();
    assert_eq!(device.column(tab, "SELECT body FROM drafts"), [text("hi")]);
    assert!(device.column(tab, "SELECT id FROM todos").is_empty());
}

#[test]
fn a_tab_of_an_older_build_is_refused_and_an_invalid_app_too() {
    let mut device = Device::new("c1", "alice", false);
    let tab = device.tab();
    assert_eq!(
        device
            .engine
            .open_app(tab, &app_json(), "ignored", None)
            .unwrap(),
        AppOpened::Already
    );

    let mut engine = Engine::open_in_memory().unwrap();
    let (new, old) = (engine.connect_tab(), engine.connect_tab());
    engine.open_app(new, &app_version(3), "c1", None).unwrap();
    let older = engine.open_app(old, &app_json(), "x", None);
    assert_eq!(older.unwrap_err().code(), ErrorCode::AppOutdated);
    let invalid =
        Engine::open_in_memory()
            .unwrap()
            .open_app(1, r#"{"version": 0, "tables": []}"#, "c", None);
    assert_eq!(invalid.unwrap_err().code(), ErrorCode::InvalidApp);
}

/// The sample app, version 2: a nullable column on `todos` and a mutator
/// that writes it.
fn app_with_notes() -> String {
    let mut app: Json = serde_json::from_str(&app_version(2)).unwrap();
    let todos = app["tables"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|t| t["name"] == "todos")
        .unwrap();
    todos["columns"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "note", "type": "text", "nullable": true}));
    app["mutators"].as_array_mut().unwrap().push(json!({
        "name": "setNote",
        "params": [{"name": "id", "type": "text"}, {"name": "note", "type": "text"}],
        "sql": "UPDATE todos SET note = :note WHERE id = :id"
    }));
    app.to_string()
}

#[test]
fn a_tab_of_a_newer_build_upgrades_the_replica_in_place_and_the_older_tabs_are_refused() {
    let mut device = Device::new("c1", "alice", false);
    let old = device.opener;
    let other_old = device.tab();
    device
        .engine
        .open_app(other_old, &app_json(), "x", None)
        .unwrap();
    let plain = device.tab(); // opened no app: plain SQL only
    let queued = device.add_todo(old, "queued", "alice").unwrap();

    let new = device.tab();
    let opened = device
        .engine
        .open_app(new, &app_with_notes(), "x", None)
        .unwrap();
    assert_eq!(
        opened,
        AppOpened::Upgraded {
            outdated: vec![old, other_old]
        },
        "the older tabs, not the one without an app"
    );
    assert_eq!(device.engine.replication().unwrap().app().version, 2);
    // The older tab's write is still queued, under the new schema.
    assert_eq!(
        device.column(new, "SELECT id FROM _ferry_outbox"),
        [Value::Integer(queued as i64)]
    );
    assert_eq!(device.column(new, "SELECT note FROM todos"), [Value::Null]);
    device
        .mutate(new, "setNote", json!({"id": "queued", "note": "hi"}))
        .unwrap();
    assert_eq!(device.column(plain, "SELECT note FROM todos"), [text("hi")]);

    // Another tab of the old build is refused now; a second one of the new
    // build shares the replica.
    let late = device.tab();
    let refused = device.engine.open_app(late, &app_json(), "x", None);
    assert_eq!(refused.unwrap_err().code(), ErrorCode::AppOutdated);
    let again = device.tab();
    assert_eq!(
        device
            .engine
            .open_app(again, &app_with_notes(), "x", None)
            .unwrap(),
        AppOpened::Already
    );
}

#[test]
fn an_upgrade_whose_mutators_do_not_prepare_changes_nothing() {
    let mut device = Device::new("c1", "alice", false);
    let mut app: Json = serde_json::from_str(&app_version(2)).unwrap();
    app["mutators"].as_array_mut().unwrap().push(json!({
        "name": "broken", "params": [], "sql": "UPDATE nowhere SET x = 1"
    }));
    let new = device.tab();
    let error = device
        .engine
        .open_app(new, &app.to_string(), "x", None)
        .unwrap_err();
    assert_eq!(error.code(), ErrorCode::InvalidApp);
    assert_eq!(device.engine.replication().unwrap().app().version, 1);
    device.add_todo(device.opener, "still", "alice").unwrap();
}

#[test]
fn a_replica_migrated_by_a_newer_build_refuses_an_older_one() {
    let dir = std::env::temp_dir().join(format!("ferrydb-replication-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("outdated.db");
    let _ = std::fs::remove_file(&path);
    let open = || {
        crate::engine::database::Database::from_connection(
            rusqlite::Connection::open(&path).unwrap(),
        )
        .unwrap()
    };
    Engine::new(open())
        .open_app(1, &app_version(2), "c1", None)
        .unwrap();
    let error = Engine::new(open())
        .open_app(1, &app_json(), "c1", None)
        .unwrap_err();
    assert_eq!(error.code(), ErrorCode::AppOutdated);
    let _ = std::fs::remove_dir_all(&dir);
}
