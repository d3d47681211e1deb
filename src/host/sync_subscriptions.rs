//! Sync subscriptions (protocol v2, `db.sync(query, args, {ttl})`): which
//! queries the worker syncs, held by tabs and their components.
//!
//! - ONE subscription per distinct `(query, args)` in the worker, the
//!   arguments compared in canonical form ([`canonical`]); each `syncHold`
//!   of a tab is one holder of it, reference-counted across tabs.
//! - When its last holder lets go (a release, or its tab went away) the
//!   subscription stays for its TTL (the longest any holder asked for) on
//!   the monotonic clock, so a component that unmounts and mounts again,
//!   or a page reload, does not download the same rows again. A new holder
//!   within the TTL keeps it; at expiry it leaves the desired set.
//! - `syncOnOpen` queries are held by the app itself, from open, with the
//!   default TTL, for as long as the app marks them so: an upgrade in place
//!   to an app version that no longer does releases them (their TTL runs if
//!   nothing else holds them), and one that drops a query (or changes its
//!   parameters) removes its subscriptions at once.
//! - The desired set after every change goes to the replica, which
//!   persists it and pulls. After a worker restart the persisted ones are
//!   kept for their TTL, counted from the restart, waiting for their tabs.
//! - Each holder is told its subscription's state when it starts holding
//!   and whenever the state changes (`syncState`).

use super::interface::{Output, Timer};
use super::tab_message::CallId;
use super::worker_message::WorkerMessage;
use super::Host;
use crate::engine::error::Error;
use crate::engine::live::TabId;
use crate::engine::request::Response;
use crate::engine::sync::{canonical, Desired, SubscriptionStatus, DEFAULT_TTL_MS};
use ferrydb_protocol::Subscription;

/// A tab's own numbering of its holds.
pub type HoldId = u32;

#[derive(Debug, Default)]
pub struct SyncSubscriptions {
    /// In the order first wanted (the order pulls list them). A handful: a
    /// `Vec` scanned by key costs the wasm less than a map.
    entries: Vec<Entry>,
    /// When the TTL timer is set to fire.
    timer_at: Option<u64>,
}

#[derive(Debug)]
struct Entry {
    subscription: Subscription,
    ttl_ms: u64,
    holders: Vec<(TabId, HoldId)>,
    /// Held by the app while its version marks the query `syncOnOpen`.
    pinned: bool,
    /// When it leaves the desired set, once nothing holds it.
    expires_at: Option<u64>,
    /// The state its holders were last told.
    told: Option<SubscriptionStatus>,
}

impl SyncSubscriptions {
    fn desired(&self) -> Vec<Desired> {
        self.entries
            .iter()
            .map(|e| Desired {
                subscription: e.subscription.clone(),
                ttl_ms: e.ttl_ms,
            })
            .collect()
    }

    fn holds(&self, tab: TabId, hold: HoldId) -> bool {
        self.entries
            .iter()
            .any(|e| e.holders.contains(&(tab, hold)))
    }

    /// The entry of `subscription`, added (unheld) if there is none; its index.
    fn entry(&mut self, subscription: Subscription) -> usize {
        if let Some(at) = self
            .entries
            .iter()
            .position(|e| e.subscription == subscription)
        {
            return at;
        }
        self.entries.push(Entry {
            subscription,
            ttl_ms: 0,
            holders: Vec::new(),
            pinned: false,
            expires_at: None,
            told: None,
        });
        self.entries.len() - 1
    }

    /// Adds a holder; returns the entry's index.
    fn hold(&mut self, subscription: Subscription, ttl_ms: u64, holder: (TabId, HoldId)) -> usize {
        let at = self.entry(subscription);
        let entry = &mut self.entries[at];
        entry.ttl_ms = entry.ttl_ms.max(ttl_ms);
        entry.expires_at = None;
        entry.holders.push(holder);
        at
    }

