//! The bot's 1-minute windows against nfdump's, on the same real NetFlow:
//! softflowd exports one pcap of known flows as v5, v9 and IPFIX to the bot
//! (through the fake Grafolean) and to nfcapd at once; nfdump's statistics
//! for that minute are the reference, and every total and top-10 list the
//! bot sends must be identical, with its `t` the minute's end.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;
use common::{Nfcapd, installed, nfdump_bytes, nfdump_stat, softflowd, traffic, write_pcap};
use grafolean_collector::Settings;
use grafolean_collector::testing::process::{TestDir, free_udp_port};
use grafolean_collector::testing::{
    FakeAccount, FakeCredential, FakeEntity, FakeGrafolean, FakeSensor, FakeSensorRef,
    ProtocolConfig, RunningBot,
};
use grafolean_netflow_bot::NetflowSettings;
use serde_json::json;

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Sleeps until `at` seconds into a minute that began after the bot
/// started, so that every datagram falls in one full minute.
async fn next_minute(started: u64, at: u64) -> u64 {
    let mut minute = started / 60 + 1;
    loop {
        let now = now_secs();
        if now / 60 == minute && now % 60 >= at && now % 60 < 45 {
            return minute;
        }
        if now / 60 > minute || (now / 60 == minute && now % 60 >= 45) {
            minute = now / 60 + 1;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The values the bot sent for the minute ending at `end`, by path.
async fn values_at(fake: &FakeGrafolean, account: u64, end: u64) -> BTreeMap<String, f64> {
    for _ in 0..400 {
        let values: BTreeMap<String, f64> = fake
            .values(account)
            .into_iter()
            .filter(|v| v.t == end as f64)
            .map(|v| (v.path, v.v))
            .collect();
        if values.keys().any(|p| p.starts_with("netflow.1min.egress")) {
            return values;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("no 1min values with t = {end}: {:#?}", fake.values(account));
}

/// The bot's top list `kind` of entity `entity` (1min, ingress), largest
/// first, keys unescaped.
fn bot_top(values: &BTreeMap<String, f64>, entity: u64, kind: &str) -> Vec<(String, u64)> {
    let prefix = format!("netflow.1min.ingress.entity.{entity}.{kind}.");
    let mut top: Vec<(String, u64)> = values
        .iter()
        .filter_map(|(p, v)| {
            let key = p.strip_prefix(&prefix)?;
            let key = key
                .replace('.', " ")
                .replace("%2e", ".")
                .replace("%3a", ":");
            Some((key, *v as u64))
        })
        .collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    top
}

async fn compare(sampling: Option<u32>) {
    if !installed(&["softflowd", "nfcapd", "nfdump"]) {
        return;
    }
    let dir = TestDir::new(&format!("netflow-nfdump-{}", sampling.unwrap_or(1)));
    let pcap = dir.join("flows.pcap");
    write_pcap(&pcap, &traffic());

    let fake = FakeGrafolean::start().await;
    let account = fake.put_account(FakeAccount::new("netflow test"));
    let bot = fake.add_account_bot(account, "netflow");
    let credential = fake.put_credential(FakeCredential::new(account, "netflow", json!({})));
    let sensor = fake.put_sensor(FakeSensor::new(account, "netflow", None));
    let entity = fake.put_entity(
        FakeEntity::device(account, "exporter", "127.0.0.1").with_protocol(
            "netflow",
            ProtocolConfig {
                credential,
                sensors: vec![FakeSensorRef {
                    sensor,
                    interval: None,
                }],
                bot: Some(bot.id),
            },
        ),
    );
    let port = free_udp_port();
    let bot_addr = SocketAddr::from(([127, 0, 0, 1], port));
    let settings =
        Settings::try_parse_from(["grafolean-netflow-bot", "--backend-url", &fake.url()])
            .unwrap()
            .with_bot_token(bot.token.clone());
    let netflow = NetflowSettings {
        netflow_listen: Some(bot_addr),
        ..NetflowSettings::default()
    };
    let started = now_secs();
    let running = RunningBot::start(grafolean_netflow_bot::bot(netflow), settings);
    common::wait_bound(bot_addr).await;

    let nfcapd_args: Vec<String> = sampling
        .map(|n| vec!["-s".into(), n.to_string()])
        .unwrap_or_default();
    let nfcapd_args: Vec<&str> = nfcapd_args.iter().map(String::as_str).collect();
    let nfcapd = Nfcapd::start(&dir.join("nfcapd"), &nfcapd_args);
    let minute = next_minute(started, 2).await;
    let softflowd_args: Vec<String> = sampling
        .map(|n| vec!["-s".into(), n.to_string()])
        .unwrap_or_default();
    let softflowd_args: Vec<&str> = softflowd_args.iter().map(String::as_str).collect();
    for version in [5, 9, 10] {
        softflowd(
            &dir,
            &pcap,
            version,
            &[bot_addr, nfcapd.addr],
            &softflowd_args,
        );
    }
    assert_eq!(
        now_secs() / 60,
        minute,
        "the export took past the minute's end"
    );
    let end = (minute + 1) * 60;
    let values = values_at(&fake, account, end).await;
    // How soon after the minute's end its values were sent (BENCHMARKS.md
    // quotes this line; the 2 s target is a benchmark's, so the assertion
    // here only catches a stuck closer).
    let sent = fake
        .requests()
        .iter()
        .filter(|r| r.path.contains("/values") && r.at >= UNIX_EPOCH + Duration::from_secs(end))
        .map(|r| r.at)
        .min()
        .unwrap();
    let latency = sent
        .duration_since(UNIX_EPOCH + Duration::from_secs(end))
        .unwrap();
    eprintln!(
        "1min values sent {} ms after the window's end",
        latency.as_millis()
    );
    assert!(latency < Duration::from_secs(10), "{latency:?}");
    // nfcapd's file of that minute (it also writes one for the minute it
    // was stopped in).
    let stamp = std::process::Command::new("date")
        .args(["-u", "-d", &format!("@{}", minute * 60), "+%Y%m%d%H%M"])
        .output()
        .unwrap();
    let name = format!("nfcapd.{}", String::from_utf8_lossy(&stamp.stdout).trim());
    let files: Vec<PathBuf> = nfcapd
        .stop()
        .into_iter()
        .filter(|f| {
            f.file_name()
                .is_some_and(|n| n.to_str() == Some(name.as_str()))
        })
        .collect();
    assert_eq!(files.len(), 1, "nfcapd's file {name}");
    let file = &files[0];
    let filter = "router ip 127.0.0.1 and in if 0";

    // Totals.
    let total: u64 = nfdump_bytes(&files, "%sa", filter).values().sum();
    assert!(total > 0);
    let get = |p: &str| {
        values
            .get(p)
            .copied()
            .unwrap_or_else(|| panic!("no {p} in {values:#?}"))
    };
    assert_eq!(
        get(&format!("netflow.1min.ingress.entity.{entity}")) as u64,
        total
    );
    assert_eq!(
        get(&format!("netflow.1min.ingress.entity.{entity}.if.0")) as u64,
        total
    );
    assert_eq!(get("netflow.1min.ingress") as u64, total);
    assert_eq!(get(&format!("netflow.1min.egress.entity.{entity}")), 0.0);
    assert_eq!(get("netflow.1min.egress"), 0.0);

    // Top lists, entity-wide and on interface 0.
    for (kind, stat) in [
        ("topip", "srcip"),
        ("topdstports", "dstport"),
        ("topprotocol", "proto"),
    ] {
        let mut reference = nfdump_stat(file, stat, filter);
        if kind == "topprotocol" {
            for (key, _) in &mut reference {
                let mut label = String::new();
                grafolean_netflow_bot::labels::push_protocol(&mut label, key.parse().unwrap());
                *key = label;
            }
        }
        assert_eq!(reference.len().min(10), reference.len());
        assert_eq!(bot_top(&values, entity, kind), reference, "{kind}");
        if kind != "topdstports" {
            let on_if = bot_top(&values, entity, &format!("if.0.{kind}"));
            assert_eq!(on_if, reference, "if.0.{kind}");
        }
    }
    let conns = nfdump_bytes(&files, "%sa %da", filter);
    assert_eq!(
        bot_top(&values, entity, "topconn"),
        common::top(&conns, 10),
        "topconn"
    );

    // Every value of the minute carries its end as t, and none came for
    // the partial minute the bot started in.
    assert!(
        fake.values(account)
            .iter()
            .all(|v| v.t != ((started / 60 + 1) * 60) as f64 || started.is_multiple_of(60)),
        "values for the partial first minute"
    );
    running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_v9_and_ipfix_windows_equal_nfdumps() {
    compare(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampled_flows_are_scaled_as_nfdump_scales_them() {
    compare(Some(5)).await;
}
