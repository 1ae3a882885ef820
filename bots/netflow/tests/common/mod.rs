//! Real NetFlow for the tests: a pcap with known flows written here,
//! `softflowd` exporting it as v5, v9 or IPFIX, and `nfcapd`/`nfdump` as the
//! reference collector.
//!
//! Without softflowd or nfdump installed the tests say so loudly and pass;
//! CI installs them (`apt-get install softflowd nfdump`, in
//! `tests/setup.sh`).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use grafolean_collector::testing::process::{TestDir, free_udp_port};

/// One packet of a test flow.
#[derive(Clone, Copy, Debug)]
pub struct Packet {
    /// Source address (IPv4 or IPv6, as `dst`).
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// 6 (TCP) or 17 (UDP).
    pub protocol: u8,
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Payload bytes after the transport header.
    pub payload: usize,
}

impl Packet {
    /// The packet's IP length: what NetFlow counts as its bytes.
    pub fn ip_bytes(&self) -> u64 {
        let l4 = if self.protocol == 6 { 20 } else { 8 };
        let ip = if self.src.is_ipv4() { 20 } else { 40 };
        (ip + l4 + self.payload) as u64
    }
}

/// The test's traffic: 14 IPv4 sources (so the top 10 leave some out), to
/// 3 destinations on 5 ports, over UDP and TCP, and 3 IPv6 flows; every
/// flow's bytes differ, so that no two keys of any top list tie.
pub fn traffic() -> Vec<Packet> {
    let mut packets = Vec::new();
    let ports = [53u16, 123, 443, 8080, 9000];
    for i in 0..14u16 {
        let src: IpAddr = format!("10.0.0.{}", i + 1).parse().unwrap();
        let dst: IpAddr = format!("192.168.1.{}", 1 + i % 3).parse().unwrap();
        let protocol = if i.is_multiple_of(4) { 6 } else { 17 };
        for k in 0..(1 + i % 3) {
            packets.push(Packet {
                src,
                dst,
                protocol,
                src_port: 10_000 + i,
                dst_port: ports[usize::from(i) % ports.len()],
                payload: 100 + 37 * usize::from(i) + 11 * usize::from(k),
            });
        }
    }
    for i in 0..3u16 {
        packets.push(Packet {
            src: format!("2001:db8::{}", i + 1).parse().unwrap(),
            dst: "2001:db8::100".parse().unwrap(),
            protocol: 17,
            src_port: 20_000 + i,
            dst_port: 5353,
            payload: 900 + 13 * usize::from(i),
        });
    }
    packets
}

fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Writes `packets` as an Ethernet pcap, 10 ms apart.
pub fn write_pcap(path: &Path, packets: &[Packet]) {
    let mut out = Vec::new();
    // Global header: magic, v2.4, UTC, accuracy, snaplen, Ethernet.
    out.extend(0xa1b2_c3d4u32.to_le_bytes());
    out.extend(2u16.to_le_bytes());
    out.extend(4u16.to_le_bytes());
    out.extend(0u32.to_le_bytes());
    out.extend(0u32.to_le_bytes());
    out.extend(65_535u32.to_le_bytes());
    out.extend(1u32.to_le_bytes());
    let start = 1_700_000_000u32;
    for (n, p) in packets.iter().enumerate() {
        let mut l4 = Vec::new();
        l4.extend(p.src_port.to_be_bytes());
        l4.extend(p.dst_port.to_be_bytes());
        if p.protocol == 6 {
            l4.extend(1u32.to_be_bytes()); // seq
            l4.extend(0u32.to_be_bytes()); // ack
            l4.extend([0x50, 0x18]); // header length 20, PSH+ACK
            l4.extend(65_535u16.to_be_bytes());
            l4.extend([0, 0, 0, 0]); // checksum (not checked), urgent
        } else {
            l4.extend(((8 + p.payload) as u16).to_be_bytes());
            l4.extend([0, 0]);
        }
        l4.extend(std::iter::repeat_n(b'x', p.payload));
        let mut frame = vec![0u8; 12];
        match (p.src, p.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                frame.extend([0x08, 0x00]);
                let mut ip = vec![0x45, 0];
                ip.extend(((20 + l4.len()) as u16).to_be_bytes());
                ip.extend([0, 1, 0, 0, 64, p.protocol, 0, 0]);
                ip.extend(s.octets());
                ip.extend(d.octets());
                let sum = checksum(&ip);
                ip[10..12].copy_from_slice(&sum.to_be_bytes());
                frame.extend(ip);
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                frame.extend([0x86, 0xdd]);
                frame.extend(0x6000_0000u32.to_be_bytes());
                frame.extend((l4.len() as u16).to_be_bytes());
                frame.extend([p.protocol, 64]);
                frame.extend(s.octets());
                frame.extend(d.octets());
            }
            _ => panic!("mixed address families"),
        }
        frame.extend(l4);
        let micros = n as u32 * 10_000;
        out.extend((start + micros / 1_000_000).to_le_bytes());
        out.extend((micros % 1_000_000).to_le_bytes());
        out.extend((frame.len() as u32).to_le_bytes());
        out.extend((frame.len() as u32).to_le_bytes());
        out.extend(frame);
    }
    std::fs::File::create(path)
        .and_then(|mut f| f.write_all(&out))
        .unwrap();
}

