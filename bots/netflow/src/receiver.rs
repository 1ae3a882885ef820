//! The UDP receivers: sockets with large buffers, one [`Decoder`] and one
//! [`Shard`] each, and the kernel's drop count.
//!
//! With more than one receive socket, they share the port through
//! `SO_REUSEPORT`: the kernel hashes each datagram's source and destination
//! to one socket, so one exporter's datagrams (and its templates) always
//! reach the same socket.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use foldhash::fast::RandomState;
use prometheus_client::metrics::counter::Counter;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use crate::decode::{Decoder, Held, SourceKey};
use crate::flow::{Direction, Flow};
use crate::metrics::{ExporterLabels, NetflowMetrics, TrafficLabels};
use crate::suggest::Exporters;
use crate::window::{Shard, unix_secs};

/// The receive buffer asked for each socket: 32 MiB. The kernel caps it at
/// `net.core.rmem_max` (as root it is forced past that cap).
pub const RECEIVE_BUFFER: usize = 32 * 1024 * 1024;

/// How many datagrams a receiver reads before it lets other tasks run.
const RECEIVE_BATCH: u32 = 256;

/// How often the held data counts are read from the parser.
const HELD_POLL: Duration = Duration::from_secs(1);

/// How many exporters get series of their own on `/metrics`; further ones
/// are counted under `exporter="other"`.
pub const MAX_EXPORTER_SERIES: usize = 1000;

/// Binds `count` UDP sockets to `addr` (sharing it with `SO_REUSEPORT` when
/// more than one), with `buffer` bytes of receive buffer each. An IPv6
/// unspecified address (`[::]`) also receives IPv4, as one socket.
pub fn bind(addr: SocketAddr, count: usize, buffer: usize) -> io::Result<Vec<std::net::UdpSocket>> {
    (0..count.max(1))
        .map(|_| {
            let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
            if addr.is_ipv6() {
                socket.set_only_v6(false)?;
            }
            if count > 1 {
                socket.set_reuse_port(true)?;
            }
            // Past rmem_max only as root (SO_RCVBUFFORCE); else the cap.
            let force = nix::sys::socket::setsockopt(
                &socket,
                nix::sys::socket::sockopt::RcvBufForce,
                &buffer,
            );
            if force.is_err() {
                let _ = socket.set_recv_buffer_size(buffer);
            }
            socket.set_nonblocking(true)?;
            socket.bind(&addr.into())?;
            Ok(socket.into())
        })
        .collect()
}

/// The receive buffer the kernel gave a socket, in bytes.
pub fn receive_buffer(socket: &std::net::UdpSocket) -> usize {
    socket2::SockRef::from(socket)
        .recv_buffer_size()
        .unwrap_or(0)
}

/// The socket's inode, to find it in `/proc/net/udp`.
pub fn inode(socket: &std::net::UdpSocket) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/self/fd/{}", socket.as_raw_fd())).ok()?;
    let link = link.to_str()?;
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The kernel's drop counts of the sockets with these inodes, summed, from
/// `/proc/net/udp` and `/proc/net/udp6` (the last column).
pub fn kernel_drops(inodes: &[u64]) -> u64 {
    let mut total = 0;
    for file in ["/proc/net/udp", "/proc/net/udp6"] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (Some(inode), Some(drops)) = (cols.get(9), cols.last()) else {
                continue;
            };
            if inode.parse().is_ok_and(|i: u64| inodes.contains(&i)) {
                total += drops.parse::<u64>().unwrap_or(0);
            }
        }
    }
    total
}

/// One exporter's cached instrument handles, so that a datagram costs no
/// label formatting.
#[derive(Debug)]
struct ExporterSeries {
    datagrams: Counter,
    malformed: Counter,
    template_misses: Counter,
    skipped: Counter,
    sequence_lost: Counter,
    sampling: prometheus_client::metrics::gauge::Gauge,
    held: Counter,
    held_replayed: Counter,
    held_dropped: Counter,
    traffic: HashMap<(u32, Direction), (Counter, Counter), RandomState>,
    exporter: String,
}

