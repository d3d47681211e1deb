//! The model server: write rules on old and new images, idempotent pushes,
//! gaps, replayed rejections, read filtering with tombstones, schema checks.

use super::*;
use ferrydb_protocol::{
    Cookie, MismatchAction, Mutation, MutationResult, PatchOp, PullRequest, PushRequest,
    RejectionCode, PROTOCOL_VERSION,
};

fn push_request(client: &str, mutations: &[(u64, &str, Json)]) -> PushRequest {
    PushRequest {
        protocol_version: PROTOCOL_VERSION,
        schema_version: 1,
        client_group_id: client.into(),
        client_id: client.into(),
        mutations: mutations
            .iter()
            .map(|(id, name, args)| Mutation {
                id: *id,
                name: (*name).into(),
                args: args.clone(),
                timestamp: 0,
            })
            .collect(),
    }
}

fn results(server: &mut ModelServer, user: &str, request: &PushRequest) -> Vec<MutationResult> {
    match server.push(user, request).unwrap() {
        PushResponse::Ok { results } => results,
        other => panic!("{other:?}"),
    }
}

fn code(result: &MutationResult) -> &str {
    match result {
        MutationResult::Ok { .. } => "ok",
        MutationResult::AlreadyProcessed { .. } => "alreadyProcessed",
        MutationResult::Rejected { code, .. } => code.as_str(),
    }
}

fn todo(id: &str, owner: &str) -> Json {
    json!({"id": id, "listId": "l", "owner": owner, "title": "x"})
}

#[test]
fn every_rejection_code_and_idempotent_retries() {
    let mut server = server();
    let request = push_request(
        "c",
        &[
            (1, "addTodo", todo("t1", "alice")),
            (2, "addTodo", todo("t2", "bob")), // writes a row alice may not own
            (3, "nope", json!({})),            // unknown mutator
            (4, "increment", json!({"id": "c"})), // missing argument
            (5, "addTodo", todo("t1", "alice")), // duplicate key on the server
            (6, "increment", json!({"id": "c", "by": 1})),
        ],
    );
    let first = results(&mut server, "alice", &request);
    let codes: Vec<&str> = first.iter().map(code).collect();
    assert_eq!(
        codes,
        [
            "ok",
            "forbidden",
            "unknown_mutator",
            "bad_arguments",
            "mutator_failed",
            "ok"
        ]
    );
    // The same push again (a lost reply): nothing runs twice, rejections come back the same.
    let again = results(&mut server, "alice", &request);
    let codes: Vec<&str> = again.iter().map(code).collect();
    assert_eq!(
        codes,
        [
            "alreadyProcessed",
            "forbidden",
            "unknown_mutator",
            "bad_arguments",
            "mutator_failed",
            "alreadyProcessed"
        ]
    );
    assert!(server.executions().unwrap().values().all(|&n| n == 1));
    assert_eq!(server.executions().unwrap().len(), 6);
    assert_eq!(server.last_mutation_id("c").unwrap(), 6);
    assert_eq!(
        server
            .rejections("c")
            .unwrap()
            .iter()
            .map(|r| r.0)
            .collect::<Vec<_>>(),
        [2, 3, 4, 5]
    );
    assert_eq!(server.readable_rows("alice").unwrap()["todos"].len(), 1);
    assert!(server.readable_rows("bob").unwrap()["todos"].is_empty());
}

#[test]
fn write_rules_check_the_row_before_and_after() {
    let mut server = server();
    results(
        &mut server,
        "alice",
        &push_request("a", &[(1, "addTodo", todo("t1", "alice"))]),
    );
    // bob may not touch alice's row (the old image fails the rule) …
    let r = results(
        &mut server,
        "bob",
        &push_request(
            "b",
            &[(1, "renameTodo", json!({"id": "t1", "title": "mine"}))],
        ),
    );
    assert!(
        matches!(&r[0], MutationResult::Rejected { code: RejectionCode::Forbidden, message, .. } if message.contains("todos"))
    );
    // … and alice may not give her row away (the new image fails it).
    let mut app = sample_json();
    app["mutators"].as_array_mut().unwrap().push(json!({
        "name": "giveAway", "params": [{"name": "id", "type": "text"}, {"name": "to", "type": "text"}],
        "sql": "UPDATE todos SET owner = :to WHERE id = :id"
    }));
    let mut server = ModelServer::new(AppDefinition::from_json(&app.to_string()).unwrap()).unwrap();
    results(
        &mut server,
        "alice",
        &push_request("a", &[(1, "addTodo", todo("t1", "alice"))]),
    );
    let r = results(
        &mut server,
        "alice",
        &push_request("a", &[(2, "giveAway", json!({"id": "t1", "to": "bob"}))]),
    );
    assert_eq!(code(&r[0]), "forbidden");
    assert_eq!(
        server.readable_rows("alice").unwrap()["todos"][0]["title"],
        "x"
    );
}

