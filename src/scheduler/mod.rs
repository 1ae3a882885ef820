//! The scheduler: fires each job at its intervals and runs it on tokio.
//!
//! One timer loop owns a queue of next firings (an ordered set keyed by wall
//! time), so an idle job costs a queue entry, not a task. When firings are
//! due the loop hands them to a starter task, which makes each run's first
//! poll; a run that is not finished by then goes on in a task of its own.
//! Every run has a timeout and waits for a slot under a global limit on
//! concurrent runs. Every run's outcome is handed to a `report` callback,
//! which the runtime uses to forward values and update metrics.
//!
//! Spread jobs with long intervals have their phases on a step of up to
//! 10 ms ([`Align::Spread`]), so that 100,000 jobs every minute fire on at
//! most 100 instants a second, each on time, and the timer wakes that often.
//!
//! The rules, in the order a firing meets them:
//!
//! - **When**: a job fires at `start + k·i` for each of its intervals `i`
//!   ([`Align`]); coinciding intervals give one firing whose [`Tick`] names all
//!   of them (see the `timing` module).
//! - **Late**: after a stall (a suspended process, a clock step) the missed
//!   firings of a job are folded into one run at the latest of them, never a
//!   burst; [`RunReport::missed`] counts what was folded away.
//! - **Overlap**: if the job's previous run is still going, the firing is
//!   skipped ([`OverlapPolicy::Skip`], reported as [`RunOutcome::Skipped`]) or
//!   queued to run once right after ([`OverlapPolicy::QueueOne`]).
//! - **Run**: a run that errs, panics or times out is logged with the job id
//!   and reported; it never affects other jobs or the scheduler.
//!
//! [`Scheduler::sync`] reconciles the job set by id: unchanged jobs keep
//! their next firing, changed ones are rescheduled, removed ones never fire
//! again (a run in flight finishes or meets its timeout).
//!
//! ```
//! use grafolean_collector::scheduler::{Scheduler, SchedulerOptions};
//! use grafolean_collector::{BoxError, Collector, Intervals, JobConfigs, JobSpec, Problems, Tick, Value};
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! struct Constant;
//!
//! impl Collector for Constant {
//!     type Params = f64;
//!     fn jobs(&self, _configs: &JobConfigs, _: &mut Problems) -> Vec<JobSpec<f64>> {
//!         vec![JobSpec::new("answer", Intervals::one(1).unwrap(), 42.0)]
//!     }
//!     async fn run(&self, _tick: Tick, params: &f64) -> Result<Vec<Value>, BoxError> {
//!         Ok(vec![Value::new("answer", *params)])
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let collector = Arc::new(Constant);
//! let scheduler = Scheduler::spawn(collector.clone(), SchedulerOptions::default(), |report| {
//!     println!("{} at {:?}: {:?}", report.job, report.tick.at, report.outcome);
//! });
//! let summary = scheduler
//!     .sync(collector.jobs(&JobConfigs::default(), &mut Problems::default()))
//!     .await;
//! assert_eq!(summary.added, 1);
//! scheduler.shutdown(Duration::from_secs(5)).await;
//! # }
//! ```

mod clock;
mod log_budget;
mod queue;
pub(crate) mod run;
mod runner;
pub(crate) mod shared;
mod timing;

#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::{CancellationToken, DropGuard};

pub(crate) use clock::Clock;

use crate::collector::Collector;
#[cfg(doc)]
use crate::job::Align;
use crate::job::{Intervals, JobId, JobSpec, Tick};
use crate::value::Value;
use queue::{Garbage, State};
use shared::{RunFn, Shared};

/// The default limit on runs going at once, across all jobs
/// ([`SchedulerOptions::max_concurrent_runs`]).
///
/// A firing that finds no free slot waits for one; its lateness grows, and if
/// it waits past the job's next firing, that firing is handled by the
/// [`OverlapPolicy`]. Raise it for bots whose runs mostly wait on the network.
pub(crate) const DEFAULT_MAX_CONCURRENT_RUNS: usize = 1000;

