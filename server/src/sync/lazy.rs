//! Lazy pages: an initial sync through subscriptions read straight from the
//! tables, as v1's full sync reads them (`docs/subscriptions.md`, "Paging").
//!
//! The pull that starts an initial sync (no cookie: a new replica, or one
//! starting over, whose view rows are then all marked absent) records only
//! the view's head, at `v + 1`, and each subscription's total; every page, the first too, then reads the next rows
//! of each table from its part, in the table's own key order (its primary
//! key's index, a range scan), records exactly those rows in the view at
//! `v + 1`, and sends them. The cookie of the next page is a cursor
//! `rows:<v + 1>:<table index>:<JSON key array>`, the last row sent; the
//! paging record ([`LazyPaging`]) keeps, per page start, each
//! subscription's `synced` before it.
//!
//! A page reads the tables as they are now, so it is exact only while
//! nothing the subscriptions read was written since the snapshot the
//! paging rests on (`seen`), and no other pull recorded since. Otherwise
//! the page evaluates the subscriptions in full and diffs the view: what
//! the client holds from this paging (every row up to the cursor) and
//! changed or left is recorded at a later view version, which the pull
//! after the last page sends; what entered up to the cursor too; what lies
//! after the cursor is left for the pages, which record it at `v + 1` as
//! they send it. A page never lowers a row's patch version: a row recorded
//! later stays for that pull, even if a page sends it too. So a write or a
//! revocation during the paging is never lost, and nothing leaves the
//! server that the subscriptions do not select now.
//!
//! Served when each table has at most one part among the requested
//! subscriptions (so the table says which subscription chose a row);
//! otherwise the pull takes the path of `view.rs`, which records every row
//! first.

use super::cursor::key_value;
use super::pull::{reset, TableShape};
use super::view::{bind, evaluate, group_reads, key_text, part_params, Answer};
use super::view::{HeldRow, ViewHead, ViewTx};
use super::Result;
use ferrydb_protocol::{AppDefinition, Cookie, PatchOp, PullResponse, Row, Subscription, Value};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

/// A question for [`LazyTx::part_rows`]: the next rows of one part.
#[derive(Clone, Copy, Debug)]
pub struct PartRows<'a> {
    pub query: usize,
    pub part: usize,
    pub params: &'a [Value],
    /// Rows after this key (`None`: from the first).
    pub after: Option<&'a [Value]>,
    pub limit: usize,
}

/// What lazy pages ask of a store, inside a v2 pull's transaction.
pub trait LazyTx: ViewTx {
    /// How many rows part `part` of the app's query `query` selects, with
    /// `params` bound to its placeholders in order.
    fn count(
        &self,
        query: usize,
        part: usize,
        params: &[Value],
    ) -> impl Future<Output = Result<u64>>;

    /// Up to `limit` rows the part selects, in its table's key order (the
    /// order of its primary key), each whole (every column of the store's
    /// table) with its row version.
    fn part_rows(&self, rows: PartRows<'_>) -> impl Future<Output = Result<Vec<(Row, i64)>>>;

    /// For each of `keys` of table `table` (the app's index), whether it
    /// comes after `after` in the order of [`LazyTx::part_rows`].
    fn keys_after(
        &self,
        table: usize,
        keys: &[Vec<Value>],
        after: &[Value],
    ) -> impl Future<Output = Result<Vec<bool>>>;

    /// Records rows a page sends, each unless the view holds its table and
    /// key at a patch version not below the row's.
    fn record_sent(&self, group_id: &str, rows: &[HeldRow]) -> impl Future<Output = Result<()>>;

    /// Marks every row the group's view holds absent, each at its patch
    /// version: the client cleared its replica.
    fn forget(&self, group_id: &str) -> impl Future<Output = Result<()>>;
}

/// What a v2 pull needs to answer through lazy pages.
pub(super) struct Lazy<'a> {
    pub app: &'a AppDefinition,
    pub tables: &'a [TableShape],
    pub user_id: &'a str,
    pub group_id: &'a str,
    pub server_version: i64,
    pub page_size: usize,
    pub subscriptions: &'a [Subscription],
    /// The subscriptions as JSON.
    pub requested: &'a str,
    pub schema_version: u32,
}

/// The one part over a table among the requested subscriptions, bound.
struct TablePart {
    subscription: usize,
    query: usize,
    part: usize,
    params: Vec<Value>,
}

