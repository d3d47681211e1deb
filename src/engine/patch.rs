//! Row-level patches between two results of one query.
//!
//! A patch describes the new rows as runs copied from the old result plus the
//! rows that are new. A tab that applies it keeps every unchanged row as the
//! same object, even one that moved, so frameworks re-render only what changed.
//!
//! Rows are matched by content, not by primary key: a row whose values changed
//! becomes a new object either way, so a key would change nothing a tab can
//! observe, and content works for every query (joins, aggregates, no key at all).

use super::value::{QueryResult, Value};
use serde::Serialize;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

/// One piece of the new result.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Segment {
    /// `count` rows of the old result, starting at index `from`, unchanged.
    Keep { from: usize, count: usize },
    /// Rows the old result did not have (inserted, or changed).
    Rows(Vec<Vec<Value>>),
}

/// The change from one result of a query to the next.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Patch {
    /// Present when the column list changed; then no old row is reused.
    pub columns: Option<Vec<String>>,
    pub segments: Vec<Segment>,
}

/// A row of a fresh result: equal to the old row at this index, or new values.
#[derive(Clone, Debug, PartialEq)]
pub enum FreshRow {
    Old(usize),
    New(Vec<Value>),
}

/// Lines fresh rows up with the old result as they stream out of SQLite, so a
/// row equal to the old one at the expected place is never copied out of
/// SQLite at all: for a long result with one changed row, that is every row but
/// one. A row inserted or deleted shifts the expected place by one and is
/// followed; anything else becomes a new row, and moves are found afterwards.
pub struct Aligner<'a> {
    old: &'a [Vec<Value>],
    cursor: usize,
    fresh: Vec<FreshRow>,
}

impl<'a> Aligner<'a> {
    pub fn new(old: &'a [Vec<Value>]) -> Self {
        Aligner {
            old,
            cursor: 0,
            fresh: Vec::with_capacity(old.len()),
        }
    }

    /// Adds the next fresh row: `equals` compares it with an old row, `values`
    /// copies it out when it matches none.
    pub fn push<E, V>(&mut self, equals: E, values: V) -> Result<(), crate::Error>
    where
        E: Fn(&[Value]) -> bool,
        V: FnOnce() -> Result<Vec<Value>, crate::Error>,
    {
        let (old, at) = (self.old, self.cursor);
        if at < old.len() && equals(&old[at]) {
            self.fresh.push(FreshRow::Old(at));
            self.cursor += 1;
        } else if at + 1 < old.len() && equals(&old[at + 1]) {
            self.fresh.push(FreshRow::Old(at + 1));
            self.cursor += 2;
        } else {
            self.fresh.push(FreshRow::New(values()?));
        }
        Ok(())
    }

    pub fn finish(self) -> Vec<FreshRow> {
        self.fresh
    }
}

impl Patch {
    /// The patch from `old` to `new`, or `None` if they are equal.
    pub fn between(old: &QueryResult, new: &QueryResult) -> Option<Patch> {
        let mut old = old.clone();
        let same_columns = old.columns == new.columns;
        let mut aligner = Aligner::new(if same_columns { &old.rows } else { &[] });
        for row in &new.rows {
            aligner
                .push(|o| same_row(o, row), || Ok(row.clone()))
                .expect("copying values cannot fail");
        }
        let fresh = aligner.finish();
        Patch::update(&mut old, new.columns.clone(), fresh)
    }

    /// Turns `current` into the fresh result and returns the patch that does the
    /// same for a tab holding `current`, or `None` if nothing changed. Old rows
    /// are moved, not copied.
    pub fn update(
        current: &mut QueryResult,
        columns: Vec<String>,
        mut fresh: Vec<FreshRow>,
    ) -> Option<Patch> {
        let old_len = current.rows.len();
        let in_place = fresh.len() == old_len
            && fresh
                .iter()
                .enumerate()
                .all(|(i, r)| matches!(r, FreshRow::Old(j) if *j == i));
        if in_place && columns == current.columns {
            return None;
        }
        let columns_changed = columns != current.columns;
        if columns_changed {
            current.rows.clear();
        }
        find_moves(&current.rows, &mut fresh);

        let mut segments = Segments::default();
        let mut old_rows: Vec<Option<Vec<Value>>> = std::mem::take(&mut current.rows)
            .into_iter()
            .map(Some)
            .collect();
        let mut rows = Vec::with_capacity(fresh.len());
        for row in fresh {
            match row {
                FreshRow::Old(i) => {
                    segments.keep(i, 1);
                    rows.push(old_rows[i].take().expect("each old row is used once"));
                }
                FreshRow::New(values) => {
                    segments.row(&values);
                    rows.push(values);
                }
            }
        }
        current.rows = rows;
        current.columns = columns;
        Some(Patch {
            columns: columns_changed.then(|| current.columns.clone()),
            segments: segments.0,
        })
    }

