//! Poke routing, protocol v2: which of the client groups listening on this
//! server instance a commit concerns, computed once per poke for all of
//! them, inside one store transaction (`docs/subscriptions.md`, choice 2).
//!
//! A group is concerned exactly when its next pull would change its view
//! because of what was written after version `since` (the poke before):
//!
//! - **(held)** it holds a row written since, at an older row version: the
//!   pull sends the row again (`put`) or removes it (`del`, it left);
//! - **(entered)** a row written since is selected by one of its parts (the
//!   part's condition run on the written rows only, with the group's
//!   arguments and `:user_id`) and the group does not hold it at that
//!   version: the pull sends it (`put`);
//! - **(moved)** one of its parts reads a written table in its condition
//!   (a membership row changed, say): rows of that part's table may move in
//!   or out without being written, so every part over that table is
//!   evaluated in full and compared with what the group holds of it;
//! - **(told)** one of its clients had a mutation processed since: the pull
//!   tells it its `lastMutationID`.
//!
//! So a group is poked only when the pull it causes has something in it, and
//! a group that pulled after the commit already (its view holds the rows at
//! their new versions) is not poked again. A group without a view (it never
//! pulled) or owned by another user than its listener is never concerned.

use super::pull::TableShape;
use super::view::{key_text, part_params, Selected, ViewHead, ViewTx};
use super::{Result, StoreError, Versions};
use ferrydb_protocol::sql::{tokenize, TokenKind};
use ferrydb_protocol::values::bind_query_args;
use ferrydb_protocol::{AppDefinition, Subscription, Value};
use futures_util::future::try_join_all;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

/// One listening realtime channel: its user and its client group.
pub type Listener = (String, String);

/// A group's view entry of one row: (group, key, row version, present).
pub type Holder = (String, String, i64, bool);

/// What routing asks of a store, inside one read transaction (one snapshot
/// on Postgres), besides a pull's questions.
pub trait RouteTx: ViewTx {
    /// The heads of the views of those of `groups` that have one.
    fn views(&self, groups: &[String]) -> impl Future<Output = Result<Vec<(String, ViewHead)>>>;

    /// The keys of table `table` (the app's index) written at a version
    /// after `since`, deleted ones too, with their row version now.
    fn written(&self, table: usize, since: i64) -> impl Future<Output = Result<Vec<Selected>>>;

    /// Every client with a mutation processed after version `since`:
    /// (group, client, its `lastMutationID`).
    fn processed(&self, since: i64) -> impl Future<Output = Result<Vec<(String, String, u64)>>>;

    /// Every group's view entry of these keys (JSON arrays) of `table`.
    fn holders(&self, table: &str, keys: &[String]) -> impl Future<Output = Result<Vec<Holder>>>;

    /// What [`ViewTx::select`] selects among the rows written after
    /// `since` only, for each of several argument lists at once: each row
    /// with the index of the list that selects it.
    fn select_written(
        &self,
        query: usize,
        part: usize,
        params: &[&[Value]],
        since: i64,
    ) -> impl Future<Output = Result<Vec<(usize, Selected)>>>;
}

/// What decides whether a group entered rows: its selections (`runs`
/// indexes, `true` if in full) and the tables they evaluate in full.
struct Check<'a> {
    group: &'a String,
    moved: BTreeSet<usize>,
    uses: Vec<(bool, usize)>,
}

/// One part of a group's subscriptions, bound to its arguments.
struct BoundPart {
    query: usize,
    part: usize,
    /// The table it selects (the app's index).
    table: usize,
    params: Vec<Value>,
    /// The synced tables its condition names (its subqueries read).
    reads: BTreeSet<usize>,
}

