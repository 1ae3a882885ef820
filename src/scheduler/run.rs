//! Running a job: starting runs in batches, one run under its timeout, and
//! freeing the job afterwards.
//!
//! A starter task makes the first poll of up to [`RUN_BATCH`] runs, and a run
//! that does not finish there goes on in its own task. A run waits for a slot
//! under the global limit, runs the collector under a timeout with panics
//! caught, reports the outcome, and then frees the job for its next firing,
//! starting the queued one if there is one.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::FutureExt;
use tokio::time::Instant;

use super::RunOutcome;
use super::RunReport;
use super::log_budget::LogBudget;
use super::queue::{RunState, lock_run};
use super::shared::{Shared, Start, lateness, panic_message, run_timeout};
use super::timing::Millis;
use crate::job::{JobSpec, Tick};
use crate::text::{MAX_ERROR_BYTES, bounded};

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
/// own task, so a run that waits never holds up another. (A run that blocks
/// its thread before its first await holds up the rest of its batch.)
pub(super) fn start_runs<P: Send + Sync + 'static>(shared: &Arc<Shared<P>>, starts: Vec<Start<P>>) {
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
    let outcome = guarded((shared.run)(tick.clone(), spec.clone()), timeout).await;
    log_outcome(&job.run, &shared.log_budget, &spec, &outcome, timeout);
    drop(permit);
    let duration = started.elapsed();
    let last_error = outcome.error();
    shared.report(RunReport {
        job: spec.id.clone(),
        account: spec.account,
        labels: spec.labels.clone(),
        lateness: lateness(&tick, started_wall),
        tick,
        duration,
        missed,
        outcome,
    });
    job.finish(Some((started_wall, duration, last_error)));
}

/// Runs one run of a job under `timeout`, with its panics caught: what
/// every run of the scheduler goes through, and `--once` too.
pub(crate) async fn guarded<E: std::fmt::Display>(
    run: impl Future<Output = Result<Vec<crate::value::Value>, E>>,
    timeout: Duration,
) -> RunOutcome {
    let run = AssertUnwindSafe(run).catch_unwind();
    match within(Instant::now() + timeout, run).await {
        Some(Ok(Ok(values))) => RunOutcome::Ok(values),
        Some(Ok(Err(e))) => RunOutcome::Error(bounded(&e.to_string(), MAX_ERROR_BYTES)),
        Some(Err(panic)) => RunOutcome::Panicked(bounded(&panic_message(&*panic), MAX_ERROR_BYTES)),
        None => RunOutcome::Timeout,
    }
}

/// Logs a run's failure when the job starts failing, every time the count of
/// failures in a row reaches a power of two (1, 2, 4, … 1,024, 2,048: a
/// handful of lines a day for a job that keeps failing), and when it
/// recovers; the other failures at debug level. Every failure is counted in
/// the runs metric and shown on the status page all the same.
fn log_outcome<P>(
    run: &Mutex<RunState<P>>,
    budget: &LogBudget,
    spec: &JobSpec<P>,
    outcome: &RunOutcome,
    timeout: Duration,
) {
    let failures = {
        let mut state = lock_run(run);
        match outcome {
            RunOutcome::Ok(_) | RunOutcome::Skipped => std::mem::take(&mut state.failures),
            _ => {
                state.failures += 1;
                state.failures
            }
        }
    };
    let (job, labels) = (&spec.id, &spec.labels);
    let error = match outcome {
        RunOutcome::Ok(_) | RunOutcome::Skipped => {
            if failures > 0 && budget.take(true) {
                tracing::info!(job = %job, labels = %Labels(labels), failures, "job runs again after failing");
            }
            return;
        }
        RunOutcome::Error(e) => e.clone(),
        RunOutcome::Panicked(message) => format!("panicked: {message}"),
        RunOutcome::Timeout => format!("timed out after {} ms", timeout.as_millis()),
    };
    if failures.is_power_of_two() && budget.take(false) {
        if failures == 1 {
            tracing::warn!(job = %job, labels = %Labels(labels), %error, "job run failed");
        } else {
            tracing::warn!(job = %job, labels = %Labels(labels), %error, failures, "job run still failing ({failures} times in a row)");
        }
    } else {
        tracing::debug!(job = %job, labels = %Labels(labels), %error, failures, "job run failed again");
    }
}

/// A job's labels in a log line: `entity=2,name=router`, not a `Debug`
/// dump of the pairs.
struct Labels<'a>(&'a [(String, String)]);

impl std::fmt::Display for Labels<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (name, value)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{name}={value}")?;
        }
        Ok(())
    }
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

#[cfg(test)]
mod guarded_tests {
    use super::*;

    /// A run's error from a hostile device: 1 MB, with a forged log line in
    /// it. What the scheduler keeps, logs and shows is one bounded line.
    #[tokio::test]
    async fn an_error_is_kept_on_one_line_and_bounded() {
        let hostile = format!("x\nERROR FORGED LINE \u{1b}[2J{}", "v".repeat(1 << 20));
        let run = async move { Err::<Vec<crate::value::Value>, _>(hostile) };
        let RunOutcome::Error(error) = guarded(run, Duration::from_secs(1)).await else {
            panic!("not an error");
        };
        assert!(error.starts_with("x\\nERROR FORGED LINE \\e[2J"), "{error}");
        assert!(!error.contains('\n') && error.len() < MAX_ERROR_BYTES + 40);
        let panicking = async { panic!("{}", "p\n".repeat(10_000)) };
        let RunOutcome::Panicked(message) =
            guarded::<String>(panicking, Duration::from_secs(1)).await
        else {
            panic!("not a panic");
        };
        assert!(!message.contains('\n') && message.len() < MAX_ERROR_BYTES + 40);
    }
}
