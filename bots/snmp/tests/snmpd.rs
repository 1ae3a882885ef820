//! The collector against a real snmpd on loopback: the default sensors,
//! v1/v2c/v3, counters (rates, a Counter32 wrap, an agent restart), a
//! 10,000-row walk, a missing OID, a closed port and a silent one.

mod common;

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::time::{Duration, Instant, SystemTime};

use common::{BIG_TABLE, DropGetBulk, FAKE_INTERFACES, INTERFACE_OIDS, PASS_OID, Snmpd};
use grafolean_collector::testing::process::free_udp_port;
use grafolean_collector::{
    Collector, EntityConfig, Intervals, JobConfigs, JobSpec, Problems, SensorConfig, Tick,
};
use grafolean_snmp_bot::{SnmpCollector, SnmpJob};
use serde_json::{Value as Json, json};

const ENTITY: u64 = 42;

/// snmpd caches a pass script's GETNEXT answers for about a second: wait
/// longer between changes.
const PASS_CACHE: Duration = Duration::from_millis(1600);

fn walk(oid: &str) -> Json {
    json!({"oid": oid, "fetch_method": "walk"})
}

fn get(oid: &str) -> Json {
    json!({"oid": oid, "fetch_method": "get"})
}

fn sensor(id: u64, interval: u32, oids: Vec<Json>, expression: &str, path: &str) -> SensorConfig {
    SensorConfig {
        sensor_id: id,
        interval: Some(interval),
        details: json!({"oids": oids, "expression": expression, "output_path": path}).into(),
        origin: None,
    }
}

/// Grafolean's three default SNMP sensors.
fn default_sensors() -> Vec<SensorConfig> {
    vec![
        sensor(
            1,
            60,
            vec![walk("1.3.6.1.2.1.2.2.1.2"), walk("1.3.6.1.2.1.2.2.1.10")],
            "$2",
            "if.in-octets.{$index}.{$1}",
        ),
        sensor(
            2,
            60,
            vec![walk("1.3.6.1.2.1.2.2.1.2"), walk("1.3.6.1.2.1.2.2.1.16")],
            "$2",
            "if.out-octets.{$index}.{$1}",
        ),
        sensor(
            3,
            60,
            vec![
                walk("1.3.6.1.4.1.2021.13.16.2.1.2"),
                walk("1.3.6.1.4.1.2021.13.16.2.1.3"),
            ],
            "$2 / 1000.0",
            "lmsensors.temp.{$index}.{$1}",
        ),
    ]
}

fn entity(ipv4: &str, credential: Json, sensors: Vec<SensorConfig>) -> EntityConfig {
    EntityConfig {
        account_id: 1,
        entity_id: ENTITY,
        name: "agent".into(),
        entity_type: "device".into(),
        details: json!({"ipv4": ipv4}),
        credential_id: Some(9),
        credential_details: credential.into(),
        sensors,
        origin: None,
    }
}

fn v2c() -> Json {
    json!({"version": "snmpv2c", "snmpv12_community": "public"})
}

/// The poll job of one entity.
fn poll_job(c: &SnmpCollector, e: EntityConfig) -> JobSpec<SnmpJob> {
    let specs = c.jobs(&JobConfigs { entities: vec![e] }, &mut Problems::default());
    specs
        .into_iter()
        .find(|s| matches!(s.params, SnmpJob::Poll(_)))
        .expect("a poll job")
}

