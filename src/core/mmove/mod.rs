//! Message moves (the reference's `#mmove`, momentum-notes §5.3): a node
//! hands one message to a peer, whose host spools it, over the cluster TCP
//! link; "moved" is said only once the receiving host accepted it.
//!
//! This module holds the pure parts; `io::mmove` carries them out:
//!
//! - the data a move is made of ([`MoveId`], [`MoveEnvelope`], the host's
//!   [`MoveVerdict`] and the [`MoveOutcome`] the sender learns), and the
//!   limits every field is checked against before it is sent and when it
//!   is decoded;
//! - [`transfer`]: a body cut into wire messages under the frame limit, and
//!   put back together on the receiving link;
//! - [`ids`]: which moves a receiver has seen and accepted, so that a
//!   retry, even after a crash, is answered `duplicate` instead of being
//!   spooled twice; its records and its expiry rules;
//! - [`retry`]: when a sender tries again, and when it gives up;
//! - [`counts`]: what `cluster show mmove` counts per peer.
//!
//! The guarantee is at-least-once with duplicate suppression: the sender
//! retries until an acknowledgement or its deadline, under one id, and the
//! receiver remembers the ids it accepted. An id names one *move*, not the
//! message: a message that comes back to a node it once left must travel
//! under a new id.

pub mod counts;
pub mod ids;
pub mod retry;
pub mod transfer;

use std::fmt;

/// Longest move id, in bytes.
pub(crate) const MAX_MOVE_ID: usize = 64;
/// Largest body a move carries. The receiver holds a message in memory
/// until its host has accepted it.
pub(crate) const MAX_MOVE_BODY: u64 = 256 << 20;
/// Body bytes per wire message: far under the frame limit, so that other
/// traffic on the link (replication, console answers) waits at most one
/// chunk's time behind a large message.
pub(crate) const MOVE_CHUNK: usize = 256 << 10;
/// Longest envelope address (MAIL FROM or a recipient), in bytes. SMTP's
/// own limit is 256; this leaves room for what hosts carry beside it.
pub(crate) const MAX_ADDRESS: usize = 1024;
/// Longest header field value a move carries, in bytes.
pub(crate) const MAX_HEADER_VALUE: usize = 64 << 10;
/// Longest reason a host gives for a rejection or a deferral, in bytes
/// (longer ones are cut on a character boundary).
pub(crate) const MAX_REASON: usize = 1024;
/// Largest encoded envelope: with the first body chunk it must fit one
/// frame.
pub(crate) const MAX_ENVELOPE: usize = 512 << 10;

/// A move's id: 1 to 64 characters from `A-Z a-z 0-9 . _ - : @ + =`, not
/// starting with `.`, so that it can name a file and print on a console
/// line. The sender's host may choose it (its spool id); otherwise it is
/// 128 random bits in hex. It stays the same over every retry of one move.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MoveId(String);

impl MoveId {
    /// An id as a host or a peer wrote it, checked.
    pub fn parse(text: &str) -> Result<MoveId, String> {
        if text.is_empty() || text.len() > MAX_MOVE_ID {
            return Err(format!(
                "a move id is 1 to {MAX_MOVE_ID} characters, found {}",
                text.len()
            ));
        }
        if text.starts_with('.') {
            return Err(format!("a move id must not start with '.', found {text:?}"));
        }
        if let Some(bad) = text.chars().find(|c| !is_id_char(*c)) {
            return Err(format!(
                "a move id is made of A-Z a-z 0-9 . _ - : @ + =, found {bad:?} in {text:?}"
            ));
        }
        Ok(MoveId(text.to_string()))
    }

