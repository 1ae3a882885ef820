//! `--once`: run every job once, now, and print what it produced.
//!
//! For bot authors, and for debugging "no data": it shows exactly which values
//! each job returns, or why it failed, without waiting for an interval. It
//! sends nothing unless `--send` is given.

use std::process::ExitCode;
use std::sync::Arc;

use futures::stream::{self, StreamExt};

use super::Bot;
use crate::collector::Collector;
use crate::exposition::ValueStore;
use crate::job::{JobId, Tick};
use crate::problem::Problems;
use crate::scheduler::RunOutcome;
use crate::scheduler::run::guarded;
use crate::scheduler::runner::run_timeout;
use crate::settings::{OnceFormat, Settings};

/// How many jobs `--once` runs at the same time (at most; the scheduler's
/// limit on concurrent runs applies too).
const CONCURRENCY: usize = 256;

/// The result of one job's run.
struct Outcome {
    job: String,
    account: Option<u64>,
    tick: Tick,
    labels: Arc<[(String, String)]>,
    outcome: RunOutcome,
}

impl Outcome {
    /// The job, with its labels (its target): `entity.7 (entity=7, target=10.0.0.1)`.
    fn name(&self) -> String {
        if self.labels.is_empty() {
            return self.job.clone();
        }
        let labels: Vec<String> = self
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!("{} ({})", self.job, labels.join(", "))
    }
}

pub(super) async fn run<C: Collector>(mut bot: Bot<C>, settings: Settings) -> ExitCode {
    // The same set-up as `Bot::run`: the settings, the config source, and the
    // collector built from its context.
    let start = match bot.set_up(&settings) {
        Ok(start) => start,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(if e.is_usage() { 2 } else { 1 });
        }
    };
    let (collector, tasks) = match bot.build(start.client.clone()) {
        Ok(built) => built,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let exit = run_jobs(&bot, &settings, start, collector).await;
    tasks.shutdown(bot.drain_deadline).await;
    exit
}

