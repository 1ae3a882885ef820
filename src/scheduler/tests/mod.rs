//! Scheduler tests on tokio's paused clock, with a wall clock mapped onto it
//! ([`Clock::starting_at`]), so that every firing time is exact.
//!
//! This file holds the harness and the firing and sync tests; `running.rs`
//! the tests of runs (overlap, timeouts, panics, limits, shutdown).

mod running;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::timing::{job_start, system_to_millis};
use super::*;
use crate::collector::{BoxError, Collector};
use crate::config::JobConfigs;
use crate::job::{Align, Intervals, JobSpec, Tick};
use crate::problem::Problems;
use crate::value::Value;

/// The wall time at the start of each test: a multiple of every interval used.
const BASE_SECS: u64 = 1_700_000_000 - 1_700_000_000 % 3600;

fn base() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(BASE_SECS)
}

/// `ms` milliseconds after [`base`].
fn at(ms: u64) -> SystemTime {
    base() + Duration::from_millis(ms)
}

/// What a test job does when run.
#[derive(Clone, Debug, PartialEq)]
struct Work {
    name: &'static str,
    takes: Duration,
    fails: bool,
    panics: bool,
}

fn work(name: &'static str) -> Work {
    Work {
        name,
        takes: Duration::ZERO,
        fails: false,
        panics: false,
    }
}

