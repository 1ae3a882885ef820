//! Exponential backoff with jitter, for retrying what failed: the one
//! backoff of the SDK (the sender's retries, the start-up wait for the
//! backend, the first refreshes, the restarts of a bot's supervised tasks),
//! on `backon`'s exponential backoff.
//!
//! The delay of attempt *n* is `min · 2ⁿ⁻¹`, capped at `max`, and then
//! scaled by a random factor in `[0.5, 1.0)`, so that many bots restarted
//! together do not hammer the backend in lockstep. (backon adds a jitter in
//! `[0, delay)`; so it is given half of `min` and `max`.)

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// The backoff state of one retry loop.
#[derive(Debug)]
pub(crate) struct Backoff {
    builder: ExponentialBuilder,
    delays: ExponentialBackoff,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// A backoff from `min` up to `max` (`max` is raised to `min` if lower).
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        let max = max.max(min);
        let builder = ExponentialBuilder::new()
            .with_jitter()
            .with_factor(2.0)
            .with_min_delay(min / 2)
            .with_max_delay(max / 2)
            .without_max_times();
        Self {
            delays: builder.build(),
            builder,
            max,
            attempt: 0,
        }
    }

    /// Counts one more failed attempt and returns how long to wait before the
    /// next one.
    pub(crate) fn next_delay(&mut self) -> Duration {
        self.attempt = self.attempt.saturating_add(1);
        self.delays.next().unwrap_or(self.max).min(self.max)
    }

    /// How many failed attempts were counted since the last [`reset`](Self::reset).
    pub(crate) fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Forgets the failures: the next delay starts again from `min`.
    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
        self.delays = self.builder.build();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_exponentially_within_jitter_and_cap() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let expected_full = [100, 200, 400, 800, 1000, 1000];
        for full in expected_full {
            let d = b.next_delay().as_millis() as u64;
            assert!(
                d >= full / 2 && d <= full,
                "{d} not in [{}, {full}]",
                full / 2
            );
        }
        assert_eq!(b.attempt(), 6);
        b.reset();
        assert_eq!(b.attempt(), 0);
        assert!(b.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn huge_attempt_counts_do_not_overflow() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        for _ in 0..100 {
            assert!(b.next_delay() <= Duration::from_secs(60));
        }
    }

    #[test]
    fn jitter_varies() {
        let mut b = Backoff::new(Duration::from_secs(10), Duration::from_secs(10));
        let delays: std::collections::BTreeSet<_> = (0..20).map(|_| b.next_delay()).collect();
        assert!(delays.len() > 5, "{delays:?}");
    }
}
