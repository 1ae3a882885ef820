//! Scheduler benchmark on the real clock: firing lateness, missed firings,
//! CPU and memory at 10,000 and 100,000 jobs, and the cost of a sync.
//!
//! ```text
//! cargo bench --bench scheduler                    # spread, aligned, sync, idle (65 s window)
//! cargo bench --bench scheduler -- idle --idle-secs 120
//! cargo bench --bench scheduler -- spread --repeats 5
//! cargo bench --bench scheduler -- baseline aligned --workers 1
//! cargo bench --bench scheduler -- idle --resolution-ms 1    # a fixed timer resolution
//! cargo bench --bench scheduler -- aligned --pending         # runs that outlive their first poll
//! cargo bench --bench scheduler -- resync                    # firing while syncing
//! cargo bench --bench scheduler -- wake-baseline --idle-secs 20 --step-ms 10  # a bare task waking every 10 ms
//! ```
//!
//! The runtime is tokio's multi-threaded one, with one worker per core unless
//! `--workers N` says otherwise.
//!
//! Lateness is measured inside the job run: wall time at its start minus the
//! firing's intended time (`tick.at`), so it includes the timer, the loop and
//! the wait for a run slot. A firing is missed when a job has fewer runs than
//! expected in a window where each job fires a known number of times.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use grafolean_collector::scheduler::{RunOutcome, Scheduler, SchedulerOptions};
use grafolean_collector::{
    Align, BoxError, Collector, Intervals, JobConfigs, JobSpec, Problems, Tick, Value,
};

/// Records every run: job index, intended time (µs since epoch), lateness (µs).
struct Recorder {
    runs: Mutex<Vec<(u32, i64, i64)>>,
}

impl Collector for Recorder {
    type Params = u32;

    fn jobs(&self, _configs: &JobConfigs, _: &mut Problems) -> Vec<JobSpec<u32>> {
        Vec::new()
    }

    async fn run(&self, tick: Tick, job: &u32) -> Result<Vec<Value>, BoxError> {
        let now = micros(SystemTime::now());
        let at = micros(tick.at);
        self.runs.lock().unwrap().push((*job, at, now - at));
        if PENDING.load(Ordering::Relaxed) {
            // Not done in the first poll: the run goes on in its own task.
            tokio::task::yield_now().await;
        }
        Ok(Vec::new())
    }
}

