//! Why a received packet was refused, and how often.
//!
//! The reasons are one vocabulary for both halves of receiving: `io::seal`
//! finds the framing and authentication faults, the pure core finds
//! replays, stale generations and unknown peers. Each has a short label for
//! the counters `cluster info` shows, so an operator can tell a peer with the
//! wrong key (`bad_auth`) from one that is not configured (`unknown_peer`).

use std::collections::BTreeMap;
use std::fmt;

/// Why a packet was dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reject {
    /// The envelope's header is cut short or inconsistent.
    Malformed(String),
    /// Not an eccluster packet at all.
    BadMagic,
    /// Another protocol version (the one the packet carries).
    Version(u8),
    /// A clear packet, but this node has a cluster key.
    NotSealed,
    /// A sealed packet, but this node has no cluster key.
    UnexpectedlySealed,
    /// The AEAD tag does not verify: another key, or altered bytes.
    BadAuth,
    /// A sequence number already seen, or too old to tell.
    Replay,
    /// From a generation older than the sender's newest (before a restart).
    StaleGeneration,
    /// The sender is not among the configured peers.
    UnknownPeer,
    /// Longer than any packet we send.
    TooLarge,
}

impl Reject {
    /// A short snake_case label, for counters.
    pub fn reason(&self) -> &'static str {
        match self {
            Reject::Malformed(_) => "malformed",
            Reject::BadMagic => "bad_magic",
            Reject::Version(_) => "version",
            Reject::NotSealed => "not_sealed",
            Reject::UnexpectedlySealed => "unexpectedly_sealed",
            Reject::BadAuth => "bad_auth",
            Reject::Replay => "replay",
            Reject::StaleGeneration => "stale_generation",
            Reject::UnknownPeer => "unknown_peer",
            Reject::TooLarge => "too_large",
        }
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reject::Malformed(why) => write!(f, "malformed envelope: {why}"),
            Reject::BadMagic => f.write_str("not an eccluster packet (bad magic)"),
            Reject::Version(v) => write!(
                f,
                "protocol version {v}, this build speaks version {}",
                super::PROTOCOL_VERSION
            ),
            Reject::NotSealed => f.write_str("not sealed, but this node has a cluster key"),
            Reject::UnexpectedlySealed => f.write_str("sealed, but this node has no cluster key"),
            Reject::BadAuth => {
                f.write_str("authentication failed (another cluster key, or altered in transit)")
            }
            Reject::Replay => f.write_str("replayed or too old sequence number"),
            Reject::StaleGeneration => {
                f.write_str("from an older generation of the sender (before its restart)")
            }
            Reject::UnknownPeer => f.write_str("sender is not a configured peer"),
            Reject::TooLarge => f.write_str("larger than any packet the protocol sends"),
        }
    }
}

impl std::error::Error for Reject {}

/// How many packets were dropped, per [`Reject::reason`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RejectCounters {
    // A BTreeMap: few distinct reasons, and iteration in a stable
    // (alphabetical) order for the console comes free.
    counts: BTreeMap<&'static str, u64>,
}

impl RejectCounters {
    /// Counts one dropped packet.
    pub fn increment(&mut self, reject: &Reject) {
        *self.counts.entry(reject.reason()).or_insert(0) += 1;
    }

    /// The reasons seen so far and their counts, alphabetically by reason;
    /// reasons never seen are absent.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.counts.iter().map(|(reason, n)| (*reason, *n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_group_by_reason_in_a_stable_order() {
        let mut c = RejectCounters::default();
        c.increment(&Reject::Replay);
        c.increment(&Reject::Malformed("a".into()));
        c.increment(&Reject::BadAuth);
        c.increment(&Reject::Malformed("b".into()));
        assert_eq!(
            c.iter().collect::<Vec<_>>(),
            [("bad_auth", 1), ("malformed", 2), ("replay", 1)]
        );
    }

    #[test]
    fn display_says_what_happened() {
        assert_eq!(
            Reject::Malformed("truncated header".into()).to_string(),
            "malformed envelope: truncated header"
        );
        assert_eq!(
            Reject::Version(9).to_string(),
            format!(
                "protocol version 9, this build speaks version {}",
                super::super::PROTOCOL_VERSION
            )
        );
        assert_eq!(Reject::TooLarge.reason(), "too_large");
    }
}
