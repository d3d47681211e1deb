//! Mutations, the outbox, the write guard and the error codes of each.

use super::*;

#[test]
fn a_mutation_applies_locally_and_is_queued() {
    let (replica, mut db) = client("c1");
    let mutated = replica
        .mutate(
            &mut db,
            "addTodo",
            &json!({"id": "t1", "listId": "l1", "owner": "u1", "title": "milk"}),
            1234,
        )
        .unwrap();
    assert_eq!(mutated.id, 1);
    assert_eq!(
        mutated.changed,
        ["_ferry_outbox", "todos"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    assert_eq!(column(&mut db, "SELECT title FROM todos"), [text("milk")]);
    let pending = replica.pending(&mut db).unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        (
            pending[0].id,
            pending[0].name.as_str(),
            pending[0].created_at
        ),
        (1, "addTodo", 1234)
    );
    assert_eq!(pending[0].args["title"], "milk");
    assert_eq!(
        mutate(&replica, &mut db, "increment", json!({"id": "c", "by": 2})),
        2
    );
    let push = replica.push_request(&mut db, 10, None).unwrap().unwrap();
    assert_eq!(push.client_id, "c1");
    assert_eq!(push.schema_version, 1);
    assert_eq!(
        push.mutations.iter().map(|m| m.id).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(
        replica
            .push_request(&mut db, 1, None)
            .unwrap()
            .unwrap()
            .mutations
            .len(),
        1
    );
}

#[test]
fn a_failing_mutator_leaves_nothing_behind() {
    let mut app = sample_json();
    app["mutators"].as_array_mut().unwrap().push(json!({
        "name": "addPair",
        "params": [{"name": "a", "type": "text"}, {"name": "b", "type": "text"}],
        "sql": ["INSERT INTO counters (id, value) VALUES (:a, 1)", "INSERT INTO counters (id, value) VALUES (:b, 1)"]
    }));
    let (replica, mut db) = client_with(app);
    mutate(&replica, &mut db, "addPair", json!({"a": "x", "b": "y"}));
    // The second statement fails (duplicate key) after the first succeeded.
    let err = replica
        .mutate(&mut db, "addPair", &json!({"a": "z", "b": "z"}), 0)
        .unwrap_err();
    assert_eq!(err.code(), "mutator_failed");
    assert!(
        err.to_string().starts_with("mutator `addPair` failed: "),
        "{err}"
    );
    assert_eq!(replica.pending_count(&mut db).unwrap(), 1);
    assert_eq!(
        column(&mut db, "SELECT id FROM counters ORDER BY id"),
        [text("x"), text("y")]
    );
    assert!(column(
        &mut db,
        "SELECT id FROM _ferry_undo_counters WHERE id = 'z'"
    )
    .is_empty());
    // The failed call did not use up a mutation ID.
    assert_eq!(
        mutate(&replica, &mut db, "addPair", json!({"a": "p", "b": "q"})),
        2
    );
}

#[test]
fn multi_statement_mutators_are_all_or_nothing() {
    let (replica, mut db) = client("c1");
    add_todo(&replica, &mut db, "t1", "u1", "a");
    mutate(
        &replica,
        &mut db,
        "tagTodo",
        json!({"todoId": "t1", "tag": "x", "owner": "u1"}),
    );
    mutate(&replica, &mut db, "deleteTodo", json!({"id": "t1"}));
    assert!(column(&mut db, "SELECT todo_id FROM todo_tags").is_empty());
    assert!(column(&mut db, "SELECT id FROM todos").is_empty());
}

#[test]
fn unknown_mutators_and_bad_arguments_are_refused_before_running() {
    let (replica, mut db) = client("c1");
    let err = replica.mutate(&mut db, "nope", &json!({}), 0).unwrap_err();
    assert_eq!(err.code(), "unknown_mutator");
    for (args, why) in [
        (json!({"id": "t1"}), "`by` is required"),
        (json!({"id": "t1", "by": "2"}), "`by`: expected an integer"),
        (
            json!({"id": "t1", "by": 1, "extra": 1}),
            "unknown argument `extra`",
        ),
        (json!([1]), "arguments must be an object"),
    ] {
        let err = replica.mutate(&mut db, "increment", &args, 0).unwrap_err();
        assert_eq!(err.code(), "bad_arguments");
        assert!(err.to_string().contains(why), "{err} should say {why}");
    }
    // Nullable parameters may be left out.
    mutate(&replica, &mut db, "setTodoMeta", json!({"id": "t1"}));
    assert_eq!(replica.pending_count(&mut db).unwrap(), 1);
}

#[test]
fn plain_sql_may_not_write_synced_or_internal_tables() {
    let (replica, mut db) = client("c1");
    for sql in [
        "INSERT INTO todos (id, list_id, owner, title, done) VALUES ('x', 'l', 'u', 't', 0)",
        "UPDATE counters SET value = 1",
        "DELETE FROM todo_tags",
        "DROP TABLE lists",
        "DELETE FROM _ferry_outbox",
        "UPDATE _ferry_meta SET value = 0",
    ] {
        let access = db.access(sql).unwrap();
        let err = replica.guard(&access).unwrap_err();
        assert_eq!(err.code(), "write_outside_mutator", "{sql}");
    }
    for sql in [
        "SELECT * FROM todos",
        "INSERT INTO drafts (id, body) VALUES ('d', 'x')",
        "SELECT * FROM _ferry_rejections",
    ] {
        let access = db.access(sql).unwrap();
        replica.guard(&access).unwrap();
    }
    let err = replica
        .guard(&db.access("DELETE FROM todos").unwrap())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "table `todos` is synced: change it through a mutator, not plain SQL"
    );
}

#[test]
fn rejections_leave_the_outbox_for_the_log_and_never_block_the_queue() {
    let (mut replica, mut db) = client("c1");
    let mut server = server();
    add_todo(&replica, &mut db, "mine", "u1", "a");
    add_todo(&replica, &mut db, "theirs", "u2", "b"); // u1 may not write u2's rows
    mutate(&replica, &mut db, "increment", json!({"id": "c", "by": 1}));
    let rejected = push(&mut replica, &mut db, &mut server, "u1");
    assert_eq!(rejected.len(), 1);
    assert_eq!(
        (rejected[0].mutation_id, rejected[0].code.as_str()),
        (2, "forbidden")
    );
    // Until the next pull, the rejected effect is still visible; the others wait for their ack.
    assert_eq!(
        column(&mut db, "SELECT id FROM todos"),
        [text("mine"), text("theirs")]
    );
    assert_eq!(
        replica
            .pending(&mut db)
            .unwrap()
            .iter()
            .map(|p| p.id)
            .collect::<Vec<_>>(),
        [1, 3]
    );
    pull(&mut replica, &mut db, &mut server, "u1");
    assert_eq!(column(&mut db, "SELECT id FROM todos"), [text("mine")]);
    assert_eq!(replica.pending_count(&mut db).unwrap(), 0);
    let log = replica.rejections(&mut db).unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].name, "addTodo");
    assert_eq!(log[0].args["owner"], "u2");
    assert_eq!(
        column(&mut db, "SELECT code FROM _ferry_rejections"),
        [text("forbidden")]
    );
    replica.clear_rejections(&mut db).unwrap();
    assert!(replica.rejections(&mut db).unwrap().is_empty());
}

