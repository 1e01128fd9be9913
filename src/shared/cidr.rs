//! CIDR connection counts on the hot path (`inbound_cidr`, `outbound_cidr`).
//!
//! MTA worker threads call [`CidrCounts::increment`] and
//! [`CidrCounts::decrement`] when a connection opens or closes, and ask
//! [`CidrCounts::count`] "how many connections from this prefix, here or
//! cluster-wide" for any prefix length, without waiting on the engine
//! thread (DESIGN.md §2). Every method takes `&self`.
//!
//! # Levels
//!
//! A leaf is one address (/32 or /128), the unit that is replicated. On
//! every change the leaf's count and the counts of a few fixed **maintained
//! levels** above it are adjusted, each an atomic pair (`local`, `peer`):
//!
//! * IPv4: /8 and /16 are dense arrays (256 and 65,536 pairs, about 1 MiB,
//!   allocated once), so updating them is an atomic add with no lookup;
//!   /24 and /32 are sharded hash maps.
//! * IPv6: /32, /48, /64 and /128, all sharded hash maps.
//!
//! A sharded map is [`SHARDS`] `RwLock<HashMap>`s, picked by the hash of the
//! key's group of 2^[`GROUP_BITS`] siblings (128 consecutive /24s, or
//! /32s), so that summing a range of siblings takes one lock.
//! Updating an existing entry takes only the shard's *read* lock and does an
//! atomic add, so threads never block each other there; the write lock is
//! taken only to create or prune an entry.
//!
//! # Cost model of `count(prefix, len)`
//!
//! * `len` at a maintained level: one array load or one hash lookup.
//! * Otherwise the next *finer* maintained level is summed over the range:
//!   `2^(finer - len)` loads or lookups (under one shard lock per 128)
//!   when that is at most
//!   [`MAX_RANGE_LOOKUPS`] (IPv4 is always in this case: at most 128, e.g. a
//!   /20 is 16 /24 lookups, a /0 is 256 array loads), else one scan of that
//!   level's whole map, filtered by prefix (IPv6 /0–/23, /33–/39, /49–/55,
//!   /65–/119: O(entries tracked at the finer level)).
//!
//! Counts at different levels are updated one after another, not as one
//! transaction, so a reader racing an increment may see a /24 that already
//! includes it and a /32 that does not yet. Each level is exact once the
//! writers are done.
//!
//! # Replication
//!
//! `local` is this node's count; `peer` is the sum of all other nodes'
//! counts for the leaf, as computed by [`crate::core::replicate::Replica`]
//! and applied with [`CidrCounts::set_peer_sum`], which also moves the peer
//! parts of the leaf's maintained prefixes by the difference.
//! [`Scope::Global`] adds the two. A leaf whose local count changes is
//! marked dirty (a flag, and its key pushed once onto its shard's list);
//! [`CidrCounts::drain_changed`] hands the dirty leaves and their current
//! values to the engine for the batcher. The list grows only with distinct
//! dirty leaves, so it must be drained now and then (the engine does so on
//! every batch tick).
//!
//! # Zero counts
//!
//! Entries are pruned from the maps, never by the hot path: when a drain or
//! a peer sum leaves a leaf at zero in both parts and not dirty, it is
//! removed under its shard's write lock (re-checked there), and then each
//! of its hash-mapped prefixes that are zero in both parts. So a map holds
//! only prefixes with something in them, plus those changed since the last
//! drain. The dense IPv4 levels need no pruning.
//!
//! # Hashing
//!
//! Keys are addresses the other side chooses: the maps use
//! [`super::hash::Seeded`], seeded per instance.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};

use super::hash::{Seeded, random_seed};

pub use super::Scope;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use parking_lot::{Mutex, RwLock};

/// Shards per hash-mapped level: enough that two or a few worker threads
/// rarely meet on a lock word.
const SHARDS: usize = 64;

/// The largest range of finer-level entries `count` sums by lookups
/// before it scans that level's map instead.
const MAX_RANGE_LOOKUPS: u32 = 256;

/// Keys that differ only in their low `GROUP_BITS` bits share a shard:
/// the lookups of a count over a range at most this wide (every IPv4 one)
/// take one lock.
const GROUP_BITS: u32 = 7;

/// The key of a leaf in the replicated object: the family byte (4 or 6),
/// then the address octets.
pub fn leaf_key(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => {
            let mut k = Vec::with_capacity(5);
            k.push(4);
            k.extend_from_slice(&a.octets());
            k
        }
        IpAddr::V6(a) => {
            let mut k = Vec::with_capacity(17);
            k.push(6);
            k.extend_from_slice(&a.octets());
            k
        }
    }
}

