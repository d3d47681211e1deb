//! JSON-level damage: a valid message with a field of another type, a
//! number too big for its field, a string in some other script, a missing or
//! an unknown field, a value nested hundreds deep, a piece of another
//! message. Most such messages still parse as JSON, so they reach the
//! decoders' own checks rather than stopping at the parser.

use crate::{bytes, Rng};
use serde_json::{json, Map, Value as Json};

/// Numbers at the edges of what fields hold: negative, fractional, beyond
/// u32, beyond JavaScript's safe integers, beyond u64 (a float then).
fn edge_number(rng: &mut Rng) -> Json {
    match rng.below(14) {
        0 => json!(-1),
        1 => json!(0),
        2 => json!(1.5),
        3 => json!(-0.0),
        4 => json!(u32::MAX),
        5 => json!(u64::from(u32::MAX) + 1),
        6 => json!((1u64 << 53) + 1),
        7 => json!(i64::MAX),
        8 => json!(i64::MIN),
        9 => json!(u64::MAX),
        10 => json!(1e300),
        11 => json!(-1e-300),
        12 => json!(f64::MIN_POSITIVE),
        _ => json!(rng.next_u64() as i64),
    }
}

/// Strings that stress whatever a string becomes: empty, control
/// characters, multi-byte and right-to-left text, quotes and SQL, names
/// reserved by ferrydb and SQLite, cursors that look almost right, a long one.
fn edge_string(rng: &mut Rng) -> String {
    let fixed = [
        "",
        " ",
        "\u{0}",
        "\u{7f}\u{1b}[0m",
        "é",
        "日本語",
        "💥",
        "\u{202e}evil",
        "\u{fffd}\u{feff}",
        "a\"b\\c\n",
        "'; DROP TABLE todos; --",
        ":user_id",
        "?1",
        "_ferry_outbox",
        "sqlite_master",
        "ok",
        "put",
        "full:1:0:[\"a\"]",
        "full:-1:0:[]",
        "full:9223372036854775807:99999999999999999999:[1]",
        "full:1:1:[\"a\",\"b\",\"c\"]",
        "full:1:0:[{\"a\":1}]",
        "full:1:0:[null]",
        "full:1:0:",
        "full::::",
    ];
    match rng.below(fixed.len() + 2) {
        i if i < fixed.len() => fixed[i].to_owned(),
        i if i == fixed.len() => "x".repeat(rng.len(100_000)),
        _ => (0..rng.len(16))
            .map(|_| char::from_u32(rng.below(0x11_0000) as u32).unwrap_or('\u{fffd}'))
            .collect(),
    }
}

/// A random JSON value up to `depth` levels deep.
pub fn random(rng: &mut Rng, depth: usize) -> Json {
    let kinds = if depth == 0 { 4 } else { 6 };
    match rng.below(kinds) {
        0 => Json::Null,
        1 => Json::Bool(rng.chance(50)),
        2 => edge_number(rng),
        3 => Json::String(edge_string(rng)),
        4 => Json::Array((0..rng.len(6)).map(|_| random(rng, depth - 1)).collect()),
        _ => Json::Object(
            (0..rng.len(6))
                .map(|_| (edge_string(rng), random(rng, depth - 1)))
                .collect(),
        ),
    }
}

/// `value` with one to three damaged nodes; `others` are other valid
/// messages to take pieces from (may be empty).
pub fn mutate(rng: &mut Rng, value: &Json, others: &[Json]) -> Json {
    let mut out = value.clone();
    for _ in 0..1 + rng.below(3) {
        let donor = if !others.is_empty() && rng.chance(50) {
            rng.pick(others).clone()
        } else {
            out.clone()
        };
        let n = rng.below(count_nodes(&out));
        edit(rng, node_mut(&mut out, n), &donor);
    }
    out
}

