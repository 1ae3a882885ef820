//! smokeping_prober, fping and the ping bot, one after another on the same
//! loopback targets at one packet per second each, and a row per tool: CPU
//! per ping, replies recorded, RSS.
//!
//! ```text
//! cargo bench -p grafolean-ping-bot --bench side_by_side -- [--targets 1000,10000]
//!     [--seconds 30] [--warmup 8] [--tools bot,smokeping,fping] [--host-netns] [--bot <binary>]
//!     [--scrape-every 15]
//! ```
//!
//! `--bot` runs another build of the bot (a copy, say, since `target/` may be
//! shared and rebuilt while the benchmark runs).
//!
//! Needs root, Debian's `prometheus-smokeping-prober` and `fping` (a tool
//! that is missing is skipped with a note). By default it re-executes itself
//! inside a private network namespace (`unshare -n`, loopback only), so no
//! other program's ICMP traffic is seen. The targets are 127.1.x.y.
//!
//! Each tool runs alone for `warmup + seconds`; CPU time (user + system,
//! from `/proc/<pid>/stat`) and RSS are read at the end of the warm-up and
//! at the end, and the pings of that window come from the tool's own
//! counters: the bot's and smokeping_prober's `/metrics` (requests sent,
//! RTT histogram count), fping's `xmt/rcv` summary (`-c`, `-p 1000`, the
//! whole run). "recorded" is replies counted over requests sent.
//!
//! In the window, an exporter is scraped every `--scrape-every` seconds as
//! Prometheus would (`Accept-Encoding: gzip`, the body read and dropped),
//! and RSS is read every second: the row gives its median and its maximum.
//! The scrapes' CPU is in the CPU column.
//!
//! - **bot**: the release `grafolean-ping-bot` with a standalone config, one
//!   entity per target, `n_packets = 1`, `timeout = 0.5`, interval 1 s.
//! - **smokeping_prober**: `--ping.interval=1s`, privileged (raw sockets),
//!   targets on the command line.
//! - **fping**: `fping -q -c <warmup + seconds> -p 1000 -i 0.05 -f <targets>`.
//! - **pingf** (`--tools …,pingf`, Debian's `iputils-ping`): `ping -f -q -w
//!   <seconds>` to one target, the floor of CPU per ping: one packet in
//!   flight, sent as soon as the last one came back. Its row's targets column
//!   is 1 whatever `--targets` says, and its CPU is its whole run's (as the
//!   shell that waited for it reads it: `cutime + cstime`).

#[path = "../tests/common/netns.rs"]
mod netns;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BOT: &str = env!("CARGO_BIN_EXE_grafolean-ping-bot");
const SMOKEPING: &str = "/usr/bin/prometheus-smokeping-prober";
const FPING: &str = "/usr/bin/fping";
const PING: &str = "/usr/bin/ping";

#[derive(Debug, Clone)]
struct Args {
    targets: Vec<usize>,
    seconds: u64,
    warmup: u64,
    tools: Vec<String>,
    host_netns: bool,
    bot: String,
    scrape_every: u64,
}

fn parse_args() -> Args {
    let mut args = Args {
        targets: vec![1000, 10_000],
        seconds: 30,
        warmup: 8,
        tools: vec!["bot".into(), "smokeping".into(), "fping".into()],
        host_netns: false,
        bot: BOT.to_string(),
        scrape_every: 15,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--targets" => {
                args.targets = value().split(',').map(|t| t.parse().unwrap()).collect();
            }
            "--seconds" => args.seconds = value().parse().unwrap(),
            "--warmup" => args.warmup = value().parse().unwrap(),
            "--tools" => args.tools = value().split(',').map(String::from).collect(),
            "--host-netns" => args.host_netns = true,
            "--bot" => args.bot = value(),
            "--scrape-every" => args.scrape_every = value().parse().unwrap(),
            _ => {} // `cargo bench` passes `--bench`.
        }
    }
    assert!(
        args.targets.iter().all(|&t| t <= 60_000),
        "at most 60,000 targets"
    );
    args
}