/// The address of a leaf key; `None` for anything [`leaf_key`] does not
/// produce (the bytes come from peers).
pub fn parse_leaf_key(key: &[u8]) -> Option<IpAddr> {
    match key {
        [4, rest @ ..] => {
            let octets: [u8; 4] = rest.try_into().ok()?;
            Some(IpAddr::V4(Ipv4Addr::from(octets)))
        }
        [6, rest @ ..] => {
            let octets: [u8; 16] = rest.try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(octets)))
        }
        _ => None,
    }
}

/// This node's count and the peers' sum, for one prefix.
#[derive(Debug, Default)]
struct Counts {
    local: AtomicI64,
    peer: AtomicI64,
}

impl Counts {
    fn get(&self, scope: Scope) -> i64 {
        let local = self.local.load(Ordering::Relaxed);
        match scope {
            Scope::Local => local,
            Scope::Global => local + self.peer.load(Ordering::Relaxed),
        }
    }

    fn is_zero(&self) -> bool {
        self.local.load(Ordering::Relaxed) == 0 && self.peer.load(Ordering::Relaxed) == 0
    }
}

#[derive(Debug, Default)]
struct Leaf {
    counts: Counts,
    /// Set after every local change, cleared by the drain that reports it;
    /// while set, the key is on its shard's dirty list exactly once.
    dirty: AtomicBool,
}

trait HasCounts: Default {
    fn counts(&self) -> &Counts;
}

impl HasCounts for Counts {
    fn counts(&self) -> &Counts {
        self
    }
}

impl HasCounts for Leaf {
    fn counts(&self) -> &Counts {
        &self.counts
    }
}

/// A map key: a prefix's bits, right-aligned (a /24 of IPv4 is `addr >> 8`).
trait PrefixKey: Copy + Eq + Hash {
    fn to_u128(self) -> u128;
    fn from_u128(v: u128) -> Self;
}

impl PrefixKey for u32 {
    fn to_u128(self) -> u128 {
        u128::from(self)
    }
    fn from_u128(v: u128) -> u32 {
        v as u32
    }
}

impl PrefixKey for u64 {
    fn to_u128(self) -> u128 {
        u128::from(self)
    }
    fn from_u128(v: u128) -> u64 {
        v as u64
    }
}

impl PrefixKey for u128 {
    fn to_u128(self) -> u128 {
        self
    }
    fn from_u128(v: u128) -> u128 {
        v
    }
}

/// Aligned so that two shards' lock words never share a cache line.
#[repr(align(128))]
#[derive(Debug)]
struct Shard<K, V> {
    map: RwLock<HashMap<K, V, Seeded>>,
    /// Leaves only: the keys whose `dirty` flag this shard's writers set.
    dirty: Mutex<Vec<K>>,
}

/// One hash-mapped level; see the module docs.
#[derive(Debug)]
struct Level<K, V> {
    shards: Box<[Shard<K, V>]>,
    hasher: Seeded,
}

impl<K: PrefixKey, V: HasCounts> Level<K, V> {
    fn new(hasher: Seeded) -> Level<K, V> {
        Level {
            shards: (0..SHARDS)
                .map(|_| Shard {
                    map: RwLock::new(HashMap::with_hasher(hasher)),
                    dirty: Mutex::new(Vec::new()),
                })
                .collect(),
            hasher,
        }
    }

    fn shard(&self, key: &K) -> &Shard<K, V> {
        // By the key's group of 2^GROUP_BITS siblings, so that a count
        // summing a range of them takes one shard lock, not one per key.
        let h = self.hasher.hash_one(key.to_u128() >> GROUP_BITS);
        // The top bits: hashbrown indexes buckets by the low ones.
        &self.shards[(h >> 58) as usize % SHARDS]
    }

    /// Runs `f` on `key`'s entry, creating it if absent; `f` also gets the
    /// shard's dirty list.
    fn with<R>(&self, key: K, f: impl FnOnce(&V, &Mutex<Vec<K>>) -> R) -> R {
        let shard = self.shard(&key);
        {
            let map = shard.map.read();
            if let Some(v) = map.get(&key) {
                return f(v, &shard.dirty);
            }
        }
        let mut map = shard.map.write();
        f(map.entry(key).or_default(), &shard.dirty)
    }

    fn get<R>(&self, key: K, f: impl FnOnce(&V) -> R) -> Option<R> {
        self.shard(&key).map.read().get(&key).map(f)
    }

    fn add(&self, key: K, local: i64, peer: i64) {
        self.with(key, |v, _| {
            if local != 0 {
                v.counts().local.fetch_add(local, Ordering::Relaxed);
            }
            if peer != 0 {
                v.counts().peer.fetch_add(peer, Ordering::Relaxed);
            }
        });
    }

    /// Removes `key`'s entry if `dead` holds for it under the write lock.
    fn remove_if(&self, key: K, dead: impl FnOnce(&V) -> bool) -> bool {
        let mut map = self.shard(&key).map.write();
        if map.get(&key).is_some_and(dead) {
            map.remove(&key);
            true
        } else {
            false
        }
    }

