//! Rebase: server changes land under pending mutations, which re-run on top.

use super::*;
use ferrydb_protocol::{Cookie, PatchOp, PullOk};
use std::collections::BTreeMap;

fn counter(db: &mut Database, id: &str) -> Option<Value> {
    db.rows("SELECT value FROM counters WHERE id = ?1", &[text(id)])
        .unwrap()
        .rows
        .into_iter()
        .next()
        .map(|mut r| r.remove(0))
}

fn pull_ok(cookie: i64, acked: Option<(&str, u64)>, patch: Vec<PatchOp>) -> PullOk {
    PullOk {
        cookie: Cookie::Integer(cookie),
        last_mutation_id_changes: acked
            .map(|(c, id)| (c.to_owned(), id))
            .into_iter()
            .collect::<BTreeMap<_, _>>(),
        patch,
        more: false,
        subscriptions: Vec::new(),
    }
}

fn put_counter(id: &str, value: i64) -> PatchOp {
    PatchOp::Put {
        table: "counters".into(),
        row: json!({"id": id, "value": value})
            .as_object()
            .unwrap()
            .clone(),
    }
}

#[test]
fn concurrent_increments_converge_to_the_sum_because_mutators_re_run() {
    let mut server = server();
    let (mut a, mut db_a) = client("a");
    let (mut b, mut db_b) = client("b");
    mutate(&a, &mut db_a, "increment", json!({"id": "c", "by": 1}));
    mutate(&b, &mut db_b, "increment", json!({"id": "c", "by": 10}));
    sync(&mut b, &mut db_b, &mut server, "ub");
    assert_eq!(counter(&mut db_b, "c"), Some(Value::Integer(10)));
    // a pulls before pushing: the server's 10 arrives under a's pending +1.
    pull(&mut a, &mut db_a, &mut server, "ua");
    assert_eq!(counter(&mut db_a, "c"), Some(Value::Integer(11)));
    sync(&mut a, &mut db_a, &mut server, "ua");
    sync(&mut b, &mut db_b, &mut server, "ub");
    assert_eq!(counter(&mut db_a, "c"), Some(Value::Integer(11)));
    assert_eq!(counter(&mut db_b, "c"), Some(Value::Integer(11)));
    assert_eq!(
        server.readable_rows("x").unwrap()["counters"][0]["value"],
        11
    );
    assert_eq!(
        a.pending_count(&mut db_a).unwrap() + b.pending_count(&mut db_b).unwrap(),
        0
    );
}

#[test]
fn server_changes_land_under_pending_edits() {
    let mut server = server();
    let (mut a, mut db_a) = client("a");
    let (mut b, mut db_b) = client("b");
    add_todo(&a, &mut db_a, "t1", "u", "first");
    sync(&mut a, &mut db_a, &mut server, "u");
    sync(&mut b, &mut db_b, &mut server, "u");
    mutate(
        &a,
        &mut db_a,
        "renameTodo",
        json!({"id": "t1", "title": "from a"}),
    );
    mutate(&b, &mut db_b, "toggleTodo", json!({"id": "t1"}));
    sync(&mut b, &mut db_b, &mut server, "u");
    let changed = a
        .apply_pull(
            &mut db_a,
            &match server.pull("u", &a.pull_request()).unwrap() {
                PullResponse::Ok(ok) => ok,
                other => panic!("{other:?}"),
            },
        )
        .unwrap();
    assert!(changed.contains("todos"));
    let row = db_a
        .rows("SELECT title, done FROM todos", &[])
        .unwrap()
        .rows;
    assert_eq!(row, [[text("from a"), Value::Integer(1)]]);
    assert_eq!(a.pending_count(&mut db_a).unwrap(), 1);
}

#[test]
fn acknowledged_mutations_stop_re_running_and_leave_once_confirmed() {
    let (mut replica, mut db) = client("c1");
    mutate(&replica, &mut db, "increment", json!({"id": "c", "by": 1}));
    mutate(&replica, &mut db, "increment", json!({"id": "c", "by": 2}));
    // The server processed #1 (its effect is in the patch); no push reply was seen yet.
    replica
        .apply_pull(
            &mut db,
            &pull_ok(1, Some(("c1", 1)), vec![put_counter("c", 1)]),
        )
        .unwrap();
    assert_eq!(
        counter(&mut db, "c"),
        Some(Value::Integer(3)),
        "#1 from the server, #2 re-run"
    );
    // #1 stays in the outbox until the push reply says how it went.
    assert_eq!(replica.pending_count(&mut db).unwrap(), 2);
    let request = replica.push_request(&mut db, 10, None).unwrap().unwrap();
    assert_eq!(request.mutations.len(), 2);
    replica
        .apply_push(
            &mut db,
            &[
                ferrydb_protocol::MutationResult::AlreadyProcessed { id: 1 },
                ferrydb_protocol::MutationResult::Ok { id: 2 },
            ],
            0,
        )
        .unwrap();
    assert_eq!(
        replica
            .pending(&mut db)
            .unwrap()
            .iter()
            .map(|p| p.id)
            .collect::<Vec<_>>(),
        [2]
    );
    // #2 is confirmed but not acknowledged: it keeps re-running until a pull includes it.
    replica
        .apply_pull(&mut db, &pull_ok(2, None, vec![]))
        .unwrap();
    assert_eq!(counter(&mut db, "c"), Some(Value::Integer(3)));
    replica
        .apply_pull(
            &mut db,
            &pull_ok(3, Some(("c1", 2)), vec![put_counter("c", 3)]),
        )
        .unwrap();
    assert_eq!(counter(&mut db, "c"), Some(Value::Integer(3)));
    assert_eq!(replica.pending_count(&mut db).unwrap(), 0);
    assert_eq!(replica.cookie(), Some(&Cookie::Integer(3)));
}

