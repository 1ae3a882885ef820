//! The runtime end to end against the fake backend: refreshes add and remove
//! jobs, a failed refresh keeps the jobs running, values reach Grafolean and
//! `/metrics`, and `--once` reports failures in its exit code.

use std::time::Duration;

use clap::Parser;
use grafolean_collector::Settings;
use grafolean_collector::testing::{
    ACCOUNT_ID, BOT_TOKEN, ENTITY_ID, FakeEntity, FakeGrafolean, Fault, ProtocolConfig, RunningBot,
};
use grafolean_collector::{Bot, BoxError, Collector, JobConfigs, JobSpec, Problems, Tick, Value};

/// Reports each entity's id as its value; fails for entities named "fail…".
struct Echo;

impl Collector for Echo {
    type Params = (u64, bool);

    fn jobs(&self, configs: &JobConfigs, _: &mut Problems) -> Vec<JobSpec<(u64, bool)>> {
        configs
            .entities
            .iter()
            .filter_map(|e| {
                let params = (e.entity_id, e.name.starts_with("fail"));
                let spec = JobSpec::new(format!("entity.{}", e.entity_id), e.intervals()?, params);
                Some(
                    spec.with_account(e.account_id)
                        .with_label("name", e.name.clone()),
                )
            })
            .collect()
    }

    async fn run(&self, _: Tick, &(id, fail): &(u64, bool)) -> Result<Vec<Value>, BoxError> {
        if fail {
            return Err(format!("entity {id} failed on purpose").into());
        }
        Ok(vec![Value::new(
            format!("entity.{id}.echo.value"),
            id as f64,
        )])
    }
}

fn entity(id: u64, name: &str) -> FakeEntity {
    FakeEntity::device(ACCOUNT_ID, name, "127.0.0.1")
        .with_id(id)
        .with_protocol("ping", ProtocolConfig::fixture_ping(Some(1)))
}

fn settings(fake: &FakeGrafolean, extra: &[&str]) -> Settings {
    let url = fake.url();
    let mut args = vec![
        "echo",
        "--backend-url",
        &url,
        "--jobs-refresh-interval",
        "1",
    ];
    args.extend_from_slice(extra);
    Settings::try_parse_from(args)
        .unwrap()
        .with_bot_token(BOT_TOKEN)
}

