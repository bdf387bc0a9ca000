//! Hash tables keyed by values that are already well spread: our own transaction ids (a
//! counter) and the keyed hashes of transaction keys. They need no SipHash (nothing an
//! attacker chooses reaches them unkeyed), so one multiplication stands in for it.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Mixes integer keys with one multiplication by an odd constant (Fibonacci hashing): the
/// low bits of consecutive ids stay distinct and the high bits (hashbrown's control bytes)
/// depend on all of them.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // not used by the keys of these tables (integers), but correct for any
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(26) ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// A `HashMap` keyed by a transaction id or a keyed hash.
pub(crate) type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;