    fn prune_zero(&self, key: K) {
        self.remove_if(key, |v| v.counts().is_zero());
    }

    fn for_each(&self, mut f: impl FnMut(K, &V)) {
        for shard in self.shards.iter() {
            for (k, v) in shard.map.read().iter() {
                f(*k, v);
            }
        }
    }

    /// The sum over the entries under `prefix`, `extra` bits shorter than
    /// this level's keys (see the module docs' cost model).
    fn sum_under(&self, prefix: K, extra: u32, scope: Scope) -> i64 {
        let base = prefix.to_u128();
        if extra == 0 {
            return self.get(prefix, |v| v.counts().get(scope)).unwrap_or(0);
        }
        let top = if extra >= 128 { 0 } else { base >> extra };
        if extra <= MAX_RANGE_LOOKUPS.ilog2() {
            let start = top << extra;
            let end = start + (1u128 << extra);
            let mut sum = 0;
            // One lock per group of siblings (`shard`): the range is
            // aligned, so all of it, or whole groups of it.
            let mut group = start;
            while group < end {
                let next = end.min(group + (1 << GROUP_BITS));
                let map = self.shard(&K::from_u128(group)).map.read();
                for k in group..next {
                    if let Some(v) = map.get(&K::from_u128(k)) {
                        sum += v.counts().get(scope);
                    }
                }
                group = next;
            }
            sum
        } else {
            let mut sum = 0;
            self.for_each(|k, v| {
                let kt = if extra >= 128 {
                    0
                } else {
                    k.to_u128() >> extra
                };
                if kt == top {
                    sum += v.counts().get(scope);
                }
            });
            sum
        }
    }

    /// Bytes held, estimated from capacities (hashbrown: buckets of
    /// `(K, V)` plus one control byte each, at most 7/8 full).
    fn memory_bytes(&self) -> usize {
        let entry = std::mem::size_of::<(K, V)>() + 1;
        let mut bytes = std::mem::size_of::<Shard<K, V>>() * self.shards.len();
        for shard in self.shards.iter() {
            let cap = shard.map.read().capacity();
            let buckets = if cap == 0 {
                0
            } else {
                (cap * 8 / 7).next_power_of_two()
            };
            bytes += buckets * entry + shard.dirty.lock().capacity() * std::mem::size_of::<K>();
        }
        bytes
    }
}

impl<K: PrefixKey> Level<K, Leaf> {
    fn bump(&self, key: K, delta: i64) {
        self.with(key, |leaf, dirty| {
            leaf.counts.local.fetch_add(delta, Ordering::Relaxed);
            // Release: the drain that clears the flag sees the add above.
            if !leaf.dirty.swap(true, Ordering::AcqRel) {
                dirty.lock().push(key);
            }
        });
    }

    /// Reports every dirty leaf's current local value and clears it; calls
    /// `zeroed` for those it then pruned.
    fn drain(&self, out: &mut Vec<(K, i64)>, mut zeroed: impl FnMut(K)) {
        for shard in self.shards.iter() {
            let keys = std::mem::take(&mut *shard.dirty.lock());
            for key in keys {
                let value = shard.map.read().get(&key).map(|leaf| {
                    // Clear first: a change racing this drain sets the flag
                    // again and is reported by the next one.
                    leaf.dirty.store(false, Ordering::SeqCst);
                    (
                        leaf.counts.local.load(Ordering::SeqCst),
                        leaf.counts.peer.load(Ordering::Relaxed),
                    )
                });
                if let Some((local, peer)) = value {
                    out.push((key, local));
                    if local == 0
                        && peer == 0
                        && self.remove_if(key, |l| {
                            l.counts.is_zero() && !l.dirty.load(Ordering::SeqCst)
                        })
                    {
                        zeroed(key);
                    }
                }
            }
        }
    }

    /// Sets the leaf's peer sum; returns the difference from the previous
    /// one.
    fn set_peer(&self, key: K, peer_sum: i64) -> i64 {
        let swap = |leaf: &Leaf| peer_sum - leaf.counts.peer.swap(peer_sum, Ordering::Relaxed);
        if peer_sum == 0 {
            self.get(key, swap).unwrap_or(0)
        } else {
            self.with(key, |leaf, _| swap(leaf))
        }
    }

    /// Prunes the leaf if it holds nothing and has nothing to report.
    fn prune_leaf(&self, key: K) -> bool {
        self.remove_if(key, |l| {
            l.counts.is_zero() && !l.dirty.load(Ordering::SeqCst)
        })
    }
}

/// A /8 counter alone in its cache line: with addresses spread over the
/// space, every worker touches every /8, and 256 unpadded pairs would be
/// 64 lines bouncing between cores on every increment.
#[repr(align(64))]
#[derive(Debug, Default)]
struct Padded(Counts);

impl HasCounts for Padded {
    fn counts(&self) -> &Counts {
        &self.0
    }
}

