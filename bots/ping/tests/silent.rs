//! Real ICMP with targets that do not answer, inside private network
//! namespaces (see `common/netns.rs`): attribution under load, for both
//! socket kinds, and the collector's values for a silent entity.
//!
//! Each `#[test]` here re-executes its `*_inner` twin inside `unshare -n`;
//! the twins are `#[ignore]`d so that a plain run does not touch the host's
//! network. Needs root.

mod common;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, SystemTime};

use common::netns::{self, Lab, SILENT_V4, SILENT_V6};
use grafolean_collector::{
    Collector, EntityConfig, Intervals, JobConfigs, Problems, SensorConfig, Tick,
};
use grafolean_ping_bot::PingCollector;
use grafolean_ping_bot::icmp::{Family, Pinger, PingerOptions, SocketChoice, SocketKind};

/// `n` distinct answering loopback addresses, 127.1.x.y.
fn loopback_targets(n: usize) -> Vec<IpAddr> {
    (0..n)
        .map(|i| IpAddr::V4(Ipv4Addr::new(127, 1, (i / 200) as u8, (i % 200 + 1) as u8)))
        .collect()
}

/// Pings 1,000 answering loopback addresses, `::1` and the two silent
/// addresses all at once, and checks that exactly the silent ones are down.
async fn attribution_under_load(choice: SocketChoice, kind: SocketKind) {
    let _lab = Lab::setup();
    let pinger = Pinger::new(PingerOptions::default().with_socket(choice)).unwrap();
    assert_eq!(pinger.socket_kind(Family::V4), Some(kind));
    assert_eq!(pinger.socket_kind(Family::V6), Some(kind));
    let mut targets = loopback_targets(1000);
    targets.push(IpAddr::V6(Ipv6Addr::LOCALHOST));
    // The silent targets sit in the middle of the burst.
    targets.insert(500, SILENT_V4);
    targets.insert(700, SILENT_V6);
    let timeout = Duration::from_secs(1);
    let results = futures::future::join_all(targets.iter().map(|&t| pinger.ping(t, timeout))).await;
    let mut down = BTreeSet::new();
    for (target, result) in targets.iter().zip(&results) {
        match result {
            Ok(Some(rtt)) => assert!(*rtt < timeout, "{target}: rtt {rtt:?}"),
            Ok(None) => {
                down.insert(*target);
            }
            Err(e) => panic!("{target}: {e}"),
        }
    }
    assert_eq!(down, BTreeSet::from([SILENT_V4, SILENT_V6]));
    let stats = pinger.stats();
    assert_eq!(
        (stats.sent, stats.answered, stats.timed_out),
        (1003, 1001, 2),
        "{stats:?}"
    );
}

#[test]
fn attribution_under_load_raw_sockets() {
    netns::run_in_private_netns("attribution_under_load_raw_sockets_inner");
}

#[tokio::test]
#[ignore = "runs inside a private network namespace, started by attribution_under_load_raw_sockets"]
async fn attribution_under_load_raw_sockets_inner() {
    if !netns::inside() {
        return;
    }
    attribution_under_load(SocketChoice::Raw, SocketKind::Raw).await;
    println!("{}", netns::MARKER);
}

#[test]
fn attribution_under_load_ping_sockets() {
    netns::run_in_private_netns("attribution_under_load_ping_sockets_inner");
}

#[tokio::test]
#[ignore = "runs inside a private network namespace, started by attribution_under_load_ping_sockets"]
async fn attribution_under_load_ping_sockets_inner() {
    if !netns::inside() {
        return;
    }
    attribution_under_load(SocketChoice::Datagram, SocketKind::Datagram).await;
    println!("{}", netns::MARKER);
}

#[test]
fn silent_host_is_silent_only_while_it_ignores_echoes() {
    netns::run_in_private_netns("silent_host_is_silent_only_while_it_ignores_echoes_inner");
}

/// The control experiment: the same host answers once it stops ignoring
/// echo requests, so "down" above really is the host's silence.
#[tokio::test]
#[ignore = "runs inside a private network namespace, started by silent_host_is_silent_only_while_it_ignores_echoes"]
async fn silent_host_is_silent_only_while_it_ignores_echoes_inner() {
    if !netns::inside() {
        return;
    }
    let lab = Lab::setup();
    let pinger = Pinger::new(PingerOptions::default()).unwrap();
    let timeout = Duration::from_millis(500);
    for target in [SILENT_V4, SILENT_V6] {
        assert_eq!(
            pinger.ping(target, timeout).await.unwrap(),
            None,
            "{target}"
        );
    }
    // The requests did reach the host's link: its neighbour entries resolved.
    let neighbours = lab.neighbours();
    assert!(neighbours.contains("10.200.0.2 lladdr"), "{neighbours}");
    assert!(neighbours.contains("fd00:200::2 lladdr"), "{neighbours}");
    // Unanswered, a packet with `retry = 3` sends 4 requests within its timeout.
    let before = pinger.stats().sent;
    let started = std::time::Instant::now();
    let retried = pinger
        .ping_with_retry(SILENT_V4, Duration::from_millis(400), 3)
        .await;
    let took = started.elapsed();
    assert_eq!(retried.unwrap(), None);
    assert_eq!(pinger.stats().sent - before, 4);
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_millis(700),
        "{took:?}"
    );
    lab.set_silent(false);
    for target in [SILENT_V4, SILENT_V6] {
        let rtt = pinger.ping(target, timeout).await.unwrap();
        assert!(
            rtt.is_some(),
            "{target} did not answer with echo_ignore_all=0"
        );
    }
    lab.set_silent(true);
    assert_eq!(pinger.ping(SILENT_V4, timeout).await.unwrap(), None);
    println!("{}", netns::MARKER);
}

