//! The `grafolean-ping-bot` binary against a fake Grafolean that takes the
//! values and never answers: a graceful shutdown has to wait for the drain
//! deadline (10 s), so a second signal, or the deadline itself, is what
//! ends it.

#![allow(dead_code)]

use std::process::ExitStatus;
use std::time::{Duration, Instant};

use grafolean_collector::testing::process::{BotCommand, BotProcess};
use grafolean_collector::testing::{BOT_TOKEN, ENTITY_ID, FakeGrafolean, Fault};

/// A running bot whose values hang in flight. Killed when dropped.
#[derive(Debug)]
pub struct Hanging {
    /// The fake backend (kept alive while the bot runs).
    pub fake: FakeGrafolean,
    bot: BotProcess,
}

impl Hanging {
    /// Starts the fake (the fixture's ping entity every 3 s, `/values`
    /// hanging for an hour) and the bot, and returns once the bot sent its
    /// first values.
    pub async fn start() -> Self {
        let fake = FakeGrafolean::with_fixture_data().await;
        assert!(fake.update_entity(ENTITY_ID, |e| {
            e.protocols.get_mut("ping").unwrap().sensors[0].interval = Some(3);
        }));
        fake.inject(Fault::delay(Duration::from_secs(3600)).path_contains("/values"));
        let mut command = BotCommand::new(super::BIN);
        command
            .env("BACKEND_URL", fake.url())
            .env("BOT_TOKEN", BOT_TOKEN);
        let bot = Self {
            fake,
            bot: command.start(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !bot
            .fake
            .requests()
            .iter()
            .any(|r| r.path.contains("/values"))
        {
            assert!(Instant::now() < deadline, "no value was sent");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bot
    }

    /// Sends `sig` (`-TERM`, `-INT`) to the bot.
    pub fn signal(&self, sig: &str) {
        assert!(self.bot.signal(sig));
    }

    /// Waits for the bot to exit, at most `within`; returns its status and
    /// its whole log.
    pub async fn exit_within(&mut self, within: Duration) -> (ExitStatus, String) {
        let status = self.bot.exit_within(within).await;
        let mut log = self.bot.log().join("\n");
        log.push('\n');
        (status, log)
    }
}

/// The number just before `marker` in `log` (as in "12 values were not
/// sent"), or a panic showing the log.
pub fn count_before(log: &str, marker: &str) -> u64 {
    log.split(marker)
        .next()
        .filter(|head| head.len() < log.len())
        .and_then(|head| head.rsplit(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count before {marker:?} in the log:\n{log}"))
}
