//! Many devices at once, for load tests and benchmarks.

use serde_json::Value as Json;

use super::model::{Credential, Entity, ProtocolConfig, Sensor, SensorRef};

/// A set of devices with the same setup, for [`FakeGrafolean::add_devices`](super::FakeGrafolean::add_devices).
///
/// By default all devices share one credential and their sensors; with
/// [`own_config`](Self::own_config) each device gets its own.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use grafolean_collector::testing::{ACCOUNT_ID, BOT_ID, DeviceBatch, FakeGrafolean};
/// let fake = FakeGrafolean::with_fixture_data().await;
/// let shared = DeviceBatch::new(ACCOUNT_ID, "ping", 1000).with_bot(BOT_ID).with_sensors(5, Some(60));
/// let own = shared.clone().own_config();
/// assert_eq!(fake.add_devices(&shared).len(), 1000);
/// assert_eq!(fake.add_devices(&own).len(), 1000);
/// # }
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct DeviceBatch {
    /// The account.
    pub account_id: u64,
    /// The protocol enabled on every device.
    pub protocol: String,
    /// The bot in `protocols[protocol].bot`.
    pub bot: Option<u64>,
    /// How many devices.
    pub count: usize,
    /// How many sensors each device has.
    pub sensors_per_device: usize,
    /// The sensors' `default_interval` (the entities do not override it).
    pub default_interval: Option<u32>,
    /// One credential and one set of sensors for all devices (`true`), or per device.
    pub shared: bool,
    /// The credentials' `details`.
    pub credential_details: Json,
}

impl DeviceBatch {
    /// `count` devices with `protocol`, one shared credential and one sensor
    /// (`default_interval` 60), for any bot.
    pub fn new(account_id: u64, protocol: &str, count: usize) -> Self {
        Self {
            account_id,
            protocol: protocol.into(),
            bot: None,
            count,
            sensors_per_device: 1,
            default_interval: Some(60),
            shared: true,
            credential_details: serde_json::json!({}),
        }
    }

    /// Assigns the devices to a bot.
    pub fn with_bot(mut self, bot: u64) -> Self {
        self.bot = Some(bot);
        self
    }

    /// Sets the number of sensors per device and their default interval.
    pub fn with_sensors(mut self, n: usize, default_interval: Option<u32>) -> Self {
        self.sensors_per_device = n;
        self.default_interval = default_interval;
        self
    }

    /// Gives each device its own credential and sensors.
    pub fn own_config(mut self) -> Self {
        self.shared = false;
        self
    }

    /// Sets the credentials' `details`.
    pub fn with_credential_details(mut self, details: Json) -> Self {
        self.credential_details = details;
        self
    }

    pub(crate) fn build(&self) -> (Vec<Credential>, Vec<Sensor>, Vec<Entity>) {
        let (a, proto) = (self.account_id, self.protocol.as_str());
        let new_credential = || Credential::new(a, proto, self.credential_details.clone());
        let new_sensors = || -> Vec<Sensor> {
            (0..self.sensors_per_device)
                .map(|_| Sensor::new(a, proto, self.default_interval))
                .collect()
        };
        let (mut credentials, mut sensors) = (Vec::new(), Vec::new());
        if self.shared {
            credentials.push(new_credential());
            sensors = new_sensors();
        }
        let mut entities = Vec::with_capacity(self.count);
        for i in 0..self.count {
            let (credential, own_sensors) = if self.shared {
                (
                    credentials[0].id,
                    sensors.iter().map(|s| s.id).collect::<Vec<_>>(),
                )
            } else {
                let c = new_credential();
                let ss = new_sensors();
                let ids = (c.id, ss.iter().map(|s| s.id).collect());
                credentials.push(c);
                sensors.extend(ss);
                ids
            };
            let n = i + 1;
            let ip = format!("127.{}.{}.{}", (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff);
            let config = ProtocolConfig {
                credential,
                sensors: own_sensors
                    .into_iter()
                    .map(|sensor| SensorRef {
                        sensor,
                        interval: None,
                    })
                    .collect(),
                bot: self.bot,
            };
            entities
                .push(Entity::device(a, format!("device {n}"), &ip).with_protocol(proto, config));
        }
        (credentials, sensors, entities)
    }
}
