//! What must hold: right after each rebase (the optimistic view is the
//! server's state plus the pending mutations re-run once), and after the
//! world settles (everyone equals the server, everything ran exactly once).
//! In the sharing world also: every pull response, delivered or lost, sends
//! only rows the request's subscriptions select now, with their current
//! values, and deletes only keys the group was sent; a write to an item or
//! list the user may not (or no longer) write is rejected `forbidden`; and
//! after settling each replica holds exactly what its subscriptions select,
//! each of them `complete`.

use super::oracle::key_of;
use super::world::{Counters, Mode, Sim, View};
use ferrydb::engine::database::Database;
use ferrydb::engine::sync::Replica;
use ferrydb::engine::value::Value;
use ferrydb_protocol::{
    Cookie, MutationResult, PatchOp, PullOk, PullRequest, PullResponse, PushRequest, PushResponse,
    RejectionCode, SubscriptionPhase,
};
use serde_json::Value as Json;
use std::collections::BTreeMap;

/// What the sharing world's oracle expects of a push, before the server
/// runs it.
pub struct PushPrediction {
    /// Mutations to be rejected `forbidden`, each with whether its user had
    /// seen its target and can no longer read it.
    forbidden: Vec<(u64, bool)>,
    /// The memberships before the push: (list, user) → role.
    members: BTreeMap<(String, String), String>,
}

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

    /// Sharing world: right after the server answered `request` (the
    /// response may yet be lost): each subscription's state is right (on a
    /// first page, its total is what it selects now, and it is complete
    /// unless pages follow); every `put` is of a row the request's
    /// subscriptions select for its user now, with its current value, and
    /// every `del` names a key they selected when an earlier pull of the
    /// group was answered. (Not necessarily one the group was sent: a row
    /// the first page of a download recorded, changed before the page that
    /// would carry it, is recorded again and left to the next pull, which
    /// removes it if it left meanwhile. Such `del`s are counted.)
    pub fn check_pull(&mut self, c: usize, request: &PullRequest, response: &PullResponse) {
        let (Some(oracle), Some(subscriptions), PullResponse::Ok(ok)) =
            (&self.oracle, &request.subscriptions, response)
        else {
            return;
        };
        let client = &mut self.clients[c];
        let tables = oracle.tables();
        let selected: BTreeMap<_, _> = subscriptions
            .iter()
            .flat_map(|s| tables.selected(client.user, s))
            .collect();
        let seed = self.seed;
        // A response that is not a later page of a download is at the view
        // version just computed: each subscription's total is what it
        // selects now, and without more pages every one is complete.
        let first_page = !matches!(request.cookie, Some(Cookie::Text(_)));
        assert_eq!(ok.subscriptions.len(), subscriptions.len(), "seed {seed}");
        for (state, subscription) in ok.subscriptions.iter().zip(subscriptions) {
            let total = tables.selected(client.user, subscription).len() as u64;
            let complete = state.state == SubscriptionPhase::Complete && state.synced == total;
            assert!(
                (state.query == subscription.query && state.args == subscription.args)
                    && (!first_page || state.total == total)
                    && (!first_page || ok.more || complete),
                "seed {seed}: {} was told {state:?} for a subscription that selects {total} rows",
                client.id
            );
        }
        for op in &ok.patch {
            match op {
                PatchOp::Put { table, row } => {
                    let key = key_of(table, row);
                    assert_eq!(
                        selected.get(&key),
                        Some(row),
                        "seed {seed}: {} ({}) was sent a row its subscriptions do not select \
                         (or an old value of one): {key:?}",
                        client.id,
                        client.user
                    );
                    client.sent.insert(key);
                }
                PatchOp::Del { table, key } => {
                    let key = key_of(table, key);
                    assert!(
                        client.selectable.contains(&key),
                        "seed {seed}: {} ({}) was sent a `del` of a key its subscriptions \
                         never selected: {key:?}",
                        client.id,
                        client.user
                    );
                    self.stats.dels += 1;
                    self.stats.dels_of_unsent += u64::from(!client.sent.contains(&key));
                }
                PatchOp::Clear => {}
            }
        }
        client.selectable.extend(selected.into_keys());
        self.stats.responses_checked += 1;
    }

    /// Sharing world, before the server runs `request`: the mutations it
    /// must reject `forbidden`, judged against its tables now, with whether
    /// their user had lost read access to the target they saw: an edit,
    /// deletion or move of an existing item of a list where the user is not
    /// owner or editor; a rename or deletion of an existing list the user
    /// does not own. Only mutations the server has not processed yet count,
    /// and only in a push with no mutation that could give its user a role
    /// (creating a list, a membership naming them): nothing else in a push
    /// of one user can change what it may write.
    pub fn predict_push(&self, c: usize, request: &PushRequest) -> Option<PushPrediction> {
        let oracle = self.oracle.as_ref()?;
        let client = &self.clients[c];
        let user = client.user;
        let tables = oracle.tables();
        let members = tables.memberships();
        let grants = request.mutations.iter().any(|m| {
            m.name == "createList" || m.args.get("user_id").and_then(Json::as_str) == Some(user)
        });
        if grants {
            return Some(PushPrediction {
                forbidden: Vec::new(),
                members,
            });
        }
        let processed = self.server.last_mutation_id(&client.id).unwrap();
        let mut forbidden = Vec::new();
        for m in request.mutations.iter().filter(|m| m.id > processed) {
            let id = m.args["id"].as_str().unwrap_or_default();
            let list = match m.name.as_str() {
                "editItem" | "deleteItem" | "moveItem" => tables
                    .item(id)
                    .filter(|item| !tables.edits(&item.list_id, user))
                    .map(|item| &item.list_id),
                "renameList" | "deleteList" => tables
                    .list(id)
                    .filter(|list| tables.role(&list.id, user) != Some("owner"))
                    .map(|list| &list.id),
                _ => None,
            };
            if let Some(list) = list {
                let revoked =
                    tables.role(list, user).is_none() && client.saw_target.contains(&m.id);
                forbidden.push((m.id, revoked));
            }
        }
        Some(PushPrediction { forbidden, members })
    }

    /// After the server answered `request`: it rejected the mutations
    /// predicted `forbidden`, and the memberships of a list others were in
    /// changed only if the pushing user owned it (nobody joins a shared list
    /// on their own). Counts the memberships the push added and removed.
    pub fn check_push(
        &mut self,
        c: usize,
        request: &PushRequest,
        response: &PushResponse,
        prediction: Option<PushPrediction>,
    ) {
        let (Some(oracle), Some(prediction)) = (&self.oracle, prediction) else {
            return;
        };
        let members = oracle.tables().memberships();
        let before = &prediction.members;
        let user = self.clients[c].user;
        let changed = members
            .iter()
            .filter(|(key, role)| before.get(*key) != Some(role))
            .chain(before.iter().filter(|(key, _)| !members.contains_key(*key)));
        for ((list, member), _) in changed {
            let shared = before.keys().any(|(l, u)| l == list && u != user);
            let owned = before
                .get(&(list.clone(), user.to_owned()))
                .map(String::as_str)
                == Some("owner");
            assert!(
                !shared || owned,
                "seed {}: {} ({user}) changed {member}'s membership of list {list}, which \
                 others are in and {user} does not own: {:?}",
                self.seed,
                self.clients[c].id,
                request.mutations
            );
        }
        self.stats.shares += members.keys().filter(|k| !before.contains_key(*k)).count() as u64;
        self.stats.revocations +=
            before.keys().filter(|k| !members.contains_key(*k)).count() as u64;
        let PushResponse::Ok { results } = response else {
            return;
        };
        for (id, revoked) in prediction.forbidden {
            let result = results.iter().find(|r| r.id() == id);
            assert!(
                matches!(
                    result,
                    Some(MutationResult::Rejected {
                        code: RejectionCode::Forbidden,
                        ..
                    })
                ),
                "seed {}: {} #{id} of {:?} must be forbidden, got {result:?}",
                self.seed,
                self.clients[c].id,
                request.mutations.iter().find(|m| m.id == id)
            );
            self.stats.forbidden_predicted += 1;
            self.stats.forbidden_after_revocation += u64::from(revoked);
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
