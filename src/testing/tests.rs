//! The fake's own behaviour over real loopback HTTP: state changes while
//! serving, recordings, and every kind of fault.

use std::time::Duration;

use serde_json::{Value as Json, json};

use super::*;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn values_url(fake: &FakeGrafolean, token: &str) -> String {
    format!("{}/accounts/{ACCOUNT_ID}/values/?b={token}", fake.url())
}

async fn get(fake: &FakeGrafolean, path: &str) -> (u16, Json) {
    let url = format!("{}/{path}?b={BOT_TOKEN}", fake.url());
    let r = client().get(url).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Json::Null))
}

async fn post(fake: &FakeGrafolean, body: &Json) -> Result<u16, reqwest::Error> {
    let r = client()
        .post(values_url(fake, BOT_TOKEN))
        .json(body)
        .send()
        .await?;
    Ok(r.status().as_u16())
}

#[tokio::test]
async fn state_changes_are_served_at_once() {
    let fake = FakeGrafolean::with_fixture_data().await;
    let (_, list) = get(&fake, &format!("accounts/{ACCOUNT_ID}/entities")).await;
    assert_eq!(list["list"].as_array().unwrap().len(), 6);

    assert!(fake.remove_entity(ENTITY_ID));
    let (status, body) = get(
        &fake,
        &format!("accounts/{ACCOUNT_ID}/entities/{ENTITY_ID}"),
    )
    .await;
    assert_eq!((status, body), (404, json!({"detail": "No such entity"})));

    let ids =
        fake.add_devices(&DeviceBatch::new(ACCOUNT_ID, "ping", 1000).with_sensors(5, Some(10)));
    let own = DeviceBatch::new(ACCOUNT_ID, "ping", 1000)
        .with_sensors(5, None)
        .own_config();
    fake.add_devices(&own);
    let (_, list) = get(&fake, &format!("accounts/{ACCOUNT_ID}/entities/")).await;
    let list = list["list"].as_array().unwrap();
    assert_eq!(list.len(), 5 + 2000);
    let ids_sorted: Vec<u64> = list.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert!(ids_sorted.windows(2).all(|w| w[0] < w[1]), "sorted by id");
    let (_, credentials) = get(&fake, &format!("accounts/{ACCOUNT_ID}/credentials")).await;
    assert_eq!(credentials["list"].as_array().unwrap().len(), 4 + 1 + 1000);
    let (_, sensors) = get(&fake, &format!("accounts/{ACCOUNT_ID}/sensors")).await;
    assert_eq!(sensors["list"].as_array().unwrap().len(), 6 + 5 + 5000);
    let one = fake.entity(ids[0]).unwrap();
    assert_eq!(one.protocols["ping"].sensors.len(), 5);
}

#[tokio::test]
async fn grants_can_change_while_serving() {
    let fake = FakeGrafolean::with_fixture_data().await;
    let put = |fake: &FakeGrafolean| {
        let url = values_url(fake, BOT_TOKEN);
        async move {
            let body = json!([{"p": "a.b", "t": 1000, "v": 1}]);
            client()
                .put(url)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(put(&fake).await, 204);
    let prefix = format!("accounts/{ACCOUNT_ID}/values");
    assert_eq!(fake.revoke_prefix(BOT_ID, Some(&prefix)), 1);
    fake.grant(BOT_ID, Some(&prefix), Some(&["POST"]));
    assert_eq!(put(&fake).await, 403);
    assert_eq!(
        post(&fake, &json!([{"p": "a.b", "v": 2}])).await.unwrap(),
        204
    );

    let stored = fake.values(ACCOUNT_ID);
    assert_eq!(stored.len(), 2);
    assert_eq!((stored[0].t, stored[0].method), (1000.0, ValueMethod::Put));
    assert_eq!(stored[1].method, ValueMethod::Post);

    // Reading values needs its own grant; then it shows what was stored.
    let path = format!("accounts/{ACCOUNT_ID}/values/a.b");
    assert_eq!(get(&fake, &path).await.0, 403);
    fake.grant(BOT_ID, Some(&prefix), Some(&["GET"]));
    let (status, body) = get(&fake, &path).await;
    assert_eq!(status, 200);
    assert_eq!(body["paths"]["a.b"]["data"].as_array().unwrap().len(), 2);

    // A removed bot can no longer log in.
    assert!(fake.remove_bot(BOT_ID));
    assert_eq!(
        client()
            .get(format!("{}/profile?b={BOT_TOKEN}", fake.url()))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
}

#[tokio::test]
async fn new_account_bot_sees_its_account() {
    let fake = FakeGrafolean::start().await;
    let b = fake.put_account(Account::new("b"));
    let a = fake.put_account(Account::new("a"));
    let bot = fake.add_account_bot(a, "ping");
    fake.grant(
        bot.id,
        Some(&format!("accounts/{b}/entities")),
        Some(&["GET"]),
    );
    let url = format!("{}/accounts?b={}", fake.url(), bot.token);
    let body: Json = client()
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        body,
        json!({"list": [{"id": a, "name": "a"}, {"id": b, "name": "b"}]})
    );
}

#[tokio::test]
async fn status_info_can_make_a_client_wait() {
    let fake = FakeGrafolean::start().await;
    fake.set_db_migration_needed(true);
    fake.set_user_exists(false);
    let url = format!("{}/status/info", fake.url());
    let body: Json = client()
        .get(&url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            body["db_migration_needed"].clone(),
            body["user_exists"].clone()
        ),
        (json!(true), json!(false))
    );
    fake.set_db_migration_needed(false);
    fake.set_user_exists(true);
    let body: Json = client()
        .get(&url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            body["db_migration_needed"].clone(),
            body["user_exists"].clone()
        ),
        (json!(false), json!(true))
    );
}

