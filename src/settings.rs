//! A bot's settings: command-line flags with environment fallbacks.
//!
//! The environment variables are the Python bots' (`BACKEND_URL`, `BOT_TOKEN`,
//! `BOT_TOKEN_FROM_FILE`, `JOBS_REFRESH_INTERVAL`), so a Rust bot is a drop-in
//! replacement. A `.env` file in the working directory is read first, as the
//! Python bots do. [`Settings::validate`] checks everything before anything
//! starts, and every error names the setting and the reason.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[cfg(feature = "runtime")]
use clap::{CommandFactory, Parser, ValueEnum};

use crate::token::{BotToken, TokenError};

pub(crate) mod error;
pub use error::SettingsError;

/// The default seconds between config refreshes, as in the Python bots.
pub(crate) const DEFAULT_REFRESH_SECONDS: u64 = 120;
/// The default of `--max-response-mib`: the API client's default limit on a
/// config answer (64 MiB), in MiB.
pub(crate) const DEFAULT_MAX_RESPONSE_MIB: u32 =
    (crate::api::DEFAULT_MAX_RESPONSE_BYTES >> 20) as u32;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "runtime", derive(ValueEnum))]
#[cfg_attr(not(feature = "runtime"), allow(dead_code))] // read by `Bot::main`
pub(crate) enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// How `--once` prints its values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "runtime", derive(ValueEnum))]
#[cfg_attr(not(feature = "runtime"), allow(dead_code))] // read by `Bot::main`
pub(crate) enum OnceFormat {
    /// An aligned table: job, path, value.
    #[default]
    Table,
    /// The Prometheus exposition text.
    Prometheus,
}

