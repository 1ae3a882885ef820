//! Unit tests of readiness, of the `/metrics` output's validity, and of the
//! routes over real loopback HTTP.

use std::collections::HashSet;
use std::sync::atomic::AtomicU64;

use super::*;
use crate::job::JobId;
use crate::value::Value;

/// A strict-enough OpenMetrics text parser: every line is a known comment or
/// a well-formed sample of the family last declared, families are declared
/// once, and `# EOF` is the last line and appears once. Returns the samples.
pub(crate) fn parse_openmetrics(text: &str) -> Result<Vec<(String, String, f64)>, String> {
    let body = text
        .strip_suffix("# EOF\n")
        .ok_or("no final `# EOF` line")?;
    let mut families = HashSet::new();
    let mut current: Option<(String, String)> = None;
    let mut samples = Vec::new();
    for (n, line) in body.lines().enumerate() {
        let err = |what: &str| format!("line {}: {what}: {line:?}", n + 1);
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kind, name) = (
                parts.next().unwrap(),
                parts.next().ok_or_else(|| err("bare comment"))?,
            );
            match kind {
                "TYPE" => {
                    let ty = parts.next().ok_or_else(|| err("TYPE without type"))?;
                    if ![
                        "counter",
                        "gauge",
                        "histogram",
                        "info",
                        "summary",
                        "unknown",
                        "stateset",
                    ]
                    .contains(&ty)
                    {
                        return Err(err("unknown type"));
                    }
                    if !families.insert(name.to_string()) {
                        return Err(err("family declared twice"));
                    }
                    current = Some((name.to_string(), ty.to_string()));
                }
                "HELP" | "UNIT" => {}
                _ => return Err(err("unknown comment")),
            }
            continue;
        }
        let name_end = line.find(['{', ' ']).ok_or_else(|| err("no value"))?;
        let name = &line[..name_end];
        if name.is_empty()
            || name.starts_with(|c: char| c.is_ascii_digit())
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        {
            return Err(err("bad metric name"));
        }
        let (family, ty) = current.as_ref().ok_or_else(|| err("sample before TYPE"))?;
        let suffixes: &[&str] = match ty.as_str() {
            "counter" => &["_total", "_created"],
            "histogram" => &["_bucket", "_count", "_sum", "_created"],
            "info" => &["_info"],
            _ => &[""],
        };
        if !suffixes.iter().any(|s| name == format!("{family}{s}")) {
            return Err(err("sample outside its family"));
        }
        let mut rest = &line[name_end..];
        let mut labels = String::new();
        if rest.starts_with('{') {
            // Labels: name="value" pairs, values with \\ \" \n escapes.
            let mut chars = rest.char_indices().skip(1).peekable();
            let mut end = None;
            let mut seen = HashSet::new();
            loop {
                let mut lname = String::new();
                for (i, c) in chars.by_ref() {
                    if c == '=' {
                        break;
                    }
                    if c == '}' && lname.is_empty() {
                        end = Some(i);
                        break;
                    }
                    lname.push(c);
                }
                if end.is_some() {
                    break;
                }
                if lname.is_empty()
                    || lname.starts_with(|c: char| c.is_ascii_digit())
                    || !lname.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    || !seen.insert(lname.clone())
                {
                    return Err(err("bad or repeated label name"));
                }
                if chars.next().map(|(_, c)| c) != Some('"') {
                    return Err(err("label value not quoted"));
                }
                loop {
                    match chars.next().map(|(_, c)| c) {
                        Some('\\') => match chars.next().map(|(_, c)| c) {
                            Some('\\' | '"' | 'n') => {}
                            _ => return Err(err("bad escape")),
                        },
                        Some('"') => break,
                        Some('\n') | None => return Err(err("unterminated label value")),
                        Some(_) => {}
                    }
                }
                match chars.next() {
                    Some((_, ',')) => {}
                    Some((i, '}')) => {
                        end = Some(i);
                        break;
                    }
                    _ => return Err(err("expected , or }")),
                }
            }
            let end = end.ok_or_else(|| err("labels not closed"))?;
            labels = rest[..=end].to_string();
            rest = &rest[end + 1..];
        }
        let mut fields = rest
            .strip_prefix(' ')
            .ok_or_else(|| err("no space before value"))?
            .split(' ');
        let value = match fields.next().unwrap() {
            "NaN" => f64::NAN,
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse::<f64>().map_err(|_| err("bad value"))?,
        };
        if let Some(ts) = fields.next() {
            ts.parse::<f64>().map_err(|_| err("bad timestamp"))?;
        }
        if fields.next().is_some() {
            return Err(err("trailing fields"));
        }
        samples.push((name.to_string(), labels, value));
    }
    Ok(samples)
}

fn state() -> AdminState {
    AdminState::builder(Metrics::new("test\"bot")).build()
}

