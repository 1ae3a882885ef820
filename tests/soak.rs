//! A long outage, end to end: 50 jobs every second keep running while the
//! backend refuses connections (10 minutes by default), and afterwards every
//! value is in Grafolean exactly once, with its original time.
//!
//! Ignored in the normal run (it takes minutes). Run it with
//! `SOAK_OUTAGE_SECS=600 cargo test --features testing --test soak -- --ignored --nocapture`.

use std::collections::BTreeMap;
use std::time::Duration;

use clap::Parser;
use grafolean_collector::Settings;
use grafolean_collector::testing::{
    ACCOUNT_ID, BOT_TOKEN, FakeEntity, FakeGrafolean, ProtocolConfig, RunningBot, ValueMethod,
};
use grafolean_collector::{Bot, BoxError, Collector, JobConfigs, JobSpec, Problems, Tick, Value};

const JOBS: u64 = 50;

/// One value per run: the entity id. Counts its successful runs.
struct Constant(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl Collector for Constant {
    type Params = u64;

    fn jobs(&self, configs: &JobConfigs, _: &mut Problems) -> Vec<JobSpec<u64>> {
        let spec = |e: &grafolean_collector::EntityConfig| {
            let spec = JobSpec::new(
                format!("entity.{}", e.entity_id),
                e.intervals()?,
                e.entity_id,
            );
            Some(spec.with_account(e.account_id))
        };
        configs.entities.iter().filter_map(spec).collect()
    }

    async fn run(&self, _: Tick, id: &u64) -> Result<Vec<Value>, BoxError> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(vec![Value::new(format!("soak.e{id}"), *id as f64)])
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "takes minutes; run by hand (see the file's docs)"]
async fn a_long_outage_loses_nothing() {
    let outage: u64 = std::env::var("SOAK_OUTAGE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600);
    let fake = FakeGrafolean::with_fixture_data().await;
    // Only our soak entities: the fixture's own entity is taken out.
    fake.remove_entity(grafolean_collector::testing::ENTITY_ID);
    for id in 1..=JOBS {
        fake.put_entity(
            FakeEntity::device(ACCOUNT_ID, format!("soak {id}"), "127.0.0.1")
                .with_id(9_000 + id)
                .with_protocol("ping", ProtocolConfig::fixture_ping(Some(1))),
        );
    }
    let url = fake.url();
    let settings = Settings::try_parse_from([
        "soak",
        "--backend-url",
        &url,
        "--jobs-refresh-interval",
        "10",
    ])
    .unwrap()
    .with_bot_token(BOT_TOKEN);
    let runs = std::sync::Arc::default();
    let bot = RunningBot::start(
        Bot::new("soak", Constant(std::sync::Arc::clone(&runs))).with_protocol("ping"),
        settings,
    );

    tokio::time::sleep(Duration::from_secs(10)).await;
    let rss_before = rss_kib();
    println!("outage of {outage} s starts; rss {rss_before} KiB");
    fake.refuse_connections_for(Duration::from_secs(outage))
        .await;
    tokio::time::sleep(Duration::from_secs(outage)).await;
    let rss_during = rss_kib();
    println!("outage ends; rss {rss_during} KiB");
    // The sender retries with backoff (at most 60 s apart): wait until the
    // backlog is empty, for at most 2 minutes.
    let drained = async {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if bot.metric("grafolean_bot_values_buffered").await == 0.0 {
                break;
            }
        }
    };
    let waited = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(120), drained)
        .await
        .expect("the backlog drains");
    println!(
        "backlog replayed {:.1} s after the outage",
        waited.elapsed().as_secs_f64()
    );
    bot.stop().await.unwrap();

    // Every run's value is stored exactly once.
    let runs = runs.load(std::sync::atomic::Ordering::Relaxed) as f64;
    let stored = fake.values(ACCOUNT_ID);
    let by_put = stored
        .iter()
        .filter(|v| v.method == ValueMethod::Put)
        .count();
    println!(
        "runs {runs}, values stored {}, of which by PUT {by_put}; rss before {rss_before} KiB, at the end of the outage {rss_during} KiB",
        stored.len()
    );
    assert_eq!(
        stored.len() as f64,
        runs,
        "every run's value once, no more, no less"
    );
    assert!(
        by_put as u64 >= JOBS * outage * 9 / 10,
        "the outage's values came back by PUT"
    );
    // No gaps: each path has one value per second of the whole run.
    let mut times: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for v in &stored {
        times.entry(v.path.as_str()).or_default().push(v.t);
    }
    assert_eq!(times.len() as u64, JOBS);
    for (path, t) in &mut times {
        t.sort_by(f64::total_cmp);
        for w in t.windows(2) {
            let gap = w[1] - w[0];
            assert!(
                (0.5..1.5).contains(&gap),
                "{path}: a gap of {gap} s at {}",
                w[0]
            );
        }
    }
}
