//! eccluster: a cluster engine for mail servers.

pub mod config;
pub mod core;
pub mod ffi;
pub mod io;
pub mod journal;
pub mod node;
pub mod policy;
pub mod shared;
#[cfg(test)]
mod test_rng;

pub use node::{HookOrder, Identity, Node, NodeError};