fn micros(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

/// Counts of firings that did not run normally, from the report callback.
#[derive(Default)]
struct Counters {
    skipped: AtomicU64,
    coalesced: AtomicU64,
    failed: AtomicU64,
}

struct Bench {
    recorder: Arc<Recorder>,
    counters: Arc<Counters>,
    handle: Scheduler<u32>,
}

/// `--pending`: every run yields once after recording, so that it is not
/// finished by its first poll and the scheduler spawns a task for it, as for
/// a job that waits for I/O.
static PENDING: AtomicBool = AtomicBool::new(false);

/// The timer resolution (`--resolution-ms`; 0, the default, for the
/// scheduler's default), set once in `main`.
static RESOLUTION_MS: AtomicU64 = AtomicU64::new(0);

fn start() -> Bench {
    let recorder = Arc::new(Recorder {
        runs: Mutex::new(Vec::with_capacity(1 << 20)),
    });
    let counters = Arc::new(Counters::default());
    let c = counters.clone();
    let options = match RESOLUTION_MS.load(Ordering::Relaxed) {
        0 => SchedulerOptions::default(),
        ms => SchedulerOptions::default().with_timer_resolution(Duration::from_millis(ms)),
    };
    let handle = Scheduler::spawn(recorder.clone(), options, move |r| {
        c.coalesced.fetch_add(r.missed, Ordering::Relaxed);
        match r.outcome {
            RunOutcome::Ok(_) => {}
            RunOutcome::Skipped => {
                c.skipped.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                c.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    Bench {
        recorder,
        counters,
        handle,
    }
}

fn specs(n: u32, secs: u32, align: Align) -> Vec<JobSpec<u32>> {
    (0..n)
        .map(|i| {
            JobSpec::new(format!("entity.{i}.job"), Intervals::one(secs).unwrap(), i)
                .with_align(align)
                .with_label("target", format!("10.0.{}.{}", i / 256 % 256, i % 256))
        })
        .collect()
}

/// utime + stime of this process, in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of the whole line; `after` starts at field 3.
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// (steal, total) jiffies of the whole machine, from `/proc/stat`: steal is
/// time the hypervisor gave this VM's CPUs to someone else.
fn machine_jiffies() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    let cpu: Vec<u64> = stat
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap())
        .collect();
    (cpu.get(7).copied().unwrap_or(0), cpu.iter().take(8).sum())
}

/// The share of the machine's CPU time stolen by the hypervisor since `from`.
fn steal_since(from: (u64, u64)) -> f64 {
    let now = machine_jiffies();
    100.0 * (now.0 - from.0) as f64 / (now.1 - from.1).max(1) as f64
}

/// Context switches of all this process's threads (voluntary and not): each
/// is a thread going to sleep or being preempted, the main cost of an idle
/// process on a VM.
fn context_switches() -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        for line in status.lines() {
            if line.starts_with("voluntary_ctxt_switches:")
                || line.starts_with("nonvoluntary_ctxt_switches:")
            {
                total += line
                    .split_whitespace()
                    .nth(1)
                    .unwrap()
                    .parse::<u64>()
                    .unwrap();
            }
        }
    }
    total
}

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<f64>()
        .unwrap()
        / 1024.0
}

