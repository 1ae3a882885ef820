//! One process pings 10,000 distinct loopback addresses per round, as 10,000
//! ping jobs with `n_packets = 1` would, and reports throughput, attribution,
//! RTT percentiles, CPU time and memory.
//!
//! ```text
//! cargo bench -p grafolean-ping-bot --bench ping10k -- [--rounds 3] [--interval 10]
//!     [--targets 10000] [--silent 100] [--socket auto|raw|dgram] [--max-in-flight 4096]
//!     [--timeout 1.0] [--host-netns] [--via-collector]
//! ```
//!
//! By default (root needed) the benchmark re-executes itself inside a private
//! network namespace (see `tests/common/netns.rs`) that also holds a "silent
//! host": `--silent` of its addresses (10.200.0.2, …) ignore echo requests and
//! are mixed in among the loopback targets (127.1.x.y). A silent target that
//! comes out as answered, or a loopback target answered by a reply that was
//! not its own, is **misattributed**. `--host-netns` pings only loopback, in
//! the host's own namespace, with no silent targets.
//!
//! Each probe runs in its own task, as each job does in the bot. "answered
//! in" is the time from the round's start until the last loopback target's
//! answer; the round itself lasts until the silent targets time out.
//! `--via-collector` runs each target as an entity job through
//! `PingCollector::run` (credential `n_packets = 1`), as the bot would.

#[path = "../tests/common/netns.rs"]
mod netns;

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use grafolean_collector::{
    Collector, EntityConfig, Intervals, JobConfigs, Problems, SensorConfig, Tick,
};
use grafolean_ping_bot::icmp::{Family, Pinger, PingerOptions, SocketChoice};
use grafolean_ping_bot::{PingCollector, PingParams};

#[derive(Debug, Clone)]
struct Args {
    rounds: u32,
    interval: f64,
    targets: usize,
    silent: usize,
    socket: SocketChoice,
    max_in_flight: usize,
    timeout: f64,
    host_netns: bool,
    via_collector: bool,
}

fn parse_args() -> Args {
    let mut args = Args {
        rounds: 3,
        interval: 10.0,
        targets: 10_000,
        silent: 100,
        socket: SocketChoice::Auto,
        max_in_flight: PingerOptions::default().max_in_flight,
        timeout: 1.0,
        host_netns: false,
        via_collector: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--rounds" => args.rounds = value().parse().unwrap(),
            "--interval" => args.interval = value().parse().unwrap(),
            "--targets" => args.targets = value().parse().unwrap(),
            "--silent" => args.silent = value().parse().unwrap(),
            "--max-in-flight" => args.max_in_flight = value().parse().unwrap(),
            "--timeout" => args.timeout = value().parse().unwrap(),
            "--socket" => {
                args.socket = match value().as_str() {
                    "raw" => SocketChoice::Raw,
                    "dgram" => SocketChoice::Datagram,
                    _ => SocketChoice::Auto,
                }
            }
            "--host-netns" => args.host_netns = true,
            "--via-collector" => args.via_collector = true,
            _ => {} // `cargo bench` passes `--bench`.
        }
    }
    if args.host_netns {
        args.silent = 0;
    }
    assert!(args.silent <= 250, "at most 250 silent targets");
    args
}

fn main() {
    let args = parse_args();
    if !args.host_netns && !netns::inside() {
        // Run again inside a private network namespace.
        let status = Command::new("unshare")
            .args(["-n", "--"])
            .arg(std::env::current_exe().unwrap())
            .args(std::env::args().skip(1))
            .env(netns::ENV, "1")
            .status()
            .expect("cannot run `unshare` (needs root); or pass --host-netns");
        std::process::exit(status.code().unwrap_or(1));
    }
    let lab = (!args.host_netns).then(|| {
        let lab = netns::Lab::setup();
        if args.silent > 1 {
            lab.on_silent_host(&format!(
                "for i in $(seq 3 {}); do ip addr add 10.200.0.$i/24 dev veth-b; done",
                args.silent + 1
            ));
        }
        lab
    });
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(run(args));
    drop(lab);
}

/// The loopback targets, 127.1.x.y, and the silent ones, 10.200.0.2…
fn targets(args: &Args) -> (Vec<IpAddr>, Vec<IpAddr>) {
    let answering = (0..args.targets)
        .map(|i| {
            IpAddr::V4(Ipv4Addr::new(
                127,
                1 + (i / 62_500) as u8,
                (i / 250 % 250) as u8,
                (i % 250 + 1) as u8,
            ))
        })
        .collect();
    let silent = (0..args.silent)
        .map(|i| IpAddr::V4(Ipv4Addr::new(10, 200, 0, 2 + i as u8)))
        .collect();
    (answering, silent)
}

