//! The monitoring mixin (`monitoring/`): the rules pass `promtool check
//! rules`, every alert's unit tests (firing and not firing) pass `promtool
//! test rules`, and each bot's dashboard is valid JSON whose every panel has a
//! query. (That every dashboard query returns data from a real Prometheus
//! scraping a running bot is tested beside each bot: the ping bot's in
//! `bots/ping/tests/prometheus.rs`, the SNMP bot's in
//! `bots/snmp/tests/grafolean.rs`; not yet the NetFlow bot's.)

use std::path::Path;
use std::process::Command;

const PROMTOOL: &str = "/usr/bin/promtool";

fn monitoring() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/monitoring"))
}

fn promtool(args: &[&str]) -> String {
    assert!(
        Path::new(PROMTOOL).exists(),
        "{PROMTOOL} is missing: install Debian's prometheus (tests/setup.sh does)"
    );
    let out = Command::new(PROMTOOL)
        .args(args)
        .current_dir(monitoring())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

#[test]
fn the_rules_check_and_every_alert_is_unit_tested() {
    let checked = promtool(&["check", "rules", "alerts.yml"]);
    assert!(checked.contains("SUCCESS"), "{checked}");
    let tested = promtool(&["test", "rules", "tests.yml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");

    // Every alert has a test that it fires and one that it does not.
    let rules = std::fs::read_to_string(monitoring().join("alerts.yml")).unwrap();
    let tests = std::fs::read_to_string(monitoring().join("tests.yml")).unwrap();
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert!(alerts.len() >= 9, "{alerts:?}");
    for alert in alerts {
        let silent = format!("alertname: {alert}, exp_alerts: []");
        let firing = format!("alertname: {alert}\n        exp_alerts:\n          - ");
        assert!(tests.contains(&silent), "{alert} is not tested silent");
        assert!(tests.contains(&firing), "{alert} is not tested firing");
    }
}

#[test]
fn each_bot_has_a_dashboard_whose_panels_all_query() {
    for bot in [
        "grafolean-ping-bot",
        "grafolean-snmp-bot",
        "grafolean-netflow-bot",
    ] {
        let path = monitoring().join(format!("dashboards/{bot}.json"));
        let dashboard: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(dashboard["uid"], bot);
        let panels = dashboard["panels"].as_array().unwrap();
        assert!(panels.len() >= 14, "{bot}: {} panels", panels.len());
        for panel in panels {
            let targets = panel["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{bot}: {panel}");
            for t in targets {
                let expr = t["expr"].as_str().unwrap();
                assert!(expr.contains("job=~\"$job\""), "{bot}: {expr}");
            }
        }
    }
}
