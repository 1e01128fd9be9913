//! The merge rule of replicated key/value caches (`Replicate "name" {
//! type = "cache" }`): a last-writer-wins register per key.
//!
//! Unlike the counting objects of [`super`], a cache key has one value for
//! the whole cluster, written by whichever node wrote last. Every write
//! carries a **stamp** from a hybrid logical clock ([`Clock`]) and the name
//! of its **origin**; of two entries for a key, the one with the greater
//! `(stamp, origin)` wins, and the remaining fields break the tie should a
//! buggy or hostile peer reuse a stamp, so that the order is total. Merging
//! is therefore taking a maximum: commutative, associative and idempotent,
//! and replicas that have seen the same entries in any order, any number of
//! times, hold the same state.
//!
//! The stamp is wall-clock milliseconds shifted left 16 bits, plus a counter
//! in the low bits, and never goes backwards: a node stamps a write above
//! both its clock and every stamp it has seen, so a write made after seeing
//! another one wins over it even when the writer's clock is behind. Between
//! unrelated writes, the later wall clock wins, which is what an operator
//! expects of `ec_cluster_cache_set` on two nodes.
//!
//! A delete is a **tombstone**: an entry without a value, which wins and
//! loses like any write, so a late copy of the value it deleted cannot
//! bring the key back. Every entry carries an absolute **expiry** (wall
//! clock ms, 0 for never) so that all nodes expire a key at the same moment
//! whoever received it when. An entry reads as absent from its expiry on (a
//! tombstone's expiry is the moment of the delete) and is forgotten
//! [`LINGER_MS`] later: until then it still defeats late copies of what it
//! replaced. Forgetting is the one place where the merge stops being a pure
//! maximum: a copy of an older write delayed by more than the linger can
//! come back. A message that old is a link that was down, and the snapshot
//! the link sends on its return carries the state as it is now.
//!
//! `max_size` bounds the values held (tombstones are bounded by the linger
//! instead). Over it, the value expiring soonest goes first (an expired one
//! before any live one), and among values that never expire the oldest
//! written: an entry with a TTL was meant to go anyway, and one without was
//! meant to stay. Eviction is local and is not replicated: every node holds
//! the same entries with the same expiries and stamps, so nodes that have
//! converged evict the same ones.

use std::collections::{BTreeSet, HashMap};

use super::Key;

/// How long an expired entry or a tombstone is kept, so that it defeats
/// late copies of the writes it replaced: longer than any message spends
/// queued on a live link.
const LINGER_MS: u64 = 5 * 60 * 1000;

/// Longest cache key accepted, by the hot path and from the wire.
pub(crate) const MAX_CACHE_KEY: usize = 4096;
/// Largest cache value accepted: several must fit one frame.
pub(crate) const MAX_CACHE_VALUE: usize = 64 * 1024;

/// Bits of a stamp below the milliseconds: the counter of writes within
/// one millisecond (more than 65536 carry into the milliseconds, which
/// keeps stamps increasing).
const COUNTER_BITS: u32 = 16;

/// One write (or delete) of one key, as held and as sent.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CacheEntry {
    pub key: Key,
    /// `None` for a tombstone (the key was removed).
    pub value: Option<Vec<u8>>,
    /// The hybrid logical stamp of the write; see the module docs.
    pub stamp: u64,
    /// The node that wrote it; breaks ties between equal stamps.
    pub origin: String,
    /// Wall-clock ms from which the entry reads as absent; 0 = never.
    pub expires_ms: u64,
}

impl CacheEntry {
    /// Whether `self` wins over `other` for the same key. The order is
    /// total (every field takes part), so the merge does not depend on
    /// which of two distinct entries arrived first.
    pub fn beats(&self, other: &CacheEntry) -> bool {
        self.rank() > other.rank()
    }

    fn rank(&self) -> (u64, &str, Option<&[u8]>, u64) {
        (
            self.stamp,
            &self.origin,
            self.value.as_deref(),
            self.expires_ms,
        )
    }

    /// Whether the entry reads as absent at `now_ms`.
    pub fn is_dead(&self, now_ms: u64) -> bool {
        self.value.is_none() || (self.expires_ms != 0 && now_ms >= self.expires_ms)
    }

