//! The `grafolean-snmp-bot` binary run standalone with a TOML config, as an
//! operator runs it: its admin server on a free loopback port, its log read
//! line by line on a thread, stopped with SIGTERM. (A copy of the ping bot's
//! test helper, with extra arguments and a directory that outlives the
//! process, so that a second process can use the first one's files.)
//!
//! Included with `#[path]` by the tests that run the binary only: the
//! benchmark, which shares `common/mod.rs`, has no `CARGO_BIN_EXE_*`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_grafolean-snmp-bot");

/// A fresh directory for one test's files; removed when dropped.
#[derive(Debug)]
pub struct TestDir(pub PathBuf);

impl TestDir {
    /// Creates it.
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "grafolean-snmp-{name}-{}-{:?}",
            std::process::id(),
            Instant::now()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    /// A path inside it.
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// The names of the files in it, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running standalone bot. Killed when dropped.
#[derive(Debug)]
pub struct Standalone {
    child: Child,
    base: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Standalone {
    /// Starts the bot on the TOML file `config`, re-reading it every
    /// `refresh_secs`, with `args` added to the command line.
    pub fn start(config: &Path, refresh_secs: u64, args: &[&str]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new(BIN)
            .arg("--config")
            .arg(config)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(args)
            .env_remove("BACKEND_URL")
            .env_remove("BOT_TOKEN")
            .env_remove("BOT_TOKEN_FROM_FILE")
            .env_remove("STATE_FILE")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .env("JOBS_REFRESH_INTERVAL", refresh_secs.to_string())
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
        Self {
            child,
            base: format!("127.0.0.1:{port}"),
            log,
        }
    }

    /// The log so far, one line each.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// How many log lines contain every one of `needles`.
    pub fn count(&self, needles: &[&str]) -> usize {
        self.log()
            .iter()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .count()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// `GET /metrics`, or an empty string while the server is not up.
    pub fn metrics(&self) -> String {
        get(&self.base, "/metrics").unwrap_or_default()
    }

    /// Polls `/metrics` every `every` until `check` accepts it, and returns
    /// that text.
    pub fn wait_for_metrics(
        &mut self,
        within: Duration,
        every: Duration,
        check: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + within;
        loop {
            let text = self.metrics();
            if check(&text) {
                return text;
            }
            assert!(
                self.is_running(),
                "the bot exited: {:?}\n{}",
                self.child.try_wait(),
                self.log().join("\n")
            );
            assert!(
                Instant::now() < deadline,
                "/metrics never matched in {within:?}:\n{text}\nlog:\n{}",
                self.log().join("\n")
            );
            std::thread::sleep(every);
        }
    }

    /// Waits until a log line contains every one of `needles`.
    pub fn wait_for_log(&mut self, within: Duration, needles: &[&str]) {
        self.wait_for_log_lines(within, needles, 1);
    }

    /// Waits until `n` log lines contain every one of `needles`.
    pub fn wait_for_log_lines(&mut self, within: Duration, needles: &[&str], n: usize) {
        let deadline = Instant::now() + within;
        while self.count(needles) < n {
            assert!(
                self.is_running(),
                "the bot exited: {:?}\n{}",
                self.child.try_wait(),
                self.log().join("\n")
            );
            assert!(
                Instant::now() < deadline,
                "no log line with {needles:?} in {within:?}:\n{}",
                self.log().join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then the exit status (the log is complete afterwards).
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // The log thread reads until the pipe closes.
                std::thread::sleep(Duration::from_millis(100));
                return status;
            }
            assert!(Instant::now() < deadline, "the bot did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Standalone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of the first sample of `series` (a name with its labels, as
/// written) in a Prometheus text page, if there is one.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .split(' ')
            .next()?
            .parse()
            .ok()
    })
}

/// The value of the first sample whose line starts with `prefix` and
/// contains every one of `with` (labels in any order).
pub fn sample_with(text: &str, prefix: &str, with: &[&str]) -> Option<f64> {
    text.lines().find_map(|l| {
        if !l.starts_with(prefix) || !with.iter().all(|w| l.contains(w)) {
            return None;
        }
        l.rsplit_once(' ')?.1.parse().ok()
    })
}

/// A tiny blocking GET, so the tests need no HTTP client crate.
fn get(host: &str, path: &str) -> std::io::Result<String> {
    let mut s = std::net::TcpStream::connect(host)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default())
}

/// Bumps a file's modification time every 200 ms while it lives, so that
/// every refresh reads the file again (a refresh does nothing with a file
/// that did not change).
pub struct Toucher(Arc<std::sync::atomic::AtomicBool>);

impl Toucher {
    /// Starts touching `path`.
    pub fn start(path: PathBuf) -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(f) = std::fs::File::options().write(true).open(&path) {
                    let _ = f.set_modified(std::time::SystemTime::now());
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        Self(stop)
    }
}

impl Drop for Toucher {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}
