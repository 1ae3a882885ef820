//! Datagrams to flows: NetFlow v5, v9 and IPFIX (and sFlow v5, through
//! [`crate::sflow`]), with templates kept per exporter and source id,
//! sampling applied, and every fault counted.
//!
//! The parsing is [netflow_parser](https://docs.rs/netflow_parser)'s
//! `AutoScopedParser`: templates are keyed by the exporter's address and
//! port and its v9 source id or IPFIX observation domain (the Python bot
//! keyed them by template id alone, so two routers corrupted each other),
//! and data that comes before its template is held (bounded) and decoded
//! when the template comes. A [`Decoder`] is not shared between threads:
//! each receive socket has its own, and one exporter's datagrams always
//! reach the same socket.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use foldhash::fast::RandomState;
use netflow_parser::static_versions::v5::V5;
use netflow_parser::variable_versions::ipfix::lookup::{IANAIPFixField as I, IPFixField};
use netflow_parser::variable_versions::{ipfix, v9};
use netflow_parser::{
    AutoScopedParser, DataNumber, FieldValue, NetflowPacket, NetflowParser, PendingFlowsConfig,
    TemplateStore, TtlConfig, V9Field,
};

use crate::fast::{FastPath, RecordSampling};
use crate::flow::{Direction, Flow};
use crate::sflow::{self, SflowDecoder};

/// How long a template is kept without being refreshed. Exporters resend
/// theirs every few minutes (softflowd: every 16 datagrams; Cisco: 30 min
/// by default).
pub const TEMPLATE_TTL: Duration = Duration::from_secs(2 * 3600);

/// How many exporters' (address, source id) template sets are kept; the
/// least recently heard is forgotten past it.
pub const MAX_SOURCES: usize = 10_000;

/// How many bytes of data that came before its template are held per
/// exporter source and version, and for how long.
pub const HELD_BYTES: usize = 2 * 1024 * 1024;
/// How long such data is held.
pub const HELD_FOR: Duration = Duration::from_secs(120);

/// How many (exporter, source id) sequences are followed.
const MAX_SEQUENCES: usize = 100_000;

/// A datagram whose sequence number is this far behind the expected one
/// came late; farther behind, the exporter restarted.
const REORDER_WINDOW: u32 = 1 << 16;

/// What one datagram gave, beside its flows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DatagramReport {
    /// The NetFlow version (5, 9 or 10; sFlow's is 5 too), or 0 when it
    /// could not be read.
    pub version: u16,
    /// The datagram (or part of it) could not be parsed.
    pub malformed: bool,
    /// Records whose template is not known (and were not held).
    pub template_misses: u64,
    /// Records (IPFIX), packets (v9), flows (v5) or datagrams (sFlow) lost
    /// before this datagram, by its sequence number.
    pub sequence_lost: u64,
    /// The sampling rate applied to this datagram's flows (1: none).
    pub sampling: u32,
    /// Records not counted, as the Python bot does not count them: without
    /// bytes (`IN_BYTES`, octetDeltaCount), or with a direction other than
    /// 0 or 1.
    pub skipped: u64,
}

/// What became of one exporter source's data sets that came before their
/// template, since the bot first kept that source's templates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Held {
    /// Data sets held until their template came.
    pub held: u64,
    /// Held data sets decoded when their template came.
    pub replayed: u64,
    /// Held data sets given up: their template did not come in time, the
    /// source held too much, or they did not decode once it came.
    pub dropped: u64,
}

/// One exporter source: its address and port, its v9 source id or IPFIX
/// observation domain, and the version (9 or 10).
pub type SourceKey = (SocketAddr, u32, u16);

/// The version in a [`SequenceKey`] of sFlow datagram sequences (per
/// sub-agent), apart from NetFlow's 5, 9 and 10.
const SFLOW: u16 = 6343;

/// Per (exporter, source id): the sequence number expected next.
type SequenceKey = (SocketAddr, u16, u32);

/// Turns datagrams into flows, for one receive thread.
#[derive(Debug)]
pub struct Decoder {
    parser: AutoScopedParser,
    /// (exporter, source id, sampler id) → 1-in-N, from options records.
    samplers: HashMap<(SocketAddr, u32, u64), u32, RandomState>,
    /// The last rate an exporter's source announced without a sampler id.
    default_rate: HashMap<(SocketAddr, u32), u32, RandomState>,
    expected: HashMap<SequenceKey, u32, RandomState>,
    apply_sampling: bool,
    fast: FastPath,
    use_fast: bool,
    fast_reads: u64,
    scratch: Vec<Option<(Flow, RecordSampling)>>,
    sflow: SflowDecoder,
}

