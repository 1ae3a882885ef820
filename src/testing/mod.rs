//! A fake Grafolean backend for testing bots (cargo feature `testing`).
//!
//! [`FakeGrafolean`] is a real HTTP server on `127.0.0.1:0`, faithful to the
//! responses recorded from the real backend (`tests/fixtures/grafolean-api/`):
//! bot auth with `?b=<token>`, the permission rule, trailing slashes, the
//! exact error bodies, and the checks on `POST`/`PUT …/values`. It is
//! stateful: accounts, bots, grants, entities, credentials and sensors can
//! change while a bot runs. It records every request and every stored value,
//! and it can fail on purpose ([`Fault`], [`FakeGrafolean::refuse_connections`]).
//!
//! [`process`] runs a bot's binary in its integration tests: its log read on
//! a thread, `/metrics` scraped, a SIGTERM stop, and the small helpers such
//! tests share (free ports, a temporary directory, a file toucher).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use grafolean_collector::testing::{ACCOUNT_ID, BOT_TOKEN, FakeGrafolean, Fault};
//!
//! let fake = FakeGrafolean::with_fixture_data().await;
//! let client = reqwest::Client::new();
//! let values = format!("{}/accounts/{ACCOUNT_ID}/values/?b={BOT_TOKEN}", fake.url());
//! let batch = serde_json::json!([{"p": "entity.1.ping.success", "v": 1.0}]);
//!
//! // The first attempt meets an injected 500, the retry is stored.
//! fake.inject(Fault::status(500).method("POST").times(1));
//! let first = client.post(&values).json(&batch).send().await.unwrap();
//! assert_eq!(first.status(), 500);
//! let second = client.post(&values).json(&batch).send().await.unwrap();
//! assert_eq!(second.status(), 204);
//!
//! assert_eq!(fake.request_count(), 2);
//! let stored = fake.values(ACCOUNT_ID);
//! assert_eq!((stored.len(), stored[0].v), (1, 1.0));
//! # }
//! ```
//!
//! # Endpoints
//!
//! All under `/api`, each with or without one trailing slash:
//!
//! | endpoint | notes |
//! |---|---|
//! | `GET status/info` | no auth; see [`FakeGrafolean::set_db_migration_needed`] |
//! | `GET profile`, `GET profile/permissions`, `GET accounts` | open to every bot |
//! | `GET accounts/{a}` | needs a grant, which bots normally lack (403) |
//! | `GET accounts/{a}/entities[/{e}]`, `…/credentials[/{c}]`, `…/sensors[/{s}]` | |
//! | `POST`, `PUT accounts/{a}/values` | every row of the fixtures' POST table |
//! | `GET accounts/{a}/values/{path}?t0=&t1=` | for a bot granted GET on values |
//!
//! Anything else is `404 {"detail":"Not Found"}`, another method on a known
//! endpoint is `405`. Admin (JWT) logins are not supported: any
//! `Authorization` header gets 401, as a bot token in it does on the real backend.
//!
//! # Time
//!
//! Delays, fault periods and the `arrived` instants use tokio's clock, so they
//! follow a paused test clock. The `t` stamped on a POSTed value and
//! [`RecordedRequest::at`] use the system clock, as the backend does.
//!
//! [`RecordedRequest`]s are kept raw, query strings (tokens) included; the
//! `Debug` output of [`FakeGrafolean`] and [`Bot`] shows no token.

mod batch;
mod conn;
mod entity_writes;
mod fault;
mod fixture;
mod http;
mod latency;
mod model;
pub mod process;
pub mod prometheus;
mod running;
mod server;
mod state;
mod values;

#[cfg(test)]
mod tests;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

pub use batch::DeviceBatch;
pub use fault::{Fault, FaultId, FaultKind};
pub use fixture::{
    ACCOUNT_ID, BOT_ID, BOT_TOKEN, CREDENTIAL_ID, ENTITY_ID, OTHER_BOT_ID, OTHER_BOT_TOKEN,
    SENSOR_ID, SNMP_BOT_ID, SNMP_BOT_TOKEN,
};
pub use model::{
    Account as FakeAccount, Bot as FakeBot, Credential as FakeCredential, Entity as FakeEntity,
    Permission, ProtocolConfig, RecordedRequest, Sensor as FakeSensor, SensorRef as FakeSensorRef,
    StoredValue, ValueMethod, random_id,
};
pub use running::{RunningBot, STOP_WITHIN};

/// The SDK's internal rooms that its own benchmarks drive directly: the admin
/// state and the value gauges. Not for bots, and not a stable API; a bot gets
/// all of this from [`Bot`](crate::runtime::Bot).
pub mod internals {
    pub use crate::admin::{AdminState, AdminStateBuilder};
    pub use crate::exposition::ValueStore;
}