/// The listeners of `listeners` whose groups the commits after version
/// `since` concern (see the module header).
pub async fn route<T: RouteTx>(
    tx: &T,
    versions: &Versions,
    since: i64,
    listeners: &[Listener],
) -> Result<BTreeSet<Listener>> {
    let served = versions.current();
    let (app, tables) = (&served.app, &served.shapes[..]);

    // What was written: per table, key → row version now.
    let written: Vec<BTreeMap<String, i64>> =
        try_join_all((0..tables.len()).map(|table| tx.written(table, since)))
            .await?
            .into_iter()
            .zip(tables)
            .map(|(rows, shape)| {
                rows.into_iter()
                    .map(|(key, version)| Ok((key_text(shape, &key)?, version)))
                    .collect::<Result<_>>()
            })
            .collect::<Result<_>>()?;
    let written_tables: BTreeSet<usize> = (0..tables.len())
        .filter(|&t| !written[t].is_empty())
        .collect();

    // The listeners' groups, each with its owner's bound parts.
    let ids: Vec<String> = listeners
        .iter()
        .map(|(_, group)| group.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let shapes = part_shapes(app, tables);
    let mut groups: BTreeMap<String, (ViewHead, Vec<BoundPart>)> = BTreeMap::new();
    for (group, head) in tx.views(&ids).await? {
        let parts = bound_parts(app, &shapes, &head.user_id, &head.subscriptions)?;
        groups.insert(group, (head, parts));
    }
    let mut concerned: BTreeSet<String> = BTreeSet::new();

    // (held): one lookup per written key, whoever holds it.
    let holders: Vec<Vec<Holder>> = try_join_all(written_tables.iter().map(|&t| {
        let keys: Vec<String> = written[t].keys().cloned().collect();
        async move { tx.holders(&tables[t].name, &keys).await }
    }))
    .await?;
    let mut held_now: BTreeSet<(usize, String, String)> = BTreeSet::new();
    for (&table, entries) in written_tables.iter().zip(holders) {
        for (group, key, row_version, present) in entries {
            let now = written[table][&key];
            if present && row_version != now {
                concerned.insert(group);
            } else if present {
                held_now.insert((table, group, key));
            }
        }
    }

    // (told): a client's `lastMutationID` moved past what the view told it.
    for (group, client, last) in tx.processed(since).await? {
        let Some((head, _)) = groups.get(&group) else {
            continue;
        };
        let told: BTreeMap<String, (u64, i64)> = serde_json::from_str(&head.clients)
            .map_err(|e| StoreError::Internal(format!("a view's clients are not JSON: {e}")))?;
        if told.get(&client).is_none_or(|(told, _)| *told != last) {
            concerned.insert(group);
        }
    }

    // (entered) and (moved): every selection the remaining groups need, each
    // distinct one run once, all at once (pipelined on Postgres).
    let mut selections: BTreeMap<(bool, usize, usize, String), usize> = BTreeMap::new();
    let mut runs: Vec<(bool, &BoundPart)> = Vec::new();
    let mut checks: Vec<Check> = Vec::new();
    for (group, (_, parts)) in &groups {
        if concerned.contains(group) {
            continue;
        }
        // Tables whose rows may have moved without being written.
        let moved: BTreeSet<usize> = parts
            .iter()
            .filter(|p| !p.reads.is_disjoint(&written_tables))
            .map(|p| p.table)
            .collect();
        let mut uses = Vec::new();
        for part in parts {
            let full = moved.contains(&part.table);
            if !full && !written_tables.contains(&part.table) {
                continue;
            }
            let id = (full, part.query, part.part, format!("{:?}", part.params));
            let next = runs.len();
            let run = *selections.entry(id).or_insert(next);
            if run == next {
                runs.push((full, part));
            }
            uses.push((full, run));
        }
        if !uses.is_empty() {
            checks.push(Check { group, moved, uses });
        }
    }
    // Full evaluations one by one; selections of the written rows one
    // statement per part, for all the argument lists that need it.
    let mut batches: BTreeMap<(usize, usize), Vec<usize>> = BTreeMap::new();
    for (run, (full, part)) in runs.iter().enumerate() {
        if !full {
            batches
                .entry((part.query, part.part))
                .or_default()
                .push(run);
        }
    }
    let full_runs: Vec<usize> = (0..runs.len()).filter(|&run| runs[run].0).collect();
    let (full_rows, batch_rows) = futures_util::future::try_join(
        try_join_all(full_runs.iter().map(|&run| {
            let part = runs[run].1;
            tx.select(part.query, part.part, &part.params)
        })),
        try_join_all(batches.iter().map(|(&(query, part), batch)| {
            let params: Vec<&[Value]> = batch.iter().map(|&run| &runs[run].1.params[..]).collect();
            async move { tx.select_written(query, part, &params, since).await }
        })),
    )
    .await?;
    let mut selected: Vec<Vec<Selected>> = vec![Vec::new(); runs.len()];
    for (run, rows) in full_runs.into_iter().zip(full_rows) {
        selected[run] = rows;
    }
    for (batch, rows) in batches.values().zip(batch_rows) {
        for (i, row) in rows {
            selected[batch[i]].push(row);
        }
    }
    let selected: Vec<Vec<(String, i64)>> = runs
        .iter()
        .zip(selected)
        .map(|((_, part), rows)| {
            rows.into_iter()
                .map(|(key, version)| Ok((key_text(&tables[part.table], &key)?, version)))
                .collect::<Result<_>>()
        })
        .collect::<Result<_>>()?;
    let full: Vec<&Check> = checks.iter().filter(|c| !c.moved.is_empty()).collect();
    let held = try_join_all(full.iter().map(|c| tx.held(c.group))).await?;
    let held: BTreeMap<&String, _> = full.iter().map(|c| c.group).zip(held).collect();
    for Check { group, moved, uses } in &checks {
        let mut entered = false;
        // What the group's parts over the moved tables select, in full.
        let mut selects: BTreeMap<(usize, &str), i64> = BTreeMap::new();
        for &(full, run) in uses {
            let table = runs[run].1.table;
            for (key, version) in &selected[run] {
                if full {
                    selects.insert((table, key), *version);
                } else if !held_now.contains(&(table, (*group).clone(), key.clone())) {
                    entered = true;
                }
            }
        }
        if !entered && !moved.is_empty() {
            let index_of = |name: &str| tables.iter().position(|t| t.name == name);
            let mut holds: BTreeMap<(usize, &str), i64> = BTreeMap::new();
            for row in held[group].iter().filter(|row| row.present) {
                if let Some(table) = index_of(&row.table).filter(|t| moved.contains(t)) {
                    holds.insert((table, &row.key), row.row_version);
                }
            }
            entered = selects != holds;
        }
        if entered {
            concerned.insert((*group).clone());
        }
    }

    Ok(listeners
        .iter()
        .filter(|(user, group)| {
            concerned.contains(group)
                && groups
                    .get(group)
                    .is_some_and(|(head, _)| &head.user_id == user)
        })
        .cloned()
        .collect())
}

/// What routing needs of one part of a query, read once per poke: the
/// table it selects (the app's index), its placeholders' names in order,
/// and the synced tables its condition reads.
struct PartShape {
    table: usize,
    params: Vec<String>,
    reads: BTreeSet<usize>,
}

/// Per query of the app and part, its shape (`None`: a table this server
/// does not serve).
fn part_shapes(app: &AppDefinition, tables: &[TableShape]) -> Vec<Vec<Option<PartShape>>> {
    let index_of = |name: &str| tables.iter().position(|t| t.name == name);
    app.queries
        .iter()
        .map(|query| {
            query
                .parts
                .iter()
                .map(|part| {
                    let table = index_of(&part.table)?;
                    let tokens = tokenize(&part.condition).expect("validated query");
                    // Any mention of a table counts (a column named like one
                    // too: a part evaluated in full when it need not be costs
                    // time, never a missed poke), except the part's own table
                    // qualifying a column (`items.list_id`): that is the row
                    // itself, not other rows. A subquery over the table names
                    // it in its `FROM` without a dot, so it counts.
                    let reads = tokens
                        .iter()
                        .enumerate()
                        .filter_map(|(i, token)| {
                            let read = index_of(&token.kind.identifier()?)?;
                            let qualifies = read == table
                                && tokens
                                    .get(i + 1)
                                    .is_some_and(|next| next.kind == TokenKind::Punct('.'));
                            (!qualifies).then_some(read)
                        })
                        .collect();
                    Some(PartShape {
                        table,
                        params: part.statement().params,
                        reads,
                    })
                })
                .collect()
        })
        .collect()
}

/// The parts of the subscriptions a group recorded (`subscriptions`, JSON),
/// bound for its owner `user_id`. Subscriptions to a query this server no
/// longer defines, or whose arguments no longer bind, select nothing.
fn bound_parts(
    app: &AppDefinition,
    shapes: &[Vec<Option<PartShape>>],
    user_id: &str,
    subscriptions: &str,
) -> Result<Vec<BoundPart>> {
    let subscriptions: Vec<Subscription> = serde_json::from_str(subscriptions)
        .map_err(|e| StoreError::Internal(format!("a view's subscriptions are not JSON: {e}")))?;
    let mut parts = Vec::new();
    for subscription in &subscriptions {
        let Some(query_index) = app
            .queries
            .iter()
            .position(|q| q.name == subscription.query)
        else {
            continue;
        };
        let query = &app.queries[query_index];
        let Ok(args) = bind_query_args(query, &subscription.args) else {
            continue;
        };
        for (part_index, shape) in shapes[query_index].iter().enumerate() {
            let Some(shape) = shape else {
                continue;
            };
            let params = part_params(query, &args, &shape.params, user_id);
            parts.push(BoundPart {
                query: query_index,
                part: part_index,
                table: shape.table,
                params,
                reads: shape.reads.clone(),
            });
        }
    }
    Ok(parts)
}
