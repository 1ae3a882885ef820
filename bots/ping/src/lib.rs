//! # grafolean-ping-bot
//!
//! The Grafolean ping bot: [`PingCollector`] turns entities with the `ping`
//! protocol into jobs and measures them with [`icmp::Pinger`], a pinger that
//! shares one ICMP socket per address family between every job, so one
//! process can ping tens of thousands of targets.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations)]

pub mod collector;
pub mod icmp;
pub mod settings;

pub use collector::{PingCollector, PingParams};
pub use icmp::{PingError, Pinger, PingerOptions};
pub use settings::{PingSettings, SettingsError};
