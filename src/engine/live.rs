//! Live queries: which registered queries a commit made stale, re-evaluated once
//! each however many tabs watch them, and delivered only when the rows changed
//! or the query's completeness flipped.
//!
//! A live query is *complete* when it reads no table that the replica is
//! still waiting for: the engine sets those tables ([`LiveQueries::set_incomplete`],
//! `Replication::incomplete_tables` says which) and a query's tables are the
//! ones SQLite reports it reads, the same set that decides when it is stale.

use super::database::{Database, TableSet};
use super::error::{Error, ErrorData, Result};
use super::patch::{Patch, Segment};
use super::value::{QueryResult, Value};
use std::collections::HashMap;

/// A tab, as the worker numbers its connections.
pub type TabId = u32;
/// A subscription id, chosen by the tab and unique within it.
pub type SubscriptionId = u32;
/// One subscriber: a subscription of a tab.
pub type Subscriber = (TabId, SubscriptionId);

/// Identical SQL with identical parameters is one live query, evaluated once.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct QueryKey {
    sql: String,
    /// Parameters as bytes (see [`param_key`]): `Value` holds floats, so it is
    /// not `Hash`/`Eq`.
    params: Vec<u8>,
}

/// An exact, unambiguous encoding of `params`: a tag per value, then its bytes
/// (floats by bit pattern, text and blobs after their length). Not their
/// `Debug` text, which would bring float formatting into the wasm (15 KB).
fn param_key(params: &[Value]) -> Vec<u8> {
    let mut key = Vec::new();
    for param in params {
        match param {
            Value::Null => key.push(0),
            Value::Integer(i) => {
                key.push(1);
                key.extend_from_slice(&i.to_le_bytes());
            }
            Value::Real(f) => {
                key.push(2);
                key.extend_from_slice(&f.to_bits().to_le_bytes());
            }
            Value::Text(t) => {
                key.push(3);
                key.extend_from_slice(&(t.len() as u64).to_le_bytes());
                key.extend_from_slice(t.as_bytes());
            }
            Value::Blob(b) => {
                key.push(4);
                key.extend_from_slice(&(b.len() as u64).to_le_bytes());
                key.extend_from_slice(b);
            }
        }
    }
    key
}

struct LiveQuery {
    sql: String,
    params: Vec<Value>,
    reads: TableSet,
    /// The last good result: what every subscribed tab holds, and what the next
    /// patch is relative to (an error in between keeps it, in the tabs too).
    rows: QueryResult,
    /// Set while re-evaluation fails (a dropped table, say).
    failing: Option<ErrorData>,
    /// What its subscribers were last told of its completeness.
    complete: bool,
    /// A `Vec`, not a set: few tabs share a query, and `subscribe` refuses a
    /// subscriber it already has.
    subscribers: Vec<Subscriber>,
}

/// A change (or error) for one subscription.
#[derive(Clone, Debug, PartialEq)]
pub struct LiveUpdate {
    pub subscription: SubscriptionId,
    pub change: Result<Patch, ErrorData>,
    /// Whether the query reads no table the replica is still waiting for.
    pub complete: bool,
}

/// Everything one tab must be told after a commit: one message, all its queries.
#[derive(Clone, Debug, PartialEq)]
pub struct TabUpdates {
    pub tab: TabId,
    pub updates: Vec<LiveUpdate>,
}

impl LiveQuery {
    /// Runs the query again; returns what its subscribers must be told, if anything.
    fn reevaluate(&mut self, db: &mut Database) -> Option<Result<Patch, ErrorData>> {
        match db.rows_aligned(&self.sql, &self.params, &self.rows) {
            Ok((columns, fresh)) => {
                let recovered = self.failing.take().is_some();
                match Patch::update(&mut self.rows, columns, fresh) {
                    Some(patch) => Some(Ok(patch)),
                    // Same rows as before the error: tabs only need to hear it is over.
                    None if recovered => Some(self.unchanged()),
                    None => None,
                }
            }
            Err(e) => {
                let error = e.to_data();
                if self.failing.as_ref() == Some(&error) {
                    return None;
                }
                self.failing = Some(error.clone());
                Some(Err(error))
            }
        }
    }

    /// The change that tells subscribers "as before": every row kept, or
    /// the error still in force.
    fn unchanged(&self) -> Result<Patch, ErrorData> {
        match &self.failing {
            Some(error) => Err(error.clone()),
            None => Ok(Patch {
                columns: None,
                segments: vec![Segment::Keep {
                    from: 0,
                    count: self.rows.rows.len(),
                }],
            }),
        }
    }
}

#[derive(Default)]
pub struct LiveQueries {
    /// Each subscriber is in one query's list. Found by scanning (there is no
    /// second map by subscriber): subscribing and unsubscribing are rare next
    /// to refreshes, and a map instantiation costs the wasm kilobytes.
    queries: HashMap<QueryKey, LiveQuery>,
    /// Tables the replica is still waiting for: a query reading one is not complete.
    incomplete: TableSet,
}

