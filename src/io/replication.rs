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
//!
//! Counting objects (CIDR trees, gauge tables, throttles, metrics) travel
//! as [`ReplicaUpdate`]s; caches as [`CacheUpdate`]s, whose entries merge
//! on their own (last writer wins) and so need no replica here. A cache
//! sends its entries to a peer whose link opens only when its scope says
//! `parameters = "snapshot"`, as the reference's caches do. Messages are cut
//! to stay under the frame limit: a batch into several batches, a snapshot
//! into parts that the receiver puts together before applying.
//! `eccmgr_metrics` goes to manager nodes only ([`Audience`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::model::{Metric, Replicate, ReplicationType};
use crate::core::replicate::Replica;
use crate::core::replicate::batch::{BatchConfig, Batcher, Due};
use crate::core::replicate::cache::{CacheEntry, split_batches};
use crate::core::replicate::parts::{SnapshotParts, cut};
use crate::core::wire::{CacheUpdate, MAX_FRAME, Message, ReplicaUpdate};
use crate::shared::cache::ClusterCache;
use crate::shared::cidr::CidrCounts;
use crate::shared::gauge::GaugeTable;
use crate::shared::metrics::{Metrics, Replication, SeriesType};
use crate::shared::throttle::ThrottleTable;
use crate::shared::{Counted, SharedObject};

/// How often the engine looks for the hot path's changes; see
/// [`ReplicationDriver::next_deadline`].
const POLL_MS: u64 = 50;

/// Who a message is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Audience {
    /// Every peer.
    All,
    /// Manager nodes only (`eccmgr_metrics`).
    Managers,
}

/// What one object replicates.
#[derive(Debug)]
enum Carrier {
    Counts {
        table: Arc<dyn Counted>,
        replica: Replica,
        batcher: Batcher,
        partial: SnapshotParts,
    },
    Cache {
        cache: Arc<ClusterCache>,
        pending: Vec<CacheEntry>,
        due: Due,
        snapshot_on_join: bool,
    },
}