async fn metrics(base: &str) -> String {
    reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Polls until `check` holds, for at most `secs` seconds.
async fn eventually(secs: u64, mut check: impl AsyncFnMut() -> bool) -> bool {
    for _ in 0..secs * 10 {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refreshes_reconcile_jobs_and_survive_backend_failures() {
    let fake = FakeGrafolean::with_fixture_data().await;
    assert!(fake.update_entity(ENTITY_ID, |e| {
        e.protocols.get_mut("ping").unwrap().sensors[0].interval = Some(1);
    }));
    let bot = RunningBot::start(
        Bot::new("echo", Echo).with_protocol("ping"),
        settings(&fake, &[]),
    );
    let base = bot.url().to_string();

    // The fixture's entity reports to Grafolean, and on /metrics.
    let path = format!("entity.{ENTITY_ID}.echo.value");
    assert!(
        eventually(10, async || fake
            .values(ACCOUNT_ID)
            .iter()
            .any(|v| v.path == path))
        .await,
        "no value reached the fake"
    );
    assert!(
        eventually(5, async || metrics(&base)
            .await
            .contains("grafolean_value_echo_value"))
        .await
    );

    // A new entity is picked up by the next refresh; a removed one goes away,
    // along with its series on /metrics.
    fake.put_entity(entity(7001, "new"));
    assert!(
        eventually(10, async || metrics(&base)
            .await
            .contains("entity=\"7001\""))
        .await,
        "the new entity's value never showed"
    );
    assert!(fake.remove_entity(7001));
    assert!(
        eventually(10, async || !metrics(&base)
            .await
            .contains("entity=\"7001\""))
        .await,
        "the removed entity's series stayed"
    );

    // The backend fails every refresh for a while: the job keeps running.
    let fault = fake.inject(Fault::status(500).path_prefix("/api/profile"));
    assert!(
        eventually(10, async || metrics(&base).await.lines().any(|l| l
            .starts_with("grafolean_bot_refresh_errors_total")
            && !l.ends_with(" 0")))
        .await
    );
    let before = fake
        .values(ACCOUNT_ID)
        .iter()
        .filter(|v| v.path == path)
        .count();
    assert!(
        eventually(10, async || fake
            .values(ACCOUNT_ID)
            .iter()
            .filter(|v| v.path == path)
            .count()
            >= before + 2)
        .await,
        "the job stopped while the refreshes failed"
    );
    assert!(
        metrics(&base)
            .await
            .contains("grafolean_bot_jobs_scheduled 1")
    );
    fake.remove_fault(fault);

    // A failing job is counted, and does not stop the others.
    fake.put_entity(entity(7002, "fail me"));
    assert!(
        eventually(10, async || metrics(&base)
            .await
            .contains("grafolean_bot_runs_total{outcome=\"error\"}"))
        .await
    );
    let page = reqwest::get(&base).await.unwrap().text().await.unwrap();
    assert!(page.contains("failed on purpose"), "{page}");

    bot.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_exits_non_zero_when_a_job_fails_and_sends_only_with_send() {
    let fake = FakeGrafolean::with_fixture_data().await;
    let ok = Bot::new("echo", Echo)
        .with_protocol("ping")
        .once(settings(&fake, &["--once"]))
        .await;
    assert_eq!(
        format!("{ok:?}"),
        format!("{:?}", std::process::ExitCode::SUCCESS)
    );
    assert!(
        fake.values(ACCOUNT_ID).is_empty(),
        "--once sent without --send"
    );

    let sent = Bot::new("echo", Echo)
        .with_protocol("ping")
        .once(settings(&fake, &["--once", "--send"]))
        .await;
    assert_eq!(
        format!("{sent:?}"),
        format!("{:?}", std::process::ExitCode::SUCCESS)
    );
    let values = fake.values(ACCOUNT_ID);
    assert_eq!(values.len(), 1);
    assert_eq!(values[0].path, format!("entity.{ENTITY_ID}.echo.value"));

    fake.put_entity(entity(7003, "fail"));
    let failed = Bot::new("echo", Echo)
        .with_protocol("ping")
        .once(settings(&fake, &["--once"]))
        .await;
    assert_eq!(
        format!("{failed:?}"),
        format!("{:?}", std::process::ExitCode::FAILURE)
    );
}

#[tokio::test]
async fn invalid_settings_fail_before_anything_starts() {
    let s = Settings::try_parse_from(["echo", "--backend-url", "http://127.0.0.1:9/api"]).unwrap();
    let s = s.with_bot_token("");
    let err = Bot::new("echo", Echo)
        .run(s, std::future::pending())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("BOT_TOKEN"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_down_at_start_up_is_retried_soon_not_after_a_refresh_interval() {
    let fake = FakeGrafolean::with_fixture_data().await;
    assert!(fake.update_entity(ENTITY_ID, |e| {
        e.protocols.get_mut("ping").unwrap().sensors[0].interval = Some(1);
    }));
    // The profile fails for the first 2.5 s; the refresh interval is 120 s.
    fake.inject(
        Fault::status(503)
            .path_prefix("/api/profile")
            .for_duration(Duration::from_millis(2500)),
    );
    let url = fake.url();
    let s = Settings::try_parse_from(["echo", "--backend-url", &url])
        .unwrap()
        .with_bot_token(BOT_TOKEN);
    assert!(
        std::env::var_os("JOBS_REFRESH_INTERVAL").is_none(),
        "the default, 120 s, is meant"
    );
    let bot = RunningBot::start(Bot::new("echo", Echo).with_protocol("ping"), s);
    let path = format!("entity.{ENTITY_ID}.echo.value");
    assert!(
        eventually(12, async || fake
            .values(ACCOUNT_ID)
            .iter()
            .any(|v| v.path == path))
        .await,
        "the bot waited for the next refresh interval instead of retrying"
    );
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn a_backend_without_a_protocol_stops_the_bot_with_a_usage_error() {
    let fake = FakeGrafolean::with_fixture_data().await;
    let err = Bot::new("echo", Echo)
        .run(settings(&fake, &[]), std::future::pending())
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(message.contains("Bot::with_protocol"), "{message}");
    assert!(message.contains("BACKEND_URL"), "{message}");
    assert!(err.is_usage(), "exit status 2 is for usage errors");
    assert!(
        fake.requests().is_empty(),
        "nothing may start before the check"
    );
}

/// The child process of the next test: a bot's `main` with `BACKEND_URL` set
/// and no protocol, exiting with the status `main` returns.
#[test]
fn no_protocol_child() {
    let Ok(url) = std::env::var("NO_PROTOCOL_CHILD_URL") else {
        return; // Not the child: nothing to do.
    };
    let settings = Settings::try_parse_from(["echo", "--backend-url", &url])
        .unwrap()
        .with_bot_token(BOT_TOKEN);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let code = rt.block_on(Bot::new("echo", Echo).main_with(settings));
    let status = (0..=u8::MAX)
        .find(|&n| std::process::ExitCode::from(n) == code)
        .unwrap();
    std::process::exit(status.into());
}

#[tokio::test]
async fn a_backend_without_a_protocol_exits_2_with_the_fix() {
    let fake = FakeGrafolean::with_fixture_data().await;
    let url = fake.url();
    let child = tokio::task::spawn_blocking(move || {
        std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "no_protocol_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("NO_PROTOCOL_CHILD_URL", url)
            .env("NO_COLOR", "1")
            .output()
    });
    let out = tokio::time::timeout(Duration::from_secs(30), child)
        .await
        .expect("the bot stops at start-up")
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("Bot::with_protocol"), "{stderr}");
    assert!(
        fake.requests().is_empty(),
        "nothing may start before the check"
    );
}

/// Holds each run of entity 1 until the test releases it.
struct Held {
    started: std::sync::Arc<tokio::sync::Notify>,
    release: std::sync::Arc<tokio::sync::Notify>,
    finished: std::sync::Arc<tokio::sync::Notify>,
}

impl Collector for Held {
    type Params = u64;

    fn jobs(&self, configs: &JobConfigs, _: &mut Problems) -> Vec<JobSpec<u64>> {
        configs
            .entities
            .iter()
            .filter_map(|e| {
                Some(JobSpec::for_entity(
                    e,
                    e.entity_id.to_string(),
                    e.intervals()?,
                    e.entity_id,
                ))
            })
            .collect()
    }

    async fn run(&self, _: Tick, id: &u64) -> Result<Vec<Value>, BoxError> {
        if *id == 1 {
            self.started.notify_one();
            self.release.notified().await;
            self.finished.notify_one();
        }
        Ok(vec![Value::new(format!("entity.{id}.held"), 1.0)])
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_ends_after_its_job_was_removed_leaves_no_series() {
    let dir = std::env::temp_dir().join(format!("gc-stale-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("jobs.toml");
    let config = |id: u64| {
        format!(
            "[[entity]]\nid = {id}\nname = \"e{id}\"\ndetails = {{}}\nsensors = [{{ interval = 1 }}]\n"
        )
    };
    std::fs::write(&file, config(1)).unwrap();
    let started = std::sync::Arc::new(tokio::sync::Notify::new());
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    let finished = std::sync::Arc::new(tokio::sync::Notify::new());
    let collector = Held {
        started: started.clone(),
        release: release.clone(),
        finished: finished.clone(),
    };
    let settings = Settings::try_parse_from([
        "held",
        "--config",
        file.to_str().unwrap(),
        "--jobs-refresh-interval",
        "1",
    ])
    .unwrap();
    let options = grafolean_collector::scheduler::SchedulerOptions::default()
        .with_run_timeout(Duration::from_secs(30));
    let bot = RunningBot::start(
        Bot::new("held", collector).with_scheduler_options(options),
        settings,
    );
    let base = bot.url().to_string();
    tokio::time::timeout(Duration::from_secs(10), started.notified())
        .await
        .expect("entity 1's run never started");

    // Entity 1 goes away while its run is still going; entity 2 comes.
    std::fs::write(&file, config(2)).unwrap();
    assert!(
        eventually(10, async || metrics(&base)
            .await
            .contains(r#"grafolean_value_held{entity="2"}"#))
        .await,
        "the refresh that removed entity 1 never happened"
    );
    // Now the removed job's run ends and reports its values.
    release.notify_one();
    tokio::time::timeout(Duration::from_secs(5), finished.notified())
        .await
        .expect("the removed job's run was not let finish: nothing was tested");
    // The run's report reaches the sinks right after it returns.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let text = metrics(&base).await;
    assert!(
        !text.contains(r#"entity="1""#),
        "a removed job's series came back:\n{text}"
    );
    bot.stop().await.unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_dropped_at_the_drain_deadline_make_the_stop_an_error() {
    let fake = FakeGrafolean::with_fixture_data().await;
    assert!(fake.update_entity(ENTITY_ID, |e| {
        e.protocols.get_mut("ping").unwrap().sensors[0].interval = Some(1);
    }));
    // The backend takes every value write and never answers in time.
    fake.inject(Fault::delay(Duration::from_secs(3600)).path_contains("/values"));
    let bot = RunningBot::start(
        Bot::new("echo", Echo)
            .with_protocol("ping")
            .with_drain_deadline(Duration::from_millis(500)),
        settings(&fake, &[]),
    );
    let base = bot.url().to_string();
    assert!(
        eventually(10, async || metrics(&base)
            .await
            .contains(r#"grafolean_bot_runs_total{outcome="ok"} 2"#))
        .await,
        "the job did not run twice"
    );
    let err = bot.stop().await.unwrap_err();
    assert!(
        matches!(err, grafolean_collector::RunError::ValuesDropped { dropped } if dropped > 0),
        "{err:?}"
    );
    assert!(!err.is_usage());
    assert!(err.to_string().contains("--spool-dir"), "{err}");
}
