//! How long to wait before retrying something that failed: exponential,
//! capped, with jitter, so that things that failed together (servers after
//! a host restart, reconciles after an API server outage) do not all retry
//! at the same instant again. On `backon`'s exponential backoff.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// The delay before retry `attempt` (from 0): `base`·2^attempt, at most
/// `max`, of which a random part — up to half — is taken off. So the delay
/// lies in [d/2, d] where d is the capped exponential.
pub fn backoff(attempt: u32, base: Duration, max: Duration) -> Duration {
    // backon adds up to as much again at random: start from half.
    let mut delays = ExponentialBuilder::new()
        .with_min_delay(base / 2)
        .with_max_delay(max / 2)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build();
    let steps = usize::try_from(attempt.min(64)).unwrap_or(64);
    delays.nth(steps).unwrap_or(max).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_stays_in_its_band() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(5);
        for attempt in 0..20 {
            let d = base.saturating_mul(1 << attempt.min(16)).min(max);
            for _ in 0..50 {
                let delay = backoff(attempt, base, max);
                assert!(
                    delay >= d / 2 && delay <= d,
                    "attempt {attempt}: {delay:?} not in [{:?}, {d:?}]",
                    d / 2
                );
            }
        }
    }

    #[test]
    fn retries_that_failed_together_spread_out() {
        let delays: std::collections::HashSet<Duration> = (0..100)
            .map(|_| backoff(3, Duration::from_millis(200), Duration::from_secs(30)))
            .collect();
        assert!(delays.len() > 50, "{} distinct delays of 100", delays.len());
    }
}
