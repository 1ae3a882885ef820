//! [`SnmpCollector`]: the SNMP bot's [`Collector`], with the Python bot's
//! jobs and paths.
//!
//! Each entity gets two jobs:
//!
//! - `entity.<id>`, at the set of its sensors' intervals. A firing runs only
//!   the sensors whose interval is among the tick's affecting intervals, and
//!   all their values go out together. Their GETs go in one PDU, their walks
//!   run at the same time, all within the device's time budget.
//! - `entity.<id>-interfaces`, every 300 s (only with a Grafolean backend):
//!   see [`crate::interfaces`].
//!
//! Per-entity state (the cached client, learned max-repetitions and counter
//! readings) lives in the collector and is dropped when [`Collector::jobs`]
//! no longer returns the entity's job.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use async_snmp::{Oid, Value as SnmpValue, VarBind};
use grafolean_collector::api::Client as ApiClient;
use grafolean_collector::{
    BoxError, Collector, EntityConfig, Intervals, JobConfigs, JobSpec, Problems, Tick, Value,
};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::agent::{Agent, AgentError, Agents};
use crate::counters::{Counters, Outcome};
use crate::interfaces::{self, Forbidden};
use crate::sensor::{ExprCache, Fetch, PathPart, SensorSpec};
use crate::settings::{SettingsError, SnmpSettings, agent_address};
use crate::state_file::{self, CounterRecord, EntityRecord, RestoredEntity, StateData};

/// sysUpTime.0, read when a Counter32 went down.
const SYS_UP_TIME: [u32; 9] = [1, 3, 6, 1, 2, 1, 1, 3, 0];

/// What one entity's polling job needs.
#[derive(Clone, Debug, PartialEq)]
pub struct PollParams {
    /// The entity.
    pub entity_id: u64,
    /// The agent's address (`details.ipv4`, port 161 unless given).
    pub addr: SocketAddr,
    /// The credential's settings.
    pub settings: SnmpSettings,
    /// The sensors that could be parsed.
    pub sensors: Vec<SensorSpec>,
}

/// What one entity's interfaces job needs.
#[derive(Clone, Debug, PartialEq)]
pub struct InterfacesParams {
    /// The entity (the interfaces' parent).
    pub entity_id: u64,
    /// Its account.
    pub account_id: u64,
    /// The agent's address.
    pub addr: SocketAddr,
    /// The credential's settings.
    pub settings: SnmpSettings,
}

/// A job of the SNMP bot.
#[derive(Clone, Debug, PartialEq)]
pub enum SnmpJob {
    /// `entity.<id>`: the sensors.
    Poll(Arc<PollParams>),
    /// `entity.<id>-interfaces`: the interface entities.
    Interfaces(Arc<InterfacesParams>),
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EntityLabel {
    entity: String,
}

/// The bot's own metrics; clones share the counts.
#[derive(Clone, Debug, Default)]
pub struct SnmpMetrics {
    timeouts: Family<EntityLabel, Counter>,
    sensor_errors: Family<EntityLabel, Counter>,
}

/// One entity's state between firings.
#[derive(Debug, Default)]
struct EntityState {
    agent: Option<Agent>,
    /// Learned GETBULK max-repetitions per walked column.
    repetitions: HashMap<Oid, u32>,
    counters: Counters,
    /// The longest interval of its sensors at the last firing (0: none
    /// yet), kept in the state file for the age limit of its readings.
    longest_interval: u32,
    /// The agent its counters were read from.
    addr: Option<SocketAddr>,
}

/// Every entity's state, shared by the collector and its [`CounterStore`].
type StateMap = Arc<Mutex<HashMap<u64, Arc<Mutex<EntityState>>>>>;

/// A handle on the collector's counters, for the state file: a snapshot of
/// every entity's last readings, and putting them back after a restart.
#[derive(Clone, Debug)]
pub struct CounterStore {
    state: StateMap,
}

impl CounterStore {
    /// Every entity's counters, as the state file keeps them (`saved_at` 0).
    pub fn snapshot(&self) -> StateData {
        let entities: Vec<(u64, Arc<Mutex<EntityState>>)> = lock(&self.state)
            .iter()
            .map(|(id, st)| (*id, st.clone()))
            .collect();
        let mut records = Vec::with_capacity(entities.len());
        for (entity_id, st) in entities {
            let st = lock(&st);
            if st.counters.is_empty() {
                continue;
            }
            records.push(EntityRecord {
                entity_id,
                longest_interval: st.longest_interval,
                agent: st.addr.map(|a| a.to_string()),
                counters: st
                    .counters
                    .iter()
                    .map(|(oid, s)| CounterRecord {
                        oid: oid.to_string(),
                        value: s.value,
                        at: s.at,
                        wide: s.wide,
                    })
                    .collect(),
            });
        }
        StateData {
            format: state_file::FORMAT,
            saved_at: 0.0,
            entities: records,
        }
    }

