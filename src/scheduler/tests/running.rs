//! Tests of runs: overlap, timeouts, panics, the global limit, shutdown.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::*;

#[tokio::test(start_paused = true)]
async fn overlap_skip_reports_skipped_firings() {
    let h = Harness::new(SchedulerOptions::default().with_run_timeout(Duration::from_secs(10)));
    let slow = Work {
        takes: Duration::from_millis(2_500),
        ..work("slow")
    };
    h.handle.sync(vec![aligned(&[1], base(), slow)]).await;
    sleep_ms(5_600).await;
    assert_eq!(h.runs_of("slow"), vec![0, 3_000]);
    let reports = h.reports();
    let ok = |n| RunOutcome::Ok(vec![Value::new("slow", 1.0)]).clone().eq(&n);
    let outcomes: Vec<(u64, bool)> = reports.iter().map(|(t, o)| (*t, ok(o.clone()))).collect();
    assert_eq!(
        outcomes,
        vec![
            (1_000, false),
            (2_000, false),
            (0, true),
            (4_000, false),
            (5_000, false),
            (3_000, true)
        ]
    );
    assert!(
        reports
            .iter()
            .filter(|r| !ok(r.1.clone()))
            .all(|r| r.1 == RunOutcome::Skipped)
    );
}

#[tokio::test(start_paused = true)]
async fn overlap_queue_one_runs_the_latest_firing_right_after() {
    let h = Harness::new(
        SchedulerOptions::default()
            .with_overlap(OverlapPolicy::QueueOne)
            .with_run_timeout(Duration::from_secs(10)),
    );
    let slow = Work {
        takes: Duration::from_millis(2_500),
        ..work("slow")
    };
    h.handle.sync(vec![aligned(&[1], base(), slow)]).await;
    sleep_ms(5_100).await;
    // (tick, lateness): 0 runs 0..2.5 s; 1 is queued, then replaced by 2,
    // which starts at 2.5 s and runs to 5 s; 3 and 4 likewise.
    let runs: Vec<(u64, u64)> = h.runs().into_iter().map(|r| (r.1, r.2)).collect();
    assert_eq!(runs, vec![(0, 0), (2_000, 500), (4_000, 1_000)]);
    let skipped: Vec<u64> = h
        .reports()
        .into_iter()
        .filter(|r| r.1 == RunOutcome::Skipped)
        .map(|r| r.0)
        .collect();
    assert_eq!(skipped, vec![1_000, 3_000]);
}

#[tokio::test(start_paused = true)]
async fn a_run_past_its_timeout_is_cancelled_and_reported() {
    let h = Harness::new(SchedulerOptions::default());
    let stuck = Work {
        takes: Duration::from_secs(3_600),
        ..work("stuck")
    };
    h.handle.sync(vec![aligned(&[10], base(), stuck)]).await;
    sleep_ms(10_500).await;
    let reports = h.reports.lock().unwrap().clone();
    let first = reports
        .iter()
        .find(|r| r.tick.at == base())
        .expect("the first run is reported");
    assert_eq!(first.outcome, RunOutcome::Timeout);
    assert_eq!(
        first.duration,
        Duration::from_secs(10),
        "the default timeout is the interval"
    );
    assert_eq!(
        h.handle.status()[0].last_error.as_deref(),
        Some("timed out")
    );
}

#[tokio::test(start_paused = true)]
async fn a_configured_timeout_applies_to_every_job() {
    let h = Harness::new(SchedulerOptions::default().with_run_timeout(Duration::from_secs(1)));
    let stuck = Work {
        takes: Duration::from_secs(3_600),
        ..work("stuck")
    };
    h.handle.sync(vec![aligned(&[10], base(), stuck)]).await;
    sleep_ms(10_500).await;
    let reports: Vec<(u64, RunOutcome, Duration)> = h
        .reports
        .lock()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.tick.at.duration_since(base()).unwrap().as_millis() as u64,
                r.outcome.clone(),
                r.duration,
            )
        })
        .collect();
    assert_eq!(
        reports,
        vec![(0, RunOutcome::Timeout, Duration::from_secs(1))]
    );
    // Cancelled at 1 s, so the firing at 10 s found the job free and ran.
    assert_eq!(h.runs_of("stuck"), vec![0, 10_000]);
    assert!(h.handle.status()[0].running);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_or_failing_job_does_not_disturb_others() {
    let h = Harness::new(SchedulerOptions::default());
    let bomb = Work {
        panics: true,
        ..work("bomb")
    };
    let sad = Work {
        fails: true,
        ..work("sad")
    };
    h.handle
        .sync(vec![
            aligned(&[1], base(), bomb),
            aligned(&[1], base(), sad),
            aligned(&[1], base(), work("ok")),
        ])
        .await;
    sleep_ms(4_500).await;
    for name in ["bomb", "sad", "ok"] {
        assert_eq!(
            h.runs_of(name),
            vec![0, 1_000, 2_000, 3_000, 4_000],
            "{name}"
        );
    }
    let reports = h.reports.lock().unwrap().clone();
    let of = |name: &str| {
        reports
            .iter()
            .filter(|r| r.job.as_str() == name)
            .map(|r| r.outcome.clone())
            .collect::<Vec<_>>()
    };
    assert!(
        of("bomb")
            .iter()
            .all(|o| *o == RunOutcome::Panicked("bomb exploded".into()))
    );
    assert!(
        of("sad")
            .iter()
            .all(|o| *o == RunOutcome::Error("sad failed".into()))
    );
    assert_eq!(of("ok").len(), 5);
    let status = h.handle.status();
    let bomb = status.iter().find(|s| s.id.as_str() == "bomb").unwrap();
    assert_eq!(bomb.last_error.as_deref(), Some("panicked: bomb exploded"));
    assert_eq!(bomb.last_run, Some(at(4_000)));
}

