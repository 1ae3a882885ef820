//! What the timer loop ([`runner`](super::runner)), the run tasks
//! ([`run`](super::run)) and the scheduler's handle share: the state behind
//! one lock, a run on its way to being started, and a run's timeout.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::queue::{RunState, State};
use super::timing::{Millis, system_to_millis};
use super::{RunReport, SchedulerOptions};
use crate::collector::BoxError;
use crate::job::{JobSpec, Tick};
use crate::value::Value;

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
    /// The per-job failure lines' budget.
    pub log_budget: super::log_budget::LogBudget,
}

impl<P> Shared<P> {
    /// Locks the state. A panic never happens while it is held, but if one
    /// did, the state is still consistent enough to go on.
    pub fn lock(&self) -> MutexGuard<'_, State<P>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Calls the report callback, catching a panic in it.
    pub(super) fn report(&self, report: RunReport) {
        if let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(|| (self.report)(report))) {
            tracing::error!(
                panic = panic_message(&*panic),
                "the report callback panicked"
            );
        }
    }
}

/// A run that was decided on under the lock, to be spawned after it.
pub(crate) struct Start<P> {
    pub run: Arc<Mutex<RunState<P>>>,
    pub spec: Arc<JobSpec<P>>,
    pub tick: Tick,
    pub missed: u64,
    pub timeout: Duration,
}

/// A run's timeout: the configured one, or the job's smallest interval (in
/// seconds).
pub(crate) fn run_timeout(options: &SchedulerOptions, smallest: u32) -> Duration {
    options
        .run_timeout
        .unwrap_or_else(|| Duration::from_secs(u64::from(smallest)))
}

pub(crate) fn lateness(tick: &Tick, now: Millis) -> Duration {
    Duration::from_millis((now - system_to_millis(tick.at)).max(0) as u64)
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