/// Every setting of a bot: the flags and environment variables that the README
/// lists. A bot's `main` gets them from [`Bot::main`](crate::runtime::Bot::main), from
/// [`Settings::parse_for`], or flattened into its own clap struct.
///
/// ```
/// use clap::Parser;
/// use grafolean_collector::Settings;
/// let s = Settings::try_parse_from(["bot", "--once", "--config", "jobs.toml"]).unwrap();
/// assert!(format!("{s:?}").contains("once: true"));
/// ```
#[derive(Clone, Debug)]
#[cfg_attr(feature = "runtime", derive(Parser))]
#[cfg_attr(not(feature = "runtime"), allow(dead_code))] // logging and --once are `Bot::main`'s
pub struct Settings {
    /// The Grafolean backend's API URL, such as http://grafolean/api.
    /// Without it, the bot runs standalone from --config (or its built-in default).
    #[cfg_attr(
        feature = "runtime",
        arg(long, env = "BACKEND_URL", help_heading = "Grafolean")
    )]
    pub(crate) backend_url: Option<String>,

    /// A file holding the bot token (surrounding whitespace is stripped).
    /// The token can also be given in the BOT_TOKEN environment variable.
    #[cfg_attr(
        feature = "runtime",
        arg(long, env = "BOT_TOKEN_FROM_FILE", help_heading = "Grafolean")
    )]
    pub(crate) bot_token_file: Option<PathBuf>,

    /// The bot token. Only read from the environment, never from a flag, so
    /// that it does not show in the process list.
    #[cfg_attr(feature = "runtime", arg(skip = std::env::var("BOT_TOKEN").ok().map(RawToken)))]
    pub(crate) bot_token: Option<RawToken>,

    /// Seconds between job config refreshes.
    #[cfg_attr(feature = "runtime", arg(long, env = "JOBS_REFRESH_INTERVAL", default_value_t = DEFAULT_REFRESH_SECONDS, help_heading = "Grafolean"))]
    pub(crate) jobs_refresh_interval: u64,

    /// The largest config answer read from the backend, in MiB: an account's
    /// whole entity list must fit. A longer answer fails the refresh (the
    /// previous jobs stay), so a broken backend cannot take the host's memory.
    #[cfg_attr(feature = "runtime", arg(long, env = "MAX_RESPONSE_MIB", default_value_t = DEFAULT_MAX_RESPONSE_MIB,
        value_parser = clap::value_parser!(u32).range(1..=4096), help_heading = "Grafolean"))]
    pub max_response_mib: u32,

    /// A directory where unsent values are kept across restarts while the
    /// backend is down (by default they are kept in memory only).
    #[cfg_attr(feature = "runtime", arg(long, help_heading = "Grafolean"))]
    pub(crate) spool_dir: Option<PathBuf>,

    /// This replica's share of the entities, when one bot token runs on
    /// several replicas: i/n (replica i, from 0, of n), or an ordinal such as
    /// 3, bot-3 or bot@3 (a name ending in the index) together with --shard-count.
    #[cfg_attr(
        feature = "runtime",
        arg(long, env = "SHARD", value_name = "i/n", help_heading = "Sharding")
    )]
    pub(crate) shard: Option<String>,

    /// The number of replicas, when --shard gives only this replica's ordinal.
    #[cfg_attr(
        feature = "runtime",
        arg(long, env = "SHARD_COUNT", value_name = "N", help_heading = "Sharding")
    )]
    pub(crate) shard_count: Option<String>,

    /// A TOML file with the entities to monitor, for running without Grafolean.
    #[cfg_attr(
        feature = "runtime",
        arg(long, value_name = "FILE", help_heading = "Standalone")
    )]
    pub(crate) config: Option<PathBuf>,

    /// The admin server's address (/metrics, /live, /ready and the status page).
    /// By default the bot's own port on 127.0.0.1.
    #[cfg_attr(
        feature = "runtime",
        arg(long, value_name = "ADDR", help_heading = "Admin server")
    )]
    pub(crate) listen: Option<SocketAddr>,

    /// Do not export the collected values on /metrics (only the bot's own metrics).
    #[cfg_attr(feature = "runtime", arg(long, help_heading = "Admin server"))]
    pub(crate) no_export_values: bool,

    /// Take `POST /-/reload` (as SIGHUP: the configs are loaded again now),
    /// as Prometheus' flag of the same name. Off by default: 403.
    #[cfg_attr(
        feature = "runtime",
        arg(
            long = "web.enable-lifecycle",
            env = "WEB_ENABLE_LIFECYCLE",
            help_heading = "Admin server"
        )
    )]
    pub(crate) web_enable_lifecycle: bool,

    /// A YAML file in exporter-toolkit's format that turns on TLS (with
    /// client certificates if wanted), basic auth (bcrypt) and response
    /// headers for the admin server, as --web.config.file does for
    /// node_exporter. It is read again when it changes.
    #[cfg_attr(
        feature = "runtime",
        arg(
            long = "web.config.file",
            env = "WEB_CONFIG_FILE",
            value_name = "FILE",
            help_heading = "Admin server"
        )
    )]
    pub(crate) web_config_file: Option<PathBuf>,

    /// The log filter, such as info or grafolean_collector=debug.
    #[cfg_attr(
        feature = "runtime",
        arg(
            long,
            env = "RUST_LOG",
            default_value = "info",
            help_heading = "Logging"
        )
    )]
    pub(crate) log_level: String,

    /// The log format.
    #[cfg_attr(feature = "runtime", arg(long, value_enum, default_value_t = LogFormat::Text, help_heading = "Logging"))]
    pub(crate) log_format: LogFormat,

    /// Fetch the configs, run every job once now, print the values and exit;
    /// exits non-zero if any job failed. Sends nothing unless --send is given.
    #[cfg_attr(feature = "runtime", arg(long, help_heading = "One-shot mode"))]
    pub(crate) once: bool,

    /// With --once: also send the values to Grafolean.
    #[cfg_attr(
        feature = "runtime",
        arg(long, requires = "once", help_heading = "One-shot mode")
    )]
    pub(crate) send: bool,

    /// With --once: how to print the values.
    #[cfg_attr(feature = "runtime", arg(long, value_enum, default_value_t = OnceFormat::Table, help_heading = "One-shot mode"))]
    pub(crate) format: OnceFormat,
}

/// A token as it was given, before it is checked. Its `Debug` output is
/// `<redacted>`, so that printing the settings never shows it.
#[derive(Clone)]
pub(crate) struct RawToken(pub(crate) String);

impl std::fmt::Debug for RawToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where a validated bot gets its job configs.
#[derive(Clone, Debug)]
pub(crate) enum Source {
    /// The Grafolean backend.
    Grafolean {
        /// The API URL.
        backend_url: String,
        /// The bot token.
        token: BotToken,
    },
    /// A standalone TOML file.
    File(PathBuf),
    /// The bot's built-in default (no backend, no file).
    Default,
}

