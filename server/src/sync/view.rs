//! `POST pull`, protocol v2 (`docs/protocol.md` §11): sync by subscription,
//! over the store's **view** of each client group: its view version (the
//! cookie), the subscriptions of its last pull, the last `lastMutationID` of
//! each of its clients it was told, and every row it holds or held, with
//! the row's version and the view version at which it was last patched.
//!
//! A pull evaluates the requested subscriptions for the user (the queries'
//! parts with bound arguments), diffs what they select against the view
//! (rows that entered or whose version moved are present, rows no part
//! selects any more absent, both at view version `v + 1`; nothing changed:
//! the version stays `v`), records the diff, and sends every row patched
//! after the cookie: `put` with its current value, `del` of its key. So a
//! patch is built from the group's own view only, and a `del` names only
//! keys the group held: nothing of a row the user could never read leaves
//! the server. A repeated cookie gets the same patches again.
//!
//! Paging: the patches after the cookie go in (table, key) order, at most a
//! page at a time, under a cursor cookie
//! `view:<base cookie or ->:<view version>:<table index>:<JSON key array>`;
//! the last page's cookie is that view version. Every page evaluates again,
//! so a row that changes while the pages are read is recorded at a later
//! view version and comes in the next pull (a row deleted meanwhile is
//! skipped, its `del` too comes next).

use super::cursor::key_value;
use super::pull::{reset, PullTx, TableShape};
use super::push::{foreign, Who};
use super::versions::Versions;
use super::{Result, StoreError};
use ferrydb_protocol::sql::tokenize;
use ferrydb_protocol::values::bind_query_args;
use ferrydb_protocol::{
    AppDefinition, Cookie, PatchOp, PullOk, PullRequest, PullResponse, Row, Subscription,
    SubscriptionError, SubscriptionPhase, SubscriptionState, Value, USER_ID_PARAM,
};
use serde_json::Value as Json;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

/// A group's view record, as a pull finds it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ViewHead {
    /// The view version: the cookie of a caught-up client of the group.
    pub version: i64,
    /// The user the group belongs to (the first who pulled it).
    pub user_id: String,
    /// Per client of the group: the `lastMutationID` the view last told it,
    /// and the view version at which it did (JSON: `{"c": [8, 3]}`).
    pub clients: String,
    /// The subscriptions of the last pull that recorded (JSON).
    pub subscriptions: String,
}

/// One row a group holds or held.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldRow {
    /// The synced table, by name (stable while table indexes move between
    /// app versions).
    pub table: String,
    /// The key as a JSON array of its values in key order (the one way both
    /// stores and the core write it, so it compares as text).
    pub key: String,
    pub row_version: i64,
    /// The view version at which the row was last sent or removed.
    pub patch_version: i64,
    /// Whether the group holds it now (`false`: its `del` was sent).
    pub present: bool,
}

/// A row a part selects: its key columns (wire form) and its row version.
pub type Selected = (Row, i64);

/// What the core asks of a store inside one v2 pull's transaction. The
/// transaction sees one snapshot of the synced tables, and `open_view`
/// locks the group's view until it ends, so two pulls of one group (on any
/// server instance) never record over each other.
pub trait ViewTx: PullTx {
    /// The group's view, created empty (version 0, owned by `user_id`, no
    /// subscriptions `[]`, no clients `{}`) if it has none, and locked for
    /// this transaction.
    fn open_view(&self, group_id: &str, user_id: &str) -> impl Future<Output = Result<ViewHead>>;

    /// The rows part `part` of the app's query `query` selects, with
    /// `params` bound to its placeholders in order.
    fn select(
        &self,
        query: usize,
        part: usize,
        params: &[Value],
    ) -> impl Future<Output = Result<Vec<Selected>>>;

    /// Every row the group holds or held.
    fn held(&self, group_id: &str) -> impl Future<Output = Result<Vec<HeldRow>>>;

    /// Writes the view: its version, subscriptions (JSON) and clients, and
    /// the rows that changed (inserted, or replacing the entry with their
    /// table and key).
    fn record(
        &self,
        group_id: &str,
        head: &ViewHead,
        subscriptions: &str,
        rows: &[HeldRow],
    ) -> impl Future<Output = Result<()>>;

