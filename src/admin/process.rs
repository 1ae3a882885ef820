//! The standard `process_*` metrics, read at scrape time by a
//! prometheus-client [`Collector`], from `/proc` through the `procfs` crate.
//!
//! The names and meanings follow the Prometheus client libraries (Go's
//! `procfs`, Python's `prometheus_client`), so existing dashboards work. On a
//! system without `/proc` nothing is written.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

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
        let me = procfs::process::Process::myself().ok()?;
        let stat = me.stat().ok()?;
        // Clock ticks and page size as the kernel reports them, not assumed.
        let ticks = procfs::ticks_per_second() as f64;
        let page = procfs::page_size() as f64;
        let max_fds = me
            .limits()
            .ok()
            .and_then(|l| match l.max_open_files.soft_limit {
                procfs::process::LimitValue::Value(v) => Some(v as f64),
                procfs::process::LimitValue::Unlimited => None,
            });
        let boot = procfs::boot_time_secs().ok().map(|s| s as f64);
        Some(Self {
            cpu_seconds: (stat.utime + stat.stime) as f64 / ticks,
            resident_bytes: Some(stat.rss as f64 * page),
            virtual_bytes: Some(stat.vsize as f64),
            open_fds: me.fd_count().ok().map(|n| n as f64),
            max_fds,
            start_time_seconds: boot.map(|b| b + stat.starttime as f64 / ticks),
        })
    }

    fn encode(&self, encoder: &mut DescriptorEncoder) -> fmt::Result {
        encoder
            .encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                None,
                MetricType::Counter,
            )?
            .encode_counter::<NoLabelSet, _, f64>(&self.cpu_seconds, None)?;
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
            if let Some(value) = value {
                encoder
                    .encode_descriptor(name, help, None, MetricType::Gauge)?
                    .encode_gauge(&value)?;
            }
        }
        Ok(())
    }
}

/// Registered in the SDK's registry: reads `/proc` at every scrape.
#[derive(Debug, Default)]
pub(crate) struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        match ProcessStats::read() {
            Some(stats) => stats.encode(&mut encoder),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;

    /// A registry with `collector`, encoded.
    fn encoded(collector: impl Collector) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(collector));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        out
    }

    #[derive(Debug)]
    struct Fixed(ProcessStats);

    impl Collector for Fixed {
        fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
            self.0.encode(&mut encoder)
        }
    }

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
        assert_eq!(
            encoded(Fixed(stats)),
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
             process_start_time_seconds 1700000000.0\n\
             # EOF\n"
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
        assert!(encoded(ProcessCollector).contains("process_cpu_seconds_total "));
    }
}
