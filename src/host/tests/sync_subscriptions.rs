//! Sync subscriptions in the worker (protocol v2): one per canonical
//! `(query, args)`, reference-counted across tabs, kept for their TTL, released
//! with their tab, `syncOnOpen` from open, states told to holders, the
//! desired set persisted across a worker restart.

use super::*;
use crate::engine::sync::DEFAULT_TTL_MS;

/// The test app with two queries: `todosOf(list_id)` and `myLists`
/// (synced from open).
fn app_with_queries() -> String {
    let mut app: Json = serde_json::from_str(&app_json()).unwrap();
    app["queries"] = json!([
        {
            "name": "todosOf",
            "params": [{ "name": "list_id", "type": "text" }, { "name": "limit", "type": "integer", "nullable": true }],
            "parts": [{ "table": "todos", "where": "list_id = :list_id AND owner = :user_id AND (:limit IS NULL OR length(title) <= :limit)" }]
        },
        {
            "name": "myLists", "params": [], "syncOnOpen": true,
            "parts": [{ "table": "lists", "where": "owner = :user_id" }]
        }
    ]);
    app.to_string()
}

/// A syncing host of [`app_with_queries`] whose first pull was answered:
/// (harness, tab).
fn synced() -> (Harness, TabId) {
    let (mut h, tab, pull) = syncing_with(&app_with_queries());
    h.reply(pull, pull_ok(1, false));
    h.settle_storage();
    h.take();
    (h, tab)
}

fn hold(h: &mut Harness, tab: TabId, hold: u32, query: &str, args: Json, ttl: Option<u32>) -> Json {
    let mut message = json!({ "type": "syncHold", "hold": hold, "query": query, "args": args });
    if let Some(ttl) = ttl {
        message["ttl"] = json!(ttl);
    }
    let id = h.call(tab, message);
    reply_to(h, tab, id)
}

fn release(h: &mut Harness, tab: TabId, hold: u32) -> Json {
    let id = h.call(tab, json!({ "type": "syncRelease", "hold": hold }));
    reply_to(h, tab, id)
}

/// The reply to call `id`, leaving the other outputs.
fn reply_to(h: &mut Harness, tab: TabId, id: u64) -> Json {
    let at = h
        .out
        .iter()
        .position(|o| matches!(o, Output::Post { tab: t, message: WorkerMessage::Reply { id: i, .. } } if *t == tab && *i == id))
        .expect("a reply");
    let Output::Post { message, .. } = h.out.remove(at) else {
        unreachable!()
    };
    message.encode(&mut JsonEncoder)
}

/// The subscriptions of the one pull sent since the last look (`None`: no pull).
fn pulled(h: &mut Harness) -> Option<(FetchId, Json)> {
    let pulls = to("pull", &h.take_fetches());
    assert!(pulls.len() <= 1, "{pulls:?}");
    let (fetch, request) = pulls.into_iter().next()?;
    let body: Json = serde_json::from_str(request.body.as_deref().unwrap()).unwrap();
    assert_eq!(body["protocolVersion"], 2);
    Some((fetch, body["subscriptions"].clone()))
}

fn my_lists() -> Json {
    json!({ "query": "myLists", "args": {} })
}

fn todos_of(list: &str) -> Json {
    json!({ "query": "todosOf", "args": { "list_id": list, "limit": null } })
}

/// `syncState` messages to `tab`, as (hold, status).
fn states(h: &mut Harness, tab: TabId) -> Vec<(u64, Json)> {
    h.posted_of(tab, "syncState")
        .into_iter()
        .map(|m| (m["hold"].as_u64().unwrap(), m["status"].clone()))
        .collect()
}

#[test]
fn sync_on_open_queries_are_in_the_first_pull() {
    let mut h = Harness::new();
    let tab = h.connect();
    h.open_app(tab, &app_with_queries(), true, false);
    h.settle_storage();
    let (_, subscriptions) = pulled(&mut h).expect("the first pull");
    assert_eq!(subscriptions, json!([my_lists()]));
}