    /// The current values of table `table`'s rows with these keys (a key
    /// whose row is gone has none), in any order.
    fn rows(&self, table: usize, keys: &[Vec<Value>]) -> impl Future<Output = Result<Vec<Row>>>;
}

/// The cookie of a paged v2 pull in progress.
#[derive(Clone, Debug, PartialEq)]
struct ViewCursor {
    /// The cookie the paging started from (`None`: a full sync).
    base: Option<i64>,
    /// The view version the pages end at.
    at: i64,
    /// Where the last page ended: a table index and a key (JSON array).
    table: usize,
    key: String,
}

impl ViewCursor {
    /// A cursor this server could have written for `tables` and a view at
    /// `version`; `None` otherwise (the client is told to reset).
    fn parse(text: &str, tables: &[TableShape], version: i64) -> Option<ViewCursor> {
        let mut parts = text.splitn(5, ':');
        if parts.next()? != "view" {
            return None;
        }
        let base = match parts.next()? {
            "-" => None,
            n => Some(n.parse::<i64>().ok()?),
        };
        let at: i64 = parts.next()?.parse().ok()?;
        let table: usize = parts.next()?.parse().ok()?;
        let shape = tables.get(table)?;
        let key: Vec<Json> = serde_json::from_str(parts.next()?).ok()?;
        if key.len() != shape.key.len()
            || shape
                .key
                .iter()
                .zip(&key)
                .any(|((_, ty), json)| key_value(*ty, json).is_none())
            || at > version
            || base.is_some_and(|base| base < 0 || base >= at)
        {
            return None;
        }
        Some(ViewCursor {
            base,
            at,
            table,
            key: Json::Array(key).to_string(),
        })
    }

    fn render(&self) -> String {
        let base = self.base.map_or("-".to_owned(), |b| b.to_string());
        format!("view:{base}:{}:{}:{}", self.at, self.table, self.key)
    }
}

/// What one requested subscription came to.
enum Evaluated {
    /// The rows it selects: (table index, key text).
    Rows(Vec<(usize, String)>),
    Error(SubscriptionError),
}

