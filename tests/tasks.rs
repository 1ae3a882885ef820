//! A bot's long-lived tasks, supervised by the runtime: a task that fails is
//! logged, counted and restarted (the default), or stops the bot with exit
//! status 1 (`spawn_essential`); at a clean shutdown every task is cancelled
//! and awaited within the drain deadline, not aborted, and one that does not
//! stop in time is aborted and named.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use grafolean_collector::testing::{LogCapture, RunningBot};
use grafolean_collector::{
    Bot, BoxError, Collector, JobConfigs, JobSpec, Problems, RunError, Settings, Tick, Value,
};

/// No jobs: the tests are about the tasks.
struct Idle;

impl Collector for Idle {
    type Params = ();
    fn jobs(&self, _: &JobConfigs, _: &mut Problems) -> Vec<JobSpec<()>> {
        Vec::new()
    }
    async fn run(&self, _: Tick, _: &()) -> Result<Vec<Value>, BoxError> {
        Ok(Vec::new())
    }
}

/// The log of this test binary (one global subscriber for all its tests).
fn logs() -> &'static LogCapture {
    LogCapture::global()
}

async fn eventually(secs: u64, mut check: impl AsyncFnMut() -> bool) -> bool {
    for _ in 0..secs * 20 {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_panics_is_logged_counted_and_restarted_then_awaited_at_shutdown() {
    let logs = logs();
    let starts = Arc::new(AtomicU32::new(0));
    let stopped_cleanly = Arc::new(AtomicBool::new(false));
    let (s, c) = (starts.clone(), stopped_cleanly.clone());
    let bot = Bot::from_fn("tasks", move |ctx| {
        ctx.spawn("flaky", move |shutdown| {
            let (starts, stopped_cleanly) = (s.clone(), c.clone());
            async move {
                // The first two runs panic; the third runs until shutdown,
                // and takes a while to stop (within the drain deadline).
                if starts.fetch_add(1, Ordering::SeqCst) < 2 {
                    panic!("flaky fell over");
                }
                shutdown.cancelled().await;
                tokio::time::sleep(Duration::from_millis(300)).await;
                stopped_cleanly.store(true, Ordering::SeqCst);
                Ok(())
            }
        });
        Ok(Idle)
    })
    .with_drain_deadline(Duration::from_secs(5));
    let bot = RunningBot::start(bot, Settings::default());
    let failures = r#"grafolean_bot_task_failures_total{task="flaky"}"#;
    assert!(
        eventually(20, async || bot.metric(failures).await == 2.0).await,
        "two failures counted"
    );
    // Restarted with backoff (about 1 s, then 2 s): the third run starts.
    assert!(eventually(20, async || starts.load(Ordering::SeqCst) == 3).await);
    assert_eq!(
        logs.count(&["ERROR", "task=flaky", "flaky fell over", "restarting it"]),
        2,
        "{}",
        logs.text()
    );
    // A clean shutdown cancels the task and waits for it: not aborted.
    bot.stop().await.unwrap();
    assert!(
        stopped_cleanly.load(Ordering::SeqCst),
        "the task was aborted"
    );
    assert_eq!(
        starts.load(Ordering::SeqCst),
        3,
        "not restarted at shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_essential_task_that_fails_stops_the_bot_with_a_failure() {
    let logs = logs();
    let started = Instant::now();
    let bot = Bot::from_fn("tasks", |ctx| {
        ctx.spawn_essential("receiver", |_| async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            Err::<(), BoxError>("the socket closed".into())
        });
        Ok(Idle)
    })
    .with_admin_listener(std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    let err = tokio::time::timeout(
        Duration::from_secs(20),
        bot.run(Settings::default(), std::future::pending()),
    )
    .await
    .expect("the bot stops by itself")
    .unwrap_err();
    assert!(
        matches!(&err, RunError::Task { task, error } if task == "receiver" && error.contains("socket closed")),
        "{err:?}"
    );
    // Not a usage error: `Bot::main` exits with status 1 for it.
    assert!(!err.is_usage());
    assert!(started.elapsed() < Duration::from_secs(15));
    assert_eq!(
        logs.count(&["ERROR", "task=receiver", "essential task failed"]),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_ignores_shutdown_is_aborted_at_the_drain_deadline_and_named() {
    let logs = logs();
    let bot = Bot::from_fn("tasks", |ctx| {
        ctx.spawn("stubborn", |_| async {
            std::future::pending::<()>().await;
            Ok(())
        });
        Ok(Idle)
    })
    .with_drain_deadline(Duration::from_millis(500));
    let bot = RunningBot::start(bot, Settings::default());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopping = Instant::now();
    bot.stop().await.unwrap();
    assert!(stopping.elapsed() < Duration::from_secs(5));
    assert_eq!(
        logs.count(&["WARN", "stubborn", "did not stop within the drain deadline"]),
        1,
        "{}",
        logs.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_cannot_be_built_stops_the_bot_with_its_error() {
    let bot = Bot::<Idle>::from_fn("tasks", |_| Err("no ICMP socket: permission denied".into()))
        .with_admin_listener(std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    let err = bot
        .run(Settings::default(), std::future::pending())
        .await
        .unwrap_err();
    assert!(matches!(err, RunError::Collector(_)), "{err:?}");
    assert!(err.to_string().contains("permission denied"), "{err}");
    assert!(!err.is_usage());
}
