//! Bytes per key with a memory cap: exact while the keys fit, and past the
//! cap a weighted Space-Saving summary whose error is known.
//!
//! A [`TopMap`] adds bytes to keys (IP addresses, protocols, connections,
//! ports). While it holds at most `cap` keys it is an exact map. When it
//! grows past `cap` by its slack (a quarter of `cap`
//! for a window, as much again for a minute), it keeps the `cap` keys with the
//! most bytes and forgets the rest, and the largest count it forgot becomes
//! its **floor**. A key that arrives after that starts at the floor, as in
//! Space-Saving (Metwally et al., 2005), so that:
//!
//! - every count is an upper bound of the key's true bytes: a forgotten
//!   key's true bytes were at most its count, which is at most the floor;
//! - a count is at most `error` (the floor when the key came in) above the
//!   truth, so `count - error` is a lower bound;
//! - any key whose true bytes exceed the floor is held, so the top 10 are
//!   the true top 10 whenever the 10th count, less its error, is above the
//!   floor.
//!
//! [`TopMap::exact`] says whether anything was ever forgotten. The bot
//! exports it per window, with the floor, so a user sees when a top list is
//! an estimate and by how much. The property test below checks the bounds
//! against an exact map.

use std::collections::HashMap;
use std::hash::Hash;

use foldhash::fast::RandomState;
use serde::{Deserialize, Serialize};

/// A key's bytes, and how much of them may be an overestimate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Count {
    /// Bytes: exact when `error` is 0, else an upper bound.
    pub bytes: u64,
    /// How far `bytes` may lie above the truth.
    pub error: u64,
}

/// Bytes per key, exact up to `cap` keys and bounded past it (see the
/// module's documentation).
///
/// ```
/// use grafolean_netflow_bot::topn::TopMap;
/// let mut m = TopMap::new(100);
/// m.add("a", 10);
/// m.add("b", 30);
/// m.add("a", 5);
/// let top: Vec<_> = m.top(1).into_iter().map(|(k, c)| (*k, c.bytes)).collect();
/// assert_eq!(top, [("b", 30)]);
/// assert!(m.exact());
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(
    into = "TopMapState<K>",
    from = "TopMapState<K>",
    bound(
        serialize = "K: Clone + Serialize",
        deserialize = "K: Hash + Eq + Deserialize<'de>"
    )
)]
pub struct TopMap<K> {
    map: HashMap<K, Count, RandomState>,
    cap: usize,
    slack: usize,
    floor: u64,
    forgot: bool,
}

impl<K: Hash + Eq + Clone + Ord> TopMap<K> {
    /// An empty map that keeps at least `cap` keys (at least 10), and
    /// prunes when it holds a quarter more.
    pub fn new(cap: usize) -> Self {
        Self::with_slack(cap, cap / 4)
    }

    /// An empty map that keeps at least `cap` keys (at least 10), and
    /// prunes back to `cap` when it holds `slack` more: a large slack makes
    /// pruning rarer (a map fed one flow at a time past its cap prunes
    /// every `slack` new keys, at a cost of `cap + slack`), a small one
    /// holds less.
    pub fn with_slack(cap: usize, slack: usize) -> Self {
        Self {
            map: HashMap::default(),
            cap: cap.max(10),
            slack: slack.max(1),
            floor: 0,
            forgot: false,
        }
    }

    /// Adds `bytes` to `key`.
    #[inline]
    pub fn add(&mut self, key: K, bytes: u64) {
        self.add_count(key, Count { bytes, error: 0 });
    }

    /// Adds a count (from another map being merged in) to `key`.
    pub fn add_count(&mut self, key: K, count: Count) {
        let floor = self.floor;
        let entry = self.map.entry(key).or_insert(Count {
            bytes: floor,
            error: floor,
        });
        entry.bytes = entry.bytes.saturating_add(count.bytes);
        entry.error = entry.error.saturating_add(count.error);
        if self.map.len() > self.cap + self.slack {
            self.prune();
        }
    }

