//! The NetFlow bot's own instruments on `/metrics`: what each exporter sent,
//! what could not be used, and how exact the windows are.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels of the per-exporter series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExporterLabels {
    /// The exporter's address.
    pub exporter: String,
}

/// Labels of the traffic counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TrafficLabels {
    /// The exporter's address.
    pub exporter: String,
    /// `INPUT_SNMP` for ingress, `OUTPUT_SNMP` for egress.
    pub interface: String,
    /// `ingress` or `egress`.
    pub direction: String,
}

/// Labels of the per-window series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WindowLabels {
    /// `15min`, `1h`, `4h` or `24h`.
    pub window: String,
}

/// Labels of the per-exporter, per-window series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExporterWindowLabels {
    /// The exporter's address.
    pub exporter: String,
    /// `15min`, `1h`, `4h` or `24h`.
    pub window: String,
}

/// The bot's instruments. Cloning shares them.
#[derive(Clone, Debug, Default)]
pub struct NetflowMetrics {
    /// `netflow_bytes_total`: bytes per exporter, interface and direction
    /// (times the sampling rate when sampling is applied).
    pub bytes: Family<TrafficLabels, Counter>,
    /// `netflow_flows_total`: flow records, likewise.
    pub flows: Family<TrafficLabels, Counter>,
    /// `netflow_datagrams_total`: datagrams per exporter.
    pub datagrams: Family<ExporterLabels, Counter>,
    /// `netflow_malformed_datagrams_total`: datagrams (or their tails) that
    /// could not be parsed.
    pub malformed: Family<ExporterLabels, Counter>,
    /// `netflow_template_misses_total`: data sets whose template was not
    /// known and that could not be held.
    pub template_misses: Family<ExporterLabels, Counter>,
    /// `netflow_flows_skipped_total`: records not counted, as the Python
    /// bot does not count them (no bytes field, or a direction other than
    /// 0 or 1).
    pub skipped: Family<ExporterLabels, Counter>,
    /// `netflow_sequence_lost_total`: what the exporter's sequence numbers
    /// say was lost on the way (v5 flows, v9 packets, IPFIX records).
    pub sequence_lost: Family<ExporterLabels, Counter>,
    /// `netflow_held_sets_total`: data sets that came before their
    /// template and were held until it came.
    pub held: Family<ExporterLabels, Counter>,
    /// `netflow_held_sets_replayed_total`: held data sets decoded when
    /// their template came.
    pub held_replayed: Family<ExporterLabels, Counter>,
    /// `netflow_held_sets_dropped_total`: held data sets given up (their
    /// template did not come within 120 s, or too much was held).
    pub held_dropped: Family<ExporterLabels, Counter>,
    /// `netflow_exporter_keys`: keys an exporter's flows hold in each open
    /// window's maps.
    pub exporter_keys: Family<ExporterWindowLabels, Gauge>,
    /// `netflow_sampling_rate`: the largest 1-in-N rate applied to the
    /// exporter's last datagram (1: unsampled or not applied).
    pub sampling: Family<ExporterLabels, Gauge>,
    /// `netflow_socket_drops_total`: datagrams the kernel dropped because
    /// the receive buffers were full.
    pub socket_drops: Counter,
    /// `netflow_window_keys`: keys held by the open longer windows.
    pub window_keys: Family<WindowLabels, Gauge>,
    /// `netflow_window_exact`: 1 while every top list of the open window is
    /// exact, 0 once one forgot keys past the cap.
    pub window_exact: Family<WindowLabels, Gauge>,
    /// `netflow_exporters_unmatched`: exporters that sent flows in the last
    /// minute and match no entity.
    pub unmatched: Gauge,
}

impl NetflowMetrics {
    /// Registers every instrument.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "netflow_bytes",
            "Bytes received in flows, per exporter, interface and direction",
            self.bytes.clone(),
        );
        registry.register(
            "netflow_flows",
            "Flow records received, per exporter, interface and direction",
            self.flows.clone(),
        );
        registry.register(
            "netflow_datagrams",
            "NetFlow/IPFIX datagrams received, per exporter",
            self.datagrams.clone(),
        );
        registry.register(
            "netflow_malformed_datagrams",
            "Datagrams that could not be parsed in whole or in part, per exporter",
            self.malformed.clone(),
        );
        registry.register(
            "netflow_template_misses",
            "Data sets whose template was not known (and not held until it came), per exporter",
            self.template_misses.clone(),
        );
        registry.register(
            "netflow_flows_skipped",
            "Flow records not counted (no bytes field, or a direction other than 0 or 1), per exporter",
            self.skipped.clone(),
        );
        registry.register(
            "netflow_sequence_lost",
            "Flows (v5), packets (v9) or records (IPFIX) lost on the way, by the exporter's sequence numbers",
            self.sequence_lost.clone(),
        );
        registry.register(
            "netflow_held_sets",
            "Data sets that came before their template and were held until it came, per exporter",
            self.held.clone(),
        );
        registry.register(
            "netflow_held_sets_replayed",
            "Held data sets decoded when their template came, per exporter",
            self.held_replayed.clone(),
        );
        registry.register(
            "netflow_held_sets_dropped",
            "Held data sets given up (no template within 120 s, or too much held), per exporter",
            self.held_dropped.clone(),
        );
        registry.register(
            "netflow_exporter_keys",
            "Distinct keys an exporter's flows hold in the maps of each open window",
            self.exporter_keys.clone(),
        );
        registry.register(
            "netflow_sampling_rate",
            "The 1-in-N sampling rate applied to the exporter's last datagram",
            self.sampling.clone(),
        );
        registry.register(
            "netflow_socket_drops",
            "Datagrams the kernel dropped at the bot's sockets (receive buffer full)",
            self.socket_drops.clone(),
        );
        registry.register(
            "netflow_window_keys",
            "Keys held by the open window's maps",
            self.window_keys.clone(),
        );
        registry.register(
            "netflow_window_exact",
            "1 while the open window's top lists are exact, 0 once a map forgot keys past its cap",
            self.window_exact.clone(),
        );
        registry.register(
            "netflow_exporters_unmatched",
            "Exporters that sent flows in the last minute and match no entity",
            self.unmatched.clone(),
        );
    }
}