/// The settings of a bot that runs standalone on its built-in default config,
/// with every default the README lists, and nothing read from the environment
/// or the command line: for a library user without the `runtime` feature (no
/// clap), who sets what differs with the `with_*` methods.
///
/// ```
/// use grafolean_collector::Settings;
/// let s = Settings::default()
///     .with_backend_url("http://grafolean/api")
///     .with_bot_token("2c3f1e7a-0000-4000-8000-000000000001")
///     .with_jobs_refresh_interval(60);
/// assert!(format!("{s:?}").contains("jobs_refresh_interval: 60"));
/// ```
impl Default for Settings {
    fn default() -> Self {
        Self {
            backend_url: None,
            bot_token_file: None,
            bot_token: None,
            jobs_refresh_interval: DEFAULT_REFRESH_SECONDS,
            max_response_mib: DEFAULT_MAX_RESPONSE_MIB,
            spool_dir: None,
            shard: None,
            shard_count: None,
            config: None,
            listen: None,
            no_export_values: false,
            web_enable_lifecycle: false,
            web_config_file: None,
            log_level: "info".into(),
            log_format: LogFormat::Text,
            once: false,
            send: false,
            format: OnceFormat::Table,
        }
    }
}

impl Settings {
    /// The same settings with the backend `url` (`--backend-url`, `BACKEND_URL`).
    pub fn with_backend_url(mut self, url: impl Into<String>) -> Self {
        self.backend_url = Some(url.into());
        self
    }

    /// The same settings with the bot token read from `file`
    /// (`--bot-token-file`, `BOT_TOKEN_FROM_FILE`).
    pub fn with_bot_token_file(mut self, file: impl Into<PathBuf>) -> Self {
        self.bot_token_file = Some(file.into());
        self
    }

    /// The same settings with `seconds` between config refreshes
    /// (`--jobs-refresh-interval`, `JOBS_REFRESH_INTERVAL`).
    pub fn with_jobs_refresh_interval(mut self, seconds: u64) -> Self {
        self.jobs_refresh_interval = seconds;
        self
    }

    /// The same settings with a standalone TOML config `file` (`--config`).
    pub fn with_config(mut self, file: impl Into<PathBuf>) -> Self {
        self.config = Some(file.into());
        self
    }

    /// The same settings with the admin server on `addr` (`--listen`).
    pub fn with_listen(mut self, addr: SocketAddr) -> Self {
        self.listen = Some(addr);
        self
    }

    /// The same settings with the admin server's TLS and basic auth from
    /// `file` (`--web.config.file`, `WEB_CONFIG_FILE`), in
    /// [exporter-toolkit's format](https://github.com/prometheus/exporter-toolkit/blob/master/docs/web-configuration.md).
    pub fn with_web_config_file(mut self, file: impl Into<PathBuf>) -> Self {
        self.web_config_file = Some(file.into());
        self
    }

