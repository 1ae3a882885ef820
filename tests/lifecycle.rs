//! The bot's lifecycle as systemd and Prometheus-style tools see it: a
//! standalone bot with `NOTIFY_SOCKET` pointing at a datagram socket this
//! test reads, and `WATCHDOG_USEC` set, as systemd runs a `Type=notify`
//! unit with `WatchdogSec=`.
//!
//! - `READY=1` once the first config has loaded;
//! - `POST /-/reload` (with `--web.enable-lifecycle`): `RELOADING=1`, then
//!   `READY=1`, 200; an empty file (an editor mid-save) is a failed reload
//!   that keeps the jobs, 500, and `config_last_reload_successful` 0;
//! - `WATCHDOG=1` at half the watchdog period, and none while every runtime
//!   thread is blocked by the bot's own code (a wedged bot);
//! - `STOPPING=1` at shutdown; without the flag, `POST /-/reload` is 403.
//!
//! One test in this file: it sets the process's environment.

use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use grafolean_collector::testing::RunningBot;
use grafolean_collector::{Bot, BoxError, Collector, JobConfigs, JobSpec, Problems, Tick, Value};

/// Blocks its thread for 3 s in each run while `BLOCK` is set, as a bot that
/// calls blocking code in `run` would.
struct Blocker;

static BLOCK: AtomicBool = AtomicBool::new(false);

impl Collector for Blocker {
    type Params = u64;

    fn jobs(&self, configs: &JobConfigs, _: &mut Problems) -> Vec<JobSpec<u64>> {
        configs
            .entities
            .iter()
            .filter_map(|e| {
                Some(JobSpec::new(
                    format!("entity.{}", e.entity_id),
                    e.intervals()?,
                    e.entity_id,
                ))
            })
            .collect()
    }

    async fn run(&self, _: Tick, id: &u64) -> Result<Vec<Value>, BoxError> {
        if BLOCK.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_secs(3));
        }
        Ok(vec![Value::new(format!("entity.{id}.up"), 1.0)])
    }
}

/// Every notification received, with when.
type Received = Arc<Mutex<Vec<(Instant, String)>>>;

fn listen(socket: UnixDatagram) -> Received {
    let received: Received = Arc::default();
    let into = received.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = socket.recv(&mut buf) {
            let message = String::from_utf8_lossy(&buf[..n]).into_owned();
            into.lock().unwrap().push((Instant::now(), message));
        }
    });
    received
}

fn messages(received: &Received) -> Vec<String> {
    received
        .lock()
        .unwrap()
        .iter()
        .map(|(_, m)| m.clone())
        .collect()
}

/// The times of the `WATCHDOG=1` messages.
fn beats(received: &Received) -> Vec<Instant> {
    received
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, m)| m.lines().any(|l| l == "WATCHDOG=1"))
        .map(|(t, _)| *t)
        .collect()
}

