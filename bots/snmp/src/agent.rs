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
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_snmp::{
    Auth, AuthProtocol, Client, ClientBuilder, DesSaltState, ErrorStatus, Oid, PrivProtocol,
    ResponseShapeAnomaly, Retry, UdpTransport, UsmConfig, Value as SnmpValue, VarBind,
    WalkAbortReason, WalkOptions, WalkStream,
};
use tokio::sync::{OnceCell, Semaphore};

use crate::settings::{AuthProto, PrivProto, SnmpAuth, SnmpSettings, V3Security};

mod watched;

pub use watched::Dropped;
use watched::{Seen, Watched};

/// The UDP message size the shared socket advertises and accepts.
pub const MAX_MESSAGE_SIZE: usize = 65_507;

/// The most rows one walk may return; a longer walk fails (and only its
/// sensors with it), so that a runaway table cannot exhaust memory.
pub const MAX_WALK_ROWS: usize = 100_000;

/// The most rows the walks of one firing of one device may hold together:
/// 16 endless columns stop here, not at 16 × [`MAX_WALK_ROWS`] (at about
/// 180 bytes a row, some 36 MB rather than 290 MB).
pub const MAX_FIRING_ROWS: usize = 200_000;

/// The most rows all the walks in progress in the process may hold
/// together (some 180 MB): past it, a walk fails rather than the process
/// growing without end when many devices answer endless walks at once.
pub const MAX_PROCESS_ROWS: usize = 1_000_000;

/// How long a column found empty, and checked so with a GETNEXT, is taken
/// as empty without another check.
const EMPTY_TRUSTED_FOR: Duration = Duration::from_secs(600);

/// A hash of a column's OID, for [`Shared::empty_confirmed`].
fn oid_key(oid: &Oid) -> u64 {
    use std::hash::{Hash, Hasher};
    // Fixed keys: the same OID gives the same key at every call.
    let mut h = std::hash::DefaultHasher::new();
    oid.arcs().hash(&mut h);
    h.finish()
}

/// A bound on the empty columns remembered per agent.
const MAX_OIDS_PER_AGENT: usize = 64;

/// The most bytes (each row's OID arcs and value, and 64) the walks of one firing of one device may
/// hold together: rows of 4 KB strings reach it long before
/// [`MAX_FIRING_ROWS`].
pub const MAX_FIRING_BYTES: u64 = 32 << 20;

/// The most bytes all the walks in progress in the process may hold
/// together.
pub const MAX_PROCESS_BYTES: u64 = 256 << 20;

/// The rows held by the walks in progress, process-wide.
static PROCESS_ROWS: AtomicUsize = AtomicUsize::new(0);

/// Their bytes.
static PROCESS_BYTES: AtomicU64 = AtomicU64::new(0);

/// The rows and bytes a walk in progress counts in [`PROCESS_ROWS`] and
/// [`PROCESS_BYTES`], given back when the walk ends.
#[derive(Default)]
struct ProcessRows {
    rows: usize,
    bytes: u64,
}

impl ProcessRows {
    /// One more row; false past [`MAX_PROCESS_ROWS`].
    fn add(&mut self) -> bool {
        self.rows += 1;
        PROCESS_ROWS.fetch_add(1, Relaxed) < MAX_PROCESS_ROWS
    }

    /// `bytes` more; false past [`MAX_PROCESS_BYTES`].
    fn add_bytes(&mut self, bytes: u64) -> bool {
        self.bytes += bytes;
        PROCESS_BYTES.fetch_add(bytes, Relaxed) + bytes <= MAX_PROCESS_BYTES
    }
}

impl Drop for ProcessRows {
    fn drop(&mut self) {
        PROCESS_ROWS.fetch_sub(self.rows, Relaxed);
        PROCESS_BYTES.fetch_sub(self.bytes, Relaxed);
    }
}

