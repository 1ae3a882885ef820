//! What one stretch of time's flows add up to, per exporter and direction:
//! the totals, per interface, and the keys of the top lists.
//!
//! A receive thread adds every flow to the [`Traffic`] of the minute it
//! arrived in; at the minute's end the windows merge it into the longer
//! windows (see [`crate::window`]). Every map is a [`TopMap`], so the memory
//! of a window has a cap and its exactness is known.

use std::collections::HashMap;
use std::net::IpAddr;

use foldhash::fast::RandomState;
use serde::{Deserialize, Serialize};

use crate::flow::{Direction, Flow};
use crate::topn::TopMap;

/// How many entries each top list has.
pub const TOP_N: usize = 10;

/// How many keys each top-list map holds exactly before it starts to
/// forget the smallest (see [`crate::topn`]); `--top-keys` sets it.
pub const DEFAULT_TOP_KEYS: usize = 20_000;

/// The per-interface IP maps hold a quarter of the keys of the exporter's
/// (an exporter has many interfaces, and each interface a share of its
/// addresses).
pub fn interface_cap(cap: usize) -> usize {
    (cap / 4).max(1000)
}

/// How many exporters one stretch of time counts apart; the flows of
/// further exporters (a flood of spoofed sources) are not counted, and
/// [`Traffic::exporters_dropped`] says how many were.
pub const MAX_EXPORTERS: usize = 10_000;

/// How many interfaces of one exporter are counted apart; the flows of
/// further interfaces are counted in the exporter's totals only, and
/// [`DirectionTraffic::interfaces_dropped`] says so.
pub const MAX_INTERFACES: usize = 4096;

/// One interface's bytes and top lists, for one direction.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InterfaceTraffic {
    /// All bytes.
    pub bytes: u64,
    /// Bytes per IP (source for ingress, destination for egress).
    pub ips: TopMap<IpAddr>,
    /// Bytes per IP protocol.
    pub protocols: TopMap<u8>,
}

impl InterfaceTraffic {
    fn new(cap: usize, minute: bool) -> Self {
        Self {
            bytes: 0,
            ips: map(interface_cap(cap), minute),
            protocols: TopMap::new(256),
        }
    }

    fn merge(&mut self, other: &InterfaceTraffic) {
        self.bytes = self.bytes.saturating_add(other.bytes);
        self.ips.merge(&other.ips);
        self.protocols.merge(&other.protocols);
    }
}

/// One exporter's traffic in one direction.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DirectionTraffic {
    /// All bytes.
    pub bytes: u64,
    /// Flows (records) counted.
    pub flows: u64,
    /// Per interface.
    pub interfaces: HashMap<u32, InterfaceTraffic, RandomState>,
    /// Flows (when counted) and interfaces (when merged from another
    /// stretch) past [`MAX_INTERFACES`], counted only in `bytes`.
    pub interfaces_dropped: u64,
    /// Bytes per IP (source for ingress, destination for egress).
    pub ips: TopMap<IpAddr>,
    /// Bytes per IP protocol.
    pub protocols: TopMap<u8>,
    /// Bytes per (source, destination) pair.
    pub connections: TopMap<(IpAddr, IpAddr)>,
    /// Bytes per destination port.
    pub dst_ports: TopMap<u16>,
    cap: usize,
    minute: bool,
}

/// A top-list map: a minute's, fed flow by flow, prunes less often (at
/// twice its cap); a window's, fed a minute at a time, at 1.25 times.
fn map<K: std::hash::Hash + Eq + Clone + Ord>(cap: usize, minute: bool) -> TopMap<K> {
    if minute {
        TopMap::with_slack(cap, cap)
    } else {
        TopMap::new(cap)
    }
}

impl DirectionTraffic {
    /// Empty, with `cap` keys per top-list map; `minute` for a minute's
    /// (fed flow by flow), else a window's.
    pub fn new(cap: usize, minute: bool) -> Self {
        Self {
            bytes: 0,
            flows: 0,
            interfaces: HashMap::default(),
            interfaces_dropped: 0,
            ips: map(cap, minute),
            protocols: TopMap::new(256),
            connections: map(cap, minute),
            dst_ports: map(cap.min(65_536), minute),
            cap,
            minute,
        }
    }

    /// Counts one flow.
    #[inline]
    pub fn add(&mut self, flow: &Flow) {
        self.add_key(&FlowKey::new(flow), flow.bytes, 1);
    }