/// Answers a v2 pull of `user_id` (see the module header).
pub async fn pull_subscribed<T: ViewTx>(
    tx: &T,
    versions: &Versions,
    page_size: usize,
    user_id: &str,
    request: &PullRequest,
) -> Result<PullResponse> {
    let served = match versions.serve(request.schema_version) {
        Ok(served) => served,
        Err(m) => return Ok(PullResponse::SchemaMismatch(m)),
    };
    let (tables, schema_version) = (&served.shapes[..], served.app.version);
    let app = &versions.current().app;
    let who = Who {
        user_id,
        client_id: &request.client_id,
        group_id: &request.client_group_id,
    };
    // Checked before the view is opened, which would create it for this
    // user: a group another user pushed from but never pulled stays theirs.
    let (_, foreign_client) = tx.state(who).await?;
    if foreign_client {
        return Err(foreign(who));
    }
    let mut head = tx.open_view(who.group_id, user_id).await?;
    if head.user_id != user_id {
        return Err(foreign(who));
    }
    let resume = match &request.cookie {
        None => None,
        Some(Cookie::Integer(c)) if *c > head.version || *c < 0 => {
            return Ok(reset(schema_version))
        }
        Some(Cookie::Integer(_)) => None,
        Some(Cookie::Text(text)) => match ViewCursor::parse(text, tables, head.version) {
            Some(cursor) => Some(cursor),
            None => return Ok(reset(schema_version)),
        },
    };
    let base = match (&resume, &request.cookie) {
        (Some(cursor), _) => cursor.base,
        (None, Some(Cookie::Integer(c))) => Some(*c),
        (None, _) => None,
    };
    let subscriptions = request.subscriptions.as_deref().unwrap_or_default();

    // 1. What the subscriptions select now.
    let mut selected: BTreeMap<(usize, String), i64> = BTreeMap::new();
    let mut evaluated = Vec::with_capacity(subscriptions.len());
    for subscription in subscriptions {
        let rows = evaluate(tx, app, tables, user_id, subscription).await?;
        evaluated.push(match rows {
            Ok(rows) => {
                let keys = rows
                    .into_iter()
                    .map(|(table, key, row_version)| {
                        selected.insert((table, key.clone()), row_version);
                        (table, key)
                    })
                    .collect();
                Evaluated::Rows(keys)
            }
            Err(error) => Evaluated::Error(error),
        });
    }

    // 2. The diff against the view, recorded at `v + 1` if anything moved.
    let index_of = |name: &str| tables.iter().position(|t| t.name == name);
    let mut held: BTreeMap<(usize, String), HeldRow> = BTreeMap::new();
    let mut unserved = Vec::new();
    for row in tx.held(who.group_id).await? {
        match index_of(&row.table) {
            Some(table) => {
                held.insert((table, row.key.clone()), row);
            }
            // A table this client version does not know: no part selects
            // it, so it leaves (the client never applied it anyway).
            None if row.present => unserved.push(row),
            None => {}
        }
    }
    let next = head.version + 1;
    let changed = diff(tables, &selected, &held, unserved, next);
    let mut clients: BTreeMap<String, (u64, i64)> = serde_json::from_str(&head.clients)
        .map_err(|e| StoreError::Internal(format!("a view's clients are not JSON: {e}")))?;
    let mut clients_moved = false;
    for (client, last) in tx.changed_clients(who.group_id, -1).await? {
        if clients.get(&client).is_none_or(|(told, _)| *told != last) {
            clients.insert(client, (last, next));
            clients_moved = true;
        }
    }
    if !changed.is_empty() || clients_moved {
        head.version = next;
        head.clients = serde_json::to_string(&clients).expect("clients serialize");
    }
    let recorded_subscriptions: Vec<&Subscription> = subscriptions
        .iter()
        .zip(&evaluated)
        .filter(|(_, e)| matches!(e, Evaluated::Rows(_)))
        .map(|(s, _)| s)
        .collect();
    let subscriptions_json =
        serde_json::to_string(&recorded_subscriptions).expect("subscriptions serialize");
    // A pull that changes nothing writes nothing: it stays cheap, and
    // concurrent ones of the same group do not conflict.
    if !changed.is_empty() || clients_moved || subscriptions_json != head.subscriptions {
        tx.record(who.group_id, &head, &subscriptions_json, &changed)
            .await?;
    }
    for row in changed {
        if let Some(table) = index_of(&row.table) {
            held.insert((table, row.key.clone()), row);
        }
    }

    // 3. The patches after the cookie, a page of them.
    let at = resume.as_ref().map_or(head.version, |cursor| cursor.at);
    let after = resume.as_ref().map(|c| (c.table, c.key.clone()));
    let due = |row: &HeldRow| {
        row.patch_version <= at
            && match base {
                Some(base) => row.patch_version > base,
                None => row.present,
            }
    };
    let mut pending = held
        .iter()
        .filter(|(position, row)| after.as_ref().is_none_or(|a| *position > a) && due(row));
    let page: Vec<(&(usize, String), &HeldRow)> = pending.by_ref().take(page_size.max(1)).collect();
    let more = pending.next().is_some();
    let end = if more {
        page.last().map(|(position, _)| (*position).clone())
    } else {
        None
    };
    let mut patch = Vec::with_capacity(page.len() + 1);
    if base.is_none() && resume.is_none() {
        patch.push(PatchOp::Clear);
    }
    patch.extend(patch_of(tx, tables, &page).await?);

    let cookie = match &end {
        Some((table, key)) => Cookie::Text(
            ViewCursor {
                base,
                at,
                table: *table,
                key: key.clone(),
            }
            .render(),
        ),
        None => Cookie::Integer(at),
    };
    let last_mutation_id_changes = clients
        .into_iter()
        .filter(|(_, (_, patched))| *patched <= at && base.is_none_or(|b| *patched > b))
        .map(|(client, (last, _))| (client, last))
        .collect();

    // 4. Per subscription: how much of it the client holds once this
    // response is applied.
    let has = |position: &(usize, String)| {
        held.get(position).is_some_and(|row| {
            let sent_before = base.is_some_and(|b| row.patch_version <= b);
            let sent_now = row.patch_version <= at
                && base.is_none_or(|b| row.patch_version > b)
                && end.as_ref().is_none_or(|end| position <= end);
            row.present && (sent_before || sent_now)
        })
    };
    let states = subscriptions
        .iter()
        .zip(evaluated)
        .map(|(subscription, evaluated)| {
            let (synced, total, error) = match evaluated {
                Evaluated::Rows(rows) => (
                    rows.iter().filter(|position| has(position)).count() as u64,
                    rows.len() as u64,
                    None,
                ),
                Evaluated::Error(error) => (0, 0, Some(error)),
            };
            let state = match (&error, synced == total) {
                (Some(_), _) => SubscriptionPhase::Error,
                (None, true) => SubscriptionPhase::Complete,
                (None, false) => SubscriptionPhase::Pending,
            };
            SubscriptionState {
                query: subscription.query.clone(),
                args: subscription.args.clone(),
                state,
                synced,
                total,
                error,
            }
        })
        .collect();
    Ok(PullResponse::Ok(PullOk {
        cookie,
        last_mutation_id_changes,
        patch,
        more,
        subscriptions: states,
    }))
}

