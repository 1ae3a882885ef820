//! The admin HTTP server: `/metrics`, `/live`, `/ready` and a status page.
//!
//! | path       | what                                                          |
//! |------------|---------------------------------------------------------------|
//! | `/metrics` | OpenMetrics text: the SDK registry (and the bot's own metrics), the `process_*` metrics, and the collected values as gauges ([`crate::exposition`]) |
//! | `/live`    | 200 while the process is up                                   |
//! | `/ready`   | 200 once the config has loaded and the backend is reachable (or none is configured); 503 before that and during shutdown |
//! | `/`        | an HTML status page: a page of jobs (failing first) with their last run, error and values; `?q=` searches, `?state=failing` filters, `?page=` pages |
//! | `/api/jobs` | the same, in JSON, for scripts                               |
//! | `/-/reload` | `POST` or `PUT`: reloads the config as SIGHUP does, and answers when it is done (200, or 500 with why); 403 unless `--web.enable-lifecycle` |
//!
//! The runtime owns an [`AdminState`] and feeds it: readiness through its
//! setters, values through [`AdminState::values`], and job rows through the
//! status provider it installs. [`router`] turns the state into an
//! [`axum::Router`], which [`serve`] runs on its own listener.

mod gzip;
mod process;
pub(crate) mod readiness;
pub(crate) mod server;
mod status_page;
pub(crate) mod web_config;

pub(crate) use process::ProcessCollector;

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Instant, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;

use crate::exposition::ValueStore;
use crate::job::JobId;
use crate::lifecycle::Reloads;
use crate::metrics::Metrics;
use crate::scheduler::JobStatus;
use readiness::{ProblemBoard, Readiness};

/// How long `POST /-/reload` waits for the reload it asked for.
pub const RELOAD_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// The `Content-Type` of `/metrics`.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Produces the status page's rows; installed by the runtime.
pub(crate) type StatusProvider = Arc<dyn Fn() -> Vec<JobStatus> + Send + Sync>;

/// Serves `router` on `listener` until `shutdown` completes, then lets open
/// requests finish (for a few seconds). Slow, idle and excess clients are cut
/// off (see [`server`]), so `/live` answers whatever other clients do. With
/// `web` (a `--web.config.file`), TLS, basic auth and headers as it says.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    web: Option<web_config::WebConfig>,
) {
    server::serve(listener, router, shutdown, server::connection_cap(), web).await;
}

/// The routes `/`, `/metrics`, `/live` and `/ready`, with their state.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/", get(status_page))
        .route("/api/jobs", get(jobs_json))
        .route("/metrics", get(metrics))
        .route("/live", get(live))
        .route("/ready", get(ready))
        .route("/-/reload", post(reload).put(reload))
        .with_state(state)
}

/// What the admin server shows. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct AdminState {
    shared: Arc<Shared>,
}

struct Shared {
    metrics: Metrics,
    values: ValueStore,
    status: RwLock<Option<StatusProvider>>,
    /// The entities' config problems at the last refresh.
    problems: ProblemBoard,
    version: String,
    started: Instant,
    readiness: Readiness,
    /// Reloads through `POST /-/reload`, when `--web.enable-lifecycle` is on.
    lifecycle: Option<Reloads>,
    /// The size of the last `/metrics` body, to size the next one's buffer.
    last_size: AtomicUsize,
    /// The same for the last gzipped body.
    last_gzip_size: AtomicUsize,
}

impl fmt::Debug for AdminState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminState")
            .field("bot", &self.shared.metrics.bot())
            .field("readiness", &self.readiness())
            .field("values", &self.shared.values)
            .finish_non_exhaustive()
    }
}

/// Builds an [`AdminState`]; see [`AdminState::builder`].
#[must_use]
pub struct AdminStateBuilder {
    metrics: Metrics,
    values: ValueStore,
    version: String,
    backend_configured: bool,
    lifecycle: Option<Reloads>,
}

impl fmt::Debug for AdminStateBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminStateBuilder")
            .field("bot", &self.metrics.bot())
            .field("version", &self.version)
            .field("backend_configured", &self.backend_configured)
            .finish_non_exhaustive()
    }
}

impl AdminStateBuilder {
    /// Uses `values` (with the bot's path mapper) instead of an empty store
    /// with the generic mapping.
    pub fn with_values(mut self, values: ValueStore) -> Self {
        self.values = values;
        self
    }

    /// Sets the version shown on the status page (default: the SDK's).
    pub fn with_version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// Turns on `POST /-/reload` (`--web.enable-lifecycle`), through `reloads`.
    pub(crate) fn with_lifecycle(mut self, reloads: Reloads) -> Self {
        self.lifecycle = Some(reloads);
        self
    }

