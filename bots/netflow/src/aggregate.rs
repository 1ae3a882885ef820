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
        let bytes = flow.bytes;
        self.bytes = self.bytes.saturating_add(bytes);
        self.flows += 1;
        let ip = flow.top_ip();
        let interface = flow.interface();
        let (cap, minute) = (self.cap, self.minute);
        let n = self.interfaces.len();
        match self.interfaces.get_mut(&interface) {
            Some(i) => add_interface(i, ip, flow.protocol, bytes),
            None if n < MAX_INTERFACES => {
                let i = self
                    .interfaces
                    .entry(interface)
                    .or_insert_with(|| InterfaceTraffic::new(cap, minute));
                add_interface(i, ip, flow.protocol, bytes);
            }
            None => self.interfaces_dropped += 1,
        }
        self.ips.add(ip, bytes);
        self.protocols.add(flow.protocol, bytes);
        self.connections.add((flow.src, flow.dst), bytes);
        self.dst_ports.add(flow.dst_port, bytes);
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
    pub fn minute(cap: usize) -> Self {
        Self {
            minute: true,
            ..Self::new(cap)
        }
    }

    /// Counts one flow of `exporter`.
    #[inline]
    pub fn add(&mut self, exporter: IpAddr, flow: &Flow) {
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
                self.exporters_dropped += 1;
                return;
            }
        };
        dirs[flow.direction.index()].add(flow);
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
}
