//! Replay rejection: has this peer's (generation, seq) been seen before?
//!
//! Every envelope carries the sender's boot generation and a sequence
//! number that increases with each envelope it seals in that generation
//! (one counter per sender, shared by every peer and both carriers: the
//! counter is half of the AEAD nonce, see `io::seal`). The receiver keeps,
//! per peer, the newest generation seen and a sliding window of the last
//! [`REPLAY_WINDOW`] sequence numbers of it:
//!
//! - a higher generation is a restart: the window starts afresh;
//! - a lower generation is [`Reject::StaleGeneration`];
//! - a seq inside the window is accepted once, in any order, so UDP
//!   reordering is harmless; a second time it is [`Reject::Replay`];
//! - a seq older than the window is [`Reject::Replay`] too: we cannot tell
//!   whether it was seen, and refusing is the safe answer. A heartbeat
//!   overtaken by more than a window's worth of later envelopes is one lost
//!   beat, which failure detection tolerates by design.
//!
//! This relies on a node's generation *increasing* across its restarts (the
//! node takes it from the wall clock at start), not merely changing.
//!
//! # Authenticate first, then record
//!
//! Call [`ReplayGuard::check_and_record`] only for envelopes whose AEAD tag
//! verified. Recording is a state change: an attacker who could get a
//! forged packet recorded would move the window (a huge seq pushes every
//! genuine packet out of it; a huge generation makes the real one stale)
//! without knowing the key. With authentication first, only the key holder
//! can move a window.
//!
//! It is pure and deterministic, hence here in the core rather than in
//! `io::seal` with the cipher: the simulator drives it like any other state.

use super::Reject;

/// How many sequence numbers behind the newest one are still accepted.
/// 128 covers any realistic reordering between the carriers for the cost of
/// one `u128` per peer.
pub const REPLAY_WINDOW: u64 = 128;

/// The replay state for one peer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayGuard {
    /// None until the first authenticated envelope from the peer.
    seen: Option<Window>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Window {
    generation: u64,
    /// The highest seq accepted in `generation`.
    newest: u64,
    /// Bit `i` set: seq `newest - i` was accepted. Bit 0 (newest) always is.
    bits: u128,
}

impl Window {
    fn starting_at(generation: u64, seq: u64) -> Window {
        Window {
            generation,
            newest: seq,
            bits: 1,
        }
    }
}

impl ReplayGuard {
    /// Accepts and records (generation, seq) if it is new, and changes
    /// nothing if it is not. Call only after the envelope authenticated
    /// (see the module docs).
    pub fn check_and_record(&mut self, generation: u64, seq: u64) -> Result<(), Reject> {
        let Some(w) = &mut self.seen else {
            self.seen = Some(Window::starting_at(generation, seq));
            return Ok(());
        };
        if generation < w.generation {
            return Err(Reject::StaleGeneration);
        }
        if generation > w.generation {
            *w = Window::starting_at(generation, seq);
            return Ok(());
        }
        if seq > w.newest {
            let ahead = seq - w.newest;
            w.bits = if ahead >= REPLAY_WINDOW {
                0
            } else {
                w.bits << ahead
            } | 1;
            w.newest = seq;
            return Ok(());
        }
        let behind = w.newest - seq;
        if behind >= REPLAY_WINDOW {
            return Err(Reject::Replay);
        }
        let bit = 1u128 << behind;
        if w.bits & bit != 0 {
            return Err(Reject::Replay);
        }
        w.bits |= bit;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_then_duplicate() {
        let mut g = ReplayGuard::default();
        for seq in 1..=300 {
            assert_eq!(g.check_and_record(5, seq), Ok(()));
        }
        assert_eq!(g.check_and_record(5, 300), Err(Reject::Replay));
        assert_eq!(g.check_and_record(5, 250), Err(Reject::Replay));
    }

    #[test]
    fn reordering_within_the_window_is_accepted_once() {
        let mut g = ReplayGuard::default();
        assert_eq!(g.check_and_record(1, 200), Ok(()));
        let oldest_in_window = 200 - (REPLAY_WINDOW - 1);
        for seq in [199, 150, oldest_in_window, 201, 198] {
            assert_eq!(g.check_and_record(1, seq), Ok(()), "seq {seq}");
        }
        for seq in [199, 150, oldest_in_window, 201, 198, 200] {
            assert_eq!(g.check_and_record(1, seq), Err(Reject::Replay), "seq {seq}");
        }
    }

    #[test]
    fn older_than_the_window_is_refused() {
        let mut g = ReplayGuard::default();
        assert_eq!(g.check_and_record(1, 1000), Ok(()));
        assert_eq!(
            g.check_and_record(1, 1000 - REPLAY_WINDOW),
            Err(Reject::Replay)
        );
        assert_eq!(g.check_and_record(1, 0), Err(Reject::Replay));
    }

    #[test]
    fn a_jump_beyond_the_window_forgets_the_old_bits() {
        let mut g = ReplayGuard::default();
        assert_eq!(g.check_and_record(1, 10), Ok(()));
        assert_eq!(g.check_and_record(1, 10 + REPLAY_WINDOW), Ok(()));
        // Seq 11 was never seen and sits at the window's far edge.
        assert_eq!(g.check_and_record(1, 11), Ok(()));
        assert_eq!(g.check_and_record(1, 10), Err(Reject::Replay));
        assert_eq!(g.check_and_record(1, u64::MAX), Ok(()));
        assert_eq!(g.check_and_record(1, u64::MAX), Err(Reject::Replay));
    }

    #[test]
    fn a_restart_resets_and_the_old_generation_is_stale() {
        let mut g = ReplayGuard::default();
        assert_eq!(g.check_and_record(7, 500), Ok(()));
        assert_eq!(g.check_and_record(8, 1), Ok(()));
        assert_eq!(g.check_and_record(8, 2), Ok(()));
        assert_eq!(g.check_and_record(7, 501), Err(Reject::StaleGeneration));
        assert_eq!(g.check_and_record(8, 1), Err(Reject::Replay));
    }

    #[test]
    fn a_refusal_changes_nothing() {
        let mut g = ReplayGuard::default();
        assert_eq!(g.check_and_record(3, 50), Ok(()));
        let before = g.clone();
        let _ = g.check_and_record(2, 60);
        let _ = g.check_and_record(3, 50);
        assert_eq!(g, before);
    }
}
