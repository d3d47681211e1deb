//! The group's desired subscriptions (protocol v2, `docs/protocol.md` §11):
//! which queries of the app, with which arguments, the replica syncs, and
//! what the server last said of each. An app that defines queries speaks
//! v2: every pull carries the whole desired set.
//!
//! - Arguments are checked and converted against the query's parameters
//!   exactly as a mutator's are (`values::bind_params`), then written back
//!   in one canonical form (every declared parameter, each value in its
//!   type's wire form), so `{a: 1, b: "x"}` and `{b: "x", a: 1.0}` are one
//!   subscription and the server gets arguments it accepts.
//! - The desired set is persisted in `_ferry_meta` (with each one's TTL):
//!   a reload or an offline start keeps syncing the same data.
//! - Rows never leave because of anything here: only the server knows
//!   whether another subscription still selects a row, so removal comes as
//!   its patch's `del`.
//! - States are known from responses only; after a reopen each is
//!   `pending` until the first pull answers (the rows from before are still
//!   there, but whether they are current is the server's to say).

use super::error::{Error, Result};
use super::meta;
use super::replica::Replica;
use crate::engine::database::{Database, TableSet};
use crate::engine::value::Value;
use ferrydb_protocol::values::{bind_params, to_json};
use ferrydb_protocol::{
    AppDefinition, Subscription, SubscriptionError, SubscriptionPhase, SubscriptionState,
};
use serde_json::{Map, Value as Json};

/// How long a subscription stays once nothing holds it, when the app does
/// not say: long enough that navigating back and forth does not download
/// the same rows again.
pub const DEFAULT_TTL_MS: u64 = 5 * 60 * 1000;

/// A subscription the group wants, and how long it stays (ms) once nothing
/// holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    pub subscription: Subscription,
    pub ttl_ms: u64,
}

/// What is known of one subscription: the server's last word on it, or
/// `pending` with nothing synced before it spoke.
#[derive(Clone, Debug, PartialEq)]
pub struct SubscriptionStatus {
    pub state: SubscriptionPhase,
    pub synced: u64,
    pub total: u64,
    pub error: Option<SubscriptionError>,
}

impl SubscriptionStatus {
    pub fn pending() -> Self {
        SubscriptionStatus {
            state: SubscriptionPhase::Pending,
            synced: 0,
            total: 0,
            error: None,
        }
    }
}

/// Checks `args` against query `query` of `app` and returns the subscription
/// with its arguments in canonical form (`unknown_query`, `bad_arguments`).
pub fn canonical(app: &AppDefinition, query: &str, args: &Json) -> Result<Subscription> {
    let def = app
        .query(query)
        .ok_or_else(|| Error::UnknownQuery(query.to_owned()))?;
    let values = bind_params(&def.params, args).map_err(|message| Error::BadQueryArguments {
        query: query.to_owned(),
        message,
    })?;
    // Inserted one by one: collecting into the map would sort (a stable
    // sort and the B-tree's bulk build are kilobytes of wasm).
    let mut args = Map::new();
    for (param, value) in def.params.iter().zip(&values) {
        args.insert(param.name.clone(), to_json(param.ty, value));
    }
    Ok(Subscription {
        query: query.to_owned(),
        args: Json::Object(args),
    })
}

const META_KEY: &str = "subscriptions";

impl Replica {
    /// Whether this app syncs by subscription (it defines queries).
    pub fn by_subscription(&self) -> bool {
        !self.app.queries.is_empty()
    }

    /// The subscriptions the group wants, in the order they were first wanted.
    pub fn desired(&self) -> &[Desired] {
        &self.desired
    }

    /// What is known of `subscription` (`pending` until a response names it).
    pub fn subscription_status(&self, subscription: &Subscription) -> SubscriptionStatus {
        self.states
            .iter()
            .find(|s| s.query == subscription.query && s.args == subscription.args)
            .map_or_else(SubscriptionStatus::pending, |s| SubscriptionStatus {
                state: s.state,
                synced: s.synced,
                total: s.total,
                error: s.error.clone(),
            })
    }

