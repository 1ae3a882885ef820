//! The SDK's own operational metrics, in one [`prometheus_client`] registry.
//!
//! The runtime records into [`Metrics`]: the scheduler (runs, lateness) and
//! the refresh loop (refresh duration and errors). The sender registers its
//! own instruments (`crate::sender::metrics`), and so do the bot's
//! supervised tasks. A bot registers its own
//! metrics into the same registry through the
//! [`Context`](crate::runtime::Context) it is built from, and the admin server encodes
//! it on `/metrics`.
//!
//! A bot whose metrics are cheaper to read on demand than to keep current
//! (a queue length, a pool size) registers a
//! [`prometheus_client::collector::Collector`]: the one way to run code at
//! scrape time.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The prefix of every SDK metric name.
pub(crate) const PREFIX: &str = "grafolean_bot";

/// How a firing of a job ended: the `outcome` label of the runs counter. An
/// enum, so that a typo cannot create a new series.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub(crate) enum Outcome {
    ok,
    error,
    timeout,
    panic,
    skipped,
}

/// Labels of the runs counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OutcomeLabels {
    pub(crate) outcome: Outcome,
}

/// Labels of the entity errors counter: a [`SkipCause`](crate::problem::SkipCause)
/// in one word.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CauseLabels {
    pub(crate) cause: &'static str,
}

/// Labels of the refresh failures counter: how the backend failed
/// (`server_error`, `throttled`, `timeout`, `network`, `too_large`, ...;
/// `file` for a standalone file).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct FailureLabels {
    pub(crate) cause: &'static str,
}

/// Labels of the build-info gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
    /// The commit the SDK was built from (`unknown` outside a git checkout).
    revision: &'static str,
    /// The compiler's version.
    rustc_version: &'static str,
    bot: String,
}

/// The SDK's metric handles. Cheap to clone; all clones record into the same
/// series.
///
/// ```
/// use grafolean_collector::Metrics;
/// let metrics = Metrics::new("example");
/// let text = metrics.encode();
/// assert!(text.contains("grafolean_bot_build_info{version="));
/// ```
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    bot: Arc<str>,
    /// Jobs currently scheduled.
    pub(crate) jobs_scheduled: Gauge,
    /// Runs by outcome.
    pub(crate) runs: Family<OutcomeLabels, Counter>,
    /// Run duration in seconds.
    pub(crate) run_duration: Histogram,
    /// Firing lateness (actual start minus intended time) in seconds.
    pub(crate) lateness: Histogram,
    /// Config refresh duration in seconds.
    pub(crate) refresh_duration: Histogram,
    /// Failed config refreshes (the previous job set stayed scheduled).
    pub(crate) refresh_errors: Counter,
    /// Refreshes that a failure hit, whole or in part, by cause.
    pub(crate) refresh_failures: Family<FailureLabels, Counter>,
    /// Entities skipped during a refresh because they could not be fetched or parsed.
    pub(crate) entity_errors: Family<CauseLabels, Counter>,
    /// Jobs refused at a sync because they have no account while values go
    /// to Grafolean (counted at every sync that refuses them).
    pub(crate) jobs_refused: Counter,
    /// Every value the sender holds that the backend has not taken yet: the
    /// backlog, open and ready batches, and requests in flight. Not exported:
    /// the runtime gives it to the sender, and the second-signal message
    /// reads it.
    pub(crate) values_unsent: Gauge,
    /// This replica's shard index (0 without sharding).
    pub(crate) shard_index: Gauge,
    /// The number of replicas sharing the bot's entities (1 without sharding).
    pub(crate) shard_count: Gauge,
    /// Entities for this bot at the last refresh, before the shard filter.
    pub(crate) entities_seen: Gauge,
    /// Entities this replica owned at the last refresh.
    pub(crate) entities_owned: Gauge,
    /// 1 if the last config load (at start, on a refresh or a reload) was
    /// whole, else 0 (as Prometheus' own `..._config_last_reload_successful`).
    pub(crate) reload_successful: Gauge,
    /// When the last config load that was whole ended, in Unix seconds.
    pub(crate) reload_success_time: Gauge<f64, AtomicU64>,
    /// One series, 1, labelled with the bot's version and name.
    build_info: Family<BuildLabels, Gauge>,
}

