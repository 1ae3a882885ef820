//! Benchmark: fetching job configs for 1,000 entities × 5 sensors from the
//! fake backend over loopback, at 0 ms and 2 ms of added latency per request.
//!
//! ```text
//! cargo bench --bench fetch --features testing                # fake in this process
//! FETCH_SPLIT=1 cargo bench --bench fetch --features testing  # fake in its own process, on its own core
//! FETCH_IN_FLIGHT=64 cargo bench --bench fetch --features testing
//! ```
//!
//! It prints, for each case, the median wall time of several refreshes, the
//! request count, and the ideal time `requests × latency ÷ requests in flight`
//! at the nominal and at the measured ("effective") latency, each with the
//! ratio of the wall time to it. A refresh is also 4 round trips deep
//! (profile, accounts, the entity lists, then credentials and sensors), so
//! no refresh can take less than 4 × latency: "bound" is the larger of the
//! two, the shortest time the refresh could take at the effective latency.
//!
//! The shared case (1 credential, 5 sensors for all entities) makes
//! 2 + 1 + 1 + 5 = 9 requests (1,009 before the refresh read the protocols
//! from the entity list); the unshared case (each entity its own credential
//! and sensors) 2 + 1 + 1,000 + 5,000 = 6,003 (7,003 before).
//!
//! By default the fake backend runs in this process and shares the machine's
//! cores with the client. With `FETCH_SPLIT=1` the client runs pinned to CPU 0
//! (`taskset`) and each case's fake backend in a child process pinned to
//! CPU 1, as a real backend runs on another machine.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use grafolean_collector::api::BotToken;
use grafolean_collector::api::{ApiError, Client};
use grafolean_collector::fetch::{FetchOptions, fetch_job_configs};
use grafolean_collector::testing::{DeviceBatch, FakeAccount, FakeGrafolean, Fault};

const ENTITIES: usize = 1000;
const SENSORS: usize = 5;
const REPEATS: usize = 7;
/// Round trips one after another in a refresh: profile, accounts, entity
/// lists, credentials and sensors.
const DEPTH: u32 = 4;

/// The environment variable that gives a re-executed copy of this benchmark
/// its role: `client` (pinned to CPU 0) or `serve` (a fake backend).
const ROLE: &str = "GRAFOLEAN_FETCH_BENCH_ROLE";

fn main() {
    let split = std::env::var_os("FETCH_SPLIT").is_some_and(|v| v != "0");
    match std::env::var(ROLE).as_deref() {
        Ok("serve") => serve(),
        Ok("client") => bench(true),
        _ if split => {
            // Run the client itself pinned to CPU 0.
            let status = Command::new("taskset")
                .args(["-c", "0"])
                .arg(std::env::current_exe().unwrap())
                .args(std::env::args().skip(1))
                .env(ROLE, "client")
                .status()
                .expect("taskset (util-linux) runs");
            std::process::exit(status.code().unwrap_or(1));
        }
        _ => bench(false),
    }
}

#[tokio::main]
async fn bench(split: bool) {
    println!(
        "fetch_job_configs: {ENTITIES} entities x {SENSORS} sensors, {} requests in flight, median of {REPEATS}, fake backend {}",
        in_flight(),
        if split {
            "in its own process on CPU 1, client on CPU 0"
        } else {
            "in this process"
        }
    );
    println!(
        "{:<10} {:>8} {:>10} {:>9} {:>11} {:>11} {:>7} {:>11} {:>7} {:>11} {:>7}",
        "case",
        "latency",
        "effective",
        "requests",
        "wall",
        "ideal",
        "ratio",
        "ideal(eff)",
        "ratio",
        "bound(eff)",
        "ratio"
    );
    for shared in [true, false] {
        // The time of one request alone without added latency, to tell what
        // the latency adds.
        let mut unloaded = Duration::ZERO;
        for latency_ms in [0u64, 2] {
            let backend = Backend::start(split, shared, latency_ms).await;
            unloaded = run_case(&backend, shared, latency_ms, unloaded).await;
        }
    }
}

/// A fake backend, here or in a child process.
enum Backend {
    Here(FakeGrafolean, String),
    Child(Child, String, String),
}

