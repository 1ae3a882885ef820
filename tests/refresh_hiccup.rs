//! A backend that fails during a config refresh is not a property of the
//! entities the refresh could not load: their jobs stay scheduled, unchanged,
//! on their last good config, and no value of theirs is lost. Only a config
//! that is wrong (a sensor that answers 404) skips an entity.
//!
//! Every test has an account, a bot and entities of its own (random ids), and
//! looks in the binary's one log capture for lines that name them.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use clap::Parser;
use grafolean_collector::testing::{
    DeviceBatch, FakeAccount, FakeGrafolean, Fault, LogCapture, RunningBot, StoredValue,
    ValueMethod,
};
use grafolean_collector::{
    Bot, BoxError, Collector, JobConfigs, JobSpec, Problems, Settings, Tick, Value,
};

/// One job per entity, at the entity's intervals; its value is the entity id.
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
        Ok(vec![Value::new(format!("entity.{id}.hiccup"), *id as f64)])
    }
}

/// The log of this test binary (one global subscriber for all its tests).
fn logs() -> &'static LogCapture {
    LogCapture::global()
}

/// A fake with one account of its own, a bot of the account, and `n`
/// devices at 1 s sharing one credential and one sensor.
struct World {
    fake: FakeGrafolean,
    account: u64,
    token: String,
    entities: Vec<u64>,
}

impl World {
    async fn new(n: usize) -> Self {
        let fake = FakeGrafolean::start().await;
        let account = fake.put_account(FakeAccount::new("hiccup"));
        let bot = fake.add_account_bot(account, "ping");
        let entities = fake.add_devices(
            &DeviceBatch::new(account, "ping", n)
                .with_bot(bot.id)
                .with_sensors(1, Some(1)),
        );
        Self {
            fake,
            account,
            token: bot.token,
            entities,
        }
    }

    fn start(&self) -> RunningBot {
        let settings = Settings::try_parse_from([
            "hiccup",
            "--backend-url",
            &self.fake.url(),
            "--jobs-refresh-interval",
            "2",
        ])
        .unwrap()
        .with_bot_token(&self.token);
        RunningBot::start(Bot::new("hiccup", Echo).with_protocol("ping"), settings)
    }
}