#[test]
fn duplicated_push_replies_change_nothing() {
    let (mut replica, mut db) = client("c1");
    let mut server = server();
    add_todo(&replica, &mut db, "t", "u2", "x");
    let request = replica.push_request(&mut db, 10, None).unwrap().unwrap();
    let PushResponse::Ok { results } = server.push("u1", &request).unwrap() else {
        panic!()
    };
    assert_eq!(
        replica
            .apply_push(&mut db, &results, 0)
            .unwrap()
            .rejected
            .len(),
        1
    );
    let again = replica.apply_push(&mut db, &results, 0).unwrap();
    assert!(again.rejected.is_empty() && again.changed.is_empty());
    assert_eq!(replica.rejections(&mut db).unwrap().len(), 1);
}

#[test]
fn error_codes_are_stable_and_say_whether_to_retry() {
    use crate::engine::error::Error as EngineError;
    let cases: Vec<(Error, &str, bool)> = vec![
        (
            Error::WriteOutsideMutator { table: "t".into() },
            "write_outside_mutator",
            false,
        ),
        (
            Error::MutatorFailed {
                mutator: "m".into(),
                message: "x".into(),
            },
            "mutator_failed",
            false,
        ),
        (
            Error::AppOutdated {
                app_version: 1,
                replica_version: 2,
            },
            "app_outdated",
            false,
        ),
        (Error::UnknownMutator("m".into()), "unknown_mutator", false),
        (
            Error::BadArguments {
                mutator: "m".into(),
                message: "x".into(),
            },
            "bad_arguments",
            false,
        ),
        (Error::InvalidApp("x".into()), "invalid_app", false),
        (Error::BadResponse("x".into()), "bad_response", true),
        (
            Error::Engine(EngineError::Internal("x".into())),
            "internal",
            false,
        ),
        (
            Error::from(rusqlite::Error::InvalidQuery),
            "sql_error",
            false,
        ),
    ];
    for (error, code, retryable) in cases {
        assert_eq!(
            (error.code(), error.retryable()),
            (code, retryable),
            "{error}"
        );
    }
}
