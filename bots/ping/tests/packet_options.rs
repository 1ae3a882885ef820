//! Packet options on the wire: payload size, TTL, the DF bit and the source
//! address, seen by a capturing raw socket on loopback and on a real path
//! with a 1,500-byte MTU (the veth pair of `common/netns.rs`). Each `#[test]`
//! re-executes its `*_inner` twin inside `unshare -n`. Needs root.

mod common;

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use common::netns::{self, Lab, SILENT_V4};
use grafolean_ping_bot::icmp::{PacketOptions, PingError, Pinger, PingerOptions};
use socket2::{Domain, Protocol, Socket, Type};

/// A raw ICMPv4 socket that sees every ICMPv4 packet in the namespace,
/// requests included (on loopback).
fn capture() -> Socket {
    let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    s
}

/// The IPv4 header of the first echo request of `len` bytes (IP header
/// included) captured within a second.
fn request_header(mut s: &Socket, len: usize) -> [u8; 20] {
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut buf = vec![0u8; 16384];
    while Instant::now() < deadline {
        let Ok(n) = s.read(&mut buf) else { continue };
        if n == len && buf[20] == 8 {
            return buf[..20].try_into().unwrap();
        }
    }
    panic!("no echo request of {len} bytes was captured");
}

#[test]
fn packet_options_reach_the_wire() {
    netns::run_in_private_netns("packet_options_reach_the_wire_inner");
}

#[tokio::test]
#[ignore = "runs inside a private network namespace, started by packet_options_reach_the_wire"]
async fn packet_options_reach_the_wire_inner() {
    if !netns::inside() {
        return;
    }
    let lab = Lab::setup();
    lab.set_silent(false);
    let pinger = Pinger::new(PingerOptions::default()).unwrap();
    let timeout = Duration::from_secs(1);
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let cap = capture();

    // The default: a 16-byte payload, the system's TTL (64).
    assert!(pinger.ping(lo, timeout).await.unwrap().is_some());
    let h = request_header(&cap, 20 + 8 + 16);
    assert_eq!(h[8], 64);

    // Payload size, TTL and source address.
    let opts = PacketOptions {
        payload: 1000,
        ttl: Some(7),
        source: Some("127.0.0.5".parse().unwrap()),
        ..PacketOptions::default()
    };
    assert!(
        pinger
            .ping_with(lo, timeout, &opts)
            .await
            .unwrap()
            .is_some()
    );
    let h = request_header(&cap, 20 + 8 + 1000);
    assert_eq!(h[8], 7, "ttl");
    assert_eq!(&h[12..16], &[127, 0, 0, 5], "source");

    // The same with the DF bit, written by the pinger itself.
    let df = PacketOptions {
        dont_fragment: true,
        ttl: Some(9),
        ..opts
    };
    assert!(pinger.ping_with(lo, timeout, &df).await.unwrap().is_some());
    let h = request_header(&cap, 20 + 8 + 1000);
    assert_eq!((h[8], h[6] & 0x40), (9, 0x40), "ttl and DF");
    assert_eq!(&h[12..16], &[127, 0, 0, 5], "source");

    // Over the veth (MTU 1500): 2,000 bytes go through fragmented, but not
    // with DF; 1,472 bytes (1,500 - 28) fit either way.
    let big = |payload, dont_fragment| PacketOptions {
        payload,
        dont_fragment,
        ..PacketOptions::default()
    };
    let answered = |r: Result<Option<Duration>, PingError>| matches!(r, Ok(Some(_)));
    assert!(answered(
        pinger
            .ping_with(SILENT_V4, timeout, &big(2000, false))
            .await
    ));
    assert!(answered(
        pinger.ping_with(SILENT_V4, timeout, &big(1472, true)).await
    ));
    let too_big = pinger.ping_with(SILENT_V4, timeout, &big(2000, true)).await;
    assert!(!answered(too_big), "2,000 bytes with DF over a 1,500 MTU");

    // IPv6: payload size and hop limit.
    let v6 = PacketOptions {
        payload: 1200,
        ttl: Some(1),
        ..PacketOptions::default()
    };
    let lo6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
    assert!(answered(pinger.ping_with(lo6, timeout, &v6).await));

    // A source address that is not on this host cannot be used.
    let elsewhere = PacketOptions {
        source: Some("192.0.2.77".parse().unwrap()),
        ..PacketOptions::default()
    };
    match pinger.ping_with(lo, timeout, &elsewhere).await {
        Err(PingError::Unsupported { reason, .. }) => {
            assert!(reason.contains("assign"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    println!("{}", netns::MARKER);
}
