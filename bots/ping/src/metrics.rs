//! The ping bot's own series on `/metrics`, registered into the SDK's
//! registry (its root, without the SDK's `grafolean_bot_` prefix) by
//! [`crate::bot()`].
//!
//! | series | what |
//! |---|---|
//! | `ping_echo_requests_sent_total`, `…_answered_total`, `…_timed_out_total`, `…_send_errors_total` | the whole bot's echo requests, from the pinger's counters |
//! | `ping_echo_replies_unmatched_total` | echo replies that matched no request of this bot (late, or another program's: each raw socket sees every reply on the host), dropped |
//! | `ping_unresolved{entity,field,host}` | 1 while the host name in `details.<field>` is unresolved, else 0 |
//! | `ping_unresolved_runs_total{entity,field,host}` | runs that wrote no values for that address because its name was unresolved |
//! | `ping_response_duration_seconds{entity,host,ip}` | a histogram of the answered packets' RTTs, with smokeping_prober's buckets ([`rtt_buckets`]) |
//! | `ping_requests_total{entity,host,ip}` | packets sent (a packet's retries count once), for loss: `1 - rate(…_count) / rate(requests_total)` |
//!
//! The histogram has the buckets and the shape of smokeping_prober's
//! `smokeping_response_duration_seconds`, and the requests counter that of
//! its `smokeping_requests_total`, so their queries carry over with the
//! names changed (`host` is the configured name or address, `ip` the address
//! pinged).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::icmp::PingError;
use crate::settings::Host;

/// smokeping_prober's default buckets: 50 µs doubling 20 times, up to
/// about 26.2 s.
///
/// ```
/// let b: Vec<f64> = grafolean_ping_bot::metrics::rtt_buckets().collect();
/// assert_eq!(b.len(), 20);
/// assert_eq!(b[0], 0.00005);
/// assert!((b[19] - 26.2144).abs() < 1e-9);
/// ```
pub fn rtt_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.00005, 2.0, 20)
}

/// The labels of a target's RTT series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabels {
    /// The entity's id.
    pub entity: String,
    /// The configured host name or address (checked, so it needs no
    /// escaping).
    pub host: String,
    /// The address pinged.
    pub ip: String,
}

/// The RTT histogram and requests counter of one target. Every
/// `TargetSeries` equals every other, so that keeping one in a job's
/// parameters does not make otherwise equal parameters differ.
#[derive(Clone, Debug, Default)]
pub struct TargetSeries(Option<(Histogram, Counter)>);

impl PartialEq for TargetSeries {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for TargetSeries {}

impl TargetSeries {
    /// Records one run's packets: each packet as a request, each answer's
    /// RTT into the histogram. Does nothing for [`TargetSeries::default`].
    pub fn record(&self, results: &[Result<Option<Duration>, PingError>]) {
        let Some((histogram, requests)) = &self.0 else {
            return;
        };
        requests.inc_by(results.len() as u64);
        for rtt in results
            .iter()
            .filter_map(|r| r.as_ref().ok().copied().flatten())
        {
            histogram.observe(rtt.as_secs_f64());
        }
    }

    /// Whether these are real series, not [`TargetSeries::default`].
    pub fn is_some(&self) -> bool {
        self.0.is_some()
    }
}

type RttFamily = Family<TargetLabels, Histogram, fn() -> Histogram>;

/// The labels of a host name's series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NameLabels {
    /// The entity's id.
    pub entity: String,
    /// `ipv4` or `ipv6`: the `details` field that holds the name.
    pub field: String,
    /// The host name (checked by [`is_host_name`](crate::resolve::is_host_name),
    /// so it needs no escaping).
    pub host: String,
}

/// The ping bot's metric handles. Cheap to clone; clones share the series.
///
/// ```
/// use grafolean_ping_bot::metrics::PingMetrics;
/// let metrics = PingMetrics::default();
/// let mut registry = prometheus_client::registry::Registry::default();
/// metrics.register(&mut registry);
/// metrics.unresolved(7, "ipv4", "router.example", true);
/// let mut text = String::new();
/// prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
/// assert!(text.contains(r#"ping_unresolved_runs_total{entity="7",field="ipv4",host="router.example"} 1"#));
/// ```
#[derive(Clone, Debug)]
pub struct PingMetrics {
    unresolved: Family<NameLabels, Gauge>,
    unresolved_runs: Family<NameLabels, Counter>,
    rtt: RttFamily,
    requests: Family<TargetLabels, Counter>,
    /// The label sets made for each entity, so that its series can go when
    /// it does (prometheus-client's `Family` cannot be iterated).
    made: Arc<Mutex<HashMap<u64, Made>>>,
}

/// One entity's label sets, without the entity: `(host, ip)` of its targets
/// and `(field, host)` of its names.
#[derive(Debug, Default)]
struct Made {
    targets: HashSet<(String, IpAddr)>,
    names: HashSet<(String, String)>,
}

impl Default for PingMetrics {
    fn default() -> Self {
        Self {
            unresolved: Family::default(),
            unresolved_runs: Family::default(),
            rtt: Family::new_with_constructor(|| Histogram::new(rtt_buckets())),
            requests: Family::default(),
            made: Arc::default(),
        }
    }
}