async fn run(c: &SnmpCollector, job: &JobSpec<SnmpJob>) -> Result<BTreeMap<String, f64>, String> {
    let tick = Tick {
        at: SystemTime::now(),
        affecting: job.intervals.clone(),
    };
    c.run(tick, &job.params)
        .await
        .map(|values| values.into_iter().map(|v| (v.path, v.value)).collect())
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn default_sensors_v2c_and_v1() {
    let Some(agent) = Snmpd::start(false) else {
        return;
    };
    for credential in [
        v2c(),
        json!({"version": "snmpv1", "snmpv12_community": "public"}),
    ] {
        let c = SnmpCollector::default();
        let job = poll_job(
            &c,
            entity(&agent.ipv4(), credential.clone(), default_sensors()),
        );
        assert_eq!(job.id.as_str(), "entity.42");
        assert_eq!(job.intervals, Intervals::one(60).unwrap());
        // The first poll only learns the counters.
        let first = run(&c, &job).await.unwrap();
        assert!(first.is_empty(), "{credential}: {first:?}");
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let second = run(&c, &job).await.unwrap();
        // ifDescr of the host's interfaces: at least lo, at index 1.
        let lo_in = "entity.42.snmp.if.in-octets.1.lo";
        let lo_out = "entity.42.snmp.if.out-octets.1.lo";
        assert!(second.contains_key(lo_in), "{credential}: {second:?}");
        assert!(second.contains_key(lo_out), "{credential}: {second:?}");
        // snmpd refreshes its interface counters every few seconds, so the
        // rate may well be 0 here; it is never negative.
        assert!(
            second.values().all(|v| *v >= 0.0 && v.is_finite()),
            "{second:?}"
        );
        let ins = second
            .keys()
            .filter(|p| p.contains(".if.in-octets."))
            .count();
        let outs = second
            .keys()
            .filter(|p| p.contains(".if.out-octets."))
            .count();
        assert_eq!(ins, outs);
        // No lm-sensors here: that walk gives no rows, and no error.
        assert!(!second.keys().any(|p| p.contains("lmsensors")));
        for path in second.keys() {
            assert!(path.starts_with("entity.42.snmp.if."), "{path}");
        }
    }
}

fn v3(user: &str, auth: &str, privacy: &str) -> Json {
    json!({
        "version": "snmpv3", "snmpv3_securityName": user, "snmpv3_securityLevel": "authPriv",
        "snmpv3_authProtocol": auth, "snmpv3_authKey": "authpass123",
        "snmpv3_privProtocol": privacy, "snmpv3_privKey": "privpass123"
    })
}

#[tokio::test]
async fn v3_sha_aes_md5_des_sha256_aes256() {
    let Some(agent) = Snmpd::start(false) else {
        return;
    };
    let sensors = || {
        vec![
            sensor(
                1,
                10,
                vec![get("1.3.6.1.2.1.1.3.0"), get("1.3.6.1.2.1.1.5.0")],
                "$1 / 100",
                "sys.uptime.{$2}",
            ),
            sensor(
                2,
                10,
                vec![walk("1.3.6.1.2.1.2.2.1.2"), walk("1.3.6.1.2.1.2.2.1.4")],
                "$2",
                "if.mtu.{$index}.{$1}",
            ),
        ]
    };
    for (user, auth, privacy) in [
        ("grafolean", "SHA", "AES"),
        ("legacy", "MD5", "DES"),
        ("modern", "SHA-256", "AES-256"),
    ] {
        let c = SnmpCollector::default();
        let job = poll_job(
            &c,
            entity(&agent.ipv4(), v3(user, auth, privacy), sensors()),
        );
        for round in 0..3 {
            let values = run(&c, &job)
                .await
                .unwrap_or_else(|e| panic!("{user} {auth}/{privacy}: {e}"));
            let up = values.get("entity.42.snmp.sys.uptime.snmpcheck").copied();
            assert!(
                up.is_some_and(|u| u >= 0.0),
                "{user} round {round}: {values:?}"
            );
            assert_eq!(
                values.get("entity.42.snmp.if.mtu.1.lo"),
                Some(&65536.0),
                "{user}: {values:?}"
            );
        }
    }
    // A wrong auth key: the agent's unauthenticated report names it.
    let c = SnmpCollector::default();
    let mut wrong = v3("grafolean", "SHA", "AES");
    wrong["snmpv3_authKey"] = json!("wrongpass123");
    wrong["timeout"] = json!(0.2);
    wrong["retries"] = json!(0);
    let job = poll_job(&c, entity(&agent.ipv4(), wrong, sensors()));
    let e = run(&c, &job).await.unwrap_err();
    assert!(e.contains("authentication failure"), "{e}");
}

/// A device replaced (or reset) answers with another SNMPv3 engine id, its
/// boots starting over: the bot's cached engine and keys no longer fit. The
/// values come back within 2 firings, as they did with the Python bot's
/// session per poll.
#[tokio::test]
async fn v3_recovers_after_the_agent_comes_back_with_another_engine() {
    let Some(mut agent) = Snmpd::start(false) else {
        return;
    };
    let mut credential = v3("grafolean", "SHA", "AES");
    credential["timeout"] = json!(0.5);
    credential["retries"] = json!(0);
    let c = SnmpCollector::default();
    let uptime = vec![sensor(
        1,
        10,
        vec![get("1.3.6.1.2.1.1.3.0")],
        "$1",
        "uptime",
    )];
    let job = poll_job(&c, entity(&agent.ipv4(), credential, uptime));
    let v = run(&c, &job).await.unwrap();
    assert!(v.contains_key("entity.42.snmp.uptime"), "{v:?}");

    for (round, engine_id) in ["0x8000000001020304", "0x80000000010a0b0c"]
        .iter()
        .enumerate()
    {
        agent.restart_with_engine_id(engine_id);
        let first = run(&c, &job).await;
        let answered = match &first {
            Ok(v) => v.contains_key("entity.42.snmp.uptime"),
            Err(_) => false,
        };
        if !answered {
            let second = run(&c, &job).await;
            assert!(
                second
                    .as_ref()
                    .is_ok_and(|v| v.contains_key("entity.42.snmp.uptime")),
                "round {round}: no values in 2 firings after the engine changed: {first:?}, then {second:?}"
            );
        }
    }
}

/// An unknown user, a wrong auth key and a wrong privacy key. snmpd answers
/// the first two with an unauthenticated USM report (net-snmp's snmpget
/// then says "Unknown user name" and "Authentication failure"): the bot
/// takes it and names the cause, in the error and the `cause` label. A
/// wrong privacy key gets no answer (snmpget times out too): the error
/// names it as a likely cause for a v3 agent (not "a wrong community").
#[tokio::test]
async fn v3_refusals_name_their_cause() {
    let Some(agent) = Snmpd::start(false) else {
        return;
    };
    let uptime = || {
        vec![sensor(
            1,
            10,
            vec![get("1.3.6.1.2.1.1.3.0")],
            "$1",
            "uptime",
        )]
    };
    let cases = [
        (
            "snmpv3_securityName",
            "nobody",
            "unknown user name",
            "v3_unknown_user",
        ),
        (
            "snmpv3_authKey",
            "wrongpass123",
            "authentication failure",
            "v3_wrong_auth",
        ),
        (
            "snmpv3_privKey",
            "wrongpriv123",
            "a wrong privacy key",
            "timeout",
        ),
    ];
    for (field, value, words, cause) in cases {
        let mut credential = v3("grafolean", "SHA", "AES");
        credential[field] = json!(value);
        credential["timeout"] = json!(0.5);
        credential["retries"] = json!(0);
        let c = SnmpCollector::default();
        let job = poll_job(&c, entity(&agent.ipv4(), credential, uptime()));
        let error = run(&c, &job).await.unwrap_err();
        assert!(error.contains(words), "{field}: {error}");
        assert_eq!(c.metrics().errors(ENTITY, cause), 1, "{field}: {error}");
    }
}

/// The agent comes back with the same engine id and engine boots not
/// incremented (a device without persistent storage) after the bot ran
/// longer than the 150 s time window: values again within 2 firings, and a
/// firing that failed named the time window, not silence. Takes 3 minutes.
#[tokio::test]
async fn v3_recovers_when_the_agent_leaves_the_time_window() {
    let Some(mut agent) = Snmpd::start(false) else {
        return;
    };
    const ENGINE: &str = "0x8000000001020305";
    agent.restart_with_engine_id(ENGINE);
    let mut credential = v3("grafolean", "SHA", "AES");
    credential["timeout"] = json!(0.5);
    credential["retries"] = json!(0);
    let c = SnmpCollector::default();
    let uptime = vec![sensor(
        1,
        10,
        vec![get("1.3.6.1.2.1.1.3.0")],
        "$1",
        "uptime",
    )];
    let job = poll_job(&c, entity(&agent.ipv4(), credential, uptime));
    // Past the time window, polling as the bot does.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(165) {
        let v = run(&c, &job).await.unwrap();
        assert!(v.contains_key("entity.42.snmp.uptime"), "{v:?}");
        tokio::time::sleep(Duration::from_secs(15)).await;
    }
    // Same engine id, boots back at 1, its time back at 0.
    agent.restart_with_engine_id(ENGINE);
    let first = run(&c, &job).await;
    if !first
        .as_ref()
        .is_ok_and(|v| v.contains_key("entity.42.snmp.uptime"))
    {
        if let Err(e) = &first {
            assert!(!e.contains("no answer"), "{e}");
        }
        let second = run(&c, &job).await;
        assert!(
            second
                .as_ref()
                .is_ok_and(|v| v.contains_key("entity.42.snmp.uptime")),
            "no values in 2 firings: {first:?}, then {second:?}"
        );
    }
}

