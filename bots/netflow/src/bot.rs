//! The NetFlow bot as the SDK runs it: the receivers and the window closer
//! as supervised tasks, its instruments, and its Prometheus names.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use grafolean_collector::{Bot, MappedPath};
use tokio::net::UdpSocket;

use crate::collector::NetflowCollector;
use crate::decode::Decoder;
use crate::metrics::{ExporterWindowLabels, NetflowMetrics, WindowLabels};
use crate::receiver::{self, Receiver};
use crate::settings::NetflowSettings;
use crate::suggest::{Exporters, Suggester};
use crate::templates::TemplateFile;
use crate::window::{GRACE, Window, Windows, unix_secs};

/// The admin server's default address: `127.0.0.1:9744` (the ping bot's is
/// 9742, the SNMP bot's 9743).
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9744);

/// The built-in standalone config: one entity for exporters on this machine.
pub const DEFAULT_CONFIG: &str = include_str!("../default.toml");

/// How often the kernel's drop counts and the windows' sizes are read.
const GAUGES_EVERY: Duration = Duration::from_secs(5);

/// The NetFlow bot, ready for [`Bot::main`] or [`Bot::run`].
///
/// It binds the NetFlow port when it starts (a port that cannot be bound
/// stops it with the reason), then runs, as supervised tasks: one receiver
/// per socket, the window closer (every minute's end, plus
/// [`GRACE`]), the gauges, and with a backend the entity suggestions.
pub fn bot(settings: NetflowSettings) -> Bot<NetflowCollector> {
    Bot::from_fn("grafolean-netflow-bot", move |ctx| {
        let listen = settings.netflow_listen.unwrap_or_else(|| {
            // As the Python bot: every address when it works for Grafolean;
            // this machine only when it runs standalone.
            let ip = if ctx.client().is_some() {
                IpAddr::V6(Ipv6Addr::UNSPECIFIED)
            } else {
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            };
            SocketAddr::new(ip, settings.netflow_port)
        });
        let sockets = receiver::bind(listen, settings.receive_threads, settings.receive_buffer)
            .map_err(|e| format!("cannot receive NetFlow on udp {listen}: {e}"))?;
        let buffer = sockets.first().map_or(0, receiver::receive_buffer);
        let inodes: Vec<u64> = sockets.iter().filter_map(receiver::inode).collect();
        tracing::info!(
            %listen,
            sockets = sockets.len(),
            receive_buffer = buffer,
            sampling = if settings.apply_sampling { "applied" } else { "ignored" },
            "receiving NetFlow v5, v9 and IPFIX"
        );
        let windows = Arc::new(Windows::new(
            sockets.len(),
            SystemTime::now(),
            settings.top_keys,
        ));
        let windows_file = settings.windows_file.clone().and_then(|path| {
            match windows.restore(&path, unix_secs(SystemTime::now())) {
                Ok(n) => {
                    tracing::info!(file = %path.display(), restored = n, "open windows kept in");
                    Some(path)
                }
                Err(e) => {
                    // Never overwrite a file the bot could not read.
                    tracing::warn!("open windows are not kept across restarts: {e}");
                    None
                }
            }
        });
        let exporters = Exporters::default();
        let templates = settings.template_file.as_ref().and_then(|path| {
            match TemplateFile::load(path) {
                Ok(file) => {
                    tracing::info!(file = %path.display(), templates = file.len(), "exporters' templates kept in");
                    Some(Arc::new(file))
                }
                Err(e) => {
                    // Never overwrite a file the bot could not read.
                    tracing::warn!("templates are not kept across restarts: {e}");
                    None
                }
            }
        });
        let metrics = NetflowMetrics::default();
        metrics.register(&mut ctx.registry());
        for (i, socket) in sockets.into_iter().enumerate() {
            let socket = Arc::new(UdpSocket::from_std(socket)?);
            let shard = windows.shard(i);
            let metrics = metrics.clone();
            let apply_sampling = settings.apply_sampling;
            let exporters = exporters.clone();
            let templates = templates.clone();
            ctx.spawn(&format!("netflow-receiver-{i}"), move |shutdown| {
                // A restarted receiver has the templates of the file (if
                // any), else none until the exporter's next refresh.
                let decoder = match &templates {
                    Some(t) => Decoder::with_template_store(apply_sampling, t.clone()),
                    None => Decoder::new(apply_sampling),
                };
                let receiver = Receiver::new(
                    socket.clone(),
                    decoder,
                    shard.clone(),
                    metrics.clone(),
                    exporters.clone(),
                );
                async move { Ok(receiver.run(shutdown).await?) }
            });
        }
        let collector = NetflowCollector::new(windows.clone());
        {
            let windows = windows.clone();
            let collector = collector.clone();
            let metrics = metrics.clone();
            ctx.spawn("netflow-windows", move |shutdown| {
                closer(
                    windows.clone(),
                    collector.clone(),
                    metrics.clone(),
                    windows_file.clone(),
                    shutdown,
                )
            });
        }
        {
            let windows = windows.clone();
            let metrics = metrics.clone();
            ctx.spawn("netflow-gauges", move |shutdown| {
                gauges(windows.clone(), inodes.clone(), metrics.clone(), shutdown)
            });
        }
        if let Some(file) = templates {
            ctx.spawn("netflow-templates", move |shutdown| {
                let file = file.clone();
                async move {
                    loop {
                        let stop = tokio::select! {
                            _ = shutdown.cancelled() => true,
                            _ = tokio::time::sleep(Duration::from_secs(60)) => false,
                        };
                        if let Err(e) = file.save() {
                            tracing::warn!(file = %file.path().display(), "cannot save the templates: {e}");
                        }
                        if stop {
                            return Ok(());
                        }
                    }
                }
            });
        }
        if let Some(client) = ctx.client().cloned() {
            let every = Duration::from_secs(settings.suggest_interval);
            ctx.spawn("netflow-suggest-entities", move |shutdown| {
                let client = client.clone();
                let exporters = exporters.clone();
                async move {
                    Suggester::default()
                        .run(client, exporters, every, shutdown)
                        .await;
                    Ok(())
                }
            });
        }
        Ok(collector)
    })
    .with_version(env!("CARGO_PKG_VERSION"))
    .with_about(env!("CARGO_PKG_DESCRIPTION"))
    .with_protocol("netflow")
    .with_default_listen(DEFAULT_LISTEN)
    .with_default_config(DEFAULT_CONFIG)
    .with_path_mapper(map_path)
}

