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
pub mod template;
