//! Replicated objects: every node's contribution, and the cluster-wide sum.
//!
//! A replicated object (a CIDR tree, a gauge table, a throttle's usage...)
//! is, underneath, a table of keys to signed counts. Every node writes only
//! its own **contribution**; each node keeps the latest contribution of
//! every peer and the **peer sum** per key, so that the cluster-wide
//! (`global`) value of a key is this node's own count plus the peer sum,
//! readable on the hot path without asking anyone.
//!
//! Updates carry **absolute values**, not increments: "key K of origin N is
//! now V, as of N's version S". A receiver keeps, per origin and key, the
//! value with the highest version, so applying updates is idempotent and
//! commutative: duplicates, reordering and batches that overtake each other
//! all end in the same state, and a lost update is repaired by any later
//! update of the same key or by the snapshot an origin sends whenever a
//! link to a peer (re)opens. Versions are per origin *generation*: a
//! restarted node starts again from zero, and its old contribution is
//! dropped when the new generation speaks.
//!
//! A node that leaves the view has its contribution removed at once
//! ([`Replica::remove_origin`]): the current connections of a dead node are
//! not connections. Its next snapshot, if it returns, restores it.
//!
//! Everything here is pure: the caller hands in updates and gets back the
//! keys whose peer sum changed, to publish to the hot path. Batching of
//! this node's outgoing updates (`max_delay`, `max_pending`) is
//! [`batch::Batcher`].
//!
//! Replicated key/value caches are not counts: each key has one value,
//! the last written, and their merge rule is [`cache`]'s.

pub mod batch;
pub mod cache;
pub mod parts;

use std::collections::{BTreeMap, HashMap};

use crate::core::hash::Seeded;

/// The maps here take every update a peer sends: the fast hash, not SipHash.
type KeyMap<V> = HashMap<Key, V, Seeded>;

/// Keys whose peer sum changed during one call (a key may repeat).
type Changed = Vec<Key>;

/// A key of a replicated object: a CIDR prefix, a domain, a binding and
/// domain, a throttle name... encoded by the object's kind.
pub type Key = Vec<u8>;

/// One key's value in an origin's contribution, as of the origin's version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub key: Key,
    pub value: i64,
    pub version: u64,
}

/// A peer sum that changed, for the hot path's shared view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SumChange {
    pub key: Key,
    /// The sum of every peer's value for the key (this node's own count is
    /// not included: the hot path adds it).
    pub peer_sum: i64,
}

/// Zeros kept as tombstones per origin before old ones are forgotten.
const TOMBSTONES_KEPT: usize = 1024;

/// How many of an origin's versions back a tombstone must be before it may
/// be forgotten.
const TOMBSTONE_GRACE: u64 = 64;

/// One peer's contribution to one object.
#[derive(Clone, Debug, Default)]
struct Origin {
    generation: u64,
    entries: KeyMap<(i64, u64)>,
    /// The newest version applied, and how many entries are zeros.
    newest: u64,
    zeros: usize,
}

impl Origin {
    /// Forgets tombstones once there are many: keys that come and go (a
    /// throttle's or a series' windows) would otherwise pile up until the
    /// origin's next snapshot. Only zeros at least [`TOMBSTONE_GRACE`]
    /// versions old go: an update that late would have had to be
    /// overtaken by that many batches on an ordered link, and the snapshot
    /// that follows a reconnection repairs even that.
    fn forget_old_zeros(&mut self) {
        if self.zeros <= TOMBSTONES_KEPT {
            return;
        }
        let horizon = self.newest.saturating_sub(TOMBSTONE_GRACE);
        self.entries
            .retain(|_, (value, version)| *value != 0 || *version >= horizon);
        self.zeros = self.entries.values().filter(|(v, _)| *v == 0).count();
    }
}

/// The replicated state of one object on one node: the peers'
/// contributions and their sum; see the module docs.
#[derive(Clone, Debug, Default)]
pub struct Replica {
    origins: BTreeMap<String, Origin>,
    peer_sum: KeyMap<i64>,
}

impl Replica {
    pub fn new() -> Replica {
        Replica::default()
    }

    /// Applies updates from `origin` (generation `generation`) and returns
    /// the keys whose peer sum changed. Updates from an older generation
    /// than the one held are ignored; a newer generation first drops the
    /// old contribution (the node restarted).
    pub fn apply(&mut self, origin: &str, generation: u64, entries: &[Entry]) -> Vec<SumChange> {
        let mut changes = Changed::new();
        if !self.adopt_generation(origin, generation, &mut changes) {
            return Vec::new();
        }
        let held = self.origins.entry(origin.to_string()).or_default();
        for e in entries {
            // A zero stays as a versioned tombstone, so that an older
            // non-zero arriving late cannot bring the key back; the next
            // snapshot clears it, or `forget_old_zeros` once many pile up.
            let (old, was_zero) = match held.entries.get_mut(&e.key) {
                Some((_, version)) if *version >= e.version => continue,
                Some(slot) => {
                    let old = slot.0;
                    *slot = (e.value, e.version);
                    (old, old == 0)
                }
                None => {
                    held.entries.insert(e.key.clone(), (e.value, e.version));
                    (0, false)
                }
            };
            match (was_zero, e.value == 0) {
                (false, true) => held.zeros += 1,
                (true, false) => held.zeros -= 1,
                _ => {}
            }
            held.newest = held.newest.max(e.version);
            add_to_sum(&mut self.peer_sum, &mut changes, &e.key, e.value - old);
        }
        held.forget_old_zeros();
        into_changes(&self.peer_sum, changes)
    }

