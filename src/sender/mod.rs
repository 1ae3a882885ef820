//! The Grafolean sender: delivers the values of job runs to the backend,
//! batched, retried, and buffered (in memory or on disk) while the backend is
//! away.
//!
//! ```text
//! submit() ─validate─▶ batch per account ─PUT with t (or POST)─▶ backend     (live values)
//!     (window / size)        │ network error, timeout, 5xx, 401
//!                            ▼
//!                 backlog (bounded; optional spool on disk) ─PUT with t─▶ backend
//!                            (replayed when the backend is back, with backoff + jitter)
//! ```
//!
//! * **Validation.** Each value is checked with [`Value::validate`]; an invalid
//!   one is dropped alone (logged with its job and path, counted as
//!   `values_dropped{reason="invalid_path"|"invalid_value"}`).
//! * **PUT by default.** Live values go by PUT with `t` = the tick's intended
//!   time. The backend stores a `(path, t)` once (a second PUT overwrites
//!   it), so every retry is idempotent and a value is stored exactly once.
//! * **Batching.** Values of one account that arrive within the batch window
//!   (default `DEFAULT_BATCH_WINDOW`) or up to `DEFAULT_MAX_BATCH` values go
//!   in one request. A `(path, t)` that appears twice in a batch (a path
//!   twice, by POST) keeps its latest value (the backend answers 500
//!   otherwise); the earlier one is counted as dropped with reason
//!   `duplicate`. At most `DEFAULT_MAX_IN_FLIGHT` live requests are in
//!   flight; when more batches than twice that wait for a connection (a
//!   burst), the oldest wait in the backlog and are replayed.
//! * **Retries.** A network error, a timeout, a 5xx or a 401 marks the backend
//!   as down: the values of the failed request, and every value produced
//!   meanwhile, go to the backlog with their measurement times. The sender
//!   retries with exponential backoff and jitter by replaying the oldest
//!   values with PUT (`t` = the tick's intended time). Once the backend
//!   answers, live values flow again while the backlog is replayed.
//! * **PUT forbidden.** A 403 on PUT means the bot may only POST. The sender
//!   then sends that account's live values by POST (stamped by the backend on
//!   arrival, so a retry after a lost answer stores a value twice: at least
//!   once), POSTs only the newest buffered value of each path, and counts the
//!   rest as dropped (`put_forbidden`). The mode of each account is logged
//!   once when it changes and exported as `send_mode_accounts{mode}`. PUT is
//!   tried again every 10 minutes, so a permission granted later takes
//!   effect without a restart.
//! * **Rejections.** A 400 on a validated batch is bisected until the rejected
//!   values are isolated; they are dropped (`rejected`) and logged.
//!   A 403 on POST drops the batch (`forbidden`), since the bot lacks the
//!   permission, and logs an error at most once a minute.
//! * **Bounded buffer.** The backlog holds at most `DEFAULT_BUFFER_LIMIT`
//!   values; when it is full, the oldest are dropped (`buffer_full`), except
//!   those being replayed at that moment.
//! * **Spool.** With [`SenderBuilder::with_spool_dir`], the backlog is also
//!   written to disk (see the `spool` module docs for the format and the
//!   fsync policy): it survives a restart or a crash and is replayed on start.
//!   It holds the values that wait for the backend; a live batch is only in
//!   memory while it is open (one batch window) or in flight, so a crash
//!   while the backend is up loses at most those.
//!   A config refresh that got every answer tells the sender, which then
//!   tries at once instead of at the backoff's deadline (up to a minute).
//! * **Shutdown.** [`Sender::shutdown`] flushes within a deadline (with one
//!   try at once if the backend seemed down); what is left goes to the
//!   spool, or is counted as dropped (`shutdown`).
//!
//! Every value is accounted for in the sender's metrics: `values_sent` (accepted by the
//! backend, live or replayed), `values_replayed` (the part delivered by PUT),
//! `values_retried` (per failed attempt), `values_buffered` (the backlog's
//! size now), and `values_dropped` by reason.

mod backlog;
mod batch;
mod deliver;
pub(crate) mod metrics;
mod spool;
mod state;
#[cfg(all(test, feature = "testing"))]
mod tests;
mod worker;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use crate::api::Client;
use crate::job::JobId;
use prometheus_client::registry::Registry;

