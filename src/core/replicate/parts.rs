//! Updates under the frame limit: a batch is cut into several batches, a
//! snapshot into parts that the receiver puts back together and applies
//! only once it has the last (a part alone would read as "every key not
//! in it is zero").

use std::collections::HashMap;

use super::Entry;
use crate::core::wire::{ReplicaUpdate, SnapshotPart};

/// Replica entries per message: a key is at most 255 bytes, so 3,000
/// entries stay well under the 1 MiB frame.
pub(crate) const ENTRIES_PER_MESSAGE: usize = 3_000;

/// `entries` as one or more updates under the frame limit; a snapshot's
/// parts all but the last say `more`. An empty snapshot is still one
/// message: it clears the receiver.
pub fn cut(
    object: &str,
    generation: u64,
    snapshot_as_of: Option<u64>,
    entries: Vec<Entry>,
) -> Vec<ReplicaUpdate> {
    if entries.is_empty() && snapshot_as_of.is_none() {
        return Vec::new();
    }
    let mut chunks: Vec<Vec<Entry>> = Vec::new();
    let mut rest = entries.into_iter().peekable();
    while rest.peek().is_some() {
        chunks.push(rest.by_ref().take(ENTRIES_PER_MESSAGE).collect());
    }
    if chunks.is_empty() {
        chunks.push(Vec::new());
    }
    let last = chunks.len() - 1;
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, entries)| ReplicaUpdate {
            object: object.to_string(),
            generation,
            snapshot: snapshot_as_of.map(|as_of| SnapshotPart {
                as_of,
                more: i < last,
            }),
            entries,
        })
        .collect()
}

/// A whole snapshot: the origin's generation, its `as_of` version and
/// every entry.
pub type Snapshot = (u64, u64, Vec<Entry>);

/// The parts of snapshots received so far, by origin.
#[derive(Clone, Debug, Default)]
pub struct SnapshotParts {
    partial: HashMap<String, Snapshot>,
}

impl SnapshotParts {
    /// Adds a part from `origin`; returns the whole snapshot with the last
    /// part. A part of a newer snapshot drops the parts of an older one.
    pub fn add(
        &mut self,
        origin: &str,
        generation: u64,
        part: SnapshotPart,
        entries: &[Entry],
    ) -> Option<Snapshot> {
        let held = self.partial.entry(origin.to_string()).or_default();
        if (held.0, held.1) != (generation, part.as_of) {
            *held = (generation, part.as_of, Vec::new());
        }
        held.2.extend_from_slice(entries);
        if part.more {
            return None;
        }
        self.partial.remove(origin)
    }

    /// `origin` left: its unfinished snapshot will not be finished.
    pub fn forget(&mut self, origin: &str) {
        self.partial.remove(origin);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: usize) -> Entry {
        Entry {
            key: format!("k{i}").into_bytes(),
            value: 1,
            version: 1,
        }
    }

    #[test]
    fn a_big_snapshot_is_cut_and_put_back_together() {
        let entries: Vec<Entry> = (0..ENTRIES_PER_MESSAGE * 2 + 5).map(entry).collect();
        let parts = cut("o", 7, Some(1), entries.clone());
        let more: Vec<bool> = parts
            .iter()
            .map(|p| p.snapshot.expect("a snapshot").more)
            .collect();
        assert_eq!(more, [true, true, false]);
        for p in &parts {
            let bytes = crate::core::wire::encode_message(
                &crate::core::wire::Message::ReplicaUpdate(p.clone()),
            );
            assert!(
                bytes.len() < crate::core::wire::MAX_FRAME,
                "{} bytes",
                bytes.len()
            );
        }
        let mut assembler = SnapshotParts::default();
        let mut whole = None;
        for p in &parts {
            assert!(whole.is_none(), "complete before the last part");
            whole = assembler.add("peer", p.generation, p.snapshot.unwrap(), &p.entries);
        }
        assert_eq!(whole, Some((7, 1, entries)));
        // An empty snapshot is still sent; a batch of nothing is not.
        assert_eq!(cut("o", 7, Some(2), Vec::new()).len(), 1);
        assert!(cut("o", 7, None, Vec::new()).is_empty());
    }

    #[test]
    fn a_newer_snapshot_drops_the_parts_of_an_older_one() {
        let mut a = SnapshotParts::default();
        let part = |as_of, more| SnapshotPart { as_of, more };
        assert_eq!(a.add("p", 1, part(5, true), &[entry(1)]), None);
        let whole = a.add("p", 1, part(6, false), &[entry(2)]);
        assert_eq!(whole, Some((1, 6, vec![entry(2)])));
        assert_eq!(a.add("p", 1, part(7, true), &[entry(3)]), None);
        a.forget("p");
        assert_eq!(a.add("p", 1, part(7, false), &[]), Some((1, 7, Vec::new())));
    }
}