/// `value` with one to three of its values changed but its shape kept: a
/// string becomes another string (often one from elsewhere in the message),
/// a number another number, a boolean flips, an array element repeats or
/// goes. Such messages get past a strict decoder's shape checks and reach the
/// validation behind it.
pub fn mutate_values(rng: &mut Rng, value: &Json) -> Json {
    let strings = strings_in(value);
    let mut out = value.clone();
    for _ in 0..1 + rng.below(3) {
        let n = rng.below(count_nodes(&out));
        match node_mut(&mut out, n) {
            Json::String(s) => {
                *s = match rng.below(4) {
                    0 => edge_string(rng),
                    1 => {
                        let mut nudged = Json::String(std::mem::take(s));
                        nudge(rng, &mut nudged);
                        nudged.as_str().unwrap_or_default().to_owned()
                    }
                    _ if strings.is_empty() => edge_string(rng),
                    _ => rng.pick(&strings).clone(),
                }
            }
            node @ Json::Number(_) => *node = edge_number(rng),
            Json::Bool(b) => *b = !*b,
            Json::Array(items) if !items.is_empty() => {
                let i = rng.below(items.len());
                if rng.chance(50) {
                    items.push(items[i].clone());
                } else {
                    items.remove(i);
                }
            }
            _ => {}
        }
    }
    out
}

fn strings_in(value: &Json) -> Vec<String> {
    match value {
        Json::String(s) => vec![s.clone()],
        Json::Array(items) => items.iter().flat_map(strings_in).collect(),
        Json::Object(map) => map.values().flat_map(strings_in).collect(),
        _ => vec![],
    }
}

fn count_nodes(value: &Json) -> usize {
    1 + match value {
        Json::Array(items) => items.iter().map(count_nodes).sum(),
        Json::Object(map) => map.values().map(count_nodes).sum(),
        _ => 0,
    }
}

/// The `n`-th node in pre-order (the root is 0).
fn node_mut(value: &mut Json, n: usize) -> &mut Json {
    fn walk<'a>(value: &'a mut Json, n: usize, seen: &mut usize) -> Option<&'a mut Json> {
        if *seen == n {
            return Some(value);
        }
        *seen += 1;
        let children: Box<dyn Iterator<Item = &'a mut Json>> = match value {
            Json::Array(items) => Box::new(items.iter_mut()),
            Json::Object(map) => Box::new(map.values_mut()),
            _ => return None,
        };
        for child in children {
            if let Some(found) = walk(child, n, seen) {
                return Some(found);
            }
        }
        None
    }
    let mut seen = 0;
    // `n` is below the node count, so the walk finds it.
    walk(value, n, &mut seen).expect("node index within the tree")
}

/// One damaging edit of `node`; `donor` supplies pieces of a valid message.
fn edit(rng: &mut Rng, node: &mut Json, donor: &Json) {
    match rng.below(10) {
        0 => *node = random(rng, 2),
        1 => *node = edge_number(rng),
        2 => *node = Json::String(edge_string(rng)),
        3 => {
            // Around the parser's depth limit (128) and beyond it.
            let depth = *rng.pick(&[2, 20, 126, 127, 128, 129, 300]);
            for _ in 0..depth {
                let inner = node.take();
                *node = if rng.chance(50) {
                    Json::Array(vec![inner])
                } else {
                    Json::Object(Map::from_iter([("type".to_owned(), inner)]))
                };
            }
        }
        4 => match node {
            Json::Object(map) if !map.is_empty() => {
                let key = map.keys().nth(rng.below(map.len())).cloned();
                map.remove(&key.unwrap_or_default());
            }
            Json::Array(items) if !items.is_empty() => {
                items.remove(rng.below(items.len()));
            }
            _ => *node = Json::Null,
        },
        5 => match node {
            Json::Object(map) => {
                let key = rng
                    .pick(&["type", "cookie", "id", "extra", "", "__proto__", "ID"])
                    .to_string();
                map.insert(key, random(rng, 1));
            }
            Json::Array(items) => {
                let copy = match items.first() {
                    Some(item) if rng.chance(70) => item.clone(),
                    _ => random(rng, 2),
                };
                let times = *rng.pick(&[1, 2, 100]);
                items.extend(std::iter::repeat_n(copy, times));
            }
            _ => *node = random(rng, 1),
        },
        6 => {
            let n = rng.below(count_nodes(donor));
            *node = node_mut(&mut donor.clone(), n).take();
        }
        7 => {
            if let Json::Object(map) = node {
                if let Some(key) = map.keys().nth(rng.below(map.len().max(1))).cloned() {
                    let value = map.remove(&key).unwrap_or_default();
                    let renamed = match rng.below(3) {
                        0 => key.to_uppercase(),
                        1 => format!("{key}_"),
                        _ => key.chars().take(key.chars().count() / 2).collect(),
                    };
                    map.insert(renamed, value);
                }
            }
        }
        8 => nudge(rng, node),
        _ => {
            // The same content in the neighbouring type.
            *node = match node.take() {
                Json::String(s) => s.parse::<i64>().map(Json::from).unwrap_or(Json::Bool(true)),
                Json::Number(n) => Json::String(n.to_string()),
                Json::Bool(b) => Json::String(b.to_string()),
                Json::Null => Json::String("null".into()),
                Json::Array(items) => Json::Object(
                    items
                        .into_iter()
                        .enumerate()
                        .map(|(i, v)| (i.to_string(), v))
                        .collect(),
                ),
                Json::Object(map) => Json::Array(map.into_iter().map(|(_, v)| v).collect()),
            };
        }
    }
}

