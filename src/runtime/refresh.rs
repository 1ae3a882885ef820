//! The refresh loop: every refresh interval, load the configs, ask the
//! collector for its jobs, and reconcile the scheduler by job id.
//!
//! A failed refresh is logged and counted, and the previous job set stays
//! scheduled. Until the first config has loaded, a failed refresh is retried
//! sooner, with backoff, rather than after a whole refresh interval.
//!
//! A refresh on which the backend failed only in part (an account's entity
//! list, or an entity's credential or sensor, answered a 5xx or 429, timed
//! out, or lost its connection) keeps the last good config of each entity it
//! could not load, so that their jobs stay scheduled, unchanged: a failing
//! backend is not a property of the entity. The last good config is kept per
//! entity (for an account whose entity list failed: every entity of that
//! account). An entity that never loaded is pending, not misconfigured. Such
//! an episode is warned about once, when it begins, and said when it ends.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, error, info, warn};

use super::source::ConfigSource;
use crate::admin::readiness::{ProblemBoard, Readiness};
use crate::api::Client;
use crate::collector::Collector;
use crate::config::EntityConfig;
use crate::exposition::ValueStore;
use crate::fetch::FetchOptions;
use crate::job::{JobId, JobSpec};
use crate::metrics::{FailureLabels, Metrics};
use crate::problem::Problems;
use crate::scheduler::Scheduler;

/// The first retry after a failed refresh, before any config has loaded (with
/// jitter, between this and twice this); it doubles up to the refresh interval.
pub(crate) const FIRST_RETRY: Duration = Duration::from_secs(1);

/// What the refresh loop works with.
pub(crate) struct Refresher<C: Collector> {
    pub(crate) collector: Arc<C>,
    pub(crate) source: ConfigSource,
    pub(crate) fetch_options: FetchOptions,
    pub(crate) scheduler: Scheduler<C::Params>,
    /// Told the live job set before every sync.
    pub(crate) values: ValueStore,
    pub(crate) metrics: Metrics,
    /// The sender's `backend_up`, when values go to Grafolean.
    pub(crate) backend_up: Option<prometheus_client::metrics::gauge::Gauge>,
    /// The sender, told when a refresh got every answer, so that values
    /// waiting for the backend are tried at once.
    pub(crate) sender: Option<crate::sender::Sender>,
    /// What `/ready` answers.
    pub(crate) readiness: Readiness,
    /// The config problems the status page lists.
    pub(crate) board: ProblemBoard,
    /// The API client, when the configs and values go through Grafolean.
    pub(crate) client: Option<Client>,
    pub(crate) ready_attempts: u32,
    pub(crate) every: Duration,
    /// Reloads asked for (SIGHUP, `POST /-/reload`): a refresh now, out of
    /// turn, whose outcome is told back.
    pub(crate) reloads: crate::lifecycle::Reloads,
    /// systemd's notification socket (does nothing without one).
    pub(crate) systemd: crate::lifecycle::Systemd,
    /// Why the last refresh failed, whole or in part; `None` after one that
    /// was whole.
    pub(crate) last_error: Option<String>,
    /// Jobs refused at the last sync (no account while sending), so that each
    /// is warned about once, when it is first refused.
    pub(crate) refused: HashSet<JobId>,
    /// What was said about the entities' problems.
    pub(crate) problems: super::problems::Reporter,
    /// The last good config of every entity, by account and entity id, for
    /// a source that can fail in part (Grafolean); `None` for the others,
    /// which need not keep a copy.
    pub(crate) last_good: Option<HashMap<(u64, u64), EntityConfig>>,
    /// The failure episode under way: refreshes since the first that failed,
    /// whole or in part.
    pub(crate) failing: Option<Failing>,
}

/// A run of refreshes that a failure hit.
#[derive(Debug)]
pub(crate) struct Failing {
    since: Instant,
    refreshes: u64,
}

/// What one refresh came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// Every account and entity loaded (or a standalone file is unchanged).
    Complete,
    /// The backend failed on some requests; what they touched kept its last
    /// good config, and the rest loaded.
    Partial,
    /// Nothing loaded; the previous job set stays as it was.
    Failed,
}

