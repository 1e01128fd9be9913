//! eccluster: a cluster engine for mail servers.

pub mod config;