    /// The same settings with unsent values kept in `dir` (`--spool-dir`).
    pub fn with_spool_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.spool_dir = Some(dir.into());
        self
    }

    /// The same settings with this replica's share, `i/n` or an ordinal
    /// (`--shard`, `SHARD`; checked by [`Bot::run`](crate::runtime::Bot::run)).
    pub fn with_shard(mut self, shard: impl Into<String>) -> Self {
        self.shard = Some(shard.into());
        self
    }

    /// The same settings with `count` replicas, for a [`with_shard`](Self::with_shard)
    /// that gives only this replica's ordinal (`--shard-count`, `SHARD_COUNT`).
    pub fn with_shard_count(mut self, count: u32) -> Self {
        self.shard_count = Some(count.to_string());
        self
    }

    /// Parses the command line, after reading `.env` from the working
    /// directory. `--help` names the binary and nothing else; a bot's `main`
    /// that parses before it builds its [`Bot`](crate::runtime::Bot) uses
    /// [`Settings::parse_for`] to show its own name, version and description.
    #[cfg(feature = "runtime")]
    pub fn from_env_and_args() -> Self {
        Self::parse_for_command(Self::command().about(None::<&str>).long_about(None::<&str>))
    }

    /// Parses the command line, after reading `.env` from the working
    /// directory, for the bot `name`: `--help` and `--version` show its name,
    /// its version (by default none) and what it does (`about`).
    ///
    /// A bot with flags of its own puts `Settings` inside its own clap struct
    /// instead, with `#[command(flatten)]` (see the README).
    #[cfg(feature = "runtime")]
    pub fn parse_for(name: &str, version: Option<&str>, about: Option<&str>) -> Self {
        // Not the struct's rustdoc, which clap would show as the description.
        let mut command = Self::command()
            .name(name.to_string())
            .about(None::<&str>)
            .long_about(None::<&str>);
        if let Some(version) = version {
            command = command.version(version.to_string());
        }
        if let Some(about) = about {
            command = command.about(about.to_string());
        }
        Self::parse_for_command(command)
    }

    /// [`Settings::parse_for`], with the bot's default admin address in the
    /// help of `--listen`.
    #[cfg(feature = "runtime")]
    pub(crate) fn parse_for_bot(
        name: &str,
        version: &str,
        about: Option<&str>,
        default_listen: Option<std::net::SocketAddr>,
    ) -> Self {
        let mut command = Self::command()
            .name(name.to_string())
            .about(None::<&str>)
            .long_about(None::<&str>)
            .version(version.to_string());
        if let Some(about) = about {
            command = command.about(about.to_string());
        }
        if let Some(addr) = default_listen {
            command = command.mut_arg("listen", |arg| {
                arg.help(format!(
                    "The admin server's address (/metrics, /live, /ready and the status page) [default: {addr}]"
                ))
            });
        }
        Self::parse_for_command(command)
    }

    #[cfg(feature = "runtime")]
    fn parse_for_command(command: clap::Command) -> Self {
        use clap::FromArgMatches;
        // A missing .env file is normal.
        let _ = dotenvy::dotenv();
        let matches = command.get_matches();
        Self::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    }

    /// The same settings with the bot token `token`, as if `BOT_TOKEN` held
    /// it (tests use this; a deployed bot reads the environment).
    ///
    /// ```
    /// use clap::Parser;
    /// use grafolean_collector::Settings;
    /// let s = Settings::try_parse_from(["bot", "--backend-url", "http://127.0.0.1:1/api"])
    ///     .unwrap()
    ///     .with_bot_token("2c3f1e7a-0000-4000-8000-000000000001");
    /// assert!(!format!("{s:?}").contains("2c3f1e7a"));
    /// ```
    pub fn with_bot_token(mut self, token: impl Into<String>) -> Self {
        self.bot_token = Some(RawToken(token.into()));
        self.bot_token_file = None;
        self
    }

    /// The limit on a config answer's body, in bytes (`--max-response-mib`).
    pub(crate) fn max_response_bytes(&self) -> usize {
        (self.max_response_mib as usize) << 20
    }

    /// The interval between config refreshes.
    pub(crate) fn refresh_interval(&self) -> Duration {
        Duration::from_secs(self.jobs_refresh_interval)
    }

    /// This replica's shard (`--shard`, `--shard-count`), if any.
    pub(crate) fn shard(&self) -> Result<Option<crate::shard::Shard>, SettingsError> {
        crate::shard::parse(self.shard.as_deref(), self.shard_count.as_deref())
            .map_err(|(setting, reason)| SettingsError { setting, reason })
    }

    /// Checks the settings and decides where configs come from.
    pub(crate) fn validate(&self) -> Result<Source, SettingsError> {
        self.shard()?;
        if self.jobs_refresh_interval == 0 {
            return Err(SettingsError {
                setting: "--jobs-refresh-interval (JOBS_REFRESH_INTERVAL)",
                reason: "must be at least 1 second".into(),
            });
        }
        // clap checks this range too; settings built without clap do not
        // pass through it.
        if !(1..=4096).contains(&self.max_response_mib) {
            return Err(SettingsError {
                setting: "--max-response-mib (MAX_RESPONSE_MIB)",
                reason: format!("{} is not in 1..=4096", self.max_response_mib),
            });
        }
        if let Some(dir) = &self.spool_dir {
            if dir.exists() && !dir.is_dir() {
                return Err(SettingsError {
                    setting: "--spool-dir",
                    reason: format!("{} exists and is not a directory", dir.display()),
                });
            }
        }
        let backend = self
            .backend_url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty());
        if let Some(url) = backend {
            if self.config.is_some() {
                return Err(SettingsError {
                    setting: "--config",
                    reason: "give either a backend (BACKEND_URL) or a standalone --config file, not both".into(),
                });
            }
            let parsed = reqwest::Url::parse(url).map_err(|e| SettingsError {
                setting: "--backend-url (BACKEND_URL)",
                reason: format!("{url:?} is not a URL: {e}"),
            })?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(SettingsError {
                    setting: "--backend-url (BACKEND_URL)",
                    reason: format!("{url:?} must start with http:// or https://"),
                });
            }
            let token = self.token()?;
            return Ok(Source::Grafolean {
                backend_url: url.to_string(),
                token,
            });
        }
        if self.send {
            return Err(SettingsError {
                setting: "--send",
                reason: "needs a backend: set BACKEND_URL".into(),
            });
        }
        match &self.config {
            Some(path) if !path.is_file() => Err(SettingsError {
                setting: "--config",
                reason: format!("{} is not a readable file", path.display()),
            }),
            Some(path) => Ok(Source::File(path.clone())),
            None => Ok(Source::Default),
        }
    }

    /// The token, checked where it enters: it must look like the UUIDs
    /// Grafolean issues, and an error names where it came from, never the
    /// value.
    fn token(&self) -> Result<BotToken, SettingsError> {
        let (setting, token) = match (&self.bot_token_file, &self.bot_token) {
            (Some(file), _) => (
                "--bot-token-file (BOT_TOKEN_FROM_FILE)",
                BotToken::from_file(file),
            ),
            (None, Some(token)) => ("BOT_TOKEN", BotToken::new(&token.0)),
            (None, None) => (
                "BOT_TOKEN / --bot-token-file (BOT_TOKEN_FROM_FILE)",
                Err(TokenError::Empty),
            ),
        };
        token
            .and_then(|t| t.check_uuid_shape().map(|()| t))
            .map_err(|e| {
                // A file's errors name the file (those of reading it already do).
                let reason = match (&self.bot_token_file, &e) {
                    (Some(file), TokenError::Empty | TokenError::Invalid | TokenError::NotUuid) => {
                        format!("{}: {e}", file.display())
                    }
                    _ => e.to_string(),
                };
                SettingsError { setting, reason }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(args: &[&str]) -> Settings {
        let mut s =
            Settings::try_parse_from(std::iter::once("bot").chain(args.iter().copied())).unwrap();
        s.bot_token = None;
        s
    }

    #[test]
    fn invalid_settings_name_the_setting() {
        let err = settings(&["--jobs-refresh-interval", "0"])
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("JOBS_REFRESH_INTERVAL"), "{err}");
        let err = settings(&["--backend-url", "ftp://x"])
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("BACKEND_URL"), "{err}");
        let err = settings(&["--config", "/nonexistent.toml"])
            .validate()
            .unwrap_err();
        assert_eq!(err.setting, "--config");
        assert!(
            Settings::try_parse_from(["bot", "--send"]).is_err(),
            "--send needs --once"
        );
    }

    #[test]
    fn token_comes_from_env_or_file() {
        let dir = std::env::temp_dir().join(format!("gc-token-{}", std::process::id()));
        const UUID: &str = "3F6C1A52-8d4e-4b7a-9e21-5c0d7f8a9b13";
        std::fs::write(&dir, format!("{UUID}\n")).unwrap();
        let mut s = settings(&["--backend-url", "http://127.0.0.1:1/api"]);
        s.bot_token_file = Some(dir.clone());
        match s.validate().unwrap() {
            Source::Grafolean { token, .. } => assert_eq!(token.expose(), UUID),
            other => panic!("{other:?}"),
        }
        s.bot_token_file = None;
        s.bot_token = Some(RawToken(UUID.into()));
        assert!(
            !format!("{s:?}").contains(UUID),
            "Debug must not show the token"
        );
        assert!(matches!(s.validate().unwrap(), Source::Grafolean { .. }));
        std::fs::remove_file(dir).unwrap();
        assert!(matches!(settings(&[]).validate().unwrap(), Source::Default));
    }

    #[test]
    fn a_token_that_is_not_uuid_shaped_is_refused_naming_its_source_not_its_value() {
        let dir = std::env::temp_dir().join(format!("gc-token-bad-{}", std::process::id()));
        let mut s = settings(&["--backend-url", "http://127.0.0.1:1/api"]);
        for bad in [
            "from-env",
            "3f6c1a52-8d4e-4b7a-9e21-5c0d7f8a9b1",
            "3f6c1a52x8d4e-4b7a-9e21-5c0d7f8a9b13",
        ] {
            s.bot_token = Some(RawToken(bad.into()));
            let err = s.validate().unwrap_err();
            assert_eq!(err.setting, "BOT_TOKEN", "{err}");
            assert!(err.reason.contains("UUID"), "{err}");
            assert!(!err.to_string().contains(bad), "the value is echoed: {err}");
        }
        // A file whose token is not UUID-shaped: the error names the file.
        std::fs::write(&dir, "from-a-file\n").unwrap();
        s.bot_token_file = Some(dir.clone());
        let err = s.validate().unwrap_err();
        assert_eq!(err.setting, "--bot-token-file (BOT_TOKEN_FROM_FILE)");
        assert!(err.reason.contains("UUID"), "{err}");
        assert!(
            err.reason.contains(&dir.display().to_string()),
            "the file is not named: {err}"
        );
        assert!(
            !err.to_string().contains("from-a-file"),
            "the value is echoed: {err}"
        );
        // A 10 MB file is refused, unread, naming the file.
        std::fs::write(&dir, "a".repeat(10 << 20)).unwrap();
        s.bot_token_file = Some(dir.clone());
        let err = s.validate().unwrap_err();
        assert_eq!(err.setting, "--bot-token-file (BOT_TOKEN_FROM_FILE)");
        assert!(err.reason.contains("larger than"), "{err}");
        std::fs::remove_file(dir).unwrap();
        assert!(matches!(settings(&[]).validate().unwrap(), Source::Default));
    }
}