/// What a row holds, about: its OID's arcs and its value's bytes, and the
/// two structures around them.
fn row_bytes(row: &VarBind) -> u64 {
    let value = match &row.value {
        SnmpValue::OctetString(b) | SnmpValue::Opaque(b) | SnmpValue::Nsap(b) => b.len(),
        SnmpValue::ObjectIdentifier(o) => o.arcs().len() * 4,
        _ => 0,
    };
    (row.oid.arcs().len() * 4 + value + 64) as u64
}

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
    /// The agent did not answer (also a wrong community or v3 privacy key,
    /// which agents answer with silence).
    #[error(
        "no answer from {addr} after {retries} retries (a wrong community or v3 privacy key, or the agent is down)"
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
    /// The walks of a firing, or of the whole process, went past the rows
    /// they may hold together ([`MAX_FIRING_ROWS`], [`MAX_PROCESS_ROWS`]).
    #[error(
        "the walk of {oid} was stopped: the walks of this {scope} hold more than {limit} rows together; its sensors are skipped"
    )]
    RowBudget {
        /// The walk that went past.
        oid: Oid,
        /// `firing` or `process`.
        scope: &'static str,
        /// The limit.
        limit: usize,
    },
    /// The walks of a firing, or of the whole process, went past the bytes
    /// they may hold together ([`MAX_FIRING_BYTES`], [`MAX_PROCESS_BYTES`]).
    #[error(
        "the walk of {oid} was stopped: the walks of this {scope} hold more than {} MB together; its sensors are skipped", limit >> 20
    )]
    ByteBudget {
        /// The walk that went past.
        oid: Oid,
        /// `firing` or `process`.
        scope: &'static str,
        /// The limit, in bytes.
        limit: u64,
    },
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
    /// An SNMPv3 agent refused the request and said why (a USM report).
    #[error("the SNMPv3 agent at {addr} refused the request: {cause}")]
    V3 {
        /// The agent.
        addr: SocketAddr,
        /// Why.
        cause: V3Cause,
    },
    /// The answer did not fit the request (other OIDs than asked, more or
    /// fewer varbinds): it is not used.
    #[error("the answer of {addr} does not fit the request: {what}")]
    Mismatch {
        /// The agent.
        addr: SocketAddr,
        /// What did not fit, in a few words.
        what: String,
    },
    /// Any other failure.
    #[error("{0}")]
    Other(String),
}

/// Every [`AgentError::cause`].
pub const CAUSES: [&str; 16] = [
    "timeout",
    "budget",
    "too_many_rows",
    "firing_rows",
    "process_rows",
    "firing_bytes",
    "process_bytes",
    "v3_unknown_user",
    "v3_wrong_auth",
    "v3_wrong_priv",
    "v3_time_window",
    "v3_unknown_engine",
    "v3_security_level",
    "v3_report",
    "mismatch",
    "other",
];

/// Why an SNMPv3 agent refused a request: the USM report it answered with,
/// in net-snmp's words and with the fix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum V3Cause {
    /// usmStatsUnknownUserNames.
    UnknownUser,
    /// usmStatsWrongDigests: the auth key or protocol differs.
    WrongAuth,
    /// usmStatsDecryptionErrors: the privacy key or protocol differs.
    WrongPriv,
    /// usmStatsNotInTimeWindows: the agent's boots or time moved.
    TimeWindow,
    /// usmStatsUnknownEngineIDs: the agent's engine changed.
    UnknownEngine,
    /// usmStatsUnsupportedSecLevels.
    SecurityLevel,
    /// Another report.
    Other,
}

impl V3Cause {
    /// The `cause` label of `snmp_device_errors_total`.
    pub fn label(self) -> &'static str {
        match self {
            Self::UnknownUser => "v3_unknown_user",
            Self::WrongAuth => "v3_wrong_auth",
            Self::WrongPriv => "v3_wrong_priv",
            Self::TimeWindow => "v3_time_window",
            Self::UnknownEngine => "v3_unknown_engine",
            Self::SecurityLevel => "v3_security_level",
            Self::Other => "v3_report",
        }
    }

    fn of(status: &async_snmp::v3::ReportStatus) -> Self {
        use async_snmp::v3::ReportStatus as R;
        match status {
            R::UnknownUserName { .. } => Self::UnknownUser,
            R::WrongDigest { .. } => Self::WrongAuth,
            R::DecryptionError { .. } => Self::WrongPriv,
            R::NotInTimeWindow { .. } => Self::TimeWindow,
            R::UnknownEngineId { .. } => Self::UnknownEngine,
            R::UnsupportedSecurityLevel { .. } => Self::SecurityLevel,
            _ => Self::Other,
        }
    }
}

impl std::fmt::Display for V3Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::UnknownUser => {
                "unknown user name (the credential's snmpv3_securityName is not a user of the agent)"
            }
            Self::WrongAuth => {
                "authentication failure (the credential's auth key or auth protocol differs from the agent's)"
            }
            Self::WrongPriv => {
                "decryption error (the credential's privacy key or privacy protocol differs from the agent's)"
            }
            Self::TimeWindow => {
                "not in time window (the agent restarted or its clock moved; the engine is discovered again)"
            }
            Self::UnknownEngine => {
                "unknown engine ID (the agent's engine changed; it is discovered again)"
            }
            Self::SecurityLevel => {
                "unsupported security level (the user does not allow the credential's auth/priv level)"
            }
            Self::Other => "an SNMPv3 report",
        })
    }
}