/// One receive socket's loop: reads datagrams until `shutdown`, decodes
/// them, and counts their flows in `shard` and on `/metrics`.
#[derive(Debug)]
pub struct Receiver {
    socket: Arc<UdpSocket>,
    decoder: Decoder,
    shard: Arc<Mutex<Shard>>,
    metrics: NetflowMetrics,
    series: HashMap<IpAddr, ExporterSeries, RandomState>,
    flows: Vec<Flow>,
    per_interface: Vec<(u32, Direction, u64, u64)>,
    exporters: Exporters,
    /// The exporters given to `exporters` already.
    noted: std::collections::HashSet<IpAddr, RandomState>,
    /// The held data counts last put on `/metrics`, per source.
    held: HashMap<SourceKey, Held, RandomState>,
    held_at: Instant,
}

impl Receiver {
    /// A receiver on `socket` (bound by [`bind`]).
    pub fn new(
        socket: Arc<UdpSocket>,
        decoder: Decoder,
        shard: Arc<Mutex<Shard>>,
        metrics: NetflowMetrics,
        exporters: Exporters,
    ) -> Self {
        Self {
            socket,
            decoder,
            shard,
            metrics,
            series: HashMap::default(),
            flows: Vec::with_capacity(1024),
            per_interface: Vec::new(),
            exporters,
            noted: Default::default(),
            held: HashMap::default(),
            held_at: Instant::now(),
        }
    }

    /// Receives until `shutdown` is cancelled.
    pub async fn run(mut self, shutdown: CancellationToken) -> io::Result<()> {
        let mut buf = vec![0u8; 65_536];
        let mut poll = tokio::time::interval(HELD_POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = poll.tick() => {
                    self.poll_held();
                    continue;
                }
                ready = self.socket.readable() => ready?,
            }
            // Drain what is there before waiting again, but give the
            // runtime back its worker every so often: under a steady
            // stream the socket is never empty, and the closer, the jobs,
            // the admin server and the shutdown must still run.
            let mut budget = RECEIVE_BATCH;
            loop {
                if budget == 0 {
                    if shutdown.is_cancelled() {
                        return Ok(());
                    }
                    self.poll_held();
                    tokio::task::yield_now().await;
                    budget = RECEIVE_BATCH;
                }
                budget -= 1;
                match self.socket.try_recv_from(&mut buf) {
                    Ok((n, from)) => self.datagram(from, &buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    // ICMP errors and the like on a UDP socket: not fatal.
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
                    Err(e) => return Err(e),
                }
            }
        }
    }

    /// Decodes and counts one datagram.
    pub fn datagram(&mut self, from: SocketAddr, datagram: &[u8]) {
        let from = SocketAddr::new(from.ip().to_canonical(), from.port());
        let exporter = from.ip();
        self.flows.clear();
        let report = self.decoder.decode(from, datagram, &mut self.flows);
        let minute = unix_secs(SystemTime::now()) / 60;
        if !self.flows.is_empty() {
            let mut shard = self.shard.lock().unwrap_or_else(|e| e.into_inner());
            let traffic = shard.minute(minute);
            for flow in &self.flows {
                traffic.add(exporter, flow);
            }
        }
        // The counters, per interface and direction of this datagram.
        self.per_interface.clear();
        for flow in &self.flows {
            let key = (flow.interface(), flow.direction);
            match self
                .per_interface
                .iter_mut()
                .find(|(i, d, _, _)| (*i, *d) == key)
            {
                Some(entry) => {
                    entry.2 = entry.2.saturating_add(flow.bytes);
                    entry.3 += 1;
                }
                None => self.per_interface.push((key.0, key.1, flow.bytes, 1)),
            }
        }
        if !self.flows.is_empty()
            && self.noted.len() < Exporters::MAX
            && self.noted.insert(exporter)
        {
            // Its first flows on this socket: a candidate for an entity
            // suggestion.
            self.exporters.insert(exporter);
        }
        let series = self.series(exporter);
        series.datagrams.inc();
        if report.malformed {
            series.malformed.inc();
        }
        if report.skipped > 0 {
            series.skipped.inc_by(report.skipped);
        }
        if report.template_misses > 0 {
            series.template_misses.inc_by(report.template_misses);
        }
        if report.sequence_lost > 0 {
            series.sequence_lost.inc_by(report.sequence_lost);
        }
        if report.version != 0 {
            series.sampling.set(i64::from(report.sampling));
        }
        let per_interface = std::mem::take(&mut self.per_interface);
        for (interface, direction, bytes, flows) in &per_interface {
            self.count_traffic(exporter, *interface, *direction, *bytes, *flows);
        }
        self.per_interface = per_interface;
    }

