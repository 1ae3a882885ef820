//! Templates kept across restarts (`--template-file`): the parser writes
//! every template it learns through a [`TemplateFile`] and reads it back
//! on a miss; the file is saved every minute and at shutdown, and loaded
//! at start. So after a restart an exporter's data is decoded at once,
//! not from its next template refresh (up to 30 minutes on some routers).
//!
//! The parser's calls are in memory (they run inside the decode); only
//! the saver touches the disk, atomically (a temporary file in the same
//! directory, renamed). The format is the bot's own: per entry the
//! parser's scope (exporter address and port, source id or domain), kind,
//! template id and its opaque encoding.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use netflow_parser::{TemplateKind, TemplateStore, TemplateStoreError, TemplateStoreKey};

/// The largest file loaded: a larger one is not the bot's (or is corrupt)
/// and is left alone.
pub const MAX_FILE_BYTES: u64 = 64 << 20;

/// The most templates kept (the parser's own caches hold fewer).
const MAX_ENTRIES: usize = 200_000;

const MAGIC: &[u8; 8] = b"GNFTPL01";

type Key = (String, u8, u16);

/// The templates, in memory, with a file behind them.
#[derive(Debug)]
pub struct TemplateFile {
    path: PathBuf,
    entries: Mutex<HashMap<Key, Vec<u8>>>,
    dirty: AtomicBool,
}

fn kind_code(kind: &TemplateKind) -> Option<u8> {
    Some(match kind {
        TemplateKind::V9Data => 1,
        TemplateKind::V9Options => 2,
        TemplateKind::IpfixData => 3,
        TemplateKind::IpfixOptions => 4,
        TemplateKind::IpfixV9Data => 5,
        TemplateKind::IpfixV9Options => 6,
        _ => return None,
    })
}

fn key_of(key: &TemplateStoreKey) -> Option<Key> {
    Some((
        key.scope.to_string(),
        kind_code(&key.kind)?,
        key.template_id,
    ))
}

impl TemplateFile {
    /// Loads `path` (a missing file is an empty store). A file that is not
    /// one the bot wrote is an error, and is never overwritten: the bot
    /// then runs without keeping templates, and says why.
    pub fn load(path: impl Into<PathBuf>) -> io::Result<Self> {
        let path = path.into();
        let entries = match std::fs::metadata(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => HashMap::new(),
            Err(e) => return Err(e),
            Ok(meta) if !meta.is_file() => {
                return Err(io::Error::other(format!(
                    "{} is not a regular file",
                    path.display()
                )));
            }
            Ok(meta) if meta.len() > MAX_FILE_BYTES => {
                return Err(io::Error::other(format!(
                    "{} is {} bytes, more than a template file can be",
                    path.display(),
                    meta.len()
                )));
            }
            Ok(_) => decode(&std::fs::read(&path)?).ok_or_else(|| {
                io::Error::other(format!(
                    "{} is not a template file of this bot",
                    path.display()
                ))
            })?,
        };
        Ok(Self {
            path,
            entries: Mutex::new(entries),
            dirty: AtomicBool::new(false),
        })
    }

    /// Where it is saved.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many templates it holds.
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes the file if a template changed since the last save.
    pub fn save(&self) -> io::Result<()> {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let bytes = encode(&self.entries.lock().unwrap_or_else(|e| e.into_inner()));
        let dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let tmp = dir.join(format!(
            ".{}.tmp",
            self.path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("templates")
        ));
        let result = (|| {
            std::fs::write(&tmp, &bytes)?;
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
            self.dirty.store(true, Ordering::Release);
        }
        result
    }
}

impl TemplateStore for TemplateFile {
    fn get(&self, key: &TemplateStoreKey) -> Result<Option<Vec<u8>>, TemplateStoreError> {
        let Some(key) = key_of(key) else {
            return Ok(None);
        };
        Ok(self
            .entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned())
    }

    fn put(&self, key: &TemplateStoreKey, value: &[u8]) -> Result<(), TemplateStoreError> {
        let Some(key) = key_of(key) else {
            return Ok(());
        };
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(&key) {
            return Ok(());
        }
        if entries.get(&key).map(Vec::as_slice) != Some(value) {
            entries.insert(key, value.to_vec());
            self.dirty.store(true, Ordering::Release);
        }
        Ok(())
    }

    fn remove(&self, key: &TemplateStoreKey) -> Result<(), TemplateStoreError> {
        if let Some(key) = key_of(key)
            && self
                .entries
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&key)
                .is_some()
        {
            self.dirty.store(true, Ordering::Release);
        }
        Ok(())
    }
}

fn encode(entries: &HashMap<Key, Vec<u8>>) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    for ((scope, kind, id), value) in entries {
        let scope = scope.as_bytes();
        out.extend((scope.len() as u16).to_be_bytes());
        out.extend(scope);
        out.push(*kind);
        out.extend(id.to_be_bytes());
        out.extend((value.len() as u32).to_be_bytes());
        out.extend(value);
    }
    out
}

fn decode(bytes: &[u8]) -> Option<HashMap<Key, Vec<u8>>> {
    let mut rest = bytes.strip_prefix(MAGIC)?;
    let mut entries = HashMap::new();
    let mut take = |n: usize| -> Option<&[u8]> {
        let (head, tail) = rest.split_at_checked(n)?;
        rest = tail;
        Some(head)
    };
    loop {
        let Some(len) = take(2) else {
            return Some(entries);
        };
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        let scope = String::from_utf8(take(len)?.to_vec()).ok()?;
        let kind = take(1)?[0];
        let id = take(2)?;
        let id = u16::from_be_bytes([id[0], id[1]]);
        let n = take(4)?;
        let n = u32::from_be_bytes([n[0], n[1], n[2], n[3]]) as usize;
        let value = take(n)?.to_vec();
        if entries.len() < MAX_ENTRIES {
            entries.insert((scope, kind, id), value);
        }
    }
}
