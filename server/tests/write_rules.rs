//! Write rules that see relationships (`docs/protocol.md` §11.5), over HTTP
//! on every store, with the collaborative fixture `tests/fixtures/collab.json`:
//! lists, their members (owner, editor, viewer) and their items. An item may
//! be written by an owner or editor of its list, a membership by an owner of
//! its list other than its member (and one's own owner membership only while
//! nobody else is in the list: that is how a list's creator becomes its
//! owner, and how its last member leaves), a list by its owner.
//!
//! What a user relies on: editors edit and others do not; an item can
//! neither be moved into nor out of a list the user may not edit; a mutator
//! cannot first give its user a role and then use it (the row before the
//! mutation is judged against the tables before it); a write queued before
//! the user was removed is rejected; nobody makes themselves owner of a list
//! others are in; a rejected mutation leaves nothing.
//! Each store is inspected with its own SQL after the pushes.

mod common;

use common::*;
use ferrydb_protocol::AppDefinition;
use ferrydb_server::Config;
use serde_json::{json, Value as Json};

fn collab_json() -> Json {
    let path = repo().join("tests/fixtures/collab.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn collab() -> AppDefinition {
    app_def(&collab_json())
}

/// A user with a client of their own, whose mutation IDs count up.
struct User {
    name: &'static str,
    next_id: u64,
}

impl User {
    fn new(name: &'static str) -> User {
        User { name, next_id: 1 }
    }

    /// The next mutation of this user's client, to push now or later.
    fn mutation(&mut self, name: &'static str, args: Json) -> (u64, &'static str, Json) {
        let id = self.next_id;
        self.next_id += 1;
        (id, name, args)
    }

    /// Pushes `mutations` (in ID order) and returns each result's code.
    async fn push(&self, server: &TestServer, mutations: &[(u64, &str, Json)]) -> Vec<String> {
        let body = push_body(self.name, mutations);
        codes(&server.post("/sync/push", self.name, &body).await)
    }

    /// Makes one mutation and pushes it at once: its result's code.
    async fn run(&mut self, server: &TestServer, name: &'static str, args: Json) -> String {
        let mutation = self.mutation(name, args);
        let mut codes = self.push(server, &[mutation]).await;
        assert_eq!(codes.len(), 1, "{}: {codes:?}", server.url);
        codes.remove(0)
    }
}

/// The rows of `sql` (text columns only) in the store's database, each as
/// its columns joined by `|`.
async fn rows(url: &str, sql: &str) -> Vec<String> {
    if let Some(file) = url.strip_prefix("sqlite:") {
        let conn = rusqlite::Connection::open(file).unwrap();
        let mut statement = conn.prepare(sql).unwrap();
        let n = statement.column_count();
        let rows = statement
            .query_map([], |r| {
                (0..n)
                    .map(|i| r.get::<_, String>(i))
                    .collect::<Result<Vec<_>, _>>()
            })
            .unwrap();
        return rows.map(|r| r.unwrap().join("|")).collect();
    }
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let driver = tokio::spawn(connection);
    let rows = client.query(sql, &[]).await.unwrap();
    drop(client);
    let _ = driver.await;
    rows.iter()
        .map(|r| {
            (0..r.len())
                .map(|i| r.get::<_, String>(i))
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect()
}

async fn members(url: &str) -> Vec<String> {
    rows(
        url,
        "SELECT list_id, user_id, role FROM members ORDER BY list_id, user_id",
    )
    .await
}

async fn items(url: &str) -> Vec<String> {
    rows(url, "SELECT id, list_id, title FROM items ORDER BY id").await
}

/// Alice owns `groceries` (bob edits, carol views, item `milk`) and `chores`
/// (bob views, item `dishes`); bob owns `bobs`; dave is in no list.
async fn lists_of_alice(url: &str) -> (TestServer, [User; 4]) {
    lists_of_alice_in(url, collab()).await
}

async fn lists_of_alice_in(url: &str, app: AppDefinition) -> (TestServer, [User; 4]) {
    let server = server(url, app, Config::default()).await;
    let (mut alice, mut bob) = (User::new("alice"), User::new("bob"));
    let setup = [
        alice.mutation(
            "createList",
            json!({"id": "groceries", "title": "Groceries", "owner": "alice"}),
        ),
        alice.mutation(
            "addMember",
            json!({"list_id": "groceries", "user_id": "bob", "role": "editor"}),
        ),
        alice.mutation(
            "addMember",
            json!({"list_id": "groceries", "user_id": "carol", "role": "viewer"}),
        ),
        alice.mutation(
            "addItem",
            json!({"id": "milk", "list_id": "groceries", "title": "Milk"}),
        ),
        alice.mutation(
            "createList",
            json!({"id": "chores", "title": "Chores", "owner": "alice"}),
        ),
        alice.mutation(
            "addMember",
            json!({"list_id": "chores", "user_id": "bob", "role": "viewer"}),
        ),
        alice.mutation(
            "addItem",
            json!({"id": "dishes", "list_id": "chores", "title": "Dishes"}),
        ),
    ];
    assert_eq!(alice.push(&server, &setup).await, ["ok"; 7], "{url}");
    let bobs = json!({"id": "bobs", "title": "Bob's", "owner": "bob"});
    assert_eq!(bob.run(&server, "createList", bobs).await, "ok", "{url}");
    (server, [alice, bob, User::new("carol"), User::new("dave")])
}

#[tokio::test]
async fn an_editor_edits_items_and_a_viewer_or_non_member_may_not() {
    for url in store_urls().await {
        let (server, [_, mut bob, mut carol, mut dave]) = lists_of_alice(&url).await;
        let edit = |title: &str| json!({"id": "milk", "title": title});
        assert_eq!(bob.run(&server, "editItem", edit("Oat milk")).await, "ok");
        assert_eq!(
            carol.run(&server, "editItem", edit("carol")).await,
            "forbidden",
            "{url}"
        );
        assert_eq!(
            dave.run(&server, "editItem", edit("dave")).await,
            "forbidden",
            "{url}"
        );
        // Nor may they add an item to the list (the row after the change).
        let add = json!({"id": "eggs", "list_id": "groceries", "title": "Eggs"});
        assert_eq!(
            carol.run(&server, "addItem", add).await,
            "forbidden",
            "{url}"
        );
        // Nor delete one (the row before the change); the editor may.
        let milk = json!({"id": "milk"});
        let deleted = carol.run(&server, "deleteItem", milk.clone()).await;
        assert_eq!(deleted, "forbidden", "{url}");
        assert_eq!(
            items(&url).await,
            ["dishes|chores|Dishes", "milk|groceries|Oat milk"],
            "{url}"
        );
        assert_eq!(bob.run(&server, "deleteItem", milk).await, "ok", "{url}");
        assert_eq!(items(&url).await, ["dishes|chores|Dishes"], "{url}");
    }
}

/// The items rule written as `list_id IN (subquery)` rather than as a
/// correlated `EXISTS`: the same answers.
#[tokio::test]
async fn an_in_subquery_rule_judges_like_an_exists_one() {
    let mut json = collab_json();
    json["tables"][2]["access"]["write"] = json!(
        "list_id IN (SELECT m.list_id FROM members m \
         WHERE m.user_id = :user_id AND m.role IN ('owner', 'editor'))"
    );
    for url in store_urls().await {
        let (server, [mut alice, mut bob, mut carol, _]) =
            lists_of_alice_in(&url, app_def(&json)).await;
        let edit = json!({"id": "milk", "title": "Oat milk"});
        assert_eq!(bob.run(&server, "editItem", edit.clone()).await, "ok");
        assert_eq!(carol.run(&server, "editItem", edit).await, "forbidden");
        let out_of_chores = json!({"id": "dishes", "list_id": "bobs"});
        let moved = bob.run(&server, "moveItem", out_of_chores).await;
        assert_eq!(moved, "forbidden", "{url}");
        let queued = bob.mutation("editItem", json!({"id": "milk", "title": "Bob's"}));
        let removal = json!({"list_id": "groceries", "user_id": "bob"});
        assert_eq!(alice.run(&server, "removeMember", removal).await, "ok");
        assert_eq!(bob.push(&server, &[queued]).await, ["forbidden"], "{url}");
        assert_eq!(
            items(&url).await,
            ["dishes|chores|Dishes", "milk|groceries|Oat milk"],
            "{url}"
        );
    }
}

#[tokio::test]
async fn an_item_moves_only_between_lists_the_user_may_edit() {
    for url in store_urls().await {
        let (server, [_, mut bob, ..]) = lists_of_alice(&url).await;
        let moving = |id: &str, to: &str| json!({"id": id, "list_id": to});
        // Into a list bob only views: the row after the change breaks the rule.
        let into_chores = bob.run(&server, "moveItem", moving("milk", "chores")).await;
        assert_eq!(into_chores, "forbidden", "{url}");
        // Out of a list bob only views, into his own: the row before does.
        let out_of_chores = bob.run(&server, "moveItem", moving("dishes", "bobs")).await;
        assert_eq!(out_of_chores, "forbidden", "{url}");
        // Between two lists he edits: allowed.
        let to_bobs = bob.run(&server, "moveItem", moving("milk", "bobs")).await;
        assert_eq!(to_bobs, "ok", "{url}");
        assert_eq!(
            items(&url).await,
            ["dishes|chores|Dishes", "milk|bobs|Milk"],
            "{url}"
        );
    }
}

#[tokio::test]
async fn a_mutator_cannot_give_its_user_a_role_and_use_it() {
    for url in store_urls().await {
        let (server, [mut alice, _, _, mut dave]) = lists_of_alice(&url).await;
        let before_members = members(&url).await;
        // dave makes himself editor of alice's list and edits its item: the
        // membership breaks the members rule (he is not its owner).
        let escalate = |role: &str, list: &str, item: &str| json!({"list_id": list, "user_id": "dave", "role": role, "id": item, "title": "pwned"});
        let editor = escalate("editor", "groceries", "milk");
        assert_eq!(
            dave.run(&server, "joinAndEditItem", editor).await,
            "forbidden",
            "{url}"
        );
        // The same as owner: alice already owns the list.
        let owner = escalate("owner", "groceries", "milk");
        assert_eq!(
            dave.run(&server, "joinAndEditItem", owner).await,
            "forbidden",
            "{url}"
        );
        assert_eq!(members(&url).await, before_members, "{url}");
        assert_eq!(
            items(&url).await,
            ["dishes|chores|Dishes", "milk|groceries|Milk"],
            "{url}"
        );

        // A list whose members all left may be taken by anyone who makes
        // themselves its owner, so the membership passes its rule. Even
        // then, the item's row before the mutation is judged against the
        // members as they were before it, when dave was no member: forbidden.
        let left = json!({"list_id": "chores", "user_id": "bob"});
        assert_eq!(alice.run(&server, "removeMember", left).await, "ok");
        let left = json!({"list_id": "chores", "user_id": "alice"});
        assert_eq!(alice.run(&server, "removeMember", left).await, "ok");
        let take = escalate("owner", "chores", "dishes");
        assert_eq!(
            dave.run(&server, "joinAndEditItem", take).await,
            "forbidden",
            "{url}"
        );
        assert!(
            !members(&url).await.iter().any(|m| m.contains("dave")),
            "{url}"
        );
        // In two mutations it is allowed: the second starts with dave as owner.
        let join = json!({"list_id": "chores", "user_id": "dave", "role": "owner"});
        assert_eq!(dave.run(&server, "addMember", join).await, "ok", "{url}");
        let edit = json!({"id": "dishes", "title": "Dave's dishes"});
        assert_eq!(dave.run(&server, "editItem", edit).await, "ok", "{url}");
        assert_eq!(
            items(&url).await,
            ["dishes|chores|Dave's dishes", "milk|groceries|Milk"],
            "{url}"
        );
    }
}

#[tokio::test]
async fn a_write_queued_before_the_user_was_removed_is_rejected() {
    for url in store_urls().await {
        let (server, [mut alice, mut bob, ..]) = lists_of_alice(&url).await;
        // bob edits offline; alice removes him; bob's queue arrives.
        let queued = [
            bob.mutation("editItem", json!({"id": "milk", "title": "Bob's milk"})),
            bob.mutation(
                "addItem",
                json!({"id": "eggs", "list_id": "bobs", "title": "Eggs"}),
            ),
        ];
        let removal = json!({"list_id": "groceries", "user_id": "bob"});
        assert_eq!(alice.run(&server, "removeMember", removal).await, "ok");
        // The queue moves on past the rejected write.
        assert_eq!(
            bob.push(&server, &queued).await,
            ["forbidden", "ok"],
            "{url}"
        );
        assert_eq!(
            items(&url).await,
            [
                "dishes|chores|Dishes",
                "eggs|bobs|Eggs",
                "milk|groceries|Milk"
            ],
            "{url}"
        );
        // Pushed again (a lost reply), it gets the same answer.
        assert_eq!(
            bob.push(&server, &queued).await,
            ["forbidden", "alreadyProcessed"],
            "{url}"
        );
    }
}

#[tokio::test]
async fn only_a_lists_owner_manages_its_members_and_title() {
    for url in store_urls().await {
        let (server, [mut alice, mut bob, ..]) = lists_of_alice(&url).await;
        // An editor may neither add members nor promote himself …
        let add = json!({"list_id": "groceries", "user_id": "dave", "role": "editor"});
        assert_eq!(bob.run(&server, "addMember", add).await, "forbidden");
        let promote = json!({"list_id": "groceries", "user_id": "bob", "role": "owner"});
        assert_eq!(bob.run(&server, "setRole", promote).await, "forbidden");
        let rename = json!({"id": "groceries", "title": "Bob's now"});
        assert_eq!(bob.run(&server, "renameList", rename).await, "forbidden");
        // … nor create a list under an id that is taken.
        let taken = json!({"id": "groceries", "title": "Mine", "owner": "bob"});
        assert_eq!(
            bob.run(&server, "createList", taken).await,
            "mutator_failed",
            "{url}"
        );
        // The owner may.
        let rename = json!({"id": "groceries", "title": "Food"});
        assert_eq!(alice.run(&server, "renameList", rename).await, "ok");
        assert_eq!(
            members(&url).await,
            [
                "bobs|bob|owner",
                "chores|alice|owner",
                "chores|bob|viewer",
                "groceries|alice|owner",
                "groceries|bob|editor",
                "groceries|carol|viewer"
            ],
            "{url}"
        );
        assert_eq!(
            rows(&url, "SELECT id, title FROM lists ORDER BY id").await,
            ["bobs|Bob's", "chores|Chores", "groceries|Food"],
            "{url}"
        );
    }
}

/// A rule is judged on a row's after-image against the tables after the
/// mutation, where that row is already in place: "the user is an owner of
/// the list" must not count the membership being written, or anyone who
/// knows a list's id could make themselves its owner and read it. So one's
/// own owner membership is written only while nobody else is in the list:
/// an owner leaves a shared list by being removed by another owner.
#[tokio::test]
async fn nobody_makes_themselves_owner_of_a_list_others_are_in() {
    for url in store_urls().await {
        let (server, [mut alice, mut bob, _, mut dave]) = lists_of_alice(&url).await;
        let before = members(&url).await;
        let take = json!({"list_id": "groceries", "user_id": "dave", "role": "owner"});
        assert_eq!(
            dave.run(&server, "addMember", take).await,
            "forbidden",
            "{url}"
        );
        let take = json!({"list_id": "groceries", "user_id": "bob", "role": "owner"});
        assert_eq!(
            bob.run(&server, "setRole", take).await,
            "forbidden",
            "{url}"
        );
        let leave = json!({"list_id": "groceries", "user_id": "alice"});
        assert_eq!(
            alice.run(&server, "removeMember", leave).await,
            "forbidden",
            "{url}"
        );
        assert_eq!(members(&url).await, before, "{url}");
        // An owner makes another owner, who may then remove the first.
        let promote = json!({"list_id": "groceries", "user_id": "bob", "role": "owner"});
        assert_eq!(alice.run(&server, "setRole", promote).await, "ok", "{url}");
        let remove = json!({"list_id": "groceries", "user_id": "alice"});
        assert_eq!(
            bob.run(&server, "removeMember", remove).await,
            "ok",
            "{url}"
        );
        assert_eq!(
            members(&url).await,
            [
                "bobs|bob|owner",
                "chores|alice|owner",
                "chores|bob|viewer",
                "groceries|bob|owner",
                "groceries|carol|viewer"
            ],
            "{url}"
        );
    }
}

#[tokio::test]
async fn a_write_rule_the_database_cannot_run_refuses_the_app_at_start() {
    let mut json: Json = serde_json::from_str(
        &std::fs::read_to_string(repo().join("tests/fixtures/collab.json")).unwrap(),
    )
    .unwrap();
    // Valid names, invalid SQL: only the database can tell.
    json["tables"][2]["access"]["write"] =
        json!("EXISTS (SELECT 1 FROM members m WHERE m.list_id = items.list_id AND)");
    let app = AppDefinition::from_json(&json.to_string()).unwrap();
    for url in store_urls().await {
        let refused =
            ferrydb_server::ServerState::start(Config::default(), Some((app.clone(), &url)))
                .await
                .err()
                .unwrap_or_else(|| panic!("{url}: started"));
        let message = refused.to_string();
        assert!(
            message.contains("write rule of table `items`"),
            "{url}: {message}"
        );
    }
}