impl AgentError {
    /// Whether the device failed to answer in time.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout { .. } | Self::Budget)
    }

    /// The `cause` label of `snmp_device_errors_total`: `timeout`, `budget`,
    /// `too_many_rows`, `firing_rows`, `process_rows`, `firing_bytes`,
    /// `process_bytes`, `v3_…` ([`V3Cause::label`]), `mismatch` or `other`.
    pub fn cause(&self) -> &'static str {
        match self {
            Self::Timeout { .. } => "timeout",
            Self::Budget => "budget",
            Self::TooManyRows { .. } => "too_many_rows",
            Self::RowBudget {
                scope: "firing", ..
            } => "firing_rows",
            Self::RowBudget { .. } => "process_rows",
            Self::ByteBudget {
                scope: "firing", ..
            } => "firing_bytes",
            Self::ByteBudget { .. } => "process_bytes",
            Self::V3 { cause, .. } => cause.label(),
            Self::Mismatch { .. } => "mismatch",
            Self::Other(_) => "other",
        }
    }

    fn from_snmp(addr: SocketAddr, e: &async_snmp::Error) -> Self {
        match root(e) {
            async_snmp::Error::Timeout { retries, .. } => Self::Timeout {
                addr,
                retries: *retries,
            },
            async_snmp::Error::Report { status, .. } => Self::V3 {
                addr,
                cause: V3Cause::of(status),
            },
            // The crate's text of this one is a Debug dump of every varbind
            // (744 KB for a 9,300-varbind answer): a few words instead.
            async_snmp::Error::ResponseShape { response, .. } => {
                let n = response.anomalies.len();
                let first = response
                    .anomalies
                    .first()
                    .map(|a| cut(&format!("{a:?}"), 160))
                    .unwrap_or_default();
                Self::Mismatch {
                    addr,
                    what: format!(
                        "{} varbinds with {n} anomalies, the first: {first}",
                        response.varbinds.len()
                    ),
                }
            }
            other => Self::Other(cut(&other.to_string(), 400)),
        }
    }
}

