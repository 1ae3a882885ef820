//! The runtime: the one call a bot's `main` makes.
//!
//! [`Bot`] wires the rooms of the house together:
//!
//! ```text
//! config source ──configs──▶ Collector::jobs ──specs──▶ scheduler ──tick──▶ Collector::run
//!  (Grafolean, TOML file,                                (sync by id)           │ values
//!   or the bot's default)                                                       ▼
//! admin server (/metrics /live /ready /) ◀── metrics, job status ── sender · value gauges
//! ```
//!
//! Every refresh interval it fetches the configs, asks the collector for its
//! jobs and reconciles the scheduler. A failed refresh is logged and counted,
//! and the previous job set stays scheduled. The first SIGINT or SIGTERM stops
//! scheduling, turns `/ready` to 503, drains the running jobs and flushes the
//! sender; a second one exits at once.

mod once;
mod source;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use crate::admin::{self, AdminState, JobRow};
use crate::api::Client;
use crate::exposition::{MappedPath, ValueStore};
use crate::fetch::FetchOptions;
use crate::metrics::Metrics;
use crate::scheduler::{RunOutcome, RunReport, Scheduler, SchedulerOptions};
use crate::sender::Sender;
use crate::settings::{LogFormat, Settings, Source};
use crate::{Collector, JobId};

pub use source::{ConfigSource, RefreshError};

/// How long a graceful shutdown waits for running jobs, then for the sender.
pub const DEFAULT_DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// How many times the start-up waits for the backend's `/status/info` before
/// giving up (with exponential backoff from 1 s up to 30 s: about 10 minutes).
pub const DEFAULT_READY_ATTEMPTS: u32 = 25;

/// The first retry after a failed refresh, before any config has loaded; it
/// doubles up to the refresh interval.
pub const FIRST_RETRY: Duration = Duration::from_secs(1);

type Hook = Box<dyn FnOnce() + Send>;

/// Each job's labels, for the value gauges.
type JobLabels = HashMap<JobId, Vec<(String, String)>>;

/// A bot, ready to run: a collector plus everything around it.
///
/// ```no_run
/// use grafolean_collector::{BoxError, Bot, Collector, Intervals, JobConfigs, JobSpec, Tick, Value};
///
/// struct Hello;
///
/// impl Collector for Hello {
///     type Params = ();
///     fn jobs(&self, _: &JobConfigs) -> Vec<JobSpec<()>> {
///         vec![JobSpec::new("hello", Intervals::one(5).unwrap(), ())]
///     }
///     async fn run(&self, _: Tick, _: &()) -> Result<Vec<Value>, BoxError> {
///         Ok(vec![Value::new("hello.world", 1.0)])
///     }
/// }
///
/// #[tokio::main]
/// async fn main() -> std::process::ExitCode {
///     Bot::new("hello", Hello).main().await
/// }
/// ```
#[must_use]
pub struct Bot<C: Collector> {
    name: String,
    collector: Arc<C>,
    protocol: Option<String>,
    default_listen: SocketAddr,
    default_config: Option<String>,
    listener: Option<std::net::TcpListener>,
    scheduler_options: SchedulerOptions,
    fetch_options: FetchOptions,
    metrics: Metrics,
    values: ValueStore,
    scrape_hooks: Vec<Arc<dyn Fn() + Send + Sync>>,
    on_start: Vec<Hook>,
    on_shutdown: Vec<Hook>,
    ready_attempts: u32,
    drain_deadline: Duration,
}

impl<C: Collector> std::fmt::Debug for Bot<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bot")
            .field("name", &self.name)
            .field("protocol", &self.protocol)
            .field("default_listen", &self.default_listen)
            .finish_non_exhaustive()
    }
}

impl<C: Collector> Bot<C> {
    /// A bot named `name` (used in logs and `build_info`) around `collector`.
    pub fn new(name: impl Into<String>, collector: C) -> Self {
        let name = name.into();
        Self {
            metrics: Metrics::new(&name),
            name,
            collector: Arc::new(collector),
            protocol: None,
            default_listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            default_config: None,
            listener: None,
            scheduler_options: SchedulerOptions::default(),
            fetch_options: FetchOptions::default(),
            values: ValueStore::new(),
            scrape_hooks: Vec::new(),
            on_start: Vec::new(),
            on_shutdown: Vec::new(),
            ready_attempts: DEFAULT_READY_ATTEMPTS,
            drain_deadline: DEFAULT_DRAIN_DEADLINE,
        }
    }

    /// The Grafolean protocol whose entities this bot monitors, such as `ping`.
    /// Without one, the bot gets no configs from Grafolean and its
    /// [`Collector::jobs`] is called with empty configs.
    pub fn with_protocol(mut self, protocol: impl Into<String>) -> Self {
        self.protocol = Some(protocol.into());
        self
    }

