//! The engine as tabs see it: requests in, replies and live updates out.

use super::patch::Segment;
use super::request::{Request, Response};
use super::value::Value;
use super::*;
use crate::ErrorCode;

fn exec(sql: &str) -> Request {
    Request::Exec {
        sql: sql.into(),
        params: vec![],
    }
}

fn subscribe(subscription: u32, sql: &str) -> Request {
    Request::Subscribe {
        subscription,
        sql: sql.into(),
        params: vec![],
    }
}

fn engine() -> Engine {
    let mut engine = Engine::open_in_memory().unwrap();
    let tab = engine.connect_tab();
    engine
        .handle(
            tab,
            exec("CREATE TABLE items (id INTEGER PRIMARY KEY, title TEXT)"),
        )
        .reply
        .unwrap();
    engine
        .handle(tab, exec("CREATE TABLE other (x)"))
        .reply
        .unwrap();
    engine.disconnect_tab(tab);
    engine
}

fn stats(engine: &mut Engine, tab: TabId) -> request::Stats {
    match engine.handle(tab, Request::Stats).reply.unwrap() {
        Response::Stats(s) => s,
        other => panic!("not stats: {other:?}"),
    }
}

#[test]
fn a_write_in_one_tab_updates_the_live_queries_of_every_tab() {
    let mut engine = engine();
    let (a, b) = (engine.connect_tab(), engine.connect_tab());
    engine
        .handle(a, subscribe(1, "SELECT title FROM items ORDER BY id"))
        .reply
        .unwrap();
    engine
        .handle(b, subscribe(7, "SELECT title FROM items ORDER BY id"))
        .reply
        .unwrap();
    engine
        .handle(b, subscribe(8, "SELECT count(*) FROM other"))
        .reply
        .unwrap();

    let handled = engine.handle(
        a,
        Request::Exec {
            sql: "INSERT INTO items (title) VALUES (?)".into(),
            params: vec![Value::Text("milk".into())],
        },
    );
    assert!(matches!(handled.reply, Ok(Response::Exec(ref r)) if r.rows_affected == 1));
    let tabs: Vec<_> = handled.updates.iter().map(|u| u.tab).collect();
    assert_eq!(tabs, [a, b], "both tabs hear, once each");
    for tab in &handled.updates {
        assert_eq!(tab.updates.len(), 1, "the query on `other` is untouched");
        let patch = tab.updates[0].change.as_ref().unwrap();
        assert_eq!(
            patch.segments,
            [Segment::Rows(vec![vec![Value::Text("milk".into())]])]
        );
    }
    assert_eq!(handled.updates[1].updates[0].subscription, 7);
    assert_eq!(
        stats(&mut engine, a).live_queries,
        2,
        "identical queries share one evaluation"
    );
}

#[test]
fn a_write_that_changes_no_watched_rows_sends_nothing() {
    let mut engine = engine();
    let a = engine.connect_tab();
    engine
        .handle(a, subscribe(1, "SELECT title FROM items WHERE id = 1"))
        .reply
        .unwrap();
    let handled = engine.handle(a, exec("INSERT INTO items (id, title) VALUES (2, 'x')"));
    assert!(handled.updates.is_empty());
}

#[test]
fn bad_sql_is_an_sql_error_and_the_engine_keeps_serving() {
    let mut engine = engine();
    let a = engine.connect_tab();
    let err = engine
        .handle(a, exec("INSRT INTO items"))
        .reply
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::SqlError);
    let err = engine
        .handle(a, subscribe(1, "SELECT nope FROM items"))
        .reply
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::SqlError);
    assert_eq!(
        stats(&mut engine, a).subscriptions,
        0,
        "a failed subscription holds nothing"
    );
    assert!(engine
        .handle(a, exec("INSERT INTO items (title) VALUES ('ok')"))
        .reply
        .is_ok());
}

#[test]
fn a_live_query_must_only_read() {
    let mut engine = engine();
    let a = engine.connect_tab();
    let err = engine
        .handle(a, subscribe(1, "DELETE FROM items"))
        .reply
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::BadRequest);
    let read = engine.handle(a, exec("SELECT count(*) FROM items"));
    assert!(read.reply.is_ok(), "exec of a read is harmless");
}

