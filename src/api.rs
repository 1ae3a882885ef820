//! A typed client for the bot-facing Grafolean API.
//!
//! It follows the facts recorded from the real backend (see
//! `tests/fixtures/grafolean-api/README.md`): the token goes only as `?b=`,
//! a trailing slash is optional, 401 and 403 answers are plain text, and one
//! bad item rejects a whole POST of values. Every request has a timeout and
//! connections are pooled. The token never appears in an error or a log line:
//! errors name the resource (the path after `/api/`), never the URL.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tracing::{debug, info, trace};

pub use crate::token::{BotToken, TokenError};

/// The default timeout of one request.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The default limit on the body of a config answer (profile, account and
/// entity lists, an entity, a credential, a sensor): 64 MiB.
///
/// The largest of them is an account's entity list, which the backend sends
/// whole (it has no paging), with every entity's details and protocols. An
/// entity with a typical `details` and one or two protocols takes 300–600
/// bytes of JSON, so 64 MiB holds over 100,000 entities in one account,
/// beyond any Grafolean installation seen, while a backend (or a file server
/// or proxy at a misconfigured `BACKEND_URL`) that answers with an endless
/// body costs at most this much memory, once. Raise it with
/// [`ClientBuilder::with_max_response_bytes`] for a larger account.
pub(crate) const DEFAULT_MAX_RESPONSE_BYTES: usize = 64 << 20;

/// The limit on the body of an error answer and of the answer to a value
/// write: the backend's own are under 200 bytes; what is read of a longer
/// one is only logged (cut to 300 characters).
pub(crate) const MAX_SMALL_BODY_BYTES: usize = 4 << 10;

/// An error from the Grafolean API. Each variant says what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// 401: the token is wrong or was revoked.
    #[error(
        "the bot token was rejected by {backend} (401); check BOT_TOKEN and that the bot still exists in Grafolean"
    )]
    Unauthorized {
        /// The backend's base URL.
        backend: String,
    },
    /// 403: the bot lacks a permission.
    #[error(
        "the bot has no permission for {method} {resource} (403); grant it in Grafolean under the bot's permissions"
    )]
    Forbidden {
        /// The HTTP method.
        method: String,
        /// The resource, such as `accounts/1/values`.
        resource: String,
    },
    /// 404: the resource does not exist (it may have been deleted).
    #[error("{resource} was not found (404): {detail}")]
    NotFound {
        /// The resource.
        resource: String,
        /// The backend's `detail`.
        detail: String,
    },
    /// Another 4xx: the backend rejected the request as invalid.
    #[error("the backend rejected {method} {resource} ({status}): {body}")]
    Rejected {
        /// The HTTP method.
        method: String,
        /// The resource.
        resource: String,
        /// The status code.
        status: u16,
        /// The response body (truncated).
        body: String,
    },
    /// A 5xx, or a 408 or 429 (too slow, too busy): the backend failed;
    /// retry later.
    #[error("the backend failed on {method} {resource} ({status}): {body}; it will be retried")]
    Server {
        /// The HTTP method.
        method: String,
        /// The resource.
        resource: String,
        /// The status code.
        status: u16,
        /// The response body (truncated).
        body: String,
    },
    /// The request timed out.
    #[error("{method} {resource} timed out after {timeout:?}; is {backend} overloaded?")]
    Timeout {
        /// The HTTP method.
        method: String,
        /// The resource.
        resource: String,
        /// The timeout.
        timeout: Duration,
        /// The backend's base URL.
        backend: String,
    },
    /// The backend could not be reached.
    #[error(
        "could not reach {backend} for {method} {resource}: {reason}; check BACKEND_URL and the network"
    )]
    Network {
        /// The HTTP method.
        method: String,
        /// The resource.
        resource: String,
        /// The backend's base URL.
        backend: String,
        /// What failed (with no URL in it).
        reason: String,
    },
    /// A 2xx answer whose JSON could not be parsed.
    #[error("the answer to {method} {resource} was not the expected JSON: {reason}")]
    Malformed {
        /// The request's method.
        method: String,
        /// The resource.
        resource: String,
        /// The parse error.
        reason: String,
    },
    /// The answer's body was longer than the limit. The rest was not read
    /// and the connection was dropped.
    #[error(
        "the answer to {method} {resource} was larger than the limit of {limit} bytes; \
         the connection was dropped. Check that BACKEND_URL is the Grafolean API \
         (or raise the limit if the answer is real)"
    )]
    TooLarge {
        /// The HTTP method.
        method: String,
        /// The resource.
        resource: String,
        /// The limit in bytes.
        limit: usize,
    },
    /// The backend URL is not a valid http(s) URL.
    #[error(
        "BACKEND_URL {0:?} is not a valid http:// or https:// URL (for example http://grafolean/api)"
    )]
    InvalidUrl(String),
    /// The backend never became ready.
    #[error("the backend at {backend} was not ready after {attempts} attempts: {last}")]
    NotReady {
        /// The backend's base URL.
        backend: String,
        /// How many times it was asked.
        attempts: u32,
        /// The last answer or error.
        last: String,
    },
}