/// A small change of a scalar: a string cut or grown, a number off by one or
/// negated, a boolean flipped.
fn nudge(rng: &mut Rng, node: &mut Json) {
    match node {
        Json::String(s) => {
            let cut = s.char_indices().nth(rng.below(s.chars().count() + 1));
            match (rng.below(3), cut) {
                (0, Some((at, _))) => s.truncate(at),
                (1, _) => s.push(*rng.pick(&['é', '\u{0}', ':', '"', '💥'])),
                _ => *s = s.repeat(2),
            }
        }
        Json::Number(n) => {
            *node = match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => json!(if rng.chance(50) {
                    i.wrapping_add(1)
                } else {
                    i.wrapping_neg()
                }),
                (None, Some(f)) => json!(-f),
                _ => Json::Null,
            }
        }
        Json::Bool(b) => *b = !*b,
        _ => *node = edge_number(rng),
    }
}

/// Damage that only text can carry: lone UTF-16 surrogates, numbers beyond
/// f64, duplicated keys, a byte-order mark, trailing garbage.
pub fn damage_text(rng: &mut Rng, text: &mut Vec<u8>) {
    let quotes: Vec<usize> = (0..text.len()).filter(|&i| text[i] == b'"').collect();
    let at = if quotes.is_empty() {
        rng.below(text.len() + 1)
    } else {
        *rng.pick(&quotes) + 1
    };
    let insert: &[u8] = match rng.below(8) {
        0 => b"\\ud800",
        1 => b"\\udc00\\u0000",
        2 => b"\"type\":\"ok\",\"type\":\"clear\",\"",
        3 => b"1e99999",
        4 => b"-",
        5 => b"\xef\xbb\xbf",
        6 => b"99999999999999999999999999999999999999",
        _ => b",]}",
    };
    text.splice(
        at.min(text.len())..at.min(text.len()),
        insert.iter().copied(),
    );
}

/// One input for a decoder of JSON text: a seed damaged at the tree level
/// (most cases), at the byte level, or both; random JSON; or random bytes.
pub fn input(rng: &mut Rng, seeds: &[Json]) -> Vec<u8> {
    let seed = rng.pick(seeds);
    let text = |value: &Json| serde_json::to_vec(value).expect("JSON values serialize");
    match rng.below(20) {
        0 => bytes::random(rng),
        1 | 2 => text(&random(rng, 4)),
        3..=12 => text(&mutate(rng, seed, seeds)),
        13..=15 => {
            let others: Vec<Vec<u8>> = seeds.iter().map(text).collect();
            let others: Vec<&[u8]> = others.iter().map(Vec::as_slice).collect();
            bytes::mutate(rng, &text(seed), &others)
        }
        _ => {
            let mut out = text(&mutate(rng, seed, seeds));
            damage_text(rng, &mut out);
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn most_damaged_messages_are_still_json() {
        let seed = json!({"type": "ok", "cookie": 57, "patch": [{"type": "clear"}]});
        let parsed = (0..500)
            .filter(|&s| {
                let text = input(&mut Rng::new(s), std::slice::from_ref(&seed));
                serde_json::from_slice::<Json>(&text).is_ok()
            })
            .count();
        assert!((250..500).contains(&parsed), "{parsed} of 500 parse");
    }

    #[test]
    fn every_node_can_be_reached() {
        let mut value = json!({"a": [1, {"b": 2}], "c": null});
        assert_eq!(count_nodes(&value), 6);
        *node_mut(&mut value, 4) = json!("x");
        assert_eq!(value, json!({"a": [1, {"b": "x"}], "c": null}));
    }
}
