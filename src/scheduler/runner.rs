//! Running jobs: the timer loop, one task per run, and shutdown.
//!
//! The timer loop sleeps until the earliest queued firing (or a sync wakes it),
//! pops the due firings and starts a run task for each. A run task waits for a
//! slot under the global limit, runs the collector under a timeout with panics
//! caught, reports the outcome, and then frees the job for its next firing,
//! starting the queued one if there is one.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::queue::{Due, State};
use super::timing::{Millis, system_to_millis};
use super::{OverlapPolicy, RunOutcome, RunReport, SchedulerOptions};
use crate::{BoxError, JobSpec, Tick, Value};

/// A collector's `run`, with its type erased so that the scheduler is generic
/// over the params only.
pub(crate) type RunFn<P> = Box<
    dyn Fn(
            Tick,
            Arc<JobSpec<P>>,
        ) -> Pin<Box<dyn Future<Output = Result<Vec<Value>, BoxError>> + Send>>
        + Send
        + Sync,
>;

/// How far the wall clock may step back before every job is rescheduled.
const CLOCK_STEP_BACK: Millis = 1000;

/// The longest sleep on the system clock, so that a step of the wall clock is
/// noticed within this time.
const MAX_SYSTEM_SLEEP: Duration = Duration::from_secs(1);

/// What the timer loop, the run tasks and the handle share.
pub(crate) struct Shared<P> {
    pub state: Mutex<State<P>>,
    /// Wakes the timer loop (after a sync).
    pub wake: Notify,
    /// Signalled when a run finishes (for shutdown's drain).
    pub idle: Notify,
    pub permits: Arc<Semaphore>,
    pub run: RunFn<P>,
    pub report: Box<dyn Fn(RunReport) + Send + Sync>,
    pub options: SchedulerOptions,
    pub stop: CancellationToken,
    pub timer: Mutex<Option<JoinHandle<()>>>,
}

impl<P> Shared<P> {
    /// Locks the state. A panic never happens while it is held, but if one
    /// did, the state is still consistent enough to go on.
    pub fn lock(&self) -> MutexGuard<'_, State<P>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Calls the report callback, catching a panic in it.
    fn report(&self, report: RunReport) {
        let job = report.job.clone();
        if let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(|| (self.report)(report))) {
            tracing::error!(job = %job, panic = panic_message(&*panic), "the report callback panicked");
        }
    }
}

/// The timer loop: fires due jobs until the scheduler is stopped.
pub(crate) async fn timer_loop<P: Send + Sync + 'static>(shared: Arc<Shared<P>>) {
    let clock = shared.options.clock;
    loop {
        let (next, skipped) = {
            let mut state = shared.lock();
            let now = clock.now();
            if clock.is_system() && now < state.last_now - CLOCK_STEP_BACK {
                tracing::warn!(
                    step_ms = state.last_now - now,
                    "the wall clock stepped back; rescheduling every job"
                );
                state.reschedule_all(now);
            }
            state.last_now = now;
            let due = state.pop_due(now);
            let mut skipped = Vec::new();
            for d in due {
                if let Some(r) = fire(&shared, &mut state, d, now) {
                    skipped.push(r);
                }
            }
            (state.next_wake(), skipped)
        };
        for r in skipped {
            shared.report(r);
        }
        let mut deadline = next.map(|at| clock.instant_of(at));
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

/// Handles one due firing: starts a run, or applies the overlap policy.
/// Returns a report to deliver (after the lock is released) when skipped.
fn fire<P: Send + Sync + 'static>(
    shared: &Arc<Shared<P>>,
    state: &mut State<P>,
    due: Due,
    now: Millis,
) -> Option<RunReport> {
    let overlap = shared.options.overlap;
    let e = state.entry_mut(due.slot)?;
    if e.run.is_none() {
        start_run(shared, state, due.slot, due.tick, due.missed);
        return None;
    }
    let skipped = match overlap {
        OverlapPolicy::Skip => Some((due.tick, due.missed)),
        OverlapPolicy::QueueOne => e.queued.replace((due.tick, due.missed)),
    };
    let (tick, missed) = skipped?;
    tracing::debug!(job = %e.spec.id, "skipped a firing: the previous run is still going");
    Some(RunReport {
        job: e.spec.id.clone(),
        account: e.spec.account,
        lateness: lateness(&tick, now),
        tick,
        duration: Duration::ZERO,
        missed,
        outcome: RunOutcome::Skipped,
    })
}

fn lateness(tick: &Tick, now: Millis) -> Duration {
    Duration::from_millis((now - system_to_millis(tick.at)).max(0) as u64)
}

