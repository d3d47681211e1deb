//! The oracle of the sharing world: which rows each subscription selects,
//! computed from the server's tables (read over a connection of its own)
//! with the meaning of each query of `tests/fixtures/sharing_simulation.json`
//! written out in Rust. It shares nothing with the server's view records or
//! with the SQL of the queries' parts, so a fault in either shows as a
//! difference.

use super::world::View;
use ferrydb_protocol::{Row, Subscription};
use rusqlite::{Connection, OpenFlags};
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;
use std::path::Path;

/// A row's table and primary key values (in key order; every key column of
/// the sharing app is text).
pub type Key = (String, Vec<String>);

pub struct Oracle {
    conn: Connection,
}

pub struct List {
    pub id: String,
    pub title: String,
    pub owner: String,
}

pub struct Member {
    pub list_id: String,
    pub user_id: String,
    pub role: String,
}

pub struct Item {
    pub id: String,
    pub list_id: String,
    pub title: String,
    pub done: bool,
}

/// The server's synced tables at one moment.
pub struct Tables {
    pub lists: Vec<List>,
    pub members: Vec<Member>,
    pub items: Vec<Item>,
}

impl Oracle {
    pub fn open(path: &Path) -> Oracle {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        Oracle {
            conn: Connection::open_with_flags(path, flags).unwrap(),
        }
    }

    /// The server's tables now (plain SQL over the server's file).
    pub fn tables(&self) -> Tables {
        let read = |sql: &str| -> Vec<Vec<rusqlite::types::Value>> {
            let mut statement = self.conn.prepare_cached(sql).unwrap();
            let rows = statement
                .query_map([], |r| {
                    (0..r.as_ref().column_count())
                        .map(|i| r.get(i))
                        .collect::<Result<Vec<_>, _>>()
                })
                .unwrap();
            rows.collect::<Result<_, _>>().unwrap()
        };
        use rusqlite::types::Value::{Integer, Text};
        let text = |v: &rusqlite::types::Value| match v {
            Text(s) => s.clone(),
            other => panic!("a text column holds {other:?}"),
        };
        Tables {
            lists: read("SELECT id, title, owner FROM lists")
                .iter()
                .map(|r| List {
                    id: text(&r[0]),
                    title: text(&r[1]),
                    owner: text(&r[2]),
                })
                .collect(),
            members: read("SELECT list_id, user_id, role FROM members")
                .iter()
                .map(|r| Member {
                    list_id: text(&r[0]),
                    user_id: text(&r[1]),
                    role: text(&r[2]),
                })
                .collect(),
            items: read("SELECT id, list_id, title, done FROM items")
                .iter()
                .map(|r| Item {
                    id: text(&r[0]),
                    list_id: text(&r[1]),
                    title: text(&r[2]),
                    done: match r[3] {
                        Integer(b) => b != 0,
                        ref other => panic!("a boolean column holds {other:?}"),
                    },
                })
                .collect(),
        }
    }
}

impl Tables {
    /// `user`'s role in list `list`, if a member.
    pub fn role(&self, list: &str, user: &str) -> Option<&str> {
        self.members
            .iter()
            .find(|m| m.list_id == list && m.user_id == user)
            .map(|m| m.role.as_str())
    }

    /// Whether `user` may write the items of list `list` (owner or editor).
    pub fn edits(&self, list: &str, user: &str) -> bool {
        matches!(self.role(list, user), Some("owner" | "editor"))
    }

    /// Every membership: (list, user) → role.
    pub fn memberships(&self) -> BTreeMap<(String, String), String> {
        self.members
            .iter()
            .map(|m| ((m.list_id.clone(), m.user_id.clone()), m.role.clone()))
            .collect()
    }

    pub fn item(&self, id: &str) -> Option<&Item> {
        self.items.iter().find(|i| i.id == id)
    }

    pub fn list(&self, id: &str) -> Option<&List> {
        self.lists.iter().find(|l| l.id == id)
    }

    /// Every row `subscriptions` select for `user`, per synced table (all
    /// three, empty ones too) in key order: what a caught-up replica holds.
    pub fn select(&self, user: &str, subscriptions: &[Subscription]) -> View {
        let mut view: BTreeMap<String, BTreeMap<Vec<String>, Row>> = ["lists", "members", "items"]
            .into_iter()
            .map(|t| (t.to_owned(), BTreeMap::new()))
            .collect();
        for subscription in subscriptions {
            for ((table, key), row) in self.selected(user, subscription) {
                view.get_mut(&table).unwrap().insert(key, row);
            }
        }
        view.into_iter()
            .map(|(table, rows)| (table, rows.into_values().collect()))
            .collect()
    }

    /// The rows one subscription selects for `user`, by key.
    pub fn selected(&self, user: &str, subscription: &Subscription) -> Vec<(Key, Row)> {
        let member = |list: &str| self.role(list, user).is_some();
        let list_arg = || subscription.args["list_id"].as_str().unwrap().to_owned();
        let lists = |keep: &dyn Fn(&List) -> bool| -> Vec<(Key, Row)> {
            self.lists
                .iter()
                .filter(|l| keep(l))
                .map(list_row)
                .collect()
        };
        let items = |keep: &dyn Fn(&Item) -> bool| -> Vec<(Key, Row)> {
            self.items
                .iter()
                .filter(|i| keep(i))
                .map(item_row)
                .collect()
        };
        match subscription.query.as_str() {
            "myLists" => lists(&|l| member(&l.id)),
            "sharedLists" => lists(&|l| {
                member(&l.id)
                    && self
                        .members
                        .iter()
                        .any(|m| m.list_id == l.id && m.user_id != user)
            }),
            "listItems" => {
                let list = list_arg();
                items(&|i| i.list_id == list && member(&list))
            }
            "listMembers" => {
                let list = list_arg();
                self.members
                    .iter()
                    .filter(|m| m.list_id == list && member(&list))
                    .map(member_row)
                    .collect()
            }
            "listWithItems" => {
                let list = list_arg();
                let mut rows = lists(&|l| l.id == list && member(&list));
                rows.extend(items(&|i| i.list_id == list && member(&list)));
                rows
            }
            "editableItems" => items(&|i| self.edits(&i.list_id, user)),
            other => panic!("the oracle knows no query `{other}`"),
        }
    }
}

fn as_row(value: Json) -> Row {
    value.as_object().unwrap().clone()
}

fn list_row(l: &List) -> (Key, Row) {
    let row = json!({"id": l.id, "title": l.title, "owner": l.owner});
    (("lists".into(), vec![l.id.clone()]), as_row(row))
}

fn member_row(m: &Member) -> (Key, Row) {
    let row = json!({"list_id": m.list_id, "user_id": m.user_id, "role": m.role});
    let key = vec![m.list_id.clone(), m.user_id.clone()];
    (("members".into(), key), as_row(row))
}

fn item_row(i: &Item) -> (Key, Row) {
    let row = json!({"id": i.id, "list_id": i.list_id, "title": i.title, "done": i.done});
    (("items".into(), vec![i.id.clone()]), as_row(row))
}

/// The key of a row of the sharing app's table `table` (a `put`'s row or a
/// `del`'s key).
pub fn key_of(table: &str, row: &Row) -> Key {
    let columns: &[&str] = match table {
        "members" => &["list_id", "user_id"],
        "lists" | "items" => &["id"],
        other => panic!("the sharing app has no table `{other}`"),
    };
    let values = columns
        .iter()
        .map(|c| row[*c].as_str().expect("a text key").to_owned())
        .collect();
    (table.to_owned(), values)
}