/// Closes the minutes at their ends (plus [`GRACE`]), and counts the
/// exporters that match no entity.
async fn closer(
    windows: Arc<Windows>,
    collector: NetflowCollector,
    metrics: NetflowMetrics,
    file: Option<std::path::PathBuf>,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<(), grafolean_collector::BoxError> {
    let save = |windows: &Windows| {
        if let Some(path) = &file
            && let Err(e) = windows.save(path)
        {
            tracing::warn!(file = %path.display(), "cannot save the open windows: {e}");
        }
    };
    loop {
        let now = SystemTime::now();
        let secs = unix_secs(now);
        let next = (secs / 60 + 1) * 60;
        let wait = (SystemTime::UNIX_EPOCH + Duration::from_secs(next))
            .duration_since(now)
            .unwrap_or_default()
            + GRACE;
        tokio::select! {
            _ = shutdown.cancelled() => {
                // What was counted since the last minute closed goes into
                // the open windows, and those into the file.
                if file.is_some() {
                    windows.absorb_pending();
                    save(&windows);
                }
                return Ok(());
            }
            _ = tokio::time::sleep(wait) => {}
        }
        windows.close_until(unix_secs(SystemTime::now()));
        if (next / 60).is_multiple_of(5) {
            save(&windows);
        }
        if let Some(last) = windows.closed(Window::OneMinute, next) {
            let heard: Vec<IpAddr> = last.exporters().copied().collect();
            let known = collector.known_addresses();
            let unmatched = heard.iter().filter(|e| !known.contains(e)).count();
            metrics.unmatched.set(unmatched as i64);
        }
    }
}

/// Reads the kernel's drop counts and the windows' sizes every few seconds.
async fn gauges(
    windows: Arc<Windows>,
    inodes: Vec<u64>,
    metrics: NetflowMetrics,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<(), grafolean_collector::BoxError> {
    let mut reported = receiver::kernel_drops(&inodes);
    let mut shown = std::collections::HashSet::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(GAUGES_EVERY) => {}
        }
        let drops = receiver::kernel_drops(&inodes);
        if drops > reported {
            metrics.socket_drops.inc_by(drops - reported);
            reported = drops;
        }
        for (window, keys, exact) in windows.open_keys() {
            let labels = WindowLabels {
                window: window.label().into(),
            };
            metrics.window_keys.get_or_create(&labels).set(keys as i64);
            metrics
                .window_exact
                .get_or_create(&labels)
                .set(i64::from(exact));
        }
        // Per exporter, with series for the first ones only (as the
        // receivers' counters); series of exporters gone are removed.
        let mut now = std::collections::HashMap::new();
        for (window, exporters) in windows.open_exporter_keys() {
            for (i, (exporter, keys)) in exporters.into_iter().enumerate() {
                let labels = ExporterWindowLabels {
                    exporter: if i < receiver::MAX_EXPORTER_SERIES {
                        exporter.to_string()
                    } else {
                        "other".into()
                    },
                    window: window.label().into(),
                };
                *now.entry(labels).or_insert(0) += keys;
            }
        }
        for (labels, keys) in &now {
            metrics
                .exporter_keys
                .get_or_create(labels)
                .set(*keys as i64);
        }
        for gone in shown.iter().filter(|l| !now.contains_key(*l)) {
            metrics.exporter_keys.remove(gone);
        }
        shown = now.into_keys().collect();
    }
}

