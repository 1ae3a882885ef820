//! `--once`: run every job once, now, and print what it produced.
//!
//! For bot authors, and for debugging "no data": it shows exactly which values
//! each job returns, or why it failed, without waiting for an interval. It
//! sends nothing unless `--send` is given.

use std::io::Write;
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
use crate::scheduler::shared::run_timeout;
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

pub(super) async fn run<C: Collector>(bot: Bot<C>, settings: Settings) -> ExitCode {
    run_to(
        bot,
        settings,
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    )
    .await
}

/// [`run`], printing the table (or the Prometheus text) to `out` and what
/// could not run, and why, to `err`.
async fn run_to<C: Collector>(
    mut bot: Bot<C>,
    settings: Settings,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> ExitCode {
    // The same set-up as `Bot::run`: the settings, the config source, and the
    // collector built from its context.
    let start = match bot.set_up(&settings) {
        Ok(start) => start,
        Err(e) => {
            let _ = writeln!(err, "{e}");
            return ExitCode::from(if e.is_usage() { 2 } else { 1 });
        }
    };
    let (collector, tasks) = match bot.build(start.client.clone()) {
        Ok(built) => built,
        Err(e) => {
            let _ = writeln!(err, "{e}");
            return ExitCode::FAILURE;
        }
    };
    let exit = run_jobs(&bot, &settings, start, collector, out, err).await;
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
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> ExitCode {
    let mut loaded = match start.source.load(&start.fetch_options, true).await {
        Ok(loaded) => loaded.unwrap_or_default(),
        Err(e) => {
            let _ = writeln!(err, "could not load the job configs: {e}");
            return ExitCode::FAILURE;
        }
    };
    for failed in &loaded.failed {
        let _ = match failed.entity {
            Some(entity) => writeln!(
                err,
                "entity {entity} of account {}: not run, the backend failed: {}",
                failed.account, failed.reason
            ),
            None => writeln!(
                err,
                "account {}: not run, the backend failed to list its entities: {}",
                failed.account, failed.reason
            ),
        };
    }
    let mut problems = Problems::default();
    problems.extend(std::mem::take(&mut loaded.skipped));
    let specs = collector.jobs(&loaded.configs, &mut problems);
    for p in problems.iter() {
        // A standalone file's entities have no account (0).
        let of_account = match p.account {
            0 => String::new(),
            account => format!(" of account {account}"),
        };
        let entity = match (p.raw_id.as_deref(), &p.name) {
            (None, _) => format!("account {}", p.account),
            (Some(id), Some(name)) => format!("entity {id} ({name:?}){of_account}"),
            (Some(id), None) => format!("entity {id}{of_account}"),
        };
        let _ = writeln!(err, "{entity}: not run ({}): {}", p.cause, p.reason);
    }
    let shard = match start.fetch_options.shard {
        Some(shard) => format!(
            " (shard {shard}: {} of {} entities)",
            loaded.owned, loaded.seen
        ),
        None => String::new(),
    };
    let runs = match bot.once_warm_up {
        Some(gap) => format!(
            "running each twice, {} ms apart (the first run only learns; the second is shown)",
            gap.as_millis()
        ),
        None => "running each once".to_string(),
    };
    let _ = writeln!(
        err,
        "{} entities, {} jobs from {}{shard}; {runs}",
        loaded.configs.entities.len(),
        specs.len(),
        start.source,
    );

    // Each run as the scheduler runs it: under its timeout, panics caught.
    let options = &bot.scheduler_options;
    let concurrency = CONCURRENCY.min(options.max_concurrent_runs.max(1));
    let run_all = || {
        stream::iter(&specs)
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
                        labels: spec.labels.clone(),
                        outcome,
                    }
                }
            })
            .buffer_unordered(concurrency)
            .collect::<Vec<Outcome>>()
    };
    if let Some(gap) = bot.once_warm_up {
        run_all().await;
        tokio::time::sleep(gap).await;
    }
    let mut outcomes = run_all().await;
    outcomes.sort_by(|a, b| a.job.cmp(&b.job));

    match settings.format {
        OnceFormat::Table => print_table(&outcomes, out),
        OnceFormat::Prometheus => {
            let store = bot.values.clone();
            for o in &outcomes {
                if let RunOutcome::Ok(values) = &o.outcome {
                    store.update(&JobId::new(o.job.clone()), &o.labels, values);
                }
            }
            let _ = write!(out, "{}", render(&store));
        }
    }

    let failed = outcomes
        .iter()
        .filter(|o| o.outcome.error().is_some())
        .count();
    let ran = outcomes.len();
    if settings.send {
        if let Some(client) = start.client {
            let sender = crate::sender::Sender::builder(client, &mut bot.metrics.registry_mut())
                .with_unsent_gauge(bot.metrics.values_unsent.clone())
                .build();
            let sender = match sender {
                Ok(sender) => sender,
                Err(e) => {
                    let _ = writeln!(err, "the sender could not start: {e}");
                    return ExitCode::FAILURE;
                }
            };
            for o in outcomes {
                let name = o.name();
                match (o.outcome, o.account) {
                    (RunOutcome::Ok(values), Some(account)) => {
                        sender.submit(account, &JobId::new(o.job), o.tick.at, values);
                    }
                    (RunOutcome::Ok(_), None) => {
                        let _ = writeln!(
                            err,
                            "job {name}: not sent, it has no account (make it with JobSpec::for_entity)"
                        );
                    }
                    _ => {}
                }
            }
            let report = sender.shutdown(bot.drain_deadline).await;
            let _ = writeln!(
                err,
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
        let _ = writeln!(
            err,
            "{unloaded} entities or accounts could not be loaded: the backend failed"
        );
    }
    if failed > 0 {
        let _ = writeln!(err, "{failed} of {ran} job(s) failed");
    }
    if ran == 0 {
        let why = match problems.iter().count() {
            0 => "the config has no entity this bot can use".to_string(),
            n => format!("{n} entities could not be used (above)"),
        };
        let _ = writeln!(err, "nothing ran: {why}");
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

fn print_table(outcomes: &[Outcome], out: &mut (dyn Write + Send)) {
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
        let _ = writeln!(out, "{:<w0$}  {:<w1$}  {}", r[0], r[1], r[2]);
    }
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::collector::BoxError;
    use crate::config::JobConfigs;
    use crate::job::{Intervals, JobSpec};
    use crate::scheduler::SchedulerOptions;
    use crate::value::Value;

    /// Three jobs, every 60 s: one answers, one hangs, one panics.
    struct Mixed;

    impl Collector for Mixed {
        type Params = u8;
        fn jobs(&self, _: &JobConfigs, _: &mut Problems) -> Vec<JobSpec<u8>> {
            (0..3)
                .map(|i| {
                    JobSpec::new(format!("job{i}"), Intervals::one(60).unwrap(), i)
                        .with_label("target", format!("10.0.0.{i}"))
                })
                .collect()
        }
        async fn run(&self, _: Tick, which: &u8) -> Result<Vec<Value>, BoxError> {
            match which {
                0 => Ok(vec![Value::new("mixed.answer", 42.0)]),
                1 => {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Ok(Vec::new())
                }
                _ => panic!("job 2 fell over"),
            }
        }
    }

    async fn once(bot: Bot<Mixed>) -> (ExitCode, String, String, Duration) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let started = Instant::now();
        let code = run_to(bot, Settings::default(), &mut out, &mut err).await;
        let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
        (code, text(out), text(err), started.elapsed())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hanging_and_a_panicking_job_are_reported_under_the_run_timeout() {
        let options = SchedulerOptions::default().with_run_timeout(Duration::from_millis(300));
        let bot = Bot::new("mixed", Mixed).with_scheduler_options(options);
        let (code, out, err, took) = once(bot).await;
        assert_eq!(format!("{code:?}"), format!("{:?}", ExitCode::FAILURE));
        // The run timeout, not the job's 60 s interval.
        assert!(took < Duration::from_secs(10), "{took:?}");
        let line = |job: &str| {
            out.lines()
                .find(|l| l.starts_with(job))
                .unwrap_or_else(|| panic!("no line for {job}:\n{out}"))
                .to_string()
        };
        assert!(
            line("job0 (target=10.0.0.0)").contains("mixed.answer"),
            "{out}"
        );
        assert!(
            line("job1 (target=10.0.0.1)").contains("timed out after 300 ms"),
            "{out}"
        );
        assert!(
            line("job2 (target=10.0.0.2)").contains("panicked: job 2 fell over"),
            "{out}"
        );
        assert!(err.contains("2 of 3 job(s) failed"), "{err}");
    }

    /// No job at all (every entity unusable, or none): not a success.
    #[tokio::test]
    async fn nothing_to_run_is_a_failure_that_says_why() {
        struct Nothing;
        impl Collector for Nothing {
            type Params = ();
            fn jobs(&self, _: &JobConfigs, _: &mut Problems) -> Vec<JobSpec<()>> {
                Vec::new()
            }
            async fn run(&self, _: Tick, _: &()) -> Result<Vec<Value>, BoxError> {
                Ok(Vec::new())
            }
        }
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run_to(
            Bot::new("nothing", Nothing),
            Settings::default(),
            &mut out,
            &mut err,
        )
        .await;
        assert_eq!(format!("{code:?}"), format!("{:?}", ExitCode::FAILURE));
        let err = String::from_utf8(err).unwrap();
        assert!(err.contains("nothing ran"), "{err}");
    }

    /// With a warm-up, each job runs twice and the second run is shown.
    #[tokio::test]
    async fn a_warm_up_runs_each_job_twice_and_shows_the_second() {
        struct Counting(std::sync::atomic::AtomicU32);
        impl Collector for Counting {
            type Params = ();
            fn jobs(&self, _: &JobConfigs, _: &mut Problems) -> Vec<JobSpec<()>> {
                vec![JobSpec::new("counting", Intervals::one(60).unwrap(), ())]
            }
            async fn run(&self, _: Tick, _: &()) -> Result<Vec<Value>, BoxError> {
                let n = self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                Ok(vec![Value::new("counting.run", f64::from(n))])
            }
        }
        for (warm_up, want) in [(None, "1"), (Some(Duration::from_millis(200)), "2")] {
            let mut bot = Bot::new("counting", Counting(Default::default()));
            if let Some(gap) = warm_up {
                bot = bot.with_once_warm_up(gap);
            }
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let started = Instant::now();
            let code = run_to(bot, Settings::default(), &mut out, &mut err).await;
            assert_eq!(format!("{code:?}"), format!("{:?}", ExitCode::SUCCESS));
            let out = String::from_utf8(out).unwrap();
            let line = out.lines().find(|l| l.contains("counting.run")).unwrap();
            assert!(line.trim_end().ends_with(want), "{warm_up:?}: {out}");
            assert!(started.elapsed() >= warm_up.unwrap_or_default());
        }
    }
}
