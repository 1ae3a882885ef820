//! One bot token across several replicas (`--shard i/n`), against the fake
//! backend over real HTTP on loopback: 20,000 entities split by 4 replicas'
//! refreshes (in this process; also from a backend whose list lacks
//! `protocols`, where each replica fetches only its share), then a 5th joins
//! and the others are rolled; and the runtime's metrics. The same with real
//! ping-bot processes that poll, through a roll, is
//! `bots/ping/tests/shard.rs`.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use clap::Parser;
use grafolean_collector::api::{BotToken, Client};
use grafolean_collector::fetch::{FetchOptions, fetch_job_configs};
use grafolean_collector::testing::{DeviceBatch, FakeAccount, FakeGrafolean, RunningBot};
use grafolean_collector::{
    Bot, BoxError, Collector, JobConfigs, JobSpec, Problems, Settings, Shard, Tick, Value,
};

const N: usize = 20_000;
const ACCOUNT: u64 = 1_000_001;

/// One replica's refresh: the entity ids it owns, and the requests the fake saw.
async fn refresh(fake: &FakeGrafolean, client: &Client, shard: Shard) -> (HashSet<u64>, usize) {
    fake.clear_requests();
    let started = std::time::Instant::now();
    let report = fetch_job_configs(client, "ping", &FetchOptions::default().with_shard(shard))
        .await
        .unwrap();
    let requests = fake.request_count();
    println!("refresh of shard {shard}: {:?}", started.elapsed());
    assert_eq!(report.requests, requests);
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    assert_eq!(report.entities_seen, N, "only this bot's entities are seen");
    assert_eq!(report.entities_owned, report.configs.entities.len());
    let owned = report
        .configs
        .entities
        .iter()
        .map(|e| e.entity_id)
        .collect();
    (owned, requests)
}

/// Entities owned by no replica of `replicas`.
fn unpolled(ids: &[u64], replicas: &[&HashSet<u64>]) -> usize {
    ids.iter()
        .filter(|id| !replicas.iter().any(|r| r.contains(id)))
        .count()
}

