//! The sender's state machine, without I/O: the backend's health with its
//! backoff, which accounts may PUT, and what each request's outcome means.
//!
//! ```text
//!            transient failure                 backoff deadline
//!   Up ───────────────────────────▶ Down ─────────────────────────▶ Probing
//!   ▲  (live batches → backlog)      ▲        (one replay PUT)         │
//!   │                                └──────── probe failed ───────────┤
//!   └──────────── an answer (or nothing left to probe with) ───────────┘
//! ```
//!
//! While *up*, live batches go out and the backlog is replayed beside them.
//! While *down*, every value goes to the backlog, and at each backoff
//! deadline one probe (a PUT of the oldest buffered values) is sent.
//!
//! Per account, values go by PUT (the default) until a PUT gets 403; then
//! by POST for [`PUT_RECHECK`], after which PUT is tried again.
//!
//! The [`Worker`](super::worker) asks this module what to do and does it;
//! every function takes the time as an argument, so that the unit tests
//! (`state/tests.rs`) drive each transition without a clock or a network.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::api::ApiError;

use crate::backoff::Backoff;

/// How long a 403 on PUT holds before PUT is tried again, so that a
/// permission granted later takes effect without a restart.
pub(crate) const PUT_RECHECK: Duration = Duration::from_secs(600);

/// The backend's health as the sender sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Requests flow.
    Up,
    /// The last request failed; a probe is due at `retry_at`.
    Down {
        /// When the next probe is due.
        retry_at: Instant,
    },
    /// A probe is in flight.
    Probing,
}

/// What a change of health asks of the worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    /// Nothing changes.
    None,
    /// The backend just went down: move waiting batches to the backlog, and
    /// log it once.
    WentDown,
    /// Still down: the next probe is at the returned deadline.
    StillDown,
    /// The backend is back: replay the backlog.
    CameBack,
}

/// How values of an account go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// By PUT with their tick's time: exactly once.
    Put,
    /// By POST, stamped by the backend: at least once.
    Post,
}

/// What the sender does with the values of a request that did not go
/// through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// A network error, a timeout, a 5xx or a 401: keep the values, retry
    /// later, and count the backend as down.
    Retry,
    /// 403 on PUT: the account may only POST; send the values again by POST
    /// (live) or newest-only (buffered).
    PutForbidden,
    /// 403 on POST: the bot may not write to the account; drop the values.
    PostForbidden,
}

/// Classifies the error that stopped a delivery (`put`: the request was a
/// PUT). Rejections (400, 404) never get here: the delivery bisects them.
pub(crate) fn classify(error: Option<&ApiError>, put: bool) -> Failure {
    match error {
        Some(ApiError::Forbidden { .. }) if put => Failure::PutForbidden,
        Some(ApiError::Forbidden { .. }) => Failure::PostForbidden,
        _ => Failure::Retry,
    }
}

/// The health, the backoff and the per-account send mode.
#[derive(Debug)]
pub(crate) struct Link {
    phase: Phase,
    backoff: Backoff,
    /// Accounts whose PUT got 403, and when.
    put_forbidden: HashMap<u64, Instant>,
    /// The mode each account's values last went in (for the log and metric).
    modes: HashMap<u64, Mode>,
}

