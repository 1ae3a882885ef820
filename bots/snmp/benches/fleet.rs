//! The SNMP bot polling a fleet: many entities with Grafolean's three
//! default sensors, against one real snmpd on loopback (see
//! `tests/common/mod.rs`), some of them optionally on a port that reads and
//! never answers. Figures in BENCHMARKS.md.
//!
//! ```text
//! cargo bench -p grafolean-snmp-bot --bench fleet -- [--entities 10000] [--dead-every 0]
//!     [--seconds 600] [--warmup 60] [--interval 60] [--scrape-every 15] [--bot <binary>]
//!     [--backend]
//! cargo bench -p grafolean-snmp-bot --bench fleet -- --startup [--entities 10000] [--bot <binary>]
//! ```
//!
//! With `--backend` the bot runs against the project's fake Grafolean (a
//! real HTTP server in this process, on loopback): one account, its account
//! bot, the same entities, credential and sensors as Grafolean's API gives
//! them; the bot fetches its configs every 120 s, sends its values by PUT,
//! and runs the interfaces job every 300 s (refused by a 403, as Grafolean
//! grants an account bot only GET on entities). The fake's CPU is this
//! process's, not the bot's.
//!
//! The release binary runs standalone (values to `/metrics` only) from a
//! generated config: entity `i` polls the agent with v2c, timeout 1 s and 2
//! retries; with `--dead-every k`, every `k`-th entity polls a UDP port that
//! this benchmark holds open and never answers. After the warm-up, a window
//! of `--seconds` between two scrapes of `/metrics` gives the runs by
//! outcome and the SDK's firing lateness histogram (buckets doubling from
//! 0.1 ms, so a percentile is given as its bucket's upper bound), and two
//! reads of `/proc/<pid>/stat` give the bot's and snmpd's CPU. In the
//! window, `/metrics` is scraped every `--scrape-every` seconds as
//! Prometheus would (gzip accepted) and the bot's RSS is read every second.
//!
//! With `--startup` nothing is polled: the same file, its sensors every
//! hour (so that a few entities fire in the first seconds), is read by the
//! bot, and its peak memory while it starts (`VmHWM` when `/ready` answers
//! 200) is printed beside its RSS 10 s later and the file's size.
//!
//! `--bot` runs another build (a copy, since `target/` may be rebuilt while
//! the benchmark runs). Needs Debian's snmpd (the benchmark starts it on a
//! free port, as `nobody` when run as root).

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{DEFAULT_SENSORS, Snmpd, steal};
use grafolean_collector::testing::process::{free_port, get as get_path};
use grafolean_collector::testing::{
    FakeAccount, FakeCredential, FakeEntity, FakeGrafolean, FakeSensor, FakeSensorRef,
    ProtocolConfig,
};

const BOT: &str = env!("CARGO_BIN_EXE_grafolean-snmp-bot");

struct Args {
    entities: usize,
    dead_every: usize,
    seconds: u64,
    warmup: u64,
    interval: u64,
    scrape_every: u64,
    bot: String,
    backend: bool,
    startup: bool,
}

fn parse_args() -> Args {
    let mut args = Args {
        entities: 10_000,
        dead_every: 0,
        seconds: 600,
        warmup: 60,
        interval: 60,
        scrape_every: 15,
        bot: BOT.to_string(),
        backend: false,
        startup: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--entities" => args.entities = value().parse().unwrap(),
            "--dead-every" => args.dead_every = value().parse().unwrap(),
            "--seconds" => args.seconds = value().parse().unwrap(),
            "--warmup" => args.warmup = value().parse().unwrap(),
            "--interval" => args.interval = value().parse().unwrap(),
            "--scrape-every" => args.scrape_every = value().parse().unwrap(),
            "--bot" => args.bot = value(),
            "--backend" => args.backend = true,
            "--startup" => args.startup = true,
            _ => {} // `cargo bench` passes `--bench`.
        }
    }
    assert!(args.entities <= 100_000, "at most 100,000 entities");
    args
}

/// The address of entity `i`: the agent, or the silent port.
fn address<'a>(args: &Args, i: usize, live: &'a str, dead: &'a str) -> &'a str {
    if args.dead_every > 0 && i % args.dead_every == args.dead_every - 1 {
        dead
    } else {
        live
    }
}

