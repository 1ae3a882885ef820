//! Talking to agents: one shared UDP socket for every device, one cached
//! [`async_snmp::Client`] per entity, scalar GETs batched into one PDU, and
//! walks with GETBULK (v2c, v3) or GETNEXT (v1).
//!
//! The crate's pitfalls with net-snmp are handled here: the socket
//! advertises a 65,507-byte message size (net-snmp 5.9 answers a v3 GETBULK
//! that does not fit 1,472 bytes with `genErr`), and a walk that fails with
//! `genErr` or `tooBig` is retried with half the repetitions.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_snmp::{
    Auth, AuthProtocol, Client, DesSaltState, ErrorStatus, Oid, PrivProtocol, ResponseShapeAnomaly,
    Retry, UdpHandle, UdpTransport, UsmConfig, Value as SnmpValue, VarBind, WalkAbortReason,
    WalkOptions, WalkStream,
};
use tokio::sync::{OnceCell, Semaphore};

use crate::settings::{AuthProto, PrivProto, SnmpAuth, SnmpSettings, V3Security};

/// The UDP message size the shared socket advertises and accepts.
pub const MAX_MESSAGE_SIZE: usize = 65_507;

/// The most rows one walk may return; a longer walk fails (and only its
/// sensors with it), so that a runaway table cannot exhaust memory.
pub const MAX_WALK_ROWS: usize = 100_000;

/// How long after GETNEXT timed out in place of a GETBULK that timed out
/// (the agent was down, not its GETBULK) it is not tried so again.
pub const PROBE_AGAIN_AFTER: Duration = Duration::from_secs(300);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The receive buffer asked for the shared socket (`SO_RCVBUF`), so that a
/// burst of answers from many devices is not dropped. Linux caps it at
/// `net.core.rmem_max` (208 KiB by default; raise that sysctl for large
/// fleets).
pub const RECV_BUFFER: usize = 4 << 20;

/// An error from one request to an agent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The agent did not answer (also a wrong community or v3 key, which
    /// agents answer with silence).
    #[error(
        "no answer from {addr} after {retries} retries (wrong community or v3 key, or the agent is down)"
    )]
    Timeout {
        /// The agent.
        addr: SocketAddr,
        /// The retries made.
        retries: u32,
    },
    /// The firing's time budget ran out first.
    #[error("the device's time budget ran out")]
    Budget,
    /// A walk went on past the most rows one walk may return.
    #[error(
        "the walk of {oid} gave more than {limit} rows, the most one walk may return; its sensors are skipped"
    )]
    TooManyRows {
        /// The walked column.
        oid: Oid,
        /// The limit ([`MAX_WALK_ROWS`] unless [`Agents::with_max_walk_rows`]).
        limit: usize,
    },
    /// Any other failure.
    #[error("{0}")]
    Other(String),
}

impl AgentError {
    /// Whether the device failed to answer in time.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout { .. } | Self::Budget)
    }

    fn from_snmp(addr: SocketAddr, e: &async_snmp::Error) -> Self {
        match root(e) {
            async_snmp::Error::Timeout { retries, .. } => Self::Timeout {
                addr,
                retries: *retries,
            },
            other => Self::Other(other.to_string()),
        }
    }
}

/// Unwraps the crate's wrapper variants.
fn root(e: &async_snmp::Error) -> &async_snmp::Error {
    match e {
        async_snmp::Error::SharedOperation { source } => root(source),
        async_snmp::Error::Exchange { source, .. } => root(source),
        other => other,
    }
}

/// Whether a walk stopped at an OID that did not increase: a GETBULK
/// walk's abort, or a GETNEXT answer that is not a successor.
fn not_increasing(e: &async_snmp::Error) -> bool {
    match root(e) {
        async_snmp::Error::WalkAborted {
            reason: WalkAbortReason::NonIncreasing,
            ..
        } => true,
        async_snmp::Error::ResponseShape { response, .. } => response
            .anomalies
            .iter()
            .any(|a| matches!(a, ResponseShapeAnomaly::GetNextNotSuccessor { .. })),
        _ => false,
    }
}

fn snmp_status(e: &async_snmp::Error) -> Option<ErrorStatus> {
    match root(e) {
        async_snmp::Error::Snmp { status, .. } => Some(*status),
        _ => None,
    }
}

/// What a client was built for: a change rebuilds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientKey {
    addr: SocketAddr,
    settings: SnmpSettings,
}

/// One entity's agent: its address, version and cached client.
#[derive(Clone)]
pub struct Agent {
    key: ClientKey,
    client: Client<UdpHandle>,
    shared: Arc<Shared>,
}

