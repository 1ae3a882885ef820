//! [`SnmpCollector`]: the SNMP bot's [`Collector`], with the Python bot's
//! jobs and paths.
//!
//! Each entity gets two jobs (see [`crate::job`]):
//!
//! - `entity.<id>`, at the set of its sensors' intervals. A firing runs only
//!   the sensors whose interval is among the tick's affecting intervals, and
//!   all their values go out together. Their GETs go in one PDU, their walks
//!   run at the same time, all within the device's time budget.
//! - `entity.<id>-interfaces`, every 300 s (only with a Grafolean backend):
//!   see [`crate::interfaces`].
//!
//! A firing of `entity.<id>` goes through three rooms: [`crate::plan`]
//! decides what to fetch, [`crate::fetch`] asks the agent (the only part
//! that talks to it), and [`crate::rates`] and [`crate::map`] turn the
//! answers into values. This module holds them together: the entity's state,
//! the metrics and the logs.
//!
//! Per-entity state (the cached client, learned max-repetitions and counter
//! readings, see [`crate::state`]) lives in the collector and is dropped
//! when [`Collector::jobs`] no longer returns the entity's job.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_snmp::Oid;

use grafolean_collector::api::Client as ApiClient;
use grafolean_collector::resolve::{Family as ResolveFamily, Resolver};
use grafolean_collector::{BoxError, Collector, JobConfigs, JobSpec, Problems, Tick, Value};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::agent::{Agent, Agents, Dropped};
use crate::counters::Outcome;
use crate::fetch::{self, Failures};
use crate::interfaces::{self, Forbidden};
use crate::job::{PollParams, SnmpJob, entity_jobs};
use crate::map::{self, Answers, Mapped};
use crate::plan::{Plan, learned_repetitions};
use crate::rates;
use crate::sensor::{Fetch, ParseCache};
use crate::settings::AgentAddress;
use crate::state::{CounterStore, EntityState, WalkRows, lock};
use crate::state_file;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EntityLabel {
    entity: String,
}

/// Labels of `snmp_device_errors_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabels {
    entity: String,
    cause: &'static str,
}

/// Labels of `snmp_device_answers_dropped_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    entity: String,
    reason: &'static str,
}

/// Labels of `snmp_socket_datagrams_dropped_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

/// Every `reason` of `snmp_device_answers_dropped_total`.
const DROP_REASONS: [&str; 2] = ["other_source", "unusable"];

/// The bot's own metrics; clones share the counts.
#[derive(Clone, Debug, Default)]
pub struct SnmpMetrics {
    timeouts: Family<EntityLabel, Counter>,
    errors: Family<CauseLabels, Counter>,
    sensor_errors: Family<EntityLabel, Counter>,
    rows_skipped: Family<EntityLabel, Counter>,
    dropped: Family<ReasonLabels, Counter>,
    socket: Family<KindLabel, Counter>,
    /// The socket's counts when last read: (malformed, discarded).
    socket_seen: Arc<Mutex<(u64, u64)>>,
}

/// How often the interfaces job runs.
pub const INTERFACES_INTERVAL: u32 = 300;

/// The SNMP bot's collector.
#[derive(Debug)]
pub struct SnmpCollector {
    agents: Agents,
    state: CounterStore,
    metrics: SnmpMetrics,
    api: Option<ApiClient>,
    forbidden: Forbidden,
    interfaces_interval: u32,
    /// Where counters are kept across restarts.
    state_file: Option<PathBuf>,
    /// How often the state file is written.
    state_save_every: Duration,
    /// Host names in `details.ipv4`.
    resolver: Resolver,
}

impl Default for SnmpCollector {
    fn default() -> Self {
        Self::new(None)
    }
}

impl SnmpCollector {
    /// A collector; with `api`, it also keeps the interface entities in
    /// Grafolean up to date (the `-interfaces` jobs).
    pub fn new(api: Option<ApiClient>) -> Self {
        Self {
            agents: Agents::new(),
            state: CounterStore::default(),
            metrics: SnmpMetrics::default(),
            api,
            forbidden: Forbidden::new(interfaces::FORBIDDEN_RECHECK),
            interfaces_interval: INTERFACES_INTERVAL,
            state_file: None,
            state_save_every: state_file::DEFAULT_SAVE_EVERY,
            resolver: Resolver::default(),
        }
    }

