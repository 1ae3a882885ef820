//! The binary standalone, as an operator runs it without Grafolean: it
//! receives on the address it is given (IPv6 too), counts each exporter's
//! bytes and flows on `/metrics` as they come, shares its port between
//! receive sockets, and stays small when idle.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{installed, softflowd, traffic, write_pcap};
use grafolean_collector::testing::process::{
    BotCommand, TestDir, free_udp_port, sample, sample_with,
};

const BIN: &str = env!("CARGO_BIN_EXE_grafolean-netflow-bot");

fn rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// The bytes softflowd reports for the test's pcap: the sum of the IP
/// lengths of its packets (v9 and IPFIX carry the IPv6 flows too).
fn pcap_bytes() -> u64 {
    traffic().iter().map(|p| p.ip_bytes()).sum()
}

/// The flows in it: distinct 5-tuples.
fn pcap_flows() -> usize {
    let keys: std::collections::HashSet<_> = traffic()
        .iter()
        .map(|p| (p.src, p.dst, p.protocol, p.src_port, p.dst_port))
        .collect();
    keys.len()
}

#[test]
fn an_ipv6_exporter_is_counted_on_metrics_as_its_flows_come() {
    if !installed(&["softflowd"]) {
        return;
    }
    let dir = TestDir::new("netflow-standalone-v6");
    let pcap = dir.join("flows.pcap");
    write_pcap(&pcap, &traffic());
    let addr: SocketAddr = format!("[::1]:{}", free_udp_port()).parse().unwrap();
    let mut command = BotCommand::new(BIN);
    command.args([
        "--netflow-listen",
        &addr.to_string(),
        "--receive-threads",
        "2",
    ]);
    let mut bot = command.start();
    bot.wait_ready(Duration::from_secs(20));
    let idle = rss_mb(bot.pid());
    eprintln!("idle RSS: {idle:.1} MB");
    softflowd(&dir, &pcap, 9, &[addr], &[]);
    softflowd(&dir, &pcap, 10, &[addr], &[]);
    let series = [
        "exporter=\"::1\"",
        "interface=\"0\"",
        "direction=\"ingress\"",
    ];
    let metrics = bot.wait_for_metrics(Duration::from_secs(10), Duration::from_millis(100), |m| {
        sample_with(m, "netflow_flows_total{", &series)
            .is_some_and(|v| v >= 2.0 * pcap_flows() as f64)
    });
    let bytes = sample_with(&metrics, "netflow_bytes_total{", &series).unwrap();
    assert_eq!(bytes as u64, 2 * pcap_bytes(), "{metrics}");
    assert_eq!(
        sample_with(
            &metrics,
            "netflow_malformed_datagrams_total{",
            &["exporter=\"::1\""]
        ),
        Some(0.0)
    );
    assert_eq!(sample(&metrics, "netflow_socket_drops_total"), Some(0.0));
    // Below the 30 MB for an idle bot.
    assert!(idle < 30.0, "idle RSS {idle:.1} MB");
    let status = bot.stop();
    assert!(status.success(), "{status:?}\n{}", bot.log().join("\n"));
}

#[test]
fn data_before_its_template_is_counted_as_held_then_replayed_on_metrics() {
    if !installed(&["softflowd"]) {
        return;
    }
    let dir = TestDir::new("netflow-standalone-held");
    let pcap = dir.join("flows.pcap");
    write_pcap(&pcap, &traffic());
    let datagrams = common::capture(&dir, &pcap, 9, &[]);
    let addr: SocketAddr = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
    let mut command = BotCommand::new(BIN);
    command.args(["--netflow-listen", &addr.to_string()]);
    let mut bot = command.start();
    bot.wait_ready(Duration::from_secs(20));
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let exporter = ["exporter=\"127.0.0.1\""];
    socket
        .send_to(&common::without_templates(&datagrams[0]), addr)
        .unwrap();
    let metrics = bot.wait_for_metrics(Duration::from_secs(10), Duration::from_millis(100), |m| {
        sample_with(m, "netflow_held_sets_total{", &exporter).is_some_and(|v| v >= 1.0)
    });
    assert_eq!(
        sample_with(&metrics, "netflow_held_sets_replayed_total{", &exporter),
        Some(0.0),
        "{metrics}"
    );
    for d in &datagrams {
        socket.send_to(d, addr).unwrap();
    }
    let metrics = bot.wait_for_metrics(Duration::from_secs(10), Duration::from_millis(100), |m| {
        sample_with(m, "netflow_held_sets_replayed_total{", &exporter)
            == sample_with(m, "netflow_held_sets_total{", &exporter)
    });
    assert_eq!(
        sample_with(&metrics, "netflow_held_sets_dropped_total{", &exporter),
        Some(0.0),
        "{metrics}"
    );
    let status = bot.stop();
    assert!(status.success(), "{status:?}\n{}", bot.log().join("\n"));
}

#[test]
fn a_port_that_cannot_be_bound_stops_the_bot_with_the_reason() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let mut command = BotCommand::new(BIN);
    command.args(["--netflow-listen", &addr.to_string()]);
    let mut bot = command.start();
    for _ in 0..100 {
        if !bot.is_running() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!bot.is_running(), "the bot runs without its port");
    let log = bot.log().join("\n");
    assert!(
        log.contains(&format!("cannot receive NetFlow on udp {addr}")),
        "{log}"
    );
}
