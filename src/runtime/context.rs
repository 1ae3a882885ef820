//! What a bot's collector is built from: the parts of the runtime it may use.

use std::sync::MutexGuard;

use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use super::tasks::{OnFailure, Tasks};
use crate::api::Client;
use crate::collector::BoxError;
use crate::metrics::Metrics;

/// The runtime's parts that a collector may use, given to the function that
/// builds it ([`Bot::from_fn`](super::Bot::from_fn)), inside
/// [`Bot::run`](super::Bot::run), once the settings are valid and before the
/// first config refresh.
///
/// ```no_run
/// use std::time::Duration;
/// use grafolean_collector::{Bot, BoxError, Collector, Context, Intervals, JobConfigs, JobSpec, Problems, Tick, Value};
/// use prometheus_client::metrics::counter::Counter;
///
/// struct Counting(Counter);
///
/// impl Collector for Counting {
///     type Params = ();
///     fn jobs(&self, _: &JobConfigs, _: &mut Problems) -> Vec<JobSpec<()>> {
///         vec![JobSpec::new("count", Intervals::one(5).unwrap(), ())]
///     }
///     async fn run(&self, _: Tick, _: &()) -> Result<Vec<Value>, BoxError> {
///         Ok(vec![Value::new("count", self.0.inc() as f64)])
///     }
/// }
///
/// fn build(ctx: &Context) -> Result<Counting, BoxError> {
///     let runs = Counter::default();
///     ctx.registry().register("my_bot_runs", "Runs of the count job", runs.clone());
///     // A long-lived task, restarted with backoff if it fails, awaited at shutdown.
///     ctx.spawn("heartbeat", |shutdown| async move {
///         while !shutdown.is_cancelled() {
///             tokio::select! {
///                 () = tokio::time::sleep(Duration::from_secs(60)) => tracing::info!("alive"),
///                 () = shutdown.cancelled() => {}
///             }
///         }
///         Ok(())
///     });
///     Ok(Counting(runs))
/// }
///
/// #[tokio::main]
/// async fn main() -> std::process::ExitCode {
///     Bot::from_fn("counting", build).main().await
/// }
/// ```
#[derive(Debug)]
pub struct Context {
    pub(super) metrics: Metrics,
    pub(super) client: Option<Client>,
    pub(super) tasks: Tasks,
}

impl Context {
    /// The registry for the bot's own instruments, served on `/metrics`
    /// under their own names beside the SDK's (`grafolean_bot_…`). A
    /// [`prometheus_client::collector::Collector`] registered here is the way
    /// to compute values at scrape time.
    pub fn registry(&self) -> MutexGuard<'_, Registry> {
        self.metrics.registry_mut()
    }

    /// The runtime's Grafolean API client, with the bot's token and limits;
    /// `None` when the bot runs standalone.
    pub fn client(&self) -> Option<&Client> {
        self.client.as_ref()
    }

    /// A token that is cancelled when the bot stops: after the running jobs
    /// were drained, before the sender is flushed.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.tasks.shutdown_token()
    }

    /// Starts a long-lived task that the runtime supervises. `task` makes
    /// the task's future, given the shutdown token; the task should return
    /// soon after the token is cancelled, and the runtime waits for it then,
    /// within the drain deadline (a task still running after it is aborted).
    ///
    /// A task that returns an error or panics is logged, counted in
    /// `grafolean_bot_task_failures_total{task="<name>"}`, and restarted with
    /// backoff (1 s, doubling up to 60 s; back to 1 s after a minute of
    /// health). For a task the bot cannot do without, see
    /// [`Context::spawn_essential`].
    pub fn spawn<F, Fut>(&self, name: &str, task: F)
    where
        F: FnMut(CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        self.tasks.spawn(name, OnFailure::Restart, task);
    }

    /// Like [`Context::spawn`], but a failure (an error or a panic) stops
    /// the bot, which exits with status 1 (so that its supervisor, such as
    /// systemd or Kubernetes, restarts it).
    pub fn spawn_essential<F, Fut>(&self, name: &str, task: F)
    where
        F: FnMut(CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        self.tasks.spawn(name, OnFailure::Exit, task);
    }
}
