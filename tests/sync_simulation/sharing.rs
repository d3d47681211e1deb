//! The sharing world's workload: users share lists with each other and take
//! them back (`members`), edit the lists' items, and change what each of
//! their replicas subscribes to. Ids come from small pools shared by every
//! user, so clients collide, write to lists they cannot see, and keep writing
//! to lists just taken from them (what their replica still shows).

use super::world::Sim;
use ferrydb::engine::sync::{canonical, Desired, Event, DEFAULT_TTL_MS};
use ferrydb::engine::value::Value;
use serde_json::{json, Value as Json};

/// List ids `l0..`, item ids `i0..`.
const LISTS: u64 = 5;
const ITEMS: u64 = 16;
const ROLES: [&str; 3] = ["owner", "editor", "viewer"];
/// Most subscriptions a replica wants at once.
const MOST_SUBSCRIPTIONS: usize = 5;

impl Sim {
    /// Every replica starts with `myLists`, as the host subscribes to a
    /// `syncOnOpen` query (here it may be dropped later like any other).
    pub fn subscribe_on_open(&mut self, c: usize) {
        let node = &mut self.clients[c].node;
        let my_lists = canonical(node.replica.app(), "myLists", &json!({})).unwrap();
        let desired = vec![Desired {
            subscription: my_lists,
            ttl_ms: DEFAULT_TTL_MS,
        }];
        assert!(node.replica.set_desired(&mut node.db, desired).unwrap());
    }

    pub fn random_sharing_action(&mut self, c: usize) {
        if self.rng.chance(0.2) {
            self.change_subscriptions(c);
        } else {
            self.random_sharing_mutation(c);
        }
    }

    /// Ids the replica shows (first column of `sql`).
    fn shown(&mut self, c: usize, sql: &str) -> Vec<String> {
        let node = &mut self.clients[c].node;
        let rows = node.db.rows(sql, &[]).unwrap().rows;
        rows.into_iter()
            .map(|r| match &r[0] {
                Value::Text(id) => id.clone(),
                other => panic!("an id is {other:?}"),
            })
            .collect()
    }

    /// Mostly an id the replica shows (what is on the user's screen), else
    /// any from the pool.
    fn pick(&mut self, c: usize, sql: &str, prefix: &str, pool: u64) -> String {
        let shown = self.shown(c, sql);
        if !shown.is_empty() && self.rng.chance(0.7) {
            return shown[self.rng.below(shown.len() as u64) as usize].clone();
        }
        format!("{prefix}{}", self.rng.below(pool))
    }

    fn pick_list(&mut self, c: usize) -> String {
        let known = "SELECT id FROM lists UNION SELECT list_id FROM members \
                     UNION SELECT list_id FROM items";
        self.pick(c, known, "l", LISTS)
    }

    fn pick_item(&mut self, c: usize) -> String {
        self.pick(c, "SELECT id FROM items", "i", ITEMS)
    }

    /// Subscribes to one more query or drops one; a changed set pulls.
    fn change_subscriptions(&mut self, c: usize) {
        let mut desired = self.clients[c].node.replica.desired().to_vec();
        if !desired.is_empty() && (desired.len() >= MOST_SUBSCRIPTIONS || self.rng.chance(0.4)) {
            desired.remove(self.rng.below(desired.len() as u64) as usize);
        } else {
            let list = self.pick_list(c);
            let (query, args) = match self.rng.below(6) {
                0 => ("myLists", json!({})),
                1 => ("sharedLists", json!({})),
                2 => ("editableItems", json!({})),
                3 => ("listItems", json!({ "list_id": list })),
                4 => ("listMembers", json!({ "list_id": list })),
                _ => ("listWithItems", json!({ "list_id": list })),
            };
            let subscription = canonical(&self.mode.app(), query, &args).unwrap();
            if desired.iter().any(|d| d.subscription == subscription) {
                return;
            }
            desired.push(Desired {
                subscription,
                ttl_ms: DEFAULT_TTL_MS,
            });
        }
        let node = &mut self.clients[c].node;
        if node.replica.set_desired(&mut node.db, desired).unwrap() {
            self.stats.subscription_changes += 1;
            self.handle(c, Event::SubscriptionsChanged);
        }
    }

    fn random_sharing_mutation(&mut self, c: usize) {
        let user = self.clients[c].user;
        let others: Vec<&str> = self
            .mode
            .users()
            .iter()
            .copied()
            .filter(|u| *u != user)
            .collect();
        let list = self.pick_list(c);
        let item = self.pick_item(c);
        let r = &mut self.rng;
        let other = others[r.below(others.len() as u64) as usize];
        // Mostly someone else: sharing and revoking; sometimes oneself
        // (leaving a list, claiming one, giving oneself a role).
        let someone = if r.chance(0.1) { user } else { other };
        let role = ROLES[r.below(3) as usize];
        let title = format!("t{}", r.below(100));
        let (name, args) = match r.below(20) {
            0 | 1 => {
                let owner = if r.chance(0.03) { other } else { user };
                let args = json!({"id": list, "title": title, "owner": owner});
                ("createList", args)
            }
            2 => ("renameList", json!({"id": list, "title": title})),
            3 => ("deleteList", json!({ "id": list })),
            4..=6 => (
                "addMember",
                json!({"list_id": list, "user_id": someone, "role": role}),
            ),
            7 | 8 => ("removeMember", json!({"list_id": list, "user_id": someone})),
            9 => (
                "setRole",
                json!({"list_id": list, "user_id": someone, "role": role}),
            ),
            10..=12 => (
                "addItem",
                json!({"id": item, "list_id": list, "title": title}),
            ),
            13..=15 => {
                let done = [Json::Null, json!(true), json!(false)][r.below(3) as usize].clone();
                (
                    "editItem",
                    json!({"id": item, "title": title, "done": done}),
                )
            }
            16 => ("deleteItem", json!({ "id": item })),
            17 | 18 => ("moveItem", json!({"id": item, "list_id": list})),
            _ => (
                "joinAndEditItem",
                json!({"list_id": list, "user_id": user, "role": role, "id": item, "title": title}),
            ),
        };
        // Whether the replica shows the row this mutation writes.
        let target = match name {
            "renameList" | "deleteList" => Some(("lists", &list)),
            "editItem" | "deleteItem" | "moveItem" => Some(("items", &item)),
            _ => None,
        };
        let saw_target = target.is_some_and(|(table, id)| {
            let shown = self.shown(c, &format!("SELECT id FROM {table}"));
            shown.contains(id)
        });
        let client = &mut self.clients[c];
        let node = &mut client.node;
        match node.replica.mutate(&mut node.db, name, &args, self.now) {
            Ok(m) => {
                self.stats.mutations += 1;
                client.mutations.push((m.id, name.to_owned(), args));
                if saw_target {
                    client.saw_target.insert(m.id);
                }
                self.handle(c, Event::Mutated);
            }
            Err(e) => {
                assert_eq!(e.code(), "mutator_failed", "seed {}: {e}", self.seed);
                self.stats.local_failures += 1;
            }
        }
    }
}
