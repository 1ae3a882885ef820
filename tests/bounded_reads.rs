//! Bounded reads: a backend that answers with a body that never ends costs
//! the bot one clear error per request and at most the configured limit of
//! memory, not the host's memory; the bot recovers when the backend does, and
//! a refresh that meets it keeps the previous jobs.
//!
//! This file holds one test, so that the test process's peak RSS (`VmHWM`)
//! is this bot's, with the fake backend and the test harness on top.

use std::time::Duration;

use clap::Parser;
use grafolean_collector::Settings;
use grafolean_collector::testing::{
    ACCOUNT_ID, BOT_TOKEN, ENTITY_ID, FakeGrafolean, Fault, RunningBot,
};
use grafolean_collector::{Bot, BoxError, Collector, JobConfigs, JobSpec, Problems, Tick, Value};
use tokio::time::{Instant, sleep};

/// One value per entity: `entity.<id>.test.up` = 1.
struct Up;

impl Collector for Up {
    type Params = u64;

    fn jobs(&self, configs: &JobConfigs, _: &mut Problems) -> Vec<JobSpec<u64>> {
        configs
            .entities
            .iter()
            .filter_map(|e| {
                let spec = JobSpec::new(
                    format!("entity.{}", e.entity_id),
                    e.intervals()?,
                    e.entity_id,
                );
                Some(spec.with_account(e.account_id))
            })
            .collect()
    }

    async fn run(&self, _: Tick, id: &u64) -> Result<Vec<Value>, BoxError> {
        Ok(vec![Value::new(format!("entity.{id}.test.up"), 1.0)])
    }
}

/// This process's peak resident set size in bytes (`VmHWM`).
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

/// Waits (at most 20 s) until the counter `series` is at least `n`.
async fn failures_at_least(bot: &RunningBot, series: &str, n: f64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while metric(bot, series).await.unwrap_or(0.0) < n {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {series} >= {n}"
        );
        sleep(Duration::from_millis(50)).await;
    }
}

async fn metric(bot: &RunningBot, name: &str) -> Option<f64> {
    let text = reqwest::get(format!("{}/metrics", bot.url()))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// The limit this test gives the bot (`--max-response-mib`): half the default,
/// because this process also holds the fake backend and the test harness (at
/// the default it peaked at 82–83 MB). The released bot at the default limit
/// is measured alone by the ping bot's `tests/bounded_reads.rs` (85–86 MB).
const LIMIT_MIB: u64 = 32;
const MAX_RSS: u64 = 100 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_body_costs_an_error_not_the_memory_and_the_bot_recovers() {
    let logs = grafolean_collector::testing::LogCapture::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_env_filter("info")
        .init();

    let fake = FakeGrafolean::with_fixture_data().await;
    fake.update_entity(ENTITY_ID, |e| {
        for p in e.protocols.values_mut() {
            p.sensors.iter_mut().for_each(|s| s.interval = Some(1));
        }
    });
    let dir = std::env::temp_dir().join(format!("gc-bounded-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token = dir.join("token");
    std::fs::write(&token, BOT_TOKEN).unwrap();

    // The profile never ends: the first refreshes fail, each after reading
    // the limit.
    let endless = fake.inject(Fault::endless_body().path_prefix("/api/profile"));
    let url = fake.url();
    let settings = Settings::try_parse_from([
        "bounded",
        "--backend-url",
        url.as_str(),
        "--bot-token-file",
        token.to_str().unwrap(),
        "--jobs-refresh-interval",
        "1",
        "--max-response-mib",
        &LIMIT_MIB.to_string(),
    ])
    .unwrap();
    let bot = RunningBot::start(Bot::new("bounded", Up).with_protocol("ping"), settings);
    let limit = format!("limit of {} bytes", LIMIT_MIB << 20);
    let too_large = r#"grafolean_bot_refresh_failures_total{cause="too_large"}"#;
    failures_at_least(&bot, too_large, 2.0).await;
    // Warned once for the episode, however many refreshes it failed.
    assert_eq!(logs.count(&["WARN", "GET profile", &limit]), 1);
    let rss = peak_rss();
    eprintln!("peak RSS after the endless profile: {} MB", rss >> 20);
    assert!(rss < MAX_RSS, "peak RSS {} MB", rss >> 20);
    assert!(fake.values(ACCOUNT_ID).is_empty());

    // The backend recovers: the bot loads its jobs and sends values.
    fake.remove_fault(endless);
    tokio::time::timeout(Duration::from_secs(20), fake.wait_for_values(ACCOUNT_ID, 2))
        .await
        .expect("values arrive after the backend recovered");

    // Now the entity list never ends: each refresh fails for the account,
    // which keeps its job.
    let before = metric(&bot, too_large).await.unwrap_or(0.0);
    let endless = fake.inject(Fault::endless_body().path_contains("/entities"));
    let entities = format!("GET accounts/{ACCOUNT_ID}/entities");
    failures_at_least(&bot, too_large, before + 2.0).await;
    assert_eq!(
        logs.count(&["WARN", &entities, &limit, "keep their last good config"]),
        1
    );
    assert_eq!(
        metric(&bot, "grafolean_bot_jobs_scheduled").await,
        Some(1.0)
    );
    let before = fake.values(ACCOUNT_ID).len();
    tokio::time::timeout(
        Duration::from_secs(10),
        fake.wait_for_values(ACCOUNT_ID, before + 2),
    )
    .await
    .expect("the job keeps running while refreshes fail");
    let rss = peak_rss();
    eprintln!("peak RSS after the endless entity list: {} MB", rss >> 20);
    assert!(rss < MAX_RSS, "peak RSS {} MB", rss >> 20);
    fake.remove_fault(endless);

    bot.stop().await.unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}
