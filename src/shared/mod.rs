//! The hot path of replication: the shared objects MTA threads read and
//! write directly, without waiting on the engine thread (DESIGN.md §2).
//!
//! Each object holds this node's own counts and the sum of every peer's,
//! as the replication core (`core::replicate`) reports them; the engine
//! drains what changed locally into that core's batcher and writes the
//! peers' sums back. The structures here are concurrent (sharded locks and
//! atomics) and do no I/O.

pub mod cidr;
pub mod gauge;

/// Whose count a read wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// This node's own count.
    Local,
    /// The whole cluster: this node's count plus every peer's.
    Global,
}
