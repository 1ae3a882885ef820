//! Private network namespaces for tests that need a target that stays silent.
//!
//! Traffic never leaves the machine. A test that needs a silent target runs
//! itself again inside a new network namespace:
//!
//! 1. [`run_in_private_netns`] re-executes the current test binary as
//!    `unshare -n -- <test binary> --exact <name> --ignored`, with
//!    `GRAFOLEAN_PING_NETNS=1` set, and checks that the inner test passed.
//! 2. The inner test (marked `#[ignore]`, so plain runs skip it) calls
//!    [`Lab::setup`]. In its own, empty namespace it brings `lo` up, lets
//!    every group open ping sockets (`net.ipv4.ping_group_range` is per
//!    namespace), and starts a second namespace, the "silent host": a child
//!    `unshare -n -- sleep 120`. A veth pair joins them: `10.200.0.1/24` and
//!    `fd00:200::1/64` on this side, `10.200.0.2` and `fd00:200::2` on the
//!    silent host, which sets `icmp_echo_ignore_all` for IPv4 and IPv6. It
//!    answers ARP and neighbour discovery but never an echo request.
//!
//! Both namespaces vanish when their processes exit; the silent host is
//! killed when the [`Lab`] is dropped and exits by itself after 120 s anyway.
//! Needs root (or CAP_SYS_ADMIN and CAP_NET_ADMIN), `unshare`, `nsenter`,
//! `ip` and `sysctl`.

#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Set in the environment of the re-executed test binary.
pub const ENV: &str = "GRAFOLEAN_PING_NETNS";
/// Printed by an inner test that really ran, and looked for by the outer one.
pub const MARKER: &str = "grafolean-ping-netns-test-ran";

/// The silent host's IPv4 address.
pub const SILENT_V4: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 200, 0, 2));
/// The silent host's IPv6 address.
pub const SILENT_V6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0x200, 0, 0, 0, 0, 0, 2));

/// Whether this process is the re-executed one, inside a private namespace.
pub fn inside() -> bool {
    std::env::var_os(ENV).is_some()
}

/// Runs the ignored test `name` of this binary inside a new network
/// namespace, and panics with its output unless it passed.
pub fn run_in_private_netns(name: &str) {
    run_isolated(name, &["-n"]);
}

/// Runs the ignored test `name` of this binary under `unshare <flags>` (for
/// example `-m -n` for private mount and network namespaces), and panics
/// with its output unless it passed.
pub fn run_isolated(name: &str, flags: &[&str]) {
    let exe = std::env::current_exe().expect("the test binary's path");
    let output = Command::new("unshare")
        .args(flags)
        .arg("--")
        .arg(exe)
        .args([
            "--exact",
            name,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ENV, "1")
        .output()
        .expect("cannot run `unshare`; is util-linux installed?");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}\n{stderr}");
    assert!(
        output.status.success() && stdout.contains(MARKER),
        "{name} failed inside a private network namespace (needs root): {}\n{stdout}\n{stderr}",
        output.status
    );
}

/// Runs a command and panics with its output when it fails.
pub fn sh(cmd: &str) -> String {
    run(Command::new("sh").args(["-c", cmd]), cmd)
}

fn run(command: &mut Command, cmd: &str) -> String {
    let out = command.output().expect("cannot run sh or nsenter");
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// This namespace, wired to a silent host.
#[derive(Debug)]
pub struct Lab {
    silent_host: Child,
}

impl Lab {
    /// Sets the namespaces up. Panics unless it runs inside
    /// [`run_in_private_netns`].
    pub fn setup() -> Self {
        assert!(
            inside(),
            "Lab::setup() changes the network; it only runs in a private namespace"
        );
        sh("ip link set lo up && sysctl -qw net.ipv4.ping_group_range='0 2147483647'");
        let silent_host = Command::new("unshare")
            .args(["-n", "--", "sleep", "120"])
            .stdin(Stdio::null())
            .spawn()
            .expect("cannot start the silent host");
        let pid = silent_host.id();
        // Wait until the child has its own namespace.
        let ours = std::fs::read_link("/proc/self/ns/net").unwrap();
        let started = Instant::now();
        while std::fs::read_link(format!("/proc/{pid}/ns/net"))
            .ok()
            .as_ref()
            == Some(&ours)
        {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "the silent host did not unshare"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let lab = Self { silent_host };
        // No duplicate address detection, so IPv6 is usable at once.
        let no_dad = "sysctl -qw net.ipv6.conf.default.accept_dad=0 net.ipv6.conf.all.accept_dad=0";
        sh(no_dad);
        lab.on_silent_host(no_dad);
        sh(&format!(
            "ip link add veth-a type veth peer name veth-b netns {pid} && \
             ip addr add 10.200.0.1/24 dev veth-a && ip -6 addr add fd00:200::1/64 dev veth-a nodad && \
             ip link set veth-a up"
        ));
        lab.on_silent_host(
            "ip link set lo up && ip addr add 10.200.0.2/24 dev veth-b && \
             ip -6 addr add fd00:200::2/64 dev veth-b nodad && ip link set veth-b up",
        );
        lab.set_silent(true);
        // Wait until both neighbour entries are resolved: a veth link takes a
        // moment to pass traffic, and a probe that left before then would be
        // "silent" for the wrong reason. A UDP datagram to a closed port makes
        // the kernel resolve the neighbour (the silent host answers ARP and
        // neighbour discovery; its "port unreachable" is ignored).
        let started = Instant::now();
        let udp4 = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        let udp6 = std::net::UdpSocket::bind("[::]:0").unwrap();
        while !["10.200.0.2 lladdr", "fd00:200::2 lladdr"]
            .iter()
            .all(|n| lab.neighbours().contains(n))
        {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the veth pair did not come up: {}",
                lab.neighbours()
            );
            let _ = udp4.send_to(b"hello", (SILENT_V4, 9));
            let _ = udp6.send_to(b"hello", (SILENT_V6, 9));
            std::thread::sleep(Duration::from_millis(50));
        }
        lab
    }

    /// Runs a shell command inside the silent host's namespace.
    pub fn on_silent_host(&self, cmd: &str) -> String {
        let pid = self.silent_host.id().to_string();
        run(
            Command::new("nsenter").args(["-t", &pid, "-n", "sh", "-c", cmd]),
            cmd,
        )
    }

    /// Makes the silent host ignore echo requests (`true`) or answer them.
    pub fn set_silent(&self, silent: bool) {
        let v = u8::from(silent);
        self.on_silent_host(&format!(
            "sysctl -qw net.ipv4.icmp_echo_ignore_all={v} net.ipv6.icmp.echo_ignore_all={v}"
        ));
    }

    /// The neighbour entries on this side of the veth: proof that requests
    /// reached the silent host's link.
    pub fn neighbours(&self) -> String {
        sh("ip neigh show dev veth-a; ip -6 neigh show dev veth-a")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.silent_host.kill();
        let _ = self.silent_host.wait();
    }
}
