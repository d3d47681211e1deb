//! Byte-level damage: what a torn write, a flipped bit, a cut-off body or a
//! hostile sender does to a valid encoding. Binary formats get it directly;
//! JSON gets it on its text, where it mostly breaks the syntax or the UTF-8.

use crate::Rng;

/// Integers on the boundaries decoders get wrong: zero and one, sign bits,
/// the maxima of each width, the page sizes the storage format allows.
pub const EDGE_INTEGERS: [u64; 22] = [
    0,
    1,
    2,
    0x7f,
    0x80,
    0xff,
    0x100,
    511,
    512,
    4096,
    0x7fff,
    0xffff,
    0x1_0000,
    0x1_0001,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0000,
    1 << 53,
    i64::MAX as u64,
    1 << 63,
    u64::MAX,
];

/// Bytes that mean something to a parser: JSON punctuation, UTF-8 lead bytes
/// of 2, 3 and 4-byte sequences and of surrogates, a lone continuation byte.
const SPECIAL_BYTES: [u8; 14] = [
    0, 0xff, 0x7f, 0x80, b'"', b'\\', b'{', b'}', b'[', b']', b':', 0xc3, 0xed, 0xf0,
];

/// Bytes as a fuzz case's input: its `Debug` shows text as text (and other
/// bytes escaped), so a failure report can be read.
#[derive(Clone, PartialEq, Eq)]
pub struct Bytes(pub Vec<u8>);

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} bytes: b\"{}\"", self.0.len(), self.0.escape_ascii())
    }
}

/// Random bytes, usually short.
pub fn random(rng: &mut Rng) -> Vec<u8> {
    let len = rng.len(4096);
    rng.bytes(len)
}

/// `data` with one to four kinds of damage stacked; `others` are other valid
/// inputs of the same format to splice pieces from (may be empty).
pub fn mutate(rng: &mut Rng, data: &[u8], others: &[&[u8]]) -> Vec<u8> {
    let mut out = data.to_vec();
    for _ in 0..1 + rng.below(4) {
        mutate_once(rng, &mut out, others);
    }
    out
}

fn mutate_once(rng: &mut Rng, out: &mut Vec<u8>, others: &[&[u8]]) {
    let len = out.len();
    let at = rng.below(len + 1);
    match rng.below(10) {
        0 if len > 0 => out[at.min(len - 1)] ^= 1 << rng.below(8),
        1 if len > 0 => out[at.min(len - 1)] = *rng.pick(&SPECIAL_BYTES),
        2 => overwrite_integer(rng, out),
        3 => out.truncate(at),
        4 => {
            let end = at + rng.below(len - at + 1);
            out.drain(at..end);
        }
        5 => {
            let n = rng.len(64);
            let junk = rng.bytes(n);
            out.splice(at..at, junk);
        }
        6 => {
            // A piece of the input again, elsewhere (a repeated field, a
            // frame written twice).
            let start = rng.below(len + 1);
            let end = start + rng.below(len - start + 1);
            let piece = out[start..end].to_vec();
            let to = rng.below(len + 1);
            out.splice(to..to, piece);
        }
        7 if !others.is_empty() => {
            // This input's head on another's tail.
            let other = *rng.pick(others);
            let from = rng.below(other.len() + 1);
            out.truncate(at);
            out.extend_from_slice(&other[from..]);
        }
        8 => {
            let n = rng.len(64);
            out.extend(rng.bytes(n));
        }
        _ => {
            let end = at + rng.below((len - at).min(16) + 1);
            for b in &mut out[at..end] {
                *b = rng.next_u64() as u8;
            }
        }
    }
}

/// An edge integer (or one off it), little- or big-endian, 1 to 8 bytes
/// wide, over bytes of the input: a length, count or size field, damaged.
fn overwrite_integer(rng: &mut Rng, out: &mut [u8]) {
    let width = *rng.pick(&[1, 2, 4, 4, 8]);
    if out.len() < width {
        return;
    }
    let value = rng
        .pick(&EDGE_INTEGERS)
        .wrapping_add(*rng.pick(&[0, 0, 1, u64::MAX]));
    let at = rng.below(out.len() - width + 1);
    let bytes = if rng.chance(80) {
        value.to_le_bytes()
    } else {
        value.to_be_bytes()
    };
    let bytes = if rng.chance(80) {
        &bytes[..width]
    } else {
        &bytes[8 - width..]
    };
    out[at..at + width].copy_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn damage_is_seeded_and_usually_changes_the_input() {
        let data = b"{\"type\":\"ok\",\"cookie\":57}".to_vec();
        let mut changed = 0;
        for seed in 0..200 {
            let once = mutate(&mut Rng::new(seed), &data, &[b"[1,2]"]);
            assert_eq!(once, mutate(&mut Rng::new(seed), &data, &[b"[1,2]"]));
            changed += usize::from(once != data);
        }
        assert!(changed > 180, "only {changed} of 200 changed");
    }
}
