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

mod context;
mod once;
mod problems;
#[cfg(feature = "runtime")]
mod process;
mod refresh;
mod sinks;
mod source;
mod tasks;

use std::collections::HashMap;
use std::net::SocketAddr;
#[cfg(feature = "runtime")]
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use crate::admin::{self, AdminState};
use crate::api::Client;
use crate::collector::{BoxError, Collector};
use crate::exposition::{MappedPath, ValueStore};
use crate::fetch::FetchOptions;
use crate::metrics::Metrics;
use crate::scheduler::{Scheduler, SchedulerOptions};
use crate::sender::Sender;
use crate::settings::{Settings, SettingsError, Source};

pub use context::Context;
use refresh::Refresher;
use sinks::Sinks;
pub(crate) use source::ConfigSource;
use tasks::Tasks;

/// How long a graceful shutdown waits for running jobs, then for the sender.
pub(crate) const DEFAULT_DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// How many times the start-up waits for the backend's `/status/info` before
/// giving up (with exponential backoff from 1 s up to 30 s: about 10 minutes).
pub(crate) const DEFAULT_READY_ATTEMPTS: u32 = 25;

/// Makes a bot's collector from the runtime's [`Context`].
type MakeCollector<C> = Box<dyn FnOnce(&Context) -> Result<C, BoxError> + Send>;