#[tokio::test(start_paused = true)]
async fn the_global_limit_bounds_concurrent_runs() {
    let h = Harness::new(SchedulerOptions::default().with_max_concurrent_runs(2));
    let names = ["j1", "j2", "j3", "j4", "j5"];
    let busy = |n| Work {
        takes: Duration::from_secs(1),
        ..work(n)
    };
    h.handle
        .sync(
            names
                .iter()
                .map(|&n| aligned(&[10], base(), busy(n)))
                .collect(),
        )
        .await;
    sleep_ms(5_000).await;
    assert_eq!(h.recorder.most_going.load(Ordering::SeqCst), 2);
    let mut lateness: Vec<u64> = h.runs().iter().map(|r| r.2).collect();
    lateness.sort();
    assert_eq!(lateness, vec![0, 0, 1_000, 1_000, 2_000]);
}

#[tokio::test(start_paused = true)]
async fn shutdown_drains_runs_up_to_the_deadline() {
    let h = Harness::new(SchedulerOptions::default());
    let long = Work {
        takes: Duration::from_secs(3),
        ..work("long")
    };
    h.handle.sync(vec![aligned(&[10], base(), long)]).await;
    sleep_ms(100).await;
    let started = tokio::time::Instant::now();
    h.handle.clone().shutdown(Duration::from_secs(5)).await;
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(2_900),
        "waited for the run to finish"
    );
    assert_eq!(h.reports().len(), 1);
    sleep_ms(30_000).await;
    assert_eq!(h.runs_of("long"), vec![0], "no firing after shutdown");
}

#[tokio::test(start_paused = true)]
async fn shutdown_aborts_runs_past_the_deadline() {
    let h = Harness::new(SchedulerOptions::default());
    let long = Work {
        takes: Duration::from_secs(8),
        ..work("long")
    };
    h.handle.sync(vec![aligned(&[10], base(), long)]).await;
    sleep_ms(100).await;
    let started = tokio::time::Instant::now();
    h.handle.clone().shutdown(Duration::from_secs(1)).await;
    assert_eq!(started.elapsed(), Duration::from_secs(1));
    sleep_ms(20_000).await;
    assert!(h.reports().is_empty(), "an aborted run is not reported");
    assert!(
        !h.handle.status()[0].running,
        "the aborted run freed its job"
    );
}

#[tokio::test(start_paused = true)]
async fn dropping_every_handle_stops_firing() {
    let h = Harness::new(SchedulerOptions::default());
    h.handle.sync(vec![aligned(&[1], base(), work("d"))]).await;
    sleep_ms(1_500).await;
    let Harness {
        recorder, handle, ..
    } = h;
    drop(handle);
    sleep_ms(5_000).await;
    assert_eq!(recorder.runs.lock().unwrap().len(), 2);
}

/// Log lines in memory, for tests of what is logged.
#[derive(Clone, Default)]
struct Capture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_job_that_keeps_failing_is_logged_when_it_starts_and_sparsely_after() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let h = Harness::new(SchedulerOptions::default());
    let sad = Work {
        fails: true,
        ..work("sad")
    };
    h.handle.sync(vec![aligned(&[1], base(), sad)]).await;
    sleep_ms(9_500).await; // 10 failures in a row
    assert_eq!(h.runs_of("sad").len(), 10);
    let log = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("sad")).collect();
    assert_eq!(lines.len(), 4, "failures 1, 2, 4 and 8 only:\n{log}");
    assert!(lines[0].contains("job run failed"), "{log}");
    assert!(lines[3].contains("8 times in a row"), "{log}");
}
