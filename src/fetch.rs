//! Fetching a bot's job configs from Grafolean, concurrently.
//!
//! [`fetch_job_configs`] gives the same result as the Python library's
//! `fetch_job_configs(protocol)`: the device entities of every account the bot
//! can see, that have the protocol, are assigned to this bot (or to none), have
//! a credential and at least one sensor. Unlike the Python library it:
//!
//! - filters on the `protocols` that the entity list already carries, and
//!   does not GET each entity again (an entity listed without a `protocols`
//!   key, as older backends list them, is still fetched on its own);
//! - runs requests concurrently, with a bounded number in flight over pooled
//!   connections ([`FetchOptions::max_in_flight`]);
//! - fetches each credential and each sensor at most once per refresh, however
//!   many entities share it;
//! - skips an entity whose config is wrong (deleted mid-refresh, malformed
//!   JSON, a credential or sensor that answers 404) with a warning, and keeps
//!   the rest;
//! - tells a wrong config from a failing backend: an entity that could not be
//!   fetched because the backend failed (a 5xx, 429, a timeout, a refused or
//!   reset connection, an answer cut short or over the read limit) is not
//!   skipped but reported in [`FetchReport::failed`], and so is an account
//!   whose entity list failed that way, so that the caller can keep what it
//!   had for them.
//!
//! With a [`Shard`] ([`FetchOptions::with_shard`]), the candidates that pass
//! Grafolean's own filter are then filtered by the shard, before anything is
//! fetched per entity, so that each of `n` replicas costs the backend about
//! `1/n` of the per-entity requests.
//!
//! Only a failure of the profile or of the account list fails the whole
//! refresh (with that request's [`ApiError`]); the caller then keeps its
//! previous job set.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::stream::{self, StreamExt};
use tokio::sync::{Mutex, OnceCell, Semaphore};
use tracing::debug;

use crate::api::{ApiError, Client, Credential, Entity, EntityProtocol, Sensor};
use crate::config::{EntityConfig, JobConfigs, SensorConfig};
use crate::problem::{EntityProblem, SkipCause};
use crate::shard::Shard;

/// The default number of requests in flight during a refresh.
pub(crate) const DEFAULT_MAX_IN_FLIGHT: usize = 32;

/// Options of [`fetch_job_configs`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct FetchOptions {
    /// The most requests in flight at once.
    pub max_in_flight: usize,
    /// This replica's share of the entities (all of them when `None`).
    pub shard: Option<Shard>,
}

impl Default for FetchOptions {
    fn default() -> Self {
        Self {
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            shard: None,
        }
    }
}

impl FetchOptions {
    /// Sets the most requests in flight at once (at least 1 is used).
    ///
    /// ```
    /// use grafolean_collector::fetch::FetchOptions;
    /// assert_eq!(FetchOptions::default().with_max_in_flight(8).max_in_flight, 8);
    /// ```
    #[must_use]
    pub fn with_max_in_flight(mut self, max: usize) -> Self {
        self.max_in_flight = max;
        self
    }

    /// Fetches only the entities that `shard` owns (see [`Shard`]).
    ///
    /// ```
    /// use grafolean_collector::{Shard, fetch::FetchOptions};
    /// let options = FetchOptions::default().with_shard(Shard::new(1, 4).unwrap());
    /// assert_eq!(options.shard.unwrap().to_string(), "1/4");
    /// ```
    #[must_use]
    pub fn with_shard(mut self, shard: Shard) -> Self {
        self.shard = Some(shard);
        self
    }
}

/// An entity, or an account's entity list, that a refresh could not fetch
/// because the backend failed (a 5xx, 408 or 429, a timeout, a refused or
/// reset connection, an answer over the read limit): its config is unknown
/// this time, not wrong.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Unfetched {
    /// The account.
    pub account: u64,
    /// The entity; `None` when the account's entity list failed.
    pub entity: Option<u64>,
    /// How the backend failed: `server_error`, `throttled`, `timeout`,
    /// `network` or `too_large`.
    pub cause: &'static str,
    /// The request that failed, and how.
    pub reason: String,
}

