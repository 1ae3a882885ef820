//! The `grafolean-ping-bot` binary run standalone with a TOML config, as an
//! operator runs it (a [`BotProcess`]: its admin server on a free loopback
//! port, its log read line by line on a thread).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::process::{self, BotProcess};

/// A running standalone bot. Killed when dropped.
#[derive(Debug)]
pub struct Standalone {
    bot: BotProcess,
    base: String,
    dir: Dir,
}

/// The bot's directory, removed when dropped.
#[derive(Debug)]
struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Standalone {
    /// Writes `toml` to a fresh directory and starts the bot on it.
    pub fn start(name: &str, toml: &str) -> Self {
        Self::start_refreshing(name, toml, 120)
    }

    /// [`Standalone::start`], re-reading the file every `refresh_secs`.
    #[allow(dead_code)]
    pub fn start_refreshing(name: &str, toml: &str, refresh_secs: u64) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "grafolean-ping-{name}-{}-{:?}",
            std::process::id(),
            Instant::now()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("targets.toml");
        std::fs::write(&config, toml).unwrap();
        let port = process::free_port();
        let mut command = process::command(port);
        command
            .arg("--config")
            .arg(&config)
            .env("JOBS_REFRESH_INTERVAL", refresh_secs.to_string());
        Self {
            bot: BotProcess::spawn(command),
            base: format!("127.0.0.1:{port}"),
            dir: Dir(dir),
        }
    }

    /// The config file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.0.join("targets.toml")
    }

    /// The log so far, one line each.
    pub fn log(&self) -> Vec<String> {
        self.bot.log()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.bot.is_running()
    }

    /// `GET /metrics`, or an empty string while the server is not up.
    pub fn metrics(&self) -> String {
        get(&self.base, "/metrics").unwrap_or_default()
    }

    /// Polls `/metrics` until `check` accepts it, and returns that text.
    pub fn wait_for_metrics(&mut self, within: Duration, check: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + within;
        loop {
            let text = self.metrics();
            if check(&text) {
                return text;
            }
            assert!(
                self.is_running(),
                "the bot exited:\n{}",
                self.log().join("\n")
            );
            assert!(
                Instant::now() < deadline,
                "/metrics never matched in {within:?}:\n{text}\nlog:\n{}",
                self.log().join("\n")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM, then the exit status.
    pub fn stop(self) -> std::process::ExitStatus {
        self.bot.stop_within(Duration::from_secs(15))
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

/// A tiny blocking GET of `path` from `host` (`127.0.0.1:port`), so the
/// tests need no HTTP client crate.
pub fn get(host: &str, path: &str) -> std::io::Result<String> {
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
