//! Running jobs: the timer loop, one task per run, and shutdown.
//!
//! The timer loop sleeps until the earliest queued firing (or a sync wakes it),
//! pops the due firings and starts their runs: a starter task makes the first
//! poll of up to [`RUN_BATCH`] runs, and a run that does not finish there goes
//! on in its own task. A run waits for a slot under the global limit, runs the
//! collector under a timeout with panics caught, reports the outcome, and then
//! frees the job for its next firing, starting the queued one if there is one.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
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
    /// Held for the whole of a sync, so that syncs do not interleave.
    pub syncing: tokio::sync::Mutex<()>,
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
        lateness: lateness(&tick, now),
        tick,
        duration: Duration::ZERO,
        missed,
        outcome: RunOutcome::Skipped,
    }))
}

/// A run's timeout: the configured one, or the job's smallest interval (in
/// seconds).
fn run_timeout(options: &SchedulerOptions, smallest: u32) -> Duration {
    options
        .run_timeout
        .unwrap_or_else(|| Duration::from_secs(u64::from(smallest)))
}

fn lateness(tick: &Tick, now: Millis) -> Duration {
    Duration::from_millis((now - system_to_millis(tick.at)).max(0) as u64)
}

/// The most runs whose first poll one starter task makes.
const RUN_BATCH: usize = 64;

/// A run that is counted and owns its job, waiting for its first poll.
struct Ready<P: Send + Sync + 'static> {
    job: RunningJob<P>,
    spec: Arc<JobSpec<P>>,
    tick: Tick,
    missed: u64,
    timeout: Duration,
}

/// Counts a run as in flight, so that shutdown waits for it from now on.
fn prepare<P: Send + Sync + 'static>(shared: &Arc<Shared<P>>, start: Start<P>) -> Ready<P> {
    shared.running.fetch_add(1, Ordering::AcqRel);
    Ready {
        job: RunningJob {
            shared: shared.clone(),
            run: start.run,
            number: shared.runs.fetch_add(1, Ordering::Relaxed),
            done: false,
        },
        spec: start.spec,
        tick: start.tick,
        missed: start.missed,
        timeout: start.timeout,
    }
}

/// Starts runs whose jobs are already marked running.
///
/// One starter task per [`RUN_BATCH`] runs makes each run's first poll, so
/// that a burst of runs costs a few task spawns instead of one each, and the
/// starters spread over the runtime's workers. A run that does not finish in
/// its first poll (one that waits for I/O, a slot or a timer) goes on in its
/// own task, so a slow run never holds up another.
fn start_runs<P: Send + Sync + 'static>(shared: &Arc<Shared<P>>, starts: Vec<Start<P>>) {
    let mut ready = starts.into_iter().map(|start| prepare(shared, start));
    loop {
        let batch: Vec<Ready<P>> = ready.by_ref().take(RUN_BATCH).collect();
        if batch.is_empty() {
            break;
        }
        let mut batch = batch.into_iter();
        tokio::spawn(std::future::poll_fn(move |cx| {
            for ready in batch.by_ref() {
                begin(ready, cx);
            }
            Poll::Ready(())
        }));
    }
}

/// Makes a run's first poll, and spawns its task if it is not finished.
fn begin<P: Send + Sync + 'static>(ready: Ready<P>, cx: &mut Context<'_>) {
    let run = ready.job.run.clone();
    let number = ready.job.number;
    let mut task = Box::pin(run_task(
        ready.job,
        ready.spec,
        ready.tick,
        ready.missed,
        ready.timeout,
    ));
    // The first poll is not charged to the starter's cooperative budget, so
    // that the last runs of a batch do not find it spent and yield at once.
    if Pin::new(&mut tokio::task::unconstrained(task.as_mut()))
        .poll(cx)
        .is_ready()
    {
        return;
    }
    // The future re-registers its wakers with the new task when it is polled
    // there; a wake meanwhile only wakes the starter, which is harmless.
    let task = tokio::spawn(task);
    let mut run = lock_run(&run);
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
    let permit = shared.permits.acquire().await;
    let clock = shared.options.clock;
    let started_wall = clock.now();
    let started = Instant::now();
    let run = AssertUnwindSafe((shared.run)(tick.clone(), spec.clone())).catch_unwind();
    let outcome = match within(started + timeout, run).await {
        Some(Ok(Ok(values))) => RunOutcome::Ok(values),
        Some(Ok(Err(e))) => {
            tracing::warn!(job = %spec.id, labels = ?spec.labels, error = %e, "job run failed");
            RunOutcome::Error(e.to_string())
        }
        Some(Err(panic)) => {
            let message = panic_message(&*panic);
            tracing::error!(job = %spec.id, labels = ?spec.labels, panic = %message, "job run panicked");
            RunOutcome::Panicked(message)
        }
        None => {
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

/// `run` until `deadline`, or `None` if it is not done by then. The timer is
/// only set if the first poll does not finish the run.
async fn within<F: Future>(deadline: Instant, run: F) -> Option<F::Output> {
    let mut run = std::pin::pin!(run);
    let first = std::future::poll_fn(|cx| Poll::Ready(run.as_mut().poll(cx))).await;
    match first {
        Poll::Ready(output) => Some(output),
        Poll::Pending => tokio::time::timeout_at(deadline, run).await.ok(),
    }
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
                timeout: run_timeout(&self.shared.options, q.spec.intervals.smallest()),
                spec: q.spec,
                tick: q.tick,
                missed: q.missed,
            };
            start_runs(&self.shared, vec![start]);
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