/// One replicated object on this node.
#[derive(Debug)]
struct Object {
    carrier: Carrier,
    audience: Audience,
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

/// The objects this node replicates, one per `Replicate` scope. `origin`
/// names this node's cache writes (it breaks ties between equal stamps).
pub fn shared_objects(replicate: &[Replicate], origin: &str) -> SharedObjects {
    replicate
        .iter()
        .map(|r| {
            let object = match r.kind {
                ReplicationType::InboundCidr | ReplicationType::OutboundCidr => {
                    SharedObject::Cidr(Arc::new(CidrCounts::new()))
                }
                ReplicationType::OutboundDomains | ReplicationType::OutboundBindingDomains => {
                    SharedObject::Gauge(Arc::new(GaugeTable::new()))
                }
                ReplicationType::SharedNamedThrottles
                | ReplicationType::Obtm
                | ReplicationType::Obtc => {
                    SharedObject::Throttles(Arc::new(ThrottleTable::new(throttle_round_ms(r))))
                }
                ReplicationType::Metrics => SharedObject::Metrics(metrics(r, Replication::Cluster)),
                ReplicationType::EccmgrMetrics => {
                    SharedObject::Metrics(metrics(r, Replication::Manager))
                }
                ReplicationType::Cache => SharedObject::Cache(Arc::new(ClusterCache::new(
                    origin,
                    usize::try_from(r.max_size).ok(),
                ))),
            };
            (r.name.clone(), object)
        })
        .collect()
}

/// The series an event parameter of a metrics scope stands for (the
/// reference's inbound_audit counts, with its sample monitor of six windows
/// of 300 s): IPv4 and IPv6 addresses in series of their own, as
/// `msys.audit.connections` and friends read them.
const EVENT_SERIES: [(Metric, &str); 6] = [
    (Metric::Connect, "connections"),
    (Metric::Reception, "receptions"),
    (Metric::Rejection, "rejections"),
    (Metric::Delivery, "deliveries"),
    (Metric::Transfail, "transfails"),
    (Metric::Permfail, "permfails"),
];

/// A metrics object, with a series defined for each event its scope's
/// `parameters` name.
fn metrics(scope: &Replicate, carries: Replication) -> Arc<Metrics> {
    let m = Metrics::new(carries);
    for (metric, name) in EVENT_SERIES {
        if !scope.parameters.contains(&metric) {
            continue;
        }
        for (suffix, ty) in [("", SeriesType::Cidr), ("_ipv6", SeriesType::CidrIpv6)] {
            // Fixed, valid arguments: a definition cannot fail.
            let _ = m.define_series(&format!("{name}{suffix}"), ty, 300, 6, carries);
        }
    }
    Arc::new(m)
}

/// A throttle's round: long enough for a node's usage to reach every peer
/// (`max_delay`, an engine pass of at most 250 ms on each side, transit),
/// which is what the throttle's bound assumes (`shared::throttle`).
fn throttle_round_ms(scope: &Replicate) -> u64 {
    (scope.max_delay * 1000.0).round().max(0.0) as u64 + 600
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
                let carrier = match (object, object.counted()) {
                    (SharedObject::Cache(cache), _) => Carrier::Cache {
                        cache: Arc::clone(cache),
                        pending: Vec::new(),
                        due: Due::new(cfg),
                        snapshot_on_join: scope.parameters.contains(&Metric::Snapshot),
                    },
                    (_, Some(table)) => Carrier::Counts {
                        table,
                        replica: Replica::new(),
                        batcher: Batcher::new(cfg),
                        partial: SnapshotParts::default(),
                    },
                    (_, None) => return None,
                };
                let audience = if scope.kind == ReplicationType::EccmgrMetrics {
                    Audience::Managers
                } else {
                    Audience::All
                };
                Some((name.clone(), Object { carrier, audience }))
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

    /// Collects the hot path's changes and returns the messages now due;
    /// `now_ms` is the engine's clock, `wall_ms` the wall clock (see
    /// [`Counted::maintain`]) and `members` the size of the current view.
    pub fn tick(&mut self, now_ms: u64, wall_ms: u64, members: usize) -> Vec<(Audience, Message)> {
        let mut out = Vec::new();
        for (name, o) in &mut self.objects {
            match &mut o.carrier {
                Carrier::Counts { table, batcher, .. } => {
                    table.maintain(wall_ms, members);
                    for (key, value) in table.drain_changed() {
                        batcher.note(now_ms, key, value);
                    }
                    if batcher.due(now_ms) {
                        let entries = batcher.take();
                        for update in cut(name, self.generation, None, entries) {
                            out.push((o.audience, Message::ReplicaUpdate(update)));
                        }
                    }
                }
                Carrier::Cache {
                    cache,
                    pending,
                    due,
                    ..
                } => {
                    cache.maintain(wall_ms);
                    let changed = cache.drain_changed();
                    due.note(now_ms, changed.len());
                    pending.extend(changed);
                    if due.due(now_ms) {
                        due.reset();
                        for entries in split_batches(std::mem::take(pending), MAX_FRAME / 2) {
                            out.push((
                                o.audience,
                                Message::CacheUpdate(CacheUpdate {
                                    object: name.clone(),
                                    entries,
                                }),
                            ));
                        }
                    }
                }
            }
        }
        out
    }

    /// When the engine should next call [`ReplicationDriver::tick`]: when a
    /// batch falls due by time, and otherwise within [`POLL_MS`] while
    /// anything is replicated. MTA threads do not wake the engine (that
    /// would cost them a system call), so this poll is how soon their
    /// changes are noticed: a change reaches the peers within `max_delay`
    /// plus this plus the transit.
    pub fn next_deadline(&self, now_ms: u64) -> Option<u64> {
        let due = self
            .objects
            .values()
            .filter_map(|o| match &o.carrier {
                Carrier::Counts { batcher, .. } => batcher.next_deadline(),
                Carrier::Cache { due, .. } => due.next_deadline(),
            })
            .min();
        if self.objects.is_empty() {
            return due;
        }
        Some(due.map_or(now_ms + POLL_MS, |d| d.min(now_ms + POLL_MS)))
    }

    /// Applies a peer's update. An update for an object this node does not
    /// replicate, or of the wrong kind, is dropped: only what is configured
    /// is replicated.
    pub fn on_update(&mut self, from: &str, update: &ReplicaUpdate) {
        let Some(Object {
            carrier:
                Carrier::Counts {
                    table,
                    replica,
                    partial,
                    ..
                },
            ..
        }) = self.objects.get_mut(&update.object)
        else {
            return;
        };
        let changes = match update.snapshot {
            None => replica.apply(from, update.generation, &update.entries),
            Some(part) => {
                let Some((generation, as_of, entries)) =
                    partial.add(from, update.generation, part, &update.entries)
                else {
                    return;
                };
                replica.apply_snapshot(from, generation, as_of, &entries)
            }
        };
        for c in changes {
            table.set_peer_sum(&c.key, c.peer_sum);
        }
    }

    /// Applies a peer's cache entries.
    pub fn on_cache_update(&mut self, update: &CacheUpdate) {
        if let Some(Object {
            carrier: Carrier::Cache { cache, .. },
            ..
        }) = self.objects.get(&update.object)
        {
            cache.apply(&update.entries);
        }
    }

    /// This node's whole contribution to every object, each message with
    /// who may have it, for peers whose link just opened or who came back.
    pub fn snapshots(&self) -> Vec<(Audience, Message)> {
        let mut out = Vec::new();
        for (name, o) in &self.objects {
            let messages: Vec<Message> = match &o.carrier {
                Carrier::Counts { table, batcher, .. } => {
                    let (as_of, entries) = batcher.snapshot(table.local_values());
                    let parts = cut(name, self.generation, Some(as_of), entries);
                    parts.into_iter().map(Message::ReplicaUpdate).collect()
                }
                Carrier::Cache {
                    cache,
                    snapshot_on_join: true,
                    ..
                } => split_batches(cache.snapshot(), MAX_FRAME / 2)
                    .into_iter()
                    .map(|entries| {
                        Message::CacheUpdate(CacheUpdate {
                            object: name.clone(),
                            entries,
                        })
                    })
                    .collect(),
                Carrier::Cache { .. } => Vec::new(),
            };
            out.extend(messages.into_iter().map(|m| (o.audience, m)));
        }
        out
    }

    /// `origin`'s non-zero values of `object`, `None` for an object this
    /// node does not replicate as counts.
    pub fn values_of(&self, object: &str, origin: &str) -> Option<Rows> {
        match &self.objects.get(object)?.carrier {
            Carrier::Counts { replica, .. } => Some(replica.values_of(origin)),
            Carrier::Cache { .. } => None,
        }
    }

    /// `node` left the view: its contributions no longer count.
    pub fn member_left(&mut self, node: &str) {
        for o in self.objects.values_mut() {
            if let Carrier::Counts {
                table,
                replica,
                partial,
                ..
            } = &mut o.carrier
            {
                partial.forget(node);
                for c in replica.remove_origin(node) {
                    table.set_peer_sum(&c.key, c.peer_sum);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::core::replicate::Entry;
    use crate::core::replicate::parts::ENTRIES_PER_MESSAGE;

    fn entry(i: usize) -> Entry {
        Entry {
            key: format!("k{i}").into_bytes(),
            value: 1,
            version: 1,
        }
    }

    #[test]
    fn event_parameters_define_their_series() {
        let scope = Replicate {
            name: "metrics".into(),
            kind: ReplicationType::Metrics,
            parameters: vec![Metric::Connect, Metric::Rejection, Metric::AuditSeries],
            max_delay: 1.0,
            max_pending: 100,
            max_size: -1,
            binding_group: None,
        };
        let m = metrics(&scope, Replication::Cluster);
        for name in [
            "connections",
            "connections_ipv6",
            "rejections",
            "rejections_ipv6",
        ] {
            assert!(m.series(name).is_ok(), "{name}");
        }
        assert!(m.series("receptions").is_err());
        let now = 1_000_000;
        m.series_add("connections", b"192.0.2.7", 1, now).unwrap();
        m.series_add("connections_ipv6", b"2001:db8::7", 1, now)
            .unwrap();
        let count =
            |name, key: &[u8]| m.series_count(name, key, 0, 5, crate::shared::Scope::Local, now);
        assert_eq!(count("connections", b"192.0.2.0/24"), Ok(1));
        assert_eq!(count("connections_ipv6", b"2001:db8::/32"), Ok(1));
    }

    #[test]
    fn a_snapshot_in_parts_counts_only_once_whole() {
        let entries: Vec<Entry> = (0..ENTRIES_PER_MESSAGE * 2 + 5).map(entry).collect();
        let parts = cut("o", 7, Some(1), entries);
        assert_eq!(parts.len(), 3);

        let table = Arc::new(GaugeTable::new());
        let objects: SharedObjects = [("o".to_string(), SharedObject::Gauge(table.clone()))].into();
        let scope = Replicate {
            name: "o".into(),
            kind: ReplicationType::OutboundDomains,
            parameters: Vec::new(),
            max_delay: 1.0,
            max_pending: 100,
            max_size: -1,
            binding_group: None,
        };
        let mut driver = ReplicationDriver::new(&objects, &[scope], 1);
        for (i, p) in parts.iter().enumerate() {
            driver.on_update("peer", p);
            let seen = table.get(b"k0", crate::shared::Scope::Global);
            // Nothing counts until the last part.
            assert_eq!(seen, i64::from(i == parts.len() - 1), "after part {i}");
        }
        assert_eq!(
            table.rows(crate::shared::Scope::Global).len(),
            ENTRIES_PER_MESSAGE * 2 + 5
        );
        // An empty snapshot clears.
        for p in cut("o", 7, Some(2), Vec::new()) {
            driver.on_update("peer", &p);
        }
        assert!(table.rows(crate::shared::Scope::Global).is_empty());
    }
}
