//! The ping bot's own series on `/metrics`, registered into the SDK's
//! registry (so they carry its `grafolean_bot_` prefix) by [`crate::bot()`].
//!
//! | series | what |
//! |---|---|
//! | `grafolean_bot_ping_unresolved{entity,field,host}` | 1 while the host name in `details.<field>` is unresolved, else 0 |
//! | `grafolean_bot_ping_unresolved_runs_total{entity,field,host}` | runs that wrote no values for that address because its name was unresolved |

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

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
/// let mut registry = prometheus_client::registry::Registry::with_prefix("grafolean_bot");
/// metrics.register(&mut registry);
/// metrics.unresolved(7, "ipv4", "router.example", true);
/// let mut text = String::new();
/// prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
/// assert!(text.contains(r#"grafolean_bot_ping_unresolved_runs_total{entity="7",field="ipv4",host="router.example"} 1"#));
/// ```
#[derive(Clone, Debug, Default)]
pub struct PingMetrics {
    unresolved: Family<NameLabels, Gauge>,
    unresolved_runs: Family<NameLabels, Counter>,
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
    }

    /// Records whether an entity's host name in `details.<field>` resolved
    /// for this run.
    pub fn unresolved(&self, entity: u64, field: &str, host: &str, unresolved: bool) {
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
}