impl Backend {
    async fn start(split: bool, shared: bool, latency_ms: u64) -> Self {
        if !split {
            let (fake, token) = fake_backend(shared, latency_ms).await;
            return Self::Here(fake, token);
        }
        let mut child = Command::new("taskset")
            .args(["-c", "1"])
            .arg(std::env::current_exe().unwrap())
            .env(ROLE, "serve")
            .env("FETCH_SHARED", if shared { "1" } else { "0" })
            .env("FETCH_LATENCY_MS", latency_ms.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("taskset (util-linux) runs");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let mut words = line.split_whitespace();
        let url = words.next().expect("the fake's url").to_string();
        let token = words.next().expect("the bot's token").to_string();
        Self::Child(child, url, token)
    }

    fn client(&self) -> Client {
        let (url, token) = match self {
            Self::Here(fake, token) => (fake.url(), token.as_str()),
            Self::Child(_, url, token) => (url.clone(), token.as_str()),
        };
        Client::builder(url, BotToken::new(token).unwrap())
            .build()
            .unwrap()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Self::Child(child, _, _) = self {
            // Closing its stdin tells the child to exit.
            drop(child.stdin.take());
            let _ = child.wait();
        }
    }
}

/// A fake backend with the benchmark's data, and the bot's token.
async fn fake_backend(shared: bool, latency_ms: u64) -> (FakeGrafolean, String) {
    let fake = FakeGrafolean::start().await;
    let account = 42;
    fake.put_account(FakeAccount::new("bench").with_id(account));
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
    (fake, bot.token)
}

/// The `serve` role: a fake backend until stdin closes.
#[tokio::main]
async fn serve() {
    let shared = std::env::var("FETCH_SHARED").unwrap() == "1";
    let latency_ms = std::env::var("FETCH_LATENCY_MS").unwrap().parse().unwrap();
    let (fake, token) = fake_backend(shared, latency_ms).await;
    let mut out = std::io::stdout();
    writeln!(out, "{} {token}", fake.url()).unwrap();
    out.flush().unwrap();
    tokio::task::spawn_blocking(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
    })
    .await
    .unwrap();
    drop(fake);
}

/// The median time of one request at a time: a GET of an entity that does
/// not exist, answered 404 with a body as small as the profile's.
async fn sequential(client: &Client) -> Duration {
    let mut times = Vec::new();
    for _ in 0..51 {
        let started = Instant::now();
        let missing = client.entity(42, 0).await.unwrap_err();
        assert!(matches!(missing, ApiError::NotFound { .. }), "{missing}");
        times.push(started.elapsed());
    }
    times.sort();
    times[25]
}

/// Requests in flight: `FETCH_IN_FLIGHT`, else the default.
fn in_flight() -> usize {
    std::env::var("FETCH_IN_FLIGHT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(FetchOptions::default().max_in_flight)
}

/// Runs one case and prints its line; returns the time of one request alone.
async fn run_case(
    backend: &Backend,
    shared: bool,
    latency_ms: u64,
    unloaded: Duration,
) -> Duration {
    let client = backend.client();
    let options = FetchOptions::default().with_max_in_flight(in_flight());
    let alone = sequential(&client).await;
    // The latency the fake really adds per request.
    let effective = if latency_ms == 0 {
        Duration::ZERO
    } else {
        alone.saturating_sub(unloaded)
    };
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
    let bound = ideal_effective.max(effective * DEPTH);
    let ratio = |ideal: Duration| {
        if ideal.is_zero() {
            "-".to_string()
        } else {
            format!("{:.2}", median.as_secs_f64() / ideal.as_secs_f64())
        }
    };
    println!(
        "{:<10} {:>6}ms {:>8.2}ms {:>9} {:>9.1}ms {:>9.1}ms {:>7} {:>9.1}ms {:>7} {:>9.1}ms {:>7}",
        if shared { "shared" } else { "unshared" },
        latency_ms,
        effective.as_secs_f64() * 1e3,
        requests,
        median.as_secs_f64() * 1e3,
        ideal.as_secs_f64() * 1e3,
        ratio(ideal),
        ideal_effective.as_secs_f64() * 1e3,
        ratio(ideal_effective),
        bound.as_secs_f64() * 1e3,
        ratio(bound),
    );
    alone
}