#[test]
fn two_tabs_holding_the_same_query_share_one_subscription_until_both_let_go() {
    let (mut h, tab1) = synced();
    let tab2 = h.connect();
    h.open_app(tab2, &app_with_queries(), true, true);
    h.take();

    assert!(hold(
        &mut h,
        tab1,
        1,
        "todosOf",
        json!({"list_id": "l1"}),
        Some(1_000)
    )
    .get("error")
    .is_none());
    let (fetch, set) = pulled(&mut h).expect("a new subscription pulls at once");
    assert_eq!(set, json!([my_lists(), todos_of("l1")]));
    h.reply(fetch, pull_ok(2, false));
    // The same arguments in another order (and with the nullable one given
    // as null) are the same subscription: nothing new to pull.
    hold(
        &mut h,
        tab2,
        7,
        "todosOf",
        json!({"limit": null, "list_id": "l1"}),
        Some(1_000),
    );
    assert_eq!(pulled(&mut h), None);

    release(&mut h, tab1, 1);
    assert_eq!(
        h.timer(Timer::SyncSubscriptions),
        None,
        "tab 2 still holds it"
    );
    h.take();
    release(&mut h, tab2, 7);
    let expiry = h.timer(Timer::SyncSubscriptions).expect("the TTL runs");
    assert_eq!(expiry, h.env.now.get() + 1_000);
    assert_eq!(pulled(&mut h), None, "still wanted during its TTL");
    h.take();
    h.fire(Timer::SyncSubscriptions, expiry);
    let (_, set) = pulled(&mut h).expect("gone from the set, pulled");
    assert_eq!(set, json!([my_lists()]));
}

#[test]
fn holding_again_within_the_ttl_keeps_the_subscription_and_downloads_nothing_again() {
    let (mut h, tab) = synced();
    hold(
        &mut h,
        tab,
        1,
        "todosOf",
        json!({"list_id": "l1"}),
        Some(5_000),
    );
    let (fetch, _) = pulled(&mut h).unwrap();
    h.reply(fetch, pull_ok(2, false));
    release(&mut h, tab, 1);
    let expiry = h.timer(Timer::SyncSubscriptions).unwrap();
    h.take();
    h.env.now.set(expiry - 1);
    hold(
        &mut h,
        tab,
        2,
        "todosOf",
        json!({"list_id": "l1"}),
        Some(5_000),
    );
    assert_eq!(pulled(&mut h), None);
    assert!(h
        .out
        .contains(&Output::ClearTimer(Timer::SyncSubscriptions)));
    h.take();
    // The old expiry passes: nothing leaves.
    h.fire(Timer::SyncSubscriptions, expiry);
    assert_eq!(pulled(&mut h), None);
}

#[test]
fn a_ttl_of_zero_leaves_at_once() {
    let (mut h, tab) = synced();
    hold(&mut h, tab, 1, "todosOf", json!({"list_id": "l1"}), Some(0));
    let (fetch, _) = pulled(&mut h).unwrap();
    h.reply(fetch, pull_ok(2, false));
    h.take();
    release(&mut h, tab, 1);
    let (_, set) = pulled(&mut h).expect("pulled without it");
    assert_eq!(set, json!([my_lists()]));
}

#[test]
fn a_tab_that_goes_away_releases_its_holds() {
    let (mut h, tab1) = synced();
    let tab2 = h.connect();
    h.open_app(tab2, &app_with_queries(), true, true);
    hold(
        &mut h,
        tab2,
        1,
        "todosOf",
        json!({"list_id": "l2"}),
        Some(2_000),
    );
    let (fetch, _) = pulled(&mut h).unwrap();
    h.reply(fetch, pull_ok(2, false));
    h.take();
    h.input(Input::TabGone { tab: tab2 });
    let expiry = h.timer(Timer::SyncSubscriptions).expect("its TTL runs");
    h.take();
    h.fire(Timer::SyncSubscriptions, expiry);
    let (_, set) = pulled(&mut h).expect("pulled without it");
    assert_eq!(set, json!([my_lists()]));
    // A hold the tab never had is no release.
    assert_eq!(
        release(&mut h, tab1, 1)["error"]["code"],
        "unknown_subscription"
    );
}

