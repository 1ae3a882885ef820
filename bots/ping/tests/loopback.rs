//! Real ICMP over loopback: answered probes, sane RTTs, both socket kinds.
//!
//! These tests need root or CAP_NET_RAW. Ping sockets (`SOCK_DGRAM`) are
//! tested in `silent.rs`, inside a namespace whose `net.ipv4.ping_group_range`
//! admits them.

use std::net::IpAddr;
use std::time::Duration;

use grafolean_ping_bot::icmp::{Family, Pinger, PingerOptions, SocketChoice, SocketKind};

const TIMEOUT: Duration = Duration::from_secs(2);

fn addr(s: &str) -> IpAddr {
    s.parse().unwrap()
}

async fn assert_answers(pinger: &Pinger, target: &str) {
    let rtt = pinger
        .ping(addr(target), TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{target}: {e}"))
        .unwrap_or_else(|| panic!("{target} did not answer"));
    assert!(
        rtt > Duration::ZERO && rtt < Duration::from_millis(500),
        "{target}: rtt {rtt:?}"
    );
}

#[tokio::test]
async fn loopback_v4_and_v6_answer_on_raw_sockets() {
    let pinger = Pinger::new(PingerOptions::default().with_socket(SocketChoice::Raw)).unwrap();
    assert_eq!(pinger.socket_kind(Family::V4), Some(SocketKind::Raw));
    assert_eq!(pinger.socket_kind(Family::V6), Some(SocketKind::Raw));
    for target in [
        "127.0.0.1",
        "::1",
        "127.0.0.2",
        "127.0.0.77",
        "127.1.2.3",
        "127.255.255.254",
    ] {
        assert_answers(&pinger, target).await;
    }
    let stats = pinger.stats();
    assert_eq!(
        (
            stats.sent,
            stats.answered,
            stats.timed_out,
            stats.send_errors
        ),
        (6, 6, 0, 0)
    );
}

#[tokio::test]
async fn concurrent_probes_to_one_target_each_get_their_own_reply() {
    let pinger = Pinger::new(PingerOptions::default()).unwrap();
    let probes = (0..200).map(|_| pinger.ping(addr("127.0.0.1"), TIMEOUT));
    let results = futures::future::join_all(probes).await;
    assert!(
        results.iter().all(|r| matches!(r, Ok(Some(_)))),
        "{results:?}"
    );
    let stats = pinger.stats();
    assert_eq!((stats.sent, stats.answered, stats.timed_out), (200, 200, 0));
}

#[tokio::test]
async fn probe_returns_one_result_per_packet() {
    let pinger = Pinger::new(PingerOptions::default()).unwrap();
    let results = pinger
        .probe(
            addr("127.0.0.3"),
            3,
            TIMEOUT,
            Duration::from_millis(20),
            1,
            &Default::default(),
        )
        .await;
    assert_eq!(results.len(), 3);
    assert!(
        results.iter().all(|r| matches!(r, Ok(Some(_)))),
        "{results:?}"
    );
}

#[tokio::test]
async fn ipv4_mapped_ipv6_targets_are_pinged_over_ipv4() {
    let pinger = Pinger::new(PingerOptions::default()).unwrap();
    assert_answers(&pinger, "::ffff:127.0.0.4").await;
}

#[tokio::test]
async fn receiver_tasks_stop_when_the_last_pinger_is_dropped() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.num_alive_tasks();
    let pinger = Pinger::new(PingerOptions::default()).unwrap();
    let clone = pinger.clone();
    assert_eq!(metrics.num_alive_tasks(), before + 2);
    drop(pinger);
    tokio::task::yield_now().await;
    assert_eq!(
        metrics.num_alive_tasks(),
        before + 2,
        "a clone is still alive"
    );
    drop(clone);
    for _ in 0..100 {
        if metrics.num_alive_tasks() == before {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the receiver tasks are still running");
}

#[tokio::test]
async fn a_retry_is_sent_when_the_first_request_is_unanswered() {
    // Loopback answers the first request already, so only one is sent.
    let pinger = Pinger::new(PingerOptions::default()).unwrap();
    let rtt = pinger
        .ping_with_retry(addr("127.0.0.5"), TIMEOUT, 3)
        .await
        .unwrap();
    assert!(rtt.is_some());
    assert_eq!(pinger.stats().sent, 1);
}