fn dense<V: HasCounts>(n: usize) -> Box<[V]> {
    (0..n).map(|_| V::default()).collect()
}

fn dense_sum<V: HasCounts>(level: &[V], start: usize, n: usize, scope: Scope) -> i64 {
    level[start..start + n]
        .iter()
        .map(|c| c.counts().get(scope))
        .sum()
}

#[derive(Debug)]
struct V4 {
    by8: Box<[Padded]>,
    by16: Box<[Counts]>,
    by24: Level<u32, Counts>,
    leaves: Level<u32, Leaf>,
}

impl V4 {
    fn add_aggregates(&self, a: u32, local: i64, peer: i64) {
        for c in [
            &self.by8[(a >> 24) as usize].0,
            &self.by16[(a >> 16) as usize],
        ] {
            if local != 0 {
                c.local.fetch_add(local, Ordering::Relaxed);
            }
            if peer != 0 {
                c.peer.fetch_add(peer, Ordering::Relaxed);
            }
        }
        self.by24.add(a >> 8, local, peer);
    }

    fn count(&self, a: u32, len: u8, scope: Scope) -> i64 {
        let len = u32::from(len.min(32));
        let a = if len == 0 {
            0
        } else {
            a & (u32::MAX << (32 - len))
        };
        match len {
            0..=8 => dense_sum(&self.by8, (a >> 24) as usize, 1 << (8 - len), scope),
            9..=16 => dense_sum(&self.by16, (a >> 16) as usize, 1 << (16 - len), scope),
            17..=24 => self.by24.sum_under(a >> 8, 24 - len, scope),
            _ => self.leaves.sum_under(a, 32 - len, scope),
        }
    }
}

#[derive(Debug)]
struct V6 {
    by32: Level<u64, Counts>,
    by48: Level<u64, Counts>,
    by64: Level<u64, Counts>,
    leaves: Level<u128, Leaf>,
}

impl V6 {
    fn add_aggregates(&self, a: u128, local: i64, peer: i64) {
        self.by32.add((a >> 96) as u64, local, peer);
        self.by48.add((a >> 80) as u64, local, peer);
        self.by64.add((a >> 64) as u64, local, peer);
    }

    fn prune_aggregates(&self, a: u128) {
        self.by64.prune_zero((a >> 64) as u64);
        self.by48.prune_zero((a >> 80) as u64);
        self.by32.prune_zero((a >> 96) as u64);
    }

    fn count(&self, a: u128, len: u8, scope: Scope) -> i64 {
        let len = u32::from(len.min(128));
        let a = if len == 0 {
            0
        } else {
            a & (u128::MAX << (128 - len))
        };
        match len {
            0..=32 => self.by32.sum_under((a >> 96) as u64, 32 - len, scope),
            33..=48 => self.by48.sum_under((a >> 80) as u64, 48 - len, scope),
            49..=64 => self.by64.sum_under((a >> 64) as u64, 64 - len, scope),
            _ => self.leaves.sum_under(a, 128 - len, scope),
        }
    }
}

/// Connection counts by address and prefix, this node's and the
/// cluster's; see the module docs.
#[derive(Debug)]
pub struct CidrCounts {
    v4: V4,
    v6: V6,
}

impl Default for CidrCounts {
    fn default() -> Self {
        CidrCounts::new()
    }
}

impl CidrCounts {
    pub fn new() -> CidrCounts {
        let h = random_seed();
        CidrCounts {
            v4: V4 {
                by8: dense(1 << 8),
                by16: dense(1 << 16),
                by24: Level::new(h),
                leaves: Level::new(h),
            },
            v6: V6 {
                by32: Level::new(h),
                by48: Level::new(h),
                by64: Level::new(h),
                leaves: Level::new(h),
            },
        }
    }

    /// A connection from (or to) `ip` opened on this node.
    pub fn increment(&self, ip: IpAddr) {
        self.add(ip, 1);
    }

    /// A connection from (or to) `ip` closed on this node. Unmatched
    /// decrements make counts negative rather than being hidden.
    pub fn decrement(&self, ip: IpAddr) {
        self.add(ip, -1);
    }