#[tokio::test]
async fn counter_rates_wrap_and_agent_restart() {
    let Some(mut agent) = Snmpd::start(false) else {
        return;
    };
    let names = ("2.1", "string", "alpha");
    agent.set_pass(&[("1.1", "counter", "1000"), ("3.1", "counter64", "5"), names]);
    let sensors = vec![
        sensor(
            1,
            10,
            vec![
                walk(&format!("{PASS_OID}.2")),
                walk(&format!("{PASS_OID}.1")),
            ],
            "$2",
            "c32.{$index}.{$1}",
        ),
        // (snmpd caches a pass script's GET answers for good, so pass rows
        // are read with walks.)
        sensor(2, 10, vec![walk(&format!("{PASS_OID}.3"))], "$1", "c64"),
    ];
    let c = SnmpCollector::default();
    let job = poll_job(&c, entity(&agent.ipv4(), v2c(), sensors));
    // The time between two polls, from the middles of the runs (a run under
    // load can take a good part of a second: the agent runs a script).
    let timed = async || {
        let start = Instant::now();
        let v = run(&c, &job).await.unwrap();
        (v, start + start.elapsed() / 2)
    };
    let (v, t0) = timed().await;
    assert!(v.is_empty());
    tokio::time::sleep(PASS_CACHE).await;
    agent.set_pass(&[
        ("1.1", "counter", "3000"),
        ("3.1", "counter64", "1005"),
        names,
    ]);
    let (v, t1) = timed().await;
    let dt = (t1 - t0).as_secs_f64();
    let rate = v["entity.42.snmp.c32.1.alpha"];
    // 2000 in dt seconds.
    assert!(
        (rate - 2000.0 / dt).abs() < 2000.0 / dt * 0.1,
        "rate {rate}, dt {dt}"
    );
    assert!(
        (v["entity.42.snmp.c64"] - 1000.0 / dt).abs() < 1000.0 / dt * 0.1,
        "{v:?}"
    );

    // A Counter32 wrap: the agent stayed up, so the delta goes across 2^32.
    tokio::time::sleep(PASS_CACHE).await;
    agent.set_pass(&[
        ("1.1", "counter", "4294967000"),
        ("3.1", "counter64", "2005"),
        names,
    ]);
    let (v, first) = timed().await;
    assert!(v.contains_key("entity.42.snmp.c32.1.alpha"));
    tokio::time::sleep(PASS_CACHE).await;
    agent.set_pass(&[
        ("1.1", "counter", "704"),
        ("3.1", "counter64", "3005"),
        names,
    ]);
    let (v, second) = timed().await;
    let wrapped = v["entity.42.snmp.c32.1.alpha"];
    // 4294967296 - 4294967000 + 704 = 1000 between the two polls.
    let want = 1000.0 / (second - first).as_secs_f64();
    assert!(
        (wrapped - want).abs() < want * 0.2,
        "wrap gave {wrapped}, want about {want}"
    );

    // An agent restart: sysUpTime went back, so a lower counter is a reset
    // and its point is skipped; a Counter64 decrease is always a reset.
    agent.restart();
    agent.set_pass(&[("1.1", "counter", "10"), ("3.1", "counter64", "1"), names]);
    let v = run(&c, &job).await.unwrap();
    assert!(v.is_empty(), "after a restart: {v:?}");
    tokio::time::sleep(PASS_CACHE).await;
    agent.set_pass(&[
        ("1.1", "counter", "1010"),
        ("3.1", "counter64", "101"),
        names,
    ]);
    let v = run(&c, &job).await.unwrap();
    assert!(v["entity.42.snmp.c32.1.alpha"] > 400.0, "{v:?}");
    assert!(v["entity.42.snmp.c64"] > 40.0, "{v:?}");
}