/// What moves at view version `next`: a selected row that is new to the
/// view, was removed, or whose row version changed is present; a present
/// row no part selects any more (gone, no longer visible, subscription
/// dropped), and every present row of a table the client's version does not
/// know (`unserved`), is absent.
fn diff(
    tables: &[TableShape],
    selected: &BTreeMap<(usize, String), i64>,
    held: &BTreeMap<(usize, String), HeldRow>,
    unserved: Vec<HeldRow>,
    next: i64,
) -> Vec<HeldRow> {
    let entered = selected.iter().filter_map(|((table, key), &row_version)| {
        let entry = held.get(&(*table, key.clone()));
        entry
            .is_none_or(|e| !e.present || e.row_version != row_version)
            .then(|| HeldRow {
                table: tables[*table].name.clone(),
                key: key.clone(),
                row_version,
                patch_version: next,
                present: true,
            })
    });
    let left = held
        .iter()
        .filter(|(position, row)| row.present && !selected.contains_key(*position))
        .map(|(_, row)| row.clone())
        .chain(unserved)
        .map(|row| HeldRow {
            patch_version: next,
            present: false,
            ..row
        });
    entered.chain(left).collect()
}

/// The rows one subscription selects for `user_id`: (table index, key
/// text, row version) per row of each part over a table `tables` holds, or
/// why it selects nothing.
async fn evaluate<T: ViewTx>(
    tx: &T,
    app: &AppDefinition,
    tables: &[TableShape],
    user_id: &str,
    subscription: &Subscription,
) -> Result<Result<Vec<(usize, String, i64)>, SubscriptionError>> {
    let Some(query_index) = app
        .queries
        .iter()
        .position(|q| q.name == subscription.query)
    else {
        return Ok(Err(SubscriptionError {
            code: "unknown_query".into(),
            message: format!("this server defines no query `{}`", subscription.query),
        }));
    };
    let query = &app.queries[query_index];
    let args = match bind_query_args(query, &subscription.args) {
        Ok(args) => args,
        Err(message) => {
            return Ok(Err(SubscriptionError {
                code: "bad_arguments".into(),
                message: format!("bad arguments for query `{}`: {message}", query.name),
            }))
        }
    };
    let mut rows = Vec::new();
    for (part_index, part) in query.parts.iter().enumerate() {
        let Some(table) = tables.iter().position(|t| t.name == part.table) else {
            continue;
        };
        let params: Vec<Value> = part
            .statement()
            .params
            .iter()
            .map(
                |name| match query.params.iter().position(|p| &p.name == name) {
                    Some(i) => args[i].clone(),
                    None if name == USER_ID_PARAM => Value::Text(user_id.to_owned()),
                    None => unreachable!("validated: every parameter is declared or :user_id"),
                },
            )
            .collect();
        for (key, row_version) in tx.select(query_index, part_index, &params).await? {
            rows.push((table, key_text(&tables[table], &key)?, row_version));
        }
    }
    Ok(Ok(rows))
}

