//! `grafolean-netflow-bot`: the Grafolean NetFlow bot, and a standalone
//! NetFlow exporter for Prometheus.
//!
//! With `BACKEND_URL` and `BOT_TOKEN` (or `BOT_TOKEN_FROM_FILE`) it is a
//! drop-in replacement for the Python NetFlow bot, without its database;
//! without them it receives on `127.0.0.1:2055` and serves what it counts
//! on `http://127.0.0.1:9744/metrics`. See `--help`.

use std::process::ExitCode;

/// jemalloc returns freed memory to the system (the windows' maps come and
/// go every minute).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options (as the other bots'): freed pages go back to the
/// system after about 1 s, by a background thread, so that the windows'
/// maps, rebuilt every minute, do not linger in RSS.
#[allow(non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: &[u8; 43] = b"background_thread:true,dirty_decay_ms:1000\0";

use clap::Parser;
use grafolean_collector::Settings;
use grafolean_netflow_bot::NetflowSettings;

/// The NetFlow bot's settings and the SDK's.
#[derive(Debug, Parser)]
#[command(name = "grafolean-netflow-bot", version, about)]
struct Cli {
    #[command(flatten)]
    netflow: NetflowSettings,

    #[command(flatten)]
    sdk: Settings,
}

#[tokio::main]
async fn main() -> ExitCode {
    // As Settings::parse_for does: a missing .env file is normal.
    let _ = dotenvy::dotenv();
    let cli = Cli::parse();
    grafolean_netflow_bot::bot(cli.netflow)
        .main_with(cli.sdk)
        .await
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_flags_are_well_formed() {
        super::Cli::command().debug_assert();
    }
}