/// Prometheus names for NetFlow paths: `netflow.<w>.<d>[.entity.<id>[.if.<i>]]`
/// becomes `netflow_window_bytes{window, direction[, entity[, interface]]}`,
/// and a top list's entry `netflow_top_<kind>_bytes` with the key as a label
/// (`ip`, `protocol`, `src` and `dst`, `port`).
///
/// ```
/// let m = grafolean_netflow_bot::bot::map_path("netflow.1min.ingress.entity.7.if.3.topip.10%2e0%2e0%2e1").unwrap();
/// assert_eq!(m.name, "netflow_top_ip_bytes");
/// assert!(m.labels.contains(&("ip".to_string(), "10.0.0.1".to_string())));
/// assert!(m.labels.contains(&("interface".to_string(), "3".to_string())));
/// ```
pub fn map_path(path: &str) -> Option<MappedPath> {
    let rest = path.strip_prefix("netflow.")?;
    let mut parts = rest.split('.');
    let window = parts.next()?;
    let direction = parts.next()?;
    let mut m = MappedPath::new("netflow_window_bytes")
        .with_label("window", window)
        .with_label("direction", direction);
    let unescape = |s: &str| s.replace("%2e", ".").replace("%3a", ":");
    while let Some(part) = parts.next() {
        m = match part {
            "entity" => m.with_label("entity", parts.next()?),
            "if" => m.with_label("interface", parts.next()?),
            "topip" => {
                m.name = "netflow_top_ip_bytes".into();
                m.with_label("ip", unescape(parts.next()?))
            }
            "topprotocol" => {
                m.name = "netflow_top_protocol_bytes".into();
                m.with_label("protocol", unescape(parts.next()?))
            }
            "topconn" => {
                m.name = "netflow_top_connection_bytes".into();
                let src = unescape(parts.next()?);
                m.with_label("src", src)
                    .with_label("dst", unescape(parts.next()?))
            }
            "topdstports" => {
                m.name = "netflow_top_dst_port_bytes".into();
                m.with_label("port", parts.next()?)
            }
            _ => return None,
        };
    }
    Some(m)
}
