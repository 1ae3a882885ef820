//! Fault tests of the sender against the fake Grafolean, over loopback.
//!
//! Each test runs a steady stream of values (20 paths every 100 ms, the value
//! being the tick's number) through a real [`Sender`], breaks the backend for
//! a while, and then checks what the fake stored: every value exactly once,
//! and every value produced during the outage replayed by PUT with its
//! original measurement time. Outages last 3 s instead of 10 s (the logic is
//! the same; the backoff is capped at 500 ms so recovery is noticed quickly).
//!
//! Every test but the crash test runs on tokio's paused clock, on one thread:
//! the sender's timers (batch window, backoff, request timeouts), the fake's
//! faults and delays, and the producer's ticks all follow it, so that a 3 s
//! outage takes milliseconds and no result depends on the machine's load.
//! Time only moves when every task waits; requests over loopback still go
//! through the kernel. Every wait has a deadline ([`wait_until`]).
//!
//! The crash test runs the sender in a child process (this test binary,
//! re-executed with `SENDER_SPOOL_CHILD` set), kills it with SIGKILL in the
//! middle of an outage, and restarts a sender on the same spool directory.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use grafolean_collector::Metrics;
use grafolean_collector::api::BotToken;
use grafolean_collector::api::Client;
use grafolean_collector::sender::Sender;
use grafolean_collector::testing::metric_value;
use grafolean_collector::testing::{
    ACCOUNT_ID, BOT_ID, BOT_TOKEN, FakeGrafolean, Fault, StoredValue, ValueMethod,
};
use grafolean_collector::{JobId, Value};
use tokio::time::{Instant, sleep};

const PATHS: u64 = 20;
const TICK: Duration = Duration::from_millis(100);
const OUTAGE: Duration = Duration::from_secs(3);
const CLIENT_TIMEOUT: Duration = Duration::from_secs(1);

fn client(url: &str) -> Client {
    Client::builder(url, BotToken::new(BOT_TOKEN).unwrap())
        .with_timeout(CLIENT_TIMEOUT)
        .build()
        .unwrap()
}

fn sender(url: &str, metrics: &Metrics, spool: Option<&PathBuf>) -> Sender {
    let mut b = Sender::builder(client(url), &mut metrics.registry_mut())
        .with_batch_window(Duration::from_millis(50))
        .with_backoff(Duration::from_millis(100), Duration::from_millis(500));
    if let Some(dir) = spool {
        b = b.with_spool_dir(dir);
    }
    b.build().unwrap()
}

/// A measurement time in whole milliseconds, so that `t` is exact.
fn base_time() -> SystemTime {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn at(base: SystemTime, tick: u64) -> SystemTime {
    base + TICK * tick as u32
}

fn t_of(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH).unwrap().as_micros() as f64 / 1e6
}

fn tick_values(tick: u64) -> Vec<Value> {
    (0..PATHS)
        .map(|p| Value::new(format!("test.p{p}"), tick as f64))
        .collect()
}

/// Submits a tick every 100 ms; returns when each tick was submitted.
async fn produce(sender: Sender, base: SystemTime, ticks: u64) -> Vec<Instant> {
    let job = JobId::new("test");
    let mut interval = tokio::time::interval(TICK);
    let mut submitted = Vec::new();
    for k in 0..ticks {
        interval.tick().await;
        submitted.push(Instant::now());
        sender.submit(ACCOUNT_ID, &job, at(base, k), tick_values(k));
    }
    submitted
}

/// Waits (on tokio's clock, at most `within`) until `ready` holds.
async fn wait_until(within: Duration, what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        sleep(Duration::from_millis(5)).await;
    }
}

fn dropped(metrics: &Metrics, reason: &str) -> u64 {
    let series = format!("grafolean_bot_values_dropped_total{{reason=\"{reason}\"}}");
    metric_value(metrics, &series) as u64
}

/// A counter of the SDK's, such as `values_sent`, as Prometheus reads it.
fn count(metrics: &Metrics, name: &str) -> u64 {
    metric_value(metrics, &format!("grafolean_bot_{name}_total")) as u64
}

/// A gauge of the SDK's, such as `values_buffered`.
fn gauge(metrics: &Metrics, name: &str) -> i64 {
    metric_value(metrics, &format!("grafolean_bot_{name}")) as i64
}