/// Loads the configs once, runs every job once, prints what each gave (or
/// why not), and sends with `--send`.
async fn run_jobs<C: Collector>(
    bot: &Bot<C>,
    settings: &Settings,
    start: super::Start,
    collector: Arc<C>,
) -> ExitCode {
    let mut loaded = match start.source.load(&start.fetch_options, true).await {
        Ok(loaded) => loaded.unwrap_or_default(),
        Err(e) => {
            eprintln!("could not load the job configs: {e}");
            return ExitCode::FAILURE;
        }
    };
    for failed in &loaded.failed {
        match failed.entity {
            Some(entity) => eprintln!(
                "entity {entity} of account {}: not run, the backend failed: {}",
                failed.account, failed.reason
            ),
            None => eprintln!(
                "account {}: not run, the backend failed to list its entities: {}",
                failed.account, failed.reason
            ),
        }
    }
    let mut problems = Problems::default();
    problems.extend(std::mem::take(&mut loaded.skipped));
    let specs = collector.jobs(&loaded.configs, &mut problems);
    for p in problems.iter() {
        let entity = p.raw_id.as_deref().map_or_else(
            || format!("account {}", p.account),
            |id| match &p.name {
                Some(name) => format!("entity {id} ({name:?}) of account {}", p.account),
                None => format!("entity {id} of account {}", p.account),
            },
        );
        eprintln!("{entity}: not run ({}): {}", p.cause, p.reason);
    }
    let shard = match start.fetch_options.shard {
        Some(shard) => format!(
            " (shard {shard}: {} of {} entities)",
            loaded.owned, loaded.seen
        ),
        None => String::new(),
    };
    eprintln!(
        "{} entities, {} jobs from {}{shard}; running each once",
        loaded.configs.entities.len(),
        specs.len(),
        start.source,
    );

    // Each run as the scheduler runs it: under its timeout, panics caught.
    let options = &bot.scheduler_options;
    let concurrency = CONCURRENCY.min(options.max_concurrent_runs.max(1));
    let mut outcomes: Vec<Outcome> = stream::iter(specs)
        .map(|spec| {
            let collector = collector.clone();
            async move {
                let tick = Tick::now(&spec.intervals);
                let timeout = run_timeout(options, spec.intervals.smallest());
                // Boxed, as the scheduler's runs are: a collector's future can be
                // deep (the SNMP bot's), and this one nests it further.
                let run = Box::pin(collector.run(tick.clone(), &spec.params));
                let outcome = guarded(run, timeout).await;
                let outcome = match outcome {
                    RunOutcome::Timeout => RunOutcome::Error(format!(
                        "timed out after {} ms (the run timeout)",
                        timeout.as_millis()
                    )),
                    other => other,
                };
                Outcome {
                    job: spec.id.to_string(),
                    account: spec.account,
                    tick,
                    labels: spec.labels,
                    outcome,
                }
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    outcomes.sort_by(|a, b| a.job.cmp(&b.job));

    match settings.format {
        OnceFormat::Table => print_table(&outcomes),
        OnceFormat::Prometheus => {
            let store = bot.values.clone();
            for o in &outcomes {
                if let RunOutcome::Ok(values) = &o.outcome {
                    store.update(&JobId::new(o.job.clone()), &o.labels, values);
                }
            }
            print!("{}", render(&store));
        }
    }

    let failed = outcomes
        .iter()
        .filter(|o| o.outcome.error().is_some())
        .count();
    let ran = outcomes.len();
    if settings.send {
        if let Some(client) = start.client {
            let sender = match crate::sender::Sender::builder(client, bot.metrics.clone()).build() {
                Ok(sender) => sender,
                Err(e) => {
                    eprintln!("the sender could not start: {e}");
                    return ExitCode::FAILURE;
                }
            };
            for o in outcomes {
                let name = o.name();
                match (o.outcome, o.account) {
                    (RunOutcome::Ok(values), Some(account)) => {
                        sender.submit(account, &JobId::new(o.job), o.tick.at, values);
                    }
                    (RunOutcome::Ok(_), None) => eprintln!(
                        "job {name}: not sent, it has no account (make it with JobSpec::for_entity)"
                    ),
                    _ => {}
                }
            }
            let report = sender.shutdown(bot.drain_deadline).await;
            eprintln!(
                "sent: {} delivered, {} spooled, {} dropped{}",
                report.delivered,
                report.spooled,
                report.dropped,
                if report.timed_out { " (timed out)" } else { "" }
            );
        }
    }
    let unloaded = loaded.failed.len();
    if unloaded > 0 {
        eprintln!("{unloaded} entities or accounts could not be loaded: the backend failed");
    }
    if failed > 0 {
        eprintln!("{failed} of {ran} job(s) failed");
    }
    if ran == 0 {
        let why = match problems.iter().count() {
            0 => "the config has no entity this bot can use".to_string(),
            n => format!("{n} entities could not be used (above)"),
        };
        eprintln!("nothing ran: {why}");
    }
    if failed > 0 || unloaded > 0 || ran == 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn render(store: &ValueStore) -> String {
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(Box::new(store.clone()));
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

fn print_table(outcomes: &[Outcome]) {
    let mut rows: Vec<[String; 3]> = vec![["JOB".into(), "PATH".into(), "VALUE".into()]];
    for o in outcomes {
        let name = o.name();
        match &o.outcome {
            RunOutcome::Ok(values) if values.is_empty() => {
                rows.push([name, "(no values)".into(), "the run returned none".into()]);
            }
            RunOutcome::Ok(values) => {
                for v in values {
                    let mark = match v.validate() {
                        Err(e) => format!(" (invalid, will not be sent: {e})"),
                        Ok(()) => String::new(),
                    };
                    rows.push([name.clone(), v.path.clone(), format!("{}{mark}", v.value)]);
                }
            }
            other => rows.push([name, "ERROR".into(), other.error().unwrap_or_default()]),
        }
    }
    let width = |i: usize| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0);
    let (w0, w1) = (width(0), width(1));
    for r in &rows {
        println!("{:<w0$}  {:<w1$}  {}", r[0], r[1], r[2]);
    }
}
