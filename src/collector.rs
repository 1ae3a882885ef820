//! The [`Collector`] trait: the one thing a bot author implements.
//!
//! A collector turns job configs into [`JobSpec`]s ([`Collector::jobs`]) and
//! runs one job at one [`Tick`] ([`Collector::run`]), returning [`Value`]s. It
//! knows nothing of Grafolean's wire format, of retries, or of Prometheus: the
//! runtime schedules the jobs and hands the values to the sinks.

use std::future::Future;

use crate::config::JobConfigs;
use crate::job::{JobSpec, Tick};
use crate::problem::Problems;
use crate::value::Value;

/// The error type a run may return. Any error converts into it with `?`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A monitoring bot's logic.
///
/// ```
/// use grafolean_collector::{BoxError, Collector, Intervals, JobConfigs, JobSpec, Problems, Tick, Value};
///
/// struct Constant;
///
/// impl Collector for Constant {
///     type Params = f64;
///
///     fn jobs(&self, _configs: &JobConfigs, _problems: &mut Problems) -> Vec<JobSpec<f64>> {
///         vec![JobSpec::new("answer", Intervals::one(10).unwrap(), 42.0)]
///     }
///
///     async fn run(&self, _tick: Tick, params: &f64) -> Result<Vec<Value>, BoxError> {
///         Ok(vec![Value::new("answer", *params)])
///     }
/// }
/// ```
pub trait Collector: Send + Sync + 'static {
    /// What one job's run needs, such as a target address and a timeout.
    /// Compared on every refresh: a job whose params changed is rescheduled.
    type Params: Clone + PartialEq + Send + Sync + std::fmt::Debug + 'static;

    /// Turns the fetched configs into jobs. Called on every refresh.
    ///
    /// An entity whose config cannot be used (in whole or in part) is
    /// reported in `problems`, with what to change, and skipped (or the part
    /// that cannot be used is); it must not take the other jobs down with
    /// it. Report every problem at every call: the runtime warns about a
    /// problem when it appears or changes, says when it is gone, counts it
    /// in `grafolean_bot_entity_errors_total{cause="invalid_config"}`, and
    /// shows it on the status page.
    ///
    /// Per-job state: a collector that keeps state between runs (clients,
    /// counters, learned settings) keys it by job and prunes it here. `jobs`
    /// is called with the whole config on every successful refresh, and
    /// the specs it returns are exactly the jobs that stay scheduled, so any
    /// other job's state can go (a failed refresh does not call it, and the
    /// previous jobs stay). A run of a removed job may still be in flight;
    /// state it recreates is dropped at the next refresh. The SNMP bot does
    /// this for its clients, counters and learned repetitions.
    fn jobs(&self, configs: &JobConfigs, problems: &mut Problems) -> Vec<JobSpec<Self::Params>>;

    /// Runs one job once. The values are stamped with `tick.at` and sent by the
    /// runtime.
    fn run(
        &self,
        tick: Tick,
        params: &Self::Params,
    ) -> impl Future<Output = Result<Vec<Value>, BoxError>> + Send;
}