/// The result of a successful refresh. Each skipped entity is logged at
/// debug level here; the runtime warns when a problem appears and says when
/// it is gone, not at every refresh.
#[derive(Debug)]
#[non_exhaustive]
pub struct FetchReport {
    /// The configs of the entities that passed the filters.
    pub configs: JobConfigs,
    /// How many accounts were read.
    pub accounts: usize,
    /// How many entities the accounts listed, of all types.
    pub entities_listed: usize,
    /// How many listed entities passed Grafolean's filter for this bot, before
    /// the shard filter: the same on every replica that agrees on the data.
    pub entities_seen: usize,
    /// How many of those this replica's shard owns (all of them without a
    /// shard); they were then fetched, and those that failed are in `skipped`.
    pub entities_owned: usize,
    /// Entities (or whole accounts) left out because their config is wrong.
    pub skipped: Vec<EntityProblem>,
    /// Entities (or whole accounts) that could not be fetched because the
    /// backend failed, so that a caller keeps what it had for them.
    pub failed: Vec<Unfetched>,
    /// How many HTTP requests the refresh made.
    pub requests: usize,
}

/// Which protocol settings of an entity apply to this bot, if any: the Python
/// library's filter rules.
pub(crate) fn applicable_protocol<'a>(
    entity: &'a Entity,
    protocol: &str,
    user_id: u64,
) -> Option<&'a EntityProtocol> {
    if entity.entity_type != "device" {
        return None;
    }
    let settings = entity.protocols.get(protocol)?;
    let own = settings.bot.is_none_or(|bot| bot == user_id);
    let has_credential = settings.credential.is_some_and(|c| c != 0);
    (own && has_credential && !settings.sensors.is_empty()).then_some(settings)
}

/// A sensor's effective interval: the entity's override, else the sensor's
/// default, else none. An interval of 0 counts as none.
pub(crate) fn effective_interval(
    entity_override: Option<u32>,
    default: Option<u32>,
) -> Option<u32> {
    entity_override.or(default).filter(|&i| i > 0)
}

type Cached<T> = Arc<OnceCell<Result<Arc<T>, Arc<ApiError>>>>;

/// Per-refresh state: the request budget and the credential and sensor caches.
struct Refresh<'a> {
    client: &'a Client,
    protocol: &'a str,
    user_id: u64,
    permits: Semaphore,
    requests: AtomicUsize,
    credentials: Mutex<HashMap<(u64, u64), Cached<Credential>>>,
    sensors: Mutex<HashMap<(u64, u64), Cached<Sensor>>>,
}