#[test]
fn readiness_without_backend() {
    let s = state();
    assert_eq!(s.readiness(), Err("the job config has not loaded yet"));
    s.set_backend_reachable(false); // irrelevant without a backend
    s.set_config_loaded();
    assert_eq!(s.readiness(), Ok(()));
    s.set_shutting_down();
    assert_eq!(s.readiness(), Err("shutting down"));
    s.set_config_loaded();
    assert!(!s.is_ready(), "shutdown is final");
}

#[test]
fn readiness_with_backend() {
    let s = AdminState::builder(Metrics::new("b"))
        .with_backend(true)
        .build();
    s.set_backend_reachable(true);
    assert_eq!(s.readiness(), Err("the job config has not loaded yet"));
    s.set_config_loaded();
    assert!(s.is_ready());
    // A backend that stops answering later does not make the bot unready:
    // its jobs run on; the status page says so.
    s.set_backend_reachable(false);
    assert!(s.is_ready());
    let page = s.render_status_page(std::time::SystemTime::now());
    assert!(
        page.contains("id=\"backend\" class=\"bad\">not reachable"),
        "{page}"
    );
    s.set_backend_reachable(true);
    assert!(s.is_ready());
    let page = s.render_status_page(std::time::SystemTime::now());
    assert!(
        page.contains("id=\"backend\" class=\"ok\">reachable"),
        "{page}"
    );
}

#[test]
fn metrics_output_parses_and_has_all_parts() {
    let s = state();
    s.metrics().run(crate::metrics::Outcome::ok);
    s.metrics().lateness.observe(0.002);
    s.values().update(
        &JobId::new("j"),
        &[("target".into(), "1.2.3.4".into())],
        &[
            Value::new("entity.1.a", 1.0),
            Value::new("entity.1.b", 2.5),
            Value::new("entity.1.c", f64::NAN),
        ],
    );
    let text = s.render_metrics();
    let samples = parse_openmetrics(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let names: HashSet<&str> = samples.iter().map(|(n, _, _)| n.as_str()).collect();
    for expected in [
        "grafolean_bot_runs_total",
        "grafolean_bot_build_info",
        "grafolean_bot_firing_lateness_seconds_bucket",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
        "grafolean_value_a",
        "grafolean_value_b",
    ] {
        assert!(names.contains(expected), "{expected} missing in\n{text}");
    }
    assert!(text.contains("grafolean_value_a{entity=\"1\",target=\"1.2.3.4\"} 1.0\n"));
    assert!(!names.contains("grafolean_value_c"), "NaN is not exported");
    assert_eq!(text.matches("# EOF").count(), 1, "one encoder, one # EOF");
    assert!(text.contains("bot=\"test\\\"bot\""), "escaped bot label");
    // The parser itself rejects what it should.
    assert!(parse_openmetrics("a 1\n").is_err());
    assert!(parse_openmetrics("# TYPE a gauge\na 1\n# EOF\n# EOF\n").is_err());
    assert!(parse_openmetrics("# TYPE a gauge\nb 1\n# EOF\n").is_err());
    assert!(parse_openmetrics("# TYPE a gauge\na{x=\"1} 1\n# EOF\n").is_err());
    assert!(parse_openmetrics("# TYPE a gauge\n# TYPE a gauge\n# EOF\n").is_err());
}

/// A bot's own collector (the one way to run code at scrape time) is read
/// at each scrape, under its own name.
#[test]
fn a_bots_collector_is_read_at_each_scrape() {
    #[derive(Debug)]
    struct Calls(Arc<AtomicU64>);
    impl prometheus_client::collector::Collector for Calls {
        fn encode(
            &self,
            mut encoder: prometheus_client::encoding::DescriptorEncoder,
        ) -> std::fmt::Result {
            use prometheus_client::encoding::EncodeMetric;
            let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
            let gauge = prometheus_client::metrics::gauge::ConstGauge::new(n as i64);
            let metric = encoder.encode_descriptor(
                "scrape_calls",
                "Scrapes seen by the collector",
                None,
                gauge.metric_type(),
            )?;
            gauge.encode(metric)
        }
    }
    let metrics = Metrics::new("collectors");
    metrics
        .registry_mut()
        .register_collector(Box::new(Calls(Arc::default())));
    let s = AdminState::builder(metrics).build();
    assert!(
        s.render_metrics().contains("\nscrape_calls 1\n"),
        "a bot's own metric keeps its own name"
    );
    assert!(s.render_metrics().contains("\nscrape_calls 2\n"));
}

async fn spawn(state: AdminState) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(
        listener,
        router(state),
        async {
            let _ = rx.await;
        },
        None,
    ));
    (base, tx)
}

