//! The one frozen hash of the crate: FNV-1a (64 bit) followed by the
//! `fmix64` finalizer of MurmurHash3.
//!
//! Two contracts rest on it: the phase of every [`Align::Spread`] job
//! (`scheduler/timing.rs`) and the owner of every entity under sharding
//! (`shard.rs`). Changing it, even its constants or byte order, would move
//! every spread job's phase and reshuffle every sharded deployment on upgrade.
//! That is why it is written out here and not taken from `std` (whose hasher
//! may change between releases). The tests pin it with vectors computed by an
//! independent implementation (`src/shard/vectors.py`, and the pinned hashes
//! in `scheduler/timing/tests.rs`).
//!
//! [`Align::Spread`]: crate::Align::Spread

/// FNV-1a (64 bit) of `bytes`, followed by the `fmix64` finalizer of
/// MurmurHash3 so that the low bits are well mixed. Frozen: see the module
/// documentation.
pub(crate) fn fnv1a_fmix64(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(PRIME);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}
