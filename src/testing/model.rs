//! The records the fake backend stores, and the records it keeps about traffic.
//!
//! Every record has public fields and a `new` constructor that picks a random
//! 31-bit id, like the real backend does; `with_id` sets a chosen one. Hand them
//! to [`FakeGrafolean`](super::FakeGrafolean)'s `put_*` methods.

use std::collections::BTreeMap;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use serde_json::Value as Json;

/// A random-looking, non-zero 31-bit id, never the same twice in one process
/// (the real backend's ids are unique too; 6,000 independent random ids
/// collided in about one benchmark run in 150).
///
/// ```
/// let (a, b) = (grafolean_collector::testing::random_id(), grafolean_collector::testing::random_id());
/// assert!(a > 0 && a < 1 << 31 && a != b);
/// ```
pub fn random_id() -> u64 {
    const MASK: u64 = 0x7fff_ffff;
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static KEY: OnceLock<u64> = OnceLock::new();
    let key = *KEY.get_or_init(|| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(0);
        h.finish() & MASK
    });
    loop {
        // An odd multiplier and an xor are each one-to-one on 31 bits, so
        // distinct counts give distinct ids.
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let id = (n.wrapping_mul(0x5bd1_e995) & MASK) ^ key;
        if id != 0 {
            return id;
        }
    }
}

/// An account: the owner of entities, credentials, sensors and values.
#[derive(Clone, Debug, PartialEq)]
pub struct Account {
    /// The account id.
    pub id: u64,
    /// The account name; `GET /accounts` sorts by it.
    pub name: String,
}

impl Account {
    /// An account with a random id.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            id: random_id(),
            name: name.into(),
        }
    }

    /// Sets the id.
    #[must_use]
    pub fn with_id(mut self, id: u64) -> Self {
        self.id = id;
        self
    }
}

/// A bot: a user that authenticates with `?b=<token>`.
///
/// Its `Debug` output hides the token.
#[derive(Clone, PartialEq)]
pub struct Bot {
    /// The bot's user id (`user_id` in `/profile`).
    pub id: u64,
    /// The bot's name.
    pub name: String,
    /// The token, a lower-case UUID. Matched case-insensitively.
    pub token: String,
    /// The protocol, such as `ping`.
    pub protocol: Option<String>,
    /// The account the bot is tied to.
    pub tied_to_account: Option<u64>,
    /// The bot's `config` field.
    pub config: Option<String>,
    /// `insert_time` in UNIX seconds.
    pub insert_time: u64,
    /// `last_login` in UNIX seconds.
    pub last_login: Option<u64>,
}

impl Bot {
    /// A bot with a random id and a random token, tied to no account.
    pub fn new(name: impl Into<String>, protocol: Option<&str>) -> Self {
        let now = unix_now() as u64;
        Self {
            id: random_id(),
            name: name.into(),
            token: random_token(),
            protocol: protocol.map(str::to_owned),
            tied_to_account: None,
            config: None,
            insert_time: now,
            last_login: Some(now),
        }
    }

    /// Sets the id.
    #[must_use]
    pub fn with_id(mut self, id: u64) -> Self {
        self.id = id;
        self
    }

    /// Sets the token.
    #[must_use]
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = token.into();
        self
    }

    /// Ties the bot to an account.
    #[must_use]
    pub fn tied_to(mut self, account_id: u64) -> Self {
        self.tied_to_account = Some(account_id);
        self
    }
}

impl fmt::Debug for Bot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bot")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("token", &"<redacted>")
            .field("protocol", &self.protocol)
            .field("tied_to_account", &self.tied_to_account)
            .finish_non_exhaustive()
    }
}

/// A random lower-case UUID (version 4 layout).
pub(crate) fn random_token() -> String {
    let a = (random_id() << 33) ^ (random_id() << 2) ^ random_id();
    let b = (random_id() << 33) ^ (random_id() << 2) ^ random_id();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | ((b >> 48) & 0x3fff),
        b & 0xffff_ffff_ffff
    )
}

/// A grant: `resource_prefix` (`None` = everything) and `methods` (`None` = all).
#[derive(Clone, Debug, PartialEq)]
pub struct Permission {
    /// The permission id.
    pub id: u64,
    /// The user (bot) it is granted to.
    pub user_id: u64,
    /// The resource prefix, such as `accounts/1/values`.
    pub resource_prefix: Option<String>,
    /// The allowed methods, upper case, such as `["POST", "PUT"]`.
    pub methods: Option<Vec<String>>,
}

/// An entity (a device, an interface, ...) in an account.
#[derive(Clone, Debug, PartialEq)]
pub struct Entity {
    /// The entity id.
    pub id: u64,
    /// The account it belongs to.
    pub account_id: u64,
    /// Its name.
    pub name: String,
    /// Its type, such as `device` or `interface`.
    pub entity_type: String,
    /// The parent entity.
    pub parent: Option<u64>,
    /// Free-form details, such as `{"ipv4": "127.0.0.1"}`.
    pub details: Json,
    /// The protocols enabled on it, by name.
    pub protocols: BTreeMap<String, ProtocolConfig>,
}