    /// Writes interface entities through `api` (the runtime's client, given
    /// by [`crate::bot()`]); `None` leaves them alone.
    #[must_use]
    pub fn with_api(mut self, api: Option<ApiClient>) -> Self {
        self.api = api;
        self
    }

    /// Keeps the counters across restarts in `path` (`--state-file`): the
    /// bot made by [`crate::bot()`] loads it at start, writes it every
    /// [`state_file::DEFAULT_SAVE_EVERY`] and at a clean shutdown. See
    /// [`crate::state_file`].
    #[must_use]
    pub fn with_state_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.state_file = Some(path.into());
        self
    }

    /// Sets how often the state file is written (default
    /// [`state_file::DEFAULT_SAVE_EVERY`]; at least 10 ms).
    #[must_use]
    pub fn with_state_save_interval(mut self, every: Duration) -> Self {
        self.state_save_every = every;
        self
    }

    /// The state file and how often it is written, if one is set.
    pub fn state_file(&self) -> Option<(&Path, Duration)> {
        self.state_file
            .as_deref()
            .map(|p| (p, self.state_save_every))
    }

    /// A handle on the counters, for the state file.
    pub fn counter_store(&self) -> CounterStore {
        self.state.clone()
    }

    /// Sets how long the interfaces job waits after a 403 before it asks again.
    #[must_use]
    pub fn with_forbidden_recheck(mut self, after: Duration) -> Self {
        self.forbidden = Forbidden::new(after);
        self
    }

    /// The most rows one walk may return (default
    /// [`MAX_WALK_ROWS`](crate::agent::MAX_WALK_ROWS), 100,000): a longer
    /// walk fails its sensors with a message that names the limit, and the
    /// entity's other sensors go on.
    #[must_use]
    pub fn with_max_walk_rows(mut self, rows: usize) -> Self {
        self.agents = Agents::new().with_max_walk_rows(rows);
        self
    }

    /// Sets the interfaces jobs' interval (default [`INTERFACES_INTERVAL`],
    /// 300 s, as the Python bot; tests use less). 0 counts as 1.
    #[must_use]
    pub fn with_interfaces_interval(mut self, seconds: u32) -> Self {
        self.interfaces_interval = seconds.max(1);
        self
    }

    /// The bot's own metrics, to register with the SDK's registry.
    pub fn metrics(&self) -> SnmpMetrics {
        self.metrics.clone()
    }

    /// How many entities have state (for tests).
    pub fn entities_with_state(&self) -> usize {
        self.state.len()
    }

    fn label(entity_id: u64) -> EntityLabel {
        EntityLabel {
            entity: entity_id.to_string(),
        }
    }

    /// The agent's address now: a host name's through the shared resolver
    /// (its last good address is kept through short DNS failures).
    async fn socket_addr(&self, addr: &AgentAddress) -> Result<SocketAddr, BoxError> {
        match addr {
            AgentAddress::Addr(a) => Ok(*a),
            AgentAddress::Name(name, port) => {
                match self.resolver.resolve(name, ResolveFamily::V4).await.addr() {
                    Some(ip) => Ok(SocketAddr::new(ip, *port)),
                    None => Err(format!("{name} does not resolve to an IPv4 address").into()),
                }
            }
        }
    }

    /// One firing of `entity.<id>`: plan, fetch, map.
    async fn poll(&self, tick: &Tick, params: &PollParams) -> Result<Vec<Value>, BoxError> {
        let plan = Plan::new(&params.sensors, &tick.affecting);
        if plan.is_empty() {
            return Ok(Vec::new());
        }
        let addr = self.socket_addr(&params.addr).await?;
        let state = self.state.entity(params.entity_id);
        let cached = lock(&state).use_agent(addr);
        let mut agent = self.agents.agent(cached, addr, &params.settings).await?;
        lock(&state).client = Some(agent.clone());

        let max = params.settings.max_repetitions;
        let reps = plan.repetitions(&lock(&state).repetitions, max);
        let deadline = tokio::time::Instant::now() + params.settings.budget;
        let fetched = fetch::fetch(&agent, &plan, &reps, deadline).await;
        let (mut answers, mut failures) = fetched.into_answers();
        let mut dropped = agent.take_dropped();
        // SNMPv3: an agent that answered and now fails every request may be
        // back with another engine (a device replaced or reset, its boots
        // started over): the client's cached engine and keys no longer fit,
        // and it would fail for good. A new client discovers the engine
        // again; it is tried once, in what is left of the budget (and not
        // again until the agent has answered it: a device that is down costs
        // one more try, not one per firing).
        if agent.is_v3()
            && agent.has_answered()
            && failures.all_failed(&params.settings).is_some()
            && tokio::time::Instant::now() < deadline
        {
            tracing::debug!(entity_id = params.entity_id, agent = %addr, "every SNMPv3 request failed: a new session, with the engine discovered again");
            agent = self.agents.agent(None, addr, &params.settings).await?;
            lock(&state).client = Some(agent.clone());
            (answers, failures) = fetch::fetch(&agent, &plan, &reps, deadline)
                .await
                .into_answers();
            dropped.add(agent.take_dropped());
        }
        self.metrics.count_dropped(params.entity_id, dropped);
        if let Some(stats) = self.agents.socket_stats() {
            self.metrics.count_socket(&stats);
        }
        let now = counter_clock();
        {
            let mut st = lock(&state);
            for (oid, rows) in &answers.walks {
                st.repetitions
                    .insert(oid.clone(), learned_repetitions(rows.len(), max));
            }
        }
        if failures.timeouts > 0 {
            self.metrics
                .timeouts
                .get_or_create(&Self::label(params.entity_id))
                .inc();
        }
        for cause in &failures.causes {
            self.metrics
                .errors
                .get_or_create(&CauseLabels {
                    entity: params.entity_id.to_string(),
                    cause,
                })
                .inc();
        }
        if let Some(what) = failures.all_failed(&params.settings) {
            // "No answer" from an agent that sent answers the client could
            // not use says what came instead.
            let came = if dropped.is_empty() {
                String::new()
            } else {
                format!("; it sent {dropped}")
            };
            return Err(format!(
                "the agent at {} (entity {}) failed: {what}{came}",
                params.addr, params.entity_id
            )
            .into());
        }

        let outcomes = counter_outcomes(&agent, &state, &answers, now, deadline).await;
        let mapped = map::map_values(&plan.sensors, &answers, &outcomes, params.entity_id);
        self.report(params, &failures, &mapped);
        self.report_skips(params, &plan, &mapped, &state);
        self.report_empty_walks(params, &plan, &answers, &state);
        let longest = params.sensors.iter().map(|s| s.interval).max();
        lock(&state).age_out(longest.unwrap_or(60), now);
        Ok(mapped.values)
    }

    /// Counts a firing's failed sensors, and logs the firing: a warning if
    /// anything failed, else at debug level.
    fn report(&self, params: &PollParams, failures: &Failures, mapped: &Mapped) {
        let failed_sensors = &mapped.failed_sensors;
        if !failed_sensors.is_empty() {
            self.metrics
                .sensor_errors
                .get_or_create(&Self::label(params.entity_id))
                .inc_by(failed_sensors.len() as u64);
        }
        if !failures.errors.is_empty() || !failed_sensors.is_empty() {
            tracing::warn!(
                entity_id = params.entity_id,
                agent = %params.addr,
                values = mapped.values.len(),
                skipped_rows = mapped.skipped_rows,
                errors = %failures.errors.join("; "),
                failed_sensors = %failed_sensors.join("; "),
                "SNMP firing incomplete"
            );
        } else {
            tracing::debug!(
                entity_id = params.entity_id,
                values = mapped.values.len(),
                skipped_rows = mapped.skipped_rows,
                "SNMP firing"
            );
        }
    }
}

