//! The config fetcher against the fake backend, over real HTTP on loopback.

use std::time::Duration;

use grafolean_collector::api::BotToken;
use grafolean_collector::api::{ApiError, Client};
use grafolean_collector::fetch::{FetchOptions, FetchReport, fetch_job_configs};
use grafolean_collector::testing::{
    ACCOUNT_ID, BOT_ID, BOT_TOKEN, CREDENTIAL_ID, DeviceBatch, ENTITY_ID, FakeGrafolean, Fault,
    SENSOR_ID,
};

fn client(fake: &FakeGrafolean) -> Client {
    Client::builder(fake.url(), BotToken::new(BOT_TOKEN).unwrap())
        .with_timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

#[tokio::test]
async fn fixture_data_set_gives_the_python_result() {
    let fake = FakeGrafolean::with_fixture_data().await;
    let report = fetch_job_configs(&client(&fake), "ping", &FetchOptions::default())
        .await
        .unwrap();
    // Only entity 1127398355 passes the filters (see the fixtures' README table).
    let entities = &report.configs.entities;
    assert_eq!(entities.len(), 1, "{entities:#?}");
    let e = &entities[0];
    assert_eq!((e.account_id, e.entity_id), (ACCOUNT_ID, ENTITY_ID));
    assert_eq!(e.details["ipv4"], "127.0.0.1");
    assert_eq!(e.credential_id, Some(CREDENTIAL_ID));
    assert_eq!(e.credential_details["n_packets"], "2");
    assert_eq!(e.sensors.len(), 1);
    assert_eq!(e.sensors[0].sensor_id, SENSOR_ID);
    // interval null on the entity -> the sensor's default_interval.
    assert_eq!(e.sensors[0].interval, Some(10));
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    assert_eq!(report.requests, fake.request_count());
}

/// 1,000 devices sharing one credential and 5 sensors, and a client of
/// their bot.
async fn thousand_shared_devices() -> (FakeGrafolean, Client, usize) {
    let fake = FakeGrafolean::start().await;
    let account = 1_000_001;
    fake.put_account(grafolean_collector::testing::FakeAccount::new("load").with_id(account));
    let bot = fake.add_account_bot(account, "ping");
    let ids = fake.add_devices(
        &DeviceBatch::new(account, "ping", 1000)
            .with_bot(bot.id)
            .with_sensors(5, Some(60)),
    );
    let client = Client::builder(fake.url(), BotToken::new(&bot.token).unwrap())
        .build()
        .unwrap();
    (fake, client, ids.len())
}

fn assert_thousand_shared(report: &FetchReport, n: usize) {
    assert_eq!(report.configs.entities.len(), n);
    for e in &report.configs.entities {
        assert_eq!(e.sensors.len(), 5);
        assert!(e.sensors.iter().all(|s| s.interval == Some(60)));
        assert!(e.credential_id.is_some());
    }
    // The list order is kept.
    let got = entity_ids(report);
    let mut sorted = got.clone();
    sorted.sort();
    assert_eq!(got, sorted);
}

#[tokio::test]
async fn a_refresh_from_the_list_makes_nine_requests_for_a_thousand_shared_entities() {
    let (fake, client, n) = thousand_shared_devices().await;
    for _ in 0..2 {
        fake.clear_requests();
        let report = fetch_job_configs(&client, "ping", &FetchOptions::default())
            .await
            .unwrap();
        assert_thousand_shared(&report, n);
        // profile + accounts + 1 entity list + 1 credential + 5 sensors:
        // no entity is fetched on its own, since the list carries protocols.
        let expected = 1 + 1 + 1 + 1 + 5;
        assert_eq!(fake.request_count(), expected, "{:#?}", fake.requests());
        assert_eq!(report.requests, expected);
        assert!(
            !fake
                .requests()
                .iter()
                .any(|r| r.path.contains("/entities/") && !r.path.ends_with("/entities/")),
            "an entity was fetched on its own"
        );
    }
}

#[tokio::test]
async fn a_list_without_protocols_brings_back_the_per_entity_gets() {
    let (fake, client, n) = thousand_shared_devices().await;
    fake.set_list_protocols(false);
    fake.clear_requests();
    let report = fetch_job_configs(&client, "ping", &FetchOptions::default())
        .await
        .unwrap();
    assert_thousand_shared(&report, n);
    // profile + accounts + 1 entity list + 1000 entities + 1 credential + 5 sensors.
    let expected = 1 + 1 + 1 + 1000 + 1 + 5;
    assert_eq!(fake.request_count(), expected);
    assert_eq!(report.requests, expected);
}

#[tokio::test]
async fn only_the_listed_entities_without_protocols_are_fetched_one_by_one() {
    let fake = FakeGrafolean::start().await;
    let account = 1_000_001;
    fake.put_account(grafolean_collector::testing::FakeAccount::new("load").with_id(account));
    let bot = fake.add_account_bot(account, "ping");
    let n = fake
        .add_devices(
            &DeviceBatch::new(account, "ping", 1000)
                .with_bot(bot.id)
                .with_sensors(5, Some(60)),
        )
        .len();
    let client = Client::builder(fake.url(), BotToken::new(&bot.token).unwrap())
        .build()
        .unwrap();
    // The list as the fake serves it, then with `protocols` left out of three
    // entities (a list written by a mix of backend versions, or a proxy that
    // trims it): only those three are fetched alone.
    let list_url = format!("{}/accounts/1000001/entities/", fake.url());
    let mut list: serde_json::Value = reqwest::Client::new()
        .get(&list_url)
        .query(&[("b", bot.token.as_str())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let items = list["list"].as_array_mut().unwrap();
    assert_eq!(items.len(), n);
    let mut bare = Vec::new();
    for i in [0, 499, 999] {
        let item = items[i].as_object_mut().unwrap();
        assert!(item.remove("protocols").is_some());
        bare.push(item["id"].as_u64().unwrap());
    }
    fake.inject(
        Fault::body(list.to_string())
            .method("GET")
            .path_contains("/accounts/1000001/entities")
            .times(1),
    );
    fake.clear_requests();
    let report = fetch_job_configs(&client, "ping", &FetchOptions::default())
        .await
        .unwrap();
    assert_thousand_shared(&report, n);
    let mut fetched_alone: Vec<u64> = fake
        .requests()
        .iter()
        .filter_map(|r| {
            let rest = r.path.split("/entities/").nth(1)?;
            rest.trim_end_matches('/').parse().ok()
        })
        .collect();
    fetched_alone.sort();
    bare.sort();
    assert_eq!(fetched_alone, bare);
    assert_eq!(fake.request_count(), 9 + bare.len());
    assert_eq!(report.requests, 9 + bare.len());
}

#[tokio::test]
async fn an_entity_deleted_mid_refresh_is_skipped_alone() {
    let fake = FakeGrafolean::with_fixture_data().await;
    // A list without protocols (an older backend): each device is fetched.
    fake.set_list_protocols(false);
    let ids = fake.add_devices(
        &DeviceBatch::new(ACCOUNT_ID, "ping", 20)
            .with_bot(BOT_ID)
            .with_sensors(1, Some(30)),
    );
    let victim = ids[7];
    // The victim's GET is held back while it is deleted: the fake then answers
    // a real 404, as the backend does for an entity deleted after the list.
    fake.inject(
        Fault::delay(Duration::from_millis(300))
            .method("GET")
            .path_contains(format!("/entities/{victim}"))
            .times(1),
    );
    let deleter = {
        let fake = &fake;
        async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert!(fake.remove_entity(victim));
        }
    };
    let client = client(&fake);
    let options = FetchOptions::default();
    let (report, ()) = tokio::join!(fetch_job_configs(&client, "ping", &options), deleter);
    let report = report.unwrap();
    let got = entity_ids(&report);
    assert_eq!(
        got.len(),
        20,
        "19 new devices + the fixture's entity: {got:?}"
    );
    assert!(!got.contains(&victim));
    assert_eq!(report.skipped.len(), 1);
    assert_eq!(report.skipped[0].entity, Some(victim));
    assert!(
        report.skipped[0].reason.contains("404"),
        "{:?}",
        report.skipped[0]
    );
}

#[tokio::test]
async fn a_missing_sensor_skips_only_its_entity() {
    let fake = FakeGrafolean::with_fixture_data().await;
    let ids = fake.add_devices(
        &DeviceBatch::new(ACCOUNT_ID, "ping", 5)
            .with_bot(BOT_ID)
            .with_sensors(1, Some(30))
            .own_config(),
    );
    let entity = fake.entity(ids[2]).unwrap();
    let sensor = entity.protocols["ping"].sensors[0].sensor;
    assert!(fake.remove_sensor(sensor));
    let report = fetch_job_configs(&client(&fake), "ping", &FetchOptions::default())
        .await
        .unwrap();
    assert_eq!(report.configs.entities.len(), 5);
    assert_eq!(report.skipped.len(), 1);
    assert_eq!(report.skipped[0].entity, Some(ids[2]));
}

#[tokio::test]
async fn a_failing_account_list_fails_the_refresh() {
    let fake = FakeGrafolean::with_fixture_data().await;
    fake.inject(Fault::status(500).path_prefix("/api/accounts").times(1));
    let err = fetch_job_configs(&client(&fake), "ping", &FetchOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ApiError::Server { status: 500, resource, .. } if resource.starts_with("accounts")),
        "{err:?}"
    );
    // The next refresh succeeds.
    let report = fetch_job_configs(&client(&fake), "ping", &FetchOptions::default())
        .await
        .unwrap();
    assert_eq!(report.configs.entities.len(), 1);
}

#[tokio::test]
async fn a_rejected_token_is_a_clear_error_at_start_up() {
    let fake = FakeGrafolean::with_fixture_data().await;
    let client = Client::builder(
        fake.url(),
        BotToken::new("00000000-0000-4000-8000-000000000000").unwrap(),
    )
    .build()
    .unwrap();
    let err = fetch_job_configs(&client, "ping", &FetchOptions::default())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ApiError::Unauthorized { .. }), "{err:?}");
    assert!(
        text.contains("the bot token was rejected by") && text.contains(&fake.url()),
        "{text}"
    );
    assert!(!text.contains("00000000-0000-4000"), "{text}");
}