#[test]
fn a_closed_tab_releases_its_subscriptions_and_others_keep_theirs() {
    let mut engine = engine();
    let (a, b) = (engine.connect_tab(), engine.connect_tab());
    engine
        .handle(a, subscribe(1, "SELECT * FROM items"))
        .reply
        .unwrap();
    engine
        .handle(a, subscribe(2, "SELECT * FROM other"))
        .reply
        .unwrap();
    engine
        .handle(b, subscribe(1, "SELECT * FROM items"))
        .reply
        .unwrap();
    assert_eq!(stats(&mut engine, b).subscriptions, 3);

    engine.disconnect_tab(a);
    let s = stats(&mut engine, b);
    assert_eq!((s.tabs, s.live_queries, s.subscriptions), (1, 1, 1));
    let handled = engine.handle(b, exec("INSERT INTO items (title) VALUES ('x')"));
    assert_eq!(handled.updates.len(), 1);
    assert_eq!(handled.updates[0].tab, b);
}

#[test]
fn unsubscribe_releases_and_unknown_ids_are_errors() {
    let mut engine = engine();
    let a = engine.connect_tab();
    engine
        .handle(a, subscribe(3, "SELECT * FROM items"))
        .reply
        .unwrap();
    let err = engine
        .handle(a, subscribe(3, "SELECT * FROM other"))
        .reply
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::BadRequest, "ids are unique per tab");
    engine
        .handle(a, Request::Unsubscribe { subscription: 3 })
        .reply
        .unwrap();
    assert_eq!(stats(&mut engine, a).live_queries, 0);
    let err = engine
        .handle(a, Request::Unsubscribe { subscription: 3 })
        .reply
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::UnknownSubscription);
}

#[test]
fn a_transaction_notifies_once_when_it_commits() {
    let mut engine = engine();
    let a = engine.connect_tab();
    engine
        .handle(a, subscribe(1, "SELECT count(*) AS n FROM items"))
        .reply
        .unwrap();
    assert!(engine.handle(a, exec("BEGIN")).updates.is_empty());
    for _ in 0..3 {
        let h = engine.handle(a, exec("INSERT INTO items (title) VALUES ('x')"));
        assert!(h.updates.is_empty());
    }
    let h = engine.handle(a, exec("COMMIT"));
    assert_eq!(h.updates.len(), 1);
    assert_eq!(
        h.updates[0].updates[0].change.as_ref().unwrap().segments,
        [Segment::Rows(vec![vec![Value::Integer(3)]])]
    );
}

#[test]
fn a_query_that_starts_failing_reports_once_and_recovers_with_its_rows() {
    let mut engine = engine();
    let a = engine.connect_tab();
    engine.handle(a, exec("CREATE TABLE t (x)")).reply.unwrap();
    engine
        .handle(a, exec("INSERT INTO t VALUES (1)"))
        .reply
        .unwrap();
    engine
        .handle(a, subscribe(1, "SELECT x FROM t"))
        .reply
        .unwrap();

    let h = engine.handle(a, exec("DROP TABLE t"));
    let err = h.updates[0].updates[0].change.as_ref().unwrap_err();
    assert_eq!(err.code, ErrorCode::SqlError);
    let again = engine
        .handle(a, subscribe(2, "SELECT x FROM t"))
        .reply
        .unwrap_err();
    assert_eq!(
        again.code(),
        ErrorCode::SqlError,
        "a failing query is not joined"
    );

    let h = engine.handle(a, exec("CREATE TABLE t (x)"));
    let patch = h.updates[0].updates[0].change.as_ref().unwrap();
    assert_eq!(patch.segments, [], "recovered: the table is empty now");
    let h = engine.handle(a, exec("INSERT INTO t VALUES (1)"));
    let patch = h.updates[0].updates[0].change.as_ref().unwrap();
    assert_eq!(
        patch.segments,
        [Segment::Rows(vec![vec![Value::Integer(1)]])]
    );
}

/// What a tab holds for each of its live queries, kept by applying patches only.
fn apply_updates(held: &mut [value::QueryResult], handled: &Handled) {
    for tab in &handled.updates {
        for update in &tab.updates {
            let i = update.subscription as usize;
            let patch = update.change.as_ref().expect("queries stay valid");
            held[i] = patch.apply(&held[i]);
        }
    }
}

