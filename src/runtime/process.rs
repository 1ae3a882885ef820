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
///
/// The events of the `quiet` targets are not written unless the log level
/// names them; their warnings and errors are counted in `metrics` instead.
pub(crate) fn init_logging(
    settings: &Settings,
    quiet: &[&'static str],
    metrics: &Metrics,
) -> Result<(), String> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;

    let mut directives = settings.log_level.clone();
    for target in quiet {
        if !settings.log_level.contains(target) {
            directives.push_str(&format!(",{target}=off"));
        }
    }
    let filter = tracing_subscriber::EnvFilter::try_new(&directives).map_err(|e| {
        format!(
            "invalid setting --log-level (RUST_LOG) {:?}: {e}",
            settings.log_level
        )
    })?;
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let output = match settings.log_format {
        // A value from a device or the backend cannot forge a line, nor
        // (unless colour is on) reach the terminal with an escape code.
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(colour)
            .with_writer(move || EscapingWriter::new(std::io::stderr(), colour))
            .boxed(),
        // JSON escapes by construction.
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .boxed(),
    };
    // A `Targets` filter, not a closure: its interest in each callsite is
    // known once, so the dependency's debug and trace events stay disabled
    // at their callsites (a closure made every one of them a runtime check:
    // the SNMP bot at 10,000 devices took 7.1 % of a core, 5.8 % with this).
    let counter = DependencyEvents::register(metrics, quiet).map(|c| {
        let targets = c
            .targets
            .iter()
            .fold(tracing_subscriber::filter::Targets::new(), |t, target| {
                t.with_target(*target, tracing::Level::WARN)
            });
        c.with_filter(targets)
    });
    tracing_subscriber::registry()
        .with(output.with_filter(filter))
        .with(counter)
        .try_init()
        .map_err(|e| format!("could not set up logging: {e}"))
}

/// Labels of `grafolean_bot_dependency_log_events_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct DependencyLabels {
    target: &'static str,
    level: &'static str,
}

/// Counts the warnings and errors of the quiet targets.
struct DependencyEvents {
    targets: Vec<&'static str>,
    events: prometheus_client::metrics::family::Family<
        DependencyLabels,
        prometheus_client::metrics::counter::Counter,
    >,
}

impl DependencyEvents {
    fn register(metrics: &Metrics, targets: &[&'static str]) -> Option<Self> {
        if targets.is_empty() {
            return None;
        }
        let events = prometheus_client::metrics::family::Family::default();
        metrics
            .registry_mut()
            .sub_registry_with_prefix(crate::metrics::PREFIX)
            .register(
            "dependency_log_events",
            "Warnings and errors a dependency logged, kept out of the log by default (RUST_LOG=<target>=warn shows them)",
            events.clone(),
        );
        for target in targets {
            for level in ["warn", "error"] {
                // Present at 0, so that a rate works from the start.
                let _ = events.get_or_create(&DependencyLabels { target, level });
            }
        }
        Some(Self {
            targets: targets.to_vec(),
            events,
        })
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for DependencyEvents {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let metadata = event.metadata();
        let Some(target) = self.targets.iter().find(|t| is_under(metadata.target(), t)) else {
            return;
        };
        let level = if *metadata.level() == tracing::Level::ERROR {
            "error"
        } else {
            "warn"
        };
        self.events
            .get_or_create(&DependencyLabels { target, level })
            .inc();
    }
}

/// Whether `target` is `module` or inside it.
fn is_under(target: &str, module: &str) -> bool {
    target
        .strip_prefix(module)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
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
