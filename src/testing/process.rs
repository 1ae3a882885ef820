//! A bot's binary run as a process, as its integration tests run it.
//!
//! A test builds a [`BotCommand`] (the binary with its admin server on a free
//! loopback port and none of the SDK's settings taken from the test's own
//! environment), adds its flags, and [starts](BotCommand::start) it. The
//! [`BotProcess`] reads the bot's log (stderr) line by line on a thread, scrapes
//! its `/metrics` with a tiny blocking HTTP client ([`get`]), waits for log lines
//! or metrics, stops it with SIGTERM and kills it when dropped, even when the
//! test fails.
//!
//! ```no_run
//! use std::time::Duration;
//! use grafolean_collector::testing::process::{BotCommand, TestDir, sample};
//!
//! // In a bot's integration test: env!("CARGO_BIN_EXE_<the bot's binary>").
//! const BIN: &str = "target/debug/my-bot";
//!
//! let dir = TestDir::new("my-bot-example");
//! let config = dir.join("devices.toml");
//! std::fs::write(&config, "").unwrap();
//! let mut command = BotCommand::new(BIN);
//! command.arg("--config").arg(&config);
//! let mut bot = command.start();
//! bot.wait_for_log(Duration::from_secs(10), &["refreshed job configs"]);
//! let text = bot.wait_for_metrics(Duration::from_secs(10), Duration::from_millis(100), |t| {
//!     sample(t, "grafolean_bot_jobs_scheduled").is_some()
//! });
//! assert_eq!(sample(&text, "grafolean_bot_jobs_scheduled"), Some(0.0));
//! assert!(bot.stop().success());
//! ```
//!
//! Signals are sent with the `kill` command (procps or util-linux), so the
//! kit needs no `unsafe` and no extra dependency. Unix only.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use super::{STOP_WITHIN, TEST_LOG_FILTER};

/// The environment variables of the SDK's settings that [`BotCommand::new`]
/// removes from the bot's environment, so that a test never picks up a
/// backend, a token or a shard from the shell that runs it.
pub const SDK_ENV: [&str; 8] = [
    "BACKEND_URL",
    "BOT_TOKEN",
    "BOT_TOKEN_FROM_FILE",
    "JOBS_REFRESH_INTERVAL",
    "MAX_RESPONSE_MIB",
    "SHARD",
    "SHARD_COUNT",
    "RUST_LOG",
];

/// How often the blocking waits ([`BotProcess::wait_for_log`],
/// [`BotProcess::stop_within`]) look again.
const POLL: Duration = Duration::from_millis(50);

/// How long [`BotProcess::stop_within`] and [`BotProcess::exit_within`] wait,
/// once the process exited, for the rest of its log to be read.
const LOG_END_WITHIN: Duration = Duration::from_secs(5);

/// A port that `bind` found free, and that this process has not handed out
/// before: the kernel may give a port just released to the next `bind` to
/// port 0, and two bots of one test then got the same `--listen` (seen in CI:
/// "Address already in use").
fn unused_port(bind: impl Fn() -> std::io::Result<u16>) -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..1_000 {
        let port = bind().expect("a free port on 127.0.0.1");
        if given.insert(port) {
            return port;
        }
    }
    panic!("no port on 127.0.0.1 that this process did not hand out already");
}

/// A TCP port of 127.0.0.1 that was free a moment ago (bound, read and
/// released), and not handed out before by this process, for a bot's
/// `--listen`.
///
/// ```
/// use grafolean_collector::testing::process::free_port;
/// assert_ne!(free_port(), 0);
/// ```
///
/// # Panics
///
/// When no loopback port can be bound.
pub fn free_port() -> u16 {
    unused_port(|| {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
    })
}

/// A UDP port of 127.0.0.1 that was free a moment ago (bound, read and
/// released), and not handed out before by this process, for an agent a
/// test starts, or for one where nothing answers.
///
/// ```
/// use grafolean_collector::testing::process::free_udp_port;
/// assert_ne!(free_udp_port(), 0);
/// ```
///
/// # Panics
///
/// When no loopback port can be bound.
pub fn free_udp_port() -> u16 {
    unused_port(|| {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .map(|a| a.port())
    })
}