#[test]
fn a_gap_stops_the_batch() {
    let mut server = server();
    let r = results(
        &mut server,
        "u",
        &push_request("c", &[(2, "increment", json!({"id": "c", "by": 1}))]),
    );
    assert!(r.is_empty());
    assert!(server.executions().unwrap().is_empty());
}

#[test]
fn pulls_send_only_readable_rows_and_tombstones_for_the_rest() {
    let mut server = server();
    let mut pull_req = PullRequest {
        protocol_version: PROTOCOL_VERSION,
        schema_version: 1,
        client_group_id: "b".into(),
        client_id: "b".into(),
        cookie: None,
    };
    results(
        &mut server,
        "alice",
        &push_request(
            "a",
            &[
                (1, "addTodo", todo("t1", "alice")),
                (2, "increment", json!({"id": "n", "by": 1})),
            ],
        ),
    );
    let PullResponse::Ok(first) = server.pull("bob", &pull_req).unwrap() else {
        panic!()
    };
    assert_eq!(first.patch[0], PatchOp::Clear);
    let tables: Vec<&str> = first.patch[1..]
        .iter()
        .map(|op| match op {
            PatchOp::Put { table, .. } => table.as_str(),
            _ => "?",
        })
        .collect();
    assert_eq!(
        tables,
        ["counters"],
        "bob sees the shared counter, not alice's todo"
    );
    assert!(
        first.last_mutation_id_changes.is_empty(),
        "only the group's own clients are reported"
    );
    pull_req.cookie = Some(first.cookie.clone());
    results(
        &mut server,
        "alice",
        &push_request(
            "a",
            &[
                (3, "deleteTodo", json!({"id": "t1"})),
                (4, "increment", json!({"id": "n", "by": 1})),
            ],
        ),
    );
    let PullResponse::Ok(next) = server.pull("bob", &pull_req).unwrap() else {
        panic!()
    };
    assert!(next.patch.contains(&PatchOp::Del {
        table: "todos".into(),
        key: json!({"id": "t1"}).as_object().unwrap().clone()
    }));
    assert!(next.patch.iter().any(
        |op| matches!(op, PatchOp::Put { table, row } if table == "counters" && row["value"] == 2)
    ));
    assert_eq!(next.cookie, Cookie::Integer(server.version().unwrap()));
    // alice's own pull reports her last mutation.
    let mut alice = pull_req.clone();
    alice.client_group_id = "a".into();
    let PullResponse::Ok(hers) = server.pull("alice", &alice).unwrap() else {
        panic!()
    };
    assert_eq!(hers.last_mutation_id_changes["a"], 4);
}

#[test]
fn schema_versions_are_compared_on_every_exchange() {
    let mut app = sample_app();
    app.version = 2;
    let mut server = ModelServer::new(app).unwrap();
    let request = push_request("c", &[]);
    let PushResponse::SchemaMismatch(m) = server.push("u", &request).unwrap() else {
        panic!()
    };
    assert_eq!(
        (m.server_schema_version, m.action),
        (2, MismatchAction::UpdateApp)
    );
    let mut newer = request.clone();
    newer.schema_version = 3;
    let PushResponse::SchemaMismatch(m) = server.push("u", &newer).unwrap() else {
        panic!()
    };
    assert_eq!(m.action, MismatchAction::RetryLater);
}

#[test]
fn a_cookie_from_the_future_gets_a_reset() {
    let mut server = server();
    let request = PullRequest {
        protocol_version: PROTOCOL_VERSION,
        schema_version: 1,
        client_group_id: "c".into(),
        client_id: "c".into(),
        cookie: Some(Cookie::Integer(99)),
    };
    let PullResponse::SchemaMismatch(m) = server.pull("u", &request).unwrap() else {
        panic!()
    };
    assert_eq!(m.action, MismatchAction::ResetReplica);
    let mut garbage = request.clone();
    garbage.cookie = Some(Cookie::Text("nonsense".into()));
    assert!(matches!(
        server.pull("u", &garbage).unwrap(),
        PullResponse::SchemaMismatch(_)
    ));
}