impl SnmpCollector {
    /// Counts the rows that gave no value, and says why once per change of
    /// a sensor's reasons (and once when they are gone), not at every row
    /// of every firing.
    fn report_skips(
        &self,
        params: &PollParams,
        plan: &Plan<'_>,
        mapped: &Mapped,
        state: &Mutex<EntityState>,
    ) {
        let rows: usize = mapped.skips.iter().map(|(_, _, rows)| rows).sum();
        if rows > 0 {
            self.metrics
                .rows_skipped
                .get_or_create(&Self::label(params.entity_id))
                .inc_by(rows as u64);
        }
        let mut st = lock(state);
        for sensor in &plan.sensors {
            let id = sensor.sensor_id;
            let reasons: Vec<&str> = mapped
                .skips
                .iter()
                .filter(|(s, _, _)| *s == id)
                .map(|(_, reason, _)| reason.as_str())
                .collect();
            let before = st.row_problems.get(&id).map(Vec::as_slice).unwrap_or(&[]);
            if reasons
                .iter()
                .copied()
                .eq(before.iter().map(String::as_str))
            {
                continue;
            }
            if reasons.is_empty() {
                tracing::info!(
                    entity_id = params.entity_id,
                    sensor_id = id,
                    "the sensor's rows give values again"
                );
                st.row_problems.remove(&id);
            } else {
                let skipped: usize = mapped
                    .skips
                    .iter()
                    .filter(|(s, _, _)| *s == id)
                    .map(|(_, _, rows)| rows)
                    .sum();
                tracing::warn!(
                    entity_id = params.entity_id,
                    sensor_id = id,
                    rows = skipped,
                    "the sensor gives fewer values than it has rows, or none: {} (said again only when this changes)",
                    reasons.join("; ")
                );
                st.row_problems
                    .insert(id, reasons.into_iter().map(String::from).collect());
            }
        }
    }
}

