//! The scheduler's clock: wall-clock time for firings, tokio's timer for sleeping.
//!
//! Firings are wall-clock instants (values are stamped with them), but the
//! scheduler sleeps on [`tokio::time`], which is monotonic and can be paused
//! in tests. A [`Clock`] converts between the two.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::timing::{Millis, millis_to_system, system_to_millis};

/// How the scheduler reads the wall-clock time: the system clock, or (in
/// tests) a wall clock that follows tokio's paused clock.
#[derive(Debug, Clone, Copy)]
pub struct Clock(Kind);

#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(test), allow(dead_code))]
enum Kind {
    /// `SystemTime::now()`, read afresh at every wake, so a jump of the wall
    /// clock (NTP step, suspend) is seen at the next wake.
    System,
    /// `base_wall + (Instant::now() - base_instant)`: follows tokio's clock,
    /// paused or not.
    Mapped {
        base_wall: Millis,
        base_instant: Instant,
    },
}

impl Clock {
    /// The system's wall clock (the default).
    pub fn system() -> Self {
        Self(Kind::System)
    }

    /// A wall clock that reads `wall` now and then advances with tokio's
    /// clock. On a paused tokio clock (`#[tokio::test(start_paused = true)]`)
    /// firings become exact and deterministic. Resolution is 1 ms.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn starting_at(wall: SystemTime) -> Self {
        Self(Kind::Mapped {
            base_wall: system_to_millis(wall),
            base_instant: Instant::now(),
        })
    }

    /// Whether this clock follows the system's wall clock (and may jump).
    pub(crate) fn is_system(&self) -> bool {
        matches!(self.0, Kind::System)
    }

    /// The current wall-clock time, in ms since the epoch.
    pub(crate) fn now(&self) -> Millis {
        match self.0 {
            Kind::System => system_to_millis(SystemTime::now()),
            Kind::Mapped {
                base_wall,
                base_instant,
            } => base_wall + Instant::now().duration_since(base_instant).as_millis() as Millis,
        }
    }

    /// The tokio instant at which the wall clock reads `wall` (now, if it is
    /// in the past).
    pub(crate) fn instant_of(&self, wall: Millis) -> Instant {
        match self.0 {
            Kind::System => {
                let target = millis_to_system(wall);
                let wait = target.duration_since(SystemTime::now()).unwrap_or_default();
                Instant::now() + wait
            }
            Kind::Mapped {
                base_wall,
                base_instant,
            } => {
                let offset = wall.saturating_sub(base_wall).max(0) as u64;
                base_instant + Duration::from_millis(offset)
            }
        }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}
