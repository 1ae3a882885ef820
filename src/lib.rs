//! # grafolean-collector
//!
//! The SDK for writing [Grafolean](https://github.com/grafolean/grafolean)
//! monitoring bots in Rust. A bot implements [`Collector`]; the runtime fetches
//! its job configs (from the Grafolean backend or a local TOML file), schedules
//! its jobs on tokio's timers, and sends the values it returns to Grafolean and
//! to Prometheus.
//!
//! ```text
//! ConfigSource ──configs──▶ Collector::jobs() ──JobSpecs──▶ Scheduler ──Tick──▶ Collector::run()
//!                                                                                     │ Values
//! admin server (/metrics /live /ready /) ◀──state── sinks: sender · Prometheus · stdout
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations)]

pub mod api;
pub mod collector;
pub mod config;
pub mod fetch;
pub mod job;
pub mod metrics;
pub mod scheduler;
pub mod sender;
#[cfg(feature = "testing")]
pub mod testing;
pub mod token;
pub mod value;

pub use collector::{BoxError, Collector};
pub use config::{EntityConfig, JobConfigs, SensorConfig};
pub use job::{Align, IntervalError, Intervals, JobId, JobSpec, Tick};
pub use value::Value;