/// A bot binary's command line for a test, to add flags and environment to
/// (it dereferences to [`Command`]) and then [`start`](Self::start).
///
/// It has the admin server on `127.0.0.1:`[`port`](Self::port) (a
/// [`free_port`]), none of [`SDK_ENV`] from this process's environment,
/// `RUST_LOG` at [`TEST_LOG_FILTER`] and `NO_COLOR=1` (an uncoloured log). A test that sets
/// any of these sets it after `new`.
///
/// ```no_run
/// use grafolean_collector::testing::process::BotCommand;
/// let mut command = BotCommand::new("target/debug/my-bot");
/// command
///     .env("BACKEND_URL", "http://127.0.0.1:9/api")
///     .env("BOT_TOKEN", "00000000-0000-0000-0000-000000000000")
///     .env_remove("MY_BOT_SETTING");
/// let bot = command.start();
/// assert_eq!(bot.admin(), format!("127.0.0.1:{}", bot.port()));
/// ```
#[derive(Debug)]
pub struct BotCommand {
    command: Command,
    port: u16,
}

impl BotCommand {
    /// The binary `bin` (in a bot's integration tests,
    /// `env!("CARGO_BIN_EXE_<name>")`) on a free port.
    pub fn new(bin: impl AsRef<OsStr>) -> Self {
        Self::with_command(Command::new(bin))
    }

    /// The binary `bin` run through `wrapper`, a program and its arguments
    /// that end by executing their last argument (such as
    /// `["prlimit", "--nofile=64:128"]`); the process id is then the
    /// wrapper's, which becomes the bot when it executes it.
    ///
    /// ```no_run
    /// use grafolean_collector::testing::process::BotCommand;
    /// let bot = BotCommand::wrapped(&["prlimit", "--nofile=64:128"], "target/debug/my-bot").start();
    /// ```
    ///
    /// # Panics
    ///
    /// When `wrapper` is empty.
    pub fn wrapped(wrapper: &[&str], bin: impl AsRef<OsStr>) -> Self {
        let (program, args) = wrapper.split_first().expect("a wrapper program");
        let mut command = Command::new(program);
        command.args(args).arg(bin);
        Self::with_command(command)
    }

    fn with_command(mut command: Command) -> Self {
        let port = free_port();
        command.args(["--listen", &format!("127.0.0.1:{port}")]);
        for name in SDK_ENV {
            command.env_remove(name);
        }
        command
            .env("RUST_LOG", TEST_LOG_FILTER)
            .env("NO_COLOR", "1");
        Self { command, port }
    }

    /// The admin server's port.
    ///
    /// ```no_run
    /// use grafolean_collector::testing::process::BotCommand;
    /// let command = BotCommand::new("target/debug/my-bot");
    /// println!("the bot will listen on 127.0.0.1:{}", command.port());
    /// ```
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts the process: stdin and stdout null, stderr (the log) read into
    /// the [`BotProcess`]'s log on a thread.
    ///
    /// ```no_run
    /// use grafolean_collector::testing::process::BotCommand;
    /// let mut bot = BotCommand::new("target/debug/my-bot").start();
    /// assert!(bot.is_running());
    /// ```
    ///
    /// # Panics
    ///
    /// When the binary cannot be started.
    pub fn start(mut self) -> BotProcess {
        let mut child = self
            .command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", self.command.get_program()));
        let log = Arc::new(Mutex::new(Vec::new()));
        let ended = Arc::new(AtomicBool::new(false));
        let stderr = child.stderr.take().expect("a piped stderr");
        let (sink, end) = (log.clone(), ended.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(line);
            }
            end.store(true, Ordering::Release);
        });
        BotProcess {
            child,
            admin: format!("127.0.0.1:{}", self.port),
            port: self.port,
            log,
            ended,
        }
    }
}

impl Deref for BotCommand {
    type Target = Command;

    fn deref(&self) -> &Command {
        &self.command
    }
}

impl DerefMut for BotCommand {
    fn deref_mut(&mut self) -> &mut Command {
        &mut self.command
    }
}

