//! A replicated key/value cache on the hot path (`Replicate "name" { type =
//! "cache" }`, Sieve `ec_cluster_cache_get` / `ec_cluster_cache_set`).
//!
//! Any MTA thread reads and writes the cache directly; the engine thread
//! drains this node's writes ([`ClusterCache::drain_changed`]) into
//! `CacheUpdate` messages and applies the peers' ([`ClusterCache::apply`]).
//! The merge rule, stamps, expiry and eviction are
//! `core::replicate::cache`'s; this is its concurrent shell.
//!
//! One read-write lock guards the whole cache rather than shards as in the
//! gauge table: `max_size` eviction must pick the soonest-expiring entry of
//! the *whole* cache (all nodes evicting the same keys depends on it), and a
//! cache is read once per policy decision, not once per connection event.
//! Readers share the lock; a write holds it for one map insert and one
//! index update.
//!
//! Every core operation takes the wall-clock time in milliseconds
//! (`*_at`), so tests are deterministic; the plain forms read the clock.

use parking_lot::{Mutex, RwLock};

use crate::core::replicate::cache::{
    CacheEntry, CacheState, Clock, MAX_CACHE_KEY, MAX_CACHE_VALUE,
};

use super::wall_ms;

/// Why a write was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheError {
    /// The key is longer than the wire carries.
    KeyTooLong(usize),
    /// The value is larger than the wire carries.
    ValueTooLarge(usize),
}

impl std::fmt::Display for CacheError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CacheError::KeyTooLong(n) => {
                write!(f, "cache key of {n} bytes exceeds {MAX_CACHE_KEY}")
            }
            CacheError::ValueTooLarge(n) => {
                write!(f, "cache value of {n} bytes exceeds {MAX_CACHE_VALUE}")
            }
        }
    }
}

impl std::error::Error for CacheError {}

/// Parses a TTL as `ec_cluster_cache_set` takes it: seconds, or a number
/// with an `H` (hours) or `M` (minutes) suffix, either case; `0` means the
/// entry never expires. Returns seconds.
pub fn parse_ttl(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (digits, unit) = match t.as_bytes().last() {
        Some(b'H' | b'h') => (&t[..t.len() - 1], 3600),
        Some(b'M' | b'm') => (&t[..t.len() - 1], 60),
        _ => (t, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "invalid TTL '{text}': expected seconds, or a number followed by H or M"
        ));
    }
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .ok_or_else(|| format!("invalid TTL '{text}': too large"))
}

#[derive(Debug)]
struct Inner {
    state: CacheState,
    clock: Clock,
}

/// See the module docs.
#[derive(Debug)]
pub struct ClusterCache {
    /// This node's name: the origin of its writes.
    origin: String,
    inner: RwLock<Inner>,
    /// This node's writes since the engine last drained, in order.
    changed: Mutex<Vec<CacheEntry>>,
}

impl ClusterCache {
    /// An empty cache for node `origin`, holding at most `max_size` values
    /// (`None`: unbounded).
    pub fn new(origin: &str, max_size: Option<usize>) -> ClusterCache {
        ClusterCache {
            origin: origin.to_string(),
            inner: RwLock::new(Inner {
                state: CacheState::new(max_size),
                clock: Clock::new(),
            }),
            changed: Mutex::new(Vec::new()),
        }
    }

