//! The SNMP bot's jobs: what each entity's two jobs carry ([`SnmpJob`]), and
//! how they are built from the entity's config ([`entity_jobs`]).
//!
//! - `entity.<id>` ([`PollParams`]) polls the entity's sensors, at the set
//!   of their intervals.
//! - `entity.<id>-interfaces` ([`InterfacesParams`]) keeps its interface
//!   entities in Grafolean up to date; only with a Grafolean backend.
//!
//! Both are labelled with the entity's name and agent address, and belong to
//! the entity's account.

use std::sync::Arc;
use std::time::Duration;

use grafolean_collector::{EntityConfig, Intervals, JobSpec};

use crate::sensor::{ParseCache, SensorSpec};
use crate::settings::{AgentAddress, SettingsError, SnmpSettings, agent_address};

/// What one entity's polling job needs.
#[derive(Clone, Debug, PartialEq)]
pub struct PollParams {
    /// The entity.
    pub entity_id: u64,
    /// The agent's address (`details.ipv4`, port 161 unless given).
    pub addr: AgentAddress,
    /// The credential's settings.
    pub settings: SnmpSettings,
    /// The sensors that could be parsed (shared with the other entities
    /// that have the same sensor).
    pub sensors: Vec<Arc<SensorSpec>>,
}