/// A run as the collector saw it: job name, tick, wall time at its start.
type Run = (&'static str, Tick, SystemTime);

#[derive(Default)]
struct Recorder {
    clock: Mutex<Option<Clock>>,
    runs: Mutex<Vec<Run>>,
    going: AtomicUsize,
    most_going: AtomicUsize,
}

impl Collector for Recorder {
    type Params = Work;

    fn jobs(&self, _configs: &JobConfigs, _: &mut Problems) -> Vec<JobSpec<Work>> {
        Vec::new()
    }

    async fn run(&self, tick: Tick, w: &Work) -> Result<Vec<Value>, BoxError> {
        let clock = self.clock.lock().unwrap().expect("clock set");
        let now = crate::scheduler::timing::millis_to_system(clock.now());
        self.runs.lock().unwrap().push((w.name, tick, now));
        let going = self.going.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_going.fetch_max(going, Ordering::SeqCst);
        tokio::time::sleep(w.takes).await;
        self.going.fetch_sub(1, Ordering::SeqCst);
        if w.panics {
            panic!("{} exploded", w.name);
        }
        if w.fails {
            return Err(format!("{} failed", w.name).into());
        }
        Ok(vec![Value::new(w.name, 1.0)])
    }
}

struct Harness {
    recorder: Arc<Recorder>,
    reports: Arc<Mutex<Vec<RunReport>>>,
    handle: Scheduler<Work>,
}

impl Harness {
    fn new(options: SchedulerOptions) -> Self {
        let clock = Clock::starting_at(base());
        let recorder = Arc::new(Recorder::default());
        *recorder.clock.lock().unwrap() = Some(clock);
        let reports = Arc::new(Mutex::new(Vec::new()));
        let sink = reports.clone();
        let handle = Scheduler::spawn(recorder.clone(), options.with_clock(clock), move |r| {
            sink.lock().unwrap().push(r)
        });
        Self {
            recorder,
            reports,
            handle,
        }
    }

    /// (job, tick time in ms after base, lateness in ms) of every run so far.
    fn runs(&self) -> Vec<(&'static str, u64, u64)> {
        let ms = |t: SystemTime| t.duration_since(base()).unwrap().as_millis() as u64;
        let runs = self.recorder.runs.lock().unwrap();
        runs.iter()
            .map(|(n, tick, now)| (*n, ms(tick.at), ms(*now) - ms(tick.at)))
            .collect()
    }

    fn runs_of(&self, name: &str) -> Vec<u64> {
        self.runs()
            .into_iter()
            .filter(|r| r.0 == name)
            .map(|r| r.1)
            .collect()
    }

    /// (tick ms after base, outcome) of every report so far.
    fn reports(&self) -> Vec<(u64, RunOutcome)> {
        let reports = self.reports.lock().unwrap();
        reports
            .iter()
            .map(|r| {
                (
                    r.tick.at.duration_since(base()).unwrap().as_millis() as u64,
                    r.outcome.clone(),
                )
            })
            .collect()
    }
}

fn every(secs: u32, name: &'static str) -> JobSpec<Work> {
    JobSpec::new(name, Intervals::one(secs).unwrap(), work(name))
}

fn aligned(secs: &[u32], start: SystemTime, w: Work) -> JobSpec<Work> {
    JobSpec::new(w.name, Intervals::new(secs.iter().copied()).unwrap(), w)
        .with_align(Align::Start(start))
}

async fn sleep_ms(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

#[tokio::test(start_paused = true)]
async fn start_alignment_fires_exactly_at_start_plus_multiples() {
    let h = Harness::new(SchedulerOptions::default());
    h.handle
        .sync(vec![aligned(&[10], at(3_000), work("a"))])
        .await;
    sleep_ms(35_000).await;
    let runs = h.runs();
    assert_eq!(
        runs,
        vec![
            ("a", 3_000, 0),
            ("a", 13_000, 0),
            ("a", 23_000, 0),
            ("a", 33_000, 0)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn spread_alignment_fires_at_the_id_phase() {
    let h = Harness::new(SchedulerOptions::default());
    let spec = every(5, "spread-me");
    let phase = job_start(&spec.id, &spec.intervals, Align::Spread) as u64 % 5_000;
    h.handle.sync(vec![spec]).await;
    sleep_ms(15_000).await;
    let expected: Vec<u64> = (0..3).map(|k| phase + k * 5_000).collect();
    assert_eq!(h.runs_of("spread-me"), expected);
    assert!(
        h.runs().iter().all(|r| r.2 == 0),
        "every firing is on time: {:?}",
        h.runs()
    );
}

#[tokio::test(start_paused = true)]
async fn coinciding_intervals_fire_once_with_affecting() {
    let h = Harness::new(SchedulerOptions::default());
    h.handle
        .sync(vec![aligned(&[2, 3], base(), work("m"))])
        .await;
    sleep_ms(6_500).await;
    let runs = h.recorder.runs.lock().unwrap().clone();
    let seen: Vec<(u64, Vec<u32>)> = runs
        .iter()
        .map(|(_, t, _)| {
            (
                t.at.duration_since(base()).unwrap().as_secs(),
                t.affecting.iter().collect(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (0, vec![2, 3]),
            (2, vec![2]),
            (3, vec![3]),
            (4, vec![2]),
            (6, vec![2, 3])
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn sync_keeps_unchanged_reschedules_changed_and_drops_removed() {
    let h = Harness::new(SchedulerOptions::default());
    let (a, b, c) = (every(10, "a"), every(10, "b"), every(10, "c"));
    let first = h.handle.sync(vec![a.clone(), b.clone(), c.clone()]).await;
    assert_eq!(
        first,
        SyncSummary {
            added: 3,
            ..Default::default()
        }
    );
    let next_of = |h: &Harness, name: &str| {
        h.handle
            .status()
            .into_iter()
            .find(|s| s.id.as_str() == name)
            .and_then(|s| s.next_firing)
    };
    // Remove `c` one millisecond before it is due: its queued firing must not run.
    let c_at = job_start(&c.id, &c.intervals, Align::Spread) as u64 % 10_000;
    sleep_ms(c_at.saturating_sub(1)).await;
    let a_next = next_of(&h, "a");
    let changed_b = JobSpec {
        intervals: Intervals::one(7).unwrap(),
        ..b.clone()
    };
    let second = h
        .handle
        .sync(vec![a.clone(), changed_b.clone(), a.clone()])
        .await;
    let expected = SyncSummary {
        added: 0,
        changed: 1,
        removed: 1,
        unchanged: 1,
        duplicates: 1,
    };
    assert_eq!(second, expected);
    assert_eq!(h.handle.job_count(), 2);
    assert_eq!(
        next_of(&h, "a"),
        a_next,
        "an unchanged job keeps its next firing"
    );
    let b_phase = job_start(&changed_b.id, &changed_b.intervals, Align::Spread);
    let now = system_to_millis(base()) + c_at as i64 - 1;
    let b_next = super::timing::next_at(b_phase, &changed_b.intervals, now - 1);
    assert_eq!(
        next_of(&h, "b"),
        Some(super::timing::millis_to_system(b_next))
    );
    sleep_ms(30_000).await;
    assert!(
        h.runs_of("c").is_empty(),
        "a removed job never fires: {:?}",
        h.runs()
    );
    let a_phase = job_start(&a.id, &a.intervals, Align::Spread) as u64 % 10_000;
    assert!(h.runs_of("a").iter().all(|t| t % 10_000 == a_phase));
    let b_runs = h.runs_of("b");
    assert!(
        b_runs
            .iter()
            .filter(|&&t| t >= c_at)
            .all(|&t| (t as i64 + system_to_millis(base()) - b_phase) % 7_000 == 0)
    );
    assert!(b_runs.len() >= 4, "{b_runs:?}");
}

#[tokio::test(start_paused = true)]
async fn a_stall_gives_one_run_not_a_burst() {
    let h = Harness::new(SchedulerOptions::default());
    h.handle.sync(vec![aligned(&[1], base(), work("s"))]).await;
    sleep_ms(500).await;
    assert_eq!(h.runs_of("s"), vec![0]);
    // Jump 35 s at once, as if the process had been suspended.
    tokio::time::advance(Duration::from_millis(35_000)).await;
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        h.runs_of("s"),
        vec![0, 35_000],
        "one run at the latest missed firing"
    );
    assert_eq!(h.reports.lock().unwrap()[1].missed, 34);
    sleep_ms(1_000).await;
    assert_eq!(h.runs_of("s"), vec![0, 35_000, 36_000]);
}

#[tokio::test(start_paused = true)]
async fn status_shows_schedule_and_last_run() {
    let h = Harness::new(SchedulerOptions::default());
    let spec = aligned(
        &[10, 60],
        base(),
        Work {
            takes: Duration::from_millis(250),
            ..work("st")
        },
    )
    .with_label("target", "127.0.0.1");
    h.handle.sync(vec![spec]).await;
    sleep_ms(100).await;
    let s = &h.handle.status()[0];
    assert!(s.running);
    assert_eq!(s.next_firing, Some(at(10_000)));
    assert_eq!(
        s.labels,
        vec![("target".to_string(), "127.0.0.1".to_string())]
    );
    sleep_ms(200).await;
    let s = &h.handle.status()[0];
    assert!(!s.running);
    assert_eq!(
        (s.last_run, s.last_duration, s.last_error.clone()),
        (Some(base()), Some(Duration::from_millis(250)), None)
    );
}

#[tokio::test(start_paused = true)]
async fn spread_jobs_every_minute_fire_on_time_on_a_10_ms_step() {
    let h = Harness::new(SchedulerOptions::default());
    let specs: Vec<_> = (0..200)
        .map(|n| JobSpec::new(format!("m{n}"), Intervals::one(60).unwrap(), work("m")))
        .collect();
    h.handle.sync(specs).await;
    sleep_ms(60_000).await;
    let runs = h.runs();
    assert_eq!(runs.len(), 200);
    // Every firing is on a 10 ms step and on time, so 200 jobs share at most
    // 200 distinct instants, far fewer wakes than 1 ms phases would need.
    assert!(runs.iter().all(|r| r.1 % 10 == 0 && r.2 == 0), "{runs:?}");
}

#[tokio::test(start_paused = true)]
async fn a_coarser_timer_resolution_fires_on_its_grid() {
    let h =
        Harness::new(SchedulerOptions::default().with_timer_resolution(Duration::from_millis(10)));
    h.handle.sync(vec![aligned(&[1], at(3), work("g"))]).await;
    sleep_ms(2_500).await;
    // Intended at 3, 1003, 2003 ms; run at the next multiple of 10 ms.
    assert_eq!(
        h.runs(),
        vec![("g", 3, 7), ("g", 1_003, 7), ("g", 2_003, 7)]
    );
}

fn minute_job(id: String, secs: u32) -> JobSpec<Work> {
    JobSpec::new(id, Intervals::one(secs).unwrap(), work("batch"))
}

#[tokio::test(start_paused = true)]
async fn a_sync_of_several_batches_adds_changes_and_removes_exactly() {
    let h = Harness::new(SchedulerOptions::default());
    let n = SYNC_BATCH * 2 + 10;
    let first: Vec<_> = (0..n).map(|i| minute_job(format!("j{i}"), 60)).collect();
    assert_eq!(h.handle.sync(first).await.added, n);
    // Drop the first 5, change every third, and repeat an id of the first
    // batch in the last one.
    let mut second: Vec<_> = (5..n)
        .map(|i| minute_job(format!("j{i}"), if i % 3 == 0 { 30 } else { 60 }))
        .collect();
    second.push(minute_job("j7".into(), 10));
    let changed = (5..n).filter(|i| i % 3 == 0).count();
    let s = h.handle.sync(second).await;
    assert_eq!(
        (s.added, s.changed, s.removed, s.duplicates, s.unchanged),
        (0, changed, 5, 1, n - 5 - changed)
    );
    assert_eq!(h.handle.job_count(), n - 5);
}

#[tokio::test(start_paused = true)]
async fn concurrent_syncs_run_one_after_the_other() {
    let h = Harness::new(SchedulerOptions::default());
    let n = SYNC_BATCH * 3;
    let a: Vec<_> = (0..n).map(|i| minute_job(format!("a{i}"), 60)).collect();
    let b: Vec<_> = (0..n).map(|i| minute_job(format!("b{i}"), 60)).collect();
    let (sa, sb) = tokio::join!(h.handle.sync(a), h.handle.sync(b));
    // Whichever ran second removed every job of the first.
    assert_eq!((sa.added, sb.added), (n, n));
    assert_eq!(sa.removed + sb.removed, n);
    let status = h.handle.status();
    assert_eq!(status.len(), n);
    let first = status[0].id.as_str().as_bytes()[0];
    assert!(status.iter().all(|j| j.id.as_str().as_bytes()[0] == first));
}