impl Decoder {
    /// A decoder; `apply_sampling` multiplies bytes and packets by the
    /// exporter's sampling rate (off for the Python bot's exact output).
    pub fn new(apply_sampling: bool) -> Self {
        Self::build(apply_sampling, None)
    }

    /// A decoder whose templates are also written to (and read back from)
    /// `store`, so that they survive a restart (see [`crate::templates`]).
    pub fn with_template_store(apply_sampling: bool, store: Arc<dyn TemplateStore>) -> Self {
        Self::build(apply_sampling, Some(store))
    }

    fn build(apply_sampling: bool, store: Option<Arc<dyn TemplateStore>>) -> Self {
        let mut held = PendingFlowsConfig::with_ttl(64, HELD_FOR);
        held.max_total_bytes = HELD_BYTES;
        let builder = NetflowParser::builder()
            .with_allowed_versions(&[5, 9, 10])
            .with_cache_size(1000)
            .with_ttl(TtlConfig::new(TEMPLATE_TTL))
            .with_pending_flows(held)
            // A 64 KB datagram of the smallest records holds more than the
            // crate's default of 1,024 per set, which it drops silently.
            .with_max_records_per_flowset(16_384);
        let builder = match store {
            Some(store) => builder.with_template_store(store),
            None => builder,
        };
        let parser = AutoScopedParser::try_with_builder(builder)
            .and_then(|p| p.with_max_sources(MAX_SOURCES))
            .expect("the decoder's fixed parser settings are valid");
        Self {
            parser,
            samplers: HashMap::default(),
            default_rate: HashMap::default(),
            expected: HashMap::default(),
            apply_sampling,
            fast: FastPath::default(),
            use_fast: true,
            fast_reads: 0,
            scratch: Vec::new(),
            sflow: SflowDecoder::default(),
        }
    }

    /// Reads every datagram with netflow_parser, without the fast path
    /// (for tests that compare the two).
    #[must_use]
    pub fn without_fast_path(mut self) -> Self {
        self.use_fast = false;
        self
    }

    /// Decodes one datagram from `from`, appending its flows to `out`.
    pub fn decode(
        &mut self,
        from: SocketAddr,
        datagram: &[u8],
        out: &mut Vec<Flow>,
    ) -> DatagramReport {
        let mut report = DatagramReport {
            sampling: 1,
            ..DatagramReport::default()
        };
        if sflow::is_sflow(datagram) {
            let r = self.sflow.decode(datagram, self.apply_sampling, out);
            report.version = 5;
            report.malformed = r.malformed;
            report.sampling = r.sampling;
            report.skipped = r.skipped;
            if let Some((_, sub_agent, sequence)) = r.sequence {
                report.sequence_lost += self.sequence((from, SFLOW, sub_agent), sequence, 1);
            }
            return report;
        }
        if self.use_fast {
            let mut scratch = std::mem::take(&mut self.scratch);
            scratch.clear();
            let read = self
                .fast
                .read(from, datagram, TEMPLATE_TTL, |r| scratch.push(r));
            if let Some(read) = read {
                self.fast_reads += 1;
                report.version = read.version;
                let advance = if read.version == 9 { 1 } else { read.records };
                report.sequence_lost +=
                    self.sequence((from, read.version, read.domain), read.sequence, advance);
                for record in scratch.drain(..) {
                    let Some((flow, s)) = record else {
                        report.skipped += 1;
                        continue;
                    };
                    let sampler = Sampler {
                        id: s.id,
                        rate: s.rate,
                    };
                    self.push(from, read.domain, flow, sampler, out, &mut report);
                }
                self.scratch = scratch;
                return report;
            }
            self.scratch = scratch;
            self.fast.learn(from, datagram, TEMPLATE_TTL);
        }
        let result = self.parser.parse_from_source(from, datagram);
        report.malformed = result.error.is_some();
        for packet in &result.packets {
            match packet {
                NetflowPacket::V5(p) => self.v5(from, p, out, &mut report),
                NetflowPacket::V9(p) => self.v9(from, p, out, &mut report),
                NetflowPacket::IPFix(p) => self.ipfix(from, datagram, p, out, &mut report),
                _ => report.malformed = true,
            }
        }
        report
    }

    /// How many datagrams the fast path read (see [`crate::fast`]).
    pub fn fast_reads(&self) -> u64 {
        self.fast_reads
    }

