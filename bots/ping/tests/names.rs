//! Host names in `details.ipv4` / `details.ipv6`, with real ICMP and the
//! real system resolver, inside private mount and network namespaces: the
//! test's own `/etc/hosts` is bind-mounted over the host's, and an empty
//! `/etc/resolv.conf` makes every other name fail at once (nothing listens on
//! loopback port 53). Each `#[test]` re-executes its `*_inner` twin under
//! `unshare -m -n` (see `common/netns.rs`). Needs root.

mod common;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use common::netns::{self, sh};
use grafolean_collector::{
    Collector, EntityConfig, Intervals, JobConfigs, Problems, SensorConfig, Tick,
};
use grafolean_ping_bot::metrics::PingMetrics;
use grafolean_ping_bot::resolve::{Resolver, ResolverOptions};
use grafolean_ping_bot::{PingCollector, PingParams, Pinger, PingerOptions};
use serde_json::json;

const REFRESH: Duration = Duration::from_secs(1);
const KEEP: Duration = Duration::from_secs(2);

/// This namespace's `/etc/hosts`, rewritten in place (the bind mount holds
/// the inode).
struct Hosts(PathBuf);

impl Hosts {
    fn mount() -> Self {
        assert!(
            netns::inside(),
            "mounts over /etc/hosts: private namespaces only"
        );
        sh("ip link set lo up");
        let dir = std::env::temp_dir().join(format!("grafolean-ping-names-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (hosts, resolv) = (dir.join("hosts"), dir.join("resolv.conf"));
        std::fs::write(&hosts, "").unwrap();
        std::fs::write(&resolv, "").unwrap();
        sh(&format!(
            "mount --bind {} /etc/hosts && mount --bind {} /etc/resolv.conf",
            hosts.display(),
            resolv.display()
        ));
        Self(hosts)
    }

    fn set(&self, lines: &str) {
        std::fs::write(&self.0, lines).unwrap();
    }
}

fn entity(id: u64, details: serde_json::Value) -> EntityConfig {
    EntityConfig {
        account_id: 1,
        entity_id: id,
        name: format!("entity {id}"),
        entity_type: "device".into(),
        details,
        credential_id: Some(1),
        credential_details: json!({"n_packets": 1, "timeout": 0.5, "sleep_packets": 0}).into(),
        sensors: vec![SensorConfig {
            sensor_id: 1,
            interval: Some(10),
            details: json!({}).into(),
            origin: None,
        }],
        origin: None,
    }
}

fn params(collector: &PingCollector, entity: EntityConfig) -> PingParams {
    let mut jobs = collector.jobs(
        &JobConfigs {
            entities: vec![entity],
        },
        &mut Problems::default(),
    );
    assert_eq!(jobs.len(), 1);
    jobs.remove(0).params
}

/// One run: the values as `(path, value)`, RTTs replaced by 1.0.
async fn run(collector: &PingCollector, params: &PingParams) -> Vec<(String, f64)> {
    let tick = Tick {
        at: SystemTime::now(),
        affecting: Intervals::one(10).unwrap(),
    };
    let values = collector.run(tick, params).await.unwrap();
    values
        .into_iter()
        .map(|v| {
            let value = if v.path.ends_with(".rtt") {
                1.0
            } else {
                v.value
            };
            (v.path, value)
        })
        .collect()
}

fn paths(values: &[(&str, f64)]) -> Vec<(String, f64)> {
    values.iter().map(|(p, v)| (p.to_string(), *v)).collect()
}

fn series(metrics: &PingMetrics, name: &str) -> String {
    // As the bot registers them: under their own names, in the SDK registry.
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    text.lines()
        .filter(|l| l.starts_with(name))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn names_resolve_change_fail_and_come_back() {
    netns::run_isolated(
        "names_resolve_change_fail_and_come_back_inner",
        &["-m", "-n"],
    );
}

#[tokio::test]
#[ignore = "runs inside private namespaces, started by names_resolve_change_fail_and_come_back"]
async fn names_resolve_change_fail_and_come_back_inner() {
    if !netns::inside() {
        return;
    }
    let hosts = Hosts::mount();
    hosts.set("127.0.0.2 pinghost.test\n::1 pinghost.test\n");
    let resolver = Resolver::new(
        ResolverOptions::default()
            .with_refresh(REFRESH)
            .with_keep_last_good(KEEP),
    );
    let pinger = Pinger::new(PingerOptions::default()).unwrap();
    let collector = PingCollector::new(pinger).with_resolver(resolver.clone());
    let metrics = collector.metrics().clone();
    // A name in both fields: its A record on the plain paths, its AAAA
    // record under `ipv6`.
    let dual = params(
        &collector,
        entity(1, json!({"ipv4": "pinghost.test", "ipv6": "PingHost.test"})),
    );
    let answered = paths(&[
        ("entity.1.ping.p0.ok", 1.0),
        ("entity.1.ping.p0.rtt", 1.0),
        ("entity.1.ping.success", 1.0),
        ("entity.1.ping.ipv6.p0.ok", 1.0),
        ("entity.1.ping.ipv6.p0.rtt", 1.0),
        ("entity.1.ping.ipv6.success", 1.0),
    ]);
    assert_eq!(run(&collector, &dual).await, answered);
    assert_eq!(resolver.stats().lookups, 2);

    // The A record changes to an address with no route in this namespace:
    // the cached answer holds until the refresh, then the new one is pinged.
    hosts.set("192.0.2.1 pinghost.test\n::1 pinghost.test\n");
    assert_eq!(run(&collector, &dual).await, answered);
    assert_eq!(resolver.stats().lookups, 2, "looked up before the refresh");
    tokio::time::sleep(REFRESH).await;
    let v4_down = paths(&[
        ("entity.1.ping.p0.ok", 0.0),
        ("entity.1.ping.success", 0.0),
        ("entity.1.ping.ipv6.p0.ok", 1.0),
        ("entity.1.ping.ipv6.p0.rtt", 1.0),
        ("entity.1.ping.ipv6.success", 1.0),
    ]);
    assert_eq!(run(&collector, &dual).await, v4_down);
    hosts.set("127.0.0.2 pinghost.test\n::1 pinghost.test\n");
    tokio::time::sleep(REFRESH).await;
    assert_eq!(run(&collector, &dual).await, answered);

    // The name stops resolving: the last addresses are kept for KEEP...
    hosts.set("");
    tokio::time::sleep(REFRESH).await;
    assert_eq!(run(&collector, &dual).await, answered);
    assert_eq!(resolver.stats().failures, 2);
    // ... then it is unresolved: no values, and it is counted.
    tokio::time::sleep(KEEP).await;
    assert_eq!(run(&collector, &dual).await, []);
    assert_eq!(run(&collector, &dual).await, []);
    let unresolved = series(&metrics, "ping_unresolved");
    for line in [
        r#"ping_unresolved{entity="1",field="ipv4",host="pinghost.test"} 1"#,
        r#"ping_unresolved{entity="1",field="ipv6",host="pinghost.test"} 1"#,
        r#"ping_unresolved_runs_total{entity="1",field="ipv4",host="pinghost.test"} 2"#,
    ] {
        assert!(unresolved.contains(line), "{line} not in\n{unresolved}");
    }

    // It comes back.
    hosts.set("127.0.0.2 pinghost.test\n::1 pinghost.test\n");
    tokio::time::sleep(REFRESH).await;
    assert_eq!(run(&collector, &dual).await, answered);
    let unresolved = series(&metrics, "ping_unresolved");
    assert!(
        unresolved.contains(r#"ping_unresolved{entity="1",field="ipv4",host="pinghost.test"} 0"#),
        "{unresolved}"
    );

    // A literal address is never looked up, even when /etc/hosts names it.
    hosts.set("127.0.0.3 127.0.0.1\n");
    let lookups = resolver.stats().lookups;
    let literal = params(
        &collector,
        entity(2, json!({"ipv4": "127.0.0.1", "ipv6": "::1"})),
    );
    for _ in 0..3 {
        let values = run(&collector, &literal).await;
        assert_eq!(values.len(), 6, "{values:?}");
    }
    assert_eq!(resolver.stats().lookups, lookups);
    println!("{}", netns::MARKER);
}
