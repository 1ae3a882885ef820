//! One credential out of range must cost only its own entity (issue 12,
//! point 1): a standalone run with a good entity and one whose `n_packets`
//! is 1e9, which once made the pinger reserve 48 GB and abort the process.
//! Needs root or CAP_NET_RAW.

mod common;

use std::time::Duration;

use common::standalone::Standalone;
use grafolean_collector::testing::process::{Toucher, sample};

const CONFIG: &str = r#"
[[entity]]
id = 1
name = "good"
details = { ipv4 = "127.0.0.1" }
credential = { n_packets = 1, timeout = 0.5, sleep_packets = 0 }
sensors = [{ interval = 1 }]

[[entity]]
id = 2
name = "one billion packets"
details = { ipv4 = "127.0.0.2" }
credential = { n_packets = 1e9, timeout = 0.5, sleep_packets = 0 }
sensors = [{ interval = 1 }]
"#;

fn runs_ok(text: &str) -> f64 {
    sample(text, r#"grafolean_bot_runs_total{outcome="ok"}"#).unwrap_or(0.0)
}

#[test]
fn an_out_of_range_n_packets_skips_only_its_entity() {
    // A refresh every second: the problem is still warned about once.
    let mut bot = Standalone::start_refreshing("bounds", CONFIG, 1);
    let touching = Toucher::start(bot.config_path());
    let text = bot.wait_for_metrics(Duration::from_secs(20), Duration::from_millis(100), |t| {
        runs_ok(t) >= 2.0
    });
    let before = runs_ok(&text);
    // It keeps reporting: more runs, and the good entity answered.
    let text = bot.wait_for_metrics(Duration::from_secs(10), Duration::from_millis(100), |t| {
        runs_ok(t) >= before + 2.0
    });
    let good: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("ping_success_ratio{") && l.contains(r#"entity="1""#))
        .collect();
    assert_eq!(good.len(), 1, "{text}");
    assert_eq!(
        sample(good[0], good[0].rsplit_once(' ').unwrap().0),
        Some(1.0)
    );
    // The bad one is not scheduled, and has no values.
    assert_eq!(
        sample(&text, "grafolean_bot_jobs_scheduled"),
        Some(1.0),
        "{text}"
    );
    assert!(!text.contains(r#"entity="2""#), "{text}");
    assert!(bot.is_running());
    // It is named, with the field and the accepted range, once, over several
    // refreshes.
    assert!(
        bot.log()
            .iter()
            .filter(|l| l.contains("refreshed job configs"))
            .count()
            >= 3,
        "{:#?}",
        bot.log()
    );
    let log = bot.log();
    let named: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("credential.n_packets"))
        .collect();
    assert_eq!(named.len(), 1, "{log:#?}");
    assert!(named[0].contains("entity_id=2"), "{named:?}");
    assert!(named[0].contains("from 1 to 100"), "{named:?}");
    // Standalone, it names the file and the entity's line, not Grafolean.
    assert!(named[0].contains(".toml line 9"), "{named:?}");
    assert!(!named[0].contains("Grafolean"), "{named:?}");
    // Kept in a per-reason counter, counted at every refresh.
    let counted = sample(
        &bot.metrics(),
        r#"grafolean_bot_entity_errors_total{cause="invalid_config"}"#,
    )
    .unwrap_or(0.0);
    assert!(counted >= 3.0, "{}", bot.metrics());
    // Once the file stops changing, the refreshes do nothing.
    drop(touching);
    std::thread::sleep(Duration::from_millis(1500));
    let refreshes = || {
        bot.log()
            .iter()
            .filter(|l| l.contains("refreshed job configs"))
            .count()
    };
    let before = refreshes();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(refreshes(), before, "{:#?}", bot.log());
    assert!(bot.is_running());
    let status = bot.stop();
    assert!(status.success(), "{status:?}");
}