/// Spawns the run task for the job in `slot` and marks the job running.
fn start_run<P: Send + Sync + 'static>(
    shared: &Arc<Shared<P>>,
    state: &mut State<P>,
    slot: u32,
    tick: Tick,
    missed: u64,
) {
    let run_id = state.fresh();
    let Some(e) = state.entry_mut(slot) else {
        return;
    };
    e.run = Some(run_id);
    let job = RunningJob {
        shared: shared.clone(),
        slot,
        incarnation: e.incarnation,
        run_id,
        done: false,
    };
    let task = tokio::spawn(run_task(job, e.spec.clone(), tick, missed));
    state.running.insert(run_id, task.abort_handle());
}

/// One run: wait for a slot, run under the timeout with panics caught, report.
async fn run_task<P: Send + Sync + 'static>(
    mut job: RunningJob<P>,
    spec: Arc<JobSpec<P>>,
    tick: Tick,
    missed: u64,
) {
    let shared = job.shared.clone();
    let _permit = shared.permits.clone().acquire_owned().await;
    let clock = shared.options.clock;
    let started_wall = clock.now();
    let started = Instant::now();
    let timeout = shared
        .options
        .run_timeout
        .unwrap_or_else(|| Duration::from_secs(u64::from(spec.intervals.smallest())));
    let run = AssertUnwindSafe((shared.run)(tick.clone(), spec.clone())).catch_unwind();
    let outcome = match tokio::time::timeout(timeout, run).await {
        Ok(Ok(Ok(values))) => RunOutcome::Ok(values),
        Ok(Ok(Err(e))) => {
            tracing::warn!(job = %spec.id, error = %e, "job run failed");
            RunOutcome::Error(e.to_string())
        }
        Ok(Err(panic)) => {
            let message = panic_message(&*panic);
            tracing::error!(job = %spec.id, panic = %message, "job run panicked");
            RunOutcome::Panicked(message)
        }
        Err(_) => {
            tracing::warn!(job = %spec.id, timeout_ms = timeout.as_millis() as u64, "job run timed out");
            RunOutcome::Timeout
        }
    };
    drop(_permit);
    let duration = started.elapsed();
    let last_error = outcome.error();
    shared.report(RunReport {
        job: spec.id.clone(),
        account: spec.account,
        lateness: lateness(&tick, started_wall),
        tick,
        duration,
        missed,
        outcome,
    });
    job.finish(Some((started_wall, duration, last_error)));
}

/// A run in flight. Frees its job when finished, or when dropped (aborted).
struct RunningJob<P: Send + Sync + 'static> {
    shared: Arc<Shared<P>>,
    slot: u32,
    incarnation: u64,
    run_id: u64,
    done: bool,
}

impl<P: Send + Sync + 'static> RunningJob<P> {
    /// Records the run (if it finished), frees the job and starts its queued
    /// firing if any.
    fn finish(&mut self, result: Option<(Millis, Duration, Option<String>)>) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let result_given = result.is_some();
        let mut state = self.shared.lock();
        state.running.remove(&self.run_id);
        let stopping = state.stopping;
        let queued = match state.entry_mut(self.slot) {
            Some(e) if e.incarnation == self.incarnation => {
                if let Some((started, duration, error)) = result {
                    e.last_run = Some(started);
                    e.last_duration = Some(duration);
                    e.last_error = error;
                }
                e.run = None;
                e.queued.take()
            }
            _ => None,
        };
        // An aborted run (no result) starts nothing.
        if let (Some((tick, missed)), false, true) = (queued, stopping, result_given) {
            start_run(&self.shared, &mut state, self.slot, tick, missed);
        }
        drop(state);
        self.shared.idle.notify_one();
    }
}

impl<P: Send + Sync + 'static> Drop for RunningJob<P> {
    fn drop(&mut self) {
        if !self.done {
            // Aborted (at shutdown): free the job, start nothing.
            self.finish(None);
        }
    }
}

/// Stops the timer loop, drains runs up to `deadline`, aborts the rest.
pub(crate) async fn shutdown<P>(shared: &Shared<P>, deadline: Duration) {
    shared.stop.cancel();
    {
        let mut state = shared.lock();
        state.stopping = true;
    }
    let timer = shared
        .timer
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    if let Some(timer) = timer {
        let _ = timer.await;
    }
    let drained = tokio::time::timeout(deadline, async {
        loop {
            let idle = shared.idle.notified();
            if shared.lock().running.is_empty() {
                break;
            }
            idle.await;
        }
    })
    .await;
    if drained.is_err() {
        let handles: Vec<_> = shared.lock().running.values().cloned().collect();
        tracing::warn!(
            runs = handles.len(),
            "aborting job runs still going at the shutdown deadline"
        );
        for h in handles {
            h.abort();
        }
    }
}

/// The message of a panic payload (`&str` or `String`), or a placeholder.
fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_string()
    }
}
