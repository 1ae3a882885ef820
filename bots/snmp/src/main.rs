//! `grafolean-snmp-bot`: the Grafolean SNMP bot, and a standalone SNMP
//! exporter.
//!
//! With `BACKEND_URL` and `BOT_TOKEN` (or `BOT_TOKEN_FROM_FILE`) it is a
//! drop-in replacement for the Python SNMP bot; without them it polls the
//! entities of `--config`, or the local agent (127.0.0.1:161, community
//! `public`) every 60 s, and serves the values on
//! `http://127.0.0.1:9743/metrics`. See `--help`.

use std::process::ExitCode;

/// jemalloc returns freed memory to the system after its decay time (10 s),
/// where glibc's allocator keeps the peak of parsing a large standalone file.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use grafolean_collector::Settings;
use grafolean_snmp_bot::SnmpCollector;

#[tokio::main]
async fn main() -> ExitCode {
    let settings = Settings::parse_for(
        "grafolean-snmp-bot",
        Some(env!("CARGO_PKG_VERSION")),
        Some(env!("CARGO_PKG_DESCRIPTION")),
    );
    // The interfaces job writes entities through its own API client; an
    // invalid setting is reported by the runtime below.
    let api = settings.api_client().ok().flatten();
    grafolean_snmp_bot::bot(SnmpCollector::new(api))
        .main_with(settings)
        .await
}
