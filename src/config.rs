//! Job configs: the entities, credentials and sensors a bot is asked to monitor.
//!
//! They come from the Grafolean backend ([`crate::fetch`]) or from a local TOML
//! file ([`crate::standalone`]), in the same shape. A bot turns them into jobs
//! in [`Collector::jobs`](crate::collector::Collector::jobs). The raw JSON `details` stay
//! available for protocol-specific parsing.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::job::{Intervals, JobId, JobSpec};

/// Every entity config a bot should monitor, for its protocol.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct JobConfigs {
    /// The entities that passed the filters, in the backend's order.
    pub entities: Vec<EntityConfig>,
}

/// One entity, with its credential and the sensors that apply to it.
///
/// ```
/// use grafolean_collector::{EntityConfig, SensorConfig};
/// let e = EntityConfig {
///     account_id: 1,
///     entity_id: 2,
///     name: "router".into(),
///     entity_type: "device".into(),
///     details: serde_json::json!({"ipv4": "127.0.0.1"}),
///     credential_id: Some(3),
///     credential_details: serde_json::json!({}).into(),
///     sensors: vec![SensorConfig {
///         sensor_id: 4,
///         interval: Some(10),
///         details: serde_json::json!({}).into(),
///         origin: None,
///     }],
///     origin: None,
/// };
/// assert_eq!(e.intervals().unwrap().smallest(), 10);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EntityConfig {
    /// The account the entity belongs to; values are posted there.
    pub account_id: u64,
    /// The entity's id.
    pub entity_id: u64,
    /// The entity's name.
    pub name: String,
    /// The entity type, such as `device`.
    pub entity_type: String,
    /// The entity's `details`, as the backend sent them (for example `{"ipv4": "…"}`).
    pub details: serde_json::Value,
    /// The credential's id, when it came from the backend.
    pub credential_id: Option<u64>,
    /// The credential's `details`, as the backend sent them. Shared: every
    /// entity config that uses the credential points at one copy, so that
    /// 10,000 devices on one credential hold it once (build one with
    /// `json!({...}).into()`).
    pub credential_details: Arc<serde_json::Value>,
    /// The sensors that apply, with their effective intervals.
    pub sensors: Vec<SensorConfig>,
    /// Where this entity's config was written, for messages that tell the
    /// user what to fix: `None` for Grafolean, `Some("jobs.toml line 12")`
    /// for a standalone TOML file. See [`EntityConfig::fix_in`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

impl EntityConfig {
    /// Where to fix this entity's config, for a message: `"Grafolean"`, or
    /// the standalone file and line, such as `"jobs.toml line 12"`.
    ///
    /// ```
    /// # use grafolean_collector::EntityConfig;
    /// let mut e: EntityConfig = serde_json::from_value(serde_json::json!({
    ///     "account_id": 1, "entity_id": 2, "name": "r", "entity_type": "device",
    ///     "details": {}, "credential_id": null, "credential_details": {}, "sensors": []
    /// })).unwrap();
    /// assert_eq!(e.fix_in(), "Grafolean");
    /// e.origin = Some("jobs.toml line 12".into());
    /// assert_eq!(e.fix_in(), "jobs.toml line 12");
    /// ```
    pub fn fix_in(&self) -> &str {
        self.origin.as_deref().unwrap_or("Grafolean")
    }

    /// The set of the sensors' intervals, or `None` when no sensor has one.
    pub fn intervals(&self) -> Option<Intervals> {
        Intervals::new(self.sensors.iter().filter_map(|s| s.interval)).ok()
    }
}

/// A job made from an entity's config.
impl<P> JobSpec<P> {
    /// A spec for one entity's job: its values go to the entity's account, and
    /// it has the label `entity="<id>"`. `id` must be stable across refreshes
    /// and unique among the bot's jobs, such as `format!("{}", entity.entity_id)`
    /// (or `"<id>-interfaces"` for a second job of the same entity).
    ///
    /// ```
    /// use grafolean_collector::{EntityConfig, JobSpec};
    /// let entity: EntityConfig = serde_json::from_value(serde_json::json!({
    ///     "account_id": 1, "entity_id": 42, "name": "router", "entity_type": "device",
    ///     "details": {"ipv4": "127.0.0.1"}, "credential_id": null, "credential_details": {},
    ///     "sensors": [{"sensor_id": 3, "interval": 60, "details": {}}]
    /// })).unwrap();
    /// let spec = JobSpec::for_entity(&entity, "42", entity.intervals().unwrap(), ());
    /// assert_eq!(spec.account, Some(1));
    /// assert_eq!(&spec.labels[..], [("entity".to_string(), "42".to_string())]);
    /// ```
    pub fn for_entity(
        entity: &EntityConfig,
        id: impl Into<JobId>,
        intervals: Intervals,
        params: P,
    ) -> Self {
        Self::new(id, intervals, params)
            .with_account(entity.account_id)
            .with_label("entity", entity.entity_id.to_string())
    }
}

/// One sensor on an entity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SensorConfig {
    /// The sensor's id.
    pub sensor_id: u64,
    /// The effective interval in seconds: the entity's override, else the
    /// sensor's `default_interval`, else `None`.
    pub interval: Option<u32>,
    /// The sensor's `details`, as the backend sent them. Shared, as
    /// [`EntityConfig::credential_details`] is, by every entity the sensor
    /// applies to.
    pub details: Arc<serde_json::Value>,
    /// Where this sensor was written, as [`EntityConfig::origin`]: `None`
    /// for Grafolean, `Some("jobs.toml line 14")` for a standalone file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

impl SensorConfig {
    /// Where to fix this sensor of `entity`, for messages: its own line in
    /// a standalone file, else where the entity is
    /// ([`EntityConfig::fix_in`]).
    ///
    /// ```
    /// # use grafolean_collector::{EntityConfig, SensorConfig};
    /// let mut e: EntityConfig = serde_json::from_value(serde_json::json!({
    ///     "account_id": 1, "entity_id": 2, "name": "r", "entity_type": "device",
    ///     "details": {}, "credential_id": null, "credential_details": {},
    ///     "sensors": [{"sensor_id": 4, "interval": 60, "details": {}}]
    /// })).unwrap();
    /// assert_eq!(e.sensors[0].fix_in(&e), "Grafolean");
    /// e.sensors[0].origin = Some("jobs.toml line 14".into());
    /// assert_eq!(e.sensors[0].fix_in(&e), "jobs.toml line 14");
    /// ```
    pub fn fix_in<'a>(&'a self, entity: &'a EntityConfig) -> &'a str {
        self.origin.as_deref().unwrap_or_else(|| entity.fix_in())
    }
}
