//! Hashers for the stack's tables, cheaper than the standard library's SipHash.
//!
//! Two kinds of key reach them. Our own counters (transaction and session ids) and keyed
//! hashes that are already well spread need only mixing: [`IdMap`] does one multiplication.
//! Keys a peer chooses (Call-IDs, tags, which RFC 3261 §19.3 leaves to the sender) must not let
//! it pile entries into one bucket, so [`KeyedMap`] hashes with secret keys drawn once per
//! process: a folded 64×64→128-bit multiply per 16 bytes, the construction of the hashers
//! that `hashbrown` and `ahash` use by default. It is not a cryptographic MAC; like theirs, its
//! resistance rests on the keys never leaving the process. SipHash costs about three times as
//! many instructions for the short keys SIP tables hold, and these tables see several lookups
//! per message.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::OnceLock;

/// Mixes integer keys with one multiplication by an odd constant (Fibonacci hashing): the
/// low bits of consecutive ids stay distinct and the high bits (hashbrown's control bytes)
/// depend on all of them.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

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

/// A `HashMap` keyed by our own counters (transaction ids, session keys) or by keyed hashes:
/// nothing a peer chooses reaches it unhashed.
pub type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// A `HashMap` keyed by values a peer may choose (Call-IDs, tags, dialog ids), hashed with
/// the process's secret keys.
pub type KeyedMap<K, V> = HashMap<K, V, KeyedState>;

/// Builds [`KeyedHasher`]s with the process's secret keys (drawn once, from the standard
/// library's randomly keyed hasher).
#[derive(Debug, Clone, Copy)]
pub struct KeyedState {
    keys: [u64; 3],
}

impl Default for KeyedState {
    fn default() -> Self {
        static KEYS: OnceLock<[u64; 3]> = OnceLock::new();
        let keys = *KEYS.get_or_init(|| {
            let r = std::collections::hash_map::RandomState::new();
            [r.hash_one(1u8), r.hash_one(2u8), r.hash_one(3u8)]
        });
        KeyedState { keys }
    }
}

impl BuildHasher for KeyedState {
    type Hasher = KeyedHasher;

    fn build_hasher(&self) -> KeyedHasher {
        KeyedHasher {
            acc: self.keys[2],
            keys: [self.keys[0], self.keys[1]],
        }
    }
}

/// The hasher [`KeyedState`] builds: see the module's text.
#[derive(Debug, Clone)]
pub struct KeyedHasher {
    acc: u64,
    keys: [u64; 2],
}

/// The 128-bit product of `a` and `b`, its halves xored: every output bit depends on every
/// input bit of both.
#[inline]
fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// Eight bytes from the start of `b` (which has at least eight) as a little-endian integer.
#[inline]
fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// Four bytes from `at` (the slice has them) as a little-endian integer.
#[inline]
fn u32_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u64::from(u32::from_le_bytes(w))
}

/// The last 0–15 bytes as two integers that, with the length, name them exactly: reads of
/// fixed size that may overlap (no copy loop, no call to `memcpy`).
#[inline]
fn tail(b: &[u8]) -> (u64, u64) {
    let n = b.len();
    if n >= 8 {
        (u64_at(b, 0), u64_at(b, n - 8))
    } else if n >= 4 {
        (u32_at(b, 0), u32_at(b, n - 4))
    } else if n > 0 {
        // one to three bytes: first, middle and last cover them all
        let v = u64::from(b[0]) | u64::from(b[n / 2]) << 8 | u64::from(b[n - 1]) << 16;
        (v, 0)
    } else {
        (0, 0)
    }
}

impl KeyedHasher {
    #[inline]
    fn mix(&mut self, a: u64, b: u64) {
        self.acc = fold(self.acc ^ a ^ self.keys[0], b ^ self.keys[1]);
    }
}

