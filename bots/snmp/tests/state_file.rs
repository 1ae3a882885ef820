//! The counter state file (`--state-file`) with the real binary and a real
//! snmpd: a restart with the file gives a rate at its first firing; a
//! corrupt file is one warning, and the bot runs with empty counters; the
//! file is written periodically; loaded readings give a rate, a wrap or a
//! reset at the first firing, and are dropped for another agent.

mod common;
#[path = "common/standalone.rs"]
mod standalone;

use std::time::{Duration, SystemTime};

use common::{PASS_OID, Snmpd};
use grafolean_collector::testing::RunningBot;
use grafolean_collector::testing::process::{TestDir, free_udp_port, sample, sample_with};
use grafolean_collector::{
    Collector, EntityConfig, JobConfigs, JobSpec, Problems, SensorConfig, Tick,
};
use grafolean_snmp_bot::state_file::{
    self, CounterRecord, EntityRecord, LoadOutcome, StateData, StateKeeper,
};
use grafolean_snmp_bot::{SnmpCollector, SnmpJob};
use serde_json::Value as Json;

/// snmpd caches a pass script's GETNEXT answers for about a second: wait
/// longer between changes.
const PASS_CACHE: Duration = Duration::from_millis(1600);

fn runs(text: &str, outcome: &str) -> f64 {
    sample(
        text,
        &format!("grafolean_bot_runs_total{{outcome=\"{outcome}\"}}"),
    )
    .unwrap_or(0.0)
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// One entity on `ipv4`, every second: a Counter32 walked with a name
/// column, and a Counter64.
fn config(ipv4: &str, credential: &str) -> String {
    format!(
        r#"
[[entity]]
id = 42
name = "agent"
details = {{ ipv4 = "{ipv4}" }}
credential = {credential}

[[entity.sensors]]
id = 1
interval = 1
details = {{ oids = [{{ oid = "{PASS_OID}.2", fetch_method = "walk" }}, {{ oid = "{PASS_OID}.1", fetch_method = "walk" }}], expression = "$2", output_path = "c32.{{$index}}.{{$1}}" }}

[[entity.sensors]]
id = 2
interval = 1
details = {{ oids = [{{ oid = "{PASS_OID}.3", fetch_method = "walk" }}], expression = "$1", output_path = "c64" }}
"#
    )
}

/// The saved reading of `oid` of entity 42: (value, at, wide).
fn saved(file: &Json, oid: &str) -> (u64, f64, bool) {
    let entity = file["entities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["entity_id"] == 42)
        .unwrap_or_else(|| panic!("entity 42 in {file}"));
    let c = entity["counters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["oid"] == oid)
        .unwrap_or_else(|| panic!("{oid} in {file}"));
    (
        c["value"].as_u64().unwrap(),
        c["at"].as_f64().unwrap(),
        c["wide"].as_bool().unwrap(),
    )
}

fn c32(text: &str) -> Option<f64> {
    sample_with(text, "snmp_c32{", &[r#"entity="42""#, r#"descr="alpha""#])
}

fn c64(text: &str) -> Option<f64> {
    sample_with(text, "snmp_c64{", &[r#"entity="42""#])
}

#[test]
fn a_restart_with_the_state_file_gives_a_rate_at_the_first_firing() {
    let Some(agent) = Snmpd::start(false) else {
        return;
    };
    let names = ("2.1", "string", "alpha");
    agent.set_pass(&[("1.1", "counter", "1000"), names, ("3.1", "counter64", "5")]);
    let dir = TestDir::new("state-restart");
    let devices = dir.join("devices.toml");
    std::fs::write(
        &devices,
        config(
            &agent.ipv4(),
            r#"{ version = "snmpv2c", snmpv12_community = "public" }"#,
        ),
    )
    .unwrap();
    let state = dir.join("counters.json");
    let args = ["--state-file", state.to_str().unwrap()];

    let mut bot = standalone::start(&devices, 120, &args);
    bot.wait_for_log(Duration::from_secs(10), &["no counter state file yet"]);
    // Two firings: the counters are known (the second gives rates of 0).
    bot.wait_for_metrics(Duration::from_secs(20), Duration::from_millis(100), |t| {
        runs(t, "ok") >= 2.0 && c32(t).is_some()
    });
    // Written every 60 s, so not yet: what follows is the shutdown's write.
    assert!(!state.exists());
    let status = bot.stop();
    assert!(status.success(), "{status:?}\n{}", bot.log().join("\n"));
    assert_eq!(bot.count(&["counter state written"]), 1);
    // One complete JSON file, no temp file beside it.
    assert_eq!(
        dir.names(),
        vec!["counters.json", "counters.json.lock", "devices.toml"]
    );
    let file: Json = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!(file["format"], 1);
    let (v32, at32, wide32) = saved(&file, &format!("{PASS_OID}.1.1"));
    let (v64, at64, wide64) = saved(&file, &format!("{PASS_OID}.3.1"));
    assert_eq!((v32, wide32, v64, wide64), (1000, false, 5, true));
    assert_eq!(file["entities"][0]["longest_interval"], 1);

    // The counters go on while the bot is down.
    std::thread::sleep(PASS_CACHE);
    agent.set_pass(&[
        ("1.1", "counter", "61000"),
        names,
        ("3.1", "counter64", "30005"),
    ]);
    std::thread::sleep(PASS_CACHE);
    let started = unix_now();
    let mut bot = standalone::start(&devices, 120, &args);
    // The first firing already gives both rates: they are there while only
    // one run is counted (a run is counted before its values are exported).
    let text = bot.wait_for_metrics(Duration::from_secs(20), Duration::from_millis(20), |t| {
        runs(t, "ok") >= 2.0 || (c32(t).is_some() && c64(t).is_some())
    });
    let seen = unix_now();
    assert_eq!(
        runs(&text, "ok"),
        1.0,
        "no rates before the second firing after the restart:\n{text}"
    );
    assert_eq!(
        bot.count(&["counter state loaded", "counters=2", "stale=0"]),
        1,
        "{:#?}",
        bot.log()
    );
    // 60,000 and 30,000 over the time from the saved reading to the first
    // one after the restart, which was between `started` and `seen`.
    for (rate, delta, at) in [(c32(&text), 60000.0, at32), (c64(&text), 30000.0, at64)] {
        let rate = rate.unwrap();
        let (low, high) = (delta / (seen - at), delta / (started - at));
        assert!(
            rate >= low * 0.999 && rate <= high * 1.001,
            "rate {rate}, expected {low}..{high}"
        );
    }
    assert!(bot.stop().success());
    assert_eq!(
        dir.names(),
        vec!["counters.json", "counters.json.lock", "devices.toml"]
    );
}

#[test]
fn a_corrupt_state_file_is_one_warning_and_the_bot_runs_with_empty_counters() {
    let dir = TestDir::new("state-corrupt");
    let devices = dir.join("devices.toml");
    // A port where nothing answers: the runs fail quickly, and are counted.
    std::fs::write(
        &devices,
        config(
            &format!("127.0.0.1:{}", free_udp_port()),
            r#"{ version = "snmpv2c", snmpv12_community = "public", timeout = 0.2, retries = 0, budget = 1 }"#,
        ),
    )
    .unwrap();
    let state = dir.join("counters.json");
    std::fs::write(
        &state,
        r#"{"format": 1, "saved_at": 1, "entities": [{"entity_id": 4"#,
    )
    .unwrap();
    let mut bot = standalone::start(&devices, 120, &["--state-file", state.to_str().unwrap()]);
    bot.wait_for_metrics(Duration::from_secs(20), Duration::from_millis(100), |t| {
        runs(t, "error") >= 2.0
    });
    assert!(bot.is_running());
    let file = state.display().to_string();
    let warned: Vec<String> = bot
        .log()
        .into_iter()
        .filter(|l| l.contains("WARN") && l.contains(&file))
        .collect();
    assert_eq!(warned.len(), 1, "{:#?}", bot.log());
    assert!(warned[0].contains("is not valid"), "{warned:?}");
    assert!(warned[0].contains("EOF"), "the cause: {warned:?}");
    assert!(
        warned[0].contains("moved aside, and counters start empty"),
        "{warned:?}"
    );
    let status = bot.stop();
    assert!(status.success(), "{status:?}\n{}", bot.log().join("\n"));
    // Kept as it was, beside the shutdown's new (empty) file.
    let aside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("counters.json.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1);
    assert_eq!(
        std::fs::read_to_string(&aside[0]).unwrap(),
        r#"{"format": 1, "saved_at": 1, "entities": [{"entity_id": 4"#
    );
    let saved: Json = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!(saved["format"], 1);
    assert_eq!(saved["entities"], serde_json::json!([]));
}

#[test]
fn a_fifo_or_a_shared_state_file_stops_the_bot_at_start_with_the_reason() {
    let dir = TestDir::new("state-refused");
    let devices = dir.join("devices.toml");
    std::fs::write(
        &devices,
        config(
            &format!("127.0.0.1:{}", free_udp_port()),
            r#"{ version = "snmpv2c", snmpv12_community = "public", timeout = 0.2, retries = 0 }"#,
        ),
    )
    .unwrap();
    let fifo = dir.join("fifo.json");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let shared = dir.join("shared.json");
    let mut first = standalone::start(&devices, 120, &["--state-file", shared.to_str().unwrap()]);
    first.wait_ready(Duration::from_secs(20));
    for (path, says) in [
        (&fifo, "is not a regular file".to_string()),
        (
            &shared,
            format!("in use by another bot (PID {}", first.pid()),
        ),
    ] {
        let mut bot = standalone::start(&devices, 120, &["--state-file", path.to_str().unwrap()]);
        let started = std::time::Instant::now();
        while bot.is_running() && started.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(!bot.is_running(), "{} did not stop the bot", path.display());
        let log = bot.log().join("\n");
        assert!(log.contains(&says), "{log}");
    }
    assert!(first.stop().success());
}

/// The collector's poll job for entity 42 on `ipv4`: one Counter32 walked
/// with its name.
fn poll_job(c: &SnmpCollector, ipv4: &str) -> JobSpec<SnmpJob> {
    let entity = EntityConfig {
        account_id: 1,
        entity_id: 42,
        name: "agent".into(),
        entity_type: "device".into(),
        details: serde_json::json!({"ipv4": ipv4}),
        credential_id: Some(9),
        credential_details:
            serde_json::json!({"version": "snmpv2c", "snmpv12_community": "public"}).into(),
        sensors: vec![SensorConfig {
            sensor_id: 1,
            interval: Some(60),
            details: serde_json::json!({
                "oids": [{"oid": format!("{PASS_OID}.2"), "fetch_method": "walk"},
                         {"oid": format!("{PASS_OID}.1"), "fetch_method": "walk"}],
                "expression": "$2", "output_path": "c32.{$index}.{$1}"})
            .into(),
            origin: None,
        }],
        origin: None,
    };
    c.jobs(
        &JobConfigs {
            entities: vec![entity],
        },
        &mut Problems::default(),
    )
    .into_iter()
    .find(|s| matches!(s.params, SnmpJob::Poll(_)))
    .expect("a poll job")
}

/// A collector whose counters were loaded from a file holding one reading
/// of the Counter32 (`value`, `age` seconds ago, from `agent`).
fn restored(dir: &TestDir, agent: &str, value: u64, age: f64) -> (SnmpCollector, f64) {
    let path = dir.join("counters.json");
    let at = unix_now() - age;
    let data = StateData {
        format: state_file::FORMAT,
        saved_at: at,
        entities: vec![EntityRecord {
            entity_id: 42,
            longest_interval: 60,
            agent: Some(agent.into()),
            counters: vec![CounterRecord {
                oid: format!("{PASS_OID}.1.1"),
                value,
                at,
                wide: false,
            }],
        }],
    };
    state_file::save(&path, &data).unwrap();
    let c = SnmpCollector::default();
    let outcome = StateKeeper::new(c.counter_store(), path).load();
    assert!(matches!(outcome, LoadOutcome::Loaded(_)), "{outcome:?}");
    (c, at)
}

async fn first_firing(c: &SnmpCollector, job: &JobSpec<SnmpJob>) -> Option<f64> {
    let tick = Tick {
        at: SystemTime::now(),
        affecting: job.intervals.clone(),
    };
    let values = c.run(tick, &job.params).await.unwrap();
    assert!(values.len() <= 1, "{values:?}");
    values
        .into_iter()
        .find(|v| v.path == "entity.42.snmp.c32.1.alpha")
        .map(|v| v.value)
}

#[tokio::test]
async fn loaded_readings_give_rates_wraps_and_resets_at_the_first_firing() {
    let Some(agent) = Snmpd::start(false) else {
        return;
    };
    agent.set_pass(&[("1.1", "counter", "1000"), ("2.1", "string", "alpha")]);
    let dir = TestDir::new("state-collector");

    // Read 400 ten seconds ago: a rate of about 60/s.
    let (c, at) = restored(&dir, &agent.ipv4(), 400, 10.0);
    let job = poll_job(&c, &agent.ipv4());
    let rate = first_firing(&c, &job).await.expect("a rate at once");
    let (low, high) = (600.0 / (unix_now() - at), 600.0 / 10.0);
    assert!(rate >= low * 0.999 && rate <= high * 1.001, "{rate}");

    // Read from another agent (the entity's address changed): dropped, so
    // the first firing only learns the counter.
    let (c, _) = restored(&dir, "192.0.2.1:161", 400, 10.0);
    let job = poll_job(&c, &agent.ipv4());
    assert_eq!(first_firing(&c, &job).await, None);

    // The counter went down since a reading 10 s ago, and the agent is up
    // for less than that: it restarted, the point is skipped.
    let (c, _) = restored(&dir, &agent.ipv4(), 4_294_967_000, 10.0);
    let job = poll_job(&c, &agent.ipv4());
    assert_eq!(first_firing(&c, &job).await, None);

    // Down since a reading 0.5 s ago, with the agent up for longer: a
    // Counter32 wrap, corrected.
    std::thread::sleep(Duration::from_millis(1500));
    let (c, at) = restored(&dir, &agent.ipv4(), 4_294_967_000, 0.5);
    let job = poll_job(&c, &agent.ipv4());
    let rate = first_firing(&c, &job).await.expect("a wrapped rate");
    let delta = (1u64 << 32) - 4_294_967_000 + 1000;
    let high = delta as f64 / 0.5;
    let low = delta as f64 / (unix_now() - at);
    assert!(rate >= low * 0.999 && rate <= high * 1.001, "{rate}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bot_writes_the_file_periodically_while_it_runs() {
    let dir = TestDir::new("state-periodic");
    let devices = dir.join("devices.toml");
    std::fs::write(
        &devices,
        config(
            &format!("127.0.0.1:{}", free_udp_port()),
            r#"{ version = "snmpv2c", snmpv12_community = "public", timeout = 0.2, retries = 0, budget = 1 }"#,
        ),
    )
    .unwrap();
    let state = dir.join("counters.json");
    let settings = <grafolean_collector::Settings as clap::Parser>::try_parse_from([
        "grafolean-snmp-bot",
        "--config",
        devices.to_str().unwrap(),
    ])
    .unwrap();
    let collector = SnmpCollector::default()
        .with_state_file(&state)
        .with_state_save_interval(Duration::from_millis(200));
    let bot = RunningBot::start(grafolean_snmp_bot::bot(collector), settings);
    let mut writes = Vec::new();
    for _ in 0..100 {
        if let Ok(Some(data)) = state_file::load(&state)
            && writes.last() != Some(&data.saved_at)
        {
            writes.push(data.saved_at);
        }
        if writes.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(writes.len() >= 2, "written {} times in 5 s", writes.len());
    bot.stop().await.unwrap();
    assert_eq!(
        dir.names(),
        vec!["counters.json", "counters.json.lock", "devices.toml"]
    );
}