    /// What became of data that came before its template, per exporter
    /// source the parser keeps.
    pub fn held(&self) -> Vec<(SourceKey, Held)> {
        let held = |info: &netflow_parser::ParserCacheInfo| {
            let (v9, ipfix) = (&info.v9.metrics, &info.ipfix.metrics);
            Held {
                held: v9.pending_cached + ipfix.pending_cached,
                replayed: v9.pending_replayed + ipfix.pending_replayed,
                dropped: v9.pending_dropped
                    + ipfix.pending_dropped
                    + v9.pending_replay_failed
                    + ipfix.pending_replay_failed,
            }
        };
        let v9 = self
            .parser
            .v9_info()
            .into_iter()
            .map(|(k, info)| ((k.addr, k.source_id, 9), held(&info)));
        let ipfix = self
            .parser
            .ipfix_info()
            .into_iter()
            .map(|(k, info)| ((k.addr, k.observation_domain_id, 10), held(&info)));
        v9.chain(ipfix).collect()
    }

    /// How many exporter sources have templates.
    pub fn sources(&self) -> usize {
        self.parser.source_count()
    }

    fn sequence(&mut self, key: SequenceKey, seen: u32, advance: u32) -> u64 {
        if self.expected.len() >= MAX_SEQUENCES && !self.expected.contains_key(&key) {
            // A flood of sources (spoofed, or exporters changing ports):
            // start afresh rather than grow.
            self.expected.clear();
        }
        let next = seen.wrapping_add(advance);
        let Some(expected) = self.expected.get_mut(&key) else {
            self.expected.insert(key, next);
            return 0;
        };
        let ahead = seen.wrapping_sub(*expected);
        let behind = expected.wrapping_sub(seen);
        if behind != 0 && behind < REORDER_WINDOW {
            // A datagram that came late (reordered): it was counted as
            // lost when the ones after it came; the count is not taken
            // back, and what is expected next stays.
            return 0;
        }
        *expected = next;
        // A jump by more than half the space is a restart of the
        // exporter, not a loss.
        if ahead != 0 && ahead < u32::MAX / 2 {
            u64::from(ahead)
        } else {
            0
        }
    }

    /// Forgets what `key` expects next: its next datagram starts afresh.
    fn sequence_reset(&mut self, key: SequenceKey) {
        self.expected.remove(&key);
    }

    fn v5(&mut self, from: SocketAddr, p: &V5, out: &mut Vec<Flow>, report: &mut DatagramReport) {
        let h = &p.header;
        report.version = 5;
        let engine = (u32::from(h.engine_type) << 8) | u32::from(h.engine_id);
        report.sequence_lost +=
            self.sequence((from, 5, engine), h.flow_sequence, u32::from(h.count));
        // The top two bits are the sampling mode, the other 14 the rate.
        let rate = u32::from(h.sampling_interval & 0x3fff).max(1);
        let rate = if self.apply_sampling { rate } else { 1 };
        report.sampling = rate;
        for r in &p.flowsets {
            out.push(Flow {
                bytes: u64::from(r.d_octets) * u64::from(rate),
                packets: u64::from(r.d_pkts) * u64::from(rate),
                protocol: r.protocol_number,
                src: IpAddr::V4(r.src_addr),
                dst: IpAddr::V4(r.dst_addr),
                src_port: r.src_port,
                dst_port: r.dst_port,
                input: u32::from(r.input),
                output: u32::from(r.output),
                // v5 has no direction: ingress, as the Python bot counts it.
                direction: Direction::Ingress,
            });
        }
    }

    fn v9(
        &mut self,
        from: SocketAddr,
        p: &v9::V9,
        out: &mut Vec<Flow>,
        report: &mut DatagramReport,
    ) {
        report.version = 9;
        let domain = p.header.source_id;
        report.sequence_lost += self.sequence((from, 9, domain), p.header.sequence_number, 1);
        for set in &p.flowsets {
            if let v9::FlowSetBody::OptionsData(options) = &set.body {
                for record in &options.fields {
                    self.learn_sampler_v9(from, domain, &record.options_fields);
                }
            }
        }
        for set in &p.flowsets {
            match &set.body {
                v9::FlowSetBody::Data(data) => {
                    for record in &data.fields {
                        match v9_flow(record) {
                            Some((flow, sampler)) => {
                                self.push(from, domain, flow, sampler, out, report)
                            }
                            None => report.skipped += 1,
                        }
                    }
                }
                v9::FlowSetBody::NoTemplate(_) => report.template_misses += 1,
                _ => {}
            }
        }
    }

