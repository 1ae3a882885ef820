//! sFlow v5 from a real agent: pmacct's `pmacctd` samples the packets of a
//! pcap the test writes and exports them with its `sfprobe` plugin to the
//! test, which reads them with the bot's decoder and passes them on to
//! pmacct's own sFlow collector `sfacctd`: sfacctd's aggregates are the
//! reference.
//! Then the same datagrams go to the bot binary on its NetFlow port.

mod common;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{installed, traffic, write_pcap};
use grafolean_collector::testing::process::{BotCommand, TestDir, free_udp_port, sample_with};
use grafolean_netflow_bot::aggregate::{Minute, Traffic};
use grafolean_netflow_bot::decode::Decoder;
use grafolean_netflow_bot::flow::Direction;
use grafolean_netflow_bot::topn::Count;

const BIN: &str = env!("CARGO_BIN_EXE_grafolean-netflow-bot");

/// The ifIndex pmacctd gives its samples' input interface.
const IF_INDEX: u32 = 5;

/// One test at a time: each runs pmacctd, sfacctd and sockets on ephemeral
/// ports, and a pmacctd plugin that sends late into a port the other test
/// has since taken (a bot's) would mix the two streams.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// sfacctd aggregating the stream on `port` three ways, into CSV files in
/// `dir` refreshed every second.
fn sfacctd(dir: &TestDir, port: u16) -> Child {
    let conf = dir.join("sfacctd.conf");
    let out = |name: &str| dir.join(format!("{name}.csv")).display().to_string();
    std::fs::write(
        &conf,
        format!(
            "daemonize: false\nsfacctd_ip: 127.0.0.1\nsfacctd_port: {port}\n\
             plugins: print[host], print[port], print[proto]\n\
             aggregate[host]: src_host\naggregate[port]: dst_port\naggregate[proto]: proto\n\
             print_num_protos: true\nprint_output: csv\nprint_refresh_time: 1\n\
             print_output_file[host]: {}\nprint_output_file[port]: {}\nprint_output_file[proto]: {}\n",
            out("host"),
            out("port"),
            out("proto")
        ),
    )
    .unwrap();
    Command::new("sfacctd")
        .arg("-f")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sfacctd starts")
}

/// pmacctd reading `pcap` and exporting sFlow, sampling 1 in `rate`, to
/// `to`; returns when it has sent everything.
fn pmacctd(dir: &TestDir, pcap: &Path, rate: u32, to: SocketAddr) {
    let conf = dir.join("pmacctd.conf");
    std::fs::write(
        &conf,
        format!(
            "daemonize: false\npcap_savefile: {}\nplugins: sfprobe[a]\n\
             sfprobe_receiver[a]: {to}\nsfprobe_agentip: 192.0.2.1\n\
             sfprobe_ifindex[a]: {IF_INDEX}\nsampling_rate: {rate}\n",
            pcap.display(),
        ),
    )
    .unwrap();
    let status = Command::new("timeout")
        .args(["60", "pmacctd", "-f"])
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("pmacctd runs");
    // It exits by itself once the file is read (with 0 or 1); 124 is the timeout.
    assert_ne!(status.code(), Some(124), "pmacctd did not finish");
}

/// `KEY,PACKETS,BYTES` lines of an sfacctd CSV, as key → bytes.
fn csv(path: &Path) -> BTreeMap<String, u64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split(',').collect();
            Some((cols.first()?.to_string(), cols.last()?.parse().ok()?))
        })
        .collect()
}

struct Reference {
    hosts: BTreeMap<String, u64>,
    ports: BTreeMap<String, u64>,
    protocols: BTreeMap<String, u64>,
}

/// Exports the pcap through pmacctd, sampling 1 in `rate`; returns the
/// datagrams the test received and sfacctd's aggregates of the same.
fn export(dir: &TestDir, pcap: &Path, rate: u32) -> (Vec<Vec<u8>>, Reference) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    // pmacctd's sfprobe plugin is a child process that may still be
    // sending when pmacctd exits: wait for 1.5 s of silence.
    socket
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let sf_port = free_udp_port();
    let mut sf = sfacctd(dir, sf_port);
    std::thread::sleep(Duration::from_millis(500));
    pmacctd(dir, pcap, rate, socket.local_addr().unwrap());
    let mut datagrams = Vec::new();
    let mut buf = vec![0u8; 65_536];
    while let Ok(n) = socket.recv(&mut buf) {
        datagrams.push(buf[..n].to_vec());
    }
    assert!(!datagrams.is_empty(), "pmacctd sent nothing");
    // The same datagrams to sfacctd.
    for d in &datagrams {
        socket.send_to(d, ("127.0.0.1", sf_port)).unwrap();
    }
    // sfacctd writes its files every second: wait until they stop changing.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = None;
    let (hosts, ports, protocols) = loop {
        std::thread::sleep(Duration::from_millis(1500));
        let now = (
            csv(&dir.join("host.csv")),
            csv(&dir.join("port.csv")),
            csv(&dir.join("proto.csv")),
        );
        if !now.0.is_empty() && last.as_ref() == Some(&now) || Instant::now() > deadline {
            break now;
        }
        last = Some(now);
    };
    let _ = sf.kill();
    let _ = sf.wait();
    (
        datagrams,
        Reference {
            hosts,
            ports,
            protocols,
        },
    )
}

