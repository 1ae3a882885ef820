//! What a binary owns: logging and the process's signals. Behind the default
//! `runtime` feature, so that a library user who drives the scheduler and the
//! sender alone does not get a global subscriber or a `process::exit`.

use std::future::Future;
use std::io::IsTerminal;

use crate::lifecycle::Reloads;
use tracing::{error, info, warn};

use crate::metrics::Metrics;

use crate::settings::{LogFormat, Settings};
use crate::text::EscapingWriter;

/// Sets up logging from `--log-level` and `--log-format`, on stderr. Text logs
/// are coloured only when stderr is a terminal and `NO_COLOR` is not set
/// (<https://no-color.org>), so a log redirected to a file or to journald
/// holds no escape codes.
pub(crate) fn init_logging(settings: &Settings) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_new(&settings.log_level).map_err(|e| {
        format!(
            "invalid setting --log-level (RUST_LOG) {:?}: {e}",
            settings.log_level
        )
    })?;
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour);
    let result = match settings.log_format {
        // A value from a device or the backend cannot forge a line, nor
        // (unless colour is on) reach the terminal with an escape code.
        LogFormat::Text => builder
            .with_writer(move || EscapingWriter::new(std::io::stderr(), colour))
            .try_init(),
        // JSON escapes by construction.
        LogFormat::Json => builder.with_writer(std::io::stderr).json().try_init(),
    };
    result.map_err(|e| format!("could not set up logging: {e}"))
}

/// The signals a daemon is expected to handle:
///
/// - **SIGHUP** reloads: a refresh now (the standalone TOML is re-read), logged.
/// - The first **SIGINT** or **SIGTERM** completes the returned future: the
///   bot shuts down gracefully.
/// - A second one exits at once with 128 + the signal's number (130, 143),
///   saying how many values were still unsent.
pub(crate) fn signals(reload: Reloads, metrics: Metrics) -> impl Future<Output = ()> + Send {
    spawn_reload(reload);
    async move {
        let first = wait_for_stop().await;
        info!(
            signal = first.name(),
            "signal received; shutting down (send SIGINT or SIGTERM again to exit at once)"
        );
        tokio::spawn(async move {
            let second = wait_for_stop().await;
            let unsent = metrics.values_unsent.get().max(0);
            error!(
                signal = second.name(),
                unsent_values = unsent,
                status = 128 + second.number(),
                "second signal: exiting now; {unsent} values were not sent"
            );
            std::process::exit(128 + second.number());
        });
    }
}

/// A signal that stops the bot.
#[derive(Clone, Copy, Debug)]
enum Stop {
    Interrupt,
    Terminate,
}

impl Stop {
    fn name(self) -> &'static str {
        match self {
            Self::Interrupt => "SIGINT",
            Self::Terminate => "SIGTERM",
        }
    }

    /// The signal's number (the same on every Linux architecture).
    fn number(self) -> i32 {
        match self {
            Self::Interrupt => 2,
            Self::Terminate => 15,
        }
    }
}

#[cfg(unix)]
fn spawn_reload(reload: Reloads) {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::hangup()) {
        Ok(mut hup) => {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    info!("SIGHUP received: refreshing the job configs now");
                    reload.ask();
                }
            });
        }
        Err(e) => warn!(error = %e, "cannot handle SIGHUP; it will not reload"),
    }
}

#[cfg(not(unix))]
fn spawn_reload(_reload: Reloads) {}

async fn wait_for_stop() -> Stop {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => Stop::Interrupt,
                    _ = term.recv() => Stop::Terminate,
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                Stop::Interrupt
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        Stop::Interrupt
    }
}
