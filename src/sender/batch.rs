//! Batching: values of one account that arrive within a short window (or up
//! to a size limit) go out in one request.
//!
//! The backend answers 500 when a path appears twice in one POST, so a batch
//! keeps only the latest value of each path ([`dedup_latest`]).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use crate::job::JobId;

/// One value on its way to a live POST.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Item {
    /// The path.
    pub(crate) path: String,
    /// The value.
    pub(crate) value: f64,
    /// The measurement time (the tick's intended time), in UNIX microseconds.
    pub(crate) at: i64,
    /// The job that produced it, for log lines.
    pub(crate) job: Arc<JobId>,
}

/// A batch that is still open.
#[derive(Debug)]
struct Open {
    items: Vec<Item>,
    closes_at: Instant,
}

/// The open batches, one per account.
#[derive(Debug, Default)]
pub(crate) struct Batches {
    open: HashMap<u64, Open>,
}

impl Batches {
    /// Adds items to `account`'s batch, opening one that closes at
    /// `closes_at` if there is none. Returns the full batches (of at most
    /// `max` items each) that are ready to go.
    pub(crate) fn add(
        &mut self,
        account: u64,
        items: Vec<Item>,
        closes_at: Instant,
        max: usize,
    ) -> Vec<Vec<Item>> {
        let mut full = Vec::new();
        let open = match self.open.entry(account) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(Open {
                items: Vec::new(),
                closes_at,
            }),
        };
        for item in items {
            open.items.push(item);
            if open.items.len() >= max {
                full.push(std::mem::take(&mut open.items));
            }
        }
        if open.items.is_empty() {
            self.open.remove(&account);
        }
        full
    }

    /// When the next batch closes.
    pub(crate) fn next_close(&self) -> Option<Instant> {
        self.open.values().map(|o| o.closes_at).min()
    }

    /// Removes and returns the batches that close at or before `now`.
    pub(crate) fn take_due(&mut self, now: Instant) -> Vec<(u64, Vec<Item>)> {
        let due: Vec<u64> = self
            .open
            .iter()
            .filter(|(_, o)| o.closes_at <= now)
            .map(|(a, _)| *a)
            .collect();
        due.into_iter()
            .filter_map(|a| Some((a, self.open.remove(&a)?.items)))
            .collect()
    }

    /// Removes and returns every open batch.
    pub(crate) fn take_all(&mut self) -> Vec<(u64, Vec<Item>)> {
        self.open.drain().map(|(a, o)| (a, o.items)).collect()
    }

    /// Whether no batch is open.
    pub(crate) fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// The values in the open batches.
    pub(crate) fn values(&self) -> usize {
        self.open.values().map(|o| o.items.len()).sum()
    }
}

/// Keeps only the last occurrence of each key, in the order of those last
/// occurrences, and returns the earlier ones that were removed.
pub(crate) fn dedup_latest<T>(items: &mut Vec<T>, key: impl Fn(&T) -> (&str, u64)) -> Vec<T> {
    let keep: Vec<bool> = {
        let mut last: HashMap<(&str, u64), usize> = HashMap::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            last.insert(key(item), i);
        }
        if last.len() == items.len() {
            return Vec::new();
        }
        items
            .iter()
            .enumerate()
            .map(|(i, it)| last[&key(it)] == i)
            .collect()
    };
    let mut removed = Vec::new();
    let mut kept = Vec::with_capacity(keep.len());
    for (item, keep) in items.drain(..).zip(keep) {
        if keep {
            kept.push(item);
        } else {
            removed.push(item);
        }
    }
    *items = kept;
    removed
}

/// A measurement time in UNIX microseconds (negative before 1970).
pub(crate) fn unix_micros(at: SystemTime) -> i64 {
    match at.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_micros()).unwrap_or(i64::MAX),
    }
}

/// UNIX microseconds as the seconds of a PUT's `t`. Division of two exact
/// floats is correctly rounded, so this is the float nearest to the decimal
/// with 6 digits, and it prints as that decimal.
pub(crate) fn micros_to_t(micros: i64) -> f64 {
    micros as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn item(path: &str, value: f64) -> Item {
        Item {
            path: path.into(),
            value,
            at: 0,
            job: Arc::new(JobId::new("j")),
        }
    }

    #[test]
    fn duplicates_keep_the_latest_value() {
        let mut items = vec![item("a", 1.0), item("b", 2.0), item("a", 3.0)];
        let removed = dedup_latest(&mut items, |i| (i.path.as_str(), 0));
        assert_eq!(removed, vec![item("a", 1.0)]);
        assert_eq!(items, vec![item("b", 2.0), item("a", 3.0)]);
        let mut unique = vec![item("a", 1.0), item("b", 2.0)];
        assert!(dedup_latest(&mut unique, |i| (i.path.as_str(), 0)).is_empty());
        assert_eq!(unique.len(), 2);
    }

    #[test]
    fn batches_close_by_size_and_by_time() {
        let now = Instant::now();
        let mut b = Batches::default();
        let full = b.add(1, (0..5).map(|i| item("a", f64::from(i))).collect(), now, 2);
        assert_eq!(full.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2]);
        assert_eq!(b.next_close(), Some(now));
        b.add(2, vec![item("x", 0.0)], now + Duration::from_millis(50), 2);
        let due = b.take_due(now);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].0, 1);
        assert_eq!(due[0].1.len(), 1);
        assert_eq!(b.next_close(), Some(now + Duration::from_millis(50)));
        assert_eq!(b.take_all().len(), 1);
        assert!(b.is_empty());
    }

    #[test]
    fn times_keep_microseconds() {
        let at = UNIX_EPOCH + Duration::from_micros(1_763_779_646_123_456);
        let t = micros_to_t(unix_micros(at));
        assert_eq!(serde_json::to_string(&t).unwrap(), "1763779646.123456");
        let before = UNIX_EPOCH - Duration::from_micros(5);
        assert_eq!(unix_micros(before), -5);
    }
}