fn decode(datagrams: &[Vec<u8>], apply_sampling: bool) -> Traffic {
    let from: SocketAddr = "127.0.0.1:6343".parse().unwrap();
    let mut decoder = Decoder::new(apply_sampling);
    let mut minute = Minute::new(10_000);
    let mut flows = Vec::new();
    for d in datagrams {
        flows.clear();
        let report = decoder.decode(from, d, &mut flows);
        assert!(!report.malformed, "{report:?}");
        assert_eq!(report.sequence_lost, 0, "{report:?}");
        for f in &flows {
            minute.add(from.ip(), f);
        }
    }
    minute.into_traffic()
}

fn setup(name: &str) -> Option<(TestDir, std::path::PathBuf)> {
    if !installed(&["pmacctd", "sfacctd"]) {
        return None;
    }
    let dir = TestDir::new(name);
    let pcap = dir.join("flows.pcap");
    write_pcap(&pcap, &traffic());
    Some((dir, pcap))
}

fn as_strings<K: ToString>(top: Vec<(&K, Count)>) -> BTreeMap<String, u64> {
    top.into_iter()
        .map(|(k, c)| {
            assert_eq!(c.error, 0, "exact");
            (k.to_string(), c.bytes)
        })
        .collect()
}

#[test]
fn sflow_samples_add_up_to_what_sfacctd_counts() {
    let _serial = serial();
    let Some((dir, pcap)) = setup("netflow-sflow") else {
        return;
    };
    let (datagrams, reference) = export(&dir, &pcap, 1);
    let traffic = decode(&datagrams, true);
    let exporter: IpAddr = "127.0.0.1".parse().unwrap();
    let ingress = traffic.get(&exporter, Direction::Ingress).expect("ingress");
    assert!(
        traffic
            .get(&exporter, Direction::Egress)
            .is_none_or(|e| e.flows == 0)
    );
    // Every packet of the pcap, sampled one in one, IPv4 and IPv6.
    assert_eq!(ingress.flows, traffic_len(), "one flow per sampled packet");
    assert_eq!(ingress.bytes, reference.hosts.values().sum::<u64>());
    assert_eq!(as_strings(ingress.ips.top(1000)), reference.hosts);
    assert_eq!(as_strings(ingress.dst_ports.top(1000)), reference.ports);
    assert_eq!(as_strings(ingress.protocols.top(1000)), reference.protocols);
    // All on pmacctd's input interface.
    assert_eq!(
        ingress.interfaces.keys().copied().collect::<Vec<_>>(),
        vec![IF_INDEX]
    );

    // The binary, on its NetFlow port: the same bytes on /metrics.
    let addr: SocketAddr = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
    let mut command = BotCommand::new(BIN);
    command.args(["--netflow-listen", &addr.to_string()]);
    let mut bot = command.start();
    bot.wait_ready(Duration::from_secs(20));
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    for d in &datagrams {
        socket.send_to(d, addr).unwrap();
    }
    let series = [
        "exporter=\"127.0.0.1\"",
        &format!("interface=\"{IF_INDEX}\""),
        "direction=\"ingress\"",
    ];
    // Every datagram counted first, then the sums compared.
    let sent = datagrams.len() as f64;
    let metrics = bot.wait_for_metrics(Duration::from_secs(10), Duration::from_millis(100), |m| {
        sample_with(m, "netflow_datagrams_total{", &["exporter=\"127.0.0.1\""]) >= Some(sent)
    });
    let sizes: Vec<usize> = datagrams.iter().map(Vec::len).collect();
    let why = format!(
        "{} datagrams sent, of {sizes:?} bytes:\n{metrics}",
        sizes.len()
    );
    assert_eq!(
        sample_with(
            &metrics,
            "netflow_datagrams_total{",
            &["exporter=\"127.0.0.1\""]
        ),
        Some(sent),
        "{why}"
    );
    assert_eq!(
        sample_with(&metrics, "netflow_flows_total{", &series),
        Some(traffic_len() as f64),
        "{why}"
    );
    assert_eq!(
        sample_with(&metrics, "netflow_bytes_total{", &series),
        Some(ingress.bytes as f64),
        "{why}"
    );
    let status = bot.stop();
    assert!(status.success(), "{status:?}\n{}", bot.log().join("\n"));
}

#[test]
fn sampled_sflow_is_scaled_by_its_rate_unless_told_not_to() {
    let _serial = serial();
    let Some((dir, pcap)) = setup("netflow-sflow-sampled") else {
        return;
    };
    let rate = 3;
    let (datagrams, reference) = export(&dir, &pcap, rate);
    let exporter: IpAddr = "127.0.0.1".parse().unwrap();
    // sfacctd (without renormalize) counts the sampled packets as they are.
    let sampled: u64 = reference.hosts.values().sum();
    assert!(sampled > 0);
    let raw = decode(&datagrams, false);
    let raw = raw.get(&exporter, Direction::Ingress).unwrap();
    assert_eq!(raw.bytes, sampled);
    assert_eq!(as_strings(raw.ips.top(1000)), reference.hosts);
    let scaled = decode(&datagrams, true);
    let scaled = scaled.get(&exporter, Direction::Ingress).unwrap();
    assert_eq!(scaled.bytes, sampled * u64::from(rate));
    let times_rate: BTreeMap<String, u64> = reference
        .hosts
        .iter()
        .map(|(k, v)| (k.clone(), v * u64::from(rate)))
        .collect();
    assert_eq!(as_strings(scaled.ips.top(1000)), times_rate);
}

fn traffic_len() -> u64 {
    traffic().len() as u64
}
