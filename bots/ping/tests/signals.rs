//! The `grafolean-ping-bot` binary as an operator runs it: `--help` needs no
//! privileges, invalid settings fail before anything starts, and SIGTERM shuts
//! it down gracefully (a second signal exits at once).

use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use common::BIN;
use common::hanging::Hanging;
use grafolean_collector::testing::process::{BotCommand, BotProcess, TestDir, free_port};

/// Starts the bot standalone and waits until its admin server answers `/ready`.
fn start() -> BotProcess {
    start_command(BotCommand::new(BIN))
}

/// [`start`] with extra arguments for the bot.
fn start_with_args(args: &[&str]) -> BotProcess {
    let mut command = BotCommand::new(BIN);
    command.args(args);
    start_command(command)
}

/// [`start`], run through `prefix` (such as `prlimit --nofile=…`).
fn start_with(prefix: &[&str]) -> BotProcess {
    start_command(BotCommand::wrapped(prefix, BIN))
}

fn start_command(mut command: BotCommand) -> BotProcess {
    // The log's colours follow the terminal (stderr is a pipe here), not
    // the kit's NO_COLOR.
    command.env_remove("NO_COLOR");
    let mut bot = command.start();
    bot.wait_ready(Duration::from_secs(20));
    bot
}

#[test]
fn sigterm_shuts_down_gracefully() {
    let mut bot = start();
    let status = bot.stop_within(Duration::from_secs(15));
    assert!(status.success(), "{status:?}");
    let log = bot.log().join("\n");
    assert!(log.contains("shutting down"), "{log}");
    assert!(log.contains("stopped"), "{log}");
    // stderr is a pipe here, as when it is redirected to a file or journald:
    // no colour escapes.
    assert!(
        !log.contains('\x1b'),
        "a redirected log holds escape codes:\n{log:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once() {
    // The backend never answers, so the first SIGINT's drain is blocked for
    // its whole deadline (10 s): only the second SIGINT can end it early.
    let mut bot = Hanging::start().await;
    bot.signal("-INT");
    tokio::time::sleep(Duration::from_millis(500)).await;
    bot.signal("-INT");
    let (status, log) = bot.exit_within(Duration::from_secs(5)).await;
    assert_eq!(status.code(), Some(130), "128 + SIGINT:\n{log}");
    assert!(log.contains("second signal"), "{log}");
}

#[test]
fn help_needs_no_privileges_and_bad_settings_fail_early() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(
        help.contains("ICMP ping bot for Grafolean") && !help.contains("SDK for writing"),
        "--help must describe the bot, not the SDK:\n{help}"
    );
    for flag in [
        "--backend-url",
        "--bot-token-file",
        "--jobs-refresh-interval",
        "--listen",
        "--config",
        "--once",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
    assert!(
        help.contains("[default: 127.0.0.1:9742]"),
        "--help names the bot's port:\n{help}"
    );
    let out = Command::new(BIN)
        .env("BACKEND_URL", "http://127.0.0.1:9/api")
        .env_remove("BOT_TOKEN")
        .env_remove("BOT_TOKEN_FROM_FILE")
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "a usage error exits with 2");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("BOT_TOKEN"), "{err}");
    // A token that is not UUID-shaped is refused before anything starts,
    // naming where it came from and never echoing it.
    const BAD: &str = "not-a-grafolean-token-0123456789";
    let dir = std::env::temp_dir().join(format!("ping-bad-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("token");
    std::fs::write(&file, format!("{BAD}\n")).unwrap();
    for (env, value, names) in [
        ("BOT_TOKEN", BAD.to_string(), "BOT_TOKEN".to_string()),
        (
            "BOT_TOKEN_FROM_FILE",
            file.display().to_string(),
            file.display().to_string(),
        ),
    ] {
        let out = Command::new(BIN)
            .env("BACKEND_URL", "http://127.0.0.1:9/api")
            .env_remove("BOT_TOKEN")
            .env_remove("BOT_TOKEN_FROM_FILE")
            .env(env, &value)
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", free_port()))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{env}: {err}");
        assert!(err.contains(&names) && err.contains("UUID"), "{env}: {err}");
        assert!(!err.contains(BAD), "{env}: the token is echoed: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{env}: one line: {err}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// `GET /live` from `addr` (`127.0.0.1:port`) on a new connection, with a
/// deadline.
fn live(addr: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if write!(
        s,
        "GET /live HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .is_err()
    {
        return false;
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.starts_with("HTTP/1.1 200")
}

#[test]
fn live_answers_with_more_idle_clients_than_the_bot_has_files() {
    // The bot may open 128 files (soft 64, raised to the hard 128 at start);
    // 300 clients connect and say nothing.
    let mut bot = start_with(&["prlimit", "--nofile=64:128"]);
    let addr = bot.admin().to_string();
    let idle: Vec<std::net::TcpStream> = (0..300)
        .filter_map(|_| std::net::TcpStream::connect(&addr).ok())
        .collect();
    assert!(idle.len() >= 200, "only {} connected", idle.len());
    for i in 0..10 {
        assert!(
            live(&addr),
            "/live did not answer (try {i}) with {} idle clients",
            idle.len()
        );
    }
    // An idle client is closed after the header-read timeout (10 s).
    let mut last = std::net::TcpStream::connect(&addr).unwrap();
    last.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 1];
    let n = std::io::Read::read(&mut last, &mut buf).unwrap_or(0);
    assert_eq!(n, 0, "the idle connection got data instead of being closed");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    let status = bot.stop_within(Duration::from_secs(15));
    assert!(status.success(), "{status:?}");
    let log = bot.log().join("\n");
    assert!(log.contains("raised the soft open-files limit"), "{log}");
}

/// Reads from `s` until the server closes it (or `within` passes), writing
/// `trickle` every 5 s meanwhile; returns what was read and when it closed.
fn read_until_closed(
    mut s: std::net::TcpStream,
    trickle: Option<&str>,
    within: Duration,
) -> (String, Option<Duration>) {
    use std::io::{Read, Write};
    let started = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut got = Vec::new();
    let mut next_write = started + Duration::from_secs(5);
    let closed = loop {
        if started.elapsed() > within {
            break None;
        }
        if let Some(line) = trickle {
            if Instant::now() >= next_write {
                next_write += Duration::from_secs(5);
                if s.write_all(line.as_bytes()).is_err() {
                    break Some(started.elapsed());
                }
            }
        }
        let mut buf = [0u8; 4096];
        match s.read(&mut buf) {
            Ok(0) => break Some(started.elapsed()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break Some(started.elapsed()),
        }
    };
    (String::from_utf8_lossy(&got).into_owned(), closed)
}

#[test]
fn a_slow_client_and_an_idle_keep_alive_connection_are_closed_after_10_s() {
    let mut bot = start();
    let addr = bot.admin().to_string();
    let within = Duration::from_secs(18);
    // Slowloris: a request head that never ends, one header line every 5 s.
    let slow = {
        let addr = addr.clone();
        std::thread::spawn(move || {
            use std::io::Write;
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            write!(s, "GET /live HTTP/1.1\r\nHost: {addr}\r\n").unwrap();
            read_until_closed(s, Some("X-Slow: 1\r\n"), within)
        })
    };
    // Keep-alive: one request answered, then nothing.
    let idle = std::thread::spawn(move || {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        write!(s, "GET /live HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
        read_until_closed(s, None, within)
    });
    for (what, thread) in [("slow client", slow), ("idle keep-alive", idle)] {
        let (got, closed) = thread.join().unwrap();
        let closed = closed.unwrap_or_else(|| panic!("{what}: not closed in {within:?}: {got:?}"));
        // The header-read timeout is 10 s (the slow client's lines at 5 s
        // and 10 s do not extend it); a little slack for a loaded machine.
        assert!(
            closed >= Duration::from_secs(9) && closed < Duration::from_secs(15),
            "{what}: closed after {closed:?}"
        );
        match what {
            "slow client" => assert!(!got.contains(" 200 "), "{what} was answered: {got:?}"),
            _ => assert!(got.starts_with("HTTP/1.1 200"), "{what}: {got:?}"),
        }
    }
    assert!(live(bot.admin()), "/live still answers");
    let status = bot.stop_within(Duration::from_secs(15));
    assert!(status.success(), "{status:?}");
}

#[test]
fn sighup_rereads_the_standalone_config() {
    let dir = TestDir::new("ping-hup");
    let file = dir.join("targets.toml");
    let entity = |id: u32| {
        format!(
            "[[entity]]\nid = {id}\nname = \"t{id}\"\ndetails = {{ ipv4 = \"127.0.0.1\" }}\ncredential = {{ n_packets = 1 }}\nsensors = [{{ interval = 2 }}]\n"
        )
    };
    std::fs::write(&file, entity(1)).unwrap();
    let mut bot = start_with_args(&["--config", file.to_str().unwrap()]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !bot.metrics().contains("entity=\"1\"") {
        assert!(Instant::now() < deadline, "entity 1 never reported");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The refresh interval is 120 s: only SIGHUP can make the bot see entity 2 now.
    std::fs::write(&file, entity(1) + &entity(2)).unwrap();
    assert!(bot.signal("-HUP"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !bot.metrics().contains("entity=\"2\"") {
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not reload the config"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = bot.stop_within(Duration::from_secs(15));
    assert!(status.success(), "SIGHUP must not stop the bot: {status:?}");
    let log = bot.log().join("\n");
    assert!(log.contains("SIGHUP received"), "{log}");
}