impl ApiError {
    /// Whether trying again later may succeed (network errors, timeouts, 5xx,
    /// and an answer over the size limit: a broken backend or proxy may
    /// recover).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Server { .. }
                | Self::Timeout { .. }
                | Self::Network { .. }
                | Self::TooLarge { .. }
        )
    }

    /// Whether the backend answered at all (any HTTP status that is not a 5xx).
    pub fn backend_answered(&self) -> bool {
        !self.is_transient() && !matches!(self, Self::InvalidUrl(_) | Self::NotReady { .. })
    }
}

/// `GET /status/info`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub(crate) struct StatusInfo {
    /// Whether the database schema needs a migration.
    pub db_migration_needed: bool,
    /// Whether an admin user exists.
    pub user_exists: bool,
}

/// `GET /profile/` of a bot.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub(crate) struct Profile {
    /// The bot's own user id; entities name it in `protocols[p].bot`.
    pub user_id: u64,
    /// `bot` for a bot.
    pub user_type: String,
}

/// One account in `GET /accounts/`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub(crate) struct Account {
    /// The account id.
    pub id: u64,
    /// The account name.
    pub name: String,
}

/// An entity, from the entity list or from `GET .../entities/{e}`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct Entity {
    /// The entity id.
    pub id: u64,
    /// The name.
    pub name: String,
    /// `device`, `interface`, …
    pub entity_type: String,
    /// The parent entity, if any.
    #[serde(default)]
    pub parent: Option<u64>,
    /// Free-form details, such as `{"ipv4": "…"}`.
    #[serde(default)]
    pub details: serde_json::Value,
    /// Per-protocol settings, keyed by protocol name.
    #[serde(default)]
    pub protocols: std::collections::BTreeMap<String, EntityProtocol>,
}

/// The settings of one protocol on an entity.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct EntityProtocol {
    /// The credential id, if set.
    #[serde(default)]
    pub credential: Option<u64>,
    /// The sensors, with optional interval overrides.
    #[serde(default)]
    pub sensors: Vec<SensorRef>,
    /// The bot assigned to it; `None` means any bot of the protocol.
    #[serde(default)]
    pub bot: Option<u64>,
}

/// A sensor reference on an entity.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct SensorRef {
    /// The sensor id.
    pub sensor: u64,
    /// The interval override in seconds.
    #[serde(default)]
    pub interval: Option<u32>,
}

/// `GET .../credentials/{c}`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct Credential {
    /// The id.
    pub id: u64,
    /// The protocol.
    #[serde(default)]
    pub protocol: String,
    /// Free-form details (the real backend sends numbers as strings),
    /// shared by every entity config that uses this credential.
    #[serde(default)]
    pub details: Arc<serde_json::Value>,
}

/// `GET .../sensors/{s}`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct Sensor {
    /// The id.
    pub id: u64,
    /// The protocol.
    #[serde(default)]
    pub protocol: String,
    /// The default interval in seconds.
    #[serde(default)]
    pub default_interval: Option<u32>,
    /// Free-form details, shared by every entity config that uses this
    /// sensor.
    #[serde(default)]
    pub details: Arc<serde_json::Value>,
}

/// One value in a POST: `{"p": path, "v": value}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct PostValue {
    /// The path.
    pub p: String,
    /// The value.
    pub v: f64,
}

/// One value in a PUT: `{"p": path, "t": unix seconds, "v": value}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct PutValue {
    /// The path.
    pub p: String,
    /// The measurement time, in UNIX seconds.
    pub t: f64,
    /// The value.
    pub v: f64,
}

