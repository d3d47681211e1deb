//! Token asks across tabs: one tab at a time, a deadline per ask, a tab
//! that dies while asked.

use super::*;
use crate::engine::sync::TOKEN_TIMEOUT_MS;

/// Two syncing tabs with token providers; the client has asked for a token.
fn two_tabs_asked() -> (Harness, TabId, TabId) {
    let mut h = Harness::new();
    let a = h.connect();
    let b = h.connect();
    h.open_app(a, &app_json(), true, true);
    h.open_app(b, &app_json(), true, true);
    h.settle_storage();
    (h, a, b)
}

#[test]
fn one_tab_is_asked_at_a_time_with_a_deadline() {
    let (mut h, a, b) = two_tabs_asked();
    let asks_a = h.posted_of(a, "needToken");
    assert_eq!(asks_a.len(), 1);
    assert!(
        h.posted_of(b, "needToken").is_empty(),
        "only one tab is asked"
    );
    assert_eq!(h.timer(Timer::TokenDeadline), Some(TOKEN_TIMEOUT_MS));
    h.send(
        a,
        json!({ "type": "token", "ask": asks_a[0]["ask"], "token": "secret" }),
    );
    assert_eq!(
        h.timer(Timer::TokenDeadline),
        None,
        "answered: the deadline is cleared"
    );
    let pulls = to("pull", &h.take_fetches());
    assert_eq!(pulls[0].1.bearer.as_deref(), Some("secret"));
}

#[test]
fn a_tab_that_dies_while_asked_hands_the_ask_to_another() {
    let (mut h, a, b) = two_tabs_asked();
    assert_eq!(h.posted_of(a, "needToken").len(), 1);
    h.take();
    // Its Web Lock was granted to the worker: the tab is gone.
    h.input(Input::TabGone { tab: a });
    assert!(h.out.contains(&Output::CloseTab { tab: a }));
    let asks_b = h.posted_of(b, "needToken");
    assert_eq!(asks_b.len(), 1, "the ask moved to the other tab at once");
    assert!(
        h.timer(Timer::TokenDeadline).is_some(),
        "with its own deadline"
    );
    // The dead tab's answer, had it come, is no longer wanted; b's is.
    h.send(
        b,
        json!({ "type": "token", "ask": asks_b[0]["ask"], "token": "from-b" }),
    );
    let pulls = to("pull", &h.take_fetches());
    assert_eq!(pulls.len(), 1);
    assert_eq!(pulls[0].1.bearer.as_deref(), Some("from-b"));
}

#[test]
fn a_missed_deadline_moves_the_ask_and_a_late_answer_is_dropped() {
    let (mut h, a, b) = two_tabs_asked();
    let ask_a = h.posted_of(a, "needToken")[0]["ask"].clone();
    let deadline = h.timer(Timer::TokenDeadline).unwrap();
    h.take();
    h.fire(Timer::TokenDeadline, deadline);
    let asks_b = h.posted_of(b, "needToken");
    assert_eq!(asks_b.len(), 1, "a frozen tab's ask moves on");
    // The frozen tab thaws and answers: too late to use, nothing is sent.
    h.send(a, json!({ "type": "token", "ask": ask_a, "token": "late" }));
    assert!(h.take_fetches().is_empty());
    h.send(
        b,
        json!({ "type": "token", "ask": asks_b[0]["ask"], "token": "fresh" }),
    );
    assert_eq!(
        to("pull", &h.take_fetches())[0].1.bearer.as_deref(),
        Some("fresh")
    );
}

#[test]
fn with_every_tab_unresponsive_sync_reports_auth_required() {
    let mut h = Harness::new();
    let a = h.connect();
    h.open_app(a, &app_json(), true, true);
    h.settle_storage();
    assert_eq!(h.posted_of(a, "needToken").len(), 1);
    let deadline = h.timer(Timer::TokenDeadline).unwrap();
    h.fire(Timer::TokenDeadline, deadline);
    let status = h.status().unwrap();
    assert_eq!(status["error"]["code"], "auth_required", "{status}");
    assert!(
        h.take_fetches().is_empty(),
        "nothing is sent without a token"
    );
}

#[test]
fn a_provider_that_throws_is_auth_required_and_no_provider_means_no_token() {
    let mut h = Harness::new();
    let a = h.connect();
    h.open_app(a, &app_json(), true, true);
    h.settle_storage();
    let ask = h.posted_of(a, "needToken")[0]["ask"].clone();
    h.send(
        a,
        json!({ "type": "token", "ask": ask, "error": "provider threw" }),
    );
    assert_eq!(h.status().unwrap()["error"]["code"], "auth_required");

    // A tab without a provider: the server is asked without a token.
    let mut h = Harness::new();
    let a = h.connect();
    h.open_app(a, &app_json(), true, false);
    h.settle_storage();
    assert!(h.posted_of(a, "needToken").is_empty());
    let pulls = to("pull", &h.take_fetches());
    assert_eq!(pulls.len(), 1);
    assert_eq!(pulls[0].1.bearer, None);
}

#[test]
fn an_outdated_tab_is_never_asked_for_a_token() {
    let mut h = Harness::new();
    let old = h.connect();
    h.open_app(old, &app_json(), true, true);
    h.settle_storage();
    let ask = h.posted_of(old, "needToken");
    h.send(
        old,
        json!({ "type": "token", "ask": ask[0]["ask"], "token": "t1" }),
    );
    h.take();
    // A newer build upgrades the replica: the restarted sync asks it, not
    // the refused older tab, although that one connected first.
    let new = h.connect();
    h.open_app(new, &app_json_version(2), true, true);
    h.settle_storage();
    assert!(h.posted_of(old, "needToken").is_empty());
    assert_eq!(h.posted_of(new, "needToken").len(), 1);
}
