//! The bot's life as the tools around it see it: reloads asked for by
//! SIGHUP or `POST /-/reload` (with `--web.enable-lifecycle`, as Prometheus
//! does), and systemd's `Type=notify` protocol (`READY=1`, `RELOADING=1`,
//! `STOPPING=1`, `STATUS=`, and `WATCHDOG=1` while the runtime is healthy).

use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::sync::{Notify, watch};
use tracing::{debug, warn};

/// Reloads: asked for by SIGHUP or `POST /-/reload`, done by the refresh
/// loop, which says when each is over and how it went. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Reloads {
    asked: Arc<Notify>,
    state: Arc<watch::Sender<ReloadState>>,
}

/// How many reloads began and ended, and how the last one went.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ReloadState {
    pub(crate) started: u64,
    pub(crate) finished: u64,
    /// Why the last finished reload failed; `None` if it worked.
    pub(crate) error: Option<String>,
}

impl Default for Reloads {
    fn default() -> Self {
        Self {
            asked: Arc::default(),
            state: Arc::new(watch::Sender::new(ReloadState::default())),
        }
    }
}

impl Reloads {
    /// Asks for a reload (coalesced with one already asked for).
    pub(crate) fn ask(&self) {
        self.asked.notify_one();
    }

    /// Completes when a reload is asked for.
    pub(crate) async fn asked(&self) {
        self.asked.notified().await;
    }

    /// Marks a reload begun.
    pub(crate) fn begin(&self) {
        self.state.send_modify(|s| s.started += 1);
    }

    /// Marks the reload under way over, with its error if it failed.
    pub(crate) fn end(&self, error: Option<String>) {
        self.state.send_modify(|s| {
            s.finished = s.started;
            s.error = error;
        });
    }

    /// Asks for a reload and waits until one that began after this call is
    /// over: `Ok` if it worked, else why not. `None` if `limit` passed first.
    pub(crate) async fn reload(&self, limit: Duration) -> Option<Result<(), String>> {
        let mut rx = self.state.subscribe();
        let target = {
            let s = rx.borrow();
            // One under way began before this call: wait for the next.
            s.started.max(s.finished) + 1
        };
        self.ask();
        let done = tokio::time::timeout(limit, rx.wait_for(|s| s.finished >= target)).await;
        match done {
            Ok(Ok(s)) => Some(match &s.error {
                None => Ok(()),
                Some(e) => Err(e.clone()),
            }),
            Ok(Err(_)) | Err(_) => None,
        }
    }
}

/// systemd's notification socket (`NOTIFY_SOCKET`), when the bot runs as a
/// `Type=notify` unit; every call does nothing otherwise.
#[derive(Clone, Debug, Default)]
pub(crate) struct Systemd {
    enabled: bool,
}

impl Systemd {
    /// Reads `NOTIFY_SOCKET` (left in the environment).
    pub(crate) fn from_env() -> Self {
        Self {
            enabled: std::env::var_os("NOTIFY_SOCKET").is_some(),
        }
    }

    fn send(&self, states: &[NotifyState<'_>]) {
        if !self.enabled {
            return;
        }
        if let Err(e) = sd_notify::notify(false, states) {
            debug!(error = %e, "cannot notify systemd");
        }
    }

    /// `READY=1`, with a status line.
    pub(crate) fn ready(&self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// `RELOADING=1` (with the time, as `Type=notify-reload` wants).
    pub(crate) fn reloading(&self) {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => self.send(&[NotifyState::Reloading, now]),
            Err(_) => self.send(&[NotifyState::Reloading]),
        }
    }

    /// `STOPPING=1`.
    pub(crate) fn stopping(&self) {
        self.send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    }

    /// `STATUS=…`.
    pub(crate) fn status(&self, status: &str) {
        self.send(&[NotifyState::Status(status)]);
    }

    /// The watchdog's period when the unit has `WatchdogSec=` (from
    /// `WATCHDOG_USEC`, for this process per `WATCHDOG_PID`).
    pub(crate) fn watchdog_period(&self) -> Option<Duration> {
        if !self.enabled {
            return None;
        }
        let mut usec = 0;
        sd_notify::watchdog_enabled(false, &mut usec).then(|| Duration::from_micros(usec))
    }

    /// Sends `WATCHDOG=1` at half of `period` for as long as the runtime runs
    /// it: a runtime whose threads are all blocked (a wedged bot) does not,
    /// and systemd restarts the bot. A beat that comes late by more than half
    /// a period is not sent either.
    pub(crate) async fn watchdog(self, period: Duration) {
        let every = period / 2;
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let late = tick.tick().await.elapsed();
            if late > every / 2 {
                warn!(
                    late_ms = late.as_millis() as u64,
                    "the runtime was blocked: a watchdog beat came late and was not sent"
                );
                continue;
            }
            self.send(&[NotifyState::Watchdog]);
        }
    }
}