    /// Counts `flows` flows of one key, of `bytes` in all.
    #[inline]
    fn add_key(&mut self, key: &FlowKey, bytes: u64, flows: u64) {
        self.bytes = self.bytes.saturating_add(bytes);
        self.flows += flows;
        let ip = key.top_ip();
        let (cap, minute) = (self.cap, self.minute);
        let n = self.interfaces.len();
        match self.interfaces.get_mut(&key.interface) {
            Some(i) => add_interface(i, ip, key.protocol, bytes),
            None if n < MAX_INTERFACES => {
                let i = self
                    .interfaces
                    .entry(key.interface)
                    .or_insert_with(|| InterfaceTraffic::new(cap, minute));
                add_interface(i, ip, key.protocol, bytes);
            }
            None => self.interfaces_dropped += flows,
        }
        self.ips.add(ip, bytes);
        self.protocols.add(key.protocol, bytes);
        self.connections.add((key.src, key.dst), bytes);
        self.dst_ports.add(key.dst_port, bytes);
    }

    /// Adds everything `other` counted.
    pub fn merge(&mut self, other: &DirectionTraffic) {
        self.bytes = self.bytes.saturating_add(other.bytes);
        self.flows += other.flows;
        self.interfaces_dropped += other.interfaces_dropped;
        for (index, traffic) in &other.interfaces {
            let n = self.interfaces.len();
            match self.interfaces.get_mut(index) {
                Some(mine) => mine.merge(traffic),
                None if n < MAX_INTERFACES => {
                    self.interfaces.insert(*index, traffic.clone());
                }
                None => self.interfaces_dropped += 1,
            }
        }
        self.ips.merge(&other.ips);
        self.protocols.merge(&other.protocols);
        self.connections.merge(&other.connections);
        self.dst_ports.merge(&other.dst_ports);
    }

    /// Keeps only what a closed window's values need: the top `n` of every map.
    pub fn keep_top(&mut self, n: usize) {
        self.ips.keep_top(n);
        self.protocols.keep_top(n);
        self.connections.keep_top(n);
        self.dst_ports.keep_top(n);
        for i in self.interfaces.values_mut() {
            i.ips.keep_top(n);
            i.protocols.keep_top(n);
        }
    }

    /// Whether every top list is exact (nothing was forgotten past a cap).
    pub fn exact(&self) -> bool {
        self.ips.exact()
            && self.connections.exact()
            && self.dst_ports.exact()
            && self
                .interfaces
                .values()
                .all(|i| i.ips.exact() && i.protocols.exact())
    }

    /// How many keys it holds, over all its maps.
    pub fn keys(&self) -> usize {
        self.ips.len()
            + self.protocols.len()
            + self.connections.len()
            + self.dst_ports.len()
            + self
                .interfaces
                .values()
                .map(|i| i.ips.len() + i.protocols.len())
                .sum::<usize>()
    }
}

#[inline]
fn add_interface(i: &mut InterfaceTraffic, ip: IpAddr, protocol: u8, bytes: u64) {
    i.bytes = i.bytes.saturating_add(bytes);
    i.ips.add(ip, bytes);
    i.protocols.add(protocol, bytes);
}

/// Everything counted in one stretch of time: per exporter, per direction.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Traffic {
    exporters: HashMap<IpAddr, [DirectionTraffic; 2], RandomState>,
    cap: usize,
    minute: bool,
    /// Flows of exporters past [`MAX_EXPORTERS`], not counted.
    pub exporters_dropped: u64,
}

impl Traffic {
    /// A window's: empty, with `cap` keys per top-list map.
    pub fn new(cap: usize) -> Self {
        Self {
            exporters: HashMap::default(),
            cap,
            minute: false,
            exporters_dropped: 0,
        }
    }

    /// A minute's, fed flow by flow: its maps prune at twice `cap`, so
    /// that a stream of ever new keys costs about two key moves per flow.
    fn minute(cap: usize) -> Self {
        Self {
            minute: true,
            ..Self::new(cap)
        }
    }

    /// Counts one flow of `exporter`.
    #[inline]
    pub fn add(&mut self, exporter: IpAddr, flow: &Flow) {
        self.add_key(exporter, &FlowKey::new(flow), flow.bytes, 1);
    }

    /// Counts `flows` flows of `exporter` with one key, of `bytes` in all.
    #[inline]
    fn add_key(&mut self, exporter: IpAddr, key: &FlowKey, bytes: u64, flows: u64) {
        let (cap, minute) = (self.cap, self.minute);
        let n = self.exporters.len();
        let dirs = match self.exporters.get_mut(&exporter) {
            Some(dirs) => dirs,
            None if n < MAX_EXPORTERS => self.exporters.entry(exporter).or_insert_with(|| {
                [
                    DirectionTraffic::new(cap, minute),
                    DirectionTraffic::new(cap, minute),
                ]
            }),
            None => {
                self.exporters_dropped += flows;
                return;
            }
        };
        dirs[key.direction.index()].add_key(key, bytes, flows);
    }