/// Stored values by (path, tick).
fn by_value(stored: &[StoredValue]) -> HashMap<(String, u64), Vec<&StoredValue>> {
    let mut map: HashMap<_, Vec<_>> = HashMap::new();
    for v in stored {
        map.entry((v.path.clone(), v.v as u64)).or_default().push(v);
    }
    map
}

/// Every value of `ticks` arrived exactly once; values sent by PUT carry
/// their tick's time; the ticks for which `must_put` holds came by PUT.
fn assert_exactly_once(
    stored: &[StoredValue],
    base: SystemTime,
    ticks: impl Iterator<Item = u64> + Clone,
    must_put: impl Fn(u64) -> bool,
) -> usize {
    let map = by_value(stored);
    let mut put = 0;
    for k in ticks.clone() {
        for p in 0..PATHS {
            let key = (format!("test.p{p}"), k);
            let got = map.get(&key).map(Vec::as_slice).unwrap_or_default();
            assert_eq!(got.len(), 1, "value {key:?} arrived {} times", got.len());
            if got[0].method == ValueMethod::Put {
                put += 1;
                assert_eq!(got[0].t, t_of(at(base, k)), "{key:?} has the wrong time");
            } else {
                assert!(
                    !must_put(k),
                    "{key:?} was produced during the outage but came by POST"
                );
            }
        }
    }
    assert_eq!(
        map.len(),
        ticks.count() * PATHS as usize,
        "unexpected extra values"
    );
    put
}

#[derive(Clone, Copy, Debug)]
enum Outage {
    Status(u16),
    Refused,
    Slow,
}

async fn outage_test(outage: Outage) {
    let fake = FakeGrafolean::with_fixture_data().await;
    let metrics = Metrics::new("test");
    let sender = sender(&fake.url(), &metrics, None);
    let base = base_time();
    let ticks = 55;
    let producer = tokio::spawn(produce(sender.clone(), base, ticks));
    sleep(Duration::from_secs(1)).await;
    let injected = Instant::now();
    match outage {
        Outage::Status(code) => {
            fake.inject(
                Fault::status(code)
                    .path_contains("/values")
                    .for_duration(OUTAGE),
            );
        }
        Outage::Refused => fake.refuse_connections().await,
        Outage::Slow => {
            fake.inject(
                Fault::delay(CLIENT_TIMEOUT + Duration::from_millis(500))
                    .path_contains("/values")
                    .for_duration(OUTAGE),
            );
        }
    }
    // Values submitted from here on meet the fault.
    let start = Instant::now();
    sleep(OUTAGE - (start - injected)).await;
    if let Outage::Refused = outage {
        fake.accept_connections().await.unwrap();
    }
    let end = injected + OUTAGE;
    let submitted = producer.await.unwrap();
    let report = sender.shutdown(Duration::from_secs(20)).await;
    assert!(!report.timed_out, "{report:?}");
    assert_eq!(report.dropped, 0);

    let stored = fake.values(ACCOUNT_ID);
    let during = |k: u64| submitted[k as usize] >= start && submitted[k as usize] + TICK <= end;
    let outage_ticks = (0..ticks).filter(|&k| during(k)).count() as u64;
    assert!(outage_ticks >= 25, "{outage_ticks}");
    let put = assert_exactly_once(&stored, base, 0..ticks, during) as u64;
    let total = ticks * PATHS;
    // The bot may PUT: every value went by PUT with its tick's time, live or
    // replayed, and a retry only ever overwrote what it had stored.
    assert_eq!(put, total);
    assert!(count(&metrics, "values_replayed") >= outage_ticks * PATHS);
    assert_eq!(count(&metrics, "values_sent"), total);
    assert!(count(&metrics, "values_retried") > 0);
    assert!(fake.overwrites() <= count(&metrics, "values_retried"));
    assert_eq!(gauge(&metrics, "values_buffered"), 0);
    assert_eq!(gauge(&metrics, "backend_up"), 1);
    eprintln!(
        "{outage:?}: {total} values, {put} replayed by PUT, {} retried",
        count(&metrics, "values_retried")
    );
}

#[tokio::test(start_paused = true)]
async fn status_500_outage_replays_everything_once_with_original_times() {
    outage_test(Outage::Status(500)).await;
}

#[tokio::test(start_paused = true)]
async fn refused_connections_replay_everything_once_with_original_times() {
    outage_test(Outage::Refused).await;
}

