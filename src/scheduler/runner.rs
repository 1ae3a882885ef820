//! The timer loop, and shutdown.
//!
//! The timer loop sleeps until the earliest queued firing (or a sync wakes it),
//! pops the due firings, applies the overlap policy, and hands the runs to
//! [`run`](super::run). Shutdown stops it, drains the runs and aborts the rest.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::FutureExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::queue::{Due, Queued, State, lock_run};
use super::run::start_runs;
use super::shared::{Shared, Start, lateness, panic_message, run_timeout};
use super::timing::Millis;
use super::{OverlapPolicy, RunOutcome, RunReport};

/// How far the wall clock may step back before every job is rescheduled.
const CLOCK_STEP_BACK: Millis = 1000;

/// The longest sleep on the system clock, so that a step of the wall clock is
/// noticed within this time.
const MAX_SYSTEM_SLEEP: Duration = Duration::from_secs(1);

/// The most firings handled per lock of the state, so that run tasks
/// finishing on other threads are not held up by a large batch.
const BATCH: usize = 128;

/// The timer loop, guarded: if it ever panics, the scheduler is marked failed
/// (see [`Scheduler::failed`](super::Scheduler::failed)) instead
/// of silently firing nothing.
pub(crate) async fn guarded_timer_loop<P: Send + Sync + 'static>(shared: Arc<Shared<P>>) {
    let failed = shared.failed.clone();
    guard(timer_loop(shared), failed).await;
}

/// Runs `task`; if it panics, logs it and cancels `failed`.
pub(crate) async fn guard(task: impl Future<Output = ()>, failed: CancellationToken) {
    if let Err(panic) = AssertUnwindSafe(task).catch_unwind().await {
        tracing::error!(
            panic = panic_message(&*panic),
            "the scheduler's timer task panicked; no job will fire any more"
        );
        failed.cancel();
    }
}

/// The timer loop: fires due jobs until the scheduler is stopped.
pub(crate) async fn timer_loop<P: Send + Sync + 'static>(shared: Arc<Shared<P>>) {
    let clock = shared.options.clock;
    let resolution = (shared.options.timer_resolution.as_millis() as Millis).max(1);
    loop {
        let now = clock.now();
        let next = loop {
            let (taken, next) = {
                let mut state = shared.lock();
                if clock.is_system() && now < state.last_now.saturating_sub(CLOCK_STEP_BACK) {
                    let step = state.last_now - now;
                    tracing::warn!(
                        step_ms = step,
                        "the wall clock stepped back; rescheduling every job"
                    );
                    state.reschedule_all(now);
                }
                state.last_now = now;
                (take_due(&shared, &mut state, now), state.next_wake())
            };
            let more = taken.more;
            taken.act(&shared);
            if !more {
                break next;
            }
            // Let this thread run some of the spawned runs too.
            tokio::task::yield_now().await;
        };
        let mut deadline = next.map(|at| clock.instant_of(round_up(at, resolution)));
        if clock.is_system() {
            let cap = Instant::now() + MAX_SYSTEM_SLEEP;
            deadline = Some(deadline.map_or(cap, |d| d.min(cap)));
        }
        let sleep = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now));
        tokio::select! {
            biased;
            () = shared.stop.cancelled() => break,
            () = shared.wake.notified() => {}
            () = sleep, if deadline.is_some() => {}
        }
    }
}

/// Due firings taken off the queue under the lock, to act on after it.
pub(crate) struct Taken<P: Send + Sync + 'static> {
    starts: Vec<Start<P>>,
    skipped: Vec<RunReport>,
    /// Whether more firings may be due (a full batch was taken).
    more: bool,
}

