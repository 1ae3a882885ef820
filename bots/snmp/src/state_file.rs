//! The counter state file (`--state-file`, `STATE_FILE`): every entity's last
//! counter readings, kept across restarts so that the first firing after a
//! restart already gives a rate instead of only learning the counters again.
//!
//! The file is JSON:
//!
//! ```json
//! {"format": 1, "saved_at": 1767000000.5, "entities": [
//!   {"entity_id": 42, "longest_interval": 60, "agent": "192.0.2.1:161", "counters": [
//!     {"oid": "1.3.6.1.2.1.2.2.1.10.1", "value": 123456, "at": 1767000000.1, "wide": false}]}]}
//! ```
//!
//! `at` is the wall-clock time of the reading (UNIX seconds), `wide` marks a
//! Counter64. An entity whose agent is another one at its next firing (its
//! address changed) drops the readings. sysUpTime is not kept: the bot reads it when a Counter32 went
//! down, and compares it with the time since the kept reading, as it does
//! without a restart.
//!
//! It is written atomically: into a temp file in the same directory, which is
//! fsynced and renamed over the target (then the directory is fsynced), so a
//! crash leaves either the old file or the new one, never half of one. It is
//! written every [`DEFAULT_SAVE_EVERY`] and once more at a clean shutdown.
//!
//! At start ([`StateKeeper::open`]):
//!
//! - a lock file beside it (`<name>.lock`, holding the PID) stops a second
//!   bot from sharing the file: that bot does not start, and says which PID
//!   holds it;
//! - the directory must take a new file, or the bot does not start (rather
//!   than find out at the first save, 60 s in);
//! - temp files left by a crash in the middle of a save are removed;
//! - something there that is not a regular file (a FIFO, a device, a
//!   symlink to one) stops the bot, unread: it is never opened in a way
//!   that could block, nor read past [`MAX_FILE_BYTES`];
//! - a missing file is normal; a file that cannot be read, is larger than
//!   [`MAX_FILE_BYTES`] or is not valid (corrupt, another program's, another
//!   format) is never overwritten: it is moved aside as
//!   `<name>.corrupt-<UNIX time>`, with one warning naming both and the
//!   cause, and the bot starts with empty counters.
//!
//! Readings older than the in-process rule (twice the entity's longest
//! interval plus 60 s) are dropped; entities that are no longer configured
//! are dropped at the first config refresh, as without a file.

use std::collections::HashMap;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use async_snmp::Oid;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::counters::{Counters, Sample};
use crate::state::{CounterStore, EntityCounters};

/// The file format this bot writes and reads.
pub const FORMAT: u32 = 1;

/// The largest state file that is read (256 MiB); a larger one is refused
/// unread, with a warning. 100,000 counters take about 10 MB.
pub const MAX_FILE_BYTES: u64 = 256 << 20;

/// How often the file is written while the bot runs.
pub const DEFAULT_SAVE_EVERY: Duration = Duration::from_secs(60);

/// The longest interval assumed for an entity whose interval is not known.
const DEFAULT_LONGEST: u32 = 60;

/// The whole file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StateData {
    /// [`FORMAT`].
    pub format: u32,
    /// When it was written (UNIX seconds).
    pub saved_at: f64,
    /// The entities with counters.
    pub entities: Vec<EntityRecord>,
}

/// One entity's counters.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EntityRecord {
    /// The entity.
    pub entity_id: u64,
    /// Its longest sensor interval in seconds when it was saved (0: not
    /// known), for the age limit of its readings.
    #[serde(default)]
    pub longest_interval: u32,
    /// The agent's address the readings came from (`127.0.0.1:161`): if the
    /// entity's agent is another one at the next firing, they are dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Its counters' last readings.
    pub counters: Vec<CounterRecord>,
}

/// One counter's last reading.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CounterRecord {
    /// The counter's OID, dotted (`1.3.6.1.2.1.2.2.1.10.1`).
    pub oid: String,
    /// The value read.
    pub value: u64,
    /// When (UNIX seconds).
    pub at: f64,
    /// Whether it is a Counter64.
    pub wide: bool,
}

