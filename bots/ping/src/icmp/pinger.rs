//! The [`Pinger`]: shared sockets, the table of probes in flight, and the
//! receiver tasks that match replies to probes.

use std::collections::HashMap;
use std::collections::hash_map::{Entry, RandomState};
use std::hash::BuildHasher;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::{Semaphore, oneshot, watch};
use tokio::time::Instant;

use super::PingError;
use super::packet::{self, Family, MAX_PAYLOAD, MIN_PAYLOAD, Parsed, V4Header};
use super::socket::{self, IcmpSocket, SocketChoice, SocketKind, Tweaks};

/// The most sockets a pinger opens per family for [`PacketOptions`] other
/// than the defaults (each distinct TTL, DF and source address needs its
/// own). Beyond it, pinging with yet other options fails.
pub const MAX_SOCKET_VARIANTS: usize = 64;

/// How each echo request is built and sent: the packet options of
/// blackbox_exporter and smokeping_prober.
///
/// ```
/// use grafolean_ping_bot::icmp::PacketOptions;
/// let opts = PacketOptions { payload: 1472, dont_fragment: true, ..PacketOptions::default() };
/// assert_eq!(PacketOptions::default().payload, 16);
/// # let _ = opts;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PacketOptions {
    /// Bytes of ICMP payload, [`MIN_PAYLOAD`](super::MIN_PAYLOAD) (the
    /// default: the cookie and token that match a reply) to
    /// [`MAX_PAYLOAD`](super::MAX_PAYLOAD).
    pub payload: u16,
    /// The IPv4 TTL or IPv6 hop limit; `None` keeps the system's default.
    pub ttl: Option<u8>,
    /// Sets the DF bit on IPv4 requests (raw sockets only, as in
    /// blackbox_exporter): a request larger than the path MTU is then
    /// dropped on the way, not fragmented. IPv6 routers never fragment, so
    /// it does not apply there.
    pub dont_fragment: bool,
    /// The source address; it applies to targets of its own family.
    pub source: Option<IpAddr>,
}

impl Default for PacketOptions {
    fn default() -> Self {
        Self {
            payload: MIN_PAYLOAD,
            ttl: None,
            dont_fragment: false,
            source: None,
        }
    }
}

impl PacketOptions {
    /// The socket options these packet options need for `family`, and the
    /// IPv4 header the pinger writes itself when the DF bit is asked for.
    fn tweaks(&self, family: Family) -> (Tweaks, Option<V4Header>) {
        let source = self.source.filter(|s| Family::of(*s) == family);
        if family == Family::V4 && self.dont_fragment {
            let header = V4Header {
                ttl: self.ttl.unwrap_or(64),
                dont_fragment: true,
                source: match source {
                    Some(IpAddr::V4(s)) => s,
                    _ => std::net::Ipv4Addr::UNSPECIFIED,
                },
            };
            let tweaks = Tweaks {
                ttl: None,
                header_included: true,
                source,
            };
            return (tweaks, Some(header));
        }
        let tweaks = Tweaks {
            ttl: self.ttl,
            header_included: false,
            source,
        };
        (tweaks, None)
    }
}

/// The largest cap on probes in flight: a ping socket has only 2^16
/// sequence numbers per target.
pub const MAX_IN_FLIGHT: usize = 65_535;

/// How a [`Pinger`] is set up.
///
/// ```
/// use grafolean_ping_bot::icmp::{PingerOptions, SocketChoice};
/// let opts = PingerOptions::default()
///     .with_max_in_flight(2048)
///     .with_socket(SocketChoice::Datagram);
/// assert_eq!(opts.max_in_flight, 2048);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PingerOptions {
    /// Which kind of socket to open. Default: [`SocketChoice::Auto`].
    pub socket: SocketChoice,
    /// The most probes waiting for a reply at once, across both families,
    /// at most [`MAX_IN_FLIGHT`]. Default: 4096.
    pub max_in_flight: usize,
    /// The receive buffer to ask for, in bytes (capped by the kernel at
    /// `net.core.rmem_max`). Default: 4 MiB.
    pub recv_buffer: usize,
    /// The send buffer to ask for, in bytes (capped at `net.core.wmem_max`).
    /// Default: 1 MiB.
    pub send_buffer: usize,
}

impl Default for PingerOptions {
    fn default() -> Self {
        Self {
            socket: SocketChoice::Auto,
            max_in_flight: 4096,
            recv_buffer: 4 << 20,
            send_buffer: 1 << 20,
        }
    }
}

