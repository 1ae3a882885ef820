//! Sharding: one bot token across N replicas, each monitoring its own share
//! of the entities, with no coordinator.
//!
//! Replica `i` of `n` ([`Shard`]) owns the entities for which it has the
//! highest weight among the `n` replicas: rendezvous (highest random weight)
//! hashing, keyed on the entity id, so every job of an entity stays on one
//! replica. Growing from `n` to `n + 1` replicas moves about `1/(n + 1)` of
//! the entities, and only onto the new replica; shrinking moves only the
//! removed replica's entities.
//!
//! The weight is frozen: FNV-1a (64 bit) over the 20 bytes
//! `SEED ‖ entity id ‖ replica index` (little-endian `u64`, `u64`, `u32`), then
//! the `fmix64` finalizer of MurmurHash3 (the crate's one frozen hash,
//! `src/hash.rs`, which the scheduler's spread phases share), with
//! [`Shard::SEED`] written out below. It is not `std`'s hasher, whose output
//! may change between releases: changing this function would reshuffle every
//! deployment on upgrade, so the tests pin it with vectors computed by an
//! independent implementation (`src/shard/vectors.py`, which the tests run
//! again).
//!
//! The filter is applied after Grafolean's own bot filter and before anything
//! is fetched per entity (see [`crate::fetch`]), and to standalone configs.

use std::fmt;

/// The most replicas a [`Shard`] can name ([`Shard::MAX_COUNT`]).
pub(crate) const MAX_SHARDS: u32 = 1024;

/// This replica's share: index `i` (from 0) of `n` replicas (`--shard i/n`).
///
/// Replica `i` owns the entities for which its [`weight`](Shard::weight) is
/// the highest of the `n`: rendezvous (highest random weight) hashing on the
/// entity id. Growing from `n` to `n + 1` replicas moves about `1/(n + 1)` of
/// the entities, all onto the new replica; shrinking moves only the removed
/// replica's. `docs/sharding.md` says how to roll replicas.
///
/// ```
/// use grafolean_collector::Shard;
/// let shards: Vec<Shard> = (0..4).map(|i| Shard::new(i, 4).unwrap()).collect();
/// // Every entity is owned by exactly one of the 4 replicas.
/// for entity in 1..1000 {
///     assert_eq!(shards.iter().filter(|s| s.owns(entity)).count(), 1);
/// }
/// assert!(Shard::new(4, 4).is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shard {
    index: u32,
    count: u32,
}

/// Why a shard is invalid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ShardError {
    /// The count is 0.
    #[error("the number of replicas must be at least 1")]
    ZeroCount,
    /// The count is above [`Shard::MAX_COUNT`].
    #[error("{count} replicas is more than the limit of {MAX_SHARDS}")]
    TooMany {
        /// The count given.
        count: u32,
    },
    /// The index is not below the count.
    #[error("replica index {index} is out of range for {count} replicas (indexes start at 0)")]
    IndexOutOfRange {
        /// The index given.
        index: u32,
        /// The count given.
        count: u32,
    },
}

impl Shard {
    /// The seed of the frozen weight function: the ASCII bytes of `grafolea`
    /// read as a big-endian number (they are hashed little-endian).
    pub const SEED: u64 = 0x6772_6166_6f6c_6561;

    /// The most replicas a shard can name. Each entity's owner costs one hash
    /// per replica, so a refresh of `E` entities costs `E · n` hashes.
    pub const MAX_COUNT: u32 = MAX_SHARDS;

    /// Replica `index` (from 0) of `count` replicas; an error names what is
    /// wrong (a count of 0 or above [`Shard::MAX_COUNT`], an index not below
    /// the count) as the `--shard` setting would.
    pub fn new(index: u32, count: u32) -> Result<Self, crate::settings::error::SettingsError> {
        Self::checked(index, count).map_err(|e| crate::settings::error::SettingsError {
            setting: "--shard (SHARD)",
            reason: e.to_string(),
        })
    }

    /// [`Shard::new`], with the reason as a [`ShardError`].
    pub(crate) fn checked(index: u32, count: u32) -> Result<Self, ShardError> {
        if count == 0 {
            return Err(ShardError::ZeroCount);
        }
        if count > MAX_SHARDS {
            return Err(ShardError::TooMany { count });
        }
        if index >= count {
            return Err(ShardError::IndexOutOfRange { index, count });
        }
        Ok(Self { index, count })
    }

    /// This replica's index, from 0.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The number of replicas.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Whether this replica monitors the entity `entity_id`.
    pub fn owns(&self, entity_id: u64) -> bool {
        owner(entity_id, self.count) == self.index
    }