/// The body of an entity write (`POST /accounts/{a}/entities/`, `PUT
/// /accounts/{a}/entities/{e}`), as the backend's `EntitySchemaInputs`.
///
/// The backend's PUT never changes `parent`, and it replaces the entity's
/// protocols with `protocols` (none if it is absent).
///
/// ```
/// use grafolean_collector::api::EntityInput;
/// let e = EntityInput::new("eth0", "interface", serde_json::json!({"snmp_index": "2"})).with_parent(7);
/// assert_eq!(serde_json::to_value(&e).unwrap()["parent"], 7);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EntityInput {
    /// The name.
    pub name: String,
    /// `device`, `interface`, …
    pub entity_type: String,
    /// The parent entity (only on create).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<u64>,
    /// Free-form details (must be an object).
    pub details: serde_json::Value,
    /// Protocol settings, as in [`Entity::protocols`]; `None` leaves the
    /// field out, which gives the entity no protocols.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocols: Option<std::collections::BTreeMap<String, EntityProtocol>>,
}

impl EntityInput {
    /// An entity with no parent and no protocols.
    pub fn new(
        name: impl Into<String>,
        entity_type: impl Into<String>,
        details: serde_json::Value,
    ) -> Self {
        Self {
            name: name.into(),
            entity_type: entity_type.into(),
            parent: None,
            details,
            protocols: None,
        }
    }

    /// Sets the parent (used by create only; the backend ignores it on update).
    #[must_use]
    pub fn with_parent(mut self, parent: u64) -> Self {
        self.parent = Some(parent);
        self
    }
}

#[derive(Deserialize)]
struct Created {
    id: u64,
}

#[derive(Deserialize)]
struct List<T> {
    list: Vec<T>,
}

/// A `{"list": [...]}` body whose items are parsed one at a time: at 10,000
/// entities, the whole list parsed at once was tens of MB of short-lived
/// JSON values, and the holes they left among the configs built beside them
/// stayed in RSS.
pub(crate) struct RawList(Vec<u8>);

impl RawList {
    /// The items, as JSON text.
    pub(crate) fn items(&self) -> Vec<&serde_json::value::RawValue> {
        // The body was checked when it was read.
        serde_json::from_slice::<List<&serde_json::value::RawValue>>(&self.0)
            .map(|l| l.list)
            .unwrap_or_default()
    }
}

/// Parses a GET's body as `T`, or says why not, naming the resource.
fn parse_body<'a, T: Deserialize<'a>>(resource: &str, bytes: &'a [u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::Malformed {
        method: "GET".into(),
        resource: trim_resource(resource),
        reason: parse_problem::<T>(bytes).unwrap_or_else(|| e.to_string()),
    })
}

/// Builds a [`Client`].
///
/// ```
/// use grafolean_collector::api::Client;
/// use grafolean_collector::api::BotToken;
/// let client = Client::builder("http://127.0.0.1:8000/api", BotToken::new("t").unwrap())
///     .with_timeout(std::time::Duration::from_secs(5))
///     .build()
///     .unwrap();
/// assert_eq!(client.backend(), "http://127.0.0.1:8000/api");
/// ```
#[derive(Debug)]
#[must_use]
pub struct ClientBuilder {
    backend: String,
    token: BotToken,
    timeout: Duration,
    max_idle_per_host: usize,
    max_response_bytes: usize,
}

impl ClientBuilder {
    /// Sets the timeout of each request.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets how many idle connections are kept open for reuse (default
    /// [`DEFAULT_MAX_IDLE_CONNECTIONS`]); an idle connection is closed after
    /// [`IDLE_CONNECTION_TIMEOUT`].
    pub fn with_max_idle_connections(mut self, n: usize) -> Self {
        self.max_idle_per_host = n;
        self
    }

    /// Sets the largest config answer that is read (default
    /// `DEFAULT_MAX_RESPONSE_BYTES`, at least 1 KiB). A longer one fails
    /// with [`ApiError::TooLarge`].
    pub fn with_max_response_bytes(mut self, bytes: usize) -> Self {
        self.max_response_bytes = bytes.max(1024);
        self
    }