/// The fleet in a fake Grafolean: its URL and the bot's token, and the
/// account its values go to.
fn backend(args: &Args, live: &str, dead: &str) -> (FakeGrafolean, String, u64) {
    let fake = runtime().block_on(FakeGrafolean::start());
    let account = fake.put_account(FakeAccount::new("fleet"));
    let bot = fake.add_account_bot(account, "snmp");
    let credential = fake.put_credential(FakeCredential::new(
        account,
        "snmp",
        serde_json::json!({"version": "snmpv2c", "snmpv12_community": "public", "timeout": 1, "retries": 2}),
    ));
    let sensors: Vec<u64> = DEFAULT_SENSORS
        .into_iter()
        .map(|(a, b, expression, path)| {
            let mut sensor = FakeSensor::new(account, "snmp", Some(args.interval as u32));
            sensor.details = serde_json::json!({
                "oids": [{"oid": a, "fetch_method": "walk"}, {"oid": b, "fetch_method": "walk"}],
                "expression": expression, "output_path": path
            });
            fake.put_sensor(sensor)
        })
        .collect();
    for i in 0..args.entities {
        fake.put_entity(
            FakeEntity::device(account, format!("device-{i}"), address(args, i, live, dead))
                .with_protocol(
                    "snmp",
                    ProtocolConfig {
                        credential,
                        sensors: sensors
                            .iter()
                            .map(|&sensor| FakeSensorRef {
                                sensor,
                                interval: Some(args.interval as u32),
                            })
                            .collect(),
                        bot: Some(bot.id),
                    },
                ),
        );
    }
    let url = fake.url();
    (fake, format!("{url}\n{}", bot.token), account)
}

/// The runtime the fake Grafolean serves on, for the whole run.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    })
}

fn config(args: &Args, live: &str, dead: &str) -> String {
    let sensors: String = DEFAULT_SENSORS
        .iter()
        .enumerate()
        .map(|(i, (a, b, expression, path))| {
            format!(
                "[[entity.sensors]]\nid = {}\ninterval = {}\ndetails = {{ oids = [{{ oid = \"{a}\", fetch_method = \"walk\" }}, {{ oid = \"{b}\", fetch_method = \"walk\" }}], expression = \"{expression}\", output_path = \"{path}\" }}\n\n",
                i + 1,
                args.interval
            )
        })
        .collect();
    let mut toml = String::new();
    for i in 0..args.entities {
        let addr = address(args, i, live, dead);
        toml.push_str(&format!(
            "[[entity]]\nid = {}\nname = \"device-{i}\"\ndetails = {{ ipv4 = \"{addr}\" }}\n\
             credential = {{ version = \"snmpv2c\", snmpv12_community = \"public\", timeout = 1, retries = 2 }}\n{sensors}\n",
            i + 1
        ));
    }
    toml
}

/// CPU seconds (user + system) of a process.
fn cpu_s(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rfind(')')
        .map(|i| {
            let f: Vec<&str> = stat[i + 2..].split(' ').collect();
            (f[11].parse::<u64>().unwrap_or(0) + f[12].parse::<u64>().unwrap_or(0)) as f64 / 100.0
        })
        .unwrap_or(0.0)
}

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn get(port: u16, gzip: bool) -> String {
    let fetch = || -> std::io::Result<String> {
        let mut s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
        let accept = if gzip {
            "Accept-Encoding: gzip\r\n"
        } else {
            ""
        };
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n{accept}Connection: close\r\n\r\n"
        )?;
        let mut body = Vec::new();
        s.read_to_end(&mut body)?;
        Ok(if gzip {
            String::new()
        } else {
            String::from_utf8_lossy(&body).into_owned()
        })
    };
    fetch().unwrap_or_default()
}

/// The sum of every sample of `name` whose line contains `with`.
fn sum(text: &str, name: &str, with: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
                && l.contains(with)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `(le, cumulative count)` of histogram `name`.
fn buckets(text: &str, name: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{");
    let mut out: Vec<(f64, f64)> = text
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, l.rsplit(' ').next()?.parse().ok()?))
        })
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// The upper bound of the bucket holding quantile `q` of the window.
fn quantile(before: &[(f64, f64)], after: &[(f64, f64)], q: f64) -> f64 {
    let delta: Vec<(f64, f64)> = after
        .iter()
        .map(|&(le, n)| {
            let old = before.iter().find(|(l, _)| *l == le).map_or(0.0, |x| x.1);
            (le, n - old)
        })
        .collect();
    let total = delta.last().map_or(0.0, |x| x.1);
    delta
        .iter()
        .find(|(_, n)| *n >= q * total)
        .map_or(f64::NAN, |x| x.0)
}