impl<C: Collector> Refresher<C> {
    /// Refreshes every interval, forever (the caller stops it at shutdown).
    pub(crate) async fn run(mut self) {
        if let Some(client) = &self.client {
            if let Err(e) = client
                .wait_until_ready(self.ready_attempts, Duration::from_secs(1))
                .await
            {
                error!("{e}");
            }
        }
        let mut next = tokio::time::Instant::now();
        let mut loaded_once = false;
        let mut retry = crate::backoff::Backoff::new(FIRST_RETRY * 2, self.every);
        loop {
            let asked = tokio::select! {
                () = tokio::time::sleep_until(next) => {
                    next += self.every;
                    false
                }
                () = self.reloads.asked() => {
                    next = tokio::time::Instant::now() + self.every;
                    true
                }
            };
            if asked {
                self.reloads.begin();
                if loaded_once {
                    self.systemd.reloading();
                }
            }
            let started = Instant::now();
            let outcome = self.refresh_once(asked || !loaded_once).await;
            self.metrics
                .refresh_duration
                .observe(started.elapsed().as_secs_f64());
            self.record(outcome);
            if asked {
                self.reloads.end(self.last_error.clone());
            }
            // `READY=1` after the first load and at the end of every reload
            // (a failed one keeps the jobs: ready as before, once loaded);
            // else the status line only.
            let first = outcome == Outcome::Complete && !loaded_once;
            if first || (asked && loaded_once) {
                self.systemd.ready(&self.status_line());
            } else {
                self.systemd.status(&self.status_line());
            }
            if outcome == Outcome::Complete {
                loaded_once = true;
            } else if !loaded_once {
                next = tokio::time::Instant::now() + retry.next_delay();
            }
        }
    }

    /// Sets the reload metrics for a refresh that came to `outcome`.
    fn record(&mut self, outcome: Outcome) {
        if outcome == Outcome::Complete {
            self.last_error = None;
            self.metrics.reload_successful.set(1);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            self.metrics.reload_success_time.set(now.as_secs_f64());
        } else {
            self.metrics.reload_successful.set(0);
        }
    }

    /// systemd's `STATUS=`: the jobs, the values waiting to be sent, and the
    /// config's state.
    fn status_line(&self) -> String {
        let mut line = format!("{} jobs scheduled", self.scheduler.job_count());
        if self.client.is_some() {
            line += &format!(
                ", {} values waiting to be sent",
                self.metrics.values_unsent.get()
            );
        }
        if let Some(e) = &self.last_error {
            line += &format!(
                "; the last config load failed: {}",
                crate::text::bounded(e, crate::text::MAX_ERROR_BYTES)
            );
        }
        line
    }

    /// One refresh. `force` reads a standalone file even if it did not
    /// change.
    async fn refresh_once(&mut self, force: bool) -> Outcome {
        let started = Instant::now();
        let mut loaded = match self.source.load(&self.fetch_options, force).await {
            Ok(Some(loaded)) => loaded,
            Ok(None) => {
                debug!(
                    jobs = self.scheduler.job_count(),
                    "the standalone file did not change; the jobs stay as they are"
                );
                self.failure_over();
                return Outcome::Complete;
            }
            Err(e) => {
                self.metrics.refresh_errors.inc();
                if e.backend_unreachable() {
                    self.set_backend_up(false);
                    self.readiness.set_backend_reachable(false);
                }
                let cause = match &e {
                    super::source::RefreshError::Fetch(e) => crate::fetch::failure_cause(e),
                    super::source::RefreshError::File(_) => "file",
                };
                let jobs = self.scheduler.job_count();
                self.last_error = Some(e.to_string());
                self.failure(cause, || {
                    warn!(error = %e, jobs, "config refresh failed; keeping the previous jobs (said once until a refresh succeeds)");
                });
                return Outcome::Failed;
            }
        };
        // A request the backend failed (every such failure is one without
        // an answer that is not a 5xx) leaves `backend_up` at 0.
        self.set_backend_up(loaded.failed.is_empty());
        if loaded.failed.is_empty() {
            if let Some(sender) = &self.sender {
                sender.backend_answered();
            }
        }
        let (kept, pending) = self.keep_last_good(&mut loaded);
        self.metrics.entities_seen.set(loaded.seen as i64);
        self.metrics.entities_owned.set(loaded.owned as i64);
        let mut problems = Problems::default();
        problems.extend(std::mem::take(&mut loaded.skipped));
        let specs = self.collector.jobs(&loaded.configs, &mut problems);
        let problems = problems.into_vec();
        self.problems
            .report(&problems, &loaded.failed, &self.metrics);
        let skipped = problems.len();
        self.board.set(problems);
        let specs = self.refuse_unsendable(specs);
        let live: Vec<JobId> = specs.iter().map(|s| s.id.clone()).collect();
        // Before the sync: a new job's first run is kept, a removed job's last
        // run is not.
        self.values.retain_jobs(live.iter());
        let summary = self.scheduler.sync(specs).await;
        self.metrics
            .jobs_scheduled
            .set(self.scheduler.job_count() as i64);
        if let Some(last_good) = &mut self.last_good {
            *last_good = std::mem::take(&mut loaded.configs.entities)
                .into_iter()
                .map(|e| ((e.account_id, e.entity_id), e))
                .collect();
        }
        let outcome = if let Some(first) = loaded.failed.first() {
            self.last_error = Some(format!(
                "the backend failed on {} of the refresh's requests: {}",
                loaded.failed.len(),
                first.reason
            ));
            self.failure(first.cause, || {
                warn!(
                    failed_request = %first.reason,
                    account = first.account,
                    failures = loaded.failed.len(),
                    kept,
                    pending,
                    "the backend failed during a config refresh; the entities it could not load keep their last good config and jobs, and those never loaded are pending (said once until a refresh succeeds)"
                );
            });
            Outcome::Partial
        } else {
            self.failure_over();
            self.readiness.set_config_loaded();
            Outcome::Complete
        };
        self.readiness.set_backend_reachable(true);
        // At `info` when the job set changed; a refresh that changed nothing
        // (every one of a healthy bot) at `debug`.
        macro_rules! refreshed {
            ($level:ident) => {
                tracing::$level!(
                    accounts = loaded.accounts,
                    entities = loaded.configs.entities.len(),
                    seen = loaded.seen,
                    owned = loaded.owned,
                    skipped,
                    jobs = live.len(),
                    added = summary.added,
                    changed = summary.changed,
                    removed = summary.removed,
                    unchanged = summary.unchanged,
                    refused = self.refused.len(),
                    kept,
                    pending,
                    requests = loaded.requests,
                    duration_ms = started.elapsed().as_millis() as u64,
                    "refreshed job configs"
                )
            };
        }
        if summary.added + summary.changed + summary.removed > 0 {
            refreshed!(info);
        } else {
            refreshed!(debug);
        }
        outcome
    }