/// How the scheduler runs jobs. Build it with [`Default`] and the `with_*`
/// methods.
///
/// ```
/// use grafolean_collector::scheduler::{OverlapPolicy, SchedulerOptions};
/// use std::time::Duration;
///
/// let options = SchedulerOptions::default()
///     .with_max_concurrent_runs(100)
///     .with_overlap(OverlapPolicy::QueueOne)
///     .with_run_timeout(Duration::from_secs(3));
/// assert_eq!(options.max_concurrent_runs, 100);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SchedulerOptions {
    /// The most runs going at once, across all jobs. Default
    /// `DEFAULT_MAX_CONCURRENT_RUNS`; at least 1 is used.
    pub max_concurrent_runs: usize,
    /// What to do with a firing while the job's previous run is still going.
    pub overlap: OverlapPolicy,
    /// How long one run may take (after it got a slot under
    /// `max_concurrent_runs`). `None` (the default) gives each job its
    /// smallest interval; a run cut off then ends at the instant of the job's
    /// next firing, which may find it still running and skip.
    pub run_timeout: Option<Duration>,
    /// Where wall-clock time comes from. Default [`Clock::system`].
    pub(crate) clock: Clock,
    /// How finely the timer loop wakes: it sleeps until the next firing
    /// rounded up to a multiple of this (wall clock), and fires everything
    /// due by then. Default `DEFAULT_TIMER_RESOLUTION` (1 ms, tokio's own
    /// resolution). A coarser one trades lateness for fewer wakeups; spread
    /// jobs with long intervals already share wakes (see [`Align::Spread`]).
    pub timer_resolution: Duration,
}

/// How many specs a sync diffs per hold of the scheduler's lock (see
/// [`Scheduler::sync`]): a few ms of work.
pub(crate) const SYNC_BATCH: usize = 4096;

/// The default [`SchedulerOptions::timer_resolution`]: 1 ms.
pub(crate) const DEFAULT_TIMER_RESOLUTION: Duration = Duration::from_millis(1);

impl Default for SchedulerOptions {
    fn default() -> Self {
        Self {
            max_concurrent_runs: DEFAULT_MAX_CONCURRENT_RUNS,
            overlap: OverlapPolicy::default(),
            run_timeout: None,
            clock: Clock::system(),
            timer_resolution: DEFAULT_TIMER_RESOLUTION,
        }
    }
}

impl SchedulerOptions {
    /// Sets [`SchedulerOptions::max_concurrent_runs`].
    #[must_use]
    pub fn with_max_concurrent_runs(mut self, max: usize) -> Self {
        self.max_concurrent_runs = max;
        self
    }

    /// Sets [`SchedulerOptions::overlap`].
    #[must_use]
    pub fn with_overlap(mut self, overlap: OverlapPolicy) -> Self {
        self.overlap = overlap;
        self
    }

    /// Sets one timeout for every run ([`SchedulerOptions::run_timeout`]).
    #[must_use]
    pub fn with_run_timeout(mut self, timeout: Duration) -> Self {
        self.run_timeout = Some(timeout);
        self
    }

    /// Sets [`SchedulerOptions::timer_resolution`] (rounded to whole
    /// milliseconds, at least 1).
    #[must_use]
    pub fn with_timer_resolution(mut self, resolution: Duration) -> Self {
        self.timer_resolution = resolution;
        self
    }

    /// Sets the clock; tests use [`Clock::starting_at`] on tokio's paused clock.
    #[must_use]
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }
}

/// What to do when a job is due while its previous run is still going.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OverlapPolicy {
    /// Do not run; report [`RunOutcome::Skipped`]. The default.
    #[default]
    Skip,
    /// Run once right after the current run finishes. Further firings while
    /// one is queued replace it (the replaced one is reported as skipped), so
    /// at most one run waits.
    QueueOne,
}

/// The outcome of one firing of one job, handed to the `report` callback.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RunReport {
    /// The job.
    pub job: JobId,
    /// The Grafolean account the job's values go to.
    pub account: Option<u64>,
    /// The job's labels ([`JobSpec::labels`](crate::job::JobSpec::labels)).
    pub labels: Arc<[(String, String)]>,
    /// The firing: its intended time and the intervals due at it.
    pub tick: Tick,
    /// How long after `tick.at` the run started (or was skipped).
    pub lateness: Duration,
    /// How long the run took (zero when skipped).
    pub duration: Duration,
    /// Firings of this job that were folded into this one because the
    /// scheduler woke late (a stall); 0 normally.
    pub missed: u64,
    /// What happened.
    pub outcome: RunOutcome,
}

