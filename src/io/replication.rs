//! Carries replicated objects between the hot path and the peers.
//!
//! The engine thread owns one [`ReplicationDriver`]. On every pass it
//! drains what MTA threads changed in each shared object into that
//! object's batcher and sends the batches that are due (`max_delay`,
//! `max_pending`); it applies the updates peers send into the object's
//! replica and writes the resulting peer sums back into the shared object;
//! it sends a snapshot of this node's contribution to a peer whose link
//! just opened, and drops the contribution of a peer that left the view.
//! The merge rules are `core::replicate`'s; the shared objects are
//! `shared::`'s.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::model::{Replicate, ReplicationType};
use crate::core::replicate::Replica;
use crate::core::replicate::batch::{BatchConfig, Batcher};
use crate::core::wire::ReplicaUpdate;
use crate::shared::cidr::CidrCounts;
use crate::shared::gauge::GaugeTable;
use crate::shared::{Counted, SharedObject};

/// One replicated object on this node.
#[derive(Debug)]
struct Object {
    table: Arc<dyn Counted>,
    replica: Replica,
    batcher: Batcher,
}

/// See the module docs.
#[derive(Debug)]
pub struct ReplicationDriver {
    objects: BTreeMap<String, Object>,
    generation: u64,
}

/// Keys and counts, as listings show them.
pub type Rows = Vec<(Vec<u8>, i64)>;

/// The replicated objects of a configuration, by name, for the hot path;
/// the driver made from the same configuration shares them.
pub type SharedObjects = BTreeMap<String, SharedObject>;

/// The objects this node replicates, one per `Replicate` scope whose type
/// has its structure (the other types arrive with theirs).
pub fn shared_objects(replicate: &[Replicate]) -> SharedObjects {
    replicate
        .iter()
        .filter_map(|r| {
            let object = match r.kind {
                ReplicationType::InboundCidr | ReplicationType::OutboundCidr => {
                    SharedObject::Cidr(Arc::new(CidrCounts::new()))
                }
                ReplicationType::OutboundDomains | ReplicationType::OutboundBindingDomains => {
                    SharedObject::Gauge(Arc::new(GaugeTable::new()))
                }
                _ => return None,
            };
            Some((r.name.clone(), object))
        })
        .collect()
}

impl ReplicationDriver {
    /// A driver for `objects`, batching as their `Replicate` scopes say.
    pub fn new(objects: &SharedObjects, replicate: &[Replicate], generation: u64) -> Self {
        let objects = objects
            .iter()
            .filter_map(|(name, object)| {
                let scope = replicate.iter().find(|r| r.name == *name)?;
                let cfg = BatchConfig {
                    max_delay_ms: (scope.max_delay * 1000.0).round().max(0.0) as u64,
                    max_pending: scope.max_pending.max(1),
                };
                Some((
                    name.clone(),
                    Object {
                        table: object.counted(),
                        replica: Replica::new(),
                        batcher: Batcher::new(cfg),
                    },
                ))
            })
            .collect();
        ReplicationDriver {
            objects,
            generation,
        }
    }

    /// This node rejoined as a new generation (`cluster reset`).
    pub fn set_generation(&mut self, generation: u64) {
        self.generation = generation;
    }

    /// Collects the hot path's changes and returns the batches now due;
    /// `now_ms` is the engine's clock, `wall_ms` the wall clock (see
    /// [`Counted::maintain`]) and `members` the size of the current view.
    pub fn tick(&mut self, now_ms: u64, wall_ms: u64, members: usize) -> Vec<ReplicaUpdate> {
        let mut out = Vec::new();
        for (name, o) in &mut self.objects {
            o.table.maintain(wall_ms, members);
            for (key, value) in o.table.drain_changed() {
                o.batcher.note(now_ms, key, value);
            }
            if o.batcher.due(now_ms) {
                out.push(ReplicaUpdate {
                    object: name.clone(),
                    generation: self.generation,
                    snapshot: None,
                    entries: o.batcher.take(),
                });
            }
        }
        out
    }

    /// When a batch next falls due by time.
    pub fn next_deadline(&self) -> Option<u64> {
        self.objects
            .values()
            .filter_map(|o| o.batcher.next_deadline())
            .min()
    }

    /// Applies a peer's update. An update for an object this node does not
    /// replicate is dropped: only what is configured is replicated.
    pub fn on_update(&mut self, from: &str, update: &ReplicaUpdate) {
        let Some(o) = self.objects.get_mut(&update.object) else {
            return;
        };
        let changes = match update.snapshot {
            Some(as_of) => {
                o.replica
                    .apply_snapshot(from, update.generation, as_of, &update.entries)
            }
            None => o.replica.apply(from, update.generation, &update.entries),
        };
        for c in changes {
            o.table.set_peer_sum(&c.key, c.peer_sum);
        }
    }

    /// This node's whole contribution to every object, for a peer whose
    /// link just opened.
    pub fn snapshots(&self) -> Vec<ReplicaUpdate> {
        self.objects
            .iter()
            .map(|(name, o)| {
                let (as_of, entries) = o.batcher.snapshot(o.table.local_values());
                ReplicaUpdate {
                    object: name.clone(),
                    generation: self.generation,
                    snapshot: Some(as_of),
                    entries,
                }
            })
            .collect()
    }

    /// `origin`'s non-zero values of `object`, `None` for an object this
    /// node does not replicate.
    pub fn values_of(&self, object: &str, origin: &str) -> Option<Rows> {
        self.objects
            .get(object)
            .map(|o| o.replica.values_of(origin))
    }

    /// `node` left the view: its contributions no longer count.
    pub fn member_left(&mut self, node: &str) {
        for o in self.objects.values_mut() {
            for c in o.replica.remove_origin(node) {
                o.table.set_peer_sum(&c.key, c.peer_sum);
            }
        }
    }
}