    /// The id of 16 random bytes, as 32 lowercase hex digits.
    pub fn from_random(bytes: [u8; 16]) -> MoveId {
        MoveId(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '@' | '+' | '=')
}

impl fmt::Display for MoveId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the sending host chose for the message, carried with it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MoveEnvelope {
    /// The reverse path (MAIL FROM); empty for a bounce.
    pub mail_from: String,
    pub recipients: Vec<String>,
    /// The binding the sender's policy chose, and its binding group.
    pub binding: String,
    pub binding_group: String,
    /// Any further fields the host passes along, as name/value pairs.
    pub headers: Vec<(String, String)>,
}

impl MoveEnvelope {
    /// Checks every field against what a receiver decodes; the error names
    /// the field.
    pub fn check(&self) -> Result<(), String> {
        let address = |what: &str, a: &str| {
            if a.len() > MAX_ADDRESS {
                Err(format!(
                    "{what} is {} bytes; at most {MAX_ADDRESS}",
                    a.len()
                ))
            } else {
                Ok(())
            }
        };
        address("mail_from", &self.mail_from)?;
        for (i, r) in self.recipients.iter().enumerate() {
            address(&format!("recipient {i}"), r)?;
        }
        for (what, name) in [
            ("binding", &self.binding),
            ("binding_group", &self.binding_group),
        ] {
            if name.len() > crate::core::wire::MAX_NAME {
                return Err(format!(
                    "{what} is {} bytes; at most {}",
                    name.len(),
                    crate::core::wire::MAX_NAME
                ));
            }
        }
        for (name, value) in &self.headers {
            let printable = |c: char| c.is_ascii_graphic() && c != ':';
            if name.is_empty()
                || name.len() > crate::core::wire::MAX_NAME
                || !name.chars().all(printable)
            {
                return Err(format!(
                    "header name {name:?} must be 1 to {} printable ASCII characters without ':'",
                    crate::core::wire::MAX_NAME
                ));
            }
            if value.len() > MAX_HEADER_VALUE {
                return Err(format!(
                    "header {name} is {} bytes; at most {MAX_HEADER_VALUE}",
                    value.len()
                ));
            }
        }
        Ok(())
    }
}

/// A move as the sending host asks for it.
#[derive(Clone, Debug)]
pub struct MoveRequest<'a> {
    /// The host's own id for this move (e.g. its spool id), or `None` for
    /// a random one. Passing the same id again after a crash lets the
    /// receiver answer `duplicate` if it already has the message.
    pub id: Option<MoveId>,
    pub envelope: MoveEnvelope,
    pub body: &'a [u8],
}

/// The receiving host's answer to a moved message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MoveVerdict {
    /// Spooled durably: the sender may forget the message.
    Accept,
    /// Refused for good (the reason goes back to the sender, which does
    /// not retry).
    Reject(String),
    /// Not now (a full spool, a policy lookup that failed): the sender
    /// retries until its deadline.
    Defer(String),
}

/// The answer a sender receives for one attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MoveOutcome {
    /// The receiving host accepted it.
    Accepted,
    /// The receiver had already accepted this id: the message is there.
    Duplicate,
    /// The receiving host refused it, for this reason.
    Rejected(String),
    /// Not taken this time, for this reason: try again.
    Deferred(String),
}

impl MoveOutcome {
    /// The outcome of a host's verdict.
    pub fn of(verdict: MoveVerdict) -> MoveOutcome {
        match verdict {
            MoveVerdict::Accept => MoveOutcome::Accepted,
            MoveVerdict::Reject(r) => MoveOutcome::Rejected(cut_reason(r)),
            MoveVerdict::Defer(r) => MoveOutcome::Deferred(cut_reason(r)),
        }
    }
}

/// A reason within [`MAX_REASON`] bytes, cut on a character boundary.
pub(crate) fn cut_reason(mut reason: String) -> String {
    if reason.len() > MAX_REASON {
        let mut end = MAX_REASON;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
    }
    reason
}

/// A message moved to this node, as its move hook sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MovedMessage {
    pub id: MoveId,
    /// The node that sent it.
    pub from: String,
    pub envelope: MoveEnvelope,
    pub body: Vec<u8>,
    /// This node saw the id before but never recorded whether its host
    /// accepted it (it stopped inside the hook): the host should look for
    /// it in its own spool and accept without spooling it again if there.
    pub redelivery: bool,
    /// This node's `unconditional_rebind`: whether the host should run the
    /// full set_binding policy for the message again.
    pub rebind: bool,
}