/// `text` cut to about `max` bytes on a character boundary (the SDK bounds
/// and escapes every error again; this keeps the crate's long texts short).
fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} more bytes)", &text[..end], text.len() - end)
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
    client: Client<Watched>,
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
    /// The rows the walks of the current firing got ([`Agent::begin_firing`]).
    firing_rows: AtomicUsize,
    /// Their bytes ([`row_bytes`]).
    firing_bytes: AtomicU64,
    /// The answers that came and were not used.
    seen: Arc<Seen>,
    /// The walked columns found empty and checked so ([`Agent::walk`]): a
    /// hash of the OID, and when (a few bytes each: 10,000 agents keep one).
    empty_confirmed: Mutex<Vec<(u64, Instant)>>,
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

    /// The shared socket's counts since it was bound (`None` before).
    pub fn socket_stats(&self) -> Option<async_snmp::UdpStats> {
        self.transport.get().map(UdpTransport::stats)
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
        let handle = transport
            .handle(addr)
            .map_err(|e| AgentError::from_snmp(addr, &e))?;
        let seen = Arc::new(Seen::default());
        let mut builder = ClientBuilder::new(auth)
            .request_timeout(settings.timeout)
            .retry(retry)
            .walk_options(WalkOptions {
                result_limit: Some(self.max_walk_rows),
                ..WalkOptions::default()
            })
            // net-snmp answers an unknown user and a wrong auth key with an
            // unauthenticated report (it has no key to sign it with): read,
            // it names the cause, where ignored it is a timeout that says
            // nothing (a wrong privacy key gets no answer at all). A forged report can fail a request
            // (as a forged datagram can drop it), and a time correction it
            // gives is used for one packet and never kept.
            .allow_unauthenticated_v3_time_correction(true);
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
            .build_with_transport(Watched {
                handle,
                seen: Arc::clone(&seen),
            })
            .map_err(|e| AgentError::from_snmp(addr, &e))?;
        let shared = Arc::new(Shared {
            in_flight: Semaphore::new(settings.in_flight as usize),
            bulk_broken: AtomicBool::new(false),
            answered: AtomicBool::new(false),
            probed_at: Mutex::new(Instant::now()),
            warned_order: AtomicBool::new(false),
            firing_rows: AtomicUsize::new(0),
            firing_bytes: AtomicU64::new(0),
            empty_confirmed: Mutex::new(Vec::new()),
            seen,
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
        let rows = self.walk_rows(oid, repetitions).await?;
        // An empty table is checked when it turns empty, then trusted for a
        // while: Grafolean's default lmsensors columns are empty on most
        // devices, and a check at every firing cost 40 % more requests.
        let key = oid_key(oid);
        let trusted = {
            let mut confirmed = lock(&self.shared.empty_confirmed);
            if !rows.is_empty() {
                confirmed.retain(|(k, _)| *k != key);
                true
            } else {
                confirmed
                    .iter()
                    .any(|(k, at)| *k == key && at.elapsed() < EMPTY_TRUSTED_FOR)
            }
        };
        if trusted {
            return Ok(rows);
        }
        self.confirm_empty(oid).await?;
        let mut confirmed = lock(&self.shared.empty_confirmed);
        confirmed.retain(|(k, _)| *k != key);
        if confirmed.len() >= MAX_OIDS_PER_AGENT {
            confirmed.remove(0);
        }
        confirmed.push((key, Instant::now()));
        confirmed.shrink_to_fit();
        Ok(rows)
    }

    /// A walk that gave no row: its table is empty only if a GETNEXT of its
    /// column answers one varbind past its whole subtree (or endOfMibView,
    /// or v1's noSuchName). Any other answer was another request's (its
    /// request-id off), or a broken agent's: then the walk fails rather than
    /// taking it for an empty table. One request more, for empty tables
    /// only.
    async fn confirm_empty(&self, oid: &Oid) -> Result<(), AgentError> {
        match self.client.get_next(oid).await {
            // One varbind, past the whole subtree: the table is empty. Inside
            // it, the table has rows the walk did not get.
            Ok(r) => match r.varbinds.as_slice() {
                [vb] if (vb.oid > *oid && !vb.oid.starts_with(oid))
                    || vb.value == async_snmp::Value::EndOfMibView =>
                {
                    Ok(())
                }
                [vb] if vb.oid.starts_with(oid) => Err(AgentError::Mismatch {
                    addr: self.addr(),
                    what: format!(
                        "the walk of {oid} found no row, but a GETNEXT of it answers {} = {}, inside it (a broken agent, or an answer to another request)",
                        vb.oid,
                        vb.value.kind().as_str()
                    ),
                }),
                _ => Err(AgentError::Mismatch {
                    addr: self.addr(),
                    what: format!(
                        "the answer to the walk of {oid} does not follow it (an answer to another request, or a broken agent)"
                    ),
                }),
            },
            Err(e) if snmp_status(&e) == Some(ErrorStatus::NoSuchName) => Ok(()),
            Err(e) => Err(AgentError::from_snmp(self.addr(), &e)),
        }
    }

    async fn walk_rows(&self, oid: &Oid, repetitions: u32) -> Result<Vec<VarBind>, AgentError> {
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
                Err(RowsError::Bot(e)) => return Err(e),
                Err(RowsError::Snmp(e)) => e,
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
            Err(RowsError::Bot(e)) => Err(e),
            // v1 ends a walk past the MIB's end with noSuchName.
            Err(RowsError::Snmp(e)) if snmp_status(&e) == Some(ErrorStatus::NoSuchName) => {
                Ok(Vec::new())
            }
            Err(RowsError::Snmp(e)) => Err(self.walk_error(oid, &e)),
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

    /// Starts a firing: the rows its walks may hold together
    /// ([`MAX_FIRING_ROWS`]) are counted from 0.
    pub fn begin_firing(&self) {
        self.shared.firing_rows.store(0, Relaxed);
        self.shared.firing_bytes.store(0, Relaxed);
    }

    /// The answers its requests got and did not use since the last call
    /// (of any clone of this agent).
    pub fn take_dropped(&self) -> Dropped {
        self.shared.seen.take()
    }

    /// A walk's rows, as they come; at an OID that does not increase, the
    /// rows before it (as easysnmp kept them). Past the firing's or the
    /// process's row budget, an error naming it.
    async fn rows(
        &self,
        oid: &Oid,
        mut stream: WalkStream<Watched>,
    ) -> Result<Vec<VarBind>, RowsError> {
        let mut rows = Vec::new();
        let mut held = ProcessRows::default();
        while let Some(row) = stream.next().await {
            match row {
                Ok(row) => {
                    self.shared.answered.store(true, Relaxed);
                    rows.push(row);
                    let budget = |scope, limit| {
                        RowsError::Bot(AgentError::RowBudget {
                            oid: oid.clone(),
                            scope,
                            limit,
                        })
                    };
                    if self.shared.firing_rows.fetch_add(1, Relaxed) >= MAX_FIRING_ROWS {
                        return Err(budget("firing", MAX_FIRING_ROWS));
                    }
                    if !held.add() {
                        return Err(budget("process", MAX_PROCESS_ROWS));
                    }
                    let bytes = row_bytes(rows.last().expect("just pushed"));
                    let bytes_budget = |scope, limit| {
                        RowsError::Bot(AgentError::ByteBudget {
                            oid: oid.clone(),
                            scope,
                            limit,
                        })
                    };
                    if self.shared.firing_bytes.fetch_add(bytes, Relaxed) + bytes > MAX_FIRING_BYTES
                    {
                        return Err(bytes_budget("firing", MAX_FIRING_BYTES));
                    }
                    if !held.add_bytes(bytes) {
                        return Err(bytes_budget("process", MAX_PROCESS_BYTES));
                    }
                }
                // Not even a first row: not a table that ends, but an answer
                // that is not for this walk (another request's, by its
                // request-id, or a broken agent's). The walk fails.
                Err(e) if not_increasing(&e) && rows.is_empty() => {
                    return Err(RowsError::Bot(AgentError::Mismatch {
                        addr: self.addr(),
                        what: format!(
                            "the first answer to the walk of {oid} does not follow it (an answer to another request, or a broken agent)"
                        ),
                    }));
                }
                Err(e) if not_increasing(&e) => {
                    if !self.shared.warned_order.swap(true, Relaxed) {
                        tracing::warn!(agent = %self.addr(), %oid, rows = rows.len(), "the agent answered an OID that does not increase; the rows before it are kept (said once per agent)");
                    }
                    return Ok(rows);
                }
                Err(e) => return Err(RowsError::Snmp(e)),
            }
        }
        Ok(rows)
    }
}

/// Why [`Agent::rows`] stopped.
enum RowsError {
    /// The crate's error, for the caller to read.
    Snmp(Box<async_snmp::Error>),
    /// The bot's own reason: a row budget ran out, or the answer was not
    /// for this walk.
    Bot(AgentError),
}

#[cfg(test)]
mod cause_tests {
    use super::*;
    use async_snmp::v3::ReportStatus as R;

    #[test]
    fn every_report_has_its_cause_and_every_cause_is_listed() {
        let addr: SocketAddr = "192.0.2.1:161".parse().unwrap();
        let cases = [
            (
                R::UnknownUserName { counter: 1 },
                "v3_unknown_user",
                "unknown user name",
            ),
            (
                R::WrongDigest { counter: 1 },
                "v3_wrong_auth",
                "authentication failure",
            ),
            (
                R::DecryptionError { counter: 1 },
                "v3_wrong_priv",
                "decryption error",
            ),
            (
                R::NotInTimeWindow { counter: 1 },
                "v3_time_window",
                "not in time window",
            ),
            (
                R::UnknownEngineId { counter: 1 },
                "v3_unknown_engine",
                "unknown engine ID",
            ),
            (
                R::UnsupportedSecurityLevel { counter: 1 },
                "v3_security_level",
                "unsupported security level",
            ),
        ];
        for (status, label, words) in cases {
            let e = AgentError::V3 {
                addr,
                cause: V3Cause::of(&status),
            };
            assert_eq!(e.cause(), label);
            assert!(e.to_string().contains(words), "{e}");
            assert!(CAUSES.contains(&label));
        }
        for e in [
            AgentError::Timeout { addr, retries: 1 },
            AgentError::Budget,
            AgentError::Other("x".into()),
            AgentError::Mismatch {
                addr,
                what: "x".into(),
            },
        ] {
            assert!(CAUSES.contains(&e.cause()), "{e}");
        }
        assert!(CAUSES.contains(&V3Cause::Other.label()));
    }

    #[test]
    fn a_long_crate_text_is_cut() {
        let long = "v".repeat(10_000);
        let cut = cut(&long, 400);
        assert!(
            cut.len() < 450 && cut.ends_with("(9600 more bytes)"),
            "{cut}"
        );
    }
}
