//! The storage writer: one request at a time, stalls told once and retried
//! with backoff, the browser clearing the files.

use super::*;
use crate::storage;

fn write(h: &mut Harness, tab: TabId, sql: &str) -> u64 {
    h.call(tab, json!({ "type": "exec", "sql": sql }))
}

#[test]
fn one_request_at_a_time_and_commits_meanwhile_share_the_next() {
    let mut h = Harness::new();
    let tab = h.connect();
    write(&mut h, tab, "CREATE TABLE t (x)");
    let first = h.take_storage().expect("the commit is written");
    write(&mut h, tab, "INSERT INTO t VALUES (1)");
    write(&mut h, tab, "INSERT INTO t VALUES (2)");
    assert!(
        h.take_storage().is_none(),
        "one request in flight at a time"
    );
    h.input(Input::StorageDone {
        id: first.id,
        result: Ok(()),
    });
    let second = h.take_storage().expect("the two later commits, together");
    assert!(h.take_storage().is_none());
    h.input(Input::StorageDone {
        id: second.id,
        result: Ok(()),
    });
    let reports = h.posted_of(tab, "storage");
    assert_eq!(reports.last().unwrap()["durableSeq"], 3, "{reports:?}");
}

#[test]
fn a_stall_is_told_once_and_retried_after_a_jittered_backoff_until_it_writes() {
    let mut h = Harness::new();
    let tab = h.connect();
    h.take();
    write(&mut h, tab, "CREATE TABLE t (x)");
    let request = h.take_storage().unwrap();
    h.input(Input::StorageDone {
        id: request.id,
        result: Err(storage::Error::Quota("full".into())),
    });
    let told = h.posted_of(tab, "storage");
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0]["error"]["code"], "storage_quota");
    let retry = h.timer(Timer::StorageRetry).expect("a retry");
    assert!(
        (125..=250).contains(&retry),
        "jittered first delay: {retry}"
    );
    // Writes meanwhile stay in memory; no second timer, nothing new told.
    h.take();
    write(&mut h, tab, "INSERT INTO t VALUES (1)");
    assert!(h.take_storage().is_none(), "the log is stalled");
    assert_eq!(h.timer(Timer::StorageRetry), None);
    assert!(h.posted_of(tab, "storage").is_empty());
    // The retry writes everything; the error ends.
    h.fire(Timer::StorageRetry, retry);
    h.settle_storage();
    let told = h.posted_of(tab, "storage");
    let last = told.last().expect("recovered");
    assert!(last.get("error").is_none(), "{last}");
    assert_eq!(last["durableSeq"], 2);
}

#[test]
fn a_stall_that_persists_backs_off_further_each_time() {
    let mut h = Harness::new();
    let tab = h.connect();
    write(&mut h, tab, "CREATE TABLE t (x)");
    let mut delays = Vec::new();
    for _ in 0..4 {
        let request = h.take_storage().expect("written (again)");
        h.take();
        let now = h.env.now.get();
        h.input(Input::StorageDone {
            id: request.id,
            result: Err(storage::Error::Unavailable("io".into())),
        });
        let at = h.timer(Timer::StorageRetry).expect("retried");
        delays.push(at - now);
        h.fire(Timer::StorageRetry, at);
    }
    for (i, cap) in [250, 500, 1_000, 2_000].into_iter().enumerate() {
        assert!((cap / 2..=cap).contains(&delays[i]), "{delays:?}");
    }
}

#[test]
fn cleared_storage_is_told_at_once_and_never_retried() {
    let mut h = Harness::new();
    let tab = h.connect();
    h.take();
    h.input(Input::StorageCleared {
        why: "the browser closed the IndexedDB connection".into(),
    });
    let told = h.posted_of(tab, "storage");
    assert_eq!(told[0]["error"]["code"], "storage_cleared");
    write(&mut h, tab, "CREATE TABLE t (x)");
    assert!(h.take_storage().is_none(), "nothing is written again");
    assert_eq!(h.timer(Timer::StorageRetry), None);
}

