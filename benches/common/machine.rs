//! The machine's CPU time while a benchmark runs, from `/proc/stat`: how much
//! of it was idle (other engineers' builds share these 2 cores) and how much
//! the hypervisor stole for other tenants.

/// (idle, steal, total) jiffies of the whole machine since boot.
pub fn jiffies() -> (u64, u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let cpu: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let at = |i: usize| cpu.get(i).copied().unwrap_or(0);
    (at(3) + at(4), at(7), cpu.iter().take(8).sum())
}

/// "idle x %, steal y %" of the machine since `from`.
pub fn since(from: (u64, u64, u64)) -> String {
    let now = jiffies();
    let total = (now.2 - from.2).max(1) as f64;
    format!(
        "machine: idle {:.1} %, steal {:.2} %",
        100.0 * (now.0 - from.0) as f64 / total,
        100.0 * (now.1 - from.1) as f64 / total
    )
}