    /// The bytes this entry takes in a `CacheUpdate` (for splitting batches
    /// into frames).
    pub fn encoded_len(&self) -> usize {
        4 + self.key.len()
            + 1
            + self.value.as_ref().map_or(0, |v| 4 + v.len())
            + 8
            + 4
            + self.origin.len()
            + 8
    }
}

/// Splits entries into batches whose encoded entries take at most
/// `max_bytes` each (an entry bigger than that goes alone), for a sender
/// keeping `CacheUpdate` messages under the frame limit.
pub fn split_batches(entries: Vec<CacheEntry>, max_bytes: usize) -> Vec<Vec<CacheEntry>> {
    let mut out: Vec<Vec<CacheEntry>> = Vec::new();
    let mut size = 0;
    for e in entries {
        let len = e.encoded_len();
        match out.last_mut() {
            Some(batch) if !batch.is_empty() && size + len <= max_bytes => {
                size += len;
                batch.push(e);
            }
            _ => {
                size = len;
                out.push(vec![e]);
            }
        }
    }
    out
}

/// A hybrid logical clock; see the module docs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Clock {
    last: u64,
}

impl Clock {
    pub fn new() -> Clock {
        Clock::default()
    }

    /// The stamp of a write made at `now_ms`: above the wall clock and above
    /// every stamp issued or observed so far.
    pub fn tick(&mut self, now_ms: u64) -> u64 {
        let wall = now_ms.min(u64::MAX >> COUNTER_BITS) << COUNTER_BITS;
        self.last = wall.max(self.last.saturating_add(1));
        self.last
    }

    /// A stamp seen in a peer's write: the next local write goes above it.
    pub fn observe(&mut self, stamp: u64) {
        self.last = self.last.max(stamp);
    }

    /// The wall-clock milliseconds part of a stamp.
    pub fn millis(stamp: u64) -> u64 {
        stamp >> COUNTER_BITS
    }
}

/// The state of one cache on one node: the winning entry per key, and the
/// order in which values are evicted and entries forgotten.
#[derive(Clone, Debug, Default)]
pub struct CacheState {
    entries: HashMap<Key, CacheEntry>,
    /// Every entry by (expiry, never = `u64::MAX`; stamp; key): the front is
    /// what eviction and forgetting look at first.
    order: BTreeSet<(u64, u64, Key)>,
    /// Entries with a value (what `max_size` bounds).
    values: usize,
    /// `max_size`; `usize::MAX` when unbounded.
    max_size: usize,
}

impl PartialEq for CacheState {
    /// Two states are equal when they hold the same entries (the index and
    /// count follow from those).
    fn eq(&self, other: &CacheState) -> bool {
        self.entries == other.entries
    }
}

impl CacheState {
    /// An empty cache holding at most `max_size` values (`None`: unbounded,
    /// the reference's `max_size = -1`).
    pub fn new(max_size: Option<usize>) -> CacheState {
        CacheState {
            max_size: max_size.unwrap_or(usize::MAX),
            ..CacheState::default()
        }
    }

    /// Merges one entry; true if it won (it is now the key's entry). Does
    /// not evict: call [`CacheState::evict`] after a batch.
    pub fn merge(&mut self, entry: CacheEntry) -> bool {
        if let Some(held) = self.entries.get(&entry.key) {
            if !entry.beats(held) {
                return false;
            }
            let held = held.clone();
            self.unindex(&held);
        }
        self.index(&entry);
        self.entries.insert(entry.key.clone(), entry);
        true
    }

    /// The value of `key` at `now_ms`, if it has a live one.
    pub fn get(&self, key: &[u8], now_ms: u64) -> Option<&[u8]> {
        self.entries
            .get(key)
            .filter(|e| !e.is_dead(now_ms))
            .and_then(|e| e.value.as_deref())
    }

    /// The entry held for `key`, live or not.
    pub fn entry(&self, key: &[u8]) -> Option<&CacheEntry> {
        self.entries.get(key)
    }

