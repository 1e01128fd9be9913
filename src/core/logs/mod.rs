//! The pure half of centralized logging: what a log destination string
//! means, and which file an aggregated record goes to.
//!
//! Loggers on each node name their journal with a destination such as
//! `cluster:///var/log/ecelerity/mainlog.cluster=>master`
//! ([`destination`]); the manager pulls those journals and writes each record
//! to the file its `Logs { logfile = ... }` template names ([`template`]).
//! Both are decided here from strings and a broken-down time the caller
//! supplies, so they can be checked at configuration time and tested without
//! a clock or a filesystem; `io::logfiles` does the writing.

pub mod destination;
pub mod group;
pub mod template;

use std::time::Duration;

use crate::journal::format::LogId;

/// One node's log as the aggregator pulls it (`cluster show aggregator`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamStatus {
    pub node: String,
    pub log: String,
    /// The subscriber served and the last record durably written.
    pub checkpoint: Option<(String, LogId)>,
    /// Lines and payload bytes written since the aggregator started.
    pub lines: u64,
    pub bytes: u64,
    /// The running job, if any.
    pub job: Option<u64>,
    /// What the stream is doing, in words.
    pub state: String,
    pub last_file: Option<String>,
    pub last_error: Option<String>,
}

/// A running pull (`cluster jobs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobStatus {
    pub id: u64,
    pub node: String,
    pub log: String,
    pub running_for: Duration,
    pub lines: u64,
}
