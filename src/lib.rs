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

pub(crate) mod admin;
pub mod api;
mod backoff;
mod collector;
mod config;
pub(crate) mod exposition;
pub mod fetch;
mod hash;
mod interval;
mod job;
mod lifecycle;
pub(crate) mod metrics;
mod problem;
pub mod resolve;
mod runtime;
pub mod scheduler;
pub mod sender;
mod settings;
mod shard;
pub(crate) mod standalone;
#[cfg(feature = "testing")]
pub mod testing;
mod text;
pub(crate) mod token;
mod value;

pub use admin::web_config::WebConfigError;
pub use collector::{BoxError, Collector};
pub use config::{EntityConfig, JobConfigs, SensorConfig};
pub use exposition::MappedPath;
pub use job::{Align, IntervalError, Intervals, JobId, JobSpec, Tick};
pub use metrics::Metrics;
pub use problem::{EntityProblem, Problems, SkipCause};
pub use runtime::{Bot, Context, RunError};
pub use settings::{Settings, SettingsError};
pub use shard::Shard;
pub use standalone::StandaloneError;
pub use value::{Value, ValueError};