/// The paging record of a lazy paging.
#[derive(Debug, Serialize, Deserialize)]
struct LazyPaging {
    /// The view version the pages record their rows at.
    rows_at: i64,
    /// The view version it was recorded at: a later one means another pull
    /// recorded since.
    view_version: i64,
    /// The server version of the snapshot the pages rest on: a write after
    /// it to a table the subscriptions read may change what they select.
    seen: i64,
    /// The subscriptions (JSON) the totals and marks count.
    requested: String,
    /// Per requested subscription, the rows it selects.
    totals: Vec<u64>,
    /// The page starts: (table index, JSON key array) of the row before,
    /// and per subscription its rows the client holds from this paging
    /// before the page.
    marks: Vec<(usize, String, Vec<u64>)>,
}

/// The cookie of a lazy paging's next page.
struct RowsCursor {
    /// The view version the pages record their rows at.
    at: i64,
    table: usize,
    /// The last row's key sent, as typed values and as JSON text.
    key: Vec<Value>,
    text: String,
}

impl RowsCursor {
    const PREFIX: &'static str = "rows:";

    /// A cursor this server could have written for `tables` and a view at
    /// `version`; `None` otherwise.
    fn parse(text: &str, tables: &[TableShape], version: i64) -> Option<RowsCursor> {
        let mut parts = text.strip_prefix(Self::PREFIX)?.splitn(3, ':');
        let at: i64 = parts.next()?.parse().ok()?;
        let table: usize = parts.next()?.parse().ok()?;
        let shape = tables.get(table)?;
        let json: Vec<Json> = serde_json::from_str(parts.next()?).ok()?;
        if json.len() != shape.key.len() || at > version || at < 1 {
            return None;
        }
        let key = shape
            .key
            .iter()
            .zip(&json)
            .map(|((_, ty), json)| key_value(*ty, json))
            .collect::<Option<Vec<Value>>>()?;
        Some(RowsCursor {
            at,
            table,
            key,
            text: Json::Array(json).to_string(),
        })
    }

    fn render(at: i64, table: usize, key: &[Value]) -> String {
        format!("{}{at}:{table}:{}", Self::PREFIX, key_json(key))
    }
}

/// A key's typed values as the JSON array text the view and cursors hold.
fn key_json(key: &[Value]) -> String {
    let values = key
        .iter()
        .map(|value| match value {
            Value::Integer(n) => Json::from(*n),
            Value::Text(text) => Json::from(text.as_str()),
            _ => Json::Null,
        })
        .collect();
    Json::Array(values).to_string()
}

/// A key column's values of a row, typed (keys are integers or text).
fn typed_key(shape: &TableShape, row: &Row) -> Result<Vec<Value>> {
    shape
        .key
        .iter()
        .map(|(name, ty)| row.get(name).and_then(|json| key_value(*ty, json)))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| {
            super::StoreError::Internal(format!(
                "a row of `{}` has a key no cursor can hold",
                shape.name
            ))
        })
}

type Clients = BTreeMap<String, (u64, i64)>;