impl Link {
    /// An *up* link whose retries back off from `min` to `max`.
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        Self {
            phase: Phase::Up,
            backoff: Backoff::new(min, max),
            put_forbidden: HashMap::new(),
            modes: HashMap::new(),
        }
    }

    /// The current phase.
    #[cfg(test)]
    pub(crate) fn phase(&self) -> Phase {
        self.phase
    }

    /// Whether values must wait in the backlog (down or probing).
    pub(crate) fn is_down(&self) -> bool {
        self.phase != Phase::Up
    }

    /// When the next probe is due, if one is waiting.
    pub(crate) fn retry_at(&self) -> Option<Instant> {
        match self.phase {
            Phase::Down { retry_at } => Some(retry_at),
            _ => None,
        }
    }

    /// How many failed attempts since the backend was last up.
    pub(crate) fn attempt(&self) -> u32 {
        self.backoff.attempt()
    }

    /// A request failed with a transient error at `now`. `probe`: it was the
    /// probe. A live request failing while already down changes nothing
    /// (the probe's own result sets the next deadline).
    pub(crate) fn on_failure(&mut self, now: Instant, probe: bool) -> Change {
        let change = match self.phase {
            Phase::Up => Change::WentDown,
            Phase::Probing if probe => Change::StillDown,
            Phase::Down { .. } if probe => Change::StillDown,
            _ => return Change::None,
        };
        self.phase = Phase::Down {
            retry_at: now + self.backoff.next_delay(),
        };
        change
    }

    /// Brings the next probe forward to `now`, while down and waiting: the
    /// backend answered something else (a config refresh), or a shutdown
    /// wants one more try before its deadline. True if it did.
    pub(crate) fn retry_now(&mut self, now: Instant) -> bool {
        match self.phase {
            Phase::Down { retry_at } if retry_at > now => {
                self.phase = Phase::Down { retry_at: now };
                true
            }
            _ => false,
        }
    }

    /// The backend answered a request (the probe, or a request that was in
    /// flight when it went down): it is up.
    pub(crate) fn on_answer(&mut self) -> Change {
        self.mark_up()
    }

    /// The probe's deadline passed: the worker sends a probe (returns true),
    /// or, with nothing to probe with (`has_backlog` false), the backend is
    /// assumed back.
    pub(crate) fn start_probe(&mut self, has_backlog: bool) -> Change {
        if has_backlog {
            self.phase = Phase::Probing;
            Change::None
        } else {
            self.mark_up()
        }
    }

    /// The probe could not be sent after all (its chunk was all duplicates).
    pub(crate) fn probe_not_sent(&mut self) -> Change {
        self.mark_up()
    }

    fn mark_up(&mut self) -> Change {
        let was_down = self.phase != Phase::Up;
        self.phase = Phase::Up;
        self.backoff.reset();
        if was_down {
            Change::CameBack
        } else {
            Change::None
        }
    }

    /// How `account`'s values go at `now`: by PUT unless a PUT got 403 less
    /// than [`PUT_RECHECK`] ago.
    pub(crate) fn mode(&self, account: u64, now: Instant) -> Mode {
        let forbidden = self
            .put_forbidden
            .get(&account)
            .is_some_and(|since| now.saturating_duration_since(*since) < PUT_RECHECK);
        if forbidden { Mode::Post } else { Mode::Put }
    }

    /// A PUT to `account` got 403 at `now`. Returns true when the account's
    /// mode changed (to be logged once).
    pub(crate) fn on_put_forbidden(&mut self, account: u64, now: Instant) -> bool {
        self.put_forbidden.insert(account, now);
        self.modes.insert(account, Mode::Post) != Some(Mode::Post)
    }

    /// A PUT to `account` was accepted. Returns true when the account's mode
    /// changed (the first PUT, or PUT allowed again after a re-check).
    pub(crate) fn on_put_delivered(&mut self, account: u64) -> bool {
        self.put_forbidden.remove(&account);
        self.modes.insert(account, Mode::Put) != Some(Mode::Put)
    }

    /// How many accounts are in each mode, for the metric: `(put, post)`.
    pub(crate) fn mode_counts(&self) -> (usize, usize) {
        let post = self.modes.values().filter(|&&m| m == Mode::Post).count();
        (self.modes.len() - post, post)
    }

    /// Whether a shutdown with `deadline` is complete once nothing is open,
    /// waiting or in flight (`idle`): the backlog is empty, or the backend is
    /// down and its next probe would come after the deadline.
    pub(crate) fn shutdown_complete(
        &self,
        idle: bool,
        backlog_queued: usize,
        deadline: Instant,
    ) -> bool {
        idle && (backlog_queued == 0 || self.retry_at().is_some_and(|at| at >= deadline))
    }
}

/// What happens to the values left at the end of a shutdown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Leftover {
    /// Kept in the spool for the next start.
    pub(crate) spooled: u64,
    /// Lost, and counted as dropped (`shutdown`).
    pub(crate) dropped: u64,
}

/// The values left at the end of a shutdown: spooled with a spool
/// (`durable`), else dropped.
pub(crate) fn leftover(durable: bool, left: u64) -> Leftover {
    if durable {
        Leftover {
            spooled: left,
            dropped: 0,
        }
    } else {
        Leftover {
            spooled: 0,
            dropped: left,
        }
    }
}

#[cfg(test)]
mod tests;
