//! Token buckets that slow down password guessing at `/v1/auth/token`: one
//! per source address (every attempt counts) and one per user name (failed
//! attempts count). In memory, per process; the clock is passed in, so the
//! rules are tested without waiting.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// `burst` attempts at once, refilled evenly over `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub burst: u32,
    pub per: Duration,
}

impl Quota {
    pub const fn new(burst: u32, per: Duration) -> Self {
        Self { burst, per }
    }

    fn refill_per_second(self) -> f64 {
        f64::from(self.burst) / self.per.as_secs_f64().max(f64::EPSILON)
    }
}

/// The limits of the sign-in endpoints.
#[derive(Debug, Clone, Copy)]
pub struct LoginLimits {
    /// Every request from one address to `/v1/auth/token` and `/v1/auth/refresh`.
    pub per_address: Quota,
    /// Failed sign-ins for one user name, whether the user exists or not.
    pub per_user: Quota,
}

impl Default for LoginLimits {
    /// 30 requests a minute per address; 10 failed sign-ins per user name
    /// in 15 minutes.
    fn default() -> Self {
        Self {
            per_address: Quota::new(30, Duration::from_mins(1)),
            per_user: Quota::new(10, Duration::from_mins(15)),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// A set of token buckets, one per key, at most `max_keys` of them: full
/// buckets are dropped first when the map is full, then the map is cleared
/// (failing open for old keys rather than growing without bound).
pub struct Limiter<K> {
    quota: Quota,
    max_keys: usize,
    buckets: Mutex<HashMap<K, Bucket>>,
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    pub fn new(quota: Quota) -> Self {
        Self {
            quota,
            max_keys: 100_000,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn level(&self, b: Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(b.updated).as_secs_f64();
        (b.tokens + elapsed * self.quota.refill_per_second()).min(f64::from(self.quota.burst))
    }

    fn wait_for_one(&self, tokens: f64) -> Duration {
        let missing = (1.0 - tokens).max(0.0);
        Duration::from_secs_f64(missing / self.quota.refill_per_second())
            .max(Duration::from_secs(1))
    }

    /// `Ok` when `key` has an attempt left (without using it); otherwise how
    /// long until it has one.
    pub fn check(&self, key: &K, now: Instant) -> Result<(), Duration> {
        let buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match buckets.get(key) {
            Some(b) => {
                let tokens = self.level(*b, now);
                if tokens >= 1.0 {
                    Ok(())
                } else {
                    Err(self.wait_for_one(tokens))
                }
            }
            None => Ok(()),
        }
    }

    /// Uses one attempt of `key`: `Ok` when there was one, otherwise how long
    /// until there is.
    pub fn take(&self, key: &K, now: Instant) -> Result<(), Duration> {
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= self.max_keys && !buckets.contains_key(key) {
            let burst = f64::from(self.quota.burst);
            buckets.retain(|_, b| {
                let elapsed = now.saturating_duration_since(b.updated).as_secs_f64();
                b.tokens + elapsed * self.quota.refill_per_second() < burst
            });
            if buckets.len() >= self.max_keys {
                buckets.clear();
            }
        }
        let fresh = Bucket {
            tokens: f64::from(self.quota.burst),
            updated: now,
        };
        let b = buckets.entry(key.clone()).or_insert(fresh);
        let tokens = self.level(*b, now);
        if tokens >= 1.0 {
            *b = Bucket {
                tokens: tokens - 1.0,
                updated: now,
            };
            Ok(())
        } else {
            Err(self.wait_for_one(tokens))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_waits_for_the_refill() {
        let l = Limiter::new(Quota::new(3, Duration::from_mins(1)));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.take(&"ip", t0), Ok(()));
        }
        let wait = l.take(&"ip", t0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(20), "one attempt per 20 s");
        assert!(l.check(&"ip", t0).is_err());
        assert!(l.take(&"ip", t0 + Duration::from_secs(19)).is_err());
        assert_eq!(l.take(&"ip", t0 + Duration::from_secs(21)), Ok(()));
    }

    #[test]
    fn keys_are_independent_and_check_does_not_use_attempts() {
        let l = Limiter::new(Quota::new(1, Duration::from_secs(10)));
        let t0 = Instant::now();
        assert_eq!(l.check(&"a", t0), Ok(()));
        assert_eq!(l.check(&"a", t0), Ok(()));
        assert_eq!(l.take(&"a", t0), Ok(()));
        assert!(l.check(&"a", t0).is_err());
        assert_eq!(l.take(&"b", t0), Ok(()));
    }

    #[test]
    fn buckets_refill_no_higher_than_the_burst() {
        let l = Limiter::new(Quota::new(2, Duration::from_secs(2)));
        let t0 = Instant::now();
        assert_eq!(l.take(&1, t0), Ok(()));
        let later = t0 + Duration::from_hours(1);
        assert_eq!(l.take(&1, later), Ok(()));
        assert_eq!(l.take(&1, later), Ok(()));
        assert!(l.take(&1, later).is_err());
    }

    #[test]
    fn the_map_stays_bounded() {
        let mut l = Limiter::new(Quota::new(1, Duration::from_mins(1)));
        l.max_keys = 4;
        let t0 = Instant::now();
        for k in 0..10 {
            assert_eq!(l.take(&k, t0), Ok(()));
        }
        assert!(l.buckets.lock().unwrap().len() <= 4);
    }
}
