//! The durable spool: the send buffer on disk, so that it survives a restart
//! or a crash.
//!
//! The spool is a directory of append-only *segment* files named
//! `{id:020}.seg`. Each file is a sequence of framed records:
//!
//! ```text
//! ┌──────────┬──────────┬─────────────────────────────┐
//! │ len: u32 │ crc: u32 │ payload (len bytes)         │   little endian,
//! └──────────┴──────────┴─────────────────────────────┘   crc = CRC-32 of payload
//! payload = 1 · seq u64 · account u64 · t f64 · v f64 · path   (a buffered value)
//!         | 2 · n u32 · n × (first u64 · last u64)             (values done: delivered or dropped)
//! ```
//!
//! Every buffered value gets a sequence number. When it is delivered or
//! dropped, an *ack* record names its number (as inclusive ranges). On open,
//! every segment is read in order, and the values that were never acked are
//! the backlog. Reading a segment stops at the first record that is truncated
//! or fails its checksum, so a crash in the middle of a write loses at most
//! that record, never the file. New records always go to a new segment.
//!
//! A segment is deleted once all its values are acked and every older segment
//! is gone (acks only ever name values in the same or older segments, so this
//! never forgets an ack that still matters).
//!
//! **Fsync policy.** Records are written with one `write` per batch, so a
//! killed process (even by `kill -9`) loses nothing that was appended: the
//! kernel has it. The file is fsynced when a segment is full, at shutdown, and
//! at most once a second while there are unsynced writes ([`Spool::sync`] is
//! driven by the sender), so a power failure or a kernel crash may lose about
//! the last second of buffered values.
//!
//! One spool directory must be used by one sender at a time.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::api::PutValue;

/// The size at which a segment is closed and a new one is started.
pub(crate) const SEGMENT_BYTES: u64 = 8 << 20;

const KIND_VALUE: u8 = 1;
const KIND_ACK: u8 = 2;
const MAX_RECORD: usize = 16 << 20;

/// A value read back from the spool.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Stored {
    /// The sequence number.
    pub(crate) seq: u64,
    /// The segment that holds it.
    pub(crate) segment: u64,
    /// The account.
    pub(crate) account: u64,
    /// The value, with its measurement time.
    pub(crate) value: PutValue,
}

/// An open spool directory.
#[derive(Debug)]
pub(crate) struct Spool {
    dir: PathBuf,
    active: File,
    active_id: u64,
    active_len: u64,
    /// Unacked values per segment, for every segment that still exists.
    unacked: BTreeMap<u64, usize>,
    dirty: bool,
    buf: Vec<u8>,
    /// Acks whose write failed (a full disk), merged ranges: written with
    /// the next ack, so that a restart does not replay what was delivered.
    unwritten_acks: Vec<(u64, u64)>,
    segment_bytes: u64,
    /// The room on the (simulated) disk for the active segment, in tests.
    #[cfg(test)]
    disk_bytes: u64,
}

