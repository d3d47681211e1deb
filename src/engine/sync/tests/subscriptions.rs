//! Protocol v2 on the client: the desired set in every pull, canonical
//! arguments, persistence across a reopen, states from responses, and rows
//! that leave only by the server's `del`.

use super::*;
use crate::engine::Now;
use ferrydb_protocol::{
    Cookie, PatchOp, PullOk, Subscription, SubscriptionPhase, SubscriptionState, PROTOCOL_VERSION,
    PROTOCOL_VERSION_SUBSCRIPTIONS,
};

fn subscription(query: &str, args: Json) -> Subscription {
    Subscription {
        query: query.into(),
        args,
    }
}

fn desired(replica: &Replica, query: &str, args: Json) -> Desired {
    Desired {
        subscription: canonical(replica.app(), query, &args).unwrap(),
        ttl_ms: DEFAULT_TTL_MS,
    }
}

fn state(
    sub: &Subscription,
    state: SubscriptionPhase,
    synced: u64,
    total: u64,
) -> SubscriptionState {
    SubscriptionState {
        query: sub.query.clone(),
        args: sub.args.clone(),
        state,
        synced,
        total,
        error: None,
    }
}

fn pull_ok(cookie: i64, patch: Vec<PatchOp>, states: Vec<SubscriptionState>) -> PullOk {
    PullOk {
        cookie: Cookie::Integer(cookie),
        last_mutation_id_changes: Default::default(),
        patch,
        more: false,
        subscriptions: states,
    }
}

fn todo(id: &str) -> PatchOp {
    PatchOp::Put {
        table: "todos".into(),
        row: serde_json::from_value(json!({
            "id": id, "list_id": "l1", "owner": "u1", "title": id, "done": false, "meta": null
        }))
        .unwrap(),
    }
}

#[test]
fn an_app_without_queries_still_speaks_v1() {
    let (replica, _db) = client("c1");
    let request = replica.pull_request();
    assert_eq!(request.protocol_version, PROTOCOL_VERSION);
    assert_eq!(request.subscriptions, None);
    assert!(!serde_json::to_string(&request)
        .unwrap()
        .contains("subscriptions"));
}

#[test]
fn an_app_with_queries_sends_its_whole_desired_set_with_every_pull() {
    let (mut replica, mut db) = client_with(app_with_queries());
    let request = replica.pull_request();
    assert_eq!(request.protocol_version, PROTOCOL_VERSION_SUBSCRIPTIONS);
    assert_eq!(request.subscriptions, Some(vec![]));

    let set = vec![
        desired(&replica, "todosOf", json!({"list_id": "l1"})),
        desired(&replica, "myLists", json!({})),
    ];
    assert!(replica.set_desired(&mut db, set).unwrap());
    assert_eq!(
        replica.pull_request().subscriptions,
        Some(vec![
            subscription("todosOf", json!({"list_id": "l1", "min_done": null})),
            subscription("myLists", json!({})),
        ])
    );
}

#[test]
fn a_subscription_given_twice_is_sent_once_in_its_first_place() {
    let (mut replica, mut db) = client_with(app_with_queries());
    let l1 = desired(&replica, "todosOf", json!({"list_id": "l1"}));
    let mine = desired(&replica, "myLists", json!({}));
    let set = vec![l1.clone(), mine.clone(), l1.clone(), mine.clone()];
    assert!(replica.set_desired(&mut db, set).unwrap());
    assert_eq!(replica.desired(), [l1.clone(), mine.clone()]);
    assert_eq!(
        replica.pull_request().subscriptions,
        Some(vec![l1.subscription.clone(), mine.subscription.clone()])
    );
    assert!(!replica
        .set_desired(&mut db, vec![l1.clone(), mine.clone()])
        .unwrap());

    // A persisted set with a repeat (written by hand here) loads once too.
    let entry = json!({"query": "myLists", "args": {}, "ttl": 5});
    meta::set(
        &mut db,
        "subscriptions",
        Value::Text(json!([entry, entry]).to_string()),
    )
    .unwrap();
    let (reopened, _) = Replica::open(&mut db, replica.app().clone(), "c1").unwrap();
    assert_eq!(reopened.desired().len(), 1);
}

