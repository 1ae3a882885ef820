//! # grafolean-snmp-bot
//!
//! The Grafolean SNMP bot: [`SnmpCollector`] turns entities with the `snmp`
//! protocol into jobs and polls their agents through one shared UDP socket
//! with [async-snmp](https://docs.rs/async-snmp). It is a drop-in for the
//! Python grafolean-snmp-bot (same credential and sensor fields, same value
//! paths, same environment variables), and a standalone SNMP exporter.
//!
//! See the crate's README for the parity table against the Python bot.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations)]

pub mod agent;
pub mod bot;
pub mod collector;
pub mod counters;
pub mod expr;
pub mod fetch;
pub mod interfaces;
pub mod job;
pub mod map;
mod mathjs;
pub mod plan;
pub mod rates;
pub mod sensor;
pub mod settings;
pub mod slug;
pub mod state;
pub mod state_file;

pub use bot::bot;
pub use collector::SnmpCollector;
pub use job::SnmpJob;
pub use settings::{SettingsError, SnmpSettings};
pub use state::CounterStore;
