//! A replicated gauge table on the hot path: key to count, this node's
//! own count and the sum of every peer's, readable and writable from any
//! MTA thread without waiting on the engine.
//!
//! `outbound_domains` (connections per destination domain),
//! `outbound_binding_domains` (per binding and domain), gauge caches and
//! throttle usage are all gauge tables. An MTA worker increments when it
//! opens a connection and decrements when it closes one, and asks "how many
//! across the cluster" before opening the next; those calls touch only this
//! table: a hash, a shard's read lock and an atomic. The engine thread
//! drains the keys changed since its last visit ([`GaugeTable::drain_changed`])
//! into the replication batcher, and writes the peers' sums back
//! ([`GaugeTable::set_peer_sum`]) as the replication core reports them.
//!
//! The table is split into shards by key hash so that two threads working
//! on different keys rarely meet on a lock; the counts themselves are
//! atomics, so threads on the same key only share a cache line. A key is
//! created under its shard's write lock the first time it is touched; a
//! key whose own and peer counts are both zero is removed when the engine
//! drains, so the table does not keep every domain ever seen.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use parking_lot::{Mutex, RwLock};

pub use super::Scope;
use super::hash::{Seeded, random_seed};

/// One key's counts.
#[derive(Debug, Default)]
struct Cell {
    local: AtomicI64,
    peer: AtomicI64,
    /// Set when `local` changed since the engine last drained this key.
    dirty: AtomicBool,
}

/// Enough shards that two MTA threads seldom share one, few enough that an
/// empty table is small.
const SHARDS: usize = 64;

/// One shard, on cache lines of its own: two threads taking the read locks
/// of neighbouring shards must not bounce one line between their cores.
#[derive(Debug)]
#[repr(align(128))]
struct Shard(RwLock<HashMap<Vec<u8>, Cell, Seeded>>);

impl std::ops::Deref for Shard {
    type Target = RwLock<HashMap<Vec<u8>, Cell, Seeded>>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// See the module docs.
#[derive(Debug)]
pub struct GaugeTable {
    shards: Vec<Shard>,
    hasher: Seeded,
    /// Keys whose `dirty` flag was raised, in the order raised.
    changed: Mutex<Vec<Vec<u8>>>,
}

impl Default for GaugeTable {
    fn default() -> Self {
        GaugeTable::new()
    }
}

impl GaugeTable {
    pub fn new() -> GaugeTable {
        let hasher = random_seed();
        GaugeTable {
            shards: (0..SHARDS)
                .map(|_| Shard(RwLock::new(HashMap::with_hasher(hasher))))
                .collect(),
            hasher,
            changed: Mutex::new(Vec::new()),
        }
    }

    /// Adds `delta` to this node's count for `key` and returns the new
    /// count.
    pub fn add(&self, key: &[u8], delta: i64) -> i64 {
        let shard = self.shard(key);
        {
            let cells = shard.read();
            if let Some(cell) = cells.get(key) {
                return self.add_to(cell, key, delta);
            }
        }
        let mut cells = shard.write();
        let cell = cells.entry(key.to_vec()).or_default();
        self.add_to(cell, key, delta)
    }

    fn add_to(&self, cell: &Cell, key: &[u8], delta: i64) -> i64 {
        let now = cell.local.fetch_add(delta, Ordering::Relaxed) + delta;
        // Read first: between two drains the flag is already up, and a
        // read leaves the cache line shared where a swap would claim it.
        if !cell.dirty.load(Ordering::Acquire) && !cell.dirty.swap(true, Ordering::AcqRel) {
            self.changed.lock().push(key.to_vec());
        }
        now
    }

    /// The count of `key` in `scope`.
    pub fn get(&self, key: &[u8], scope: Scope) -> i64 {
        let cells = self.shard(key).read();
        cells.get(key).map_or(0, |cell| {
            let local = cell.local.load(Ordering::Relaxed);
            match scope {
                Scope::Local => local,
                Scope::Global => local + cell.peer.load(Ordering::Relaxed),
            }
        })
    }

    /// For the engine: every key whose own count changed since the last
    /// call, with its current count; keys left at zero everywhere are
    /// removed.
    pub fn drain_changed(&self) -> Vec<(Vec<u8>, i64)> {
        let keys = std::mem::take(&mut *self.changed.lock());
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let mut cells = self.shard(&key).write();
            let Some(cell) = cells.get(&key) else {
                continue;
            };
            // Cleared before the read: an add after this raises it again
            // and queues the key for the next drain.
            cell.dirty.store(false, Ordering::Release);
            let local = cell.local.load(Ordering::Acquire);
            if local == 0 && cell.peer.load(Ordering::Relaxed) == 0 {
                cells.remove(&key);
            }
            out.push((key, local));
        }
        out
    }