    /// The frozen weight of `replica` for `entity_id`; the owner of an entity
    /// is the replica with the highest weight, the lowest index on a tie.
    ///
    /// FNV-1a (64 bit) over the 20 bytes `SEED ‖ entity id ‖ replica`
    /// (little-endian `u64`, `u64`, `u32`; [`Shard::SEED`]), then the `fmix64`
    /// finalizer of MurmurHash3. It never changes: a change would reshuffle
    /// every deployment on upgrade.
    ///
    /// ```
    /// use grafolean_collector::Shard;
    /// assert_eq!(Shard::weight(1, 0), 0x5537_8c09_b9d7_479d);
    /// ```
    pub fn weight(entity_id: u64, replica: u32) -> u64 {
        let mut bytes = [0u8; 20];
        bytes[..8].copy_from_slice(&Self::SEED.to_le_bytes());
        bytes[8..16].copy_from_slice(&entity_id.to_le_bytes());
        bytes[16..].copy_from_slice(&replica.to_le_bytes());
        crate::hash::fnv1a_fmix64(&bytes)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The replica (of `count`) that owns `entity_id`.
pub(crate) fn owner(entity_id: u64, count: u32) -> u32 {
    let mut best = (0, Shard::weight(entity_id, 0));
    for replica in 1..count {
        let w = Shard::weight(entity_id, replica);
        if w > best.1 {
            best = (replica, w);
        }
    }
    best.0
}

/// Keeps the entities of `configs` that `shard` owns (all of them without a shard).
pub(crate) fn retain_owned(shard: Option<&Shard>, configs: &mut crate::config::JobConfigs) {
    if let Some(shard) = shard {
        configs.entities.retain(|e| shard.owns(e.entity_id));
    }
}

/// Parses `SHARD` and `SHARD_COUNT` (either may be absent). `SHARD` is
/// `i/n`, or an ordinal: a number, or a name that ends in one (`bot-3`,
/// `bot@3`, a StatefulSet's pod name), which needs `SHARD_COUNT`.
///
/// Errors name the setting (as flag and environment variable) and the reason.
pub(crate) fn parse(
    shard: Option<&str>,
    count: Option<&str>,
) -> Result<Option<Shard>, (&'static str, String)> {
    const SHARD: &str = "--shard (SHARD)";
    const COUNT: &str = "--shard-count (SHARD_COUNT)";
    let shard = shard.map(str::trim).filter(|s| !s.is_empty());
    let count = match count.map(str::trim).filter(|s| !s.is_empty()) {
        Some(c) => Some(c.parse::<u32>().map_err(|_| {
            (
                COUNT,
                format!(
                    "{c:?} is not a number of replicas (a whole number from 1 to {MAX_SHARDS})"
                ),
            )
        })?),
        None => None,
    };
    let (index, n) = match (shard, count) {
        (None, None) => return Ok(None),
        (None, Some(1)) => (0, 1),
        (None, Some(n)) => {
            return Err((
                SHARD,
                format!(
                    "SHARD_COUNT is {n}, but this replica's ordinal is not set: set SHARD to its index (0 to {}) or to i/{n}",
                    n.saturating_sub(1)
                ),
            ));
        }
        (Some(s), count) => match s.split_once('/') {
            Some((i, n)) => {
                let i = i.trim().parse::<u32>().map_err(|_| {
                    (
                        SHARD,
                        format!("{s:?}: the index before '/' is not a whole number"),
                    )
                })?;
                let n = n.trim().parse::<u32>().map_err(|_| {
                    (
                        SHARD,
                        format!("{s:?}: the count after '/' is not a whole number"),
                    )
                })?;
                if let Some(c) = count.filter(|&c| c != n) {
                    return Err((
                        COUNT,
                        format!("{c} disagrees with SHARD {s:?}; give the count once"),
                    ));
                }
                (i, n)
            }
            None => {
                let digits = s.len() - s.trim_end_matches(|c: char| c.is_ascii_digit()).len();
                let i = s[s.len() - digits..].parse::<u32>().map_err(|_| {
                    (
                        SHARD,
                        format!("{s:?} is neither i/n nor an ordinal (a name ending in a number, such as bot-3)"),
                    )
                })?;
                let Some(n) = count else {
                    return Err((
                        COUNT,
                        format!(
                            "SHARD {s:?} gives this replica's ordinal ({i}) but not the number of replicas: set SHARD_COUNT, or give SHARD as {i}/n"
                        ),
                    ));
                };
                (i, n)
            }
        },
    };
    Shard::checked(index, n).map(Some).map_err(|e| {
        let setting = match e {
            ShardError::IndexOutOfRange { .. } => SHARD,
            _ if shard.is_some_and(|s| s.contains('/')) => SHARD,
            _ => COUNT,
        };
        (setting, e.to_string())
    })
}

#[cfg(test)]
mod tests;
