//! The `log_group`: which broadcast paniclog lines a node keeps.
//!
//! The reference broadcast each paniclog line over Spread on the group that
//! `log_group` names, for `spuser` or any other bus client to listen in.
//! Here the sender's lines travel as [`LogGroupLine`]s on the cluster links
//! to every peer; a peer whose own `log_group` is the same keeps the last
//! [`KEPT_LINES`] of them (`cluster show log_group`) and gives each to the
//! host's hooks, and any other peer drops them without a trace, as a bus
//! client that never joined the group would never see them.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::core::wire::LogGroupLine;

/// How many received lines a node keeps: enough to see what a crash
/// printed, small enough to list on the console. Crate-private, as cbindgen
/// would export a `pub` one.
pub(crate) const KEPT_LINES: usize = 100;

/// A line a peer broadcast on this node's `log_group`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupLine {
    /// The node that appended it (the authenticated peer of the link it
    /// came on, not a name the message claims).
    pub sender: String,
    /// Its log's key in the sender's `logs` dictionary (`paniclog`).
    pub log: String,
    /// When the sender appended it, by the sender's clock.
    pub time: SystemTime,
    pub line: Vec<u8>,
}

/// The last [`KEPT_LINES`] lines received on this node's group, oldest
/// first.
#[derive(Clone, Debug, Default)]
pub struct Kept {
    group: Option<String>,
    lines: VecDeque<GroupLine>,
}

impl Kept {
    /// Keeps lines broadcast on `group`; with `None` it keeps nothing.
    pub fn new(group: Option<String>) -> Kept {
        Kept {
            group,
            lines: VecDeque::new(),
        }
    }

    pub fn group(&self) -> Option<&str> {
        self.group.as_deref()
    }

    /// Takes a line `sender` broadcast: kept (dropping the oldest beyond
    /// [`KEPT_LINES`]) and returned for the hooks when it was sent on this
    /// node's group, `None` otherwise.
    pub fn receive(&mut self, sender: &str, message: LogGroupLine) -> Option<GroupLine> {
        if self.group.as_deref() != Some(message.group.as_str()) {
            return None;
        }
        let line = GroupLine {
            sender: sender.to_string(),
            log: message.log,
            // Any u64 of microseconds fits a SystemTime on the platforms we
            // build for; the fallback only keeps a lying peer from panicking us.
            time: UNIX_EPOCH
                .checked_add(Duration::from_micros(message.time_us))
                .unwrap_or(UNIX_EPOCH),
            line: message.line,
        };
        if self.lines.len() == KEPT_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(line.clone());
        Some(line)
    }

    /// The kept lines, oldest first.
    pub fn lines(&self) -> impl Iterator<Item = &GroupLine> {
        self.lines.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(group: &str, n: usize) -> LogGroupLine {
        LogGroupLine {
            group: group.into(),
            log: "paniclog".into(),
            time_us: 1_700_000_000_000_000 + n as u64,
            line: format!("line {n}").into_bytes(),
        }
    }

    #[test]
    fn only_this_nodes_group_is_kept() {
        let mut kept = Kept::new(Some("panics".into()));
        assert_eq!(kept.receive("n1", message("other", 0)), None);
        let line = kept
            .receive("n1", message("panics", 1))
            .expect("same group");
        assert_eq!(line.sender, "n1");
        assert_eq!(line.log, "paniclog");
        assert_eq!(line.line, b"line 1");
        assert_eq!(
            line.time,
            UNIX_EPOCH + Duration::from_micros(1_700_000_000_000_001)
        );
        assert_eq!(kept.lines().count(), 1);

        let mut none = Kept::new(None);
        assert_eq!(none.receive("n1", message("panics", 2)), None);
        assert_eq!(
            none.receive("n1", message("", 3)),
            None,
            "no group is not ''"
        );
        assert_eq!(none.lines().count(), 0);
    }

    #[test]
    fn the_oldest_lines_go_first() {
        let mut kept = Kept::new(Some("g".into()));
        for n in 0..KEPT_LINES + 5 {
            kept.receive("n2", message("g", n));
        }
        let lines: Vec<&[u8]> = kept.lines().map(|l| l.line.as_slice()).collect();
        assert_eq!(lines.len(), KEPT_LINES);
        assert_eq!(lines[0], b"line 5");
        assert_eq!(
            lines[KEPT_LINES - 1],
            format!("line {}", KEPT_LINES + 4).as_bytes()
        );
    }

    #[test]
    fn a_time_beyond_the_calendar_does_not_panic() {
        let mut kept = Kept::new(Some("g".into()));
        let mut m = message("g", 0);
        m.time_us = u64::MAX;
        assert!(kept.receive("n1", m).is_some());
    }
}
