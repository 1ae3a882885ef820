//! `grafolean-snmp-bot`: the Grafolean SNMP bot, and a standalone SNMP
//! exporter.
//!
//! With `BACKEND_URL` and `BOT_TOKEN` (or `BOT_TOKEN_FROM_FILE`) it is a
//! drop-in replacement for the Python SNMP bot; without them it polls the
//! entities of `--config`, or the local agent (127.0.0.1:161, community
//! `public`) every 60 s, and serves the values on
//! `http://127.0.0.1:9743/metrics`. See `--help`.

use std::path::PathBuf;
use std::process::ExitCode;

/// jemalloc returns freed memory to the system, where glibc's allocator
/// keeps the peak of parsing a large standalone file for good.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read when it starts (`_RJEM_MALLOC_CONF` in the
/// environment still overrides them): freed pages go back to the system at
/// once, by a background thread, and two arenas instead of eight (four per
/// core). A refresh through Grafolean builds every entity's config and jobs
/// beside the old ones; with jemalloc's defaults the pages they leave behind
/// stayed in RSS. At 10,000 devices through the fake backend, RSS median
/// 179 MB with the ping bot's options, 153 MB with these (`fleet --backend`,
/// BENCHMARKS.md), at the same CPU.
#[allow(non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: &[u8; 67] =
    b"background_thread:true,dirty_decay_ms:0,muzzy_decay_ms:0,narenas:2\0";

use clap::Parser;
use grafolean_collector::Settings;
use grafolean_snmp_bot::SnmpCollector;

/// The SNMP bot's own settings, beside the SDK's.
#[derive(Debug, Parser)]
#[command(name = "grafolean-snmp-bot", version, about)]
struct Cli {
    /// A file where the counters' last readings are kept across restarts, so
    /// that the first poll after a restart already gives rates. Written every
    /// 60 s and at a clean shutdown (atomically); by default counters are
    /// kept in memory only.
    #[arg(long, env = "STATE_FILE", value_name = "FILE", help_heading = "SNMP")]
    state_file: Option<PathBuf>,

    #[command(flatten)]
    sdk: Settings,
}

#[tokio::main]
async fn main() -> ExitCode {
    // As Settings::parse_for does: a missing .env file is normal.
    let _ = dotenvy::dotenv();
    let cli = Cli::parse();
    // With a backend, the bot gives the collector the runtime's API client
    // for the interfaces job.
    let mut collector = SnmpCollector::new(None);
    if let Some(path) = cli.state_file {
        collector = collector.with_state_file(path);
    }
    grafolean_snmp_bot::bot(collector).main_with(cli.sdk).await
}