#[tokio::test(start_paused = true)]
async fn answers_slower_than_the_timeout_replay_everything_once() {
    outage_test(Outage::Slow).await;
}

#[tokio::test(start_paused = true)]
async fn revoked_token_401_then_recovery_replays_everything_once() {
    outage_test(Outage::Status(401)).await;
}

#[tokio::test(start_paused = true)]
async fn put_forbidden_sends_only_the_newest_value_per_path() {
    // This test's runtime has one thread, so a thread-local subscriber sees
    // the sender's log.
    let logs = grafolean_collector::testing::LogCapture::default();
    let writer = logs.clone();
    let _log = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish(),
    );
    let fake = FakeGrafolean::with_fixture_data().await;
    let values = format!("accounts/{ACCOUNT_ID}/values");
    assert_eq!(fake.revoke_prefix(BOT_ID, Some(&values)), 1);
    fake.grant(BOT_ID, Some(&values), Some(&["POST"]));
    let metrics = Metrics::new("test");
    let sender = sender(&fake.url(), &metrics, None);
    let base = base_time();
    let ticks = 40;
    let producer = tokio::spawn(produce(sender.clone(), base, ticks));
    sleep(Duration::from_secs(1)).await;
    fake.inject(
        Fault::status(500)
            .path_contains("/values")
            .for_duration(Duration::from_secs(2)),
    );
    producer.await.unwrap();
    let report = sender.shutdown(Duration::from_secs(20)).await;
    assert!(!report.timed_out);

    let stored = fake.values(ACCOUNT_ID);
    assert!(stored.iter().all(|v| v.method == ValueMethod::Post));
    assert!(
        metrics
            .encode()
            .contains("grafolean_bot_send_mode_accounts{mode=\"post\"} 1")
    );
    let map = by_value(&stored);
    assert!(map.values().all(|v| v.len() == 1), "a value arrived twice");
    let mut missing = 0;
    for p in 0..PATHS {
        let path = format!("test.p{p}");
        let newest_stored = |k: u64| (k + 1..ticks).any(|j| map.contains_key(&(path.clone(), j)));
        for k in 0..ticks {
            if !map.contains_key(&(path.clone(), k)) {
                missing += 1;
                assert!(
                    newest_stored(k),
                    "{path} tick {k} was dropped but no newer value arrived"
                );
            }
        }
    }
    assert!(
        missing >= 10 * PATHS,
        "only {missing} values were superseded"
    );
    assert_eq!(dropped(&metrics, "put_forbidden"), missing);
    assert_eq!(count(&metrics, "values_sent") + missing, ticks * PATHS);
    assert_eq!(stored.len() as u64, count(&metrics, "values_sent"));
    // One line says which mode the bot is in and why, once.
    assert_eq!(
        logs.count(&["WARN", "mode=\"POST\"", "403 on PUT", "at least once"]),
        1,
        "{}",
        logs.text()
    );
}

#[tokio::test(start_paused = true)]
async fn put_is_tried_again_every_10_minutes_and_a_later_grant_takes_effect() {
    let fake = FakeGrafolean::with_fixture_data().await;
    let values = format!("accounts/{ACCOUNT_ID}/values");
    assert_eq!(fake.revoke_prefix(BOT_ID, Some(&values)), 1);
    let post_only = fake.grant(BOT_ID, Some(&values), Some(&["POST"]));
    let metrics = Metrics::new("test");
    let sender = sender(&fake.url(), &metrics, None);
    let base = base_time();
    let job = JobId::new("test");
    let put_requests = || fake.requests().iter().filter(|r| r.method == "PUT").count();
    // Tick 0: the PUT gets 403, and the values go again by POST.
    sender.submit(ACCOUNT_ID, &job, at(base, 0), tick_values(0));
    wait_until(Duration::from_secs(5), "tick 0", || {
        fake.values(ACCOUNT_ID).len() == PATHS as usize
    })
    .await;
    assert_eq!(put_requests(), 1);
    let mode = |m: &str| format!("grafolean_bot_send_mode_accounts{{mode=\"{m}\"}} 1");
    assert!(metrics.encode().contains(&mode("post")));
    // Within the 10 minutes, no PUT is tried, even after PUT is granted.
    fake.revoke(post_only);
    fake.grant(BOT_ID, Some(&values), Some(&["POST", "PUT"]));
    sleep(Duration::from_secs(300)).await;
    sender.submit(ACCOUNT_ID, &job, at(base, 1), tick_values(1));
    wait_until(Duration::from_secs(5), "tick 1", || {
        fake.values(ACCOUNT_ID).len() == 2 * PATHS as usize
    })
    .await;
    assert_eq!(put_requests(), 1);
    // After 10 minutes PUT is tried again, succeeds, and stays.
    sleep(Duration::from_secs(301)).await;
    for k in 2..4 {
        sender.submit(ACCOUNT_ID, &job, at(base, k), tick_values(k));
        sleep(TICK).await;
    }
    let report = sender.shutdown(Duration::from_secs(10)).await;
    assert!(!report.timed_out, "{report:?}");
    let stored = fake.values(ACCOUNT_ID);
    let map = by_value(&stored);
    for k in 0..4 {
        for p in 0..PATHS {
            let got = &map[&(format!("test.p{p}"), k)];
            assert_eq!(got.len(), 1);
            let want = if k < 2 {
                ValueMethod::Post
            } else {
                ValueMethod::Put
            };
            assert_eq!(got[0].method, want, "tick {k}");
        }
    }
    let by_put: Vec<StoredValue> = stored.iter().filter(|v| v.v >= 2.0).cloned().collect();
    assert_exactly_once(&by_put, base, 2..4, |_| true);
    assert!(metrics.encode().contains(&mode("put")));
    assert_eq!(count(&metrics, "values_sent"), 4 * PATHS);
}

