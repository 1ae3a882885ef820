//! Per-entity config problems are warned about once per change, over many
//! config refreshes, as in the ping bot: a standalone run of the binary that
//! re-reads its file every second (its modification time bumped, since an
//! unchanged file makes no refresh), with one good entity, one with an
//! out-of-range credential field and one with a bad sensor. Needs no snmpd.

#[path = "common/standalone.rs"]
mod standalone;

use std::time::Duration;

use grafolean_collector::testing::process::{BotProcess, TestDir, Toucher, sample};

/// Entity 1 is good, entity 2's `retries` is `retries`, entity 3 has a
/// good sensor and one with a bad expression. Nothing answers on the port.
fn config(retries: u32) -> String {
    let sensor = |id: u32, expression: &str| {
        format!(
            "[[entity.sensors]]\nid = {id}\ninterval = 60\ndetails = {{ oids = [{{ oid = \"1.3.6.1.2.1.1.3.0\", fetch_method = \"get\" }}], expression = \"{expression}\", output_path = \"uptime\" }}\n"
        )
    };
    let entity = |id: u32, credential: &str, sensors: &str| {
        format!(
            "[[entity]]\nid = {id}\nname = \"device {id}\"\ndetails = {{ ipv4 = \"127.0.0.1:9\" }}\ncredential = {credential}\n{sensors}\n"
        )
    };
    let good = r#"{ version = "snmpv2c", snmpv12_community = "public", timeout = 0.2, retries = 0, budget = 1 }"#;
    let bad =
        format!(r#"{{ version = "snmpv2c", snmpv12_community = "public", retries = {retries} }}"#);
    [
        entity(1, good, &sensor(1, "$1")),
        entity(2, &bad, &sensor(1, "$1")),
        entity(3, good, &(sensor(1, "$1") + &sensor(2, "$1 +"))),
    ]
    .concat()
}

fn refreshes(bot: &BotProcess) -> usize {
    bot.count(&["refreshed job configs"])
}

/// Waits for `n` more config refreshes.
fn wait_refreshes(bot: &mut BotProcess, n: usize) {
    let want = refreshes(bot) + n;
    bot.wait_for_log_lines(Duration::from_secs(20), &["refreshed job configs"], want);
}

fn scheduled(bot: &BotProcess) -> Option<f64> {
    sample(&bot.metrics(), "grafolean_bot_jobs_scheduled")
}

#[test]
fn config_problems_are_warned_once_per_change() {
    let dir = TestDir::new("problems");
    let devices = dir.join("devices.toml");
    std::fs::write(&devices, config(99)).unwrap();
    let mut bot = standalone::start(&devices, 1, &[]);
    // Every refresh reads the file again, as every refresh from Grafolean
    // lists the entities again.
    let _touching = Toucher::start(devices.clone());
    wait_refreshes(&mut bot, 3);
    // Entities 1 and 3 are polled (3 with its good sensor only); 2 is not.
    assert_eq!(scheduled(&bot), Some(2.0));
    let retries = |bot: &BotProcess| bot.count(&["WARN", "entity_id=2", "credential.retries"]);
    let expression = |bot: &BotProcess| bot.count(&["WARN", "entity_id=3", "sensor 2 skipped"]);
    assert_eq!(retries(&bot), 1, "{:#?}", bot.log());
    assert_eq!(bot.count(&["WARN", "credential.retries is 99"]), 1);
    assert_eq!(
        bot.count(&["WARN", "entity_id=2", "not polling this entity"]),
        1
    );
    assert_eq!(expression(&bot), 1, "{:#?}", bot.log());
    // The message names the sensor's own line, not its entity's.
    let text = config(99);
    let line = text[..text.find("[[entity.sensors]]\nid = 2").unwrap()]
        .lines()
        .count()
        + 1;
    let fix_in = format!("fix it in {} line {line}", devices.display());
    assert_eq!(
        bot.count(&["WARN", "sensor 2 skipped", &fix_in]),
        1,
        "{fix_in}: {:#?}",
        bot.log()
    );
    assert_eq!(bot.count(&["WARN", "entity_id=1 "]), 0, "{:#?}", bot.log());
    // Kept in a per-reason counter: two entities with a problem, counted at
    // every refresh.
    let counted = |bot: &BotProcess| {
        sample(
            &bot.metrics(),
            r#"grafolean_bot_entity_errors_total{cause="invalid_config"}"#,
        )
        .unwrap_or(0.0)
    };
    assert!(counted(&bot) >= 6.0, "{}", bot.metrics());

    // Another wrong value: said once more, with the new value.
    std::fs::write(&devices, config(98)).unwrap();
    bot.wait_for_log(
        Duration::from_secs(10),
        &["WARN", "credential.retries is 98"],
    );
    wait_refreshes(&mut bot, 2);
    assert_eq!(retries(&bot), 2, "{:#?}", bot.log());
    assert_eq!(expression(&bot), 1, "{:#?}", bot.log());

    // Fixed: said to be gone, once, and the entity is polled.
    std::fs::write(&devices, config(2)).unwrap();
    bot.wait_for_log(
        Duration::from_secs(10),
        &["entity_id=2", "the entity's config problem is gone"],
    );
    wait_refreshes(&mut bot, 2);
    assert_eq!(bot.count(&["entity_id=2", "config problem is gone"]), 1);
    assert_eq!(retries(&bot), 2);
    assert_eq!(expression(&bot), 1);
    assert_eq!(scheduled(&bot), Some(3.0));
    // Entity 3 alone now: one more per refresh (give or take the refresh
    // under way while the two are read).
    let (before, refreshed) = (counted(&bot), refreshes(&bot));
    wait_refreshes(&mut bot, 4);
    let grew = counted(&bot) - before;
    let refreshed = (refreshes(&bot) - refreshed) as f64;
    assert!(
        (grew - refreshed).abs() <= 1.0,
        "grew by {grew} in {refreshed} refreshes"
    );
    assert!(bot.stop().success());
}
