//! The SNMP bot as the SDK runs it: protocol, default port, built-in config
//! and Prometheus names.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use grafolean_collector::Bot;
use grafolean_collector::MappedPath;

use tokio::task::JoinHandle;

use crate::SnmpCollector;
use crate::state_file::StateKeeper;

/// The admin server's default address: `127.0.0.1:9743` (the ping bot's is 9742).
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9743);

/// The built-in standalone config: the local agent with Grafolean's three
/// default SNMP sensors, every 60 s.
pub const DEFAULT_CONFIG: &str = include_str!("../default.toml");

/// The SNMP bot, ready for [`Bot::main`] or [`Bot::run`]. Its own metrics
/// (`snmp_device_timeouts_total`, `snmp_sensor_errors_total`) are
/// registered with the SDK's registry.
///
/// With [`SnmpCollector::with_state_file`], the counter state file is loaded
/// when the bot starts (before the first config refresh), written
/// periodically while it runs, and once more at a clean shutdown, after the
/// running jobs were drained (see [`crate::state_file`]). `--once` does not
/// use it.
pub fn bot(collector: SnmpCollector) -> Bot<SnmpCollector> {
    let metrics = collector.metrics();
    let problems = collector.problems.clone();
    let keeper = collector.state_file().map(|(path, every)| {
        (
            StateKeeper::new(collector.counter_store(), path.into()),
            every,
        )
    });
    let mut b = Bot::new("grafolean-snmp-bot", collector)
        .with_protocol("snmp")
        .with_default_listen(DEFAULT_LISTEN)
        .with_default_config(DEFAULT_CONFIG)
        .with_path_mapper(map_path);
    metrics.register(&mut b.metrics().registry_mut());
    let _ = problems.set(b.metrics().clone());
    if let Some((keeper, every)) = keeper {
        let periodic: Arc<Mutex<Option<JoinHandle<()>>>> = Arc::default();
        let (k, p) = (keeper.clone(), periodic.clone());
        b = b
            .on_start(move || {
                k.load();
                *p.lock().unwrap_or_else(PoisonError::into_inner) = Some(k.spawn_periodic(every));
            })
            .on_shutdown(move || {
                if let Some(task) = periodic
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take()
                {
                    task.abort();
                }
                match keeper.save() {
                    Ok(()) => tracing::info!(state_file = %keeper.path().display(), "counter state written"),
                    Err(e) => tracing::warn!("{e}"),
                }
            });
    }
    b
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
