//! The replica's merge rules, and convergence of whole exchanges under
//! loss, duplication and reordering, from seeded random runs.

use std::collections::BTreeMap;

use super::batch::{BatchConfig, Batcher};
use super::*;

fn key(s: &str) -> Key {
    s.as_bytes().to_vec()
}

fn entry(k: &str, value: i64, version: u64) -> Entry {
    Entry {
        key: key(k),
        value,
        version,
    }
}

#[test]
fn peer_sums_add_up_origins_and_report_what_changed() {
    let mut r = Replica::new();
    let c = r.apply("n2", 1, &[entry("a", 3, 1), entry("b", 1, 1)]);
    assert_eq!(c.len(), 2);
    let c = r.apply("n3", 1, &[entry("a", 4, 1)]);
    assert_eq!(
        c,
        [SumChange {
            key: key("a"),
            peer_sum: 7
        }]
    );
    assert_eq!(r.peer_sum(b"a"), 7);
    assert_eq!(r.value_of("n3", b"a"), 4);
    // An absolute value replaces, it does not add.
    r.apply("n2", 1, &[entry("a", 1, 2)]);
    assert_eq!(r.peer_sum(b"a"), 5);
}

#[test]
fn old_duplicate_and_reordered_updates_change_nothing() {
    let mut r = Replica::new();
    r.apply("n2", 1, &[entry("a", 5, 3)]);
    assert!(r.apply("n2", 1, &[entry("a", 9, 2)]).is_empty(), "older");
    assert!(
        r.apply("n2", 1, &[entry("a", 9, 3)]).is_empty(),
        "duplicate version"
    );
    assert_eq!(r.peer_sum(b"a"), 5);
    // A zero is a tombstone: a late older value cannot bring the key back.
    r.apply("n2", 1, &[entry("a", 0, 4)]);
    assert_eq!(r.peer_sum(b"a"), 0);
    r.apply("n2", 1, &[entry("a", 5, 3)]);
    assert_eq!(r.peer_sum(b"a"), 0);
    assert_eq!(r.peer_sums().count(), 0, "zero sums are not listed");
}

#[test]
fn a_new_generation_replaces_the_old_contribution_and_an_old_one_is_ignored() {
    let mut r = Replica::new();
    r.apply("n2", 1, &[entry("a", 5, 10), entry("b", 2, 10)]);
    // n2 restarted: versions start again, the old counts are gone.
    let c = r.apply("n2", 2, &[entry("a", 1, 1)]);
    assert_eq!(r.peer_sum(b"a"), 1);
    assert_eq!(r.peer_sum(b"b"), 0);
    assert_eq!(c.len(), 2);
    assert!(r.apply("n2", 1, &[entry("c", 7, 99)]).is_empty());
    assert_eq!(r.peer_sum(b"c"), 0);
}

#[test]
fn a_node_that_leaves_takes_its_contribution_with_it() {
    let mut r = Replica::new();
    r.apply("n2", 1, &[entry("a", 5, 1)]);
    r.apply("n3", 1, &[entry("a", 2, 1)]);
    let c = r.remove_origin("n2");
    assert_eq!(
        c,
        [SumChange {
            key: key("a"),
            peer_sum: 2
        }]
    );
    assert_eq!(r.origins().collect::<Vec<_>>(), ["n3"]);
    assert_eq!(r.values_of("n3"), [(key("a"), 2)]);
    assert!(r.values_of("n2").is_empty());
}

#[test]
fn a_snapshot_replaces_but_keeps_updates_that_overtook_it() {
    let mut r = Replica::new();
    r.apply(
        "n2",
        1,
        &[entry("a", 5, 1), entry("b", 3, 1), entry("z", 0, 1)],
    );
    // An update newer than the snapshot arrived first.
    r.apply("n2", 1, &[entry("c", 9, 6)]);
    r.apply_snapshot("n2", 1, 5, &[entry("a", 6, 5), entry("c", 1, 5)]);
    assert_eq!(r.peer_sum(b"a"), 6, "from the snapshot");
    assert_eq!(r.peer_sum(b"b"), 0, "absent from the snapshot");
    assert_eq!(r.peer_sum(b"c"), 9, "newer than the snapshot");
    assert_eq!(r.value_of("n2", b"z"), 0);
}

use crate::test_rng::Rng;

