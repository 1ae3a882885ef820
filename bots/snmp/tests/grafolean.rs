//! The whole SNMP bot against the fake Grafolean and a real snmpd: configs
//! from the API, values POSTed back on the Python bot's paths, and the
//! interfaces job's entity writes, with and without the permission for them.

mod common;

use std::time::Duration;

use clap::Parser;
use common::Snmpd;
use grafolean_collector::Settings;
use grafolean_collector::api::BotToken;
use grafolean_collector::api::Client;
use grafolean_collector::testing::{
    FakeAccount, FakeCredential, FakeEntity, FakeGrafolean, FakeSensor, FakeSensorRef, LogCapture,
    ProtocolConfig, RunningBot,
};
use grafolean_snmp_bot::SnmpCollector;
use serde_json::json;

struct Setup {
    fake: FakeGrafolean,
    account: u64,
    device: u64,
    bot: RunningBot,
}

/// An account with an account bot for `snmp`, one device on `agent` with
/// Grafolean's "Traffic IN" sensor every second, and the bot running.
async fn setup(agent: &Snmpd, grant_writes: bool, recheck: Duration) -> Setup {
    setup_at(&[agent.ipv4()], grant_writes, recheck).await.0
}

/// As [`setup`], with one device per `details.ipv4` in `addresses` (the
/// first is [`Setup::device`]); returns them all too.
async fn setup_at(
    addresses: &[String],
    grant_writes: bool,
    recheck: Duration,
) -> (Setup, Vec<u64>) {
    let fake = FakeGrafolean::start().await;
    let account = fake.put_account(FakeAccount::new("snmp test"));
    let bot = fake.add_account_bot(account, "snmp");
    if grant_writes {
        fake.grant(
            bot.id,
            Some(&format!("accounts/{account}/entities")),
            Some(&["POST", "PUT", "DELETE"]),
        );
    }
    let credential = fake.put_credential(FakeCredential::new(
        account,
        "snmp",
        json!({"version": "snmpv2c", "snmpv12_community": "public"}),
    ));
    let mut sensor = FakeSensor::new(account, "snmp", Some(60));
    sensor.details = json!({
        "oids": [{"oid": "1.3.6.1.2.1.2.2.1.2", "fetch_method": "walk"},
                 {"oid": "1.3.6.1.2.1.2.2.1.10", "fetch_method": "walk"}],
        "expression": "$2", "output_path": "if.in-octets.{$index}.{$1}"
    });
    let sensor = fake.put_sensor(sensor);
    let devices: Vec<u64> = addresses
        .iter()
        .map(|address| {
            fake.put_entity(FakeEntity::device(account, "agent", address).with_protocol(
                "snmp",
                ProtocolConfig {
                    credential,
                    sensors: vec![FakeSensorRef {
                        sensor,
                        interval: Some(1),
                    }],
                    bot: Some(bot.id),
                },
            ))
        })
        .collect();
    let settings = Settings::try_parse_from(["grafolean-snmp-bot", "--backend-url", &fake.url()])
        .unwrap()
        .with_bot_token(bot.token.clone());
    let api = Client::builder(fake.url(), BotToken::new(&bot.token).unwrap())
        .build()
        .unwrap();
    let collector = SnmpCollector::new(Some(api))
        .with_interfaces_interval(1)
        .with_forbidden_recheck(recheck);
    let bot = RunningBot::start(grafolean_snmp_bot::bot(collector), settings);
    let setup = Setup {
        fake,
        account,
        device: devices[0],
        bot,
    };
    (setup, devices)
}

