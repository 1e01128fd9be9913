//! The sending loop of one move: attempts over the current link to the
//! receiver, each the move's begin and chunks and then a wait for its
//! answer, and between them the pauses `core::mmove::retry` decides,
//! until the receiver accepts (or had the move already), rejects, or the
//! deadline passes. It runs on the host's thread that asked for the move;
//! many may run at once, their chunks interleaving on the link.

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use super::{Acks, Moves};
use crate::core::mmove::counts::Ending;
use crate::core::mmove::retry::{self, ACK_PATIENCE_MS, Next};
use crate::core::mmove::{
    MAX_ENVELOPE, MAX_MOVE_BODY, MoveError, MoveId, MoveOutcome, MoveReceipt, MoveRequest, transfer,
};
use crate::core::wire::{Message, envelope_len};

/// How often a sender waiting for an answer looks at its link.
const LOOK: Duration = Duration::from_millis(50);

/// The links a sender writes to: the runtime, or a test's stand-in.
pub(crate) trait Transport {
    type Link;
    /// The current link to `node`, or why there is none.
    fn link(&self, node: &str) -> Result<Self::Link, String>;
    fn send(&self, link: &Self::Link, message: &Message) -> Result<(), String>;
    /// Whether `link` is still `node`'s current link (not closed, not
    /// replaced by a new connection).
    fn is_current(&self, node: &str, link: &Self::Link) -> bool;
    fn stopping(&self) -> bool;
}

/// Moves a message to `target` under `id`; see the module docs. The
/// caller has checked that `target` is a configured peer.
pub(crate) fn send<T: Transport>(
    transport: &T,
    acks: &Acks,
    moves: &Moves,
    target: &str,
    id: MoveId,
    request: &MoveRequest<'_>,
    timeout: Duration,
) -> Result<MoveReceipt, MoveError> {
    check(request)?;
    let answers = acks.expect(target, &id).ok_or_else(|| {
        MoveError::Invalid(format!("a move of {id} to {target} is already under way"))
    })?;
    moves.count(target, |c| c.outgoing.started());
    let run = Run {
        transport,
        target,
        id: &id,
        request,
        answers: &answers,
        started: Instant::now(),
        deadline_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
    };
    let result = run.attempts(moves);
    acks.forget(target, &id);
    let ending = match &result {
        Ok(receipt) if receipt.duplicate => Ending::Duplicate,
        Ok(_) => Ending::Accepted,
        Err(MoveError::Rejected { .. }) => Ending::Rejected,
        Err(_) => Ending::Failed,
    };
    moves.count(target, |c| c.outgoing.ended(ending));
    result
}

/// What a receiver would refuse to decode, refused before anything is sent.
fn check(request: &MoveRequest<'_>) -> Result<(), MoveError> {
    request.envelope.check().map_err(MoveError::Invalid)?;
    if request.body.len() as u64 > MAX_MOVE_BODY {
        return Err(MoveError::Invalid(format!(
            "the body is {} bytes; a move carries at most {MAX_MOVE_BODY}",
            request.body.len()
        )));
    }
    let envelope = envelope_len(&request.envelope);
    if envelope > MAX_ENVELOPE {
        return Err(MoveError::Invalid(format!(
            "the envelope takes {envelope} bytes; at most {MAX_ENVELOPE}"
        )));
    }
    Ok(())
}

/// How one attempt ended.
enum Attempt {
    Answered(MoveOutcome),
    /// No answer, and why.
    Failed(String),
}

struct Run<'a, T> {
    transport: &'a T,
    target: &'a str,
    id: &'a MoveId,
    request: &'a MoveRequest<'a>,
    answers: &'a Receiver<MoveOutcome>,
    started: Instant,
    deadline_ms: u64,
}

