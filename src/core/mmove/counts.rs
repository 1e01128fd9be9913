//! What `cluster show mmove` counts, per peer and direction.
//!
//! Every move this node starts is counted `sent` once and ends as exactly
//! one of accepted, duplicate (the receiver had it already), rejected or
//! failed (the deadline passed); until then it is in flight. Deferrals and
//! retries are counted as they happen. So, per peer:
//!
//! ```text
//! sent = accepted + duplicates + rejected + failed + in flight
//! ```
//!
//! Every move this node receives whole (or answers before its body is in:
//! a duplicate, a busy or hookless node) is counted `received` once, and is
//! answered as exactly one of accepted, duplicate, rejected or deferred; it
//! is in flight while its host's hook runs:
//!
//! ```text
//! received = accepted + duplicates + rejected + deferred + in flight
//! ```
//!
//! A move that arrives again while its hook runs counts as a duplicate: the
//! running hook's verdict answers it.

use super::MoveOutcome;

/// Moves this node sent to one peer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outgoing {
    pub sent: u64,
    pub accepted: u64,
    pub duplicates: u64,
    pub rejected: u64,
    /// Attempts the receiver deferred (each is retried).
    pub deferred: u64,
    /// Attempts after a move's first.
    pub retries: u64,
    pub failed: u64,
    pub in_flight: u64,
}

/// How a sent move ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    Accepted,
    Duplicate,
    Rejected,
    Failed,
}

impl Outgoing {
    pub fn started(&mut self) {
        self.sent += 1;
        self.in_flight += 1;
    }

    pub fn ended(&mut self, how: Ending) {
        self.in_flight = self.in_flight.saturating_sub(1);
        *match how {
            Ending::Accepted => &mut self.accepted,
            Ending::Duplicate => &mut self.duplicates,
            Ending::Rejected => &mut self.rejected,
            Ending::Failed => &mut self.failed,
        } += 1;
    }
}

/// Moves this node received from one peer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Incoming {
    pub received: u64,
    pub accepted: u64,
    pub duplicates: u64,
    pub rejected: u64,
    pub deferred: u64,
    pub in_flight: u64,
}

impl Incoming {
    /// A move arrived; [`Incoming::answered`] follows.
    pub fn arrived(&mut self) {
        self.received += 1;
        self.in_flight += 1;
    }

    pub fn answered(&mut self, outcome: &MoveOutcome) {
        self.in_flight = self.in_flight.saturating_sub(1);
        *match outcome {
            MoveOutcome::Accepted => &mut self.accepted,
            MoveOutcome::Duplicate => &mut self.duplicates,
            MoveOutcome::Rejected(_) => &mut self.rejected,
            MoveOutcome::Deferred(_) => &mut self.deferred,
        } += 1;
    }
}

/// Both directions with one peer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerCounts {
    pub outgoing: Outgoing,
    pub incoming: Incoming,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_move_ends_in_one_bucket() {
        let mut out = Outgoing::default();
        for how in [
            Ending::Accepted,
            Ending::Duplicate,
            Ending::Rejected,
            Ending::Failed,
        ] {
            out.started();
            out.ended(how);
        }
        out.started();
        out.retries += 2;
        out.deferred += 1;
        let o = out;
        assert_eq!(
            o.sent,
            o.accepted + o.duplicates + o.rejected + o.failed + o.in_flight
        );
        assert_eq!((o.in_flight, o.retries, o.deferred), (1, 2, 1));

        let mut inc = Incoming::default();
        for outcome in [
            MoveOutcome::Accepted,
            MoveOutcome::Duplicate,
            MoveOutcome::Rejected("r".into()),
            MoveOutcome::Deferred("d".into()),
        ] {
            inc.arrived();
            inc.answered(&outcome);
        }
        inc.arrived();
        let i = inc;
        assert_eq!(
            i.received,
            i.accepted + i.duplicates + i.rejected + i.deferred + i.in_flight
        );
        assert_eq!((i.received, i.in_flight), (5, 1));
    }
}
