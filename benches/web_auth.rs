//! The cost of `--web.config.file`'s basic auth (issue 21): a bcrypt check
//! (cost 10) is done once per user and password, then its result is cached,
//! so that the next requests cost about what a request without auth costs.
//!
//! A bot (in this process, its admin server on loopback) serves `GET /live`
//! with and without a web config file; Prometheus' own server (which uses
//! exporter-toolkit) serves `/-/healthy` with the same file, as the anchor.
//! For each: the first request with the password (the bcrypt check), then
//! the median and 99th percentile of 200 more on one keep-alive connection.
//!
//! Run with `cargo bench --bench web_auth --features testing` (the anchor
//! needs `/usr/bin/prometheus`; without it its rows are left out).

#[path = "common/machine.rs"]
mod machine;

use std::time::{Duration, Instant};

use grafolean_collector::testing::RunningBot;
use grafolean_collector::{
    Bot, BoxError, Collector, JobConfigs, JobSpec, Problems, Settings, Tick, Value,
};

const REQUESTS: usize = 200;
const COST: u32 = 10;

struct Idle;

impl Collector for Idle {
    type Params = ();

    fn jobs(&self, _: &JobConfigs, _: &mut Problems) -> Vec<JobSpec<()>> {
        Vec::new()
    }

    async fn run(&self, _: Tick, (): &()) -> Result<Vec<Value>, BoxError> {
        Ok(Vec::new())
    }
}

/// (first request, median, p99) in ms of `GET url` with `auth`.
async fn measure(url: &str, auth: Option<(&str, &str)>) -> (f64, f64, f64) {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    let get = || {
        let mut r = http.get(url);
        if let Some((user, password)) = auth {
            r = r.basic_auth(user, Some(password));
        }
        async move {
            let started = Instant::now();
            let response = r.send().await.unwrap();
            assert!(
                response.status().is_success(),
                "{url}: {}",
                response.status()
            );
            response.bytes().await.unwrap();
            started.elapsed().as_secs_f64() * 1e3
        }
    };
    let first = get().await;
    let mut times = Vec::with_capacity(REQUESTS);
    for _ in 0..REQUESTS {
        times.push(get().await);
    }
    times.sort_by(f64::total_cmp);
    (first, times[REQUESTS / 2], times[REQUESTS * 99 / 100])
}

fn row(what: &str, (first, median, p99): (f64, f64, f64)) {
    println!("| {what} | {first:.2} | {median:.3} | {p99:.3} |");
}

/// Prometheus on a free port with `--web.config.file`, until dropped.
struct Anchor(std::process::Child, std::path::PathBuf);

impl Drop for Anchor {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

fn anchor(dir: &std::path::Path, web: &std::path::Path) -> Option<(Anchor, String)> {
    let bin = "/usr/bin/prometheus";
    if !std::path::Path::new(bin).exists() {
        return None;
    }
    let data = dir.join("prometheus");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("prometheus.yml"), "scrape_configs: []\n").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new(bin)
        .arg(format!(
            "--config.file={}",
            data.join("prometheus.yml").display()
        ))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg(format!("--web.config.file={}", web.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    Some((
        Anchor(child, data),
        format!("http://127.0.0.1:{port}/-/healthy"),
    ))
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("web-auth-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let web = dir.join("web.yml");
    std::fs::write(
        &web,
        format!(
            "basic_auth_users:\n  prometheus: {}\n",
            bcrypt::hash("scrape-secret", COST).unwrap()
        ),
    )
    .unwrap();
    let machine = machine::jiffies();
    runtime.block_on(async {
        println!("| server, GET on one keep-alive connection | first request (ms) | median of the next {REQUESTS} (ms) | p99 (ms) |");
        println!("|---|---|---|---|");
        let plain = RunningBot::start(Bot::new("plain", Idle), Settings::default());
        let url = format!("{}/live", plain.url());
        row("bot, no web config", measure(&url, None).await);
        plain.stop().await.unwrap();

        let guarded = RunningBot::start(
            Bot::new("guarded", Idle),
            Settings::default().with_web_config_file(&web),
        );
        let url = format!("{}/live", guarded.url());
        row(
            &format!("bot, basic auth (bcrypt cost {COST})"),
            measure(&url, Some(("prometheus", "scrape-secret"))).await,
        );
        guarded.stop().await.unwrap();

        if let Some((_anchor, url)) = anchor(&dir, &web) {
            let deadline = Instant::now() + Duration::from_secs(30);
            // Up when it answers at all (401 without a password), so that
            // the first measured request is its first bcrypt check.
            while reqwest::Client::new().get(&url).send().await.is_err() {
                assert!(Instant::now() < deadline, "prometheus did not start");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            row(
                &format!(
                    "Prometheus {} (exporter-toolkit), basic auth (bcrypt cost {COST})",
                    prometheus_version()
                ),
                measure(&url, Some(("prometheus", "scrape-secret"))).await,
            );
        }
    });
    println!("\n{}", machine::since(machine));
    let _ = std::fs::remove_dir_all(&dir);
}

fn prometheus_version() -> String {
    std::process::Command::new("/usr/bin/prometheus")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .nth(2)
                .map(str::to_string)
        })
        .unwrap_or_default()
}
