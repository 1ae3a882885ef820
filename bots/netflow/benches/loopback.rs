//! End to end over loopback: recorded softflowd v9 datagrams (50,000
//! distinct flows, replayed in a loop) sent at a paced rate from one core
//! to a collector pinned to the other, for each of: the bot (release
//! binary, standalone), nfcapd (nfdump) and nfacctd (pmacct, print plugin),
//! one after the other. Reports, per collector, the flows sent, the kernel's
//! drops at its socket (`/proc/net/udp`), its CPU time per flow
//! (`/proc/<pid>/stat`, all its processes), and for the bot the flows it
//! counted (`netflow_flows_total`).
//!
//! ```text
//! cargo bench -p grafolean-netflow-bot --bench loopback [-- RATE SECONDS]
//! ```
//!
//! Defaults: 300,000 flows/s for 60 s. Needs softflowd, nfdump and pmacct
//! (`apt-get install softflowd nfdump pmacct`); a missing peer is skipped
//! with a message. The Python bot's writer needs PostgreSQL and is not run.

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{capture, installed, many_flows, steal, steal_since, write_pcap};
use grafolean_collector::testing::process::{TestDir, free_port, free_udp_port, get, sample};

/// The bot's binary, built in release by `cargo bench`.
const BOT: &str = env!("CARGO_BIN_EXE_grafolean-netflow-bot");

fn ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // After the command's closing parenthesis: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)
}

/// CPU seconds of `pid` and its children (nfacctd forks its plugins).
fn cpu_secs(pid: u32) -> f64 {
    let mut total = ticks(pid);
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(child) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
            let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
            if rest
                .split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u32>().ok())
                == Some(pid)
            {
                total += ticks(child);
            }
        }
    }
    total as f64 / 100.0
}

/// The kernel's drop count at the UDP socket bound to 127.0.0.1:`port`.
fn drops(port: u16) -> u64 {
    let local = format!("0100007F:{port:04X}");
    let text = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter(|l| l.split_whitespace().nth(1) == Some(local.as_str()))
        .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
        .sum()
}

fn pin(cpu: usize) {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu).unwrap();
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).unwrap();
}