/// What an agent's clones share: its requests in flight, and what was
/// learned of its GETBULK.
#[derive(Debug)]
struct Shared {
    in_flight: Semaphore,
    /// GETBULK got no usable answer and GETNEXT did: walk with GETNEXT.
    bulk_broken: AtomicBool,
    /// Whether the agent ever answered (then a GETBULK that times out is
    /// its GETBULK's fault, not the agent's).
    answered: AtomicBool,
    /// When GETNEXT was last tried in place of a GETBULK that timed out
    /// and timed out too, or when the client was made: an agent that never
    /// answered is probed so at most every [`PROBE_AGAIN_AFTER`].
    probed_at: Mutex<Instant>,
    /// Whether a walk that met a non-increasing OID was warned of.
    warned_order: AtomicBool,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// The shared socket and what every client needs. Cheap to share; binds on
/// first use (constructors do no I/O).
pub struct Agents {
    transport: OnceCell<UdpTransport>,
    des: OnceCell<DesSaltState>,
    max_walk_rows: usize,
}

impl Default for Agents {
    fn default() -> Self {
        Self {
            transport: OnceCell::new(),
            des: OnceCell::new(),
            max_walk_rows: MAX_WALK_ROWS,
        }
    }
}

impl std::fmt::Debug for Agents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agents")
            .field("bound", &self.transport.initialized())
            .finish_non_exhaustive()
    }
}

impl Agents {
    /// A pool that binds its socket on first use.
    pub fn new() -> Self {
        Self::default()
    }

    /// The most rows one walk may return (default [`MAX_WALK_ROWS`]); a
    /// longer walk fails with [`AgentError::TooManyRows`]. For clients built
    /// from now on.
    pub fn with_max_walk_rows(mut self, rows: usize) -> Self {
        self.max_walk_rows = rows.max(1);
        self
    }

    async fn transport(&self) -> Result<&UdpTransport, AgentError> {
        self.transport
            .get_or_try_init(|| async {
                UdpTransport::builder()
                    .bind("0.0.0.0:0")
                    .max_message_size(MAX_MESSAGE_SIZE)
                    .recv_buffer_size(RECV_BUFFER)
                    .build()
                    .await
                    .map_err(|e| AgentError::Other(format!("cannot open the SNMP socket: {e}")))
            })
            .await
    }

    /// The client for `addr` with `settings`: `cached` if it was built for
    /// the same, else a new one.
    pub async fn agent(
        &self,
        cached: Option<Agent>,
        addr: SocketAddr,
        settings: &SnmpSettings,
    ) -> Result<Agent, AgentError> {
        let key = ClientKey {
            addr,
            settings: settings.clone(),
        };
        if let Some(agent) = cached.filter(|a| a.key == key) {
            return Ok(agent);
        }
        let transport = self.transport().await?;
        let auth: Auth = match &settings.auth {
            SnmpAuth::V1 { community } => Auth::v1(community.as_str()),
            SnmpAuth::V2c { community } => Auth::v2c(community.as_str()),
            SnmpAuth::V3 { user, security } => {
                let usm = UsmConfig::new(user.clone().into_bytes());
                let usm = match security {
                    V3Security::NoAuthNoPriv => Ok(usm),
                    V3Security::AuthNoPriv { auth, auth_key } => {
                        usm.auth(auth_protocol(*auth), auth_key)
                    }
                    V3Security::AuthPriv {
                        auth,
                        auth_key,
                        privacy,
                        priv_key,
                    } => usm.auth_priv(
                        auth_protocol(*auth),
                        auth_key,
                        priv_protocol(*privacy),
                        priv_key,
                    ),
                };
                usm.map_err(|e| AgentError::Other(format!("invalid SNMPv3 settings: {e}")))?
                    .into()
            }
        };
        let retry = Retry::fixed(settings.retries, Duration::ZERO)
            .map_err(|e| AgentError::Other(format!("invalid retries: {e}")))?;
        let mut builder = Client::builder(addr, auth)
            .request_timeout(settings.timeout)
            .retry(retry)
            .walk_options(WalkOptions {
                result_limit: Some(self.max_walk_rows),
                ..WalkOptions::default()
            });
        if let SnmpAuth::V3 {
            security:
                V3Security::AuthPriv {
                    privacy: PrivProto::Des,
                    ..
                },
            ..
        } = &settings.auth
        {
            let des = self
                .des
                .get_or_try_init(|| async {
                    // In memory: salts restart at each start of the bot, as
                    // net-snmp's own tools do without a persistent dir.
                    DesSaltState::install(|_| Ok::<(), std::convert::Infallible>(()))
                        .map_err(|e| AgentError::Other(format!("DES salt state: {e}")))
                })
                .await?;
            builder = builder.des_salt_state(des.clone());
        }
        let client = builder
            .build_with(transport)
            .await
            .map_err(|e| AgentError::from_snmp(addr, &e))?;
        let shared = Arc::new(Shared {
            in_flight: Semaphore::new(settings.in_flight as usize),
            bulk_broken: AtomicBool::new(false),
            answered: AtomicBool::new(false),
            probed_at: Mutex::new(Instant::now()),
            warned_order: AtomicBool::new(false),
        });
        Ok(Agent {
            key,
            client,
            shared,
        })
    }
}