#[test]
fn patched_results_equal_a_full_requery_under_random_writes() {
    let (mut rng, seed) = super::test_rng::Rng::from_env(0xfe11);
    let mut next = |n: u64| rng.below(n);
    let mut engine = engine();
    let tab = engine.connect_tab();
    engine
        .handle(tab, exec("CREATE TABLE tags (item INTEGER, tag TEXT)"))
        .reply
        .unwrap();
    let queries = [
        "SELECT id, title FROM items ORDER BY title, id LIMIT 10",
        "SELECT * FROM items WHERE id % 3 = 0 ORDER BY id DESC",
        "SELECT title, count(*) AS n FROM items GROUP BY title ORDER BY title",
        "SELECT i.id, t.tag FROM items i JOIN tags t ON t.item = i.id ORDER BY t.tag, i.id",
        "SELECT title FROM items", // no ORDER BY: order is whatever SQLite gives
    ];
    let mut held = Vec::new();
    for (i, sql) in queries.iter().enumerate() {
        match engine.handle(tab, subscribe(i as u32, sql)).reply.unwrap() {
            Response::Live { rows, .. } => held.push(rows),
            other => panic!("{other:?}"),
        }
    }
    for step in 0..2_000 {
        let id = next(40) as i64;
        let title = Value::Text(format!("t{}", next(6)));
        let (sql, params) = match next(5) {
            0 | 1 => (
                "INSERT OR REPLACE INTO items (id, title) VALUES (?, ?)",
                vec![Value::Integer(id), title],
            ),
            2 => (
                "UPDATE items SET title = ? WHERE id = ?",
                vec![title, Value::Integer(id)],
            ),
            3 => ("DELETE FROM items WHERE id = ?", vec![Value::Integer(id)]),
            _ => (
                "INSERT INTO tags VALUES (?, ?)",
                vec![Value::Integer(id), title],
            ),
        };
        let handled = engine.handle(
            tab,
            Request::Exec {
                sql: sql.into(),
                params,
            },
        );
        handled.reply.as_ref().unwrap();
        apply_updates(&mut held, &handled);
        for (i, sql) in queries.iter().enumerate() {
            let (fresh, _) = engine.db.query(sql, &[]).unwrap();
            assert_eq!(held[i], fresh, "seed {seed} step {step} query {sql}");
        }
    }
}

mod durable {
    use super::*;
    use crate::storage::{open_backend, perform, LogConfig, MemoryBackend};

    fn open(backend: &MemoryBackend) -> Engine {
        Engine::open_durable(open_backend(backend, LogConfig::default()).unwrap()).unwrap()
    }

    /// Performs all pending storage I/O against `backend`, as the browser host does.
    fn flush(engine: &mut Engine, backend: &mut MemoryBackend) -> u64 {
        let mut durable = engine.durable_seq();
        loop {
            let Some(request) = engine.next_io().or_else(|| {
                engine.checkpoint_if_due();
                engine.next_io()
            }) else {
                return durable;
            };
            let result = perform(backend, &request);
            durable = engine.io_done(request.id, result).unwrap().durable_seq;
        }
    }

    #[test]
    fn commits_get_sequence_numbers_and_survive_a_reopen_once_durable() {
        let mut backend = MemoryBackend::default();
        let mut engine = open(&backend);
        let tab = engine.connect_tab();
        let created = engine.handle(tab, exec("CREATE TABLE t (x)"));
        let inserted = engine.handle(tab, exec("INSERT INTO t VALUES (42)"));
        let read = engine.handle(tab, exec("SELECT * FROM t"));
        assert_eq!(created.commit_seq, Some(1));
        assert_eq!(inserted.commit_seq, Some(2));
        assert_eq!(read.commit_seq, None, "a read commits nothing");
        assert!(
            engine.durable_seq() < 2,
            "nothing is durable before the host writes"
        );

        assert_eq!(flush(&mut engine, &mut backend), 2);
        let mut reopened = open(&backend);
        let tab = reopened.connect_tab();
        let rows = reopened.handle(
            tab,
            Request::Query {
                sql: "SELECT x FROM t".into(),
                params: vec![],
            },
        );
        assert!(
            matches!(rows.reply, Ok(Response::Rows(r)) if r.rows == vec![vec![Value::Integer(42)]])
        );
    }

