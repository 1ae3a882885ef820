//! The `grafolean-ping-bot` binary against a fake Grafolean that takes the
//! values and never answers: a graceful shutdown has to wait for the drain
//! deadline (10 s), so a second signal, or the deadline itself, is what
//! ends it.

#![allow(dead_code)]

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use grafolean_collector::testing::{BOT_TOKEN, ENTITY_ID, FakeGrafolean, Fault};

/// A running bot whose values hang in flight. Killed when dropped.
#[derive(Debug)]
pub struct Hanging {
    /// The fake backend (kept alive while the bot runs).
    pub fake: FakeGrafolean,
    child: Child,
}

impl Hanging {
    /// Starts the fake (the fixture's ping entity every 3 s, `/values`
    /// hanging for an hour) and the bot, and returns once the bot sent its
    /// first values.
    pub async fn start() -> Self {
        let fake = FakeGrafolean::with_fixture_data().await;
        assert!(fake.update_entity(ENTITY_ID, |e| {
            e.protocols.get_mut("ping").unwrap().sensors[0].interval = Some(3);
        }));
        fake.inject(Fault::delay(Duration::from_secs(3600)).path_contains("/values"));
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_grafolean-ping-bot"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("BACKEND_URL", fake.url())
            .env("BOT_TOKEN", BOT_TOKEN)
            .env_remove("BOT_TOKEN_FROM_FILE")
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let bot = Self { fake, child };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !bot
            .fake
            .requests()
            .iter()
            .any(|r| r.path.contains("/values"))
        {
            assert!(Instant::now() < deadline, "no value was sent");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bot
    }

    /// Sends `sig` (`-TERM`, `-INT`) to the bot.
    pub fn signal(&self, sig: &str) {
        assert!(
            Command::new("kill")
                .args([sig, &self.child.id().to_string()])
                .status()
                .unwrap()
                .success()
        );
    }

    /// Waits for the bot to exit, at most `within`; returns its status and
    /// its whole log.
    pub async fn exit_within(&mut self, within: Duration) -> (ExitStatus, String) {
        let started = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                started.elapsed() < within,
                "the bot did not exit within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let mut log = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut log)
            .unwrap();
        (status, log)
    }
}

impl Drop for Hanging {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The number just before `marker` in `log` (as in "12 values were not
/// sent"), or a panic showing the log.
pub fn count_before(log: &str, marker: &str) -> u64 {
    log.split(marker)
        .next()
        .filter(|head| head.len() < log.len())
        .and_then(|head| head.rsplit(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count before {marker:?} in the log:\n{log}"))
}