    /// Removes values while more than `max_size` are held, in the order of
    /// the module docs; returns the keys evicted. Tombstones are skipped:
    /// they hold no value and go when their linger is over.
    pub fn evict(&mut self) -> Vec<Key> {
        let mut gone = Vec::new();
        while self.values > self.max_size {
            let Some(key) = self
                .order
                .iter()
                .map(|(_, _, key)| key)
                .find(|key| self.entries.get(*key).is_some_and(|e| e.value.is_some()))
                .cloned()
            else {
                break;
            };
            if let Some(e) = self.entries.remove(&key) {
                self.unindex(&e);
            }
            gone.push(key);
        }
        gone
    }

    /// Forgets entries dead for longer than the linger; returns how many.
    pub fn purge(&mut self, now_ms: u64) -> usize {
        let mut forgotten = 0;
        while let Some((expires, _, key)) = self.order.first().cloned() {
            if expires == u64::MAX || expires.saturating_add(LINGER_MS) > now_ms {
                break;
            }
            if let Some(e) = self.entries.remove(&key) {
                self.unindex(&e);
            } else {
                self.order.pop_first();
            }
            forgotten += 1;
        }
        forgotten
    }

    /// Every entry held, live, expired or deleted, sorted by key: what a
    /// peer needs to converge with this node (see [`super`]'s snapshots).
    pub fn entries(&self) -> Vec<CacheEntry> {
        let mut all: Vec<CacheEntry> = self.entries.values().cloned().collect();
        all.sort_by(|a, b| a.key.cmp(&b.key));
        all
    }

    /// Keys with a value held (live or expired but not yet forgotten).
    pub fn values(&self) -> usize {
        self.values
    }

