use super::*;
use crate::engine::test_rng::Rng;

fn result(rows: &[&[i64]]) -> QueryResult {
    QueryResult {
        columns: vec!["a".into(), "b".into()],
        rows: rows
            .iter()
            .map(|r| r.iter().map(|v| Value::Integer(*v)).collect())
            .collect(),
    }
}

#[test]
fn equal_results_have_no_patch() {
    let r = result(&[&[1, 2], &[3, 4]]);
    assert_eq!(Patch::between(&r, &r.clone()), None);
    assert_eq!(Patch::between(&result(&[]), &result(&[])), None);
}

#[test]
fn one_changed_row_in_a_long_result_sends_only_that_row() {
    let old = result(
        &(0..10_000)
            .map(|i| vec![i, 0])
            .collect::<Vec<_>>()
            .iter()
            .map(|v| v.as_slice())
            .collect::<Vec<_>>(),
    );
    let mut new = old.clone();
    new.rows[5_000][1] = Value::Integer(1);
    let patch = Patch::between(&old, &new).unwrap();
    assert_eq!(
        patch.segments,
        vec![
            Segment::Keep {
                from: 0,
                count: 5_000
            },
            Segment::Rows(vec![vec![Value::Integer(5_000), Value::Integer(1)]]),
            Segment::Keep {
                from: 5_001,
                count: 4_999
            },
        ]
    );
    assert_eq!(patch.apply(&old), new);
}

#[test]
fn a_moved_row_is_kept_not_resent() {
    let old = result(&[&[1, 0], &[2, 0], &[3, 0]]);
    let new = result(&[&[3, 0], &[1, 0], &[2, 0]]);
    let patch = Patch::between(&old, &new).unwrap();
    assert!(
        patch
            .segments
            .iter()
            .all(|s| matches!(s, Segment::Keep { .. })),
        "{patch:?}"
    );
    assert_eq!(patch.apply(&old), new);
}

#[test]
fn a_column_change_resends_everything() {
    let old = result(&[&[1, 2]]);
    let mut new = old.clone();
    new.columns[1] = "c".into();
    let patch = Patch::between(&old, &new).unwrap();
    assert_eq!(
        patch.columns.as_deref(),
        Some(&["a".to_string(), "c".to_string()][..])
    );
    assert_eq!(patch.apply(&old), new);
}

fn random_row(rng: &mut Rng) -> Vec<Value> {
    // Few distinct values, so duplicate rows and accidental matches are common.
    vec![
        Value::Integer(rng.below(8) as i64),
        match rng.below(4) {
            0 => Value::Null,
            1 => Value::Real(rng.below(3) as f64 / 2.0),
            2 => Value::Text(format!("t{}", rng.below(3))),
            _ => Value::Blob(vec![rng.below(2) as u8]),
        },
    ]
}

#[test]
fn random_edits_patch_to_exactly_the_new_result() {
    let (mut rng, seed) = Rng::from_env(0x5eed);
    let mut old = QueryResult {
        columns: vec!["k".into(), "v".into()],
        rows: vec![],
    };
    for step in 0..3_000 {
        let mut new = old.clone();
        for _ in 0..=rng.below(4) {
            let len = new.rows.len() as u64;
            match rng.below(5) {
                0 => new
                    .rows
                    .insert(rng.below(len + 1) as usize, random_row(&mut rng)),
                1 if len > 0 => {
                    new.rows.remove(rng.below(len) as usize);
                }
                2 if len > 0 => {
                    let i = rng.below(len) as usize;
                    new.rows[i] = random_row(&mut rng);
                }
                3 if len > 1 => {
                    let (i, j) = (rng.below(len) as usize, rng.below(len) as usize);
                    new.rows.swap(i, j);
                }
                _ => {}
            }
        }
        match Patch::between(&old, &new) {
            None => assert_eq!(old, new, "seed {seed} step {step}: no patch for a change"),
            Some(patch) => {
                assert_eq!(patch.apply(&old), new, "seed {seed} step {step}");
                let kept: usize = patch
                    .segments
                    .iter()
                    .map(|s| match s {
                        Segment::Keep { count, .. } => *count,
                        Segment::Rows(_) => 0,
                    })
                    .sum();
                // Every row the old result had is reused: none is sent twice.
                assert_eq!(
                    kept,
                    shared_rows(&old.rows, &new.rows),
                    "seed {seed} step {step}"
                );
            }
        }
        old = new;
    }
}

/// How many rows the two results have in common, counting duplicates.
fn shared_rows(old: &[Vec<Value>], new: &[Vec<Value>]) -> usize {
    let mut counts: HashMap<RowKey, usize> = HashMap::new();
    for row in old {
        *counts.entry(RowKey(row)).or_default() += 1;
    }
    new.iter()
        .filter(|row| match counts.get_mut(&RowKey(row)) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        })
        .count()
}