    fn ipfix(
        &mut self,
        from: SocketAddr,
        datagram: &[u8],
        p: &ipfix::IPFix,
        out: &mut Vec<Flow>,
        report: &mut DatagramReport,
    ) {
        report.version = 10;
        let domain = p.header.observation_domain_id;
        let mut records = 0u32;
        for set in &p.flowsets {
            match &set.body {
                ipfix::FlowSetBody::OptionsData(options) => {
                    records += options.fields.len() as u32;
                    for record in &options.fields {
                        self.learn_sampler_ipfix(from, domain, record);
                    }
                }
                ipfix::FlowSetBody::V9OptionsData(options) => {
                    records += options.fields.len() as u32;
                    for record in &options.fields {
                        self.learn_sampler_v9(from, domain, &record.options_fields);
                    }
                }
                ipfix::FlowSetBody::Data(d) => records += d.fields.len() as u32,
                ipfix::FlowSetBody::V9Data(d) => records += d.fields.len() as u32,
                _ => {}
            }
        }
        // IPFIX counts data records: the next message's number is this
        // one's plus its records. A message with a template (held data may
        // be replayed into its output) or with data whose template is not
        // known (held, or missed: its records cannot be counted) leaves the
        // count unknown: start afresh.
        let uncertain = p.flowsets.iter().any(|set| {
            !matches!(
                set.body,
                ipfix::FlowSetBody::Data(_)
                    | ipfix::FlowSetBody::V9Data(_)
                    | ipfix::FlowSetBody::OptionsData(_)
                    | ipfix::FlowSetBody::V9OptionsData(_)
            )
        }) || count_sets(datagram, 16) != p.flowsets.len();
        if uncertain {
            self.sequence_reset((from, 10, domain));
        } else {
            report.sequence_lost +=
                self.sequence((from, 10, domain), p.header.sequence_number, records);
        }
        for set in &p.flowsets {
            match &set.body {
                ipfix::FlowSetBody::Data(data) => {
                    for record in &data.fields {
                        match ipfix_flow(record) {
                            Some((flow, sampler)) => {
                                self.push(from, domain, flow, sampler, out, report)
                            }
                            None => report.skipped += 1,
                        }
                    }
                }
                ipfix::FlowSetBody::V9Data(data) => {
                    for record in &data.fields {
                        match v9_flow(record) {
                            Some((flow, sampler)) => {
                                self.push(from, domain, flow, sampler, out, report)
                            }
                            None => report.skipped += 1,
                        }
                    }
                }
                ipfix::FlowSetBody::NoTemplate(_) => report.template_misses += 1,
                _ => {}
            }
        }
    }

    fn push(
        &mut self,
        from: SocketAddr,
        domain: u32,
        mut flow: Flow,
        sampler: Sampler,
        out: &mut Vec<Flow>,
        report: &mut DatagramReport,
    ) {
        if self.apply_sampling {
            let rate = sampler
                .rate
                .or_else(|| {
                    sampler
                        .id
                        .and_then(|id| self.samplers.get(&(from, domain, id)).copied())
                })
                .or_else(|| self.default_rate.get(&(from, domain)).copied())
                .unwrap_or(1)
                .max(1);
            flow.bytes = flow.bytes.saturating_mul(u64::from(rate));
            flow.packets = flow.packets.saturating_mul(u64::from(rate));
            report.sampling = report.sampling.max(rate);
        }
        out.push(flow);
    }

    fn learn(&mut self, from: SocketAddr, domain: u32, sampler: Sampler) {
        if let Some(rate) = sampler.rate {
            // Bounded: a flood of sources starts the tables afresh (real
            // exporters announce their rates again within minutes).
            if self.samplers.len() >= 65_536 {
                self.samplers.clear();
            }
            if self.default_rate.len() >= 65_536 {
                self.default_rate.clear();
            }
            match sampler.id {
                Some(id) => self.samplers.insert((from, domain, id), rate),
                None => self.default_rate.insert((from, domain), rate),
            };
        }
    }

    fn learn_sampler_v9(
        &mut self,
        from: SocketAddr,
        domain: u32,
        fields: &[(V9Field, FieldValue)],
    ) {
        let mut sampler = Sampler::default();
        for (field, value) in fields {
            sampler.read_v9(field, value);
        }
        self.learn(from, domain, sampler);
    }

