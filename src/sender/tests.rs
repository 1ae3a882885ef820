//! The count of unsent values (read by the second-signal message) covers
//! every place a value waits: an open batch and a request in flight, not
//! only the backlog.

use std::time::{Duration, Instant, SystemTime};

use crate::api::{BotToken, Client};
use crate::job::JobId;
use crate::metrics::Metrics;
use crate::testing::{ACCOUNT_ID, BOT_TOKEN, FakeGrafolean, Fault};
use crate::value::Value;

use super::Sender;

async fn wait_until(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn unsent_counts_open_batches_and_requests_in_flight() {
    let fake = FakeGrafolean::with_fixture_data().await;
    // The backend takes the request and never answers.
    fake.inject(Fault::delay(Duration::from_secs(3600)).path_contains("/values"));
    let metrics = Metrics::new("test");
    let client = Client::builder(fake.url(), BotToken::new(BOT_TOKEN).unwrap())
        .with_timeout(Duration::from_secs(600))
        .build()
        .unwrap();
    // Two values fill a batch (sent at once); the third waits in an open
    // batch whose window does not close during the test.
    let sender = Sender::builder(client, &mut metrics.registry_mut())
        .with_unsent_gauge(metrics.values_unsent.clone())
        .with_batch_window(Duration::from_secs(600))
        .with_max_batch(2)
        .build()
        .unwrap();
    let values = (0..3).map(|i| Value::new(format!("t.p{i}"), 1.0)).collect();
    sender.submit(ACCOUNT_ID, &JobId::new("j"), SystemTime::now(), values);
    wait_until("the request to reach the backend", || {
        fake.requests().iter().any(|r| r.path.contains("/values"))
    })
    .await;
    wait_until("3 unsent values", || metrics.values_unsent.get() == 3).await;
    assert_eq!(
        crate::testing::metric_value(&metrics, "grafolean_bot_values_buffered"),
        0.0,
        "nothing is in the backlog: the values are in flight and in an open batch"
    );
}