#[cfg(test)]
mod default_tests {
    use super::*;

    /// `Settings::default()` is what clap gives with no flag and no
    /// environment, so a bot built either way behaves the same.
    #[test]
    fn the_default_is_the_command_lines_default() {
        let parsed = Settings::try_parse_from(["bot"]).unwrap();
        let default = Settings::default();
        assert_eq!(parsed.backend_url, default.backend_url);
        assert_eq!(parsed.jobs_refresh_interval, default.jobs_refresh_interval);
        assert_eq!(parsed.max_response_mib, default.max_response_mib);
        assert_eq!(parsed.config, default.config);
        assert_eq!(parsed.listen, default.listen);
        assert_eq!(parsed.no_export_values, default.no_export_values);
        assert_eq!(parsed.log_format, default.log_format);
        assert_eq!(parsed.once, default.once);
        assert_eq!(parsed.format, default.format);
        assert!(matches!(default.validate(), Ok(Source::Default)));
        let grafolean = default
            .with_backend_url("http://127.0.0.1:1/api")
            .with_bot_token("2c3f1e7a-0000-4000-8000-000000000001");
        assert!(matches!(grafolean.validate(), Ok(Source::Grafolean { .. })));
        let unlimited = Settings {
            max_response_mib: 0,
            ..Settings::default()
        };
        let err = unlimited.validate().unwrap_err();
        assert_eq!(err.setting, "--max-response-mib (MAX_RESPONSE_MIB)");
        let replica = Settings::default().with_shard("bot-3").with_shard_count(8);
        assert_eq!(replica.shard().unwrap().unwrap().to_string(), "3/8");
    }
}

#[cfg(test)]
mod bot_settings_tests {
    use clap::{CommandFactory, Parser};

    /// A bot with a flag of its own, as the README shows.
    #[derive(Parser, Debug)]
    #[command(name = "my-bot", version = "9.9.9", about = "What my bot does")]
    struct Cli {
        /// My bot's own flag.
        #[arg(long, env = "MY_BOT_PORT", default_value_t = 161)]
        port: u16,
        #[command(flatten)]
        sdk: super::Settings,
    }

    #[test]
    fn a_bots_own_flags_sit_beside_the_sdks_and_help_describes_the_bot() {
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("What my bot does"), "{help}");
        assert!(!help.contains("SDK for writing"), "{help}");
        assert!(!help.contains("Every setting of a bot"), "{help}");
        for flag in ["--port", "--backend-url", "--listen", "--shard"] {
            assert!(help.contains(flag), "{flag} missing:\n{help}");
        }
        let cli = Cli::try_parse_from(["my-bot", "--port", "1161", "--once"]).unwrap();
        assert_eq!(cli.port, 1161);
        assert!(cli.sdk.once);
    }
}
