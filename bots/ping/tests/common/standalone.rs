//! The `grafolean-ping-bot` binary run standalone with a TOML config, as an
//! operator runs it: a [`BotProcess`] (its admin server on a free loopback
//! port, its log read line by line on a thread) that owns the directory of
//! its config file.

#![allow(dead_code)]

use std::ops::{Deref, DerefMut};
use std::path::PathBuf;

use grafolean_collector::testing::process::{BotCommand, BotProcess, TestDir};

/// A running standalone bot (a [`BotProcess`]). Killed when dropped.
#[derive(Debug)]
pub struct Standalone {
    bot: BotProcess,
    dir: TestDir,
}

impl Standalone {
    /// Writes `toml` to a fresh directory and starts the bot on it.
    pub fn start(name: &str, toml: &str) -> Self {
        Self::start_refreshing(name, toml, 120)
    }

    /// [`Standalone::start`], re-reading the file every `refresh_secs`.
    pub fn start_refreshing(name: &str, toml: &str, refresh_secs: u64) -> Self {
        let dir = TestDir::new(&format!("ping-{name}"));
        let config = dir.join("targets.toml");
        std::fs::write(&config, toml).unwrap();
        let mut command = BotCommand::new(super::BIN);
        command
            .arg("--config")
            .arg(&config)
            .env("JOBS_REFRESH_INTERVAL", refresh_secs.to_string());
        Self {
            bot: command.start(),
            dir,
        }
    }

    /// The config file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("targets.toml")
    }
}

impl Deref for Standalone {
    type Target = BotProcess;

    fn deref(&self) -> &BotProcess {
        &self.bot
    }
}

impl DerefMut for Standalone {
    fn deref_mut(&mut self) -> &mut BotProcess {
        &mut self.bot
    }
}