impl LiveQueries {
    /// Registers a subscription and returns the query's current rows and
    /// whether they are complete. A query that cannot be evaluated (invalid
    /// SQL, a write) is an error and registers nothing.
    pub fn subscribe(
        &mut self,
        db: &mut Database,
        subscriber: Subscriber,
        sql: &str,
        params: Vec<Value>,
    ) -> Result<(QueryResult, bool)> {
        if self.query_of(subscriber).is_some() {
            return Err(Error::BadRequest(format!(
                "subscription {} is already in use",
                subscriber.1
            )));
        }
        let key = QueryKey {
            sql: sql.to_owned(),
            params: param_key(&params),
        };
        if let Some(query) = self.queries.get_mut(&key) {
            if let Some(error) = &query.failing {
                return Err(Error::Recorded(error.clone()));
            }
            query.subscribers.push(subscriber);
            return Ok((query.rows.clone(), query.complete));
        }
        let access = db.access(sql)?;
        if !access.readonly {
            return Err(Error::BadRequest("a live query must only read".into()));
        }
        let reads = access.reads.clone();
        let rows = db.rows(sql, &params)?;
        let complete = reads.is_disjoint(&self.incomplete);
        self.queries.insert(
            key.clone(),
            LiveQuery {
                sql: sql.to_owned(),
                params,
                reads,
                rows: rows.clone(),
                failing: None,
                complete,
                subscribers: vec![subscriber],
            },
        );
        Ok((rows, complete))
    }

    pub fn unsubscribe(&mut self, subscriber: Subscriber) -> Result<()> {
        let key = self
            .query_of(subscriber)
            .cloned()
            .ok_or(Error::UnknownSubscription(subscriber.1))?;
        if let Some(query) = self.queries.get_mut(&key) {
            query.subscribers.retain(|s| *s != subscriber);
            if query.subscribers.is_empty() {
                self.queries.remove(&key);
            }
        }
        Ok(())
    }

    /// Releases everything a tab held; returns how many subscriptions it had.
    pub fn remove_tab(&mut self, tab: TabId) -> usize {
        let mut held = 0;
        for query in self.queries.values_mut() {
            let before = query.subscribers.len();
            query.subscribers.retain(|(t, _)| *t != tab);
            held += before - query.subscribers.len();
        }
        self.queries
            .retain(|_, query| !query.subscribers.is_empty());
        held
    }

    /// The key of the query `subscriber` is subscribed to.
    fn query_of(&self, subscriber: Subscriber) -> Option<&QueryKey> {
        self.queries
            .iter()
            .find(|(_, query)| query.subscribers.contains(&subscriber))
            .map(|(key, _)| key)
    }

    /// Sets the tables the replica is still waiting for; returns whether
    /// that changed (then a [`Self::refresh`] tells the queries whose
    /// completeness flipped).
    pub fn set_incomplete(&mut self, tables: TableSet) -> bool {
        if tables == self.incomplete {
            return false;
        }
        self.incomplete = tables;
        true
    }

    /// Re-evaluates every query that reads a changed table, once, and returns the
    /// updates grouped by tab. Queries whose rows did not change send nothing,
    /// unless their completeness flipped.
    pub fn refresh(&mut self, db: &mut Database, changed: &TableSet) -> Vec<TabUpdates> {
        let mut out: Vec<TabUpdates> = Vec::new();
        for query in self.queries.values_mut() {
            let complete = query.reads.is_disjoint(&self.incomplete);
            let flipped = complete != query.complete;
            query.complete = complete;
            let change = if query.reads.is_disjoint(changed) {
                None
            } else {
                query.reevaluate(db)
            };
            let change = match change {
                Some(change) => change,
                None if flipped => query.unchanged(),
                None => continue,
            };
            for &(tab, subscription) in &query.subscribers {
                let update = LiveUpdate {
                    subscription,
                    change: change.clone(),
                    complete,
                };
                // Kept in tab order as it grows (no sort to bring into the wasm).
                match out.binary_search_by_key(&tab, |u| u.tab) {
                    Ok(at) => out[at].updates.push(update),
                    Err(at) => out.insert(
                        at,
                        TabUpdates {
                            tab,
                            updates: vec![update],
                        },
                    ),
                }
            }
        }
        out
    }

    pub fn query_count(&self) -> usize {
        self.queries.len()
    }

    pub fn subscription_count(&self) -> usize {
        self.queries.values().map(|q| q.subscribers.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn param_keys_tell_apart_what_differs_and_only_that() {
        let key = |params: &[Value]| param_key(params);
        let text = |s: &str| Value::Text(s.into());
        assert_eq!(
            key(&[text("a"), Value::Real(0.5)]),
            key(&[text("a"), Value::Real(0.5)])
        );
        // Each pair differs: same number as integer vs real, text split
        // differently, text vs blob of the same bytes, null vs nothing.
        let pairs = [
            (vec![Value::Integer(1)], vec![Value::Real(1.0)]),
            (vec![text("ab"), text("c")], vec![text("a"), text("bc")]),
            (vec![text("a")], vec![Value::Blob(b"a".to_vec())]),
            (vec![Value::Null], vec![]),
            (vec![Value::Real(0.1 + 0.2)], vec![Value::Real(0.3)]),
        ];
        for (a, b) in pairs {
            assert_ne!(key(&a), key(&b), "{a:?} vs {b:?}");
        }
    }
}
