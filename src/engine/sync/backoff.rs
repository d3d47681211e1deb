//! Retry timing: exponential backoff with jitter, from a seeded generator the
//! host injects (a seed from `crypto.getRandomValues` in the browser, a fixed
//! one in tests), so a simulation replays exactly.

/// SplitMix64: tiny, fast and good enough for jitter and simulations; not for
/// anything secret.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`0` when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

/// Consecutive failures → delay before the next attempt: doubling from
/// `base` up to `max`, with "equal jitter" (half fixed, half random) so many
/// clients that failed together do not retry together.
#[derive(Clone, Debug)]
pub struct Backoff {
    failures: u32,
    base_ms: u64,
    max_ms: u64,
}

impl Backoff {
    pub fn new(base_ms: u64, max_ms: u64) -> Self {
        Backoff {
            failures: 0,
            base_ms,
            max_ms,
        }
    }

    pub fn next_delay(&mut self, rng: &mut SplitMix64) -> u64 {
        let exp = self.base_ms.saturating_mul(1u64 << self.failures.min(30));
        let cap = exp.min(self.max_ms);
        self.failures = self.failures.saturating_add(1);
        cap / 2 + rng.below(cap / 2 + 1)
    }

    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_with_jitter_in_the_upper_half() {
        let mut rng = SplitMix64::new(7);
        let mut backoff = Backoff::new(100, 1_000);
        for cap in [100, 200, 400, 800, 1_000, 1_000] {
            let d = backoff.next_delay(&mut rng);
            assert!(
                (cap / 2..=cap).contains(&d),
                "{d} not in [{}, {cap}]",
                cap / 2
            );
        }
        backoff.reset();
        assert!(backoff.next_delay(&mut rng) <= 100);
    }

    #[test]
    fn the_same_seed_gives_the_same_numbers() {
        let a: Vec<u64> = (0..5)
            .scan(SplitMix64::new(1), |r, _| Some(r.next_u64()))
            .collect();
        let b: Vec<u64> = (0..5)
            .scan(SplitMix64::new(1), |r, _| Some(r.next_u64()))
            .collect();
        assert_eq!(a, b);
    }
}