#[test]
fn a_client_belongs_to_the_user_who_first_used_it() {
    let mut server = server();
    results(
        &mut server,
        "alice",
        &push_request("a", &[(1, "increment", json!({"id": "c", "by": 1}))]),
    );
    // bob can neither push as alice's client nor join its group …
    let forged = push_request("a", &[(2, "increment", json!({"id": "c", "by": 5}))]);
    let err = server.push("bob", &forged).unwrap_err();
    assert_eq!(err.code(), "forbidden");
    let mut joined = push_request("b", &[(1, "increment", json!({"id": "c", "by": 5}))]);
    joined.client_group_id = "a".into();
    assert_eq!(server.push("bob", &joined).unwrap_err().code(), "forbidden");
    // … nor pull its lastMutationIDs.
    let pull = PullRequest {
        protocol_version: PROTOCOL_VERSION,
        schema_version: 1,
        client_group_id: "a".into(),
        client_id: "b".into(),
        cookie: None,
    };
    assert_eq!(server.pull("bob", &pull).unwrap_err().code(), "forbidden");
    // Nothing bob sent ran.
    assert_eq!(
        server.readable_rows("bob").unwrap()["counters"][0]["value"],
        1
    );
    assert_eq!(server.executions().unwrap().len(), 1);
}

#[test]
fn a_file_backed_server_keeps_its_state_and_refuses_changed_tables() {
    let dir = std::env::temp_dir().join(format!("ferrydb-model-server-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("server.db");
    let _ = std::fs::remove_file(&path);
    let open = |app: AppDefinition| {
        let conn = rusqlite::Connection::open(&path).unwrap();
        ModelServer::open(Database::from_connection(conn).unwrap(), app)
    };
    let mut first = open(sample_app()).unwrap();
    results(
        &mut first,
        "alice",
        &push_request("a", &[(1, "addTodo", todo("t1", "alice"))]),
    );
    drop(first);
    // Same app again, and a newer app that only adds a table: data and
    // bookkeeping survive; the retried push is recognised as processed.
    let mut app = sample_json();
    app["version"] = json!(2);
    app["tables"].as_array_mut().unwrap().push(json!({
        "name": "notes", "columns": [{"name": "id", "type": "text"}],
        "primaryKey": ["id"], "access": {"read": "true", "write": "true"}
    }));
    let app = AppDefinition::from_json(&app.to_string()).unwrap();
    let mut second = open(app).unwrap();
    let mut retry = push_request("a", &[(1, "addTodo", todo("t1", "alice"))]);
    retry.schema_version = 2;
    assert_eq!(
        code(&results(&mut second, "alice", &retry)[0]),
        "alreadyProcessed"
    );
    assert_eq!(second.readable_rows("alice").unwrap()["todos"].len(), 1);
    assert!(second.readable_rows("alice").unwrap()["notes"].is_empty());
    assert_eq!(
        second.mutation_log().unwrap(),
        [LoggedMutation {
            client_id: "a".into(),
            id: 1,
            name: "addTodo".into(),
            outcome: "ok".into()
        }]
    );
    drop(second);
    // A column change cannot be migrated in place: refused, nothing touched.
    let mut changed = sample_json();
    changed["tables"][0]["columns"][2]["type"] = json!("integer");
    let err = open(AppDefinition::from_json(&changed.to_string()).unwrap())
        .err()
        .unwrap();
    assert_eq!(err.code(), "invalid_app");
    assert!(err.to_string().contains("`lists`"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_cursor_cookie_the_server_could_not_have_written_resets_the_replica() {
    let mut server = server();
    for cursor in [
        r#"full:0:0:["a","b"]"#,
        r#"full:0:9:["a"]"#,
        "full:0:0:[1.5]",
        "nonsense",
    ] {
        let pull = PullRequest {
            protocol_version: PROTOCOL_VERSION,
            schema_version: 1,
            client_group_id: "c".into(),
            client_id: "c".into(),
            cookie: Some(Cookie::Text(cursor.into())),
        };
        match server.pull("u", &pull).unwrap() {
            PullResponse::SchemaMismatch(m) => {
                assert_eq!(m.action, MismatchAction::ResetReplica, "{cursor}")
            }
            other => panic!("{cursor}: {other:?}"),
        }
    }
}