impl PingerOptions {
    /// Sets which kind of socket to open.
    #[must_use]
    pub fn with_socket(mut self, socket: SocketChoice) -> Self {
        self.socket = socket;
        self
    }

    /// Sets the cap on probes in flight (1 to [`MAX_IN_FLIGHT`]).
    #[must_use]
    pub fn with_max_in_flight(mut self, max: usize) -> Self {
        self.max_in_flight = max.clamp(1, MAX_IN_FLIGHT);
        self
    }

    /// Sets the requested receive buffer size, in bytes.
    #[must_use]
    pub fn with_recv_buffer(mut self, bytes: usize) -> Self {
        self.recv_buffer = bytes;
        self
    }

    /// Sets the requested send buffer size, in bytes.
    #[must_use]
    pub fn with_send_buffer(mut self, bytes: usize) -> Self {
        self.send_buffer = bytes;
        self
    }
}

/// Counters since the pinger was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PingStats {
    /// Echo requests sent.
    pub sent: u64,
    /// Replies that woke their probe.
    pub answered: u64,
    /// Probes that timed out.
    pub timed_out: u64,
    /// Requests that could not be sent.
    pub send_errors: u64,
    /// Echo replies that matched no probe in flight: late replies, other
    /// programs' pings seen on a raw socket, or, with [`PacketOptions`] that
    /// open sockets of their own, the replies of this pinger's other raw
    /// sockets. They are dropped.
    pub unmatched: u64,
}

impl PingStats {
    /// The counts since `earlier` (a reading of the same pinger).
    ///
    /// ```
    /// use grafolean_ping_bot::icmp::PingStats;
    /// let a = PingStats { sent: 3, answered: 2, ..Default::default() };
    /// let b = PingStats { sent: 10, answered: 8, ..Default::default() };
    /// assert_eq!(b.since(&a), PingStats { sent: 7, answered: 6, ..Default::default() });
    /// ```
    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            sent: self.sent.saturating_sub(earlier.sent),
            answered: self.answered.saturating_sub(earlier.answered),
            timed_out: self.timed_out.saturating_sub(earlier.timed_out),
            send_errors: self.send_errors.saturating_sub(earlier.send_errors),
            unmatched: self.unmatched.saturating_sub(earlier.unmatched),
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    answered: AtomicU64,
    timed_out: AtomicU64,
    send_errors: AtomicU64,
    unmatched: AtomicU64,
}

/// `(target, identifier, sequence)`: what a reply is looked up by.
type Key = (IpAddr, u16, u16);

/// A probe waiting for its reply.
#[derive(Debug)]
struct Waiter {
    token: u64,
    tx: oneshot::Sender<Received>,
}

/// When a reply arrived: when the receiver task read it and, when the
/// socket gives it (`SO_TIMESTAMPNS`), when the kernel queued it. The
/// kernel's time is what the RTT is measured to, so a busy process does
/// not add its own delay to the RTT it reports.
#[derive(Clone, Copy, Debug)]
struct Received {
    at: Instant,
    kernel: Option<SystemTime>,
}

impl Received {
    /// The RTT of a request sent at `sent_at` (monotonic) and `sent_wall`
    /// (the system clock, read just before): to the kernel's receive time,
    /// unless the system clock was stepped in between.
    fn rtt(&self, sent_at: Instant, sent_wall: SystemTime) -> Duration {
        let seen = self.at.saturating_duration_since(sent_at);
        self.kernel
            .and_then(|k| k.duration_since(sent_wall).ok())
            .filter(|rtt| *rtt <= seen)
            .unwrap_or(seen)
    }
}

/// One socket and its probes in flight: the family's default socket, or one
/// opened for other [`PacketOptions`].
#[derive(Debug)]
struct Endpoint {
    family: Family,
    socket: IcmpSocket,
    /// This socket's random cookie, in every request's payload: a reply seen
    /// on a raw socket that carries another socket's cookie is not its own.
    cookie: u64,
    /// The IPv4 header written by the pinger (with `IP_HDRINCL`).
    header: Option<V4Header>,
    /// For raw sockets, the base of the identifiers this pinger uses.
    identifier_base: u16,
    next_token: AtomicU64,
    pending: Mutex<HashMap<Key, Waiter>>,
}

