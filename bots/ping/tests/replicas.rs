//! Several bot processes on one host (replicas, issue 15 point 3): each has
//! its own raw sockets, and a raw socket sees every echo reply on the host,
//! so each process must take only its own. Both tests put processes behind
//! a veth (see `common/netns.rs`) whose far host answers the processes that
//! ping from 10.200.0.1 and never those that ping from 10.201.0.1, an address
//! it has no route back to: every reply on the wire belongs to an answered
//! process, and the unanswered ones see all of them on their unbound raw
//! sockets. A process that took another's reply as its own would be an
//! unanswered one recording an answer.
//!
//! - [`four_replicas_of_2500_targets_take_no_reply_of_another`], the issue's
//!   size: 4 processes ping the same 2,500 addresses (10.210.0.0/20, local on
//!   the far host's `lo`), two answered, two not. Asserted: the unanswered
//!   record 0 answers though they saw, and rejected, tens of thousands of
//!   the others' replies (their `ping_echo_replies_unmatched_total`), the answered ≥ 99 %. A
//!   pinger that matched a reply by its source address alone fails it.
//! - [`replicas_never_take_each_others_replies`]: six processes, four of
//!   which ping only the far host, once a second from the same moment, so
//!   that their sequence numbers run in step: a pinger that matched replies
//!   by address, identifier and sequence alone, with an identifier shared by
//!   the processes, fails it (the 2,500 targets' sequence numbers never run
//!   in step across processes that load their jobs at different moments).
//!
//! Each re-executes its `_inner` twin inside `unshare -n`. Needs root.

mod common;

use std::time::{Duration, Instant};

use common::netns::{self, Lab};
use common::standalone::Standalone;

/// Loopback targets of the two loaded processes of the in-step test.
const LOOPBACK: usize = 300;

/// The far host (from `source`, or the route's default), and `loopback`
/// loopback addresses.
fn in_step_config(source: Option<&str>, loopback: usize) -> String {
    let mut toml = String::new();
    for i in 0..loopback {
        toml.push_str(&format!(
            "[[entity]]\nid = {}\nname = \"e{i}\"\ndetails = {{ ipv4 = \"127.1.{}.{}\" }}\n\
             credential = {{ n_packets = 1, timeout = 0.5, sleep_packets = 0 }}\n\
             sensors = [{{ interval = 1 }}]\n\n",
            i + 1,
            i / 250,
            i % 250 + 1
        ));
    }
    toml.push_str(&format!(
        "[[entity]]\nid = {}\nname = \"far\"\ndetails = {{ ipv4 = \"10.200.0.2\" }}\n\
         credential = {{ n_packets = 1, timeout = 0.5, sleep_packets = 0{} }}\n\
         sensors = [{{ interval = 1 }}]\n",
        LOOPBACK + 1,
        source.map_or(String::new(), |s| format!(", source = \"{s}\""))
    ));
    toml
}

