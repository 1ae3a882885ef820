//! SNMP bot benchmarks against a real snmpd on loopback (see
//! `tests/common/mod.rs`), with figures in BENCHMARKS.md.
//!
//! ```text
//! cargo bench -p grafolean-snmp-bot --bench snmp -- [poll|walk|reps|v3|all]
//! ```
//!
//! - `poll`: the bot's own CPU per device poll: Grafolean's three default
//!   sensors over v2c (6 walks), with expressions, paths, counter state and
//!   one POST of the values to the fake Grafolean per poll. The collector
//!   and its HTTP client run on one current-thread runtime; its CPU time is
//!   that thread's (`/proc/thread-self/schedstat`). The fake runs on other
//!   threads, snmpd in its own process; neither is counted.
//! - `walk`: a 10,000-row walk (`nsExtendOutLine."big"`) turned into 10,000
//!   values, v2c and v3 SHA/AES: wall time and CPU per varbind.
//! - `reps`: snmpd's CPU (`/proc/<pid>/schedstat`) for the default sensors'
//!   six walks, with a fixed max-repetitions of 25 and with the learned one
//!   (last row count + 1).
//! - `v3`: 10,000 polls of the default sensors for each of SHA/AES, MD5/DES
//!   and SHA-256/AES-256 at default settings; counts failed and incomplete
//!   polls.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant, SystemTime};

use common::{BIG_TABLE, Snmpd, steal};
use grafolean_collector::testing::{FakeAccount, FakeGrafolean};
use grafolean_collector::{
    Collector, EntityConfig, JobConfigs, JobSpec, Problems, SensorConfig, Tick,
};
use grafolean_snmp_bot::agent::Agents;
use grafolean_snmp_bot::{SnmpCollector, SnmpJob, SnmpSettings};
use serde_json::{Value as Json, json};

