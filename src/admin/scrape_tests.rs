//! A real Prometheus scrapes the admin server's `/metrics`.
//!
//! This checks what a parser in a test cannot: that Prometheus ingests our
//! OpenMetrics output (SDK counters with `_total`, histograms, the process
//! metrics and the collected values) and that a removed job's series go
//! stale. Needs `/usr/bin/prometheus` (Debian package `prometheus`); the test
//! fails with a clear message when it is missing.

use crate::admin::{self, AdminState};
use crate::exposition::MappedPath;
use crate::exposition::ValueStore;
use crate::job::JobId;
use crate::metrics::Metrics;
use crate::metrics::Outcome;
use crate::testing::prometheus::{Prometheus, value_of};
use crate::value::Value;

fn ping_mapper(path: &str) -> Option<MappedPath> {
    let (entity, rest) = MappedPath::split_entity(path);
    (rest == "ping.success")
        .then(|| MappedPath::new("ping_success_ratio").with_label("entity", entity.unwrap_or("")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_ingests_our_metrics() {
    let metrics = Metrics::new("scrape-test");
    metrics.run(Outcome::ok);
    metrics.run(Outcome::ok);
    metrics.run(Outcome::error);
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
        None,
    ));

    let prometheus = Prometheus::start(&addr.to_string());

    prometheus
        .wait_for("up", |r| r.len() == 1 && value_of(&r[0]) == 1.0)
        .await;
    prometheus
        .wait_for("grafolean_bot_build_info", |r| {
            r.len() == 1 && r[0]["metric"]["bot"] == "scrape-test"
        })
        .await;
    prometheus
        .wait_for(r#"grafolean_bot_runs_total{outcome="ok"}"#, |r| {
            r.len() == 1 && value_of(&r[0]) == 2.0
        })
        .await;
    prometheus
        .wait_for("grafolean_bot_run_duration_seconds_count", |r| {
            r.len() == 1 && value_of(&r[0]) == 1.0
        })
        .await;
    prometheus
        .wait_for("process_start_time_seconds", |r| r.len() == 1)
        .await;
    prometheus
        .wait_for(
            r#"ping_success_ratio{entity="42",target="127.0.0.1"}"#,
            |r| r.len() == 1 && value_of(&r[0]) == 0.75,
        )
        .await;
    prometheus
        .wait_for(r#"ping_success_ratio{entity="43"}"#, |r| {
            r.len() == 1 && r[0]["metric"]["target"] == "a\"quoted\\target"
        })
        .await;
    prometheus
        .wait_for("grafolean_value_ping_p0_rtt", |r| {
            r.len() == 1 && value_of(&r[0]) == 0.0123
        })
        .await;

    prometheus
        .wait_for(
            "grafolean_value_ping_total + grafolean_value_if_in_count",
            |r| r.len() == 1 && value_of(&r[0]) == 9.0,
        )
        .await;

    // A removed job's series disappear: Prometheus marks them stale.
    state.values().remove_job(&JobId::new("ping.42"));
    prometheus
        .wait_for("ping_success_ratio", |r| {
            r.len() == 1 && r[0]["metric"]["entity"] == "43"
        })
        .await;

    stop.send(()).unwrap();
    server.await.unwrap();
}

/// A real Prometheus scrapes over HTTPS with a client certificate and basic
/// auth, as its `tls_config` and `basic_auth` say, from a server run by a
/// `--web.config.file`; a scrape without the password is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_over_https_with_a_client_certificate_and_basic_auth() {
    use crate::admin::web_config::WebConfig;
    use crate::admin::web_config::test_certs::Ca;

    let dir = std::env::temp_dir().join(format!(
        "grafolean-scrape-tls-{}-{}",
        std::process::id(),
        crate::testing::random_id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = Ca::new("test CA");
    let server = ca.server();
    let client = ca.client("prometheus");
    for (name, text) in [
        ("ca.crt", &ca.cert),
        ("server.crt", &server.cert),
        ("server.key", &server.key),
        ("client.crt", &client.cert),
        ("client.key", &client.key),
    ] {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let web = dir.join("web.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  \
             client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n\
             basic_auth_users:\n  prometheus: {}\n",
            bcrypt::hash("scrape-secret", 4).unwrap()
        ),
    )
    .unwrap();

    let metrics = Metrics::new("tls-scrape-test");
    let state = AdminState::builder(metrics).build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(admin::serve(
        listener,
        admin::router(state),
        async {
            let _ = stopped.await;
        },
        Some(WebConfig::load(&web).unwrap()),
    ));

    let d = dir.display();
    let tls = format!(
        "    scheme: https\n    tls_config:\n      ca_file: {d}/ca.crt\n      \
         cert_file: {d}/client.crt\n      key_file: {d}/client.key\n      server_name: localhost\n"
    );
    let right = Prometheus::start_with(
        &addr.to_string(),
        &format!(
            "{tls}    basic_auth:\n      username: prometheus\n      password: scrape-secret\n"
        ),
    );
    let wrong = Prometheus::start_with(
        &addr.to_string(),
        &format!("{tls}    basic_auth:\n      username: prometheus\n      password: guess\n"),
    );
    right
        .wait_for("up", |r| r.len() == 1 && value_of(&r[0]) == 1.0)
        .await;
    right
        .wait_for("grafolean_bot_build_info", |r| {
            r.len() == 1 && r[0]["metric"]["bot"] == "tls-scrape-test"
        })
        .await;
    // The other one's scrapes fail (401): `up` is 0 there.
    wrong
        .wait_for("up", |r| r.len() == 1 && value_of(&r[0]) == 0.0)
        .await;

    stop.send(()).unwrap();
    server.await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