/// Takes up to [`BATCH`] firings due at `now` off the queue and decides what
/// each becomes (a run, or a skip under the overlap policy). The timer loop
/// calls it, and so does a long sync between its batches.
pub(crate) fn take_due<P: Send + Sync + 'static>(
    shared: &Shared<P>,
    state: &mut State<P>,
    now: Millis,
) -> Taken<P> {
    let due = state.pop_due(now, BATCH);
    let mut taken = Taken {
        starts: Vec::new(),
        skipped: Vec::new(),
        more: due.len() == BATCH,
    };
    for d in due {
        match fire(shared, state, d, now) {
            Some(Fired::Start(start)) => taken.starts.push(start),
            Some(Fired::Skipped(report)) => taken.skipped.push(report),
            None => {}
        }
    }
    taken
}

impl<P: Send + Sync + 'static> Taken<P> {
    /// Starts the runs and reports the skips (with the lock released).
    pub(crate) fn act(self, shared: &Arc<Shared<P>>) {
        start_runs(shared, self.starts);
        for r in self.skipped {
            shared.report(r);
        }
    }
}

/// `at` rounded up to a multiple of `resolution`.
fn round_up(at: Millis, resolution: Millis) -> Millis {
    at.div_euclid(resolution) * resolution
        + if at.rem_euclid(resolution) == 0 {
            0
        } else {
            resolution
        }
}

/// What a due firing turned into.
enum Fired<P> {
    /// A run to spawn (once the lock is released).
    Start(Start<P>),
    /// A skipped firing to report (once the lock is released).
    Skipped(RunReport),
}

/// Handles one due firing: starts a run, or applies the overlap policy.
fn fire<P>(shared: &Shared<P>, state: &mut State<P>, due: Due, now: Millis) -> Option<Fired<P>> {
    if shared.stopping.load(Ordering::Acquire) {
        return None;
    }
    let e = state.entry_mut(due.slot)?;
    let mut run = lock_run(&e.run);
    if !run.running {
        run.running = true;
        drop(run);
        return Some(Fired::Start(Start {
            run: e.run.clone(),
            timeout: run_timeout(&shared.options, e.smallest),
            spec: e.spec.clone(),
            tick: due.tick,
            missed: due.missed,
        }));
    }
    let skipped = match shared.options.overlap {
        OverlapPolicy::Skip => Some((due.tick, due.missed)),
        OverlapPolicy::QueueOne => run
            .queued
            .replace(Queued {
                spec: e.spec.clone(),
                tick: due.tick,
                missed: due.missed,
            })
            .map(|q| (q.tick, q.missed)),
    };
    let (tick, missed) = skipped?;
    tracing::debug!(job = %e.spec.id, "skipped a firing: the previous run is still going");
    Some(Fired::Skipped(RunReport {
        job: e.spec.id.clone(),
        account: e.spec.account,
        labels: e.spec.labels.clone(),
        lateness: lateness(&tick, now),
        tick,
        duration: Duration::ZERO,
        missed,
        outcome: RunOutcome::Skipped,
    }))
}

/// Stops the timer loop, drains runs up to `deadline`, aborts the rest.
pub(crate) async fn shutdown<P>(shared: &Shared<P>, deadline: Duration) {
    shared.stop.cancel();
    shared.stopping.store(true, Ordering::Release);
    let timer = shared
        .timer
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    if let Some(timer) = timer {
        let _ = timer.await;
    }
    let drain = async {
        loop {
            let idle = shared.idle.notified();
            if shared.running.load(Ordering::Acquire) == 0 {
                break;
            }
            idle.await;
        }
    };
    if tokio::time::timeout(deadline, drain).await.is_err() {
        let tasks = shared.lock().running_tasks();
        tracing::warn!(
            runs = tasks.len(),
            "aborting job runs still going at the shutdown deadline"
        );
        for task in tasks {
            task.abort();
        }
    }
}

#[cfg(test)]
mod guard_tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_timer_task_marks_the_scheduler_failed() {
        let failed = CancellationToken::new();
        guard(async {}, failed.clone()).await;
        assert!(!failed.is_cancelled());
        guard(async { panic!("boom") }, failed.clone()).await;
        assert!(failed.is_cancelled());
    }
}
