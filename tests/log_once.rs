//! A bot unattended for months logs a problem when it appears and when it
//! goes away, not at every refresh: an entity that cannot be read is warned
//! about once, however many refreshes find it broken.

use std::time::Duration;

use clap::Parser;
use grafolean_collector::testing::{
    ACCOUNT_ID, BOT_ID, BOT_TOKEN, DeviceBatch, ENTITY_ID, FakeGrafolean, Fault, LogCapture,
    RunningBot,
};
use grafolean_collector::{
    Bot, BoxError, Collector, JobConfigs, JobSpec, Problems, Settings, Tick, Value,
};

struct Quiet;

impl Collector for Quiet {
    type Params = ();
    fn jobs(&self, _: &JobConfigs, _: &mut Problems) -> Vec<JobSpec<()>> {
        Vec::new()
    }
    async fn run(&self, _: Tick, _: &()) -> Result<Vec<Value>, BoxError> {
        Ok(Vec::new())
    }
}

/// The log of this test binary (one global subscriber for all its tests).
fn logs() -> &'static LogCapture {
    LogCapture::global()
}

/// The bot's `/metrics` page, and the value of `series` on it (0 when it is
/// not there).
async fn metric(bot: &RunningBot, series: &str) -> (String, f64) {
    let text = reqwest::get(format!("{}/metrics", bot.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = text
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0);
    (text, value)
}

/// One job per entity, made without its account (the misuse).
struct NoAccount;

impl Collector for NoAccount {
    type Params = u64;

    fn jobs(&self, configs: &JobConfigs, _: &mut Problems) -> Vec<JobSpec<u64>> {
        configs
            .entities
            .iter()
            .filter_map(|e| Some(JobSpec::new("lost", e.intervals()?, e.entity_id)))
            .collect()
    }

    async fn run(&self, _: Tick, id: &u64) -> Result<Vec<Value>, BoxError> {
        Ok(vec![Value::new(format!("entity.{id}.lost"), 1.0)])
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_without_an_account_is_refused_with_one_warning_and_a_counter() {
    let logs = logs();
    let fake = FakeGrafolean::with_fixture_data().await;
    assert!(fake.update_entity(ENTITY_ID, |e| {
        e.protocols.get_mut("ping").unwrap().sensors[0].interval = Some(1);
    }));
    let settings = Settings::try_parse_from([
        "lost",
        "--backend-url",
        &fake.url(),
        "--jobs-refresh-interval",
        "1",
    ])
    .unwrap()
    .with_bot_token(BOT_TOKEN);
    let bot = RunningBot::start(Bot::new("lost", NoAccount).with_protocol("ping"), settings);
    let refused = || {
        let text = logs.text();
        text.lines()
            .filter(|l| l.contains("refreshed job configs") && l.contains("refused=1"))
            .count()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while refused() < 3 {
        assert!(tokio::time::Instant::now() < deadline, "too few refreshes");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Warned once, naming the job and the fix, however many refreshes.
    assert_eq!(
        logs.count(&["WARN", "job refused", "job=lost", "JobSpec::for_entity"]),
        1,
        "over {} refreshes",
        refused()
    );
    let (metrics, counted) = metric(&bot, "grafolean_bot_jobs_refused_total").await;
    assert!(counted >= 3.0, "jobs_refused_total {counted}");
    assert!(
        metrics.contains("grafolean_bot_jobs_scheduled 0"),
        "{metrics}"
    );
    assert!(
        fake.values(ACCOUNT_ID).is_empty(),
        "a refused job sent values"
    );
    bot.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_entity_is_warned_about_once_and_its_recovery_is_said() {
    let logs = logs();
    let fake = FakeGrafolean::with_fixture_data().await;
    // An older backend's list: each device is fetched, and one answers garbage.
    fake.set_list_protocols(false);
    let ids = fake.add_devices(
        &DeviceBatch::new(ACCOUNT_ID, "ping", 3)
            .with_bot(BOT_ID)
            .with_sensors(1, Some(30)),
    );
    let broken = fake.inject(
        Fault::body("{\"id\": ")
            .method("GET")
            .path_contains(format!("/entities/{}", ids[1])),
    );
    let settings = Settings::try_parse_from([
        "quiet",
        "--backend-url",
        &fake.url(),
        "--jobs-refresh-interval",
        "1",
    ])
    .unwrap()
    .with_bot_token(BOT_TOKEN);
    let bot = RunningBot::start(Bot::new("quiet", Quiet).with_protocol("ping"), settings);
    let entity = format!("entity={}", ids[1]);
    // This test's refreshes (the other test's refuse a job).
    let refreshes = || logs.count(&["refreshed job configs", "skipped=1", "refused=0"]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while refreshes() < 4 {
        assert!(tokio::time::Instant::now() < deadline, "too few refreshes");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        logs.count(&["WARN", "skipping an entity", &entity]),
        1,
        "warned once over {} refreshes",
        refreshes()
    );
    // Kept counted, by cause (an answer that is not JSON: malformed), for an
    // alert to see.
    let (metrics, counted) = metric(
        &bot,
        r#"grafolean_bot_entity_errors_total{cause="malformed"}"#,
    )
    .await;
    assert!(counted >= 4.0, "{metrics}");
    // Fixed: said once, and not warned again.
    assert!(fake.remove_fault(broken));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while logs.count(&["fine again", &entity]) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the recovery was not said"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(logs.count(&["WARN", "skipping an entity", &entity]), 1);
    bot.stop().await.unwrap();
}

/// Entities whose ids are not plain numbers (`"111"`, `-5`, 2^64) are each
/// warned about once, under their raw id, as entities (not as an account
/// whose list cannot be read). The test runs on one thread, with its own
/// log capture for that thread.
#[tokio::test]
async fn entities_with_odd_ids_are_each_named_once() {
    let logs = grafolean_collector::testing::LogCapture::default();
    let writer = logs.clone();
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_env_filter(grafolean_collector::testing::TEST_LOG_FILTER)
            .finish(),
    );
    let fake = FakeGrafolean::with_fixture_data().await;
    let ids = fake.add_devices(
        &DeviceBatch::new(ACCOUNT_ID, "ping", 3)
            .with_bot(BOT_ID)
            .with_sensors(1, Some(30)),
    );
    let list_url = format!(
        "{}/accounts/{ACCOUNT_ID}/entities/?b={BOT_TOKEN}",
        fake.url()
    );
    let mut list: serde_json::Value = reqwest::get(&list_url).await.unwrap().json().await.unwrap();
    for item in list["list"].as_array_mut().unwrap() {
        for (i, odd) in ["\"111\"", "-5", "18446744073709551616"].iter().enumerate() {
            if item["id"] == ids[i] {
                item["id"] = serde_json::json!(format!("ODD{i}"));
                item["name"] = serde_json::json!(format!("odd {odd}"));
            }
        }
    }
    let mut body = list.to_string();
    for (i, odd) in ["\"111\"", "-5", "18446744073709551616"].iter().enumerate() {
        body = body.replace(&format!("\"ODD{i}\""), odd);
    }
    fake.inject(
        Fault::body(body)
            .method("GET")
            .path_prefix(format!("/api/accounts/{ACCOUNT_ID}/entities")),
    );
    let settings = Settings::try_parse_from([
        "quiet",
        "--backend-url",
        &fake.url(),
        "--jobs-refresh-interval",
        "1",
    ])
    .unwrap()
    .with_bot_token(BOT_TOKEN);
    let bot = RunningBot::start(Bot::new("quiet", Quiet).with_protocol("ping"), settings);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while logs.count(&["refreshed job configs"]) < 3 {
        assert!(tokio::time::Instant::now() < deadline, "too few refreshes");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let text = logs.text();
    for name in ["odd \\\"111\\\"", "odd -5", "odd 18446744073709551616"] {
        assert_eq!(
            logs.count(&["WARN", "skipping an entity", name]),
            1,
            "{name} warned once, as an entity:\n{text}"
        );
    }
    assert_eq!(logs.count(&["skipping an account"]), 0, "{text}");
    for id in ["entity=\"111\"", "entity=-5"] {
        assert_eq!(logs.count(&["WARN", id]), 1, "{id}:\n{text}");
    }
    bot.stop().await.unwrap();
}

/// Reports an entity named `bad…` as a config problem and makes no job for
/// it; makes one job for every other entity.
struct Picky;

impl Collector for Picky {
    type Params = u64;

    fn jobs(&self, configs: &JobConfigs, problems: &mut Problems) -> Vec<JobSpec<u64>> {
        let mut jobs = Vec::new();
        for e in &configs.entities {
            if e.name.starts_with("bad") {
                problems.entity(
                    e,
                    format!("the name {:?} is not allowed; rename it", e.name),
                );
                continue;
            }
            if let Some(intervals) = e.intervals() {
                jobs.push(JobSpec::for_entity(
                    e,
                    e.entity_id.to_string(),
                    intervals,
                    e.entity_id,
                ));
            }
        }
        jobs
    }

    async fn run(&self, _: Tick, _: &u64) -> Result<Vec<Value>, BoxError> {
        Ok(Vec::new())
    }
}

/// A problem a collector reports through `jobs` goes through the same
/// reporter as the refresh's own skips: warned once over many refreshes,
/// counted at each, shown on the status page, and said once when gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_problem_reported_by_jobs_is_warned_once_counted_shown_and_said_when_gone() {
    let logs = logs();
    let fake = FakeGrafolean::with_fixture_data().await;
    let bad = fake.add_devices(
        &DeviceBatch::new(ACCOUNT_ID, "ping", 1)
            .with_bot(BOT_ID)
            .with_sensors(1, Some(30)),
    )[0];
    assert!(fake.update_entity(bad, |e| e.name = "bad router".into()));
    // And one the refresh itself skips: its answer is not JSON.
    let malformed = fake.add_devices(
        &DeviceBatch::new(ACCOUNT_ID, "ping", 1)
            .with_bot(BOT_ID)
            .with_sensors(1, Some(30))
            .own_config(),
    )[0];
    let sensor = fake.entity(malformed).unwrap().protocols["ping"].sensors[0].sensor;
    assert!(fake.remove_sensor(sensor));
    let settings = Settings::try_parse_from([
        "picky",
        "--backend-url",
        &fake.url(),
        "--jobs-refresh-interval",
        "1",
    ])
    .unwrap()
    .with_bot_token(BOT_TOKEN);
    let bot = RunningBot::start(Bot::new("picky", Picky).with_protocol("ping"), settings);
    let entity_id = format!("entity_id={bad}");
    let refreshes = async || {
        metric(&bot, "grafolean_bot_refresh_duration_seconds_count")
            .await
            .1
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while refreshes().await < 4.0 {
        assert!(tokio::time::Instant::now() < deadline, "too few refreshes");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        logs.count(&["WARN", &entity_id, "is not allowed; rename it"]),
        1,
        "warned once over {} refreshes",
        refreshes().await
    );
    let skipped = format!("entity={malformed}");
    assert_eq!(logs.count(&["WARN", "skipping an entity", &skipped]), 1);
    let (text, counted) = metric(
        &bot,
        r#"grafolean_bot_entity_errors_total{cause="invalid_config"}"#,
    )
    .await;
    assert!(counted >= 4.0, "{text}");
    // Both on the status page, in one table, with the reason.
    let page = reqwest::get(format!("{}/", bot.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let problems = &page[page.find("id=\"problems\"").expect("a problems table")..];
    assert!(problems.contains(&bad.to_string()) && problems.contains("bad router"));
    assert!(problems.contains("rename it") && problems.contains("invalid_config"));
    assert!(problems.contains(&malformed.to_string()) && problems.contains("unreadable"));

    // Fixed: said once, not warned again, and gone from the page.
    assert!(fake.update_entity(bad, |e| e.name = "good router".into()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while logs.count(&[&entity_id, "config problem is gone"]) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the fix was not said"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let settled = refreshes().await + 2.0;
    while refreshes().await < settled {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(logs.count(&[&entity_id, "config problem is gone"]), 1);
    assert_eq!(logs.count(&["WARN", &entity_id, "rename it"]), 1);
    let page = reqwest::get(format!("{}/", bot.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !page.contains("bad router"),
        "the fixed problem stays on the page"
    );
    bot.stop().await.unwrap();
}