/// Why the state file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateFileError {
    /// Reading failed (other than a missing file).
    #[error("cannot read the counter state file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_FILE_BYTES`].
    #[error(
        "the counter state file {path} is {size} bytes, more than the {limit} bytes this bot reads; \
         it was not read (remove it, or check --state-file)"
    )]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// [`MAX_FILE_BYTES`].
        limit: u64,
    },
    /// The file is not valid JSON of this format.
    #[error("the counter state file {path} is not valid: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
    /// The file is of another format version.
    #[error("the counter state file {path} has format {found}, but this bot reads format {FORMAT}")]
    Format {
        /// The file.
        path: PathBuf,
        /// The format found.
        found: u32,
    },
    /// Writing failed; the previous file (if any) is untouched.
    #[error("cannot write the counter state file {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Something that is not a regular file is at the path.
    #[error(
        "{path} is not a regular file (a FIFO, a device, or a link to one): it is not used as the \
         counter state file; check --state-file"
    )]
    NotAFile {
        /// The path.
        path: PathBuf,
    },
    /// Another bot holds the file's lock.
    #[error(
        "the counter state file {path} is in use by another bot (PID {pid}, per {lock}); \
         give each bot its own --state-file"
    )]
    InUse {
        /// The file.
        path: PathBuf,
        /// The lock file.
        lock: PathBuf,
        /// What the lock file says, or `unknown`.
        pid: String,
    },
    /// The directory does not take a new file (or the lock file cannot be
    /// made).
    #[error("the counter state file {path} cannot be kept: {source}; check --state-file")]
    Directory {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

impl StateFileError {
    /// Whether the file is there but could not be used as a state file (it
    /// is then moved aside, never overwritten).
    fn unusable(&self) -> bool {
        matches!(
            self,
            Self::Read { .. } | Self::TooLarge { .. } | Self::Parse { .. } | Self::Format { .. }
        )
    }
}

/// Reads the file: `None` if it does not exist. Something that is not a
/// regular file is refused unread (checked before opening, and again on
/// what was opened, without blocking).
pub fn load(path: &Path) -> Result<Option<StateData>, StateFileError> {
    use std::os::unix::fs::OpenOptionsExt;
    let read_err = |source| StateFileError::Read {
        path: path.to_path_buf(),
        source,
    };
    let not_a_file = || StateFileError::NotAFile {
        path: path.to_path_buf(),
    };
    match std::fs::metadata(path) {
        Ok(m) if !m.is_file() => return Err(not_a_file()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        _ => {}
    }
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read_err(e)),
    };
    if !file.metadata().map_err(read_err)?.is_file() {
        return Err(not_a_file());
    }
    let too_large = |size| StateFileError::TooLarge {
        path: path.to_path_buf(),
        size,
        limit: MAX_FILE_BYTES,
    };
    let size = file.metadata().map_err(read_err)?.len();
    if size > MAX_FILE_BYTES {
        return Err(too_large(size));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    // The file may grow while it is read: never past the limit.
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    let data: StateData =
        serde_json::from_slice(&bytes).map_err(|source| StateFileError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
    if data.format != FORMAT {
        return Err(StateFileError::Format {
            path: path.to_path_buf(),
            found: data.format,
        });
    }
    Ok(Some(data))
}

/// Writes `data` to `path` atomically: a temp file in the same directory,
/// fsynced, renamed over `path`, then the directory fsynced. On an error
/// the temp file is removed and `path` is untouched.
pub fn save(path: &Path, data: &StateData) -> Result<(), StateFileError> {
    let write_err = |source| StateFileError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = directory(path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "state".into());
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(write_err)?;
    {
        let mut w = BufWriter::new(tmp.as_file());
        serde_json::to_writer(&mut w, data).map_err(|e| write_err(e.into()))?;
        w.flush().map_err(write_err)?;
    }
    tmp.as_file().sync_all().map_err(write_err)?;
    tmp.persist(path).map_err(|e| write_err(e.error))?;
    // The rename itself is durable once the directory is synced; a failure
    // here leaves a complete file in place, so it is not an error.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// What [`restore`] kept and dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Restored {
    /// Entities with at least one kept reading.
    pub entities: usize,
    /// Readings kept.
    pub counters: usize,
    /// Readings dropped as too old.
    pub stale: usize,
    /// Readings dropped because their OID or time is not valid.
    pub invalid: usize,
}

/// Turns the file's records into counters, dropping readings older than
/// twice the entity's longest interval plus 60 s before `now` (the rule
/// the bot applies in process).
pub fn restore(data: StateData, now: f64) -> (HashMap<u64, EntityCounters>, Restored) {
    let mut out = HashMap::new();
    let mut report = Restored::default();
    for entity in data.entities {
        let longest = match entity.longest_interval {
            0 => DEFAULT_LONGEST,
            n => n,
        };
        let oldest = now - 2.0 * f64::from(longest) - 60.0;
        let mut counters = Counters::default();
        for c in entity.counters {
            if !c.at.is_finite() {
                report.invalid += 1;
                continue;
            }
            if c.at < oldest {
                report.stale += 1;
                continue;
            }
            let Ok(oid) = Oid::parse(&c.oid) else {
                report.invalid += 1;
                continue;
            };
            counters.restore(
                oid,
                Sample {
                    value: c.value,
                    at: c.at,
                    wide: c.wide,
                },
            );
        }
        if !counters.is_empty() {
            report.entities += 1;
            report.counters += counters.len();
            out.insert(
                entity.entity_id,
                EntityCounters::new(
                    entity.longest_interval,
                    entity.agent.as_deref().and_then(|a| a.parse().ok()),
                    counters,
                ),
            );
        }
    }
    (out, report)
}

/// Every entity's counters in `store`, as the file keeps them (`saved_at`
/// 0); entities without counters are left out.
pub fn snapshot(store: &CounterStore) -> StateData {
    let mut records = Vec::new();
    store.for_each(|entity_id, kept| {
        if kept.counters.is_empty() {
            return;
        }
        records.push(EntityRecord {
            entity_id,
            longest_interval: kept.longest_interval,
            agent: kept.agent.map(|a| a.to_string()),
            counters: kept
                .counters
                .iter()
                .map(|(oid, s)| CounterRecord {
                    oid: oid.to_string(),
                    value: s.value,
                    at: s.at,
                    wide: s.wide,
                })
                .collect(),
        });
    });
    StateData {
        format: FORMAT,
        saved_at: 0.0,
        entities: records,
    }
}

/// The state file of one bot: loads it into the collector's counters,
/// writes them, and does so periodically. Clones share one file lock, so
/// two writes never interleave and a later snapshot is never overwritten
/// by an earlier one.
#[derive(Clone, Debug)]
pub struct StateKeeper {
    store: CounterStore,
    path: PathBuf,
    writing: Arc<Mutex<()>>,
    /// The lock file, locked for as long as a clone lives.
    _lock: Option<Arc<Flock<std::fs::File>>>,
}

/// What happened when the file was loaded.
#[derive(Debug)]
#[non_exhaustive]
pub enum LoadOutcome {
    /// There was no file.
    Missing,
    /// It was loaded.
    Loaded(Restored),
    /// It could not be used; the counters start empty.
    Failed(StateFileError),
}

impl StateKeeper {
    /// A keeper of `store` in `path`, without the start-up checks of
    /// [`StateKeeper::open`] (for tests of the file itself).
    pub fn new(store: CounterStore, path: PathBuf) -> Self {
        Self {
            store,
            path,
            writing: Arc::default(),
            _lock: None,
        }
    }

    /// A keeper of `store` in `path`, after the start-up checks (see the
    /// module's docs): the file's lock is taken, its directory takes a new
    /// file, and crash leftovers are removed. An error means the bot must
    /// not start.
    pub fn open(store: CounterStore, path: PathBuf) -> Result<Self, StateFileError> {
        let dir_err = |source| StateFileError::Directory {
            path: path.clone(),
            source,
        };
        if std::fs::metadata(&path).is_ok_and(|m| !m.is_file()) {
            return Err(StateFileError::NotAFile { path });
        }
        let lock_path = sibling(&path, ".lock");
        let lock = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(dir_err)?;
        let lock = match Flock::lock(lock, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((_, Errno::EWOULDBLOCK)) => {
                let pid = std::fs::read_to_string(&lock_path)
                    .ok()
                    .map(|p| p.trim().to_string())
                    .filter(|p| !p.is_empty())
                    .unwrap_or_else(|| "unknown".into());
                return Err(StateFileError::InUse {
                    path,
                    lock: lock_path,
                    pid,
                });
            }
            Err((_, e)) => return Err(dir_err(e.into())),
        };
        lock.set_len(0).map_err(dir_err)?;
        (&*lock)
            .write_all(format!("{}\n", std::process::id()).as_bytes())
            .map_err(dir_err)?;
        let dir = directory(&path);
        // Writable now, not at the first save.
        tempfile::tempfile_in(dir).map_err(dir_err)?;
        remove_temp_files(&path);
        Ok(Self {
            _lock: Some(Arc::new(lock)),
            ..Self::new(store, path)
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Loads the file into the counters, and logs what happened: a missing
    /// file at info level, one that cannot be used as one warning (it is
    /// moved aside, never overwritten).
    pub fn load(&self) -> LoadOutcome {
        let outcome = match load(&self.path) {
            Ok(None) => LoadOutcome::Missing,
            Ok(Some(data)) => {
                let (entities, restored) = restore(data, unix_now());
                self.store.restore(entities);
                LoadOutcome::Loaded(restored)
            }
            Err(e) => LoadOutcome::Failed(e),
        };
        if let LoadOutcome::Failed(e) = &outcome
            && e.unusable()
        {
            let aside = sibling(&self.path, &format!(".corrupt-{}", unix_now() as u64));
            match std::fs::rename(&self.path, &aside) {
                Ok(()) => {
                    tracing::warn!(state_file = %self.path.display(), kept_as = %aside.display(), "{e}; it was moved aside, and counters start empty")
                }
                Err(m) => {
                    tracing::warn!(state_file = %self.path.display(), "{e}; it cannot be moved aside ({m}), so it will be overwritten at the first save; counters start empty")
                }
            }
            return outcome;
        }
        let file = self.path.display();
        match &outcome {
            LoadOutcome::Missing => tracing::info!(
                state_file = %file,
                "no counter state file yet; counters start empty (it is written every {}s and at shutdown)",
                DEFAULT_SAVE_EVERY.as_secs()
            ),
            LoadOutcome::Loaded(r) => {
                tracing::info!(state_file = %file, entities = r.entities, counters = r.counters, stale = r.stale, "counter state loaded");
                if r.invalid > 0 {
                    tracing::warn!(state_file = %file, invalid = r.invalid, "counter state readings with an invalid OID or time were dropped");
                }
            }
            LoadOutcome::Failed(e) => {
                tracing::warn!(state_file = %file, "{e}; starting with empty counters")
            }
        }
        outcome
    }

    /// Writes every entity's counters now.
    pub fn save(&self) -> Result<(), StateFileError> {
        let _writing = self.writing.lock().unwrap_or_else(PoisonError::into_inner);
        let mut data = snapshot(&self.store);
        data.saved_at = unix_now();
        save(&self.path, &data)
    }

    /// [`StateKeeper::save`], logging a failure as a warning.
    pub fn save_logged(&self) {
        match self.save() {
            Ok(()) => tracing::debug!(state_file = %self.path.display(), "counter state written"),
            Err(e) => tracing::warn!("{e}"),
        }
    }

    /// Writes the file every `every` (the first time one `every` from now),
    /// off the runtime's threads, until `shutdown` is cancelled; then once
    /// more (the runtime cancels it after the running jobs were drained), and
    /// returns that write's error, if any.
    pub async fn run(
        self,
        every: Duration,
        shutdown: CancellationToken,
    ) -> Result<(), StateFileError> {
        let every = every.max(Duration::from_millis(10));
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = shutdown.cancelled() => break,
            }
            let k = self.clone();
            let _ = tokio::task::spawn_blocking(move || k.save_logged()).await;
        }
        let k = self.clone();
        tokio::task::spawn_blocking(move || k.save())
            .await
            .unwrap_or_else(|e| panic!("the final write of the state file panicked: {e}"))?;
        tracing::info!(state_file = %self.path.display(), "counter state written");
        Ok(())
    }
}

/// `path` with `suffix` added to its file name.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// The directory a state file is in.
fn directory(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Removes the temp files a crash in the middle of [`save`] left
/// (`.<name>.*.tmp`); the caller holds the file's lock.
fn remove_temp_files(path: &Path) {
    let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return;
    };
    let prefix = format!(".{name}.");
    let Ok(entries) = std::fs::read_dir(directory(path)) else {
        return;
    };
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        if file.starts_with(&prefix) && file.ends_with(".tmp") {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => {
                    tracing::info!(removed = %entry.path().display(), "a temp file of an interrupted state-file save was removed")
                }
                Err(e) => {
                    tracing::warn!(file = %entry.path().display(), "cannot remove a temp file of an interrupted state-file save: {e}")
                }
            }
        }
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

#[cfg(test)]
mod tests;
