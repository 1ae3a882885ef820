//! The ping bot as the SDK runs it: protocol, default port, built-in config,
//! Prometheus names, and a summary log line per interval.

use std::net::SocketAddr;
use std::time::Duration;

use grafolean_collector::{Bot, BoxError, MappedPath};
use tokio_util::sync::CancellationToken;

use crate::collector::PingCollector;
use crate::icmp::{Pinger, PingerOptions};

/// The admin server's default address: `127.0.0.1:9742`.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9742);

/// The built-in standalone config: 127.0.0.1 and ::1 every 5 s.
pub const DEFAULT_CONFIG: &str = include_str!("../default.toml");

/// How often the bot logs a summary of its pings at `info` (the environment's
/// `LOG_SUMMARY_INTERVAL`, in seconds, sets another period). Each round's
/// figures are logged at `debug`, every [`ROUND_EVERY`].
pub const SUMMARY_EVERY: Duration = Duration::from_secs(600);

/// How often the bot logs its pings' figures at `debug`.
pub const ROUND_EVERY: Duration = Duration::from_secs(5);

/// The summary period: `LOG_SUMMARY_INTERVAL` seconds (at least 1), else
/// [`SUMMARY_EVERY`].
fn summary_every() -> Duration {
    std::env::var("LOG_SUMMARY_INTERVAL")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map_or(SUMMARY_EVERY, |s| Duration::from_secs(s.max(1)))
}

/// The ping bot, ready for [`Bot::main`] or [`Bot::run`]. Its [`Pinger`]
/// opens its ICMP sockets with `options` when the bot starts, after the
/// settings validate; a host that does not allow them stops the bot with
/// [`Pinger::new`]'s error (exit status 1).
///
/// ```no_run
/// # #[tokio::main] async fn main() {
/// grafolean_ping_bot::bot(Default::default()).main().await;
/// # }
/// ```
pub fn bot(options: PingerOptions) -> Bot<PingCollector> {
    Bot::from_fn("grafolean-ping-bot", move |ctx| {
        let pinger = Pinger::new(options)?;
        let collector = PingCollector::new(pinger.clone());
        collector.metrics().register(&mut ctx.registry());
        ctx.registry()
            .register_collector(Box::new(crate::metrics::PingerCollector(pinger.clone())));
        ctx.spawn("ping-summary", move |shutdown| {
            log_summaries(pinger.clone(), shutdown)
        });
        Ok(collector)
    })
    .with_version(env!("CARGO_PKG_VERSION"))
    .with_about(env!("CARGO_PKG_DESCRIPTION"))
    .with_protocol("ping")
    .with_default_listen(DEFAULT_LISTEN)
    .with_default_config(DEFAULT_CONFIG)
    .with_path_mapper(map_path)
}

/// Logs the echo requests sent and answered, the timeouts and send errors,
/// and the replies that were not this pinger's (`unmatched`): every
/// [`ROUND_EVERY`] at `debug`, and a summary since the last one every
/// [`SUMMARY_EVERY`] at `info` (a healthy bot says little else), until
/// `shutdown`.
async fn log_summaries(pinger: Pinger, shutdown: CancellationToken) -> Result<(), BoxError> {
    let summary_every = summary_every();
    let mut round_start = pinger.stats();
    let mut summary_start = round_start;
    let mut next_summary = tokio::time::Instant::now() + summary_every;
    let mut tick = tokio::time::interval(ROUND_EVERY.min(summary_every));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return Ok(()),
        }
        let now = pinger.stats();
        if now.sent > round_start.sent {
            let d = now.since(&round_start);
            tracing::debug!(
                sent = d.sent,
                answered = d.answered,
                timed_out = d.timed_out,
                send_errors = d.send_errors,
                unmatched = d.unmatched,
                "ping round"
            );
        }
        round_start = now;
        if tokio::time::Instant::now() >= next_summary {
            next_summary += summary_every;
            let d = now.since(&summary_start);
            summary_start = now;
            tracing::info!(
                sent = d.sent,
                answered = d.answered,
                timed_out = d.timed_out,
                send_errors = d.send_errors,
                // Replies that were not this pinger's: another process's
                // (each raw socket sees every echo reply on the host), late
                // ones, or another program's.
                unmatched = d.unmatched,
                minutes = summary_every.as_secs() / 60,
                "pings since the last summary"
            );
        }
    }
}

/// Prometheus names for the ping paths, labelled like blackbox_exporter's
/// probes (the job adds `target`, `name` and `entity`):
///
/// | path | metric |
/// |---|---|
/// | `entity.<id>.ping.success` | `ping_success_ratio` |
/// | `entity.<id>.ping.p<i>.ok` | `ping_packet_ok{packet="<i>"}` |
/// | `entity.<id>.ping.p<i>.rtt` | `ping_rtt_seconds{packet="<i>"}` |
/// | `entity.<id>.ping.rtt_min`, `.rtt_avg`, `.rtt_max` (credential `stats`) | `ping_rtt_min_seconds`, `ping_rtt_avg_seconds`, `ping_rtt_max_seconds` |
/// | `entity.<id>.ping.jitter` (credential `stats`) | `ping_jitter_seconds` |
/// | `entity.<id>.ping.loss` (credential `stats`) | `ping_loss_ratio` |
/// | `entity.<id>.ping.ipv6.…` (the IPv6 address beside an IPv4 one) | the same, with `address="ipv6"` |
///
/// ```
/// let m = grafolean_ping_bot::bot::map_path("entity.7.ping.ipv6.p2.rtt").unwrap();
/// assert_eq!(m.name, "ping_rtt_seconds");
/// assert!(m.labels.contains(&("packet".to_string(), "2".to_string())));
/// assert!(m.labels.contains(&("address".to_string(), "ipv6".to_string())));
/// assert_eq!(grafolean_ping_bot::bot::map_path("entity.7.ping.jitter").unwrap().name, "ping_jitter_seconds");
/// ```
pub fn map_path(path: &str) -> Option<MappedPath> {
    let (entity, rest) = MappedPath::split_entity(path);
    let rest = rest.strip_prefix("ping.")?;
    let (secondary, rest) = match rest.strip_prefix("ipv6.") {
        Some(rest) => (true, rest),
        None => (false, rest),
    };
    let mut mapped = match rest.split('.').collect::<Vec<_>>().as_slice() {
        ["success"] => MappedPath::new("ping_success_ratio"),
        ["rtt_min"] => MappedPath::new("ping_rtt_min_seconds"),
        ["rtt_avg"] => MappedPath::new("ping_rtt_avg_seconds"),
        ["rtt_max"] => MappedPath::new("ping_rtt_max_seconds"),
        ["jitter"] => MappedPath::new("ping_jitter_seconds"),
        ["loss"] => MappedPath::new("ping_loss_ratio"),
        [p, "ok"] => MappedPath::new("ping_packet_ok").with_label("packet", p.strip_prefix('p')?),
        [p, "rtt"] => {
            MappedPath::new("ping_rtt_seconds").with_label("packet", p.strip_prefix('p')?)
        }
        _ => return None,
    };
    if secondary {
        mapped = mapped.with_label("address", "ipv6");
    }
    Some(match entity {
        Some(e) => mapped.with_label("entity", e),
        None => mapped,
    })
}
