//! A bot's long-lived tasks, supervised by the runtime.
//!
//! A task is started with [`Context::spawn`](super::Context::spawn) (restarted
//! when it fails) or [`Context::spawn_essential`](super::Context::spawn_essential)
//! (the bot stops with exit status 1 when it fails). Either way a failure (an
//! error returned, or a panic) is logged with the task's name and counted in
//! `grafolean_bot_task_failures_total{task}`. At shutdown, after the running
//! jobs were drained, every task's cancellation token is cancelled and the
//! runtime waits for the tasks to return, within the drain deadline; a task
//! still running then is aborted, and named in a warning.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::FutureExt;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::backoff::Backoff;
use crate::collector::BoxError;
use crate::text::{MAX_ERROR_BYTES, bounded};

/// The first restart of a failed task waits about this long (with jitter);
/// each failure in a row doubles it, up to [`MAX_RESTART_DELAY`].
const FIRST_RESTART_DELAY: Duration = Duration::from_secs(1);

/// The longest wait before a failed task is restarted.
const MAX_RESTART_DELAY: Duration = Duration::from_secs(60);

/// A task that ran this long before it failed is taken to have been healthy:
/// its next restart waits the first delay again.
const HEALTHY_AFTER: Duration = Duration::from_secs(60);

/// Labels of the task failures counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabels {
    task: String,
}

/// What the runtime does when a supervised task fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OnFailure {
    /// Restart it, with backoff.
    Restart,
    /// Stop the bot, with exit status 1.
    Exit,
}

/// The supervisor of a bot's tasks. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Tasks {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    tracker: TaskTracker,
    /// Cancelled at shutdown, after the jobs were drained.
    shutdown: CancellationToken,
    /// Cancelled when an essential task failed: the bot stops.
    fatal: CancellationToken,
    /// The essential task that failed, and why.
    failure: Mutex<Option<(String, String)>>,
    /// Tasks running now: their run's number, name, and how to abort it.
    running: Mutex<Vec<(u64, String, AbortHandle)>>,
    /// The next run's number.
    runs: std::sync::atomic::AtomicU64,
    failures: Family<TaskLabels, Counter>,
}

impl Tasks {
    /// A supervisor whose failure counter is registered in `registry`.
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let failures = Family::<TaskLabels, Counter>::default();
        registry.register(
            "task_failures",
            "Failures (an error or a panic) of the bot's supervised long-lived tasks, by task",
            failures.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                tracker: TaskTracker::new(),
                shutdown: CancellationToken::new(),
                fatal: CancellationToken::new(),
                failure: Mutex::default(),
                running: Mutex::default(),
                runs: Default::default(),
                failures,
            }),
        }
    }

    /// The token every task is given: cancelled at shutdown.
    pub(crate) fn shutdown_token(&self) -> CancellationToken {
        self.inner.shutdown.clone()
    }

    /// Starts `task` under supervision.
    pub(crate) fn spawn<F, Fut>(&self, name: &str, on_failure: OnFailure, mut task: F)
    where
        F: FnMut(CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        let inner = self.inner.clone();
        let name = name.to_string();
        self.inner.tracker.spawn(async move {
            let mut backoff = Backoff::new(FIRST_RESTART_DELAY * 2, MAX_RESTART_DELAY);
            loop {
                let started = tokio::time::Instant::now();
                let run = tokio::spawn(
                    std::panic::AssertUnwindSafe(task(inner.shutdown.clone())).catch_unwind(),
                );
                let number = inner.add_running(&name, run.abort_handle());
                let ended = run.await;
                inner.remove_running(number);
                let error = match ended {
                    Ok(Ok(Ok(()))) => {
                        if !inner.shutdown.is_cancelled() {
                            info!(task = %name, "a supervised task ended");
                        }
                        return;
                    }
                    Ok(Ok(Err(e))) => bounded(&e.to_string(), MAX_ERROR_BYTES),
                    Ok(Err(panic)) => format!(
                        "panicked: {}",
                        bounded(
                            &crate::scheduler::shared::panic_message(&*panic),
                            MAX_ERROR_BYTES
                        )
                    ),
                    // Aborted at the shutdown deadline.
                    Err(_) => return,
                };
                inner
                    .failures
                    .get_or_create(&TaskLabels { task: name.clone() })
                    .inc();
                if inner.shutdown.is_cancelled() {
                    error!(task = %name, %error, "a supervised task failed while stopping");
                    return;
                }
                if on_failure == OnFailure::Exit {
                    error!(task = %name, %error, "an essential task failed; the bot stops (exit status 1)");
                    *inner.failure.lock().unwrap_or_else(PoisonError::into_inner) =
                        Some((name, error));
                    inner.fatal.cancel();
                    return;
                }
                if started.elapsed() >= HEALTHY_AFTER {
                    backoff.reset();
                }
                let delay = backoff.next_delay();
                error!(
                    task = %name,
                    %error,
                    failures_in_a_row = backoff.attempt(),
                    restart_in_ms = delay.as_millis() as u64,
                    "a supervised task failed; restarting it"
                );
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = inner.shutdown.cancelled() => return,
                }
            }
        });
    }

    /// Completes when an essential task failed; returns its name and why.
    pub(crate) async fn failed(&self) -> (String, String) {
        self.inner.fatal.cancelled().await;
        self.inner
            .failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .unwrap_or_default()
    }

    /// Cancels every task's token and waits for the tasks to return, at most
    /// `deadline`; aborts those still running then, and names them.
    pub(crate) async fn shutdown(&self, deadline: Duration) {
        self.inner.shutdown.cancel();
        self.inner.tracker.close();
        if tokio::time::timeout(deadline, self.inner.tracker.wait())
            .await
            .is_ok()
        {
            return;
        }
        let running = std::mem::take(
            &mut *self
                .inner
                .running
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        let names: BTreeSet<&str> = running.iter().map(|(_, n, _)| n.as_str()).collect();
        warn!(
            tasks = %names.into_iter().collect::<Vec<_>>().join(", "),
            deadline_ms = deadline.as_millis() as u64,
            "supervised tasks did not stop within the drain deadline; aborting them"
        );
        for (_, _, task) in running {
            task.abort();
        }
    }
}

impl Inner {
    /// Records a running task; returns its run's number.
    fn add_running(&self, name: &str, task: AbortHandle) -> u64 {
        let number = self.runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((number, name.to_string(), task));
        number
    }

    fn remove_running(&self, number: u64) {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(i) = running.iter().position(|(n, _, _)| *n == number) {
            running.swap_remove(i);
        }
    }
}