/// A running bot process (see [`BotCommand::start`]). Killed when dropped.
///
/// Its log is what it wrote to stderr, one line each, read on a thread as it
/// comes. The blocking waits fail the test (with the log) when the process
/// exits or the time is up; [`exit_within`](Self::exit_within) and
/// [`wait_until`] wait on tokio's clock, for tests whose fake backend runs on
/// the test's runtime.
///
/// ```no_run
/// use std::time::Duration;
/// use grafolean_collector::testing::process::BotCommand;
/// let mut bot = BotCommand::new("target/debug/my-bot").start();
/// bot.wait_for_log_lines(Duration::from_secs(20), &["refreshed job configs"], 2);
/// assert_eq!(bot.count(&["WARN"]), 0, "{:#?}", bot.log());
/// let status = bot.stop();
/// assert!(status.success(), "{status:?}\n{}", bot.log().join("\n"));
/// ```
#[derive(Debug)]
pub struct BotProcess {
    child: Child,
    admin: String,
    port: u16,
    log: Arc<Mutex<Vec<String>>>,
    /// Set by the log thread when stderr closed.
    ended: Arc<AtomicBool>,
}

impl BotProcess {
    /// The process id.
    ///
    /// ```no_run
    /// use grafolean_collector::testing::process::BotCommand;
    /// let bot = BotCommand::new("target/debug/my-bot").start();
    /// let stat = std::fs::read_to_string(format!("/proc/{}/stat", bot.pid()));
    /// ```
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The admin server's address, `127.0.0.1:port`, for [`get`].
    ///
    /// ```no_run
    /// use grafolean_collector::testing::process::{BotCommand, get};
    /// let bot = BotCommand::new("target/debug/my-bot").start();
    /// let live = get(bot.admin(), "/live");
    /// ```
    pub fn admin(&self) -> &str {
        &self.admin
    }

    /// The admin server's port.
    ///
    /// ```no_run
    /// use grafolean_collector::testing::process::BotCommand;
    /// let bot = BotCommand::new("target/debug/my-bot").start();
    /// let target = format!("127.0.0.1:{}", bot.port());
    /// ```
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The log so far, one line each.
    ///
    /// ```no_run
    /// use grafolean_collector::testing::process::BotCommand;
    /// let bot = BotCommand::new("target/debug/my-bot").start();
    /// println!("{}", bot.log().join("\n"));
    /// ```
    pub fn log(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// How many log lines contain every one of `needles`.
    ///
    /// ```no_run
    /// use grafolean_collector::testing::process::BotCommand;
    /// let bot = BotCommand::new("target/debug/my-bot").start();
    /// assert_eq!(bot.count(&["WARN", "entity_id=7"]), 0);
    /// ```
    pub fn count(&self, needles: &[&str]) -> usize {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .count()
    }

    /// Whether the process is still running.
    ///
    /// ```no_run
    /// use grafolean_collector::testing::process::BotCommand;
    /// let mut bot = BotCommand::new("target/debug/my-bot").start();
    /// assert!(bot.is_running(), "{:#?}", bot.log());
    /// ```
    pub fn is_running(&mut self) -> bool {
        self.exit_status().is_none()
    }

    /// The exit status, once the process exited (it does not wait).
    ///
    /// ```no_run
    /// use grafolean_collector::testing::process::BotCommand;
    /// let mut bot = BotCommand::new("target/debug/my-bot").start();
    /// assert_eq!(bot.exit_status(), None);
    /// ```
    ///
    /// # Panics
    ///
    /// When the process's state cannot be read.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("the bot's exit status")
    }