impl Spool {
    /// Opens (creating if needed) the spool in `dir`, and returns it with the
    /// values that were never acked, in sequence order, and the next free
    /// sequence number.
    pub(crate) fn open(dir: &Path) -> io::Result<(Self, Vec<Stored>, u64)> {
        fs::create_dir_all(dir)?;
        let mut ids = Vec::new();
        for entry in fs::read_dir(dir)? {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            if let Some(id) = name
                .strip_suffix(".seg")
                .and_then(|s| s.parse::<u64>().ok())
            {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        let mut values = Vec::new();
        let mut acks: Vec<(u64, u64)> = Vec::new();
        let mut unacked = BTreeMap::new();
        for &id in &ids {
            let bytes = fs::read(segment_path(dir, id))?;
            let (ok, clean) = read_records(&bytes, |payload| match payload.first() {
                Some(&KIND_VALUE) => decode_value(payload, id).map(|v| values.push(v)),
                Some(&KIND_ACK) => decode_ack(payload).map(|a| acks.extend(a)),
                _ => None,
            });
            if !clean {
                tracing::warn!(
                    segment = id,
                    valid_bytes = ok,
                    total_bytes = bytes.len(),
                    "ignoring the truncated or corrupt tail of a spool segment"
                );
            }
            unacked.insert(id, 0);
        }
        let merged = merge_ranges(acks);
        let acked = |seq: u64| {
            let i = merged.partition_point(|&(first, _)| first <= seq);
            i > 0 && merged[i - 1].1 >= seq
        };
        let next_seq = values.iter().map(|v| v.seq + 1).max().unwrap_or(0);
        values.retain(|v| !acked(v.seq));
        values.sort_by_key(|v| v.seq);
        for v in &values {
            *unacked.entry(v.segment).or_default() += 1;
        }
        let active_id = ids.last().map_or(0, |id| id + 1);
        let active = new_segment(dir, active_id)?;
        unacked.insert(active_id, 0);
        let mut spool = Self {
            dir: dir.to_path_buf(),
            active,
            active_id,
            active_len: 0,
            unacked,
            dirty: false,
            buf: Vec::new(),
            unwritten_acks: Vec::new(),
            segment_bytes: SEGMENT_BYTES,
            #[cfg(test)]
            disk_bytes: u64::MAX,
        };
        spool.collect_garbage();
        Ok((spool, values, next_seq))
    }

    /// Appends values (sequence number, account, value) in one write, and
    /// returns the segment that holds them.
    pub(crate) fn append<'a>(
        &mut self,
        values: impl IntoIterator<Item = (u64, u64, &'a PutValue)>,
    ) -> io::Result<u64> {
        self.roll_if_full()?;
        self.buf.clear();
        let mut n = 0;
        for (seq, account, value) in values {
            let start = self.buf.len();
            self.buf.extend_from_slice(&[0; 8]);
            self.buf.push(KIND_VALUE);
            self.buf.extend_from_slice(&seq.to_le_bytes());
            self.buf.extend_from_slice(&account.to_le_bytes());
            self.buf.extend_from_slice(&value.t.to_le_bytes());
            self.buf.extend_from_slice(&value.v.to_le_bytes());
            self.buf.extend_from_slice(value.p.as_bytes());
            frame(&mut self.buf, start);
            n += 1;
        }
        self.write_buf()?;
        *self.unacked.entry(self.active_id).or_default() += n;
        Ok(self.active_id)
    }

    /// Records that values are done (delivered or dropped): `seqs` with the
    /// segment of each. Deletes segments that no longer hold a pending value.
    pub(crate) fn ack(&mut self, done: &mut [(u64, u64)]) -> io::Result<()> {
        if done.is_empty() {
            return Ok(());
        }
        done.sort_unstable();
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        for &(seq, segment) in done.iter() {
            match ranges.last_mut() {
                Some((_, last)) if *last + 1 == seq => *last = seq,
                Some((_, last)) if *last == seq => {}
                _ => ranges.push((seq, seq)),
            }
            if let Some(n) = self.unacked.get_mut(&segment) {
                *n = n.saturating_sub(1);
            }
        }
        // Acks that could not be written before go with these.
        if !self.unwritten_acks.is_empty() {
            ranges.append(&mut self.unwritten_acks);
            ranges = merge_ranges(ranges);
        }
        let written = self.write_acks(&ranges);
        if written.is_err() {
            self.unwritten_acks = ranges;
        }
        self.collect_garbage();
        self.empty_if_all_done();
        written
    }

    fn write_acks(&mut self, ranges: &[(u64, u64)]) -> io::Result<()> {
        self.roll_if_full()?;
        self.buf.clear();
        for chunk in ranges.chunks(1 << 16) {
            let start = self.buf.len();
            self.buf.extend_from_slice(&[0; 8]);
            self.buf.push(KIND_ACK);
            self.buf
                .extend_from_slice(&(chunk.len() as u32).to_le_bytes());
            for &(first, last) in chunk {
                self.buf.extend_from_slice(&first.to_le_bytes());
                self.buf.extend_from_slice(&last.to_le_bytes());
            }
            frame(&mut self.buf, start);
        }
        self.write_buf()
    }

    /// A handle to fsync the active segment with, if anything was written
    /// since the last call. The caller syncs it (off the async thread).
    pub(crate) fn take_dirty(&mut self) -> Option<io::Result<File>> {
        if !std::mem::take(&mut self.dirty) {
            return None;
        }
        Some(self.active.try_clone())
    }

    /// Fsyncs the active segment now.
    pub(crate) fn sync(&mut self) -> io::Result<()> {
        self.dirty = false;
        self.active.sync_data()
    }

    fn write_buf(&mut self) -> io::Result<()> {
        if let Err(e) = self.write_all_or_full() {
            // A write cut short (a full disk) leaves a torn record, and
            // reading stops there: cut it off, so that later records count.
            let _ = self.active.set_len(self.active_len);
            return Err(e);
        }
        self.active_len += self.buf.len() as u64;
        self.dirty = true;
        Ok(())
    }

    #[cfg(not(test))]
    fn write_all_or_full(&mut self) -> io::Result<()> {
        self.active.write_all(&self.buf)
    }

    /// In tests, a disk of `disk_bytes` (for the active segment) fills up:
    /// the write stops where the disk is full, as a real one does.
    #[cfg(test)]
    fn write_all_or_full(&mut self) -> io::Result<()> {
        let room = self.disk_bytes.saturating_sub(self.active_len) as usize;
        if self.buf.len() <= room {
            return self.active.write_all(&self.buf);
        }
        self.active.write_all(&self.buf[..room])?;
        Err(io::Error::from_raw_os_error(28)) // ENOSPC
    }

    /// Empties the active segment once nothing in the whole spool is pending
    /// (it is the only segment, and all its values are done): a restart then
    /// replays nothing, even if the acks could not be written (a full disk),
    /// and the space is freed.
    fn empty_if_all_done(&mut self) {
        let only_active = self.unacked.len() == 1 && self.unacked.get(&self.active_id) == Some(&0);
        if only_active && self.active_len > 0 && self.active.set_len(0).is_ok() {
            self.active_len = 0;
            self.dirty = true;
            // Nothing is left for them to name.
            self.unwritten_acks.clear();
        }
    }

    fn roll_if_full(&mut self) -> io::Result<()> {
        if self.active_len < self.segment_bytes {
            return Ok(());
        }
        self.active.sync_data()?;
        let id = self.active_id + 1;
        self.active = new_segment(&self.dir, id)?;
        self.active_id = id;
        self.active_len = 0;
        self.unacked.insert(id, 0);
        self.collect_garbage();
        Ok(())
    }

    fn collect_garbage(&mut self) {
        while let Some((&id, &n)) = self.unacked.first_key_value() {
            if n > 0 || id == self.active_id {
                break;
            }
            match fs::remove_file(segment_path(&self.dir, id)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(segment = id, error = %e, "could not delete a spool segment");
                    break;
                }
            }
            self.unacked.remove(&id);
        }
    }
}

/// `ranges` (inclusive) sorted and merged where they touch or overlap.
fn merge_ranges(mut ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    ranges.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for (first, last) in ranges {
        match merged.last_mut() {
            Some((_, l)) if first <= l.saturating_add(1) => *l = (*l).max(last),
            _ => merged.push((first, last)),
        }
    }
    merged
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
}

fn new_segment(dir: &Path, id: u64) -> io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(segment_path(dir, id))?;
    // Make the new file's directory entry durable.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(file)
}

