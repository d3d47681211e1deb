//! Protocol v2, sync by subscription, over HTTP on every store: the
//! collaborative sample (`tests/fixtures/collab.json`: lists shared through
//! `members`, their items) synced by query. What a user relies on: only the
//! subscribed rows arrive, nothing of a row they may not read leaves the
//! server (not even its key), rows that leave the subscriptions (dropped,
//! revoked) are deleted, a repeated response loses nothing, paging reports
//! progress, and every error has its code.

mod common;

use axum::http::StatusCode;
use common::{server, store_urls, TestServer};
use ferrydb_protocol::AppDefinition;
use ferrydb_server::Config;
use serde_json::{json, Value as Json};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

fn collab_app() -> AppDefinition {
    let path = common::repo().join("tests/fixtures/collab.json");
    AppDefinition::from_json(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A collaborative server, with each client's next mutation ID.
struct Collab {
    server: TestServer,
    next_ids: Mutex<HashMap<String, u64>>,
}

fn my_lists() -> Json {
    json!({"query": "myLists", "args": {}})
}

fn list_items(list: &str) -> Json {
    json!({"query": "listItems", "args": {"list_id": list}})
}

impl Collab {
    async fn start(url: &str, page_size: usize) -> Collab {
        Collab::start_with(url, page_size, collab_app()).await
    }

    async fn start_with(url: &str, page_size: usize, app: AppDefinition) -> Collab {
        let mut config = Config::default();
        config.limits.page_size = page_size;
        Collab {
            server: server(url, app, config).await,
            next_ids: Mutex::default(),
        }
    }

    /// Pulls from `cookie` until a page says no `more`: the pages.
    async fn pull_pages(&self, user: &str, mut cookie: Json, subscriptions: &[Json]) -> Vec<Json> {
        let mut pages = Vec::new();
        loop {
            let page = self.pull(user, cookie, subscriptions).await;
            cookie = page["cookie"].clone();
            let more = page["more"] == true;
            pages.push(page);
            if !more {
                return pages;
            }
        }
    }

    /// Pulls the rest of a lazy paging from `cookie`, as a client does
    /// (following `more`): the pages up to the one that ends the paging (its
    /// cookie an integer), and the pulls it asks for at once, if writes
    /// during the paging left more to send (it says `more`, since no poke
    /// comes for what the paging recorded).
    async fn finish_paging(
        &self,
        user: &str,
        cookie: Json,
        subscriptions: &[Json],
    ) -> (Vec<Json>, Vec<Json>) {
        let mut pages = self.pull_pages(user, cookie, subscriptions).await;
        let ended = pages
            .iter()
            .position(|page| page["cookie"].is_i64())
            .expect("a paging ends");
        let asked = pages.split_off(ended + 1);
        assert_eq!(pages[ended]["more"], !asked.is_empty());
        (pages, asked)
    }

    /// ada's list `l1` with items `i0`…`i{n-1}`, shared with `member` if any.
    async fn list_of(&self, items: usize, member: Option<&str>) {
        self.run(
            "ada",
            "createList",
            json!({"id": "l1", "title": "Groceries", "owner": "ada"}),
        )
        .await;
        if let Some(member) = member {
            self.run(
                "ada",
                "addMember",
                json!({"list_id": "l1", "user_id": member, "role": "editor"}),
            )
            .await;
        }
        for i in 0..items {
            self.run(
                "ada",
                "addItem",
                json!({"id": format!("i{i}"), "list_id": "l1", "title": "x"}),
            )
            .await;
        }
    }

    /// Runs one mutation as `user` from the client (and group) named after
    /// them; it must apply.
    async fn run(&self, user: &str, name: &str, args: Json) {
        self.run_from(user, user, name, args).await
    }

    /// Runs one mutation as `user` from the client (and group) `client`; it
    /// must apply.
    async fn run_from(&self, user: &str, client: &str, name: &str, args: Json) {
        let id = {
            let mut ids = self.next_ids.lock().unwrap();
            let next = ids.entry(client.to_owned()).or_insert(0);
            *next += 1;
            *next
        };
        let body = json!({
            "protocolVersion": 2, "schemaVersion": 1,
            "clientGroupID": client, "clientID": client,
            "mutations": [{"id": id, "name": name, "args": args, "timestamp": 0}],
        });
        let reply = self.server.post("/sync/push", user, &body).await;
        assert_eq!(common::codes(&reply), ["ok"], "{name} {}", reply.body);
    }

    /// A v2 pull of `user`'s group (named after the user) that must succeed.
    async fn pull(&self, user: &str, cookie: Json, subscriptions: &[Json]) -> Json {
        let reply = self.pull_reply(user, user, cookie, subscriptions).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        reply.body
    }

    async fn pull_reply(
        &self,
        user: &str,
        group: &str,
        cookie: Json,
        subscriptions: &[Json],
    ) -> common::Reply {
        let body = json!({
            "protocolVersion": 2, "schemaVersion": 1,
            "clientGroupID": group, "clientID": group,
            "cookie": cookie, "subscriptions": subscriptions,
        });
        self.server.post("/sync/pull", user, &body).await
    }

    /// ada's list `l1` shared with grace (editor) with item `i1`, and ada's
    /// private list `l2` with item `i2`.
    async fn shared_and_private(&self) {
        self.run(
            "ada",
            "createList",
            json!({"id": "l1", "title": "Groceries", "owner": "ada"}),
        )
        .await;
        self.run(
            "ada",
            "addMember",
            json!({"list_id": "l1", "user_id": "grace", "role": "editor"}),
        )
        .await;
        self.run(
            "ada",
            "addItem",
            json!({"id": "i1", "list_id": "l1", "title": "milk"}),
        )
        .await;
        self.run(
            "ada",
            "createList",
            json!({"id": "l2", "title": "Surprise party", "owner": "ada"}),
        )
        .await;
        self.run(
            "ada",
            "addItem",
            json!({"id": "i2", "list_id": "l2", "title": "cake"}),
        )
        .await;
    }
}

/// `(op, table, id)` of each patch entry: `put` rows by their `id`, `del`
/// keys by theirs (both tables here have an `id` key).
fn ops(response: &Json) -> Vec<(String, String, String)> {
    response["patch"]
        .as_array()
        .unwrap()
        .iter()
        .map(|op| {
            let kind = op["type"].as_str().unwrap().to_owned();
            let table = op["table"].as_str().unwrap_or("").to_owned();
            let id = match kind.as_str() {
                "put" => op["row"]["id"].as_str().unwrap().to_owned(),
                "del" => op["key"]["id"].as_str().unwrap().to_owned(),
                _ => String::new(),
            };
            (kind, table, id)
        })
        .collect()
}

fn op(kind: &str, table: &str, id: &str) -> (String, String, String) {
    (kind.into(), table.into(), id.into())
}

/// `(query, state, synced, total)` per subscription entry.
fn states(response: &Json) -> Vec<(String, String, u64, u64)> {
    response["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["query"].as_str().unwrap().to_owned(),
                s["state"].as_str().unwrap().to_owned(),
                s["synced"].as_u64().unwrap(),
                s["total"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn state(query: &str, phase: &str, synced: u64, total: u64) -> (String, String, u64, u64) {
    (query.into(), phase.into(), synced, total)
}

/// Nothing of ada's private list appears anywhere in `body`: not its rows'
/// keys, not their values. (The subscription entries echo the arguments the
/// client sent, which may name the list: they are checked by their counts.)
fn assert_nothing_private(body: &Json) {
    let mut body = body.clone();
    if let Some(entries) = body["subscriptions"].as_array_mut() {
        for entry in entries {
            entry["args"] = Json::Null;
        }
    }
    let text = body.to_string();
    for secret in ["l2", "i2", "Surprise party", "cake"] {
        assert!(!text.contains(secret), "{secret:?} leaked in {text}");
    }
}

#[tokio::test]
async fn members_share_a_list_and_only_the_subscribed_lists_items_arrive() {
    for url in store_urls().await {
        let collab = Collab::start(&url, 100).await;
        collab.shared_and_private().await;
        collab
            .run(
                "ada",
                "addItem",
                json!({"id": "i3", "list_id": "l1", "title": "eggs"}),
            )
            .await;

        let grace = collab
            .pull("grace", Json::Null, &[my_lists(), list_items("l1")])
            .await;
        assert_eq!(
            ops(&grace),
            [
                op("clear", "", ""),
                op("put", "lists", "l1"),
                op("put", "items", "i1"),
                op("put", "items", "i3")
            ],
            "{url}"
        );
        assert_eq!(
            states(&grace),
            [
                state("myLists", "complete", 1, 1),
                state("listItems", "complete", 2, 2)
            ]
        );
        assert_eq!(grace["more"], false);
        assert_nothing_private(&grace);

        // ada holds both lists but only the items of the list she opened.
        let ada = collab
            .pull("ada", Json::Null, &[my_lists(), list_items("l1")])
            .await;
        assert_eq!(
            ops(&ada),
            [
                op("clear", "", ""),
                op("put", "lists", "l1"),
                op("put", "lists", "l2"),
                op("put", "items", "i1"),
                op("put", "items", "i3")
            ]
        );
        // Her own client's mutations are acknowledged as in v1.
        assert_eq!(ada["lastMutationIDChanges"], json!({"ada": 6}));
        assert_eq!(grace["lastMutationIDChanges"], json!({}));

        // grace edits the shared item; ada's next pull brings exactly it.
        collab
            .run(
                "grace",
                "editItem",
                json!({"id": "i1", "title": "oat milk", "done": true}),
            )
            .await;
        let next = collab
            .pull(
                "ada",
                ada["cookie"].clone(),
                &[my_lists(), list_items("l1")],
            )
            .await;
        assert_eq!(ops(&next), [op("put", "items", "i1")]);
        assert_eq!(
            next["patch"][0]["row"],
            json!({"id": "i1", "list_id": "l1", "title": "oat milk", "done": true})
        );
        assert!(next["cookie"].as_i64() > ada["cookie"].as_i64());
    }
}

/// ada writes a private list and items after grace synced: grace's
/// incremental pull is empty and names nothing of them, and so is her full
/// pull, even when she asks for the private list's items by ID.
#[tokio::test]
async fn a_private_write_never_reaches_another_user_not_even_its_keys() {
    for url in store_urls().await {
        let collab = Collab::start(&url, 100).await;
        collab
            .run(
                "ada",
                "createList",
                json!({"id": "l1", "title": "Groceries", "owner": "ada"}),
            )
            .await;
        collab
            .run(
                "ada",
                "addMember",
                json!({"list_id": "l1", "user_id": "grace", "role": "viewer"}),
            )
            .await;
        let subscriptions = [my_lists(), list_items("l1"), list_items("l2")];
        let before = collab.pull("grace", Json::Null, &subscriptions).await;
        assert_eq!(
            ops(&before),
            [op("clear", "", ""), op("put", "lists", "l1")],
            "{url}"
        );

        collab
            .run(
                "ada",
                "createList",
                json!({"id": "l2", "title": "Surprise party", "owner": "ada"}),
            )
            .await;
        collab
            .run(
                "ada",
                "addItem",
                json!({"id": "i2", "list_id": "l2", "title": "cake"}),
            )
            .await;

        let incremental = collab
            .pull("grace", before["cookie"].clone(), &subscriptions)
            .await;
        assert_eq!(ops(&incremental), []);
        assert_eq!(
            incremental["cookie"], before["cookie"],
            "nothing changed for grace"
        );
        assert_nothing_private(&incremental);
        assert_eq!(
            states(&incremental),
            [
                state("myLists", "complete", 1, 1),
                state("listItems", "complete", 0, 0),
                state("listItems", "complete", 0, 0)
            ]
        );

        let full = collab.pull("grace", Json::Null, &subscriptions).await;
        assert_eq!(ops(&full), [op("clear", "", ""), op("put", "lists", "l1")]);
        assert_nothing_private(&full);
    }
}

#[tokio::test]
async fn a_dropped_subscriptions_rows_come_back_as_del() {
    for url in store_urls().await {
        let collab = Collab::start(&url, 100).await;
        collab.shared_and_private().await;
        let first = collab
            .pull(
                "ada",
                Json::Null,
                &[my_lists(), list_items("l1"), list_items("l2")],
            )
            .await;
        assert_eq!(
            states(&first)[2],
            state("listItems", "complete", 1, 1),
            "{url}"
        );

        let dropped = collab
            .pull(
                "ada",
                first["cookie"].clone(),
                &[my_lists(), list_items("l1")],
            )
            .await;
        assert_eq!(ops(&dropped), [op("del", "items", "i2")]);
        assert_eq!(dropped["patch"][0]["key"], json!({"id": "i2"}));
    }
}

/// A subscription requested twice in one pull (which the client never
/// sends) is answered once: one entry, its rows counted once, each row sent
/// once, and the view records it once (a later pull without the repeat
/// changes nothing).
#[tokio::test]
async fn a_repeated_subscription_in_one_pull_is_answered_once() {
    for url in store_urls().await {
        let collab = Collab::start(&url, 100).await;
        collab.list_of(3, Some("grace")).await;
        let repeated = [list_items("l1"), my_lists(), list_items("l1"), my_lists()];
        let first = collab.pull("grace", Json::Null, &repeated).await;
        assert_eq!(
            states(&first),
            [
                state("listItems", "complete", 3, 3),
                state("myLists", "complete", 1, 1)
            ],
            "{url}"
        );
        assert_eq!(ops(&first).len(), 1 + 1 + 3, "{url}: clear, l1, i0..i2");
        let once = collab
            .pull(
                "grace",
                first["cookie"].clone(),
                &[list_items("l1"), my_lists()],
            )
            .await;
        assert_eq!(ops(&once), [], "{url}");
        assert_eq!(once["cookie"], first["cookie"], "{url}");
    }
}

/// A member removed from a list: their next pull deletes the list and its
/// items from their replica, and their subscription to it selects nothing.
#[tokio::test]
async fn a_removed_member_loses_the_lists_rows_on_the_next_pull() {
    for url in store_urls().await {
        let collab = Collab::start(&url, 100).await;
        collab.shared_and_private().await;
        let subscriptions = [my_lists(), list_items("l1")];
        let first = collab.pull("grace", Json::Null, &subscriptions).await;
        assert_eq!(ops(&first).len(), 3, "{url}: clear, i1, l1");

        collab
            .run(
                "ada",
                "removeMember",
                json!({"list_id": "l1", "user_id": "grace"}),
            )
            .await;
        let revoked = collab
            .pull("grace", first["cookie"].clone(), &subscriptions)
            .await;
        assert_eq!(
            ops(&revoked),
            [op("del", "lists", "l1"), op("del", "items", "i1")]
        );
        assert_eq!(
            states(&revoked),
            [
                state("myLists", "complete", 0, 0),
                state("listItems", "complete", 0, 0)
            ]
        );
        // And a write to the list afterwards tells her nothing.
        collab
            .run(
                "ada",
                "addItem",
                json!({"id": "i9", "list_id": "l1", "title": "secret"}),
            )
            .await;
        let after = collab
            .pull("grace", revoked["cookie"].clone(), &subscriptions)
            .await;
        assert_eq!(ops(&after), []);
        assert!(!after.to_string().contains("i9"));
    }
}

/// A response lost on the way: the client pulls again from the cookie it
/// had, and gets the same patches (the view remembers them).
#[tokio::test]
async fn a_repeated_pull_from_an_older_cookie_gets_the_same_patches_again() {
    for url in store_urls().await {
        let collab = Collab::start(&url, 100).await;
        collab.shared_and_private().await;
        let subscriptions = [my_lists(), list_items("l1")];
        let first = collab.pull("grace", Json::Null, &subscriptions).await;
        collab
            .run(
                "ada",
                "addItem",
                json!({"id": "i3", "list_id": "l1", "title": "eggs"}),
            )
            .await;
        collab
            .run(
                "ada",
                "addMember",
                json!({"list_id": "l1", "user_id": "carol", "role": "viewer"}),
            )
            .await;
        collab
            .run(
                "grace",
                "editItem",
                json!({"id": "i1", "title": "oat milk", "done": false}),
            )
            .await;
        let lost = collab
            .pull("grace", first["cookie"].clone(), &subscriptions)
            .await;
        let again = collab
            .pull("grace", first["cookie"].clone(), &subscriptions)
            .await;
        assert_eq!(
            ops(&lost),
            [op("put", "items", "i1"), op("put", "items", "i3")],
            "{url}"
        );
        assert_eq!(again["patch"], lost["patch"]);
        assert_eq!(again["cookie"], lost["cookie"]);
        assert_eq!(again["lastMutationIDChanges"], json!({"grace": 1}));
        assert_eq!(lost["lastMutationIDChanges"], json!({"grace": 1}));
    }
}

/// Rows that left a group are forgotten once the group pulls from a cookie
/// at or after their `del` (it applied it): the view shrinks. Until then a
/// lost response, pulled again from the older cookie, still gets the `del`s;
/// after it, a pull from before them (a replica restored from an older
/// state) gets `resetReplica`, and starts over.
#[tokio::test]
async fn rows_that_left_are_forgotten_once_the_group_has_their_del() {
    for url in store_urls().await {
        let collab = Collab::start(&url, 100).await;
        collab.shared_and_private().await;
        let view_rows = || common::count_of_group(&url, "_ferry_view_rows", "grace");
        let subscriptions = [my_lists(), list_items("l1")];
        let first = collab.pull("grace", Json::Null, &subscriptions).await;
        assert_eq!(view_rows().await, 2, "{url}: l1, i1");
        collab
            .run(
                "ada",
                "removeMember",
                json!({"list_id": "l1", "user_id": "grace"}),
            )
            .await;
        let revoked = collab
            .pull("grace", first["cookie"].clone(), &subscriptions)
            .await;
        let removed = [op("del", "lists", "l1"), op("del", "items", "i1")];
        assert_eq!(ops(&revoked), removed, "{url}");
        let lost = collab
            .pull("grace", first["cookie"].clone(), &subscriptions)
            .await;
        assert_eq!(ops(&lost), removed, "{url}: the response was lost");
        assert_eq!(view_rows().await, 2, "{url}: the dels may be pulled again");

        let caught_up = collab
            .pull("grace", revoked["cookie"].clone(), &subscriptions)
            .await;
        assert_eq!(ops(&caught_up), [], "{url}");
        assert_eq!(caught_up["cookie"], revoked["cookie"], "{url}");
        assert_eq!(view_rows().await, 0, "{url}: the dels were applied");
        let again = collab
            .pull("grace", revoked["cookie"].clone(), &subscriptions)
            .await;
        assert_eq!(ops(&again), [], "{url}");

        let restored = collab
            .pull("grace", first["cookie"].clone(), &subscriptions)
            .await;
        assert_eq!(restored["type"], "schemaMismatch", "{url}: {restored}");
        assert_eq!(restored["action"], "resetReplica", "{url}");
        let full = collab.pull("grace", Json::Null, &subscriptions).await;
        assert_eq!(ops(&full), [op("clear", "", "")], "{url}");
    }
}

/// A cookie the server could not have written gets `resetReplica`: from its
/// future, a tampered cursor, a v1 cursor, a negative version.
#[tokio::test]
async fn a_tampered_or_future_cookie_gets_reset_replica() {
    for url in store_urls().await {
        let collab = Collab::start(&url, 1).await;
        collab.shared_and_private().await;
        let subscriptions = [my_lists(), list_items("l1")];
        let first = collab.pull("ada", Json::Null, &subscriptions).await;
        let cursor = first["cookie"]
            .as_str()
            .expect("a page of one row has a cursor")
            .to_owned();
        // An initial sync's pages read the tables: `rows:<version>:…`.
        let version = cursor.split(':').nth(1).unwrap().parse::<i64>().unwrap();
        for cookie in [
            json!(version + 1),
            json!(-1),
            json!(cursor.replace(
                &format!("rows:{version}:"),
                &format!("rows:{}:", version + 5)
            )),
            json!(cursor.replace("rows:", "full:")),
            json!(format!("rows:{version}:7:[\"l1\"]")),
            json!(format!("rows:{version}:0:[1]")),
            json!(format!("rows:{version}:0:[\"l1\"")),
            json!(format!("rows:0:0:[\"l1\"]")),
            json!(format!("view:-:{version}:7:[\"l1\"]")),
            json!(format!("view:-:{version}:0:[1]")),
            json!(format!("view:-:{version}:0:[\"l1\"")),
            json!(format!("view:{version}:{version}:0:[\"l1\"]")),
        ] {
            let reply = collab.pull("ada", cookie.clone(), &subscriptions).await;
            assert_eq!(
                reply,
                json!({"type": "schemaMismatch", "serverSchemaVersion": 1, "action": "resetReplica"}),
                "{url}: {cookie}"
            );
        }
        // The cursor the server made still pages on.
        let next = collab.pull("ada", json!(cursor), &subscriptions).await;
        assert_eq!(next["type"], "ok");
        // A later pull of the group ends that paging: its cursors reset.
        let pages = collab
            .pull_pages("ada", json!(cursor), &subscriptions)
            .await;
        let last = pages.last().unwrap()["cookie"].clone();
        collab
            .run(
                "ada",
                "addItem",
                json!({"id": "i9", "list_id": "l1", "title": "new"}),
            )
            .await;
        let after = collab.pull("ada", last, &subscriptions).await;
        assert_eq!(ops(&after), [op("put", "items", "i9")], "{url}");
        let stale = collab.pull("ada", json!(cursor), &subscriptions).await;
        assert_eq!(stale["action"], "resetReplica", "{url}");
    }
}

/// More rows than a page: every page but the last says `more` and
/// `pending` with a growing `synced`; the last is `complete`, its cookie the
/// view version, and each row came exactly once.
#[tokio::test]
async fn a_large_subscription_is_paged_with_growing_progress() {
    for url in store_urls().await {
        let collab = Collab::start(&url, 2).await;
        collab
            .run(
                "ada",
                "createList",
                json!({"id": "l1", "title": "Groceries", "owner": "ada"}),
            )
            .await;
        for i in 0..5 {
            collab
                .run(
                    "ada",
                    "addItem",
                    json!({"id": format!("i{i}"), "list_id": "l1", "title": "x"}),
                )
                .await;
        }
        let subscriptions = [list_items("l1")];
        let mut cookie = Json::Null;
        let mut pages = Vec::new();
        loop {
            let page = collab.pull("ada", cookie, &subscriptions).await;
            cookie = page["cookie"].clone();
            let more = page["more"] == true;
            pages.push(page);
            if !more {
                break;
            }
        }
        let progress: Vec<_> = pages.iter().map(|p| states(p)[0].clone()).collect();
        assert_eq!(
            progress,
            [
                state("listItems", "pending", 2, 5),
                state("listItems", "pending", 4, 5),
                state("listItems", "complete", 5, 5)
            ],
            "{url}"
        );
        let sent: Vec<_> = pages.iter().flat_map(ops).collect();
        let expected: Vec<_> = std::iter::once(op("clear", "", ""))
            .chain((0..5).map(|i| op("put", "items", &format!("i{i}"))))
            .collect();
        assert_eq!(sent, expected);
        assert!(pages[..2].iter().all(|p| p["cookie"].is_string()));
        assert!(cookie.is_i64());
        let caught_up = collab.pull("ada", cookie.clone(), &subscriptions).await;
        assert_eq!(ops(&caught_up), []);
        assert_eq!(caught_up["cookie"], cookie);
    }
}

/// A write while an initial sync is paged: the pages read the tables, so a
/// row not sent yet comes with its current value (edited or new), and a row
/// already sent and changed comes with the pull after the last page, from
/// its version; each once; the replica ends equal to the list.
#[tokio::test]
async fn a_write_during_paging_comes_with_the_pull_the_last_page_asks_for() {
    for url in store_urls().await {
        let collab = Collab::start(&url, 2).await;
        collab.list_of(5, None).await;
        let subscriptions = [list_items("l1")];
        let first = collab.pull("ada", Json::Null, &subscriptions).await;
        assert_eq!(states(&first), [state("listItems", "pending", 2, 5)]);
        for (id, title) in [("i0", "sent, then edited"), ("i4", "edited before sent")] {
            collab
                .run(
                    "ada",
                    "editItem",
                    json!({"id": id, "title": title, "done": false}),
                )
                .await;
        }
        collab
            .run(
                "ada",
                "addItem",
                json!({"id": "i5", "list_id": "l1", "title": "new"}),
            )
            .await;

        // Following `more` alone, as a client does: the page that ends the
        // paging says `more`, for the edit of i0 that an evaluation recorded
        // after the pages' version. Routing sees that edit recorded and pokes
        // no one, so without `more` it would wait for the next periodic pull.
        let (paging, caught_up) = collab
            .finish_paging("ada", first["cookie"].clone(), &subscriptions)
            .await;
        let paged: Vec<_> = std::iter::once(&first)
            .chain(&paging)
            .flat_map(ops)
            .collect();
        assert_eq!(
            paged,
            [
                op("clear", "", ""),
                op("put", "items", "i0"),
                op("put", "items", "i1"),
                op("put", "items", "i2"),
                op("put", "items", "i3"),
                op("put", "items", "i4"),
                op("put", "items", "i5"),
            ],
            "{url}"
        );
        assert!(
            !paging
                .iter()
                .any(|page| page.to_string().contains("sent, then edited")),
            "{url}"
        );
        assert_eq!(
            caught_up.iter().flat_map(ops).collect::<Vec<_>>(),
            [op("put", "items", "i0")],
            "{url}"
        );
        assert_eq!(
            states(caught_up.last().unwrap()),
            [state("listItems", "complete", 6, 6)]
        );
        // Nothing more after that: the last page's cookie is current.
        let again = collab
            .pull(
                "ada",
                caught_up.last().unwrap()["cookie"].clone(),
                &subscriptions,
            )
            .await;
        assert!(ops(&again).is_empty(), "{url}");
        assert_eq!(again["more"], false, "{url}");
        let mut replica: HashMap<String, Json> = HashMap::new();
        for page in std::iter::once(&first).chain(&paging).chain(&caught_up) {
            for entry in page["patch"].as_array().unwrap() {
                if entry["type"] == "put" {
                    replica.insert(
                        entry["row"]["id"].as_str().unwrap().into(),
                        entry["row"]["title"].clone(),
                    );
                }
            }
        }
        let expected: HashMap<String, Json> = [
            ("i0", "sent, then edited"),
            ("i1", "x"),
            ("i2", "x"),
            ("i3", "x"),
            ("i4", "edited before sent"),
            ("i5", "new"),
        ]
        .into_iter()
        .map(|(id, title)| (id.to_owned(), json!(title)))
        .collect();
        assert_eq!(replica, expected, "{url}");
    }
}

/// The collab app with a table keyed by an integer (`notes`, each its
/// owner's) and the query `myNotes`.
fn notes_app() -> AppDefinition {
    let mut app: Json = serde_json::from_str(
        &std::fs::read_to_string(common::repo().join("tests/fixtures/collab.json")).unwrap(),
    )
    .unwrap();
    app["tables"].as_array_mut().unwrap().push(json!({
        "name": "notes",
        "columns": [
            {"name": "id", "type": "integer"},
            {"name": "owner", "type": "text"},
            {"name": "body", "type": "text"}
        ],
        "primaryKey": ["id"],
        "access": {"read": "false", "write": "owner = :user_id"}
    }));
    let mutators = app["mutators"].as_array_mut().unwrap();
    for (name, sql) in [
        (
            "addNote",
            "INSERT INTO notes (id, owner, body) VALUES (:id, :owner, :body)",
        ),
        (
            "editNote",
            "UPDATE notes SET body = :body WHERE id = :id AND owner = :owner",
        ),
        (
            "deleteNote",
            "DELETE FROM notes WHERE id = :id AND owner = :owner AND body = :body",
        ),
    ] {
        mutators.push(json!({
            "name": name,
            "params": [
                {"name": "id", "type": "integer"},
                {"name": "owner", "type": "text"},
                {"name": "body", "type": "text"}
            ],
            "sql": [sql]
        }));
    }
    app["queries"].as_array_mut().unwrap().push(json!({
        "name": "myNotes",
        "params": [],
        "parts": [{"table": "notes", "where": "owner = :user_id"}]
    }));
    AppDefinition::from_json(&app.to_string()).unwrap()
}

/// `(op, id)` of each patch entry of `notes`.
fn note_ops(response: &Json) -> Vec<(String, i64)> {
    response["patch"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|op| op["type"] != "clear")
        .map(|op| {
            let row = if op["type"] == "put" {
                &op["row"]
            } else {
                &op["key"]
            };
            (
                op["type"].as_str().unwrap().to_owned(),
                row["id"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// Integer keys: an initial sync's pages follow the table's key order
/// (`2` before `10`, which their JSON text would not), and writes between
/// pages land right on either side of the cursor: a row added before it
/// and one edited there come with the pull after the last page; one
/// deleted after it is never sent, one edited or added after it comes in
/// a page with its current value; each row once.
#[tokio::test]
async fn integer_keys_are_paged_in_their_order_with_writes_between_pages() {
    for url in store_urls().await {
        let collab = Collab::start_with(&url, 5, notes_app()).await;
        let note = |id: i64, body: &str| json!({"id": id, "owner": "ada", "body": body});
        for id in 1..=12 {
            collab.run("ada", "addNote", note(id, "x")).await;
        }
        // Another user's notes never reach ada.
        collab
            .run(
                "grace",
                "addNote",
                json!({"id": 100, "owner": "grace", "body": "x"}),
            )
            .await;
        let subscriptions = [json!({"query": "myNotes", "args": {}})];
        let first = collab.pull("ada", Json::Null, &subscriptions).await;
        let sent = |ids: &[i64]| -> Vec<(String, i64)> {
            ids.iter().map(|&id| ("put".to_owned(), id)).collect()
        };
        assert_eq!(note_ops(&first), sent(&[1, 2, 3, 4, 5]), "{url}");
        assert_eq!(states(&first), [state("myNotes", "pending", 5, 12)]);

        collab
            .run("ada", "addNote", note(0, "before the cursor"))
            .await;
        collab
            .run("ada", "editNote", note(3, "sent, then edited"))
            .await;
        collab.run("ada", "deleteNote", note(9, "x")).await;
        collab
            .run("ada", "editNote", note(11, "edited before sent"))
            .await;
        collab
            .run("ada", "addNote", note(13, "after the cursor"))
            .await;
        let (rest, caught_up) = collab
            .finish_paging("ada", first["cookie"].clone(), &subscriptions)
            .await;
        let paged: Vec<_> = rest.iter().flat_map(note_ops).collect();
        assert_eq!(paged, sent(&[6, 7, 8, 10, 11, 12, 13]), "{url}");
        let after: Vec<_> = caught_up.iter().flat_map(note_ops).collect();
        assert_eq!(after, sent(&[0, 3]), "{url}");
        assert_eq!(
            states(caught_up.last().unwrap()),
            [state("myNotes", "complete", 13, 13)]
        );
        let mut replica: BTreeMap<i64, Json> = BTreeMap::new();
        for page in std::iter::once(&first).chain(&rest).chain(&caught_up) {
            for entry in page["patch"].as_array().unwrap() {
                if entry["type"] == "put" {
                    replica.insert(
                        entry["row"]["id"].as_i64().unwrap(),
                        entry["row"]["body"].clone(),
                    );
                }
            }
        }
        let mut expected: BTreeMap<i64, Json> = (0..=13).map(|id| (id, json!("x"))).collect();
        expected.remove(&9);
        expected.insert(0, json!("before the cursor"));
        expected.insert(3, json!("sent, then edited"));
        expected.insert(11, json!("edited before sent"));
        expected.insert(13, json!("after the cursor"));
        assert_eq!(replica, expected, "{url}");
    }
}

/// A lost page of an initial sync, asked for again from the same cursor,
/// is the same page, also after a write made it evaluate; and the pages
/// after it still bring every row once.
#[tokio::test]
async fn a_lost_page_asked_for_again_is_the_same_page() {
    for url in store_urls().await {
        let collab = Collab::start(&url, 2).await;
        collab.list_of(7, None).await;
        let subscriptions = [list_items("l1")];
        let first = collab.pull("ada", Json::Null, &subscriptions).await;
        let lost = collab
            .pull("ada", first["cookie"].clone(), &subscriptions)
            .await;
        let again = collab
            .pull("ada", first["cookie"].clone(), &subscriptions)
            .await;
        assert_eq!(again, lost, "{url}");
        // A write elsewhere in the table: the page evaluates, the same rows.
        collab
            .run(
                "ada",
                "createList",
                json!({"id": "l2", "title": "Other", "owner": "ada"}),
            )
            .await;
        collab
            .run(
                "ada",
                "addItem",
                json!({"id": "j1", "list_id": "l2", "title": "y"}),
            )
            .await;
        let evaluated = collab
            .pull("ada", first["cookie"].clone(), &subscriptions)
            .await;
        assert_eq!(ops(&evaluated), ops(&lost), "{url}");
        let rest = collab
            .pull_pages("ada", evaluated["cookie"].clone(), &subscriptions)
            .await;
        let all: Vec<_> = std::iter::once(&first)
            .chain(std::iter::once(&evaluated))
            .chain(&rest)
            .flat_map(ops)
            .collect();
        let expected: Vec<_> = std::iter::once(op("clear", "", ""))
            .chain((0..7).map(|i| op("put", "items", &format!("i{i}"))))
            .collect();
        assert_eq!(all, expected, "{url}");
        assert_eq!(
            states(rest.last().unwrap()),
            [state("listItems", "complete", 7, 7)],
            "{url}"
        );
    }
}

/// A replica starting over (`cookie: null` from a group the server holds
/// rows for) is paged from the tables like a new one: only what is there
/// now, once; and the view then holds exactly that, so later pulls send
/// only what changes after it.
#[tokio::test]
async fn a_replica_starting_over_is_paged_from_the_tables_and_its_view_follows() {
    for url in store_urls().await {
        let collab = Collab::start(&url, 2).await;
        collab.list_of(5, None).await;
        let subscriptions = [list_items("l1")];
        let first = collab.pull_pages("ada", Json::Null, &subscriptions).await;
        assert_eq!(first.iter().flat_map(ops).count(), 6, "{url}");
        collab.run("ada", "deleteItem", json!({"id": "i1"})).await;
        let again = collab.pull_pages("ada", Json::Null, &subscriptions).await;
        assert!(
            again[0]["cookie"].as_str().unwrap().starts_with("rows:"),
            "{url}"
        );
        let expected: Vec<_> = std::iter::once(op("clear", "", ""))
            .chain(
                ["i0", "i2", "i3", "i4"]
                    .iter()
                    .map(|id| op("put", "items", id)),
            )
            .collect();
        assert_eq!(
            again.iter().flat_map(ops).collect::<Vec<_>>(),
            expected,
            "{url}"
        );
        let last = again.last().unwrap()["cookie"].clone();
        assert_eq!(
            states(again.last().unwrap()),
            [state("listItems", "complete", 4, 4)]
        );
        collab
            .run(
                "ada",
                "editItem",
                json!({"id": "i0", "title": "y", "done": false}),
            )
            .await;
        collab.run("ada", "deleteItem", json!({"id": "i2"})).await;
        let next = collab.pull_pages("ada", last, &subscriptions).await;
        assert_eq!(
            next.iter().flat_map(ops).collect::<Vec<_>>(),
            [op("put", "items", "i0"), op("del", "items", "i2")],
            "{url}"
        );
    }
}

/// Access revoked while a paged sync is read: the pages left carry nothing
/// of the list (not a row the user can no longer read, not an edit made
/// before the revocation), and the pull after them deletes what she got.
#[tokio::test]
async fn a_revocation_during_paging_sends_nothing_more_of_the_list() {
    for url in store_urls().await {
        let collab = Collab::start(&url, 2).await;
        collab.list_of(5, Some("grace")).await;
        let subscriptions = [list_items("l1")];
        let first = collab.pull("grace", Json::Null, &subscriptions).await;
        assert_eq!(
            ops(&first),
            [
                op("clear", "", ""),
                op("put", "items", "i0"),
                op("put", "items", "i1")
            ],
            "{url}"
        );
        collab
            .run(
                "ada",
                "editItem",
                json!({"id": "i3", "title": "secret", "done": false}),
            )
            .await;
        collab
            .run(
                "ada",
                "removeMember",
                json!({"list_id": "l1", "user_id": "grace"}),
            )
            .await;

        // The page that ends the paging asks for the pull that deletes.
        let (rest, asked) = collab
            .finish_paging("grace", first["cookie"].clone(), &subscriptions)
            .await;
        let rest_ops: Vec<_> = rest.iter().flat_map(ops).collect();
        assert_eq!(rest_ops, [], "{url}");
        for page in &rest {
            assert!(!page.to_string().contains("secret"), "{url}: {page}");
        }
        let [revoked] = &asked[..] else {
            panic!("{url}: one pull asked for, got {}", asked.len());
        };
        assert!(!revoked.to_string().contains("secret"), "{url}");
        let revoked_ops = ops(revoked);
        assert!(
            revoked_ops.iter().all(|(kind, _, _)| kind == "del"),
            "{url}: {revoked_ops:?}"
        );
        for id in ["i0", "i1"] {
            assert!(revoked_ops.contains(&op("del", "items", id)), "{url}");
        }
        assert_eq!(states(revoked), [state("listItems", "complete", 0, 0)]);
    }
}

/// Two subscriptions selecting some of the same rows, over two tables,
/// paged: each row comes once, and each subscription's progress counts
/// its own rows as the pages bring them.
#[tokio::test]
async fn paging_two_subscriptions_that_share_rows_counts_each() {
    let mut app: Json = serde_json::from_str(
        &std::fs::read_to_string(common::repo().join("tests/fixtures/collab.json")).unwrap(),
    )
    .unwrap();
    app["queries"].as_array_mut().unwrap().push(json!({
        "name": "myItems",
        "params": [],
        "parts": [{
            "table": "items",
            "where": "list_id IN (SELECT list_id FROM members WHERE user_id = :user_id)"
        }]
    }));
    let app = AppDefinition::from_json(&app.to_string()).unwrap();
    for url in store_urls().await {
        let collab = Collab::start_with(&url, 2, app.clone()).await;
        for (list, items) in [
            ("l1", ["a0", "a1", "a2", "a3"].as_slice()),
            ("l2", &["b0", "b1", "b2"]),
        ] {
            collab
                .run(
                    "ada",
                    "createList",
                    json!({"id": list, "title": list, "owner": "ada"}),
                )
                .await;
            for item in items {
                collab
                    .run(
                        "ada",
                        "addItem",
                        json!({"id": item, "list_id": list, "title": "x"}),
                    )
                    .await;
            }
        }
        let my_items = json!({"query": "myItems", "args": {}});
        let subscriptions = [my_lists(), list_items("l1"), my_items];
        let pages = collab.pull_pages("ada", Json::Null, &subscriptions).await;
        let progress: Vec<Vec<_>> = pages
            .iter()
            .map(|p| states(p).iter().map(|(_, _, synced, _)| *synced).collect())
            .collect();
        assert_eq!(
            progress,
            [[2, 0, 0], [2, 2, 2], [2, 4, 4], [2, 4, 6], [2, 4, 7]],
            "{url}"
        );
        assert_eq!(
            states(pages.last().unwrap()),
            [
                state("myLists", "complete", 2, 2),
                state("listItems", "complete", 4, 4),
                state("myItems", "complete", 7, 7)
            ]
        );
        let sent: Vec<_> = pages.iter().flat_map(ops).collect();
        let expected: Vec<_> = [
            op("clear", "", ""),
            op("put", "lists", "l1"),
            op("put", "lists", "l2"),
        ]
        .into_iter()
        .chain(
            ["a0", "a1", "a2", "a3", "b0", "b1", "b2"]
                .iter()
                .map(|id| op("put", "items", id)),
        )
        .collect();
        assert_eq!(sent, expected, "{url}");
        // A page read again from its cursor is the same page.
        let again = collab
            .pull("ada", pages[1]["cookie"].clone(), &subscriptions)
            .await;
        assert_eq!(again, pages[2], "{url}");
    }
}

/// An unknown query or bad arguments: that subscription is an `error`
/// entry with its code and syncs nothing; the rest of the pull goes on.
#[tokio::test]
async fn unknown_queries_and_bad_arguments_are_per_subscription_errors() {
    for url in store_urls().await {
        let collab = Collab::start(&url, 100).await;
        collab.shared_and_private().await;
        let subscriptions = [
            json!({"query": "everything", "args": {}}),
            json!({"query": "listItems", "args": {"list_id": 7}}),
            json!({"query": "listItems", "args": {}}),
            json!({"query": "listItems", "args": {"list_id": "l1", "user_id": "ada"}}),
            my_lists(),
        ];
        let reply = collab.pull("grace", Json::Null, &subscriptions).await;
        let errors: Vec<_> = reply["subscriptions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["state"].as_str().unwrap(),
                    s["error"]["code"].as_str(),
                    s["error"]["message"].as_str(),
                )
            })
            .collect();
        assert_eq!(
            errors[0],
            (
                "error",
                Some("unknown_query"),
                Some("this server defines no query `everything`")
            ),
            "{url}"
        );
        assert_eq!(
            errors[1],
            (
                "error",
                Some("bad_arguments"),
                Some("bad arguments for query `listItems`: `list_id`: expected a string, got 7")
            )
        );
        assert_eq!(
            errors[2],
            (
                "error",
                Some("bad_arguments"),
                Some("bad arguments for query `listItems`: `list_id` is required")
            )
        );
        assert_eq!(
            errors[3],
            (
                "error",
                Some("bad_arguments"),
                Some("bad arguments for query `listItems`: unknown argument `user_id`")
            )
        );
        assert_eq!(errors[4], ("complete", None, None));
        assert_eq!(ops(&reply), [op("clear", "", ""), op("put", "lists", "l1")]);
    }
}

/// Pulls speak v2 on an app with queries (a v1 client is told to update),
/// v1 on an app without; pushes speak both.
#[tokio::test]
async fn protocol_versions_are_checked_with_clear_messages() {
    for url in store_urls().await {
        let collab = Collab::start(&url, 100).await;
        let v1 = common::pull_body("grace", Json::Null);
        let reply = collab.server.post("/sync/pull", "grace", &v1).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{url}");
        assert_eq!(reply.body["code"], "protocol_version");
        assert!(
            reply.body["message"]
                .as_str()
                .unwrap()
                .contains("syncs by subscription")
                && reply.body["message"]
                    .as_str()
                    .unwrap()
                    .contains("update the client"),
            "{}",
            reply.body
        );
        let mut missing = v1.clone();
        missing["protocolVersion"] = json!(2);
        let reply = collab.server.post("/sync/pull", "grace", &missing).await;
        assert_eq!(
            (reply.status, reply.body["code"].clone()),
            (StatusCode::BAD_REQUEST, json!("bad_request"))
        );
        // v1 pushes still land.
        let push = common::push_body(
            "grace",
            &[(
                1,
                "createList",
                json!({"id": "g", "title": "t", "owner": "grace"}),
            )],
        );
        assert_eq!(
            common::codes(&collab.server.post("/sync/push", "grace", &push).await),
            ["ok"]
        );
        drop(collab);
    }
    for url in store_urls().await {
        let sample = common::sample_server(&url).await;
        let mut v2 = common::pull_body("c", Json::Null);
        v2["protocolVersion"] = json!(2);
        v2["subscriptions"] = json!([]);
        let reply = sample.post("/sync/pull", "u", &v2).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{url}");
        assert_eq!(reply.body["code"], "protocol_version");
        assert!(
            reply.body["message"]
                .as_str()
                .unwrap()
                .contains("defines no queries"),
            "{}",
            reply.body
        );
    }
}

/// A table with a composite key (`members`: list and user) syncs by query
/// like any other: its rows arrive whole, and leave as `del`s of both key
/// columns.
#[tokio::test]
async fn rows_with_composite_keys_are_put_and_deleted_by_their_whole_key() {
    for url in store_urls().await {
        let collab = Collab::start(&url, 100).await;
        collab.shared_and_private().await;
        collab
            .run(
                "ada",
                "addMember",
                json!({"list_id": "l1", "user_id": "carol", "role": "viewer"}),
            )
            .await;
        let members = [json!({"query": "listMembers", "args": {"list_id": "l1"}})];
        let first = collab.pull("grace", Json::Null, &members).await;
        let rows: Vec<&Json> = first["patch"].as_array().unwrap()[1..].iter().collect();
        assert_eq!(
            rows,
            [
                &json!({"type": "put", "table": "members", "row": {"list_id": "l1", "user_id": "ada", "role": "owner"}}),
                &json!({"type": "put", "table": "members", "row": {"list_id": "l1", "user_id": "carol", "role": "viewer"}}),
                &json!({"type": "put", "table": "members", "row": {"list_id": "l1", "user_id": "grace", "role": "editor"}})
            ],
            "{url}"
        );
        collab
            .run(
                "ada",
                "removeMember",
                json!({"list_id": "l1", "user_id": "carol"}),
            )
            .await;
        let next = collab
            .pull("grace", first["cookie"].clone(), &members)
            .await;
        assert_eq!(
            next["patch"],
            json!([{"type": "del", "table": "members", "key": {"list_id": "l1", "user_id": "carol"}}])
        );
    }
}

/// A group belongs to the user who first pulled it: another user naming it
/// is refused, and learns nothing of it.
#[tokio::test]
async fn another_users_group_is_forbidden() {
    for url in store_urls().await {
        let collab = Collab::start(&url, 100).await;
        collab.shared_and_private().await;
        collab.pull("ada", Json::Null, &[my_lists()]).await;
        let reply = collab
            .pull_reply("mallory", "ada", Json::Null, &[my_lists()])
            .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{url}");
        assert_nothing_private(&reply.body);
        // A group that pushed but never pulled is its user's too: another
        // user's pull of it is refused and takes nothing from its owner.
        collab
            .run(
                "grace",
                "createList",
                json!({"id": "g1", "title": "Mine", "owner": "grace"}),
            )
            .await;
        let reply = collab
            .pull_reply("mallory", "grace", Json::Null, &[my_lists()])
            .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{url}");
        let grace = collab.pull("grace", Json::Null, &[my_lists()]).await;
        assert_eq!(
            ops(&grace)[1..],
            [op("put", "lists", "g1"), op("put", "lists", "l1")]
        );
    }
}

/// A part the store cannot prepare (here: an unknown column, which only the
/// database can judge) stops the server at start, naming query and part.
#[tokio::test]
async fn a_query_part_that_does_not_prepare_is_refused_at_start_naming_it() {
    for url in store_urls().await {
        let path = common::repo().join("tests/fixtures/collab.json");
        let mut json: Json = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        json["queries"][1]["parts"][0]["where"] = json!("list_id = :list_id AND colour = 'red'");
        let app = common::app_def(&json);
        let started =
            ferrydb_server::ServerState::start(Config::default(), Some((app, &url))).await;
        let message = match started {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{url}: a part that does not prepare was served"),
        };
        assert!(
            message.contains("part `items` of query `listItems`"),
            "{url}: {message}"
        );
        assert!(message.contains("colour"), "{url}: {message}");
    }
}

/// Several instances on one Postgres database: a group's view is one, so a
/// client may pull from any instance; two instances pulling the same group
/// at once never record over each other — each answers the same patch, or
/// 503 (a serialization failure the client retries), whatever the timing.
#[tokio::test]
async fn instances_on_one_postgres_database_share_each_groups_view() {
    for url in store_urls().await {
        if url.starts_with("sqlite:") {
            continue;
        }
        let a = Collab::start(&url, 100).await;
        let b = Collab::start(&url, 100).await;
        a.shared_and_private().await;
        let subscriptions = [my_lists(), list_items("l1")];
        let first = a.pull("grace", Json::Null, &subscriptions).await;

        // ada writes through the other instance (her next mutation ID is 6).
        *b.next_ids.lock().unwrap() = a.next_ids.lock().unwrap().clone();
        b.run(
            "ada",
            "addItem",
            json!({"id": "i3", "list_id": "l1", "title": "eggs"}),
        )
        .await;
        let (on_a, on_b) = tokio::join!(
            a.pull_reply("grace", "grace", first["cookie"].clone(), &subscriptions),
            b.pull_reply("grace", "grace", first["cookie"].clone(), &subscriptions),
        );
        let mut answered = Vec::new();
        for reply in [on_a, on_b] {
            match reply.status {
                StatusCode::OK => {
                    assert_eq!(ops(&reply.body), [op("put", "items", "i3")]);
                    answered.push(reply.body["cookie"].clone());
                }
                StatusCode::SERVICE_UNAVAILABLE => {
                    assert_eq!(reply.body["code"], "unavailable");
                    assert_eq!(reply.body["retryable"], true);
                }
                other => panic!("{other}: {}", reply.body),
            }
        }
        assert!(
            !answered.is_empty(),
            "one of two concurrent pulls always records"
        );
        assert!(answered.windows(2).all(|w| w[0] == w[1]), "{answered:?}");
        // Recorded once: from either instance, the cookie is caught up and
        // the old cookie still gets the same patch.
        let after = b.pull("grace", answered[0].clone(), &subscriptions).await;
        assert_eq!(ops(&after), []);
        let again = a
            .pull("grace", first["cookie"].clone(), &subscriptions)
            .await;
        assert_eq!(ops(&again), [op("put", "items", "i3")]);
        assert_eq!(again["cookie"], answered[0]);
    }
}

/// Reads SSE `data:` payloads from a realtime stream, until it ends.
struct Events {
    body: axum::body::Body,
    buffer: String,
}

impl Events {
    async fn open(collab: &Collab, user: &str, group: &str) -> Result<Events, StatusCode> {
        use tower::ServiceExt;
        let request = axum::http::Request::get(format!("/sync/events?clientGroupID={group}"))
            .header(axum::http::header::AUTHORIZATION, format!("Bearer {user}"))
            .body(axum::body::Body::empty())
            .unwrap();
        let response = collab.server.router.clone().oneshot(request).await.unwrap();
        match response.status() {
            StatusCode::OK => Ok(Events {
                body: response.into_body(),
                buffer: String::new(),
            }),
            other => Err(other),
        }
    }

    /// The next event's data, or `None` once the stream has ended.
    async fn next(&mut self) -> Option<Json> {
        use http_body_util::BodyExt;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let frame: String = self.buffer.drain(..end + 2).collect();
                match frame.lines().find_map(|l| l.strip_prefix("data: ")) {
                    Some(data) => return Some(serde_json::from_str(data).unwrap()),
                    None => continue,
                }
            }
            let frame = tokio::time::timeout(std::time::Duration::from_secs(10), self.body.frame())
                .await
                .expect("an event or the end within 10 s");
            match frame {
                Some(frame) => {
                    if let Ok(data) = frame.unwrap().into_data() {
                        self.buffer.push_str(std::str::from_utf8(&data).unwrap());
                    }
                }
                None => return None,
            }
        }
    }
}

/// A group's realtime channel is poked only by commits that change what it
/// holds or its clients' `lastMutationID`s: a membership change to a list
/// grace is in does not change her lists, and ada's write to her private
/// list's items pokes ada's own channel only. v2 pokes carry no cookie;
/// another user's group cannot be listened to.
#[tokio::test]
async fn a_private_write_pokes_only_the_groups_it_concerns() {
    for url in store_urls().await {
        let collab = Collab::start(&url, 100).await;
        collab.shared_and_private().await;
        collab.pull("grace", Json::Null, &[my_lists()]).await;
        collab
            .pull("ada", Json::Null, &[my_lists(), list_items("l2")])
            .await;
        assert_eq!(
            Events::open(&collab, "mallory", "grace").await.err(),
            Some(StatusCode::FORBIDDEN),
            "{url}"
        );
        let mut grace = Events::open(&collab, "grace", "grace").await.unwrap();
        let mut ada = Events::open(&collab, "ada", "ada").await.unwrap();
        for channel in [&mut grace, &mut ada] {
            assert_eq!(
                channel.next().await,
                Some(json!({"type": "poke", "cookie": null}))
            );
        }

        // linus joins l1: grace's lists stay the same; ada's client hears
        // its mutation was processed.
        collab
            .run(
                "ada",
                "addMember",
                json!({"list_id": "l1", "user_id": "linus", "role": "viewer"}),
            )
            .await;
        assert_eq!(
            ada.next().await,
            Some(json!({"type": "poke", "cookie": null}))
        );

        // ada's private item: her channel hears it (so every channel's
        // queue holds it, on Postgres too once the notification arrived) ...
        collab
            .run(
                "ada",
                "addItem",
                json!({"id": "i7", "list_id": "l2", "title": "candles"}),
            )
            .await;
        assert_eq!(
            ada.next().await,
            Some(json!({"type": "poke", "cookie": null}))
        );
        // ... and grace's stream, judging every poke before the shutdown,
        // ends without one.
        collab.server.state.shut_down();
        assert_eq!(
            grace.next().await,
            None,
            "{url}: grace was poked by a commit that changes nothing she holds"
        );
    }
}

/// Several instances on one Postgres database route as one: a commit made
/// through one instance pokes, on another, exactly the channels there
/// whose groups it concerns (each instance routes for its own channels).
#[tokio::test]
async fn instances_on_one_postgres_database_route_pokes_as_one() {
    for url in store_urls().await {
        if url.starts_with("sqlite:") {
            continue;
        }
        let a = Collab::start(&url, 100).await;
        let b = Collab::start(&url, 100).await;
        a.shared_and_private().await;
        a.pull("grace", Json::Null, &[my_lists(), list_items("l1")])
            .await;
        a.pull("ada", Json::Null, &[my_lists(), list_items("l2")])
            .await;
        let mut grace = Events::open(&b, "grace", "grace").await.unwrap();
        let mut ada = Events::open(&b, "ada", "ada").await.unwrap();
        for channel in [&mut grace, &mut ada] {
            assert_eq!(
                channel.next().await,
                Some(json!({"type": "poke", "cookie": null}))
            );
        }
        // Through `a`, from a device whose group listens nowhere.
        a.run_from(
            "ada",
            "ada-phone",
            "addItem",
            json!({"id": "i8", "list_id": "l2", "title": "balloons"}),
        )
        .await;
        assert_eq!(
            ada.next().await,
            Some(json!({"type": "poke", "cookie": null}))
        );
        b.server.state.shut_down();
        assert_eq!(grace.next().await, None, "grace was poked on `b`");

        // A shared row pokes grace's group, wherever it listens (ada pulls
        // first: the poke of i8, if `a` hears it late, concerns her no more).
        a.pull("ada", Json::Null, &[my_lists(), list_items("l2")])
            .await;
        let mut grace = Events::open(&a, "grace", "grace").await.unwrap();
        let mut ada = Events::open(&a, "ada", "ada").await.unwrap();
        for channel in [&mut grace, &mut ada] {
            assert_eq!(
                channel.next().await,
                Some(json!({"type": "poke", "cookie": null}))
            );
        }
        *b.next_ids.lock().unwrap() = a.next_ids.lock().unwrap().clone();
        b.run_from(
            "ada",
            "ada-phone",
            "editItem",
            json!({"id": "i1", "title": "oat milk"}),
        )
        .await;
        assert_eq!(
            grace.next().await,
            Some(json!({"type": "poke", "cookie": null}))
        );
        a.server.state.shut_down();
        assert_eq!(ada.next().await, None, "ada does not sync l1's items");
    }
}

/// The crowd of [`pokes_reach_exactly_the_groups_whose_view_a_commit_changes`].
const CROWD: usize = 120;

fn crowd_user(n: usize) -> String {
    format!("u{n:03}")
}

/// `CROWD` users, each with a private list `p<n>` holding item `i<n>`;
/// u000's list `shared` holds `s1` and has u001…u009 as editors; u010 is
/// subscribed to `shared`'s items without being a member. Every user wrote
/// from their phone (client and group `<user>-phone`) and pulled their lists
/// and their lists' items into their group `<user>`, whose realtime channel
/// is open, its first poke read.
async fn crowd(url: &str) -> (Collab, Vec<Events>) {
    let collab = Collab::start(url, 1000).await;
    futures_util::future::join_all((0..CROWD).map(|n| {
        let collab = &collab;
        async move {
            let user = crowd_user(n);
            let phone = format!("{user}-phone");
            let list = format!("p{n}");
            collab
                .run_from(
                    &user,
                    &phone,
                    "createList",
                    json!({"id": list, "title": "mine", "owner": user}),
                )
                .await;
            collab
                .run_from(
                    &user,
                    &phone,
                    "addItem",
                    json!({"id": format!("i{n}"), "list_id": list, "title": "todo"}),
                )
                .await;
        }
    }))
    .await;
    let owner = crowd_user(0);
    let phone = format!("{owner}-phone");
    collab
        .run_from(
            &owner,
            &phone,
            "createList",
            json!({"id": "shared", "title": "ours", "owner": owner}),
        )
        .await;
    for n in 1..10 {
        collab
            .run_from(
                &owner,
                &phone,
                "addMember",
                json!({"list_id": "shared", "user_id": crowd_user(n), "role": "editor"}),
            )
            .await;
    }
    collab
        .run_from(
            &owner,
            &phone,
            "addItem",
            json!({"id": "s1", "list_id": "shared", "title": "plan"}),
        )
        .await;
    futures_util::future::join_all((0..CROWD).map(|n| {
        let collab = &collab;
        async move {
            let mut subscriptions = vec![my_lists(), list_items(&format!("p{n}"))];
            if n <= 10 {
                subscriptions.push(list_items("shared"));
            }
            collab
                .pull(&crowd_user(n), Json::Null, &subscriptions)
                .await;
        }
    }))
    .await;
    let mut channels = Vec::with_capacity(CROWD);
    for n in 0..CROWD {
        let user = crowd_user(n);
        let mut channel = Events::open(&collab, &user, &user).await.unwrap();
        assert_eq!(
            channel.next().await,
            Some(json!({"type": "poke", "cookie": null}))
        );
        channels.push(channel);
    }
    (collab, channels)
}

/// On a fresh crowd on store `store` (of `store_urls`), crowd user
/// `writer` runs mutation `name` from their phone; then: the users whose
/// channels were poked, each exactly once. `first` is one user who must be
/// (its poke shows the commit was announced on this instance, Postgres
/// included); then the server shuts down and every stream, having judged
/// every poke before, ends.
async fn poked_by(
    store: usize,
    first: usize,
    writer: usize,
    name: &str,
    args: Json,
) -> Vec<String> {
    let url = store_urls().await.swap_remove(store);
    let (collab, mut channels) = crowd(&url).await;
    let user = crowd_user(writer);
    collab
        .run_from(&user, &format!("{user}-phone"), name, args)
        .await;
    let poke = Some(json!({"type": "poke", "cookie": null}));
    assert_eq!(channels[first].next().await, poke, "{url}");
    collab.server.state.shut_down();
    let mut poked = vec![crowd_user(first)];
    for (n, channel) in channels.iter_mut().enumerate() {
        let mut count = usize::from(n == first);
        while let Some(event) = channel.next().await {
            assert_eq!(Some(event), poke, "{url}");
            count += 1;
        }
        assert!(count <= 1, "{url}: {} poked {count} times", crowd_user(n));
        if count == 1 && n != first {
            poked.push(crowd_user(n));
        }
    }
    poked.sort();
    poked
}

fn crowd_users(numbers: impl IntoIterator<Item = usize>) -> Vec<String> {
    numbers.into_iter().map(crowd_user).collect()
}

/// Among 120 connected users, each write pokes exactly the groups whose
/// next pull it changes: a private row only its owner's, a shared row and
/// a row entering a shared list only the list's members', a new member
/// only that member's (the list and its items move in), a removed member
/// only theirs (they move out). Nobody else learns that anything changed.
#[tokio::test]
async fn pokes_reach_exactly_the_groups_whose_view_a_commit_changes() {
    for store in 0..store_urls().await.len() {
        let private = poked_by(
            store,
            57,
            57,
            "editItem",
            json!({"id": "i57", "title": "done", "done": true}),
        )
        .await;
        assert_eq!(private, crowd_users([57]), "store {store}: a private row");

        let shared = poked_by(
            store,
            0,
            3,
            "editItem",
            json!({"id": "s1", "title": "plan, v2"}),
        )
        .await;
        assert_eq!(shared, crowd_users(0..10), "store {store}: a shared row");

        let entering = poked_by(
            store,
            0,
            5,
            "addItem",
            json!({"id": "s2", "list_id": "shared", "title": "tickets"}),
        )
        .await;
        assert_eq!(
            entering,
            crowd_users(0..10),
            "store {store}: a row entering"
        );

        // u010 is subscribed to the list's items already; u011 only to
        // their lists, which `shared` joins.
        for (n, what) in [(10, "the items"), (11, "the list")] {
            let added = poked_by(
                store,
                n,
                0,
                "addMember",
                json!({"list_id": "shared", "user_id": crowd_user(n), "role": "viewer"}),
            )
            .await;
            assert_eq!(
                added,
                crowd_users([n]),
                "store {store}: a member added ({what})"
            );
        }

        let removed = poked_by(
            store,
            9,
            0,
            "removeMember",
            json!({"list_id": "shared", "user_id": crowd_user(9)}),
        )
        .await;
        assert_eq!(removed, crowd_users([9]), "store {store}: a member removed");
    }
}