    /// Puts what became of held data on `/metrics`, at most once a second
    /// (the parser's counts are per source, read whole).
    fn poll_held(&mut self) {
        if self.held_at.elapsed() < HELD_POLL {
            return;
        }
        self.held_at = Instant::now();
        let mut seen = HashMap::default();
        for (source, now) in self.decoder.held() {
            let before = self.held.get(&source).copied().unwrap_or_default();
            // A source the parser forgot and made afresh counts from zero.
            let since = |now: u64, before: u64| now.checked_sub(before).unwrap_or(now);
            let (held, replayed, dropped) = (
                since(now.held, before.held),
                since(now.replayed, before.replayed),
                since(now.dropped, before.dropped),
            );
            if held + replayed + dropped > 0 {
                let series = self.series(source.0.ip().to_canonical());
                series.held.inc_by(held);
                series.held_replayed.inc_by(replayed);
                series.held_dropped.inc_by(dropped);
            }
            seen.insert(source, now);
        }
        self.held = seen;
    }

    fn series(&mut self, exporter: IpAddr) -> &mut ExporterSeries {
        Self::series_of(&mut self.series, &self.metrics, exporter)
    }

    fn series_of<'a>(
        all: &'a mut HashMap<IpAddr, ExporterSeries, RandomState>,
        metrics: &NetflowMetrics,
        exporter: IpAddr,
    ) -> &'a mut ExporterSeries {
        let full = all.len() >= MAX_EXPORTER_SERIES;
        let key = if full && !all.contains_key(&exporter) {
            IpAddr::from([0u8; 4])
        } else {
            exporter
        };
        all.entry(key).or_insert_with(|| {
            let name = if full {
                "other".to_string()
            } else {
                exporter.to_string()
            };
            let labels = ExporterLabels {
                exporter: name.clone(),
            };
            ExporterSeries {
                datagrams: metrics.datagrams.get_or_create(&labels).clone(),
                malformed: metrics.malformed.get_or_create(&labels).clone(),
                template_misses: metrics.template_misses.get_or_create(&labels).clone(),
                skipped: metrics.skipped.get_or_create(&labels).clone(),
                sequence_lost: metrics.sequence_lost.get_or_create(&labels).clone(),
                sampling: metrics.sampling.get_or_create(&labels).clone(),
                held: metrics.held.get_or_create(&labels).clone(),
                held_replayed: metrics.held_replayed.get_or_create(&labels).clone(),
                held_dropped: metrics.held_dropped.get_or_create(&labels).clone(),
                traffic: HashMap::default(),
                exporter: name,
            }
        })
    }

    fn count_traffic(
        &mut self,
        exporter: IpAddr,
        interface: u32,
        direction: Direction,
        bytes: u64,
        flows: u64,
    ) {
        let metrics = &self.metrics;
        let series = Self::series_of(&mut self.series, metrics, exporter);
        if let Some((b, f)) = series.traffic.get(&(interface, direction)) {
            b.inc_by(bytes);
            f.inc_by(flows);
            return;
        }
        // A new series: past the aggregate's interface cap, one for the rest.
        let capped = series.traffic.len() >= crate::aggregate::MAX_INTERFACES;
        let key = if capped {
            (u32::MAX, direction)
        } else {
            (interface, direction)
        };
        let labels = TrafficLabels {
            exporter: series.exporter.clone(),
            interface: if capped {
                "other".into()
            } else {
                interface.to_string()
            },
            direction: direction.as_str().into(),
        };
        let (b, f) = series.traffic.entry(key).or_insert_with(|| {
            (
                metrics.bytes.get_or_create(&labels).clone(),
                metrics.flows.get_or_create(&labels).clone(),
            )
        });
        b.inc_by(bytes);
        f.inc_by(flows);
    }
}
