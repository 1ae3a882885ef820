//! The firing math: pure functions from a job's intervals and start to its firings.
//!
//! All times are milliseconds since the UNIX epoch, as `i64`, so that the math
//! is exact and needs no clock. A job with intervals `I` and start `s` fires at
//! every `s + k·i` (any integer `k`, any `i` in `I`). Firings of several
//! intervals that fall on the same millisecond are one firing, and the
//! intervals due at it are its *affecting* set, as in the Python library's
//! `MultipleIntervalsTrigger`.
//!
//! With [`Align::Spread`] the start is a phase derived from the job id by
//! [`stable_hash`], so that many jobs with the same interval spread evenly
//! across it, and a job keeps its phase across refreshes and restarts.

use std::time::{Duration, SystemTime};

use crate::job::{Align, Intervals, JobId};

/// Milliseconds since the UNIX epoch (negative before it).
pub(crate) type Millis = i64;

/// FNV-1a (64 bit) of `bytes`, followed by the `fmix64` finalizer of
/// MurmurHash3 so that the low bits are well mixed.
///
/// This is part of the scheduler's contract: changing it would move the phase
/// of every [`Align::Spread`] job on upgrade, so it is the crate's one frozen
/// hash (`crate::hash`, shared with the shard weights) and not `std`'s (whose
/// hasher may change between releases).
pub(crate) fn stable_hash(bytes: &[u8]) -> u64 {
    crate::hash::fnv1a_fmix64(bytes)
}

/// The largest period (in ms) a spread phase is drawn from. Phases are drawn
/// from `lcm(intervals)`, so that each interval sees a uniform phase; a set
/// whose lcm is larger than this (a few coprime, large intervals) is capped,
/// which keeps the phases deterministic but only nearly uniform.
const MAX_PHASE_PERIOD_MS: u128 = 1 << 48;

/// The step of a spread phase, in ms, for a job whose smallest interval is
/// `smallest_secs`: one 6,000th of it (0.017 %), rounded down to 1, 2, 4, 5,
/// 8 or 10 ms, which divide every whole second.
///
/// Phases on a step let the firings of many jobs share the timer's wakes, as
/// the kernel's `round_jiffies` does: 100,000 jobs every minute fire on at
/// most 100 instants a second instead of 1,000, each on time. A job every
/// second or few keeps a 1 ms step.
pub(crate) fn phase_step(smallest_secs: u32) -> Millis {
    let limit = Millis::from(smallest_secs) * 1000 / 6000;
    [10, 8, 5, 4, 2]
        .into_iter()
        .find(|&step| step <= limit)
        .unwrap_or(1)
}

/// The start (ms since epoch) that a job's firings are aligned to.
///
/// For [`Align::Spread`] it is a phase in `[0, lcm(intervals)·1000)` ms taken
/// from the id's [`stable_hash`], on a multiple of the job's [`phase_step`];
/// all intervals of the job share it, so they coincide on its multiples.
pub(crate) fn job_start(id: &JobId, intervals: &Intervals, align: Align) -> Millis {
    match align {
        Align::Start(t) => system_to_millis(t),
        Align::Spread => {
            let mut lcm: u128 = 1;
            for i in intervals.iter() {
                let i = u128::from(i);
                lcm = (lcm / gcd(lcm, i)).saturating_mul(i);
            }
            let period = lcm.saturating_mul(1000).min(MAX_PHASE_PERIOD_MS);
            let step = phase_step(intervals.smallest()) as u128;
            let slots = period / step;
            (u128::from(stable_hash(id.as_str().as_bytes())) % slots * step) as Millis
        }
    }
}

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The latest firing of one interval (`interval_ms`) at or before `t`.
pub(crate) fn latest_at_or_before(start: Millis, interval_ms: Millis, t: Millis) -> Millis {
    start + (t - start).div_euclid(interval_ms) * interval_ms
}

