//! Token buckets that slow down password guessing at `/v1/auth/token`: one
//! per source address (every attempt counts) and one per user name (failed
//! attempts count). In memory, per process, on `governor`'s keyed GCRA
//! limiter. The clock is a parameter, so the rules are tested without
//! waiting.
//!
//! The table of keys has no size at which it gives up: a key is forgotten
//! only once its bucket is full again, when forgetting it loses nothing. So
//! filling the table with keys of one's own never frees a limited key; the
//! memory it takes is bounded by the keys used within one refill period.
//!
//! An address's bucket is the address itself for IPv4 and its /64 network
//! for IPv6 ([`address_bucket`]): one IPv6 client is usually given a whole
//! /64 and could otherwise take a fresh bucket with every request.

use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use governor::RateLimiter;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::StateStore;
use governor::state::keyed::{DashMapStateStore, ShrinkableKeyedStateStore};

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

    /// The same quota as `governor` states it: one attempt back every
    /// `per / burst`, at most `burst` at once.
    fn governor(self) -> governor::Quota {
        let burst = NonZeroU32::new(self.burst).unwrap_or(NonZeroU32::MIN);
        let period = (self.per / burst.get()).max(Duration::from_nanos(1));
        governor::Quota::with_period(period)
            .unwrap_or_else(|| governor::Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst)
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

/// The buckets of every key, shared by the limiter that uses attempts and
/// the one that only looks.
type Table<K> = Arc<DashMapStateStore<K>>;

/// The table as the limiter that uses attempts sees it.
struct Using<K: Hash + Eq + Clone>(Table<K>);

impl<K: Hash + Eq + Clone> StateStore for Using<K> {
    type Key = K;

    fn measure_and_replace<T, F, E>(&self, key: &K, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        self.0.measure_and_replace(key, f)
    }
}

impl<K: Hash + Eq + Clone> ShrinkableKeyedStateStore<K> for Using<K> {
    fn retain_recent(&self, drop_below: Nanos) {
        self.0.retain_recent(drop_below);
    }

    fn shrink_to_fit(&self) {
        ShrinkableKeyedStateStore::shrink_to_fit(&*self.0);
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The table as the limiter that only looks sees it: the decision is made
/// on the current state, which is never replaced (nor a key added).
struct Looking<K: Hash + Eq + Clone>(Table<K>);

impl<K: Hash + Eq + Clone> StateStore for Looking<K> {
    type Key = K;

    fn measure_and_replace<T, F, E>(&self, key: &K, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        if !self.0.contains_key(key) {
            return f(None).map(|(t, _)| t);
        }
        // A closure that always fails leaves the stored state as it was.
        let decided = self.0.measure_and_replace(key, |state| {
            Err::<(std::convert::Infallible, Nanos), _>(f(state).map(|(t, _)| t))
        });
        match decided {
            Ok(never) => match never {},
            Err(decision) => decision,
        }
    }
}

/// A token bucket per key.
pub struct Limiter<K: Hash + Eq + Clone, C: Clock = DefaultClock> {
    using: RateLimiter<K, Using<K>, C, NoOpMiddleware<C::Instant>>,
    /// Made after `using`, so its clock starts a moment later: if anything,
    /// it sees a bucket a few nanoseconds less full than `using` does.
    looking: RateLimiter<K, Looking<K>, C, NoOpMiddleware<C::Instant>>,
    clock: C,
    /// Table size at which full buckets are next dropped.
    sweep_at: AtomicUsize,
}

/// Keys below this many are never swept.
const SWEEP_FLOOR: usize = 10_000;

impl<K: Hash + Eq + Clone> Limiter<K> {
    pub fn new(quota: Quota) -> Self {
        Self::with_clock(quota, DefaultClock::default())
    }
}

impl<K: Hash + Eq + Clone, C: Clock + Clone> Limiter<K, C> {
    pub fn with_clock(quota: Quota, clock: C) -> Self {
        let table = Table::default();
        let quota = quota.governor();
        let using = RateLimiter::new(quota, Using(Arc::clone(&table)), clock.clone());
        let looking = RateLimiter::new(quota, Looking(table), clock.clone());
        Self {
            using,
            looking,
            clock,
            sweep_at: AtomicUsize::new(SWEEP_FLOOR),
        }
    }

    fn wait(&self, not_until: &governor::NotUntil<C::Instant>) -> Duration {
        not_until
            .wait_time_from(self.clock.now())
            .max(Duration::from_secs(1))
    }

    /// `Ok` when `key` has an attempt left (without using it); otherwise how
    /// long until it has one.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        self.looking.check_key(key).map_err(|n| self.wait(&n))
    }

    /// Uses one attempt of `key`: `Ok` when there was one, otherwise how long
    /// until there is.
    pub fn take(&self, key: &K) -> Result<(), Duration> {
        let decision = self.using.check_key(key).map_err(|n| self.wait(&n));
        self.sweep();
        decision
    }

    /// Keys in the table.
    pub fn len(&self) -> usize {
        self.using.len()
    }

    pub fn is_empty(&self) -> bool {
        self.using.is_empty()
    }

    /// Drops the keys whose buckets are full again whenever the table has
    /// doubled since the last sweep: amortised, a constant cost per attempt.
    fn sweep(&self) {
        if self.using.len() < self.sweep_at.load(Ordering::Relaxed) {
            return;
        }
        self.using.retain_recent();
        self.using.shrink_to_fit();
        let left = self.using.len();
        self.sweep_at
            .store(left.saturating_mul(2).max(SWEEP_FLOOR), Ordering::Relaxed);
    }
}

/// The bucket of a client address: IPv4 addresses (also when written as
/// IPv4-mapped IPv6) on their own, IPv6 addresses by their /64 network;
/// anything that is not an address as it is.
pub fn address_bucket(address: &str) -> String {
    use std::net::IpAddr;
    match address.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.to_string(),
        Ok(IpAddr::V6(v6)) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                v4.to_string()
            } else {
                let network = u128::from(v6) & !((1u128 << 64) - 1);
                format!("{}/64", std::net::Ipv6Addr::from(network))
            }
        }
        Err(_) => address.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    #[test]
    fn ipv6_clients_share_the_bucket_of_their_64_network() {
        assert_eq!(
            address_bucket("2001:db8:1:2:aaaa::1"),
            address_bucket("2001:db8:1:2:ffff:ffff:ffff:ffff")
        );
        assert_eq!(address_bucket("2001:db8:1:2::9"), "2001:db8:1:2::/64");
        assert_ne!(
            address_bucket("2001:db8:1:2::1"),
            address_bucket("2001:db8:1:3::1")
        );
        assert_eq!(address_bucket("192.0.2.7"), "192.0.2.7");
        assert_ne!(address_bucket("192.0.2.7"), address_bucket("192.0.2.8"));
        assert_eq!(address_bucket("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(address_bucket("unknown"), "unknown");
    }

    fn limiter<K: Hash + Eq + Clone>(
        quota: Quota,
    ) -> (Limiter<K, FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        (Limiter::with_clock(quota, clock.clone()), clock)
    }

    #[test]
    fn a_burst_passes_then_waits_for_the_refill() {
        let (l, clock) = limiter(Quota::new(3, Duration::from_mins(1)));
        for _ in 0..3 {
            assert_eq!(l.take(&"ip"), Ok(()));
        }
        let wait = l.take(&"ip").unwrap_err();
        assert_eq!(wait, Duration::from_secs(20), "one attempt per 20 s");
        assert!(l.check(&"ip").is_err());
        clock.advance(Duration::from_secs(19));
        assert!(l.take(&"ip").is_err());
        clock.advance(Duration::from_secs(2));
        assert_eq!(l.take(&"ip"), Ok(()));
    }

    #[test]
    fn keys_are_independent_and_check_does_not_use_attempts() {
        let (l, _clock) = limiter(Quota::new(1, Duration::from_secs(10)));
        assert_eq!(l.check(&"a"), Ok(()));
        assert_eq!(l.check(&"a"), Ok(()));
        assert!(l.is_empty(), "looking adds no key");
        assert_eq!(l.take(&"a"), Ok(()));
        assert!(l.check(&"a").is_err());
        assert!(l.check(&"a").is_err());
        assert_eq!(l.take(&"b"), Ok(()));
    }

    #[test]
    fn buckets_refill_no_higher_than_the_burst() {
        let (l, clock) = limiter(Quota::new(2, Duration::from_secs(2)));
        assert_eq!(l.take(&1), Ok(()));
        clock.advance(Duration::from_hours(1));
        assert_eq!(l.take(&1), Ok(()));
        assert_eq!(l.take(&1), Ok(()));
        assert!(l.take(&1).is_err());
    }

    #[test]
    fn a_full_table_does_not_let_a_limited_key_through() {
        let l = Limiter::new(Quota::new(1, Duration::from_mins(1)));
        assert_eq!(l.take(&u32::MAX), Ok(()));
        assert!(l.take(&u32::MAX).is_err());
        // An attacker fills the table with fresh keys of their own…
        for k in 0..150_000 {
            assert_eq!(l.take(&k), Ok(()));
        }
        // …and the limited key is still limited.
        assert!(l.check(&u32::MAX).is_err());
        assert!(l.take(&u32::MAX).is_err());
    }

    #[test]
    fn full_buckets_are_forgotten_and_limited_ones_kept() {
        let (l, clock) = limiter(Quota::new(1, Duration::from_secs(10)));
        assert_eq!(l.take(&u32::MAX), Ok(()));
        // Full again after 10 s; governor forgets it one period later.
        clock.advance(Duration::from_secs(21));
        // These refill after the first key's bucket: when the table is next
        // swept, only the key whose bucket is full again goes.
        for k in 0..=u32::try_from(SWEEP_FLOOR).unwrap() {
            assert_eq!(l.take(&k), Ok(()));
        }
        assert_eq!(
            l.len(),
            SWEEP_FLOOR + 1,
            "the full bucket went, the others stayed"
        );
        assert_eq!(l.check(&u32::MAX), Ok(()));
        assert!(l.check(&0).is_err());
    }
}
