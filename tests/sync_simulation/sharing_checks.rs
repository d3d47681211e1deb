//! What the sharing world checks as the server answers each request, with
//! the oracle's view of the server's tables at that moment: every pull
//! response, delivered or lost, states each subscription rightly, sends only
//! rows the request's subscriptions select now with their current values,
//! and deletes only keys they selected before; a push's writes to an item or
//! list its user may not (or no longer) write are rejected `forbidden`; and
//! nobody changes the memberships of a list others are in without owning it.

use super::oracle::key_of;
use super::world::Sim;
use ferrydb_protocol::{
    Cookie, MutationResult, PatchOp, PullRequest, PullResponse, PushRequest, PushResponse,
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

impl Sim {
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
}