    /// Removes the holders `gone` picks; an entry left without any starts
    /// its TTL at `now`. Returns whether any holder was removed.
    fn release(&mut self, now: u64, gone: impl Fn(&(TabId, HoldId)) -> bool) -> bool {
        let mut removed = false;
        for entry in &mut self.entries {
            let before = entry.holders.len();
            entry.holders.retain(|h| !gone(h));
            if entry.holders.len() != before {
                removed = true;
                if entry.holders.is_empty() && !entry.pinned {
                    entry.expires_at = Some(now + entry.ttl_ms);
                }
            }
        }
        removed
    }

    /// Drops the entries whose TTL has run out by `now`; returns whether any did.
    fn expire(&mut self, now: u64) -> bool {
        let before = self.entries.len();
        self.entries
            .retain(|e| e.expires_at.is_none_or(|at| at > now));
        self.entries.len() != before
    }

    fn next_expiry(&self) -> Option<u64> {
        self.entries.iter().filter_map(|e| e.expires_at).min()
    }
}

impl Host {
    /// After the replica opened (or was upgraded): the persisted desired set
    /// is kept for its TTLs from now, waiting for its holders, and the
    /// `syncOnOpen` queries are held by the app (see the module header).
    pub(super) fn sync_subscriptions_opened(&mut self) {
        let now = self.env.now().monotonic;
        let Some(replication) = self.engine.replication() else {
            return;
        };
        let app = replication.app();
        let persisted = replication.replica.desired().to_vec();
        let on_open: Vec<Subscription> = app
            .queries
            .iter()
            .filter(|q| q.sync_on_open)
            .filter_map(|q| canonical(app, &q.name, &serde_json::json!({})).ok())
            .collect();
        let subs = &mut self.sync_subscriptions;
        // A newer app (an upgrade in place) may have dropped a query or
        // changed its parameters: the server would not answer those, so they
        // go at once, whoever held them (the tabs that did are outdated).
        subs.entries.retain(|e| {
            canonical(app, &e.subscription.query, &e.subscription.args)
                .is_ok_and(|now| now == e.subscription)
        });
        // One no longer synced from open is let go by the app, like any
        // holder: unheld, its TTL runs.
        for entry in &mut subs.entries {
            if entry.pinned && !on_open.contains(&entry.subscription) {
                entry.pinned = false;
                if entry.holders.is_empty() {
                    entry.expires_at = Some(now + entry.ttl_ms);
                }
            }
        }
        for desired in persisted {
            let at = subs.entry(desired.subscription);
            let entry = &mut subs.entries[at];
            if entry.holders.is_empty() && !entry.pinned && entry.expires_at.is_none() {
                entry.ttl_ms = desired.ttl_ms;
                entry.expires_at = Some(now + desired.ttl_ms);
            }
        }
        for subscription in on_open {
            let at = subs.entry(subscription);
            let entry = &mut subs.entries[at];
            entry.pinned = true;
            entry.expires_at = None;
            // The app holds it as `db.sync` without a TTL would: once an
            // app version no longer syncs it from open, it stays this long.
            entry.ttl_ms = entry.ttl_ms.max(DEFAULT_TTL_MS);
        }
        self.sync_subscriptions_changed();
    }

    /// `syncHold`: `tab` holds `(query, args)` as its hold `hold`.
    pub(super) fn sync_hold(
        &mut self,
        tab: TabId,
        id: CallId,
        hold: HoldId,
        query: &str,
        args: &serde_json::Value,
        ttl_ms: Option<u32>,
    ) {
        if let Some(refusal) = self.tabs.refusal(tab) {
            return self.reply(tab, id, Err(refusal), None);
        }
        let checked = match self.engine.replication() {
            None => Err(Error::BadRequest(
                "sync needs an app: open the database with `app`".into(),
            )),
            Some(_) if self.sync_subscriptions.holds(tab, hold) => Err(Error::BadRequest(format!(
                "sync hold {hold} is already in use"
            ))),
            Some(r) => canonical(r.app(), query, args).map_err(Error::from),
        };
        let subscription = match checked {
            Ok(subscription) => subscription,
            Err(e) => return self.reply(tab, id, Err(e.to_data()), None),
        };
        let ttl_ms = ttl_ms.map_or(DEFAULT_TTL_MS, u64::from);
        let at = self
            .sync_subscriptions
            .hold(subscription, ttl_ms, (tab, hold));
        self.reply(tab, id, Ok(Response::Done), None);
        // The new holder hears the state now; the others only on a change.
        let status = self.subscription_status(at);
        self.post(tab, WorkerMessage::SyncState { hold, status });
        self.sync_subscriptions_changed();
    }