    /// Entries held, tombstones included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn order_key(e: &CacheEntry) -> (u64, u64, Key) {
        let expires = if e.expires_ms == 0 {
            u64::MAX
        } else {
            e.expires_ms
        };
        (expires, e.stamp, e.key.clone())
    }

    fn index(&mut self, e: &CacheEntry) {
        self.order.insert(Self::order_key(e));
        if e.value.is_some() {
            self.values += 1;
        }
    }

    fn unindex(&mut self, e: &CacheEntry) {
        self.order.remove(&Self::order_key(e));
        if e.value.is_some() {
            self.values -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(key: &str, value: Option<&str>, stamp: u64, origin: &str, expires: u64) -> CacheEntry {
        CacheEntry {
            key: key.as_bytes().to_vec(),
            value: value.map(|v| v.as_bytes().to_vec()),
            stamp,
            origin: origin.to_string(),
            expires_ms: expires,
        }
    }

    use crate::test_rng::Rng;

    #[test]
    fn the_greater_stamp_then_origin_wins_and_a_tombstone_is_a_write() {
        let mut s = CacheState::new(None);
        assert!(s.merge(write("k", Some("a"), 10, "n1", 0)));
        assert!(!s.merge(write("k", Some("b"), 9, "n2", 0)), "older");
        assert!(s.merge(write("k", Some("c"), 10, "n2", 0)), "tie: origin");
        assert_eq!(s.get(b"k", 0), Some(&b"c"[..]));
        assert!(s.merge(write("k", None, 11, "n1", 5)));
        assert_eq!(s.get(b"k", 0), None);
        assert!(
            !s.merge(write("k", Some("c"), 10, "n2", 0)),
            "a late copy of the deleted value stays deleted"
        );
        assert_eq!((s.len(), s.values()), (1, 0));
    }

    #[test]
    fn the_clock_never_goes_back_and_follows_what_it_saw() {
        let mut c = Clock::new();
        let a = c.tick(1000);
        let b = c.tick(1000);
        assert!(b > a, "two writes in one millisecond");
        assert_eq!(Clock::millis(a), 1000);
        assert!(c.tick(900) > b, "the wall clock went back");
        // A peer whose clock is ahead wrote; our next write must beat it
        // even though our wall clock says earlier.
        let theirs = Clock::new().tick(5000);
        c.observe(theirs);
        assert!(c.tick(1001) > theirs);
        let mut far = Clock::new();
        far.observe(u64::MAX);
        assert_eq!(far.tick(u64::MAX), u64::MAX, "saturates, no overflow");
    }

    #[test]
    fn entries_expire_at_their_absolute_time_and_are_forgotten_after_the_linger() {
        let mut s = CacheState::new(None);
        s.merge(write("t", Some("v"), 1, "n1", 2000));
        s.merge(write("n", Some("v"), 2, "n1", 0));
        s.merge(write("d", None, 3, "n1", 1000));
        assert_eq!(s.get(b"t", 1999), Some(&b"v"[..]));
        assert_eq!(s.get(b"t", 2000), None);
        assert_eq!(s.purge(1000 + LINGER_MS - 1), 0);
        assert_eq!(s.purge(1000 + LINGER_MS), 1, "the tombstone");
        assert_eq!(s.purge(2000 + LINGER_MS), 1, "the expired value");
        assert_eq!(s.purge(u64::MAX), 0, "never-expiring stays");
        assert_eq!(s.get(b"n", u64::MAX), Some(&b"v"[..]));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn over_max_size_the_soonest_expiring_then_the_oldest_written_goes() {
        let mut s = CacheState::new(Some(2));
        s.merge(write("old", Some("v"), 1, "n1", 0));
        s.merge(write("new", Some("v"), 2, "n1", 0));
        s.merge(write("ttl", Some("v"), 3, "n1", 9000));
        s.merge(write("gone", None, 4, "n1", 10));
        assert_eq!(
            s.evict(),
            [b"ttl".to_vec()],
            "the TTL one, not the tombstone"
        );
        s.merge(write("newer", Some("v"), 5, "n1", 0));
        assert_eq!(s.evict(), [b"old".to_vec()]);
        assert_eq!(s.values(), 2);
        assert!(s.entry(b"gone").is_some(), "tombstones do not count");
    }

    /// Random writes and deletes of a few keys by three origins, some
    /// reusing a stamp with other contents; merged into fresh states in
    /// random orders with duplicates, every state ends equal, and equal to
    /// the per-key maximum.
    #[test]
    fn merging_is_order_and_duplicate_independent() {
        for seed in 1..=200u64 {
            let mut rng = Rng::new(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let origins = ["n1", "n2", "n3"];
            let writes: Vec<CacheEntry> = (0..40)
                .map(|_| {
                    let value = match rng.below(4) {
                        0 => None,
                        v => Some(format!("v{v}")),
                    };
                    write(
                        &format!("k{}", rng.below(5)),
                        value.as_deref(),
                        rng.below(8),
                        origins[rng.below(3) as usize],
                        rng.below(3) * 1000,
                    )
                })
                .collect();
            let mut expected: HashMap<Key, CacheEntry> = HashMap::new();
            for w in &writes {
                match expected.get(&w.key) {
                    Some(held) if !w.beats(held) => {}
                    _ => {
                        expected.insert(w.key.clone(), w.clone());
                    }
                }
            }
            let mut states = Vec::new();
            for _ in 0..4 {
                let mut order = writes.clone();
                for _ in 0..20 {
                    let i = rng.below(order.len() as u64) as usize;
                    order.push(order[i].clone());
                }
                for i in (1..order.len()).rev() {
                    order.swap(i, rng.below(i as u64 + 1) as usize);
                }
                let mut s = CacheState::new(None);
                for w in order {
                    s.merge(w);
                }
                assert_eq!(s.entries, expected, "seed {seed}");
                assert_eq!(
                    s.values(),
                    expected.values().filter(|e| e.value.is_some()).count()
                );
                assert_eq!(s.order.len(), s.len(), "seed {seed}: index in step");
                states.push(s);
            }
            assert!(states.windows(2).all(|w| w[0] == w[1]), "seed {seed}");
        }
    }

    #[test]
    fn batches_stay_under_the_budget() {
        let e = |n: usize| write(&"k".repeat(n), Some("v"), 1, "n1", 0);
        let one = e(10).encoded_len();
        assert_eq!(one, 4 + 10 + 1 + 4 + 1 + 8 + 4 + 2 + 8);
        let batches = split_batches(vec![e(10), e(10), e(10), e(500)], 2 * one);
        assert_eq!(
            batches.iter().map(Vec::len).collect::<Vec<_>>(),
            [2, 1, 1],
            "two fit, the big one goes alone"
        );
        assert!(split_batches(Vec::new(), 10).is_empty());
    }
}