/// The log filter of the bots the tests run ([`process::BotProcess`]) and
/// of [`LogCapture::global`]: `info`, and the refresh loop's `debug` lines
/// (a refresh that changed no job logs its summary at `debug`, and tests
/// count refreshes by it).
pub const TEST_LOG_FILTER: &str = "info,grafolean_collector::runtime::refresh=debug";

/// Log lines kept in memory, for tests of what a bot logs: give
/// `move || capture.clone()` to a tracing subscriber as its writer.
///
/// ```
/// use std::io::Write;
/// use grafolean_collector::testing::LogCapture;
/// let capture = LogCapture::default();
/// writeln!(capture.clone(), "WARN skipping an entity entity=7").unwrap();
/// assert_eq!(capture.count(&["WARN", "entity=7"]), 1);
/// ```
#[derive(Clone, Debug, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl LogCapture {
    /// The log of this test binary at [`TEST_LOG_FILTER`]: one global
    /// subscriber, installed at the first call, whose lines every test of the
    /// binary shares (so each looks for lines that name its own entities or
    /// tasks). Panics if another global subscriber was installed first.
    ///
    /// ```no_run
    /// let logs = grafolean_collector::testing::LogCapture::global();
    /// tracing::warn!(entity = 7, "skipping an entity");
    /// assert_eq!(logs.count(&["WARN", "entity=7"]), 1);
    /// ```
    pub fn global() -> &'static LogCapture {
        static LOGS: std::sync::OnceLock<LogCapture> = std::sync::OnceLock::new();
        LOGS.get_or_init(|| {
            let logs = LogCapture::default();
            let writer = logs.clone();
            tracing_subscriber::fmt()
                .with_writer(move || writer.clone())
                .with_ansi(false)
                .with_env_filter(crate::testing::TEST_LOG_FILTER)
                .init();
            logs
        })
    }

    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }

    /// How many lines contain every one of `needles`.
    pub fn count(&self, needles: &[&str]) -> usize {
        self.text()
            .lines()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .count()
    }
}

impl io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The value of one series in `metrics`' `/metrics` text, such as
/// `grafolean_bot_values_sent_total` or
/// `grafolean_bot_values_dropped_total{reason="shutdown"}`; 0 when the series
/// is not there. Tests read the SDK's metrics this way, as Prometheus would.
///
/// ```
/// use grafolean_collector::Metrics;
/// use grafolean_collector::testing::metric_value;
/// let metrics = Metrics::new("example");
/// assert_eq!(metric_value(&metrics, "grafolean_bot_values_sent_total"), 0.0);
/// assert_eq!(metric_value(&metrics, "grafolean_bot_jobs_scheduled"), 0.0);
/// ```
pub fn metric_value(metrics: &crate::metrics::Metrics, series: &str) -> f64 {
    metrics
        .encode()
        .lines()
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok()).flatten()
        })
        .unwrap_or(0.0)
}

use model::{Account, Bot, Credential, Entity, Sensor};
use state::State;

/// What the server task and the test share.
pub(crate) struct Shared {
    state: Mutex<State>,
    faults: Mutex<Vec<(FaultId, Fault)>>,
    next_fault: AtomicU64,
    next_seq: AtomicU64,
    /// Bumped on every recorded request, status and stored value.
    changes: watch::Sender<u64>,
}

impl Shared {
    fn record(&self, mut r: RecordedRequest) -> u64 {
        r.seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let seq = r.seq;
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .requests
            .push(r);
        self.changes.send_modify(|n| *n += 1);
        seq
    }

    /// Wakes the `wait_for_*` methods.
    fn notify(&self) {
        self.changes.send_modify(|n| *n += 1);
    }

    fn set_status(&self, seq: u64, status: u16) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(r) = state.requests.iter_mut().rev().find(|r| r.seq == seq) {
            r.status = Some(status);
        }
        drop(state);
        self.changes.send_modify(|n| *n += 1);
    }
}

/// The fake backend. It serves until dropped.
///
/// Its `Debug` output shows the address and counts, never a token.
pub struct FakeGrafolean {
    shared: Arc<Shared>,
    server: Arc<conn::Server>,
}

impl fmt::Debug for FakeGrafolean {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self
            .shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("FakeGrafolean")
            .field("addr", &self.server.addr)
            .field("bots", &state.bots.len())
            .field("entities", &state.entities.len())
            .field("requests", &state.requests.len())
            .field("values", &state.values.len())
            .finish_non_exhaustive()
    }
}