impl SnmpCollector {
    /// A sensor whose walks gave rows and now give none (endOfMibView or
    /// noSuchInstance at the first row, the end of the subtree at once, an
    /// agent that lost its table): counted in `snmp_sensor_errors_total` at
    /// every such firing (`report_skips` says it once per change). A table
    /// that was always empty is not counted.
    fn report_empty_walks(
        &self,
        params: &PollParams,
        plan: &Plan<'_>,
        answers: &Answers,
        state: &Mutex<EntityState>,
    ) {
        let mut st = lock(state);
        for sensor in &plan.sensors {
            let mut rows = 0;
            let mut walks = 0;
            let mut failed = false;
            for (oid, fetch) in &sensor.oids {
                if *fetch != Fetch::Walk {
                    continue;
                }
                walks += 1;
                match answers.walks.get(oid) {
                    Some(r) => rows += r.len(),
                    None => failed = true,
                }
            }
            if walks == 0 || failed {
                continue;
            }
            let id = sensor.sensor_id;
            // Said by `report_skips` ("its walks found no rows"), once per
            // change; counted here, at each firing.
            let now = match (st.walk_rows.get(&id).copied(), rows) {
                (Some(WalkRows::Rows(before) | WalkRows::EmptyAfter(before)), 0) if before > 0 => {
                    WalkRows::EmptyAfter(before)
                }
                (_, n) => WalkRows::Rows(n),
            };
            if matches!(now, WalkRows::EmptyAfter(_)) {
                self.metrics
                    .sensor_errors
                    .get_or_create(&Self::label(params.entity_id))
                    .inc();
            }
            st.walk_rows.insert(id, now);
        }
    }
}