#[tokio::test]
async fn status_faults_are_scoped_and_counted() {
    let fake = FakeGrafolean::with_fixture_data().await;
    fake.inject(
        Fault::status(500)
            .method("POST")
            .path_contains("/values")
            .times(2),
    );
    let batch = json!([{"p": "x.y", "v": 1}]);
    assert_eq!(get(&fake, "profile").await.0, 200, "a GET is not in scope");
    assert_eq!(post(&fake, &batch).await.unwrap(), 500);
    assert_eq!(post(&fake, &batch).await.unwrap(), 500);
    assert_eq!(post(&fake, &batch).await.unwrap(), 204);
    assert_eq!(
        fake.values(ACCOUNT_ID).len(),
        1,
        "failed attempts store nothing"
    );
    let statuses: Vec<Option<u16>> = fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [Some(200), Some(500), Some(500), Some(204)]);

    let id = fake.inject(Fault::status(401));
    assert_eq!(get(&fake, "profile").await.0, 401);
    assert!(fake.remove_fault(id));
    assert_eq!(get(&fake, "profile").await.0, 200);
}

#[tokio::test]
async fn dropped_connection_gets_no_answer() {
    let fake = FakeGrafolean::with_fixture_data().await;
    fake.inject(Fault::drop_connection().times(1));
    let err = post(&fake, &json!([{"p": "x.y", "v": 1}]))
        .await
        .unwrap_err();
    assert!(!err.is_status() && !err.is_timeout(), "{err}");
    assert_eq!(
        post(&fake, &json!([{"p": "x.y", "v": 1}])).await.unwrap(),
        204
    );
    let requests = fake.requests();
    assert_eq!((requests[0].status, requests[1].status), (None, Some(204)));
    assert_eq!(fake.values(ACCOUNT_ID).len(), 1);
}

#[tokio::test]
async fn drop_after_handling_stores_but_does_not_answer() {
    let fake = FakeGrafolean::with_fixture_data().await;
    fake.inject(
        Fault::drop_after_handling()
            .path_contains("/values")
            .times(1),
    );
    let batch = json!([{"p": "x.y", "v": 1}]);
    assert!(post(&fake, &batch).await.is_err());
    let stored = tokio::time::timeout(Duration::from_secs(10), fake.wait_for_values(ACCOUNT_ID, 1));
    assert_eq!(stored.await.unwrap().len(), 1);
    assert_eq!(fake.requests()[0].status, None);
    assert_eq!(fake.requests()[0].body_json(), Some(batch));
}