    /// Adds everything `other` counted.
    pub fn merge(&mut self, other: &Traffic) {
        self.exporters_dropped += other.exporters_dropped;
        for (exporter, dirs) in &other.exporters {
            let n = self.exporters.len();
            match self.exporters.get_mut(exporter) {
                Some(mine) => {
                    mine[0].merge(&dirs[0]);
                    mine[1].merge(&dirs[1]);
                }
                None if n < MAX_EXPORTERS => {
                    self.exporters.insert(*exporter, dirs.clone());
                }
                None => self.exporters_dropped += dirs[0].flows + dirs[1].flows,
            }
        }
    }

    /// One exporter's traffic in one direction, if it sent any.
    pub fn get(&self, exporter: &IpAddr, direction: Direction) -> Option<&DirectionTraffic> {
        self.exporters.get(exporter).map(|d| &d[direction.index()])
    }

    /// The exporters that sent flows.
    pub fn exporters(&self) -> impl Iterator<Item = &IpAddr> {
        self.exporters.keys()
    }

    /// Keeps only the top `n` of every map (see [`DirectionTraffic::keep_top`]).
    pub fn keep_top(&mut self, n: usize) {
        for d in self.exporters.values_mut() {
            d[0].keep_top(n);
            d[1].keep_top(n);
        }
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.exporters.is_empty()
    }

    /// Whether every top list is exact.
    pub fn exact(&self) -> bool {
        self.exporters
            .values()
            .all(|d| d[0].exact() && d[1].exact())
    }

    /// How many keys it holds, over all its maps.
    pub fn keys(&self) -> usize {
        self.exporters
            .values()
            .map(|d| d[0].keys() + d[1].keys())
            .sum()
    }

    /// How many keys each exporter's flows hold, over all its maps.
    pub fn exporter_keys(&self) -> impl Iterator<Item = (IpAddr, usize)> + '_ {
        self.exporters
            .iter()
            .map(|(e, d)| (*e, d[0].keys() + d[1].keys()))
    }
}

/// What the maps of a minute need of a flow: two flows with the same key
/// count the same everywhere, so a minute adds them up first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct FlowKey {
    src: IpAddr,
    dst: IpAddr,
    interface: u32,
    dst_port: u16,
    protocol: u8,
    direction: Direction,
}

impl FlowKey {
    #[inline]
    fn new(flow: &Flow) -> Self {
        Self {
            src: flow.src,
            dst: flow.dst,
            interface: flow.interface(),
            dst_port: flow.dst_port,
            protocol: flow.protocol,
            direction: flow.direction,
        }
    }

    /// The address in the IP top lists (see [`Flow::top_ip`]).
    #[inline]
    fn top_ip(&self) -> IpAddr {
        match self.direction {
            Direction::Ingress => self.src,
            Direction::Egress => self.dst,
        }
    }
}

/// How many distinct flow keys a [`Minute`] adds up before it counts them
/// into its maps: the most a table of 65,536 entries holds, 5.3 MB.
pub const MINUTE_CACHE_KEYS: usize = 57_344;

/// One receive thread's minute, fed flow by flow.
///
/// A router repeats the same flows all minute long (active timeouts, many
/// routers exporting the same conversations), and every flow touches seven
/// maps. So a minute first adds flows up per key (exporter, direction,
/// interface, addresses, protocol and port) in one map of up to
/// [`MINUTE_CACHE_KEYS`] keys, and counts each key into the seven maps
/// once, when that map is full or the minute ends: the same sums, for one
/// hash lookup per flow.
#[derive(Debug)]
pub struct Minute {
    cache: HashMap<(IpAddr, FlowKey), (u64, u64), RandomState>,
    traffic: Traffic,
    limit: usize,
}

impl Minute {
    /// An empty minute, with `cap` keys per top-list map.
    pub fn new(cap: usize) -> Self {
        Self::with_cache(cap, MINUTE_CACHE_KEYS)
    }

    /// An empty minute that adds up at most `limit` flow keys at a time.
    pub fn with_cache(cap: usize, limit: usize) -> Self {
        Self {
            cache: HashMap::default(),
            traffic: Traffic::minute(cap),
            limit: limit.max(1),
        }
    }

    /// Counts one flow of `exporter`.
    #[inline]
    pub fn add(&mut self, exporter: IpAddr, flow: &Flow) {
        let key = (exporter, FlowKey::new(flow));
        if let Some((bytes, flows)) = self.cache.get_mut(&key) {
            *bytes = bytes.saturating_add(flow.bytes);
            *flows += 1;
            return;
        }
        if self.cache.len() >= self.limit {
            self.flush();
        }
        self.cache.insert(key, (flow.bytes, 1));
    }

    fn flush(&mut self) {
        for ((exporter, key), (bytes, flows)) in self.cache.drain() {
            self.traffic.add_key(exporter, &key, bytes, flows);
        }
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.cache.is_empty() && self.traffic.is_empty()
    }

