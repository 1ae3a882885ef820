//! The whole ping bot against the fake Grafolean backend: config from the API,
//! real ICMP, values PUT back with their tick's time. It runs inside a private network namespace
//! (see `common/netns.rs`) so that one target can be truly silent.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use clap::Parser;
use common::hanging::{Hanging, count_before};
use common::netns::{self, Lab, SILENT_V4};
use grafolean_collector::Settings;
use grafolean_collector::testing::{
    ACCOUNT_ID, BOT_TOKEN, ENTITY_ID, FakeEntity, FakeGrafolean, ProtocolConfig, RunningBot,
    ValueMethod,
};
use grafolean_ping_bot::PingerOptions;

/// The entity id in `entity.<id>.…`.
fn entity_of(path: &str) -> u64 {
    path.split('.').nth(1).unwrap().parse().unwrap()
}

fn ping_entity(id: u64, details: serde_json::Value) -> FakeEntity {
    let mut e = FakeEntity::device(ACCOUNT_ID, format!("target {id}"), "127.0.0.1")
        .with_id(id)
        .with_protocol("ping", ProtocolConfig::fixture_ping(Some(3)));
    e.details = details;
    e
}

#[test]
fn ping_bot_posts_the_python_paths_to_grafolean() {
    netns::run_in_private_netns("ping_bot_posts_the_python_paths_to_grafolean_inner");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs inside a private network namespace, started by ping_bot_posts_the_python_paths_to_grafolean"]
async fn ping_bot_posts_the_python_paths_to_grafolean_inner() {
    if !netns::inside() {
        return;
    }
    let _lab = Lab::setup();
    let fake = FakeGrafolean::with_fixture_data().await;
    // The fixture's entity (127.0.0.1, credential: 2 packets, 0.5 s apart,
    // 1 s timeout), every 3 s instead of 10 s to keep the test short. A silent
    // target takes 2.5 s: two 1 s timeouts, 0.5 s apart.
    assert!(fake.update_entity(ENTITY_ID, |e| {
        e.protocols.get_mut("ping").unwrap().sensors[0].interval = Some(3);
    }));
    let mut expected_up = BTreeSet::from([ENTITY_ID]);
    for (id, details) in [
        (101, serde_json::json!({"ipv6": "::1"})),
        (102, serde_json::json!({"ipv4": "127.0.0.5"})),
        (103, serde_json::json!({"ipv4": "127.0.0.6"})),
        (104, serde_json::json!({"ipv4": "127.0.0.7"})),
    ] {
        fake.put_entity(ping_entity(id, details));
        expected_up.insert(id);
    }
    let silent = 105;
    fake.put_entity(ping_entity(
        silent,
        serde_json::json!({"ipv4": SILENT_V4.to_string()}),
    ));

    let settings = Settings::try_parse_from(["grafolean-ping-bot", "--backend-url", &fake.url()])
        .unwrap()
        .with_bot_token(BOT_TOKEN);
    let bot = RunningBot::start(grafolean_ping_bot::bot(PingerOptions::default()), settings);

    // Wait until every entity has sent its success value once.
    let mut by_entity: BTreeMap<u64, BTreeMap<String, f64>> = BTreeMap::new();
    for _ in 0..150 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        by_entity.clear();
        let stored = fake.values(ACCOUNT_ID);
        // Every point came by PUT with its run's tick time: each run's paths
        // share one `t`, which its success value carries too.
        let runs: BTreeSet<(u64, u64)> = stored
            .iter()
            .filter(|v| v.path.ends_with(".ping.success"))
            .map(|v| (entity_of(&v.path), v.t.to_bits()))
            .collect();
        for v in &stored {
            assert_eq!(v.method, ValueMethod::Put, "{v:?}");
            assert!(
                runs.contains(&(entity_of(&v.path), v.t.to_bits())),
                "{v:?} has no success value at its t"
            );
        }
        for v in stored {
            let id = entity_of(&v.path);
            by_entity.entry(id).or_default().insert(v.path.clone(), v.v);
        }
        let done = by_entity
            .iter()
            .filter(|(id, paths)| paths.contains_key(&format!("entity.{id}.ping.success")))
            .count();
        if done == expected_up.len() + 1 {
            break;
        }
    }
    // Each point's `t` is its tick's time, not its arrival: one entity's runs
    // are exactly one interval (3 s) apart, and near the wall clock.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut runs: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
        for v in fake.values(ACCOUNT_ID) {
            if v.path.ends_with(".ping.success") {
                runs.entry(entity_of(&v.path)).or_default().push(v.t);
            }
        }
        if runs.len() == expected_up.len() + 1 && runs.values().all(|t| t.len() >= 3) {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs_f64();
            for (id, t) in &mut runs {
                t.sort_by(f64::total_cmp);
                for pair in t.windows(2) {
                    let step = pair[1] - pair[0];
                    assert!(
                        (step - 3.0).abs() < 1e-3,
                        "entity {id}: runs {step} s apart"
                    );
                }
                let last = t[t.len() - 1];
                assert!(
                    (now - last).abs() < 10.0,
                    "entity {id}: t {last}, now {now}"
                );
            }
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{runs:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bot.stop().await.unwrap();

    // Only our entities: not the other bot's, the SNMP-only one, the interface…
    let ids: BTreeSet<u64> = by_entity.keys().copied().collect();
    let mut all = expected_up.clone();
    all.insert(silent);
    assert_eq!(ids, all, "{by_entity:#?}");
    for id in &expected_up {
        let paths = &by_entity[id];
        let names: BTreeSet<&str> = paths.keys().map(String::as_str).collect();
        let want: BTreeSet<String> = ["p0.ok", "p0.rtt", "p1.ok", "p1.rtt", "success"]
            .iter()
            .map(|s| format!("entity.{id}.ping.{s}"))
            .collect();
        assert_eq!(
            names,
            want.iter().map(String::as_str).collect(),
            "entity {id}"
        );
        for (path, v) in paths {
            if path.ends_with(".rtt") {
                assert!(*v > 0.0 && *v < 1.0, "{path} = {v}");
            } else {
                assert_eq!(*v, 1.0, "{path}");
            }
        }
    }
    // The silent target: ok = 0 and success = 0, and no rtt at all.
    let got = &by_entity[&silent];
    let want: BTreeMap<String, f64> = ["p0.ok", "p1.ok", "success"]
        .iter()
        .map(|s| (format!("entity.{silent}.ping.{s}"), 0.0))
        .collect();
    assert_eq!(got, &want);
    println!("{}", netns::MARKER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_while_draining_exits_143_and_says_what_was_lost() {
    let mut bot = Hanging::start().await;
    bot.signal("-TERM");
    tokio::time::sleep(Duration::from_millis(500)).await;
    bot.signal("-TERM");
    // At once: well before the 10 s drain deadline.
    let (status, log) = bot.exit_within(Duration::from_secs(5)).await;
    assert_eq!(status.code(), Some(143), "128 + SIGTERM:\n{log}");
    // The values held in flight (the backend never answered) are counted,
    // not only those in the backlog.
    let unsent = count_before(&log, " values were not sent");
    assert!(unsent > 0, "said {unsent} values were not sent:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_deadline_that_drops_values_exits_1_and_says_how_many() {
    let mut bot = Hanging::start().await;
    bot.signal("-TERM");
    // The drain deadline is 10 s; nothing is delivered before it.
    let (status, log) = bot.exit_within(Duration::from_secs(25)).await;
    assert_eq!(status.code(), Some(1), "values were dropped:\n{log}");
    let dropped = count_before(
        &log,
        " values could not be delivered before the drain deadline",
    );
    assert!(dropped > 0, "said {dropped} values were dropped:\n{log}");
}
