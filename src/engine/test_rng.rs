//! A tiny deterministic generator for the engine's randomized tests: failures
//! print their seed, and `FERRYDB_SEED=<n>` replays one.

pub struct Rng(u64);

impl Rng {
    /// Seeded from `FERRYDB_SEED` if set, else `default`. Returns the seed too,
    /// for failure messages.
    pub fn from_env(default: u64) -> (Rng, u64) {
        let seed = std::env::var("FERRYDB_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default);
        (Rng(seed.max(1)), seed)
    }

    /// A number in `0..n` (xorshift64).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}
