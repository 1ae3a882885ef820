//! What a binary owns: logging and the process's signals. Behind the default
//! `runtime` feature, so that a library user who drives the scheduler and the
//! sender alone does not get a global subscriber or a `process::exit`.

use std::io::IsTerminal;

use tracing::{error, info};

use crate::settings::{LogFormat, Settings};

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
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    let result = match settings.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    result.map_err(|e| format!("could not set up logging: {e}"))
}

/// Completes on the first SIGINT or SIGTERM; a second one exits the process at once.
pub(crate) async fn shutdown_signal() {
    wait_for_signal().await;
    info!("signal received; press Ctrl-C again (or send SIGTERM) to exit at once");
    tokio::spawn(async {
        wait_for_signal().await;
        error!("second signal: exiting now");
        std::process::exit(130);
    });
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