    /// Puts back counters kept from before a restart (a reading already
    /// taken since is kept).
    pub fn restore(&self, entities: HashMap<u64, RestoredEntity>) {
        let mut map = lock(&self.state);
        for (entity_id, entity) in entities {
            let st = map.entry(entity_id).or_default().clone();
            let mut st = lock(&st);
            if st.addr.is_some() && entity.agent.is_some() && st.addr != entity.agent {
                continue;
            }
            if st.longest_interval == 0 {
                st.longest_interval = entity.longest_interval;
            }
            st.addr = st.addr.or(entity.agent);
            for (oid, sample) in entity.counters.iter() {
                st.counters.restore(oid, *sample);
            }
        }
    }
}

/// How often the interfaces job runs.
pub const INTERFACES_INTERVAL: u32 = 300;

/// The SNMP bot's collector.
#[derive(Debug)]
pub struct SnmpCollector {
    agents: Agents,
    state: StateMap,
    metrics: SnmpMetrics,
    api: Option<ApiClient>,
    forbidden: Forbidden,
    interfaces_interval: u32,
    /// Where counters are kept across restarts.
    state_file: Option<PathBuf>,
    /// How often the state file is written.
    state_save_every: Duration,
}

impl Default for SnmpCollector {
    fn default() -> Self {
        Self::new(None)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SnmpCollector {
    /// A collector; with `api`, it also keeps the interface entities in
    /// Grafolean up to date (the `-interfaces` jobs).
    pub fn new(api: Option<ApiClient>) -> Self {
        Self {
            agents: Agents::new(),
            state: StateMap::default(),
            metrics: SnmpMetrics::default(),
            api,
            forbidden: Forbidden::new(interfaces::FORBIDDEN_RECHECK),
            interfaces_interval: INTERFACES_INTERVAL,
            state_file: None,
            state_save_every: state_file::DEFAULT_SAVE_EVERY,
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
        CounterStore {
            state: self.state.clone(),
        }
    }

    /// Sets how long the interfaces job waits after a 403 before it asks again.
    #[must_use]
    pub fn with_forbidden_recheck(mut self, after: Duration) -> Self {
        self.forbidden = Forbidden::new(after);
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
        lock(&self.state).len()
    }

    fn entity_state(&self, entity_id: u64) -> Arc<Mutex<EntityState>> {
        lock(&self.state).entry(entity_id).or_default().clone()
    }

    fn label(entity_id: u64) -> EntityLabel {
        EntityLabel {
            entity: entity_id.to_string(),
        }
    }

    async fn poll(&self, tick: &Tick, params: &PollParams) -> Result<Vec<Value>, BoxError> {
        let sensors: Vec<&SensorSpec> = params
            .sensors
            .iter()
            .filter(|s| tick.affecting.contains(s.interval))
            .collect();
        if sensors.is_empty() {
            return Ok(Vec::new());
        }
        let state = self.entity_state(params.entity_id);
        let cached = {
            let mut st = lock(&state);
            // Another agent (the entity's address changed, or the state file
            // came from another config): its readings and learned
            // repetitions are not this one's.
            if st.addr.is_some_and(|a| a != params.addr) {
                st.counters = Counters::default();
                st.repetitions.clear();
            }
            st.addr = Some(params.addr);
            st.agent.clone()
        };
        let agent = self
            .agents
            .agent(cached, params.addr, &params.settings)
            .await?;
        lock(&state).agent = Some(agent.clone());

        // What to fetch: every GET in one PDU, each walked column once.
        let mut gets: Vec<Oid> = Vec::new();
        let mut walks: Vec<Oid> = Vec::new();
        for s in &sensors {
            for (oid, fetch) in &s.oids {
                let list = match fetch {
                    Fetch::Get => &mut gets,
                    Fetch::Walk => &mut walks,
                };
                if !list.contains(oid) {
                    list.push(oid.clone());
                }
            }
        }
        let max = params.settings.max_repetitions;
        let reps: Vec<u32> = {
            let st = lock(&state);
            walks
                .iter()
                .map(|o| st.repetitions.get(o).copied().unwrap_or(max).min(max))
                .collect()
        };
        let deadline = tokio::time::Instant::now() + params.settings.budget;
        let (got, walked) = tokio::join!(
            within(deadline, agent.get(&gets)),
            futures::future::join_all(
                walks
                    .iter()
                    .zip(&reps)
                    .map(|(o, &r)| within(deadline, agent.walk(o, r)))
            )
        );
        let now = unix_now();

        let mut timeouts = 0usize;
        let mut errors: Vec<String> = Vec::new();
        let got = match got {
            Ok(map) => Some(map),
            Err(e) => {
                timeouts += usize::from(e.is_timeout());
                errors.push(format!("GET: {e}"));
                None
            }
        };
        let mut walk_rows: HashMap<&Oid, Vec<VarBind>> = HashMap::with_capacity(walks.len());
        {
            let mut st = lock(&state);
            for (oid, result) in walks.iter().zip(walked) {
                match result {
                    Ok(rows) => {
                        let learned = u32::try_from(rows.len())
                            .unwrap_or(u32::MAX)
                            .saturating_add(1)
                            .min(max);
                        st.repetitions.insert(oid.clone(), learned);
                        walk_rows.insert(oid, rows);
                    }
                    Err(e) => {
                        timeouts += usize::from(e.is_timeout());
                        errors.push(format!("walk {oid}: {e}"));
                    }
                }
            }
        }
        let fetches = usize::from(!gets.is_empty()) + walks.len();
        if timeouts > 0 {
            self.metrics
                .timeouts
                .get_or_create(&Self::label(params.entity_id))
                .inc();
        }
        if !errors.is_empty() && errors.len() == fetches {
            let what = if timeouts == fetches {
                format!(
                    "no answer to any of {fetches} requests (timeout {:?}, {} retries, device budget {:?}; wrong community or v3 key, or the agent is down)",
                    params.settings.timeout, params.settings.retries, params.settings.budget
                )
            } else {
                let mut distinct: Vec<&String> = Vec::new();
                for e in &errors {
                    if !distinct.contains(&e) {
                        distinct.push(e);
                    }
                }
                distinct
                    .iter()
                    .map(|e| e.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            return Err(format!(
                "the agent at {} (entity {}) failed: {what}",
                params.addr, params.entity_id
            )
            .into());
        }
        // Counters: one outcome per counter OID and firing.
        let rates = self
            .counter_rates(&agent, &state, got.as_ref(), &walk_rows, now, deadline)
            .await;

        let mut out = Vec::new();
        let mut seen = HashSet::new();
        let mut skipped_rows = 0usize;
        let mut failed_sensors = Vec::new();
        let prefix = format!("entity.{}.snmp.", params.entity_id);
        for s in &sensors {
            match sensor_values(
                s,
                got.as_ref(),
                &walk_rows,
                &rates,
                &prefix,
                &mut out,
                &mut seen,
            ) {
                Ok(skipped) => skipped_rows += skipped,
                Err(why) => failed_sensors.push(format!("sensor {}: {why}", s.sensor_id)),
            }
        }
        if !failed_sensors.is_empty() {
            self.metrics
                .sensor_errors
                .get_or_create(&Self::label(params.entity_id))
                .inc_by(failed_sensors.len() as u64);
        }
        if !errors.is_empty() || !failed_sensors.is_empty() {
            tracing::warn!(
                entity_id = params.entity_id,
                agent = %params.addr,
                values = out.len(),
                skipped_rows,
                errors = %errors.join("; "),
                failed_sensors = %failed_sensors.join("; "),
                "SNMP firing incomplete"
            );
        } else {
            tracing::debug!(
                entity_id = params.entity_id,
                values = out.len(),
                skipped_rows,
                "SNMP firing"
            );
        }
        // Counters of rows that went away: not read for two of the longest intervals.
        let longest = params
            .sensors
            .iter()
            .map(|s| s.interval)
            .max()
            .unwrap_or(60);
        let mut st = lock(&state);
        st.longest_interval = longest;
        st.counters
            .forget_older_than(now - 2.0 * f64::from(longest) - 60.0);
        Ok(out)
    }

    /// Turns every counter read in this firing into an outcome, reading
    /// sysUpTime first if a Counter32 went down.
    async fn counter_rates(
        &self,
        agent: &Agent,
        state: &Mutex<EntityState>,
        got: Option<&HashMap<Oid, SnmpValue>>,
        walks: &HashMap<&Oid, Vec<VarBind>>,
        now: f64,
        deadline: tokio::time::Instant,
    ) -> HashMap<Oid, Outcome> {
        let mut counters: Vec<(&Oid, u64, bool)> = Vec::new();
        let all = got
            .into_iter()
            .flat_map(|m| m.iter())
            .chain(walks.values().flatten().map(|vb| (&vb.oid, &vb.value)));
        for (oid, value) in all {
            match value {
                SnmpValue::Counter32(v) => counters.push((oid, u64::from(*v), false)),
                SnmpValue::Counter64(v) => counters.push((oid, *v, true)),
                _ => {}
            }
        }
        if counters.is_empty() {
            return HashMap::new();
        }
        let need_uptime = {
            let st = lock(state);
            counters
                .iter()
                .any(|(o, v, w)| st.counters.decreased(o, *v, *w))
        };
        let uptime = if need_uptime {
            let oid = Oid::from_slice(&SYS_UP_TIME);
            match tokio::time::timeout_at(deadline, agent.get(std::slice::from_ref(&oid))).await {
                Ok(Ok(m)) => match m.get(&oid) {
                    Some(SnmpValue::TimeTicks(t)) => Some(f64::from(*t) / 100.0),
                    _ => None,
                },
                _ => None,
            }
        } else {
            None
        };
        let mut st = lock(state);
        let mut resets = 0usize;
        let mut wraps = 0usize;
        let rates = counters
            .into_iter()
            .map(|(oid, v, wide)| {
                let outcome = st.counters.update(oid, v, wide, now, uptime);
                match outcome {
                    Outcome::Reset => resets += 1,
                    Outcome::Wrapped(_) => wraps += 1,
                    _ => {}
                }
                (oid.clone(), outcome)
            })
            .collect();
        if resets > 0 {
            tracing::info!(agent = %agent.addr(), resets, "counters went down (agent restart or Counter64 decrease); their points are skipped this time");
        }
        if wraps > 0 {
            tracing::debug!(agent = %agent.addr(), wraps, "Counter32 wraps corrected");
        }
        rates
    }
}

/// `f`, or [`AgentError::Budget`] if `deadline` comes first.
async fn within<T>(
    deadline: tokio::time::Instant,
    f: impl Future<Output = Result<T, AgentError>>,
) -> Result<T, AgentError> {
    tokio::time::timeout_at(deadline, f)
        .await
        .unwrap_or(Err(AgentError::Budget))
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// The text of a value, as easysnmp gave it (for `{$N}`).
fn value_text(v: &SnmpValue) -> String {
    match v {
        SnmpValue::OctetString(b) | SnmpValue::Opaque(b) => String::from_utf8_lossy(b).into_owned(),
        SnmpValue::Integer(i) => i.to_string(),
        SnmpValue::Counter32(n)
        | SnmpValue::Gauge32(n)
        | SnmpValue::UInteger32(n)
        | SnmpValue::TimeTicks(n) => n.to_string(),
        SnmpValue::Counter64(n) => n.to_string(),
        SnmpValue::IpAddress(a) => std::net::Ipv4Addr::from(*a).to_string(),
        SnmpValue::ObjectIdentifier(o) => o.to_string(),
        other => other.to_string(),
    }
}

/// Why a value cannot be used in an expression.
enum Unusable {
    /// A counter's first reading or a reset: skip the row.
    NoRate,
    /// Not a number.
    NotNumeric,
}

/// The number of a value (for `$N` in the expression); counters give rates.
fn value_number(oid: &Oid, v: &SnmpValue, rates: &HashMap<Oid, Outcome>) -> Result<f64, Unusable> {
    match v {
        SnmpValue::Counter32(_) | SnmpValue::Counter64(_) => rates
            .get(oid)
            .and_then(|o| o.rate())
            .ok_or(Unusable::NoRate),
        SnmpValue::OctetString(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.trim().parse::<f64>().ok())
            .ok_or(Unusable::NotNumeric),
        other => other.as_f64().ok_or(Unusable::NotNumeric),
    }
}

/// The index of a walked row: every arc after the walked OID, dotted.
fn row_index(base: &Oid, oid: &Oid) -> String {
    let arcs = &oid.arcs()[base.len().min(oid.len())..];
    let mut s = String::with_capacity(arcs.len() * 3);
    for (i, a) in arcs.iter().enumerate() {
        if i > 0 {
            s.push('.');
        }
        use std::fmt::Write;
        let _ = write!(s, "{a}");
    }
    s
}

/// One sensor's values, appended to `out`. Returns the rows skipped, or why
/// the whole sensor failed.
fn sensor_values(
    s: &SensorSpec,
    got: Option<&HashMap<Oid, SnmpValue>>,
    walks: &HashMap<&Oid, Vec<VarBind>>,
    rates: &HashMap<Oid, Outcome>,
    prefix: &str,
    out: &mut Vec<Value>,
    seen: &mut HashSet<String>,
) -> Result<usize, String> {
    let n = s.oids.len();
    let uses = s.expression.uses();
    let in_path: Vec<bool> = (0..n)
        .map(|i| s.path.contains(&PathPart::Value(i)))
        .collect();
    // The fetched data per OID position.
    enum Col<'a> {
        One(&'a Oid, &'a SnmpValue),
        Rows(&'a Oid, &'a [VarBind]),
    }
    let mut cols = Vec::with_capacity(n);
    for (oid, fetch) in &s.oids {
        match fetch {
            Fetch::Get => {
                let map = got.ok_or_else(|| format!("the GET of {oid} failed"))?;
                let value = map.get(oid).ok_or_else(|| format!("{oid}: no value"))?;
                if matches!(
                    value,
                    SnmpValue::NoSuchObject | SnmpValue::NoSuchInstance | SnmpValue::EndOfMibView
                ) {
                    return Err(format!("{oid}: {value}"));
                }
                cols.push(Col::One(oid, value));
            }
            Fetch::Walk => {
                let rows = walks
                    .get(oid)
                    .ok_or_else(|| format!("the walk of {oid} failed"))?;
                cols.push(Col::Rows(oid, rows));
            }
        }
    }
    let first_walk = cols.iter().position(|c| matches!(c, Col::Rows(..)));
    // Row sets of the other walked columns, by index.
    let indexed: Vec<Option<HashMap<String, &VarBind>>> = cols
        .iter()
        .enumerate()
        .map(|(i, c)| match c {
            Col::Rows(base, rows) if Some(i) != first_walk => Some(
                rows.iter()
                    .map(|vb| (row_index(base, &vb.oid), vb))
                    .collect(),
            ),
            _ => None,
        })
        .collect();
    let rows: Vec<(String, Option<&VarBind>)> = match first_walk {
        None => vec![("0".to_string(), None)],
        Some(i) => match &cols[i] {
            Col::Rows(base, rows) => rows
                .iter()
                .map(|vb| (row_index(base, &vb.oid), Some(vb)))
                .collect(),
            Col::One(..) => unreachable!("first_walk points at a walked column"),
        },
    };
    let mut skipped = 0;
    let mut numbers = vec![f64::NAN; n];
    let mut texts = vec![String::new(); n];
    'rows: for (index, first) in &rows {
        for i in 0..n {
            let (oid, value) = match &cols[i] {
                Col::One(oid, v) => (*oid, *v),
                Col::Rows(..) if Some(i) == first_walk => match first {
                    Some(vb) => (&vb.oid, &vb.value),
                    None => unreachable!("rows of a walk carry their varbind"),
                },
                Col::Rows(..) => match indexed[i].as_ref().and_then(|m| m.get(index)) {
                    Some(vb) => (&vb.oid, &vb.value),
                    None => {
                        tracing::debug!(
                            sensor_id = s.sensor_id,
                            index,
                            "missing value for oid index; row skipped"
                        );
                        skipped += 1;
                        continue 'rows;
                    }
                },
            };
            if uses.contains(&i) {
                match value_number(oid, value, rates) {
                    Ok(x) => numbers[i] = x,
                    Err(Unusable::NoRate) => {
                        skipped += 1;
                        continue 'rows;
                    }
                    Err(Unusable::NotNumeric) => {
                        tracing::warn!(sensor_id = s.sensor_id, %oid, value = %value_text(value), "value is not a number; row skipped");
                        skipped += 1;
                        continue 'rows;
                    }
                }
            }
            if in_path[i] {
                texts[i] = value_text(value);
            }
        }
        let Some(v) = s.expression.eval(&numbers) else {
            tracing::warn!(
                sensor_id = s.sensor_id,
                index,
                expression = s.expression.source(),
                "the expression's result is not a finite number; row skipped"
            );
            skipped += 1;
            continue;
        };
        let mut path = String::with_capacity(prefix.len() + 48);
        path.push_str(prefix);
        path.push_str(&s.render_path(index, &texts));
        if !seen.insert(path.clone()) {
            tracing::warn!(
                sensor_id = s.sensor_id,
                path,
                "duplicate path in one firing; row skipped"
            );
            skipped += 1;
            continue;
        }
        out.push(Value::new(path, v));
    }
    Ok(skipped)
}

impl Collector for SnmpCollector {
    type Params = SnmpJob;

    fn jobs(&self, configs: &JobConfigs, problems: &mut Problems) -> Vec<JobSpec<SnmpJob>> {
        let mut specs = Vec::with_capacity(configs.entities.len() * 2);
        let mut exprs = ExprCache::default();
        for entity in &configs.entities {
            let mut notes = Vec::new();
            match jobs_for(
                entity,
                self.api.is_some().then_some(self.interfaces_interval),
                &mut exprs,
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
        let live: HashSet<u64> = specs
            .iter()
            .map(|s| match &s.params {
                SnmpJob::Poll(p) => p.entity_id,
                SnmpJob::Interfaces(p) => p.entity_id,
            })
            .collect();
        lock(&self.state).retain(|id, _| {
            let keep = live.contains(id);
            if !keep {
                self.metrics.forget(*id);
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
                let state = self.entity_state(p.entity_id);
                let cached = lock(&state).agent.clone();
                let agent = self.agents.agent(cached, p.addr, &p.settings).await?;
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
            "snmp_sensor_errors",
            "Sensors whose values could not be produced in a firing (fetch failed, bad value)",
            self.sensor_errors.clone(),
        );
    }

    /// The timeouts counted for `entity_id`.
    pub fn timeouts(&self, entity_id: u64) -> u64 {
        self.timeouts
            .get_or_create(&SnmpCollector::label(entity_id))
            .get()
    }

    fn forget(&self, entity_id: u64) {
        let label = SnmpCollector::label(entity_id);
        self.timeouts.remove(&label);
        self.sensor_errors.remove(&label);
    }
}

/// Builds one entity's jobs.
fn jobs_for(
    entity: &EntityConfig,
    interfaces_every: Option<u32>,
    exprs: &mut ExprCache,
    notes: &mut Vec<String>,
) -> Result<Vec<JobSpec<SnmpJob>>, SettingsError> {
    let addr = agent_address(&entity.details)?;
    let settings = SnmpSettings::from_credential(&entity.credential_details)?;
    let mut sensors = Vec::new();
    for s in &entity.sensors {
        let Some(interval) = s.interval.filter(|&i| i > 0) else {
            notes.push(format!(
                "sensor {} skipped: it has no interval of at least 1 s (0 and none are not \
                 intervals); fix it in {}",
                s.sensor_id,
                entity.fix_in()
            ));
            continue;
        };
        match SensorSpec::parse_with(s.sensor_id, interval, &s.details, exprs) {
            Ok(spec) => sensors.push(spec),
            Err(error) => notes.push(format!(
                "sensor {} skipped: {error}; fix it in {}",
                s.sensor_id,
                entity.fix_in()
            )),
        }
    }
    let mut jobs = Vec::with_capacity(2);
    // for_entity: both jobs belong to the entity's account (the SDK refuses a
    // job without one while it sends to Grafolean) and have `entity="<id>"`.
    let label = |spec: JobSpec<SnmpJob>| {
        spec.with_label("name", entity.name.clone())
            .with_label("target", addr.to_string())
    };
    if let Ok(intervals) = Intervals::new(sensors.iter().map(|s| s.interval)) {
        let params = PollParams {
            entity_id: entity.entity_id,
            addr,
            settings: settings.clone(),
            sensors,
        };
        let spec = JobSpec::for_entity(
            entity,
            format!("entity.{}", entity.entity_id),
            intervals,
            SnmpJob::Poll(Arc::new(params)),
        );
        jobs.push(label(spec));
    }
    if let Some(every) = interfaces_every {
        let params = InterfacesParams {
            entity_id: entity.entity_id,
            account_id: entity.account_id,
            addr,
            settings,
        };
        let intervals = Intervals::one(every).expect("the interval is at least 1");
        let spec = JobSpec::for_entity(
            entity,
            format!("entity.{}-interfaces", entity.entity_id),
            intervals,
            SnmpJob::Interfaces(Arc::new(params)),
        );
        jobs.push(label(spec));
    }
    Ok(jobs)
}
