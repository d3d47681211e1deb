//! What must hold: right after each rebase (the optimistic view is the
//! server's state plus the pending mutations re-run once), and after the
//! world settles (everyone equals the server, everything ran exactly once;
//! in the sharing world, each replica holds exactly what its subscriptions
//! select, each of them `complete`). What the sharing world checks as each
//! request is answered is in `sharing_checks.rs`.

use super::world::{Counters, Mode, Sim, View};
use ferrydb::engine::database::Database;
use ferrydb::engine::sync::Replica;
use ferrydb::engine::value::Value;
use ferrydb_protocol::{Cookie, PatchOp, PullOk, PullRequest, SubscriptionPhase};
use serde_json::Value as Json;
use std::collections::BTreeMap;

/// Counter id → value, from a snapshot of synced rows.
fn counters(view: &View) -> Counters {
    view["counters"]
        .iter()
        .map(|row| {
            let id = row["id"].as_str().unwrap().to_owned();
            (id, row["value"].as_i64().unwrap())
        })
        .collect()
}

impl Sim {
    pub fn server_counters(&mut self) -> Counters {
        counters(&self.server.readable_rows("anyone").unwrap())
    }

    /// What a caught-up replica of client `c` holds right after the server
    /// answered `request`: v1, every row its user may read; v2, what the
    /// request's subscriptions select.
    pub fn server_view(&self, c: usize, request: &PullRequest) -> View {
        let user = self.clients[c].user;
        match (&self.oracle, &request.subscriptions) {
            (Some(oracle), Some(subscriptions)) => oracle.tables().select(user, subscriptions),
            _ => self.server.readable_rows(user).unwrap(),
        }
    }

    /// Right after a rebase onto `server` (what the server held for this user
    /// when it answered the pull), the replica must be exactly that state with
    /// the pending (unacknowledged) mutations re-run on top, once each, in
    /// order. The oracle builds that from scratch in a fresh replica, which
    /// has no undo log or history, and compares. Counters are checked on their
    /// own too: there, re-running (not replaying) is visible as arithmetic.
    pub fn check_optimistic(&mut self, c: usize, server: &View) {
        let node = &mut self.clients[c].node;
        let pending = node
            .db
            .rows(
                "SELECT name, args FROM _ferry_outbox WHERE acked = 0 ORDER BY id",
                &[],
            )
            .unwrap();
        let pending: Vec<(String, Json)> = pending
            .rows
            .into_iter()
            .map(|r| match &r[..] {
                [Value::Text(name), Value::Text(args)] => {
                    (name.clone(), serde_json::from_str(args).unwrap())
                }
                other => panic!("{other:?}"),
            })
            .collect();
        let local = node.replica.snapshot(&mut node.db).unwrap();
        let (seed, id) = (self.seed, &self.clients[c].id);

        if self.mode == Mode::Rules {
            let mut expected = counters(server);
            for (_, args) in pending.iter().filter(|(n, _)| n == "increment") {
                *expected
                    .entry(args["id"].as_str().unwrap().to_owned())
                    .or_default() += args["by"].as_i64().unwrap();
            }
            assert_eq!(
                counters(&local),
                expected,
                "seed {seed}: {id}'s counters after a rebase"
            );
        }

        let mut db = Database::open_in_memory().unwrap();
        let (mut oracle, _) = Replica::open(&mut db, self.mode.app(), "oracle").unwrap();
        let mut patch = vec![PatchOp::Clear];
        for (table, rows) in server {
            patch.extend(rows.iter().map(|row| PatchOp::Put {
                table: table.clone(),
                row: row.clone(),
            }));
        }
        let state = PullOk {
            cookie: Cookie::Integer(0),
            last_mutation_id_changes: Default::default(),
            patch,
            more: false,
            subscriptions: Vec::new(),
        };
        oracle.apply_pull(&mut db, &state).unwrap();
        for (name, args) in &pending {
            // A mutation that fails here failed in the client's re-run too.
            let _ = oracle.mutate(&mut db, name, args, 0);
        }
        let expected = oracle.snapshot(&mut db).unwrap();
        assert_eq!(
            local, expected,
            "seed {seed}: {} after a rebase",
            self.clients[c].id
        );
        self.stats.rebases_checked += 1;
    }

    pub fn check(&mut self) {
        let seed = self.seed;
        let mut accepted_increments: BTreeMap<String, i64> = BTreeMap::new();
        let executions = self.server.executions().unwrap();
        let mut expected_executions = 0;
        for c in 0..self.clients.len() {
            let user = self.clients[c].user;
            let client = &mut self.clients[c];
            let node = &mut client.node;
            assert_eq!(
                node.replica.pending_count(&mut node.db).unwrap(),
                0,
                "seed {seed}: outbox left"
            );
            let replica = node.replica.snapshot(&mut node.db).unwrap();
            let server = match &self.oracle {
                None => self.server.readable_rows(user).unwrap(),
                Some(oracle) => {
                    let tables = oracle.tables();
                    for desired in node.replica.desired() {
                        let subscription = &desired.subscription;
                        let total = tables.selected(user, subscription).len() as u64;
                        let status = node.replica.subscription_status(subscription);
                        assert_eq!(
                            (status.state, status.synced, status.total),
                            (SubscriptionPhase::Complete, total, total),
                            "seed {seed}: {}'s subscription {subscription:?}",
                            client.id
                        );
                    }
                    let subscriptions: Vec<_> = node
                        .replica
                        .desired()
                        .iter()
                        .map(|d| d.subscription.clone())
                        .collect();
                    tables.select(user, &subscriptions)
                }
            };
            assert_eq!(
                replica, server,
                "seed {seed}: {} ({user}) differs from what the server holds for it",
                client.id
            );
            let rejected = self.server.rejections(&client.id).unwrap();
            self.stats.rejected += rejected.len() as u64;
            let mut logged: Vec<(u64, String)> = node
                .replica
                .rejections(&mut node.db)
                .unwrap()
                .into_iter()
                .map(|r| (r.mutation_id, r.code))
                .collect();
            logged.sort();
            assert_eq!(
                logged, rejected,
                "seed {seed}: rejection log of {}",
                client.id
            );
            for (id, name, args) in &client.mutations {
                assert_eq!(
                    executions.get(&(client.id.clone(), *id)),
                    Some(&1),
                    "seed {seed}: {} #{id} ran once",
                    client.id
                );
                expected_executions += 1;
                if name == "increment" && !rejected.iter().any(|r| r.0 == *id) {
                    *accepted_increments
                        .entry(args["id"].as_str().unwrap().to_owned())
                        .or_default() += args["by"].as_i64().unwrap();
                }
            }
            let last = client.mutations.last().map_or(0, |m| m.0);
            assert_eq!(
                self.server.last_mutation_id(&client.id).unwrap(),
                last,
                "seed {seed}"
            );
        }
        assert_eq!(
            executions.len(),
            expected_executions,
            "seed {seed}: unknown executions"
        );
        if self.mode == Mode::Rules {
            let counters = self.server_counters();
            assert_eq!(
                counters, accepted_increments,
                "seed {seed}: counters are not the sum of accepted increments"
            );
        }
    }
}
