//! The NetFlow bot against the fake Grafolean: entity suggestions for an
//! exporter that matches no device (once; a deleted one stays deleted), a
//! device without `details.ipv4` that stops nothing, and a refusal (403)
//! said once, not retried at every run.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use common::{installed, softflowd, traffic, write_pcap};
use grafolean_collector::Settings;
use grafolean_collector::testing::process::{TestDir, free_udp_port};
use grafolean_collector::testing::{
    FakeAccount, FakeEntity, FakeGrafolean, LogCapture, RunningBot,
};
use grafolean_netflow_bot::NetflowSettings;
use serde_json::json;

const NAME: &str = "127.0.0.1 (NetFlow exporter)";

struct Setup {
    fake: FakeGrafolean,
    account: u64,
    bot: RunningBot,
    dir: TestDir,
    addr: SocketAddr,
}

async fn setup(name: &str, grant: bool) -> Option<Setup> {
    if !installed(&["softflowd"]) {
        return None;
    }
    let fake = FakeGrafolean::start().await;
    let account = fake.put_account(FakeAccount::new(name));
    let bot = fake.add_account_bot(account, "netflow");
    if grant {
        fake.grant(
            bot.id,
            Some(&format!("accounts/{account}/entities")),
            Some(&["POST"]),
        );
    }
    // A device of another exporter, and one without details.ipv4.
    fake.put_entity(FakeEntity::device(account, "router", "192.0.2.1"));
    let mut bare = FakeEntity::device(account, "no address", "");
    bare.details = json!({});
    fake.put_entity(bare);
    let addr = SocketAddr::from(([127, 0, 0, 1], free_udp_port()));
    let settings =
        Settings::try_parse_from(["grafolean-netflow-bot", "--backend-url", &fake.url()])
            .unwrap()
            .with_bot_token(bot.token.clone());
    let netflow = NetflowSettings {
        netflow_listen: Some(addr),
        suggest_interval: 1,
        ..NetflowSettings::default()
    };
    let bot = RunningBot::start(grafolean_netflow_bot::bot(netflow), settings);
    // Datagrams sent before the bot binds its port are lost.
    common::wait_bound(addr).await;
    let dir = TestDir::new(name);
    Some(Setup {
        fake,
        account,
        bot,
        dir,
        addr,
    })
}

fn export(s: &Setup) {
    let pcap = s.dir.join("flows.pcap");
    write_pcap(&pcap, &traffic());
    softflowd(&s.dir, &pcap, 9, &[s.addr], &[]);
}

fn posts(fake: &FakeGrafolean, account: u64) -> usize {
    let path = format!("/api/accounts/{account}/entities");
    fake.requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.trim_end_matches('/') == path)
        .count()
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..300 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_exporter_is_suggested_once_and_a_deleted_suggestion_stays_deleted() {
    let Some(s) = setup("netflow-suggest", true).await else {
        return;
    };
    export(&s);
    eventually("the suggested entity", || {
        s.fake.entities_of(s.account).iter().any(|e| e.name == NAME)
    })
    .await;
    let suggested = s
        .fake
        .entities_of(s.account)
        .into_iter()
        .find(|e| e.name == NAME)
        .unwrap();
    assert_eq!(suggested.entity_type, "device");
    assert_eq!(suggested.details, json!({"ipv4": "127.0.0.1"}));
    assert!(
        suggested.protocols.is_empty(),
        "NetFlow is not enabled on it"
    );
    // The user deletes it; three more runs (and more flows) do not bring it back.
    assert!(s.fake.remove_entity(suggested.id));
    export(&s);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(!s.fake.entities_of(s.account).iter().any(|e| e.name == NAME));
    assert_eq!(posts(&s.fake, s.account), 1);
    s.bot.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_suggestion_is_said_once_and_not_retried_every_run() {
    let logs = LogCapture::global();
    let Some(s) = setup("netflow-suggest-403", false).await else {
        return;
    };
    export(&s);
    eventually("a refused POST", || posts(&s.fake, s.account) == 1).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(posts(&s.fake, s.account), 1, "retried before the recheck");
    let said = logs
        .text()
        .lines()
        .filter(|l| l.contains("refused to create entities") && l.contains(&s.account.to_string()))
        .count();
    assert_eq!(said, 1, "{}", logs.text());
    s.bot.stop().await.unwrap();
}
