//! The `grafolean-snmp-bot` binary run standalone with a TOML config, as an
//! operator runs it: a [`BotProcess`] from the SDK's kit (its admin server on
//! a free loopback port, its log read line by line on a thread, stopped with
//! SIGTERM). The config's directory is the test's own (a `TestDir`), so that
//! it outlives the process and a second process can use the first one's
//! files.
//!
//! Included with `#[path]` by the tests that run the binary only: the
//! benchmark, which shares `common/mod.rs`, has no `CARGO_BIN_EXE_*`.

#![allow(dead_code)]

use std::path::Path;

use grafolean_collector::testing::process::{BotCommand, BotProcess};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_grafolean-snmp-bot");

/// Starts the bot on the TOML file `config`, re-reading it every
/// `refresh_secs`, with `args` added to the command line and no
/// `STATE_FILE` from this process's environment.
pub fn start(config: &Path, refresh_secs: u64, args: &[&str]) -> BotProcess {
    let mut command = BotCommand::new(BIN);
    command
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("STATE_FILE")
        .env("JOBS_REFRESH_INTERVAL", refresh_secs.to_string());
    command.start()
}
