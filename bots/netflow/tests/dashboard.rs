//! Every query of the NetFlow bot's dashboard (`monitoring/dashboards`)
//! returns data in a real Prometheus scraping the running bot: the bot on
//! the fake Grafolean with one exporter's entity, softflowd exporting a pcap
//! to it, and Prometheus scraping every second. The bot's jobs run at each
//! minute's end, so this test takes a minute or two.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::Parser;
use common::{installed, softflowd, traffic, write_pcap};
use grafolean_collector::Settings;
use grafolean_collector::testing::process::{TestDir, free_udp_port};
use grafolean_collector::testing::prometheus::{Prometheus, dashboard_queries};
use grafolean_collector::testing::{
    FakeAccount, FakeCredential, FakeEntity, FakeGrafolean, FakeSensor, FakeSensorRef,
    ProtocolConfig, RunningBot,
};
use grafolean_netflow_bot::NetflowSettings;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_returns_data() {
    if !installed(&["softflowd"]) {
        return;
    }
    let queries = dashboard_queries(include_str!(
        "../../../monitoring/dashboards/grafolean-netflow-bot.json"
    ));
    assert!(queries.len() >= 20, "{queries:?}");

    let fake = FakeGrafolean::start().await;
    let account = fake.put_account(FakeAccount::new("netflow dashboard"));
    let bot = fake.add_account_bot(account, "netflow");
    let credential = fake.put_credential(FakeCredential::new(account, "netflow", json!({})));
    let sensor = fake.put_sensor(FakeSensor::new(account, "netflow", None));
    fake.put_entity(
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
    let addr = SocketAddr::from(([127, 0, 0, 1], free_udp_port()));
    let settings =
        Settings::try_parse_from(["grafolean-netflow-bot", "--backend-url", &fake.url()])
            .unwrap()
            .with_bot_token(bot.token.clone());
    let netflow = NetflowSettings {
        netflow_listen: Some(addr),
        ..NetflowSettings::default()
    };
    let running = RunningBot::start(grafolean_netflow_bot::bot(netflow), settings);
    common::wait_bound(addr).await;
    let prometheus = Prometheus::start(running.url().trim_start_matches("http://"));

    let dir = TestDir::new("netflow-dashboard");
    let pcap = dir.join("flows.pcap");
    write_pcap(&pcap, &traffic());
    // Flows now, and again until the first minute's jobs have run (and sent
    // their values), so that every rate has two samples to work on.
    let deadline = Instant::now() + Duration::from_secs(150);
    loop {
        softflowd(&dir, &pcap, 9, &[addr], &[]);
        let ran = running
            .metric("grafolean_bot_runs_total{outcome=\"ok\"}")
            .await;
        let sent = running.metric("grafolean_bot_values_sent_total").await;
        if ran >= 1.0 && sent >= 1.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no job ran and sent within 150 s (runs {ran}, values sent {sent})"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    softflowd(&dir, &pcap, 9, &[addr], &[]);
    for query in &queries {
        prometheus.wait_for_data(query).await;
    }
    running.stop().await.unwrap();
}