    /// Sets `backend_up`, when there is a backend.
    fn set_backend_up(&self, up: bool) {
        if let Some(gauge) = &self.backend_up {
            gauge.set(i64::from(up));
        }
    }

    /// Puts back, into `loaded`, the last good config of each entity that the
    /// backend failed to give (every entity of an account whose list failed).
    /// Returns how many were kept, and how many never loaded (pending).
    fn keep_last_good(&self, loaded: &mut super::source::Loaded) -> (usize, usize) {
        let Some(last_good) = &self.last_good else {
            return (0, 0);
        };
        let (mut kept, mut pending) = (0, 0);
        let failed_accounts: HashSet<u64> = loaded
            .failed
            .iter()
            .filter(|f| f.entity.is_none())
            .map(|f| f.account)
            .collect();
        if !failed_accounts.is_empty() {
            for ((account, _), config) in last_good {
                if failed_accounts.contains(account) {
                    loaded.configs.entities.push(config.clone());
                    kept += 1;
                }
            }
        }
        for failed in &loaded.failed {
            let Some(entity) = failed.entity else {
                continue;
            };
            match last_good.get(&(failed.account, entity)) {
                Some(config) => {
                    loaded.configs.entities.push(config.clone());
                    kept += 1;
                }
                None => pending += 1,
            }
        }
        (kept, pending)
    }

    /// Counts a refresh that a failure hit, and runs `warn` if it begins an
    /// episode (later ones of the episode are logged at debug level).
    fn failure(&mut self, cause: &'static str, warn: impl FnOnce()) {
        self.metrics
            .refresh_failures
            .get_or_create(&FailureLabels { cause })
            .inc();
        match &mut self.failing {
            Some(failing) => {
                failing.refreshes += 1;
                debug!(
                    cause,
                    refreshes = failing.refreshes,
                    "config refresh failed again"
                );
            }
            None => {
                warn();
                self.failing = Some(Failing {
                    since: Instant::now(),
                    refreshes: 1,
                });
            }
        }
    }

    /// Ends a failure episode, if one was under way, and says so.
    fn failure_over(&mut self) {
        if let Some(failing) = self.failing.take() {
            info!(
                failed_refreshes = failing.refreshes,
                seconds = failing.since.elapsed().as_secs(),
                "config refreshes succeed again"
            );
        }
    }

    /// While values go to Grafolean, a job without an account would run and
    /// lose every value: it is refused, with one warning when it first is,
    /// and counted at every sync.
    fn refuse_unsendable(&mut self, specs: Vec<JobSpec<C::Params>>) -> Vec<JobSpec<C::Params>> {
        if self.client.is_none() {
            return specs;
        }
        let (kept, refused): (Vec<_>, Vec<_>) =
            specs.into_iter().partition(|s| s.account.is_some());
        let refused: HashSet<JobId> = refused.into_iter().map(|s| s.id).collect();
        for id in refused.difference(&self.refused) {
            warn!(job = %id, "job refused: it has no Grafolean account, so its values could not be sent; make it with JobSpec::for_entity (or .with_account)");
        }
        self.metrics.jobs_refused.inc_by(refused.len() as u64);
        self.refused = refused;
        kept
    }
}