    /// `delta` connections from (or to) `ip` opened (or, negative, closed)
    /// on this node.
    pub fn add(&self, ip: IpAddr, delta: i64) {
        match ip {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                self.v4.leaves.bump(a, delta);
                self.v4.add_aggregates(a, delta, 0);
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                self.v6.leaves.bump(a, delta);
                self.v6.add_aggregates(a, delta, 0);
            }
        }
    }

    /// Connections whose address is in `prefix/len` (`len` beyond the
    /// family's width counts as the full width; host bits of `prefix` are
    /// ignored). Cost: see the module docs.
    pub fn count(&self, prefix: IpAddr, len: u8, scope: Scope) -> i64 {
        match prefix {
            IpAddr::V4(a) => self.v4.count(u32::from(a), len, scope),
            IpAddr::V6(a) => self.v6.count(u128::from(a), len, scope),
        }
    }

    /// The leaves whose local count changed since the last drain, with
    /// their current local values, for [`crate::core::replicate::batch::Batcher::note`].
    /// Also prunes leaves (and their prefixes) left at zero.
    pub fn drain_changed(&self) -> Vec<(Vec<u8>, i64)> {
        let mut v4 = Vec::new();
        self.v4
            .leaves
            .drain(&mut v4, |a| self.v4.by24.prune_zero(a >> 8));
        let mut v6 = Vec::new();
        self.v6
            .leaves
            .drain(&mut v6, |a| self.v6.prune_aggregates(a));
        let v4 = v4
            .into_iter()
            .map(|(a, v)| (leaf_key(IpAddr::V4(Ipv4Addr::from(a))), v));
        let v6 = v6
            .into_iter()
            .map(|(a, v)| (leaf_key(IpAddr::V6(Ipv6Addr::from(a))), v));
        v4.chain(v6).collect()
    }

    /// Applies a [`crate::core::replicate::SumChange`]: the peers' sum for
    /// the leaf `key` is now `peer_sum`. Keys that are not leaf keys are
    /// ignored (they come from the wire).
    pub fn set_peer_sum(&self, key: &[u8], peer_sum: i64) {
        match parse_leaf_key(key) {
            Some(IpAddr::V4(a)) => {
                let a = u32::from(a);
                let diff = self.v4.leaves.set_peer(a, peer_sum);
                if diff != 0 {
                    self.v4.add_aggregates(a, 0, diff);
                }
                if peer_sum == 0 && self.v4.leaves.prune_leaf(a) {
                    self.v4.by24.prune_zero(a >> 8);
                }
            }
            Some(IpAddr::V6(a)) => {
                let a = u128::from(a);
                let diff = self.v6.leaves.set_peer(a, peer_sum);
                if diff != 0 {
                    self.v6.add_aggregates(a, 0, diff);
                }
                if peer_sum == 0 && self.v6.leaves.prune_leaf(a) {
                    self.v6.prune_aggregates(a);
                }
            }
            None => {}
        }
    }

    /// Every leaf with a non-zero local count, for a snapshot
    /// ([`crate::core::replicate::batch::Batcher::snapshot`]).
    pub fn local_values(&self) -> Vec<(Vec<u8>, i64)> {
        let mut out = Vec::new();
        self.v4.leaves.for_each(|a, leaf| {
            let v = leaf.counts.get(Scope::Local);
            if v != 0 {
                out.push((leaf_key(IpAddr::V4(Ipv4Addr::from(a))), v));
            }
        });
        self.v6.leaves.for_each(|a, leaf| {
            let v = leaf.counts.get(Scope::Local);
            if v != 0 {
                out.push((leaf_key(IpAddr::V6(Ipv6Addr::from(a))), v));
            }
        });
        out
    }

    /// Every maintained prefix with a non-zero count, IPv4 first, by
    /// address and then length (a tree's pre-order, as `cluster shared
    /// show` lists a cidrtree).
    pub fn rows(&self, scope: Scope) -> Vec<(IpAddr, u8, i64)> {
        // (family, address bits left-aligned in u128, len, count)
        let mut rows: Vec<(u8, u128, u8, i64)> = Vec::new();
        let v4 = |a: u32| u128::from(a) << 96;
        for (i, c) in self.v4.by8.iter().enumerate() {
            let n = c.0.get(scope);
            if n != 0 {
                rows.push((4, v4((i as u32) << 24), 8, n));
            }
        }
        for (i, c) in self.v4.by16.iter().enumerate() {
            let n = c.get(scope);
            if n != 0 {
                rows.push((4, v4((i as u32) << 16), 16, n));
            }
        }
        let mut push = |fam: u8, bits: u128, len: u8, c: &Counts| {
            let n = c.get(scope);
            if n != 0 {
                rows.push((fam, bits, len, n));
            }
        };
        self.v4.by24.for_each(|k, c| push(4, v4(k << 8), 24, c));
        self.v4
            .leaves
            .for_each(|k, l| push(4, v4(k), 32, &l.counts));
        self.v6
            .by32
            .for_each(|k, c| push(6, u128::from(k) << 96, 32, c));
        self.v6
            .by48
            .for_each(|k, c| push(6, u128::from(k) << 80, 48, c));
        self.v6
            .by64
            .for_each(|k, c| push(6, u128::from(k) << 64, 64, c));
        self.v6.leaves.for_each(|k, l| push(6, k, 128, &l.counts));
        rows.sort_unstable_by_key(|&(fam, bits, len, _)| (fam, bits, len));
        rows.into_iter()
            .map(|(fam, bits, len, n)| {
                let ip = if fam == 4 {
                    IpAddr::V4(Ipv4Addr::from((bits >> 96) as u32))
                } else {
                    IpAddr::V6(Ipv6Addr::from(bits))
                };
                (ip, len, n)
            })
            .collect()
    }

    /// The rows of [`CidrCounts::rows`] for a set of leaf values, such as
    /// one peer's contribution (`cluster shared show OBJ from NODE`).
    pub fn rows_of_leaves(leaves: &[(Vec<u8>, i64)]) -> Vec<(IpAddr, u8, i64)> {
        let tree = CidrCounts::new();
        for (key, value) in leaves {
            if let Some(ip) = parse_leaf_key(key) {
                tree.add(ip, *value);
            }
        }
        tree.rows(Scope::Local)
    }

    /// Bytes held by the structure, by its own accounting (see
    /// `Level::memory_bytes`; the dense IPv4 levels are included).
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<CidrCounts>()
            + self.v4.by8.len() * std::mem::size_of::<Padded>()
            + self.v4.by16.len() * std::mem::size_of::<Counts>()
            + self.v4.by24.memory_bytes()
            + self.v4.leaves.memory_bytes()
            + self.v6.by32.memory_bytes()
            + self.v6.by48.memory_bytes()
            + self.v6.by64.memory_bytes()
            + self.v6.leaves.memory_bytes()
    }

    /// Hash-map entries held at every level (leaves and hashed prefixes),
    /// to see that pruning works.
    pub fn entries(&self) -> usize {
        fn n<K: PrefixKey, V: HasCounts>(l: &Level<K, V>) -> usize {
            l.shards.iter().map(|s| s.map.read().len()).sum()
        }
        n(&self.v4.by24)
            + n(&self.v4.leaves)
            + n(&self.v6.by32)
            + n(&self.v6.by48)
            + n(&self.v6.by64)
            + n(&self.v6.leaves)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::Arc;

    use crate::test_rng::Rng;

    /// Addresses that share prefixes at many lengths, so that every
    /// level and every summing path (lookups and scans) has work.
    fn address(rng: &mut Rng) -> IpAddr {
        if rng.below(2) == 0 {
            let a = match rng.below(4) {
                0 => 0x0a00_0000 | rng.below(1 << 10) as u32,
                1 => 0x0a00_0000 | (rng.below(4) as u32) << 16 | rng.below(256) as u32,
                2 => 0xc0a8_0000 | rng.below(1 << 16) as u32,
                _ => rng.next() as u32,
            };
            IpAddr::V4(Ipv4Addr::from(a))
        } else {
            let base: u128 = 0x2001_0db8 << 96;
            let a = match rng.below(4) {
                0 => base | rng.below(64) as u128,
                1 => base | (rng.below(8) as u128) << 64 | rng.below(4) as u128,
                2 => base | (rng.below(8) as u128) << 80 | (rng.below(4) as u128) << 60,
                _ => (rng.below(4) as u128) << 122 | rng.next() as u128,
            };
            IpAddr::V6(Ipv6Addr::from(a))
        }
    }

    fn width(ip: IpAddr) -> u8 {
        if ip.is_ipv4() { 32 } else { 128 }
    }

    fn bits(ip: IpAddr) -> u128 {
        match ip {
            IpAddr::V4(a) => u128::from(u32::from(a)) << 96,
            IpAddr::V6(a) => u128::from(a),
        }
    }

    fn within(ip: IpAddr, prefix: IpAddr, len: u8) -> bool {
        if ip.is_ipv4() != prefix.is_ipv4() {
            return false;
        }
        let len = u32::from(len.min(width(prefix)));
        len == 0 || (bits(ip) ^ bits(prefix)) >> (128 - len) == 0
    }

    #[derive(Default)]
    struct Model {
        local: BTreeMap<IpAddr, i64>,
        peer: BTreeMap<IpAddr, i64>,
        changed: BTreeSet<IpAddr>,
    }

    impl Model {
        fn count(&self, prefix: IpAddr, len: u8, scope: Scope) -> i64 {
            let mut n: i64 = self
                .local
                .iter()
                .filter(|(ip, _)| within(**ip, prefix, len))
                .map(|(_, v)| v)
                .sum();
            if scope == Scope::Global {
                n += self
                    .peer
                    .iter()
                    .filter(|(ip, _)| within(**ip, prefix, len))
                    .map(|(_, v)| v)
                    .sum::<i64>();
            }
            n
        }
    }

    fn check_counts(c: &CidrCounts, m: &Model, queries: &[IpAddr], seed: u64) {
        for &q in queries {
            for len in 0..=width(q) {
                for scope in [Scope::Local, Scope::Global] {
                    assert_eq!(
                        c.count(q, len, scope),
                        m.count(q, len, scope),
                        "seed {seed}: {q}/{len} {scope:?}"
                    );
                }
            }
        }
    }

    fn check_rows(c: &CidrCounts, m: &Model, scope: Scope, seed: u64) {
        let mut want = BTreeMap::new();
        for ip in m.local.keys().chain(m.peer.keys()) {
            let levels: &[u8] = if ip.is_ipv4() {
                &[8, 16, 24, 32]
            } else {
                &[32, 48, 64, 128]
            };
            for &len in levels {
                let p = bits(*ip) & (u128::MAX << (128 - u32::from(len)));
                let p = if ip.is_ipv4() {
                    IpAddr::V4(Ipv4Addr::from((p >> 96) as u32))
                } else {
                    IpAddr::V6(Ipv6Addr::from(p))
                };
                let n = m.count(p, len, scope);
                if n != 0 {
                    want.insert((ip.is_ipv6(), bits(p), len), (p, len, n));
                }
            }
        }
        let want: Vec<_> = want.into_values().collect();
        assert_eq!(c.rows(scope), want, "seed {seed}: rows {scope:?}");
    }

    #[test]
    fn counts_at_every_prefix_length_match_a_naive_model() {
        for seed in 0..40 {
            let mut rng = Rng::new(seed);
            let c = CidrCounts::new();
            let mut m = Model::default();
            let pool: Vec<IpAddr> = (0..60).map(|_| address(&mut rng)).collect();
            for _ in 0..600 {
                let ip = pool[rng.below(pool.len() as u64) as usize];
                match rng.below(10) {
                    0..=4 => {
                        c.increment(ip);
                        *m.local.entry(ip).or_default() += 1;
                        m.changed.insert(ip);
                    }
                    5..=7 => {
                        c.decrement(ip);
                        *m.local.entry(ip).or_default() -= 1;
                        m.changed.insert(ip);
                    }
                    8 => {
                        let sum = rng.below(5) as i64 - 1;
                        c.set_peer_sum(&leaf_key(ip), sum);
                        m.peer.insert(ip, sum);
                    }
                    _ => {
                        let got: BTreeMap<IpAddr, i64> = c
                            .drain_changed()
                            .into_iter()
                            .map(|(k, v)| (parse_leaf_key(&k).expect("a leaf key"), v))
                            .collect();
                        let want: BTreeMap<IpAddr, i64> = std::mem::take(&mut m.changed)
                            .into_iter()
                            .map(|ip| (ip, m.local[&ip]))
                            .collect();
                        assert_eq!(got, want, "seed {seed}: drain");
                    }
                }
            }
            let mut queries = pool.clone();
            queries.extend((0..10).map(|_| address(&mut rng)));
            check_counts(&c, &m, &queries, seed);
            check_rows(&c, &m, Scope::Local, seed);
            check_rows(&c, &m, Scope::Global, seed);
            let mut got = c.local_values();
            got.sort();
            let mut want: Vec<_> = m
                .local
                .iter()
                .filter(|(_, v)| **v != 0)
                .map(|(ip, v)| (leaf_key(*ip), *v))
                .collect();
            want.sort();
            assert_eq!(got, want, "seed {seed}: local_values");
        }
    }

    #[test]
    fn peer_sums_change_global_counts_but_not_local_ones() {
        let c = CidrCounts::new();
        let a: IpAddr = "10.0.0.103".parse().unwrap();
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        c.increment(a);
        c.set_peer_sum(&leaf_key(a), 30);
        c.set_peer_sum(&leaf_key(b), 7);
        for len in [0, 8, 16, 20, 24, 30, 32] {
            assert_eq!(c.count(a, len, Scope::Local), 1, "/{len}");
            assert_eq!(c.count(a, len, Scope::Global), 31, "/{len}");
        }
        for len in [0, 16, 32, 40, 48, 64, 100, 128] {
            assert_eq!(c.count(b, len, Scope::Local), 0, "/{len}");
            assert_eq!(c.count(b, len, Scope::Global), 7, "/{len}");
        }
        // A later sum replaces the earlier one; it is not added to it.
        c.set_peer_sum(&leaf_key(a), 3);
        assert_eq!(c.count(a, 8, Scope::Global), 4);
        assert_eq!(
            c.rows(Scope::Global)[..4],
            [
                (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 0)), 8, 4),
                (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 0)), 16, 4),
                (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 0)), 24, 4),
                (a, 32, 4),
            ]
        );
        // Peer sums are not this node's changes.
        assert_eq!(c.drain_changed(), vec![(leaf_key(a), 1)]);
        assert_eq!(c.drain_changed(), vec![]);
    }

    #[test]
    fn drain_reports_exactly_the_changed_leaves_with_current_values() {
        let c = CidrCounts::new();
        let ips: Vec<IpAddr> = ["1.2.3.4", "1.2.3.5", "::1", "fe80::2"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        for ip in &ips {
            c.increment(*ip);
            c.increment(*ip);
        }
        let mut all = c.drain_changed();
        all.sort();
        let mut want: Vec<_> = ips.iter().map(|ip| (leaf_key(*ip), 2)).collect();
        want.sort();
        assert_eq!(all, want);
        c.decrement(ips[1]);
        c.increment(ips[3]);
        c.decrement(ips[3]);
        let mut got = c.drain_changed();
        got.sort();
        let mut want = vec![(leaf_key(ips[1]), 1), (leaf_key(ips[3]), 2)];
        want.sort();
        assert_eq!(got, want);
        assert!(c.drain_changed().is_empty());
    }

    #[test]
    fn zero_counts_are_pruned() {
        let c = CidrCounts::new();
        let mut rng = Rng::new(7);
        let ips: Vec<IpAddr> = (0..500).map(|_| address(&mut rng)).collect();
        for ip in &ips {
            c.increment(*ip);
            c.set_peer_sum(&leaf_key(*ip), 2);
        }
        c.drain_changed();
        assert!(c.entries() > 0);
        for ip in &ips {
            c.decrement(*ip);
        }
        // Still dirty and still held by the peers: nothing goes yet.
        assert!(c.entries() > 0);
        c.drain_changed();
        assert!(c.entries() > 0);
        for ip in &ips {
            c.set_peer_sum(&leaf_key(*ip), 0);
        }
        assert_eq!(c.entries(), 0);
        assert!(c.rows(Scope::Global).is_empty());
        // And a leaf that only the hot path touched goes at the drain.
        c.increment(ips[0]);
        c.decrement(ips[0]);
        assert!(c.entries() > 0);
        assert_eq!(c.drain_changed(), vec![(leaf_key(ips[0]), 0)]);
        assert_eq!(c.entries(), 0);
    }

    #[test]
    fn concurrent_increments_sum_correctly() {
        let c = Arc::new(CidrCounts::new());
        let threads = 4;
        let rounds = 20_000;
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let c = Arc::clone(&c);
                std::thread::spawn(move || {
                    // Overlapping addresses: every thread hits the same
                    // leaves and prefixes, so creations race too.
                    for i in 0..rounds {
                        let a = 0x0a00_0000 | (i % 1000) as u32;
                        c.increment(IpAddr::V4(Ipv4Addr::from(a)));
                        let b = (0x2001_0db8u128 << 96) | (i % 700) as u128;
                        c.increment(IpAddr::V6(Ipv6Addr::from(b)));
                        if i % 2 == 0 {
                            c.decrement(IpAddr::V4(Ipv4Addr::from(a ^ (t as u32))));
                        }
                    }
                })
            })
            .collect();
        // The engine drains while the workers run.
        let mut last = BTreeMap::new();
        while !handles.iter().all(|h| h.is_finished()) {
            last.extend(c.drain_changed());
        }
        for h in handles {
            h.join().unwrap();
        }
        last.extend(c.drain_changed());
        let total = i64::from(threads * rounds);
        let v4: IpAddr = "10.0.0.0".parse().unwrap();
        let v6: IpAddr = "2001:db8::".parse().unwrap();
        assert_eq!(c.count(v4, 8, Scope::Local), total / 2);
        assert_eq!(c.count(v4, 22, Scope::Local), total / 2);
        assert_eq!(c.count(v6, 32, Scope::Local), total);
        assert_eq!(c.count(v6, 118, Scope::Local), total);
        // What the drains reported, last value per leaf, is the state.
        let mut values = c.local_values();
        values.sort();
        let reported: Vec<_> = last.into_iter().filter(|(_, v)| *v != 0).collect();
        assert_eq!(reported, values);
    }

    #[test]
    fn leaf_keys_round_trip_and_garbage_is_rejected() {
        for s in [
            "0.0.0.0",
            "255.1.2.3",
            "::",
            "2001:db8::ff",
            "::ffff:1.2.3.4",
        ] {
            let ip: IpAddr = s.parse().unwrap();
            assert_eq!(parse_leaf_key(&leaf_key(ip)), Some(ip));
        }
        assert_eq!(leaf_key("1.2.3.4".parse().unwrap()), vec![4, 1, 2, 3, 4]);
        let bad: [&[u8]; 8] = [
            &[],
            &[4],
            &[4, 1, 2, 3],
            &[4, 1, 2, 3, 4, 5],
            &[6, 1, 2, 3, 4],
            &[6; 18],
            &[5, 1, 2, 3, 4],
            &[0; 17],
        ];
        for b in bad {
            assert_eq!(parse_leaf_key(b), None, "{b:?}");
        }
        let mut rng = Rng::new(1);
        for _ in 0..10_000 {
            let n = rng.below(20) as usize;
            let b: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            let want = matches!((b.first(), n), (Some(4), 5) | (Some(6), 17));
            assert_eq!(parse_leaf_key(&b).is_some(), want, "{b:?}");
        }
        // Garbage from the wire does nothing.
        let c = CidrCounts::new();
        c.set_peer_sum(&[4, 1, 2], 5);
        assert!(c.rows(Scope::Global).is_empty());
    }
}