use crate::value::Value;
use metrics::{DropReason, SenderMetrics};

use worker::{Config, Msg, Worker};

/// The default batch window: values of one account produced within it go in
/// one request.
pub(crate) const DEFAULT_BATCH_WINDOW: Duration = Duration::from_millis(50);
/// The default maximum number of values in one request.
pub(crate) const DEFAULT_MAX_BATCH: usize = 5_000;
/// The default maximum number of values waiting in the backlog.
pub(crate) const DEFAULT_BUFFER_LIMIT: usize = 1_000_000;
/// The default first retry delay.
pub(crate) const DEFAULT_BACKOFF_MIN: Duration = Duration::from_secs(1);
/// The default longest retry delay.
pub(crate) const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(60);
/// The default number of live POST requests in flight at once.
pub(crate) const DEFAULT_MAX_IN_FLIGHT: usize = 4;

/// Why a sender could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SenderError {
    /// The spool directory could not be created or read.
    #[error(
        "could not open the spool directory {dir}: {source}; check that it exists and is writable"
    )]
    Spool {
        /// The directory.
        dir: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `build()` was called outside a tokio runtime.
    #[error("the sender must be built inside a tokio runtime, since it spawns its task there")]
    NoRuntime,
}

/// Builds a [`Sender`].
///
/// ```
/// use std::time::Duration;
/// use grafolean_collector::api::Client;
/// use grafolean_collector::sender::Sender;
/// use grafolean_collector::api::BotToken;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let client = Client::builder("http://127.0.0.1:9/api", BotToken::new("t").unwrap()).build().unwrap();
/// let mut registry = prometheus_client::registry::Registry::default();
/// let sender = Sender::builder(client, &mut registry)
///     .with_batch_window(Duration::from_millis(20))
///     .with_max_batch(1_000)
///     .build()
///     .unwrap();
/// let report = sender.shutdown(Duration::from_millis(100)).await;
/// assert_eq!(report.dropped, 0);
/// # }
/// ```
#[derive(Debug)]
#[must_use]
pub struct SenderBuilder {
    client: Client,
    metrics: SenderMetrics,
    config: Config,
    spool_dir: Option<PathBuf>,
}

impl SenderBuilder {
    /// Counts the values the sender holds and the backend has not taken yet
    /// into `unsent` (the runtime's, read at a second signal).
    pub(crate) fn with_unsent_gauge(
        mut self,
        unsent: prometheus_client::metrics::gauge::Gauge,
    ) -> Self {
        self.metrics.values_unsent = unsent;
        self
    }

    /// Sets the batch window (default `DEFAULT_BATCH_WINDOW`). Zero sends
    /// each submission on its own.
    pub fn with_batch_window(mut self, window: Duration) -> Self {
        self.config.window = window;
        self
    }

    /// Sets the maximum number of values in one request (default
    /// `DEFAULT_MAX_BATCH`; at least 1).
    pub fn with_max_batch(mut self, n: usize) -> Self {
        self.config.max_batch = n.max(1);
        self
    }

    /// Sets how many values the backlog holds at most (default
    /// `DEFAULT_BUFFER_LIMIT`); beyond it the oldest are dropped.
    pub fn with_buffer_limit(mut self, n: usize) -> Self {
        self.config.buffer_limit = n.max(1);
        self
    }

    /// Keeps the backlog on disk in `dir`, so that it survives a restart or a
    /// crash. Values found there are replayed on start.
    pub fn with_spool_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.spool_dir = Some(dir.into());
        self
    }

    /// Sets the retry delays: the first is about `min`, each next one doubles,
    /// up to `max` (defaults `DEFAULT_BACKOFF_MIN`, `DEFAULT_BACKOFF_MAX`).
    /// Each delay is randomly shortened by up to half (jitter).
    pub fn with_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.config.backoff_min = min;
        self.config.backoff_max = max;
        self
    }

    /// Sets how many live requests may be in flight at once (default
    /// `DEFAULT_MAX_IN_FLIGHT`; at least 1). The replay uses up to half as
    /// many PUTs besides.
    pub fn with_max_in_flight(mut self, n: usize) -> Self {
        self.config.max_in_flight = n.max(1);
        self
    }

    /// Opens the spool (if set) and spawns the sender's task on the current
    /// tokio runtime. Does no network I/O.
    pub fn build(self) -> Result<Sender, SenderError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| SenderError::NoRuntime)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let worker = Worker::new(
            rx,
            self.client,
            self.metrics.clone(),
            self.config,
            self.spool_dir.as_deref(),
        )
        .map_err(|source| SenderError::Spool {
            dir: self.spool_dir.unwrap_or_default().display().to_string(),
            source,
        })?;
        runtime.spawn(worker.run());
        Ok(Sender {
            tx,
            metrics: self.metrics,
        })
    }
}