/// One tick whose request is stored by the backend and then cut before the
/// answer; the sender retries it.
async fn cut_after_storing(put_allowed: bool) -> (FakeGrafolean, Metrics, SystemTime) {
    let fake = FakeGrafolean::with_fixture_data().await;
    let method = if put_allowed {
        "PUT"
    } else {
        let values = format!("accounts/{ACCOUNT_ID}/values");
        assert_eq!(fake.revoke_prefix(BOT_ID, Some(&values)), 1);
        fake.grant(BOT_ID, Some(&values), Some(&["POST"]));
        "POST"
    };
    let cut = fake.inject(
        Fault::drop_after_handling()
            .method(method)
            .path_contains("/values")
            .times(1),
    );
    let metrics = Metrics::new("test");
    let sender = sender(&fake.url(), &metrics, None);
    let base = base_time();
    sender.submit(ACCOUNT_ID, &JobId::new("test"), at(base, 1), tick_values(1));
    let report = sender.shutdown(Duration::from_secs(10)).await;
    assert!(!report.timed_out, "{report:?}");
    assert!(!fake.remove_fault(cut), "the cut happened");
    assert_eq!(
        count(&metrics, "values_retried"),
        PATHS,
        "the cut batch was retried"
    );
    (fake, metrics, base)
}

#[tokio::test(start_paused = true)]
async fn a_batch_stored_then_cut_is_stored_exactly_once_with_put() {
    let (fake, metrics, base) = cut_after_storing(true).await;
    let stored = fake.values(ACCOUNT_ID);
    // One point per path, at the tick's time: the retry overwrote them.
    assert_exactly_once(&stored, base, 1..2, |_| true);
    assert_eq!(fake.overwrites(), PATHS);
    assert!(fake.overwrites() <= count(&metrics, "values_retried"));
    assert!(
        metrics
            .encode()
            .contains("grafolean_bot_send_mode_accounts{mode=\"put\"} 1")
    );
}