fn ms(bound: f64) -> String {
    if bound.is_infinite() {
        "> 3.3 s".into()
    } else {
        format!("≤ {:.1} ms", bound * 1e3)
    }
}

/// `--startup`: the peak memory of reading the file, against the RSS after.
fn startup(mut args: Args) {
    args.interval = 3600;
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead = silent.local_addr().unwrap().to_string();
    let dir = std::env::temp_dir().join(format!("grafolean-snmp-startup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config_path = dir.join("fleet.toml");
    std::fs::write(&config_path, config(&args, &dead, &dead)).unwrap();
    let bytes = std::fs::metadata(&config_path).map_or(0, |m| m.len());
    let port = free_port();
    let mut bot = Command::new(&args.bot)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--config")
        .arg(&config_path)
        .env_remove("BACKEND_URL")
        .env_remove("BOT_TOKEN")
        .env_remove("BOT_TOKEN_FROM_FILE")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = bot.id();
    let started = Instant::now();
    let ready = loop {
        let answer = get_path(&format!("127.0.0.1:{port}"), "/ready").unwrap_or_default();
        if answer == "ready\n" {
            break started.elapsed();
        }
        assert!(bot.try_wait().unwrap().is_none(), "the bot exited early");
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "not ready in 300 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let peak = status_kib(pid, "VmHWM:");
    std::thread::sleep(Duration::from_secs(10));
    let after = status_kib(pid, "VmRSS:");
    let _ = bot.kill();
    let _ = bot.wait();
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "startup: {} entities x 3 sensors, a {:.1} MB file",
        args.entities,
        bytes as f64 / 1e6
    );
    println!("| file | ready after | peak (VmHWM at ready) | RSS 10 s later | peak / RSS |");
    println!("|---|---|---|---|---|");
    println!(
        "| {:.1} MB | {:.2} s | {:.1} MB | {:.1} MB | {:.2} |",
        bytes as f64 / 1e6,
        ready.as_secs_f64(),
        peak as f64 / 1024.0,
        after as f64 / 1024.0,
        peak as f64 / after.max(1) as f64
    );
}

fn main() {
    let args = parse_args();
    if args.startup {
        startup(args);
        return;
    }
    let Some(agent) = Snmpd::start(false) else {
        println!("fleet: snmpd is not installed (apt-get install snmpd snmp); nothing measured");
        return;
    };
    // A port that reads and never answers.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead = silent.local_addr().unwrap().to_string();
    let dir = std::env::temp_dir().join(format!("grafolean-snmp-fleet-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config_path = dir.join("fleet.toml");
    std::fs::write(&config_path, config(&args, &agent.ipv4(), &dead)).unwrap();
    let dead_count = args.entities.checked_div(args.dead_every).unwrap_or(0);
    println!(
        "fleet: {} entities ({dead_count} on a silent port), 3 default sensors every {} s, v2c, \
         timeout 1 s, 2 retries; {} s window after {} s warm-up; config {} bytes",
        args.entities,
        args.interval,
        args.seconds,
        args.warmup,
        std::fs::metadata(&config_path).map_or(0, |m| m.len())
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = std::fs::File::create(dir.join("bot.log")).unwrap();
    let mut command = Command::new(&args.bot);
    command
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env_remove("BACKEND_URL")
        .env_remove("BOT_TOKEN")
        .env_remove("BOT_TOKEN_FROM_FILE")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log);
    let fake = if args.backend {
        let (fake, url_and_token, account) = backend(&args, &agent.ipv4(), &dead);
        let (url, token) = url_and_token.split_once('\n').unwrap();
        command.env("BACKEND_URL", url).env("BOT_TOKEN", token);
        println!("fleet: from a fake Grafolean at {url} (account {account})");
        Some((fake, account))
    } else {
        command.arg("--config").arg(&config_path);
        None
    };
    let mut bot = command.spawn().unwrap();
    let pid = bot.id();
    let started = Instant::now();
    while !get(port, false).contains("grafolean_bot_runs_total") {
        assert!(bot.try_wait().unwrap().is_none(), "the bot exited early");
        if started.elapsed() > Duration::from_secs(120) {
            let _ = bot.kill();
            panic!("no /metrics after 120 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(args.warmup));

    let m0 = get(port, false);
    let stored = |fake: &Option<(FakeGrafolean, u64)>| {
        fake.as_ref()
            .map_or(0, |(f, account)| f.values(*account).len())
    };
    let stored0 = stored(&fake);
    let (bot0, snmpd0, steal0, at0) = (cpu_s(pid), cpu_s(agent.pid()), steal(), Instant::now());
    let mut rss = Vec::new();
    for second in 1..=args.seconds {
        std::thread::sleep(Duration::from_secs(1));
        if args.scrape_every > 0 && second % args.scrape_every == 0 && second < args.seconds {
            get(port, true);
        }
        rss.push(status_kib(pid, "VmRSS:"));
    }
    let (bot1, snmpd1, steal1, at1) = (cpu_s(pid), cpu_s(agent.pid()), steal(), Instant::now());
    let m1 = get(port, false);
    let stored1 = stored(&fake);
    let hwm = status_kib(pid, "VmHWM:");
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = bot.wait();

    let wall = (at1 - at0).as_secs_f64();
    let runs = |outcome: &str| {
        let with = format!("outcome=\"{outcome}\"");
        sum(&m1, "grafolean_bot_runs_total", &with) - sum(&m0, "grafolean_bot_runs_total", &with)
    };
    let (ok, error, timeout) = (runs("ok"), runs("error"), runs("timeout"));
    let expected = (args.entities as f64) * wall / args.interval as f64;
    let timeouts =
        sum(&m1, "snmp_device_timeouts_total", "") - sum(&m0, "snmp_device_timeouts_total", "");
    let entities_with_timeouts = m1
        .lines()
        .filter(|l| l.starts_with("snmp_device_timeouts_total{") && !l.ends_with(" 0"))
        .count();
    let lateness = "grafolean_bot_firing_lateness_seconds";
    let (l0, l1) = (buckets(&m0, lateness), buckets(&m1, lateness));
    let rss_series = rss.clone();
    rss.sort_unstable();
    let (steal_ticks, total_ticks) = (steal1.0 - steal0.0, steal1.1 - steal0.1);
    println!("| what | figure |");
    println!("|---|---|");
    println!(
        "| runs in the window | {ok:.0} ok, {error:.0} error, {timeout:.0} timeout \
         (expected about {expected:.0} firings) |"
    );
    println!(
        "| device timeouts | {timeouts:.0} in the window; {entities_with_timeouts} entities \
         counted at least one since the start |"
    );
    println!(
        "| firing lateness p50 / p99 / max | {} / {} / {} |",
        ms(quantile(&l0, &l1, 0.5)),
        ms(quantile(&l0, &l1, 0.99)),
        ms(quantile(&l0, &l1, 1.0))
    );
    println!(
        "| bot CPU | {:.1} % of one core ({:.1} s) |",
        100.0 * (bot1 - bot0) / wall,
        bot1 - bot0
    );
    println!(
        "| snmpd CPU | {:.1} % of one core |",
        100.0 * (snmpd1 - snmpd0) / wall
    );
    println!(
        "| bot RSS, read every second | median {:.1} MB, min {:.1} MB, max {:.1} MB (VmHWM since start {:.1} MB) |",
        rss[rss.len() / 2] as f64 / 1024.0,
        *rss.first().unwrap_or(&0) as f64 / 1024.0,
        *rss.last().unwrap_or(&0) as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    println!(
        "| exported value series at the end | {:.0} |",
        m1.lines()
            .filter(|l| l.starts_with("snmp_if_") || l.starts_with("snmp_lmsensors"))
            .count()
    );
    if args.backend {
        let sent = sum(&m1, "grafolean_bot_values_sent_total", "")
            - sum(&m0, "grafolean_bot_values_sent_total", "");
        println!(
            "| values stored by the fake Grafolean in the window | {} (the bot counted {sent:.0} sent) |",
            stored1 - stored0
        );
    }
    println!(
        "| CPU steal | {:.2} % |",
        100.0 * steal_ticks as f64 / total_ticks.max(1) as f64
    );
    if let Some(series) = std::env::var_os("FLEET_RSS_SERIES") {
        let _ = std::fs::write(
            series,
            rss_series
                .iter()
                .map(|k| format!("{}\n", k / 1024))
                .collect::<String>(),
        );
    }
    drop(silent);
    if let Some(keep) = std::env::var_os("FLEET_KEEP_LOG") {
        let _ = std::fs::copy(dir.join("bot.log"), keep);
    }
    let _ = std::fs::remove_dir_all(Path::new(&dir));
}
