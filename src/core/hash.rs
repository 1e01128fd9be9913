//! The one hash of the library's maps of byte keys.
//!
//! The mix is multiplicative and word-at-a-time, a few nanoseconds for a
//! domain name, where SipHash would cost more than the rest of a hot-path
//! increment; the finish is murmur3's fmix64, so that every input bit
//! reaches both the high bits that pick a shard and the low bits that pick
//! hashbrown's bucket. The seed is the caller's: the hot path's maps hold
//! keys the network's other side chooses and seed each structure at random
//! (`shared::hash`); the core's maps hold keys from authenticated peers and
//! use the fixed default, since the core is deterministic.

use std::hash::{BuildHasher, Hasher};

/// A seed; see the module docs.
#[derive(Clone, Copy, Debug)]
pub struct Seeded(u64);

impl Seeded {
    pub const fn with_seed(seed: u64) -> Seeded {
        Seeded(seed)
    }

    /// The hash of a byte string, e.g. to pick a shard.
    pub fn hash_bytes(&self, bytes: &[u8]) -> u64 {
        let mut h = self.build_hasher();
        h.write(bytes);
        h.finish()
    }
}

/// The fixed seed, for the core's deterministic maps.
impl Default for Seeded {
    fn default() -> Seeded {
        Seeded(0x9e37_79b9_7f4a_7c15)
    }
}

impl BuildHasher for Seeded {
    type Hasher = Mix;
    fn build_hasher(&self) -> Mix {
        Mix(self.0)
    }
}

/// The hasher of [`Seeded`].
#[derive(Debug)]
pub struct Mix(u64);

impl Mix {
    fn add(&mut self, v: u64) {
        self.0 = (self.0 ^ v)
            .rotate_left(23)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

impl Hasher for Mix {
    fn write(&mut self, bytes: &[u8]) {
        // Whole words by a fixed-size copy (a load), the tail alone by a
        // variable one: a variable copy per word costs a memcpy call.
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let mut b = [0u8; 8];
            b.copy_from_slice(word);
            self.add(u64::from_le_bytes(b));
        }
        let tail = words.remainder();
        if !tail.is_empty() {
            let mut b = [0u8; 8];
            b[..tail.len()].copy_from_slice(tail);
            self.add(u64::from_le_bytes(b));
        }
        // The length, so that "a\0" and "a" differ.
        self.add(bytes.len() as u64);
    }
    fn write_u32(&mut self, v: u32) {
        self.add(u64::from(v));
    }
    fn write_u64(&mut self, v: u64) {
        self.add(v);
    }
    fn write_u128(&mut self, v: u128) {
        self.add(v as u64);
        self.add((v >> 64) as u64);
    }
    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_keys_hash_equal_and_seeds_and_lengths_differ() {
        let (a, b) = (Seeded::with_seed(1), Seeded::with_seed(2));
        assert_eq!(a.hash_bytes(b"aol.com"), a.hash_bytes(b"aol.com"));
        assert_ne!(a.hash_bytes(b"aol.com"), b.hash_bytes(b"aol.com"));
        assert_ne!(a.hash_bytes(b"a"), a.hash_bytes(b"a\0"));
        // Shard bits (the top six) spread over sequential keys.
        let shards: std::collections::BTreeSet<u64> = (0..1000u32)
            .map(|i| a.hash_bytes(format!("domain{i}.example").as_bytes()) >> 58)
            .collect();
        assert!(shards.len() > 56, "{} of 64 shards used", shards.len());
    }
}
