//! A real snmpd on a loopback port, for the tests and benchmarks.
//!
//! [`Snmpd::start`] writes a config into a fresh directory, starts
//! `/usr/sbin/snmpd -f` on a free UDP port of 127.0.0.1 (as `nobody` when
//! run as root), waits until it answers, and kills it (by its pid) on drop.
//! Without snmpd installed it returns `None` after saying so loudly; CI
//! installs it (`apt-get install snmpd snmp`).
//!
//! The agent serves, besides its own MIB:
//! - v3 users `grafolean` (SHA/AES), `legacy` (MD5/DES), `modern`
//!   (SHA-256/AES-256), all with `authpass123`/`privpass123`;
//! - a `pass` subtree under [`PASS_OID`] whose rows the test writes with
//!   [`Snmpd::set_pass`] (`oid type value` lines);
//! - optionally the 10,000-row table `nsExtendOutLine."big"`.
#![allow(dead_code)]

pub mod python;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use grafolean_collector::testing::process::free_udp_port;

/// The subtree served by the test's pass script.
pub const PASS_OID: &str = "1.3.6.1.4.1.99999";
/// Interfaces an agent of [`Snmpd::with_fake_interfaces`] makes up (rows
/// set with [`Snmpd::set_interfaces`]).
pub const FAKE_INTERFACES: [u32; 2] = [4242, 4243];
/// The IF-MIB columns served for [`FAKE_INTERFACES`]: ifInOctets (the whole
/// column: snmpd's own ifTable does not let a walk into a row served
/// elsewhere), then ifSpeed and ifCounterDiscontinuityTime (their rows,
/// for GETs; snmpd keeps a pass script's GET answers for good, so set
/// them before they are first asked for).
pub const INTERFACE_OIDS: [&str; 3] = [
    "1.3.6.1.2.1.2.2.1.10",
    "1.3.6.1.2.1.2.2.1.5",
    "1.3.6.1.2.1.31.1.1.1.19",
];
/// Grafolean's three default SNMP sensors (as in the bot's `default.toml`):
/// (first walked OID, second walked OID, expression, output path).
pub const DEFAULT_SENSORS: [(&str, &str, &str, &str); 3] = [
    (
        "1.3.6.1.2.1.2.2.1.2",
        "1.3.6.1.2.1.2.2.1.10",
        "$2",
        "if.in-octets.{$index}.{$1}",
    ),
    (
        "1.3.6.1.2.1.2.2.1.2",
        "1.3.6.1.2.1.2.2.1.16",
        "$2",
        "if.out-octets.{$index}.{$1}",
    ),
    (
        "1.3.6.1.4.1.2021.13.16.2.1.2",
        "1.3.6.1.4.1.2021.13.16.2.1.3",
        "$2 / 1000.0",
        "lmsensors.temp.{$index}.{$1}",
    ),
];
/// nsExtendOutLine."big" (10,000 rows with `extend big`).
pub const BIG_TABLE: &str = "1.3.6.1.4.1.8072.1.3.2.4.1.2.3.98.105.103";
const SNMPD: &str = "/usr/sbin/snmpd";

/// A running snmpd.
#[derive(Debug)]
pub struct Snmpd {
    /// Its address.
    pub addr: SocketAddr,
    dir: PathBuf,
    child: Option<Child>,
    big: bool,
    fake_interfaces: bool,
}