#[tokio::test(start_paused = true)]
async fn a_batch_stored_then_cut_is_stored_twice_with_post_only() {
    // PUT forbidden: values go by POST and the backend stamps them on
    // arrival, so the retry of a stored batch stores every value again, at
    // another time. This is the at-least-once delivery of the POST mode.
    let (fake, _metrics, _) = cut_after_storing(false).await;
    let stored = fake.values(ACCOUNT_ID);
    assert_eq!(fake.overwrites(), 0);
    let map = by_value(&stored);
    assert_eq!(map.len() as u64, PATHS);
    for (key, points) in &map {
        assert_eq!(points.len(), 2, "{key:?} was stored {} times", points.len());
        assert!(points.iter().all(|v| v.method == ValueMethod::Post));
        assert_ne!(points[0].t, points[1].t, "{key:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn cuts_after_storing_in_a_stream_never_duplicate_a_point_with_put() {
    let fake = FakeGrafolean::with_fixture_data().await;
    let metrics = Metrics::new("test");
    let sender = sender(&fake.url(), &metrics, None);
    let base = base_time();
    let ticks = 20;
    let producer = tokio::spawn(produce(sender.clone(), base, ticks));
    sleep(Duration::from_millis(300)).await;
    // Three batches are stored and then cut, one after another.
    let cut = fake.inject(
        Fault::drop_after_handling()
            .path_contains("/values")
            .times(3),
    );
    producer.await.unwrap();
    let report = sender.shutdown(Duration::from_secs(10)).await;
    assert!(!report.timed_out, "{report:?}");
    assert!(!fake.remove_fault(cut), "all three cuts happened");
    let stored = fake.values(ACCOUNT_ID);
    assert_exactly_once(&stored, base, 0..ticks, |_| true);
    assert_eq!(
        stored.len() as u64,
        ticks * PATHS,
        "one point per path and tick"
    );
    assert!(fake.overwrites() > 0);
    assert!(fake.overwrites() <= count(&metrics, "values_retried"));
    assert_eq!(count(&metrics, "values_sent"), ticks * PATHS);
}

#[tokio::test(start_paused = true)]
async fn an_invalid_value_is_dropped_alone() {
    let fake = FakeGrafolean::with_fixture_data().await;
    let metrics = Metrics::new("test");
    let sender = sender(&fake.url(), &metrics, None);
    let mut values = tick_values(7);
    values[3].path = "test.bad path".into();
    values.push(Value::new("test.nan", f64::NAN));
    sender.submit(ACCOUNT_ID, &JobId::new("test"), base_time(), values);
    let report = sender.shutdown(Duration::from_secs(10)).await;
    assert!(!report.timed_out, "{report:?}");
    assert_eq!(count(&metrics, "values_sent"), PATHS - 1);
    let stored = fake.values(ACCOUNT_ID);
    assert_eq!(stored.len() as u64, PATHS - 1);
    assert!(stored.iter().all(|v| v.path != "test.p3" && v.v == 7.0));
    assert_eq!(dropped(&metrics, "invalid_path"), 1);
    assert_eq!(dropped(&metrics, "invalid_value"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_rejected_batch_is_bisected_and_the_rest_delivered() {
    let fake = FakeGrafolean::with_fixture_data().await;
    let metrics = Metrics::new("test");
    let sender = sender(&fake.url(), &metrics, None);
    // The whole batch, then its first half, then the first quarter are rejected.
    fake.inject(Fault::status(400).method("PUT").times(3));
    sender.submit(ACCOUNT_ID, &JobId::new("test"), base_time(), tick_values(1));
    let report = sender.shutdown(Duration::from_secs(10)).await;
    assert!(!report.timed_out, "{report:?}");
    assert_eq!(count(&metrics, "values_sent"), PATHS);
    assert_eq!(fake.values(ACCOUNT_ID).len() as u64, PATHS);
    // 20 → 10 → 5 → (2 ok, 3 ok), 5 ok, 10 ok.
    assert_eq!(fake.request_count(), 7);
    assert_eq!(dropped(&metrics, "rejected"), 0);
}

#[tokio::test(start_paused = true)]
async fn values_rejected_alone_are_dropped_not_retried() {
    let fake = FakeGrafolean::with_fixture_data().await;
    let metrics = Metrics::new("test");
    let sender = sender(&fake.url(), &metrics, None);
    // 4 values: [0..4] → [0..2] → [0] and [1] are rejected; [2..4] is stored.
    fake.inject(Fault::status(400).method("PUT").times(4));
    let values = tick_values(1).into_iter().take(4).collect();
    sender.submit(ACCOUNT_ID, &JobId::new("test"), base_time(), values);
    let report = sender.shutdown(Duration::from_secs(10)).await;
    assert!(!report.timed_out, "{report:?}");
    assert_eq!(count(&metrics, "values_sent"), 2);
    let mut paths: Vec<String> = fake
        .values(ACCOUNT_ID)
        .into_iter()
        .map(|v| v.path)
        .collect();
    paths.sort();
    assert_eq!(paths, ["test.p2", "test.p3"]);
    assert_eq!(fake.request_count(), 5);
    assert_eq!(dropped(&metrics, "rejected"), 2);
    assert_eq!(count(&metrics, "values_retried"), 0);
}

/// The child process of the crash test: produces ticks into a spooled sender
/// against a failing backend, and prints each tick 300 ms after submitting it.
#[test]
fn spool_child() {
    let Ok(dir) = std::env::var("SENDER_SPOOL_CHILD") else {
        return; // Not the child: nothing to do.
    };
    let url = std::env::var("SENDER_URL").unwrap();
    let base_ms: u64 = std::env::var("SENDER_BASE_MS").unwrap().parse().unwrap();
    let base = UNIX_EPOCH + Duration::from_millis(base_ms);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let metrics = Metrics::new("child");
        let sender = sender(&url, &metrics, Some(&PathBuf::from(dir)));
        let job = JobId::new("test");
        let mut interval = tokio::time::interval(TICK);
        for k in 0.. {
            interval.tick().await;
            sender.submit(ACCOUNT_ID, &job, at(base, k), tick_values(k));
            if k >= 3 {
                println!("submitted {}", k - 3);
            }
        }
    });
}

// Wall time: a child process runs on the real clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_an_outage_loses_nothing_with_the_spool() {
    let fake = FakeGrafolean::with_fixture_data().await;
    let dir = std::env::temp_dir().join(format!("sender-spool-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let base = base_time();
    let fault = fake.inject(Fault::status(500).path_contains("/values"));
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "spool_child", "--nocapture", "--test-threads=1"])
        .env("SENDER_SPOOL_CHILD", &dir)
        .env("SENDER_URL", fake.url())
        .env(
            "SENDER_BASE_MS",
            base.duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis()
                .to_string(),
        )
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = std::thread::spawn(move || {
        let mut last = None;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(k) = line.strip_prefix("submitted ") {
                last = Some(k.parse::<u64>().unwrap());
            }
        }
        last
    });
    sleep(Duration::from_secs(3)).await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let last = lines.join().unwrap().expect("the child submitted values");
    assert!(last >= 15, "the child only got to tick {last}");
    assert!(fake.values(ACCOUNT_ID).is_empty());

    // The backend recovers, and a new sender starts on the same spool.
    fake.remove_fault(fault);
    let metrics = Metrics::new("test");
    let sender = sender(&fake.url(), &metrics, Some(&dir));
    let deadline = Instant::now() + Duration::from_secs(20);
    while fake.values(ACCOUNT_ID).len() < ((last + 1) * PATHS) as usize && Instant::now() < deadline
    {
        sleep(Duration::from_millis(50)).await;
    }
    let report = sender.shutdown(Duration::from_secs(10)).await;
    assert_eq!(report.spooled, 0, "{report:?}");
    let stored = fake.values(ACCOUNT_ID);
    // Every tick the child reported arrived once, by PUT, with its time; the
    // child may have spooled a few more ticks before it was killed.
    let extra: Vec<u64> = stored
        .iter()
        .map(|v| v.v as u64)
        .filter(|&k| k > last)
        .collect();
    let n = extra.iter().max().map_or(last, |&m| m.max(last)) + 1;
    let complete: Vec<StoredValue> = stored
        .iter()
        .filter(|v| (v.v as u64) <= last)
        .cloned()
        .collect();
    assert_exactly_once(&complete, base, 0..=last, |_| true);
    assert!(stored.iter().all(|v| v.method == ValueMethod::Put));
    assert!(n - last <= 6, "unexpected ticks after {last}: {extra:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(start_paused = true)]
async fn a_full_buffer_drops_the_oldest_values() {
    let fake = FakeGrafolean::with_fixture_data().await;
    let metrics = Metrics::new("test");
    let sender = Sender::builder(client(&fake.url()), &mut metrics.registry_mut())
        .with_batch_window(Duration::from_millis(10))
        .with_backoff(Duration::from_secs(2), Duration::from_secs(2))
        .with_buffer_limit(100)
        .build()
        .unwrap();
    let fault = fake.inject(Fault::status(500).path_contains("/values"));
    let job = JobId::new("test");
    let base = base_time();
    // The first tick's POST fails: the sender is down (and retries in 1-2 s).
    sender.submit(ACCOUNT_ID, &job, at(base, 0), tick_values(0));
    wait_until(
        Duration::from_secs(5),
        "the first tick in the backlog",
        || gauge(&metrics, "values_buffered") >= PATHS as i64,
    )
    .await;
    // Meanwhile 9 more ticks go straight to the backlog, which holds 100.
    for k in 1..10 {
        sender.submit(ACCOUNT_ID, &job, at(base, k), tick_values(k));
    }
    wait_until(Duration::from_secs(5), "100 values dropped", || {
        dropped(&metrics, "buffer_full") >= 100
    })
    .await;
    fake.remove_fault(fault);
    let report = sender.shutdown(Duration::from_secs(10)).await;
    assert_eq!(report.dropped, 0, "{report:?}");
    assert_eq!(dropped(&metrics, "buffer_full"), 100);
    // The newest 100 values (ticks 5 to 9) arrived, with their times.
    let stored = fake.values(ACCOUNT_ID);
    assert_exactly_once(&stored, base, 5..10, |_| true);
}

/// The backend was down long enough that the next try is a minute away,
/// and is back when the bot stops: the shutdown tries once more at once and
/// delivers everything, where it used to drop it all without a try (found
/// by the readiness test of a backend down for a minute).
#[tokio::test(start_paused = true)]
async fn a_shutdown_tries_once_more_before_dropping() {
    let fake = FakeGrafolean::with_fixture_data().await;
    let metrics = Metrics::new("test");
    let sender = Sender::builder(client(&fake.url()), &mut metrics.registry_mut())
        .with_batch_window(Duration::from_millis(10))
        .with_backoff(Duration::from_secs(60), Duration::from_secs(60))
        .build()
        .unwrap();
    let fault = fake.inject(Fault::status(503).path_contains("/values"));
    let job = JobId::new("test");
    let base = base_time();
    sender.submit(ACCOUNT_ID, &job, at(base, 0), tick_values(0));
    wait_until(Duration::from_secs(5), "the tick in the backlog", || {
        gauge(&metrics, "values_buffered") >= PATHS as i64
    })
    .await;
    fake.remove_fault(fault);
    // The next try is about 60 s away; the drain deadline is 5 s.
    let report = sender.shutdown(Duration::from_secs(5)).await;
    assert_eq!(report.dropped, 0, "{report:?}");
    assert!(!report.timed_out, "{report:?}");
    assert_exactly_once(&fake.values(ACCOUNT_ID), base, 0..1, |_| true);
}

#[tokio::test(start_paused = true)]
async fn shutdown_without_spool_counts_what_is_left_as_dropped() {
    let fake = FakeGrafolean::with_fixture_data().await;
    fake.inject(Fault::status(500).path_contains("/values"));
    let metrics = Metrics::new("test");
    let sender = sender(&fake.url(), &metrics, None);
    sender.submit(ACCOUNT_ID, &JobId::new("test"), base_time(), tick_values(1));
    let report = sender.shutdown(Duration::from_millis(1500)).await;
    assert_eq!(report.dropped, PATHS, "{report:?}");
    assert!(report.timed_out);
    assert_eq!(dropped(&metrics, "shutdown"), PATHS);
    assert_eq!(gauge(&metrics, "values_buffered"), 0);
    // Submitting after the shutdown drops the values, and says so.
    sender.submit(ACCOUNT_ID, &JobId::new("test"), base_time(), tick_values(2));
    assert_eq!(dropped(&metrics, "shutdown"), 2 * PATHS);
}

#[tokio::test(start_paused = true)]
async fn shutdown_with_spool_keeps_what_is_left_for_the_next_start() {
    let fake = FakeGrafolean::with_fixture_data().await;
    let dir = std::env::temp_dir().join(format!("sender-spool-shutdown-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let fault = fake.inject(Fault::status(500).path_contains("/values"));
    let base = base_time();
    let metrics = Metrics::new("test");
    let first = sender(&fake.url(), &metrics, Some(&dir));
    first.submit(ACCOUNT_ID, &JobId::new("test"), at(base, 1), tick_values(1));
    let report = first.shutdown(Duration::from_millis(1500)).await;
    assert_eq!((report.spooled, report.dropped), (PATHS, 0), "{report:?}");
    assert_eq!(dropped(&metrics, "shutdown"), 0);

    fake.remove_fault(fault);
    let metrics = Metrics::new("test");
    let second = sender(&fake.url(), &metrics, Some(&dir));
    assert_eq!(gauge(&metrics, "values_buffered"), PATHS as i64);
    let report = second.shutdown(Duration::from_secs(10)).await;
    assert_eq!(
        (count(&metrics, "values_replayed"), report.spooled),
        (PATHS, 0),
        "{report:?}"
    );
    assert_exactly_once(&fake.values(ACCOUNT_ID), base, 1..2, |_| true);
    let _ = std::fs::remove_dir_all(&dir);
}