#[tokio::test]
async fn missing_oid_and_bad_rows_are_isolated() {
    let Some(agent) = Snmpd::start(false) else {
        return;
    };
    agent.set_pass(&[
        ("4.1", "integer", "10"),
        ("4.2", "integer", "0"),
        ("5.1", "string", "x"),
    ]);
    let sensors = vec![
        // A missing scalar: this sensor fails alone.
        sensor(1, 10, vec![get("1.3.6.1.2.1.1.99.0")], "$1", "missing"),
        // A missing subtree: no rows, no error.
        sensor(
            2,
            10,
            vec![walk("1.3.6.1.4.1.99998")],
            "$1",
            "empty.{$index}",
        ),
        // 100 / 0 is not finite: that row is skipped, the other kept.
        sensor(
            3,
            10,
            vec![walk(&format!("{PASS_OID}.4"))],
            "100 / $1",
            "div.{$index}",
        ),
        // Row 2 of the second walk is missing: only row 1.
        sensor(
            4,
            10,
            vec![
                walk(&format!("{PASS_OID}.4")),
                walk(&format!("{PASS_OID}.5")),
            ],
            "$1",
            "pair.{$index}.{$2}",
        ),
        // A GET broadcast to each row of a walk.
        sensor(
            5,
            10,
            vec![get("1.3.6.1.2.1.1.5.0"), walk(&format!("{PASS_OID}.4"))],
            "$2 + 1",
            "bcast.{$1}.{$index}",
        ),
        sensor(6, 10, vec![get("1.3.6.1.2.1.1.5.0")], "1", "ok.{$1}"),
    ];
    let c = SnmpCollector::default();
    let job = poll_job(&c, entity(&agent.ipv4(), v2c(), sensors));
    let v = run(&c, &job).await.unwrap();
    let want: BTreeMap<String, f64> = [
        ("div.1", 10.0),
        ("pair.1.x", 10.0),
        ("bcast.snmpcheck.1", 11.0),
        ("bcast.snmpcheck.2", 1.0),
        ("ok.snmpcheck", 1.0),
    ]
    .into_iter()
    .map(|(p, v)| (format!("entity.42.snmp.{p}"), v))
    .collect();
    assert_eq!(v, want);
    assert_eq!(c.metrics().timeouts(ENTITY), 0);
}