#[test]
fn holders_are_told_the_state_at_once_and_on_every_change() {
    let (mut h, tab) = synced();
    hold(&mut h, tab, 3, "todosOf", json!({"list_id": "l1"}), None);
    assert_eq!(
        states(&mut h, tab),
        [(3, json!({"state": "pending", "synced": 0, "total": 0}))]
    );
    let (fetch, _) = pulled(&mut h).unwrap();
    let mut page = pull_ok(2, false);
    page["subscriptions"] = json!([
        { "query": "myLists", "args": {}, "state": "complete", "synced": 0, "total": 0 },
        { "query": "todosOf", "args": { "list_id": "l1", "limit": null }, "state": "complete", "synced": 2, "total": 2 }
    ]);
    h.reply(fetch, page.clone());
    assert_eq!(
        states(&mut h, tab),
        [(3, json!({"state": "complete", "synced": 2, "total": 2}))]
    );
    // A pull that says the same of it tells its holder nothing; the new
    // holder of another subscription hears of its own.
    hold(&mut h, tab, 4, "todosOf", json!({"list_id": "l2"}), None);
    assert_eq!(
        states(&mut h, tab),
        [(4, json!({"state": "pending", "synced": 0, "total": 0}))]
    );
    let (fetch, _) = pulled(&mut h).unwrap();
    page["cookie"] = json!(3);
    page["subscriptions"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "query": "todosOf", "args": { "list_id": "l2", "limit": null }, "state": "complete", "synced": 0, "total": 0 }));
    h.reply(fetch, page);
    assert_eq!(
        states(&mut h, tab),
        [(4, json!({"state": "complete", "synced": 0, "total": 0}))]
    );
}

#[test]
fn the_servers_error_for_a_subscription_reaches_its_holders_with_its_code() {
    let (mut h, tab) = synced();
    hold(&mut h, tab, 1, "todosOf", json!({"list_id": "l1"}), None);
    states(&mut h, tab);
    let (fetch, _) = pulled(&mut h).unwrap();
    let mut page = pull_ok(2, false);
    page["subscriptions"] = json!([
        { "query": "myLists", "args": {}, "state": "complete", "synced": 0, "total": 0 },
        { "query": "todosOf", "args": { "list_id": "l1", "limit": null }, "state": "error", "synced": 0, "total": 0,
          "error": { "code": "unknown_query", "message": "the server has no query `todosOf`" } }
    ]);
    h.reply(fetch, page);
    let told = states(&mut h, tab);
    assert_eq!(told.len(), 1);
    assert_eq!(told[0].1["state"], "error");
    assert_eq!(told[0].1["error"]["code"], "unknown_query");
}

#[test]
fn an_unknown_query_or_bad_arguments_are_refused_at_once_with_their_codes() {
    let (mut h, tab) = synced();
    let reply = hold(&mut h, tab, 1, "nope", json!({}), None);
    assert_eq!(reply["error"]["code"], "unknown_query");
    let reply = hold(&mut h, tab, 2, "todosOf", json!({"list_id": 5}), None);
    assert_eq!(reply["error"]["code"], "bad_arguments");
    let reply = hold(&mut h, tab, 3, "todosOf", json!({"list": "l1"}), None);
    assert_eq!(reply["error"]["code"], "bad_arguments");
    assert_eq!(pulled(&mut h), None, "nothing was subscribed");
    assert_eq!(states(&mut h, tab), []);
    // A hold id in use is a bad request, not a second holder.
    hold(&mut h, tab, 4, "myLists", json!({}), None);
    let reply = hold(&mut h, tab, 4, "myLists", json!({}), None);
    assert_eq!(reply["error"]["code"], "bad_request");
}

