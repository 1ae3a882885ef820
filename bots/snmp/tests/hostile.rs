//! The SNMP bot against the project's own hostile agent
//! (`common/hostile.rs`): what a broken or malicious device answers must
//! not forge log lines, flood logs or the status page, take memory without
//! bound, land on the wrong request, or vanish without a word.

mod common;
#[path = "common/hostile.rs"]
mod hostile;
#[path = "common/standalone.rs"]
mod standalone;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use grafolean_collector::testing::process::{BotProcess, TestDir, get, sample};
use grafolean_collector::{
    Collector, EntityConfig, JobConfigs, JobSpec, Problems, SensorConfig, Tick,
};
use grafolean_snmp_bot::{SnmpCollector, SnmpJob};
use hostile::{BIG_VALUE, Hostile, INJECTED, Mode, TABLE};
use serde_json::{Value as Json, json};

/// A standalone file with one entity on `agent` and `sensors` (TOML
/// `[[entity.sensors]]` tables), with a firing budget of `budget` seconds.
fn config(dir: &TestDir, agent: &Hostile, sensors: &str, budget: u32) -> std::path::PathBuf {
    let path = dir.join("devices.toml");
    std::fs::write(
        &path,
        format!(
            "[[entity]]\nid = 1\nname = \"hostile\"\ndetails = {{ ipv4 = \"{}\" }}\n\
             credential = {{ version = \"snmpv2c\", snmpv12_community = \"public\", timeout = 2, retries = 0, budget = {budget} }}\n{sensors}",
            agent.ipv4()
        ),
    )
    .unwrap();
    path
}

fn column(n: u32) -> String {
    format!("{TABLE}.{n}")
}

/// Waits until the bot has finished `n` runs (of any outcome).
fn wait_runs(bot: &mut BotProcess, n: f64) -> String {
    bot.wait_for_metrics(Duration::from_secs(90), Duration::from_millis(200), |m| {
        ["ok", "error", "timeout"]
            .iter()
            .map(|o| {
                sample(m, &format!("grafolean_bot_runs_total{{outcome=\"{o}\"}}")).unwrap_or(0.0)
            })
            .sum::<f64>()
            >= n
    })
}

#[test]
fn a_9300_varbind_answer_stays_small_in_the_log_and_on_the_status_page() {
    let agent = Hostile::start(Mode::Many);
    let dir = TestDir::new("snmp-hostile-many");
    let sensors = format!(
        "[[entity.sensors]]\nid = 1\ninterval = 10\ndetails = {{ oids = [{{ oid = \"{}\", fetch_method = \"walk\" }}, {{ oid = \"1.3.6.1.2.1.1.3.0\", fetch_method = \"get\" }}], expression = \"$1\", output_path = \"t\" }}\n",
        column(1)
    );
    let mut bot = standalone::start(&config(&dir, &agent, &sensors, 8), 120, &[]);
    bot.wait_ready(Duration::from_secs(30));
    wait_runs(&mut bot, 1.0);
    assert!(agent.answered() > 0);
    let page = get(bot.admin(), "/").unwrap();
    let api = get(bot.admin(), "/api/jobs").unwrap();
    let log = bot.log();
    bot.stop();
    let longest = log.iter().map(String::len).max().unwrap_or(0);
    assert!(
        longest <= 1024,
        "a log line of {longest} bytes:\n{}",
        log.iter().find(|l| l.len() == longest).unwrap()
    );
    assert!(
        page.len() <= 64 * 1024,
        "a status page of {} bytes",
        page.len()
    );
    assert!(api.len() <= 64 * 1024, "/api/jobs of {} bytes", api.len());
    assert!(
        log.iter()
            .any(|l| l.contains("does not fit the request") || l.contains("failed")),
        "the failure is said:\n{}",
        log.join("\n")
    );
}