#[test]
fn the_undo_log_keeps_the_server_image_even_under_insert_or_replace() {
    let mut app = sample_json();
    app["mutators"].as_array_mut().unwrap().push(json!({
        "name": "setCounter",
        "params": [{"name": "id", "type": "text"}, {"name": "value", "type": "integer"}],
        "sql": "INSERT OR REPLACE INTO counters (id, value) VALUES (:id, :value)"
    }));
    let (mut replica, mut db) = client_with(app);
    replica
        .apply_pull(&mut db, &pull_ok(1, None, vec![put_counter("c", 5)]))
        .unwrap();
    mutate(
        &replica,
        &mut db,
        "setCounter",
        json!({"id": "c", "value": 7}),
    );
    mutate(
        &replica,
        &mut db,
        "setCounter",
        json!({"id": "c", "value": 9}),
    );
    mutate(
        &replica,
        &mut db,
        "setCounter",
        json!({"id": "new", "value": 1}),
    );
    assert_eq!(counter(&mut db, "c"), Some(Value::Integer(9)));
    // The server rejected all three: the replica must fall back to exactly its state.
    replica
        .apply_pull(&mut db, &pull_ok(2, Some(("c1", 3)), vec![]))
        .unwrap();
    assert_eq!(counter(&mut db, "c"), Some(Value::Integer(5)));
    assert_eq!(counter(&mut db, "new"), None);
}

#[test]
fn a_bad_patch_changes_nothing() {
    let (mut replica, mut db) = client("c1");
    replica
        .apply_pull(&mut db, &pull_ok(1, None, vec![put_counter("c", 5)]))
        .unwrap();
    mutate(&replica, &mut db, "increment", json!({"id": "c", "by": 1}));
    for bad in [
        PatchOp::Put {
            table: "nope".into(),
            row: Default::default(),
        },
        PatchOp::Del {
            table: "counters".into(),
            key: Default::default(),
        },
        PatchOp::Put {
            table: "counters".into(),
            row: json!({"id": "c", "value": "x"})
                .as_object()
                .unwrap()
                .clone(),
        },
        PatchOp::Put {
            table: "counters".into(),
            row: json!({"id": "c"}).as_object().unwrap().clone(),
        },
    ] {
        let err = replica
            .apply_pull(
                &mut db,
                &pull_ok(2, Some(("c1", 1)), vec![put_counter("c", 100), bad]),
            )
            .unwrap_err();
        assert!(matches!(err.code(), "bad_response" | "sql_error"), "{err}");
        assert_eq!(counter(&mut db, "c"), Some(Value::Integer(6)));
        assert_eq!(replica.cookie(), Some(&Cookie::Integer(1)));
        assert_eq!(replica.pending_count(&mut db).unwrap(), 1);
    }
    let err = replica
        .apply_pull(
            &mut db,
            &pull_ok(
                2,
                None,
                vec![PatchOp::Put {
                    table: "nope".into(),
                    row: Default::default(),
                }],
            ),
        )
        .unwrap_err();
    assert_eq!(err.code(), "bad_response");
    assert!(err.retryable());
}

#[test]
fn clear_and_del_apply_and_unknown_columns_are_ignored() {
    let (mut replica, mut db) = client("c1");
    let row = json!({"id": "c", "value": 1, "added_later": true})
        .as_object()
        .unwrap()
        .clone();
    replica
        .apply_pull(
            &mut db,
            &pull_ok(
                1,
                None,
                vec![
                    PatchOp::Put {
                        table: "counters".into(),
                        row,
                    },
                    put_counter("d", 2),
                ],
            ),
        )
        .unwrap();
    let key = json!({"id": "c"}).as_object().unwrap().clone();
    replica
        .apply_pull(
            &mut db,
            &pull_ok(
                2,
                None,
                vec![PatchOp::Del {
                    table: "counters".into(),
                    key,
                }],
            ),
        )
        .unwrap();
    assert_eq!(column(&mut db, "SELECT id FROM counters"), [text("d")]);
    let changed = replica
        .apply_pull(&mut db, &pull_ok(3, None, vec![PatchOp::Clear]))
        .unwrap();
    assert_eq!(changed, replica.synced_tables().clone());
    assert!(column(&mut db, "SELECT id FROM counters").is_empty());
}

