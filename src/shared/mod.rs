//! The hot path of replication: the shared objects MTA threads read and
//! write directly, without waiting on the engine thread (DESIGN.md §2).
//!
//! Each object holds this node's own counts and the sum of every peer's,
//! as the replication core (`core::replicate`) reports them; the engine
//! drains what changed locally into that core's batcher and writes the
//! peers' sums back. The structures here are concurrent (sharded locks and
//! atomics) and do no I/O.
//!
//! Every counting object (CIDR trees, gauge tables, throttles, metrics)
//! is, to the engine, the same thing: a table of keys to this node's counts
//! plus the peers' sums, which is the [`Counted`] trait. The hot-path
//! methods differ by object and are the objects' own. Replicated caches
//! ([`cache`]) are the exception: one value per key for the whole cluster,
//! last writer wins, so they are not `Counted` and travel as entries.

pub mod cache;
pub mod cidr;
pub mod gauge;
pub mod hash;
pub mod metrics;
pub mod outbound;
pub mod throttle;

use std::sync::Arc;

use cache::ClusterCache;
use cidr::CidrCounts;
use gauge::GaugeTable;
use metrics::Metrics;
use throttle::ThrottleTable;

/// Wall-clock milliseconds since the Unix epoch, the time every shared
/// object's operations take (windows and expiries must agree across
/// nodes, so not a monotonic clock). Coarse: at most a timer tick old, for
/// a few nanoseconds (see `io::clock`).
pub use crate::io::clock::coarse_wall_ms as wall_ms;

/// Whose count a read wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// This node's own count.
    Local,
    /// The whole cluster: this node's count plus every peer's.
    Global,
}

/// A key of a replicated object and this node's (or a sum's) count for it.
pub type KeyCount = (Vec<u8>, i64);

/// What the engine needs of a counting object; see the module docs.
pub trait Counted: Send + Sync + std::fmt::Debug {
    /// Every key whose own count changed since the last call, with its
    /// current own count (for the batcher).
    fn drain_changed(&self) -> Vec<KeyCount>;
    /// The peers' sum for `key` is now `peer_sum`. Keys the object cannot
    /// parse are ignored: they come from the wire.
    fn set_peer_sum(&self, key: &[u8], peer_sum: i64);
    /// Every key with a non-zero own count (for a snapshot to a peer).
    fn local_values(&self) -> Vec<KeyCount>;
    /// Housekeeping on every engine pass: `now_ms` is wall-clock time in
    /// milliseconds since the Unix epoch (windows and expiry must agree
    /// across nodes), `members` the number of nodes in the current view.
    fn maintain(&self, _now_ms: u64, _members: usize) {}
}

impl Counted for GaugeTable {
    fn drain_changed(&self) -> Vec<KeyCount> {
        GaugeTable::drain_changed(self)
    }
    fn set_peer_sum(&self, key: &[u8], peer_sum: i64) {
        GaugeTable::set_peer_sum(self, key, peer_sum)
    }
    fn local_values(&self) -> Vec<KeyCount> {
        GaugeTable::local_values(self)
    }
}

impl Counted for CidrCounts {
    fn drain_changed(&self) -> Vec<KeyCount> {
        CidrCounts::drain_changed(self)
    }
    fn set_peer_sum(&self, key: &[u8], peer_sum: i64) {
        CidrCounts::set_peer_sum(self, key, peer_sum)
    }
    fn local_values(&self) -> Vec<KeyCount> {
        CidrCounts::local_values(self)
    }
}

impl Counted for ThrottleTable {
    fn drain_changed(&self) -> Vec<KeyCount> {
        ThrottleTable::drain_changed(self)
    }
    fn set_peer_sum(&self, key: &[u8], peer_sum: i64) {
        ThrottleTable::set_peer_sum(self, key, peer_sum)
    }
    fn local_values(&self) -> Vec<KeyCount> {
        ThrottleTable::local_values(self)
    }
    fn maintain(&self, now_ms: u64, members: usize) {
        ThrottleTable::maintain(self, now_ms, members)
    }
}