fn main() {
    let args = parse_args();
    if !args.host_netns && !netns::inside() {
        let status = Command::new("unshare")
            .args(["-n", "--"])
            .arg(std::env::current_exe().unwrap())
            .args(std::env::args().skip(1))
            .env(netns::ENV, "1")
            .status()
            .expect("cannot run `unshare` (needs root); or pass --host-netns");
        std::process::exit(status.code().unwrap_or(1));
    }
    if !args.host_netns {
        netns::sh("ip link set lo up");
    }
    let dir = std::env::temp_dir().join(format!("grafolean-side-by-side-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    println!(
        "side_by_side: {} s measured after {} s warm-up, one packet per second per target, {}",
        args.seconds,
        args.warmup,
        if args.host_netns {
            "host namespace"
        } else {
            "private namespace"
        }
    );
    println!(
        "{:<17} {:>7} {:>10} {:>9} {:>11} {:>10} {:>15} {:>8} {:>10}",
        "tool",
        "targets",
        "pings",
        "recorded",
        "cpu % core",
        "cpu/ping",
        "rss MB med/max",
        "steal %",
        "rtt p99 ≤"
    );
    for &n in &args.targets {
        let targets = targets(n);
        for tool in &args.tools {
            let row = match tool.as_str() {
                "bot" => run_bot(&args, &dir, &targets),
                "smokeping" if Path::new(SMOKEPING).exists() => run_smokeping(&args, &targets),
                "fping" if Path::new(FPING).exists() => Some(run_fping(&args, &dir, &targets)),
                "pingf" if Path::new(PING).exists() => Some(run_ping_flood(&args, &dir)),
                other => {
                    println!(
                        "{other:<17} skipped: not installed (apt-get install prometheus-smokeping-prober fping iputils-ping)"
                    );
                    None
                }
            };
            if let Some(row) = row {
                row.print(tool, if tool == "pingf" { 1 } else { n });
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `n` distinct loopback addresses.
fn targets(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("127.{}.{}.{}", 1 + i / 62_500, i / 250 % 250, i % 250 + 1))
        .collect()
}

/// One tool's figures over the measured window.
struct Row {
    pings: f64,
    replies: f64,
    cpu_s: f64,
    wall_s: f64,
    rss_kib: u64,
    /// The median and the maximum of RSS read every second in the window,
    /// where the tool was sampled so.
    rss_med_max_kib: Option<(u64, u64)>,
    steal: f64,
    /// The upper bound of the histogram bucket that holds the 99th
    /// percentile RTT of the window, in seconds, where the tool has one.
    p99: Option<f64>,
}

impl Row {
    fn print(&self, tool: &str, targets: usize) {
        let per_ping_us = if self.pings > 0.0 {
            self.cpu_s / self.pings * 1e6
        } else {
            f64::NAN
        };
        let p99 = self
            .p99
            .map_or("-".to_string(), |s| format!("{:.2} ms", s * 1e3));
        println!(
            "{:<17} {:>7} {:>10.0} {:>8.2}% {:>10.1}% {:>8.1} µs {:>15} {:>8.1} {:>10}",
            tool,
            targets,
            self.pings,
            100.0 * self.replies / self.pings.max(1.0),
            100.0 * self.cpu_s / self.wall_s,
            per_ping_us,
            match self.rss_med_max_kib {
                Some((med, max)) =>
                    format!("{:.1} / {:.1}", med as f64 / 1024.0, max as f64 / 1024.0),
                None => format!("{:.1}", self.rss_kib as f64 / 1024.0),
            },
            self.steal,
            p99,
        );
    }
}

/// CPU seconds and RSS of a process, and the machine's CPU counters.
struct Sample {
    at: Instant,
    cpu_s: f64,
    rss_kib: u64,
    stat: Vec<u64>,
}

fn sample(pid: u32) -> Sample {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let cpu_s = stat
        .rfind(')')
        .map(|i| {
            let f: Vec<&str> = stat[i + 2..].split(' ').collect();
            (f[11].parse::<u64>().unwrap_or(0) + f[12].parse::<u64>().unwrap_or(0)) as f64 / 100.0
        })
        .unwrap_or(0.0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let machine = std::fs::read_to_string("/proc/stat").unwrap();
    let stat = machine
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap())
        .collect();
    Sample {
        at: Instant::now(),
        cpu_s,
        rss_kib,
        stat,
    }
}

fn row(a: &Sample, b: &Sample, pings: f64, replies: f64) -> Row {
    let total: u64 = b.stat.iter().sum::<u64>() - a.stat.iter().sum::<u64>();
    let steal = b.stat.get(7).unwrap_or(&0) - a.stat.get(7).unwrap_or(&0);
    Row {
        pings,
        replies,
        cpu_s: b.cpu_s - a.cpu_s,
        wall_s: (b.at - a.at).as_secs_f64(),
        rss_kib: b.rss_kib,
        rss_med_max_kib: None,
        steal: 100.0 * steal as f64 / total.max(1) as f64,
        p99: None,
    }
}

/// The bucket counts of histogram `name`, summed over every series, by
/// upper bound.
fn buckets(text: &str, name: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{");
    let mut by_le: Vec<(f64, f64)> = Vec::new();
    for line in text.lines().filter(|l| l.starts_with(&prefix)) {
        let Some(le) = line.split("le=\"").nth(1).and_then(|r| r.split('"').next()) else {
            continue;
        };
        let le = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().unwrap_or(f64::NAN)
        };
        let Some(n) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else {
            continue;
        };
        match by_le.iter_mut().find(|(l, _)| *l == le) {
            Some((_, total)) => *total += n,
            None => by_le.push((le, n)),
        }
    }
    by_le.sort_by(|a, b| a.0.total_cmp(&b.0));
    by_le
}

/// The smallest bucket bound holding 99 % of the window's observations.
fn p99(before: &str, after: &str, name: &str) -> Option<f64> {
    let (b0, b1) = (buckets(before, name), buckets(after, name));
    let delta: Vec<(f64, f64)> = b1
        .iter()
        .map(|(le, n)| {
            let old = b0.iter().find(|(l, _)| l == le).map_or(0.0, |(_, n)| *n);
            (*le, n - old)
        })
        .collect();
    let count = delta.last()?.1;
    delta
        .iter()
        .find(|(_, cumulative)| *cumulative >= 0.99 * count)
        .map(|(le, _)| *le)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET /metrics` from `127.0.0.1:port`, or an empty string.
fn scrape(port: u16) -> String {
    let get = || -> std::io::Result<String> {
        let mut s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/plain\r\nConnection: close\r\n\r\n"
        )?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    };
    get().unwrap_or_default()
}

/// `GET /metrics` as Prometheus sends it (gzip accepted); the body is read
/// and dropped.
fn scrape_gzip(port: u16) {
    let get = || -> std::io::Result<()> {
        let mut s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n"
        )?;
        std::io::copy(&mut s, &mut std::io::sink())?;
        Ok(())
    };
    let _ = get();
}

/// The sum of every sample of `name` (exactly that name, any labels).
fn sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// How long a tool may take before its `/metrics` has the series counted.
const START_WITHIN: Duration = Duration::from_secs(180);

/// Waits until `/metrics` has `series`; false after [`START_WITHIN`].
fn wait_for_metrics(port: u16, child: &mut Child, series: &str) -> bool {
    let started = Instant::now();
    while !scrape(port).contains(series) {
        assert!(child.try_wait().unwrap().is_none(), "the tool exited early");
        if started.elapsed() > START_WITHIN {
            return false;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    println!(
        "  (its series appeared {:.1} s after the start)",
        started.elapsed().as_secs_f64()
    );
    true
}

fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(15);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Measures a tool that serves `/metrics`, with `pings`/`replies` read as
/// the sums of two series.
fn measure_exporter(
    args: &Args,
    mut child: Child,
    port: u16,
    requests: &str,
    answered: &str,
) -> Option<Row> {
    if !wait_for_metrics(port, &mut child, requests) {
        println!("  (no {requests} within {START_WITHIN:?}: no row)");
        stop(child);
        return None;
    }
    std::thread::sleep(Duration::from_secs(args.warmup));
    let m0 = scrape(port);
    let s0 = sample(child.id());
    let mut rss = Vec::new();
    for second in 1..=args.seconds {
        std::thread::sleep(Duration::from_secs(1));
        if args.scrape_every > 0 && second % args.scrape_every == 0 && second < args.seconds {
            scrape_gzip(port);
        }
        rss.push(sample(child.id()).rss_kib);
    }
    let s1 = sample(child.id());
    let m1 = scrape(port);
    stop(child);
    let pings = sum(&m1, requests) - sum(&m0, requests);
    let replies = sum(&m1, answered) - sum(&m0, answered);
    // Over the whole run too, start-up included.
    println!(
        "  (whole run: {:.0} requests, {:.2} % recorded)",
        sum(&m1, requests),
        100.0 * sum(&m1, answered) / sum(&m1, requests).max(1.0)
    );
    let mut r = row(&s0, &s1, pings, replies);
    rss.sort_unstable();
    r.rss_med_max_kib = Some((rss[rss.len() / 2], *rss.last().unwrap_or(&0)));
    let histogram = answered.trim_end_matches("_count");
    r.p99 = p99(&m0, &m1, histogram);
    Some(r)
}

fn run_bot(args: &Args, dir: &Path, targets: &[String]) -> Option<Row> {
    let config: PathBuf = dir.join("bot.toml");
    let mut toml = String::new();
    for (i, t) in targets.iter().enumerate() {
        toml.push_str(&format!(
            "[[entity]]\nid = {}\nname = \"t{i}\"\ndetails = {{ ipv4 = \"{t}\" }}\n\
             credential = {{ n_packets = 1, timeout = 0.5, sleep_packets = 0 }}\n\
             sensors = [{{ interval = 1 }}]\n\n",
            i + 1
        ));
    }
    std::fs::write(&config, toml).unwrap();
    let port = free_port();
    let child = Command::new(&args.bot)
        .arg("--config")
        .arg(&config)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env_remove("BACKEND_URL")
        .env_remove("BOT_TOKEN")
        .env_remove("BOT_TOKEN_FROM_FILE")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    measure_exporter(
        args,
        child,
        port,
        "ping_requests_total",
        "ping_response_duration_seconds_count",
    )
}

fn run_smokeping(args: &Args, targets: &[String]) -> Option<Row> {
    let port = free_port();
    let child = Command::new(SMOKEPING)
        .args([
            &format!("--web.listen-address=127.0.0.1:{port}"),
            "--ping.interval=1s",
            "--privileged",
            "--config.file=/nonexistent",
        ])
        .args(targets)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    measure_exporter(
        args,
        child,
        port,
        "smokeping_requests_total",
        "smokeping_response_duration_seconds_count",
    )
}

/// Targets per fping process: fping 5.1 shares 65,535 sequence numbers
/// among all its targets and keeps each for 10 s, so one process cannot
/// ping more than about 6,500 targets a second ("not enough sequence numbers
/// available").
const FPING_CHUNK: usize = 5_000;

fn run_fping(args: &Args, dir: &Path, targets: &[String]) -> Row {
    let count = args.warmup + args.seconds + 2;
    let mut children = Vec::new();
    for (i, chunk) in targets.chunks(FPING_CHUNK).enumerate() {
        let list = dir.join(format!("fping-{i}.txt"));
        std::fs::write(&list, chunk.join("\n")).unwrap();
        let mut child = Command::new(FPING)
            .args([
                "-q",
                "-c",
                &count.to_string(),
                "-p",
                "1000",
                "-i",
                "0.05",
                "-f",
            ])
            .arg(&list)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Read as it comes: fping writes an error line per failed send, and
        // a full pipe would stop it.
        let mut stderr = child.stderr.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        children.push((child, reader));
    }
    if children.len() > 1 {
        println!(
            "  (fping: {} processes of at most {FPING_CHUNK} targets; CPU and RSS are their sums)",
            children.len()
        );
    }
    let pids: Vec<u32> = children.iter().map(|(c, _)| c.id()).collect();
    let total = |pids: &[u32]| {
        let mut all = pids.iter().map(|&p| sample(p));
        let mut first = all.next().unwrap();
        for other in all {
            first.cpu_s += other.cpu_s;
            first.rss_kib += other.rss_kib;
        }
        first
    };
    std::thread::sleep(Duration::from_secs(args.warmup));
    let s0 = total(&pids);
    std::thread::sleep(Duration::from_secs(args.seconds));
    let s1 = total(&pids);
    let mut stderr = String::new();
    for (mut child, reader) in children {
        let _ = child.wait();
        stderr.push_str(&reader.join().unwrap_or_default());
    }
    let errors = stderr
        .lines()
        .filter(|l| !l.contains("xmt/rcv/%loss"))
        .count();
    if errors > 0 {
        println!(
            "  (fping wrote {errors} other lines, the first: {:?})",
            stderr.lines().find(|l| !l.contains("xmt/rcv/%loss"))
        );
    }
    // "127.1.0.1 : xmt/rcv/%loss = 30/30/0%, min/avg/max = …"
    let (mut xmt, mut rcv) = (0.0, 0.0);
    for line in stderr.lines() {
        if let Some(counts) = line
            .split("xmt/rcv/%loss = ")
            .nth(1)
            .and_then(|r| r.split(',').next())
        {
            let f: Vec<f64> = counts
                .split('/')
                .take(2)
                .filter_map(|v| v.parse().ok())
                .collect();
            if let [x, r] = f[..] {
                xmt += x;
                rcv += r;
            }
        }
    }
    // The window's pings, at the rate asked for; recorded over the whole run.
    let pings = targets.len() as f64 * (s1.at - s0.at).as_secs_f64();
    let recorded = if xmt > 0.0 { rcv / xmt } else { 0.0 };
    let mut r = row(&s0, &s1, pings, pings * recorded);
    if xmt < targets.len() as f64 * count as f64 * 0.99 {
        println!(
            "fping sent {xmt:.0} of the {} requests asked for: it could not keep one per second per target",
            targets.len() as u64 * count
        );
        r.pings = pings * xmt / (targets.len() as f64 * count as f64);
        r.replies = r.pings * recorded;
    }
    r
}

fn run_ping_flood(args: &Args, dir: &Path) -> Row {
    let out = dir.join("pingf.txt");
    let before = sample(std::process::id());
    // The shell's own /proc/<pid>/stat, read after it waited for ping, has
    // ping's user and system ticks as its cutime and cstime.
    let script = format!(
        "{PING} -f -q -w {} 127.1.0.1 > {}; cat /proc/$$/stat",
        args.seconds,
        out.display()
    );
    let shell = Command::new("sh").args(["-c", &script]).output().unwrap();
    let after = sample(std::process::id());
    let stat = String::from_utf8_lossy(&shell.stdout).to_string();
    let ticks: f64 = stat
        .rfind(')')
        .map(|i| {
            let f: Vec<&str> = stat[i + 2..].split(' ').collect();
            f[13].parse::<f64>().unwrap_or(0.0) + f[14].parse::<f64>().unwrap_or(0.0)
        })
        .unwrap_or(0.0);
    // "522260 packets transmitted, 522260 received, 0% packet loss, time 5000ms"
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    let summary = text
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or_default();
    let count = |what: &str| -> f64 {
        summary
            .split(',')
            .find(|p| p.contains(what))
            .and_then(|p| p.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0)
    };
    let mut r = row(&before, &after, count("transmitted"), count("received"));
    r.cpu_s = ticks / 100.0;
    r.rss_kib = 0;
    r
}
