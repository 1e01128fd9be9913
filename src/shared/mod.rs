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
//! methods differ by object and are the objects' own.

pub mod cidr;
pub mod gauge;
pub mod throttle;

use std::sync::Arc;

use cidr::CidrCounts;
use gauge::GaugeTable;
use throttle::ThrottleTable;

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
}

impl SharedObject {
    /// The kind `cluster shared list` names.
    pub fn kind(&self) -> &'static str {
        match self {
            SharedObject::Cidr(_) => "cidrtree",
            SharedObject::Gauge(_) => "gauge table",
            SharedObject::Throttles(_) => "throttle",
        }
    }

    /// The object as the engine sees it.
    pub fn counted(&self) -> Arc<dyn Counted> {
        match self {
            SharedObject::Cidr(c) => c.clone(),
            SharedObject::Gauge(g) => g.clone(),
            SharedObject::Throttles(t) => t.clone(),
        }
    }
}
