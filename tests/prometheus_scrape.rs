//! A real Prometheus scrapes the admin server's `/metrics`.
//!
//! This checks what a parser in a test cannot: that Prometheus ingests our
//! OpenMetrics output (SDK counters with `_total`, histograms, the process
//! metrics and the collected values) and that a removed job's series go
//! stale. Needs `/usr/bin/prometheus` (Debian package `prometheus`); the test
//! fails with a clear message when it is missing.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use grafolean_collector::admin::{self, AdminState};
use grafolean_collector::exposition::{MappedPath, ValueStore, split_entity};
use grafolean_collector::metrics::Metrics;
use grafolean_collector::{JobId, Value};
use serde_json::Value as Json;

const PROMETHEUS: &str = "/usr/bin/prometheus";
const TIMEOUT: Duration = Duration::from_secs(60);

/// Kills Prometheus and removes its directory, even when the test fails.
struct Prometheus {
    child: Child,
    dir: PathBuf,
    base: String,
}

impl Prometheus {
    fn start(target: &str) -> Self {
        assert!(
            std::path::Path::new(PROMETHEUS).exists(),
            "{PROMETHEUS} is missing: install it with `apt-get install -y prometheus` (CI does)"
        );
        let dir = std::env::temp_dir().join(format!(
            "grafolean-prometheus-test-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos()
        ));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: bot\n    static_configs:\n      - targets: ['{target}']\n"
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        // A free port: bind, read it, release it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
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
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("failed to start prometheus");
        Self {
            child,
            dir,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Runs an instant query; `None` while Prometheus is not answering yet.
    async fn query(&self, http: &reqwest::Client, q: &str) -> Option<Vec<Json>> {
        let resp = http
            .get(format!("{}/api/v1/query", self.base))
            .query(&[("query", q)])
            .send()
            .await
            .ok()?;
        let body: Json = resp.json().await.ok()?;
        body["data"]["result"].as_array().cloned()
    }

    /// Polls `q` until `done` accepts its result, or panics with the log.
    async fn wait_for(&self, http: &reqwest::Client, q: &str, done: impl Fn(&[Json]) -> bool) {
        let start = Instant::now();
        loop {
            if let Some(result) = self.query(http, q).await {
                if done(&result) {
                    return;
                }
            }
            if start.elapsed() > TIMEOUT {
                let log =
                    std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default();
                let last = self.query(http, q).await;
                panic!(
                    "query {q:?} did not succeed within {TIMEOUT:?}; last result {last:?}\nprometheus log:\n{log}"
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn value_of(sample: &Json) -> f64 {
    sample["value"][1].as_str().unwrap().parse().unwrap()
}

fn ping_mapper(path: &str) -> Option<MappedPath> {
    let (entity, rest) = split_entity(path);
    (rest == "ping.success")
        .then(|| MappedPath::new("ping_success_ratio").with_label("entity", entity.unwrap_or("")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_ingests_our_metrics() {
    let metrics = Metrics::new("scrape-test");
    metrics.run("ok");
    metrics.run("ok");
    metrics.run("error");
    metrics.run_duration.observe(0.02);
    let state = AdminState::builder(metrics)
        .with_values(ValueStore::new().with_mapper(ping_mapper))
        .build();
    let target = |ip: &str| vec![("target".to_string(), ip.to_string())];
    state.values().update(
        &JobId::new("ping.42"),
        &target("127.0.0.1"),
        &[
            Value::new("entity.42.ping.success", 0.75),
            Value::new("entity.42.ping.p0.rtt", 0.0123),
            // Generic names that end like other types' samples still ingest.
            Value::new("entity.42.ping.total", 4.0),
            Value::new("entity.42.if-in.count", 5.0),
        ],
    );
    state.values().update(
        &JobId::new("ping.43"),
        &target("a\"quoted\\target"),
        &[Value::new("entity.43.ping.success", 1.0)],
    );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(admin::serve(
        listener,
        admin::router(state.clone()),
        async {
            let _ = stopped.await;
        },
    ));

    let prometheus = Prometheus::start(&addr.to_string());
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();

    prometheus
        .wait_for(&http, "up", |r| r.len() == 1 && value_of(&r[0]) == 1.0)
        .await;
    prometheus
        .wait_for(&http, "grafolean_bot_build_info", |r| {
            r.len() == 1 && r[0]["metric"]["bot"] == "scrape-test"
        })
        .await;
    prometheus
        .wait_for(&http, r#"grafolean_bot_runs_total{outcome="ok"}"#, |r| {
            r.len() == 1 && value_of(&r[0]) == 2.0
        })
        .await;
    prometheus
        .wait_for(&http, "grafolean_bot_run_duration_seconds_count", |r| {
            r.len() == 1 && value_of(&r[0]) == 1.0
        })
        .await;
    prometheus
        .wait_for(&http, "process_start_time_seconds", |r| r.len() == 1)
        .await;
    prometheus
        .wait_for(
            &http,
            r#"ping_success_ratio{entity="42",target="127.0.0.1"}"#,
            |r| r.len() == 1 && value_of(&r[0]) == 0.75,
        )
        .await;
    prometheus
        .wait_for(&http, r#"ping_success_ratio{entity="43"}"#, |r| {
            r.len() == 1 && r[0]["metric"]["target"] == "a\"quoted\\target"
        })
        .await;
    prometheus
        .wait_for(&http, "grafolean_value_ping_p0_rtt", |r| {
            r.len() == 1 && value_of(&r[0]) == 0.0123
        })
        .await;

    prometheus
        .wait_for(
            &http,
            "grafolean_value_ping_total + grafolean_value_if_in_count",
            |r| r.len() == 1 && value_of(&r[0]) == 9.0,
        )
        .await;

    // A removed job's series disappear: Prometheus marks them stale.
    state.values().remove_job(&JobId::new("ping.42"));
    prometheus
        .wait_for(&http, "ping_success_ratio", |r| {
            r.len() == 1 && r[0]["metric"]["entity"] == "43"
        })
        .await;

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
