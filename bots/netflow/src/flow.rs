//! One flow record as the bot counts it, whatever version it came in.

use std::net::{IpAddr, Ipv4Addr};

/// Which way a flow went through the exporter's interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// Into the exporter: counted on `INPUT_SNMP`, top lists by source IP.
    /// A flow without a `DIRECTION` field, and every v5 flow, is ingress.
    Ingress,
    /// Out of the exporter: counted on `OUTPUT_SNMP`, top lists by
    /// destination IP.
    Egress,
}

impl Direction {
    /// Both directions, ingress first.
    pub const BOTH: [Direction; 2] = [Direction::Ingress, Direction::Egress];

    /// The path segment: `ingress` or `egress`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }

    /// The index into per-direction arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// From the v9/IPFIX `DIRECTION` / `flowDirection` field (61): 0 is
    /// ingress, 1 egress; any other value is neither, and such a flow is
    /// not counted (the Python bot stored it, and no query ever counted it).
    pub fn from_field(value: u64) -> Option<Self> {
        match value {
            0 => Some(Direction::Ingress),
            1 => Some(Direction::Egress),
            _ => None,
        }
    }
}

/// One flow, with the fields the bot counts. Its bytes are already
/// multiplied by the exporter's sampling rate when sampling is applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow {
    /// Bytes (`IN_BYTES`, v5 `dOctets`, IPFIX `octetDeltaCount`).
    pub bytes: u64,
    /// Packets, for the flow counters on `/metrics`.
    pub packets: u64,
    /// The IP protocol number.
    pub protocol: u8,
    /// Source address (IPv6 when the record has one, as the Python bot's writer does).
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port (0 when absent).
    pub src_port: u16,
    /// Destination port (0 when absent).
    pub dst_port: u16,
    /// `INPUT_SNMP` (0 when absent).
    pub input: u32,
    /// `OUTPUT_SNMP` (0 when absent).
    pub output: u32,
    /// Ingress or egress.
    pub direction: Direction,
}

impl Default for Flow {
    fn default() -> Self {
        Self {
            bytes: 0,
            packets: 0,
            protocol: 0,
            src: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            dst: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            src_port: 0,
            dst_port: 0,
            input: 0,
            output: 0,
            direction: Direction::Ingress,
        }
    }
}

impl Flow {
    /// The interface the flow is counted on: `INPUT_SNMP` for ingress,
    /// `OUTPUT_SNMP` for egress.
    pub fn interface(&self) -> u32 {
        match self.direction {
            Direction::Ingress => self.input,
            Direction::Egress => self.output,
        }
    }

    /// The address in the IP top lists: the source for ingress, the
    /// destination for egress.
    pub fn top_ip(&self) -> IpAddr {
        match self.direction {
            Direction::Ingress => self.src,
            Direction::Egress => self.dst,
        }
    }
}