/// A bot, ready to run: a collector (or a way to build one from the
/// runtime's [`Context`]) plus everything around it.
///
/// ```no_run
/// use grafolean_collector::{BoxError, Bot, Collector, Intervals, JobConfigs, JobSpec, Problems, Tick, Value};
///
/// struct Hello;
///
/// impl Collector for Hello {
///     type Params = ();
///     fn jobs(&self, _: &JobConfigs, _: &mut Problems) -> Vec<JobSpec<()>> {
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
    make: MakeCollector<C>,
    about: Option<String>,
    version: Option<String>,
    protocol: Option<String>,
    default_listen: Option<SocketAddr>,
    default_config: Option<String>,
    listener: Option<std::net::TcpListener>,
    scheduler_options: SchedulerOptions,
    fetch_options: FetchOptions,
    metrics: Metrics,
    values: ValueStore,
    ready_attempts: u32,
    drain_deadline: Duration,
    /// `--once` runs each job twice, this far apart (see
    /// [`Bot::with_once_warm_up`]).
    once_warm_up: Option<Duration>,
    /// Reloads asked for (SIGHUP, `POST /-/reload`) and their outcomes.
    reloads: crate::lifecycle::Reloads,
    /// Dependencies whose log events are counted, not written, by default
    /// (see [`Bot::with_quiet_log_target`]).
    quiet_log_targets: Vec<&'static str>,
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
        Self::from_fn(name, move |_| Ok(collector))
    }

    /// A bot named `name` whose collector `make` builds from the runtime's
    /// [`Context`] (its metrics registry, API client, shutdown token and
    /// supervised tasks), inside [`Bot::run`] once the settings are valid and
    /// before the first config refresh. An error from `make` stops the bot
    /// (exit status 1) with that error.
    pub fn from_fn(
        name: impl Into<String>,
        make: impl FnOnce(&Context) -> Result<C, BoxError> + Send + 'static,
    ) -> Self {
        let name = name.into();
        Self {
            metrics: Metrics::new(&name),
            name,
            make: Box::new(make),
            about: None,
            version: None,
            protocol: None,
            default_listen: None,
            default_config: None,
            listener: None,
            scheduler_options: SchedulerOptions::default(),
            fetch_options: FetchOptions::default(),
            values: ValueStore::new(),
            ready_attempts: DEFAULT_READY_ATTEMPTS,
            drain_deadline: DEFAULT_DRAIN_DEADLINE,
            once_warm_up: None,
            reloads: crate::lifecycle::Reloads::default(),
            quiet_log_targets: Vec::new(),
        }
    }

    /// Keeps a dependency's own log lines (those of `target`, a crate's
    /// module path such as `async_snmp`) out of the log, and counts its
    /// warnings and errors instead, in
    /// `grafolean_bot_dependency_log_events_total{target, level}`: a crate
    /// that logs an ERROR per device per firing (a timeout) would write
    /// thousands of lines a minute for a network of dead devices, which the
    /// bot already reports in its own words, with backoff. A `--log-level`
    /// (`RUST_LOG`) that names the target, such as `info,async_snmp=debug`,
    /// shows them again. Only [`Bot::main`] sets up logging; a program that
    /// sets its own subscriber decides for itself.
    pub fn with_quiet_log_target(mut self, target: &'static str) -> Self {
        self.quiet_log_targets.push(target);
        self
    }

    /// One line on what the bot does, shown by `--help` (by default, none).
    pub fn with_about(mut self, about: impl Into<String>) -> Self {
        self.about = Some(about.into());
        self
    }

    /// The bot's version, shown by `--version` and in `build_info` (usually
    /// `env!("CARGO_PKG_VERSION")` of the bot's crate; by default the SDK's).
    pub fn with_version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }

    /// The Grafolean protocol whose entities this bot monitors, such as `ping`.
    /// A bot that is given a backend (`BACKEND_URL`) must have one: without it
    /// the bot stops at start-up with a message that says so.
    pub fn with_protocol(mut self, protocol: impl Into<String>) -> Self {
        self.protocol = Some(protocol.into());
        self
    }

    /// The admin server's address when `--listen` is not given: each bot
    /// declares its own port (the ping bot's is 9742). Without one, the admin
    /// server takes a free port on 127.0.0.1 and logs it.
    pub fn with_default_listen(mut self, addr: SocketAddr) -> Self {
        self.default_listen = Some(addr);
        self
    }

    /// Makes `--once` run every job twice, `gap` apart, and show the second
    /// run: for bots whose first run only learns (the SNMP bot's counters
    /// give rates from two readings). Without it, `--once` runs each job once.
    pub fn with_once_warm_up(mut self, gap: Duration) -> Self {
        self.once_warm_up = Some(gap);
        self
    }

    /// A built-in standalone config (TOML, in the format of `--config`; see the README), used
    /// when neither a backend nor `--config` is given.
    pub fn with_default_config(mut self, toml: impl Into<String>) -> Self {
        self.default_config = Some(toml.into());
        self
    }

    /// Serves the admin server on an already bound listener (tests bind
    /// `127.0.0.1:0`), instead of `--listen`.
    pub fn with_admin_listener(mut self, listener: std::net::TcpListener) -> Self {
        // tokio takes only a non-blocking socket; if this fails, so does
        // the admin server's start, with the error.
        let _ = listener.set_nonblocking(true);
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

    /// The whole `main` of a bot: reads `.env` and the command line (with the
    /// bot's name, version and about in `--help`), sets up logging, and runs
    /// until SIGINT or SIGTERM (or once, with `--once`). Needs the default
    /// `runtime` feature.
    #[cfg(feature = "runtime")]
    pub async fn main(self) -> ExitCode {
        let settings = self.parse_settings();
        self.main_with(settings).await
    }

    /// Reads `.env` and the command line as [`Bot::main`] does, with the
    /// bot's name, version (`--version`; the SDK's when the bot gives none),
    /// about and default admin port in `--help`; exits with a message on a
    /// bad flag, or after `--help` or `--version`.
    #[cfg(feature = "runtime")]
    pub fn parse_settings(&self) -> Settings {
        let version = self.version.clone().unwrap_or_else(|| {
            format!(
                "(no version given; grafolean-collector {})",
                env!("CARGO_PKG_VERSION")
            )
        });
        Settings::parse_for_bot(
            &self.name,
            &version,
            self.about.as_deref(),
            self.default_listen,
        )
    }

    /// [`Bot::main`] with settings the caller already parsed (with
    /// [`Settings::from_env_and_args`]), for a `main` that needs them first.
    ///
    /// Exit statuses: 0 after a clean shutdown; 2 when a setting or the
    /// standalone config is invalid (nothing started); 1 when the bot failed
    /// while running, or stopped but dropped values it could not deliver;
    /// 130 or 143 on a second SIGINT or SIGTERM (128 + the signal's number).
    #[cfg(feature = "runtime")]
    pub async fn main_with(self, settings: Settings) -> ExitCode {
        if let Err(e) = process::init_logging(&settings, &self.quiet_log_targets, &self.metrics) {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
        crate::admin::server::raise_open_files_limit();
        if settings.once {
            return self.once(settings).await;
        }
        let signals = process::signals(self.reloads.clone(), self.metrics.clone());
        match self.run(settings, signals).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("{e:#}");
                if e.is_usage() {
                    ExitCode::from(2)
                } else {
                    ExitCode::FAILURE
                }
            }
        }
    }

    /// `--once`: fetches the configs, runs every job once now, prints the
    /// values, and returns a failure code if any job failed.
    pub async fn once(self, settings: Settings) -> std::process::ExitCode {
        once::run(self, settings).await
    }

    /// Runs the bot until `shutdown` completes, then shuts down gracefully:
    /// stops scheduling, turns `/ready` to 503, drains the running jobs,
    /// stops the bot's supervised tasks and flushes the sender.
    pub async fn run(
        mut self,
        settings: Settings,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), RunError> {
        let start = self.set_up(&settings)?;
        let export_values = !settings.no_export_values;

        // The admin server first, so that /live answers during start-up.
        let (state, admin_addr, stop_admin, admin_task) = self
            .start_admin(&settings, start.client.is_some(), export_values)
            .await?;
        info!(bot = %self.name, admin = %format!("http://{admin_addr}/"), source = %start.source, shard = %start.fetch_options.shard.map_or_else(|| "none".to_string(), |s| s.to_string()), "started");
        if start.fetch_options.shard.is_some() && matches!(start.source, ConfigSource::Empty) {
            warn!(
                "--shard is set, but this bot makes its own job list with no entities: every replica runs every job"
            );
        }
        let (collector, tasks) = match self.build(start.client.clone()) {
            Ok(built) => built,
            Err(e) => {
                state.set_shutting_down();
                let _ = stop_admin.send(());
                let _ = admin_task.await;
                return Err(e);
            }
        };

        let sender = match &start.client {
            Some(client) => {
                let mut builder = Sender::builder(client.clone(), &mut self.metrics.registry_mut())
                    .with_unsent_gauge(self.metrics.values_unsent.clone());
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
        let sinks = Sinks {
            metrics: self.metrics.clone(),
            values: export_values.then(|| self.values.clone()),
            sender: sender.clone(),
        };
        let scheduler = Scheduler::spawn(
            collector.clone(),
            self.scheduler_options.clone(),
            move |report| sinks.report(report),
        );
        {
            let scheduler = scheduler.clone();
            state.set_status_provider(Arc::new(move || scheduler.status()));
        }

        let systemd = crate::lifecycle::Systemd::from_env();
        let watchdog = systemd
            .watchdog_period()
            .map(|period| tokio::spawn(systemd.clone().watchdog(period)));
        let refresher = Refresher {
            last_good: matches!(start.source, ConfigSource::Grafolean { .. }).then(HashMap::new),
            collector,
            source: start.source,
            fetch_options: start.fetch_options,
            scheduler: scheduler.clone(),
            values: self.values.clone(),
            metrics: self.metrics.clone(),
            backend_up: sender.as_ref().map(Sender::backend_up),
            sender: sender.clone(),
            readiness: state.readiness_handle(),
            board: state.problem_board(),
            client: start.client,
            ready_attempts: self.ready_attempts,
            every: settings.refresh_interval(),
            reloads: self.reloads.clone(),
            systemd: systemd.clone(),
            last_error: None,
            refused: Default::default(),
            problems: Default::default(),
            failing: None,
        };
        let stopped_by = tokio::select! {
            _ = refresher.run() => None,
            _ = shutdown => None,
            _ = scheduler.failed() => Some(RunError::Scheduler),
            (task, error) = tasks.failed() => Some(RunError::Task { task, error }),
        };

        // Graceful shutdown: stop scheduling, drain, stop the tasks, flush.
        info!("shutting down: draining running jobs and flushing values");
        state.set_shutting_down();
        systemd.stopping();
        if let Some(watchdog) = watchdog {
            watchdog.abort();
        }
        scheduler.shutdown(self.drain_deadline).await;
        tasks.shutdown(self.drain_deadline).await;
        let mut dropped = 0;
        if let Some(sender) = sender {
            let report = sender.shutdown(self.drain_deadline).await;
            info!(
                delivered = report.delivered,
                spooled = report.spooled,
                dropped = report.dropped,
                timed_out = report.timed_out,
                "sender flushed"
            );
            dropped = report.dropped;
        }
        let _ = stop_admin.send(());
        if let Err(e) = admin_task.await {
            warn!("admin server task failed: {e}");
        }
        info!("stopped");
        if let Some(e) = stopped_by {
            return Err(e);
        }
        if dropped > 0 {
            return Err(RunError::ValuesDropped { dropped });
        }
        Ok(())
    }

    /// The set-up that [`Bot::run`] and `--once` share: the settings
    /// validated, the fetch options with the shard, the API client and the
    /// config source; and the bot's version on `build_info`.
    fn set_up(&self, settings: &Settings) -> Result<Start, RunError> {
        let source = settings.validate().map_err(RunError::Settings)?;
        let fetch_options = self
            .sharded_fetch_options(settings)
            .map_err(RunError::Settings)?;
        if let Some(shard) = fetch_options.shard {
            self.metrics.shard_index.set(i64::from(shard.index()));
            self.metrics.shard_count.set(i64::from(shard.count()));
        }
        if let Some(version) = &self.version {
            self.metrics.set_version(version);
        }
        let (client, source) = self.config_source(source, settings.max_response_bytes())?;
        Ok(Start {
            client,
            source,
            fetch_options,
        })
    }

    /// Builds the collector from a [`Context`], with the supervisor of the
    /// tasks it starts.
    fn build(&mut self, client: Option<Client>) -> Result<(Arc<C>, Tasks), RunError> {
        let tasks = Tasks::register(
            self.metrics
                .registry_mut()
                .sub_registry_with_prefix(crate::metrics::PREFIX),
        );
        let context = Context {
            metrics: self.metrics.clone(),
            client,
            tasks: tasks.clone(),
        };
        let make = std::mem::replace(&mut self.make, Box::new(|_| Err("already built".into())));
        let collector = make(&context).map_err(RunError::Collector)?;
        Ok((Arc::new(collector), tasks))
    }

    /// Binds and starts the admin server.
    async fn start_admin(
        &mut self,
        settings: &Settings,
        backend: bool,
        export_values: bool,
    ) -> Result<
        (
            AdminState,
            SocketAddr,
            tokio::sync::oneshot::Sender<()>,
            tokio::task::JoinHandle<()>,
        ),
        RunError,
    > {
        let web = settings
            .web_config_file
            .as_deref()
            .map(admin::web_config::WebConfig::load)
            .transpose()
            .map_err(RunError::WebConfig)?;
        let listener = match self.listener.take() {
            Some(l) => tokio::net::TcpListener::from_std(l).map_err(RunError::Listen)?,
            None => {
                let addr = match settings.listen.or(self.default_listen) {
                    Some(addr) => addr,
                    None => {
                        warn!(bot = %self.name, "this bot declares no admin port (Bot::with_default_listen) and --listen was not given; using a free port");
                        SocketAddr::from(([127, 0, 0, 1], 0))
                    }
                };
                tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|source| RunError::Admin {
                        addr: addr.to_string(),
                        source,
                    })?
            }
        };
        let admin_addr = listener.local_addr().map_err(RunError::Listen)?;
        let mut state = AdminState::builder(self.metrics.clone())
            .with_version(self.version.as_deref().unwrap_or(env!("CARGO_PKG_VERSION")))
            .with_backend(backend);
        if export_values {
            state = state.with_values(self.values.clone());
        }
        if settings.web_enable_lifecycle {
            state = state.with_lifecycle(self.reloads.clone());
        }
        let state = state.build();
        let (stop_admin, admin_stopped) = tokio::sync::oneshot::channel::<()>();
        let admin_task = tokio::spawn(admin::serve(
            listener,
            admin::router(state.clone()),
            async move {
                let _ = admin_stopped.await;
            },
            web,
        ));
        Ok((state, admin_addr, stop_admin, admin_task))
    }

    /// The fetch options, with the shard of `--shard` (which takes the place
    /// of one set with [`Bot::with_fetch_options`]).
    fn sharded_fetch_options(&self, settings: &Settings) -> Result<FetchOptions, SettingsError> {
        let mut options = self.fetch_options.clone();
        if let Some(shard) = settings.shard()? {
            options.shard = Some(shard);
        }
        Ok(options)
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
                let Some(protocol) = &self.protocol else {
                    return Err(RunError::NoProtocol {
                        bot: self.name.clone(),
                    });
                };
                let source = ConfigSource::Grafolean {
                    client: client.clone(),
                    protocol: protocol.clone(),
                };
                (Some(client), source)
            }
            Source::File(path) => {
                // Fail early on a broken file; later refreshes re-read it.
                crate::standalone::load(&path).map_err(RunError::Config)?;
                (None, ConfigSource::File(path, Default::default()))
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

/// What [`Bot::run`] and `--once` start from.
struct Start {
    client: Option<Client>,
    source: ConfigSource,
    fetch_options: FetchOptions,
}

/// Why a bot could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
    /// The admin server could not listen on its address.
    #[error("cannot listen on {addr} for the admin server: {source}; choose a free address")]
    Admin {
        /// The address.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The admin server's `--web.config.file` is invalid.
    #[error(transparent)]
    WebConfig(crate::admin::web_config::WebConfigError),
    /// The admin listener could not be used.
    #[error("the admin server's listener failed: {0}")]
    Listen(std::io::Error),
    /// The sender could not start.
    #[error("the sender could not start: {0}")]
    Sender(String),
    /// The bot's collector could not be built (the function given to
    /// [`Bot::from_fn`] failed).
    #[error("the bot could not start: {0}")]
    Collector(BoxError),
    /// An essential task of the bot (see [`Context::spawn_essential`])
    /// failed; the bot exits so that its supervisor restarts it.
    #[error(
        "the bot's essential task {task:?} failed: {error}; exiting so that the bot is restarted"
    )]
    Task {
        /// The task's name.
        task: String,
        /// Why it failed.
        error: String,
    },
    /// The scheduler's timer task died; the bot exits so that its supervisor
    /// restarts it.
    #[error("the scheduler failed and no job fires any more; exiting so that the bot is restarted")]
    Scheduler,
    /// The bot stopped, but values that could not be delivered before the
    /// drain deadline were dropped (there was no spool to keep them).
    #[error(
        "stopped, but {dropped} values could not be delivered before the drain deadline and were dropped; \
         give --spool-dir to keep unsent values across restarts"
    )]
    ValuesDropped {
        /// How many values were dropped.
        dropped: u64,
    },
    /// A backend was given to a bot that declares no Grafolean protocol, so
    /// it would get no jobs from it.
    #[error(
        "BACKEND_URL is set, but the bot {bot:?} declares no Grafolean protocol, so it would get no jobs; \
         its author must call Bot::with_protocol(\"<protocol>\") (or run it standalone, without BACKEND_URL)"
    )]
    NoProtocol {
        /// The bot's name.
        bot: String,
    },
}

impl RunError {
    /// Whether the error is in what the bot was given (its settings, config
    /// or build) rather than something that failed while it ran: such a bot
    /// exits with status 2.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            Self::Settings(_) | Self::Config(_) | Self::WebConfig(_) | Self::NoProtocol { .. }
        )
    }
}
