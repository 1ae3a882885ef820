//! The standard `process_*` metrics, read from `/proc/self` at scrape time.
//!
//! The names and meanings follow the Prometheus client libraries (Go's
//! `procfs`, Python's `prometheus_client`), so existing dashboards work. On a
//! system without `/proc` nothing is written.

use std::fmt::Write as _;
use std::sync::OnceLock;

/// Clock ticks per second of the times in `/proc/<pid>/stat`. The kernel
/// reports them in `USER_HZ`, which is 100 on every Linux architecture that
/// matters (Go's `procfs` assumes the same).
const USER_HZ: f64 = 100.0;

/// The process figures exposed on `/metrics`.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct ProcessStats {
    pub cpu_seconds: f64,
    pub resident_bytes: Option<f64>,
    pub virtual_bytes: Option<f64>,
    pub open_fds: Option<f64>,
    pub max_fds: Option<f64>,
    pub start_time_seconds: Option<f64>,
}

impl ProcessStats {
    /// Reads the current figures, or `None` where `/proc/self/stat` is missing.
    pub(crate) fn read() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // The command name (field 2) may contain spaces; fields after it are
        // counted from the last ')'.
        let after = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = after.split_whitespace().collect();
        // `after` starts at field 3 (state): field N is fields[N - 3].
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<f64>().ok());
        let cpu_seconds = (field(14)? + field(15)?) / USER_HZ;
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let kib = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
                .map(|v| v * 1024.0)
        };
        Some(Self {
            cpu_seconds,
            resident_bytes: kib("VmRSS:"),
            virtual_bytes: kib("VmSize:"),
            open_fds: std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|d| d.count() as f64),
            max_fds: max_fds(),
            start_time_seconds: field(22).and_then(|ticks| Some(boot_time()? + ticks / USER_HZ)),
        })
    }

    /// Appends the figures in the OpenMetrics text format.
    pub(crate) fn encode(&self, out: &mut String) {
        family(
            out,
            "process_cpu_seconds",
            "counter",
            "Total user and system CPU time spent in seconds.",
            "_total",
            Some(self.cpu_seconds),
        );
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                self.resident_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                self.virtual_bytes,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors.",
                self.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors.",
                self.max_fds,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                self.start_time_seconds,
            ),
        ];
        for (name, help, value) in gauges {
            family(out, name, "gauge", help, "", value);
        }
    }
}

/// Appends `/proc/self` metrics to `out`; nothing where there is no `/proc`.
pub(crate) fn encode(out: &mut String) {
    if let Some(stats) = ProcessStats::read() {
        stats.encode(out);
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str, suffix: &str, v: Option<f64>) {
    let Some(v) = v else { return };
    let _ = write!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{suffix} {v:?}\n"
    );
}

/// The soft limit on open files, from `/proc/self/limits`.
fn max_fds() -> Option<f64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .next()?;
    soft.parse().ok()
}

/// The system's boot time in seconds since the epoch, from `/proc/stat`.
fn boot_time() -> Option<f64> {
    static BOOT: OnceLock<Option<f64>> = OnceLock::new();
    *BOOT.get_or_init(|| {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        stat.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse().ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_standard_names() {
        let stats = ProcessStats {
            cpu_seconds: 1.5,
            resident_bytes: Some(4096.0),
            virtual_bytes: None,
            open_fds: Some(7.0),
            max_fds: Some(1024.0),
            start_time_seconds: Some(1_700_000_000.0),
        };
        let mut out = String::new();
        stats.encode(&mut out);
        assert_eq!(
            out,
            "# HELP process_cpu_seconds Total user and system CPU time spent in seconds.\n\
             # TYPE process_cpu_seconds counter\n\
             process_cpu_seconds_total 1.5\n\
             # HELP process_resident_memory_bytes Resident memory size in bytes.\n\
             # TYPE process_resident_memory_bytes gauge\n\
             process_resident_memory_bytes 4096.0\n\
             # HELP process_open_fds Number of open file descriptors.\n\
             # TYPE process_open_fds gauge\n\
             process_open_fds 7.0\n\
             # HELP process_max_fds Maximum number of open file descriptors.\n\
             # TYPE process_max_fds gauge\n\
             process_max_fds 1024.0\n\
             # HELP process_start_time_seconds Start time of the process since unix epoch in seconds.\n\
             # TYPE process_start_time_seconds gauge\n\
             process_start_time_seconds 1700000000.0\n"
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_this_process() {
        let stats = ProcessStats::read().expect("/proc/self/stat is readable on Linux");
        assert!(stats.cpu_seconds >= 0.0);
        assert!(stats.resident_bytes.unwrap() > 0.0);
        assert!(stats.open_fds.unwrap() >= 3.0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = stats.start_time_seconds.unwrap();
        assert!(
            start <= now + 1.0 && start > now - 86_400.0 * 365.0,
            "{start}"
        );
    }
}
