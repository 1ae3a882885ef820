//! Exponential backoff with jitter, for retrying a backend that is down.
//!
//! The delay of attempt *n* is `min · 2ⁿ⁻¹`, capped at `max`, and then
//! scaled by a random factor in `[0.5, 1.0]` so that many bots restarted
//! together do not hammer the backend in lockstep. The randomness comes from a
//! small xorshift generator seeded from the clock and the process id: no extra
//! dependency, and good enough for spreading retries.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The backoff state of one retry loop.
#[derive(Debug)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
    rng: u64,
}

impl Backoff {
    /// A backoff from `min` up to `max` (`max` is raised to `min` if lower).
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
            attempt: 0,
            rng: seed(),
        }
    }

    /// Counts one more failed attempt and returns how long to wait before the
    /// next one.
    pub(crate) fn next_delay(&mut self) -> Duration {
        self.attempt = self.attempt.saturating_add(1);
        let exp = self.attempt.saturating_sub(1).min(32);
        let full = self
            .min
            .checked_mul(1u32 << exp.min(31))
            .unwrap_or(self.max)
            .min(self.max);
        // A factor in [0.5, 1.0], in 1/1024 steps.
        let jitter = 512 + (self.next_random() % 513) as u32;
        full * jitter / 1024
    }

    /// How many failed attempts were counted since the last [`reset`](Self::reset).
    pub(crate) fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Forgets the failures: the next delay starts again from `min`.
    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64* (Vigna).
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let seed = nanos ^ (u64::from(std::process::id()) << 32) ^ 0x9e37_79b9_7f4a_7c15;
    if seed == 0 { 1 } else { seed }
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