#[tokio::test]
async fn closed_and_silent_ports_time_out_within_the_budget() {
    let Some(agent) = Snmpd::start(false) else {
        return;
    };
    // A port that reads and never answers.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let reader = std::thread::spawn(move || {
        silent
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 2048];
        let mut n = 0;
        while silent.recv(&mut buf).is_ok() {
            n += 1;
        }
        n
    });
    let closed = format!("127.0.0.1:{}", free_udp_port());
    let mut credential = v2c();
    credential["timeout"] = json!(0.3);
    credential["retries"] = json!(1);
    let c = SnmpCollector::default();
    for (i, target) in [silent_addr.to_string(), closed].iter().enumerate() {
        let mut e = entity(target, credential.clone(), default_sensors());
        e.entity_id = 100 + i as u64;
        let job = poll_job(&c, e);
        let started = Instant::now();
        let err = run(&c, &job).await.unwrap_err();
        let took = started.elapsed();
        assert!(
            err.contains("no answer") || err.contains("network"),
            "{target}: {err}"
        );
        // All fetches run at once: about timeout × (retries + 1), not per OID.
        assert!(took < Duration::from_millis(1500), "{target}: {took:?}");
        assert_eq!(c.metrics().timeouts(100 + i as u64), 1, "{target}");
    }
    // A working entity on the same collector is unaffected.
    let job = poll_job(
        &c,
        entity(
            &agent.ipv4(),
            v2c(),
            vec![sensor(
                1,
                10,
                vec![get("1.3.6.1.2.1.1.5.0")],
                "1",
                "up.{$1}",
            )],
        ),
    );
    assert_eq!(run(&c, &job).await.unwrap().len(), 1);
    // The silent port did receive the requests.
    assert!(reader.join().unwrap() >= 2);
}

#[tokio::test]
async fn budget_cuts_a_slow_device_short() {
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut credential = v2c();
    credential["timeout"] = json!(2.0);
    credential["retries"] = json!(3);
    credential["budget"] = json!(1);
    let c = SnmpCollector::default();
    let job = poll_job(
        &c,
        entity(
            &silent.local_addr().unwrap().to_string(),
            credential,
            default_sensors(),
        ),
    );
    let started = Instant::now();
    let err = run(&c, &job).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_millis(1300),
        "{:?}",
        started.elapsed()
    );
    assert!(err.contains("device budget 1s"), "{err}");
}

