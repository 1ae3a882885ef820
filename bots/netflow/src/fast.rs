//! The hot path: v9 and IPFIX data sets read straight from the datagram by
//! a template layout, without building a record.
//!
//! netflow_parser turns every record into a vector of typed field values,
//! which costs an allocation and a match per field, for every flow. Most
//! datagrams of a steady exporter hold only data sets whose template is
//! known. For those, [`FastPath`] reads the few fields the bot counts at
//! their offsets. Anything else (a template or options set, a set whose
//! layout it does not know, a length that does not add up) is left to
//! netflow_parser, which also keeps its own templates, held data and
//! options. The layouts are learnt from the same template sets the parser
//! sees, and `tests/decode.rs` checks that both paths give the same flows.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use foldhash::fast::RandomState;

use crate::flow::{Direction, Flow};

/// A field the bot reads, by its IANA element number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Bytes,
    Packets,
    Protocol,
    SrcPort,
    DstPort,
    Input,
    Output,
    Src4,
    Dst4,
    Src6,
    Dst6,
    Direction,
    /// 34 or 50: a 1-in-N rate.
    Rate,
    /// 48 (and IPFIX 302).
    SamplerId,
    /// IPFIX 305.
    PacketInterval,
    /// IPFIX 306.
    PacketSpace,
}

impl Field {
    fn of(element: u16, ipfix: bool) -> Option<Field> {
        Some(match element {
            1 => Field::Bytes,
            2 => Field::Packets,
            4 => Field::Protocol,
            7 => Field::SrcPort,
            11 => Field::DstPort,
            10 => Field::Input,
            14 => Field::Output,
            8 => Field::Src4,
            12 => Field::Dst4,
            27 => Field::Src6,
            28 => Field::Dst6,
            61 => Field::Direction,
            34 | 50 => Field::Rate,
            48 => Field::SamplerId,
            302 if ipfix => Field::SamplerId,
            305 if ipfix => Field::PacketInterval,
            306 if ipfix => Field::PacketSpace,
            _ => return None,
        })
    }
}

/// Where a template's counted fields are in each record.
#[derive(Clone, Debug)]
struct Layout {
    record_len: usize,
    /// (field, offset, length), in wire order.
    fields: Vec<(Field, usize, usize)>,
    learnt: Instant,
}

/// (exporter, version, source id / observation domain, template id).
type Key = (SocketAddr, u16, u32, u16);

/// What the fast path read of a record besides the flow: sampling.
#[derive(Clone, Copy, Debug, Default)]
pub struct RecordSampling {
    /// A sampler id (48 or 302).
    pub id: Option<u64>,
    /// A 1-in-N rate (34, 50, or 305/306).
    pub rate: Option<u32>,
}

/// What a datagram read by the fast path holds.
#[derive(Debug)]
pub struct Read {
    /// 9 or 10.
    pub version: u16,
    /// Its source id or observation domain.
    pub domain: u32,
    /// Its sequence number.
    pub sequence: u32,
    /// Data records in it (what IPFIX's sequence numbers count).
    pub records: u32,
}

/// Layouts of the data templates of every exporter, learnt from their
/// template sets; bounded like the parser's.
#[derive(Debug, Default)]
pub struct FastPath {
    layouts: HashMap<Key, Layout, RandomState>,
}

/// The most records per set the fast path reads: the parser's setting.
const MAX_RECORDS_PER_SET: usize = 16_384;

/// How many layouts are kept (over all exporters).
const MAX_LAYOUTS: usize = 100_000;

fn be(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
}

fn u16_at(d: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*d.get(at)?, *d.get(at + 1)?]))
}

fn u32_at(d: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(d.get(at..at + 4)?.try_into().ok()?))
}