    /// Whether a Grafolean backend is configured; if so, the status page says
    /// whether it answered the last refresh. Default: `false`.
    pub fn with_backend(mut self, configured: bool) -> Self {
        self.backend_configured = configured;
        self
    }

    /// Builds the state: live, not ready until the config has loaded. The
    /// value gauges join the metrics registry, so that one encoder writes
    /// all of `/metrics`.
    #[must_use]
    pub fn build(self) -> AdminState {
        // What the admin server adds to the bot's registry: the process's
        // own metrics and the value gauges.
        self.metrics.register_collector(ProcessCollector);
        self.metrics.register_collector(self.values.clone());
        AdminState {
            shared: Arc::new(Shared {
                metrics: self.metrics,
                values: self.values,
                status: RwLock::new(None),
                problems: ProblemBoard::default(),
                version: self.version,

                started: Instant::now(),
                readiness: Readiness::new(self.backend_configured),
                lifecycle: self.lifecycle,
                last_size: AtomicUsize::new(0),
                last_gzip_size: AtomicUsize::new(0),
            }),
        }
    }
}

impl AdminState {
    /// Starts building a state around the SDK's metrics.
    pub fn builder(metrics: Metrics) -> AdminStateBuilder {
        AdminStateBuilder {
            metrics,
            values: ValueStore::new(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            backend_configured: false,
            lifecycle: None,
        }
    }

    /// Records that the job config has been loaded once.
    #[cfg(test)]
    pub(crate) fn set_config_loaded(&self) {
        self.shared.readiness.set_config_loaded();
    }

    /// Records whether the Grafolean backend answered the last request.
    #[cfg(test)]
    pub(crate) fn set_backend_reachable(&self, reachable: bool) {
        self.shared.readiness.set_backend_reachable(reachable);
    }

    /// Records that shutdown has begun: `/ready` answers 503 from now on.
    pub fn set_shutting_down(&self) {
        self.shared.readiness.set_shutting_down();
    }

    /// The handle that sets what `/ready` answers, for the refresher.
    pub(crate) fn readiness_handle(&self) -> Readiness {
        self.shared.readiness.clone()
    }

    /// The handle of the config problems the status page lists, for the
    /// refresher.
    pub(crate) fn problem_board(&self) -> ProblemBoard {
        self.shared.problems.clone()
    }

    /// Replaces the provider of the status page's rows.
    pub(crate) fn set_status_provider(&self, provider: StatusProvider) {
        *self
            .shared
            .status
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(provider);
    }

    /// `Ok` when ready, else the reason, as `/ready` reports it.
    pub fn readiness(&self) -> Result<(), &'static str> {
        self.shared.readiness.check()
    }

    /// Whether `/ready` answers 200.
    #[cfg(any(test, feature = "testing"))]
    pub fn is_ready(&self) -> bool {
        self.readiness().is_ok()
    }

    /// The SDK metrics.
    #[cfg(any(test, feature = "testing"))]
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// The collected values exposed on `/metrics`; the runtime updates it
    /// after each run.
    #[cfg(any(test, feature = "testing"))]
    pub fn values(&self) -> &ValueStore {
        &self.shared.values
    }

    /// The status page's rows, sorted by id.
    pub(crate) fn job_rows(&self) -> Vec<JobStatus> {
        let provider = self
            .shared
            .status
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut rows = provider.map(|p| p()).unwrap_or_default();
        rows.sort_by(|a, b| a.id.cmp(&b.id));
        rows
    }

    /// The `/metrics` body: the SDK registry, the process metrics and the
    /// collected values, ending with a single `# EOF`.
    pub fn render_metrics(&self) -> String {
        let s = &self.shared;
        let mut out = String::with_capacity(s.last_size.load(Ordering::Relaxed) + 4096);
        // Writing into a String cannot fail.
        let _ = s.metrics.encode_into(&mut out);
        s.last_size.store(out.len(), Ordering::Relaxed);
        out
    }

    /// [`AdminState::render_metrics`], gzipped as it is encoded, so that the
    /// whole text is never held at once.
    ///
    /// # Errors
    ///
    /// Only the compressor's, which writes into memory.
    pub fn render_metrics_gzip(&self) -> std::io::Result<Vec<u8>> {
        let s = &self.shared;
        let mut out =
            gzip::GzipWriter::with_capacity(s.last_gzip_size.load(Ordering::Relaxed) + 4096);
        s.metrics
            .encode_into(&mut out)
            .map_err(|_| std::io::Error::other("gzip failed"))?;
        let body = out.finish()?;
        s.last_gzip_size.store(body.len(), Ordering::Relaxed);
        Ok(body)
    }