#[tokio::test]
async fn ten_thousand_row_walk() {
    let Some(agent) = Snmpd::start(true) else {
        return;
    };
    let c = SnmpCollector::default();
    let job = poll_job(
        &c,
        entity(
            &agent.ipv4(),
            v2c(),
            vec![sensor(1, 10, vec![walk(BIG_TABLE)], "$1", "big.{$index}")],
        ),
    );
    for round in 0..2 {
        let started = Instant::now();
        let v = run(&c, &job).await.unwrap();
        eprintln!("10k walk round {round}: {:?}", started.elapsed());
        assert_eq!(v.len(), 10_000);
        // nsExtendOutLine."big".N is the text "N".
        assert_eq!(v["entity.42.snmp.big.1"], 1.0);
        assert_eq!(v["entity.42.snmp.big.10000"], 10_000.0);
    }
}

#[tokio::test]
async fn only_affected_sensors_run_and_state_is_pruned() {
    let Some(agent) = Snmpd::start(false) else {
        return;
    };
    let sensors = vec![
        sensor(1, 10, vec![get("1.3.6.1.2.1.1.5.0")], "1", "ten.{$1}"),
        sensor(2, 20, vec![get("1.3.6.1.2.1.1.5.0")], "2", "twenty.{$1}"),
    ];
    let c = SnmpCollector::default();
    let job = poll_job(&c, entity(&agent.ipv4(), v2c(), sensors));
    assert_eq!(job.intervals, Intervals::new([10, 20]).unwrap());
    let tick = |iv: &[u32]| Tick {
        at: SystemTime::now(),
        affecting: Intervals::new(iv.iter().copied()).unwrap(),
    };
    let paths =
        |v: Vec<grafolean_collector::Value>| v.into_iter().map(|v| v.path).collect::<Vec<_>>();
    assert_eq!(
        paths(c.run(tick(&[10]), &job.params).await.unwrap()),
        ["entity.42.snmp.ten.snmpcheck"]
    );
    assert_eq!(
        paths(c.run(tick(&[10, 20]), &job.params).await.unwrap()),
        [
            "entity.42.snmp.ten.snmpcheck",
            "entity.42.snmp.twenty.snmpcheck"
        ]
    );
    assert_eq!(c.entities_with_state(), 1);
    // The entity went away: its state goes with it.
    assert!(
        c.jobs(&JobConfigs::default(), &mut Problems::default())
            .is_empty()
    );
    assert_eq!(c.entities_with_state(), 0);
}

/// The agent's sysUpTime in hundredths of a second, asked with snmpget.
fn agent_uptime(agent: &Snmpd) -> u64 {
    let out = std::process::Command::new("snmpget")
        .args(["-v2c", "-c", "public", "-Ovt", "-t", "1"])
        .arg(agent.ipv4())
        .arg("1.3.6.1.2.1.1.3.0")
        .output()
        .expect("snmpget runs");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("sysUpTime: {out:?}"))
}

#[tokio::test]
async fn a_cleared_counter_is_not_a_wrap_and_a_wrap_is_still_a_rate() {
    let Some(agent) = Snmpd::with_fake_interfaces() else {
        return;
    };
    let [octets, speed, discontinuity] = INTERFACE_OIDS;
    let [slow, told] = FAKE_INTERFACES;
    // Interface 4242 runs at 10 Mbit/s; 4243 tells when its counters were
    // last cleared (0: never).
    let set = |a: u64, b: u64, cleared: u64| {
        agent.set_interfaces(&[
            (format!("{octets}.{slow}"), "counter", a.to_string()),
            (format!("{octets}.{told}"), "counter", b.to_string()),
            (format!("{speed}.{slow}"), "gauge", "10000000".to_string()),
            (
                format!("{discontinuity}.{told}"),
                "timeticks",
                cleared.to_string(),
            ),
        ]);
    };
    let sensors = vec![sensor(1, 10, vec![walk(octets)], "$1", "in.{$index}")];
    let c = SnmpCollector::default();
    let job = poll_job(&c, entity(&agent.ipv4(), v2c(), sensors));
    let path = |i: u32| format!("entity.42.snmp.in.{i}");
    set(1000, 1000, 0);
    let v = run(&c, &job).await.unwrap();
    assert!(v.is_empty(), "{v:?}");
    tokio::time::sleep(PASS_CACHE).await;
    set(3000, 3000, 0);
    let v = run(&c, &job).await.unwrap();
    assert!(
        v.contains_key(&path(slow)) && v.contains_key(&path(told)),
        "{v:?}"
    );

    // `clear counters` on both, with the agent up: across a "wrap" 4242
    // would have carried about 4.3 GB in a second or two, and 4243 says it
    // was cleared. Neither posts a value.
    tokio::time::sleep(PASS_CACHE).await;
    set(10, 10, agent_uptime(&agent));
    let v = run(&c, &job).await.unwrap();
    assert!(v.is_empty(), "{v:?}");

    // Counting again from there; then a true wrap on 4242, within its speed.
    tokio::time::sleep(PASS_CACHE).await;
    set(4_294_967_000, 510, agent_uptime(&agent));
    let start = Instant::now();
    let v = run(&c, &job).await.unwrap();
    assert!(v.contains_key(&path(told)), "{v:?}");
    tokio::time::sleep(PASS_CACHE).await;
    set(704, 1010, agent_uptime(&agent));
    let v = run(&c, &job).await.unwrap();
    let dt = start.elapsed().as_secs_f64();
    // 4294967296 - 4294967000 + 704 = 1000 bytes, and 500 on 4243.
    let wrapped = v[&path(slow)];
    assert!(
        (wrapped - 1000.0 / dt).abs() < 1000.0 / dt * 0.3,
        "wrap gave {wrapped} in {dt} s"
    );
    assert!(v.contains_key(&path(told)), "{v:?}");
}

