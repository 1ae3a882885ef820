#!/usr/bin/env python3
"""An independent implementation of the frozen shard weight (src/shard.rs).

It printed the vectors that `frozen_test_vectors` in src/shard/tests.rs pins,
and `cargo test` runs it again (`python_reproduces_the_frozen_test_vectors`)
to check that it still prints exactly those. It follows the description in
the module documentation, not the Rust code:

    weight(entity, replica) = fmix64(FNV-1a-64(SEED || entity || replica))

over the 20 bytes SEED (u64), entity id (u64), replica index (u32), all
little-endian, with SEED the ASCII bytes "grafolea" read as a big-endian
number; fmix64 is MurmurHash3's 64-bit finalizer. The owner of an entity
among n replicas is the replica with the highest weight, the lowest index on
a tie.

Usage: python3 src/shard/vectors.py
"""

import struct

MASK = (1 << 64) - 1
SEED = int.from_bytes(b"grafolea", "big")
FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3


def fnv1a64(data):
    h = FNV_OFFSET
    for b in data:
        h ^= b
        h = (h * FNV_PRIME) & MASK
    return h


def fmix64(h):
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & MASK
    h ^= h >> 33
    h = (h * 0xC4CEB9FE1A85EC53) & MASK
    return h ^ (h >> 33)


def weight(entity, replica):
    return fmix64(fnv1a64(struct.pack("<QQI", SEED, entity, replica)))


def owner(entity, n):
    weights = [weight(entity, r) for r in range(n)]
    # max() returns the first of equal maxima: the lowest index on a tie.
    return max(range(n), key=lambda r: weights[r])


WEIGHTS = [
    (0, 0),
    (1, 0),
    (1, 1),
    (42, 7),
    (1127398355, 3),
    ((1 << 63) - 1, 1023),
    (MASK, 0),
]
OWNER_ENTITIES = [1, 2, 3, 42, 1000, 1127398355, MASK]
OWNER_COUNTS = [1, 2, 3, 4, 5, 8, 16]


def main():
    for entity, replica in WEIGHTS:
        print("weight %d %d 0x%016x" % (entity, replica, weight(entity, replica)))
    for entity in OWNER_ENTITIES:
        owners = " ".join(str(owner(entity, n)) for n in OWNER_COUNTS)
        print("owners %d %s" % (entity, owners))


if __name__ == "__main__":
    main()