/// Sends `datagrams` in a loop to `to` at `rate` flows a second for
/// `secs`; returns the flows sent.
fn replay(datagrams: &[(Vec<u8>, u64)], to: SocketAddr, rate: u64, secs: u64) -> u64 {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let start = Instant::now();
    let mut sent = 0u64;
    let mut i = 0;
    let end = Duration::from_secs(secs);
    loop {
        let elapsed = start.elapsed();
        if elapsed >= end {
            return sent;
        }
        // Send what is due by now, then wait a little.
        let due = (elapsed.as_secs_f64() * rate as f64) as u64;
        while sent < due {
            let (d, flows) = &datagrams[i % datagrams.len()];
            let _ = socket.send_to(d, to);
            sent += flows;
            i += 1;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

/// Stops a collector: SIGINT (nfacctd ignores SIGTERM while its plugin
/// runs), then SIGKILL to it and its children after 5 s.
fn stop(child: &mut Child) {
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-INT", &pid]).status();
    for _ in 0..50 {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = Command::new("pkill").args(["-KILL", "-P", &pid]).status();
    let _ = child.kill();
    let _ = child.wait();
}

struct Row {
    name: &'static str,
    sent: u64,
    drops: u64,
    counted: Option<u64>,
    cpu: f64,
    steal: f64,
}

fn run(
    name: &'static str,
    mut child: Child,
    port: u16,
    datagrams: &[(Vec<u8>, u64)],
    rate: u64,
    secs: u64,
    counted: impl Fn() -> Option<u64>,
) -> Row {
    std::thread::sleep(Duration::from_secs(2));
    let (d0, c0, s0) = (drops(port), cpu_secs(child.id()), steal());
    let sent = replay(
        datagrams,
        SocketAddr::from(([127, 0, 0, 1], port)),
        rate,
        secs,
    );
    std::thread::sleep(Duration::from_secs(2));
    let row = Row {
        name,
        sent,
        drops: drops(port) - d0,
        counted: counted(),
        cpu: cpu_secs(child.id()) - c0,
        steal: steal_since(s0),
    };
    stop(&mut child);
    row
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let rate = args.first().copied().unwrap_or(300_000);
    let secs = args.get(1).copied().unwrap_or(60);
    if !installed(&["softflowd", "taskset"]) {
        return;
    }
    let dir = TestDir::new("netflow-bench-loopback");
    let pcap = dir.join("flows.pcap");
    write_pcap(&pcap, &many_flows(50_000));
    let mut decoder = grafolean_netflow_bot::decode::Decoder::new(false);
    let from: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let datagrams: Vec<(Vec<u8>, u64)> = capture(&dir, &pcap, 9, &["-m", "100000"])
        .into_iter()
        .map(|d| {
            let mut out = Vec::new();
            decoder.decode(from, &d, &mut out);
            let n = out.len() as u64;
            (d, n)
        })
        .collect();
    // The replayer on CPU 1, every collector on CPU 0.
    pin(1);
    let mut rows = Vec::new();

    let port = free_udp_port();
    let admin = free_port();
    let bot = Command::new("taskset")
        .args(["-c", "0", BOT])
        .args([
            "--netflow-listen",
            &format!("127.0.0.1:{port}"),
            "--listen",
            &format!("127.0.0.1:{admin}"),
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let host = format!("127.0.0.1:{admin}");
    rows.push(run(
        "grafolean-netflow-bot",
        bot,
        port,
        &datagrams,
        rate,
        secs,
        || {
            let text = get(&host, "/metrics").ok()?;
            Some(
                text.lines()
                    .filter(|l| l.starts_with("netflow_flows_total{"))
                    .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
                    .sum::<f64>() as u64,
            )
            .filter(|_| sample(&text, "netflow_socket_drops_total").is_some())
        },
    ));

    if installed(&["nfcapd"]) {
        let port = free_udp_port();
        let out = dir.join("nfcapd");
        std::fs::create_dir_all(&out).unwrap();
        let nfcapd = Command::new("taskset")
            .args([
                "-c",
                "0",
                "nfcapd",
                "-b",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-B",
                "33554432",
                "-t",
                "60",
                "-w",
            ])
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        rows.push(run(
            "nfcapd 1.7.1 (-B 32 MiB)",
            nfcapd,
            port,
            &datagrams,
            rate,
            secs,
            || None,
        ));
    }
    if installed(&["nfacctd"]) {
        let port = free_udp_port();
        let conf = dir.join("nfacctd.conf");
        std::fs::write(
            &conf,
            format!(
                "nfacctd_port: {port}\nnfacctd_ip: 127.0.0.1\nnfacctd_pipe_size: 33554432\nplugins: print\n\
                 aggregate: src_host, dst_host, proto, dst_port, in_iface\nprint_refresh_time: 60\n\
                 print_output: csv\nprint_output_file: {}\n",
                dir.join("nfacctd.csv").display()
            ),
        )
        .unwrap();
        let nfacctd = Command::new("taskset")
            .args(["-c", "0", "nfacctd", "-f"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        rows.push(run(
            "nfacctd 1.7.7 (print plugin)",
            nfacctd,
            port,
            &datagrams,
            rate,
            secs,
            || None,
        ));
    }

    println!(
        "end to end over loopback: {rate} flows/s offered for {secs} s, v9 from softflowd (50,000 distinct flows, {} datagrams, replayed in a loop)",
        datagrams.len()
    );
    println!(
        "| collector (on CPU 0) | flows sent | kernel drops (datagrams) | flows counted | CPU s | CPU ns per flow | steal |"
    );
    println!("|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {:.2} | {:.0} | {:.1} % |",
            r.name,
            r.sent,
            r.drops,
            r.counted.map_or("—".to_string(), |c| c.to_string()),
            r.cpu,
            r.cpu * 1e9 / r.sent.max(1) as f64,
            r.steal
        );
    }
}
