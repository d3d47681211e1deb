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

impl Patch {
    /// The patch from `old` to `new`, or `None` if they are equal.
    pub fn between(old: &QueryResult, new: &QueryResult) -> Option<Patch> {
        if old.columns != new.columns {
            return Some(Patch {
                columns: Some(new.columns.clone()),
                segments: vec![Segment::Rows(new.rows.clone())],
            });
        }
        let segments = diff(&old.rows, &new.rows);
        let unchanged = matches!(segments.as_slice(), [Segment::Keep { from: 0, count }] if *count == old.rows.len())
            && old.rows.len() == new.rows.len();
        let empty_to_empty = segments.is_empty() && old.rows.is_empty();
        (!unchanged && !empty_to_empty).then_some(Patch {
            columns: None,
            segments,
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

/// Segments that turn `old` into `new`. The common prefix and suffix are found
/// by direct comparison (the usual case: one row changed in a long result);
/// only the middle is matched through a hash map.
fn diff(old: &[Vec<Value>], new: &[Vec<Value>]) -> Vec<Segment> {
    let prefix = old
        .iter()
        .zip(new)
        .take_while(|(a, b)| same_row(a, b))
        .count();
    let suffix = old[prefix..]
        .iter()
        .rev()
        .zip(new[prefix..].iter().rev())
        .take_while(|(a, b)| same_row(a, b))
        .count();
    let old_mid = &old[prefix..old.len() - suffix];
    let new_mid = &new[prefix..new.len() - suffix];

    let mut out = Segments::default();
    out.keep(0, prefix);
    if !old_mid.is_empty() && !new_mid.is_empty() {
        // Old positions by content; duplicates are handed out in order.
        let mut by_content: HashMap<RowKey, Vec<usize>> = HashMap::with_capacity(old_mid.len());
        for (i, row) in old_mid.iter().enumerate().rev() {
            by_content.entry(RowKey(row)).or_default().push(prefix + i);
        }
        for row in new_mid {
            match by_content.get_mut(&RowKey(row)).and_then(Vec::pop) {
                Some(from) => out.keep(from, 1),
                None => out.row(row),
            }
        }
    } else {
        for row in new_mid {
            out.row(row);
        }
    }
    out.keep(old.len() - suffix, suffix);
    out.0
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