fn is_root() -> bool {
    // The effective uid, from /proc, without libc.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

impl Snmpd {
    /// Starts an agent; `big` adds the 10,000-row table. `None` (after a
    /// loud message) if snmpd is not installed.
    pub fn start(big: bool) -> Option<Self> {
        Self::start_with(big, false)
    }

    /// Starts an agent whose ifInOctets are those of [`FAKE_INTERFACES`]
    /// only (see [`INTERFACE_OIDS`]).
    pub fn with_fake_interfaces() -> Option<Self> {
        Self::start_with(false, true)
    }

    fn start_with(big: bool, fake_interfaces: bool) -> Option<Self> {
        if !std::path::Path::new(SNMPD).exists() {
            eprintln!(
                "\n!!!!!!!! SKIPPED: {SNMPD} is not installed; run `apt-get install snmpd snmp` (CI does) !!!!!!!!\n"
            );
            return None;
        }
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "snmpbot-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("persist")).unwrap();
        let mut snmpd = Self {
            addr: SocketAddr::from(([127, 0, 0, 1], free_udp_port())),
            dir,
            child: None,
            big,
            fake_interfaces,
        };
        snmpd.write_files();
        snmpd.set_pass(&[]);
        snmpd.set_interfaces(&[]);
        snmpd.spawn();
        Some(snmpd)
    }

    fn write_files(&self) {
        let d = self.dir.display();
        let mut conf = format!(
            "agentAddress udp:{addr}\n\
             rocommunity public 127.0.0.1\n\
             createUser grafolean SHA \"authpass123\" AES \"privpass123\"\n\
             rouser -s usm grafolean priv\n\
             createUser legacy MD5 \"authpass123\" DES \"privpass123\"\n\
             rouser -s usm legacy priv\n\
             createUser modern SHA-256 \"authpass123\" AES-256 \"privpass123\"\n\
             rouser -s usm modern priv\n\
             sysName snmpcheck\n\
             pass .{PASS_OID} /bin/sh {d}/pass.sh {d}/pass.data .{PASS_OID}\n\
             dontLogTCPWrappersConnects yes\n",
            addr = self.addr
        );
        if self.big {
            conf.push_str("extend big /usr/bin/seq 1 10000\n");
        }
        // The made-up interfaces, through the same script over their own
        // data file.
        if self.fake_interfaces {
            let [octets, rows @ ..] = INTERFACE_OIDS;
            let mut subtrees = vec![octets.to_string()];
            for column in rows {
                subtrees.extend(FAKE_INTERFACES.map(|i| format!("{column}.{i}")));
            }
            for subtree in subtrees {
                conf.push_str(&format!(
                    "pass .{subtree} /bin/sh {d}/pass.sh {d}/interfaces.data .{subtree}\n"
                ));
            }
        }
        std::fs::write(self.dir.join("snmpd.conf"), conf).unwrap();
        std::fs::write(self.dir.join("snmp.conf"), "mibs :\n").unwrap();
        // GET (-g) finds the OID; GETNEXT (-n) the first one after it, by
        // arcs, in the data file named first, within the registered subtree
        // named second.
        let script = r#"#!/bin/sh
exec awk -v prefix="$2" -v mode="$3" -v req="$4" '
function cmp(a, b,   x, y, n, m, i) {
  n = split(a, x, "."); m = split(b, y, ".")
  for (i = 2; i <= n && i <= m; i++) { if (x[i] + 0 < y[i] + 0) return -1; if (x[i] + 0 > y[i] + 0) return 1 }
  return n - m
}
($1 == prefix || index($1, prefix ".") == 1) && $2 == "backto" {
  # `OID backto EARLIER TYPE VALUE`: GETNEXT of OID answers EARLIER.
  if (mode == "-n" && $1 == req) { v = $0; sub(/^[^ ]+ [^ ]+ [^ ]+ [^ ]+ /, "", v); print $3; print $4; print v; exit }
  next
}
($1 == prefix || index($1, prefix ".") == 1) {
  hit = (mode == "-g" && $1 == req) || (mode == "-n" && cmp($1, req) > 0)
  if (hit) { v = $0; sub(/^[^ ]+ [^ ]+ /, "", v); print $1; print $2; print v; exit }
}' "$1"
"#;
        std::fs::write(self.dir.join("pass.sh"), script).unwrap();
        if is_root() {
            // nobody must be able to read the files and write the persistent dir.
            let _ = Command::new("chmod")
                .args(["-R", "a+rwX"])
                .arg(&self.dir)
                .status();
        }
    }

    /// Replaces the pass script's rows: `(oid under PASS_OID, type, value)`,
    /// such as `("1.1", "counter", "5")`. Rows are sorted by OID here. A
    /// row `("6.2", "backto", "6.1 string x")` makes a GETNEXT of 6.2
    /// answer 6.1 (an OID that does not increase).
    pub fn set_pass(&self, rows: &[(&str, &str, &str)]) {
        let rows: Vec<(String, &str, &str)> = rows
            .iter()
            .map(|(o, t, v)| (format!("{PASS_OID}.{o}"), *t, *v))
            .collect();
        let rows: Vec<(String, &str, String)> = rows
            .into_iter()
            .map(|(o, t, v)| {
                let v = if t == "backto" {
                    format!(".{PASS_OID}.{v}")
                } else {
                    v.to_string()
                };
                (o, t, v)
            })
            .collect();
        let rows: Vec<(String, &str, &str)> = rows
            .iter()
            .map(|(o, t, v)| (o.clone(), *t, v.as_str()))
            .collect();
        self.write_rows("pass.data", &rows);
    }

    /// Replaces the rows of the made-up interfaces: `(full OID, type,
    /// value)`, each under one of [`INTERFACE_OIDS`] and
    /// [`FAKE_INTERFACES`], such as `("1.3.6.1.2.1.2.2.1.5.4242", "gauge",
    /// "10000000")`.
    pub fn set_interfaces(&self, rows: &[(String, &str, String)]) {
        let rows: Vec<(String, &str, &str)> = rows
            .iter()
            .map(|(o, t, v)| (o.clone(), *t, v.as_str()))
            .collect();
        self.write_rows("interfaces.data", &rows);
    }

    fn write_rows(&self, file: &str, rows: &[(String, &str, &str)]) {
        let mut rows: Vec<(Vec<u32>, String)> = rows
            .iter()
            .map(|(o, t, v)| {
                let arcs = o.split('.').map(|a| a.parse().unwrap()).collect();
                (arcs, format!(".{o} {t} {v}\n"))
            })
            .collect();
        rows.sort();
        let tmp = self.dir.join(format!("{file}.tmp"));
        let mut f = std::fs::File::create(&tmp).unwrap();
        for (_, line) in rows {
            f.write_all(line.as_bytes()).unwrap();
        }
        drop(f);
        std::fs::rename(tmp, self.dir.join(file)).unwrap();
        if is_root() {
            let _ = Command::new("chmod")
                .arg("a+r")
                .arg(self.dir.join(file))
                .status();
        }
    }

    fn spawn(&mut self) {
        let mut cmd = if is_root() {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", SNMPD]);
            c
        } else {
            Command::new(SNMPD)
        };
        cmd.args(["-f", "-I", "-smux", "-C", "-c"])
            .arg(self.dir.join("snmpd.conf"))
            .arg("-Lf")
            .arg(self.dir.join("snmpd.log"))
            .env("SNMPCONFPATH", &self.dir)
            .env("SNMP_PERSISTENT_DIR", self.dir.join("persist"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.child = Some(cmd.spawn().expect("snmpd starts"));
        self.wait_ready();
    }

    /// Waits until the agent answers a v2c GET of sysName.0.
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let ok = Command::new("snmpget")
                .args(["-v2c", "-c", "public", "-t", "0.2", "-r", "0"])
                .arg(self.addr.to_string())
                .arg("1.3.6.1.2.1.1.5.0")
                .env("SNMPCONFPATH", &self.dir)
                .env("SNMP_PERSISTENT_DIR", self.dir.join("client"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = std::fs::read_to_string(self.dir.join("snmpd.log")).unwrap_or_default();
        panic!(
            "snmpd on {} did not answer within 10 s; its log:\n{log}",
            self.addr
        );
    }

    /// The agent's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Kills the agent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills and starts the agent again on the same port (its sysUpTime
    /// starts over).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Kills the agent and starts it again with the SNMPv3 engine id
    /// `engine_id` and its persistent state wiped (engine boots start over
    /// at 1), as a device replaced or without persistent storage.
    pub fn restart_with_engine_id(&mut self, engine_id: &str) {
        self.stop();
        let conf = self.dir.join("snmpd.conf");
        let text = std::fs::read_to_string(&conf).unwrap();
        let text: String = text
            .lines()
            .filter(|l| !l.starts_with("engineID "))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(&conf, format!("engineID {engine_id}\n{text}")).unwrap();
        let persist = self.dir.join("persist");
        let _ = std::fs::remove_dir_all(&persist);
        std::fs::create_dir_all(&persist).unwrap();
        if is_root() {
            let _ = Command::new("chmod")
                .args(["-R", "a+rwX"])
                .arg(&self.dir)
                .status();
        }
        self.spawn();
    }

    /// `details.ipv4` for this agent.
    pub fn ipv4(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for Snmpd {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The machine's CPU steal and total ticks so far (`/proc/stat`), for the
/// benchmarks' reports.
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

/// A UDP proxy in front of an agent that drops every GETBULK request (as
/// agents with a broken GETBULK, or firewalls that filter it, do) and
/// passes everything else both ways. Stops when dropped.
#[derive(Debug)]
pub struct DropGetBulk {
    /// Where the bot should send its requests.
    pub addr: SocketAddr,
    /// GETBULK requests dropped so far.
    pub dropped: std::sync::Arc<AtomicU32>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// The PDU tag of an SNMP message (v1/v2c: after the version and the
/// community), if it can be read.
fn pdu_tag(d: &[u8]) -> Option<u8> {
    // Skips one TLV at `at`, returning the index after it (or, for the
    // outer SEQUENCE, after its header).
    let header = |at: usize| -> Option<(usize, usize)> {
        let first = *d.get(at + 1)?;
        if first < 0x80 {
            Some((at + 2, usize::from(first)))
        } else {
            let n = usize::from(first & 0x7f);
            let len = d
                .get(at + 2..at + 2 + n)?
                .iter()
                .fold(0usize, |l, b| (l << 8) | usize::from(*b));
            Some((at + 2 + n, len))
        }
    };
    let (body, _) = header(0)?;
    let (v, vlen) = header(body)?;
    let (c, clen) = header(v + vlen)?;
    d.get(c + clen).copied()
}

impl DropGetBulk {
    /// A proxy on a free port of 127.0.0.1 in front of `agent`.
    pub fn start(agent: SocketAddr) -> Self {
        use std::net::UdpSocket;
        use std::sync::Arc;
        use std::sync::atomic::AtomicBool;
        let front = UdpSocket::bind("127.0.0.1:0").unwrap();
        let back = UdpSocket::bind("127.0.0.1:0").unwrap();
        back.connect(agent).unwrap();
        for s in [&front, &back] {
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
        }
        let addr = front.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicU32::new(0));
        let client: Arc<std::sync::Mutex<Option<SocketAddr>>> = Arc::default();
        let front = Arc::new(front);
        let back = Arc::new(back);
        {
            let (front, back, stop, dropped, client) = (
                front.clone(),
                back.clone(),
                stop.clone(),
                dropped.clone(),
                client.clone(),
            );
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65_536];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, from)) = front.recv_from(&mut buf) else {
                        continue;
                    };
                    *client.lock().unwrap() = Some(from);
                    if pdu_tag(&buf[..n]) == Some(0xa5) {
                        dropped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let _ = back.send(&buf[..n]);
                }
            });
        }
        {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65_536];
                while !stop.load(Ordering::Relaxed) {
                    let Ok(n) = back.recv(&mut buf) else {
                        continue;
                    };
                    if let Some(to) = *client.lock().unwrap() {
                        let _ = front.send_to(&buf[..n], to);
                    }
                }
            });
        }
        Self {
            addr,
            dropped,
            stop,
        }
    }
}

impl Drop for DropGetBulk {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
