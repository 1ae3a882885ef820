//! Sender benchmarks against the fake Grafolean over loopback (release build):
//!
//! * **throughput**: values/s delivered when 500,000 values are submitted at
//!   once, in runs of 1,000 (batches that find no free connection wait in the
//!   backlog and are replayed; live and replayed values both go by PUT);
//! * **sustained**: 100,000 and 150,000 values/s submitted at a steady pace
//!   for 5 s: how soon after the last submission everything was delivered,
//!   and whether the live path kept up (nothing had to be replayed);
//! * **replay**: the time to replay a backlog of 1,000,000 values with PUT
//!   once the backend is back, from memory and from the spool.
//!
//! Run with `cargo bench --bench sender --features testing`. Prints medians.

use std::time::{Duration, Instant, SystemTime};

use grafolean_collector::Metrics;
use grafolean_collector::api::BotToken;
use grafolean_collector::api::Client;
use grafolean_collector::sender::Sender;
use grafolean_collector::testing::metric_value;
use grafolean_collector::testing::{ACCOUNT_ID, BOT_TOKEN, FakeGrafolean, Fault};
use grafolean_collector::{JobId, Value};

const RUNS: usize = 3;
const PER_SUBMIT: usize = 1_000;

fn sender(fake: &FakeGrafolean, metrics: &Metrics, spool: Option<&std::path::Path>) -> Sender {
    let client = Client::builder(fake.url(), BotToken::new(BOT_TOKEN).unwrap())
        .with_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut b = Sender::builder(client, &mut metrics.registry_mut())
        .with_backoff(Duration::from_millis(10), Duration::from_millis(50))
        .with_buffer_limit(2_000_000);
    if let Some(dir) = spool {
        b = b.with_spool_dir(dir);
    }
    b.build().unwrap()
}

fn submit(sender: &Sender, total: usize, base: SystemTime) {
    let job = JobId::new("bench");
    for s in 0..total / PER_SUBMIT {
        submit_run(sender, &job, s, base);
    }
}

/// Submits run `s`: 1,000 values at `base + s` ms, so that (path, t) never
/// repeats.
fn submit_run(sender: &Sender, job: &JobId, s: usize, base: SystemTime) {
    let values = (0..PER_SUBMIT)
        .map(|i| Value::new(format!("bench.s{}.p{i}", s % 1000), i as f64))
        .collect();
    sender.submit(
        ACCOUNT_ID,
        job,
        base + Duration::from_millis(s as u64),
        values,
    );
}

async fn wait(what: impl Fn() -> u64, n: u64) {
    while what() < n {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn throughput(total: usize) -> (f64, u64) {
    let fake = FakeGrafolean::with_fixture_data().await;
    let metrics = Metrics::new("bench");
    let sender = sender(&fake, &metrics, None);
    let start = Instant::now();
    submit(&sender, total, SystemTime::now());
    wait(
        || metric_value(&metrics, "grafolean_bot_values_sent_total") as u64,
        total as u64,
    )
    .await;
    let secs = start.elapsed().as_secs_f64();
    sender.shutdown(Duration::from_secs(5)).await;
    (
        total as f64 / secs,
        (metric_value(&metrics, "grafolean_bot_values_replayed_total") as u64),
    )
}

/// Submits `rate` values/s (1,000 every 1000/rate s) for `secs`, and
/// returns how long after the last submission everything was delivered, and
/// how many values were replayed from the backlog (because no connection
/// was free in time).
async fn sustained(rate: u64, secs: u64) -> (f64, u64) {
    let fake = FakeGrafolean::with_fixture_data().await;
    let metrics = Metrics::new("bench");
    let sender = sender(&fake, &metrics, None);
    let job = JobId::new("bench");
    let every = Duration::from_secs_f64(PER_SUBMIT as f64 / rate as f64);
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let n = (rate * secs) as usize / PER_SUBMIT;
    let base = SystemTime::now();
    for s in 0..n {
        interval.tick().await;
        submit_run(&sender, &job, s, base);
    }
    let last = Instant::now();
    wait(
        || metric_value(&metrics, "grafolean_bot_values_sent_total") as u64,
        (n * PER_SUBMIT) as u64,
    )
    .await;
    let lag = last.elapsed().as_secs_f64();
    sender.shutdown(Duration::from_secs(5)).await;
    (
        lag,
        (metric_value(&metrics, "grafolean_bot_values_replayed_total") as u64),
    )
}

async fn replay(total: usize, spool: bool) -> (f64, f64) {
    let fake = FakeGrafolean::with_fixture_data().await;
    let metrics = Metrics::new("bench");
    let dir = std::env::temp_dir().join(format!("sender-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let fault = fake.inject(Fault::status(500).path_contains("/values"));
    let sender = sender(&fake, &metrics, spool.then_some(dir.as_path()));
    let fill = Instant::now();
    submit(&sender, total, SystemTime::now());
    wait(
        || metric_value(&metrics, "grafolean_bot_values_buffered") as u64,
        total as u64,
    )
    .await;
    let fill = fill.elapsed().as_secs_f64();
    fake.remove_fault(fault);
    let start = Instant::now();
    wait(
        || metric_value(&metrics, "grafolean_bot_values_replayed_total") as u64,
        total as u64,
    )
    .await;
    let secs = start.elapsed().as_secs_f64();
    sender.shutdown(Duration::from_secs(5)).await;
    assert_eq!(fake.values(ACCOUNT_ID).len(), total);
    let _ = std::fs::remove_dir_all(&dir);
    (fill, secs)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (mut rates, mut puts) = (Vec::new(), Vec::new());
        for _ in 0..RUNS {
            let (rate, put) = throughput(500_000).await;
            rates.push(rate);
            puts.push(put);
        }
        println!(
            "throughput (burst of 500k values): median {:.0} values/s, runs {:?}; of which replayed from the backlog: {puts:?}",
            median(rates.clone()),
            rates.iter().map(|r| r.round()).collect::<Vec<_>>()
        );
        for rate in [100_000, 150_000] {
            let (mut lags, mut puts) = (Vec::new(), Vec::new());
            for _ in 0..RUNS {
                let (lag, put) = sustained(rate, 5).await;
                lags.push(lag);
                puts.push(put);
            }
            println!(
                "sustained {rate} values/s for 5 s: delivered median {:.3} s after the last submission (runs {:?}); values replayed from the backlog per run: {puts:?}",
                median(lags.clone()),
                lags.iter().map(|s| (s * 1000.0).round() / 1000.0).collect::<Vec<_>>(),
            );
        }
        for spool in [false, true] {
            let (mut fills, mut times) = (Vec::new(), Vec::new());
            for _ in 0..RUNS {
                let (fill, secs) = replay(1_000_000, spool).await;
                fills.push(fill);
                times.push(secs);
            }
            let t = median(times.clone());
            println!(
                "replay of 1,000,000 values (PUT, {}): median {t:.2} s ({:.0} values/s), runs {:?}; buffering took median {:.2} s",
                if spool { "spool" } else { "memory" },
                1e6 / t,
                times.iter().map(|s| (s * 100.0).round() / 100.0).collect::<Vec<_>>(),
                median(fills),
            );
        }
    });
}
