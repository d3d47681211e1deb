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
//! Paging: the patches after the cookie go in (table, key text) order, at
//! most a page at a time, under a cursor cookie
//! `view:<base cookie or ->:<view version>:<table index>:<JSON key array>`;
//! the last page's cookie is that view version. The pull that evaluates
//! records, beside the view, where each later page ends and each
//! subscription's progress after it ([`Paging`]); a resumed page is then
//! read straight from the view rows after the cursor, without evaluating,
//! as long as nothing it rests on moved: the view (no pull recorded since)
//! and the synced tables the subscriptions read (no write since the
//! evaluation's snapshot). Otherwise the page evaluates again, so a row
//! that changed or stopped being visible meanwhile is recorded at a later
//! view version and comes (or leaves) in the next pull: a page never
//! carries a value newer than the evaluation that admitted it, and the
//! pull after the last page, from that view version, brings the rest.

use super::cursor::key_value;
use super::lazy::{Lazy, LazyTx};
use super::pull::{reset, PullTx, TableShape};
use super::push::{foreign, Who};
use super::versions::Versions;
use super::{Result, StoreError};
use ferrydb_protocol::sql::tokenize;
use ferrydb_protocol::values::bind_query_args;
use ferrydb_protocol::{
    AppDefinition, Cookie, PatchOp, PullOk, PullRequest, PullResponse, Query, Row, Subscription,
    SubscriptionError, SubscriptionPhase, SubscriptionState, Value, USER_ID_PARAM,
};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use std::collections::{BTreeMap, BTreeSet, HashMap};
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