    /// The admin server's address when `--listen` is not given.
    pub fn with_default_listen(mut self, addr: SocketAddr) -> Self {
        self.default_listen = addr;
        self
    }

    /// A built-in standalone config (TOML, see [`crate::standalone`]), used
    /// when neither a backend nor `--config` is given.
    pub fn with_default_config(mut self, toml: impl Into<String>) -> Self {
        self.default_config = Some(toml.into());
        self
    }

    /// Serves the admin server on an already bound listener (tests bind
    /// `127.0.0.1:0`), instead of `--listen`.
    pub fn with_admin_listener(mut self, listener: std::net::TcpListener) -> Self {
        self.listener = Some(listener);
        self
    }

    /// Scheduler options: the run timeout, the overlap policy and the limit on
    /// concurrent runs.
    pub fn with_scheduler_options(mut self, options: SchedulerOptions) -> Self {
        self.scheduler_options = options;
        self
    }

    /// Options of the config fetcher, such as the requests in flight.
    pub fn with_fetch_options(mut self, options: FetchOptions) -> Self {
        self.fetch_options = options;
        self
    }

    /// Maps Grafolean paths to Prometheus names and labels, for the values
    /// exported on `/metrics`; paths it returns `None` for use the generic rule.
    pub fn with_path_mapper(
        mut self,
        mapper: impl Fn(&str) -> Option<MappedPath> + Send + Sync + 'static,
    ) -> Self {
        self.values = self.values.with_mapper(mapper);
        self
    }

    /// Runs `hook` before every scrape of `/metrics`, to update the bot's own
    /// metrics.
    pub fn with_scrape_hook(mut self, hook: impl Fn() + Send + Sync + 'static) -> Self {
        self.scrape_hooks.push(Arc::new(hook));
        self
    }

    /// Runs `hook` once, after the admin server is up and before the first refresh.
    pub fn on_start(mut self, hook: impl FnOnce() + Send + 'static) -> Self {
        self.on_start.push(Box::new(hook));
        self
    }

    /// Runs `hook` once, after the jobs were drained and the sender flushed.
    pub fn on_shutdown(mut self, hook: impl FnOnce() + Send + 'static) -> Self {
        self.on_shutdown.push(Box::new(hook));
        self
    }

    /// How long a graceful shutdown waits for running jobs and for the sender.
    pub fn with_drain_deadline(mut self, deadline: Duration) -> Self {
        self.drain_deadline = deadline;
        self
    }

    /// How many times start-up asks the backend whether it is ready.
    pub fn with_ready_attempts(mut self, attempts: u32) -> Self {
        self.ready_attempts = attempts;
        self
    }

    /// The SDK metrics. Register the bot's own metrics with
    /// [`Metrics::registry_mut`] before the bot starts.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The whole `main` of a bot: reads `.env` and the command line, sets up
    /// logging, and runs until SIGINT or SIGTERM (or once, with `--once`).
    pub async fn main(self) -> ExitCode {
        self.main_with(Settings::from_env_and_args()).await
    }

    /// [`Bot::main`] with settings the caller already parsed (with
    /// [`Settings::from_env_and_args`]), for a `main` that needs them first.
    pub async fn main_with(self, settings: Settings) -> ExitCode {
        if let Err(e) = init_logging(&settings) {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
        if settings.once {
            return self.once(settings).await;
        }
        match self.run(settings, shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                error!("{e:#}");
                ExitCode::FAILURE
            }
        }
    }

    /// `--once`: fetches the configs, runs every job once now, prints the
    /// values, and returns a failure code if any job failed.
    pub async fn once(self, settings: Settings) -> ExitCode {
        once::run(self, settings).await
    }