/// Every counter of `answers` turned into an outcome against the entity's
/// last readings (read at `now`), with the agent's sysUpTime read first if a
/// Counter32 went down.
async fn counter_outcomes(
    agent: &Agent,
    state: &Mutex<EntityState>,
    answers: &Answers,
    now: f64,
    deadline: tokio::time::Instant,
) -> HashMap<Oid, Outcome> {
    let readings = rates::readings(answers);
    let decreased = rates::decreased(&lock(state).kept.counters, &readings);
    let context = match decreased {
        Some(interfaces) => fetch::decrease_context(agent, deadline, &interfaces).await,
        None => rates::Context::default(),
    };
    let rates = rates::update(&mut lock(state).kept.counters, &readings, now, &context);
    if rates.resets > 0 {
        tracing::info!(agent = %agent.addr(), resets = rates.resets, "counters went down (agent restart or Counter64 decrease); their points are skipped this time");
    }
    if rates.discontinuities > 0 {
        tracing::info!(agent = %agent.addr(), discontinuities = rates.discontinuities, "Counter32s went down while the agent stayed up, and not by a wrap (cleared, or faster than their interface); their points are skipped this time");
    }
    if rates.wraps > 0 {
        tracing::debug!(agent = %agent.addr(), wraps = rates.wraps, "Counter32 wraps corrected");
    }
    rates.outcomes
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// UNIX seconds from a monotonic clock: the wall clock read once, at the
/// first call, plus the monotonic time since. Counter rates divide by the
/// difference of two of these, so a step of the wall clock (NTP, a VM
/// resumed) neither skews nor drops a rate; readings kept in the state file
/// across a restart are still on (about) the wall clock.
fn counter_clock() -> f64 {
    static START: std::sync::OnceLock<(f64, std::time::Instant)> = std::sync::OnceLock::new();
    let (wall, at) = START.get_or_init(|| (unix_now(), std::time::Instant::now()));
    wall + at.elapsed().as_secs_f64()
}

impl Collector for SnmpCollector {
    type Params = SnmpJob;

    fn jobs(&self, configs: &JobConfigs, problems: &mut Problems) -> Vec<JobSpec<SnmpJob>> {
        let mut specs = Vec::with_capacity(configs.entities.len() * 2);
        let mut cache = ParseCache::default();
        for entity in &configs.entities {
            let mut notes = Vec::new();
            match entity_jobs(
                entity,
                self.api.is_some().then_some(self.interfaces_interval),
                &mut cache,
                &mut notes,
            ) {
                Ok(mut jobs) => specs.append(&mut jobs),
                Err(error) => notes.push(format!(
                    "not polling this entity: {error}; fix it in {}",
                    entity.fix_in()
                )),
            }
            if !notes.is_empty() {
                problems.entity(entity, notes.join("; "));
            }
        }
        // Per-job state: drop what belongs to entities that are gone.
        let live: HashSet<u64> = specs.iter().map(|s| s.params.entity_id()).collect();
        self.state.retain(|id| {
            let keep = live.contains(&id);
            if !keep {
                self.metrics.forget(id);
            }
            keep
        });
        specs
    }

    async fn run(&self, tick: Tick, params: &SnmpJob) -> Result<Vec<Value>, BoxError> {
        match params {
            SnmpJob::Poll(p) => self.poll(&tick, p).await,
            SnmpJob::Interfaces(p) => {
                let Some(api) = &self.api else {
                    return Ok(Vec::new());
                };
                let addr = self.socket_addr(&p.addr).await?;
                let state = self.state.entity(p.entity_id);
                let cached = lock(&state).use_agent(addr);
                let agent = self.agents.agent(cached, addr, &p.settings).await?;
                interfaces::update(api, &agent, p, &self.forbidden).await?;
                Ok(Vec::new())
            }
        }
    }
}

impl SnmpMetrics {
    /// Registers `snmp_device_timeouts_total{entity}` and
    /// `snmp_sensor_errors_total{entity}`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "snmp_device_timeouts",
            "Firings in which the entity's agent did not answer (some or all requests timed out)",
            self.timeouts.clone(),
        );
        registry.register(
            "snmp_device_errors",
            "Firings in which requests to the entity's agent failed, by cause: timeout, budget, too_many_rows, firing_rows, process_rows, firing_bytes, process_bytes, v3_unknown_user, v3_wrong_auth, v3_wrong_priv, v3_time_window, v3_unknown_engine, v3_security_level, v3_report, mismatch (an answer that does not fit the request), other",
            self.errors.clone(),
        );
        registry.register(
            "snmp_device_answers_dropped",
            "Datagrams that came back to the entity's requests and were not used, by reason: other_source (from another address or port than the agent's, dropped), unusable (undecodable, another v3 user, or not an answer to the request)",
            self.dropped.clone(),
        );
        registry.register(
            "snmp_socket_datagrams_dropped",
            "Datagrams on the bot's SNMP socket that reached no request, by kind: malformed (no request-id could be read), discarded (late, duplicate, for no request in progress, or with another community); read at each firing",
            self.socket.clone(),
        );
        registry.register(
            "snmp_sensor_errors",
            "Sensors whose values could not be produced in a firing (fetch failed, bad value)",
            self.sensor_errors.clone(),
        );
        registry.register(
            "snmp_rows_skipped",
            "Rows that gave no value (a value that is not a number, an expression with no result, a missing index, a duplicate path); a counter's first reading is not counted",
            self.rows_skipped.clone(),
        );
    }

    /// Brings `snmp_socket_datagrams_dropped_total` up to the socket's
    /// counts.
    fn count_socket(&self, stats: &async_snmp::UdpStats) {
        let mut seen = lock(&self.socket_seen);
        let (malformed, discarded) = *seen;
        for (kind, now, then) in [
            ("malformed", stats.malformed_datagrams, malformed),
            ("discarded", stats.discarded_datagrams, discarded),
        ] {
            if now > then {
                self.socket
                    .get_or_create(&KindLabel { kind })
                    .inc_by(now - then);
            }
        }
        *seen = (
            stats.malformed_datagrams.max(malformed),
            stats.discarded_datagrams.max(discarded),
        );
    }

    /// Counts what `entity_id`'s agent sent that was not used.
    fn count_dropped(&self, entity_id: u64, dropped: Dropped) {
        for (reason, n) in [
            ("other_source", dropped.other_source),
            ("unusable", dropped.unusable),
        ] {
            if n > 0 {
                self.dropped
                    .get_or_create(&ReasonLabels {
                        entity: entity_id.to_string(),
                        reason,
                    })
                    .inc_by(n);
            }
        }
    }

    /// The answers counted as dropped for `entity_id`, for `reason`
    /// (`other_source` or `unusable`).
    pub fn dropped(&self, entity_id: u64, reason: &'static str) -> u64 {
        self.dropped
            .get_or_create(&ReasonLabels {
                entity: entity_id.to_string(),
                reason,
            })
            .get()
    }

    /// The datagrams of `kind` (`malformed` or `discarded`) counted for
    /// the whole socket.
    pub fn socket_dropped(&self, kind: &'static str) -> u64 {
        self.socket.get_or_create(&KindLabel { kind }).get()
    }

    /// The timeouts counted for `entity_id`.
    pub fn timeouts(&self, entity_id: u64) -> u64 {
        self.timeouts
            .get_or_create(&SnmpCollector::label(entity_id))
            .get()
    }

    /// The sensor errors counted for `entity_id`.
    pub fn sensor_errors(&self, entity_id: u64) -> u64 {
        self.sensor_errors
            .get_or_create(&SnmpCollector::label(entity_id))
            .get()
    }

    /// The rows counted as skipped for `entity_id`.
    pub fn rows_skipped(&self, entity_id: u64) -> u64 {
        self.rows_skipped
            .get_or_create(&SnmpCollector::label(entity_id))
            .get()
    }

    /// The firings counted for `entity_id` with errors of `cause`.
    pub fn errors(&self, entity_id: u64, cause: &'static str) -> u64 {
        self.errors
            .get_or_create(&CauseLabels {
                entity: entity_id.to_string(),
                cause,
            })
            .get()
    }

    fn forget(&self, entity_id: u64) {
        for cause in crate::agent::CAUSES {
            self.errors.remove(&CauseLabels {
                entity: entity_id.to_string(),
                cause,
            });
        }
        for reason in DROP_REASONS {
            self.dropped.remove(&ReasonLabels {
                entity: entity_id.to_string(),
                reason,
            });
        }
        let label = SnmpCollector::label(entity_id);
        self.timeouts.remove(&label);
        self.sensor_errors.remove(&label);
        self.rows_skipped.remove(&label);
    }
}

#[cfg(test)]
mod clock_tests {
    #[test]
    fn the_counter_clock_moves_as_the_monotonic_clock() {
        let (t0, i0) = (super::counter_clock(), std::time::Instant::now());
        assert!((t0 - super::unix_now()).abs() < 5.0, "near the wall clock");
        std::thread::sleep(std::time::Duration::from_millis(50));
        let (t1, i1) = (super::counter_clock(), std::time::Instant::now());
        let dt = t1 - t0;
        let di = i1.duration_since(i0).as_secs_f64();
        assert!((dt - di).abs() < 0.005, "{dt} vs {di}");
    }
}
