//! A day of traffic, simulated on the windows' own clock: 1,000,000
//! distinct source IPs and 1,000,000 distinct connections every hour from
//! one exporter on 4 interfaces, closed minute by minute through the 15 min,
//! 1 h, 4 h and 24 h windows, as the bot does; peak RSS against the bound.
//!
//! ```text
//! cargo bench -p grafolean-netflow-bot --bench day [-- TOP_KEYS]
//! ```

/// The bot's allocator, so that RSS is what the bot's would be.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options (as the other bots'): freed pages go back to the
/// system after about 1 s, by a background thread, so that the windows'
/// maps, rebuilt every minute, do not linger in RSS.
#[allow(non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: &[u8; 43] = b"background_thread:true,dirty_decay_ms:1000\0";

use std::net::IpAddr;
use std::time::{Duration, Instant, UNIX_EPOCH};

use grafolean_netflow_bot::aggregate::DEFAULT_TOP_KEYS;
use grafolean_netflow_bot::flow::{Direction, Flow};
use grafolean_netflow_bot::window::{Window, Windows};

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

fn main() {
    let cap: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(DEFAULT_TOP_KEYS);
    let exporter: IpAddr = "192.0.2.1".parse().unwrap();
    let day = 20_000 * 86_400;
    let windows = Windows::new(1, UNIX_EPOCH + Duration::from_secs(day), cap);
    let shard = windows.shard(0);
    let per_hour: u64 = 1_000_000;
    let per_minute = per_hour / 60;
    let start_rss = status_kib("VmRSS:");
    let wall = Instant::now();
    let mut flows = 0u64;
    let mut exact_until = None;
    let mut peak_keys = 0;
    for minute in 0..(24 * 60u64) {
        {
            let mut shard = shard.lock().unwrap();
            let traffic = shard.minute(day / 60 + minute);
            for i in 0..per_minute {
                // A new source every flow: 1,000,000 an hour, each to a
                // destination of its own, so each is a new connection too.
                let n = minute * per_minute + i;
                let flow = Flow {
                    bytes: 64 + (n * 7919) % 1400,
                    packets: 1,
                    protocol: if n.is_multiple_of(3) { 6 } else { 17 },
                    src: IpAddr::from(((0x0a00_0000 + n) as u32).to_be_bytes()),
                    dst: IpAddr::from(
                        ((0xac10_0000 + (n * 31) % 0x000f_ffff) as u32).to_be_bytes(),
                    ),
                    src_port: (n % 60_000) as u16,
                    dst_port: (n % 1024) as u16,
                    input: (n % 4) as u32 + 1,
                    output: 0,
                    direction: Direction::Ingress,
                };
                traffic.add(exporter, &flow);
                flows += 1;
            }
        }
        windows.close_until(day + (minute + 1) * 60);
        for (w, keys, exact) in windows.open_keys() {
            peak_keys = peak_keys.max(keys);
            if !exact && exact_until.is_none() {
                exact_until = Some((w, minute));
            }
        }
    }
    let day_window = windows
        .closed(Window::OneDay, day + 86_400)
        .expect("the day closed");
    let total = day_window
        .get(&exporter, Direction::Ingress)
        .map_or(0, |d| d.bytes);
    println!(
        "a simulated day: {flows} flows, {} distinct sources, top keys {cap}",
        flows
    );
    println!(
        "| peak RSS | RSS at the end | largest open window (keys) | first inexact window | 24h bytes | wall |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| {:.1} MB | {:.1} MB | {} | {} | {} | {:.1} s |",
        status_kib("VmHWM:") as f64 / 1024.0,
        status_kib("VmRSS:") as f64 / 1024.0,
        peak_keys,
        exact_until.map_or("none".to_string(), |(w, m)| format!(
            "{} after minute {m}",
            w.label()
        )),
        total,
        wall.elapsed().as_secs_f64()
    );
    println!("(RSS before: {:.1} MB)", start_rss as f64 / 1024.0);
}