#[tokio::test]
async fn routes_over_http() {
    let s = state();
    s.set_status_provider(Arc::new(|| {
        vec![JobStatus {
            last_error: Some("boom".into()),
            ..JobStatus::new("ping.a")
        }]
    }));
    let (base, stop) = spawn(s.clone()).await;
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(format!("{base}{path}")).send();

    assert_eq!(get("/live").await.unwrap().status(), 200);
    let r = get("/ready").await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(
        r.text().await.unwrap(),
        "not ready: the job config has not loaded yet\n"
    );
    s.set_config_loaded();
    assert_eq!(get("/ready").await.unwrap().status(), 200);

    let r = get("/metrics").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], OPENMETRICS_CONTENT_TYPE);
    assert!(r.headers().get("content-encoding").is_none());
    let plain = r.text().await.unwrap();
    parse_openmetrics(&plain).unwrap();

    // Gzip, as Prometheus asks for it: the same text, compressed.
    let r = http
        .get(format!("{base}/metrics"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-encoding"], "gzip");
    assert_eq!(r.headers()["vary"], "accept-encoding");
    let body = r.bytes().await.unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&body[..]), &mut text).unwrap();
    parse_openmetrics(&text).unwrap();
    let without_process = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| !l.starts_with("process_"))
            .map(String::from)
            .collect()
    };
    assert_eq!(without_process(&text), without_process(&plain));

    let r = get("/").await.unwrap();
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    let page = r.text().await.unwrap();
    assert!(page.contains("<code>ping.a</code>") && page.contains("boom"));

    s.set_shutting_down();
    assert_eq!(get("/ready").await.unwrap().status(), 503);
    assert_eq!(get("/live").await.unwrap().status(), 200);
    assert_eq!(get("/nope").await.unwrap().status(), 404);
    stop.send(()).unwrap();
}

#[tokio::test]
async fn a_5_mb_label_value_makes_neither_page_large() {
    // Byte 256 falls inside an "é": the cut moves back to byte 255.
    let huge = format!("a{}", "é".repeat(2_500_000));
    assert_eq!(huge.len(), 5_000_001);
    let labels = vec![("name".to_string(), huge)];
    let s = state();
    s.values()
        .update(&JobId::new("big"), &labels, &[Value::new("a.b", 1.0)]);
    let rows = labels.clone();
    s.set_status_provider(Arc::new(move || {
        vec![JobStatus {
            labels: rows.clone(),
            ..JobStatus::new("big")
        }]
    }));
    let (base, stop) = spawn(s).await;
    let get = |path: &'static str| {
        let url = format!("{base}{path}");
        async move { reqwest::get(url).await.unwrap().text().await.unwrap() }
    };
    let metrics = get("/metrics").await;
    let page = get("/").await;
    for (what, body) in [("/metrics", &metrics), ("/", &page)] {
        assert!(body.len() < 64 * 1024, "{what} is {} bytes", body.len());
        // Cut on a character boundary, with the marker, and still there.
        let cut = format!(
            "a{}…",
            "é".repeat(crate::exposition::MAX_LABEL_VALUE / 2 - 1)
        );
        assert!(body.contains(&cut), "{what} lacks the capped value");
    }
    parse_openmetrics(&metrics).unwrap();
    stop.send(()).unwrap();
}

#[tokio::test]
async fn router_mounts_into_an_application() {
    let app = Router::new()
        .route("/hello", get(|| async { "hello" }))
        .merge(router(state()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(
        listener,
        app,
        async {
            let _ = rx.await;
        },
        None,
    ));
    let hello = reqwest::get(format!("{base}/hello")).await.unwrap();
    assert_eq!(hello.text().await.unwrap(), "hello");
    let live = reqwest::get(format!("{base}/live")).await.unwrap();
    assert_eq!(live.status(), 200);
    tx.send(()).unwrap();
    server.await.unwrap();
}

#[test]
fn hostile_labels_and_paths_still_parse() {
    // A small deterministic generator of awkward strings.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let alphabet = [
        'a', 'Z', '0', '.', '"', '\\', '\n', '{', '}', ',', '=', ' ', 'ü', '-', '%', '#',
    ];
    let mut word = |max: u64| -> String {
        (0..next() % max)
            .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
            .collect()
    };
    let s = state();
    for j in 0..200 {
        let labels = vec![
            (word(6), word(12)),
            (word(6), word(12)),
            ("target".into(), word(20)),
        ];
        let values: Vec<Value> = (0..5)
            .map(|i| Value::new(word(15), f64::from(i) / 3.0))
            .collect();
        s.values()
            .update(&JobId::new(format!("j{j}")), &labels, &values);
    }
    let text = s.render_metrics();
    let samples = parse_openmetrics(&text).unwrap_or_else(|e| panic!("{e}"));
    let values = samples
        .iter()
        .filter(|(n, _, _)| !n.starts_with("grafolean_bot_") && !n.starts_with("process_"))
        .count();
    assert_eq!(values, s.values().len());
    assert!(
        values > 500,
        "most of the 1000 values are distinct series: {values}"
    );
}