#[tokio::test]
async fn a_malformed_entity_is_skipped_alone() {
    let fake = FakeGrafolean::with_fixture_data().await;
    // A list without protocols, so that each device is fetched on its own;
    // one of them gets protocols back in the list below.
    fake.set_list_protocols(false);
    let ids = fake.add_devices(
        &DeviceBatch::new(ACCOUNT_ID, "ping", 10)
            .with_bot(BOT_ID)
            .with_sensors(1, Some(30)),
    );
    // One entity's own answer is broken JSON.
    fake.inject(
        Fault::body(r#"{"id": 12, "name": "#)
            .method("GET")
            .path_contains(format!("/entities/{}", ids[3]))
            .times(1),
    );
    // Another one is malformed inside the entity list: `protocols` is a string.
    let list_url = format!(
        "{}/accounts/{ACCOUNT_ID}/entities/?b={BOT_TOKEN}",
        fake.url()
    );
    let mut list: serde_json::Value = reqwest::get(&list_url).await.unwrap().json().await.unwrap();
    for item in list["list"].as_array_mut().unwrap() {
        if item["id"] == ids[6] {
            item["protocols"] = serde_json::json!("oops");
        }
    }
    fake.inject(
        Fault::body(list.to_string())
            .method("GET")
            .path_prefix(format!("/api/accounts/{ACCOUNT_ID}/entities"))
            .times(1),
    );

    let report = fetch_job_configs(&client(&fake), "ping", &FetchOptions::default())
        .await
        .unwrap();
    let got = entity_ids(&report);
    assert_eq!(
        got.len(),
        9,
        "11 devices that apply, less the two malformed: {got:?}"
    );
    assert!(!got.contains(&ids[3]) && !got.contains(&ids[6]));
    let mut skipped: Vec<u64> = report.skipped.iter().filter_map(|s| s.entity).collect();
    skipped.sort();
    let mut want = vec![ids[3], ids[6]];
    want.sort();
    assert_eq!(skipped, want, "{:?}", report.skipped);
    assert!(
        report
            .skipped
            .iter()
            .all(|s| s.reason.contains("malformed") || s.reason.contains("JSON")),
        "{:?}",
        report.skipped
    );
}

/// The entity ids of a fetch's configs, in order.
fn entity_ids(report: &FetchReport) -> Vec<u64> {
    report
        .configs
        .entities
        .iter()
        .map(|e| e.entity_id)
        .collect()
}

#[tokio::test]
async fn a_malformed_entity_is_named_by_its_raw_id_its_name_and_the_field() {
    let fake = FakeGrafolean::with_fixture_data().await;
    let ids = fake.add_devices(
        &DeviceBatch::new(ACCOUNT_ID, "ping", 5)
            .with_bot(BOT_ID)
            .with_sensors(1, Some(30)),
    );
    let list_url = format!(
        "{}/accounts/{ACCOUNT_ID}/entities/?b={BOT_TOKEN}",
        fake.url()
    );
    let mut list: serde_json::Value = reqwest::get(&list_url).await.unwrap().json().await.unwrap();
    for item in list["list"].as_array_mut().unwrap() {
        if item["id"] == ids[0] {
            item["id"] = serde_json::json!("111");
        }
        if item["id"] == ids[1] {
            item["protocols"]["ping"]["sensors"][0]["interval"] = serde_json::json!("60");
        }
        if item["id"] == ids[2] {
            item["id"] = serde_json::json!(-5);
        }
        if item["id"] == ids[3] {
            item["id"] = serde_json::json!("TWO_TO_THE_64");
        }
    }
    // 2^64 as the backend would write it: a bare number one past u64.
    let body = list
        .to_string()
        .replace("\"TWO_TO_THE_64\"", "18446744073709551616");
    fake.inject(
        Fault::body(body)
            .method("GET")
            .path_prefix(format!("/api/accounts/{ACCOUNT_ID}/entities"))
            .times(1),
    );
    let report = fetch_job_configs(&client(&fake), "ping", &FetchOptions::default())
        .await
        .unwrap();
    let reasons: Vec<&str> = report.skipped.iter().map(|s| s.reason.as_str()).collect();
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("id \"111\"") && r.contains("field id")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("id -5,") && r.contains("field id")),
        "{reasons:?}"
    );
    let interval = format!("id {}", ids[1]);
    assert!(
        reasons.iter().any(|r| r.contains(&interval)
            && r.contains("name \"")
            && r.contains("protocols.ping.sensors[0].interval")),
        "{reasons:?}"
    );
    // Ids that are not plain numbers have no `entity`, but each has its own
    // raw id, so they are told apart (and each is warned about).
    let mut raw: Vec<&str> = report
        .skipped
        .iter()
        .filter(|s| s.entity.is_none())
        .map(|s| s.raw_id.as_deref().expect("an entity's raw id"))
        .collect();
    raw.sort_unstable();
    raw.dedup();
    assert_eq!(raw.len(), 3, "{raw:?}");
    assert!(raw.contains(&"\"111\"") && raw.contains(&"-5"), "{raw:?}");
    assert!(
        raw.iter()
            .any(|r| r.starts_with("1844674407370955") || r.starts_with("1.844674407370955")),
        "2^64 is named: {raw:?}"
    );
}