fn percentile(sorted: &[i64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Lateness (ms) p50/p99/max and missed firings of the runs whose intended
/// time is in `[from, from + windows·period)`, where every one of `jobs` jobs
/// fires exactly once per period.
struct Window {
    p50: f64,
    p99: f64,
    max: f64,
    runs: usize,
    missed: u64,
    extra: u64,
}

fn window(b: &Bench, jobs: u32, from: i64, period_s: i64, windows: i64) -> Window {
    let to = from + period_s * windows * 1_000_000;
    let runs = b.recorder.runs.lock().unwrap();
    let counts: Vec<AtomicU32> = (0..jobs).map(|_| AtomicU32::new(0)).collect();
    let mut late: Vec<i64> = Vec::with_capacity(runs.len());
    for &(job, at, lateness) in runs.iter() {
        if at >= from && at < to {
            counts[job as usize].fetch_add(1, Ordering::Relaxed);
            late.push(lateness);
        }
    }
    late.sort_unstable();
    let (mut missed, mut extra) = (0, 0);
    for c in &counts {
        let c = i64::from(c.load(Ordering::Relaxed));
        if c < windows {
            missed += (windows - c) as u64;
        } else {
            extra += (c - windows) as u64;
        }
    }
    Window {
        p50: percentile(&late, 0.5),
        p99: percentile(&late, 0.99),
        max: percentile(&late, 1.0),
        runs: late.len(),
        missed,
        extra,
    }
}

fn print_window(name: &str, w: &Window, b: &Bench, cpu: f64, secs: f64, steal: f64) {
    println!(
        "  {name}: runs {} lateness p50 {:.3} ms p99 {:.3} ms max {:.3} ms; missed {} extra {}; skipped {} coalesced {} failed {}; cpu {:.2} s over {:.0} s ({:.1} % of a core); rss {:.1} MB; steal {steal:.1} %",
        w.runs,
        w.p50,
        w.p99,
        w.max,
        w.missed,
        w.extra,
        b.counters.skipped.load(Ordering::Relaxed),
        b.counters.coalesced.load(Ordering::Relaxed),
        b.counters.failed.load(Ordering::Relaxed),
        cpu,
        secs,
        100.0 * cpu / secs,
        rss_mb(),
    );
}

/// The next whole second of wall time after `t`, plus `plus` seconds.
fn whole_second_after(t: SystemTime, plus: u64) -> SystemTime {
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs + 1 + plus)
}

async fn spread(repeats: usize) {
    println!(
        "10,000 jobs at 1 s, spread (8 s measured after 1 s of warm-up) [p99 <= 2 ms, none missed]"
    );
    repeat_windows(repeats, 8, |_| Align::Spread).await;
}

async fn aligned(repeats: usize) {
    println!(
        "10,000 jobs at 1 s, all aligned to the same second (5 firings) [every firing within 20 ms, none missed]"
    );
    repeat_windows(repeats, 5, Align::Start).await;
}

/// `repeats` times: 10,000 jobs at 1 s with the alignment `align(from)`,
/// measured over `secs` whole seconds from the second `from`; prints each
/// repeat and the medians.
async fn repeat_windows(repeats: usize, secs: i64, align: impl Fn(SystemTime) -> Align) {
    let (mut p50, mut p99, mut max) = (vec![], vec![], vec![]);
    for r in 0..repeats {
        let b = start();
        // A second of warm-up (and of sync) before the window.
        let from = whole_second_after(SystemTime::now(), 1);
        b.handle.sync(specs(10_000, 1, align(from))).await;
        tokio::time::sleep(from.duration_since(SystemTime::now()).unwrap()).await;
        let cpu0 = cpu_seconds();
        let steal0 = machine_jiffies();
        let measured = Duration::from_millis(secs as u64 * 1000 + 300);
        tokio::time::sleep(measured).await;
        let cpu = cpu_seconds() - cpu0;
        let w = window(&b, 10_000, micros(from), 1, secs);
        print_window(
            &format!("repeat {r}"),
            &w,
            &b,
            cpu,
            measured.as_secs_f64(),
            steal_since(steal0),
        );
        p50.push(w.p50);
        p99.push(w.p99);
        max.push(w.max);
        b.handle.shutdown(Duration::from_secs(1)).await;
    }
    println!(
        "  median: p50 {:.3} ms p99 {:.3} ms max {:.3} ms",
        median(p50),
        median(p99),
        median(max)
    );
}

/// The floor for `aligned`: 10,000 bare `tokio::spawn`s at a whole second,
/// each recording its lateness, with no scheduler involved.
async fn baseline(repeats: usize) {
    println!("baseline: 10,000 bare tokio::spawn at one instant, no scheduler");
    let mut maxes = vec![];
    for r in 0..repeats {
        let at = whole_second_after(SystemTime::now(), 0);
        tokio::time::sleep(at.duration_since(SystemTime::now()).unwrap()).await;
        let runs = Arc::new(Mutex::new(Vec::with_capacity(10_000)));
        let mut tasks = Vec::with_capacity(10_000);
        for _ in 0..10_000 {
            let runs = runs.clone();
            tasks.push(tokio::spawn(async move {
                let late = micros(SystemTime::now()) - micros(at);
                runs.lock().unwrap().push(late);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let mut late = runs.lock().unwrap().clone();
        late.sort_unstable();
        println!(
            "  repeat {r}: p50 {:.3} ms p99 {:.3} ms max {:.3} ms",
            percentile(&late, 0.5),
            percentile(&late, 0.99),
            percentile(&late, 1.0)
        );
        maxes.push(percentile(&late, 1.0));
    }
    println!("  median max: {:.3} ms", median(maxes));
}

/// The floor for `idle`: one bare tokio task waking every `step_ms` (10, the
/// phase step of jobs every minute, unless `--step-ms` says otherwise), doing
/// nothing else.
async fn wake_baseline(secs: u64, step_ms: u64) {
    println!("wake baseline: one task sleeping to the next {step_ms} ms, {secs} s, no scheduler");
    let cpu0 = cpu_seconds();
    let switches0 = context_switches();
    // On a runtime worker, as the scheduler's timer task.
    tokio::spawn(async move {
        let started = tokio::time::Instant::now();
        let mut next = started;
        while next < started + Duration::from_secs(secs) {
            next += Duration::from_millis(step_ms);
            tokio::time::sleep_until(next).await;
        }
    })
    .await
    .unwrap();
    let cpu = cpu_seconds() - cpu0;
    println!(
        "  cpu {cpu:.2} s over {secs} s ({:.1} % of a core); context switches {:.0} per second",
        100.0 * cpu / secs as f64,
        (context_switches() - switches0) as f64 / secs as f64
    );
}

async fn idle(secs: u64) {
    println!(
        "100,000 jobs at 60 s, spread, {secs} s window [rss <= 100 MB, cpu <= 2 % of a core, p99 <= 5 ms]"
    );
    let rss0 = rss_mb();
    let b = start();
    let initial = specs(100_000, 60, Align::Spread);
    let t = Instant::now();
    b.handle.sync(initial).await;
    println!(
        "  initial sync of 100,000 jobs: {:.1} ms; rss before {rss0:.1} MB, after {:.1} MB",
        t.elapsed().as_secs_f64() * 1e3,
        rss_mb()
    );
    let from = whole_second_after(SystemTime::now(), 0);
    tokio::time::sleep(from.duration_since(SystemTime::now()).unwrap()).await;
    let cpu0 = cpu_seconds();
    let steal0 = machine_jiffies();
    let switches0 = context_switches();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let cpu = cpu_seconds() - cpu0;
    let switches = context_switches() - switches0;
    // Missed firings are counted over whole 60 s periods, where each job
    // fires exactly once; lateness over every firing in the window.
    let periods = (secs / 60) as i64;
    let w = window(&b, 100_000, micros(from), 60, periods.max(1));
    let all = window(&b, 100_000, micros(from), secs as i64, 1);
    let missed = if periods > 0 {
        w.missed.to_string()
    } else {
        "n/a (window < 60 s)".to_string()
    };
    let all = Window {
        missed: w.missed,
        extra: w.extra,
        ..all
    };
    print_window("window", &all, &b, cpu, secs as f64, steal_since(steal0));
    println!("  missed over {periods} whole period(s): {missed}");
    println!(
        "  context switches: {:.0} per second",
        switches as f64 / secs as f64
    );
    b.handle.shutdown(Duration::from_secs(1)).await;
}

/// Firing while syncing: 100,000 jobs at 60 s fire while a sync with 10 %
/// changed runs every 2 s, as a bot refreshes (every 2 minutes by default).
async fn resync() {
    println!("100,000 jobs at 60 s, a sync with 10 % changed every 2 s, 12 s window");
    let b = start();
    b.handle.sync(specs(100_000, 60, Align::Spread)).await;
    let from = whole_second_after(SystemTime::now(), 0);
    tokio::time::sleep(from.duration_since(SystemTime::now()).unwrap()).await;
    let mut took = Vec::new();
    for r in 0..6u32 {
        // A changed label changes the spec; the params stay the job's index,
        // which the recorder counts runs by.
        let next: Vec<_> = specs(100_000, 60, Align::Spread)
            .into_iter()
            .enumerate()
            .map(|(i, spec)| {
                if i % 10 == r as usize % 10 {
                    spec.with_label("revision", r.to_string())
                } else {
                    spec
                }
            })
            .collect();
        let t = Instant::now();
        b.handle.sync(next).await;
        took.push(format!("{:.0}", t.elapsed().as_secs_f64() * 1e3));
        tokio::time::sleep(Duration::from_secs(2).saturating_sub(t.elapsed())).await;
    }
    let w = window(&b, 100_000, micros(from), 12, 1);
    println!(
        "  runs {} lateness p50 {:.3} ms p99 {:.3} ms max {:.3} ms; syncs took {} ms",
        w.runs,
        w.p50,
        w.p99,
        w.max,
        took.join(" / ")
    );
    b.handle.shutdown(Duration::from_secs(1)).await;
}

async fn sync(repeats: usize) {
    println!("sync of 100,000 jobs (60 s) with 10 % changed [<= 100 ms]");
    let b = start();
    let initial = specs(100_000, 60, Align::Spread);
    let t = Instant::now();
    let s = b.handle.sync(initial).await;
    println!("  initial: {:.1} ms {s:?}", t.elapsed().as_secs_f64() * 1e3);
    let (mut changed, mut same) = (vec![], vec![]);
    for r in 0..repeats {
        let mut next = specs(100_000, 60, Align::Spread);
        for (i, spec) in next.iter_mut().enumerate() {
            if i % 10 == r % 10 {
                spec.params += 1_000_000 * (r as u32 + 1);
            }
        }
        let t = Instant::now();
        let s = b.handle.sync(next).await;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        println!("  10 % changed: {ms:.1} ms {s:?}");
        changed.push(ms);
        let unchanged = b.handle.job_count();
        assert_eq!(unchanged, 100_000);
        let back = specs(100_000, 60, Align::Spread);
        let t = Instant::now();
        let s = b.handle.sync(back).await;
        let ms2 = t.elapsed().as_secs_f64() * 1e3;
        println!("  back (10 % changed again): {ms2:.1} ms {s:?}");
        same.push(ms2);
    }
    let unchanged = specs(100_000, 60, Align::Spread);
    let t = Instant::now();
    let s = b.handle.sync(unchanged).await;
    println!(
        "  nothing changed: {:.1} ms {s:?}",
        t.elapsed().as_secs_f64() * 1e3
    );
    println!(
        "  median 10 % changed: {:.1} ms / {:.1} ms",
        median(changed),
        median(same)
    );
    b.handle.shutdown(Duration::from_secs(1)).await;
}

fn main() {
    let mut args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let flag = |args: &mut Vec<String>, name: &str, default: u64| -> u64 {
        match args.iter().position(|a| a == name) {
            Some(i) => {
                let v = args.remove(i + 1).parse().expect("a number");
                args.remove(i);
                v
            }
            None => default,
        }
    };
    if let Some(i) = args.iter().position(|a| a == "--pending") {
        args.remove(i);
        PENDING.store(true, Ordering::Relaxed);
    }
    let repeats = flag(&mut args, "--repeats", 3) as usize;
    let idle_secs = flag(&mut args, "--idle-secs", 65);
    let step_ms = flag(&mut args, "--step-ms", 10);
    let workers = flag(&mut args, "--workers", 0) as usize;
    RESOLUTION_MS.store(flag(&mut args, "--resolution-ms", 0), Ordering::Relaxed);
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if workers > 0 {
        runtime.worker_threads(workers);
    }
    let runtime = runtime.enable_all().build().unwrap();
    runtime.block_on(run(args, repeats, idle_secs, step_ms));
}

async fn run(mut args: Vec<String>, repeats: usize, idle_secs: u64, step_ms: u64) {
    if args.is_empty() {
        args = ["spread", "aligned", "sync", "idle"]
            .map(String::from)
            .to_vec();
    }
    for a in &args {
        match a.as_str() {
            "spread" => spread(repeats).await,
            "aligned" => aligned(repeats).await,
            "sync" => sync(repeats.max(5)).await,
            "resync" => resync().await,
            "idle" => idle(idle_secs).await,
            "baseline" => baseline(repeats).await,
            "wake-baseline" => wake_baseline(idle_secs, step_ms).await,
            other => {
                panic!(
                    "unknown scenario {other:?}; use spread, aligned, baseline, sync, resync, idle or wake-baseline"
                )
            }
        }
    }
}
