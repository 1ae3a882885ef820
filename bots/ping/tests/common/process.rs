//! A `grafolean-ping-bot` process as the tests run it: its admin server on a
//! free loopback port, its log (stderr) read line by line on a thread, a
//! SIGTERM to stop it, and a kill when it is dropped.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_grafolean-ping-bot");

/// A free port on 127.0.0.1, for a bot's `--listen`.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The bot binary with its admin server on `127.0.0.1:port`, no backend or
/// token from this process's environment, and an uncoloured log: the
/// command to add a test's own flags and environment to.
pub fn command(port: u16) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env_remove("BACKEND_URL")
        .env_remove("BOT_TOKEN")
        .env_remove("BOT_TOKEN_FROM_FILE")
        .env_remove("SHARD")
        .env_remove("SHARD_COUNT")
        .env_remove("MAX_RESPONSE_MIB")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    command
}

/// A running bot. Killed when dropped.
#[derive(Debug)]
pub struct BotProcess {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl BotProcess {
    /// Starts `command` with its stderr read into the log.
    pub fn spawn(mut command: Command) -> Self {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Self { child, log }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log so far, one line each.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// How many log lines contain every one of `parts`.
    pub fn count(&self, parts: &[&str]) -> usize {
        let log = self.log.lock().unwrap();
        log.iter()
            .filter(|l| parts.iter().all(|p| l.contains(p)))
            .count()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// SIGTERM, then the exit status (at most `within` later).
    pub fn stop_within(mut self, within: Duration) -> ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the bot did not stop in {within:?}: {}",
                self.log().join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then the exit status.
    pub fn stop(self) -> ExitStatus {
        self.stop_within(Duration::from_secs(30))
    }
}

impl Drop for BotProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits (at most `within`) until `ready` holds, on tokio's clock.
pub async fn wait_until(within: Duration, what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