    /// Runs the bot until `shutdown` completes, then shuts down gracefully.
    pub async fn run(
        mut self,
        settings: Settings,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), RunError> {
        let source = settings.validate().map_err(RunError::Settings)?;
        let export_values = !settings.no_export_values;
        let (client, source) = self.config_source(source, settings.max_response_bytes())?;

        // The admin server first, so that /live answers during start-up.
        let listener = match self.listener.take() {
            Some(l) => tokio::net::TcpListener::from_std(l).map_err(RunError::Listen)?,
            None => {
                let addr = settings.listen.unwrap_or(self.default_listen);
                admin::bind(&addr.to_string())
                    .await
                    .map_err(RunError::Admin)?
            }
        };
        let admin_addr = listener.local_addr().map_err(RunError::Listen)?;
        let mut state = AdminState::builder(self.metrics.clone())
            .with_version(env!("CARGO_PKG_VERSION"))
            .with_backend(client.is_some());
        if export_values {
            state = state.with_values(self.values.clone());
        }
        for hook in &self.scrape_hooks {
            let hook = hook.clone();
            state = state.with_scrape_hook(move || hook());
        }
        let state = state.build();
        let (stop_admin, admin_stopped) = tokio::sync::oneshot::channel::<()>();
        let admin_task = tokio::spawn(admin::serve(
            listener,
            admin::router(state.clone()),
            async move {
                let _ = admin_stopped.await;
            },
        ));
        info!(bot = %self.name, admin = %format!("http://{admin_addr}/"), source = %source, "started");

        let sender = match &client {
            Some(client) => {
                let mut builder = Sender::builder(client.clone(), self.metrics.clone());
                if let Some(dir) = &settings.spool_dir {
                    builder = builder.with_spool_dir(dir.clone());
                }
                Some(
                    builder
                        .build()
                        .map_err(|e| RunError::Sender(e.to_string()))?,
                )
            }
            None => None,
        };

        // Runs report here: metrics, value gauges, and the sender.
        let labels: Arc<RwLock<JobLabels>> = Arc::default();
        let report = {
            let metrics = self.metrics.clone();
            let values = export_values.then(|| self.values.clone());
            let sender = sender.clone();
            let labels = labels.clone();
            move |report: RunReport| {
                record_run(&metrics, &report);
                if let RunOutcome::Ok(output) = report.outcome {
                    if let Some(values) = &values {
                        let labels = labels.read().unwrap_or_else(|e| e.into_inner());
                        let job_labels = labels.get(&report.job).map_or(&[][..], Vec::as_slice);
                        values.update(&report.job, job_labels, &output);
                    }
                    if let (Some(sender), Some(account)) = (&sender, report.account) {
                        sender.submit(account, &report.job, report.tick.at, output);
                    }
                }
            }
        };
        let scheduler = Scheduler::spawn(
            self.collector.clone(),
            self.scheduler_options.clone(),
            report,
        );
        {
            let scheduler = scheduler.clone();
            state.set_status_provider(Arc::new(move || {
                scheduler
                    .status()
                    .into_iter()
                    .map(|s| JobRow {
                        id: s.id.to_string(),
                        labels: s.labels,
                        intervals: s.intervals.to_string(),
                        next_firing: s.next_firing,
                        last_run: s.last_run,
                        last_duration: s.last_duration,
                        last_error: s.last_error,
                        running: s.running,
                    })
                    .collect()
            }));
        }

        for hook in self.on_start.drain(..) {
            hook();
        }

        // The refresh loop, until shutdown.
        let refresh_every = settings.refresh_interval();
        let refresh_loop = async {
            if let Some(client) = &client {
                if let Err(e) = client
                    .wait_until_ready(self.ready_attempts, Duration::from_secs(1))
                    .await
                {
                    error!("{e}");
                }
            }
            let mut next = tokio::time::Instant::now();
            // Until the first config has loaded, a failed refresh is retried
            // sooner, with backoff, rather than after a whole refresh interval.
            let mut loaded_once = false;
            let mut retry = FIRST_RETRY;
            loop {
                tokio::time::sleep_until(next).await;
                next += refresh_every;
                let started = Instant::now();
                match source.load(&self.fetch_options).await {
                    Ok(loaded) => {
                        self.metrics.backend_up.set(i64::from(client.is_some()));
                        self.metrics.entity_errors.inc_by(loaded.skipped as u64);
                        let specs = self.collector.jobs(&loaded.configs);
                        {
                            let mut labels = labels.write().unwrap_or_else(|e| e.into_inner());
                            labels.clear();
                            labels.extend(specs.iter().map(|s| (s.id.clone(), s.labels.clone())));
                        }
                        let live: Vec<JobId> = specs.iter().map(|s| s.id.clone()).collect();
                        let summary = scheduler.sync(specs).await;
                        self.values.retain_jobs(live.iter());
                        self.metrics
                            .jobs_scheduled
                            .set(scheduler.job_count() as i64);
                        state.set_config_loaded();
                        state.set_backend_reachable(true);
                        loaded_once = true;
                        info!(
                            accounts = loaded.accounts,
                            entities = loaded.configs.entities.len(),
                            skipped = loaded.skipped,
                            jobs = live.len(),
                            added = summary.added,
                            changed = summary.changed,
                            removed = summary.removed,
                            unchanged = summary.unchanged,
                            requests = loaded.requests,
                            duration_ms = started.elapsed().as_millis() as u64,
                            "refreshed job configs"
                        );
                    }
                    Err(e) => {
                        self.metrics.refresh_errors.inc();
                        if e.backend_unreachable() {
                            self.metrics.backend_up.set(0);
                            state.set_backend_reachable(false);
                        }
                        warn!(error = %e, jobs = scheduler.job_count(), "config refresh failed; keeping the previous jobs");
                        if !loaded_once {
                            next = tokio::time::Instant::now() + retry.min(refresh_every);
                            retry = (retry * 2).min(refresh_every);
                        }
                    }
                }
                self.metrics
                    .refresh_duration
                    .observe(started.elapsed().as_secs_f64());
            }
        };
        let failed = tokio::select! {
            _ = refresh_loop => false,
            _ = shutdown => false,
            _ = scheduler.failed() => true,
        };

        // Graceful shutdown: stop scheduling, drain, flush.
        info!("shutting down: draining running jobs and flushing values");
        state.set_shutting_down();
        scheduler.shutdown(self.drain_deadline).await;
        if let Some(sender) = sender {
            let report = sender.shutdown(self.drain_deadline).await;
            info!(?report, "sender flushed");
        }
        for hook in self.on_shutdown.drain(..) {
            hook();
        }
        let _ = stop_admin.send(());
        match admin_task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!("{e}"),
            Err(e) => warn!("admin server task failed: {e}"),
        }
        info!("stopped");
        if failed {
            return Err(RunError::Scheduler);
        }
        Ok(())
    }

    fn config_source(
        &self,
        source: Source,
        max_response_bytes: usize,
    ) -> Result<(Option<Client>, ConfigSource), RunError> {
        Ok(match source {
            Source::Grafolean { backend_url, token } => {
                let client = Client::builder(backend_url, token)
                    .with_max_response_bytes(max_response_bytes)
                    .build()
                    .map_err(RunError::Api)?;
                let source = match &self.protocol {
                    Some(p) => ConfigSource::Grafolean {
                        client: client.clone(),
                        protocol: p.clone(),
                    },
                    None => ConfigSource::Empty,
                };
                (Some(client), source)
            }
            Source::File(path) => {
                // Fail early on a broken file; later refreshes re-read it.
                crate::standalone::load(&path).map_err(RunError::Config)?;
                (None, ConfigSource::File(path))
            }
            Source::Default => match &self.default_config {
                Some(toml) => {
                    let configs = crate::standalone::parse(toml, "built-in default config")
                        .map_err(RunError::Config)?;
                    (None, ConfigSource::Fixed(configs))
                }
                None => (None, ConfigSource::Empty),
            },
        })
    }
}