/// What one firing of a job came to.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum RunOutcome {
    /// The run returned these values.
    Ok(Vec<Value>),
    /// The run returned an error (its message).
    Error(String),
    /// The run was cancelled when it exceeded its timeout.
    Timeout,
    /// The run panicked (the panic message).
    Panicked(String),
    /// The job was due while its previous run was still going.
    Skipped,
}

impl RunOutcome {
    /// The failure message, or `None` for [`RunOutcome::Ok`] and
    /// [`RunOutcome::Skipped`].
    ///
    /// ```
    /// use grafolean_collector::scheduler::RunOutcome;
    /// assert_eq!(RunOutcome::Timeout.error().as_deref(), Some("timed out"));
    /// assert_eq!(RunOutcome::Ok(vec![]).error(), None);
    /// ```
    pub fn error(&self) -> Option<String> {
        match self {
            Self::Ok(_) | Self::Skipped => None,
            Self::Error(e) => Some(e.clone()),
            Self::Timeout => Some("timed out".to_string()),
            Self::Panicked(p) => Some(format!("panicked: {p}")),
        }
    }
}

/// A job's schedule and last run, for the status page.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct JobStatus {
    /// The job.
    pub id: JobId,
    /// Its intervals.
    pub intervals: Intervals,
    /// Its labels.
    pub labels: Vec<(String, String)>,
    /// When it fires next.
    pub next_firing: Option<SystemTime>,
    /// When its last finished run started.
    pub last_run: Option<SystemTime>,
    /// How long its last finished run took.
    pub last_duration: Option<Duration>,
    /// Why its last finished run failed; `None` if it succeeded.
    pub last_error: Option<String>,
    /// Whether a run is going (or waiting for a free slot).
    pub running: bool,
}

impl JobStatus {
    /// A job with no run yet, every 10 s: for tests of what shows it.
    #[cfg(test)]
    pub(crate) fn new(id: &str) -> Self {
        Self {
            id: JobId::new(id),
            intervals: Intervals::one(10).expect("10 s is an interval"),
            labels: Vec::new(),
            next_firing: None,
            last_run: None,
            last_duration: None,
            last_error: None,
            running: false,
        }
    }
}

/// What a [`Scheduler::sync`] changed, in jobs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyncSummary {
    /// New ids.
    pub added: usize,
    /// Known ids whose spec changed; they were rescheduled.
    pub changed: usize,
    /// Ids that were not in the new set; they never fire again.
    pub removed: usize,
    /// Known ids with the same spec; they kept their next firing.
    pub unchanged: usize,
    /// Specs dropped because an earlier spec in the same set had their id.
    pub duplicates: usize,
}

impl<P: Clone + PartialEq + Send + Sync + 'static> Scheduler<P> {
    /// Spawns the timer loop for `collector` on the current tokio runtime and
    /// returns its handle. It starts with no jobs; give it some with
    /// [`Scheduler::sync`].
    ///
    /// `report` is called once for every firing (run or skipped), on the run's
    /// task; keep it quick (forward to a channel, bump a metric). A panic in it
    /// is caught and logged.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn spawn<C: Collector<Params = P>>(
        collector: Arc<C>,
        options: SchedulerOptions,
        report: impl Fn(RunReport) + Send + Sync + 'static,
    ) -> Self {
        let run: RunFn<C::Params> = Box::new(move |tick, spec| {
            let collector = collector.clone();
            Box::pin(async move { collector.run(tick, &spec.params).await })
        });
        let stop = CancellationToken::new();
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new()),
            wake: Notify::new(),
            idle: Notify::new(),
            permits: Arc::new(Semaphore::new(options.max_concurrent_runs.max(1))),
            run,
            report: Box::new(report),
            options,
            stop: stop.clone(),
            runs: AtomicU64::new(0),
            running: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
            timer: Mutex::new(None),
            syncing: tokio::sync::Mutex::new(()),
            failed: CancellationToken::new(),
            log_budget: log_budget::LogBudget::default(),
        });
        let timer = tokio::spawn(runner::guarded_timer_loop(shared.clone()));
        *shared.timer.lock().unwrap_or_else(|e| e.into_inner()) = Some(timer);
        Self {
            shared,
            _stop_on_drop: Arc::new(stop.drop_guard()),
        }
    }
}

