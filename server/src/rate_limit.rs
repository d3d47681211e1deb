//! A per-user request budget for the sync routes: one token bucket per user,
//! refilled at `per_second` and holding at most `burst` requests. Over budget,
//! a request is answered 429 `rate_limited` (retryable) with `Retry-After`;
//! clients back off as they do for a 5xx. Keyed by the authenticated user, so
//! one user's runaway client cannot starve the others.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// More users than this in the table prunes those whose bucket is full again
/// (they would start full anyway), so the table stays bounded by recent users.
const PRUNE_ABOVE: usize = 100_000;

pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    /// `per_second` = 0 turns limiting off.
    pub fn new(per_second: u32, burst: u32) -> Self {
        RateLimiter {
            per_second: f64::from(per_second),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from `user`'s budget, or says how long until one is there.
    pub fn take(&self, user: &str, now: Instant) -> Result<(), Duration> {
        if self.per_second == 0.0 {
            return Ok(());
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() > PRUNE_ABOVE {
            buckets.retain(|_, b| self.refilled(b, now) < self.burst);
        }
        let bucket = buckets.entry(user.to_owned()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        bucket.tokens = self.refilled(bucket, now);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / self.per_second,
            ))
        }
    }

    fn refilled(&self, bucket: &Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        (bucket.tokens + elapsed * self.per_second).min(self.burst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_sustained_rate_per_user() {
        let limiter = RateLimiter::new(10, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.take("ada", t0), Ok(()));
        }
        let wait = limiter.take("ada", t0).unwrap_err();
        assert!(
            wait > Duration::from_millis(90) && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
        // Another user has a budget of their own.
        assert_eq!(limiter.take("grace", t0), Ok(()));
        // 100 ms refills one request, not more.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(limiter.take("ada", t1), Ok(()));
        assert!(limiter.take("ada", t1).is_err());
        // A long pause refills up to the burst only.
        let t2 = t1 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(limiter.take("ada", t2), Ok(()));
        }
        assert!(limiter.take("ada", t2).is_err());
    }

    #[test]
    fn zero_turns_it_off() {
        let limiter = RateLimiter::new(0, 1);
        let now = Instant::now();
        for _ in 0..1000 {
            assert_eq!(limiter.take("ada", now), Ok(()));
        }
    }
}