/// What a successful move reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MoveReceipt {
    pub id: MoveId,
    /// The receiver already had it (an earlier attempt got through).
    pub duplicate: bool,
    /// Attempts made, the successful one included.
    pub attempts: u32,
}

/// Why a move did not happen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MoveError {
    /// The request cannot be sent as it is (an oversized field, a bad id,
    /// a move to this node itself); nothing was sent.
    Invalid(String),
    /// No node of that name is configured.
    UnknownNode(String),
    /// This node is not running.
    NotRunning,
    /// The receiving host refused the message (not retried).
    Rejected {
        node: String,
        id: MoveId,
        reason: String,
    },
    /// No acceptance before the deadline; `last` says what happened last.
    /// The receiver may still have received it: retrying under the same id
    /// is safe.
    Failed {
        node: String,
        id: MoveId,
        attempts: u32,
        last: String,
    },
}

impl fmt::Display for MoveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MoveError::Invalid(why) => write!(f, "cannot move this message: {why}"),
            MoveError::UnknownNode(node) => write!(
                f,
                "cannot move to {node}: no node of that name is configured (msgc_server peers)"
            ),
            MoveError::NotRunning => f.write_str("cannot move: the node is not running"),
            MoveError::Rejected { node, id, reason } => {
                write!(f, "{node} rejected move {id}: {reason}")
            }
            MoveError::Failed {
                node,
                id,
                attempts,
                last,
            } => write!(
                f,
                "gave up moving {id} to {node} after {attempts} attempt{}: {last}",
                if *attempts == 1 { "" } else { "s" }
            ),
        }
    }
}

impl std::error::Error for MoveError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        assert_eq!(
            MoveId::parse("1F/00-123").unwrap_err(),
            "a move id is made of A-Z a-z 0-9 . _ - : @ + =, found '/' in \"1F/00-123\""
        );
        assert!(MoveId::parse("").is_err());
        assert!(MoveId::parse(".hidden").is_err());
        assert!(MoveId::parse(&"a".repeat(65)).is_err());
        assert!(MoveId::parse(&"a".repeat(64)).is_ok());
        assert_eq!(
            MoveId::parse("1F:00-12345@mta1+x=y_z.q").unwrap().as_str(),
            "1F:00-12345@mta1+x=y_z.q"
        );
        let random = MoveId::from_random([0xab; 16]);
        assert_eq!(random.as_str(), "ab".repeat(16));
        assert_eq!(MoveId::parse(random.as_str()), Ok(random));
    }

    #[test]
    fn envelopes_are_checked_field_by_field() {
        let ok = MoveEnvelope {
            mail_from: "a@example.com".into(),
            recipients: vec!["b@example.net".into()],
            binding: "out1".into(),
            binding_group: "default".into(),
            headers: vec![("X-Spool".into(), "1F/00".into())],
        };
        assert_eq!(ok.check(), Ok(()));
        let mut long = ok.clone();
        long.recipients.push("x".repeat(MAX_ADDRESS + 1));
        assert_eq!(
            long.check(),
            Err("recipient 1 is 1025 bytes; at most 1024".into())
        );
        let mut colon = ok.clone();
        colon.headers[0].0 = "X-A:b".into();
        assert!(
            colon
                .check()
                .unwrap_err()
                .starts_with("header name \"X-A:b\"")
        );
        let mut value = ok;
        value.headers[0].1 = "v".repeat(MAX_HEADER_VALUE + 1);
        assert!(
            value
                .check()
                .unwrap_err()
                .starts_with("header X-Spool is 65537 bytes")
        );
    }

    #[test]
    fn reasons_are_cut_on_a_character_boundary() {
        let long = "é".repeat(MAX_REASON);
        let cut = cut_reason(long);
        assert!(cut.len() <= MAX_REASON && cut.len() >= MAX_REASON - 1);
        assert_eq!(
            MoveOutcome::of(MoveVerdict::Reject("550 no".into())),
            MoveOutcome::Rejected("550 no".into())
        );
    }
}
