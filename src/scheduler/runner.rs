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
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::queue::{Due, Queued, RunState, State, lock_run};
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
    /// Runs in flight (including runs of jobs removed since they started).
    pub running: AtomicUsize,
    /// Set by shutdown: no new runs start.
    pub stopping: AtomicBool,
    /// Numbers the runs.
    pub runs: AtomicU64,
    pub timer: Mutex<Option<JoinHandle<()>>>,
    /// Cancelled if the timer loop died of a panic: nothing fires any more.
    pub failed: CancellationToken,
}

impl<P> Shared<P> {
    /// Locks the state. A panic never happens while it is held, but if one
    /// did, the state is still consistent enough to go on.
    pub fn lock(&self) -> MutexGuard<'_, State<P>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Calls the report callback, catching a panic in it.
    fn report(&self, report: RunReport) {
        if let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(|| (self.report)(report))) {
            tracing::error!(
                panic = panic_message(&*panic),
                "the report callback panicked"
            );
        }
    }
}

/// The most firings handled per lock of the state, so that run tasks
/// finishing on other threads are not held up by a large batch.
const BATCH: usize = 128;

/// The timer loop, guarded: if it ever panics, the scheduler is marked failed
/// (see [`SchedulerHandle::failed`](super::SchedulerHandle::failed)) instead
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
            let mut starts = Vec::new();
            let mut skipped = Vec::new();
            let (more, next) = {
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
                let due = state.pop_due(now, BATCH);
                let more = due.len() == BATCH;
                for d in due {
                    match fire(&shared, &mut state, d, now) {
                        Some(Fired::Start(start)) => starts.push(start),
                        Some(Fired::Skipped(report)) => skipped.push(report),
                        None => {}
                    }
                }
                (more, state.next_wake())
            };
            for start in starts {
                spawn_run(&shared, start);
            }
            for r in skipped {
                shared.report(r);
            }
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

/// A run that was decided on under the lock, to be spawned after it.
pub(crate) struct Start<P> {
    run: Arc<Mutex<RunState<P>>>,
    spec: Arc<JobSpec<P>>,
    tick: Tick,
    missed: u64,
    timeout: Duration,
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
            timeout: run_timeout(&shared.options, &e.spec),
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
        lateness: lateness(&tick, now),
        tick,
        duration: Duration::ZERO,
        missed,
        outcome: RunOutcome::Skipped,
    }))
}

/// A run's timeout: the configured one, or the job's smallest interval.
fn run_timeout<P>(options: &SchedulerOptions, spec: &JobSpec<P>) -> Duration {
    options
        .run_timeout
        .unwrap_or_else(|| Duration::from_secs(u64::from(spec.intervals.smallest())))
}

fn lateness(tick: &Tick, now: Millis) -> Duration {
    Duration::from_millis((now - system_to_millis(tick.at)).max(0) as u64)
}

/// Spawns the task of a run; its job is already marked running.
fn spawn_run<P: Send + Sync + 'static>(shared: &Arc<Shared<P>>, start: Start<P>) {
    shared.running.fetch_add(1, Ordering::AcqRel);
    let number = shared.runs.fetch_add(1, Ordering::Relaxed);
    let job = RunningJob {
        shared: shared.clone(),
        run: start.run.clone(),
        number,
        done: false,
    };
    let task = tokio::spawn(run_task(
        job,
        start.spec,
        start.tick,
        start.missed,
        start.timeout,
    ));
    let mut run = lock_run(&start.run);
    if run.running && run.task.as_ref().is_none_or(|(n, _)| *n < number) {
        run.task = Some((number, task.abort_handle()));
    }
}

/// One run: wait for a slot, run under the timeout with panics caught, report.
async fn run_task<P: Send + Sync + 'static>(
    mut job: RunningJob<P>,
    spec: Arc<JobSpec<P>>,
    tick: Tick,
    missed: u64,
    timeout: Duration,
) {
    let shared = job.shared.clone();
    let permit = shared.permits.clone().acquire_owned().await;
    let clock = shared.options.clock;
    let started_wall = clock.now();
    let started = Instant::now();
    let run = AssertUnwindSafe((shared.run)(tick.clone(), spec.clone())).catch_unwind();
    let outcome = match tokio::time::timeout(timeout, run).await {
        Ok(Ok(Ok(values))) => RunOutcome::Ok(values),
        Ok(Ok(Err(e))) => {
            tracing::warn!(job = %spec.id, labels = ?spec.labels, error = %e, "job run failed");
            RunOutcome::Error(e.to_string())
        }
        Ok(Err(panic)) => {
            let message = panic_message(&*panic);
            tracing::error!(job = %spec.id, labels = ?spec.labels, panic = %message, "job run panicked");
            RunOutcome::Panicked(message)
        }
        Err(_) => {
            tracing::warn!(
                job = %spec.id,
                labels = ?spec.labels,
                timeout_ms = timeout.as_millis() as u64,
                "job run timed out"
            );
            RunOutcome::Timeout
        }
    };
    drop(permit);
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
    run: Arc<Mutex<RunState<P>>>,
    /// This run's number, to tell its task from a later run's.
    number: u64,
    done: bool,
}

impl<P: Send + Sync + 'static> RunningJob<P> {
    /// Records the run (`None` if aborted), frees the job or starts its
    /// queued firing. Takes only the job's own lock.
    fn finish(&mut self, result: Option<(Millis, Duration, Option<String>)>) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let stopping = result.is_none() || self.shared.stopping.load(Ordering::Acquire);
        let next = {
            let mut run = lock_run(&self.run);
            if let Some((started, duration, error)) = result {
                run.last_run = Some(started);
                run.last_duration = Some(duration);
                run.last_error = error;
            }
            let queued = run.queued.take().filter(|_| !stopping && !run.removed);
            run.running = queued.is_some();
            if run.task.as_ref().is_some_and(|(n, _)| *n <= self.number) {
                run.task = None;
            }
            queued
        };
        if let Some(q) = next {
            let start = Start {
                run: self.run.clone(),
                timeout: run_timeout(&self.shared.options, &q.spec),
                spec: q.spec,
                tick: q.tick,
                missed: q.missed,
            };
            spawn_run(&self.shared, start);
        }
        if self.shared.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.idle.notify_one();
        }
    }
}

impl<P: Send + Sync + 'static> Drop for RunningJob<P> {
    fn drop(&mut self) {
        // Aborted (at the shutdown deadline, or with the runtime): free the
        // job and start nothing.
        self.finish(None);
    }
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

/// The message of a panic payload (`&str` or `String`), or a placeholder.
pub(crate) fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_string()
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