/// Waits up to `secs` for a message with the line `line` after the first
/// `skip` messages; returns its index.
fn wait_for(received: &Received, skip: usize, line: &str, secs: u64) -> usize {
    let until = Instant::now() + Duration::from_secs(secs);
    loop {
        let all = messages(received);
        if let Some(i) = all
            .iter()
            .enumerate()
            .skip(skip)
            .find(|(_, m)| m.lines().any(|l| l == line))
            .map(|(i, _)| i)
        {
            return i;
        }
        assert!(
            Instant::now() < until,
            "no {line} after message {skip}: {all:#?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn config(entities: u64) -> String {
    (1..=entities)
        .map(|i| {
            format!("[[entity]]\nid = {i}\nname = \"e{i}\"\nsensors = [{{ interval = 1 }}]\n\n")
        })
        .collect()
}

#[test]
fn systemd_notify_reload_and_watchdog() {
    let dir = std::env::temp_dir().join(format!("grafolean-lifecycle-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let socket_path = dir.join("notify.sock");
    let received = listen(UnixDatagram::bind(&socket_path).unwrap());
    // SAFETY: the only test of this binary, before its runtime starts.
    unsafe {
        std::env::set_var("NOTIFY_SOCKET", &socket_path);
        std::env::set_var("WATCHDOG_USEC", "600000");
        std::env::set_var("WATCHDOG_PID", std::process::id().to_string());
    }
    let file = dir.join("jobs.toml");
    std::fs::write(&file, config(4)).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let settings = grafolean_collector::Settings::try_parse_from([
            "blocker",
            "--config",
            file.to_str().unwrap(),
            "--jobs-refresh-interval",
            "3600",
            "--web.enable-lifecycle",
        ])
        .unwrap();
        let bot = RunningBot::start(Bot::new("blocker", Blocker), settings);
        let client = reqwest::Client::new();
        let reload = async || {
            let r = client
                .post(format!("{}/-/reload", bot.url()))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        };

        // Ready once the first config has loaded, with the jobs counted.
        let ready = wait_for(&received, 0, "READY=1", 10);
        assert!(
            messages(&received)[ready].contains("STATUS=4 jobs scheduled"),
            "{:#?}",
            messages(&received)
        );

        // A reload: RELOADING=1, then READY=1, and 200 once it is over.
        std::fs::write(&file, config(5)).unwrap();
        let before = messages(&received).len();
        assert_eq!(reload().await, (200, "reloaded\n".to_string()));
        let reloading = wait_for(&received, before, "RELOADING=1", 1);
        assert!(messages(&received)[reloading].contains("MONOTONIC_USEC="));
        let ready = wait_for(&received, reloading, "READY=1", 1);
        assert!(messages(&received)[ready].contains("STATUS=5 jobs scheduled"));
        assert_eq!(
            bot.metric("grafolean_bot_config_last_reload_successful")
                .await,
            1.0
        );

        // An empty file: a failed reload that keeps the 5 jobs.
        std::fs::write(&file, "").unwrap();
        let before = messages(&received).len();
        let (status, body) = reload().await;
        assert_eq!(status, 500, "{body}");
        assert!(body.contains("the file is empty (0 bytes)"), "{body}");
        let reloading = wait_for(&received, before, "RELOADING=1", 1);
        let ready = wait_for(&received, reloading, "READY=1", 1);
        assert!(
            messages(&received)[ready].contains("5 jobs scheduled; the last config load failed"),
            "{:#?}",
            messages(&received)
        );
        assert_eq!(
            bot.metric("grafolean_bot_config_last_reload_successful")
                .await,
            0.0
        );
        assert_eq!(bot.metric("grafolean_bot_jobs_scheduled").await, 5.0);
        assert!(
            bot.metric("grafolean_bot_config_last_reload_success_timestamp_seconds")
                .await
                > 1.7e9
        );

        // The watchdog: WATCHDOG=1 every 0.3 s (half of 0.6 s).
        tokio::time::sleep(Duration::from_secs(2)).await;
        let healthy = beats(&received);
        let gaps: Vec<f64> = healthy
            .windows(2)
            .map(|w| (w[1] - w[0]).as_secs_f64())
            .collect();
        assert!(gaps.len() >= 5, "{gaps:?}");
        let mut sorted = gaps.clone();
        sorted.sort_by(f64::total_cmp);
        let median = sorted[sorted.len() / 2];
        assert!(
            (0.2..=0.4).contains(&median),
            "median gap {median} s: {gaps:?}"
        );

        // Wedged: every job blocks its worker thread for 3 s, and both
        // workers are taken. No WATCHDOG=1 while they are.
        let wedged_at = Instant::now();
        BLOCK.store(true, Ordering::SeqCst);
        std::thread::sleep(Duration::from_secs(4));
        BLOCK.store(false, Ordering::SeqCst);
        std::thread::sleep(Duration::from_secs(4));
        let all = beats(&received);
        let longest = all
            .windows(2)
            .filter(|w| w[1] > wedged_at)
            .map(|w| (w[1] - w[0]).as_secs_f64())
            .fold(0.0, f64::max);
        assert!(
            longest >= 1.5,
            "the watchdog went on while the runtime was blocked: longest gap {longest} s"
        );
        assert!(
            all.iter().any(|t| *t > wedged_at + Duration::from_secs(6)),
            "no WATCHDOG=1 once the runtime ran again"
        );

        // Stopping: STOPPING=1.
        let before = messages(&received).len();
        bot.stop().await.unwrap();
        wait_for(&received, before, "STOPPING=1", 5);

        // Without --web.enable-lifecycle: 403.
        let settings = grafolean_collector::Settings::try_parse_from([
            "blocker",
            "--config",
            file.to_str().unwrap(),
        ])
        .unwrap();
        std::fs::write(&file, config(1)).unwrap();
        let bot = RunningBot::start(Bot::new("blocker", Blocker), settings);
        let mut answer = None;
        for _ in 0..50 {
            if let Ok(r) = client.post(format!("{}/-/reload", bot.url())).send().await {
                answer = Some((r.status().as_u16(), r.text().await.unwrap()));
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (status, body) = answer.expect("the admin server never answered");
        assert_eq!(status, 403, "{body}");
        assert!(body.contains("--web.enable-lifecycle"), "{body}");
        bot.stop().await.unwrap();
    });
    let _ = std::fs::remove_dir_all(&dir);
}