#[test]
fn arguments_are_checked_and_made_canonical_like_a_mutators() {
    let (replica, _db) = client_with(app_with_queries());
    let app = replica.app();
    // Key order and a double that means an integer do not make another subscription.
    assert_eq!(
        canonical(app, "todosOf", &json!({"min_done": 2.0, "list_id": "l1"})).unwrap(),
        canonical(app, "todosOf", &json!({"list_id": "l1", "min_done": 2})).unwrap()
    );
    let unknown = canonical(app, "nope", &json!({})).unwrap_err();
    assert_eq!(unknown.code(), "unknown_query");
    assert!(unknown.to_string().contains("`nope`"), "{unknown}");
    for bad in [
        json!({}),
        json!({"list_id": 1}),
        json!({"list_id": "l1", "extra": 1}),
        json!("l1"),
    ] {
        let e = canonical(app, "todosOf", &bad).unwrap_err();
        assert_eq!(e.code(), "bad_arguments", "{bad}");
        assert!(e.to_string().contains("query `todosOf`"), "{e}");
    }
}

#[test]
fn the_desired_set_survives_a_reopen_and_a_ttl_change_alone_is_no_change() {
    let app = AppDefinition::from_json(&app_with_queries().to_string()).unwrap();
    let mut db = Database::open_in_memory().unwrap();
    let (mut replica, _) = Replica::open(&mut db, app.clone(), "c1").unwrap();
    let mut set = vec![desired(&replica, "todosOf", json!({"list_id": "l1"}))];
    set[0].ttl_ms = 1_000;
    assert!(replica.set_desired(&mut db, set.clone()).unwrap());
    set[0].ttl_ms = 2_000;
    assert!(!replica.set_desired(&mut db, set.clone()).unwrap());

    let (reopened, _) = Replica::open(&mut db, app, "c1").unwrap();
    assert_eq!(reopened.desired(), &set[..]);
    assert_eq!(
        reopened.pull_request().subscriptions,
        replica.pull_request().subscriptions
    );
}

#[test]
fn a_persisted_subscription_the_new_app_no_longer_has_is_dropped_on_open() {
    let mut db = Database::open_in_memory().unwrap();
    let app = AppDefinition::from_json(&app_with_queries().to_string()).unwrap();
    let (mut replica, _) = Replica::open(&mut db, app, "c1").unwrap();
    let set = vec![
        desired(&replica, "todosOf", json!({"list_id": "l1"})),
        desired(&replica, "myLists", json!({})),
    ];
    replica.set_desired(&mut db, set).unwrap();
    let mut newer = app_with_queries();
    newer["version"] = json!(2);
    newer["queries"].as_array_mut().unwrap().remove(0);
    let newer = AppDefinition::from_json(&newer.to_string()).unwrap();
    let (reopened, _) = Replica::open(&mut db, newer, "c1").unwrap();
    let kept: Vec<&str> = reopened
        .desired()
        .iter()
        .map(|d| d.subscription.query.as_str())
        .collect();
    assert_eq!(kept, ["myLists"]);
}

#[test]
fn states_come_from_responses_for_wanted_subscriptions_only() {
    let (mut replica, mut db) = client_with(app_with_queries());
    let l1 = desired(&replica, "todosOf", json!({"list_id": "l1"}));
    let l2 = desired(&replica, "todosOf", json!({"list_id": "l2"}));
    replica.set_desired(&mut db, vec![l1.clone()]).unwrap();
    assert_eq!(
        replica.subscription_status(&l1.subscription).state,
        SubscriptionPhase::Pending
    );
    let response = pull_ok(
        1,
        vec![todo("t1")],
        vec![
            state(&l1.subscription, SubscriptionPhase::Complete, 1, 1),
            // Answered for a set that changed while the pull was in flight.
            state(&l2.subscription, SubscriptionPhase::Complete, 0, 0),
        ],
    );
    replica.apply_pull(&mut db, &response).unwrap();
    let status = replica.subscription_status(&l1.subscription);
    assert_eq!(
        (status.state, status.synced, status.total),
        (SubscriptionPhase::Complete, 1, 1)
    );
    assert_eq!(
        replica.subscription_status(&l2.subscription).state,
        SubscriptionPhase::Pending
    );
    // Dropped and wanted again: what the server said before no longer holds.
    replica.set_desired(&mut db, vec![]).unwrap();
    replica.set_desired(&mut db, vec![l1.clone()]).unwrap();
    assert_eq!(
        replica.subscription_status(&l1.subscription).state,
        SubscriptionPhase::Pending
    );
}

