//! This node's outgoing updates for one object, batched as the reference
//! does: sent after `max_delay` seconds or `max_pending` updates, whichever
//! comes first.
//!
//! Updates carry absolute values (module docs of [`super`]), so a batch
//! holds only the latest value of each key changed since the last one: a
//! key incremented a thousand times between two batches costs one entry.
//! Every batch takes the next version of this node's sequence, and a
//! snapshot is stamped with the version it was taken at, which is what lets
//! a receiver order snapshots and updates that cross on the wire.

use std::collections::BTreeMap;

use super::{Entry, Key};

/// When a batch is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchConfig {
    /// `max_delay`, in milliseconds: the longest an update waits.
    pub max_delay_ms: u64,
    /// `max_pending`: this many updates make a batch due at once.
    pub max_pending: u32,
}

/// When a batch of pending updates is due: `max_delay` after the first,
/// or at once after `max_pending` of them. Counting objects ([`Batcher`])
/// and caches share it.
#[derive(Clone, Debug)]
pub struct Due {
    cfg: BatchConfig,
    /// Updates noted since the last batch (counting repeats of a key).
    updates: u32,
    /// When the oldest pending update was noted.
    since_ms: Option<u64>,
}

impl Due {
    pub fn new(cfg: BatchConfig) -> Due {
        Due {
            cfg,
            updates: 0,
            since_ms: None,
        }
    }

    /// `n` more updates are pending.
    pub fn note(&mut self, now_ms: u64, n: usize) {
        if n == 0 {
            return;
        }
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        self.updates = self.updates.saturating_add(n);
        self.since_ms.get_or_insert(now_ms);
    }

    /// Whether a batch should go out now.
    pub fn due(&self, now_ms: u64) -> bool {
        self.since_ms.is_some_and(|since| {
            self.updates >= self.cfg.max_pending || now_ms >= since + self.cfg.max_delay_ms
        })
    }

    /// When a batch falls due by time, if anything is pending.
    pub fn next_deadline(&self) -> Option<u64> {
        self.since_ms.map(|since| since + self.cfg.max_delay_ms)
    }

    /// The batch went out: nothing is pending.
    pub fn reset(&mut self) {
        self.since_ms = None;
        self.updates = 0;
    }
}

/// See the module docs.
#[derive(Clone, Debug)]
pub struct Batcher {
    due: Due,
    version: u64,
    /// The latest value of each key changed since the last batch.
    pending: BTreeMap<Key, i64>,
}

impl Batcher {
    pub fn new(cfg: BatchConfig) -> Batcher {
        Batcher {
            due: Due::new(cfg),
            version: 0,
            pending: BTreeMap::new(),
        }
    }

    /// This node's value for `key` is now `value`.
    pub fn note(&mut self, now_ms: u64, key: Key, value: i64) {
        self.pending.insert(key, value);
        self.due.note(now_ms, 1);
    }

    /// Whether a batch should go out now.
    pub fn due(&self, now_ms: u64) -> bool {
        self.due.due(now_ms)
    }

    /// When a batch falls due by time, if anything is pending.
    pub fn next_deadline(&self) -> Option<u64> {
        self.due.next_deadline()
    }

    /// The pending updates as one batch under the next version (empty when
    /// nothing is pending).
    pub fn take(&mut self) -> Vec<Entry> {
        self.due.reset();
        if self.pending.is_empty() {
            return Vec::new();
        }
        self.version += 1;
        let version = self.version;
        std::mem::take(&mut self.pending)
            .into_iter()
            .map(|(key, value)| Entry {
                key,
                value,
                version,
            })
            .collect()
    }

    /// A snapshot of this node's whole contribution (`values`: every key
    /// with a non-zero value), stamped with the current version; returns
    /// the version and the entries. Pending updates stay pending: they go
    /// out later under a newer version and override the snapshot.
    pub fn snapshot(&self, values: impl IntoIterator<Item = (Key, i64)>) -> (u64, Vec<Entry>) {
        let entries = values
            .into_iter()
            .filter(|(_, value)| *value != 0)
            .map(|(key, value)| Entry {
                key,
                value,
                version: self.version,
            })
            .collect();
        (self.version, entries)
    }
}