    /// Sends `signal` (as the `kill` command names it: `-TERM`, `-INT`,
    /// `-HUP`) to the process; returns whether `kill` succeeded.
    ///
    /// ```no_run
    /// use grafolean_collector::testing::process::BotCommand;
    /// let bot = BotCommand::new("target/debug/my-bot").start();
    /// assert!(bot.signal("-INT"));
    /// ```
    pub fn signal(&self, signal: &str) -> bool {
        Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Waits until the admin server answers `GET /ready` with 200.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use grafolean_collector::testing::process::BotCommand;
    /// let mut bot = BotCommand::new("target/debug/my-bot").start();
    /// bot.wait_ready(Duration::from_secs(20));
    /// ```
    ///
    /// # Panics
    ///
    /// When the process exits first, or `within` passes (with the log).
    pub fn wait_ready(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        while !request(&self.admin, "/ready").is_ok_and(|answer| status(&answer) == 200) {
            self.assert_running();
            assert!(
                Instant::now() < deadline,
                "the bot never became ready in {within:?}:\n{}",
                self.log().join("\n")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `GET /metrics` from the admin server, or an empty string while the
    /// server is not up.
    ///
    /// ```no_run
    /// use grafolean_collector::testing::process::{BotCommand, sample};
    /// let bot = BotCommand::new("target/debug/my-bot").start();
    /// let scheduled = sample(&bot.metrics(), "grafolean_bot_jobs_scheduled");
    /// ```
    pub fn metrics(&self) -> String {
        get(&self.admin, "/metrics").unwrap_or_default()
    }

    /// Polls `/metrics` every `every` until `check` accepts it, and returns
    /// that text.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use grafolean_collector::testing::process::{BotCommand, sample};
    /// let mut bot = BotCommand::new("target/debug/my-bot").start();
    /// let ok = r#"grafolean_bot_runs_total{outcome="ok"}"#;
    /// bot.wait_for_metrics(Duration::from_secs(20), Duration::from_millis(100), |t| {
    ///     sample(t, ok).unwrap_or(0.0) >= 2.0
    /// });
    /// ```
    ///
    /// # Panics
    ///
    /// When the process exits first, or `within` passes (with the last page
    /// and the log).
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
            self.assert_running();
            assert!(
                Instant::now() < deadline,
                "/metrics never matched in {within:?}:\n{text}\nlog:\n{}",
                self.log().join("\n")
            );
            std::thread::sleep(every);
        }
    }

    /// Waits until a log line contains every one of `needles`.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use grafolean_collector::testing::process::BotCommand;
    /// let mut bot = BotCommand::new("target/debug/my-bot").start();
    /// bot.wait_for_log(Duration::from_secs(10), &["refreshed job configs"]);
    /// ```
    ///
    /// # Panics
    ///
    /// When the process exits first, or `within` passes (with the log).
    pub fn wait_for_log(&mut self, within: Duration, needles: &[&str]) {
        self.wait_for_log_lines(within, needles, 1);
    }

    /// Waits until `n` log lines contain every one of `needles`.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use grafolean_collector::testing::process::BotCommand;
    /// let mut bot = BotCommand::new("target/debug/my-bot").start();
    /// bot.wait_for_log_lines(Duration::from_secs(20), &["refreshed job configs"], 3);
    /// ```
    ///
    /// # Panics
    ///
    /// When the process exits first, or `within` passes (with the log).
    pub fn wait_for_log_lines(&mut self, within: Duration, needles: &[&str], n: usize) {
        let deadline = Instant::now() + within;
        while self.count(needles) < n {
            self.assert_running();
            assert!(
                Instant::now() < deadline,
                "no log line with {needles:?} in {within:?}:\n{}",
                self.log().join("\n")
            );
            std::thread::sleep(POLL);
        }
    }

    /// SIGTERM, then the exit status, at most [`STOP_WITHIN`] later. See
    /// [`stop_within`](Self::stop_within).
    ///
    /// ```no_run
    /// use grafolean_collector::testing::process::BotCommand;
    /// let mut bot = BotCommand::new("target/debug/my-bot").start();
    /// assert!(bot.stop().success(), "{:#?}", bot.log());
    /// ```
    ///
    /// # Panics
    ///
    /// When the process does not exit in time (with the log).
    pub fn stop(&mut self) -> ExitStatus {
        self.stop_within(STOP_WITHIN)
    }

    /// SIGTERM, then the exit status, at most `within` later. The log is
    /// complete afterwards: it waits (briefly) for the last lines to be read.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use grafolean_collector::testing::process::BotCommand;
    /// let mut bot = BotCommand::new("target/debug/my-bot").start();
    /// let status = bot.stop_within(Duration::from_secs(30));
    /// assert_eq!(status.code(), Some(0));
    /// ```
    ///
    /// # Panics
    ///
    /// When the process does not exit in time (with the log).
    pub fn stop_within(&mut self, within: Duration) -> ExitStatus {
        self.signal("-TERM");
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.exit_status() {
                self.wait_for_log_end();
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the bot did not stop in {within:?}:\n{}",
                self.log().join("\n")
            );
            std::thread::sleep(POLL);
        }
    }

    /// Waits, on tokio's clock, for the process to exit by itself (after a
    /// [`signal`](Self::signal), say), and returns its status; the log is
    /// complete afterwards. The test's runtime keeps running meanwhile (a
    /// fake backend on it keeps serving).
    ///
    /// ```no_run
    /// # #[tokio::main] async fn main() {
    /// use std::time::Duration;
    /// use grafolean_collector::testing::process::BotCommand;
    /// let mut bot = BotCommand::new("target/debug/my-bot").start();
    /// assert!(bot.signal("-INT"));
    /// let status = bot.exit_within(Duration::from_secs(15)).await;
    /// assert_eq!(status.code(), Some(0), "{}", bot.log().join("\n"));
    /// # }
    /// ```
    ///
    /// # Panics
    ///
    /// When the process is still running after `within`.
    pub async fn exit_within(&mut self, within: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.exit_status() {
                self.wait_for_log_end();
                return status;
            }
            assert!(
                started.elapsed() < within,
                "the bot did not exit within {within:?}:\n{}",
                self.log().join("\n")
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Fails the test, with the exit status and the log, when the process exited.
    fn assert_running(&mut self) {
        if let Some(status) = self.exit_status() {
            self.wait_for_log_end();
            panic!("the bot exited: {status}\n{}", self.log().join("\n"));
        }
    }

    /// Once the process exited: waits (at most [`LOG_END_WITHIN`]) until
    /// the log thread read the last line (stderr closes with the process,
    /// unless a child of the bot holds it).
    fn wait_for_log_end(&self) {
        let deadline = Instant::now() + LOG_END_WITHIN;
        while !self.ended.load(Ordering::Acquire) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for BotProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits (at most `within`) until `ready` holds, looking every 100 ms on
/// tokio's clock, so that what runs on the test's runtime (a fake backend)
/// keeps running.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::time::{Duration, Instant};
/// use grafolean_collector::testing::process::wait_until;
/// let start = Instant::now();
/// wait_until(Duration::from_secs(5), "300 ms to pass", || {
///     start.elapsed() >= Duration::from_millis(300)
/// })
/// .await;
/// # }
/// ```
///
/// # Panics
///
/// When `within` passes first, naming `what`.
pub async fn wait_until(within: Duration, what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A tiny blocking `GET path` from `host` (`127.0.0.1:port`), HTTP/1.1 with
/// `Connection: close`, returning the body (everything after the headers),
/// so that tests of a bot's process need no HTTP client. It reads at most
/// 5 s. It does not decode a chunked or compressed body.
///
/// ```no_run
/// use grafolean_collector::testing::process::get;
/// let text = get("127.0.0.1:9090", "/metrics").unwrap_or_default();
/// ```
///
/// # Errors
///
/// When the connection or the read fails.
pub fn get(host: &str, path: &str) -> std::io::Result<String> {
    Ok(request(host, path)?
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default())
}

/// The whole answer to `GET path` from `host`, status line and headers
/// included (see [`get`]).
fn request(host: &str, path: &str) -> std::io::Result<String> {
    let mut s = std::net::TcpStream::connect(host)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// The status code of an HTTP/1.1 answer (0 when it has none).
fn status(answer: &str) -> u16 {
    answer.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// The value of the first sample of `series` (a metric's name with its
/// labels, exactly as the page writes them) in a Prometheus text page, if
/// there is one.
///
/// ```
/// use grafolean_collector::testing::process::sample;
/// let page = "# TYPE up gauge\nup 1\nruns_total{outcome=\"ok\"} 12\n";
/// assert_eq!(sample(page, "up"), Some(1.0));
/// assert_eq!(sample(page, r#"runs_total{outcome="ok"}"#), Some(12.0));
/// assert_eq!(sample(page, "runs_total"), None);
/// ```
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
///
/// ```
/// use grafolean_collector::testing::process::sample_with;
/// let page = "c{entity=\"1\",descr=\"a\"} 5\nc{descr=\"b\",entity=\"2\"} 7\n";
/// assert_eq!(sample_with(page, "c{", &[r#"entity="2""#, r#"descr="b""#]), Some(7.0));
/// assert_eq!(sample_with(page, "c{", &[r#"entity="3""#]), None);
/// ```
pub fn sample_with(text: &str, prefix: &str, with: &[&str]) -> Option<f64> {
    text.lines().find_map(|l| {
        if !l.starts_with(prefix) || !with.iter().all(|w| l.contains(w)) {
            return None;
        }
        l.rsplit_once(' ')?.1.parse().ok()
    })
}

/// A fresh directory for one test's files, removed (with everything in it)
/// when dropped.
///
/// ```
/// use grafolean_collector::testing::process::TestDir;
/// let dir = TestDir::new("example");
/// std::fs::write(dir.join("b.toml"), "").unwrap();
/// std::fs::write(dir.join("a.json"), "{}").unwrap();
/// assert_eq!(dir.names(), ["a.json", "b.toml"]);
/// let path = dir.path().to_path_buf();
/// drop(dir);
/// assert!(!path.exists());
/// ```
#[derive(Debug)]
pub struct TestDir(PathBuf);

impl TestDir {
    /// Creates `grafolean-test-<name>-<pid>-<n>` in the system's temporary
    /// directory (empty: a stale one left by an earlier process with the
    /// same pid is removed first).
    ///
    /// ```
    /// use grafolean_collector::testing::process::TestDir;
    /// let (a, b) = (TestDir::new("same"), TestDir::new("same"));
    /// assert_ne!(a.path(), b.path());
    /// ```
    ///
    /// # Panics
    ///
    /// When the directory cannot be created.
    pub fn new(name: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "grafolean-test-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        Self(dir)
    }

    /// The directory.
    ///
    /// ```
    /// use grafolean_collector::testing::process::TestDir;
    /// assert!(TestDir::new("path").path().is_dir());
    /// ```
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// A path inside it.
    ///
    /// ```
    /// use grafolean_collector::testing::process::TestDir;
    /// let dir = TestDir::new("join");
    /// assert_eq!(dir.join("x.toml").parent(), Some(dir.path()));
    /// ```
    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.0.join(name)
    }

    /// The names of the files in it, sorted.
    ///
    /// ```
    /// use grafolean_collector::testing::process::TestDir;
    /// assert!(TestDir::new("names").names().is_empty());
    /// ```
    ///
    /// # Panics
    ///
    /// When the directory cannot be read.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.0)
            .expect("the test directory")
            .map(|e| {
                e.expect("a directory entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        names.sort();
        names
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Bumps a file's modification time every 200 ms while it lives, so that
/// every config refresh reads the file again (a refresh does nothing with a
/// file that did not change).
///
/// ```
/// use std::time::Duration;
/// use grafolean_collector::testing::process::{TestDir, Toucher};
/// let dir = TestDir::new("toucher");
/// let file = dir.join("devices.toml");
/// std::fs::write(&file, "").unwrap();
/// let before = std::fs::metadata(&file).unwrap().modified().unwrap();
/// let touching = Toucher::start(file.clone());
/// std::thread::sleep(Duration::from_millis(300));
/// drop(touching);
/// assert!(std::fs::metadata(&file).unwrap().modified().unwrap() > before);
/// ```
#[derive(Debug)]
pub struct Toucher(Arc<AtomicBool>);

impl Toucher {
    /// Starts touching `path` (a missing file is skipped until it exists).
    ///
    /// ```no_run
    /// use grafolean_collector::testing::process::Toucher;
    /// let _touching = Toucher::start("/tmp/devices.toml".into());
    /// ```
    pub fn start(path: PathBuf) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                if let Ok(f) = std::fs::File::options().write(true).open(&path) {
                    let _ = f.set_modified(SystemTime::now());
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        Self(stop)
    }
}

impl Drop for Toucher {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}