/// A sensor interval the backend sends as -5, 1e12, "60" or 0 skips its
/// entity alone, with a message that names the field and the accepted range.
/// Each entity `ids[i]` was skipped for its interval `bad[i]`, with a
/// reason that names the field and the accepted range.
fn assert_bad_intervals_named(report: &FetchReport, ids: &[u64], bad: &[&str]) {
    for (i, text) in bad.iter().enumerate() {
        let skipped = report
            .skipped
            .iter()
            .find(|s| s.entity == Some(ids[i]))
            .unwrap_or_else(|| panic!("interval {text} not skipped: {:?}", report.skipped));
        assert_eq!(
            skipped.cause,
            grafolean_collector::SkipCause::Malformed,
            "{text}: {skipped:?}"
        );
        let reason = &skipped.reason;
        assert!(
            reason.contains("protocols.ping.sensors[0].interval: ")
                && reason.contains("expected a whole number of seconds from 1 to 4294967295"),
            "{text}: {reason}"
        );
    }
}

#[tokio::test]
async fn a_bad_interval_names_the_field_and_the_range() {
    let fake = FakeGrafolean::with_fixture_data().await;
    let bad = ["-5", "1e12", "\"60\"", "0"];
    let ids = fake.add_devices(
        &DeviceBatch::new(ACCOUNT_ID, "ping", bad.len() + 1)
            .with_bot(BOT_ID)
            .with_sensors(1, Some(30)),
    );
    let list_url = format!(
        "{}/accounts/{ACCOUNT_ID}/entities/?b={BOT_TOKEN}",
        fake.url()
    );
    let mut list: serde_json::Value = reqwest::get(&list_url).await.unwrap().json().await.unwrap();
    for item in list["list"].as_array_mut().unwrap() {
        if let Some(i) = ids.iter().take(bad.len()).position(|id| item["id"] == *id) {
            item["protocols"]["ping"]["sensors"][0]["interval"] =
                serde_json::json!(format!("BAD{i}"));
        }
    }
    // Written as the backend would: bare numbers, and one string.
    let mut body = list.to_string();
    for (i, text) in bad.iter().enumerate() {
        body = body.replace(&format!("\"BAD{i}\""), text);
    }
    fake.inject(
        Fault::body(body)
            .method("GET")
            .path_prefix(format!("/api/accounts/{ACCOUNT_ID}/entities"))
            .times(1),
    );
    let report = fetch_job_configs(&client(&fake), "ping", &FetchOptions::default())
        .await
        .unwrap();
    assert!(
        entity_ids(&report).contains(&ids[bad.len()]),
        "the good one stays"
    );
    assert_bad_intervals_named(&report, &ids, &bad);
    assert_eq!(report.skipped.len(), bad.len(), "{:?}", report.skipped);
}