#[test]
fn collector_reports_a_silent_entity_as_down() {
    netns::run_in_private_netns("collector_reports_a_silent_entity_as_down_inner");
}

#[tokio::test]
#[ignore = "runs inside a private network namespace, started by collector_reports_a_silent_entity_as_down"]
async fn collector_reports_a_silent_entity_as_down_inner() {
    if !netns::inside() {
        return;
    }
    let _lab = Lab::setup();
    let collector = PingCollector::new(Pinger::new(PingerOptions::default()).unwrap());
    let entity = EntityConfig {
        account_id: 1,
        entity_id: 99,
        name: "silent".into(),
        entity_type: "device".into(),
        details: serde_json::json!({"ipv4": "10.200.0.2", "ipv6": "fd00:200::2"}),
        credential_id: Some(3),
        credential_details: serde_json::json!({"n_packets": "2", "timeout": "0.3", "sleep_packets": "0.05", "retry": "1"}).into(),
        sensors: vec![SensorConfig {
            sensor_id: 4,
            interval: Some(10),
            details: serde_json::json!({}).into(),
            origin: None,
        }],
        origin: None,
    };
    let jobs = collector.jobs(
        &JobConfigs {
            entities: vec![entity],
        },
        &mut Problems::default(),
    );
    assert_eq!(jobs.len(), 1);
    let tick = Tick {
        at: SystemTime::now(),
        affecting: Intervals::one(10).unwrap(),
    };
    let values = collector.run(tick, &jobs[0].params).await.unwrap();
    let got: Vec<(String, f64)> = values.into_iter().map(|v| (v.path, v.value)).collect();
    let expected: Vec<(String, f64)> = [
        ("entity.99.ping.p0.ok", 0.0),
        ("entity.99.ping.p1.ok", 0.0),
        ("entity.99.ping.success", 0.0),
        ("entity.99.ping.ipv6.p0.ok", 0.0),
        ("entity.99.ping.ipv6.p1.ok", 0.0),
        ("entity.99.ping.ipv6.success", 0.0),
    ]
    .iter()
    .map(|(p, v)| (p.to_string(), *v))
    .collect();
    assert_eq!(got, expected);
    println!("{}", netns::MARKER);
}

#[test]
fn refused_sockets_explain_what_to_do() {
    netns::run_in_private_netns("refused_sockets_explain_what_to_do_inner");
}

/// With `net.ipv4.ping_group_range` closed (as on many hosts), a ping socket
/// is refused, and the error says how to fix it.
#[tokio::test]
#[ignore = "runs inside a private network namespace, started by refused_sockets_explain_what_to_do"]
async fn refused_sockets_explain_what_to_do_inner() {
    if !netns::inside() {
        return;
    }
    netns::sh("sysctl -qw net.ipv4.ping_group_range='1 0'");
    let err =
        Pinger::new(PingerOptions::default().with_socket(SocketChoice::Datagram)).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("cannot open an ICMP socket for IPv4: ping socket: "),
        "{msg}"
    );
    assert!(
        msg.contains("CAP_NET_RAW") && msg.contains("net.ipv4.ping_group_range"),
        "{msg}"
    );
    println!("{}", netns::MARKER);
}

#[test]
fn two_pingers_never_take_each_others_replies() {
    netns::run_in_private_netns("two_pingers_never_take_each_others_replies_inner");
}

/// Two raw sockets both see every reply, as two Python jobs did. Each pinger
/// takes only its own replies and counts the other's as unmatched. In a
/// private namespace, so that no other program's pings are seen.
#[tokio::test]
#[ignore = "runs inside a private network namespace, started by two_pingers_never_take_each_others_replies"]
async fn two_pingers_never_take_each_others_replies_inner() {
    if !netns::inside() {
        return;
    }
    netns::sh("ip link set lo up");
    let raw = || Pinger::new(PingerOptions::default().with_socket(SocketChoice::Raw)).unwrap();
    let (a, b) = (raw(), raw());
    let targets = loopback_targets(300);
    let timeout = Duration::from_secs(1);
    let (ra, rb) = tokio::join!(
        futures::future::join_all(targets.iter().map(|&t| a.ping(t, timeout))),
        futures::future::join_all(targets.iter().map(|&t| b.ping(t, timeout))),
    );
    assert!(ra.iter().chain(&rb).all(|r| matches!(r, Ok(Some(_)))));
    // Let the last replies reach the other socket too.
    tokio::time::sleep(Duration::from_millis(100)).await;
    for stats in [a.stats(), b.stats()] {
        assert_eq!(
            (stats.sent, stats.answered, stats.unmatched),
            (300, 300, 300),
            "{stats:?}"
        );
    }
    println!("{}", netns::MARKER);
}
