//! A healthy bot is quiet at `info`: the binary, standalone, pinging 127.0.0.1
//! and ::1 every 5 s (as its built-in config) at the default log level, says what it started
//! with and then only its periodic summary (shortened here to 20 s with
//! `LOG_SUMMARY_INTERVAL`; 10 minutes by default). Needs root or
//! CAP_NET_RAW, as every ping test.

mod common;

use std::time::Duration;

use common::BIN;
use grafolean_collector::testing::process::{BotCommand, TestDir};

#[test]
fn a_healthy_bot_says_little_at_info() {
    let dir = TestDir::new("ping-quiet");
    let config = dir.join("targets.toml");
    std::fs::write(
        &config,
        "[[entity]]\nname = \"v4\"\ndetails = { ipv4 = \"127.0.0.1\" }\nsensors = [{ interval = 5 }]\n\n\
         [[entity]]\nname = \"v6\"\ndetails = { ipv6 = \"::1\" }\nsensors = [{ interval = 5 }]\n",
    )
    .unwrap();
    let mut command = BotCommand::new(BIN);
    command
        .arg("--config")
        .arg(&config)
        // Re-read every 2 s (a file that did not change is not news).
        .env("JOBS_REFRESH_INTERVAL", "2")
        .env("LOG_SUMMARY_INTERVAL", "20")
        .env("RUST_LOG", "info");
    let mut bot = command.start();
    bot.wait_for_log(Duration::from_secs(10), &["refreshed job configs"]);
    let after_start = bot.log().len();
    std::thread::sleep(Duration::from_secs(61));
    let log = bot.log();
    let since: Vec<&String> = log[after_start..].iter().collect();
    let summaries: Vec<&&String> = since
        .iter()
        .filter(|l| l.contains("pings since the last summary"))
        .collect();
    // Three summaries in 61 s, each with no ping lost, and nothing else.
    assert_eq!(summaries.len(), 3, "{since:#?}");
    for line in &summaries {
        assert!(line.contains(" INFO "), "{line}");
        assert!(line.contains("timed_out=0"), "{line}");
        assert!(line.contains("send_errors=0"), "{line}");
    }
    assert_eq!(since.len(), summaries.len(), "{since:#?}");
    let metrics = bot.metrics();
    let healthy = metrics
        .lines()
        .filter(|l| l.starts_with("ping_success_ratio{") && l.ends_with(" 1.0"))
        .count();
    assert_eq!(healthy, 2, "{metrics}");
}
