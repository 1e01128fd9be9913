//! When a sender tries a move again, and when it gives up.
//!
//! An attempt fails when there is no link to the receiver, the link breaks
//! or is replaced (the receiver restarted) before the acknowledgement, the
//! acknowledgement does not come within [`ACK_PATIENCE_MS`] of the last
//! chunk, or the receiver defers. Each failure is followed by a pause that
//! starts at [`FIRST_PAUSE_MS`] and doubles up to [`MAX_PAUSE_MS`], spread
//! ±25 % by the move's id so that moves failing together do not come back
//! together; the sender gives up when its deadline has passed. A rejection
//! ends the move at once.

use super::MoveOutcome;
use crate::core::hash::Seeded;

/// The pause after the first failed attempt, in milliseconds.
pub(crate) const FIRST_PAUSE_MS: u64 = 50;
/// The longest pause between two attempts.
pub(crate) const MAX_PAUSE_MS: u64 = 2000;
/// How long an attempt waits for its acknowledgement once its last chunk
/// is written, before sending again. A hook still running when the move
/// arrives again answers both; the cost of a resend is its bytes.
pub(crate) const ACK_PATIENCE_MS: u64 = 15_000;

/// What the sender does after an attempt's outcome (or its failure to get
/// one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Moved: the receiver has it.
    Done { duplicate: bool },
    /// Refused for good.
    Rejected(String),
    /// Try again after this many milliseconds.
    Retry { pause_ms: u64 },
    /// The deadline has passed.
    GiveUp,
}

/// The sender's decision after attempt number `attempt` (from 1) ended at
/// `now_ms` with `outcome` (`None`: no acknowledgement), given its
/// deadline; `id` spreads the pauses.
pub fn next(
    outcome: Option<&MoveOutcome>,
    attempt: u32,
    now_ms: u64,
    deadline_ms: u64,
    id: &str,
) -> Next {
    match outcome {
        Some(MoveOutcome::Accepted) => return Next::Done { duplicate: false },
        Some(MoveOutcome::Duplicate) => return Next::Done { duplicate: true },
        Some(MoveOutcome::Rejected(reason)) => return Next::Rejected(reason.clone()),
        Some(MoveOutcome::Deferred(_)) | None => {}
    }
    if now_ms >= deadline_ms {
        return Next::GiveUp;
    }
    Next::Retry {
        pause_ms: pause_ms(attempt, id).min(deadline_ms - now_ms),
    }
}

/// The pause after `failed` attempts; see the module docs.
fn pause_ms(failed: u32, id: &str) -> u64 {
    let doublings = failed.saturating_sub(1).min(16);
    let base = (FIRST_PAUSE_MS << doublings).min(MAX_PAUSE_MS);
    let spread = Seeded::default().hash_bytes(format!("{id}/{failed}").as_bytes()) % (base / 2 + 1);
    base - base / 4 + spread
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_end_or_continue_the_move() {
        assert_eq!(
            next(Some(&MoveOutcome::Accepted), 1, 0, 10, "m"),
            Next::Done { duplicate: false }
        );
        assert_eq!(
            next(Some(&MoveOutcome::Duplicate), 3, 99, 10, "m"),
            Next::Done { duplicate: true }
        );
        // A rejection ends the move even before the deadline.
        assert_eq!(
            next(
                Some(&MoveOutcome::Rejected("550".into())),
                1,
                0,
                10_000,
                "m"
            ),
            Next::Rejected("550".into())
        );
        assert!(matches!(
            next(
                Some(&MoveOutcome::Deferred("full".into())),
                1,
                0,
                10_000,
                "m"
            ),
            Next::Retry { .. }
        ));
        assert_eq!(next(None, 5, 10_000, 10_000, "m"), Next::GiveUp);
    }

    #[test]
    fn pauses_grow_to_their_cap_spread_by_id_and_stop_at_the_deadline() {
        let pause = |attempt, id: &str| match next(None, attempt, 0, u64::MAX, id) {
            Next::Retry { pause_ms } => pause_ms,
            other => panic!("{other:?}"),
        };
        for attempt in 1..40 {
            let base = (FIRST_PAUSE_MS << (attempt - 1).min(16)).min(MAX_PAUSE_MS);
            for id in ["a", "b", "c", "0123456789abcdef"] {
                let p = pause(attempt, id);
                assert!(
                    p >= base * 3 / 4 && p <= base * 5 / 4,
                    "{attempt} {id}: {p}"
                );
            }
        }
        assert!(pause(1, "a") < 100);
        assert!(pause(30, "a") >= MAX_PAUSE_MS * 3 / 4);
        let spread: std::collections::HashSet<u64> =
            (0..20).map(|i| pause(6, &format!("m{i}"))).collect();
        assert!(spread.len() > 10, "{spread:?}");
        // Never beyond the deadline.
        assert_eq!(
            next(None, 30, 9_990, 10_000, "a"),
            Next::Retry { pause_ms: 10 }
        );
    }
}