/// Whether `program` is installed; says loudly when not.
pub fn installed(programs: &[&str]) -> bool {
    for program in programs {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {program}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            eprintln!(
                "\n!!!!!!!! SKIPPED: {program} is not installed; run `apt-get install softflowd nfdump pmacct` (CI does, through tests/setup.sh) !!!!!!!!\n"
            );
            return false;
        }
    }
    true
}

/// Runs softflowd over `pcap` as NetFlow `version` (5, 9 or 10), to every
/// one of `to`, with `args` added (such as `-s 5`), until it has sent it all.
pub fn softflowd(dir: &TestDir, pcap: &Path, version: u8, to: &[SocketAddr], args: &[&str]) {
    let to: Vec<String> = to.iter().map(|a| a.to_string()).collect();
    let output = Command::new("softflowd")
        .args(["-d", "-r"])
        .arg(pcap)
        .args(["-v", &version.to_string(), "-n", &to.join(",")])
        // No control socket: with one at a path of its own, softflowd 1.1
        // does not exit at the pcap's end.
        .args(["-c", "none"])
        .arg("-p")
        .arg(dir.join(format!("softflowd-{version}.pid")))
        .args(args)
        .output()
        .expect("softflowd runs");
    assert!(output.status.success(), "softflowd: {output:?}");
}

/// A running nfcapd, writing a file per minute.
#[derive(Debug)]
pub struct Nfcapd {
    /// Where it receives.
    pub addr: SocketAddr,
    dir: PathBuf,
    child: Child,
}

impl Nfcapd {
    /// Starts nfcapd on a free loopback port, into `dir`, with `args`
    /// added (such as `-s 5`: multiply by a sampling rate).
    pub fn start(dir: &Path, args: &[&str]) -> Self {
        let port = free_udp_port();
        std::fs::create_dir_all(dir).unwrap();
        let child = Command::new("nfcapd")
            .arg("-w")
            .arg(dir)
            .args(["-b", "127.0.0.1", "-p", &port.to_string(), "-t", "60"])
            .args(args)
            .env("TZ", "UTC")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nfcapd starts");
        // It binds at once; give it a moment to.
        std::thread::sleep(Duration::from_millis(300));
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir: dir.to_path_buf(),
            child,
        }
    }

    /// Stops it (its last file is written), and returns its files.
    pub fn stop(mut self) -> Vec<PathBuf> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("nfcapd.2"))
            })
            .collect();
        files.sort();
        files
    }
}

impl Drop for Nfcapd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `nfdump -r file`'s answer for `args`, with `format` (an `-o fmt:`
/// line of space-separated fields), as rows of fields.
pub fn nfdump(files: &[PathBuf], args: &[&str], format: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for file in files {
        let output = Command::new("nfdump")
            .arg("-r")
            .arg(file)
            .args(["-q", "-N", "-o", &format!("fmt:{format}")])
            .args(args)
            .env("TZ", "UTC")
            .output()
            .expect("nfdump runs");
        assert!(output.status.success(), "nfdump: {output:?}");
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            let fields: Vec<String> = line.split_whitespace().map(str::to_string).collect();
            if !fields.is_empty() {
                rows.push(fields);
            }
        }
    }
    rows
}

/// Bytes per key over `files` (flows read raw, summed here, so that several
/// files add up): the reference for the bot's totals and top lists.
/// `key` picks the key's fields from a row of `fields`.
pub fn nfdump_bytes(files: &[PathBuf], fields: &str, filter: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let format = format!("{fields} %byt");
    for row in nfdump(files, &[filter], &format) {
        let (bytes, key) = row.split_last().unwrap();
        *out.entry(key.join(" ")).or_insert(0) += bytes.parse::<u64>().unwrap();
    }
    out
}

/// The `n` largest of `map`, largest first.
pub fn top(map: &BTreeMap<String, u64>, n: usize) -> Vec<(String, u64)> {
    let mut all: Vec<(String, u64)> = map.iter().map(|(k, v)| (k.clone(), *v)).collect();
    all.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    all.truncate(n);
    all
}