#[tokio::test]
async fn double_slash_redirects_only_known_routes() {
    let fake = FakeGrafolean::with_fixture_data().await;
    let c = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = c
        .get(format!(
            "{}/accounts/{ACCOUNT_ID}/entities/{ENTITY_ID}///?b=x",
            fake.url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 307);
    let want = format!(
        "{}/accounts/{ACCOUNT_ID}/entities/{ENTITY_ID}?b=x",
        fake.url()
    );
    assert_eq!(r.headers()["location"].to_str().unwrap(), want);
    let r = c
        .get(format!("{}/nothing//?b=x", fake.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn delay_can_exceed_a_client_timeout() {
    let fake = FakeGrafolean::with_fixture_data().await;
    fake.inject(Fault::delay(Duration::from_secs(3)).times(1));
    let url = format!("{}/profile?b={BOT_TOKEN}", fake.url());
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let err = c.get(&url).send().await.unwrap_err();
    assert!(err.is_timeout(), "{err}");
    // The delay was used up: the next request is answered within the timeout.
    assert_eq!(c.get(&url).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn refused_connections_come_back_on_the_same_port() {
    let fake = FakeGrafolean::with_fixture_data().await;
    let c = client();
    let url = format!("{}/profile?b={BOT_TOKEN}", fake.url());
    assert_eq!(c.get(&url).send().await.unwrap().status(), 200);
    fake.refuse_connections().await;
    let err = c.get(&url).send().await.unwrap_err();
    assert!(err.is_connect(), "{err}");
    fake.accept_connections().await.unwrap();
    assert_eq!(c.get(&url).send().await.unwrap().status(), 200);
    assert_eq!(fake.url(), format!("http://{}/api", fake.addr()));
}

#[tokio::test]
async fn waiting_for_values() {
    let fake = FakeGrafolean::with_fixture_data().await;
    let url = values_url(&fake, OTHER_BOT_TOKEN);
    let sender = tokio::spawn(async move {
        for i in 0..3 {
            let body = json!([{"p": format!("w.{i}"), "v": i}]);
            client().post(&url).json(&body).send().await.unwrap();
        }
    });
    let values = tokio::time::timeout(Duration::from_secs(10), fake.wait_for_values(ACCOUNT_ID, 3))
        .await
        .unwrap();
    assert_eq!(
        values.iter().map(|v| v.path.as_str()).collect::<Vec<_>>(),
        ["w.0", "w.1", "w.2"]
    );
    sender.await.unwrap();
    assert_eq!(fake.wait_for_requests(3).await.len(), 3);
    fake.clear_requests();
    fake.clear_values();
    assert_eq!((fake.request_count(), fake.all_values().len()), (0, 0));
}

#[tokio::test]
async fn debug_output_never_shows_a_token() {
    let fake = FakeGrafolean::with_fixture_data().await;
    let bot = fake.add_account_bot(ACCOUNT_ID, "snmp");
    let shown = format!("{fake:?} {bot:?}");
    for token in [BOT_TOKEN, OTHER_BOT_TOKEN, SNMP_BOT_TOKEN, &bot.token] {
        assert!(!shown.contains(token), "{shown}");
    }
}

/// The fake follows a paused test clock: a 10 s delay beats a 5 s client
/// timeout without the test waiting, and a 30 s outage passes at once.
#[tokio::test(start_paused = true)]
async fn paused_clock_delays_and_outages() {
    let fake = FakeGrafolean::with_fixture_data().await;
    let url = format!("{}/profile?b={BOT_TOKEN}", fake.url());
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let wall = std::time::Instant::now();

    fake.inject(Fault::delay(Duration::from_secs(10)).times(1));
    let started = tokio::time::Instant::now();
    assert!(c.get(&url).send().await.unwrap_err().is_timeout());
    assert_eq!(started.elapsed(), Duration::from_secs(5));

    fake.refuse_connections_for(Duration::from_secs(30)).await;
    assert!(c.get(&url).send().await.unwrap_err().is_connect());
    tokio::time::sleep(Duration::from_secs(29)).await;
    assert!(c.get(&url).send().await.unwrap_err().is_connect());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(c.get(&url).send().await.unwrap().status(), 200);
    assert!(wall.elapsed() < Duration::from_secs(5), "no real waiting");
}

#[test]
fn random_ids_never_repeat() {
    let ids: std::collections::HashSet<u64> = (0..200_000).map(|_| super::random_id()).collect();
    assert_eq!(ids.len(), 200_000);
    assert!(ids.iter().all(|&id| id > 0 && id < 1 << 31));
}