#[test]
fn unreadable_storage_serves_from_memory_and_says_why() {
    let env = Rc::new(TestEnv::default());
    let mut host = Host::open(
        Err(storage::Error::Unavailable("getDirectory failed".into())),
        LogConfig::default(),
        "opfs".into(),
        true,
        env,
    )
    .unwrap();
    let (tab, out) = host.connect_tab();
    let Output::Post { message, .. } = &out[0] else {
        panic!("{out:?}")
    };
    let report = message.encode(&mut JsonEncoder);
    assert_eq!(report["error"]["code"], "storage_unavailable");
    let out = host.handle(Input::Tab {
        tab,
        message: Ok(TabMessage::Query {
            id: 1,
            sql: "SELECT 1 AS one".into(),
            params: Vec::new(),
        }),
    });
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Post {
            message: WorkerMessage::Reply { result: Ok(_), .. },
            ..
        }
    )));
}

/// Without checkpoints the log would grow for ever and every open would replay
/// all of it. A checkpoint starts only after a delay, and only while nothing
/// is in flight; a reopen from the folded files sees every write.
#[test]
fn an_idle_writer_folds_a_grown_log_into_a_checkpoint_and_a_reopen_sees_everything() {
    let small = LogConfig {
        checkpoint_after_bytes: 64 << 10,
        ..LogConfig::default()
    };
    let mut h = Harness::with_log(small.clone());
    let tab = h.connect();
    write(&mut h, tab, "CREATE TABLE t (x, pad)");
    h.settle_storage();
    for i in 0..60 {
        write(
            &mut h,
            tab,
            &format!("INSERT INTO t VALUES ({i}, randomblob(2000))"),
        );
        h.settle_storage();
    }
    let due = h
        .timer(Timer::Checkpoint)
        .expect("the grown log asks for a checkpoint");
    let files = |h: &Harness, prefix: &str| {
        h.disk
            .files
            .keys()
            .filter(|n| n.starts_with(prefix))
            .count()
    };
    assert_eq!(files(&h, "manifest."), 0, "no checkpoint before the timer");

    // A write in flight when the timer fires goes first.
    write(&mut h, tab, "INSERT INTO t VALUES (60, randomblob(2000))");
    let in_flight = h.take_storage().expect("the write");
    h.fire(Timer::Checkpoint, due);
    assert!(h.take_storage().is_none(), "one request at a time");
    let result = storage::perform(&mut h.disk, &in_flight);
    h.input(Input::StorageDone {
        id: in_flight.id,
        result,
    });
    h.settle_storage();
    assert_eq!(
        files(&h, "manifest."),
        1,
        "{:?}",
        h.disk.files.keys().collect::<Vec<_>>()
    );
    let logs = files(&h, "log.");
    assert!(logs < 10, "folded log files are deleted ({logs} left)");

    let env = Rc::new(TestEnv::default());
    let stored = h
        .disk
        .files
        .keys()
        .map(|n| (n.clone(), h.disk.files.get(n).unwrap().clone()))
        .collect();
    let mut reopened = Host::open(Ok(stored), small, "memory".into(), true, env).unwrap();
    let (tab, _) = reopened.connect_tab();
    let out = reopened.handle(Input::Tab {
        tab,
        message: Ok(TabMessage::Query {
            id: 1,
            sql: "SELECT count(*) AS n, max(x) AS top FROM t".into(),
            params: Vec::new(),
        }),
    });
    let replies: Vec<Json> = out
        .iter()
        .filter_map(|o| match o {
            Output::Post { message, .. } => Some(message.encode(&mut JsonEncoder)),
            _ => None,
        })
        .collect();
    assert!(
        replies.iter().any(|r| r.to_string().contains("[61,60]")),
        "{replies:?}"
    );
}

#[test]
fn delete_database_waits_for_the_write_in_flight() {
    let mut h = Harness::new();
    let tab = h.connect();
    write(&mut h, tab, "CREATE TABLE t (x)");
    let request = h.take_storage().expect("a write in flight");
    h.call(tab, json!({ "type": "deleteDatabase" }));
    assert!(
        !h.out.contains(&Output::DeleteFiles),
        "an OPFS file open for writing cannot be removed"
    );
    h.input(Input::StorageDone {
        id: request.id,
        result: Ok(()),
    });
    assert!(h.out.contains(&Output::DeleteFiles));
    assert!(
        h.take_storage().is_none(),
        "nothing new is written meanwhile"
    );
}