    fn learn_sampler_ipfix(
        &mut self,
        from: SocketAddr,
        domain: u32,
        fields: &[(IPFixField, FieldValue)],
    ) {
        let mut sampler = Sampler::default();
        let (mut interval, mut space) = (None, None);
        for (field, value) in fields {
            sampler.read_ipfix(field, value, &mut interval, &mut space);
        }
        sampler.rate = sampler.rate.or_else(|| rate_from(interval, space));
        self.learn(from, domain, sampler);
    }
}

/// What a record or an options record says about sampling.
#[derive(Clone, Copy, Debug, Default)]
struct Sampler {
    /// Sampler or selector id (v9 48, IPFIX 48/302).
    id: Option<u64>,
    /// 1-in-N (v9 34/50, IPFIX 34/50 or 305/306).
    rate: Option<u32>,
}

impl Sampler {
    fn read_v9(&mut self, field: &V9Field, value: &FieldValue) {
        match field {
            V9Field::FlowSamplerId => self.id = number(value),
            V9Field::SamplingInterval | V9Field::FlowSamplerRandomInterval => {
                self.rate = number(value)
                    .and_then(|n| u32::try_from(n).ok())
                    .filter(|&n| n > 0)
            }
            _ => {}
        }
    }

    fn read_ipfix(
        &mut self,
        field: &IPFixField,
        value: &FieldValue,
        interval: &mut Option<u64>,
        space: &mut Option<u64>,
    ) {
        let IPFixField::IANA(field) = field else {
            return;
        };
        match field {
            I::SamplerId | I::SelectorId => self.id = number(value),
            I::SamplingInterval | I::SamplerRandomInterval => {
                self.rate = number(value)
                    .and_then(|n| u32::try_from(n).ok())
                    .filter(|&n| n > 0)
            }
            I::SamplingPacketInterval => *interval = number(value),
            I::SamplingPacketSpace => *space = number(value),
            _ => {}
        }
    }
}

/// How many sets the message in `datagram` has (set headers walked from
/// `first`), so that sets the parser held or dropped show.
fn count_sets(datagram: &[u8], first: usize) -> usize {
    let mut at = first;
    let mut n = 0;
    while at + 4 <= datagram.len() {
        let len = usize::from(u16::from_be_bytes([datagram[at + 2], datagram[at + 3]]));
        if len < 4 || at + len > datagram.len() {
            break;
        }
        n += 1;
        at += len;
    }
    n
}

/// 1-in-N from IPFIX's samplingPacketInterval and samplingPacketSpace.
fn rate_from(interval: Option<u64>, space: Option<u64>) -> Option<u32> {
    match (interval, space) {
        (Some(i), Some(s)) if i > 0 => u32::try_from(i.saturating_add(s) / i)
            .ok()
            .filter(|&n| n > 0),
        _ => None,
    }
}

/// A v9 record as a flow; `None` when the Python bot would not count it:
/// no `IN_BYTES` (such as Cisco ASA's NSEL), or a `DIRECTION` that is
/// neither 0 nor 1.
fn v9_flow(record: &[(V9Field, FieldValue)]) -> Option<(Flow, Sampler)> {
    let mut flow = Flow::default();
    let mut sampler = Sampler::default();
    let (mut src6, mut dst6) = (None, None);
    let (mut has_bytes, mut direction) = (false, Some(Direction::Ingress));
    for (field, value) in record {
        match field {
            V9Field::InBytes => {
                has_bytes = true;
                flow.bytes = number(value).unwrap_or(0)
            }
            V9Field::InPkts => flow.packets = number(value).unwrap_or(0),
            V9Field::Protocol => flow.protocol = number(value).unwrap_or(0) as u8,
            V9Field::L4SrcPort => flow.src_port = number(value).unwrap_or(0) as u16,
            V9Field::L4DstPort => flow.dst_port = number(value).unwrap_or(0) as u16,
            V9Field::InputSnmp => flow.input = number(value).unwrap_or(0) as u32,
            V9Field::OutputSnmp => flow.output = number(value).unwrap_or(0) as u32,
            V9Field::Ipv4SrcAddr => set_ip(&mut flow.src, value),
            V9Field::Ipv4DstAddr => set_ip(&mut flow.dst, value),
            V9Field::Ipv6SrcAddr => src6 = ip(value),
            V9Field::Ipv6DstAddr => dst6 = ip(value),
            V9Field::Direction => direction = Direction::from_field(number(value).unwrap_or(0)),
            other => sampler.read_v9(other, value),
        }
    }
    flow.direction = direction.filter(|_| has_bytes)?;
    set_v6(&mut flow, src6, dst6);
    Some((flow, sampler))
}