    /// `syncRelease`: `tab` lets go of its hold `hold`.
    pub(super) fn sync_release(&mut self, tab: TabId, id: CallId, hold: HoldId) {
        if let Some(refusal) = self.tabs.refusal(tab) {
            return self.reply(tab, id, Err(refusal), None);
        }
        let now = self.env.now().monotonic;
        let released = self.sync_subscriptions.release(now, |&h| h == (tab, hold));
        let result = if released {
            Ok(Response::Done)
        } else {
            Err(Error::UnknownSubscription(hold).to_data())
        };
        self.reply(tab, id, result, None);
        self.sync_subscriptions_changed();
    }

    /// A tab went away: its holds are released.
    pub(super) fn sync_tab_gone(&mut self, tab: TabId) {
        let now = self.env.now().monotonic;
        if self.sync_subscriptions.release(now, |&(t, _)| t == tab) {
            self.sync_subscriptions_changed();
        }
    }

    /// The TTL timer fired: expired subscriptions leave the desired set.
    pub(super) fn sync_subscriptions_expire(&mut self) {
        self.sync_subscriptions.timer_at = None;
        let now = self.env.now().monotonic;
        self.sync_subscriptions.expire(now);
        self.sync_subscriptions_changed();
    }

    /// Sends the desired set to the replica (which pulls if it changed),
    /// sets the TTL timer, and tells holders of changed states.
    fn sync_subscriptions_changed(&mut self) {
        // Expiries already due go now (a TTL of 0 releases at once).
        let now = self.env.now().monotonic;
        self.sync_subscriptions.expire(now);
        let desired = self.sync_subscriptions.desired();
        let handled = self.engine.set_desired(desired);
        self.sync_handled(handled.map(Some));
        let next = self.sync_subscriptions.next_expiry();
        if next != self.sync_subscriptions.timer_at {
            self.sync_subscriptions.timer_at = next;
            self.out.push(match next {
                Some(at) => Output::SetTimer {
                    timer: Timer::SyncSubscriptions,
                    at,
                },
                None => Output::ClearTimer(Timer::SyncSubscriptions),
            });
        }
    }

    fn subscription_status(&mut self, at: usize) -> SubscriptionStatus {
        let entry = &mut self.sync_subscriptions.entries[at];
        let status = self
            .engine
            .replication()
            .map_or_else(SubscriptionStatus::pending, |r| {
                r.replica.subscription_status(&entry.subscription)
            });
        entry.told = Some(status.clone());
        status
    }

    /// Tells every holder whose subscription's state changed since it was
    /// last told (after a pull, a reset, a change of the set).
    pub(super) fn tell_subscription_states(&mut self) {
        for at in 0..self.sync_subscriptions.entries.len() {
            let entry = &self.sync_subscriptions.entries[at];
            if entry.holders.is_empty() {
                continue;
            }
            let told = entry.told.clone();
            let status = self.subscription_status(at);
            if told.as_ref() == Some(&status) {
                continue;
            }
            let holders = self.sync_subscriptions.entries[at].holders.clone();
            for (tab, hold) in holders {
                self.post(
                    tab,
                    WorkerMessage::SyncState {
                        hold,
                        status: status.clone(),
                    },
                );
            }
        }
    }
}