impl PingMetrics {
    /// Registers every series into `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "ping_unresolved",
            "1 while the entity's host name is unresolved and gets no ping values",
            self.unresolved.clone(),
        );
        registry.register(
            "ping_unresolved_runs",
            "Runs that wrote no values for an address because its host name was unresolved",
            self.unresolved_runs.clone(),
        );
        registry.register(
            "ping_response_duration_seconds",
            "Round-trip times of answered echo requests, per target",
            self.rtt.clone(),
        );
        registry.register(
            "ping_requests",
            "Echo requests sent per target (retries of a packet count once)",
            self.requests.clone(),
        );
    }

    /// The series of one target, to keep and record into without looking
    /// them up again.
    pub fn target(&self, entity: u64, host: &Host, ip: IpAddr) -> TargetSeries {
        let host = host.to_string();
        self.made()
            .entry(entity)
            .or_default()
            .targets
            .insert((host.clone(), ip));
        let labels = TargetLabels {
            entity: entity.to_string(),
            host,
            ip: ip.to_string(),
        };
        TargetSeries(Some((
            self.rtt.get_or_create(&labels).clone(),
            self.requests.get_or_create(&labels).clone(),
        )))
    }

    /// Records one run's packets to one address (see [`TargetSeries::record`]).
    pub fn observe(
        &self,
        entity: u64,
        host: &Host,
        ip: IpAddr,
        results: &[Result<Option<Duration>, PingError>],
    ) {
        self.target(entity, host, ip).record(results);
    }

    /// Records whether an entity's host name in `details.<field>` resolved
    /// for this run.
    pub fn unresolved(&self, entity: u64, field: &str, host: &str, unresolved: bool) {
        self.made()
            .entry(entity)
            .or_default()
            .names
            .insert((field.to_string(), host.to_string()));
        let labels = NameLabels {
            entity: entity.to_string(),
            field: field.to_string(),
            host: host.to_string(),
        };
        self.unresolved
            .get_or_create(&labels)
            .set(i64::from(unresolved));
        if unresolved {
            self.unresolved_runs.get_or_create(&labels).inc();
        }
    }

    /// Removes every series of the entities for which `live` is false, so
    /// that an entity that left the config (or became invalid) leaves
    /// `/metrics` too, and a bot whose entities come and go for months does
    /// not keep their series.
    pub fn retain_entities(&self, live: impl Fn(u64) -> bool) {
        let mut made = self.made();
        made.retain(|&entity, made| {
            if live(entity) {
                return true;
            }
            let id = entity.to_string();
            for (host, ip) in &made.targets {
                let labels = TargetLabels {
                    entity: id.clone(),
                    host: host.clone(),
                    ip: ip.to_string(),
                };
                self.rtt.remove(&labels);
                self.requests.remove(&labels);
            }
            for (field, host) in &made.names {
                let labels = NameLabels {
                    entity: id.clone(),
                    field: field.clone(),
                    host: host.clone(),
                };
                self.unresolved.remove(&labels);
                self.unresolved_runs.remove(&labels);
            }
            false
        });
    }

    fn made(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Made>> {
        self.made.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The pinger's own counters on `/metrics`, read from [`Pinger::stats`](crate::icmp::Pinger::stats) at
/// each scrape: `ping_echo_requests_sent_total`, `…_answered_total`,
/// `…_timed_out_total`, `…_send_errors_total`, and
/// `ping_echo_replies_unmatched_total` (replies that were not this pinger's:
/// a rise there with several bots on one host is their replies, rejected).
#[derive(Clone, Debug)]
pub(crate) struct PingerCollector(pub(crate) crate::icmp::Pinger);

impl prometheus_client::collector::Collector for PingerCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> std::fmt::Result {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::MetricType;
        use prometheus_client::metrics::counter::ConstCounter;
        let stats = self.0.stats();
        for (name, help, value) in [
            ("ping_echo_requests_sent", "Echo requests sent", stats.sent),
            (
                "ping_echo_requests_answered",
                "Echo requests answered in time",
                stats.answered,
            ),
            (
                "ping_echo_requests_timed_out",
                "Echo requests not answered in time",
                stats.timed_out,
            ),
            (
                "ping_echo_requests_send_errors",
                "Echo requests that could not be sent",
                stats.send_errors,
            ),
            (
                "ping_echo_replies_unmatched",
                "Echo replies that matched no request of this bot (late, or another program's), dropped",
                stats.unmatched,
            ),
        ] {
            let metric = ConstCounter::new(value);
            metric.encode(encoder.encode_descriptor(name, help, None, MetricType::Counter)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(metrics: &PingMetrics) -> String {
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text
    }

    #[test]
    fn a_gone_entity_takes_its_series_with_it() {
        let metrics = PingMetrics::default();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let host = Host::Ip(ip);
        metrics.observe(1, &host, ip, &[Ok(Some(Duration::from_millis(1)))]);
        metrics.observe(2, &host, ip, &[Ok(Some(Duration::from_millis(1)))]);
        metrics.unresolved(2, "ipv4", "gone.example", true);
        metrics.unresolved(1, "ipv6", "kept.example", false);
        let before = encode(&metrics);
        assert!(before.contains(r#"entity="2""#), "{before}");

        metrics.retain_entities(|entity| entity == 1);
        let after = encode(&metrics);
        assert!(!after.contains(r#"entity="2""#), "{after}");
        assert!(
            after.contains(r#"ping_requests_total{entity="1""#),
            "{after}"
        );
        assert!(after.contains(r#"ping_unresolved{entity="1""#), "{after}");
        assert_eq!(metrics.made().len(), 1);
    }
}
