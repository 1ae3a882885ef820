//! `grafolean-ping-bot`: the Grafolean ping bot, and a standalone ping exporter.
//!
//! With `BACKEND_URL` and `BOT_TOKEN` (or `BOT_TOKEN_FROM_FILE`) it is a drop-in
//! replacement for the Python ping bot; without them it pings the entities of
//! `--config`, or 127.0.0.1 and ::1 every 5 s, and serves the results on
//! `http://127.0.0.1:9742/metrics`. See `--help`.

use std::process::ExitCode;

/// jemalloc returns freed memory to the system, where glibc's allocator
/// keeps the peak of parsing a large standalone file for good.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read when it starts (`_RJEM_MALLOC_CONF` in the
/// environment still overrides them): freed pages go back to the system
/// after about 1 s instead of 10 s, and a background thread does it, so
/// that memory freed by a thread that then sleeps (the blocking thread that
/// rendered `/metrics`) or a large parse does not linger in RSS. At 10,000
/// ping targets, RSS read every second: 44 MB, 48-49 MB for a second after
/// a scrape, where without these options it stayed at 46-70 MB for 10 s
/// after each scrape.
#[allow(non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: &[u8; 43] = b"background_thread:true,dirty_decay_ms:1000\0";

use grafolean_ping_bot::PingerOptions;

#[tokio::main]
async fn main() -> ExitCode {
    // The settings are read first (`--help` needs no privileges); the ICMP
    // sockets are opened when the bot is built, after they validate.
    grafolean_ping_bot::bot(PingerOptions::default())
        .main()
        .await
}