/// Three origins change a few keys at random and batch their updates;
/// the messages reach one receiver late, twice or not at all, in any
/// order. Once every origin has sent a last snapshot (as it does when a
/// link reopens) and it has arrived, the receiver's sums equal the
/// origins' values exactly, whatever happened before.
#[test]
fn sums_converge_after_any_interleaving_loss_and_duplication() {
    for seed in 1..=200u64 {
        let mut rng = Rng::new(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let origins = ["n1", "n2", "n3"];
        let cfg = BatchConfig {
            max_delay_ms: 5,
            max_pending: 1 + rng.below(4) as u32,
        };
        let mut local: Vec<BTreeMap<Key, i64>> = vec![BTreeMap::new(); 3];
        let mut batchers: Vec<Batcher> = (0..3).map(|_| Batcher::new(cfg)).collect();
        // (origin, is snapshot, as_of, entries) in flight.
        let mut wire: Vec<(usize, bool, u64, Vec<Entry>)> = Vec::new();
        let mut replica = Replica::new();
        for now in 0..300u64 {
            let o = rng.below(3) as usize;
            let k = key(&format!("k{}", rng.below(6)));
            let v = local[o].entry(k.clone()).or_insert(0);
            *v += rng.below(5) as i64 - 2;
            let value = *v;
            batchers[o].note(now, k, value);
            for (i, b) in batchers.iter_mut().enumerate() {
                if b.due(now) {
                    wire.push((i, false, 0, b.take()));
                }
            }
            if rng.below(40) == 0 {
                let i = rng.below(3) as usize;
                let (as_of, entries) = batchers[i].snapshot(local[i].clone());
                wire.push((i, true, as_of, entries));
            }
            // Deliver something: any message, maybe twice, maybe dropped.
            if !wire.is_empty() && rng.below(2) == 0 {
                let m = rng.below(wire.len() as u64) as usize;
                let msg = if rng.below(4) == 0 {
                    wire[m].clone()
                } else {
                    wire.swap_remove(m)
                };
                if rng.below(10) != 0 {
                    deliver(&mut replica, origins[msg.0], &msg);
                }
            }
        }
        // The links reopen: what is pending goes out, then a snapshot each,
        // behind whatever is still in flight (delivered in any order).
        for (i, b) in batchers.iter_mut().enumerate() {
            wire.push((i, false, 0, b.take()));
        }
        while !wire.is_empty() {
            let m = rng.below(wire.len() as u64) as usize;
            let msg = wire.swap_remove(m);
            deliver(&mut replica, origins[msg.0], &msg);
        }
        for (i, b) in batchers.iter().enumerate() {
            let (as_of, entries) = b.snapshot(local[i].clone());
            deliver(&mut replica, origins[i], &(i, true, as_of, entries));
        }
        for k in 0..6 {
            let k = key(&format!("k{k}"));
            let expected: i64 = local.iter().map(|l| l.get(&k).copied().unwrap_or(0)).sum();
            assert_eq!(replica.peer_sum(&k), expected, "seed {seed}, key {k:?}");
        }
    }
}

fn deliver(replica: &mut Replica, origin: &str, msg: &(usize, bool, u64, Vec<Entry>)) {
    if msg.1 {
        replica.apply_snapshot(origin, 1, msg.2, &msg.3);
    } else {
        replica.apply(origin, 1, &msg.3);
    }
}

#[test]
fn a_batch_is_due_after_max_delay_or_max_pending_updates() {
    let mut b = Batcher::new(BatchConfig {
        max_delay_ms: 1000,
        max_pending: 3,
    });
    assert!(!b.due(0) && b.next_deadline().is_none());
    b.note(10, key("a"), 1);
    assert_eq!(b.next_deadline(), Some(1010));
    assert!(!b.due(1009));
    assert!(b.due(1010), "max_delay");
    b.note(20, key("a"), 2);
    b.note(30, key("b"), 1);
    assert!(b.due(30), "three updates, even of two keys");
    let batch = b.take();
    assert_eq!(
        batch,
        [entry("a", 2, 1), entry("b", 1, 1)],
        "latest value per key"
    );
    assert!(b.take().is_empty(), "nothing pending: no version used");
    b.note(40, key("a"), 0);
    assert_eq!(b.take(), [entry("a", 0, 2)]);
    let (as_of, snap) = b.snapshot([(key("a"), 0), (key("b"), 4)]);
    assert_eq!((as_of, snap), (2, vec![entry("b", 4, 2)]));
}

#[test]
fn keys_that_come_and_go_do_not_pile_up_as_tombstones() {
    let mut r = Replica::new();
    // A throttle's windows: each key counted, then zeroed, batch by batch.
    for w in 0..10_000u64 {
        let k = format!("window{w}");
        r.apply("a", 1, &[entry(&k, 3, 2 * w + 1)]);
        r.apply("a", 1, &[entry(&k, 0, 2 * w + 2)]);
    }
    let held = r.origins.get("a").map_or(0, |o| o.entries.len());
    assert!(held <= 1024 + 64, "{held} entries held");
    assert_eq!(r.peer_sum(b"window9999"), 0);
    // A recent zero still blocks a late, older non-zero.
    r.apply("a", 1, &[entry("window9999", 3, 2 * 9999 + 1)]);
    assert_eq!(r.peer_sum(b"window9999"), 0);
}