/// The value of `series` on the bot's `/metrics` (0 when it is not there).
async fn metric(bot: &RunningBot, series: &str) -> f64 {
    let text = reqwest::get(format!("{}/metrics", bot.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

async fn ready(bot: &RunningBot) -> bool {
    reqwest::get(format!("{}/ready", bot.url()))
        .await
        .unwrap()
        .status()
        .is_success()
}

/// Waits until `check` holds, for at most `secs` seconds.
async fn eventually(secs: u64, mut check: impl AsyncFnMut() -> bool) -> bool {
    for _ in 0..secs * 10 {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Checks that `entity`'s values cover `from..to` with one value per 1 s
/// slot: none missing, none twice. Returns how many slots it checked.
fn every_slot_once(values: &[StoredValue], entity: u64, from: f64, to: f64) -> usize {
    let path = format!("entity.{entity}.hiccup");
    let mut times: Vec<f64> = values
        .iter()
        .filter(|v| v.path == path)
        .inspect(|v| assert_eq!(v.method, ValueMethod::Put, "{v:?}"))
        .map(|v| v.t)
        .filter(|t| (from - 1.0..=to + 1.0).contains(t))
        .collect();
    times.sort_by(f64::total_cmp);
    assert!(
        times.first().is_some_and(|t| *t <= from) && times.last().is_some_and(|t| *t >= to),
        "entity {entity}: values from {:?} to {:?} do not cover {from:.1}..{to:.1}",
        times.first(),
        times.last()
    );
    for pair in times.windows(2) {
        let step = pair[1] - pair[0];
        assert!(
            (0.99..=1.01).contains(&step),
            "entity {entity}: a step of {step:.3} s at t = {:.3} ({} a slot)",
            pair[0],
            if step < 1.0 { "twice in" } else { "missing" }
        );
    }
    times.len() - 1
}

/// The fake fails only the credential and sensor GETs for 10 s (a 500, a
/// reset connection, then requests that hang past the client's timeout),
/// while 20 entities run at 1 s and the config refreshes every 2 s: every
/// slot of every entity is delivered exactly once, the job set never shrinks,
/// and the episode is warned about once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_and_sensor_failures_keep_every_job_and_every_value() {
    let logs = logs();
    let world = World::new(20).await;
    let fake = &world.fake;
    let bot = world.start();
    let jobs = "grafolean_bot_jobs_scheduled";
    assert!(
        eventually(20, async || metric(&bot, jobs).await == 20.0).await,
        "the 20 jobs never ran"
    );
    // Every job has sent a value, so the slots before the faults are full.
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Each fault is met by at least one refresh. The hang comes last: a refresh
    // that meets it waits for the client's 10 s timeout.
    let start = unix_now();
    let faults = |fault: Fault| {
        [
            fake.inject(fault.clone().method("GET").path_contains("/credentials/")),
            fake.inject(fault.method("GET").path_contains("/sensors/")),
        ]
    };
    let mut min_jobs = f64::INFINITY;
    let mut watch = async |secs: u64| {
        let until = tokio::time::Instant::now() + Duration::from_secs(secs);
        while tokio::time::Instant::now() < until {
            min_jobs = min_jobs.min(metric(&bot, jobs).await);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    for (fault, secs) in [
        (Fault::status(500), 4),
        (Fault::drop_connection(), 3),
        (Fault::delay(Duration::from_secs(30)), 3),
    ] {
        let ids = faults(fault);
        watch(secs).await;
        for id in ids {
            fake.remove_fault(id);
        }
    }
    let end = unix_now();
    // The refresh that met the hang ends at the client's timeout; the next
    // one loads everything again.
    watch(14).await;
    assert_eq!(min_jobs, 20.0, "the job set shrank");
    for cause in ["server_error", "network", "timeout"] {
        let series = format!("grafolean_bot_refresh_failures_total{{cause=\"{cause}\"}}");
        assert!(metric(&bot, &series).await >= 1.0, "no refresh met {cause}");
    }
    bot.stop().await.unwrap();

    let values = fake.values(world.account);
    let slots: usize = world
        .entities
        .iter()
        .map(|&e| every_slot_once(&values, e, start - 2.0, end + 2.0))
        .sum();
    assert!(slots >= 20 * 13, "{slots} slots");
    let account = format!("account={}", world.account);
    assert_eq!(
        logs.count(&[
            "WARN",
            "the backend failed during a config refresh",
            &account
        ]),
        1,
        "one warning for the episode:\n{}",
        logs.text()
    );
    for entity in &world.entities {
        let entity = format!("entity={entity}");
        assert_eq!(logs.count(&["skipping an entity", &entity]), 0);
    }
}

/// One of two accounts' entity lists fails: that account's jobs keep running
/// (and keep their values), and the other account's refresh goes on (an
/// entity added to it meanwhile is picked up).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_whose_list_fails_keeps_its_jobs() {
    let world = World::new(3).await;
    let fake = &world.fake;
    let second = fake.put_account(FakeAccount::new("second"));
    let bot_id = fake.entity(world.entities[0]).unwrap().protocols["ping"]
        .bot
        .unwrap();
    for what in ["credentials", "entities", "sensors"] {
        fake.grant(
            bot_id,
            Some(&format!("accounts/{second}/{what}")),
            Some(&["GET"]),
        );
    }
    fake.grant(
        bot_id,
        Some(&format!("accounts/{second}/values")),
        Some(&["POST", "PUT"]),
    );
    let batch = |account, n| {
        DeviceBatch::new(account, "ping", n)
            .with_bot(bot_id)
            .with_sensors(1, Some(1))
    };
    let theirs = fake.add_devices(&batch(second, 3));
    let bot = world.start();
    let jobs = "grafolean_bot_jobs_scheduled";
    assert!(eventually(20, async || metric(&bot, jobs).await == 6.0).await);
    tokio::time::sleep(Duration::from_secs(2)).await;

    let start = unix_now();
    let fault = fake.inject(
        Fault::status(503)
            .method("GET")
            .path_prefix(format!("/api/accounts/{second}/entities")),
    );
    // The first account's refresh goes on: a new entity there is picked up.
    let added = fake.add_devices(&batch(world.account, 1));
    assert!(
        eventually(10, async || metric(&bot, jobs).await == 7.0).await,
        "the other account's refresh stopped"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let end = unix_now();
    assert_eq!(metric(&bot, jobs).await, 7.0);
    assert!(fake.remove_fault(fault));
    tokio::time::sleep(Duration::from_secs(3)).await;
    bot.stop().await.unwrap();

    let values = fake.values(second);
    for &entity in &theirs {
        every_slot_once(&values, entity, start - 1.0, end + 1.0);
    }
    let values = fake.values(world.account);
    for &entity in world.entities.iter().chain(&added) {
        assert!(
            values
                .iter()
                .any(|v| v.path == format!("entity.{entity}.hiccup"))
        );
    }
}

/// A sensor that answers 404 is the entity's config problem: only that
/// entity is skipped, and it is named once over several refreshes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sensor_that_answers_404_skips_only_its_entity_once() {
    let logs = logs();
    let world = World::new(2).await;
    let fake = &world.fake;
    let bot_id = fake.entity(world.entities[0]).unwrap().protocols["ping"]
        .bot
        .unwrap();
    let broken = fake.add_devices(
        &DeviceBatch::new(world.account, "ping", 1)
            .with_bot(bot_id)
            .with_sensors(1, Some(1))
            .own_config(),
    )[0];
    let sensor = fake.entity(broken).unwrap().protocols["ping"].sensors[0].sensor;
    assert!(fake.remove_sensor(sensor));
    let bot = world.start();
    let refreshes = "grafolean_bot_refresh_duration_seconds_count";
    assert!(eventually(20, async || metric(&bot, refreshes).await >= 4.0).await);
    assert_eq!(metric(&bot, "grafolean_bot_jobs_scheduled").await, 2.0);
    let entity = format!("entity={broken}");
    assert_eq!(
        logs.count(&["WARN", "skipping an entity", &entity, "404"]),
        1,
        "{}",
        logs.text()
    );
    assert!(
        metric(
            &bot,
            "grafolean_bot_entity_errors_total{cause=\"unreadable\"}"
        )
        .await
            >= 4.0
    );
    assert_eq!(
        metric(
            &bot,
            "grafolean_bot_refresh_failures_total{cause=\"not_found\"}"
        )
        .await,
        0.0,
        "a config problem is no refresh failure"
    );
    let account = format!("account={}", world.account);
    assert_eq!(
        logs.count(&["the backend failed during a config refresh", &account]),
        0
    );
    bot.stop().await.unwrap();
}

/// A bot that starts while the backend fails every config GET has no job
/// and is not ready; then, while only the credential and sensor GETs fail,
/// its entities are pending (not misconfigured); once the backend answers,
/// it is ready with every job, and no entity was ever reported as wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_that_starts_on_a_failing_backend_waits_for_a_whole_load() {
    let logs = logs();
    let world = World::new(5).await;
    let fake = &world.fake;
    let all = [
        fake.inject(Fault::status(500).method("GET").path_prefix("/api/profile")),
        fake.inject(
            Fault::status(500)
                .method("GET")
                .path_prefix("/api/accounts"),
        ),
    ];
    let bot = world.start();
    let jobs = "grafolean_bot_jobs_scheduled";
    let refreshes = "grafolean_bot_refresh_duration_seconds_count";
    assert!(eventually(20, async || metric(&bot, refreshes).await >= 2.0).await);
    assert!(!ready(&bot).await);
    assert_eq!(metric(&bot, jobs).await, 0.0);

    // The lists answer; the credential and sensor GETs still fail.
    for id in all {
        fake.remove_fault(id);
    }
    let partial = [
        fake.inject(
            Fault::status(502)
                .method("GET")
                .path_contains("/credentials/"),
        ),
        fake.inject(Fault::status(502).method("GET").path_contains("/sensors/")),
    ];
    // The same failure episode: no second warning, but each refresh says
    // how many entities are pending.
    assert!(
        eventually(20, async || logs.count(&[
            "refreshed job configs",
            "entities=0",
            "pending=5"
        ]) >= 1)
        .await,
        "the pending entities were not said:\n{}",
        logs.text()
    );
    assert!(!ready(&bot).await);
    assert_eq!(metric(&bot, jobs).await, 0.0);

    for id in partial {
        fake.remove_fault(id);
    }
    assert!(eventually(20, async || ready(&bot).await).await);
    assert_eq!(metric(&bot, jobs).await, 5.0);
    let entities: HashSet<String> = world
        .entities
        .iter()
        .map(|e| format!("entity={e}"))
        .collect();
    for entity in &entities {
        assert_eq!(logs.count(&["skipping an entity", entity]), 0);
    }
    for cause in ["unreadable", "malformed", "entity_list"] {
        let series = format!("grafolean_bot_entity_errors_total{{cause=\"{cause}\"}}");
        assert_eq!(metric(&bot, &series).await, 0.0, "{cause}");
    }
    bot.stop().await.unwrap();
}

/// The whole backend answers 503 for 60 s after the first load (issue 21's
/// readiness for Kubernetes): `/ready` stays 200 at every check, the bot
/// says the backend is down (`grafolean_bot_backend_up` 0), the jobs run on
/// and every value of the outage is delivered once the backend is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_down_for_a_minute_keeps_the_bot_ready_and_every_value() {
    let world = World::new(3).await;
    let fake = &world.fake;
    let bot = world.start();
    assert!(eventually(20, async || ready(&bot).await).await);
    assert!(
        eventually(10, async || metric(&bot, "grafolean_bot_backend_up").await
            == 1.0)
        .await
    );

    let start = unix_now();
    let fault = fake.inject(Fault::status(503).path_prefix("/api/"));
    let mut checks = 0;
    let mut saw_down = false;
    while unix_now() - start < 60.0 {
        assert!(
            ready(&bot).await,
            "/ready turned 503 {:.1} s into the outage",
            unix_now() - start
        );
        saw_down |= metric(&bot, "grafolean_bot_backend_up").await == 0.0;
        assert_eq!(metric(&bot, "grafolean_bot_jobs_scheduled").await, 3.0);
        checks += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let end = unix_now();
    assert!(checks >= 50, "{checks} checks");
    assert!(saw_down, "grafolean_bot_backend_up never read 0");
    assert!(fake.remove_fault(fault));
    assert!(
        eventually(30, async || metric(&bot, "grafolean_bot_backend_up").await
            == 1.0)
        .await
    );
    // What waited is delivered.
    tokio::time::sleep(Duration::from_secs(5)).await;
    bot.stop().await.unwrap();
    let values = fake.values(world.account);
    for &entity in &world.entities {
        every_slot_once(&values, entity, start + 1.0, end - 1.0);
    }
}
