//! The status page at 10,000 jobs, 100 of them failing (issue 21): the
//! first page's size and how long it takes to serve, and the same for a
//! search and for `/api/jobs?state=failing`. Target: the first page under
//! 200 KB, served in under 50 ms (median of 20).
//!
//! A bot runs in this process, standalone, with 10,000 entities at 5 s (each
//! job returns two values; every hundredth fails); once every job has run,
//! each URL is fetched 20 times over loopback, one request at a time.
//!
//! Run with `cargo bench --bench status_page --features testing`.

#[path = "common/machine.rs"]
mod machine;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use grafolean_collector::testing::RunningBot;
use grafolean_collector::{
    Bot, BoxError, Collector, JobConfigs, JobSpec, Problems, Settings, Tick, Value,
};

const JOBS: u64 = 10_000;
const RUNS: usize = 20;

struct Pinger;

impl Collector for Pinger {
    type Params = u64;

    fn jobs(&self, configs: &JobConfigs, _: &mut Problems) -> Vec<JobSpec<u64>> {
        configs
            .entities
            .iter()
            .filter_map(|e| {
                let id = format!("ping.{}", e.entity_id);
                Some(
                    JobSpec::for_entity(e, id, e.intervals()?, e.entity_id)
                        .with_label("entity_name", e.name.clone()),
                )
            })
            .collect()
    }

    async fn run(&self, _: Tick, id: &u64) -> Result<Vec<Value>, BoxError> {
        if id % 100 == 42 {
            return Err("no answer to 3 pings within 1 s".into());
        }
        Ok(vec![
            Value::new(format!("entity.{id}.ping.p50rtt"), 0.000_412),
            Value::new(format!("entity.{id}.ping.success"), 1.0),
        ])
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut toml = String::new();
    for i in 0..JOBS {
        let _ = writeln!(
            toml,
            "[[entity]]\nname = \"router-{i:05}\"\ndetails = {{ ipv4 = \"10.{}.{}.{}\" }}\nsensors = [{{ interval = 5 }}]\n",
            i >> 16,
            (i >> 8) & 255,
            i & 255
        );
    }
    let machine = machine::jiffies();
    runtime.block_on(async {
        let bot = RunningBot::start(
            Bot::new("status-bench", Pinger).with_default_config(toml),
            Settings::default(),
        );
        // Every job has run once: runs counted reach the jobs.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let runs = bot.metric("grafolean_bot_runs_total{outcome=\"ok\"}").await
                + bot
                    .metric("grafolean_bot_runs_total{outcome=\"error\"}")
                    .await;
            if runs >= JOBS as f64 {
                break;
            }
            assert!(Instant::now() < deadline, "only {runs} runs in 120 s");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let http = reqwest::Client::new();
        println!(
            "| GET, 10,000 jobs, 100 failing | size (KB) | median of {RUNS} (ms) | slowest (ms) |"
        );
        println!("|---|---|---|---|");
        for path in [
            "/",
            "/?page=2",
            "/?q=router-04242",
            "/?state=failing",
            "/api/jobs?state=failing",
        ] {
            let mut times = Vec::with_capacity(RUNS);
            let mut size = 0;
            for _ in 0..RUNS {
                let started = Instant::now();
                let body = http
                    .get(format!("{}{path}", bot.url()))
                    .send()
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap();
                times.push(started.elapsed().as_secs_f64() * 1e3);
                size = body.len();
            }
            let slowest = times.iter().copied().fold(0.0, f64::max);
            println!(
                "| `{path}` | {:.1} | {:.2} | {slowest:.2} |",
                size as f64 / 1024.0,
                median(times)
            );
        }
        bot.stop().await.unwrap();
    });
    println!("\n{}", machine::since(machine));
}