impl FakeGrafolean {
    /// Starts an empty fake (no accounts, no bots) on `127.0.0.1:0`.
    ///
    /// # Panics
    ///
    /// When no loopback port can be bound.
    pub async fn start() -> Self {
        Self::start_with(State::empty())
    }

    /// Starts a fake holding exactly the fixtures' data set: account
    /// [`ACCOUNT_ID`], the main ping bot [`BOT_ID`] ([`BOT_TOKEN`]), the
    /// POST-only bot [`OTHER_BOT_ID`] ([`OTHER_BOT_TOKEN`]), the bot without
    /// grants [`SNMP_BOT_ID`] ([`SNMP_BOT_TOKEN`]), the six entities of the
    /// README's table, and the account's credentials and sensors.
    ///
    /// # Panics
    ///
    /// When no loopback port can be bound.
    pub async fn with_fixture_data() -> Self {
        let mut s = State::empty();
        fixture::load_fixture_data(&mut s);
        Self::start_with(s)
    }

    fn start_with(state: State) -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            faults: Mutex::new(Vec::new()),
            next_fault: AtomicU64::new(0),
            next_seq: AtomicU64::new(0),
            changes: watch::Sender::new(0),
        });
        let app = axum::Router::new()
            .fallback(server::handle)
            .with_state(shared.clone());
        let server = conn::Server::start(app).expect("bind 127.0.0.1:0");
        Self { shared, server }
    }

    /// The base URL including `/api`, such as `http://127.0.0.1:40000/api`.
    pub fn url(&self) -> String {
        format!("http://{}/api", self.server.addr)
    }

    /// The address the fake listens on.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    fn with_state<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self
            .shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner))
    }

    // ----- records -----

    /// Adds or replaces an account; returns its id.
    pub fn put_account(&self, account: Account) -> u64 {
        self.with_state(|s| {
            let id = account.id;
            s.accounts.insert(id, account);
            id
        })
    }

    /// Removes an account with its entities, credentials and sensors.
    pub fn remove_account(&self, id: u64) -> bool {
        self.with_state(|s| s.remove_account(id))
    }

    /// Adds or replaces a bot; returns its id.
    pub fn put_bot(&self, bot: Bot) -> u64 {
        self.with_state(|s| {
            let id = bot.id;
            s.bots.insert(id, bot);
            id
        })
    }

    /// Adds a bot tied to `account_id` with the grants the Grafolean frontend gives
    /// a new account bot: POST+PUT on `accounts/{a}/values`, and GET on
    /// `accounts/{a}/entities`, `…/credentials` and `…/sensors`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use grafolean_collector::testing::{FakeAccount, FakeGrafolean};
    /// let fake = FakeGrafolean::start().await;
    /// let account = fake.put_account(FakeAccount::new("test"));
    /// let bot = fake.add_account_bot(account, "ping");
    /// assert_eq!(fake.permissions(bot.id).len(), 4);
    /// # }
    /// ```
    pub fn add_account_bot(&self, account_id: u64, protocol: &str) -> Bot {
        let bot = Bot::new(format!("{protocol} bot"), Some(protocol)).tied_to(account_id);
        self.put_bot(bot.clone());
        for what in ["credentials", "entities", "sensors"] {
            self.grant(
                bot.id,
                Some(&format!("accounts/{account_id}/{what}")),
                Some(&["GET"]),
            );
        }
        self.grant(
            bot.id,
            Some(&format!("accounts/{account_id}/values")),
            Some(&["POST", "PUT"]),
        );
        bot
    }

    /// Removes a bot and its grants.
    pub fn remove_bot(&self, id: u64) -> bool {
        self.with_state(|s| {
            s.permissions.retain(|_, p| p.user_id != id);
            s.bots.remove(&id).is_some()
        })
    }

    /// Grants `methods` (`None` = all) on `resource_prefix` (`None` = everything)
    /// to a user; returns the permission id.
    pub fn grant(
        &self,
        user_id: u64,
        resource_prefix: Option<&str>,
        methods: Option<&[&str]>,
    ) -> u64 {
        let p = Permission {
            id: random_id(),
            user_id,
            resource_prefix: resource_prefix.map(str::to_owned),
            methods: methods.map(|ms| ms.iter().map(|m| m.to_ascii_uppercase()).collect()),
        };
        self.with_state(|s| {
            let id = p.id;
            s.permissions.insert(id, p);
            id
        })
    }

    /// Revokes one permission.
    pub fn revoke(&self, permission_id: u64) -> bool {
        self.with_state(|s| s.permissions.remove(&permission_id).is_some())
    }

    /// Revokes every permission of a user on exactly this prefix; returns how many.
    pub fn revoke_prefix(&self, user_id: u64, resource_prefix: Option<&str>) -> usize {
        self.with_state(|s| {
            let before = s.permissions.len();
            s.permissions.retain(|_, p| {
                !(p.user_id == user_id && p.resource_prefix.as_deref() == resource_prefix)
            });
            before - s.permissions.len()
        })
    }

    /// A user's permissions, sorted by prefix (as `GET /profile/permissions` lists them).
    pub fn permissions(&self, user_id: u64) -> Vec<Permission> {
        self.with_state(|s| s.permissions_of(user_id).into_iter().cloned().collect())
    }

    /// Adds or replaces an entity; returns its id.
    pub fn put_entity(&self, entity: Entity) -> u64 {
        self.with_state(|s| {
            let id = entity.id;
            s.entities.insert(id, entity);
            id
        })
    }

    /// Adds or replaces many entities under one lock.
    pub fn put_entities(&self, entities: impl IntoIterator<Item = Entity>) {
        self.with_state(|s| s.entities.extend(entities.into_iter().map(|e| (e.id, e))));
    }

    /// Removes an entity.
    pub fn remove_entity(&self, id: u64) -> bool {
        self.with_state(|s| s.entities.remove(&id).is_some())
    }

    /// An entity by id.
    pub fn entity(&self, id: u64) -> Option<Entity> {
        self.with_state(|s| s.entities.get(&id).cloned())
    }

    /// The entities of an account, by id (including those that bots created
    /// through the API).
    pub fn entities_of(&self, account_id: u64) -> Vec<Entity> {
        self.with_state(|s| {
            s.entities
                .values()
                .filter(|e| e.account_id == account_id)
                .cloned()
                .collect()
        })
    }

    /// Changes an entity in place (for example its protocols); returns whether it exists.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use grafolean_collector::testing::{ENTITY_ID, FakeGrafolean};
    /// let fake = FakeGrafolean::with_fixture_data().await;
    /// let changed = fake.update_entity(ENTITY_ID, |e| {
    ///     e.protocols.get_mut("ping").unwrap().sensors[0].interval = Some(30);
    /// });
    /// assert!(changed);
    /// # }
    /// ```
    pub fn update_entity(&self, id: u64, f: impl FnOnce(&mut Entity)) -> bool {
        self.with_state(|s| s.entities.get_mut(&id).map(f).is_some())
    }

    /// Adds or replaces a credential; returns its id.
    pub fn put_credential(&self, credential: Credential) -> u64 {
        self.with_state(|s| {
            let id = credential.id;
            s.credentials.insert(id, credential);
            id
        })
    }

    /// Removes a credential.
    pub fn remove_credential(&self, id: u64) -> bool {
        self.with_state(|s| s.credentials.remove(&id).is_some())
    }

    /// Adds or replaces a sensor; returns its id.
    pub fn put_sensor(&self, sensor: Sensor) -> u64 {
        self.with_state(|s| {
            let id = sensor.id;
            s.sensors.insert(id, sensor);
            id
        })
    }

    /// Removes a sensor.
    pub fn remove_sensor(&self, id: u64) -> bool {
        self.with_state(|s| s.sensors.remove(&id).is_some())
    }

    /// Creates many devices at once; returns their ids. See [`DeviceBatch`].
    pub fn add_devices(&self, batch: &DeviceBatch) -> Vec<u64> {
        let (credentials, sensors, entities) = batch.build();
        let ids = entities.iter().map(|e| e.id).collect();
        self.with_state(|s| {
            s.credentials
                .extend(credentials.into_iter().map(|c| (c.id, c)));
            s.sensors.extend(sensors.into_iter().map(|x| (x.id, x)));
            s.entities.extend(entities.into_iter().map(|e| (e.id, e)));
        });
        ids
    }

    /// Sets `db_migration_needed` in `GET /status/info` (initially `false`).
    pub fn set_db_migration_needed(&self, needed: bool) {
        self.with_state(|s| s.db_migration_needed = needed);
    }

    /// Sets `user_exists` in `GET /status/info` (initially `true`).
    pub fn set_user_exists(&self, exists: bool) {
        self.with_state(|s| s.user_exists = exists);
    }

    /// Makes the entity list leave out each entity's `protocols` (as older
    /// backends did), so that a client must GET each entity (initially the
    /// list carries them, as the backend at the fixtures' commit does).
    pub fn set_list_protocols(&self, with_protocols: bool) {
        self.with_state(|s| s.list_without_protocols = !with_protocols);
    }

    // ----- recordings -----

    /// Every request received since the start (or the last [`clear_requests`](Self::clear_requests)).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.with_state(|s| s.requests.clone())
    }

    /// How many requests were received.
    pub fn request_count(&self) -> usize {
        self.with_state(|s| s.requests.len())
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.with_state(|s| s.requests.clear());
    }

    /// The values stored for an account, in arrival order.
    pub fn values(&self, account_id: u64) -> Vec<StoredValue> {
        self.with_state(|s| {
            s.values
                .iter()
                .filter(|v| v.account_id == account_id)
                .cloned()
                .collect()
        })
    }

    /// Every stored value, in arrival order.
    pub fn all_values(&self) -> Vec<StoredValue> {
        self.with_state(|s| s.values.clone())
    }

    /// How many writes replaced a stored value: a PUT (or POST) of a path
    /// at a `t` that was already stored overwrites it, as the backend's
    /// `INSERT … ON CONFLICT (path, ts) DO UPDATE` does. An idempotent retry
    /// shows here; a duplicate (the same value at another `t`) shows in
    /// [`values`](Self::values) instead.
    pub fn overwrites(&self) -> u64 {
        self.with_state(|s| s.overwrites)
    }

    /// Forgets the stored values (and the overwrite count).
    pub fn clear_values(&self) {
        self.with_state(State::clear_values);
    }

    /// Waits until the account holds at least `n` values, and returns them.
    /// Wrap it in `tokio::time::timeout` to bound it.
    pub async fn wait_for_values(&self, account_id: u64, n: usize) -> Vec<StoredValue> {
        self.wait_until(|| Some(self.values(account_id)).filter(|v| v.len() >= n))
            .await
    }

    /// Waits until at least `n` requests were answered (or dropped), and returns them all.
    pub async fn wait_for_requests(&self, n: usize) -> Vec<RecordedRequest> {
        self.wait_until(|| {
            let done = self.with_state(|s| s.requests.len() >= n);
            done.then(|| self.requests())
        })
        .await
    }

    async fn wait_until<T>(&self, mut ready: impl FnMut() -> Option<T>) -> T {
        let mut changes = self.shared.changes.subscribe();
        loop {
            changes.mark_unchanged();
            if let Some(t) = ready() {
                return t;
            }
            // The sender lives in `self`, so this cannot fail while we wait.
            let _ = changes.changed().await;
        }
    }

    // ----- faults -----

    /// Injects a fault; it applies to requests arriving from now on.
    pub fn inject(&self, fault: Fault) -> FaultId {
        let id = FaultId(self.shared.next_fault.fetch_add(1, Ordering::Relaxed));
        self.shared
            .faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((id, fault.armed()));
        id
    }

    /// Removes an injected fault; `false` when it was used up or already removed.
    pub fn remove_fault(&self, id: FaultId) -> bool {
        let mut faults = self
            .shared
            .faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let before = faults.len();
        faults.retain(|(i, _)| *i != id);
        faults.len() != before
    }

    /// Removes every injected fault.
    pub fn clear_faults(&self) {
        self.shared
            .faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Closes the listening socket and cuts every open connection: new
    /// connections are refused until [`accept_connections`](Self::accept_connections).
    pub async fn refuse_connections(&self) {
        self.server.refuse().await;
    }

    /// Refuses connections now and accepts them again after `period` of tokio
    /// time (a backend that is down for a while).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    /// use grafolean_collector::testing::FakeGrafolean;
    /// let fake = FakeGrafolean::start().await;
    /// let status = format!("{}/status/info", fake.url());
    /// fake.refuse_connections_for(Duration::from_millis(200)).await;
    /// assert!(reqwest::get(&status).await.unwrap_err().is_connect());
    /// tokio::time::sleep(Duration::from_millis(300)).await;
    /// assert_eq!(reqwest::get(&status).await.unwrap().status(), 200);
    /// # }
    /// ```
    pub async fn refuse_connections_for(&self, period: Duration) {
        self.server.refuse().await;
        let server = self.server.clone();
        tokio::spawn(async move {
            tokio::time::sleep(period).await;
            if let Err(e) = server.listen() {
                tracing::warn!(error = %e, "the fake Grafolean could not listen again");
            }
        });
    }

    /// Listens again on the same port after [`refuse_connections`](Self::refuse_connections).
    /// Does nothing when the fake is listening already.
    ///
    /// # Errors
    ///
    /// When the port was taken by another socket meanwhile.
    pub async fn accept_connections(&self) -> io::Result<()> {
        self.server.listen()
    }
}

impl Drop for FakeGrafolean {
    fn drop(&mut self) {
        self.server.close();
    }
}
