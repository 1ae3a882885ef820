//! Benchmark: fetching job configs for 1,000 entities × 5 sensors from the
//! fake backend over loopback, at 0 ms and 2 ms of added latency per request.
//!
//! Run with `cargo bench --bench fetch --features testing`. It prints, for each
//! case, the median wall time of several refreshes, the request count, and the
//! ideal time `requests × latency ÷ requests in flight`.

use std::time::{Duration, Instant};

use grafolean_collector::api::Client;
use grafolean_collector::fetch::{DEFAULT_MAX_IN_FLIGHT, FetchOptions, fetch_job_configs};
use grafolean_collector::testing::{Account, DeviceBatch, FakeGrafolean, Fault};
use grafolean_collector::token::BotToken;

const ENTITIES: usize = 1000;
const SENSORS: usize = 5;
const REPEATS: usize = 7;

#[tokio::main]
async fn main() {
    println!(
        "fetch_job_configs: {ENTITIES} entities x {SENSORS} sensors, {} requests in flight, median of {REPEATS}",
        in_flight()
    );
    println!(
        "{:<10} {:>8} {:>10} {:>9} {:>11} {:>11} {:>7} {:>11} {:>7}",
        "case", "latency", "effective", "requests", "wall", "ideal", "ratio", "ideal(eff)", "ratio"
    );
    for shared in [true, false] {
        for latency_ms in [0u64, 2] {
            run_case(shared, latency_ms).await;
        }
    }
}

/// The latency the fake really adds per request (tokio's timer rounds a 2 ms
/// sleep up): the median of sequential requests with the delay, less the
/// median without it.
async fn effective_latency(fake: &FakeGrafolean, client: &Client, latency_ms: u64) -> Duration {
    if latency_ms == 0 {
        return Duration::ZERO;
    }
    let sample = async || {
        let mut times = Vec::new();
        for _ in 0..51 {
            let started = Instant::now();
            client.profile().await.unwrap();
            times.push(started.elapsed());
        }
        times.sort();
        times[25]
    };
    let with = sample().await;
    fake.clear_faults();
    let without = sample().await;
    fake.inject(Fault::latency(Duration::from_millis(latency_ms)));
    with.saturating_sub(without)
}

/// Requests in flight: `FETCH_IN_FLIGHT`, else the default.
fn in_flight() -> usize {
    std::env::var("FETCH_IN_FLIGHT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_MAX_IN_FLIGHT)
}

async fn run_case(shared: bool, latency_ms: u64) {
    let fake = FakeGrafolean::start().await;
    let account = 42;
    fake.put_account(Account::new("bench").with_id(account));
    let bot = fake.add_account_bot(account, "ping");
    let mut batch = DeviceBatch::new(account, "ping", ENTITIES)
        .with_bot(bot.id)
        .with_sensors(SENSORS, Some(60));
    if !shared {
        batch = batch.own_config();
    }
    fake.add_devices(&batch);
    if latency_ms > 0 {
        fake.inject(Fault::latency(Duration::from_millis(latency_ms)));
    }
    let client = Client::builder(fake.url(), BotToken::new(&bot.token).unwrap())
        .build()
        .unwrap();
    let options = FetchOptions {
        max_in_flight: in_flight(),
    };
    let effective = effective_latency(&fake, &client, latency_ms).await;
    let mut walls = Vec::new();
    let mut requests = 0;
    for _ in 0..REPEATS {
        // On a runtime worker, as the bot's refresh task runs it (the
        // benchmark's own `main` future runs on a thread of its own).
        let (client, options) = (client.clone(), options.clone());
        let (wall, report) = tokio::spawn(async move {
            let started = Instant::now();
            let report = fetch_job_configs(&client, "ping", &options).await.unwrap();
            (started.elapsed(), report)
        })
        .await
        .unwrap();
        walls.push(wall);
        assert_eq!(report.configs.entities.len(), ENTITIES);
        requests = report.requests;
    }
    walls.sort();
    let median = walls[REPEATS / 2];
    let ideal = Duration::from_millis(latency_ms) * requests as u32 / options.max_in_flight as u32;
    let ideal_effective = effective * requests as u32 / options.max_in_flight as u32;
    let ratio = |ideal: Duration| {
        if ideal.is_zero() {
            "-".to_string()
        } else {
            format!("{:.2}", median.as_secs_f64() / ideal.as_secs_f64())
        }
    };
    println!(
        "{:<10} {:>6}ms {:>8.2}ms {:>9} {:>9.1}ms {:>9.1}ms {:>7} {:>9.1}ms {:>7}",
        if shared { "shared" } else { "unshared" },
        latency_ms,
        effective.as_secs_f64() * 1e3,
        requests,
        median.as_secs_f64() * 1e3,
        ideal.as_secs_f64() * 1e3,
        ratio(ideal),
        ideal_effective.as_secs_f64() * 1e3,
        ratio(ideal_effective),
    );
}