#[derive(Debug)]
struct Shared {
    opts: PingerOptions,
    random: u64,
    v4: Result<Arc<Endpoint>, String>,
    v6: Result<Arc<Endpoint>, String>,
    /// Sockets opened for packet options other than the defaults.
    #[allow(clippy::type_complexity)]
    variants: Mutex<HashMap<(Family, Tweaks), Result<Arc<Endpoint>, String>>>,
    permits: Semaphore,
    counters: Arc<Counters>,
    /// Dropped with the last [`Pinger`] clone, which stops the receiver tasks.
    shutdown: watch::Sender<()>,
}

/// A cheaply cloneable handle to the process's ICMP sockets.
///
/// See the [module docs](super) for how replies are matched.
#[derive(Clone, Debug)]
pub struct Pinger {
    shared: Arc<Shared>,
}

impl Pinger {
    /// Opens the sockets and starts the receiver tasks.
    ///
    /// It fails only when no family's
    /// socket can be opened; a family that fails alone (say, IPv6 on a host
    /// without it) is logged, and pinging it returns
    /// [`PingError::FamilyUnavailable`].
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime, since it spawns the receiver tasks.
    pub fn new(opts: PingerOptions) -> Result<Self, PingError> {
        let random = RandomState::new().hash_one(std::process::id());
        let counters = Arc::new(Counters::default());
        let (shutdown, _) = watch::channel(());
        let open = |family| {
            let socket = socket::open(family, opts.socket, opts.recv_buffer, opts.send_buffer)?;
            Ok(start_endpoint(
                family,
                socket,
                (random, 0),
                None,
                &counters,
                &shutdown,
            ))
        };
        let (v4, v6) = match (open(Family::V4), open(Family::V6)) {
            (Err(e4), Err(e6)) => {
                tracing::error!(error = %e6, "cannot open the IPv6 ICMP socket");
                return Err(e4);
            }
            (v4, v6) => {
                let keep = |r: Result<Arc<Endpoint>, PingError>, family: Family| {
                    r.map_err(|e| {
                        tracing::warn!(error = %e, "pinging {} targets will fail", family.name());
                        e.to_string()
                    })
                };
                (keep(v4, Family::V4), keep(v6, Family::V6))
            }
        };
        Ok(Self {
            shared: Arc::new(Shared {
                opts: opts.clone(),
                random,
                v4,
                v6,
                variants: Mutex::new(HashMap::new()),
                permits: Semaphore::new(opts.max_in_flight.clamp(1, MAX_IN_FLIGHT)),
                counters,
                shutdown,
            }),
        })
    }

    /// The kind of socket in use for `family`, or `None` when it could not be
    /// opened.
    pub fn socket_kind(&self, family: Family) -> Option<SocketKind> {
        let endpoint = match family {
            Family::V4 => &self.shared.v4,
            Family::V6 => &self.shared.v6,
        };
        endpoint.as_ref().ok().map(|e| e.socket.kind)
    }

    /// The counters so far.
    pub fn stats(&self) -> PingStats {
        let c = &self.shared.counters;
        PingStats {
            sent: c.sent.load(Ordering::Relaxed),
            answered: c.answered.load(Ordering::Relaxed),
            timed_out: c.timed_out.load(Ordering::Relaxed),
            send_errors: c.send_errors.load(Ordering::Relaxed),
            unmatched: c.unmatched.load(Ordering::Relaxed),
        }
    }

    /// Sends one echo request to `addr` (an IPv4-mapped IPv6 address is
    /// pinged over IPv4) and waits up to `timeout` for the
    /// reply: `Some(rtt)` when it came, `None` when it did not.
    ///
    /// The timeout starts once the probe got a slot (see
    /// [`PingerOptions::max_in_flight`]). The future may be dropped at any
    /// time; the probe is then forgotten.
    pub async fn ping(
        &self,
        addr: IpAddr,
        timeout: Duration,
    ) -> Result<Option<Duration>, PingError> {
        self.ping_with(addr, timeout, &PacketOptions::default())
            .await
    }