#[test]
fn the_desired_set_survives_a_worker_restart_for_its_ttl() {
    let (mut h, tab) = synced();
    hold(
        &mut h,
        tab,
        1,
        "todosOf",
        json!({"list_id": "l1"}),
        Some(60_000),
    );
    h.settle_storage();
    h.take();

    let mut r = h.reopened(500);
    let tab = r.connect();
    r.open_app(tab, &app_with_queries(), true, false);
    r.settle_storage();
    let (fetch, set) = pulled(&mut r).expect("the first pull after the restart");
    assert_eq!(set, json!([my_lists(), todos_of("l1")]));
    r.reply(fetch, pull_ok(2, false));
    // Nothing holds it since the restart: it leaves after its TTL.
    let expiry = r.timer(Timer::SyncSubscriptions).expect("its TTL runs");
    assert_eq!(expiry, 500 + 60_000);
    r.take();
    r.fire(Timer::SyncSubscriptions, expiry);
    let (_, set) = pulled(&mut r).expect("pulled without it");
    assert_eq!(set, json!([my_lists()]));
}

#[test]
fn an_app_without_queries_refuses_sync_holds() {
    let (mut h, tab, pull) = syncing();
    h.reply(pull, pull_ok(1, false));
    h.take();
    let reply = hold(&mut h, tab, 1, "anything", json!({}), None);
    assert_eq!(reply["error"]["code"], "unknown_query");
    assert!(h.take_fetches().is_empty());
}

#[test]
fn after_delete_database_the_new_replica_syncs_what_the_tabs_hold() {
    let (mut h, tab) = synced();
    hold(&mut h, tab, 1, "todosOf", json!({"list_id": "l1"}), None);
    let (fetch, _) = pulled(&mut h).unwrap();
    h.reply(fetch, pull_ok(2, false));
    h.settle_storage();
    h.take();
    h.call(tab, json!({ "type": "deleteDatabase" }));
    h.take();
    h.input(Input::FilesDeleted {
        result: Ok(()),
        backend: "memory".into(),
        log: Default::default(),
    });
    h.settle_storage();
    let ask = h.posted_of(tab, "needToken");
    assert_eq!(ask.len(), 1, "the new client asks for a token");
    h.send(
        tab,
        json!({ "type": "token", "ask": ask[0]["ask"], "token": "t2" }),
    );
    let (_, set) = pulled(&mut h).expect("the new client's first pull");
    assert_eq!(set, json!([my_lists(), todos_of("l1")]));
}

/// Subscribes live query `subscription` of `tab` to `sql`; its first result
/// (`{columns, rows, complete}`).
fn watch(h: &mut Harness, tab: TabId, subscription: u32, sql: &str) -> Json {
    let id = h.call(
        tab,
        json!({ "type": "subscribe", "subscription": subscription, "sql": sql }),
    );
    reply_to(h, tab, id)["ok"].clone()
}

/// The live-query updates posted to `tab`, as (subscription, complete, rows
/// kept or error), in order.
fn completeness(h: &mut Harness, tab: TabId) -> Vec<(u64, bool, Json)> {
    h.posted_of(tab, "live")
        .into_iter()
        .flat_map(|m| m["updates"].as_array().unwrap().clone())
        .map(|u| {
            let change = u
                .get("patch")
                .map_or_else(|| u["error"]["code"].clone(), |p| p["segments"].clone());
            (
                u["subscription"].as_u64().unwrap(),
                u["complete"].as_bool().unwrap(),
                change,
            )
        })
        .collect()
}

fn state_of(subscription: &Json, state: &str) -> Json {
    let mut s = subscription.clone();
    s["state"] = json!(state);
    s["synced"] = json!(0);
    s["total"] = json!(0);
    s
}

