//! Tabs and their calls: replies by id, bad messages, outdated builds,
//! departed tabs.

use super::*;

#[test]
fn a_message_that_cannot_be_read_is_answered_bad_request_by_its_id() {
    let mut h = Harness::new();
    let tab = h.connect();
    h.take();
    h.send(tab, json!({ "type": "exec", "id": 4, "sql": 7 }));
    h.send(tab, json!({ "type": "dropEverything", "id": 5 }));
    let replies = h.posted_of(tab, "reply");
    assert_eq!(replies.len(), 2);
    assert_eq!(replies[0]["id"], 4);
    assert_eq!(replies[0]["error"]["code"], "bad_request");
    assert!(replies[0]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("`sql`"));
    assert_eq!(replies[1]["error"]["code"], "bad_request");
}

#[test]
fn live_updates_reach_their_tabs_before_the_reply() {
    let mut h = Harness::new();
    let a = h.connect();
    let b = h.connect();
    h.call(a, json!({ "type": "exec", "sql": "CREATE TABLE t (x)" }));
    h.call(
        b,
        json!({ "type": "subscribe", "subscription": 1, "sql": "SELECT x FROM t" }),
    );
    h.take();
    let write = h.call(
        a,
        json!({ "type": "exec", "sql": "INSERT INTO t VALUES (1)" }),
    );
    let to_b = h.posted(b);
    assert_eq!(to_b.len(), 1);
    assert_eq!(to_b[0]["type"], "live");
    let to_a = h.posted(a);
    assert_eq!(to_a[0]["type"], "reply");
    assert_eq!(to_a[0]["id"], write);
    assert!(to_a[0]["seq"].is_number(), "a commit's seq, for `durable`");
}

#[test]
fn a_newer_build_upgrades_and_the_older_tabs_are_told_and_refused() {
    let mut h = Harness::new();
    let old = h.connect();
    let new = h.connect();
    h.open_app(old, &app_json(), false, false);
    h.take();
    let opened = h.open_app(new, &app_json_version(2), false, false);
    let to_old = h.posted(old);
    assert!(to_old
        .iter()
        .any(|m| m["type"] == "syncEvent" && m["event"]["type"] == "appOutdated"));
    let to_new = h.posted_of(new, "reply");
    assert!(to_new
        .iter()
        .any(|m| m["id"] == opened && m.get("error").is_none()));
    h.take();
    h.call(old, json!({ "type": "query", "sql": "SELECT 1" }));
    assert_eq!(
        h.posted_of(old, "reply")[0]["error"]["code"],
        "app_outdated"
    );
    // An older build opening later is refused at once.
    let late = h.connect();
    h.take();
    h.open_app(late, &app_json(), false, false);
    assert_eq!(
        h.posted_of(late, "reply")[0]["error"]["code"],
        "app_outdated"
    );
}

#[test]
fn a_departed_tab_is_closed_and_releases_its_queries() {
    let mut h = Harness::new();
    let a = h.connect();
    let b = h.connect();
    h.send(a, json!({ "type": "hello", "lock": "ferrydb-tab-a" }));
    assert!(h.out.contains(&Output::WatchTab {
        tab: a,
        lock: "ferrydb-tab-a".into()
    }));
    h.call(
        a,
        json!({ "type": "subscribe", "subscription": 1, "sql": "SELECT 1" }),
    );
    h.send(a, json!({ "type": "bye" }));
    assert!(h.out.contains(&Output::CloseTab { tab: a }));
    h.take();
    // Its lock is granted later too: nothing happens twice.
    h.input(Input::TabGone { tab: a });
    assert!(h.out.is_empty(), "{:?}", h.out);
    h.call(b, json!({ "type": "stats" }));
    let stats = &h.posted_of(b, "reply")[0]["ok"];
    assert_eq!(stats["tabs"], 1);
    assert_eq!(stats["subscriptions"], 0);
}