#[tokio::test]
async fn a_bad_interval_fetched_alone_names_the_field_and_the_range() {
    // An older backend: the list has no protocols, each entity is fetched.
    let fake = FakeGrafolean::with_fixture_data().await;
    fake.set_list_protocols(false);
    let bad = ["-5", "1e12", "\"60\"", "0"];
    let ids = fake.add_devices(
        &DeviceBatch::new(ACCOUNT_ID, "ping", bad.len() + 1)
            .with_bot(BOT_ID)
            .with_sensors(1, Some(30)),
    );
    for (i, text) in bad.iter().enumerate() {
        let url = format!(
            "{}/accounts/{ACCOUNT_ID}/entities/{}?b={BOT_TOKEN}",
            fake.url(),
            ids[i]
        );
        let mut entity: serde_json::Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
        entity["protocols"]["ping"]["sensors"][0]["interval"] = serde_json::json!("BAD");
        let body = entity.to_string().replace("\"BAD\"", text);
        fake.inject(
            Fault::body(body)
                .method("GET")
                .path_contains(format!("/entities/{}", ids[i])),
        );
    }
    let report = fetch_job_configs(&client(&fake), "ping", &FetchOptions::default())
        .await
        .unwrap();
    assert!(
        entity_ids(&report).contains(&ids[bad.len()]),
        "the good one stays"
    );
    assert_bad_intervals_named(&report, &ids, &bad);
}
