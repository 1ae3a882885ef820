//! Where a run's report goes: the SDK metrics, the value gauges on
//! `/metrics`, and the Grafolean sender.
//!
//! Each report carries its job's labels and account, so no side table of jobs
//! is needed here. A removed job's late report cannot bring its series back:
//! the value store ignores jobs that are no longer scheduled (see
//! [`ValueStore::retain_jobs`]).

use tracing::debug;

use crate::exposition::ValueStore;
use crate::metrics::{Metrics, Outcome};
use crate::scheduler::{RunOutcome, RunReport};
use crate::sender::Sender;

/// The sinks of every run's report.
#[derive(Clone, Debug)]
pub(crate) struct Sinks {
    pub(crate) metrics: Metrics,
    /// The value gauges, unless `--no-export-values`.
    pub(crate) values: Option<ValueStore>,
    /// The sender, when the bot sends to Grafolean.
    pub(crate) sender: Option<Sender>,
}

impl Sinks {
    /// Records one firing of one job.
    pub(crate) fn report(&self, report: RunReport) {
        self.record_run(&report);
        let RunOutcome::Ok(output) = report.outcome else {
            return;
        };
        if let Some(values) = &self.values {
            values.update(&report.job, &report.labels, &output);
        }
        if let Some(sender) = &self.sender {
            match report.account {
                Some(account) => sender.submit(account, &report.job, report.tick.at, output),
                // Refused at sync; only a run that started before can get here.
                None => debug!(job = %report.job, "values not sent: the job has no account"),
            }
        }
    }

    fn record_run(&self, report: &RunReport) {
        let outcome = match &report.outcome {
            RunOutcome::Ok(_) => Outcome::ok,
            RunOutcome::Error(_) => Outcome::error,
            RunOutcome::Timeout => Outcome::timeout,
            RunOutcome::Panicked(_) => Outcome::panic,
            RunOutcome::Skipped => Outcome::skipped,
        };
        self.metrics.run(outcome);
        if !matches!(report.outcome, RunOutcome::Skipped) {
            self.metrics
                .run_duration
                .observe(report.duration.as_secs_f64());
            self.metrics.lateness.observe(report.lateness.as_secs_f64());
        }
    }
}