impl Refresh<'_> {
    /// Runs one request within the in-flight budget, and counts it.
    async fn request<T>(
        &self,
        fut: impl Future<Output = Result<T, ApiError>>,
    ) -> Result<T, ApiError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .expect("semaphore is never closed");
        self.requests.fetch_add(1, Ordering::Relaxed);
        fut.await
    }

    async fn credential(&self, account: u64, id: u64) -> Result<Arc<Credential>, Arc<ApiError>> {
        self.once(
            &self.credentials,
            (account, id),
            self.client.credential(account, id),
        )
        .await
    }

    async fn sensor(&self, account: u64, id: u64) -> Result<Arc<Sensor>, Arc<ApiError>> {
        self.once(
            &self.sensors,
            (account, id),
            self.client.sensor(account, id),
        )
        .await
    }

    /// Runs `fetch` for `key` at most once per refresh; every caller gets the
    /// same result.
    async fn once<T>(
        &self,
        cache: &Mutex<HashMap<(u64, u64), Cached<T>>>,
        key: (u64, u64),
        fetch: impl Future<Output = Result<T, ApiError>>,
    ) -> Result<Arc<T>, Arc<ApiError>> {
        let cell = cache.lock().await.entry(key).or_default().clone();
        cell.get_or_init(|| async { self.request(fetch).await.map(Arc::new).map_err(Arc::new) })
            .await
            .clone()
    }

    /// Fetches one candidate entity that the list gave without its
    /// protocols, then its credential and sensors.
    async fn fetch_entity(&self, account: u64, id: u64) -> Result<Option<EntityConfig>, Problem> {
        let entity = self
            .request(self.client.entity(account, id))
            .await
            .map_err(|e| match e {
                ApiError::Malformed { .. } => Problem::Config(SkipCause::Malformed, e.to_string()),
                e => Problem::of(&e),
            })?;
        self.entity(account, entity).await
    }

    /// Fetches the credential and sensors of an entity, if it applies.
    async fn entity(&self, account: u64, entity: Entity) -> Result<Option<EntityConfig>, Problem> {
        let Some(settings) = applicable_protocol(&entity, self.protocol, self.user_id) else {
            return Ok(None);
        };
        // An interval of 0 is no interval a sensor can run at: the entity is
        // skipped with the range (a sensor's own default of 0 means none).
        for (i, reference) in settings.sensors.iter().enumerate() {
            if reference.interval == Some(0) {
                return Err(Problem::Config(
                    SkipCause::Malformed,
                    format!(
                        "malformed entity (id {}, name {:?}): field protocols.{}.sensors[{i}].interval: \
                         invalid value: 0, expected {}",
                        entity.id,
                        entity.name,
                        self.protocol,
                        crate::interval::EXPECTING
                    ),
                ));
            }
        }
        let credential_id = settings.credential.unwrap_or_default();
        let credential = self
            .credential(account, credential_id)
            .await
            .map_err(|e| Problem::of(&e))?;
        let sensors = futures::future::join_all(
            settings
                .sensors
                .iter()
                .map(|s| self.sensor(account, s.sensor)),
        )
        .await;
        let sensors = settings
            .sensors
            .iter()
            .zip(sensors)
            .map(|(reference, sensor)| {
                let sensor = sensor.map_err(|e| Problem::of(&e))?;
                Ok(SensorConfig {
                    sensor_id: reference.sensor,
                    interval: effective_interval(reference.interval, sensor.default_interval),
                    details: sensor.details.clone(),
                    origin: None,
                })
            })
            .collect::<Result<Vec<_>, Problem>>()?;
        Ok(Some(EntityConfig {
            account_id: account,
            entity_id: entity.id,
            name: entity.name,
            entity_type: entity.entity_type,
            details: entity.details,
            credential_id: Some(credential_id),
            credential_details: credential.details.clone(),
            sensors,
            origin: None,
        }))
    }
}

/// How a request failed, in one word: the `cause` of a backend failure in
/// [`FetchReport::failed`], and of a whole refresh that failed.
pub(crate) fn failure_cause(e: &ApiError) -> &'static str {
    match e {
        ApiError::Server {
            status: 408 | 429, ..
        } => "throttled",
        ApiError::Server { .. } => "server_error",
        ApiError::Timeout { .. } => "timeout",
        ApiError::Network { .. } => "network",
        ApiError::TooLarge { .. } => "too_large",
        ApiError::Unauthorized { .. } => "unauthorized",
        ApiError::Forbidden { .. } => "forbidden",
        ApiError::NotFound { .. } => "not_found",
        ApiError::Rejected { .. } => "rejected",
        ApiError::Malformed { .. } => "malformed",
        ApiError::InvalidUrl(_) | ApiError::NotReady { .. } => "unreachable",
    }
}

