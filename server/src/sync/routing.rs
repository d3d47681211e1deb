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
//!   arguments and `:user_id`; not run at all for arguments no written row
//!   can match, when the condition requires a column to equal one, as
//!   `list_id = :list_id`) and the group does not hold it at that version:
//!   the pull sends it (`put`);
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

use super::cursor::key_value;
use super::pull::TableShape;
use super::view::{key_text, part_params, Selected, ViewHead, ViewTx};
use super::{Result, StoreError, Versions};
use ferrydb_protocol::sql::{tokenize, Token, TokenKind};
use ferrydb_protocol::values::bind_query_args;
use ferrydb_protocol::{
    AppDefinition, ColumnType, Query, Row, Subscription, Table, Value, USER_ID_PARAM,
};
use futures_util::future::try_join_all;
use serde_json::Value as Json;
use std::collections::btree_map::Entry;
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
    /// A column the condition requires to equal a bound value (see
    /// [`PartShape::equal`]), and that value.
    equal: Option<(String, Value)>,
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
    let written_rows: Vec<Vec<Selected>> =
        try_join_all((0..tables.len()).map(|table| tx.written(table, since))).await?;
    let written: Vec<BTreeMap<String, i64>> = written_rows
        .iter()
        .zip(tables)
        .map(|(rows, shape)| {
            rows.iter()
                .map(|(key, version)| Ok((key_text(shape, key)?, *version)))
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
    let batches = narrowed(tx, tables, &written_rows, &runs, batches).await?;
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
    /// `Some((column, i))` when the condition is `column = :p AND …` (a
    /// top-level conjunct) for a text or integer column of the part's table
    /// and a parameter of the same type, the `i`-th placeholder: the part
    /// selects no row whose column holds another value.
    equal: Option<(String, usize)>,
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
                    let params = part.statement().params;
                    let equal =
                        equality(&tokens, &app.tables[table], query).and_then(|(column, name)| {
                            Some((column, params.iter().position(|p| *p == name)?))
                        });
                    Some(PartShape {
                        table,
                        params,
                        reads,
                        equal,
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
            let equal = shape
                .equal
                .as_ref()
                .map(|(column, i)| (column.clone(), params[*i].clone()));
            parts.push(BoundPart {
                query: query_index,
                part: part_index,
                table: shape.table,
                params,
                reads: shape.reads.clone(),
                equal,
            });
        }
    }
    Ok(parts)
}

/// The batches of selections among the written rows, without the argument
/// lists that cannot select any: those of a part that requires a column to
/// equal a bound value (`list_id = :list_id`) no written row holds. A bulk
/// commit to one list then costs one statement for the groups of that list,
/// not one evaluation per written row and listening group. The written
/// rows' values are read once per table (current values; a deleted row
/// selects nothing anyway). A batch left empty is dropped.
async fn narrowed<T: RouteTx>(
    tx: &T,
    tables: &[TableShape],
    written: &[Vec<Selected>],
    runs: &[(bool, &BoundPart)],
    batches: BTreeMap<(usize, usize), Vec<usize>>,
) -> Result<BTreeMap<(usize, usize), Vec<usize>>> {
    let mut values: BTreeMap<usize, Vec<Row>> = BTreeMap::new();
    let mut kept = BTreeMap::new();
    for (id, batch) in batches {
        let Some((column, _)) = &runs[batch[0]].1.equal else {
            kept.insert(id, batch);
            continue;
        };
        let table = runs[batch[0]].1.table;
        if let Entry::Vacant(slot) = values.entry(table) {
            let shape = &tables[table];
            let keys = written[table]
                .iter()
                .map(|(key, _)| {
                    shape
                        .key
                        .iter()
                        .map(|(name, ty)| key.get(name).and_then(|json| key_value(*ty, json)))
                        .collect::<Option<Vec<Value>>>()
                        .ok_or_else(|| {
                            StoreError::Internal(format!(
                                "a written key of `{}` is not a key",
                                shape.name
                            ))
                        })
                })
                .collect::<Result<Vec<_>>>()?;
            slot.insert(tx.rows(shape.index, &keys).await?);
        }
        // As JSON text: the wire form of the column's type, which the bound
        // value takes below.
        let held: BTreeSet<String> = values[&table]
            .iter()
            .filter_map(|row| Some(row.get(column)?.to_string()))
            .collect();
        let batch: Vec<usize> = batch
            .into_iter()
            .filter(|&run| {
                let value = runs[run].1.equal.as_ref().map(|(_, value)| value);
                match value {
                    Some(Value::Text(text)) => {
                        held.contains(&Json::from(text.as_str()).to_string())
                    }
                    Some(Value::Integer(n)) => held.contains(&Json::from(*n).to_string()),
                    // Compared as SQL would, which this does not mimic.
                    _ => true,
                }
            })
            .collect();
        if !batch.is_empty() {
            kept.insert(id, batch);
        }
    }
    Ok(kept)
}

/// `(column, parameter)` when `tokens` (a part's condition over `table`)
/// are `column = :parameter AND …` at the top level, in either order and
/// in any conjunct, with the column (bare, or qualified by the table's own
/// name) and the parameter (declared by `query`, or `:user_id`) both text
/// or both integer. Only a plain chain of `AND`s at the top level counts:
/// an `OR`, `BETWEEN` or `CASE` there (whose `AND` is no conjunction, or
/// which makes a conjunct optional) finds nothing, and so does a conjunct
/// of any other form, which only costs the narrowing, never a poke.
fn equality(tokens: &[Token], table: &Table, query: &Query) -> Option<(String, String)> {
    let mut conjuncts = vec![Vec::new()];
    let mut depth = 0usize;
    for token in tokens {
        match &token.kind {
            TokenKind::Punct('(') => depth += 1,
            TokenKind::Punct(')') => depth = depth.checked_sub(1)?,
            kind if depth == 0 && kind.is_word("and") => {
                conjuncts.push(Vec::new());
                continue;
            }
            kind if depth == 0 && ["or", "between", "case"].iter().any(|w| kind.is_word(w)) => {
                return None;
            }
            _ => {}
        }
        conjuncts
            .last_mut()
            .expect("one at least")
            .push(&token.kind);
    }
    let column = |kinds: &[&TokenKind]| -> Option<String> {
        let name = match kinds {
            [column] => column.identifier()?,
            [qualifier, TokenKind::Punct('.'), column] if qualifier.identifier()? == table.name => {
                column.identifier()?
            }
            _ => return None,
        };
        Some(name)
    };
    let param_type = |name: &str| match query.params.iter().find(|p| p.name == name) {
        Some(param) => Some(param.ty),
        None => (name == USER_ID_PARAM).then_some(ColumnType::Text),
    };
    conjuncts.iter().find_map(|kinds| {
        let at = kinds.iter().position(|k| **k == TokenKind::Punct('='))?;
        let (left, right) = (&kinds[..at], &kinds[at + 1..]);
        let (name, param) = match (left, right) {
            ([TokenKind::Param(p)], other) | (other, [TokenKind::Param(p)]) => (column(other)?, p),
            _ => return None,
        };
        let column = table.column(&name)?;
        let ty = column.ty;
        (matches!(ty, ColumnType::Text | ColumnType::Integer) && param_type(param) == Some(ty))
            .then(|| (column.name.clone(), param.clone()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The collaborative sample with one more query, `probe(list_id text,
    /// n integer)`, over `items` with `condition` (and conjuncts that use
    /// both parameters, as validation requires, and narrow nothing).
    fn found(condition: &str) -> Option<(String, String)> {
        let condition = &format!("{condition} AND :n = :n AND :list_id = :list_id");
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/collab.json");
        let mut app: Json = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        app["queries"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({
                "name": "probe",
                "params": [{"name": "list_id", "type": "text"}, {"name": "n", "type": "integer"}],
                "parts": [{"table": "items", "where": condition}]
            }));
        let app = AppDefinition::from_json(&app.to_string()).unwrap();
        let query = app.query("probe").unwrap();
        let tokens = tokenize(condition).unwrap();
        equality(&tokens, app.table("items").unwrap(), query)
    }

    fn pair(column: &str, param: &str) -> Option<(String, String)> {
        Some((column.into(), param.into()))
    }

    #[test]
    fn a_top_level_equality_with_a_parameter_narrows() {
        let collab = "list_id = :list_id AND EXISTS (SELECT 1 FROM members m \
                      WHERE m.list_id = items.list_id AND m.user_id = :user_id)";
        assert_eq!(found(collab), pair("list_id", "list_id"));
        assert_eq!(
            found(":list_id = items.list_id AND :n > 0"),
            pair("list_id", "list_id")
        );
        assert_eq!(
            found("(title <> 'x') AND LIST_ID = :list_id"),
            pair("list_id", "list_id")
        );
    }

    #[test]
    fn anything_that_could_select_another_value_does_not() {
        for condition in [
            // Not every conjunct: one branch of an OR, of a CASE.
            "list_id = :list_id OR :n = 1",
            "title = 'x' AND list_id = :list_id OR :n = 1",
            "CASE WHEN :n = 1 THEN 1 ELSE list_id = :list_id AND 1 END",
            "done BETWEEN 0 AND list_id = :list_id",
            // Inside parentheses, negated, other operators, collations.
            "(list_id = :list_id OR :n = 1) AND :n > 0",
            "NOT list_id = :list_id AND :n = 1",
            "list_id <= :list_id AND :n = 1",
            "list_id != :list_id AND :n = 1",
            "list_id = :list_id COLLATE NOCASE AND :n = 1",
            "lower(list_id) = :list_id AND :n = 1",
            // Another table's column, a type that is not the column's.
            "list_id = :n AND :list_id = ''",
            "list_id <> :list_id AND :n = 1",
        ] {
            assert_eq!(found(condition), None, "{condition}");
        }
    }
}