    /// The status page's HTML, as of `now`.
    #[cfg(any(test, feature = "testing"))]
    pub fn render_status_page(&self, now: SystemTime) -> String {
        self.render_status_page_for(&status_page::JobQuery::default(), now)
    }

    /// The status page for `query` (search, state, page).
    pub(crate) fn render_status_page_for(
        &self,
        query: &status_page::JobQuery,
        now: SystemTime,
    ) -> String {
        let selection = status_page::select(self.job_rows(), query);
        let problems = self.shared.problems.get();
        let summary = status_page::Summary {
            bot: self.shared.metrics.bot(),
            version: &self.shared.version,
            uptime: self.shared.started.elapsed(),
            readiness: self.readiness(),
            value_series: self.shared.values.len(),
            problems: &problems,
            backend: self.shared.readiness.backend_reachable(),
        };
        let values = |job: &JobId| self.shared.values.job_values(job, status_page::MAX_VALUES);
        status_page::render(&summary, query, &selection, &values, now)
    }

    /// `/api/jobs` for `query`: the status page's selection in JSON.
    pub(crate) fn render_jobs_json(&self, query: &status_page::JobQuery) -> String {
        let selection = status_page::select(self.job_rows(), query);
        let values = |job: &JobId| self.shared.values.job_values(job, status_page::MAX_VALUES);
        status_page::render_json(query, &selection, &values)
    }
}

async fn metrics(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    let gzip = gzip::accepts_gzip(&headers);
    // Hooks may block and a large store takes milliseconds to encode.
    let rendered = tokio::task::spawn_blocking(move || {
        if gzip {
            state.render_metrics_gzip().map(Body::from)
        } else {
            Ok(Body::from(state.render_metrics()))
        }
    })
    .await;
    match rendered {
        Ok(Ok(body)) if gzip => (
            [
                (header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE),
                (header::CONTENT_ENCODING, "gzip"),
                (header::VARY, "accept-encoding"),
            ],
            body,
        )
            .into_response(),
        Ok(Ok(body)) => (
            [
                (header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE),
                (header::VARY, "accept-encoding"),
            ],
            body,
        )
            .into_response(),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "compressing /metrics failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "compressing the metrics failed\n",
            )
                .into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "encoding /metrics failed (a scrape hook panicked?)");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "encoding the metrics failed\n",
            )
                .into_response()
        }
    }
}

/// `/api/jobs?state=failing&q=...&page=&per_page=`: the status page's
/// selection in JSON.
async fn jobs_json(State(state): State<AdminState>, RawQuery(query): RawQuery) -> Response {
    let query = status_page::JobQuery::parse(query.as_deref());
    match tokio::task::spawn_blocking(move || state.render_jobs_json(&query)).await {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "listing the jobs failed (the status provider panicked?)");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "listing the jobs failed\n",
            )
                .into_response()
        }
    }
}

async fn live() -> &'static str {
    "live\n"
}

async fn ready(State(state): State<AdminState>) -> Response {
    match state.readiness() {
        Ok(()) => "ready\n".into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

/// `POST /-/reload`: as SIGHUP, and answers once the reload is over. 403
/// (with Prometheus' words) unless `--web.enable-lifecycle` is on.
async fn reload(State(state): State<AdminState>) -> Response {
    let Some(reloads) = &state.shared.lifecycle else {
        return (
            StatusCode::FORBIDDEN,
            "Lifecycle API is not enabled (start the bot with --web.enable-lifecycle).\n",
        )
            .into_response();
    };
    tracing::info!("POST /-/reload: reloading the job configs now");
    match reloads.reload(RELOAD_WAIT).await {
        Some(Ok(())) => "reloaded\n".into_response(),
        Some(Err(why)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to reload the config, the jobs stay as they were: {why}\n"),
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the reload did not end within {} s (or the bot is stopping)\n",
                RELOAD_WAIT.as_secs()
            ),
        )
            .into_response(),
    }
}

async fn status_page(State(state): State<AdminState>, RawQuery(query): RawQuery) -> Response {
    let query = status_page::JobQuery::parse(query.as_deref());
    match tokio::task::spawn_blocking(move || {
        state.render_status_page_for(&query, SystemTime::now())
    })
    .await
    {
        Ok(page) => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "rendering the status page failed (the status provider panicked?)");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "rendering the status page failed\n",
            )
                .into_response()
        }
    }
}

#[cfg(all(test, feature = "testing"))]
mod browser_tests;
#[cfg(all(test, feature = "testing"))]
mod scrape_tests;
#[cfg(test)]
mod tests;