/// Why a bot could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A setting is invalid.
    #[error(transparent)]
    Settings(crate::settings::SettingsError),
    /// The standalone config is invalid.
    #[error(transparent)]
    Config(crate::standalone::StandaloneError),
    /// The API client could not be built.
    #[error(transparent)]
    Api(crate::api::ApiError),
    /// The admin server could not start.
    #[error(transparent)]
    Admin(admin::AdminError),
    /// The admin listener could not be used.
    #[error("the admin server's listener failed: {0}")]
    Listen(std::io::Error),
    /// The sender could not start.
    #[error("the sender could not start: {0}")]
    Sender(String),
    /// The scheduler's timer task died; the bot exits so that its supervisor
    /// restarts it.
    #[error("the scheduler failed and no job fires any more; exiting so that the bot is restarted")]
    Scheduler,
}

fn record_run(metrics: &Metrics, report: &RunReport) {
    let outcome = match &report.outcome {
        RunOutcome::Ok(_) => "ok",
        RunOutcome::Error(_) => "error",
        RunOutcome::Timeout => "timeout",
        RunOutcome::Panicked(_) => "panic",
        RunOutcome::Skipped => "skipped",
    };
    metrics.run(outcome);
    if !matches!(report.outcome, RunOutcome::Skipped) {
        metrics.run_duration.observe(report.duration.as_secs_f64());
        metrics.lateness.observe(report.lateness.as_secs_f64());
    }
}

/// Sets up logging from `--log-level` and `--log-format`.
pub fn init_logging(settings: &Settings) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_new(&settings.log_level).map_err(|e| {
        format!(
            "invalid setting --log-level (RUST_LOG) {:?}: {e}",
            settings.log_level
        )
    })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match settings.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    result.map_err(|e| format!("could not set up logging: {e}"))
}

/// Completes on the first SIGINT or SIGTERM; a second one exits the process at once.
pub async fn shutdown_signal() {
    wait_for_signal().await;
    info!("signal received; press Ctrl-C again (or send SIGTERM) to exit at once");
    tokio::spawn(async {
        wait_for_signal().await;
        error!("second signal: exiting now");
        std::process::exit(130);
    });
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
