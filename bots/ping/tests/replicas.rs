//! Several bot processes on one host (replicas, issue 15 point 3): each has
//! its own raw sockets, and a raw socket sees every echo reply on the host,
//! so each process must take only its own. Six standalone bots ping the same
//! host behind a veth (see `common/netns.rs`) at once, two of them 300
//! loopback addresses too. That host answers two of them, which ping it
//! from 10.200.0.1, and never the other two, which ping it from 10.201.0.1,
//! an address it has no route back to: if a process took another's replies
//! to the same target, one of the unanswered ones would see answers.
//! Re-executes its `_inner` twin inside `unshare -n`. Needs root.

mod common;

use std::time::Duration;

use common::netns::{self, Lab};
use common::standalone::Standalone;

const LOOPBACK: usize = 300;

/// The far host (from `source`, or the route's default), and `loopback`
/// loopback addresses.
fn config(source: Option<&str>, loopback: usize) -> String {
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
            Standalone::start(&format!("replica{i}"), &config(*source, loopback))
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
            bot.wait_for_metrics(Duration::from_secs(30), |t| {
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
        // And the loopback targets all answered, each process its own.
        let sent = total(text, requests, "127.1.");
        let got = total(text, answered, "127.1.");
        assert!(got >= 0.99 * sent, "process {i}: {got} of {sent} answered");
    }
    for bot in bots {
        assert!(bot.stop().success());
    }
    println!("{}", netns::MARKER);
}
