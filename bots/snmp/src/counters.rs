//! Counter state: SNMP counters turned into per-second rates, in process.
//!
//! Each counter OID of an entity keeps its last value (as `u64`) and the time
//! it was read. The next reading gives `(new - old) / Δt`. The first reading
//! gives no value. A Counter32 that went down has wrapped at 2^32, or the
//! agent restarted, or the counter was cleared while the agent stayed up (a
//! `clear counters`, an interface re-created):
//!
//! - if the agent's sysUpTime says it restarted since the last reading (or
//!   sysUpTime is unknown), the point is skipped ([`Outcome::Reset`]);
//! - if the counter's [`WrapCheck`] says it was cleared since then (IF-MIB's
//!   `ifCounterDiscontinuityTime`), or the rate across a wrap would be more
//!   than it can be (above its interface's speed), the point is skipped
//!   ([`Outcome::Discontinuity`]);
//! - else it wrapped, and the delta is `new + 2^32 - old`.
//!
//! A Counter64 that went down was reset (it cannot wrap in practice).

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
    /// A Counter32 went down while the agent stayed up, and it was not a
    /// wrap (see [`WrapCheck`]): no value this time.
    Discontinuity,
}

/// What tells a Counter32 wrap from a discontinuity when the agent stayed
/// up.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct WrapCheck {
    /// The agent's sysUpTime (seconds) at the counter's last discontinuity,
    /// if it tells one (IF-MIB's `ifCounterDiscontinuityTime`; 0 is none).
    pub discontinuity_at: Option<f64>,
    /// The most the counter can grow per second, if known (an octet
    /// counter's interface speed).
    pub max_rate: Option<f64>,
}

impl Outcome {
    /// The rate, if there is one.
    pub fn rate(self) -> Option<f64> {
        match self {
            Self::Rate(r) | Self::Wrapped(r) => Some(r),
            Self::First | Self::Reset | Self::Discontinuity => None,
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
/// use grafolean_snmp_bot::counters::{Counters, Outcome, WrapCheck};
/// let oid = async_snmp::Oid::parse("1.3.6.1.2.1.2.2.1.10.1").unwrap();
/// let mut c = Counters::default();
/// assert_eq!(c.update(&oid, 100, false, 0.0, None, WrapCheck::default()), Outcome::First);
/// assert_eq!(c.update(&oid, 700, false, 60.0, None, WrapCheck::default()), Outcome::Rate(10.0));
/// // A Counter32 wrap, with the agent up for a day:
/// assert!(c.decreased(&oid, 40, false));
/// let (up, check) = (Some(86400.0), WrapCheck::default());
/// assert_eq!(c.update(&oid, 40, false, 120.0, up, check), Outcome::Wrapped(((1u64 << 32) - 700 + 40) as f64 / 60.0));
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
    /// Counter64. `uptime` is the agent's sysUpTime in seconds, if known;
    /// `check` what else is known of the counter (see the module's docs).
    pub fn update(
        &mut self,
        oid: &Oid,
        value: u64,
        wide: bool,
        now: f64,
        uptime: Option<f64>,
        check: WrapCheck,
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
            // Up since before the last reading: a wrap, unless the counter
            // says it was cleared since, or the wrap would be too fast.
            (false, Some(up)) if up >= dt => {
                let cleared = check
                    .discontinuity_at
                    .is_some_and(|at| at > 0.0 && at >= up - dt);
                let rate = (value + (1u64 << 32) - old.value) as f64 / dt;
                if cleared || check.max_rate.is_some_and(|max| rate > max) {
                    Outcome::Discontinuity
                } else {
                    Outcome::Wrapped(rate)
                }
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
        let no = WrapCheck::default();
        c.update(&oid(), 1000, false, 0.0, None, no);
        assert_eq!(c.update(&oid(), 10, false, 10.0, None, no), Outcome::Reset);
        assert_eq!(
            c.update(&oid(), 20, false, 20.0, None, no),
            Outcome::Rate(1.0)
        );
        // Restarted 5 s ago, read 10 s ago: a reset.
        assert_eq!(
            c.update(&oid(), 5, false, 30.0, Some(5.0), no),
            Outcome::Reset
        );
    }

    #[test]
    fn counter64_decrease_is_a_reset_and_u64_is_kept_whole() {
        let mut c = Counters::default();
        let big = u64::MAX - 10;
        let no = WrapCheck::default();
        c.update(&oid(), big, true, 0.0, None, no);
        assert_eq!(
            c.update(&oid(), u64::MAX, true, 5.0, None, no),
            Outcome::Rate(2.0)
        );
        assert_eq!(
            c.update(&oid(), 3, true, 6.0, Some(1e9), no),
            Outcome::Reset
        );
        assert!(!c.decreased(&oid(), 1, true));
    }

    #[test]
    fn type_change_and_forgetting() {
        let mut c = Counters::default();
        let no = WrapCheck::default();
        c.update(&oid(), 1, false, 0.0, None, no);
        assert_eq!(c.update(&oid(), 2, true, 1.0, None, no), Outcome::First);
        c.forget_older_than(2.0);
        assert!(c.is_empty());
    }

    #[test]
    fn a_counter32_cleared_while_the_agent_stayed_up_is_not_a_wrap() {
        // Read at uptime 1000 s and 1060 s: 3,000 then 10.
        let read = |check: WrapCheck| {
            let mut c = Counters::default();
            c.update(&oid(), 3000, false, 0.0, None, check);
            c.update(&oid(), 10, false, 60.0, Some(1060.0), check)
        };
        let wrapped = ((1u64 << 32) + 10 - 3000) as f64 / 60.0;
        // Nothing else known: a wrap (71.6 MB/s).
        assert_eq!(read(WrapCheck::default()), Outcome::Wrapped(wrapped));
        // Cleared at uptime 1030 s, after the last reading: a discontinuity.
        let cleared = WrapCheck {
            discontinuity_at: Some(1030.0),
            max_rate: None,
        };
        assert_eq!(read(cleared), Outcome::Discontinuity);
        // Cleared before the last reading (or never: 0), so this is a wrap.
        for at in [900.0, 0.0] {
            let earlier = WrapCheck {
                discontinuity_at: Some(at),
                max_rate: None,
            };
            assert_eq!(read(earlier), Outcome::Wrapped(wrapped));
        }
        // Faster than the interface: 100 Mbit/s is 12.5 MB/s.
        let slow = WrapCheck {
            discontinuity_at: None,
            max_rate: Some(12.5e6),
        };
        assert_eq!(read(slow), Outcome::Discontinuity);
        // A true wrap within the interface's speed is still a rate.
        let mut c = Counters::default();
        c.update(&oid(), 4_294_967_000, false, 0.0, None, slow);
        assert_eq!(
            c.update(&oid(), 704, false, 10.0, Some(1e6), slow),
            Outcome::Wrapped(100.0)
        );
    }
}
