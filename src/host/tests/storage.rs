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