    /// Builds the client. Does no network I/O.
    pub fn build(self) -> Result<Client, ApiError> {
        let backend = self.backend.trim().trim_end_matches('/').to_string();
        let base = reqwest::Url::parse(&backend)
            .ok()
            .filter(|_| backend.starts_with("http://") || backend.starts_with("https://"));
        let Some(base) = base else {
            return Err(ApiError::InvalidUrl(backend));
        };
        let http = reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.timeout.min(Duration::from_secs(5)))
            .pool_max_idle_per_host(self.max_idle_per_host)
            .pool_idle_timeout(IDLE_CONNECTION_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ApiError::InvalidUrl(format!("{backend}: {}", e.without_url())))?;
        Ok(Client {
            http,
            backend,
            base,
            token: self.token,
            timeout: self.timeout,
            max_response_bytes: self.max_response_bytes,
        })
    }
}

/// A client of the Grafolean API, for one bot. Cheap to clone; clones share
/// the connection pool.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    backend: String,
    /// `backend`, parsed once: every request's URL is built from it without
    /// parsing (and IDNA-processing) a string again.
    base: reqwest::Url,
    token: BotToken,
    timeout: Duration,
    max_response_bytes: usize,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("backend", &self.backend)
            .field("token", &self.token)
            .field("timeout", &self.timeout)
            .field("max_response_bytes", &self.max_response_bytes)
            .finish()
    }
}

/// How many idle connections to the backend a client keeps by default: the
/// sender's requests in flight and some. Each idle connection keeps a read
/// buffer of up to about 400 KB (hyper's), and a refresh opens as many as its
/// requests in flight (32): at 64 kept, a 10,000-device SNMP bot held 25 MB in
/// them.
pub const DEFAULT_MAX_IDLE_CONNECTIONS: usize = 8;

/// How long an idle connection to the backend is kept: less than the
/// refresh interval, so that the connections a refresh opened are closed
/// before the next one, and those the sender uses every few seconds stay.
pub const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