/// What [`Sender::shutdown`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Values accepted by the backend while shutting down.
    pub delivered: u64,
    /// Values left in the spool, to be replayed on the next start.
    pub spooled: u64,
    /// Values dropped because the deadline passed and there is no spool.
    pub dropped: u64,
    /// Whether the sender stopped before everything was delivered: the
    /// deadline passed, or the backend stayed down until it.
    pub timed_out: bool,
}

/// A handle to the sender's task. Cheap to clone; all clones feed the same
/// task.
///
/// ```no_run
/// # use std::time::{Duration, SystemTime};
/// # use grafolean_collector::{JobId, Value, sender::Sender};
/// # async fn example(sender: Sender) {
/// let job = JobId::new("entity.42");
/// sender.submit(1, &job, SystemTime::now(), vec![Value::new("entity.42.ping.success", 1.0)]);
/// let report = sender.shutdown(Duration::from_secs(5)).await;
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Sender {
    tx: mpsc::UnboundedSender<Msg>,
    metrics: SenderMetrics,
}

impl Sender {
    /// Tells the sender the backend answered another request of the bot's
    /// (a config refresh): values waiting for a backend that seemed down are
    /// tried now instead of at the backoff's next deadline (up to a minute).
    pub(crate) fn backend_answered(&self) {
        let _ = self.tx.send(Msg::BackendAnswered);
    }

    /// The sender's `backend_up` gauge, for the refresher to set too.
    pub(crate) fn backend_up(&self) -> prometheus_client::metrics::gauge::Gauge {
        self.metrics.backend_up.clone()
    }

    /// Starts building a sender that delivers through `client`, and
    /// registers its instruments in `registry` (`grafolean_bot_values_sent`,
    /// `…_values_dropped{reason}`, `…_backend_up`, …).
    pub fn builder(client: Client, registry: &mut Registry) -> SenderBuilder {
        SenderBuilder {
            client,
            metrics: SenderMetrics::register(registry),
            config: Config::default(),
            spool_dir: None,
        }
    }

    /// Hands over the values of one run of `job` for `account`, measured at
    /// `at` (the tick's intended time). Invalid values are dropped here, and
    /// logged and counted; the rest is queued. Never blocks and never waits
    /// for the network. After [`shutdown`](Self::shutdown), values are
    /// counted as dropped (`shutdown`).
    pub fn submit(&self, account: u64, job: &JobId, at: SystemTime, mut values: Vec<Value>) {
        values.retain(|v| match v.validate() {
            Ok(()) => true,
            Err(e) => {
                warn!(job = %job, path = %v.path, error = %e, "dropping an invalid value");
                self.metrics.dropped(DropReason::of(&e), 1);
                false
            }
        });
        if values.is_empty() {
            return;
        }
        let n = values.len() as u64;
        let msg = Msg::Values {
            account,
            at: batch::unix_micros(at),
            job: Arc::new(job.clone()),
            values,
        };
        if self.tx.send(msg).is_err() {
            warn!(job = %job, count = n, "the sender was shut down; dropping values");
            self.metrics.dropped(DropReason::shutdown, n);
        }
    }

    /// Stops the sender: sends what is queued, waiting at most `deadline`,
    /// and then spools (with a spool) or drops (without) what is left.
    /// Values submitted while it drains are still sent; values submitted
    /// after it returned are dropped (`shutdown`). Calling it again returns
    /// an empty report.
    pub async fn shutdown(&self, deadline: Duration) -> ShutdownReport {
        let (reply, answer) = oneshot::channel();
        if self.tx.send(Msg::Shutdown { deadline, reply }).is_err() {
            return ShutdownReport::default();
        }
        answer.await.unwrap_or_default()
    }
}