impl FastPath {
    /// Learns the data templates of `datagram` (v9 set 0, IPFIX set 2), if
    /// it has any. Options templates and templates with a variable-length
    /// field are not learnt: their data goes to the parser.
    pub fn learn(&mut self, from: SocketAddr, datagram: &[u8], ttl: Duration) {
        let Some((version, domain, mut at, end)) = header(datagram) else {
            return;
        };
        let ipfix = version == 10;
        let template_set = if ipfix { 2 } else { 0 };
        while at + 4 <= end {
            let (Some(id), Some(len)) = (u16_at(datagram, at), u16_at(datagram, at + 2)) else {
                return;
            };
            let len = usize::from(len);
            if len < 4 || at + len > end {
                return;
            }
            if id == template_set {
                self.learn_templates(from, version, domain, &datagram[at + 4..at + len], ipfix);
            } else if id == template_set + 1 {
                // An options template: an id reused for one is no longer a
                // data layout (the parser drops it too).
                self.forget_options(from, version, domain, &datagram[at + 4..at + len]);
            }
            at += len;
        }
        // Expire what the exporter stopped refreshing.
        if self.layouts.len() > MAX_LAYOUTS {
            self.layouts.retain(|_, l| l.learnt.elapsed() < ttl);
            if self.layouts.len() > MAX_LAYOUTS {
                self.layouts.clear();
            }
        }
    }

    fn forget_options(&mut self, from: SocketAddr, version: u16, domain: u32, set: &[u8]) {
        // Only the first template id of the set is read: options sets hold
        // one template in practice, and its scope/field counts differ
        // between v9 (lengths) and IPFIX (counts).
        if let Some(id) = u16_at(set, 0) {
            self.layouts.remove(&(from, version, domain, id));
        }
    }

    fn learn_templates(
        &mut self,
        from: SocketAddr,
        version: u16,
        domain: u32,
        mut set: &[u8],
        ipfix: bool,
    ) {
        while set.len() >= 4 {
            let (Some(id), Some(count)) = (u16_at(set, 0), u16_at(set, 2)) else {
                return;
            };
            let mut at = 4;
            let mut offset = 0usize;
            let mut fields = Vec::new();
            let mut fixed = true;
            for _ in 0..count {
                let (Some(element), Some(len)) = (u16_at(set, at), u16_at(set, at + 2)) else {
                    return;
                };
                at += 4;
                let enterprise = ipfix && element & 0x8000 != 0;
                if enterprise {
                    at += 4;
                }
                if len == 0 || len == 0xffff {
                    fixed = false;
                    continue;
                }
                let len = usize::from(len);
                if !enterprise && let Some(field) = Field::of(element, ipfix) {
                    fields.push((field, offset, len));
                }
                offset += len;
            }
            if at > set.len() {
                return;
            }
            let key = (from, version, domain, id);
            // The parser refuses records longer than a datagram can hold.
            if id >= 256 && fixed && offset > 0 && offset <= 65_535 && count > 0 {
                self.layouts.insert(
                    key,
                    Layout {
                        record_len: offset,
                        fields,
                        learnt: Instant::now(),
                    },
                );
            } else {
                // A withdrawal, or a layout the fast path cannot read.
                self.layouts.remove(&key);
            }
            set = &set[at..];
        }
    }

    /// Reads `datagram` when it holds only data sets of known layouts,
    /// calling `flow` for every record (`None` for one that is not
    /// counted); `None` (and nothing called) when the parser must read it.
    pub fn read(
        &self,
        from: SocketAddr,
        datagram: &[u8],
        ttl: Duration,
        mut flow: impl FnMut(Option<(Flow, RecordSampling)>),
    ) -> Option<Read> {
        let (version, domain, start, end) = header(datagram)?;
        // First check every set, so that nothing is emitted for a datagram
        // the parser will read after all.
        let mut at = start;
        let mut records = 0u32;
        while at + 4 <= end {
            let id = u16_at(datagram, at)?;
            let len = usize::from(u16_at(datagram, at + 2)?);
            if len < 4 || at + len > end || id < 256 {
                return None;
            }
            let layout = self.layouts.get(&(from, version, domain, id))?;
            if layout.learnt.elapsed() >= ttl {
                return None;
            }
            let n = (len - 4) / layout.record_len;
            // The parser's limit per set (beyond it, it drops records).
            if n > MAX_RECORDS_PER_SET {
                return None;
            }
            records += n as u32;
            at += len;
        }
        if at != end {
            return None;
        }
        let mut at = start;
        while at + 4 <= end {
            let id = u16_at(datagram, at)?;
            let len = usize::from(u16_at(datagram, at + 2)?);
            let layout = &self.layouts[&(from, version, domain, id)];
            let set = &datagram[at + 4..at + len];
            for record in set.chunks_exact(layout.record_len) {
                flow(decode(layout, record));
            }
            at += len;
        }
        Some(Read {
            version,
            domain,
            sequence: if version == 9 {
                u32_at(datagram, 12)?
            } else {
                u32_at(datagram, 8)?
            },
            records,
        })
    }
}