impl Lazy<'_> {
    /// The answer if this pull is one of a lazy paging: its first page (no
    /// cookie, one part per table, something to send), or a later one
    /// (a `rows:` cursor: its page, or `resetReplica` if this server could
    /// not have written it or its paging is over). `None`: `view.rs`
    /// answers.
    pub async fn answer<T: LazyTx>(
        &self,
        tx: &T,
        head: &mut ViewHead,
        clients: &Clients,
        cookie: &Option<Cookie>,
    ) -> Result<Option<PullResponse>> {
        match cookie {
            None => self.start(tx, head, clients.clone()).await,
            Some(Cookie::Text(text)) if text.starts_with(RowsCursor::PREFIX) => {
                let resumed = match RowsCursor::parse(text, self.tables, head.version) {
                    Some(cursor) => self.resume(tx, head, clients.clone(), cursor).await?,
                    None => None,
                };
                Ok(Some(resumed.unwrap_or_else(|| reset(self.schema_version))))
            }
            Some(_) => Ok(None),
        }
    }

    /// Per table (index into `tables`), the requested subscriptions' part
    /// over it; `None` if a table has several.
    fn plan(&self) -> Option<Vec<Option<TablePart>>> {
        let mut plan: Vec<Option<TablePart>> = self.tables.iter().map(|_| None).collect();
        for (index, subscription) in self.subscriptions.iter().enumerate() {
            let Ok((query_index, args)) = bind(self.app, subscription) else {
                continue;
            };
            let query = &self.app.queries[query_index];
            for (part_index, part) in query.parts.iter().enumerate() {
                let Some(table) = self.tables.iter().position(|t| t.name == part.table) else {
                    continue;
                };
                if plan[table].is_some() {
                    return None;
                }
                plan[table] = Some(TablePart {
                    subscription: index,
                    query: query_index,
                    part: part_index,
                    params: part_params(query, &args, &part.statement().params, self.user_id),
                });
            }
        }
        Some(plan)
    }

    /// The subscriptions a pull records: those that bind.
    fn recorded_subscriptions(&self) -> String {
        let bound: Vec<&Subscription> = self
            .subscriptions
            .iter()
            .filter(|s| bind(self.app, s).is_ok())
            .collect();
        serde_json::to_string(&bound).expect("subscriptions serialize")
    }

    /// The first page of an initial sync: records the head at `v + 1` and
    /// the totals, then the page.
    async fn start<T: LazyTx>(
        &self,
        tx: &T,
        head: &mut ViewHead,
        mut clients: Clients,
    ) -> Result<Option<PullResponse>> {
        let Some(plan) = self.plan() else {
            return Ok(None);
        };
        let mut totals = vec![0; self.subscriptions.len()];
        for part in plan.iter().flatten() {
            totals[part.subscription] += tx.count(part.query, part.part, &part.params).await?;
        }
        // Nothing to send: `view.rs` answers, and records nothing.
        if totals.iter().all(|&total| total == 0) {
            return Ok(None);
        }
        // A replica starting over (a reset) holds nothing: the pages mark
        // present what they send, at `at`, above every patch version kept.
        if tx.held(self.group_id).await?.iter().any(|row| row.present) {
            tx.forget(self.group_id).await?;
        }
        let at = head.version + 1;
        for (client, last) in tx.changed_clients(self.group_id, -1).await? {
            if clients.get(&client).is_none_or(|(told, _)| *told != last) {
                clients.insert(client, (last, at));
            }
        }
        head.version = at;
        head.clients = serde_json::to_string(&clients).expect("clients serialize");
        tx.record(self.group_id, head, &self.recorded_subscriptions(), &[])
            .await?;
        let paging = LazyPaging {
            rows_at: at,
            view_version: head.version,
            seen: self.server_version,
            requested: self.requested.to_owned(),
            totals,
            marks: Vec::new(),
        };
        let synced = vec![0; self.subscriptions.len()];
        let page = self.page(tx, &plan, paging, None, synced, clients);
        Ok(Some(page.await?))
    }

    /// A later page: read on from the cursor if the paging's record says
    /// nothing moved, else after evaluating (see the module header). `None`
    /// if the paging is not the view's current one.
    async fn resume<T: LazyTx>(
        &self,
        tx: &T,
        head: &mut ViewHead,
        clients: Clients,
        cursor: RowsCursor,
    ) -> Result<Option<PullResponse>> {
        let Some(text) = tx.paging(self.group_id).await? else {
            return Ok(None);
        };
        let Ok(paging) = serde_json::from_str::<LazyPaging>(&text) else {
            return Ok(None);
        };
        if paging.rows_at != cursor.at || paging.view_version != head.version {
            return Ok(None);
        }
        let Some(plan) = self.plan() else {
            return Ok(None);
        };
        let mark = paging
            .marks
            .iter()
            .find(|(table, key, _)| *table == cursor.table && *key == cursor.text)
            .map(|(_, _, synced)| synced.clone());
        let mut still = paging.requested == self.requested;
        if still && self.server_version > paging.seen {
            let view = Some((self.user_id.to_owned(), self.requested.to_owned()));
            let reads = group_reads(self.app, self.user_id, self.group_id, view)?;
            let touched = tx.touched(paging.seen, self.server_version).await?;
            still = touched.is_disjoint(&reads);
        }
        let from = Some((cursor.table, cursor.key.clone()));
        let page = match mark.filter(|_| still) {
            Some(synced) => self.page(tx, &plan, paging, from, synced, clients).await?,
            None => {
                let (paging, synced, clients) = self.evaluate(tx, head, clients, &cursor).await?;
                self.page(tx, &plan, paging, from, synced, clients).await?
            }
        };
        Ok(Some(page))
    }

    /// Evaluates the subscriptions and diffs the view for a paging resumed
    /// at `cursor` (see the module header): the new paging record, each
    /// subscription's rows the client holds from the paging up to the
    /// cursor, and the view's clients.
    async fn evaluate<T: LazyTx>(
        &self,
        tx: &T,
        head: &mut ViewHead,
        mut clients: Clients,
        cursor: &RowsCursor,
    ) -> Result<(LazyPaging, Vec<u64>, Clients)> {
        let (at, next) = (cursor.at, head.version + 1);
        let mut selected: BTreeMap<(usize, String), i64> = BTreeMap::new();
        let mut chosen = Vec::with_capacity(self.subscriptions.len());
        for subscription in self.subscriptions {
            let rows = evaluate(tx, self.app, self.tables, self.user_id, subscription).await?;
            let rows = rows.unwrap_or_default();
            chosen.push(
                rows.into_iter()
                    .map(|(table, key, version)| {
                        selected.insert((table, key.clone()), version);
                        (table, key)
                    })
                    .collect::<Vec<_>>(),
            );
        }
        // Which rows of the cursor's table come after it, in the order the
        // pages read.
        let shape = &self.tables[cursor.table];
        let in_table: Vec<&String> = selected
            .keys()
            .filter(|(table, _)| *table == cursor.table)
            .map(|(_, key)| key)
            .collect();
        let typed = in_table
            .iter()
            .map(|key| {
                let json: Vec<Json> = serde_json::from_str(key).unwrap_or_default();
                let row: Row = shape.key.iter().map(|(n, _)| n.clone()).zip(json).collect();
                typed_key(shape, &row)
            })
            .collect::<Result<Vec<_>>>()?;
        let flags = tx.keys_after(shape.index, &typed, &cursor.key).await?;
        let after_in_table: BTreeSet<&String> = in_table
            .into_iter()
            .zip(flags)
            .filter_map(|(key, after)| after.then_some(key))
            .collect();
        let after_cursor = |(table, key): &(usize, String)| {
            *table > cursor.table || (*table == cursor.table && after_in_table.contains(key))
        };

        let index_of = |name: &str| self.tables.iter().position(|t| t.name == name);
        let mut held: BTreeMap<(usize, String), HeldRow> = BTreeMap::new();
        let mut changed = Vec::new();
        for row in tx.held(self.group_id).await? {
            match index_of(&row.table) {
                Some(table) => {
                    held.insert((table, row.key.clone()), row);
                }
                None if row.present => changed.push(HeldRow {
                    patch_version: next,
                    present: false,
                    ..row
                }),
                None => {}
            }
        }
        for (position, &row_version) in &selected {
            let entry = held.get(position);
            let unsent = entry.is_none_or(|e| !e.present && e.patch_version < at);
            // The pages from the cursor send it, and record it then.
            if unsent && after_cursor(position) {
                continue;
            }
            if entry.is_none_or(|e| !e.present || e.row_version != row_version) {
                changed.push(HeldRow {
                    table: self.tables[position.0].name.clone(),
                    key: position.1.clone(),
                    row_version,
                    patch_version: next,
                    present: true,
                });
            }
        }
        for (position, row) in &held {
            if row.present && !selected.contains_key(position) {
                changed.push(HeldRow {
                    patch_version: next,
                    present: false,
                    ..row.clone()
                });
            }
        }
        let mut clients_moved = false;
        for (client, last) in tx.changed_clients(self.group_id, -1).await? {
            if clients.get(&client).is_none_or(|(told, _)| *told != last) {
                clients.insert(client, (last, next));
                clients_moved = true;
            }
        }
        let subscriptions = self.recorded_subscriptions();
        if !changed.is_empty() || clients_moved {
            head.version = next;
            head.clients = serde_json::to_string(&clients).expect("clients serialize");
        }
        if !changed.is_empty() || clients_moved || subscriptions != head.subscriptions {
            tx.record(self.group_id, head, &subscriptions, &changed)
                .await?;
        }

        // Held from this paging up to the cursor: recorded at `at` or
        // before, and not moved now.
        let moved: BTreeSet<(&str, &str)> = changed
            .iter()
            .map(|row| (row.table.as_str(), row.key.as_str()))
            .collect();
        let synced: Vec<u64> = chosen
            .iter()
            .map(|rows| {
                rows.iter()
                    .filter(|position| {
                        !after_cursor(position)
                            && held.get(*position).is_some_and(|row| {
                                row.present
                                    && row.patch_version <= at
                                    && !moved.contains(&(row.table.as_str(), row.key.as_str()))
                            })
                    })
                    .count() as u64
            })
            .collect();
        let paging = LazyPaging {
            rows_at: at,
            view_version: head.version,
            seen: self.server_version,
            requested: self.requested.to_owned(),
            totals: chosen.iter().map(|rows| rows.len() as u64).collect(),
            marks: vec![(cursor.table, cursor.text.clone(), synced.clone())],
        };
        Ok((paging, synced, clients))
    }

    /// One page from `from` (`None`: the first): the next rows of each
    /// table's part, recorded and sent; the paging record gets the next
    /// page's start.
    async fn page<T: LazyTx>(
        &self,
        tx: &T,
        plan: &[Option<TablePart>],
        mut paging: LazyPaging,
        from: Option<(usize, Vec<Value>)>,
        mut synced: Vec<u64>,
        clients: Clients,
    ) -> Result<PullResponse> {
        let size = self.page_size.max(1);
        let first = from.is_none();
        let (mut table, mut after) = match from {
            Some((table, key)) => (table, Some(key)),
            None => (0, None),
        };
        let mut sent: Vec<(usize, Row, i64)> = Vec::with_capacity(size);
        let mut full = false;
        while table < self.tables.len() && !full {
            if let Some(part) = &plan[table] {
                // One row more than there is room for says whether more follow.
                let room = size - sent.len();
                let rows = tx
                    .part_rows(PartRows {
                        query: part.query,
                        part: part.part,
                        params: &part.params,
                        after: after.as_deref(),
                        limit: room + 1,
                    })
                    .await?;
                full = rows.len() > room;
                sent.extend(
                    rows.into_iter()
                        .take(room)
                        .map(|(row, version)| (table, row, version)),
                );
            }
            table += 1;
            after = None;
        }
        let mut recorded = Vec::with_capacity(sent.len());
        for (table, row, row_version) in &sent {
            let shape = &self.tables[*table];
            recorded.push(HeldRow {
                table: shape.name.clone(),
                key: key_text(shape, row)?,
                row_version: *row_version,
                patch_version: paging.rows_at,
                present: true,
            });
            if let Some(part) = &plan[*table] {
                synced[part.subscription] += 1;
            }
        }
        tx.record_sent(self.group_id, &recorded).await?;
        let end = match sent.last() {
            Some((table, row, _)) if full => Some((*table, typed_key(&self.tables[*table], row)?)),
            _ => None,
        };
        let cursor = end
            .as_ref()
            .map(|(table, key)| RowsCursor::render(paging.rows_at, *table, key));
        if let Some((table, key)) = &end {
            let text = key_json(key);
            paging.marks.retain(|(t, k, _)| (t, k) != (table, &text));
            paging.marks.push((*table, text, synced.clone()));
        }
        if end.is_some() || !first {
            let record = serde_json::to_string(&paging).expect("paging serializes");
            tx.record_paging(self.group_id, &record).await?;
        }
        let mut patch = Vec::with_capacity(sent.len() + 1);
        if first {
            patch.push(PatchOp::Clear);
        }
        patch.extend(sent.into_iter().map(|(table, row, _)| {
            let shape = &self.tables[table];
            PatchOp::Put {
                table: shape.name.clone(),
                row: shape.row(row),
            }
        }));
        let progress = self
            .subscriptions
            .iter()
            .enumerate()
            .map(|(i, subscription)| {
                let total = paging.totals[i];
                bind(self.app, subscription).map(|_| (synced[i].min(total), total))
            })
            .collect();
        // An evaluation recorded changes after `rows_at` (a write during the
        // paging): the last page tells the client to pull them at once.
        let newer = cursor.is_none() && paging.view_version > paging.rows_at;
        let answer = Answer {
            base: None,
            at: paging.rows_at,
            patch,
            cursor,
            newer,
            clients,
            progress,
        };
        Ok(answer.response(self.subscriptions))
    }
}