impl Metrics {
    /// Creates the SDK metrics in a new registry, with a build-info series for `bot`.
    pub fn new(bot: &str) -> Self {
        // The bot's own metrics go into the root registry under their own
        // names; the SDK's into a sub-registry under `grafolean_bot_`; the
        // admin server adds the process metrics and the value gauges as
        // collectors of the root. One encoder writes all of them.
        let mut root = Registry::default();
        let registry = root.sub_registry_with_prefix(PREFIX);
        let jobs_scheduled = Gauge::default();
        registry.register(
            "jobs_scheduled",
            "Jobs currently scheduled",
            jobs_scheduled.clone(),
        );
        let runs = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "runs",
            "Job runs by outcome (ok, error, timeout, panic, skipped)",
            runs.clone(),
        );
        let run_duration = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "run_duration_seconds",
            "Duration of job runs",
            run_duration.clone(),
        );
        let lateness = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        registry.register(
            "firing_lateness_seconds",
            "Actual start of a run minus its intended time",
            lateness.clone(),
        );
        let refresh_duration = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "refresh_duration_seconds",
            "Duration of job config refreshes",
            refresh_duration.clone(),
        );
        let refresh_errors = Counter::default();
        registry.register(
            "refresh_errors",
            "Failed config refreshes; the previous job set stayed scheduled",
            refresh_errors.clone(),
        );
        let refresh_failures = Family::<FailureLabels, Counter>::default();
        registry.register(
            "refresh_failures",
            "Config refreshes that a failure hit, whole or in part (the backend failed on some requests), by the cause of the first; what they could not load kept its last good config",
            refresh_failures.clone(),
        );
        let entity_errors = Family::<CauseLabels, Counter>::default();
        registry.register(
            "entity_errors",
            "Entity config problems found by refreshes, by cause: entities skipped because they could not be listed, fetched or parsed, and problems a bot's own checks reported (invalid_config)",
            entity_errors.clone(),
        );
        let jobs_refused = Counter::default();
        registry.register(
            "jobs_refused",
            "Jobs refused at a sync: they have no Grafolean account while values go to Grafolean",
            jobs_refused.clone(),
        );
        // Sharding: `sum(entities_owned) != max(entities_seen)` over the
        // replicas of one bot means they disagree on the count (see `docs/sharding.md`).
        let shard_index = Gauge::default();
        registry.register(
            "shard_index",
            "This replica's shard index, from 0 (0 without sharding)",
            shard_index.clone(),
        );
        let shard_count = Gauge::default();
        shard_count.set(1);
        registry.register(
            "shard_count",
            "The number of replicas sharing this bot's entities (1 without sharding)",
            shard_count.clone(),
        );
        let entities_seen = Gauge::default();
        registry.register(
            "entities_seen",
            "Entities for this bot at the last refresh, before the shard filter",
            entities_seen.clone(),
        );
        let entities_owned = Gauge::default();
        registry.register(
            "entities_owned",
            "Entities this replica's shard owned at the last refresh",
            entities_owned.clone(),
        );
        let reload_successful = Gauge::default();
        registry.register(
            "config_last_reload_successful",
            "Whether the last config load (at start, on a refresh, SIGHUP or POST /-/reload) was whole; a failed one kept the jobs as they were",
            reload_successful.clone(),
        );
        let reload_success_time = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "config_last_reload_success_timestamp_seconds",
            "When the last whole config load ended",
            reload_success_time.clone(),
        );
        let build_info = Family::<BuildLabels, Gauge>::default();
        registry.register("build_info", "Build information", build_info.clone());
        let metrics = Self {
            registry: Arc::new(Mutex::new(root)),
            bot: bot.into(),
            jobs_scheduled,
            runs,
            run_duration,
            lateness,
            refresh_duration,
            refresh_errors,
            refresh_failures,
            entity_errors,
            jobs_refused,
            values_unsent: Gauge::default(),
            shard_index,
            shard_count,
            entities_seen,
            entities_owned,
            reload_successful,
            reload_success_time,
            build_info,
        };
        metrics.set_version(env!("CARGO_PKG_VERSION"));
        metrics
    }

    /// Sets the version that `build_info` states (the bot's, once the
    /// runtime knows it; the SDK's until then).
    pub(crate) fn set_version(&self, version: &str) {
        // prometheus-client (since 0.26) escapes label values itself.
        self.build_info.clear();
        self.build_info
            .get_or_create(&BuildLabels {
                version: crate::exposition::capped_label_value(version).into_owned(),
                revision: env!("GRAFOLEAN_BUILD_REVISION"),
                rustc_version: env!("GRAFOLEAN_BUILD_RUSTC"),
                bot: crate::exposition::capped_label_value(&self.bot).into_owned(),
            })
            .set(1);
    }

    /// Counts one run with the given outcome.
    pub(crate) fn run(&self, outcome: Outcome) {
        self.runs.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    /// Gives mutable access to the registry, so that a bot can register its own
    /// metrics next to the SDK's, under their own names (the SDK's are in a
    /// sub-registry prefixed `grafolean_bot_`).
    pub fn registry_mut(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a collector (the value gauges) in the root registry.
    pub(crate) fn register_collector(
        &self,
        collector: impl prometheus_client::collector::Collector,
    ) {
        self.registry_mut().register_collector(Box::new(collector));
    }

    /// Encodes the registry in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = self.encode_into(&mut out);
        out
    }

    /// Appends the registry in the OpenMetrics text format to `out`, ending
    /// with the `# EOF` line.
    ///
    /// # Errors
    ///
    /// Only those of `out` (writing into a `String` cannot fail).
    pub fn encode_into(&self, out: &mut impl std::fmt::Write) -> std::fmt::Result {
        let registry = self.registry_mut();
        prometheus_client::encoding::text::encode(out, &registry)
    }

    /// The bot's name, as given to [`Metrics::new`].
    ///
    /// ```
    /// # use grafolean_collector::Metrics;
    /// assert_eq!(Metrics::new("ping").bot(), "ping");
    /// ```
    pub fn bot(&self) -> &str {
        &self.bot
    }
}
