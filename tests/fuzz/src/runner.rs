//! Runs one fuzz target: generates each case from its seed, checks it, and
//! reports. Seeds are 1..=n, mixed with the target's name so targets do not
//! see the same random streams; a case fails by panicking (the decoder did,
//! or a property did not hold), and the failure prints the seed that
//! replays it and the input it was given.
//!
//! - `FERRYDB_FUZZ_CASES=n`: n cases of every target (instead of each
//!   target's default);
//! - `FERRYDB_FUZZ_SEED=s`: only case s of every target.

use crate::Rng;
use std::fmt::Debug;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::time::Instant;

/// How much of a failing input a report shows.
const SHOWN_CHARS: usize = 2_000;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a number"))
    })
}

/// FNV-1a of the target's name: its seeds' salt.
fn salt(target: &str) -> u64 {
    target.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Runs `default_cases` cases of `target` (or what the environment asks for):
/// `generate` makes a case's input from its random stream, `check` feeds it
/// to the decoder and asserts what must hold. Prints the number of cases.
pub fn run<I: Debug>(
    target: &str,
    default_cases: u64,
    generate: impl Fn(&mut Rng) -> I,
    check: impl Fn(&I),
) {
    let seeds = match env_u64("FERRYDB_FUZZ_SEED") {
        Some(seed) => seed..=seed,
        None => 1..=env_u64("FERRYDB_FUZZ_CASES").unwrap_or(default_cases),
    };
    let started = Instant::now();
    let mut cases = 0;
    for seed in seeds {
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let input = generate(&mut Rng::new(seed ^ salt(target)));
            let shown = catch_unwind(AssertUnwindSafe(|| check(&input)));
            shown.map_err(|panic| (panic, input))
        }));
        match outcome {
            Ok(Ok(())) => cases += 1,
            Ok(Err((panic, input))) => {
                let mut shown = format!("{input:?}");
                if shown.len() > SHOWN_CHARS {
                    let cut = (0..=SHOWN_CHARS)
                        .rev()
                        .find(|&i| shown.is_char_boundary(i))
                        .unwrap_or(0);
                    shown.truncate(cut);
                    shown.push('…');
                }
                eprintln!("fuzz {target}: case {seed} failed on input {shown}");
                eprintln!("fuzz {target}: replay with FERRYDB_FUZZ_SEED={seed}");
                resume_unwind(panic);
            }
            Err(panic) => {
                eprintln!("fuzz {target}: generating case {seed} failed; replay with FERRYDB_FUZZ_SEED={seed}");
                resume_unwind(panic);
            }
        }
    }
    eprintln!(
        "fuzz {target}: {} cases in {:.1?}",
        thousands(cases),
        started.elapsed()
    );
}

/// `10240` as `10,240`, so counts read at a glance in test output.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_print_with_thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(10_240), "10,240");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn targets_draw_different_streams_from_the_same_seed() {
        let first = |target| Rng::new(1 ^ salt(target)).next_u64();
        assert_ne!(first("frame"), first("manifest"));
    }
}