/// A running scheduler ([`Scheduler::spawn`]). Cheap to clone; when the last
/// clone is dropped the scheduler stops firing (runs in flight finish).
pub struct Scheduler<P> {
    shared: Arc<Shared<P>>,
    _stop_on_drop: Arc<DropGuard>,
}

impl<P> Clone for Scheduler<P> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            _stop_on_drop: self._stop_on_drop.clone(),
        }
    }
}

impl<P> std::fmt::Debug for Scheduler<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("jobs", &self.job_count())
            .finish_non_exhaustive()
    }
}

impl<P: Clone + PartialEq + Send + Sync + 'static> Scheduler<P> {
    /// Replaces the job set with `specs`, reconciling by id (see the module
    /// docs). The first spec of a duplicated id wins; the others are dropped
    /// with a warning. A changed job loses a firing queued by
    /// [`OverlapPolicy::QueueOne`]; a removed job's run in flight finishes
    /// (and is reported) but starts nothing after it. An id that is removed
    /// and added back in a later sync is a new job: it may fire while the old
    /// job's run is still going.
    ///
    /// It diffs `SYNC_BATCH` specs per hold of the scheduler's lock and
    /// yields between batches, so that a sync of 100,000 jobs (about 80 ms
    /// on the benchmark machine) never holds up due firings for more than a
    /// few ms; jobs not reached yet fire with their old specs meanwhile.
    /// Concurrent syncs run one after the other. What a sync drops is freed
    /// afterwards on tokio's blocking pool.
    pub async fn sync(&self, specs: Vec<JobSpec<P>>) -> SyncSummary {
        // One sync at a time: a sync's parts must not interleave with another's.
        let _one_at_a_time = self.shared.syncing.lock().await;
        let mut garbage = Garbage::default();
        garbage.reserve(specs.len());
        let mut summary = SyncSummary::default();
        let sync = self.shared.lock().begin_sync();
        let mut specs = specs.into_iter();
        while specs.len() > 0 {
            let taken = {
                let mut state = self.shared.lock();
                let now = self.shared.options.clock.now();
                let batch = specs.by_ref().take(SYNC_BATCH);
                state.sync_some(batch, sync, now, &mut garbage, &mut summary);
                // Fire what fell due meanwhile here: the timer loop would
                // have to win the lock from this loop first.
                let now = self.shared.options.clock.now();
                runner::take_due(&self.shared, &mut state, now)
            };
            taken.act(&self.shared);
            // The timer loop re-reads the next firing, which may be earlier now.
            self.shared.wake.notify_one();
            tokio::task::yield_now().await;
        }
        self.shared
            .lock()
            .end_sync(sync, &mut garbage, &mut summary);
        self.shared.wake.notify_one();
        garbage.dispose();
        summary
    }
}

impl<P> Scheduler<P> {
    /// Every job's schedule and last run, in no particular order.
    pub(crate) fn status(&self) -> Vec<JobStatus> {
        self.shared.lock().status()
    }

    /// Completes if the scheduler failed for good (its timer task panicked),
    /// so that the process can exit and be restarted rather than run on
    /// without firing anything.
    pub async fn failed(&self) {
        self.shared.failed.cancelled().await;
    }

    /// How many jobs are scheduled.
    pub fn job_count(&self) -> usize {
        self.shared.lock().len()
    }

    /// Stops firing, waits up to `drain_deadline` for the runs in flight, and
    /// aborts the rest (an aborted run is not reported). Queued runs
    /// ([`OverlapPolicy::QueueOne`]) are dropped.
    pub async fn shutdown(self, drain_deadline: Duration) {
        runner::shutdown(&self.shared, drain_deadline).await;
    }
}
