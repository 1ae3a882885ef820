//! Decode + aggregate on one core: real softflowd datagrams (v9 and IPFIX,
//! recorded once on loopback from a pcap of 50,000 distinct flows) decoded
//! and counted into a minute ([`Minute`]) over and over, on this thread.
//!
//! ```text
//! cargo bench -p grafolean-netflow-bot --bench decode
//! ```
//!
//! Prints, per version, the median of 7 runs of flows per second and ns per
//! flow (this thread's CPU time, `/proc/thread-self/schedstat`), with the
//! machine's CPU steal over the run; and bytes of memory per distinct key.

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::time::Instant;

use common::{capture, installed, many_flows, steal, steal_since, write_pcap};
use grafolean_collector::testing::process::TestDir;
use grafolean_netflow_bot::aggregate::{DEFAULT_TOP_KEYS, Minute, Traffic};
use grafolean_netflow_bot::decode::Decoder;

fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

fn main() {
    if !installed(&["softflowd"]) {
        return;
    }
    let dir = TestDir::new("netflow-bench-decode");
    let pcap = dir.join("flows.pcap");
    let flows_in_pcap = 50_000;
    write_pcap(&pcap, &many_flows(flows_in_pcap));
    let from: SocketAddr = "192.0.2.1:2055".parse().unwrap();
    println!("decode + aggregate, one thread, {flows_in_pcap} distinct flows per pass");
    println!(
        "| version | datagrams | flows per pass | flows/s (median of 7) | ns per flow (CPU) | steal |"
    );
    println!("|---|---|---|---|---|---|");
    for version in [9u8, 10] {
        let datagrams = capture(&dir, &pcap, version, &["-m", "100000"]);
        let mut out = Vec::with_capacity(64);
        let mut rates = Vec::new();
        let mut ns = Vec::new();
        let mut per_pass = 0;
        let s0 = steal();
        for _ in 0..7 {
            let mut decoder = Decoder::new(true);
            let mut traffic = Minute::new(DEFAULT_TOP_KEYS);
            let (wall, cpu) = (Instant::now(), thread_cpu_ns());
            let mut flows = 0u64;
            // Several passes per run, so a run lasts long enough to time.
            for _ in 0..5 {
                for d in &datagrams {
                    out.clear();
                    decoder.decode(from, d, &mut out);
                    for f in &out {
                        traffic.add(from.ip(), f);
                    }
                    flows += out.len() as u64;
                }
            }
            // The minute's end: every key counted into the maps.
            let traffic = traffic.into_traffic();
            let secs = wall.elapsed().as_secs_f64();
            let cpu = (thread_cpu_ns() - cpu) as f64;
            per_pass = flows / 5;
            rates.push(flows as f64 / secs);
            ns.push(cpu / flows as f64);
            std::hint::black_box(&traffic);
        }
        println!(
            "| {} | {} | {} | {:.0} | {:.0} | {:.1} % |",
            if version == 9 { "v9" } else { "IPFIX" },
            datagrams.len(),
            per_pass,
            median(&mut rates),
            median(&mut ns),
            steal_since(s0)
        );
    }
    // Memory per distinct key: one minute's maps for 200,000 distinct
    // sources (each also a distinct connection), against RSS.
    let datagrams = capture(&dir, &pcap, 9, &["-m", "100000"]);
    let mut decoder = Decoder::new(true);
    let mut flows = Vec::new();
    for d in &datagrams {
        decoder.decode(from, d, &mut flows);
    }
    let before = rss_kib();
    let mut traffic = Traffic::new(1_000_000);
    let mut keyed = 0u64;
    for shift in 0..4u8 {
        for f in &flows {
            let mut f = *f;
            if let std::net::IpAddr::V4(a) = f.src {
                let o = a.octets();
                f.src = std::net::IpAddr::from([o[0] + shift, o[1], o[2], o[3]]);
            }
            traffic.add(from.ip(), &f);
            keyed += 1;
        }
    }
    let grown = rss_kib().saturating_sub(before) * 1024;
    let keys = traffic.keys() as u64;
    println!();
    println!(
        "memory: {keyed} flows, {keys} keys held over all maps, RSS +{:.1} MB: {:.0} bytes per key",
        grown as f64 / 1e6,
        grown as f64 / keys as f64
    );
}