impl Hasher for KeyedHasher {
    #[inline]
    fn finish(&self) -> u64 {
        fold(self.acc, self.keys[0].rotate_left(17))
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(16);
        for c in &mut chunks {
            self.mix(u64_at(c, 0), u64_at(c, 8));
        }
        // the length goes into the last fold, so "a" and "a\0" differ, and so do two
        // tails whose overlapping reads coincide
        let (lo, hi) = tail(chunks.remainder());
        self.mix(lo, hi ^ (bytes.len() as u64).rotate_right(8));
    }

    #[inline]
    fn write_u8(&mut self, n: u8) {
        self.mix(u64::from(n), 1 << 56);
    }

    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.mix(u64::from(n), 4 << 56);
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.mix(n, 8 << 56);
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.mix(n as u64, 9 << 56);
    }
}

/// Which of `count` shards owns the calls with this Call-ID: agents that share one socket,
/// one per core, each own the Call-IDs that hash to them (keyed, so that a peer cannot pick
/// Call-IDs that all land on one shard). The same in every thread of a process.
pub fn shard_of(call_id: &[u8], count: usize) -> usize {
    if count <= 1 {
        return 0;
    }
    let h = KeyedState::default().hash_one(call_id);
    // the high half, multiplied down into 0..count: no bias worth naming, no division
    ((u128::from(h >> 32) * count as u128) >> 32) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> u64 {
        KeyedState::default().hash_one(s)
    }

    #[test]
    fn equal_keys_hash_equal_and_near_keys_apart() {
        assert_eq!(h("a84b4c76e66710"), h("a84b4c76e66710"));
        let near = [
            "",
            "a",
            "a\0",
            "b",
            "ab",
            "ba",
            "a84b4c76e66710",
            "a84b4c76e66711",
            "1928301774",
            "1928301775",
            "0123456789abcdef",
            "0123456789abcdeg",
            "0123456789abcdef0",
            "0123456789abcdef1",
        ];
        let mut seen: Vec<u64> = near.iter().map(|s| h(s)).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), near.len(), "a collision among near keys");
    }

    #[test]
    fn every_byte_of_every_length_counts() {
        // the tails are read with overlapping fixed-size loads: each byte must still reach
        // the hash, and prefixes (same bytes, other lengths) must differ
        let s = KeyedState::default();
        let text: Vec<u8> = (0u8..48).map(|i| b'a' + i % 26).collect();
        let mut prefixes: Vec<u64> = (0..=text.len()).map(|n| s.hash_one(&text[..n])).collect();
        prefixes.sort_unstable();
        prefixes.dedup();
        assert_eq!(prefixes.len(), text.len() + 1);
        for n in 1..=text.len() {
            let base = s.hash_one(&text[..n]);
            for i in 0..n {
                let mut k = text[..n].to_vec();
                k[i] ^= 0x20;
                assert_ne!(s.hash_one(&k), base, "length {n}, byte {i}");
            }
        }
    }

    #[test]
    fn every_builder_of_a_process_agrees() {
        // every builder of one process agrees (tables built at different times must too)
        let (a, b) = (KeyedState::default(), KeyedState::default());
        assert_eq!(a.hash_one("call-1@host"), b.hash_one("call-1@host"));
    }

    #[test]
    fn one_flipped_bit_moves_about_half_of_the_bucket_bits() {
        // the low bits pick the bucket, the top seven hashbrown's control byte: a one-bit
        // change of a tag must move both
        let s = KeyedState::default();
        let base = *b"tag-0123456789ab-xyz";
        let mut low = 0u32;
        let mut total = 0u32;
        for i in 0..base.len() * 8 {
            let mut k = base;
            k[i / 8] ^= 1 << (i % 8);
            let d = s.hash_one(k) ^ s.hash_one(base);
            low += (d & 0xffff).count_ones();
            total += d.count_ones();
        }
        let n = (base.len() * 8) as u32;
        // 32 of 64 bits and 8 of 16 on average for a good mix; far from 0 or all
        assert!(
            (24 * n..=40 * n).contains(&total),
            "{} bits per flip",
            total / n
        );
        assert!(
            (5 * n..=11 * n).contains(&low),
            "{} low bits per flip",
            low / n
        );
    }
}