    /// For the engine: the peers' sum for `key` is now `peer_sum`.
    pub fn set_peer_sum(&self, key: &[u8], peer_sum: i64) {
        let shard = self.shard(key);
        let mut cells = shard.write();
        if peer_sum == 0 {
            if let Some(cell) = cells.get(key) {
                cell.peer.store(0, Ordering::Relaxed);
                if cell.local.load(Ordering::Relaxed) == 0 && !cell.dirty.load(Ordering::Acquire) {
                    cells.remove(key);
                }
            }
            return;
        }
        cells
            .entry(key.to_vec())
            .or_default()
            .peer
            .store(peer_sum, Ordering::Relaxed);
    }

    /// This node's non-zero counts, for a snapshot to a peer.
    pub fn local_values(&self) -> Vec<(Vec<u8>, i64)> {
        self.rows(Scope::Local)
    }

    /// Every key with a non-zero count in `scope`, sorted by key (`cluster
    /// shared show`).
    pub fn rows(&self, scope: Scope) -> Vec<(Vec<u8>, i64)> {
        let mut rows: Vec<(Vec<u8>, i64)> = self
            .shards
            .iter()
            .flat_map(|shard| {
                shard
                    .read()
                    .iter()
                    .map(|(k, cell)| {
                        let local = cell.local.load(Ordering::Relaxed);
                        let count = match scope {
                            Scope::Local => local,
                            Scope::Global => local + cell.peer.load(Ordering::Relaxed),
                        };
                        (k.clone(), count)
                    })
                    .filter(|(_, count)| *count != 0)
                    .collect::<Vec<_>>()
            })
            .collect();
        rows.sort();
        rows
    }
}

impl GaugeTable {
    fn shard(&self, key: &[u8]) -> &Shard {
        // The high bits: the map inside the shard uses the low ones.
        &self.shards[(self.hasher.hash_bytes(key) >> 58) as usize % SHARDS]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn local_and_global_counts_and_what_the_engine_drains() {
        let t = GaugeTable::new();
        assert_eq!(t.add(b"aol.com", 1), 1);
        assert_eq!(t.add(b"aol.com", 1), 2);
        assert_eq!(t.add(b"gmx.de", 1), 1);
        t.set_peer_sum(b"aol.com", 5);
        t.set_peer_sum(b"yahoo.com", 3);
        assert_eq!(t.get(b"aol.com", Scope::Local), 2);
        assert_eq!(t.get(b"aol.com", Scope::Global), 7);
        assert_eq!(t.get(b"yahoo.com", Scope::Local), 0);
        assert_eq!(t.get(b"yahoo.com", Scope::Global), 3);
        let mut drained = t.drain_changed();
        drained.sort();
        assert_eq!(
            drained,
            [(b"aol.com".to_vec(), 2), (b"gmx.de".to_vec(), 1)],
            "each changed key once, with its current count; peers' keys not"
        );
        assert!(t.drain_changed().is_empty());
        t.add(b"gmx.de", -1);
        assert_eq!(t.drain_changed(), [(b"gmx.de".to_vec(), 0)]);
        assert_eq!(
            t.rows(Scope::Global),
            [(b"aol.com".to_vec(), 7), (b"yahoo.com".to_vec(), 3)],
            "a key at zero everywhere is gone"
        );
        assert_eq!(t.local_values(), [(b"aol.com".to_vec(), 2)]);
        t.set_peer_sum(b"yahoo.com", 0);
        assert_eq!(t.rows(Scope::Global).len(), 1);
    }

    #[test]
    fn threads_adding_to_the_same_and_different_keys_lose_nothing() {
        let t = Arc::new(GaugeTable::new());
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let t = Arc::clone(&t);
                std::thread::spawn(move || {
                    for n in 0..10_000u32 {
                        t.add(b"shared", 1);
                        t.add(format!("own{i}-{}", n % 50).as_bytes(), 1);
                        if n % 1000 == 0 {
                            // The engine draining meanwhile must not lose adds.
                            t.drain_changed();
                        }
                    }
                })
            })
            .collect();
        for th in threads {
            th.join().unwrap();
        }
        assert_eq!(t.get(b"shared", Scope::Local), 40_000);
        let own: i64 = t
            .rows(Scope::Local)
            .iter()
            .filter(|(k, _)| k.starts_with(b"own"))
            .map(|(_, v)| v)
            .sum();
        assert_eq!(own, 40_000);
        let drained: i64 = t
            .drain_changed()
            .iter()
            .filter(|(k, _)| k == b"shared")
            .map(|(_, v)| *v)
            .sum();
        assert_eq!(drained, 40_000, "the last drain carries the final count");
    }
}