/// What one entity's interfaces job needs.
#[derive(Clone, Debug, PartialEq)]
pub struct InterfacesParams {
    /// The entity (the interfaces' parent).
    pub entity_id: u64,
    /// Its account.
    pub account_id: u64,
    /// The agent's address.
    pub addr: AgentAddress,
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

impl SnmpJob {
    /// The entity the job belongs to.
    pub fn entity_id(&self) -> u64 {
        match self {
            Self::Poll(p) => p.entity_id,
            Self::Interfaces(p) => p.entity_id,
        }
    }
}

/// The most sensors polled on one entity (Grafolean's UI makes a handful;
/// 100,000 on one entity made one firing's plan and memory unbounded).
pub const MAX_SENSORS: usize = 256;

/// Builds one entity's jobs: its polling job (if any sensor could be used)
/// and, with `interfaces_every`, its interfaces job at that interval.
///
/// A sensor without an interval of at least 1 s, or with details that do
/// not parse, is left out with a note in `notes`, as are the sensors past
/// [`MAX_SENSORS`]; an entity whose address or credential cannot be used is
/// an error (and gets no job).
pub fn entity_jobs(
    entity: &EntityConfig,
    interfaces_every: Option<u32>,
    cache: &mut ParseCache,
    notes: &mut Vec<String>,
) -> Result<Vec<JobSpec<SnmpJob>>, SettingsError> {
    let addr = agent_address(&entity.details)?;
    let settings = SnmpSettings::from_credential(&entity.credential_details)?;
    let mut sensors = Vec::new();
    if entity.sensors.len() > MAX_SENSORS {
        notes.push(format!(
            "the entity has {} sensors; the first {MAX_SENSORS} are polled and the rest skipped (more would make one device's firings unbounded); fix it in {}",
            entity.sensors.len(),
            entity.fix_in()
        ));
    }
    for s in entity.sensors.iter().take(MAX_SENSORS) {
        let Some(interval) = s.interval.filter(|&i| i > 0) else {
            notes.push(format!(
                "sensor {} skipped: it has no interval of at least 1 s (0 and none are not \
                 intervals); fix it in {}",
                s.sensor_id,
                s.fix_in(entity)
            ));
            continue;
        };
        match cache.sensor(s.sensor_id, interval, &s.details) {
            Ok(spec) => sensors.push(spec),
            Err(error) => notes.push(format!(
                "sensor {} skipped: {error}; fix it in {}",
                s.sensor_id,
                s.fix_in(entity)
            )),
        }
    }
    let mut settings = settings;
    if let Some(smallest) = sensors.iter().map(|s| s.interval).min() {
        let interval = Duration::from_secs(u64::from(smallest));
        let tries = settings.timeout * (settings.retries + 1);
        // Only what the user set is news; the defaults fit themselves.
        let set = |field: &str| entity.credential_details.get(field).is_some();
        if settings.budget > interval && !set("budget") {
            settings.budget = interval.mul_f64(0.9);
        } else if settings.budget > interval {
            notes.push(format!(
                "the credential's budget ({} s) is longer than the shortest sensor interval ({smallest} s): \
                 a firing may not outlast its interval, so it gets {} s; set budget to at most {smallest}; fix it in {}",
                settings.budget.as_secs_f64(),
                (interval.mul_f64(0.9)).as_secs_f64(),
                entity.fix_in()
            ));
            // The bot's own deadline ends the firing before the SDK's run
            // timeout does, so that what timed out is counted and said.
            settings.budget = interval.mul_f64(0.9);
        } else if tries > interval && (set("timeout") || set("retries")) {
            notes.push(format!(
                "timeout × (retries + 1) = {} s is longer than the shortest sensor interval ({smallest} s): \
                 a device that does not answer uses up whole firings; lower timeout or retries; fix it in {}",
                tries.as_secs_f64(),
                entity.fix_in()
            ));
        }
    }
    let mut jobs = Vec::with_capacity(2);
    // for_entity: both jobs belong to the entity's account (the SDK refuses a
    // job without one while it sends to Grafolean) and have `entity="<id>"`.
    let target = addr.to_string();
    let label = |spec: JobSpec<SnmpJob>| {
        spec.with_label("name", entity.name.clone())
            .with_label("target", target.clone())
    };
    if let Ok(intervals) = Intervals::new(sensors.iter().map(|s| s.interval)) {
        let params = PollParams {
            entity_id: entity.entity_id,
            addr: addr.clone(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use grafolean_collector::SensorConfig;
    use serde_json::json;

    fn entity(sensors: usize, credential: serde_json::Value) -> EntityConfig {
        EntityConfig {
            account_id: 1,
            entity_id: 7,
            name: "e".into(),
            entity_type: "device".into(),
            details: json!({"ipv4": "192.0.2.1"}),
            credential_id: Some(1),
            credential_details: credential.into(),
            sensors: (0..sensors as u64)
                .map(|id| SensorConfig {
                    sensor_id: id,
                    interval: Some(10),
                    details: json!({"oids": [{"oid": "1.3.6.1.2.1.1.3.0", "fetch_method": "get"}],
                                    "expression": "$1", "output_path": format!("s{id}")})
                    .into(),
                    origin: None,
                })
                .collect(),
            origin: None,
        }
    }

    fn poll(jobs: &[JobSpec<SnmpJob>]) -> &PollParams {
        match &jobs[0].params {
            SnmpJob::Poll(p) => p,
            SnmpJob::Interfaces(_) => panic!("not a poll job"),
        }
    }

    #[test]
    fn sensors_past_the_limit_are_skipped_with_one_note() {
        let v2c = json!({"version": "snmpv2c", "snmpv12_community": "public"});
        let mut notes = Vec::new();
        let jobs = entity_jobs(
            &entity(300, v2c),
            None,
            &mut ParseCache::default(),
            &mut notes,
        )
        .unwrap();
        assert_eq!(poll(&jobs).sensors.len(), MAX_SENSORS);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("300 sensors"), "{notes:?}");
    }

    #[test]
    fn a_budget_longer_than_the_interval_is_cut_and_said_only_when_set() {
        let mut notes = Vec::new();
        let set = json!({"version": "snmpv2c", "budget": 30});
        let jobs = entity_jobs(
            &entity(1, set),
            None,
            &mut ParseCache::default(),
            &mut notes,
        )
        .unwrap();
        assert_eq!(poll(&jobs).settings.budget, Duration::from_secs(9));
        assert!(
            notes[0].contains("budget (30 s) is longer than the shortest sensor interval (10 s)"),
            "{notes:?}"
        );
        // The default budget (10 s) at 10 s fits; at 5 s it is cut silently.
        let mut notes = Vec::new();
        let mut e = entity(1, json!({"version": "snmpv2c"}));
        e.sensors[0].interval = Some(5);
        let jobs = entity_jobs(&e, None, &mut ParseCache::default(), &mut notes).unwrap();
        assert_eq!(poll(&jobs).settings.budget, Duration::from_millis(4500));
        assert!(notes.is_empty(), "{notes:?}");
        // timeout × (retries + 1) past the interval, as set: said.
        let mut notes = Vec::new();
        let slow = json!({"version": "snmpv2c", "timeout": 4, "retries": 2, "budget": 9});
        entity_jobs(
            &entity(1, slow),
            None,
            &mut ParseCache::default(),
            &mut notes,
        )
        .unwrap();
        assert!(
            notes[0].contains("timeout × (retries + 1) = 12 s"),
            "{notes:?}"
        );
    }
}