    /// The socket for `addr` and `opts`: the family's own, or one opened for
    /// these options.
    fn endpoint(&self, addr: IpAddr, opts: &PacketOptions) -> Result<Arc<Endpoint>, PingError> {
        let family = Family::of(addr);
        let default = match (addr, &self.shared.v4, &self.shared.v6) {
            (IpAddr::V4(_), Ok(e), _) | (IpAddr::V6(_), _, Ok(e)) => e,
            (IpAddr::V4(_), Err(reason), _) | (IpAddr::V6(_), _, Err(reason)) => {
                return Err(PingError::FamilyUnavailable {
                    addr,
                    reason: reason.clone(),
                });
            }
        };
        let (tweaks, header) = opts.tweaks(family);
        if tweaks == Tweaks::default() {
            return Ok(default.clone());
        }
        let shared = &self.shared;
        let mut variants = shared
            .variants
            .lock()
            .expect("the variants table is never poisoned");
        let opened = variants.len();
        let endpoint = variants.entry((family, tweaks)).or_insert_with(|| {
            if opened >= MAX_SOCKET_VARIANTS * 2 {
                return Err(format!(
                    "more than {MAX_SOCKET_VARIANTS} different TTL, DF and source settings"
                ));
            }
            let o = &shared.opts;
            let socket = socket::open_with(family, o.socket, o.recv_buffer, o.send_buffer, tweaks)
                .map_err(|e| e.to_string())?;
            tracing::debug!(
                family = family.name(),
                ?tweaks,
                "opened an ICMP socket for packet options"
            );
            Ok(start_endpoint(
                family,
                socket,
                (shared.random, opened as u64 + 1),
                header,
                &shared.counters,
                &shared.shutdown,
            ))
        });
        endpoint
            .clone()
            .map_err(|reason| PingError::Unsupported { addr, reason })
    }

    /// [`ping`](Self::ping) with packet options.
    pub async fn ping_with(
        &self,
        addr: IpAddr,
        timeout: Duration,
        opts: &PacketOptions,
    ) -> Result<Option<Duration>, PingError> {
        let addr = addr.to_canonical();
        let endpoint = self.endpoint(addr, opts)?;
        let _permit = self
            .shared
            .permits
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let deadline = Instant::now() + timeout;
        let (tx, rx) = oneshot::channel();
        let (registration, request) = endpoint.register(addr, opts.payload, tx);
        let counters = &self.shared.counters;
        let sent_wall = SystemTime::now();
        let sent_at = Instant::now();
        if let Err(source) = endpoint
            .socket
            .socket
            .send_to(&request, SocketAddr::new(addr, 0))
            .await
        {
            counters.send_errors.fetch_add(1, Ordering::Relaxed);
            return Err(PingError::Send { addr, source });
        }
        counters.sent.fetch_add(1, Ordering::Relaxed);
        let outcome = tokio::time::timeout_at(deadline, rx).await;
        drop(registration);
        match outcome {
            Ok(Ok(received)) => Ok(Some(received.rtt(sent_at, sent_wall))),
            // The receiver task is gone only when the runtime shuts down.
            Ok(Err(_)) | Err(_) => {
                counters.timed_out.fetch_add(1, Ordering::Relaxed);
                Ok(None)
            }
        }
    }

    /// Pings `addr` as the Python bot's `multi_ping(timeout, retry)` does:
    /// `timeout` is the total time, split into `retry + 1` equal windows; a
    /// new request is sent at the start of each window until one is
    /// answered, and a late reply to an earlier request still counts. The
    /// RTT is that of the request that was answered.
    pub async fn ping_with_retry(
        &self,
        addr: IpAddr,
        timeout: Duration,
        retry: u32,
    ) -> Result<Option<Duration>, PingError> {
        self.retry_with(addr, timeout, retry, &PacketOptions::default())
            .await
    }

    /// [`ping_with_retry`](Self::ping_with_retry) with packet options.
    pub async fn retry_with(
        &self,
        addr: IpAddr,
        timeout: Duration,
        retry: u32,
        opts: &PacketOptions,
    ) -> Result<Option<Duration>, PingError> {
        if retry == 0 {
            return self.ping_with(addr, timeout, opts).await;
        }
        let window = timeout / retry.saturating_add(1);
        let start = Instant::now();
        let deadline = start + timeout;
        let mut attempts = FuturesUnordered::new();
        let mut sent = 0u32;
        let mut first_error = None;
        loop {
            // The next request starts its window; the attempts made so far
            // keep waiting until the common deadline.
            let next_start = start + window * sent;
            tokio::select! {
                () = tokio::time::sleep_until(next_start), if sent <= retry => {
                    let remaining = deadline.saturating_duration_since(Instant::now());
                    attempts.push(self.ping_with(addr, remaining, opts));
                    sent += 1;
                }
                Some(result) = attempts.next(), if !attempts.is_empty() => match result {
                    Ok(Some(rtt)) => return Ok(Some(rtt)),
                    Ok(None) => {}
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                },
                else => break,
            }
        }
        first_error.map_or(Ok(None), Err)
    }