/// The interface entities under `device`: (snmp_index, name, speed_bps).
fn interfaces(fake: &FakeGrafolean, account: u64, device: u64) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for e in fake.entities_of(account) {
        if e.parent == Some(device) && e.entity_type == "interface" {
            out.push((
                e.details["snmp_index"]
                    .as_str()
                    .expect("snmp_index is a string")
                    .to_string(),
                e.name.clone(),
                e.details["speed_bps"]
                    .as_str()
                    .expect("speed_bps is a string")
                    .to_string(),
            ));
        }
    }
    out.sort();
    out
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..100 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_and_interface_entities() {
    let Some(agent) = Snmpd::start(false) else {
        return;
    };
    let s = setup(&agent, true, Duration::from_secs(3600)).await;
    let lo = format!("entity.{}.snmp.if.in-octets.1.lo", s.device);
    wait_for("the lo rate", || {
        s.fake.values(s.account).iter().any(|v| v.path == lo)
    })
    .await;
    for v in s.fake.values(s.account) {
        assert!(
            v.path
                .starts_with(&format!("entity.{}.snmp.if.in-octets.", s.device)),
            "{v:?}"
        );
        assert!(v.v >= 0.0);
    }
    wait_for("interface entities", || {
        !interfaces(&s.fake, s.account, s.device).is_empty()
    })
    .await;
    let found = interfaces(&s.fake, s.account, s.device);
    assert_eq!(found[0].0, "1");
    assert_eq!(found[0].1, "lo");
    assert!(found.len() >= 2, "{found:?}");

    // A renamed interface is put back, a stray one deleted.
    let lo_id = s
        .fake
        .entities_of(s.account)
        .into_iter()
        .find(|e| e.parent == Some(s.device) && e.name == "lo")
        .unwrap()
        .id;
    s.fake.update_entity(lo_id, |e| e.name = "renamed".into());
    let mut stray = FakeEntity::device(s.account, "gone", "192.0.2.9");
    stray.entity_type = "interface".into();
    stray.parent = Some(s.device);
    stray.details = json!({"snmp_index": "999", "speed_bps": "0"});
    let stray = s.fake.put_entity(stray);
    wait_for("the repair", || {
        s.fake.entity(stray).is_none() && s.fake.entity(lo_id).is_some_and(|e| e.name == "lo")
    })
    .await;
    assert_eq!(interfaces(&s.fake, s.account, s.device), found);
    s.bot.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_entity_writes_do_not_stop_values() {
    let Some(agent) = Snmpd::start(false) else {
        return;
    };
    let s = setup(&agent, false, Duration::from_secs(2)).await;
    let lo = format!("entity.{}.snmp.if.in-octets.1.lo", s.device);
    wait_for("the lo rate", || {
        s.fake.values(s.account).iter().any(|v| v.path == lo)
    })
    .await;
    let posts = || {
        s.fake
            .requests()
            .iter()
            .filter(|r| r.method == "POST" && r.path.ends_with("/entities/"))
            .map(|r| r.status)
            .collect::<Vec<_>>()
    };
    wait_for("a refused POST", || !posts().is_empty()).await;
    let first = posts();
    assert!(first.iter().all(|s| *s == Some(403)), "{first:?}");
    // The interfaces job fires every second, but asks again only after the
    // 2 s re-check; values keep flowing meanwhile.
    let values_before = s.fake.values(s.account).len();
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let later = posts();
    assert!(
        (2..=3).contains(&later.len()),
        "one refused POST per re-check, not one per firing: {later:?}"
    );
    assert!(s.fake.values(s.account).len() > values_before);
    assert!(interfaces(&s.fake, s.account, s.device).is_empty());
    // Granted later: the next re-check creates them.
    let bot_id = s.fake.entity(s.device).unwrap().protocols["snmp"]
        .bot
        .unwrap();
    s.fake.grant(
        bot_id,
        Some(&format!("accounts/{}/entities", s.account)),
        Some(&["POST", "PUT", "DELETE"]),
    );
    wait_for("interfaces after the grant", || {
        !interfaces(&s.fake, s.account, s.device).is_empty()
    })
    .await;
    s.bot.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_name_is_resolved_and_one_that_does_not_resolve_is_named_once() {
    let Some(agent) = Snmpd::start(false) else {
        return;
    };
    let logs = LogCapture::global();
    let port = agent.ipv4().rsplit_once(':').unwrap().1.to_string();
    // `.invalid` never resolves (RFC 6761).
    let (s, devices) = setup_at(
        &[format!("localhost:{port}"), "agent.invalid".to_string()],
        true,
        Duration::from_secs(3600),
    )
    .await;
    let lo = format!("entity.{}.snmp.if.in-octets.1.lo", s.device);
    wait_for("the lo rate through localhost", || {
        s.fake.values(s.account).iter().any(|v| v.path == lo)
    })
    .await;
    // Firings every second: the other entity's name is said once.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let unresolved = logs.count(&["host name unresolved", "agent.invalid"]);
    assert_eq!(unresolved, 1, "{}", logs.text());
    let prefix = format!("entity.{}.", devices[1]);
    assert!(
        !s.fake
            .values(s.account)
            .iter()
            .any(|v| v.path.starts_with(&prefix))
    );
    s.bot.stop().await.unwrap();
}

/// Every query of the SNMP bot's dashboard in `monitoring/dashboards`
/// returns data from a real Prometheus scraping the running bot (polling
/// snmpd, sending to the fake Grafolean).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_returns_data() {
    use grafolean_collector::testing::prometheus::{Prometheus, dashboard_queries, value_of};

    let Some(agent) = Snmpd::start(false) else {
        return;
    };
    let queries = dashboard_queries(include_str!(
        "../../../monitoring/dashboards/grafolean-snmp-bot.json"
    ));
    assert!(queries.len() >= 15, "{queries:?}");
    let s = setup(&agent, true, Duration::from_secs(60)).await;
    let prometheus = Prometheus::start(s.bot.url().trim_start_matches("http://"));
    prometheus
        .wait_for(r#"grafolean_bot_runs_total{outcome="ok"}"#, |r| {
            !r.is_empty() && r.iter().map(value_of).sum::<f64>() >= 5.0
        })
        .await;
    for query in &queries {
        prometheus.wait_for_data(query).await;
    }
    s.bot.stop().await.unwrap();
}
