//! A real browser renders the status page on `/`.
//!
//! Headless Chromium loads the page from a running admin server and dumps the
//! DOM it built; the job rows, their error text, and the escaping of hostile
//! text must survive a real HTML parser. Needs `/usr/bin/chromium` (Debian
//! package `chromium`); the test fails with a clear message when it is missing.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::admin::{self, AdminState};
use crate::metrics::Metrics;
use crate::scheduler::JobStatus;

const CHROMIUM: &str = "/usr/bin/chromium";
const TIMEOUT: Duration = Duration::from_secs(90);

/// Kills Chromium and removes its profile directory, even when the test fails.
struct Browser {
    child: Child,
    dir: PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `chromium --dump-dom url` and returns the DOM it prints.
fn dump_dom(url: &str) -> String {
    let dom = chromium(url, &["--dump-dom"]);
    assert!(!dom.is_empty(), "chromium printed no DOM for {url}");
    dom
}

/// Runs headless Chromium on `url` with `args`; returns what it prints.
fn chromium(url: &str, args: &[&str]) -> String {
    assert!(
        std::path::Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: install it with `apt-get install -y chromium` (CI does)"
    );
    let dir = std::env::temp_dir().join(format!(
        "grafolean-chromium-test-{}-{}",
        std::process::id(),
        crate::testing::random_id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("dom.html");
    let child = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .args(args)
        .arg(url)
        .env("HOME", &dir)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap())
        .spawn()
        .expect("failed to start chromium");
    let mut browser = Browser { child, dir };
    let start = Instant::now();
    loop {
        if let Some(status) = browser.child.try_wait().unwrap() {
            let dom = std::fs::read_to_string(&out).unwrap_or_default();
            let log = std::fs::read_to_string(browser.dir.join("stderr.log")).unwrap_or_default();
            assert!(status.success(), "chromium failed ({status}):\n{log}");
            return dom;
        }
        assert!(
            start.elapsed() < TIMEOUT,
            "chromium did not finish within {TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_shows_the_job_rows() {
    let state = AdminState::builder(Metrics::new("ping"))
        .with_version("9.8.7")
        .build();
    state.set_config_loaded();
    state.set_status_provider(Arc::new(|| {
        let now = SystemTime::now();
        vec![
            JobStatus {
                labels: vec![("target".into(), "10.0.0.1".into())],
                last_run: Some(now - Duration::from_secs(4)),
                last_duration: Some(Duration::from_millis(31)),
                next_firing: Some(now + Duration::from_secs(6)),
                last_error: None,
                running: false,
                intervals: crate::job::Intervals::new([10, 60]).unwrap(),
                ..JobStatus::new("ping.10.0.0.1")
            },
            JobStatus {
                labels: vec![("target".into(), "bad.example".into())],
                last_run: Some(now - Duration::from_secs(2)),
                last_duration: Some(Duration::from_secs(5)),
                next_firing: Some(now + Duration::from_secs(3)),
                last_error: Some("run timed out after 5 s & gave up".into()),
                running: true,
                ..JobStatus::new("ping.<img src=x onerror=alert(1)>")
            },
        ]
    }));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(admin::serve(
        listener,
        admin::router(state),
        async {
            let _ = stopped.await;
        },
        None,
    ));

    let dom = tokio::task::spawn_blocking(move || dump_dom(&url))
        .await
        .unwrap();

    assert!(dom.contains("<title>ping — Grafolean bot</title>"), "{dom}");
    assert_eq!(dom.matches("<tr class=\"job").count(), 2, "{dom}");
    assert_eq!(dom.matches("<tr class=\"job error\">").count(), 1, "{dom}");
    assert!(dom.contains("<code>ping.10.0.0.1</code>"), "{dom}");
    assert!(
        dom.contains("run timed out after 5 s &amp; gave up"),
        "{dom}"
    );
    // The hostile id stayed text: no <img> element was created.
    assert!(
        dom.contains("ping.&lt;img src=x onerror=alert(1)&gt;"),
        "{dom}"
    );
    assert!(!dom.contains("<img"), "{dom}");
    assert!(dom.contains(">9.8.7<") && dom.contains(">ready<"), "{dom}");
    assert!(dom.contains("10s,60s") && dom.contains("31 ms"), "{dom}");

    stop.send(()).unwrap();
    server.await.unwrap();
}

/// 10,000 jobs, 100 of them failing, with values: the first page is small,
/// holds the failing jobs, and the search finds one entity. With
/// `STATUS_PAGE_SCREENSHOT=/path.png`, also takes a screenshot there (the
/// README's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_pages_ten_thousand_jobs_failing_first() {
    use crate::exposition::ValueStore;
    use crate::job::JobId;
    use crate::value::Value;

    let values = ValueStore::new();
    let state = AdminState::builder(Metrics::new("ping"))
        .with_version("9.8.7")
        .with_values(values.clone())
        .build();
    state.set_config_loaded();
    let labels = |i: u32| {
        vec![
            ("entity".to_string(), format!("{}", 1000 + i)),
            ("entity_name".to_string(), format!("router-{i:05}")),
            (
                "target".to_string(),
                format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255),
            ),
        ]
    };
    for i in 0..10_000u32 {
        let job = JobId::new(format!("ping.{}", 1000 + i));
        let path = |m: &str| format!("entity.{}.ping.{m}", 1000 + i);
        values.update(
            &job,
            &labels(i),
            &[
                Value::new(path("p50rtt"), 0.000_412 + f64::from(i % 50) * 1e-5),
                Value::new(path("success"), if i % 100 == 42 { 0.0 } else { 1.0 }),
            ],
        );
    }
    state.set_status_provider(Arc::new(move || {
        let now = SystemTime::now();
        (0..10_000u32)
            .map(|i| JobStatus {
                labels: labels(i),
                last_run: Some(now - Duration::from_secs(u64::from(i % 5))),
                last_duration: Some(Duration::from_micros(400 + u64::from(i % 300))),
                next_firing: Some(now + Duration::from_secs(1 + u64::from(i % 5))),
                last_error: (i % 100 == 42).then(|| "no answer to 3 pings within 1 s".to_string()),
                running: false,
                intervals: crate::job::Intervals::new([5]).unwrap(),
                ..JobStatus::new(&format!("ping.{}", 1000 + i))
            })
            .collect()
    }));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(admin::serve(
        listener,
        admin::router(state),
        async {
            let _ = stopped.await;
        },
        None,
    ));

    let first = reqwest::get(format!("{base}/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        first.len() < 200 * 1024,
        "the first page is {} bytes",
        first.len()
    );

    let url = format!("{base}/");
    let dom = tokio::task::spawn_blocking(move || dump_dom(&url))
        .await
        .unwrap();
    assert_eq!(dom.matches("<tr class=\"job").count(), 100, "one page");
    assert_eq!(
        dom.matches("<tr class=\"job error\">").count(),
        100,
        "the 100 failing jobs first"
    );
    assert!(
        dom.contains("Jobs 1–100 of 10000 matching, failing first."),
        "{dom}"
    );
    assert!(dom.contains("<dt>failing</dt><dd>100</dd>"));
    assert!(dom.contains("ping_success"), "the last values are shown");
    assert!(dom.contains("rel=\"next\""));

    // The search form's GET: one entity by name.
    let url = format!("{base}/?q=Router-04242&state=");
    let dom = tokio::task::spawn_blocking(move || dump_dom(&url))
        .await
        .unwrap();
    assert_eq!(dom.matches("<tr class=\"job").count(), 1, "{dom}");
    assert!(dom.contains("<code>ping.5242</code>"));
    assert!(dom.contains("Jobs 1–1 of 1 matching (of 10000 in all)"));
    // The second page: healthy jobs, in id order.
    let url = format!("{base}/?page=2");
    let dom = tokio::task::spawn_blocking(move || dump_dom(&url))
        .await
        .unwrap();
    assert_eq!(dom.matches("<tr class=\"job error\">").count(), 0);
    assert!(dom.contains("<code>ping.1000</code>"));
    assert!(dom.contains("rel=\"prev\""));

    // The same for scripts.
    let json: serde_json::Value =
        reqwest::get(format!("{base}/api/jobs?state=failing&per_page=1000"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(json["matched"], 100);
    assert_eq!(json["jobs"].as_array().unwrap().len(), 100);
    assert_eq!(json["jobs"][0]["labels"]["entity_name"], "router-00042");

    if let Ok(shot) = std::env::var("STATUS_PAGE_SCREENSHOT") {
        let url = format!("{base}/");
        let arg = format!("--screenshot={shot}");
        tokio::task::spawn_blocking(move || {
            chromium(&url, &[&arg, "--window-size=1400,900", "--hide-scrollbars"])
        })
        .await
        .unwrap();
        assert!(std::path::Path::new(&shot).exists());
    }

    stop.send(()).unwrap();
    server.await.unwrap();
}
