//! Counter state: SNMP counters turned into per-second rates, in process.
//!
//! Each counter OID of an entity keeps its last value (as `u64`) and the time
//! it was read. The next reading gives `(new - old) / Δt`. The first reading
//! gives no value. A Counter32 that went down has either wrapped at 2^32 or
//! the agent restarted: if the agent's sysUpTime says it has been up since
//! before the last reading, it wrapped and the delta is `new + 2^32 - old`;
//! otherwise (or if sysUpTime is unknown) it was reset and the point is
//! skipped. A Counter64 that went down was reset (it cannot wrap in
//! practice).

use std::collections::HashMap;

use async_snmp::Oid;

/// What one counter reading gives.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Outcome {
    /// A rate per second.
    Rate(f64),
    /// A rate per second, across a Counter32 wrap.
    Wrapped(f64),
    /// The first reading (or the first after a type change): no value yet.
    First,
    /// The counter was reset (agent restart, or a Counter64 decrease): no
    /// value this time.
    Reset,
}

impl Outcome {
    /// The rate, if there is one.
    pub fn rate(self) -> Option<f64> {
        match self {
            Self::Rate(r) | Self::Wrapped(r) => Some(r),
            Self::First | Self::Reset => None,
        }
    }
}

/// A counter's last reading.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// The value read.
    pub value: u64,
    /// When it was read (UNIX seconds).
    pub at: f64,
    /// Whether it is a Counter64.
    pub wide: bool,
}

/// One entity's counters.
///
/// ```
/// use grafolean_snmp_bot::counters::{Counters, Outcome};
/// let oid = async_snmp::Oid::parse("1.3.6.1.2.1.2.2.1.10.1").unwrap();
/// let mut c = Counters::default();
/// assert_eq!(c.update(&oid, 100, false, 0.0, None), Outcome::First);
/// assert_eq!(c.update(&oid, 700, false, 60.0, None), Outcome::Rate(10.0));
/// // A Counter32 wrap, with the agent up for a day:
/// assert!(c.decreased(&oid, 40, false));
/// assert_eq!(c.update(&oid, 40, false, 120.0, Some(86400.0)), Outcome::Wrapped(((1u64 << 32) - 700 + 40) as f64 / 60.0));
/// ```
#[derive(Clone, Debug, Default)]
pub struct Counters {
    /// Keyed by the OID's arcs: an [`Oid`] keeps 16 arcs inline (72 bytes)
    /// where an ifTable counter has 11, and at 100,000 counters the map was
    /// the largest thing the bot kept.
    samples: HashMap<Box<[u32]>, Sample>,
}

impl Counters {
    /// Whether a Counter32 reading went down (so sysUpTime is needed to tell
    /// a wrap from a restart).
    pub fn decreased(&self, oid: &Oid, value: u64, wide: bool) -> bool {
        !wide
            && self
                .samples
                .get(oid.arcs())
                .is_some_and(|s| !s.wide && value < s.value)
    }

    /// Records a reading of `oid` at `now` (UNIX seconds). `wide` is
    /// Counter64. `uptime` is the agent's sysUpTime in seconds, if known.
    pub fn update(
        &mut self,
        oid: &Oid,
        value: u64,
        wide: bool,
        now: f64,
        uptime: Option<f64>,
    ) -> Outcome {
        let new = Sample {
            value,
            at: now,
            wide,
        };
        let old = match self.samples.get_mut(oid.arcs()) {
            Some(sample) => std::mem::replace(sample, new),
            None => {
                self.samples.insert(oid.arcs().into(), new);
                return Outcome::First;
            }
        };
        let dt = now - old.at;
        if old.wide != wide || dt <= 0.0 {
            return Outcome::First;
        }
        if value >= old.value {
            return Outcome::Rate((value - old.value) as f64 / dt);
        }
        match (wide, uptime) {
            // Up since before the last reading: a wrap.
            (false, Some(up)) if up >= dt => {
                Outcome::Wrapped((value + (1u64 << 32) - old.value) as f64 / dt)
            }
            _ => Outcome::Reset,
        }
    }

    /// Forgets counters last read before `before` (rows that went away).
    pub fn forget_older_than(&mut self, before: f64) {
        self.samples.retain(|_, s| s.at >= before);
    }

    /// Every counter's last reading (for the state file).
    pub fn iter(&self) -> impl Iterator<Item = (Oid, &Sample)> {
        self.samples
            .iter()
            .map(|(arcs, sample)| (Oid::from_slice(arcs), sample))
    }

    /// Puts back a reading kept from before a restart, unless a newer one
    /// is already there.
    pub fn restore(&mut self, oid: Oid, sample: Sample) {
        match self.samples.entry(oid.arcs().into()) {
            std::collections::hash_map::Entry::Occupied(mut e) => {
                if e.get().at < sample.at {
                    e.insert(sample);
                }
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(sample);
            }
        }
    }

    /// How many counters are kept.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether none are kept.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oid() -> Oid {
        Oid::parse("1.3.6.1.4.1.99999.1").unwrap()
    }

    #[test]
    fn counter32_decrease_without_uptime_or_after_restart_is_a_reset() {
        let mut c = Counters::default();
        c.update(&oid(), 1000, false, 0.0, None);
        assert_eq!(c.update(&oid(), 10, false, 10.0, None), Outcome::Reset);
        assert_eq!(c.update(&oid(), 20, false, 20.0, None), Outcome::Rate(1.0));
        // Restarted 5 s ago, read 10 s ago: a reset.
        assert_eq!(c.update(&oid(), 5, false, 30.0, Some(5.0)), Outcome::Reset);
    }

    #[test]
    fn counter64_decrease_is_a_reset_and_u64_is_kept_whole() {
        let mut c = Counters::default();
        let big = u64::MAX - 10;
        c.update(&oid(), big, true, 0.0, None);
        assert_eq!(
            c.update(&oid(), u64::MAX, true, 5.0, None),
            Outcome::Rate(2.0)
        );
        assert_eq!(c.update(&oid(), 3, true, 6.0, Some(1e9)), Outcome::Reset);
        assert!(!c.decreased(&oid(), 1, true));
    }

    #[test]
    fn type_change_and_forgetting() {
        let mut c = Counters::default();
        c.update(&oid(), 1, false, 0.0, None);
        assert_eq!(c.update(&oid(), 2, true, 1.0, None), Outcome::First);
        c.forget_older_than(2.0);
        assert!(c.is_empty());
    }
}