async fn run(args: Args) {
    let opts = PingerOptions::default()
        .with_socket(args.socket)
        .with_max_in_flight(args.max_in_flight);
    let pinger = Pinger::new(opts).unwrap();
    let (answering, silent) = targets(&args);
    // Silent targets are spread evenly through the burst.
    let mut all: Vec<(IpAddr, bool)> = answering.iter().map(|&a| (a, false)).collect();
    let step = all.len() / (silent.len() + 1);
    for (k, &s) in silent.iter().enumerate() {
        all.insert((k + 1) * step + k, (s, true));
    }
    let timeout = Duration::from_secs_f64(args.timeout);
    let collector = PingCollector::new(pinger.clone());
    let params: Vec<Option<PingParams>> = if args.via_collector {
        let configs = JobConfigs {
            entities: all
                .iter()
                .enumerate()
                .map(|(i, &(addr, _))| entity(i, addr, timeout))
                .collect(),
        };
        collector
            .jobs(&configs, &mut Problems::default())
            .into_iter()
            .map(|job| Some(job.params))
            .collect()
    } else {
        vec![None; all.len()]
    };
    assert_eq!(params.len(), all.len());
    println!(
        "ping10k: {} loopback + {} silent targets, {:?} socket, max in flight {}, timeout {:?}, {}, {}",
        answering.len(),
        silent.len(),
        pinger.socket_kind(Family::V4).unwrap(),
        args.max_in_flight,
        timeout,
        if args.host_netns {
            "host namespace"
        } else {
            "private namespace"
        },
        if args.via_collector {
            "through PingCollector::run"
        } else {
            "through Pinger::ping"
        },
    );
    let mut answered_in = Vec::new();
    for round in 0..args.rounds {
        if round > 0 {
            tokio::time::sleep(Duration::from_secs_f64(args.interval)).await;
        }
        let cpu_before = cpu_seconds();
        let stats_before = pinger.stats();
        let start = Instant::now();
        let tasks: Vec<_> = all
            .iter()
            .zip(&params)
            .map(|(&(addr, is_silent), params)| {
                let (pinger, collector, params) =
                    (pinger.clone(), collector.clone(), params.clone());
                tokio::spawn(async move {
                    let result = match params {
                        None => pinger.ping(addr, timeout).await,
                        Some(params) => Ok(run_job(&collector, &params).await),
                    };
                    (is_silent, result, start.elapsed())
                })
            })
            .collect();
        let (mut up, mut down, mut misattributed, mut errors) = (0, 0, 0, 0);
        let mut last_answer = Duration::ZERO;
        let mut rtts = Vec::with_capacity(all.len());
        for task in tasks {
            let (is_silent, result, done) = task.await.unwrap();
            match (is_silent, result) {
                (false, Ok(Some(rtt))) => {
                    up += 1;
                    rtts.push(rtt);
                    last_answer = last_answer.max(done);
                }
                (false, Ok(None)) => down += 1,
                (true, Ok(Some(_))) => misattributed += 1,
                (true, Ok(None)) => {}
                (_, Err(e)) => {
                    errors += 1;
                    eprintln!("error: {e}");
                }
            }
        }
        let wall = start.elapsed();
        let cpu = cpu_seconds() - cpu_before;
        let stats = pinger.stats();
        rtts.sort();
        let pct = |p: f64| {
            rtts.get(((rtts.len() as f64 - 1.0) * p).round() as usize)
                .copied()
                .unwrap_or_default()
        };
        answered_in.push(last_answer);
        println!(
            "round {round}: answered {up}/{} (unanswered {down}), misattributed {misattributed}, errors {errors}, \
             answered in {:.3} s, round {:.3} s, rtt p50 {:.2} ms p99 {:.2} ms, cpu {:.3} s, unmatched replies {}",
            answering.len(),
            last_answer.as_secs_f64(),
            wall.as_secs_f64(),
            pct(0.50).as_secs_f64() * 1e3,
            pct(0.99).as_secs_f64() * 1e3,
            cpu,
            stats.unmatched - stats_before.unmatched,
        );
    }
    answered_in.sort();
    let (rss, hwm) = memory_kib();
    println!(
        "median answered-in {:.3} s over {} rounds; process cpu {:.2} s total; rss {} KiB (peak {} KiB)",
        answered_in[answered_in.len() / 2].as_secs_f64(),
        answered_in.len(),
        cpu_seconds(),
        rss,
        hwm
    );
}

/// An entity to ping `addr` once, with the backend's string settings.
fn entity(i: usize, addr: IpAddr, timeout: Duration) -> EntityConfig {
    EntityConfig {
        account_id: 1,
        entity_id: i as u64,
        name: format!("target {i}"),
        entity_type: "device".into(),
        details: serde_json::json!({ "ipv4": addr.to_string() }),
        credential_id: Some(1),
        credential_details: serde_json::json!({
            "n_packets": "1", "timeout": timeout.as_secs_f64().to_string(), "sleep_packets": "0", "retry": "0"
        })
        .into(),
        sensors: vec![SensorConfig {
            sensor_id: 1,
            interval: Some(10),
            details: serde_json::json!({}).into(),
            origin: None,
        }],
        origin: None,
    }
}

/// Runs one job as the bot would, and reads the packet's RTT back.
async fn run_job(collector: &PingCollector, params: &PingParams) -> Option<Duration> {
    let tick = Tick {
        at: SystemTime::now(),
        affecting: Intervals::one(10).unwrap(),
    };
    let values = collector.run(tick, params).await.expect("the run failed");
    let ok = values
        .iter()
        .find(|v| v.path.ends_with(".p0.ok"))
        .expect("no p0.ok value");
    let rtt = values.iter().find(|v| v.path.ends_with(".p0.rtt"));
    assert_eq!(ok.value == 1.0, rtt.is_some(), "{values:?}");
    rtt.map(|v| Duration::from_secs_f64(v.value))
}

/// User + system CPU seconds of this process (assumes the usual 100 Hz ticks).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

/// Current and peak resident set size, in KiB.
fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}