fn auth_protocol(p: AuthProto) -> AuthProtocol {
    match p {
        AuthProto::Md5 => AuthProtocol::Md5,
        AuthProto::Sha1 => AuthProtocol::Sha1,
        AuthProto::Sha224 => AuthProtocol::Sha224,
        AuthProto::Sha256 => AuthProtocol::Sha256,
        AuthProto::Sha384 => AuthProtocol::Sha384,
        AuthProto::Sha512 => AuthProtocol::Sha512,
    }
}

fn priv_protocol(p: PrivProto) -> PrivProtocol {
    match p {
        PrivProto::Des => PrivProtocol::Des,
        PrivProto::Aes128 => PrivProtocol::Aes128,
        PrivProto::Aes192 => PrivProtocol::Aes192Blumenthal,
        PrivProto::Aes256 => PrivProtocol::Aes256Blumenthal,
    }
}

impl Agent {
    /// The agent's address.
    pub fn addr(&self) -> SocketAddr {
        self.key.addr
    }

    fn is_v1(&self) -> bool {
        matches!(self.key.settings.auth, SnmpAuth::V1 { .. })
    }

    /// Whether this client speaks SNMPv3 (and caches the agent's engine).
    pub fn is_v3(&self) -> bool {
        matches!(self.key.settings.auth, SnmpAuth::V3 { .. })
    }

    /// Whether the agent has answered this client at least once.
    pub fn has_answered(&self) -> bool {
        self.shared.answered.load(Relaxed)
    }

    /// GETs `oids` in one PDU (more if the agent says `tooBig`). A missing
    /// OID comes back as `NoSuchObject`/`NoSuchInstance`; on v1, where one
    /// missing OID fails the whole PDU with `noSuchName`, each OID is asked
    /// alone and a missing one is left out.
    pub async fn get(&self, oids: &[Oid]) -> Result<HashMap<Oid, SnmpValue>, AgentError> {
        if oids.is_empty() {
            return Ok(HashMap::new());
        }
        let _permit = self.permit().await;
        let got = self.client.get_many(oids).await;
        if got.is_ok() {
            self.shared.answered.store(true, Relaxed);
        }
        match got {
            Ok(response) => Ok(response
                .varbinds
                .into_iter()
                .map(|vb| (vb.oid, vb.value))
                .collect()),
            Err(e) if oids.len() > 1 && snmp_status(&e) == Some(ErrorStatus::NoSuchName) => {
                let mut out = HashMap::new();
                for oid in oids {
                    match self.client.get(oid).await {
                        Ok(r) => out.extend(r.varbinds.into_iter().map(|vb| (vb.oid, vb.value))),
                        Err(e) if snmp_status(&e) == Some(ErrorStatus::NoSuchName) => {}
                        Err(e) => return Err(AgentError::from_snmp(self.addr(), &e)),
                    }
                }
                Ok(out)
            }
            Err(e) if snmp_status(&e) == Some(ErrorStatus::NoSuchName) => Ok(HashMap::new()),
            Err(e) => Err(AgentError::from_snmp(self.addr(), &e)),
        }
    }

