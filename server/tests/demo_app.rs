//! The demo's app definition (`demo/app.json`) over HTTP on every store: its
//! write rules are what keep ada's lists hers while the page lets anyone
//! click anything. grace cannot share ada's list with herself, write into
//! it, or take it; once shared she edits its items but not the list; and no
//! pull of hers carries anything of a list not shared with her.

mod common;

use common::{store_urls, AppServer};
use serde_json::{json, Value as Json};

/// A server on the demo's app definition.
struct Demo(AppServer);

impl Demo {
    async fn start(url: &str) -> Demo {
        Demo(AppServer::start(url, "demo/app.json").await)
    }

    /// Pushes one mutation as `user`; returns `ok` or the rejection's code.
    async fn push(&self, user: &str, name: &str, args: Json) -> String {
        self.0.push(user, name, args).await
    }

    /// A full v2 pull of `user`'s lists and the items of `lists`.
    async fn pull(&self, user: &str, lists: &[&str]) -> Json {
        let mut subscriptions = vec![json!({"query": "myLists", "args": {}})];
        for list in lists {
            subscriptions.push(json!({"query": "listItems", "args": {"listId": list}}));
        }
        self.0.pull(user, &Json::Null, &subscriptions).await
    }
}

fn add_item(id: &str, list: &str, by: &str) -> Json {
    json!({"id": id, "listId": list, "owner": by, "title": format!("{by}'s {id}"), "at": 1.0, "by": "tab"})
}

/// `op table` of each patch entry after the initial `clear`.
fn tables(response: &Json) -> Vec<String> {
    response["patch"].as_array().unwrap()[1..]
        .iter()
        .map(|op| {
            format!(
                "{} {}",
                op["type"].as_str().unwrap(),
                op["table"].as_str().unwrap()
            )
        })
        .collect()
}

#[tokio::test]
async fn only_the_owner_shares_a_list_and_only_what_is_shared_reaches_the_other_user() {
    for url in store_urls().await {
        let demo = Demo::start(&url).await;
        let list = json!({"id": "salary", "owner": "ada", "name": "Salary review", "at": 1.0});
        assert_eq!(demo.push("ada", "createList", list).await, "ok", "{url}");
        assert_eq!(
            demo.push("ada", "addItem", add_item("i1", "salary", "ada"))
                .await,
            "ok"
        );

        // Before any share: grace can neither join, write, nor take the list.
        for (name, args) in [
            ("shareList", json!({"listId": "salary", "user": "grace"})),
            ("addItem", add_item("i2", "salary", "grace")),
            ("toggleItem", json!({"id": "i1", "at": 2.0, "by": "tab"})),
            ("giveList", json!({"id": "salary", "owner": "grace"})),
            ("deleteList", json!({"id": "salary"})),
        ] {
            assert_eq!(
                demo.push("grace", name, args).await,
                "forbidden",
                "{url}: {name}"
            );
        }
        let grace = demo.pull("grace", &["salary"]).await;
        assert_eq!(tables(&grace), Vec::<String>::new(), "{url}");
        let mut echo_free = grace.clone();
        echo_free["subscriptions"][1]["args"] = Json::Null;
        for secret in ["Salary review", "i1", "ada's"] {
            assert!(
                !echo_free.to_string().contains(secret),
                "{secret} in {grace}"
            );
        }
        // Nor may ada hand the list to grace: the list is its owner's.
        let give = json!({"id": "salary", "owner": "grace"});
        assert_eq!(demo.push("ada", "giveList", give).await, "forbidden");

        // Shared: grace edits its items, but the list and its shares stay ada's.
        let share = json!({"listId": "salary", "user": "grace"});
        assert_eq!(demo.push("ada", "shareList", share).await, "ok");
        let shared = demo.pull("grace", &["salary"]).await;
        assert_eq!(tables(&shared), ["put lists", "put members", "put items"]);
        assert_eq!(
            demo.push("grace", "addItem", add_item("i2", "salary", "grace"))
                .await,
            "ok"
        );
        let rename = json!({"id": "salary", "name": "Mine now"});
        assert_eq!(demo.push("grace", "renameList", rename).await, "forbidden");
        let unshare = json!({"listId": "salary", "user": "grace"});
        assert_eq!(
            demo.push("grace", "unshareList", unshare).await,
            "forbidden"
        );

        // Unshared: nothing of it is left to grace, and she may write nothing.
        let unshare = json!({"listId": "salary", "user": "grace"});
        assert_eq!(demo.push("ada", "unshareList", unshare).await, "ok");
        assert_eq!(
            tables(&demo.pull("grace", &["salary"]).await),
            Vec::<String>::new()
        );
        assert_eq!(
            demo.push(
                "grace",
                "toggleItem",
                json!({"id": "i2", "at": 3.0, "by": "tab"})
            )
            .await,
            "forbidden"
        );
        let ada = demo.pull("ada", &["salary"]).await;
        assert_eq!(tables(&ada), ["put lists", "put items", "put items"]);
    }
}