    /// Sends `n_packets` probes to `addr` one after another, as the Python
    /// bot does: each with [`ping_with_retry`](Self::ping_with_retry), and
    /// `sleep_between` between one probe's end and the next one's start.
    /// Returns one result per packet.
    pub async fn probe(
        &self,
        addr: IpAddr,
        n_packets: u32,
        timeout: Duration,
        sleep_between: Duration,
        retry: u32,
        opts: &PacketOptions,
    ) -> Vec<Result<Option<Duration>, PingError>> {
        // Not sized by `n_packets` alone: the caller's value is not trusted
        // to be small (the collector bounds it, but this is a public API).
        let mut results = Vec::with_capacity(n_packets.min(128) as usize);
        for i in 0..n_packets {
            if i > 0 {
                tokio::time::sleep(sleep_between).await;
            }
            results.push(self.retry_with(addr, timeout, retry, opts).await);
        }
        results
    }
}

impl Endpoint {
    /// Picks a free `(identifier, sequence)` for a probe to `addr`, registers
    /// the waiter and builds the request.
    fn register(
        self: &Arc<Self>,
        addr: IpAddr,
        payload: u16,
        tx: oneshot::Sender<Received>,
    ) -> (Registration, Request) {
        let mut pending = self
            .pending
            .lock()
            .expect("the pending table is never poisoned");
        loop {
            let token = self.next_token.fetch_add(1, Ordering::Relaxed);
            let identifier = match self.socket.kernel_identifier {
                Some(id) => id,
                None => self.identifier_base.wrapping_add((token >> 16) as u16),
            };
            let sequence = token as u16;
            let key = (addr, identifier, sequence);
            // A key is reused only after 2^16 (ping socket) or 2^32 (raw
            // socket) probes; skip it if an old probe still holds it.
            if let Entry::Vacant(slot) = pending.entry(key) {
                slot.insert(Waiter { token, tx });
                let registration = Registration {
                    endpoint: self.clone(),
                    key,
                    token,
                };
                drop(pending);
                let ids = (identifier, sequence, self.cookie, token);
                let request = match (payload, self.header, addr) {
                    (MIN_PAYLOAD, None, _) => Request::Small(packet::echo_request(
                        self.family,
                        ids.0,
                        ids.1,
                        ids.2,
                        ids.3,
                    )),
                    (_, header, addr) => {
                        let header = match (header, addr) {
                            (Some(h), IpAddr::V4(dst)) => Some((h, dst)),
                            _ => None,
                        };
                        let mut buf = Vec::new();
                        let payload = payload.clamp(MIN_PAYLOAD, MAX_PAYLOAD);
                        packet::echo_request_into(&mut buf, self.family, ids, payload, header);
                        Request::Large(buf)
                    }
                };
                return (registration, request);
            }
        }
    }
}

/// An echo request ready to send: the usual 24 bytes on the stack, or a
/// larger one.
enum Request {
    Small([u8; packet::REQUEST_LEN]),
    Large(Vec<u8>),
}

impl std::ops::Deref for Request {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Self::Small(b) => b,
            Self::Large(b) => b,
        }
    }
}

/// Removes a probe's waiter when the probe ends or is dropped.
struct Registration {
    endpoint: Arc<Endpoint>,
    key: Key,
    token: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut pending = self
            .endpoint
            .pending
            .lock()
            .expect("the pending table is never poisoned");
        if pending
            .get(&self.key)
            .is_some_and(|w| w.token == self.token)
        {
            pending.remove(&self.key);
        }
    }
}

/// Wraps an open socket in an [`Endpoint`] and starts its receiver task.
/// `(random, index)` makes its cookie and identifier base.
fn start_endpoint(
    family: Family,
    socket: IcmpSocket,
    (random, index): (u64, u64),
    header: Option<V4Header>,
    counters: &Arc<Counters>,
    shutdown: &watch::Sender<()>,
) -> Arc<Endpoint> {
    let cookie = RandomState::new().hash_one((random, index));
    let endpoint = Arc::new(Endpoint {
        family,
        socket,
        cookie,
        header,
        identifier_base: (cookie >> 48) as u16,
        next_token: AtomicU64::new(0),
        pending: Mutex::new(HashMap::new()),
    });
    tokio::spawn(receive(
        endpoint.clone(),
        counters.clone(),
        shutdown.subscribe(),
    ));
    endpoint
}

