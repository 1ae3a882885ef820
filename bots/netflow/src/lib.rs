//! # grafolean-netflow-bot
//!
//! The Grafolean NetFlow bot: receives NetFlow v5, v9 and IPFIX, and sFlow
//! v5, over UDP ([`receiver`], [`decode`], [`sflow`]), counts each flow in clock-aligned windows
//! ([`aggregate`], [`window`]) with capped, error-bounded top lists
//! ([`topn`]), and sends the Python bot's paths and values per account
//! ([`collector`], [`output`]). One process, no database. It is also a
//! standalone NetFlow exporter for Prometheus.
//!
//! See the crate's README for the parity table against the Python bot.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations)]

pub mod aggregate;
pub mod bot;
pub mod collector;
pub mod decode;
pub mod fast;
pub mod flow;
pub mod labels;
pub mod metrics;
pub mod output;
pub mod receiver;
pub mod settings;
pub mod sflow;
pub mod suggest;
pub mod templates;
pub mod topn;
pub mod window;

pub use bot::bot;
pub use collector::NetflowCollector;
pub use settings::NetflowSettings;
