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
fn a_tab_with_another_schema_version_is_refused() {
    let mut device = Device::new("c1", "alice", false);
    assert_eq!(
        device
            .engine
            .open_app(&app_json(), "ignored", None)
            .unwrap(),
        AppOpened::Already
    );
    let newer = device.engine.open_app(&app_version(2), "x", None);
    assert_eq!(newer.unwrap_err().code(), ErrorCode::WorkerOutdated);

    let mut engine = Engine::open_in_memory().unwrap();
    engine.open_app(&app_version(3), "c1", None).unwrap();
    let older = engine.open_app(&app_json(), "x", None);
    assert_eq!(older.unwrap_err().code(), ErrorCode::AppOutdated);
    let invalid =
        Engine::open_in_memory()
            .unwrap()
            .open_app(r#"{"version": 0, "tables": []}"#, "c", None);
    assert_eq!(invalid.unwrap_err().code(), ErrorCode::InvalidApp);
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
        .open_app(&app_version(2), "c1", None)
        .unwrap();
    let error = Engine::new(open())
        .open_app(&app_json(), "c1", None)
        .unwrap_err();
    assert_eq!(error.code(), ErrorCode::AppOutdated);
    let _ = std::fs::remove_dir_all(&dir);
}
