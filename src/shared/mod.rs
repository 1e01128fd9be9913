//! The hot path: shared counters that MTA worker threads read and update
//! directly, with replication queued for the engine (DESIGN.md §2).

pub mod cidr;
