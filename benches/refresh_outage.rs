//! Values delivered while the backend fails a config refresh (issue 22):
//! 100 jobs at 1 s, a refresh every 5 s, and the fake backend failing the
//! credential and sensor GETs for 10 s, starting just as a refresh begins
//! (the first request of a refresh, `GET /profile`, arrives). Each fault kind
//! in turn: a 500, a reset connection, and a request that hangs past the
//! client's 10 s timeout.
//!
//! For each kind it prints how many of the outage's 1 s slots (100 jobs × 10 s)
//! reached the backend, how many twice, and the fewest jobs scheduled at any
//! 100 ms sample during the outage and the 15 s after it.
//!
//! Run with `cargo bench --bench refresh_outage --features testing`.

use std::time::{Duration, SystemTime};

use grafolean_collector::testing::{DeviceBatch, FakeAccount, FakeGrafolean, Fault, RunningBot};
use grafolean_collector::{
    Bot, BoxError, Collector, JobConfigs, JobSpec, Problems, Settings, Tick, Value,
};

const JOBS: usize = 100;
const OUTAGE: Duration = Duration::from_secs(10);

struct Echo;

impl Collector for Echo {
    type Params = u64;

    fn jobs(&self, configs: &JobConfigs, _: &mut Problems) -> Vec<JobSpec<u64>> {
        configs
            .entities
            .iter()
            .filter_map(|e| {
                let id = e.entity_id.to_string();
                Some(JobSpec::for_entity(e, id, e.intervals()?, e.entity_id))
            })
            .collect()
    }

    async fn run(&self, _: Tick, id: &u64) -> Result<Vec<Value>, BoxError> {
        Ok(vec![Value::new(format!("entity.{id}.outage"), 1.0)])
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

async fn jobs_scheduled(bot: &RunningBot) -> f64 {
    let text = reqwest::get(format!("{}/metrics", bot.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| {
            l.strip_prefix("grafolean_bot_jobs_scheduled ")?
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

/// One outage of `fault`; returns (slots delivered, slots twice, fewest jobs).
async fn outage(name: &str, fault: Fault) -> (usize, usize, f64) {
    let fake = FakeGrafolean::start().await;
    let account = fake.put_account(FakeAccount::new("outage"));
    let bot_user = fake.add_account_bot(account, "ping");
    let entities = fake.add_devices(
        &DeviceBatch::new(account, "ping", JOBS)
            .with_bot(bot_user.id)
            .with_sensors(1, Some(1)),
    );
    let settings = Settings::default()
        .with_backend_url(fake.url())
        .with_bot_token(&bot_user.token)
        .with_jobs_refresh_interval(5);
    let bot = RunningBot::start(Bot::new("outage", Echo).with_protocol("ping"), settings);
    while jobs_scheduled(&bot).await < JOBS as f64 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Just as a refresh begins.
    let profiles = || {
        fake.requests()
            .iter()
            .filter(|r| r.path.starts_with("/api/profile"))
            .count()
    };
    fake.clear_requests();
    let before = profiles();
    while profiles() == before {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let start = unix_now();
    let ids = [
        fake.inject(
            fault
                .clone()
                .method("GET")
                .path_contains("/credentials/")
                .for_duration(OUTAGE),
        ),
        fake.inject(
            fault
                .method("GET")
                .path_contains("/sensors/")
                .for_duration(OUTAGE),
        ),
    ];
    let mut fewest = f64::INFINITY;
    let until = tokio::time::Instant::now() + OUTAGE + Duration::from_secs(15);
    while tokio::time::Instant::now() < until {
        fewest = fewest.min(jobs_scheduled(&bot).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for id in ids {
        fake.remove_fault(id);
    }
    let end = start + OUTAGE.as_secs_f64();
    bot.stop().await.unwrap();

    let values = fake.values(account);
    let (mut delivered, mut twice) = (0, 0);
    for entity in entities {
        let path = format!("entity.{entity}.outage");
        let mut times: Vec<f64> = values
            .iter()
            .filter(|v| v.path == path && (start..end).contains(&v.t))
            .map(|v| v.t)
            .collect();
        times.sort_by(f64::total_cmp);
        let all = times.len();
        times.dedup_by(|a, b| (*a - *b).abs() < 0.5);
        delivered += times.len();
        twice += all - times.len();
    }
    println!(
        "| {name} | {delivered} of {} | {twice} | {fewest} of {JOBS} |",
        JOBS * OUTAGE.as_secs() as usize
    );
    (delivered, twice, fewest)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        println!("| fault on the credential and sensor GETs for 10 s | slots of the outage delivered | delivered twice | fewest jobs scheduled |");
        println!("|---|---|---|---|");
        outage("500", Fault::status(500)).await;
        outage("reset connection", Fault::drop_connection()).await;
        outage(
            "hang (past the 10 s timeout)",
            Fault::delay(Duration::from_secs(30)),
        )
        .await;
    });
}
