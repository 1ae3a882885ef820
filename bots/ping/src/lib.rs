//! # grafolean-ping-bot
//!
//! The Grafolean ping bot: [`PingCollector`] turns entities with the `ping`
//! protocol into jobs and measures them with [`icmp::Pinger`], a pinger that
//! shares one ICMP socket per address family between every job, so one
//! process can ping tens of thousands of targets.
//!
//! ## Permissions
//!
//! The pinger opens a raw ICMP socket when it may (root, or the
//! `CAP_NET_RAW` capability: `setcap cap_net_raw+ep grafolean-ping-bot`, or
//! `--cap-add NET_RAW` in Docker). Otherwise it falls back to an unprivileged
//! ping socket, which Linux allows to groups inside the sysctl
//! `net.ipv4.ping_group_range`. When neither is allowed,
//! [`Pinger::new`] fails with an error that says so.
//!
//! ## Compared with the Python ping bot
//!
//! The jobs, the credential fields with their defaults and the value paths
//! are the same (see [`collector`]). The differences:
//!
//! - `details.ipv6` is pinged as well: on the plain paths when it is the
//!   entity's only address, else under `entity.<id>.ping.ipv6.…`; the
//!   `details.ipv4` paths are unchanged.
//! - Host names are resolved as in the Python bot, but cached and looked up
//!   again every minute, and a name that stops resolving costs only its own
//!   entity (see [`resolve`]).
//! - An unusable setting (unparsable, outside its documented range, a `timeout`
//!   under 0.1 s, or retries less than 0.1 s apart, which Python's multiping
//!   refused on every run) skips that entity with a warning when the jobs are
//!   built. A negative `retry`, which multiping silently treated as 0, is
//!   refused too.
//! - There is no pause after the last packet, so the values are ready
//!   `sleep_packets` sooner.
//! - Replies are matched by address, identifier, sequence and payload, so a
//!   reply is never credited to the wrong target, even with thousands of
//!   targets in flight or several bots on one host, and RTTs are taken to
//!   the kernel's receive time.
//! - Beyond the Python bot: an RTT histogram per target on `/metrics`
//!   ([`metrics`]), optional RTT statistics paths and packet options (payload
//!   size, TTL, DF bit, source address) as credential fields ([`settings`]).
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations)]

pub mod bot;
pub mod collector;
pub mod icmp;
pub mod metrics;
/// Host names, through the SDK's shared resolver.
pub use grafolean_collector::resolve;
pub mod settings;

pub use bot::bot;
pub use collector::{PingCollector, PingParams};
pub use icmp::{PingError, Pinger, PingerOptions};
pub use settings::{PingSettings, SettingsError};