    /// Everything the minute counted.
    pub fn into_traffic(mut self) -> Traffic {
        self.flush();
        self.traffic
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(src: &str, dst: &str, bytes: u64, input: u32, output: u32, dir: Direction) -> Flow {
        Flow {
            bytes,
            packets: 1,
            protocol: 6,
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            src_port: 1000,
            dst_port: 443,
            input,
            output,
            direction: dir,
        }
    }

    #[test]
    fn ingress_counts_by_input_and_source_egress_by_output_and_destination() {
        let exporter: IpAddr = "192.0.2.1".parse().unwrap();
        let mut t = Traffic::new(100);
        t.add(
            exporter,
            &flow("10.0.0.1", "10.0.0.2", 100, 3, 4, Direction::Ingress),
        );
        t.add(
            exporter,
            &flow("10.0.0.1", "10.0.0.2", 50, 3, 4, Direction::Egress),
        );
        let ingress = t.get(&exporter, Direction::Ingress).unwrap();
        assert_eq!(ingress.bytes, 100);
        assert_eq!(ingress.interfaces[&3].bytes, 100);
        assert!(!ingress.interfaces.contains_key(&4));
        assert_eq!(
            ingress.ips.top(1)[0].0,
            &"10.0.0.1".parse::<IpAddr>().unwrap()
        );
        let egress = t.get(&exporter, Direction::Egress).unwrap();
        assert_eq!(egress.interfaces[&4].bytes, 50);
        assert_eq!(
            egress.ips.top(1)[0].0,
            &"10.0.0.2".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn merging_two_minutes_adds_them() {
        let exporter: IpAddr = "192.0.2.1".parse().unwrap();
        let mut a = Traffic::new(100);
        let mut b = Traffic::new(100);
        a.add(
            exporter,
            &flow("10.0.0.1", "10.0.0.2", 100, 3, 0, Direction::Ingress),
        );
        b.add(
            exporter,
            &flow("10.0.0.1", "10.0.0.2", 20, 3, 0, Direction::Ingress),
        );
        b.add(
            exporter,
            &flow("10.0.0.9", "10.0.0.2", 7, 5, 0, Direction::Ingress),
        );
        a.merge(&b);
        let i = a.get(&exporter, Direction::Ingress).unwrap();
        assert_eq!(i.bytes, 127);
        assert_eq!(i.flows, 3);
        assert_eq!(i.interfaces[&3].bytes, 120);
        assert_eq!(i.interfaces[&5].bytes, 7);
        assert!(a.exact());
    }

    #[test]
    fn a_minute_counts_what_its_maps_would_have_counted_flow_by_flow() {
        // Flows with keys that repeat and keys that do not, through caches
        // that flush every few keys and one that never does.
        let exporters: [IpAddr; 2] = ["192.0.2.1".parse().unwrap(), "2001:db8::1".parse().unwrap()];
        let mut flows = Vec::new();
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..5000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut f = flow(
                &format!("10.0.{}.{}", x % 3, (x >> 8) % 40),
                &format!("10.1.0.{}", (x >> 16) % 30),
                (x >> 24) % 1500,
                ((x >> 32) % 4) as u32,
                ((x >> 36) % 4) as u32,
                if (x >> 40).is_multiple_of(3) {
                    Direction::Egress
                } else {
                    Direction::Ingress
                },
            );
            f.dst_port = ((x >> 44) % 7) as u16;
            f.protocol = [6, 17, 1][((x >> 50) % 3) as usize];
            flows.push((exporters[((x >> 60) % 2) as usize], f));
        }
        let mut direct = Traffic::minute(10_000);
        for (e, f) in &flows {
            direct.add(*e, f);
        }
        for limit in [1, 7, 100, usize::MAX] {
            let mut minute = Minute::with_cache(10_000, limit);
            for (e, f) in &flows {
                minute.add(*e, f);
            }
            let counted = minute.into_traffic();
            for e in &exporters {
                for d in Direction::BOTH {
                    let (a, b) = (direct.get(e, d).unwrap(), counted.get(e, d).unwrap());
                    assert_eq!((a.bytes, a.flows), (b.bytes, b.flows), "limit {limit}");
                    assert_eq!(a.ips.top(1000), b.ips.top(1000));
                    assert_eq!(a.protocols.top(10), b.protocols.top(10));
                    assert_eq!(a.connections.top(10_000), b.connections.top(10_000));
                    assert_eq!(a.dst_ports.top(100), b.dst_ports.top(100));
                    assert_eq!(a.interfaces.len(), b.interfaces.len());
                    for (i, t) in &a.interfaces {
                        assert_eq!(t.bytes, b.interfaces[i].bytes);
                        assert_eq!(t.ips.top(1000), b.interfaces[i].ips.top(1000));
                    }
                }
            }
            assert!(counted.exact());
        }
    }
}