    /// A slot among the device's requests in flight.
    async fn permit(&self) -> tokio::sync::SemaphorePermit<'_> {
        self.shared
            .in_flight
            .acquire()
            .await
            .expect("the semaphore is never closed")
    }

    /// Walks the subtree under `oid`: with GETBULK and `repetitions` on
    /// v2c/v3 (halved on `genErr` or `tooBig`), else GETNEXT (v1, the
    /// credential's `walk_with`, or an agent whose GETBULK got no usable
    /// answer where GETNEXT did). Rows up to an OID that does not increase
    /// are kept (with one warning per agent); past [`MAX_WALK_ROWS`] the
    /// walk fails, naming the limit.
    pub async fn walk(&self, oid: &Oid, repetitions: u32) -> Result<Vec<VarBind>, AgentError> {
        let _permit = self.permit().await;
        if self.is_v1() || self.key.settings.getnext || self.shared.bulk_broken.load(Relaxed) {
            return self.walk_getnext(oid).await;
        }
        let mut reps = repetitions.max(1);
        loop {
            let stream = self
                .client
                .bulk_walk(oid.clone(), reps)
                .map_err(|e| AgentError::from_snmp(self.addr(), &e))?;
            let e = match self.rows(oid, stream).await {
                Ok(rows) => return Ok(rows),
                Err(e) => e,
            };
            let status = snmp_status(&e);
            if reps > 1 && matches!(status, Some(ErrorStatus::GenErr | ErrorStatus::TooBig)) {
                tracing::debug!(agent = %self.addr(), %oid, reps, error = %e, "walk failed; retrying with half the repetitions");
                reps /= 2;
                continue;
            }
            if !self.bulk_unusable(&e) {
                return Err(self.walk_error(oid, &e));
            }
            // GETBULK got no usable answer: GETNEXT may.
            return match self.walk_getnext(oid).await {
                Ok(rows) => {
                    if !self.shared.bulk_broken.swap(true, Relaxed) {
                        tracing::warn!(agent = %self.addr(), %oid, error = %e, "GETBULK gets no usable answer from this agent, GETNEXT does: it is walked with GETNEXT from now on");
                    }
                    Ok(rows)
                }
                Err(_) => {
                    if matches!(root(&e), async_snmp::Error::Timeout { .. }) {
                        *lock(&self.shared.probed_at) = Instant::now();
                    }
                    Err(AgentError::from_snmp(self.addr(), &e))
                }
            };
        }
    }

    /// Whether a GETBULK walk's failure says GETBULK itself may be what
    /// the agent cannot do: an error status, an answer that cannot be
    /// read, or no answer from an agent that answers other requests (or
    /// that was last probed [`PROBE_AGAIN_AFTER`] ago: a silent agent costs
    /// one more timeout that often, not at every walk).
    fn bulk_unusable(&self, e: &async_snmp::Error) -> bool {
        match root(e) {
            async_snmp::Error::Timeout { .. } => {
                self.shared.answered.load(Relaxed)
                    || lock(&self.shared.probed_at).elapsed() > PROBE_AGAIN_AFTER
            }
            async_snmp::Error::WalkAborted { .. } => false,
            _ => true,
        }
    }

    async fn walk_getnext(&self, oid: &Oid) -> Result<Vec<VarBind>, AgentError> {
        let stream = self
            .client
            .walk_getnext(oid.clone())
            .map_err(|e| AgentError::from_snmp(self.addr(), &e))?;
        match self.rows(oid, stream).await {
            Ok(rows) => Ok(rows),
            // v1 ends a walk past the MIB's end with noSuchName.
            Err(e) if snmp_status(&e) == Some(ErrorStatus::NoSuchName) => Ok(Vec::new()),
            Err(e) => Err(self.walk_error(oid, &e)),
        }
    }

    /// A walk's failure: past the row limit, one that names it.
    fn walk_error(&self, oid: &Oid, e: &async_snmp::Error) -> AgentError {
        match root(e) {
            async_snmp::Error::WalkAborted {
                reason: WalkAbortReason::ResultLimitExceeded { limit },
                ..
            } => AgentError::TooManyRows {
                oid: oid.clone(),
                limit: *limit,
            },
            _ => AgentError::from_snmp(self.addr(), e),
        }
    }

    /// A walk's rows, as they come; at an OID that does not increase, the
    /// rows before it (as easysnmp kept them).
    async fn rows(
        &self,
        oid: &Oid,
        mut stream: WalkStream<UdpHandle>,
    ) -> Result<Vec<VarBind>, Box<async_snmp::Error>> {
        let mut rows = Vec::new();
        while let Some(row) = stream.next().await {
            match row {
                Ok(row) => {
                    self.shared.answered.store(true, Relaxed);
                    rows.push(row);
                }
                Err(e) if not_increasing(&e) => {
                    if !self.shared.warned_order.swap(true, Relaxed) {
                        tracing::warn!(agent = %self.addr(), %oid, rows = rows.len(), "the agent answered an OID that does not increase; the rows before it are kept (said once per agent)");
                    }
                    return Ok(rows);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(rows)
    }
}