impl Client {
    /// Starts building a client for `backend` (the base URL, ending in `/api`,
    /// as the Python bots' `BACKEND_URL`).
    pub fn builder(backend: impl Into<String>, token: BotToken) -> ClientBuilder {
        ClientBuilder {
            backend: backend.into(),
            token,
            timeout: DEFAULT_TIMEOUT,
            max_idle_per_host: DEFAULT_MAX_IDLE_CONNECTIONS,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }

    /// The backend's base URL.
    pub fn backend(&self) -> &str {
        &self.backend
    }

    /// `GET /status/info` (no authentication).
    pub(crate) async fn status_info(&self) -> Result<StatusInfo, ApiError> {
        self.get("status/info", false).await
    }

    /// Waits until the backend reports `db_migration_needed == false` and
    /// `user_exists == true`, as the Python bots do. Logs one line per attempt
    /// and gives up after `max_attempts`, with exponential backoff from
    /// `first_delay` up to 30 s.
    pub async fn wait_until_ready(
        &self,
        max_attempts: u32,
        first_delay: Duration,
    ) -> Result<(), ApiError> {
        let mut backoff = crate::backoff::Backoff::new(first_delay * 2, Duration::from_secs(30));
        let mut last = String::new();
        for attempt in 1..=max_attempts.max(1) {
            match self.status_info().await {
                Ok(info) if !info.db_migration_needed && info.user_exists => return Ok(()),
                Ok(info) => {
                    last = format!(
                        "db_migration_needed={}, user_exists={}",
                        info.db_migration_needed, info.user_exists
                    );
                }
                Err(e) => last = e.to_string(),
            }
            info!(attempt, max_attempts, backend = %self.backend, status = %last, "backend not ready yet");
            if attempt < max_attempts {
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
        Err(ApiError::NotReady {
            backend: self.backend.clone(),
            attempts: max_attempts,
            last,
        })
    }

    /// `GET /profile/`: the bot's own user id.
    pub(crate) async fn profile(&self) -> Result<Profile, ApiError> {
        self.get("profile/", true).await
    }

    /// `GET /accounts/`: the ids of the accounts the bot has permissions
    /// for, in the backend's order (for bot jobs that go through every
    /// account, such as the NetFlow bot's entity suggestions).
    pub async fn account_ids(&self) -> Result<Vec<u64>, ApiError> {
        Ok(self.accounts().await?.into_iter().map(|a| a.id).collect())
    }

    /// `GET /accounts/`: the accounts the bot has permissions for.
    pub(crate) async fn accounts(&self) -> Result<Vec<Account>, ApiError> {
        Ok(self.get::<List<Account>>("accounts/", true).await?.list)
    }

    /// `GET /accounts/{a}/entities/`: every entity of the account, of all types.
    pub async fn entities(&self, account: u64) -> Result<Vec<Entity>, ApiError> {
        let resource = format!("accounts/{account}/entities/");
        Ok(self.get::<List<Entity>>(&resource, true).await?.list)
    }

    /// `GET /accounts/{a}/entities/` as raw JSON items, so that one malformed
    /// entity can be skipped without losing the others.
    pub(crate) async fn entity_list_raw(&self, account: u64) -> Result<RawList, ApiError> {
        let resource = format!("accounts/{account}/entities/");
        let body = self.get_body(&resource, true).await?;
        // Checked whole now; its items are parsed one at a time later.
        parse_body::<List<&serde_json::value::RawValue>>(&resource, &body)?;
        Ok(RawList(body))
    }

    /// `GET /accounts/{a}/entities/{e}`.
    pub async fn entity(&self, account: u64, entity: u64) -> Result<Entity, ApiError> {
        self.get(&format!("accounts/{account}/entities/{entity}"), true)
            .await
    }

    /// `GET /accounts/{a}/entities/?parent=…&entity_type=…`: the entities
    /// with that parent and of that type (`None` = any). The real backend
    /// ignores both parameters and lists every entity, so the list is also
    /// filtered here, as the Python bots do.
    pub async fn entities_filtered(
        &self,
        account: u64,
        parent: Option<u64>,
        entity_type: Option<&str>,
    ) -> Result<Vec<Entity>, ApiError> {
        let resource = format!("accounts/{account}/entities/");
        let mut url = self.url(&resource, true);
        {
            let mut query = url.query_pairs_mut();
            if let Some(parent) = parent {
                query.append_pair("parent", &parent.to_string());
            }
            if let Some(entity_type) = entity_type {
                query.append_pair("entity_type", entity_type);
            }
        }
        trace!(resource, "GET");
        let mut response = self.execute("GET", &resource, self.http.get(url)).await?;
        let bytes = match read_limited(&mut response, self.max_response_bytes).await {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Err(self.too_large("GET", &resource, self.max_response_bytes)),
            Err(e) => return Err(self.transport_error("GET", &resource, e)),
        };
        let list: List<Entity> =
            serde_json::from_slice(&bytes).map_err(|e| ApiError::Malformed {
                method: "GET".into(),
                resource: trim_resource(&resource),
                reason: e.to_string(),
            })?;
        Ok(list
            .list
            .into_iter()
            .filter(|e| parent.is_none() || e.parent == parent)
            .filter(|e| entity_type.is_none_or(|t| e.entity_type == t))
            .collect())
    }

    /// `POST /accounts/{a}/entities/` (201 `{"id": …}`): creates an entity
    /// and returns its id. Needs the POST permission on
    /// `accounts/{a}/entities`, which Grafolean's UI does not grant to bots
    /// by default: expect [`ApiError::Forbidden`].
    pub async fn create_entity(&self, account: u64, entity: &EntityInput) -> Result<u64, ApiError> {
        let resource = format!("accounts/{account}/entities/");
        debug!(resource, name = %entity.name, "creating an entity");
        let request = self.http.post(self.url(&resource, true)).json(entity);
        let mut response = self.execute("POST", &resource, request).await?;
        // The backend answers `{"id": …}`; a long answer is not its.
        let bytes = match read_limited(&mut response, MAX_SMALL_BODY_BYTES).await {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Err(self.too_large("POST", &resource, MAX_SMALL_BODY_BYTES)),
            Err(e) => return Err(self.transport_error("POST", &resource, e)),
        };
        let created: Created = serde_json::from_slice(&bytes).map_err(|e| ApiError::Malformed {
            method: "POST".into(),
            resource: trim_resource(&resource),
            reason: e.to_string(),
        })?;
        Ok(created.id)
    }

    /// `PUT /accounts/{a}/entities/{e}` (204): replaces the entity's name,
    /// type, details and protocols (not its parent). A missing entity is
    /// [`ApiError::NotFound`].
    pub async fn update_entity(
        &self,
        account: u64,
        entity: u64,
        input: &EntityInput,
    ) -> Result<(), ApiError> {
        let resource = format!("accounts/{account}/entities/{entity}");
        debug!(resource, name = %input.name, "updating an entity");
        let request = self.http.put(self.url(&resource, true)).json(input);
        self.execute("PUT", &resource, request).await.map(drop)
    }

    /// `DELETE /accounts/{a}/entities/{e}` (204). A missing entity is
    /// [`ApiError::NotFound`].
    pub async fn delete_entity(&self, account: u64, entity: u64) -> Result<(), ApiError> {
        let resource = format!("accounts/{account}/entities/{entity}");
        debug!(resource, "deleting an entity");
        let request = self.http.delete(self.url(&resource, true));
        self.execute("DELETE", &resource, request).await.map(drop)
    }

    /// `GET /accounts/{a}/credentials/{c}`.
    pub async fn credential(&self, account: u64, credential: u64) -> Result<Credential, ApiError> {
        self.get(
            &format!("accounts/{account}/credentials/{credential}"),
            true,
        )
        .await
    }

    /// `GET /accounts/{a}/sensors/{s}`.
    pub async fn sensor(&self, account: u64, sensor: u64) -> Result<Sensor, ApiError> {
        self.get(&format!("accounts/{account}/sensors/{sensor}"), true)
            .await
    }

    /// `POST /accounts/{a}/values/`: the backend stamps the batch with its own
    /// time. One invalid item rejects the whole batch, so validate first.
    pub(crate) async fn post_values(
        &self,
        account: u64,
        values: &[PostValue],
    ) -> Result<(), ApiError> {
        self.send(reqwest::Method::POST, account, values).await
    }

    /// `PUT /accounts/{a}/values/`: values with their own timestamps. Needs the
    /// PUT permission on `accounts/{a}/values`.
    pub(crate) async fn put_values(
        &self,
        account: u64,
        values: &[PutValue],
    ) -> Result<(), ApiError> {
        self.send(reqwest::Method::PUT, account, values).await
    }

    fn url(&self, resource: &str, auth: bool) -> reqwest::Url {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("http(s) URLs have a path")
            .pop_if_empty()
            .extend(resource.split('/'));
        if auth {
            url.query_pairs_mut().append_pair("b", self.token.expose());
        }
        url
    }

    async fn get<T: DeserializeOwned>(&self, resource: &str, auth: bool) -> Result<T, ApiError> {
        let bytes = self.get_body(resource, auth).await?;
        parse_body(resource, &bytes)
    }

    /// A GET's body, within the response size limit.
    async fn get_body(&self, resource: &str, auth: bool) -> Result<Vec<u8>, ApiError> {
        trace!(resource, "GET");
        let request = self.http.get(self.url(resource, auth));
        let mut response = self.execute("GET", resource, request).await?;
        let body = read_limited(&mut response, self.max_response_bytes)
            .await
            .map_err(|e| self.transport_error("GET", resource, e))?;
        body.ok_or_else(|| self.too_large("GET", resource, self.max_response_bytes))
    }

    async fn send<T: Serialize>(
        &self,
        method: reqwest::Method,
        account: u64,
        values: &[T],
    ) -> Result<(), ApiError> {
        let resource = format!("accounts/{account}/values/");
        let name = method.as_str().to_string();
        debug!(method = %name, resource, count = values.len(), "sending values");
        let request = self
            .http
            .request(method, self.url(&resource, true))
            .json(values);
        let mut response = self.execute(&name, &resource, request).await?;
        // The backend answers 204 with no body; a long answer is not its.
        match read_limited(&mut response, MAX_SMALL_BODY_BYTES).await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(self.too_large(&name, &resource, MAX_SMALL_BODY_BYTES)),
            Err(e) => Err(self.transport_error(&name, &resource, e)),
        }
    }

    fn too_large(&self, method: &str, resource: &str, limit: usize) -> ApiError {
        ApiError::TooLarge {
            method: method.into(),
            resource: trim_resource(resource),
            limit,
        }
    }

    async fn execute(
        &self,
        method: &str,
        resource: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ApiError> {
        let response = request
            .send()
            .await
            .map_err(|e| self.transport_error(method, resource, e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        // An error body is only logged: read its start, drop the rest.
        let mut response = response;
        let body = read_prefix(&mut response, MAX_SMALL_BODY_BYTES).await;
        let body = String::from_utf8_lossy(&body);
        let body = self.token.redact(truncate(&body, 300));
        let resource = trim_resource(resource);
        let method = method.to_string();
        Err(match status.as_u16() {
            401 => ApiError::Unauthorized {
                backend: self.backend.clone(),
            },
            403 => ApiError::Forbidden { method, resource },
            404 => ApiError::NotFound {
                resource,
                detail: serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v.get("detail")?.as_str().map(str::to_string))
                    .unwrap_or(body),
            },
            code @ (408 | 429 | 500..) => ApiError::Server {
                method,
                resource,
                status: code,
                body,
            },
            code => ApiError::Rejected {
                method,
                resource,
                status: code,
                body,
            },
        })
    }

    fn transport_error(&self, method: &str, resource: &str, e: reqwest::Error) -> ApiError {
        let resource = trim_resource(resource);
        if e.is_timeout() {
            return ApiError::Timeout {
                method: method.into(),
                resource,
                timeout: self.timeout,
                backend: self.backend.clone(),
            };
        }
        let e = e.without_url();
        let mut reason = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            reason.push_str(": ");
            reason.push_str(&s.to_string());
            source = s.source();
        }
        ApiError::Network {
            method: method.into(),
            resource,
            backend: self.backend.clone(),
            reason: self.token.redact(&reason),
        }
    }
}

/// Why `bytes` is not a `T`, naming the field (`protocols.ping.sensors[0].interval`)
/// and, for an interval, the range it must be in (as the entity list's
/// parse does); `None` when the field cannot be told.
///
/// Only for answers of at most [`PARSE_PROBLEM_BYTES`] (an entity, a
/// credential, a sensor): this parses the body again, twice, and a long
/// broken answer must cost no more than the limit it was read under.
fn parse_problem<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Option<String> {
    if bytes.len() > PARSE_PROBLEM_BYTES {
        return None;
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let err = serde_path_to_error::deserialize::<_, T>(&mut de).err()?;
    let path = err.path().to_string();
    if path == "." {
        return None;
    }
    let reason = serde_json::from_slice(bytes)
        .ok()
        .and_then(|value| crate::interval::problem_at(&value, err.path()))
        .unwrap_or_else(|| err.inner().to_string());
    Some(format!("field {path}: {reason}"))
}

/// The largest answer [`parse_problem`] looks into.
const PARSE_PROBLEM_BYTES: usize = 1 << 20;

/// Reads a whole body of at most `limit` bytes; `None` when it is longer
/// (then the rest is left unread, and the connection is dropped with the
/// response).
///
/// The body is copied into segments of at most [`SEGMENT_BYTES`] as it comes:
/// no buffer that doubles as it grows (a copy of up to twice the limit), and no
/// list of hyper's chunks (an endless body of small chunks costs a 32-byte
/// handle per chunk on top of the bytes, measured as 10–18 MB more at 64 MiB).
/// A body over the limit so costs the limit and one segment; a body within it
/// is joined once at the end.
async fn read_limited(
    response: &mut reqwest::Response,
    limit: usize,
) -> Result<Option<Vec<u8>>, reqwest::Error> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Ok(None);
    }
    let mut segments: Vec<Vec<u8>> = Vec::new();
    let mut len = 0;
    while let Some(chunk) = response.chunk().await? {
        len += chunk.len();
        if len > limit {
            return Ok(None);
        }
        let mut rest = &chunk[..];
        while !rest.is_empty() {
            let full = segments.last().is_none_or(|s| s.len() == s.capacity());
            if full {
                // The first segment fits a small answer; later ones are
                // larger, so that a long body makes few of them.
                let size = match segments.len() {
                    0 => rest.len().max(16 << 10),
                    _ => SEGMENT_BYTES,
                };
                segments.push(Vec::with_capacity(size.min(limit)));
            }
            let segment = segments.last_mut().expect("pushed above");
            let n = rest.len().min(segment.capacity() - segment.len());
            segment.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
        }
    }
    if segments.len() <= 1 {
        return Ok(Some(segments.pop().unwrap_or_default()));
    }
    let mut body = Vec::with_capacity(len);
    for segment in segments {
        body.extend_from_slice(&segment);
    }
    Ok(Some(body))
}

/// The size of [`read_limited`]'s segments after the first.
const SEGMENT_BYTES: usize = 1 << 20;

/// Reads up to `limit` bytes of a body, for a log line; errors end it early.
async fn read_prefix(response: &mut reqwest::Response, limit: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = limit - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= limit {
            break;
        }
    }
    body
}

fn trim_resource(resource: &str) -> String {
    resource.trim_end_matches('/').to_string()
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(all(test, feature = "testing"))]
mod tests;