impl<T: Transport> Run<'_, T> {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn attempts(&self, moves: &Moves) -> Result<MoveReceipt, MoveError> {
        let mut attempt = 0u32;
        let mut last = String::new();
        // An answer that came during a pause, to act on before sending again.
        let mut early: Option<MoveOutcome> = None;
        loop {
            let ended = match early.take() {
                Some(outcome) => Attempt::Answered(outcome),
                None => {
                    attempt += 1;
                    if attempt > 1 {
                        moves.count(self.target, |c| c.outgoing.retries += 1);
                    }
                    self.attempt()
                }
            };
            let outcome = match ended {
                Attempt::Answered(outcome) => {
                    if let MoveOutcome::Deferred(why) = &outcome {
                        moves.count(self.target, |c| c.outgoing.deferred += 1);
                        last = format!("{} deferred it: {why}", self.target);
                    }
                    Some(outcome)
                }
                Attempt::Failed(why) => {
                    last = why;
                    None
                }
            };
            let pause_ms = match retry::next(
                outcome.as_ref(),
                attempt,
                self.now_ms(),
                self.deadline_ms,
                self.id.as_str(),
            ) {
                Next::Done { duplicate } => {
                    return Ok(MoveReceipt {
                        id: self.id.clone(),
                        duplicate,
                        attempts: attempt,
                    });
                }
                Next::Rejected(reason) => {
                    return Err(MoveError::Rejected {
                        node: self.target.to_string(),
                        id: self.id.clone(),
                        reason,
                    });
                }
                Next::GiveUp => return Err(self.failed(attempt, last)),
                Next::Retry { pause_ms } => pause_ms,
            };
            if self.transport.stopping() {
                return Err(self.failed(attempt, "this node is stopping".into()));
            }
            // An attempt that timed out may still be answered.
            match self.answers.recv_timeout(Duration::from_millis(pause_ms)) {
                Ok(outcome) => early = Some(outcome),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {}
            }
        }
    }

    fn failed(&self, attempts: u32, last: String) -> MoveError {
        MoveError::Failed {
            node: self.target.to_string(),
            id: self.id.clone(),
            attempts,
            last,
        }
    }

    /// Sends the move once and waits for its answer.
    fn attempt(&self) -> Attempt {
        let t = self.transport;
        let target = self.target;
        let link = match t.link(target) {
            Ok(link) => link,
            Err(why) => return Attempt::Failed(why),
        };
        let sent = |message: Message| {
            t.send(&link, &message)
                .map_err(|e| format!("sending to {target} failed: {e}"))
        };
        let begin = transfer::begin(self.id, &self.request.envelope, self.request.body);
        if let Err(why) = sent(Message::MoveBegin(begin)) {
            return Attempt::Failed(why);
        }
        for chunk in transfer::chunks(self.id, self.request.body) {
            // The receiver may answer before it has the body (a duplicate,
            // a node that cannot take it): the rest need not be sent.
            if let Ok(outcome) = self.answers.try_recv() {
                return Attempt::Answered(outcome);
            }
            if !t.is_current(target, &link) {
                return Attempt::Failed(format!("the link to {target} closed during the transfer"));
            }
            if let Err(why) = sent(Message::MoveChunk(chunk)) {
                return Attempt::Failed(why);
            }
        }
        let patience = self.now_ms().saturating_add(ACK_PATIENCE_MS);
        loop {
            match self.answers.recv_timeout(LOOK) {
                Ok(outcome) => return Attempt::Answered(outcome),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {}
            }
            let now = self.now_ms();
            if t.stopping() {
                return Attempt::Failed("this node is stopping".into());
            }
            if !t.is_current(target, &link) {
                return Attempt::Failed(format!(
                    "the link to {target} closed before it answered (it may have restarted)"
                ));
            }
            if now >= self.deadline_ms {
                return Attempt::Failed(format!(
                    "{target} did not answer before the deadline ({} ms)",
                    self.deadline_ms
                ));
            }
            if now >= patience {
                return Attempt::Failed(format!(
                    "{target} did not answer within {} s",
                    ACK_PATIENCE_MS / 1000
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::mmove::transfer::{Arrival, Inbox};
    use crate::core::mmove::{MOVE_CHUNK, MoveEnvelope};
    use crate::core::wire::MoveAck;
    use parking_lot::Mutex;
    use std::sync::Arc;

    /// What the stand-in receiver does with each attempt, in turn.
    #[derive(Clone, Debug)]
    enum Script {
        /// No link at all.
        NoLink,
        /// The link breaks after this many messages of the attempt.
        BreakAfter(usize),
        /// The whole move arrives and is answered.
        Answer(MoveOutcome),
        /// Answered as soon as the begin arrives.
        AnswerAtBegin(MoveOutcome),
    }

    /// A receiver in the test's thread: it puts moves together through a
    /// real inbox and answers through the real acknowledgements.
    struct Stand {
        acks: Arc<Acks>,
        script: Mutex<Vec<Script>>,
        /// The link's generation: a broken link is not current any more.
        link: Mutex<u32>,
        inbox: Mutex<Inbox>,
        sent: Mutex<Vec<usize>>,
        received: Mutex<Vec<Vec<u8>>>,
    }

    impl Stand {
        fn new(acks: &Arc<Acks>, script: Vec<Script>) -> Stand {
            Stand {
                acks: Arc::clone(acks),
                script: Mutex::new(script),
                link: Mutex::new(0),
                inbox: Mutex::new(Inbox::new(4)),
                sent: Mutex::new(Vec::new()),
                received: Mutex::new(Vec::new()),
            }
        }

        fn current(&self) -> Script {
            self.script
                .lock()
                .first()
                .cloned()
                .unwrap_or(Script::NoLink)
        }

        fn next_attempt(&self) {
            let mut s = self.script.lock();
            if !s.is_empty() {
                s.remove(0);
            }
        }
    }

    impl Transport for Stand {
        type Link = u32;

        fn link(&self, node: &str) -> Result<u32, String> {
            if let Script::NoLink = self.current() {
                self.next_attempt();
                return Err(format!("no connection to {node}"));
            }
            self.sent.lock().push(0);
            Ok(*self.link.lock())
        }

        fn send(&self, link: &u32, message: &Message) -> Result<(), String> {
            if *link != *self.link.lock() {
                return Err("broken pipe".into());
            }
            let n = {
                let mut sent = self.sent.lock();
                *sent.last_mut().unwrap() += 1;
                *sent.last().unwrap()
            };
            let arrival = match message.clone() {
                Message::MoveBegin(b) => {
                    if let Script::AnswerAtBegin(outcome) = self.current() {
                        self.next_attempt();
                        self.acks.deliver("n2", MoveAck { id: b.id, outcome });
                        return Ok(());
                    }
                    self.inbox.lock().begin(b)
                }
                Message::MoveChunk(c) => self.inbox.lock().chunk(c),
                other => panic!("unexpected {other:?}"),
            };
            match self.current() {
                Script::BreakAfter(k) if n >= k => {
                    *self.link.lock() += 1;
                    *self.inbox.lock() = Inbox::new(4);
                    self.next_attempt();
                    Err("connection reset".into())
                }
                Script::Answer(outcome) => {
                    if let Arrival::Complete(c) = arrival {
                        self.received.lock().push(c.body);
                        self.next_attempt();
                        self.acks.deliver("n2", MoveAck { id: c.id, outcome });
                    }
                    Ok(())
                }
                _ => Ok(()),
            }
        }

        fn is_current(&self, _: &str, link: &u32) -> bool {
            *link == *self.link.lock()
        }

        fn stopping(&self) -> bool {
            false
        }
    }

    fn body() -> Vec<u8> {
        (0..3 * MOVE_CHUNK + 10).map(|i| (i % 253) as u8).collect()
    }

    fn run(
        script: Vec<Script>,
        timeout: Duration,
    ) -> (Result<MoveReceipt, MoveError>, Stand, Moves) {
        let acks = Arc::new(Acks::default());
        let stand = Stand::new(&acks, script);
        let moves = Moves::new(None, true);
        let body = body();
        let request = MoveRequest {
            id: None,
            envelope: MoveEnvelope::default(),
            body: &body,
        };
        let id = MoveId::parse("m1").unwrap();
        let result = send(&stand, &acks, &moves, "n2", id, &request, timeout);
        (result, stand, moves)
    }

    #[test]
    fn a_move_survives_no_link_a_broken_link_and_a_deferral() {
        let (result, stand, moves) = run(
            vec![
                Script::NoLink,
                Script::BreakAfter(2),
                Script::Answer(MoveOutcome::Deferred("spool full".into())),
                Script::Answer(MoveOutcome::Accepted),
            ],
            Duration::from_secs(30),
        );
        assert_eq!(
            result,
            Ok(MoveReceipt {
                id: MoveId::parse("m1").unwrap(),
                duplicate: false,
                attempts: 4
            })
        );
        // The broken attempt sent two messages; the others all four.
        assert_eq!(*stand.sent.lock(), vec![2, 4, 4]);
        assert_eq!(*stand.received.lock(), vec![body(), body()]);
        let counts = moves.counts()[0].1.outgoing;
        assert_eq!(
            (
                counts.sent,
                counts.accepted,
                counts.retries,
                counts.deferred,
                counts.in_flight
            ),
            (1, 1, 3, 1, 0)
        );
    }

    #[test]
    fn a_rejection_is_final_and_a_duplicate_stops_the_body() {
        let (result, stand, moves) = run(
            vec![Script::Answer(MoveOutcome::Rejected("550 no".into()))],
            Duration::from_secs(30),
        );
        assert_eq!(
            result.unwrap_err().to_string(),
            "n2 rejected move m1: 550 no"
        );
        assert_eq!(stand.sent.lock().len(), 1);
        assert_eq!(moves.counts()[0].1.outgoing.rejected, 1);

        let (result, stand, moves) = run(
            vec![Script::AnswerAtBegin(MoveOutcome::Duplicate)],
            Duration::from_secs(30),
        );
        assert!(result.unwrap().duplicate);
        // Only the begin and at most one chunk went out.
        assert!(stand.sent.lock()[0] <= 2, "{:?}", stand.sent.lock());
        assert_eq!(moves.counts()[0].1.outgoing.duplicates, 1);
    }

    #[test]
    fn the_deadline_ends_it_with_what_happened_last() {
        let (result, _, moves) = run(vec![Script::NoLink; 1000], Duration::from_millis(300));
        let MoveError::Failed {
            node,
            attempts,
            last,
            ..
        } = result.unwrap_err()
        else {
            panic!("not a failure");
        };
        assert_eq!(
            (node.as_str(), last.as_str()),
            ("n2", "no connection to n2")
        );
        assert!(attempts >= 2, "{attempts}");
        let counts = moves.counts()[0].1.outgoing;
        assert_eq!((counts.failed, counts.in_flight), (1, 0));
    }

    #[test]
    fn bad_requests_send_nothing() {
        let acks = Arc::new(Acks::default());
        let stand = Stand::new(&acks, vec![Script::Answer(MoveOutcome::Accepted)]);
        let moves = Moves::new(None, true);
        let mut envelope = MoveEnvelope::default();
        envelope.headers.push(("Bad Name".into(), "v".into()));
        let request = MoveRequest {
            id: None,
            envelope,
            body: b"x",
        };
        let err = send(
            &stand,
            &acks,
            &moves,
            "n2",
            MoveId::parse("m").unwrap(),
            &request,
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(matches!(err, MoveError::Invalid(_)), "{err}");
        assert!(stand.sent.lock().is_empty());
        // A second move of the same id at once is refused.
        let _waiting = acks.expect("n2", &MoveId::parse("m").unwrap()).unwrap();
        let ok = MoveRequest {
            id: None,
            envelope: MoveEnvelope::default(),
            body: b"x",
        };
        let err = send(
            &stand,
            &acks,
            &moves,
            "n2",
            MoveId::parse("m").unwrap(),
            &ok,
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot move this message: a move of m to n2 is already under way"
        );
    }
}