    /// The tables a wanted subscription still `pending` syncs (a part of its
    /// query selects rows of them): live queries reading one are not
    /// complete. A subscription in `error` syncs nothing and never will, so
    /// it holds nothing back (its holders see the error).
    pub fn pending_tables(&self) -> TableSet {
        let mut tables = TableSet::new();
        for Desired { subscription, .. } in &self.desired {
            let answered = self.states.iter().any(|s| {
                s.state != SubscriptionPhase::Pending
                    && s.query == subscription.query
                    && s.args == subscription.args
            });
            if answered {
                continue;
            }
            for part in self
                .app
                .query(&subscription.query)
                .map_or(&[][..], |q| &q.parts)
            {
                tables.insert(part.table.clone());
            }
        }
        tables
    }

    /// Replaces the desired set and persists it. Returns whether the set of
    /// subscriptions changed (a TTL alone does not): then a pull is due.
    /// A subscription given twice keeps its first place: the server answers
    /// each distinct `(query, args)` once, and so the client asks once.
    pub fn set_desired(&mut self, db: &mut Database, desired: Vec<Desired>) -> Result<bool> {
        let desired = distinct(desired);
        if desired == self.desired {
            return Ok(false);
        }
        let changed = desired.len() != self.desired.len()
            || desired.iter().any(|d| {
                !self
                    .desired
                    .iter()
                    .any(|o| o.subscription == d.subscription)
            });
        let list: Vec<Json> = desired
            .iter()
            .map(|d| {
                let mut entry = Map::new();
                entry.insert("query".into(), d.subscription.query.as_str().into());
                entry.insert("args".into(), d.subscription.args.clone());
                entry.insert("ttl".into(), d.ttl_ms.into());
                Json::Object(entry)
            })
            .collect();
        meta::set(db, META_KEY, Value::Text(Json::Array(list).to_string()))?;
        // What the server said of a subscription no longer wanted is stale
        // if it is wanted again later.
        self.states.retain(|s| {
            desired
                .iter()
                .any(|d| d.subscription.query == s.query && d.subscription.args == s.args)
        });
        self.desired = desired;
        Ok(changed)
    }

    /// Records the states a response brought, for subscriptions still wanted
    /// (the set may have changed while the pull was in flight).
    pub(super) fn record_states(&mut self, states: &[SubscriptionState]) {
        for state in states {
            let wanted = self
                .desired
                .iter()
                .any(|d| d.subscription.query == state.query && d.subscription.args == state.args);
            if !wanted {
                continue;
            }
            self.states
                .retain(|s| !(s.query == state.query && s.args == state.args));
            self.states.push(state.clone());
        }
    }

    /// Forgets every state (the replica was reset: everything syncs afresh).
    pub(super) fn forget_states(&mut self) {
        self.states.clear();
    }

    /// The subscriptions for the next pull: `Some` (v2) when the app
    /// defines queries, `None` (v1) otherwise.
    pub(super) fn subscriptions(&self) -> Option<Vec<Subscription>> {
        self.by_subscription().then(|| {
            self.desired
                .iter()
                .map(|d| d.subscription.clone())
                .collect()
        })
    }
}

/// The persisted desired set, each subscription checked again against `app`
/// (a newer build may have dropped or changed a query: those are left out).
pub(super) fn load_desired(db: &mut Database, app: &AppDefinition) -> Result<Vec<Desired>> {
    let text = meta::get_text(db, META_KEY)?.unwrap_or_default();
    // Read as any JSON, then by hand: deserializing into a typed `Vec`
    // would bring serde's type-mismatch errors, and with them float
    // formatting, into the wasm (~6 KB gzip).
    let list: Json = serde_json::from_str(&text).unwrap_or_default();
    // Distinct again: two entries of an older build may now be one.
    Ok(distinct(
        list.as_array()
            .into_iter()
            .flatten()
            .filter_map(|entry| {
                let query = entry.get("query")?.as_str()?;
                let subscription = canonical(app, query, entry.get("args")?).ok()?;
                Some(Desired {
                    subscription,
                    ttl_ms: entry.get("ttl")?.as_u64()?,
                })
            })
            .collect(),
    ))
}

/// `desired` with each subscription once, where it first appears.
fn distinct(desired: Vec<Desired>) -> Vec<Desired> {
    let mut kept: Vec<Desired> = Vec::with_capacity(desired.len());
    for d in desired {
        if !kept.iter().any(|k| k.subscription == d.subscription) {
            kept.push(d);
        }
    }
    kept
}