/// Why an entity is left out of a refresh.
enum Problem {
    /// Its config is wrong: the cause, and the reason.
    Config(SkipCause, String),
    /// The backend failed on one of its requests ([`ApiError::is_transient`]):
    /// its config is unknown this time, not wrong. The failure's kind
    /// ([`failure_cause`]) and what failed.
    Backend(&'static str, String),
}

impl Problem {
    /// A failed request of an entity's: a config problem (`unreadable`: a 404,
    /// a 4xx, a 2xx that does not parse), or the backend's failure.
    fn of(e: &ApiError) -> Self {
        if e.is_transient() {
            Self::Backend(failure_cause(e), e.to_string())
        } else {
            Self::Config(SkipCause::Unreadable, e.to_string())
        }
    }
}

/// Fetches the configs of every entity this bot should monitor for `protocol`.
///
/// See the [module documentation](self) for the rules. Makes
/// `2 + A + C + S` requests: the profile, the account list, one entity list
/// per account, and one per unique credential and sensor of the entities that
/// apply (plus one per device that the list gives without `protocols`).
///
/// # Errors
///
/// The error of the bot's profile or of its account list (the request it
/// names failed): nothing can be fetched without them. Any other request's
/// failure is reported in the [`FetchReport`], for what it touched.
pub async fn fetch_job_configs(
    client: &Client,
    protocol: &str,
    options: &FetchOptions,
) -> Result<FetchReport, ApiError> {
    let profile = client.profile().await?;
    let accounts = client.accounts().await?;
    let refresh = Refresh {
        client,
        protocol,
        user_id: profile.user_id,
        permits: Semaphore::new(options.max_in_flight.max(1)),
        requests: AtomicUsize::new(2),
        credentials: Mutex::default(),
        sensors: Mutex::default(),
    };
    let mut skipped = Vec::new();
    let mut failed = Vec::new();

    // The entity lists of all accounts, concurrently.
    let lists = futures::future::join_all(accounts.iter().map(|a| {
        let refresh = &refresh;
        async move {
            let raw = refresh.request(client.entity_list_raw(a.id)).await;
            (a.id, raw)
        }
    }))
    .await;

    let mut candidates = Vec::new();
    let mut entities_listed = 0;
    for (account, list) in lists {
        let list = match list {
            Ok(list) => list,
            Err(e) if e.is_transient() => {
                debug!(account, error = %e, "the backend failed to list an account's entities");
                failed.push(Unfetched {
                    account,
                    entity: None,
                    cause: failure_cause(&e),
                    reason: e.to_string(),
                });
                continue;
            }
            Err(e) => {
                debug!(account, error = %e, "skipping an account whose entities cannot be listed");
                skipped.push(EntityProblem {
                    account,
                    entity: None,
                    raw_id: None,
                    name: None,
                    cause: SkipCause::EntityList,
                    reason: e.to_string(),
                });
                continue;
            }
        };
        let items = list.items();
        entities_listed += items.len();
        for (index, raw) in items.into_iter().enumerate() {
            // One item's JSON at a time (see `RawList`); the list was checked
            // to be JSON when it was read.
            let item: serde_json::Value = serde_json::from_str(raw.get()).unwrap_or_default();
            let id = item.get("id").and_then(serde_json::Value::as_u64);
            let listed_protocols = item.get("protocols").is_some();
            // For a message that names the entity as the backend sent it (one
            // without an id by its place in the list, so that each is its own).
            let raw_id = item
                .get("id")
                .map_or_else(|| format!("none (item {index})"), ToString::to_string);
            let name = item
                .get("name")
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned);
            match serde_path_to_error::deserialize::<_, Entity>(&item) {
                Ok(entity) if !listed_protocols => {
                    // An older backend's list: the entity itself says.
                    if entity.entity_type == "device" {
                        candidates.push((account, entity.id, None));
                    }
                }
                Ok(entity) => {
                    if applicable_protocol(&entity, protocol, profile.user_id).is_some() {
                        candidates.push((account, entity.id, Some(entity)));
                    }
                }
                Err(e) => {
                    // An interval says what it accepts (the same words as a
                    // standalone file's).
                    let problem = crate::interval::problem_at(&item, e.path())
                        .unwrap_or_else(|| e.inner().to_string());
                    let reason = format!(
                        "malformed entity (id {raw_id}, name {}): field {}: {problem}",
                        name.as_deref()
                            .map_or_else(|| "unknown".into(), |n| format!("{n:?}")),
                        e.path(),
                    );
                    debug!(account, entity = %raw_id, %reason, "skipping a malformed entity");
                    skipped.push(EntityProblem {
                        account,
                        entity: id,
                        raw_id: Some(raw_id),
                        name,
                        cause: SkipCause::Malformed,
                        reason,
                    });
                }
            }
        }
    }