#[tokio::test]
async fn a_walk_over_the_row_limit_fails_its_sensor_naming_the_limit() {
    let Some(agent) = Snmpd::start(true) else {
        return;
    };
    // The agent itself: GETBULK and GETNEXT both stop at the limit, loudly.
    let agents = grafolean_snmp_bot::agent::Agents::new().with_max_walk_rows(5);
    let system = async_snmp::Oid::parse("1.3.6.1.2.1.1").unwrap();
    for walk_with in ["getbulk", "getnext"] {
        let mut credential = v2c();
        credential["walk_with"] = json!(walk_with);
        let settings =
            grafolean_snmp_bot::settings::SnmpSettings::from_credential(&credential).unwrap();
        let a = agents.agent(None, agent.addr, &settings).await.unwrap();
        let e = a.walk(&system, 10).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "the walk of 1.3.6.1.2.1.1 gave more than 5 rows, the most one walk may return; \
             its sensors are skipped",
            "{walk_with}"
        );
        // Under the limit, the same walk is whole.
        let whole = grafolean_snmp_bot::agent::Agents::new()
            .agent(None, agent.addr, &settings)
            .await
            .unwrap()
            .walk(&system, 10)
            .await
            .unwrap();
        assert!(whole.len() > 5, "{walk_with}: {}", whole.len());
    }

    // Through the collector: the big walk's sensor gives nothing and is
    // counted as failed; the entity's other sensor goes on.
    let c = SnmpCollector::default().with_max_walk_rows(100);
    let job = poll_job(
        &c,
        entity(
            &agent.ipv4(),
            v2c(),
            vec![
                sensor(1, 10, vec![walk(BIG_TABLE)], "$1", "big.{$index}"),
                sensor(2, 10, vec![get("1.3.6.1.2.1.1.3.0")], "$1", "uptime"),
            ],
        ),
    );
    let v = run(&c, &job).await.unwrap();
    assert_eq!(v.keys().collect::<Vec<_>>(), ["entity.42.snmp.uptime"]);
    let mut registry = prometheus_client::registry::Registry::default();
    c.metrics().register(&mut registry);
    let mut metrics = String::new();
    prometheus_client::encoding::text::encode(&mut metrics, &registry).unwrap();
    assert!(
        metrics.contains("snmp_sensor_errors_total{entity=\"42\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn walks_fall_back_to_getnext_when_getbulk_gets_no_answer() {
    let Some(agent) = Snmpd::start(false) else {
        return;
    };
    let proxy = DropGetBulk::start(agent.addr);
    // A GET beside the walk: the agent answers it, so a GETBULK that gets
    // no answer is GETBULK's fault.
    let mtu = vec![sensor(
        1,
        10,
        vec![get("1.3.6.1.2.1.1.3.0"), walk("1.3.6.1.2.1.2.2.1.4")],
        "$2",
        "if.mtu.{$index}",
    )];
    let mut credential = v2c();
    credential["timeout"] = json!(0.3);
    credential["retries"] = json!(0);
    let c = SnmpCollector::default();
    let job = poll_job(
        &c,
        entity(&proxy.addr.to_string(), credential.clone(), mtu.clone()),
    );
    // The first walk's GETBULK gets nothing; GETNEXT does, and is kept.
    let v = run(&c, &job).await.unwrap();
    assert_eq!(v.get("entity.42.snmp.if.mtu.1"), Some(&65536.0), "{v:?}");
    let dropped = proxy.dropped.load(std::sync::atomic::Ordering::Relaxed);
    assert!(dropped >= 1);
    let start = Instant::now();
    let v = run(&c, &job).await.unwrap();
    assert_eq!(v.get("entity.42.snmp.if.mtu.1"), Some(&65536.0), "{v:?}");
    assert_eq!(
        proxy.dropped.load(std::sync::atomic::Ordering::Relaxed),
        dropped,
        "no GETBULK once it is known not to work"
    );
    assert!(start.elapsed() < Duration::from_millis(300), "no timeout");

    // Asked for in the credential: GETNEXT from the start.
    credential["walk_with"] = json!("getnext");
    let c = SnmpCollector::default();
    let job = poll_job(&c, entity(&proxy.addr.to_string(), credential, mtu));
    let v = run(&c, &job).await.unwrap();
    assert_eq!(v.get("entity.42.snmp.if.mtu.1"), Some(&65536.0), "{v:?}");
    assert_eq!(
        proxy.dropped.load(std::sync::atomic::Ordering::Relaxed),
        dropped
    );
}

#[tokio::test]
async fn a_walk_keeps_the_rows_before_an_oid_that_does_not_increase() {
    let Some(agent) = Snmpd::start(false) else {
        return;
    };
    // After 6.2 the agent answers 6.1 again.
    agent.set_pass(&[
        ("6.1", "integer", "1"),
        ("6.2", "integer", "2"),
        ("6.2", "backto", "6.1 integer 9"),
    ]);
    let sensors = vec![sensor(
        1,
        10,
        vec![walk(&format!("{PASS_OID}.6"))],
        "$1",
        "w.{$index}",
    )];
    for credential in [
        v2c(),
        json!({"version": "snmpv1", "snmpv12_community": "public"}),
    ] {
        let c = SnmpCollector::default();
        let job = poll_job(
            &c,
            entity(&agent.ipv4(), credential.clone(), sensors.clone()),
        );
        let v = run(&c, &job).await.unwrap();
        assert_eq!(
            v.get("entity.42.snmp.w.1"),
            Some(&1.0),
            "{credential}: {v:?}"
        );
        assert_eq!(
            v.get("entity.42.snmp.w.2"),
            Some(&2.0),
            "{credential}: {v:?}"
        );
        assert_eq!(v.len(), 2, "{v:?}");
    }
}

#[tokio::test]
async fn a_row_that_gives_no_value_is_said_once_per_change_and_counted() {
    let Some(agent) = Snmpd::start(false) else {
        return;
    };
    let logs = grafolean_collector::testing::LogCapture::global();
    agent.set_pass(&[
        ("7.1", "integer", "10"),
        ("7.2", "string", "n/a"),
        ("7.3", "string", "n/a"),
    ]);
    let sensors = vec![sensor(
        77,
        10,
        vec![walk(&format!("{PASS_OID}.7"))],
        "$1",
        "rows.{$index}",
    )];
    let c = SnmpCollector::default();
    let mut e = entity(&agent.ipv4(), v2c(), sensors);
    e.entity_id = 4077;
    let job = poll_job(&c, e);
    let said = || logs.count(&["WARN", "entity_id=4077", "sensor_id=77", "is not a number"]);
    for _ in 0..3 {
        let v = run(&c, &job).await.unwrap();
        assert_eq!(v.len(), 1, "{v:?}");
    }
    // Three firings of two bad rows: said once, counted six times.
    assert_eq!(said(), 1, "{}", logs.text());
    let metrics = {
        let mut registry = prometheus_client::registry::Registry::default();
        c.metrics().register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text
    };
    assert!(
        metrics.contains("snmp_rows_skipped_total{entity=\"4077\"} 6"),
        "{metrics}"
    );
    // Mended: said once too.
    tokio::time::sleep(PASS_CACHE).await;
    agent.set_pass(&[
        ("7.1", "integer", "10"),
        ("7.2", "integer", "20"),
        ("7.3", "integer", "30"),
    ]);
    let v = run(&c, &job).await.unwrap();
    assert_eq!(v.len(), 3, "{v:?}");
    run(&c, &job).await.unwrap();
    assert_eq!(
        logs.count(&["entity_id=4077", "sensor_id=77", "give values again"]),
        1,
        "{}",
        logs.text()
    );
    assert_eq!(said(), 1);
}