/// The sum of every sample of `series` whose line contains `filter`.
fn total(text: &str, series: &str, filter: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(series) && l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn replicas_never_take_each_others_replies() {
    netns::run_in_private_netns("replicas_never_take_each_others_replies_inner");
}

#[test]
#[ignore = "runs inside a private network namespace, started by replicas_never_take_each_others_replies"]
fn replicas_never_take_each_others_replies_inner() {
    if !netns::inside() {
        return;
    }
    let lab = Lab::setup();
    lab.set_silent(false);
    // By default this side now speaks to 10.200.0.2 from 10.201.0.1, which
    // it has no route back to; a process that binds 10.200.0.1 is answered.
    netns::sh(
        "ip addr add 10.201.0.1/32 dev veth-a && \
         ip route replace 10.200.0.0/24 dev veth-a src 10.201.0.1",
    );
    // Processes 0 and 1 are answered by 10.200.0.2; 2 and 3 are not, and
    // their unbound raw sockets see 0's and 1's replies. The first four
    // ping only it, so that their sequence numbers run in step (a pinger
    // that matched replies by address and sequence alone fails here); 4 and
    // 5 add the load of the loopback targets.
    let answered_from = Some("10.200.0.1");
    let sources = [
        answered_from,
        answered_from,
        None,
        None,
        answered_from,
        None,
    ];
    let mut bots: Vec<Standalone> = sources
        .iter()
        .enumerate()
        .map(|(i, source)| {
            let loopback = if i < 4 { 0 } else { LOOPBACK };
            Standalone::start(&format!("replica{i}"), &in_step_config(*source, loopback))
        })
        .collect();
    let far = format!(r#"entity="{}",host="10.200.0.2""#, LOOPBACK + 1);
    let requests = "ping_requests_total{";
    let answered = "ping_response_duration_seconds_count{";
    // Until every process has pinged the far host at least 4 times, and
    // each loopback address 3 times.
    let texts: Vec<String> = bots
        .iter_mut()
        .enumerate()
        .map(|(i, bot)| {
            bot.wait_for_metrics(Duration::from_secs(30), Duration::from_millis(100), |t| {
                total(t, requests, &far) >= 4.0
                    && (i < 4 || total(t, requests, "127.1.") >= (3 * LOOPBACK) as f64)
            })
        })
        .collect();
    for (i, text) in texts.iter().enumerate() {
        let (sent, got) = (total(text, requests, &far), total(text, answered, &far));
        if sources[i].is_some() {
            assert!(got >= sent - 1.0, "process {i}: {got} of {sent} answered");
        } else {
            // Not one of the other processes' replies taken as its own.
            assert_eq!(got, 0.0, "process {i}: {got} of {sent} 'answered'");
        }
        if i < 4 {
            continue;
        }
        // And the loopback targets answered, each process its own. Not
        // all: six processes on two loaded cores overflow a raw socket's
        // buffer now and then (a CI run saw 1,171 of 1,183), and what this
        // test is about is asserted above: no process takes another's reply.
        let sent = total(text, requests, "127.1.");
        let got = total(text, answered, "127.1.");
        assert!(got >= 0.95 * sent, "process {i}: {got} of {sent} answered");
    }
    for mut bot in bots {
        assert!(bot.stop().success());
    }
    println!("{}", netns::MARKER);
}

/// Targets per process: the same for all four.
const TARGETS: usize = 2_500;
/// Their interval, in seconds.
const INTERVAL: u32 = 5;
/// The 2,500 targets, pinged from `source` (or the route's default source).
/// The same addresses in every process, with the same entity ids, so the
/// same phases: every process pings a target at the same moment.
fn shared_targets_config(source: Option<&str>) -> String {
    let source = source.map_or(String::new(), |s| format!(", source = \"{s}\""));
    let mut toml = String::new();
    for i in 0..TARGETS {
        toml.push_str(&format!(
            "[[entity]]\nid = {}\nname = \"t{i}\"\ndetails = {{ ipv4 = \"10.210.{}.{}\" }}\n\
             credential = {{ n_packets = 1, timeout = 2, sleep_packets = 0{source} }}\n\
             sensors = [{{ interval = {INTERVAL} }}]\n\n",
            i + 1,
            i / 250,
            i % 250 + 1
        ));
    }
    toml
}

#[test]
fn four_replicas_of_2500_targets_take_no_reply_of_another() {
    netns::run_in_private_netns("four_replicas_of_2500_targets_take_no_reply_of_another_inner");
}

#[test]
#[ignore = "runs inside a private network namespace, started by four_replicas_of_2500_targets_take_no_reply_of_another"]
fn four_replicas_of_2500_targets_take_no_reply_of_another_inner() {
    if !netns::inside() {
        return;
    }
    let lab = Lab::setup();
    lab.set_silent(false);
    // The far host answers for all of 10.210.0.0/20, on its `lo`.
    lab.on_silent_host("ip route add local 10.210.0.0/20 dev lo");
    // By default this side now speaks to it from 10.201.0.1, which it has
    // no route back to; a process that binds 10.200.0.1 is answered.
    netns::sh(
        "ip addr add 10.201.0.1/32 dev veth-a && \
         ip route replace 10.200.0.0/24 dev veth-a src 10.201.0.1 && \
         ip route add 10.210.0.0/20 via 10.200.0.2 dev veth-a src 10.201.0.1",
    );
    let answered_from = Some("10.200.0.1");
    let sources = [answered_from, None, answered_from, None];
    let started = Instant::now();
    let mut bots: Vec<Standalone> = sources
        .iter()
        .enumerate()
        .map(|(i, source)| {
            Standalone::start(&format!("replica{i}"), &shared_targets_config(*source))
        })
        .collect();
    let requests = "ping_requests_total{";
    let answered = "ping_response_duration_seconds_count{";
    // Once every process has its jobs (a debug build takes seconds to parse
    // the file), two intervals ping every target twice; /metrics is scraped only then (each scrape costs a debug build
    // a fraction of a second).
    for (i, bot) in bots.iter_mut().enumerate() {
        while !bot
            .log()
            .iter()
            .any(|l| l.contains("refreshed job configs"))
        {
            assert!(bot.is_running(), "process {i} exited: {:?}", bot.log());
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "process {i} has no jobs"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    println!(
        "4 processes have their jobs {:.1} s after the start",
        started.elapsed().as_secs_f64()
    );
    std::thread::sleep(Duration::from_secs(2 * u64::from(INTERVAL) + 1));
    let texts: Vec<String> = bots
        .iter_mut()
        .map(|bot| {
            bot.wait_for_metrics(Duration::from_secs(30), Duration::from_millis(100), |t| {
                total(t, requests, "10.210.") >= (2 * TARGETS) as f64
            })
        })
        .collect();
    println!(
        "4 processes x {TARGETS} targets: done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // Every process's figures first, then the assertions.
    let figures: Vec<(f64, f64, u64)> = texts
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let (sent, got) = (
                total(text, requests, "10.210."),
                total(text, answered, "10.210."),
            );
            let unmatched = total(text, "ping_echo_replies_unmatched_total", "") as u64;
            println!(
                "process {i} (from {}): {got} of {sent} echo requests answered; \
                 {unmatched} replies seen that were not its own",
                sources[i].unwrap_or("10.201.0.1")
            );
            (sent, got, unmatched)
        })
        .collect();
    for (i, &(sent, got, unmatched)) in figures.iter().enumerate() {
        if sources[i].is_some() {
            assert!(got >= 0.99 * sent, "process {i}: {got} of {sent} answered");
        } else {
            // Not one of the other processes' replies taken as its own…
            assert_eq!(got, 0.0, "process {i}: {got} of {sent} 'answered'");
            // …though it saw them.
            assert!(unmatched > 0, "process {i} saw no reply at all");
        }
    }
    for mut bot in bots {
        assert!(bot.stop().success());
    }
    println!("{}", netns::MARKER);
}