    /// Adds every key of `other`, with its error and floor.
    pub fn merge(&mut self, other: &TopMap<K>) {
        // A key that one side does not hold may have been forgotten there,
        // with at most that side's floor of bytes: a key only here gets
        // other's floor, a key only there starts at this floor, and a key
        // neither holds has at most the sum of the floors.
        let here = self.floor;
        let there = other.floor;
        if there > 0 {
            for (key, count) in self.map.iter_mut() {
                if !other.map.contains_key(key) {
                    count.bytes = count.bytes.saturating_add(there);
                    count.error = count.error.saturating_add(there);
                }
            }
        }
        for (key, count) in &other.map {
            let entry = self.map.entry(key.clone()).or_insert(Count {
                bytes: here,
                error: here,
            });
            entry.bytes = entry.bytes.saturating_add(count.bytes);
            entry.error = entry.error.saturating_add(count.error);
        }
        self.floor = here.saturating_add(there);
        self.forgot |= other.forgot;
        if self.map.len() > self.cap {
            self.prune();
        }
    }

    /// Keeps the `cap` keys with the most bytes; the largest forgotten count
    /// becomes the floor.
    fn prune(&mut self) {
        let mut counts: Vec<u64> = self.map.values().map(|c| c.bytes).collect();
        let at = counts.len() - self.cap;
        let (_, threshold, _) = counts.select_nth_unstable(at);
        let threshold = *threshold;
        // Forget every key below the threshold, then enough of those at it
        // to get down to `cap`.
        let below = counts.iter().filter(|&&b| b < threshold).count();
        let mut drop_equal = self.map.len() - self.cap - below;
        let mut forgotten_max = 0;
        self.map.retain(|_, c| {
            let forget = c.bytes < threshold || (c.bytes == threshold && drop_equal > 0);
            if forget {
                if c.bytes == threshold {
                    drop_equal -= 1;
                }
                forgotten_max = forgotten_max.max(c.bytes);
            }
            !forget
        });
        self.floor = self.floor.max(forgotten_max);
        self.forgot = true;
    }

    /// The `n` keys with the most bytes, most first; ties by key, so the
    /// order is stable.
    pub fn top(&self, n: usize) -> Vec<(&K, Count)> {
        let mut all: Vec<(&K, Count)> = self.map.iter().map(|(k, c)| (k, *c)).collect();
        let by = |a: &(&K, Count), b: &(&K, Count)| b.1.bytes.cmp(&a.1.bytes).then(a.0.cmp(b.0));
        if all.len() > n {
            all.select_nth_unstable_by(n, by);
            all.truncate(n);
        }
        all.sort_unstable_by(by);
        all
    }

    /// Keeps only the `n` keys with the most bytes, for a map that will only
    /// be asked for its top `n` (a closed window): its exactness and floor
    /// stay as they were.
    pub fn keep_top(&mut self, n: usize) {
        if self.map.len() > n {
            let keep: Vec<(K, Count)> = self
                .top(n)
                .into_iter()
                .map(|(k, c)| (k.clone(), c))
                .collect();
            self.map = keep.into_iter().collect();
        }
    }

    /// Whether every count is exact: no key was ever forgotten.
    pub fn exact(&self) -> bool {
        !self.forgot
    }

    /// The largest count forgotten so far (0 while exact): any key with more
    /// true bytes than this is held.
    pub fn floor(&self) -> u64 {
        self.floor
    }

    /// How many keys are held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The cap it was made with.
    pub fn cap(&self) -> usize {
        self.cap
    }
}

/// A [`TopMap`] as it is written to a state file: its entries as a list,
/// so that any key (such as an address pair) can be written.
#[derive(Serialize, Deserialize)]
struct TopMapState<K> {
    entries: Vec<(K, Count)>,
    cap: usize,
    slack: usize,
    floor: u64,
    forgot: bool,
}