/// `nfdump -s <stat>/bytes -n 10` over `file` with `filter`: the top 10
/// keys and their bytes, largest first.
pub fn nfdump_stat(file: &Path, stat: &str, filter: &str) -> Vec<(String, u64)> {
    let output = Command::new("nfdump")
        .arg("-r")
        .arg(file)
        .args([
            "-q",
            "-N",
            "-o",
            "csv",
            "-n",
            "10",
            "-s",
            &format!("{stat}/bytes"),
        ])
        .arg(filter)
        .env("TZ", "UTC")
        .output()
        .expect("nfdump runs");
    assert!(output.status.success(), "nfdump: {output:?}");
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let val = header
        .iter()
        .position(|h| *h == "val")
        .expect("a val column");
    let byt = header
        .iter()
        .position(|h| *h == "byt")
        .expect("a byt column");
    lines
        .take_while(|l| !l.trim().is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split(',').collect();
            (
                cols[val].trim().to_string(),
                cols[byt].trim().parse().unwrap(),
            )
        })
        .collect()
}

/// The datagrams softflowd sends for `pcap` as `version`, with `args`
/// added: received here on a loopback socket.
pub fn capture(dir: &TestDir, pcap: &Path, version: u8, args: &[&str]) -> Vec<Vec<u8>> {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    // softflowd sends a pcap's flows at once: room for all of them (as
    // root past net.core.rmem_max).
    let _ = nix::sys::socket::setsockopt(
        &socket,
        nix::sys::socket::sockopt::RcvBufForce,
        &(256 << 20),
    );
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let addr = socket.local_addr().unwrap();
    softflowd(dir, pcap, version, &[addr], args);
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65_536];
    while let Ok(n) = socket.recv(&mut buf) {
        out.push(buf[..n].to_vec());
    }
    assert!(!out.is_empty(), "softflowd sent nothing");
    out
}

/// A v9 datagram without its template flowsets (id 0): what an exporter
/// sends between its template refreshes.
pub fn without_templates(datagram: &[u8]) -> Vec<u8> {
    assert_eq!(
        u16::from_be_bytes([datagram[0], datagram[1]]),
        9,
        "a v9 datagram"
    );
    let mut out = datagram[..20].to_vec();
    let mut at = 20;
    while at + 4 <= datagram.len() {
        let id = u16::from_be_bytes([datagram[at], datagram[at + 1]]);
        let len = usize::from(u16::from_be_bytes([datagram[at + 2], datagram[at + 3]]));
        if len < 4 || at + len > datagram.len() {
            break;
        }
        if id != 0 {
            out.extend_from_slice(&datagram[at..at + len]);
        }
        at += len;
    }
    out
}

/// `n` distinct UDP flows of one packet each: sources over 10.0.0.0/8,
/// 1,000 destinations, 100 destination ports, IPv4 only; sizes vary.
pub fn many_flows(n: u32) -> Vec<Packet> {
    (0..n)
        .map(|i| Packet {
            src: IpAddr::from([10, (i >> 16) as u8, (i >> 8) as u8, i as u8]),
            dst: IpAddr::from([192, 168, (i % 1000 / 250) as u8, (i % 250) as u8 + 1]),
            protocol: if i.is_multiple_of(5) { 6 } else { 17 },
            src_port: 1024 + (i % 50_000) as u16,
            dst_port: 1 + (i % 100) as u16,
            payload: 40 + (i % 1400) as usize,
        })
        .collect()
}

/// (steal, total) jiffies of the whole machine, from `/proc/stat`.
pub fn steal() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let cpu: Vec<u64> = s
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    (cpu.get(7).copied().unwrap_or(0), cpu.iter().sum())
}

/// The steal, in % of the machine's time since `from`.
pub fn steal_since(from: (u64, u64)) -> f64 {
    let now = steal();
    let total = now.1.saturating_sub(from.1).max(1);
    100.0 * now.0.saturating_sub(from.0) as f64 / total as f64
}

/// Waits (up to 10 s) until a socket is bound to 127.0.0.1:`port` of
/// `addr` (the bot binds when it starts), as `/proc/net/udp` lists it;
/// binding it here to find out would take the port from the bot.
pub async fn wait_bound(addr: SocketAddr) {
    let local = format!("0100007F:{:04X}", addr.port());
    for _ in 0..200 {
        let table = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
        if table
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some(local.as_str()))
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing bound {addr} within 10 s");
}

/// An IPFIX message without its template sets (id 2), its length fixed.
pub fn ipfix_without_templates(datagram: &[u8]) -> Vec<u8> {
    assert_eq!(
        u16::from_be_bytes([datagram[0], datagram[1]]),
        10,
        "an IPFIX message"
    );
    let mut out = datagram[..16].to_vec();
    let mut at = 16;
    while at + 4 <= datagram.len() {
        let id = u16::from_be_bytes([datagram[at], datagram[at + 1]]);
        let len = usize::from(u16::from_be_bytes([datagram[at + 2], datagram[at + 3]]));
        if len < 4 || at + len > datagram.len() {
            break;
        }
        if id != 2 {
            out.extend_from_slice(&datagram[at..at + len]);
        }
        at += len;
    }
    let len = out.len() as u16;
    out[2..4].copy_from_slice(&len.to_be_bytes());
    out
}