/// A question for [`ViewTx::patched`]: one table's part of a page.
#[derive(Clone, Copy, Debug)]
pub struct PatchedRows<'a> {
    pub group_id: &'a str,
    pub table: &'a str,
    pub after: &'a str,
    /// Patched after this view version (`0`: any).
    pub base: i64,
    pub at: i64,
    pub present_only: bool,
    pub limit: usize,
}

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

    /// Up to `limit` of the group's view rows of table `table` with a key
    /// after `after` (`""`: from the first) in key text order (bytewise,
    /// as Rust compares strings), patched in `(base, at]`, and present if
    /// `present_only`.
    fn patched(&self, rows: PatchedRows<'_>) -> impl Future<Output = Result<Vec<HeldRow>>>;

    /// The paging record of the group's last paged pull (JSON), if any.
    fn paging(&self, group_id: &str) -> impl Future<Output = Result<Option<String>>>;

    /// Replaces the group's paging record.
    fn record_paging(&self, group_id: &str, paging: &str) -> impl Future<Output = Result<()>>;

    /// The synced tables (by name) with a row written at a server version
    /// in `(from, to]`.
    fn touched(&self, from: i64, to: i64) -> impl Future<Output = Result<BTreeSet<String>>>;

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

    /// The group's floor: the oldest cookie it is served from (`0` if it
    /// never forgot a row).
    fn floor(&self, group_id: &str) -> impl Future<Output = Result<i64>>;

    /// Forgets the rows that left the group at view version `through` or
    /// before (absent, patched then), and makes `through` its floor.
    fn prune(&self, group_id: &str, through: i64) -> impl Future<Output = Result<()>>;

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

/// Answers a v2 pull of `user_id` (see the module header).
pub async fn pull_subscribed<T: LazyTx>(
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
    let (server_version, foreign_client) = tx.state(who).await?;
    if foreign_client {
        return Err(foreign(who));
    }
    let mut head = tx.open_view(who.group_id, user_id).await?;
    if head.user_id != user_id {
        return Err(foreign(who));
    }
    let subscriptions = &distinct(app, request.subscriptions.as_deref().unwrap_or_default())[..];
    let requested = serde_json::to_string(subscriptions).expect("subscriptions serialize");
    let mut clients: BTreeMap<String, (u64, i64)> = serde_json::from_str(&head.clients)
        .map_err(|e| StoreError::Internal(format!("a view's clients are not JSON: {e}")))?;
    // An initial sync, and its pages, read straight from the tables.
    let lazy = Lazy {
        app,
        tables,
        user_id,
        group_id: who.group_id,
        server_version,
        page_size,
        subscriptions,
        requested: &requested,
        schema_version,
    };
    if let Some(response) = lazy
        .answer(tx, &mut head, &clients, &request.cookie)
        .await?
    {
        return Ok(response);
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
    if below_floor(tx, who.group_id, base, head.version).await? {
        return Ok(reset(schema_version));
    }
    if let Some(cursor) = &resume {
        let resumed = Resumed {
            app,
            tables,
            user_id,
            group_id: who.group_id,
            view_version: head.version,
            cursor,
            requested: &requested,
            server_version,
        };
        if let Some(page) = resumed.page(tx).await? {
            let progress = subscriptions
                .iter()
                .zip(page.totals.iter().zip(&page.synced))
                .map(|(subscription, (&total, &synced))| {
                    bind(app, subscription).map(|_| (synced, total))
                })
                .collect();
            let answer = Answer {
                base,
                at: cursor.at,
                patch: page.patch,
                cursor: page.end.map(|(table, key)| {
                    ViewCursor {
                        table,
                        key,
                        ..cursor.clone()
                    }
                    .render()
                }),
                newer: false,
                clients,
                progress,
            };
            return Ok(answer.response(subscriptions));
        }
    }

    // 1. What the subscriptions select now.
    let mut selected: BTreeMap<(usize, String), i64> = BTreeMap::new();
    let mut evaluated = Vec::with_capacity(subscriptions.len());
    for subscription in subscriptions {
        let rows = evaluate(tx, app, tables, user_id, subscription).await?;
        evaluated.push(rows.map(|rows| {
            rows.into_iter()
                .map(|(table, key, row_version)| {
                    selected.insert((table, key.clone()), row_version);
                    (table, key)
                })
                .collect::<Vec<_>>()
        }));
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
    if let Some(Cookie::Integer(cookie)) = request.cookie {
        forget_received(tx, who.group_id, cookie, &mut held).await?;
    }
    let next = head.version + 1;
    let changed = diff(tables, &selected, &held, unserved, next);
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
        .filter(|(_, e)| e.is_ok())
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
    // Merged, not inserted one by one: `changed` comes mostly in key order
    // (an initial sync's every row), which a bulk build takes in one pass.
    let mut moved: BTreeMap<(usize, String), HeldRow> = changed
        .into_iter()
        .filter_map(|row| index_of(&row.table).map(|table| ((table, row.key.clone()), row)))
        .collect();
    held.append(&mut moved);

    // 3. The patches after the cookie, in pages: this one is sent.
    let at = resume.as_ref().map_or(head.version, |cursor| cursor.at);
    let after = resume.as_ref().map(|c| (c.table, c.key.clone()));
    let pending: Vec<(&(usize, String), &HeldRow)> = held
        .iter()
        .filter(|(position, row)| {
            after.as_ref().is_none_or(|a| *position > a)
                && row.patch_version <= at
                && match base {
                    Some(base) => row.patch_version > base,
                    None => row.present,
                }
        })
        .collect();
    let size = page_size.max(1);
    let pages: Vec<&[(&(usize, String), &HeldRow)]> = pending.chunks(size).collect();
    let page = pages.first().copied().unwrap_or_default();
    let end = (pages.len() > 1).then(|| page[page.len() - 1].0.clone());
    let mut patch = Vec::with_capacity(page.len() + 1);
    if base.is_none() && resume.is_none() {
        patch.push(PatchOp::Clear);
    }
    patch.extend(patch_of(tx, tables, page).await?);

    // 4. Per subscription: how much of it the client holds once each page
    // is applied (a row it held before, or one this paging sends, up to
    // that page), and its total.
    // Hashed, not searched: an initial sync looks up every row.
    let page_of: HashMap<&(usize, String), (usize, bool)> = pending
        .iter()
        .enumerate()
        .map(|(i, (position, row))| (*position, (i / size, row.present)))
        .collect();
    let progress: Vec<Result<(Vec<u64>, u64), SubscriptionError>> = evaluated
        .iter()
        .map(|evaluated| {
            let rows = evaluated.as_ref().map_err(Clone::clone)?;
            let mut held_before = 0;
            let mut per_page = vec![0u64; pages.len().max(1)];
            for position in rows {
                if let Some(&(page, present)) = page_of.get(position) {
                    per_page[page] += present as u64;
                    continue;
                }
                // Not sent from here on: held if the client got it before
                // the cookie or on an earlier page of this paging.
                let Some(row) = held.get(position).filter(|row| row.present) else {
                    continue;
                };
                let sent_before = base.is_some_and(|b| row.patch_version <= b);
                let in_paging =
                    row.patch_version <= at && base.is_none_or(|b| row.patch_version > b);
                if sent_before || in_paging {
                    held_before += 1;
                }
            }
            let synced = per_page
                .iter()
                .scan(held_before, |synced, n| {
                    *synced += n;
                    Some(*synced)
                })
                .collect();
            Ok((synced, rows.len() as u64))
        })
        .collect();
    if pages.len() > 1 {
        let paging = Paging {
            base,
            at,
            view_version: head.version,
            seen: server_version,
            requested,
            totals: progress
                .iter()
                .map(|p| p.as_ref().map_or(0, |(_, total)| *total))
                .collect(),
            pages: pages
                .windows(2)
                .enumerate()
                .map(|(i, pair)| PageMark {
                    after: pair[0][pair[0].len() - 1].0.clone(),
                    rows: pair[1].len(),
                    synced: progress
                        .iter()
                        .map(|p| p.as_ref().map_or(0, |(synced, _)| synced[i + 1]))
                        .collect(),
                })
                .collect(),
        };
        let paging = serde_json::to_string(&paging).expect("paging serializes");
        tx.record_paging(who.group_id, &paging).await?;
    }
    let answer = Answer {
        base,
        at,
        patch,
        cursor: end.map(|(table, key)| {
            ViewCursor {
                base,
                at,
                table,
                key,
            }
            .render()
        }),
        newer: false,
        clients,
        progress: progress
            .into_iter()
            .map(|p| p.map(|(synced, total)| (synced[0], total)))
            .collect(),
    };
    Ok(answer.response(subscriptions))
}

/// Whether a pull from `base` (a cookie, or a paging's base) is older than
/// the group's floor: the `del`s it needs may be forgotten, so the client
/// starts over (`resetReplica`). A caught-up cookie never is.
async fn below_floor<T: ViewTx>(
    tx: &T,
    group_id: &str,
    base: Option<i64>,
    version: i64,
) -> Result<bool> {
    match base {
        Some(base) if base < version => Ok(base < tx.floor(group_id).await?),
        _ => Ok(false),
    }
}

/// A pull from integer cookie `cookie` shows that the group applied every
/// patch up to it (a client sends only a cookie it applied): the rows that
/// left it at or before `cookie` had their `del` delivered, and are
/// forgotten (from the view and from `held`), with `cookie` as the group's
/// floor. A lost response is pulled again from the same cookie, never an
/// older one; an older one (a replica restored from before) is below the
/// floor. Written only when there is something to forget, so that a pull
/// that changes nothing stays a read.
async fn forget_received<T: ViewTx>(
    tx: &T,
    group_id: &str,
    cookie: i64,
    held: &mut BTreeMap<(usize, String), HeldRow>,
) -> Result<()> {
    let received = |row: &HeldRow| !row.present && row.patch_version <= cookie;
    if held.values().any(received) {
        tx.prune(group_id, cookie).await?;
        held.retain(|_, row| !received(row));
    }
    Ok(())
}

/// What a pull sends, before it is put in the wire's terms.
pub(super) struct Answer {
    pub base: Option<i64>,
    pub at: i64,
    pub patch: Vec<PatchOp>,
    /// The cursor of the next page, if more follow.
    pub cursor: Option<String>,
    /// The view holds changes after `at` that this answer does not carry
    /// (recorded while a lazy paging evaluated): the client pulls again at
    /// once, from `at`, rather than wait for a poke that routing, seeing
    /// them recorded, never sends.
    pub newer: bool,
    /// The view's clients: their last `lastMutationID` told and when.
    pub clients: BTreeMap<String, (u64, i64)>,
    /// Per requested subscription: rows the client holds once this page is
    /// applied and its total, or why it syncs nothing.
    pub progress: Vec<Result<(u64, u64), SubscriptionError>>,
}

impl Answer {
    pub fn response(self, subscriptions: &[Subscription]) -> PullResponse {
        let Answer {
            base,
            at,
            patch,
            cursor,
            newer,
            clients,
            progress,
        } = self;
        let more = cursor.is_some() || newer;
        let cookie = cursor.map_or(Cookie::Integer(at), Cookie::Text);
        let last_mutation_id_changes = clients
            .into_iter()
            .filter(|(_, (_, patched))| *patched <= at && base.is_none_or(|b| *patched > b))
            .map(|(client, (last, _))| (client, last))
            .collect();
        let states = subscriptions
            .iter()
            .zip(progress)
            .map(|(subscription, progress)| {
                let (synced, total, error) = match progress {
                    Ok((synced, total)) => (synced, total, None),
                    Err(error) => (0, 0, Some(error)),
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
        PullResponse::Ok(PullOk {
            cookie,
            more,
            last_mutation_id_changes,
            patch,
            subscriptions: states,
        })
    }
}

/// What the pull that evaluated recorded for the later pages of a paging
/// (`view:` cursors from `base` to `at`), so that they need not evaluate.
#[derive(Debug, Serialize, Deserialize)]
struct Paging {
    base: Option<i64>,
    at: i64,
    /// The view version it was recorded at: a later one means another pull
    /// recorded since, and the view rows may have moved.
    view_version: i64,
    /// The server version of the evaluation's snapshot: a write after it to
    /// a table the subscriptions read may change what they select.
    seen: i64,
    /// The pull's subscriptions (JSON), which the progress counts.
    requested: String,
    /// Per requested subscription, the rows it selects.
    totals: Vec<u64>,
    /// The pages after the evaluating one, in order.
    pages: Vec<PageMark>,
}

#[derive(Debug, Serialize, Deserialize)]
struct PageMark {
    /// The position (table index, key) the page starts after: the cursor
    /// of the page before it.
    after: (usize, String),
    rows: usize,
    /// Per requested subscription: its rows the client holds once the page
    /// is applied.
    synced: Vec<u64>,
}

/// A page of a paging read from its [`Paging`] record, if it still holds.
struct Resumed<'a> {
    app: &'a AppDefinition,
    tables: &'a [TableShape],
    user_id: &'a str,
    group_id: &'a str,
    view_version: i64,
    cursor: &'a ViewCursor,
    requested: &'a str,
    server_version: i64,
}

struct ResumedPage {
    patch: Vec<PatchOp>,
    end: Option<(usize, String)>,
    totals: Vec<u64>,
    synced: Vec<u64>,
}

impl Resumed<'_> {
    /// The page after the cursor, or `None` if the page must evaluate: no
    /// record of this paging (another paging, other subscriptions, a cursor
    /// that is no page boundary), another pull recorded since, or a write
    /// since the evaluation to a table the subscriptions read.
    async fn page<T: ViewTx>(&self, tx: &T) -> Result<Option<ResumedPage>> {
        let cursor = self.cursor;
        let Some(text) = tx.paging(self.group_id).await? else {
            return Ok(None);
        };
        // A record of another kind (a lazy paging's) is not this paging's.
        let Ok(paging) = serde_json::from_str::<Paging>(&text) else {
            return Ok(None);
        };
        let position = (cursor.table, cursor.key.clone());
        let Some(index) = paging.pages.iter().position(|p| p.after == position) else {
            return Ok(None);
        };
        if (paging.base, paging.at) != (cursor.base, cursor.at)
            || paging.view_version != self.view_version
            || paging.requested != self.requested
        {
            return Ok(None);
        }
        if self.server_version > paging.seen {
            let view = Some((self.user_id.to_owned(), self.requested.to_owned()));
            let reads = group_reads(self.app, self.user_id, self.group_id, view)?;
            let touched = tx.touched(paging.seen, self.server_version).await?;
            if !touched.is_disjoint(&reads) {
                return Ok(None);
            }
        }
        let mark = &paging.pages[index];
        let mut page: Vec<((usize, String), HeldRow)> = Vec::with_capacity(mark.rows);
        for table in cursor.table..self.tables.len() {
            if page.len() == mark.rows {
                break;
            }
            let question = PatchedRows {
                group_id: self.group_id,
                table: &self.tables[table].name,
                after: if table == cursor.table {
                    &cursor.key
                } else {
                    ""
                },
                base: cursor.base.unwrap_or(0),
                at: cursor.at,
                present_only: cursor.base.is_none(),
                limit: mark.rows - page.len(),
            };
            for row in tx.patched(question).await? {
                page.push(((table, row.key.clone()), row));
            }
        }
        let end = paging.pages.get(index + 1).map(|next| next.after.clone());
        // The view rows are those the marks were made from (no pull
        // recorded since), so this holds; were the stores to order keys
        // otherwise than the marks, the page evaluates rather than guess.
        if page.len() != mark.rows
            || end
                .as_ref()
                .is_some_and(|end| &page[page.len() - 1].0 != end)
        {
            return Ok(None);
        }
        let refs: Vec<(&(usize, String), &HeldRow)> = page.iter().map(|(p, r)| (p, r)).collect();
        Ok(Some(ResumedPage {
            patch: patch_of(tx, self.tables, &refs).await?,
            end,
            totals: paging.totals,
            synced: mark.synced.clone(),
        }))
    }
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

/// The requested subscriptions, each distinct `(query, arguments)` once, in
/// the order first requested: arguments compare as the query binds them
/// (`{"n": 2}` and `{"n": 2.0}` are one), or as JSON when they do not bind.
/// A repeat would be evaluated, recorded and counted twice for one set of
/// rows; the client never sends one, and the answer has one entry for it.
fn distinct(app: &AppDefinition, requested: &[Subscription]) -> Vec<Subscription> {
    let mut seen: Vec<(&str, Result<Vec<Value>, &Json>)> = Vec::with_capacity(requested.len());
    let mut kept = Vec::with_capacity(requested.len());
    for subscription in requested {
        let identity = (
            subscription.query.as_str(),
            bind(app, subscription)
                .map(|(_, args)| args)
                .map_err(|_| &subscription.args),
        );
        if !seen.contains(&identity) {
            seen.push(identity);
            kept.push(subscription.clone());
        }
    }
    kept
}

/// The app's query a subscription names and its arguments bound, or why it
/// selects nothing (found without reading the store).
pub(super) fn bind(
    app: &AppDefinition,
    subscription: &Subscription,
) -> Result<(usize, Vec<Value>), SubscriptionError> {
    let Some(query_index) = app
        .queries
        .iter()
        .position(|q| q.name == subscription.query)
    else {
        return Err(SubscriptionError {
            code: "unknown_query".into(),
            message: format!("this server defines no query `{}`", subscription.query),
        });
    };
    let query = &app.queries[query_index];
    match bind_query_args(query, &subscription.args) {
        Ok(args) => Ok((query_index, args)),
        Err(message) => Err(SubscriptionError {
            code: "bad_arguments".into(),
            message: format!("bad arguments for query `{}`: {message}", query.name),
        }),
    }
}

/// The rows one subscription selects for `user_id`: (table index, key
/// text, row version) per row of each part over a table `tables` holds, or
/// why it selects nothing.
pub(super) async fn evaluate<T: ViewTx>(
    tx: &T,
    app: &AppDefinition,
    tables: &[TableShape],
    user_id: &str,
    subscription: &Subscription,
) -> Result<Result<Vec<(usize, String, i64)>, SubscriptionError>> {
    let (query_index, args) = match bind(app, subscription) {
        Ok(bound) => bound,
        Err(error) => return Ok(Err(error)),
    };
    let query = &app.queries[query_index];
    let mut rows = Vec::new();
    for (part_index, part) in query.parts.iter().enumerate() {
        let Some(table) = tables.iter().position(|t| t.name == part.table) else {
            continue;
        };
        let params = part_params(query, &args, &part.statement().params, user_id);
        for (key, row_version) in tx.select(query_index, part_index, &params).await? {
            rows.push((table, key_text(&tables[table], &key)?, row_version));
        }
    }
    Ok(Ok(rows))
}

/// The values for a part's statement parameters `names`, in order: the
/// subscription's bound arguments by name, and `:user_id` from the token,
/// never from the client.
pub(super) fn part_params(
    query: &Query,
    args: &[Value],
    names: &[String],
    user_id: &str,
) -> Vec<Value> {
    names
        .iter()
        .map(
            |name| match query.params.iter().position(|p| &p.name == name) {
                Some(i) => args[i].clone(),
                None if name == USER_ID_PARAM => Value::Text(user_id.to_owned()),
                None => unreachable!("validated: every parameter is declared or :user_id"),
            },
        )
        .collect()
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