    /// Replaces `origin`'s whole contribution with a snapshot taken at its
    /// version `as_of` (sent when a link opens, so that a joining node, or
    /// one that missed updates, has everything). Keys absent from the
    /// snapshot are zero, except those an update newer than the snapshot
    /// has already set: that update overtook it and stays.
    pub fn apply_snapshot(
        &mut self,
        origin: &str,
        generation: u64,
        as_of: u64,
        entries: &[Entry],
    ) -> Vec<SumChange> {
        let mut changes = Changed::new();
        if !self.adopt_generation(origin, generation, &mut changes) {
            return Vec::new();
        }
        let held = self.origins.entry(origin.to_string()).or_default();
        let mut fresh: KeyMap<(i64, u64)> = held
            .entries
            .iter()
            .filter(|(_, (_, version))| *version > as_of)
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        for e in entries {
            fresh.entry(e.key.clone()).or_insert((e.value, e.version));
        }
        // Tombstones older than the snapshot are not needed any more.
        fresh.retain(|_, (value, version)| *value != 0 || *version > as_of);
        held.zeros = fresh.values().filter(|(v, _)| *v == 0).count();
        held.newest = held.newest.max(as_of);
        let old = std::mem::replace(&mut held.entries, fresh);
        let held = &self.origins[origin].entries;
        for (key, (value, _)) in &old {
            let now = held.get(key).map_or(0, |(v, _)| *v);
            add_to_sum(&mut self.peer_sum, &mut changes, key, now - value);
        }
        for (key, (value, _)) in held {
            if !old.contains_key(key) {
                add_to_sum(&mut self.peer_sum, &mut changes, key, *value);
            }
        }
        into_changes(&self.peer_sum, changes)
    }

    /// Drops `origin`'s contribution (it left the view).
    pub fn remove_origin(&mut self, origin: &str) -> Vec<SumChange> {
        let mut changes = Changed::new();
        if let Some(gone) = self.origins.remove(origin) {
            for (key, (value, _)) in &gone.entries {
                add_to_sum(&mut self.peer_sum, &mut changes, key, -value);
            }
        }
        into_changes(&self.peer_sum, changes)
    }

    /// The sum of every peer's value for `key`.
    pub fn peer_sum(&self, key: &[u8]) -> i64 {
        self.peer_sum.get(key).copied().unwrap_or(0)
    }

    /// `origin`'s value for `key` (`cluster shared show OBJ from NODE`).
    pub fn value_of(&self, origin: &str, key: &[u8]) -> i64 {
        self.origins
            .get(origin)
            .and_then(|o| o.entries.get(key))
            .map_or(0, |(v, _)| *v)
    }

    /// `origin`'s non-zero values, sorted by key (`cluster shared show OBJ
    /// from NODE`).
    pub fn values_of(&self, origin: &str) -> Vec<(Key, i64)> {
        let mut rows: Vec<(Key, i64)> = self
            .origins
            .get(origin)
            .map(|o| {
                o.entries
                    .iter()
                    .filter(|(_, (v, _))| *v != 0)
                    .map(|(k, (v, _))| (k.clone(), *v))
                    .collect()
            })
            .unwrap_or_default();
        rows.sort();
        rows
    }

    /// Every non-zero peer sum, for listings.
    pub fn peer_sums(&self) -> impl Iterator<Item = (&Key, i64)> {
        self.peer_sum.iter().map(|(k, v)| (k, *v))
    }

    /// The origins whose contributions are held.
    pub fn origins(&self) -> impl Iterator<Item = &str> {
        self.origins.keys().map(String::as_str)
    }

    /// Makes `generation` the one held for `origin`: false if it is older
    /// (to be ignored); a newer one drops the old contribution first.
    fn adopt_generation(&mut self, origin: &str, generation: u64, changes: &mut Changed) -> bool {
        match self.origins.get(origin).map(|o| o.generation) {
            Some(held) if generation < held => return false,
            Some(held) if generation == held => return true,
            Some(_) => {
                if let Some(old) = self.origins.remove(origin) {
                    for (key, (value, _)) in &old.entries {
                        add_to_sum(&mut self.peer_sum, changes, key, -value);
                    }
                }
            }
            None => {}
        }
        self.origins.insert(
            origin.to_string(),
            Origin {
                generation,
                ..Origin::default()
            },
        );
        true
    }
}

fn add_to_sum(sums: &mut KeyMap<i64>, changes: &mut Changed, key: &[u8], delta: i64) {
    if delta == 0 {
        return;
    }
    match sums.get_mut(key) {
        Some(sum) => {
            *sum += delta;
            if *sum == 0 {
                sums.remove(key);
            }
        }
        None => {
            sums.insert(key.to_vec(), delta);
        }
    }
    changes.push(key.to_vec());
}

/// The changed keys, sorted and once each, with their final sums.
fn into_changes(sums: &KeyMap<i64>, mut changes: Changed) -> Vec<SumChange> {
    changes.sort_unstable();
    changes.dedup();
    changes
        .into_iter()
        .map(|key| SumChange {
            peer_sum: sums.get(&key).copied().unwrap_or(0),
            key,
        })
        .collect()
}

#[cfg(test)]
mod tests;
