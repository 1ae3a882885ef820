//! The README's "write your own bot" example, compiled and run for real:
//! standalone from a TOML file, scraped over HTTP, and then shut down.

#[path = "../examples/tcp_connect.rs"]
#[allow(dead_code)]
mod tcp_connect;

use std::time::Duration;

use clap::Parser;
use grafolean_collector::Bot;
use grafolean_collector::Settings;
use grafolean_collector::testing::RunningBot;

async fn get(url: &str) -> (u16, String) {
    let response = reqwest::get(url).await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_bot_runs_standalone_and_exports_its_values() {
    // The target: a TCP listener on loopback.
    let target = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target_addr = target.local_addr().unwrap();
    tokio::spawn(async move { while target.accept().await.is_ok() {} });

    let dir = std::env::temp_dir().join(format!("gc-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("jobs.toml");
    std::fs::write(
        &config,
        format!("[[entity]]\nid = 7\nname = \"t\"\ndetails = {{ address = \"{target_addr}\" }}\nsensors = [{{ interval = 1 }}]\n"),
    )
    .unwrap();
    let settings =
        Settings::try_parse_from(["tcp-connect", "--config", config.to_str().unwrap()]).unwrap();

    let bot = RunningBot::start(Bot::new("tcp-connect", tcp_connect::TcpConnect), settings);
    let base = bot.url().to_string();

    // Within a few seconds the value shows on /metrics, labelled by target.
    let mut metrics = String::new();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        metrics = get(&format!("{base}/metrics")).await.1;
        if metrics.contains("tcp_connect_seconds") {
            break;
        }
    }
    let line = metrics
        .lines()
        .find(|l| l.contains("tcp_connect_seconds") && !l.starts_with('#'))
        .unwrap_or_else(|| panic!("no value series on /metrics:\n{metrics}"));
    assert!(
        line.contains(&format!("target=\"{target_addr}\"")),
        "{line}"
    );
    assert!(line.contains("entity=\"7\""), "{line}");
    assert!(
        metrics.contains("grafolean_bot_runs_total{outcome=\"ok\"}"),
        "{metrics}"
    );
    assert_eq!(get(&format!("{base}/ready")).await.0, 200);
    let (_, page) = get(&format!("{base}/")).await;
    assert!(
        page.contains("<code>7</code>"),
        "the job row is missing:\n{page}"
    );

    bot.stop().await.unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

/// The README's test of the example against the fake Grafolean backend: an
/// account, a bot of the `tcp` protocol with the grants Grafolean gives one,
/// and an entity whose `address` is a listener on loopback. The values reach
/// the backend, stamped with their tick's time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_bot_sends_its_values_to_grafolean() {
    use grafolean_collector::testing::{
        FakeAccount, FakeCredential, FakeEntity, FakeGrafolean, FakeSensor, FakeSensorRef,
        ProtocolConfig,
    };

    let target = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = target.local_addr().unwrap().to_string();
    tokio::spawn(async move { while target.accept().await.is_ok() {} });

    let fake = FakeGrafolean::start().await;
    let account = fake.put_account(FakeAccount::new("example"));
    let bot_user = fake.add_account_bot(account, "tcp");
    let credential =
        fake.put_credential(FakeCredential::new(account, "tcp", serde_json::json!({})));
    let sensor = fake.put_sensor(FakeSensor::new(account, "tcp", Some(1)));
    let mut entity = FakeEntity::device(account, "web", "127.0.0.1").with_protocol(
        "tcp",
        ProtocolConfig {
            credential,
            sensors: vec![FakeSensorRef {
                sensor,
                interval: None,
            }],
            bot: None,
        },
    );
    entity.details = serde_json::json!({ "address": address });
    let entity = fake.put_entity(entity);

    let settings = Settings::try_parse_from(["tcp-connect", "--backend-url", &fake.url()])
        .unwrap()
        .with_bot_token(&bot_user.token);
    let bot = Bot::new("tcp-connect", tcp_connect::TcpConnect).with_protocol("tcp");
    let bot = RunningBot::start(bot, settings);
    let values = tokio::time::timeout(Duration::from_secs(20), fake.wait_for_values(account, 2))
        .await
        .expect("values reach Grafolean");
    assert!(
        values
            .iter()
            .all(|v| v.path == format!("entity.{entity}.tcp.connect_seconds") && v.v < 1.0),
        "{values:?}"
    );
    bot.stop().await.unwrap();
}