/// The job's first firing strictly after `t`, and the intervals due at it.
///
/// ```text
/// start = 0, intervals = {2 s, 3 s}, t = 4.5 s  →  (6 s, {2 s, 3 s})
/// ```
#[cfg(test)]
pub(crate) fn next_after(start: Millis, intervals: &Intervals, t: Millis) -> (Millis, Intervals) {
    let at = next_at(start, intervals, t);
    let due = intervals
        .iter()
        .filter(|&i| (at - start).rem_euclid(ms(i)) == 0)
        .collect();
    (at, affecting(intervals, due))
}

/// The job's first firing strictly after `t` (no allocation).
pub(crate) fn next_at(start: Millis, intervals: &Intervals, t: Millis) -> Millis {
    intervals
        .iter()
        .map(|i| latest_at_or_before(start, ms(i), t) + ms(i))
        .min()
        .unwrap_or(Millis::MAX)
}

/// What one firing runs with, after the scheduler woke at `now` for a firing
/// that was due at `due_at` (`due_at <= now`).
///
/// If the scheduler was late by less than the smallest interval this is just
/// the firing at `due_at`. After a stall it folds every firing in
/// `[due_at, now]` into one: `at` is the latest of them, `affecting` holds every
/// interval that had a firing in the window, and `missed` counts how many
/// firings of the most-missed interval were folded away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Coalesced {
    pub at: Millis,
    pub affecting: Intervals,
    pub missed: u64,
}

/// Folds the firings in `[due_at, now]` into one (see [`Coalesced`]).
pub(crate) fn coalesce(
    start: Millis,
    intervals: &Intervals,
    due_at: Millis,
    now: Millis,
) -> Coalesced {
    let now = now.max(due_at);
    if intervals.len() == 1 {
        return coalesce_one(start, ms(intervals.smallest()), intervals, due_at, now);
    }
    let mut at = Millis::MIN;
    let mut due = Vec::with_capacity(intervals.len());
    let mut missed = 0;
    for i in intervals.iter() {
        let last = latest_at_or_before(start, ms(i), now);
        if last < due_at {
            continue;
        }
        // Firings of `i` in [due_at, last]: the first is the one at or after due_at.
        let first = latest_at_or_before(start, ms(i), due_at - 1) + ms(i);
        missed = missed.max(((last - first) / ms(i)) as u64);
        if last > at {
            at = last;
        }
        // Every interval with a firing in the window affects the run.
        due.push(i);
    }
    Coalesced {
        at,
        affecting: affecting(intervals, due),
        missed,
    }
}

/// [`coalesce`] for a job with the one interval `interval_ms` (the common
/// case, without allocating: its interval always affects its runs).
pub(crate) fn coalesce_one(
    start: Millis,
    interval_ms: Millis,
    intervals: &Intervals,
    due_at: Millis,
    now: Millis,
) -> Coalesced {
    let at = latest_at_or_before(start, interval_ms, now.max(due_at));
    Coalesced {
        at,
        affecting: intervals.clone(),
        missed: ((at - due_at) / interval_ms) as u64,
    }
}

fn ms(seconds: u32) -> Millis {
    Millis::from(seconds) * 1000
}

/// Builds the affecting set, reusing `all` when every interval is due (the
/// common single-interval case allocates nothing new).
fn affecting(all: &Intervals, due: Vec<u32>) -> Intervals {
    if due.len() == all.len() {
        all.clone()
    } else {
        Intervals::new(due).expect("at least one interval is due, none is zero")
    }
}

/// Converts a wall-clock time to ms since the epoch (truncating below 1 ms).
pub(crate) fn system_to_millis(t: SystemTime) -> Millis {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_millis() as Millis,
        Err(e) => -(e.duration().as_millis() as Millis),
    }
}

/// Converts ms since the epoch to a wall-clock time.
pub(crate) fn millis_to_system(ms: Millis) -> SystemTime {
    if ms >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_millis(ms as u64)
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
    }
}

#[cfg(test)]
mod tests;