#[test]
fn rows_leave_only_when_the_servers_patch_deletes_them() {
    let (mut replica, mut db) = client_with(app_with_queries());
    let l1 = desired(&replica, "todosOf", json!({"list_id": "l1"}));
    replica.set_desired(&mut db, vec![l1.clone()]).unwrap();
    replica
        .apply_pull(&mut db, &pull_ok(1, vec![todo("t1"), todo("t2")], vec![]))
        .unwrap();
    replica.set_desired(&mut db, vec![]).unwrap();
    // Another subscription may still hold them: only the server knows.
    assert_eq!(column(&mut db, "SELECT id FROM todos").len(), 2);
    let del = PatchOp::Del {
        table: "todos".into(),
        key: serde_json::from_value(json!({"id": "t1"})).unwrap(),
    };
    replica
        .apply_pull(&mut db, &pull_ok(2, vec![del], vec![]))
        .unwrap();
    assert_eq!(column(&mut db, "SELECT id FROM todos"), [text("t2")]);
}

/// The sync client: a changed set is pulled at once; the pages of a
/// download keep the set it started with.
#[test]
fn a_changed_set_pulls_at_once_and_a_download_keeps_its_set_until_its_last_page() {
    let (mut replica, mut db) = client_with(app_with_queries());
    let mut client = SyncClient::new(SyncConfig::default(), 1);
    let now = Now::at(1_000);
    let step = |client: &mut SyncClient, replica: &mut Replica, db: &mut Database, e| {
        client.handle(now, e, replica, db).unwrap()
    };
    step(&mut client, &mut replica, &mut db, Event::Online);
    let effects = step(&mut client, &mut replica, &mut db, Event::Token(None));
    let first = sent_pull(&effects).expect("the first pull");
    let mut page = pull_ok(1, vec![], vec![]);
    page.more = true;
    page.cookie = Cookie::Text("p1".into());

    let l1 = desired(&replica, "todosOf", json!({"list_id": "l1"}));
    assert!(replica.set_desired(&mut db, vec![l1.clone()]).unwrap());
    let effects = step(
        &mut client,
        &mut replica,
        &mut db,
        Event::SubscriptionsChanged,
    );
    assert!(sent_pull(&effects).is_none(), "one pull in flight at most");

    let effects = step(
        &mut client,
        &mut replica,
        &mut db,
        Event::PullResponse {
            id: first.0,
            response: PullResponse::Ok(page),
        },
    );
    let (id, continuation) = sent_pull(&effects).expect("the next page");
    assert_eq!(
        continuation.subscriptions,
        Some(vec![]),
        "the download's set"
    );
    let effects = step(
        &mut client,
        &mut replica,
        &mut db,
        Event::PullResponse {
            id,
            response: PullResponse::Ok(pull_ok(2, vec![], vec![])),
        },
    );
    let (_, next) = sent_pull(&effects).expect("the changed set's pull");
    assert_eq!(next.subscriptions, Some(vec![l1.subscription]));
}

#[test]
fn initial_sync_progress_shows_the_servers_total() {
    let (mut replica, mut db) = client_with(app_with_queries());
    let l1 = desired(&replica, "todosOf", json!({"list_id": "l1"}));
    replica.set_desired(&mut db, vec![l1.clone()]).unwrap();
    let mut client = SyncClient::new(SyncConfig::default(), 1);
    let now = Now::at(1_000);
    client
        .handle(now, Event::Online, &mut replica, &mut db)
        .unwrap();
    let effects = client
        .handle(now, Event::Token(None), &mut replica, &mut db)
        .unwrap();
    let (id, _) = sent_pull(&effects).unwrap();
    let mut page = pull_ok(
        1,
        vec![todo("t1")],
        vec![state(&l1.subscription, SubscriptionPhase::Pending, 1, 3)],
    );
    page.more = true;
    page.cookie = Cookie::Text("p1".into());
    client
        .handle(
            now,
            Event::PullResponse {
                id,
                response: PullResponse::Ok(page),
            },
            &mut replica,
            &mut db,
        )
        .unwrap();
    assert_eq!(
        client.status().initial_sync,
        Some(InitialSync {
            received: 1,
            total: Some(3)
        })
    );
}

fn sent_pull(effects: &[Effect]) -> Option<(u64, ferrydb_protocol::PullRequest)> {
    effects.iter().find_map(|e| match e {
        Effect::SendPull { id, request, .. } => Some((*id, request.clone())),
        _ => None,
    })
}