/// The receiver task: reads every datagram on one socket and wakes the probe
/// each reply belongs to. Stops when the last [`Pinger`] is dropped.
async fn receive(
    endpoint: Arc<Endpoint>,
    counters: Arc<Counters>,
    mut shutdown: watch::Receiver<()>,
) {
    let socket = &endpoint.socket.socket;
    let cookie = endpoint.cookie;
    let has_ip_header = endpoint.family == Family::V4 && endpoint.socket.kind == SocketKind::Raw;
    // Room for the largest reply: the IP header and the largest request.
    let mut buf = vec![0u8; 60 + 8 + usize::from(MAX_PAYLOAD)];
    let mut cmsg = nix::cmsg_space!(nix::sys::time::TimeSpec);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => return,
            ready = socket.readable() => {
                if let Err(e) = ready {
                    tracing::warn!(error = %e, family = endpoint.family.name(), "ICMP socket failed; no more replies");
                    return;
                }
            }
        }
        // Drain everything that is queued before waiting again.
        loop {
            let (len, from, kernel) = match recv(socket, &mut buf, &mut cmsg) {
                Ok(received) => received,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::debug!(error = %e, family = endpoint.family.name(), "ICMP receive error");
                    continue;
                }
            };
            let received = Received {
                at: Instant::now(),
                kernel,
            };
            let Parsed::Reply(reply) = packet::parse(endpoint.family, has_ip_header, &buf[..len])
            else {
                continue;
            };
            let key = (from, reply.identifier, reply.sequence);
            let waiter = if reply.cookie == cookie {
                let mut pending = endpoint
                    .pending
                    .lock()
                    .expect("the pending table is never poisoned");
                match pending.get(&key) {
                    Some(w) if w.token == reply.token => pending.remove(&key),
                    _ => None,
                }
            } else {
                None
            };
            // A waiter whose probe was dropped just now counts as unmatched.
            let woken = waiter.is_some_and(|w| w.tx.send(received).is_ok());
            let counter = if woken {
                &counters.answered
            } else {
                &counters.unmatched
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Reads one datagram without waiting: its length, its sender and the
/// kernel's receive time (`SO_TIMESTAMPNS`, when the socket has it on).
fn recv(
    socket: &tokio::net::UdpSocket,
    buf: &mut [u8],
    cmsg: &mut [u8],
) -> io::Result<(usize, IpAddr, Option<SystemTime>)> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg};
    use std::os::fd::AsRawFd;
    let fd = socket.as_raw_fd();
    socket.try_io(tokio::io::Interest::READABLE, || {
        let mut iov = [io::IoSliceMut::new(buf)];
        let msg = recvmsg::<SockaddrStorage>(fd, &mut iov, Some(cmsg), MsgFlags::MSG_DONTWAIT)?;
        let kernel = msg.cmsgs().ok().and_then(|mut cmsgs| {
            cmsgs.find_map(|c| match c {
                ControlMessageOwned::ScmTimestampns(ts) => {
                    let (secs, nanos) = (u64::try_from(ts.tv_sec()).ok()?, ts.tv_nsec());
                    Some(SystemTime::UNIX_EPOCH + Duration::new(secs, u32::try_from(nanos).ok()?))
                }
                _ => None,
            })
        });
        let from = msg.address.and_then(|a| {
            a.as_sockaddr_in()
                .map(|a| IpAddr::V4(a.ip()))
                .or_else(|| a.as_sockaddr_in6().map(|a| IpAddr::V6(a.ip())))
        });
        let from = from.ok_or_else(|| io::Error::other("a datagram without a sender"))?;
        Ok((msg.bytes, from, kernel))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtt_is_taken_to_the_kernel_time_unless_the_clock_was_stepped() {
        let sent_at = Instant::now();
        let sent_wall = SystemTime::now();
        let at = sent_at + Duration::from_millis(5);
        let kernel = |d: Duration| Received {
            at,
            kernel: Some(sent_wall + d),
        };
        assert_eq!(
            kernel(Duration::from_micros(30)).rtt(sent_at, sent_wall),
            Duration::from_micros(30)
        );
        // Later than the reply was read: the clock was stepped forward.
        assert_eq!(
            kernel(Duration::from_secs(3)).rtt(sent_at, sent_wall),
            Duration::from_millis(5)
        );
        // Before the request: stepped back.
        let back = Received {
            at,
            kernel: Some(sent_wall - Duration::from_secs(1)),
        };
        assert_eq!(back.rtt(sent_at, sent_wall), Duration::from_millis(5));
        let none = Received { at, kernel: None };
        assert_eq!(none.rtt(sent_at, sent_wall), Duration::from_millis(5));
    }
}
