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

/// Builds one entity's jobs: its polling job (if any sensor could be used)
/// and, with `interfaces_every`, its interfaces job at that interval.
///
/// A sensor without an interval of at least 1 s, or with details that do
/// not parse, is left out with a note in `notes`; an entity whose address
/// or credential cannot be used is an error (and gets no job).
pub fn entity_jobs(
    entity: &EntityConfig,
    interfaces_every: Option<u32>,
    cache: &mut ParseCache,
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