fn schedstat_ns(path: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn thread_cpu_ns() -> u64 {
    schedstat_ns("/proc/thread-self/schedstat")
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn walk(oid: &str) -> Json {
    json!({"oid": oid, "fetch_method": "walk"})
}

fn default_sensors() -> Vec<SensorConfig> {
    let s = |id, a: &str, b: &str, e: &str, p: &str| SensorConfig {
        sensor_id: id,
        interval: Some(60),
        details: json!({"oids": [walk(a), walk(b)], "expression": e, "output_path": p}).into(),
        origin: None,
    };
    common::DEFAULT_SENSORS
        .iter()
        .enumerate()
        .map(|(i, (a, b, e, p))| s(i as u64 + 1, a, b, e, p))
        .collect()
}

fn entity(id: u64, ipv4: &str, credential: Json, sensors: Vec<SensorConfig>) -> EntityConfig {
    EntityConfig {
        account_id: 1,
        entity_id: id,
        name: format!("e{id}"),
        entity_type: "device".into(),
        details: json!({"ipv4": ipv4}),
        credential_id: Some(1),
        credential_details: credential.into(),
        sensors,
        origin: None,
    }
}

fn poll_jobs(c: &SnmpCollector, entities: Vec<EntityConfig>) -> Vec<JobSpec<SnmpJob>> {
    c.jobs(&JobConfigs { entities }, &mut Problems::default())
        .into_iter()
        .filter(|s| matches!(s.params, SnmpJob::Poll(_)))
        .collect()
}

fn tick(job: &JobSpec<SnmpJob>) -> Tick {
    Tick {
        at: SystemTime::now(),
        affecting: job.intervals.clone(),
    }
}

/// One poll and the POST of its values (`[{"p": …, "v": …}]`), as the Python
/// bot sends them.
async fn poll_and_send(
    c: &SnmpCollector,
    http: &reqwest::Client,
    values_url: &str,
    job: &JobSpec<SnmpJob>,
) -> usize {
    let values = c.run(tick(job), &job.params).await.expect("a poll");
    let batch: Vec<serde_json::Value> = values
        .into_iter()
        .map(|v| json!({"p": v.path, "v": v.value}))
        .collect();
    if !batch.is_empty() {
        http.post(values_url)
            .json(&batch)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .expect("a POST");
    }
    batch.len()
}

/// CPU per device poll, 16 devices polled at once, `rounds` times.
fn bench_poll(agent: &Snmpd) {
    const DEVICES: u64 = 16;
    const ROUNDS: usize = 150;
    // The fake Grafolean on its own threads.
    let fake_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (fake, account, token) = fake_rt.block_on(async {
        let fake = FakeGrafolean::start().await;
        let account = fake.put_account(FakeAccount::new("bench"));
        let bot = fake.add_account_bot(account, "snmp");
        (fake, account, bot.token)
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut per_poll = Vec::new();
    let mut polls_per_s = Vec::new();
    let mut values_per_poll = 0.0;
    rt.block_on(async {
        let http = reqwest::Client::new();
        let values_url = format!("{}/accounts/{account}/values/?b={token}", fake.url());
        let c = SnmpCollector::default();
        let credential = json!({"version": "snmpv2c", "snmpv12_community": "public"});
        let jobs = poll_jobs(
            &c,
            (1..=DEVICES)
                .map(|id| entity(id, &agent.ipv4(), credential.clone(), default_sensors()))
                .collect(),
        );
        let poll = |job| poll_and_send(&c, &http, &values_url, job);
        // Warm-up: clients, learned repetitions, counters.
        for _ in 0..3 {
            futures::future::join_all(jobs.iter().map(poll)).await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for _ in 0..5 {
            let cpu0 = thread_cpu_ns();
            let t0 = Instant::now();
            let mut values = 0;
            for _ in 0..ROUNDS / 5 {
                values += futures::future::join_all(jobs.iter().map(poll))
                    .await
                    .iter()
                    .sum::<usize>();
            }
            let polls = (ROUNDS / 5) as f64 * DEVICES as f64;
            let cpu = (thread_cpu_ns() - cpu0) as f64 / 1e6;
            per_poll.push(cpu / polls);
            polls_per_s.push(polls / t0.elapsed().as_secs_f64());
            values_per_poll = values as f64 / polls;
        }
    });
    println!(
        "poll: {DEVICES} devices x {ROUNDS} rounds, 3 default sensors v2c + POST: own CPU per device poll median {:.3} ms (runs: {:?}), {:.0} polls/s, {values_per_poll:.1} values per poll; fake stored {} values",
        median(&mut per_poll),
        per_poll
            .iter()
            .map(|x| (x * 1000.0).round() / 1000.0)
            .collect::<Vec<_>>(),
        median(&mut polls_per_s),
        fake.values(account).len()
    );
    assert!(values_per_poll >= 2.0, "the polls gave no values");
    drop(fake);
}

/// The 10,000-row walk, v2c and v3.
fn bench_walk(agent: &Snmpd) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sensor = || {
            vec![SensorConfig {
                sensor_id: 1,
                interval: Some(60),
                details: json!({"oids": [walk(BIG_TABLE)], "expression": "$1", "output_path": "big.{$index}"}).into(),
                origin: None,
            }]
        };
        for (name, credential) in [
            ("v2c", json!({"version": "snmpv2c", "snmpv12_community": "public"})),
            (
                "v3 SHA/AES",
                json!({"version": "snmpv3", "snmpv3_securityName": "grafolean", "snmpv3_securityLevel": "authPriv",
                       "snmpv3_authProtocol": "SHA", "snmpv3_authKey": "authpass123",
                       "snmpv3_privProtocol": "AES", "snmpv3_privKey": "privpass123"}),
            ),
        ] {
            let c = SnmpCollector::default();
            let job = poll_jobs(&c, vec![entity(1, &agent.ipv4(), credential, sensor())]).remove(0);
            let _ = c.run(tick(&job), &job.params).await.expect("a warm-up walk");
            let (mut wall, mut cpu_per_vb) = (Vec::new(), Vec::new());
            for _ in 0..9 {
                let cpu0 = thread_cpu_ns();
                let t0 = Instant::now();
                let values = c.run(tick(&job), &job.params).await.expect("a walk");
                wall.push(t0.elapsed().as_secs_f64() * 1000.0);
                cpu_per_vb.push((thread_cpu_ns() - cpu0) as f64 / 1000.0 / values.len() as f64);
                assert_eq!(values.len(), 10_000);
            }
            println!(
                "walk {name}: 10,000 rows (max-repetitions 50) median {:.1} ms wall (runs {:?}), {:.2} us CPU per varbind",
                median(&mut wall),
                wall.iter().map(|x| x.round()).collect::<Vec<_>>(),
                median(&mut cpu_per_vb)
            );
        }
    });
}

/// snmpd's CPU for the six walks of the default sensors: fixed r=25 and learned.
fn bench_reps(agent: &Snmpd) {
    const POLLS: usize = 1500;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let snmpd_stat = format!("/proc/{}/schedstat", agent.pid());
    rt.block_on(async {
        let agents = Agents::new();
        let settings =
            SnmpSettings::from_credential(&json!({"version": "snmpv2c", "snmpv12_community": "public"})).unwrap();
        let a = agents.agent(None, agent.addr, &settings).await.unwrap();
        let columns: Vec<async_snmp::Oid> = [
            "1.3.6.1.2.1.2.2.1.2",
            "1.3.6.1.2.1.2.2.1.10",
            "1.3.6.1.2.1.2.2.1.2",
            "1.3.6.1.2.1.2.2.1.16",
            "1.3.6.1.4.1.2021.13.16.2.1.2",
            "1.3.6.1.4.1.2021.13.16.2.1.3",
        ]
        .iter()
        .map(|o| async_snmp::Oid::parse(o).unwrap())
        .collect();
        let mut learned: Vec<u32> = Vec::new();
        for c in &columns {
            learned.push(a.walk(c, 50).await.unwrap().len() as u32 + 1);
        }
        for (name, reps) in [("fixed r=25", vec![25; columns.len()]), ("learned", learned.clone())] {
            let mut per_poll = Vec::new();
            for _ in 0..5 {
                let s0 = schedstat_ns(&snmpd_stat);
                for _ in 0..POLLS / 5 {
                    let walks = columns.iter().zip(&reps).map(|(c, r)| a.walk(c, *r));
                    for r in futures::future::join_all(walks).await {
                        r.unwrap();
                    }
                }
                per_poll.push((schedstat_ns(&snmpd_stat) - s0) as f64 / 1e6 / (POLLS / 5) as f64);
            }
            println!(
                "reps {name} ({reps:?}): snmpd CPU per default-sensor poll median {:.3} ms (runs {:?})",
                median(&mut per_poll),
                per_poll.iter().map(|x| (x * 1000.0).round() / 1000.0).collect::<Vec<_>>()
            );
        }
    });
}

/// 10,000 polls for each v3 combination at default settings, 16 at once:
/// counts the polls that failed.
fn bench_v3(agent: &Snmpd) {
    const POLLS: usize = 10_000;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for (user, auth, privacy) in [("grafolean", "SHA", "AES"), ("legacy", "MD5", "DES"), ("modern", "SHA-256", "AES-256")] {
            let credential = json!({"version": "snmpv3", "snmpv3_securityName": user, "snmpv3_securityLevel": "authPriv",
                                    "snmpv3_authProtocol": auth, "snmpv3_authKey": "authpass123",
                                    "snmpv3_privProtocol": privacy, "snmpv3_privKey": "privpass123"});
            let c = SnmpCollector::default();
            let jobs = poll_jobs(&c, (1..=16).map(|id| entity(id, &agent.ipv4(), credential.clone(), default_sensors())).collect());
            let (mut ok, mut failed, mut incomplete) = (0usize, 0usize, 0usize);
            let t0 = Instant::now();
            let mut first_error = None;
            for round in 0..POLLS / jobs.len() {
                let results = futures::future::join_all(jobs.iter().map(|j| c.run(tick(j), &j.params))).await;
                for r in results {
                    match r {
                        // From the second round on, every poll gives 8 values.
                        Ok(v) if round == 0 || v.len() == 8 => ok += 1,
                        Ok(_) => incomplete += 1,
                        Err(e) => {
                            failed += 1;
                            first_error.get_or_insert_with(|| e.to_string());
                        }
                    }
                }
            }
            println!(
                "v3 {auth}/{privacy}: {} polls of the 3 default sensors in {:.1} s: {ok} complete, {incomplete} incomplete, {failed} failed{}",
                ok + incomplete + failed,
                t0.elapsed().as_secs_f64(),
                first_error.map(|e| format!(" (first: {e})")).unwrap_or_default()
            );
        }
    });
}

fn main() {
    let what = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_else(|| "all".into());
    let Some(agent) = Snmpd::start(true) else {
        eprintln!("snmpd is not installed; nothing measured");
        return;
    };
    let (steal0, total0) = steal();
    if what == "poll" || what == "all" {
        bench_poll(&agent);
    }
    if what == "walk" || what == "all" {
        bench_walk(&agent);
    }
    if what == "reps" || what == "all" {
        bench_reps(&agent);
    }
    if what == "v3" || what == "all" {
        bench_v3(&agent);
    }
    let (steal1, total1) = steal();
    println!(
        "CPU steal during the run: {:.1} % (/proc/stat)",
        (steal1 - steal0) as f64 * 100.0 / (total1 - total0).max(1) as f64
    );
}