impl Entity {
    /// A `device` with a random id, the given `ipv4` detail and no protocols.
    pub fn device(account_id: u64, name: impl Into<String>, ipv4: &str) -> Self {
        Self {
            id: random_id(),
            account_id,
            name: name.into(),
            entity_type: "device".into(),
            parent: None,
            details: serde_json::json!({ "ipv4": ipv4 }),
            protocols: BTreeMap::new(),
        }
    }

    /// Sets the id.
    #[must_use]
    pub fn with_id(mut self, id: u64) -> Self {
        self.id = id;
        self
    }

    /// Enables a protocol.
    #[must_use]
    pub fn with_protocol(mut self, protocol: impl Into<String>, config: ProtocolConfig) -> Self {
        self.protocols.insert(protocol.into(), config);
        self
    }
}

/// How one protocol is set up on an entity.
#[derive(Clone, Debug, PartialEq)]
pub struct ProtocolConfig {
    /// The credential id.
    pub credential: u64,
    /// The sensors, each with an optional interval override.
    pub sensors: Vec<SensorRef>,
    /// The bot that should collect it (`None` = any bot of the protocol).
    pub bot: Option<u64>,
}

/// A sensor on an entity's protocol.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SensorRef {
    /// The sensor id.
    pub sensor: u64,
    /// The interval override in seconds (`None` = the sensor's default).
    pub interval: Option<u32>,
}

/// A credential in an account.
#[derive(Clone, Debug, PartialEq)]
pub struct Credential {
    /// The credential id.
    pub id: u64,
    /// The account it belongs to.
    pub account_id: u64,
    /// Its name.
    pub name: String,
    /// Its protocol, such as `ping`.
    pub protocol: String,
    /// Free-form details.
    pub details: Json,
}

impl Credential {
    /// A credential with a random id.
    pub fn new(account_id: u64, protocol: &str, details: Json) -> Self {
        Self {
            id: random_id(),
            account_id,
            name: format!("{protocol} credential"),
            protocol: protocol.into(),
            details,
        }
    }

    /// Sets the id.
    #[must_use]
    pub fn with_id(mut self, id: u64) -> Self {
        self.id = id;
        self
    }
}

/// A sensor in an account.
#[derive(Clone, Debug, PartialEq)]
pub struct Sensor {
    /// The sensor id.
    pub id: u64,
    /// The account it belongs to.
    pub account_id: u64,
    /// Its name.
    pub name: String,
    /// Its protocol, such as `ping`.
    pub protocol: String,
    /// The default interval in seconds.
    pub default_interval: Option<u32>,
    /// Free-form details.
    pub details: Json,
}

impl Sensor {
    /// A sensor with a random id and empty details.
    pub fn new(account_id: u64, protocol: &str, default_interval: Option<u32>) -> Self {
        Self {
            id: random_id(),
            account_id,
            name: format!("{protocol} sensor"),
            protocol: protocol.into(),
            default_interval,
            details: serde_json::json!({}),
        }
    }

    /// Sets the id.
    #[must_use]
    pub fn with_id(mut self, id: u64) -> Self {
        self.id = id;
        self
    }
}

/// How a value arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueMethod {
    /// `POST …/values`: the server stamped it.
    Post,
    /// `PUT …/values`: the client gave `t`.
    Put,
}

/// A value the fake accepted and stored.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredValue {
    /// The account.
    pub account_id: u64,
    /// The path.
    pub path: String,
    /// UNIX seconds: the server's clock for POST, the given `t` for PUT.
    pub t: f64,
    /// The value (`"NaN"` and `"inf"` are accepted, as by the real backend).
    pub v: f64,
    /// POST or PUT.
    pub method: ValueMethod,
    /// When the request arrived, on tokio's clock (paused in tests).
    pub arrived: tokio::time::Instant,
}

/// One request as the fake received it, recorded raw (tokens included).
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// The request's number, counting from 0 since the fake started.
    pub seq: u64,
    /// The method, such as `GET`.
    pub method: String,
    /// The path, such as `/api/profile/`.
    pub path: String,
    /// The raw query string, if any.
    pub query: Option<String>,
    /// The headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// When it arrived, by the system clock.
    pub at: SystemTime,
    /// When it arrived, on tokio's clock (paused in tests).
    pub arrived: tokio::time::Instant,
    /// The response status; `None` while in progress or when the connection was dropped.
    pub status: Option<u16>,
}

impl RecordedRequest {
    /// The body parsed as JSON, if it is JSON.
    pub fn body_json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The value of a query parameter, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        super::http::query_pairs(self.query.as_deref())
            .into_iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
}

/// The system clock in UNIX seconds.
pub(crate) fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
