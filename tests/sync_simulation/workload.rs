//! The workload: random mutations of the sample app, mostly on one's own rows,
//! sometimes on another user's (the server rejects those), over small id
//! pools so that clients collide.

use super::world::Sim;
use ferrydb::engine::sync::Event;
use serde_json::json;

impl Sim {
    pub fn random_mutation(&mut self, c: usize) {
        let user = self.clients[c].user;
        let other_user = |user: &str| {
            let users = self.mode.users();
            users[(users.iter().position(|u| *u == user).unwrap() + 1) % users.len()]
        };
        // Mostly one's own rows; sometimes another user's (the server forbids it).
        let owner = if self.rng.chance(0.03) {
            other_user(user)
        } else {
            user
        };
        // Ids mostly from one's own namespace; sometimes from the other user's,
        // where the server has rows this client cannot see.
        let space = if self.rng.chance(0.03) {
            other_user(user)
        } else {
            user
        };
        let r = &mut self.rng;
        let list = format!("{space}-l{}", r.below(4));
        let todo = format!("{space}-t{}", r.below(12));
        let (name, args) = match r.below(11) {
            0 => (
                "createList",
                json!({"id": list, "owner": owner, "name": format!("n{}", r.below(100))}),
            ),
            1 => (
                "renameList",
                json!({"id": list, "name": format!("n{}", r.below(100))}),
            ),
            2 => ("deleteList", json!({"id": list})),
            3 | 4 => (
                "addTodo",
                json!({"id": todo, "listId": list, "owner": owner, "title": format!("x{}", r.below(100))}),
            ),
            5 => ("toggleTodo", json!({"id": todo})),
            6 => (
                "renameTodo",
                json!({"id": todo, "title": format!("y{}", r.below(100))}),
            ),
            7 => ("deleteTodo", json!({"id": todo})),
            8 => (
                "tagTodo",
                json!({"todoId": todo, "tag": format!("g{}", r.below(3)), "owner": owner}),
            ),
            9 => (
                "setTodoMeta",
                json!({"id": todo, "meta": {"n": r.below(5)}}),
            ),
            _ => (
                "increment",
                json!({"id": format!("k{}", r.below(2)), "by": 1 + r.below(5)}),
            ),
        };
        let client = &mut self.clients[c];
        let node = &mut client.node;
        match node.replica.mutate(&mut node.db, name, &args, self.now) {
            Ok(m) => {
                self.stats.mutations += 1;
                client.mutations.push((m.id, name.to_owned(), args));
                self.handle(c, Event::Mutated);
            }
            Err(e) => {
                assert_eq!(e.code(), "mutator_failed", "seed {}: {e}", self.seed);
                self.stats.local_failures += 1;
            }
        }
    }
}
