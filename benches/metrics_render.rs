//! How long `/metrics` takes to render with 100,000 collected-value series.
//!
//! Runs the same encode path as the `/metrics` handler
//! ([`AdminState::render_metrics`]: scrape hooks, SDK registry, process
//! metrics, values) and prints the median of several runs. Target: ≤ 50 ms.
//!
//! ```text
//! cargo bench --bench metrics_render
//! ```
//!
//! For comparison, Python's prometheus_client 0.26 took 1.24 s for 100,000
//! labelled series (7.2 MB).

use std::time::{Duration, Instant};

#[path = "common/machine.rs"]
mod machine;

use grafolean_collector::MappedPath;
use grafolean_collector::Metrics;
use grafolean_collector::testing::internals::{AdminState, ValueStore};
use grafolean_collector::{JobId, Value};

const JOBS: usize = 10_000;
const PACKETS: usize = 4;
const RUNS: usize = 11;

/// The ping bot's mapping: 2 series per packet plus the success ratio.
fn ping_mapper(path: &str) -> Option<MappedPath> {
    let (entity, rest) = MappedPath::split_entity(path);
    let mut parts = rest.split('.');
    let mapped = match (parts.next(), parts.next(), parts.next()) {
        (Some("ping"), Some("success"), None) => MappedPath::new("ping_success_ratio"),
        (Some("ping"), Some(p), Some("ok")) => {
            MappedPath::new("ping_packet_ok").with_label("packet", p.strip_prefix('p')?)
        }
        (Some("ping"), Some(p), Some("rtt")) => {
            MappedPath::new("ping_rtt_seconds").with_label("packet", p.strip_prefix('p')?)
        }
        _ => return None,
    };
    Some(mapped.with_label("entity", entity?))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let metrics = Metrics::new("bench");
    let state = AdminState::builder(metrics)
        .with_values(ValueStore::new().with_mapper(ping_mapper))
        .build();

    // 10,000 jobs × (4 packets × 2 + success + 1 generic) = 100,000 series.
    let mut update_times = Vec::new();
    let start = Instant::now();
    for j in 0..JOBS {
        let entity = 1_000_000 + j;
        let mut values = Vec::new();
        for p in 0..PACKETS {
            values.push(Value::new(format!("entity.{entity}.ping.p{p}.ok"), 1.0));
            values.push(Value::new(
                format!("entity.{entity}.ping.p{p}.rtt"),
                0.001 * (j % 97) as f64 + 0.000_123,
            ));
        }
        values.push(Value::new(format!("entity.{entity}.ping.success"), 0.75));
        values.push(Value::new(format!("entity.{entity}.ping.extra"), j as f64));
        let labels = vec![(
            "target".to_string(),
            format!("10.{}.{}.{}", j >> 16, (j >> 8) & 255, j & 255),
        )];
        let t = Instant::now();
        state
            .values()
            .update(&JobId::new(format!("ping.{entity}")), &labels, &values);
        update_times.push(t.elapsed());
    }
    let fill = start.elapsed();
    let series = state.values().len();
    assert_eq!(series, JOBS * (PACKETS * 2 + 2));

    let cpu = machine::jiffies();
    let mut times = Vec::with_capacity(RUNS);
    let mut bytes = 0;
    for _ in 0..RUNS {
        let t = Instant::now();
        let text = state.render_metrics();
        times.push(t.elapsed());
        bytes = text.len();
        std::hint::black_box(text);
    }
    let mut gzip_times = Vec::with_capacity(RUNS);
    let mut gzip_bytes = 0;
    for _ in 0..RUNS {
        let t = Instant::now();
        let body = state.render_metrics_gzip().unwrap();
        gzip_times.push(t.elapsed());
        gzip_bytes = body.len();
        std::hint::black_box(body);
    }
    let machine = machine::since(cpu);
    let min = *times.iter().min().unwrap();
    let med = median(times);
    println!("metrics_render: {series} value series, {bytes} bytes");
    println!(
        "  render_metrics: median {:.2} ms, min {:.2} ms over {RUNS} runs (target <= 50 ms)",
        med.as_secs_f64() * 1e3,
        min.as_secs_f64() * 1e3
    );
    println!(
        "  render_metrics_gzip (what Prometheus gets): median {:.2} ms, {gzip_bytes} bytes ({:.1}x smaller)",
        median(gzip_times).as_secs_f64() * 1e3,
        bytes as f64 / gzip_bytes.max(1) as f64
    );
    println!("  {machine}");
    println!(
        "  ValueStore::update (10 values per job): median {:.1} µs; filling {JOBS} jobs took {:.0} ms",
        median(update_times).as_secs_f64() * 1e6,
        fill.as_secs_f64() * 1e3
    );
    println!(
        "  vs Python prometheus_client 0.26 (1.24 s for 100,000 series): {:.0}x faster",
        1.24 / med.as_secs_f64()
    );
}