impl<K: Clone> From<TopMap<K>> for TopMapState<K> {
    fn from(m: TopMap<K>) -> Self {
        Self {
            entries: m.map.into_iter().collect(),
            cap: m.cap,
            slack: m.slack,
            floor: m.floor,
            forgot: m.forgot,
        }
    }
}

impl<K: Hash + Eq> From<TopMapState<K>> for TopMap<K> {
    fn from(s: TopMapState<K>) -> Self {
        Self {
            map: s.entries.into_iter().collect(),
            cap: s.cap.max(10),
            slack: s.slack.max(1),
            floor: s.floor,
            forgot: s.forgot,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (xorshift), so failures reproduce.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    fn check_bounds(m: &TopMap<u32>, truth: &HashMap<u32, u64>) {
        for (k, c) in &m.map {
            let t = truth.get(k).copied().unwrap_or(0);
            assert!(c.bytes >= t, "key {k}: count {} below truth {t}", c.bytes);
            assert!(
                c.bytes - c.error <= t,
                "key {k}: count {} less error {} above truth {t}",
                c.bytes,
                c.error
            );
        }
        for (k, t) in truth {
            if *t > m.floor() {
                assert!(
                    m.map.contains_key(k),
                    "key {k} with {t} > floor {} lost",
                    m.floor()
                );
            }
        }
    }

    #[test]
    fn exact_under_the_cap() {
        let mut m = TopMap::new(1000);
        let mut truth = HashMap::new();
        let mut rng = Rng(7);
        for _ in 0..20_000 {
            let k = (rng.next() % 900) as u32;
            let b = rng.next() % 1500;
            m.add(k, b);
            *truth.entry(k).or_insert(0) += b;
        }
        assert!(m.exact());
        for (k, c) in &m.map {
            assert_eq!(c.bytes, truth[k]);
            assert_eq!(c.error, 0);
        }
    }

    #[test]
    fn bounds_hold_past_the_cap_for_many_streams() {
        for seed in 1..40u64 {
            let mut rng = Rng(seed * 7919);
            let cap = 10 + (rng.next() % 50) as usize;
            let keys = 20 + rng.next() % 2000;
            let mut m = TopMap::new(cap);
            let mut truth = HashMap::new();
            for _ in 0..5_000 {
                // Skewed: low keys are heavy hitters.
                let r = rng.next() % keys;
                let k = (r * r / keys) as u32;
                let b = 1 + rng.next() % 1500;
                m.add(k, b);
                *truth.entry(k).or_insert(0) += b;
            }
            assert!(m.len() <= cap + cap / 4);
            check_bounds(&m, &truth);
        }
    }

    #[test]
    fn merges_keep_the_bounds() {
        for seed in 1..30u64 {
            let mut rng = Rng(seed * 104_729);
            let mut total = TopMap::new(40);
            let mut truth = HashMap::new();
            for _ in 0..8 {
                let mut minute = TopMap::new(30 + (rng.next() % 40) as usize);
                for _ in 0..1_000 {
                    let k = (rng.next() % 300) as u32;
                    let b = 1 + rng.next() % 100;
                    minute.add(k, b);
                    *truth.entry(k).or_insert(0) += b;
                }
                total.merge(&minute);
                check_bounds(&total, &truth);
            }
        }
    }

    #[test]
    fn merging_exact_maps_is_exact() {
        let mut a = TopMap::new(100);
        let mut b = TopMap::new(100);
        a.add(1u32, 5);
        b.add(1, 7);
        b.add(2, 3);
        a.merge(&b);
        assert!(a.exact());
        let top: Vec<_> = a.top(10).into_iter().map(|(k, c)| (*k, c.bytes)).collect();
        assert_eq!(top, [(1, 12), (2, 3)]);
    }

    #[test]
    fn top_breaks_ties_by_key() {
        let mut m = TopMap::new(100);
        for k in [5u32, 3, 9, 1] {
            m.add(k, 10);
        }
        let top: Vec<_> = m.top(3).into_iter().map(|(k, _)| *k).collect();
        assert_eq!(top, [1, 3, 5]);
    }
}
