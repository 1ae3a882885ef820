//! Where the runtime gets its job configs on every refresh.

use std::fmt;
use std::path::PathBuf;

use crate::api::ApiError;
use crate::api::Client;
use crate::config::JobConfigs;
use crate::fetch::{FetchOptions, fetch_job_configs};
use crate::shard;
use crate::standalone::{self, StandaloneError};

/// A source of job configs.
#[derive(Debug)]
pub enum ConfigSource {
    /// The Grafolean backend, for one protocol.
    Grafolean {
        /// The API client.
        client: Client,
        /// The protocol, such as `ping`.
        protocol: String,
    },
    /// A standalone TOML file, read again on a refresh only when it changed
    /// (its modification time, size or inode): parsing a large file costs
    /// tens of MB at its peak, and keeping the parsed configs would cost
    /// about 1.6 KB per entity for nothing, so an unchanged file makes no
    /// refresh at all.
    File(PathBuf, FileCache),
    /// Configs fixed at start-up (a bot's built-in default).
    Fixed(JobConfigs),
    /// No configs: the collector makes its own job list.
    Empty,
}

/// The configs of one refresh, with what it took to get them.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The configs.
    pub configs: JobConfigs,
    /// Accounts read.
    pub accounts: usize,
    /// Entities (or accounts' entity lists) left out because their config
    /// is wrong: `(account, entity)` and why.
    pub skipped: Vec<crate::problem::EntityProblem>,
    /// Entities (or accounts' entity lists) that could not be fetched because
    /// the backend failed: what they had stays.
    pub failed: Vec<crate::fetch::Unfetched>,
    /// HTTP requests made.
    pub requests: usize,
    /// Entities for this bot before the shard filter.
    pub seen: usize,
    /// Entities this replica's shard owns (all of `seen` without a shard).
    pub owned: usize,
}

/// Why a refresh failed. The previous job set stays scheduled.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// Fetching from Grafolean failed.
    #[error(transparent)]
    Fetch(#[from] ApiError),
    /// The standalone file is invalid.
    #[error(transparent)]
    File(#[from] StandaloneError),
}

impl RefreshError {
    /// Whether the failure means the backend could not be reached.
    pub fn backend_unreachable(&self) -> bool {
        match self {
            Self::Fetch(e) => !e.backend_answered(),
            Self::File(_) => false,
        }
    }
}

/// The stamp of the standalone file as it was last read successfully.
#[derive(Debug, Default)]
pub struct FileCache(std::sync::Mutex<Option<FileStamp>>);

/// What tells that a file changed: its modification time, size and inode
/// (an editor or a deployment that replaces the file gives it a new inode).
type FileStamp = (Option<std::time::SystemTime>, u64, u64);

impl FileCache {
    /// The file's configs, or `None` if it did not change since it was last
    /// read and `force` is false.
    fn load(
        &self,
        path: &std::path::Path,
        force: bool,
    ) -> Result<Option<JobConfigs>, StandaloneError> {
        use std::os::unix::fs::MetadataExt;
        let stamp = std::fs::metadata(path)
            .ok()
            .map(|m| (m.modified().ok(), m.len(), m.ino()));
        let mut cache = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if !force && stamp.is_some() && stamp == *cache {
            return Ok(None);
        }
        // A file that fails to parse is read again at the next refresh.
        *cache = None;
        let configs = standalone::load(path)?;
        *cache = stamp;
        Ok(Some(configs))
    }
}

impl ConfigSource {
    /// Loads the configs once; only the entities that `options.shard` owns.
    /// `None`: a standalone file that did not change since its last load
    /// (unless `force`, as for SIGHUP), so nothing needs doing.
    pub async fn load(
        &self,
        options: &FetchOptions,
        force: bool,
    ) -> Result<Option<Loaded>, RefreshError> {
        Ok(Some(match self {
            Self::Grafolean { client, protocol } => {
                let report = fetch_job_configs(client, protocol, options).await?;
                Loaded {
                    configs: report.configs,
                    accounts: report.accounts,
                    skipped: report.skipped,
                    failed: report.failed,
                    requests: report.requests,
                    seen: report.entities_seen,
                    owned: report.entities_owned,
                }
            }
            Self::File(path, cache) => match cache.load(path, force)? {
                Some(configs) => Self::sharded(configs, options),
                None => return Ok(None),
            },
            Self::Fixed(configs) => Self::sharded(configs.clone(), options),
            Self::Empty => Loaded::default(),
        }))
    }

    /// A standalone config, filtered by the shard as the backend's are.
    fn sharded(mut configs: JobConfigs, options: &FetchOptions) -> Loaded {
        let seen = configs.entities.len();
        shard::retain_owned(options.shard.as_ref(), &mut configs);
        Loaded {
            owned: configs.entities.len(),
            seen,
            configs,
            ..Loaded::default()
        }
    }
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Grafolean { client, protocol } => {
                write!(f, "Grafolean at {} (protocol {protocol})", client.backend())
            }
            Self::File(path, _) => write!(f, "file {}", path.display()),
            Self::Fixed(_) => f.write_str("built-in default config"),
            Self::Empty => f.write_str("the bot's own job list"),
        }
    }
}