    /// The live value of `key`.
    pub fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.get_at(key, wall_ms())
    }

    /// The live value of `key` at `now_ms`.
    pub fn get_at(&self, key: &[u8], now_ms: u64) -> Option<Vec<u8>> {
        self.inner.read().state.get(key, now_ms).map(<[u8]>::to_vec)
    }

    /// Sets `key` to `value` for `ttl_secs` seconds (0: never expires; see
    /// [`parse_ttl`]).
    pub fn set(&self, key: &[u8], value: &[u8], ttl_secs: u64) -> Result<(), CacheError> {
        self.set_at(key, value, ttl_secs, wall_ms())
    }

    /// [`ClusterCache::set`] at `now_ms`.
    pub fn set_at(
        &self,
        key: &[u8],
        value: &[u8],
        ttl_secs: u64,
        now_ms: u64,
    ) -> Result<(), CacheError> {
        if value.len() > MAX_CACHE_VALUE {
            return Err(CacheError::ValueTooLarge(value.len()));
        }
        let expires_ms = if ttl_secs == 0 {
            0
        } else {
            // At least 1, which is not "never".
            now_ms.saturating_add(ttl_secs.saturating_mul(1000)).max(1)
        };
        self.write(key, Some(value.to_vec()), expires_ms, now_ms)
    }

    /// Removes `key` cluster-wide.
    pub fn remove(&self, key: &[u8]) -> Result<(), CacheError> {
        self.remove_at(key, wall_ms())
    }

    /// [`ClusterCache::remove`] at `now_ms`.
    pub fn remove_at(&self, key: &[u8], now_ms: u64) -> Result<(), CacheError> {
        // A tombstone reads as absent from the moment of the delete; its
        // expiry only starts its linger.
        self.write(key, None, now_ms.max(1), now_ms)
    }

    fn write(
        &self,
        key: &[u8],
        value: Option<Vec<u8>>,
        expires_ms: u64,
        now_ms: u64,
    ) -> Result<(), CacheError> {
        if key.len() > MAX_CACHE_KEY {
            return Err(CacheError::KeyTooLong(key.len()));
        }
        let mut inner = self.inner.write();
        let entry = CacheEntry {
            key: key.to_vec(),
            value,
            stamp: inner.clock.tick(now_ms),
            origin: self.origin.clone(),
            expires_ms,
        };
        // The stamp is above everything this cache has seen, so the write
        // wins here; queued under the lock so drains keep write order.
        inner.state.merge(entry.clone());
        inner.state.evict();
        self.changed.lock().push(entry);
        Ok(())
    }

    /// For the engine: this node's writes since the last call (the latest
    /// per key is enough, but all are harmless: merging is idempotent).
    pub fn drain_changed(&self) -> Vec<CacheEntry> {
        std::mem::take(&mut *self.changed.lock())
    }

    /// For the engine: merges entries from a peer.
    pub fn apply(&self, entries: &[CacheEntry]) {
        let mut inner = self.inner.write();
        for e in entries {
            // Malformed entries from the wire are dropped, not merged: the
            // codec bounds them already, this keeps direct callers honest.
            if e.key.len() > MAX_CACHE_KEY
                || e.value.as_ref().is_some_and(|v| v.len() > MAX_CACHE_VALUE)
            {
                continue;
            }
            inner.clock.observe(e.stamp);
            inner.state.merge(e.clone());
        }
        inner.state.evict();
    }

    /// Every entry held, deletes and expired ones not yet forgotten
    /// included, for a peer when a link opens and the scope has
    /// `parameters = "snapshot"`: a joining node needs only the live ones,
    /// but a node that missed messages needs the deletes and expiries too
    /// to converge.
    pub fn snapshot(&self) -> Vec<CacheEntry> {
        self.inner.read().state.entries()
    }

    /// Housekeeping on every engine pass: forgets entries dead for longer
    /// than the linger.
    pub fn maintain(&self, now_ms: u64) {
        self.inner.write().state.purge(now_ms);
    }

    /// Live values at `now_ms`, sorted by key (console listings).
    pub fn rows_at(&self, now_ms: u64) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.inner
            .read()
            .state
            .entries()
            .into_iter()
            .filter(|e| !e.is_dead(now_ms))
            .filter_map(|e| e.value.map(|v| (e.key, v)))
            .collect()
    }

    /// Values held (live, or expired and not yet forgotten).
    pub fn len(&self) -> usize {
        self.inner.read().state.values()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn ttl_texts_as_the_sieve_function_takes_them() {
        assert_eq!(parse_ttl("30"), Ok(30));
        assert_eq!(parse_ttl("0"), Ok(0));
        assert_eq!(parse_ttl("2H"), Ok(7200));
        assert_eq!(parse_ttl("5m"), Ok(300));
        assert_eq!(parse_ttl(" 1h "), Ok(3600));
        for bad in ["", "H", "-1", "1.5", "1d", "abc", "1 H", "é"] {
            assert!(parse_ttl(bad).is_err(), "{bad:?}");
        }
        assert!(parse_ttl(&format!("{}H", u64::MAX)).is_err());
    }

    #[test]
    fn values_expire_by_ttl_and_zero_never_does() {
        let c = ClusterCache::new("n1", None);
        c.set_at(b"a", b"1", 10, 1000).unwrap();
        c.set_at(b"b", b"2", 0, 1000).unwrap();
        assert_eq!(c.get_at(b"a", 10_999), Some(b"1".to_vec()));
        assert_eq!(c.get_at(b"a", 11_000), None);
        assert_eq!(c.get_at(b"b", u64::MAX), Some(b"2".to_vec()));
        c.remove_at(b"b", 2000).unwrap();
        assert_eq!(c.get_at(b"b", 2000), None);
        let sent = c.drain_changed();
        assert_eq!(sent.len(), 3);
        assert!(sent.iter().all(|e| e.origin == "n1"));
        assert!(sent.windows(2).all(|w| w[0].stamp < w[1].stamp));
        assert!(c.drain_changed().is_empty());
        c.maintain(u64::MAX - 1);
        assert!(c.snapshot().is_empty(), "everything dead is forgotten");
    }

    #[test]
    fn a_full_cache_evicts_and_oversized_writes_are_refused() {
        let c = ClusterCache::new("n1", Some(2));
        c.set_at(b"a", b"1", 0, 1).unwrap();
        c.set_at(b"b", b"2", 60, 2).unwrap();
        c.set_at(b"c", b"3", 0, 3).unwrap();
        assert_eq!(c.get_at(b"b", 3), None, "the one with a TTL went first");
        c.set_at(b"d", b"4", 0, 4).unwrap();
        assert_eq!(c.get_at(b"a", 4), None, "then the oldest written");
        assert_eq!(c.len(), 2);
        assert_eq!(
            c.set_at(&[0; MAX_CACHE_KEY + 1], b"", 0, 5),
            Err(CacheError::KeyTooLong(MAX_CACHE_KEY + 1))
        );
        assert!(c.set_at(b"k", &vec![0; MAX_CACHE_VALUE + 1], 0, 5).is_err());
        assert_eq!(c.drain_changed().len(), 4, "refused writes are not sent");
    }

    #[test]
    fn a_write_after_seeing_a_peer_wins_even_with_a_slower_clock() {
        let fast = ClusterCache::new("n1", None);
        let slow = ClusterCache::new("n2", None);
        fast.set_at(b"k", b"fast", 0, 10_000).unwrap();
        slow.apply(&fast.drain_changed());
        slow.set_at(b"k", b"slow", 0, 5_000).unwrap();
        fast.apply(&slow.drain_changed());
        assert_eq!(fast.get_at(b"k", 10_000), Some(b"slow".to_vec()));
        assert_eq!(slow.get_at(b"k", 10_000), Some(b"slow".to_vec()));
    }

    use crate::test_rng::Rng;

    /// Three caches write, overwrite and delete a few keys with and without
    /// TTLs; their batches reach each other late, twice or not at all, in
    /// any order. After each has sent the others its snapshot, all three
    /// hold the same entries and read the same values.
    #[test]
    fn three_caches_converge_after_loss_reordering_and_a_snapshot_exchange() {
        for seed in 1..=100u64 {
            let mut rng = Rng::new(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let nodes: Vec<ClusterCache> = ["n1", "n2", "n3"]
                .iter()
                .map(|n| ClusterCache::new(n, None))
                .collect();
            // (to, entries) in flight.
            let mut wire: Vec<(usize, Vec<CacheEntry>)> = Vec::new();
            let mut now = 1_000_000u64;
            for _ in 0..200 {
                now += rng.below(3) * 500;
                let n = rng.below(3) as usize;
                let key = format!("k{}", rng.below(5));
                match rng.below(5) {
                    0 => nodes[n].remove_at(key.as_bytes(), now).unwrap(),
                    v => {
                        let ttl = [0, 1, 5, 60][rng.below(4) as usize];
                        let value = format!("{n}-{v}");
                        nodes[n]
                            .set_at(key.as_bytes(), value.as_bytes(), ttl, now)
                            .unwrap();
                    }
                }
                if rng.below(3) == 0 {
                    let from = rng.below(3) as usize;
                    let batch = nodes[from].drain_changed();
                    for to in (0..3).filter(|to| *to != from) {
                        wire.push((to, batch.clone()));
                    }
                }
                if !wire.is_empty() && rng.below(2) == 0 {
                    let m = rng.below(wire.len() as u64) as usize;
                    let msg = if rng.below(4) == 0 {
                        wire[m].clone()
                    } else {
                        wire.swap_remove(m)
                    };
                    if rng.below(5) != 0 {
                        nodes[msg.0].apply(&msg.1);
                    }
                }
            }
            // Links reopen: each sends the others its snapshot.
            let snapshots: Vec<Vec<CacheEntry>> =
                nodes.iter().map(ClusterCache::snapshot).collect();
            for (from, snap) in snapshots.iter().enumerate() {
                for (to, node) in nodes.iter().enumerate() {
                    if to != from {
                        node.apply(snap);
                    }
                }
            }
            let first = nodes[0].snapshot();
            assert!(!first.is_empty(), "seed {seed}");
            for node in &nodes[1..] {
                assert_eq!(node.snapshot(), first, "seed {seed}");
            }
            for t in [now, now + 2_000, now + 70_000] {
                for k in 0..5 {
                    let key = format!("k{k}");
                    let v = nodes[0].get_at(key.as_bytes(), t);
                    assert!(nodes.iter().all(|n| n.get_at(key.as_bytes(), t) == v));
                }
            }
        }
    }

    #[test]
    fn threads_writing_and_reading_at_once() {
        let c = Arc::new(ClusterCache::new("n1", Some(100)));
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let c = Arc::clone(&c);
                std::thread::spawn(move || {
                    for n in 0..2000u64 {
                        let key = format!("k{}", n % 150);
                        c.set_at(key.as_bytes(), &[i], 0, n).unwrap();
                        c.get_at(key.as_bytes(), n);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(c.len(), 100);
        assert_eq!(c.drain_changed().len(), 8000);
    }
}