/// (version, source id or domain, first set, end of the message).
fn header(d: &[u8]) -> Option<(u16, u32, usize, usize)> {
    match u16_at(d, 0)? {
        9 if d.len() >= 20 => Some((9, u32_at(d, 16)?, 20, d.len())),
        10 if d.len() >= 16 => {
            let len = usize::from(u16_at(d, 2)?);
            // One message per datagram, as exporters send them.
            (len == d.len()).then_some((10, u32_at(d, 12)?, 16, len))
        }
        _ => None,
    }
}

/// A record as a flow, or `None` when it is not counted (no bytes field, or
/// a direction other than 0 or 1), as the parser's path decides.
fn decode(layout: &Layout, record: &[u8]) -> Option<(Flow, RecordSampling)> {
    let (mut has_bytes, mut direction) = (false, Some(Direction::Ingress));
    let mut flow = Flow::default();
    let mut sampling = RecordSampling::default();
    let (mut src6, mut dst6) = (None, None);
    let (mut interval, mut space) = (None, None);
    for &(field, offset, len) in &layout.fields {
        let bytes = &record[offset..offset + len];
        let number = || (len <= 8).then(|| be(bytes));
        match field {
            Field::Bytes => {
                has_bytes = true;
                flow.bytes = number().unwrap_or(0)
            }
            Field::Packets => flow.packets = number().unwrap_or(0),
            Field::Protocol => flow.protocol = number().unwrap_or(0) as u8,
            Field::SrcPort => flow.src_port = number().unwrap_or(0) as u16,
            Field::DstPort => flow.dst_port = number().unwrap_or(0) as u16,
            Field::Input => flow.input = number().unwrap_or(0) as u32,
            Field::Output => flow.output = number().unwrap_or(0) as u32,
            Field::Src4 if len == 4 => flow.src = IpAddr::V4(Ipv4Addr::from(be(bytes) as u32)),
            Field::Dst4 if len == 4 => flow.dst = IpAddr::V4(Ipv4Addr::from(be(bytes) as u32)),
            Field::Src6 if len == 16 => src6 = Some(ipv6(bytes)),
            Field::Dst6 if len == 16 => dst6 = Some(ipv6(bytes)),
            Field::Direction => direction = Direction::from_field(number().unwrap_or(0)),
            Field::Rate => {
                sampling.rate = number()
                    .and_then(|n| u32::try_from(n).ok())
                    .filter(|&n| n > 0)
            }
            Field::SamplerId => sampling.id = number(),
            Field::PacketInterval => interval = number(),
            Field::PacketSpace => space = number(),
            _ => {}
        }
    }
    if sampling.rate.is_none()
        && let (Some(i), Some(s)) = (interval, space)
        && i > 0
    {
        sampling.rate = u32::try_from(i.saturating_add(s) / i)
            .ok()
            .filter(|&n| n > 0);
    }
    if let Some(src) = src6.filter(|a: &IpAddr| !a.is_unspecified()) {
        flow.src = src;
    }
    if let Some(dst) = dst6.filter(|a: &IpAddr| !a.is_unspecified()) {
        flow.dst = dst;
    }
    flow.direction = direction.filter(|_| has_bytes)?;
    Some((flow, sampling))
}

fn ipv6(bytes: &[u8]) -> IpAddr {
    let mut octets = [0u8; 16];
    octets.copy_from_slice(bytes);
    IpAddr::V6(Ipv6Addr::from(octets))
}