    /// Applies the patch to `old`: what a tab does, used here to test the diff.
    pub fn apply(&self, old: &QueryResult) -> QueryResult {
        let mut rows = Vec::new();
        for segment in &self.segments {
            match segment {
                Segment::Keep { from, count } => {
                    rows.extend_from_slice(&old.rows[*from..from + count])
                }
                Segment::Rows(new) => rows.extend_from_slice(new),
            }
        }
        QueryResult {
            columns: self.columns.clone().unwrap_or_else(|| old.columns.clone()),
            rows,
        }
    }
}

/// A row compared by its values; reals compare by bit pattern so NaN matches
/// itself and a row is always equal to its own copy.
struct RowKey<'a>(&'a [Value]);

impl PartialEq for RowKey<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len() && self.0.iter().zip(other.0).all(|(a, b)| same(a, b))
    }
}
impl Eq for RowKey<'_> {}

impl Hash for RowKey<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        for value in self.0 {
            match value {
                Value::Null => 0u8.hash(state),
                Value::Integer(i) => (1u8, i).hash(state),
                Value::Real(r) => (2u8, r.to_bits()).hash(state),
                Value::Text(t) => (3u8, t).hash(state),
                Value::Blob(b) => (4u8, b).hash(state),
            }
        }
    }
}

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Real(x), Value::Real(y)) => x.to_bits() == y.to_bits(),
        _ => a == b,
    }
}

fn same_row(a: &[Value], b: &[Value]) -> bool {
    RowKey(a) == RowKey(b)
}

/// Matches new rows to old rows that the alignment skipped (moved rows, and
/// duplicates), so they too are reused instead of sent again.
fn find_moves(old: &[Vec<Value>], fresh: &mut [FreshRow]) {
    if !fresh.iter().any(|r| matches!(r, FreshRow::New(_))) {
        return;
    }
    let mut used = vec![false; old.len()];
    for row in fresh.iter() {
        if let FreshRow::Old(i) = row {
            used[*i] = true;
        }
    }
    // Unused old positions by content hash; duplicates are handed out in order.
    let mut unused: HashMap<u64, Vec<usize>> = HashMap::new();
    for (i, row) in old.iter().enumerate().rev() {
        if !used[i] {
            unused.entry(content_hash(row)).or_default().push(i);
        }
    }
    if unused.is_empty() {
        return;
    }
    for row in fresh.iter_mut() {
        let FreshRow::New(values) = row else { continue };
        let Some(candidates) = unused.get_mut(&content_hash(values)) else {
            continue;
        };
        // Equal hashes are only candidates: confirm by comparing the values.
        if let Some(at) = candidates.iter().rposition(|&i| same_row(&old[i], values)) {
            *row = FreshRow::Old(candidates.remove(at));
        }
    }
}

fn content_hash(row: &[Value]) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    RowKey(row).hash(&mut hasher);
    hasher.finish()
}

/// Builds the segment list, merging adjacent runs as they are added.
#[derive(Default)]
struct Segments(Vec<Segment>);

impl Segments {
    fn keep(&mut self, from: usize, count: usize) {
        if count == 0 {
            return;
        }
        if let Some(Segment::Keep { from: f, count: c }) = self.0.last_mut() {
            if *f + *c == from {
                *c += count;
                return;
            }
        }
        self.0.push(Segment::Keep { from, count });
    }

    fn row(&mut self, row: &[Value]) {
        if let Some(Segment::Rows(rows)) = self.0.last_mut() {
            rows.push(row.to_vec());
        } else {
            self.0.push(Segment::Rows(vec![row.to_vec()]));
        }
    }
}

#[cfg(test)]
mod tests;