#[test]
fn an_agent_cannot_forge_a_log_line_or_reach_the_terminal() {
    let agent = Hostile::start(Mode::Inject);
    let dir = TestDir::new("snmp-hostile-inject");
    // The injected text as a value (not a number), and in a path.
    let sensors = format!(
        "[[entity.sensors]]\nid = 1\ninterval = 10\ndetails = {{ oids = [{{ oid = \"{}\", fetch_method = \"walk\" }}], expression = \"$1\", output_path = \"v\" }}\n\
         [[entity.sensors]]\nid = 2\ninterval = 10\ndetails = {{ oids = [{{ oid = \"{}\", fetch_method = \"walk\" }}, {{ oid = \"1.3.6.1.2.1.1.3.0\", fetch_method = \"get\" }}], expression = \"$2\", output_path = \"p.{{$1}}\" }}\n",
        column(1),
        column(2)
    );
    let mut bot = standalone::start(&config(&dir, &agent, &sensors, 8), 120, &[]);
    bot.wait_ready(Duration::from_secs(30));
    let metrics = wait_runs(&mut bot, 1.0);
    std::thread::sleep(Duration::from_millis(500));
    let log = bot.log();
    let page = get(bot.admin(), "/").unwrap();
    bot.stop();
    let forged = INJECTED.lines().nth(1).unwrap();
    for line in &log {
        assert!(!line.starts_with(forged), "a forged line: {line}");
        assert!(!line.contains('\u{1b}'), "a raw escape: {line:?}");
        assert!(!line.contains('\0'), "a NUL: {line:?}");
    }
    assert!(!page.contains('\u{1b}') && !page.contains("FORGED LINE \u{1b}"));
    assert!(!metrics.contains('\u{1b}'), "an escape on /metrics");
    // The rows were seen, and said: not numbers.
    assert!(
        log.iter()
            .any(|l| l.contains("sensor_id=1") && l.contains("fewer values")),
        "{}",
        log.join("\n")
    );
}

/// 16 endless columns: the firing stops at its row budget, naming it, and
/// the bot's peak memory stays within what the budget allows.
#[test]
fn sixteen_endless_columns_stop_at_the_firing_budget() {
    let agent = Hostile::start(Mode::Endless);
    let dir = TestDir::new("snmp-hostile-endless");
    let oids: Vec<String> = (1..=16)
        .map(|c| format!("{{ oid = \"{}\", fetch_method = \"walk\" }}", column(c)))
        .collect();
    let sensors = format!(
        "[[entity.sensors]]\nid = 1\ninterval = 60\ndetails = {{ oids = [{}], expression = \"$1\", output_path = \"e.{{$index}}\" }}\n",
        oids.join(", ")
    );
    let mut bot = standalone::start(&config(&dir, &agent, &sensors, 50), 120, &[]);
    bot.wait_ready(Duration::from_secs(30));
    let metrics = wait_runs(&mut bot, 1.0);
    let status = std::fs::read_to_string(format!("/proc/{}/status", bot.pid())).unwrap();
    let hwm_kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    let log = bot.log();
    bot.stop();
    let said = log.join("\n");
    assert!(
        said.contains("the walks of this firing hold more than 200000 rows together"),
        "{said}"
    );
    assert!(
        sample(
            &metrics,
            "snmp_device_errors_total{entity=\"1\",cause=\"firing_rows\"}"
        ) >= Some(1.0),
        "{metrics}"
    );
    // 200,000 rows at about 180 bytes, and the bot itself: under 150 MB
    // (16 columns to their walk limit of 100,000 rows each took 294 MB).
    eprintln!("VmHWM {:.1} MB", hwm_kb / 1024.0);
    assert!(hwm_kb / 1024.0 < 150.0, "VmHWM {:.1} MB", hwm_kb / 1024.0);
}

fn walk(oid: &str) -> Json {
    json!({"oid": oid, "fetch_method": "walk"})
}

fn get_oid(oid: &str) -> Json {
    json!({"oid": oid, "fetch_method": "get"})
}

fn sensor(id: u64, oids: Vec<Json>, expression: &str, path: &str) -> SensorConfig {
    SensorConfig {
        sensor_id: id,
        interval: Some(10),
        details: json!({"oids": oids, "expression": expression, "output_path": path}).into(),
        origin: None,
    }
}