    #[test]
    fn the_idle_checkpoint_folds_the_log_and_a_reopen_sees_everything() {
        let small = LogConfig {
            checkpoint_after_bytes: 64 << 10,
            ..LogConfig::default()
        };
        let mut backend = MemoryBackend::default();
        let mut engine =
            Engine::open_durable(open_backend(&backend, small.clone()).unwrap()).unwrap();
        let tab = engine.connect_tab();
        engine.handle(tab, exec("CREATE TABLE t (x, pad)"));
        for i in 0..200 {
            engine.handle(
                tab,
                Request::Exec {
                    sql: "INSERT INTO t VALUES (?, randomblob(2000))".into(),
                    params: vec![Value::Integer(i)],
                },
            );
            flush(&mut engine, &mut backend);
        }
        assert!(
            backend
                .files
                .keys()
                .any(|name| name.starts_with("manifest.")),
            "a checkpoint ran: {:?}",
            backend.files.keys().collect::<Vec<_>>()
        );
        let logs = backend
            .files
            .keys()
            .filter(|n| n.starts_with("log."))
            .count();
        assert!(logs < 50, "folded log files were deleted ({logs} left)");
        let mut reopened = Engine::open_durable(open_backend(&backend, small).unwrap()).unwrap();
        let (rows, _) = reopened
            .db
            .query("SELECT count(*), sum(x) FROM t", &[])
            .unwrap();
        assert_eq!(
            rows.rows,
            vec![vec![Value::Integer(200), Value::Integer(19900)]]
        );
    }

    #[test]
    fn writes_not_yet_durable_are_lost_by_a_crash_but_nothing_else_is() {
        let mut backend = MemoryBackend::default();
        let mut engine = open(&backend);
        let tab = engine.connect_tab();
        engine.handle(tab, exec("CREATE TABLE t (x)"));
        engine.handle(tab, exec("INSERT INTO t VALUES (1)"));
        flush(&mut engine, &mut backend);
        engine.handle(tab, exec("INSERT INTO t VALUES (2)"));
        // Crash: the second insert's frame never reached the backend.
        let mut reopened = open(&backend);
        let tab = reopened.connect_tab();
        let (rows, _) = reopened.db.query("SELECT x FROM t", &[]).unwrap();
        assert_eq!(rows.rows, vec![vec![Value::Integer(1)]]);
        assert!(reopened
            .handle(tab, exec("INSERT INTO t VALUES (3)"))
            .reply
            .is_ok());
    }

    #[test]
    fn a_full_disk_stalls_durability_but_not_the_replica() {
        let mut backend = MemoryBackend::default();
        let mut engine = open(&backend);
        let tab = engine.connect_tab();
        engine.handle(tab, exec("CREATE TABLE t (x)"));
        let seq = engine
            .handle(tab, exec("INSERT INTO t VALUES (1)"))
            .commit_seq
            .unwrap();
        while let Some(request) = engine.next_io() {
            engine
                .io_done(request.id, Err(crate::storage::Error::Quota("full".into())))
                .unwrap();
        }
        let stalled = engine.storage_stalled().expect("stalled");
        assert_eq!(
            crate::Error::from(stalled.clone()).code(),
            ErrorCode::StorageQuota
        );
        assert!(engine.durable_seq() < seq);
        assert!(
            engine
                .handle(tab, exec("INSERT INTO t VALUES (2)"))
                .reply
                .is_ok(),
            "still serving"
        );

        engine.resume_storage();
        let durable = flush(&mut engine, &mut backend);
        assert!(
            durable > seq,
            "after space is freed everything becomes durable"
        );
        assert!(engine.storage_stalled().is_none());
        let mut reopened = open(&backend);
        let (rows, _) = reopened.db.query("SELECT count(*) FROM t", &[]).unwrap();
        assert_eq!(rows.rows, vec![vec![Value::Integer(2)]]);
    }
}