    // The shard filter: after Grafolean's own, before any per-entity request.
    let entities_seen = candidates.len();
    if let Some(shard) = &options.shard {
        candidates.retain(|(_, id, _)| shard.owns(*id));
    }
    let entities_owned = candidates.len();

    // The candidates' credentials and sensors, in list order.
    let results: Vec<_> = stream::iter(candidates)
        .map(|(account, id, listed)| {
            let refresh = &refresh;
            async move {
                let config = match listed {
                    Some(entity) => refresh.entity(account, entity).await,
                    None => refresh.fetch_entity(account, id).await,
                };
                (account, id, config)
            }
        })
        .buffered(options.max_in_flight.max(1) * 2)
        .collect()
        .await;
    let mut entities = Vec::new();
    for (account, id, result) in results {
        match result {
            Ok(Some(config)) => entities.push(config),
            Ok(None) => {}
            Err(Problem::Config(cause, reason)) => {
                debug!(account, entity = id, %reason, %cause, "skipping an entity");
                skipped.push(EntityProblem {
                    account,
                    entity: Some(id),
                    raw_id: Some(id.to_string()),
                    name: None,
                    cause,
                    reason,
                });
            }
            Err(Problem::Backend(cause, reason)) => {
                debug!(account, entity = id, %reason, "the backend failed on an entity's request");
                failed.push(Unfetched {
                    account,
                    entity: Some(id),
                    cause,
                    reason,
                });
            }
        }
    }

    Ok(FetchReport {
        configs: JobConfigs { entities },
        accounts: accounts.len(),
        entities_listed,
        entities_seen,
        entities_owned,
        skipped,
        failed,
        requests: refresh.requests.load(Ordering::Relaxed),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entity(entity_type: &str, protocols: serde_json::Value) -> Entity {
        serde_json::from_value(json!({
            "id": 1, "name": "e", "entity_type": entity_type, "parent": null,
            "details": {"ipv4": "127.0.0.1"}, "protocols": protocols
        }))
        .unwrap()
    }

    fn ping(
        credential: serde_json::Value,
        sensors: serde_json::Value,
        bot: serde_json::Value,
    ) -> serde_json::Value {
        json!({"ping": {"credential": credential, "sensors": sensors, "bot": bot}})
    }

    #[test]
    fn filters_match_the_python_library() {
        let sensors = json!([{"sensor": 5, "interval": null}]);
        let me = 42;
        // Passes: own bot, or no bot.
        assert!(
            applicable_protocol(
                &entity("device", ping(json!(7), sensors.clone(), json!(me))),
                "ping",
                me
            )
            .is_some()
        );
        assert!(
            applicable_protocol(
                &entity("device", ping(json!(7), sensors.clone(), json!(null))),
                "ping",
                me
            )
            .is_some()
        );
        // Fails: another bot, not a device, no protocol, no credential, no sensors.
        assert!(
            applicable_protocol(
                &entity("device", ping(json!(7), sensors.clone(), json!(43))),
                "ping",
                me
            )
            .is_none()
        );
        assert!(
            applicable_protocol(
                &entity("interface", ping(json!(7), sensors.clone(), json!(me))),
                "ping",
                me
            )
            .is_none()
        );
        assert!(applicable_protocol(&entity("device", json!({})), "ping", me).is_none());
        assert!(
            applicable_protocol(
                &entity("device", ping(json!(null), sensors.clone(), json!(me))),
                "ping",
                me
            )
            .is_none()
        );
        assert!(
            applicable_protocol(
                &entity("device", ping(json!(7), json!([]), json!(me))),
                "ping",
                me
            )
            .is_none()
        );
        assert!(
            applicable_protocol(
                &entity("device", ping(json!(7), sensors, json!(me))),
                "snmp",
                me
            )
            .is_none()
        );
    }

    #[test]
    fn interval_falls_back_to_the_sensor_default() {
        assert_eq!(effective_interval(Some(30), Some(10)), Some(30));
        assert_eq!(effective_interval(None, Some(10)), Some(10));
        assert_eq!(effective_interval(None, None), None);
        assert_eq!(effective_interval(Some(0), None), None);
    }
}