#[test]
fn a_live_query_is_incomplete_while_a_subscription_over_a_table_it_reads_is_pending() {
    let (mut h, tab) = synced();
    // The first pull said nothing of `myLists` (synced from open): pending.
    let lists = watch(&mut h, tab, 1, "SELECT id FROM lists");
    assert_eq!(lists["complete"], false);
    // No subscription syncs `todos`: nothing more is coming, so complete.
    let todos = watch(&mut h, tab, 2, "SELECT id FROM todos");
    assert_eq!(todos["complete"], true);
    let joined = watch(
        &mut h,
        tab,
        3,
        "SELECT t.id FROM todos t WHERE t.list_id IN (SELECT id FROM lists)",
    );
    assert_eq!(joined["complete"], false);
    assert_eq!(watch(&mut h, tab, 4, "SELECT 1")["complete"], true);
    h.take();

    // A new subscription over `todos`: the queries reading it hear at once,
    // though no row changed (every row kept: none yet).
    hold(&mut h, tab, 1, "todosOf", json!({"list_id": "l1"}), None);
    assert_eq!(completeness(&mut h, tab), [(2, false, json!([[0, 0]]))]);
    let (fetch, _) = pulled(&mut h).unwrap();

    // The server says `myLists` is complete, `todosOf` not yet (more pages).
    let mut page = pull_ok(2, true);
    page["subscriptions"] = json!([
        state_of(&my_lists(), "complete"),
        state_of(&todos_of("l1"), "pending")
    ]);
    h.reply(fetch, page);
    assert_eq!(completeness(&mut h, tab), [(1, true, json!([[0, 0]]))]);

    // Its rows arrive and it is complete: one update each, with the rows
    // if they changed (the joined query has none: there is no list `l1`).
    let (fetch, _) = pulled(&mut h).expect("the server said there is more of it");
    let mut page = pull_ok(3, false);
    page["patch"] = json!([{ "type": "put", "table": "todos", "row": {
        "id": "t1", "list_id": "l1", "title": "milk", "done": false, "owner": "u1", "meta": null
    } }]);
    page["subscriptions"] = json!([
        state_of(&my_lists(), "complete"),
        state_of(&todos_of("l1"), "complete")
    ]);
    h.reply(fetch, page);
    h.settle_storage();
    let mut told = completeness(&mut h, tab);
    told.sort_by_key(|(s, ..)| *s);
    assert_eq!(
        told,
        [
            (2, true, json!([{ "rows": [["t1"]] }])),
            (3, true, json!([[0, 0]]))
        ]
    );
}

#[test]
fn an_error_subscription_holds_no_live_query_back() {
    let (mut h, tab) = synced();
    hold(&mut h, tab, 1, "todosOf", json!({"list_id": "l1"}), None);
    assert_eq!(
        watch(&mut h, tab, 1, "SELECT id FROM todos")["complete"],
        false
    );
    let (fetch, _) = pulled(&mut h).unwrap();
    let mut page = pull_ok(2, false);
    let mut failed = state_of(&todos_of("l1"), "error");
    failed["error"] = json!({ "code": "unknown_query", "message": "no query `todosOf`" });
    page["subscriptions"] = json!([state_of(&my_lists(), "complete"), failed]);
    h.reply(fetch, page);
    assert_eq!(completeness(&mut h, tab), [(1, true, json!([[0, 0]]))]);
}

#[test]
fn without_subscriptions_live_queries_are_complete_once_the_first_download_finished() {
    let (mut h, tab, pull) = syncing();
    assert_eq!(
        watch(&mut h, tab, 1, "SELECT id FROM todos")["complete"],
        false
    );
    // A query over no synced table awaits nothing.
    assert_eq!(watch(&mut h, tab, 2, "SELECT 1")["complete"], true);
    h.take();
    h.reply(pull, pull_ok(1, true));
    h.settle_storage();
    assert_eq!(completeness(&mut h, tab), [], "more pages are coming");
    let pulls = to("pull", &h.take_fetches());
    h.reply(pulls[0].0, pull_ok(2, false));
    h.settle_storage();
    assert_eq!(completeness(&mut h, tab), [(1, true, json!([[0, 0]]))]);
    // It stays complete: later pulls keep it current, as any sync does.
    assert_eq!(
        watch(&mut h, tab, 3, "SELECT id FROM lists")["complete"],
        true
    );
}

