//! `--once`: run every job once, now, and print what it produced.
//!
//! For bot authors, and for debugging "no data": it shows exactly which values
//! each job returns, or why it failed, without waiting for an interval. It
//! sends nothing unless `--send` is given.

use std::process::ExitCode;
use std::time::Duration;

use futures::stream::{self, StreamExt};

use super::Bot;
use crate::exposition::ValueStore;
use crate::settings::{OnceFormat, Settings};
use crate::{Collector, Tick, Value};

/// How many jobs `--once` runs at the same time.
const CONCURRENCY: usize = 256;

/// The result of one job's run.
struct Outcome {
    job: String,
    account: Option<u64>,
    tick: Tick,
    labels: std::sync::Arc<[(String, String)]>,
    result: Result<Vec<Value>, String>,
}

pub(super) async fn run<C: Collector>(bot: Bot<C>, settings: Settings) -> ExitCode {
    let source = match settings.validate() {
        Ok(source) => source,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let (client, config_source) = match bot.config_source(source, settings.max_response_bytes()) {
        Ok(pair) => pair,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    // Validated above, with the other settings.
    let fetch_options = bot.sharded_fetch_options(&settings).unwrap_or_default();
    let loaded = match config_source.load(&fetch_options, true).await {
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
    let specs = bot.collector.jobs(&loaded.configs);
    let shard = match fetch_options.shard {
        Some(shard) => format!(
            " (shard {shard}: {} of {} entities)",
            loaded.owned, loaded.seen
        ),
        None => String::new(),
    };
    eprintln!(
        "{} entities, {} jobs from {config_source}{shard}; running each once",
        loaded.configs.entities.len(),
        specs.len()
    );

    let mut outcomes: Vec<Outcome> = stream::iter(specs)
        .map(|spec| {
            let collector = bot.collector.clone();
            async move {
                let tick = Tick::now(&spec.intervals);
                let timeout = Duration::from_secs(u64::from(spec.intervals.smallest()));
                let result =
                    match tokio::time::timeout(timeout, collector.run(tick.clone(), &spec.params))
                        .await
                    {
                        Ok(Ok(values)) => Ok(values),
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(_) => Err(format!("timed out after {timeout:?}")),
                    };
                Outcome {
                    job: spec.id.to_string(),
                    account: spec.account,
                    tick,
                    labels: spec.labels,
                    result,
                }
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    outcomes.sort_by(|a, b| a.job.cmp(&b.job));

    match settings.format {
        OnceFormat::Table => print_table(&outcomes),
        OnceFormat::Prometheus => {
            let store = bot.values.clone();
            for o in &outcomes {
                if let Ok(values) = &o.result {
                    store.update(&crate::JobId::new(o.job.clone()), &o.labels, values);
                }
            }
            print!("{}", render(&store));
        }
    }

    let failed = outcomes.iter().filter(|o| o.result.is_err()).count();
    if settings.send {
        if let Some(client) = client {
            let sender = match crate::sender::Sender::builder(client, bot.metrics.clone()).build() {
                Ok(sender) => sender,
                Err(e) => {
                    eprintln!("the sender could not start: {e}");
                    return ExitCode::FAILURE;
                }
            };
            for o in outcomes {
                match (o.result, o.account) {
                    (Ok(values), Some(account)) => {
                        sender.submit(account, &crate::JobId::new(o.job), o.tick.at, values);
                    }
                    (Ok(_), None) => eprintln!(
                        "job {}: not sent, it has no account (make it with JobSpec::for_entity)",
                        o.job
                    ),
                    (Err(_), _) => {}
                }
            }
            let report = sender.shutdown(bot.drain_deadline).await;
            eprintln!("sent: {report:?}");
        }
    }
    if !loaded.failed.is_empty() {
        eprintln!(
            "{} entities or accounts could not be loaded: the backend failed",
            loaded.failed.len()
        );
    }
    if failed > 0 || !loaded.failed.is_empty() {
        if failed > 0 {
            eprintln!("{failed} job(s) failed");
        }
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
        match &o.result {
            Ok(values) if values.is_empty() => {
                rows.push([o.job.clone(), "(no values)".into(), String::new()]);
            }
            Ok(values) => {
                for v in values {
                    let mark = if v.validate().is_err() {
                        " (invalid: will not be sent)"
                    } else {
                        ""
                    };
                    rows.push([o.job.clone(), v.path.clone(), format!("{}{mark}", v.value)]);
                }
            }
            Err(e) => rows.push([o.job.clone(), "ERROR".into(), e.clone()]),
        }
    }
    let width = |i: usize| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0);
    let (w0, w1) = (width(0), width(1));
    for r in &rows {
        println!("{:<w0$}  {:<w1$}  {}", r[0], r[1], r[2]);
    }
}
