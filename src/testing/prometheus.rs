//! A real Prometheus server for tests: it scrapes a bot's `/metrics`, and the
//! test asks its query API what it ingested.
//!
//! Needs the `prometheus` binary (Debian package `prometheus`). It listens on
//! a free port on 127.0.0.1, keeps its data in a temporary directory, and is
//! killed (and the directory removed) when the value is dropped, even when the
//! test fails.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

/// Where the Debian package installs Prometheus.
pub const PROMETHEUS: &str = "/usr/bin/prometheus";

/// How long [`Prometheus::wait_for`] polls before it fails the test.
pub const WAIT: Duration = Duration::from_secs(60);

/// A running Prometheus that scrapes one target every second.
///
/// ```no_run
/// # #[tokio::main] async fn main() {
/// use grafolean_collector::testing::prometheus::{Prometheus, value_of};
/// let prometheus = Prometheus::start("127.0.0.1:9742");
/// prometheus.wait_for("up", |r| r.len() == 1 && value_of(&r[0]) == 1.0).await;
/// # }
/// ```
#[derive(Debug)]
pub struct Prometheus {
    child: Child,
    dir: PathBuf,
    base: String,
    http: reqwest::Client,
}

impl Prometheus {
    /// Starts Prometheus scraping `target` (`host:port`) every second.
    ///
    /// # Panics
    ///
    /// When the binary is missing (with an install hint) or cannot start.
    pub fn start(target: &str) -> Self {
        Self::start_with(target, "")
    }

    /// [`start`](Self::start) with more settings for the scrape job, in
    /// Prometheus' YAML, each line indented by four spaces, such as
    /// `"    scheme: https\n    tls_config:\n      ca_file: /tmp/ca.crt\n"`.
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start).
    pub fn start_with(target: &str, job: &str) -> Self {
        assert!(
            std::path::Path::new(PROMETHEUS).exists(),
            "{PROMETHEUS} is missing: install it with `apt-get install -y prometheus` (.ci/run does)"
        );
        let dir = std::env::temp_dir().join(format!(
            "grafolean-prometheus-{}-{}",
            std::process::id(),
            super::random_id()
        ));
        std::fs::create_dir_all(dir.join("data")).expect("a temporary directory");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: bot\n    static_configs:\n      - targets: ['{target}']\n{job}"
        );
        std::fs::write(dir.join("prometheus.yml"), config).expect("the config file");
        // A free port: bind, read it, release it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log = std::fs::File::create(dir.join("prometheus.log")).expect("the log file");
        let child = Command::new(PROMETHEUS)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the log file"))
            .stderr(log)
            .spawn()
            .expect("failed to start prometheus");
        Self {
            child,
            dir,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("an HTTP client"),
        }
    }

    /// Runs an instant query; `None` while Prometheus is not answering yet.
    pub async fn query(&self, q: &str) -> Option<Vec<Json>> {
        let resp = self
            .http
            .get(format!("{}/api/v1/query", self.base))
            .query(&[("query", q)])
            .send()
            .await
            .ok()?;
        let body: Json = resp.json().await.ok()?;
        body["data"]["result"].as_array().cloned()
    }

    /// Polls `q` until `done` accepts its result.
    ///
    /// # Panics
    ///
    /// After [`WAIT`], with the last result and Prometheus's log.
    pub async fn wait_for(&self, q: &str, done: impl Fn(&[Json]) -> bool) {
        let start = Instant::now();
        loop {
            if let Some(result) = self.query(q).await {
                if done(&result) {
                    return;
                }
            }
            if start.elapsed() > WAIT {
                let log =
                    std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default();
                let last = self.query(q).await;
                panic!(
                    "query {q:?} did not succeed within {WAIT:?}; last result {last:?}\nprometheus log:\n{log}"
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// The queries of a Grafana dashboard's panels (`monitoring/dashboards`),
/// with its variables set to match anything (`$job` and `$instance` to
/// `.+`) and `$__rate_interval` to `1m`, ready for [`Prometheus::query`].
///
/// ```
/// let q = grafolean_collector::testing::prometheus::dashboard_queries(
///     r#"{"panels": [{"targets": [{"expr": "rate(x{job=~\"$job\"}[$__rate_interval])"}]}]}"#,
/// );
/// assert_eq!(q, [r#"rate(x{job=~".+"}[1m])"#]);
/// ```
pub fn dashboard_queries(dashboard: &str) -> Vec<String> {
    let dashboard: Json = serde_json::from_str(dashboard).expect("the dashboard is JSON");
    dashboard["panels"]
        .as_array()
        .expect("the dashboard has panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .filter_map(|t| t["expr"].as_str())
        .map(|expr| {
            expr.replace("$__rate_interval", "1m")
                .replace("\"$job\"", "\".+\"")
                .replace("\"$instance\"", "\".+\"")
        })
        .collect()
}

impl Prometheus {
    /// Waits until `q` returns at least one sample, none of them NaN (as a
    /// dashboard panel that shows data); panics with the last result and
    /// Prometheus' log after the wait.
    pub async fn wait_for_data(&self, q: &str) {
        self.wait_for(q, |r| {
            !r.is_empty()
                && r.iter()
                    .all(|s| s["value"][1].as_str().is_some_and(|v| v != "NaN"))
        })
        .await;
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The value of one sample of a query result.
///
/// # Panics
///
/// When the sample has no value.
pub fn value_of(sample: &Json) -> f64 {
    sample["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .expect("a sample value")
}