/// A key row as the view writes it: a JSON array of its values in key order.
pub(super) fn key_text(shape: &TableShape, key: &Row) -> Result<String> {
    let values = shape
        .key
        .iter()
        .map(|(name, _)| key.get(name).cloned())
        .collect::<Option<Vec<Json>>>()
        .ok_or_else(|| {
            StoreError::Internal(format!("a selected `{}` row has no key", shape.name))
        })?;
    Ok(Json::Array(values).to_string())
}

/// The patch for a page of view rows: `put` with the current value of each
/// present row (one deleted since it was recorded is skipped: its `del`
/// comes in the next pull), `del` of each absent one's key, in page order.
async fn patch_of<T: ViewTx>(
    tx: &T,
    tables: &[TableShape],
    page: &[(&(usize, String), &HeldRow)],
) -> Result<Vec<PatchOp>> {
    let key_row = |table: usize, key: &str| -> Result<(Row, Vec<Value>)> {
        let shape = &tables[table];
        let values: Vec<Json> = serde_json::from_str(key).map_err(|e| {
            StoreError::Internal(format!("a view key of `{}` is not JSON: {e}", shape.name))
        })?;
        let typed = shape
            .key
            .iter()
            .zip(&values)
            .map(|((_, ty), json)| key_value(*ty, json))
            .collect::<Option<Vec<Value>>>()
            .filter(|typed| typed.len() == shape.key.len())
            .ok_or_else(|| {
                StoreError::Internal(format!("a view key of `{}` is not a key", shape.name))
            })?;
        let row = shape
            .key
            .iter()
            .map(|(n, _)| n.clone())
            .zip(values)
            .collect();
        Ok((row, typed))
    };
    let mut wanted: BTreeMap<usize, Vec<Vec<Value>>> = BTreeMap::new();
    for ((table, key), row) in page {
        if row.present {
            wanted
                .entry(*table)
                .or_default()
                .push(key_row(*table, key)?.1);
        }
    }
    let mut current: BTreeMap<(usize, String), Row> = BTreeMap::new();
    for (table, keys) in wanted {
        for row in tx.rows(tables[table].index, &keys).await? {
            current.insert(
                (table, key_text(&tables[table], &row)?),
                tables[table].row(row),
            );
        }
    }
    let mut patch = Vec::with_capacity(page.len());
    for ((table, key), row) in page {
        let name = tables[*table].name.clone();
        if row.present {
            if let Some(value) = current.remove(&(*table, key.clone())) {
                patch.push(PatchOp::Put {
                    table: name,
                    row: value,
                });
            }
        } else {
            patch.push(PatchOp::Del {
                table: name,
                key: key_row(*table, key)?.0,
            });
        }
    }
    Ok(patch)
}

/// The synced tables the subscriptions of a group's last pull read: each
/// part's table and every synced table its condition names. Any mention
/// counts (a table after a comma in a `FROM` list too): a poke too many
/// costs an empty pull, one too few a stale screen. `view` is the group's
/// owner and recorded subscriptions (JSON), if it has a view; a group of
/// another user is `Forbidden`.
pub fn group_reads(
    app: &AppDefinition,
    user_id: &str,
    group_id: &str,
    view: Option<(String, String)>,
) -> Result<BTreeSet<String>> {
    let Some((owner, subscriptions)) = view else {
        return Ok(BTreeSet::new());
    };
    if owner != user_id {
        return Err(StoreError::Forbidden(format!(
            "client group `{group_id}` belongs to another user"
        )));
    }
    let subscriptions: Vec<Subscription> = serde_json::from_str(&subscriptions)
        .map_err(|e| StoreError::Internal(format!("a view's subscriptions are not JSON: {e}")))?;
    let mut tables = BTreeSet::new();
    for query in subscriptions.iter().filter_map(|s| app.query(&s.query)) {
        for part in &query.parts {
            tables.insert(part.table.clone());
            let tokens = tokenize(&part.condition).expect("validated query");
            tables.extend(
                tokens
                    .iter()
                    .filter_map(|t| t.kind.identifier())
                    .filter(|name| app.table(name).is_some()),
            );
        }
    }
    Ok(tables)
}