#[test]
fn a_paged_full_sync_ends_equal_to_the_server() {
    let mut server = SqliteServer::new(sample_app()).unwrap().with_page_size(3);
    let (mut writer, mut db_w) = client("w");
    for i in 0..10 {
        add_todo(&writer, &mut db_w, &format!("t{i}"), "u", "x");
        mutate(
            &writer,
            &mut db_w,
            "tagTodo",
            json!({"todoId": format!("t{i}"), "tag": "a", "owner": "u"}),
        );
    }
    push(&mut writer, &mut db_w, &mut server, "u");
    let (mut reader, mut db_r) = client("r");
    let mut pages = 0;
    loop {
        let PullResponse::Ok(ok) = server.pull("u", &reader.pull_request()).unwrap() else {
            panic!()
        };
        reader.apply_pull(&mut db_r, &ok).unwrap();
        pages += 1;
        if ok.more {
            assert!(matches!(ok.cookie, Cookie::Text(_)));
        } else {
            break;
        }
    }
    assert!(pages >= 7, "{pages} pages");
    assert_eq!(
        reader.snapshot(&mut db_r).unwrap(),
        server.readable_rows("u").unwrap()
    );
}

fn counters_summary(db: &mut Database) -> (Value, Value) {
    let mut rows = db
        .rows("SELECT count(*), sum(value) FROM counters", &[])
        .unwrap()
        .rows;
    let mut row = rows.remove(0);
    (row.remove(0), row.remove(0))
}

#[test]
fn a_page_of_puts_applies_in_batches_as_it_would_one_by_one() {
    // Two full batches and a short run, a delete in between, and keys put
    // twice across a batch boundary (the later put wins).
    let mut patch = vec![PatchOp::Clear];
    patch.extend((0..150).map(|i| put_counter(&format!("k{i:03}"), i)));
    patch.push(PatchOp::Del {
        table: "counters".into(),
        key: json!({"id": "k000"}).as_object().unwrap().clone(),
    });
    patch.extend((0..120).map(|i| put_counter(&format!("k{:03}", i + 100), 1000 + i)));
    let mut results = vec![];
    for chunked in [false, true] {
        let (mut replica, mut db) = client("c1");
        if chunked {
            replica
                .apply_pull(&mut db, &pull_ok(1, None, patch.clone()))
                .unwrap();
        } else {
            // One op per pull: never a run long enough to batch.
            for (i, op) in patch.iter().enumerate() {
                let pull = pull_ok(i as i64 + 1, None, vec![op.clone()]);
                replica.apply_pull(&mut db, &pull).unwrap();
            }
        }
        results.push(replica.snapshot(&mut db).unwrap());
        // k001..k099 hold 1..99; k100..k219 hold 1000..1119.
        assert_eq!(
            counters_summary(&mut db),
            (
                Value::Integer(219),
                Value::Integer(4950 + 120 * 1000 + 7140)
            )
        );
    }
    assert_eq!(results[0], results[1]);
}

#[test]
fn a_bad_row_inside_a_batch_fails_as_it_does_alone() {
    let bad_rows = [
        json!({"id": "bad", "value": "x"}), // does not convert
        json!({"id": "bad"}),               // NOT NULL fails in SQLite
    ];
    for bad in bad_rows {
        let (mut replica, mut db) = client("c1");
        replica
            .apply_pull(&mut db, &pull_ok(1, None, vec![put_counter("c", 5)]))
            .unwrap();
        let bad = PatchOp::Put {
            table: "counters".into(),
            row: bad.as_object().unwrap().clone(),
        };
        let mut patch: Vec<PatchOp> = (0..150)
            .map(|i| put_counter(&format!("k{i:03}"), i))
            .collect();
        patch[42] = bad.clone();
        let batched = replica
            .apply_pull(&mut db, &pull_ok(2, None, patch))
            .unwrap_err();
        let alone = replica
            .apply_pull(&mut db, &pull_ok(2, None, vec![bad]))
            .unwrap_err();
        assert_eq!(batched.to_string(), alone.to_string());
        assert_eq!(
            counters_summary(&mut db),
            (Value::Integer(1), Value::Integer(5))
        );
        assert_eq!(replica.cookie(), Some(&Cookie::Integer(1)));
    }
}