/// An IPFIX record as a flow; `None` without octetDeltaCount or with a
/// flowDirection that is neither 0 nor 1 (as [`v9_flow`]).
fn ipfix_flow(record: &[(IPFixField, FieldValue)]) -> Option<(Flow, Sampler)> {
    let mut flow = Flow::default();
    let mut sampler = Sampler::default();
    let (mut src6, mut dst6) = (None, None);
    let (mut interval, mut space) = (None, None);
    let (mut has_bytes, mut direction) = (false, Some(Direction::Ingress));
    for (field, value) in record {
        let IPFixField::IANA(iana) = field else {
            continue;
        };
        match iana {
            I::OctetDeltaCount => {
                has_bytes = true;
                flow.bytes = number(value).unwrap_or(0)
            }
            I::PacketDeltaCount => flow.packets = number(value).unwrap_or(0),
            I::ProtocolIdentifier => flow.protocol = number(value).unwrap_or(0) as u8,
            I::SourceTransportPort => flow.src_port = number(value).unwrap_or(0) as u16,
            I::DestinationTransportPort => flow.dst_port = number(value).unwrap_or(0) as u16,
            I::IngressInterface => flow.input = number(value).unwrap_or(0) as u32,
            I::EgressInterface => flow.output = number(value).unwrap_or(0) as u32,
            I::SourceIpv4address => set_ip(&mut flow.src, value),
            I::DestinationIpv4address => set_ip(&mut flow.dst, value),
            I::SourceIpv6address => src6 = ip(value),
            I::DestinationIpv6address => dst6 = ip(value),
            I::FlowDirection => direction = Direction::from_field(number(value).unwrap_or(0)),
            _ => sampler.read_ipfix(field, value, &mut interval, &mut space),
        }
    }
    flow.direction = direction.filter(|_| has_bytes)?;
    sampler.rate = sampler.rate.or_else(|| rate_from(interval, space));
    set_v6(&mut flow, src6, dst6);
    Some((flow, sampler))
}

/// Any unsigned field as a number, whatever its width on the wire
/// (reduced-size encodings of 3, 5, 6 or 7 bytes come as raw bytes).
fn number(value: &FieldValue) -> Option<u64> {
    match value {
        FieldValue::DataNumber(DataNumber::Vec(b)) | FieldValue::Vec(b) if b.len() <= 8 => {
            Some(b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
        }
        FieldValue::ProtocolType(_) => value.as_u8().map(u64::from),
        _ => value.as_u64(),
    }
}

/// IPv6 addresses when the record has them (and they are set), as the
/// Python bot's writer prefers them.
fn set_v6(flow: &mut Flow, src6: Option<IpAddr>, dst6: Option<IpAddr>) {
    if let Some(src) = src6.filter(|a| !a.is_unspecified()) {
        flow.src = src;
    }
    if let Some(dst) = dst6.filter(|a| !a.is_unspecified()) {
        flow.dst = dst;
    }
}

fn ip(value: &FieldValue) -> Option<IpAddr> {
    IpAddr::try_from(value).ok()
}

fn set_ip(slot: &mut IpAddr, value: &FieldValue) {
    if let Some(ip) = ip(value) {
        *slot = ip;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_count_gaps_once_and_restarts_not_at_all() {
        let mut d = Decoder::new(false);
        let key = ("192.0.2.1:2055".parse().unwrap(), 9, 0);
        // 1, 3, 2, 4: one datagram late, counted lost once.
        let lost: Vec<u64> = [1u32, 3, 2, 4]
            .iter()
            .map(|&s| d.sequence(key, s, 1))
            .collect();
        assert_eq!(lost, [0, 1, 0, 0]);
        // A real gap: 5 missing.
        assert_eq!(d.sequence(key, 10, 1), 5);
        assert_eq!(d.sequence(key, 200_000, 1), 199_989);
        // The exporter restarts: its numbers begin again, nothing lost.
        assert_eq!(d.sequence(key, 0, 1), 0);
        assert_eq!(d.sequence(key, 1, 1), 0);
        assert_eq!(d.sequence(key, 2, 1), 0);
        // Across the wrap of the 32-bit counter.
        let key = ("192.0.2.2:2055".parse().unwrap(), 9, 0);
        let lost: Vec<u64> = [u32::MAX - 1, u32::MAX, 0, 2]
            .iter()
            .map(|&s| d.sequence(key, s, 1))
            .collect();
        assert_eq!(lost, [0, 0, 0, 1]);
    }
}