fn job(
    c: &SnmpCollector,
    agent: &Hostile,
    entity_id: u64,
    sensors: Vec<SensorConfig>,
) -> JobSpec<SnmpJob> {
    let entity = EntityConfig {
        account_id: 1,
        entity_id,
        name: "hostile".into(),
        entity_type: "device".into(),
        details: json!({"ipv4": agent.ipv4()}),
        credential_id: Some(9),
        credential_details: json!({"version": "snmpv2c", "snmpv12_community": "public", "timeout": 1, "retries": 0, "budget": 5}).into(),
        sensors,
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

/// Answers with the request-id + 1: the GET and the walk of one firing go
/// out at once with consecutive ids, so each answer carries the other's id.
/// Neither takes the other's answer: no value comes from the wrong request.
#[tokio::test]
async fn an_answer_with_another_requests_id_is_not_taken() {
    let agent = Hostile::start(Mode::WrongId);
    let c = SnmpCollector::default();
    let job = job(
        &c,
        &agent,
        43,
        vec![
            sensor(1, vec![get_oid("1.3.6.1.2.1.1.3.0")], "$1", "uptime"),
            sensor(2, vec![walk(&column(1))], "$1", "col.{$index}"),
        ],
    );
    for _ in 0..3 {
        let result = run(&c, &job).await;
        // Each request got the other's answer, or none: the firing fails,
        // rather than taking an answer for an empty table (it did: `Ok`
        // with no value, before the walk's empty answer was checked).
        let error = result.as_ref().expect_err("no request got its own answer");
        assert!(
            error.contains("does not follow")
                || error.contains("does not fit")
                || error.contains("no answer"),
            "{error}"
        );
        if let Ok(values) = &result {
            // Whatever came, it is what was asked: the uptime is 4200
            // ticks, and a row of column 1 is its row number.
            for (path, value) in values {
                match path.as_str() {
                    "entity.43.snmp.uptime" => assert_eq!(*value, 4200.0),
                    p if p.starts_with("entity.43.snmp.col.") => {
                        let row: f64 = p.rsplit('.').next().unwrap().parse().unwrap();
                        assert_eq!(*value, row, "{p}");
                    }
                    other => panic!("a value from nowhere: {other} = {value}"),
                }
            }
        }
        assert!(agent.answered() > 0);
    }
}

/// A sensor's walks gave rows, then the agent answers endOfMibView,
/// noSuchInstance in the first column, or the next subtree at once: said
/// once, counted at each firing, and its return said.
#[tokio::test]
async fn rows_that_vanish_are_said_once_and_counted() {
    let logs = grafolean_collector::testing::LogCapture::global();
    for (round, mode) in [Mode::EndOfMib, Mode::NoSuchFirst, Mode::OutOfSubtree]
        .into_iter()
        .enumerate()
    {
        let agent = Hostile::start(Mode::Good);
        let c = SnmpCollector::default();
        let job = job(
            &c,
            &agent,
            42,
            vec![sensor(1, vec![walk(&column(1))], "$1", "col.{$index}")],
        );
        let v = run(&c, &job).await.unwrap();
        assert_eq!(v.len(), 3, "{v:?}");
        let port = agent.ipv4();
        let said = |needle: &str| {
            logs.text()
                .lines()
                .filter(|l| l.contains(needle) && l.contains("entity_id=42"))
                .count()
        };
        let before = said("fewer values than it has rows, or none");
        agent.set_mode(mode);
        let mut errors = Vec::new();
        for _ in 0..3 {
            match run(&c, &job).await {
                Ok(v) => assert!(v.is_empty(), "{mode:?}: {v:?}"),
                Err(e) => errors.push(e),
            }
        }
        let m = c.metrics();
        if errors.is_empty() {
            // No row, or rows with no value: said once, counted at each
            // firing (as a sensor error, or as skipped rows).
            assert_eq!(
                said("fewer values than it has rows, or none") - before,
                1,
                "{mode:?} (round {round}, agent {port}):\n{}",
                logs.text()
            );
            assert!(
                m.sensor_errors(42) == 3 || m.rows_skipped(42) >= 3,
                "{mode:?}: {} sensor errors, {} rows skipped",
                m.sensor_errors(42),
                m.rows_skipped(42)
            );
        } else {
            // A walk that found nothing where the agent has rows fails,
            // naming it, at each firing (the scheduler logs it with backoff).
            assert_eq!(errors.len(), 3, "{mode:?}: {errors:?}");
            assert!(errors[0].contains("inside it"), "{mode:?}: {}", errors[0]);
            assert_eq!(m.errors(42, "mismatch"), 3, "{mode:?}");
        }
        agent.set_mode(Mode::Good);
        let again = said("rows give values again");
        assert_eq!(run(&c, &job).await.unwrap().len(), 3);
        if errors.is_empty() {
            assert_eq!(said("rows give values again") - again, 1, "{mode:?}");
        }
    }
}

/// An agent in `mode`, a collector, and entity 44's job of one GET of the
/// uptime.
fn uptime_job(mode: Mode) -> (Hostile, SnmpCollector, JobSpec<SnmpJob>) {
    let agent = Hostile::start(mode);
    let c = SnmpCollector::default();
    let job = job(
        &c,
        &agent,
        44,
        vec![sensor(
            1,
            vec![get_oid("1.3.6.1.2.1.1.3.0")],
            "$1",
            "uptime",
        )],
    );
    (agent, c, job)
}

/// Answers from another port, and requests sent back as answers, are not
/// used: counted for the entity (`snmp_device_answers_dropped_total`) and
/// named in the firing's error, which otherwise reads as a device that is
/// down. The same agent answering properly is polled again at once.
#[tokio::test]
async fn answers_that_cannot_be_used_are_counted_and_named() {
    for (mode, reason, words) in [
        (
            Mode::OtherPort,
            "other_source",
            "answers from another address or port, dropped",
        ),
        (Mode::Echo, "unusable", "answers that could not be used"),
    ] {
        let (agent, c, job) = uptime_job(mode);
        let error = run(&c, &job).await.unwrap_err();
        assert!(error.contains(words), "{mode:?}: {error}");
        assert!(agent.answered() >= 1, "{mode:?}");
        assert_eq!(
            c.metrics().dropped(44, reason),
            agent.answered(),
            "{mode:?}: every answer counted"
        );
        agent.set_mode(Mode::Good);
        let values = run(&c, &job).await.unwrap();
        assert_eq!(
            values.get("entity.44.snmp.uptime"),
            Some(&4200.0),
            "{mode:?}"
        );
    }
    // An answer cut short has no request-id to read: it reaches no request,
    // and is counted for the whole socket.
    let (agent, c, job) = uptime_job(Mode::Truncated);
    let error = run(&c, &job).await.unwrap_err();
    assert!(error.contains("no answer to any of 1 requests"), "{error}");
    assert_eq!(c.metrics().socket_dropped("malformed"), agent.answered());
}

/// An endless column of 1,000-byte strings stops at the firing's byte
/// budget (32 MB) long before its row budgets, naming it, and is counted.
#[tokio::test]
async fn an_endless_column_of_long_strings_stops_at_the_byte_budget() {
    let agent = Hostile::start(Mode::BigValues);
    let c = SnmpCollector::default();
    let job = job(
        &c,
        &agent,
        45,
        vec![sensor(1, vec![walk(&column(1))], "1", "big.{$index}")],
    );
    let error = run(&c, &job).await.unwrap_err();
    assert!(
        error.contains("the walks of this firing hold more than 32 MB together"),
        "{error}"
    );
    assert_eq!(c.metrics().errors(45, "firing_bytes"), 1);
    // About 32 MB of 1,000-byte rows (and their OIDs): some 30,000 rows in
    // answers of 50, far below the 100,000 rows of one walk's limit.
    let requests = agent.answered();
    assert!(
        (32 << 20) / ((BIG_VALUE as u64 + 200) * 50) <= requests && requests < 1_000,
        "{requests} answers"
    );
}
