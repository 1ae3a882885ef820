//! A real Prometheus scrapes the running ping bot, in its standalone default
//! mode (127.0.0.1 and ::1 every 5 s, no Grafolean), and ingests its series.

use clap::Parser;
use grafolean_collector::Settings;
use grafolean_collector::testing::RunningBot;
use grafolean_collector::testing::prometheus::{Prometheus, dashboard_queries, value_of};
use grafolean_ping_bot::PingerOptions;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_running_ping_bot() {
    let settings = Settings::try_parse_from(["grafolean-ping-bot"]).unwrap();
    assert!(
        std::env::var_os("BACKEND_URL").is_none(),
        "BACKEND_URL must not be set for this test"
    );
    let bot = RunningBot::start(grafolean_ping_bot::bot(PingerOptions::default()), settings);
    let target = bot.url().trim_start_matches("http://").to_string();

    let prometheus = Prometheus::start(&target);
    prometheus
        .wait_for("up", |r| r.len() == 1 && value_of(&r[0]) == 1.0)
        .await;
    prometheus
        .wait_for(
            r#"grafolean_bot_build_info{bot="grafolean-ping-bot"}"#,
            |r| r.len() == 1,
        )
        .await;
    // The build's facts: the compiler, and the commit (this test runs from a
    // git checkout, as CI's clean clone is).
    let info = prometheus
        .query(r#"grafolean_bot_build_info{bot="grafolean-ping-bot"}"#)
        .await
        .unwrap();
    let labels = &info[0]["metric"];
    assert!(
        labels["rustc_version"]
            .as_str()
            .is_some_and(|v| v.starts_with("1.")),
        "{labels}"
    );
    let revision = labels["revision"].as_str().unwrap_or_default();
    assert!(
        revision.len() == 12 && revision.chars().all(|c| c.is_ascii_hexdigit()),
        "{labels}"
    );
    prometheus
        .wait_for("grafolean_bot_jobs_scheduled", |r| {
            r.len() == 1 && value_of(&r[0]) == 2.0
        })
        .await;
    prometheus
        .wait_for(r#"grafolean_bot_runs_total{outcome="ok"}"#, |r| {
            r.len() == 1 && value_of(&r[0]) >= 2.0
        })
        .await;
    // The pinger's own counters: both targets answer every request.
    prometheus
        .wait_for("ping_echo_requests_answered_total", |r| {
            r.len() == 1 && value_of(&r[0]) >= 6.0
        })
        .await;
    prometheus
        .wait_for("ping_echo_requests_sent_total", |r| {
            r.len() == 1 && value_of(&r[0]) >= 6.0
        })
        .await;
    for target in ["127.0.0.1", "::1"] {
        prometheus
            .wait_for(
                &format!(r#"ping_success_ratio{{target="{target}"}}"#),
                |r| r.len() == 1 && value_of(&r[0]) == 1.0,
            )
            .await;
        prometheus
            .wait_for(&format!(r#"ping_rtt_seconds{{target="{target}"}}"#), |r| {
                r.len() == 3 && r.iter().all(|s| (0.0..1.0).contains(&value_of(s)))
            })
            .await;
    }
    // The RTT histogram, with smokeping_prober's 20 buckets and +Inf.
    for ip in ["127.0.0.1", "::1"] {
        prometheus
            .wait_for(
                &format!(r#"count(ping_response_duration_seconds_bucket{{ip="{ip}"}})"#),
                |r| r.len() == 1 && value_of(&r[0]) == 21.0,
            )
            .await;
        prometheus
            .wait_for(
                &format!(r#"ping_response_duration_seconds_bucket{{ip="{ip}",le="+Inf"}}"#),
                |r| r.len() == 1 && value_of(&r[0]) >= 3.0,
            )
            .await;
        prometheus
            .wait_for(&format!(r#"ping_requests_total{{ip="{ip}"}}"#), |r| {
                r.len() == 1 && value_of(&r[0]) >= 3.0
            })
            .await;
        // Loopback answers well within half a second.
        prometheus
            .wait_for(
                &format!(
                    r#"histogram_quantile(0.99, ping_response_duration_seconds_bucket{{ip="{ip}"}})"#
                ),
                |r| r.len() == 1 && (0.0..0.5).contains(&value_of(&r[0])),
            )
            .await;
    }
    prometheus
        .wait_for("process_resident_memory_bytes", |r| r.len() == 1)
        .await;

    bot.stop().await.unwrap();
}

/// Every query of the ping bot's dashboard in `monitoring/dashboards`, with
/// its variables set to match anything, returns data from a real Prometheus
/// scraping the running bot, here with a Grafolean backend (the fake), so
/// that the sender's series are there too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_returns_data() {
    use grafolean_collector::testing::{BOT_TOKEN, ENTITY_ID, FakeGrafolean};

    let queries = dashboard_queries(include_str!(
        "../../../monitoring/dashboards/grafolean-ping-bot.json"
    ));
    assert!(queries.len() >= 15, "{queries:?}");

    let fake = FakeGrafolean::with_fixture_data().await;
    assert!(fake.update_entity(ENTITY_ID, |e| {
        e.protocols.get_mut("ping").unwrap().sensors[0].interval = Some(1);
    }));
    let settings = Settings::try_parse_from(["grafolean-ping-bot", "--backend-url", &fake.url()])
        .unwrap()
        .with_bot_token(BOT_TOKEN);
    let bot = RunningBot::start(grafolean_ping_bot::bot(PingerOptions::default()), settings);
    let prometheus = Prometheus::start(bot.url().trim_start_matches("http://"));
    // Enough scrapes for every rate over a minute.
    prometheus
        .wait_for(r#"grafolean_bot_runs_total{outcome="ok"}"#, |r| {
            r.len() == 1 && value_of(&r[0]) >= 5.0
        })
        .await;
    for query in &queries {
        prometheus.wait_for_data(query).await;
    }
    bot.stop().await.unwrap();
}
