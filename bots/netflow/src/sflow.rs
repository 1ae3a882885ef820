//! sFlow v5: packet samples to flows.
//!
//! An sFlow agent does not export flows but samples packets: one in N,
//! with the first bytes of each (its header) and the interfaces it crossed.
//! Each sample counts here as a flow of its frame's length times N (what
//! pmacct's sfacctd counts), with the addresses, protocol and ports read
//! from the header ([etherparse](https://docs.rs/etherparse)), or from a
//! sampled IPv4/IPv6 record. The datagrams are parsed by
//! [flowparser-sflow](https://docs.rs/flowparser-sflow).
//!
//! sFlow has no direction: a sample counts as ingress on its input
//! interface (0 when the agent does not know it), as a v5 flow does.
//! An sFlow datagram starts with the 32-bit version 5, where a NetFlow
//! datagram has a 16-bit version, so both come to the same port.

use std::net::IpAddr;

use etherparse::{LaxNetSlice, LaxSlicedPacket, TransportSlice};
use flowparser_sflow::{AddressType, FlowRecord, SflowParser, SflowSample};

use crate::flow::{Direction, Flow};

/// The most samples one datagram may hold (the largest datagram holds
/// fewer than 1,000 of the smallest samples).
const MAX_SAMPLES: u32 = 4096;

/// An ifIndex in sFlow's 32-bit interface field: the top two bits are the
/// format (0: an ifIndex; 1: dropped; 2: several interfaces), and
/// 0x3fffffff is "not known".
fn if_index(format: u32, value: u32) -> u32 {
    if format == 0 && value != 0x3fff_ffff {
        value
    } else {
        0
    }
}

/// Whether a datagram is sFlow v5 (a 32-bit version 5), not NetFlow.
pub fn is_sflow(datagram: &[u8]) -> bool {
    datagram.starts_with(&[0, 0, 0, 5])
}

/// What one sFlow datagram gave.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SflowReport {
    /// The agent address and sub-agent id, and the datagram's sequence
    /// number, to count datagrams lost on the way.
    pub sequence: Option<(IpAddr, u32, u32)>,
    /// The largest sampling rate of its samples.
    pub sampling: u32,
    /// Samples that gave no flow (a header that is not IP, or no header).
    pub skipped: u64,
    /// The datagram, or part of it, could not be parsed.
    pub malformed: bool,
}

/// Reads sFlow v5 datagrams.
#[derive(Debug)]
pub struct SflowDecoder {
    parser: SflowParser,
}

impl Default for SflowDecoder {
    fn default() -> Self {
        Self {
            parser: SflowParser::builder().with_max_samples(MAX_SAMPLES).build(),
        }
    }
}

impl SflowDecoder {
    /// Appends the flows of `datagram`'s flow samples to `out`, their bytes
    /// and packets times the sampling rate when `apply_sampling`.
    pub fn decode(
        &self,
        datagram: &[u8],
        apply_sampling: bool,
        out: &mut Vec<Flow>,
    ) -> SflowReport {
        let result = self.parser.parse_bytes(datagram);
        let mut report = SflowReport {
            malformed: result.error.is_some(),
            sampling: 1,
            ..SflowReport::default()
        };
        for d in &result.datagrams {
            let agent = match d.agent_address {
                AddressType::IPv4(a) => IpAddr::V4(a),
                AddressType::IPv6(a) => IpAddr::V6(a),
            };
            report.sequence = Some((agent, d.sub_agent_id, d.sequence_number));
            for sample in &d.samples {
                let (rate, input, output, records) = match sample {
                    SflowSample::Flow(f) => (
                        f.sampling_rate,
                        if_index(f.input >> 30, f.input & 0x3fff_ffff),
                        if_index(f.output >> 30, f.output & 0x3fff_ffff),
                        &f.records,
                    ),
                    SflowSample::ExpandedFlow(f) => (
                        f.sampling_rate,
                        if_index(f.input_format, f.input_value),
                        if_index(f.output_format, f.output_value),
                        &f.records,
                    ),
                    _ => continue,
                };
                let Some(mut flow) = records.iter().find_map(record_flow) else {
                    report.skipped += 1;
                    continue;
                };
                let rate = if apply_sampling { rate.max(1) } else { 1 };
                report.sampling = report.sampling.max(rate);
                flow.bytes = flow.bytes.saturating_mul(u64::from(rate));
                flow.packets = u64::from(rate);
                flow.input = input;
                flow.output = output;
                out.push(flow);
            }
        }
        report
    }
}

/// A flow of one packet from a sample's record, if the record is a header
/// of an IP packet or a sampled IPv4/IPv6 record.
fn record_flow(record: &FlowRecord) -> Option<Flow> {
    match record {
        FlowRecord::RawPacketHeader(h) => {
            let packet = match h.header_protocol {
                1 => LaxSlicedPacket::from_ethernet(&h.header).ok()?,
                11 | 12 => LaxSlicedPacket::from_ip(&h.header).ok()?,
                _ => return None,
            };
            let (src, dst, protocol) = match packet.net.as_ref()? {
                LaxNetSlice::Ipv4(ip) => (
                    IpAddr::V4(ip.header().source_addr()),
                    IpAddr::V4(ip.header().destination_addr()),
                    ip.payload().ip_number.0,
                ),
                LaxNetSlice::Ipv6(ip) => (
                    IpAddr::V6(ip.header().source_addr()),
                    IpAddr::V6(ip.header().destination_addr()),
                    ip.payload().ip_number.0,
                ),
                LaxNetSlice::Arp(_) => return None,
            };
            let (src_port, dst_port) = match &packet.transport {
                Some(TransportSlice::Tcp(t)) => (t.source_port(), t.destination_port()),
                Some(TransportSlice::Udp(u)) => (u.source_port(), u.destination_port()),
                _ => (0, 0),
            };
            Some(Flow {
                bytes: u64::from(h.frame_length),
                protocol,
                src,
                dst,
                src_port,
                dst_port,
                ..Flow::default()
            })
        }
        FlowRecord::SampledIpv4(r) => Some(Flow {
            bytes: u64::from(r.length),
            protocol: u8::try_from(r.protocol).ok()?,
            src: IpAddr::V4(r.src_ip),
            dst: IpAddr::V4(r.dst_ip),
            src_port: u16::try_from(r.src_port).ok()?,
            dst_port: u16::try_from(r.dst_port).ok()?,
            ..Flow::default()
        }),
        FlowRecord::SampledIpv6(r) => Some(Flow {
            bytes: u64::from(r.length),
            protocol: u8::try_from(r.protocol).ok()?,
            src: IpAddr::V6(r.src_ip),
            dst: IpAddr::V6(r.dst_ip),
            src_port: u16::try_from(r.src_port).ok()?,
            dst_port: u16::try_from(r.dst_port).ok()?,
            ..Flow::default()
        }),
        _ => None,
    }
    .map(|f| Flow {
        direction: Direction::Ingress,
        ..f
    })
}
