//! The leader-tab topology's handover, as the host sees it: a tab sends its
//! unanswered and not-yet-durable writes again, with the keys they were
//! first sent with, to a host recovered from disk; each is applied once.

use super::*;

fn reply(h: &mut Harness, tab: TabId, id: u64) -> Json {
    let replies = h.posted_of(tab, "reply");
    replies
        .into_iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("no reply to {id}"))
}

fn mutate(h: &mut Harness, tab: TabId, todo: &str, key: &str) -> u64 {
    let args = json!({ "id": todo, "listId": "l1", "owner": "u", "title": todo });
    h.call(
        tab,
        json!({ "type": "mutate", "name": "addTodo", "args": args, "key": key }),
    )
}

fn outbox(h: &mut Harness, tab: TabId) -> Json {
    let id = h.call(
        tab,
        json!({ "type": "query", "sql": "SELECT id, name FROM _ferry_outbox ORDER BY id" }),
    );
    reply(h, tab, id)["ok"]["rows"].clone()
}

/// A host with the app open (no server) and one tab.
fn opened() -> (Harness, TabId) {
    let mut h = Harness::new();
    let tab = h.connect();
    h.open_app(tab, &app_json(), false, false);
    h.settle_storage();
    h.take();
    (h, tab)
}

#[test]
fn a_durable_mutation_sent_again_to_a_new_leader_is_answered_from_its_record() {
    let (mut h, tab) = opened();
    let first = mutate(&mut h, tab, "a", "tab1:7");
    let applied = reply(&mut h, tab, first);
    assert!(applied["seq"].is_u64(), "a commit to wait for: {applied}");
    h.settle_storage();

    let mut next = h.reopened(1_000);
    let tab = next.connect();
    next.open_app(tab, &app_json(), false, false);
    next.settle_storage();
    next.take();
    let again = mutate(&mut next, tab, "a", "tab1:7");
    let answered = reply(&mut next, tab, again);
    assert_eq!(answered["ok"]["mutationId"], applied["ok"]["mutationId"]);
    assert!(answered["seq"].is_null(), "already on disk: {answered}");
    assert_eq!(outbox(&mut next, tab).as_array().unwrap().len(), 1);
}

#[test]
fn a_mutation_lost_with_the_old_leader_is_applied_by_the_new_one_once() {
    let (mut h, tab) = opened();
    mutate(&mut h, tab, "a", "tab1:1");
    h.settle_storage();
    mutate(&mut h, tab, "b", "tab1:2");
    // The old leader dies before its frame is on disk.
    assert!(h.take_storage().is_some());

    let mut next = h.reopened(1_000);
    let tab = next.connect();
    next.open_app(tab, &app_json(), false, false);
    next.settle_storage();
    next.take();
    for _ in 0..2 {
        let again = mutate(&mut next, tab, "b", "tab1:2");
        assert!(reply(&mut next, tab, again)["ok"]["mutationId"].is_u64());
    }
    let rows = outbox(&mut next, tab);
    assert_eq!(
        rows.as_array().unwrap().len(),
        2,
        "a and b, once each: {rows}"
    );
}

#[test]
fn an_exec_sent_again_is_answered_with_its_first_result() {
    let (mut h, tab) = opened();
    h.call(
        tab,
        json!({ "type": "exec", "sql": "CREATE TABLE notes (x)" }),
    );
    let insert = json!({ "type": "exec", "sql": "INSERT INTO notes VALUES (1)", "key": "tab1:3" });
    let first = h.call(tab, insert.clone());
    let first = reply(&mut h, tab, first);
    let again = h.call(tab, insert);
    let again = reply(&mut h, tab, again);
    assert_eq!(again["ok"], first["ok"]);
    let count = h.call(
        tab,
        json!({ "type": "query", "sql": "SELECT count(*) FROM notes" }),
    );
    assert_eq!(reply(&mut h, tab, count)["ok"]["rows"], json!([[1]]));
}

#[test]
fn a_write_sent_again_before_its_commit_is_on_disk_waits_for_the_disk() {
    let (mut h, tab) = opened();
    let first = mutate(&mut h, tab, "a", "tab1:9");
    let seq = reply(&mut h, tab, first)["seq"].clone();
    assert!(seq.is_u64());
    // Sent again (the tab followed another leader for a moment, and back).
    let again = mutate(&mut h, tab, "a", "tab1:9");
    assert_eq!(reply(&mut h, tab, again)["seq"], seq, "not durable yet");
    h.settle_storage();
    let third = mutate(&mut h, tab, "a", "tab1:9");
    assert!(reply(&mut h, tab, third)["seq"].is_null(), "on disk now");
    assert_eq!(outbox(&mut h, tab).as_array().unwrap().len(), 1);
}