#[test]
fn without_a_sync_server_live_queries_are_complete() {
    let mut h = Harness::new();
    let tab = h.connect();
    h.open_app(tab, &app_with_queries(), false, false);
    h.settle_storage();
    assert_eq!(
        watch(&mut h, tab, 1, "SELECT id FROM lists")["complete"],
        true
    );
}

/// [`app_with_queries`] as schema version `version`, with `edit` applied
/// to its queries.
fn app_with_queries_version(version: u32, edit: impl FnOnce(&mut Vec<Json>)) -> String {
    let mut app: Json = serde_json::from_str(&app_with_queries()).unwrap();
    app["version"] = json!(version);
    edit(app["queries"].as_array_mut().unwrap());
    app.to_string()
}

/// Upgrades the synced host's app in place to `app` from a new tab (the
/// restarted sync's token comes from it, not from the outdated tab `old`),
/// and answers the pull that follows: the set it pulled with.
fn upgraded(h: &mut Harness, old: TabId, app: &str) -> Json {
    let new = h.connect();
    h.open_app(new, app, true, true);
    h.settle_storage();
    assert!(
        h.posted_of(old, "needToken").is_empty(),
        "the outdated tab is not asked"
    );
    let ask = h.posted_of(new, "needToken");
    assert_eq!(
        ask.len(),
        1,
        "the restarted sync asks the new tab for a token"
    );
    h.send(
        new,
        json!({ "type": "token", "ask": ask[0]["ask"], "token": "t2" }),
    );
    let (fetch, set) = pulled(h).expect("the upgraded replica pulls");
    h.reply(fetch, pull_ok(3, false));
    h.settle_storage();
    set
}

#[test]
fn a_query_an_upgrade_no_longer_syncs_on_open_leaves_after_its_ttl() {
    let (mut h, old) = synced();
    let v2 = app_with_queries_version(2, |queries| queries[1]["syncOnOpen"] = json!(false));
    let set = upgraded(&mut h, old, &v2);
    assert_eq!(set, json!([my_lists()]), "kept for its TTL");
    let expiry = h
        .timer(Timer::SyncSubscriptions)
        .expect("the app let go of it: its TTL runs");
    assert_eq!(expiry, h.env.now.get() + DEFAULT_TTL_MS);
    h.take();
    h.fire(Timer::SyncSubscriptions, expiry);
    let (_, set) = pulled(&mut h).expect("pulled without it");
    assert_eq!(set, json!([]));
}

#[test]
fn a_query_held_by_a_tab_stays_when_an_upgrade_no_longer_syncs_it_on_open() {
    let (mut h, _old) = synced();
    let v2 = app_with_queries_version(2, |queries| queries[1]["syncOnOpen"] = json!(false));
    let new = h.connect();
    h.open_app(new, &v2, true, true);
    h.take();
    hold(&mut h, new, 1, "myLists", json!({}), Some(1_000));
    assert_eq!(h.timer(Timer::SyncSubscriptions), None, "held by the tab");
    release(&mut h, new, 1);
    let expiry = h.timer(Timer::SyncSubscriptions).expect("its TTL runs");
    assert_eq!(expiry, h.env.now.get() + DEFAULT_TTL_MS, "the longest TTL");
}

#[test]
fn a_query_an_upgrade_drops_leaves_at_once() {
    let (mut h, old) = synced();
    hold(
        &mut h,
        old,
        1,
        "todosOf",
        json!({"list_id": "l1"}),
        Some(60_000),
    );
    let (fetch, set) = pulled(&mut h).unwrap();
    assert_eq!(set, json!([my_lists(), todos_of("l1")]));
    h.reply(fetch, pull_ok(2, false));
    h.settle_storage();
    h.take();
    let v2 = app_with_queries_version(2, |queries| {
        queries.remove(0);
    });
    let set = upgraded(&mut h, old, &v2);
    assert_eq!(set, json!([my_lists()]));
    assert_eq!(
        h.timer(Timer::SyncSubscriptions),
        None,
        "nothing left to expire"
    );
}