/// One replicated object, as a `Replicate` scope configures it.
#[derive(Clone, Debug)]
pub enum SharedObject {
    /// `inbound_cidr`, `outbound_cidr`.
    Cidr(Arc<CidrCounts>),
    /// `outbound_domains`, `outbound_binding_domains`.
    Gauge(Arc<GaugeTable>),
    /// `shared_named_throttles`, `OBTM`, `OBTC`.
    Throttles(Arc<ThrottleTable>),
    /// `metrics`, `eccmgr_metrics`: audit series and gauge caches.
    Metrics(Arc<Metrics>),
    /// A `type = "cache"` scope: key/value, not counts.
    Cache(Arc<ClusterCache>),
}

impl SharedObject {
    /// The kind `cluster shared list` names.
    pub fn kind(&self) -> &'static str {
        match self {
            SharedObject::Cidr(_) => "cidrtree",
            SharedObject::Gauge(_) => "gauge table",
            SharedObject::Throttles(_) => "throttle",
            SharedObject::Metrics(_) => "metrics",
            SharedObject::Cache(_) => "cache",
        }
    }

    /// Every key with a non-zero value in `scope`, as `cluster shared
    /// show` lists them: the key and its count (or a cache's value).
    pub fn rows(&self, scope: Scope) -> Vec<(String, String)> {
        match self {
            SharedObject::Cidr(c) => prefix_rows(c.rows(scope)),
            SharedObject::Gauge(g) => text_rows(g.rows(scope)),
            SharedObject::Throttles(t) => t
                .rows(wall_ms(), scope)
                .into_iter()
                .map(|(k, v)| (k, v.to_string()))
                .collect(),
            SharedObject::Metrics(m) => m.rows(scope, wall_ms()),
            // One value per key for the whole cluster: every scope is it.
            SharedObject::Cache(c) => c
                .rows_at(wall_ms())
                .into_iter()
                .map(|(k, v)| (lossy(&k), lossy(&v)))
                .collect(),
        }
    }

    /// One origin's contribution (its keys and values as replicated), as
    /// `cluster shared show OBJ from NODE` lists it.
    pub fn rows_of(&self, values: &[KeyCount]) -> Vec<(String, String)> {
        match self {
            SharedObject::Cidr(_) => prefix_rows(CidrCounts::rows_of_leaves(values)),
            SharedObject::Throttles(_) => values
                .iter()
                .map(|(k, v)| {
                    let key = throttle::parse_wire_key(k)
                        .map_or_else(|| lossy(k), |(name, w)| format!("{name} window {w}"));
                    (key, v.to_string())
                })
                .collect(),
            SharedObject::Metrics(m) => values
                .iter()
                .map(|(k, v)| (m.display_key(k), v.to_string()))
                .collect(),
            SharedObject::Gauge(_) | SharedObject::Cache(_) => text_rows(values.to_vec()),
        }
    }

    /// The object as the engine's count replication sees it; `None` for
    /// a cache, which replicates entries (`CacheUpdate`), not counts.
    pub fn counted(&self) -> Option<Arc<dyn Counted>> {
        match self {
            SharedObject::Cidr(c) => Some(c.clone()),
            SharedObject::Gauge(g) => Some(g.clone()),
            SharedObject::Throttles(t) => Some(t.clone()),
            SharedObject::Metrics(m) => Some(m.clone()),
            SharedObject::Cache(_) => None,
        }
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn prefix_rows(rows: Vec<(std::net::IpAddr, u8, i64)>) -> Vec<(String, String)> {
    rows.into_iter()
        .map(|(ip, len, n)| (format!("{ip}/{len}"), n.to_string()))
        .collect()
}

fn text_rows(rows: Vec<KeyCount>) -> Vec<(String, String)> {
    rows.into_iter()
        .map(|(k, v)| (lossy(&k), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics::Replication;

    #[test]
    fn caches_are_not_counted_and_every_kind_is_named() {
        let objects = [
            SharedObject::Cidr(Arc::new(CidrCounts::new())),
            SharedObject::Gauge(Arc::new(GaugeTable::new())),
            SharedObject::Metrics(Arc::new(Metrics::new(Replication::Cluster))),
            SharedObject::Cache(Arc::new(ClusterCache::new("n1", None))),
        ];
        let kinds: Vec<&str> = objects.iter().map(SharedObject::kind).collect();
        assert_eq!(kinds, ["cidrtree", "gauge table", "metrics", "cache"]);
        let counted: Vec<bool> = objects.iter().map(|o| o.counted().is_some()).collect();
        assert_eq!(counted, [true, true, true, false]);
    }
}
