//! The backlog: values that could not be sent live and wait to be replayed
//! with their measurement times (by PUT).
//!
//! It is a bounded FIFO per account, held in memory and, when a spool
//! directory is set, mirrored to disk ([`Spool`]). Every value gets a sequence
//! number; the replay takes chunks from the front, and a chunk that fails goes
//! back to the front in order. When the backlog is full, the oldest values (by
//! sequence number, across accounts) are dropped to make room.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::api::PutValue;

use super::spool::{Spool, Stored};

/// The segment of a value that is only in memory (no spool, or the write
/// failed).
pub(crate) const NOT_SPOOLED: u64 = u64::MAX;

/// One buffered value.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Record {
    /// The sequence number (order of arrival; also the spool's key).
    pub(crate) seq: u64,
    /// The spool segment that holds it, or [`NOT_SPOOLED`].
    pub(crate) segment: u64,
    /// The value, with its measurement time.
    pub(crate) value: PutValue,
}

/// The bounded backlog.
#[derive(Debug)]
pub(crate) struct Backlog {
    queues: HashMap<u64, VecDeque<Record>>,
    queued: usize,
    in_flight: usize,
    limit: usize,
    next_seq: u64,
    spool: Option<Spool>,
    last_spool_error: Option<Instant>,
}

impl Backlog {
    /// An in-memory backlog of at most `limit` values.
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            queues: HashMap::new(),
            queued: 0,
            in_flight: 0,
            limit: limit.max(1),
            next_seq: 0,
            spool: None,
            last_spool_error: None,
        }
    }

    /// A backlog mirrored to `spool`, starting with the values read from it.
    pub(crate) fn with_spool(
        limit: usize,
        spool: Spool,
        stored: Vec<Stored>,
        next_seq: u64,
    ) -> Self {
        let mut backlog = Self::new(limit);
        backlog.next_seq = next_seq;
        for s in stored {
            backlog.queued += 1;
            backlog
                .queues
                .entry(s.account)
                .or_default()
                .push_back(Record {
                    seq: s.seq,
                    segment: s.segment,
                    value: s.value,
                });
        }
        backlog.spool = Some(spool);
        backlog
    }

    /// Values in the backlog, including those being replayed right now.
    pub(crate) fn len(&self) -> usize {
        self.queued + self.in_flight
    }

    /// Values waiting to be taken.
    pub(crate) fn queued(&self) -> usize {
        self.queued
    }

    /// Whether the backlog is on disk.
    pub(crate) fn is_durable(&self) -> bool {
        self.spool.is_some()
    }

    /// Adds values of one account. Returns how many values were dropped
    /// (the oldest ones) because the backlog was full.
    pub(crate) fn push(&mut self, account: u64, values: Vec<PutValue>) -> u64 {
        if values.is_empty() {
            return 0;
        }
        let mut dropped = Vec::new();
        let room = self.limit.saturating_sub(self.in_flight);
        // Values beyond what could ever fit: the oldest of the new ones go.
        let skip = values.len().saturating_sub(room);
        let mut excess = (self.len() + values.len() - skip).saturating_sub(self.limit);
        while excess > 0 {
            let Some(oldest) = self.oldest_account() else {
                break;
            };
            let queue = self.queues.get_mut(&oldest).expect("account has a queue");
            let r = queue.pop_front().expect("queue is not empty");
            if queue.is_empty() {
                self.queues.remove(&oldest);
            }
            dropped.push((r.seq, r.segment));
            self.queued -= 1;
            excess -= 1;
        }
        let first = self.next_seq;
        self.next_seq += (values.len() - skip) as u64;
        let mut records: Vec<Record> = values
            .into_iter()
            .skip(skip)
            .enumerate()
            .map(|(i, value)| Record {
                seq: first + i as u64,
                segment: NOT_SPOOLED,
                value,
            })
            .collect();
        if let Some(spool) = &mut self.spool {
            let result = spool
                .append(records.iter().map(|r| (r.seq, account, &r.value)))
                .and_then(|segment| {
                    records.iter_mut().for_each(|r| r.segment = segment);
                    spool.ack(&mut dropped)
                });
            self.spool_result(result);
        }
        self.queued += records.len();
        self.queues.entry(account).or_default().extend(records);
        (dropped.len() + skip) as u64
    }

    /// Takes up to `max` values of one account from the front (the account
    /// whose oldest value is the oldest). With `whole`, takes every value of
    /// that account instead. The taken values count as in flight until they
    /// are [`done`](Self::done) or [`put_back`](Self::put_back).
    pub(crate) fn take(
        &mut self,
        max: usize,
        whole: impl Fn(u64) -> bool,
    ) -> Option<(u64, Vec<Record>)> {
        let account = self.oldest_account()?;
        let queue = self.queues.get_mut(&account)?;
        let n = if whole(account) {
            queue.len()
        } else {
            max.min(queue.len())
        };
        let chunk: Vec<Record> = queue.drain(..n).collect();
        if queue.is_empty() {
            self.queues.remove(&account);
        }
        self.queued -= chunk.len();
        self.in_flight += chunk.len();
        Some((account, chunk))
    }

    /// Puts values that were taken but not delivered back, in order.
    pub(crate) fn put_back(&mut self, account: u64, mut records: Vec<Record>) {
        if records.is_empty() {
            return;
        }
        self.in_flight = self.in_flight.saturating_sub(records.len());
        self.queued += records.len();
        records.sort_by_key(|r| r.seq);
        let queue = self.queues.entry(account).or_default();
        let fast = queue
            .front()
            .is_none_or(|f| records.last().is_some_and(|l| l.seq < f.seq));
        if fast {
            for r in records.into_iter().rev() {
                queue.push_front(r);
            }
        } else {
            let mut merged = VecDeque::with_capacity(queue.len() + records.len());
            let mut a = records.into_iter().peekable();
            let mut b = std::mem::take(queue).into_iter().peekable();
            loop {
                let take_a = match (a.peek(), b.peek()) {
                    (Some(x), Some(y)) => x.seq < y.seq,
                    (Some(_), None) => true,
                    (None, Some(_)) => false,
                    (None, None) => break,
                };
                merged.extend(if take_a { a.next() } else { b.next() });
            }
            *queue = merged;
        }
    }

    /// Marks taken values as done (delivered or dropped for good).
    pub(crate) fn done(&mut self, records: &[Record]) {
        self.in_flight = self.in_flight.saturating_sub(records.len());
        if let Some(spool) = &mut self.spool {
            let mut seqs: Vec<(u64, u64)> = records.iter().map(|r| (r.seq, r.segment)).collect();
            let result = spool.ack(&mut seqs);
            self.spool_result(result);
        }
    }

    /// Removes and returns every queued value (for a shutdown without spool).
    pub(crate) fn drain_all(&mut self) -> usize {
        let n = self.queued;
        self.queues.clear();
        self.queued = 0;
        n
    }

    /// A file handle to fsync, if the spool has unsynced writes.
    pub(crate) fn take_dirty(&mut self) -> Option<std::fs::File> {
        match self.spool.as_mut()?.take_dirty()? {
            Ok(f) => Some(f),
            Err(e) => {
                self.spool_result(Err(e));
                None
            }
        }
    }

    /// Fsyncs the spool now (at shutdown).
    pub(crate) fn sync(&mut self) {
        if let Some(spool) = &mut self.spool {
            let result = spool.sync();
            self.spool_result(result);
        }
    }

    fn oldest_account(&self) -> Option<u64> {
        self.queues
            .iter()
            .filter_map(|(a, q)| Some((q.front()?.seq, *a)))
            .min()
            .map(|(_, a)| a)
    }

    fn spool_result(&mut self, result: std::io::Result<()>) {
        if let Err(e) = result {
            let now = Instant::now();
            if self
                .last_spool_error
                .is_none_or(|t| now - t >= Duration::from_secs(60))
            {
                self.last_spool_error = Some(now);
                tracing::error!(error = %e, "could not write to the spool; buffered values are kept in memory only");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(p: &str, t: f64) -> PutValue {
        PutValue {
            p: p.into(),
            t,
            v: t,
        }
    }

    #[test]
    fn full_backlog_drops_the_oldest_across_accounts() {
        let mut b = Backlog::new(4);
        assert_eq!(b.push(1, vec![v("a", 1.0), v("a", 2.0)]), 0);
        assert_eq!(b.push(2, vec![v("b", 3.0), v("b", 4.0)]), 0);
        assert_eq!(b.push(2, vec![v("b", 5.0)]), 1);
        assert_eq!(b.len(), 4);
        let (account, chunk) = b.take(10, |_| false).unwrap();
        assert_eq!(account, 1);
        assert_eq!(chunk.iter().map(|r| r.value.t).collect::<Vec<_>>(), [2.0]);
        // More new values than the limit: only the newest that fit are kept.
        assert_eq!(
            b.push(3, (0..10).map(|i| v("c", f64::from(i))).collect()),
            3 + 7
        );
        assert_eq!(b.len(), 4);
    }

    #[test]
    fn put_back_keeps_order() {
        let mut b = Backlog::new(100);
        b.push(1, (0..6).map(|i| v("a", f64::from(i))).collect());
        let (_, first) = b.take(2, |_| false).unwrap();
        let (_, second) = b.take(2, |_| false).unwrap();
        b.put_back(1, second);
        b.put_back(1, first);
        let (_, all) = b.take(100, |_| false).unwrap();
        let ts: Vec<f64> = all.iter().map(|r| r.value.t).collect();
        assert_eq!(ts, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        b.done(&all);
        assert_eq!(b.len(), 0);
    }

    #[test]
    fn take_whole_takes_every_value_of_the_account() {
        let mut b = Backlog::new(100);
        b.push(1, (0..6).map(|i| v("a", f64::from(i))).collect());
        let (_, all) = b.take(2, |a| a == 1).unwrap();
        assert_eq!(all.len(), 6);
        assert_eq!(b.queued(), 0);
        assert_eq!(b.len(), 6);
    }
}
