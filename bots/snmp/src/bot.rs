//! The SNMP bot as the SDK runs it: protocol, default port, built-in config
//! and Prometheus names.

use std::net::SocketAddr;

use grafolean_collector::{Bot, MappedPath};

use crate::collector::SnmpCollector;
use crate::state_file::StateKeeper;

/// The admin server's default address: `127.0.0.1:9743` (the ping bot's is 9742).
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9743);

/// How far apart `--once` polls each entity twice, so that counters give
/// rates (their first reading only learns them).
pub const ONCE_WARM_UP: std::time::Duration = std::time::Duration::from_secs(2);

/// The built-in standalone config: the local agent with Grafolean's three
/// default SNMP sensors, every 60 s.
pub const DEFAULT_CONFIG: &str = include_str!("../default.toml");

/// The SNMP bot, ready for [`Bot::main`] or [`Bot::run`]. Its own metrics
/// (`snmp_device_timeouts_total`, `snmp_sensor_errors_total`) are
/// registered with the SDK's registry, and with a backend the collector
/// writes interface entities through the runtime's API client.
///
/// With [`SnmpCollector::with_state_file`], the counter state file is loaded
/// when the bot starts (before the first config refresh), and written
/// periodically by a supervised task, and once more at a clean shutdown,
/// after the running jobs were drained (see [`crate::state_file`]). `--once`
/// loads it and writes it at its end too.
pub fn bot(collector: SnmpCollector) -> Bot<SnmpCollector> {
    Bot::from_fn("grafolean-snmp-bot", move |ctx| {
        let collector = collector.with_api(ctx.client().cloned());
        collector.metrics().register(&mut ctx.registry());
        if let Some((path, every)) = collector.state_file() {
            let keeper = StateKeeper::open(collector.counter_store(), path.into())?;
            keeper.load();
            ctx.spawn("state-file", move |shutdown| {
                let keeper = keeper.clone();
                async move { Ok(keeper.run(every, shutdown).await?) }
            });
        }
        Ok(collector)
    })
    .with_version(env!("CARGO_PKG_VERSION"))
    .with_about(env!("CARGO_PKG_DESCRIPTION"))
    .with_protocol("snmp")
    .with_default_listen(DEFAULT_LISTEN)
    .with_default_config(DEFAULT_CONFIG)
    .with_path_mapper(map_path)
    // Counters give rates from two readings: `--once` reads them twice.
    .with_once_warm_up(ONCE_WARM_UP)
    // async-snmp logs an ERROR per timeout and per v3 report, per device and
    // firing: the bot says the same per device, with backoff, and the crate's
    // lines are counted (`RUST_LOG=info,async_snmp=warn` shows them).
    .with_quiet_log_target("async_snmp")
}

/// Prometheus names for SNMP paths: `entity.<id>.snmp.<name>.<index>.<descr>`
/// becomes `snmp_<name>{index="<index>", descr="<descr>", entity="<id>"}`,
/// with `.` and `-` in the name as `_`. The index is the first all-digit
/// part; everything after it is `descr`. A path without one is all name.
///
/// ```
/// let m = grafolean_snmp_bot::bot::map_path("entity.7.snmp.if.in-octets.2.eth0").unwrap();
/// assert_eq!(m.name, "snmp_if_in_octets");
/// assert!(m.labels.contains(&("index".to_string(), "2".to_string())));
/// assert!(m.labels.contains(&("descr".to_string(), "eth0".to_string())));
/// assert!(m.labels.contains(&("entity".to_string(), "7".to_string())));
/// ```
pub fn map_path(path: &str) -> Option<MappedPath> {
    let (entity, rest) = MappedPath::split_entity(path);
    let rest = rest.strip_prefix("snmp.")?;
    let parts: Vec<&str> = rest.split('.').collect();
    let at = parts
        .iter()
        .position(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let (name_parts, index, descr) = match at {
        Some(i) => (&parts[..i], Some(parts[i]), parts[i + 1..].join(".")),
        None => (&parts[..], None, String::new()),
    };
    let mut name = String::from("snmp");
    for part in name_parts {
        name.push('_');
        name.extend(
            part.chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }),
        );
    }
    let mut mapped = MappedPath::new(name);
    if let Some(i) = index {
        mapped = mapped.with_label("index", i);
    }
    if !descr.is_empty() {
        mapped = mapped.with_label("descr", descr);
    }
    Some(match entity {
        Some(e) => mapped.with_label("entity", e),
        None => mapped,
    })
}