/// Fills in the length and checksum of the record that starts at `start`.
fn frame(buf: &mut [u8], start: usize) {
    let len = (buf.len() - start - 8) as u32;
    let crc = crc32fast::hash(&buf[start + 8..]);
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Calls `f` on each valid record's payload. Returns how many bytes were
/// valid, and whether the whole input was.
fn read_records(bytes: &[u8], mut f: impl FnMut(&[u8]) -> Option<()>) -> (usize, bool) {
    let mut pos = 0;
    while pos < bytes.len() {
        let Some(header) = bytes.get(pos..pos + 8) else {
            return (pos, false);
        };
        let len = u32::from_le_bytes(header[..4].try_into().unwrap_or_default()) as usize;
        let crc = u32::from_le_bytes(header[4..].try_into().unwrap_or_default());
        if len > MAX_RECORD {
            return (pos, false);
        }
        let Some(payload) = bytes.get(pos + 8..pos + 8 + len) else {
            return (pos, false);
        };
        if crc32fast::hash(payload) != crc || f(payload).is_none() {
            return (pos, false);
        }
        pos += 8 + len;
    }
    (pos, true)
}

fn decode_value(p: &[u8], segment: u64) -> Option<Stored> {
    let u = |i: usize| Some(u64::from_le_bytes(p.get(i..i + 8)?.try_into().ok()?));
    Some(Stored {
        seq: u(1)?,
        segment,
        account: u(9)?,
        value: PutValue {
            t: f64::from_bits(u(17)?),
            v: f64::from_bits(u(25)?),
            p: String::from_utf8(p.get(33..)?.to_vec()).ok()?,
        },
    })
}

fn decode_ack(p: &[u8]) -> Option<Vec<(u64, u64)>> {
    let n = u32::from_le_bytes(p.get(1..5)?.try_into().ok()?) as usize;
    let u = |i: usize| Some(u64::from_le_bytes(p.get(i..i + 8)?.try_into().ok()?));
    (0..n)
        .map(|k| Some((u(5 + 16 * k)?, u(13 + 16 * k)?)))
        .collect()
}

#[cfg(test)]
mod tests;