fn shard(i: u32, n: u32) -> Shard {
    Shard::new(i, n).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_replicas_split_20000_entities_and_a_fifth_takes_a_fifth() {
    let fake = FakeGrafolean::start().await;
    fake.put_account(FakeAccount::new("shards").with_id(ACCOUNT));
    let bot = fake.add_account_bot(ACCOUNT, "ping");
    let other = fake.add_account_bot(ACCOUNT, "ping");
    let ids = fake.add_devices(
        &DeviceBatch::new(ACCOUNT, "ping", N)
            .with_bot(bot.id)
            .with_sensors(2, Some(60)),
    );
    // Another bot's entities: Grafolean's own filter drops them before the
    // shard filter, so they are neither seen nor fetched.
    fake.add_devices(&DeviceBatch::new(ACCOUNT, "ping", 500).with_bot(other.id));
    let client = Client::builder(fake.url(), BotToken::new(&bot.token).unwrap())
        .with_timeout(Duration::from_secs(30))
        .build()
        .unwrap();

    // 4 replicas: each entity owned by exactly one. The list carries every
    // entity's protocols, so a refresh costs a constant: profile, accounts,
    // the entity list, the credential and the 2 sensors.
    let mut four = Vec::new();
    for i in 0..4 {
        let (owned, requests) = refresh(&fake, &client, shard(i, 4)).await;
        assert_eq!(requests, 6, "replica {i}/4");
        let share = owned.len() as f64 / (N as f64 / 4.0);
        // The load is binomial: σ is 1.2 % of N/4 here, so 5 % is 4 σ.
        assert!(
            (0.95..=1.05).contains(&share),
            "replica {i}/4 owns {}",
            owned.len()
        );
        println!(
            "replica {i}/4: {} entities, {requests} requests",
            owned.len()
        );
        four.push(owned);
    }
    // From a backend whose list lacks `protocols`, each entity is fetched
    // alone: then a replica fetches only its own share, N/4 plus the constant.
    // Grafolean's own bot filter then needs each entity, so the other bot's
    // 500 are seen (and their share fetched) too.
    fake.set_list_protocols(false);
    fake.clear_requests();
    let report = fetch_job_configs(
        &client,
        "ping",
        &FetchOptions::default().with_shard(shard(0, 4)),
    )
    .await
    .unwrap();
    assert_eq!(report.entities_seen, N + 500);
    let owned: HashSet<u64> = report
        .configs
        .entities
        .iter()
        .map(|e| e.entity_id)
        .collect();
    assert_eq!(owned, four[0], "the same share either way");
    assert_eq!(
        fake.request_count(),
        report.entities_owned + 6,
        "per-entity GETs for its share only"
    );
    assert!(
        report.entities_owned < (N + 500) / 4 + 500,
        "{}",
        report.entities_owned
    );
    fake.set_list_protocols(true);

    let mut owners: HashMap<u64, usize> = HashMap::new();
    for owned in &four {
        for &id in owned {
            *owners.entry(id).or_default() += 1;
        }
    }
    assert_eq!(owners.len(), N, "every entity is owned");
    assert!(owners.values().all(|&c| c == 1), "no entity is owned twice");

    // Growing: the 5th replica starts first (a real refresh), then the others
    // are rolled one by one (their new shares computed, not fetched, to keep
    // the test short: a refresh of 5,000 entities takes seconds in a debug
    // build); at no step is an entity unpolled.
    let (fifth, requests) = refresh(&fake, &client, shard(4, 5)).await;
    assert_eq!(requests, 6);
    let mut rolled: Vec<HashSet<u64>> = Vec::new();
    for i in 0..4 {
        rolled.push(
            ids.iter()
                .copied()
                .filter(|&id| shard(i, 5).owns(id))
                .collect(),
        );
        let mut now: Vec<&HashSet<u64>> = rolled.iter().chain([&fifth]).collect();
        now.extend(four.iter().skip(rolled.len()));
        assert_eq!(unpolled(&ids, &now), 0, "after rolling replica {i}");
    }
    // What moved went onto the new replica, and only what it owns moved.
    let moved: usize = (0..4).map(|i| four[i].difference(&rolled[i]).count()).sum();
    for i in 0..4 {
        assert!(rolled[i].is_subset(&four[i]), "replica {i} gained entities");
        assert!(four[i].difference(&rolled[i]).all(|id| fifth.contains(id)));
    }
    assert_eq!(moved, fifth.len());
    let share = moved as f64 / N as f64;
    println!(
        "4 -> 5 replicas: {moved} of {N} entities moved ({:.2} %)",
        share * 100.0
    );
    assert!(share <= 0.21, "{:.2} % moved", share * 100.0);

    // The wrong order (the survivors first) leaves the new replica's share
    // unpolled until it starts: why docs/sharding.md says to start it first.
    let survivors_first: Vec<&HashSet<u64>> = rolled.iter().collect();
    assert_eq!(unpolled(&ids, &survivors_first), fifth.len());

    // Shrinking back: reconfiguring the survivors first leaves nothing
    // unpolled while the 5th still runs; stopping the 5th first would.
    let reconfigured: Vec<&HashSet<u64>> = four.iter().chain([&fifth]).collect();
    assert_eq!(unpolled(&ids, &reconfigured), 0);
    assert_eq!(
        unpolled(&ids, &rolled.iter().collect::<Vec<_>>()),
        fifth.len()
    );
}

/// Reports each entity's id.
struct Echo;

impl Collector for Echo {
    type Params = u64;

    fn jobs(&self, configs: &JobConfigs, _: &mut Problems) -> Vec<JobSpec<u64>> {
        configs
            .entities
            .iter()
            .filter_map(|e| {
                let id = format!("echo.{}", e.entity_id);
                Some(JobSpec::for_entity(e, id, e.intervals()?, e.entity_id))
            })
            .collect()
    }

    async fn run(&self, _: Tick, &id: &u64) -> Result<Vec<Value>, BoxError> {
        Ok(vec![Value::new(format!("entity.{id}.echo"), id as f64)])
    }
}

/// A standalone config is sharded the same way, and the shard metrics add
/// up across replicas: `sum(owned) == max(seen)` when they agree on n.
#[tokio::test]
async fn standalone_replicas_share_the_file_and_export_the_shard_metrics() {
    let dir = std::env::temp_dir().join(format!("gc-shard-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("jobs.toml");
    let mut toml = String::new();
    for id in 1..=300 {
        toml.push_str(&format!(
            "[[entity]]\nid = {id}\nname = \"e{id}\"\nsensors = [{{ interval = 3600 }}]\n"
        ));
    }
    std::fs::write(&file, toml).unwrap();
    let file = file.to_str().unwrap();

    let mut owned_total = 0.0;
    for i in 0..3 {
        let ordinal = format!("bot@{i}");
        let settings = Settings::try_parse_from([
            "echo",
            "--config",
            file,
            "--shard",
            &ordinal,
            "--shard-count",
            "3",
        ])
        .unwrap();
        let running = RunningBot::start(Bot::new("echo", Echo), settings);
        let expected = (1..=300).filter(|&id| shard(i, 3).owns(id)).count() as f64;
        for _ in 0..100 {
            if running.metric("grafolean_bot_jobs_scheduled").await == expected {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // As Prometheus sees them.
        let text = reqwest::get(format!("{}/metrics", running.url()))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let value = |series: &str| {
            text.lines()
                .find_map(|l| {
                    l.strip_prefix(series)?
                        .strip_prefix(' ')?
                        .parse::<f64>()
                        .ok()
                })
                .unwrap_or(0.0)
        };
        running.stop().await.unwrap();
        assert!(text.contains("grafolean_bot_shard_count 3"), "{text}");
        assert_eq!(value("grafolean_bot_shard_index"), f64::from(i));
        assert_eq!(value("grafolean_bot_shard_count"), 3.0);
        assert_eq!(value("grafolean_bot_entities_seen"), 300.0);
        let owned = value("grafolean_bot_entities_owned");
        assert_eq!(owned, expected, "replica {i}");
        assert_eq!(value("grafolean_bot_jobs_scheduled"), owned);
        owned_total += owned;
    }
    assert_eq!(owned_total, 300.0);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn an_invalid_shard_is_a_settings_error_naming_it() {
    let settings = Settings::try_parse_from(["echo", "--shard", "bot-3"]).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let err = rt
        .block_on(Bot::new("echo", Echo).run(settings, std::future::pending()))
        .unwrap_err();
    assert!(err.is_usage());
    let text = err.to_string();
    assert!(text.contains("SHARD_COUNT"), "{text}");
}
