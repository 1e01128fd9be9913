//! A message's body on the wire: a [`MoveBegin`] carrying the envelope and
//! the first [`MOVE_CHUNK`] bytes, then [`MoveChunk`]s in order, each under
//! the frame limit, so a 50 MB message is a few hundred frames that other
//! traffic on the link interleaves with. A small message is one frame.
//!
//! The receiving side keeps an [`Inbox`] per link: the moves arriving on
//! it, each put back together from its begin and chunks. A link delivers
//! in order, so a chunk that does not continue its move exactly is a broken
//! sender; the move is dropped and refused (the sender retries from the
//! start). A link that closes takes its inbox with it: a sender starts
//! over on the next link.

use std::collections::HashMap;

use super::{MAX_MOVE_BODY, MOVE_CHUNK, MoveEnvelope, MoveId};
use crate::core::wire::{MoveBegin, MoveChunk};

/// The first message of a move: the envelope and the first chunk.
pub fn begin(id: &MoveId, envelope: &MoveEnvelope, body: &[u8]) -> MoveBegin {
    MoveBegin {
        id: id.clone(),
        envelope: envelope.clone(),
        body_len: body.len() as u64,
        data: body[..body.len().min(MOVE_CHUNK)].to_vec(),
    }
}

/// The rest of the body after [`begin`]'s part, made one chunk at a time
/// as the sender writes them.
pub fn chunks<'a>(id: &'a MoveId, body: &'a [u8]) -> impl Iterator<Item = MoveChunk> + 'a {
    body.chunks(MOVE_CHUNK)
        .enumerate()
        .skip(1)
        .map(move |(i, part)| MoveChunk {
            id: id.clone(),
            offset: (i * MOVE_CHUNK) as u64,
            data: part.to_vec(),
        })
}

/// A whole message, received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Complete {
    pub id: MoveId,
    pub envelope: MoveEnvelope,
    pub body: Vec<u8>,
}

/// What a begin or a chunk did to an [`Inbox`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// The move's last byte arrived.
    Complete(Complete),
    /// More is to come, or the chunk belongs to no move being received
    /// (one already answered, or dropped): nothing to do.
    Waiting,
    /// The move cannot be received (too large, out of order, too many at
    /// once); it is dropped, and the sender should be told why.
    Refused { id: MoveId, reason: String },
}

/// One move being received.
#[derive(Debug)]
struct Assembly {
    envelope: MoveEnvelope,
    body_len: u64,
    body: Vec<u8>,
}

/// The moves arriving on one link; see the module docs.
#[derive(Debug)]
pub struct Inbox {
    partial: HashMap<MoveId, Assembly>,
    max: usize,
}

/// Space reserved for a body up front: a peer's claim is not trusted with
/// more before the bytes arrive.
const RESERVE: usize = 4 << 20;

impl Inbox {
    /// At most `max` moves may be arriving at once on the link.
    pub fn new(max: usize) -> Inbox {
        Inbox {
            partial: HashMap::new(),
            max,
        }
    }

    /// Moves begun and not complete.
    pub fn len(&self) -> usize {
        self.partial.len()
    }

    pub fn is_empty(&self) -> bool {
        self.partial.is_empty()
    }

    /// A move starts. A partial move of the same id is dropped: its sender
    /// gave up on it and starts over.
    pub fn begin(&mut self, b: MoveBegin) -> Arrival {
        self.partial.remove(&b.id);
        let refuse = |reason: String| Arrival::Refused {
            id: b.id.clone(),
            reason,
        };
        if b.body_len > MAX_MOVE_BODY {
            return refuse(format!(
                "the body is {} bytes; this node takes at most {MAX_MOVE_BODY}",
                b.body_len
            ));
        }
        if b.data.len() as u64 > b.body_len {
            return refuse(format!(
                "the first chunk has {} bytes of a {}-byte body",
                b.data.len(),
                b.body_len
            ));
        }
        if self.partial.len() >= self.max {
            return refuse(format!(
                "{} moves are already arriving on this link",
                self.partial.len()
            ));
        }
        let reserve = usize::try_from(b.body_len).map_or(RESERVE, |n| n.min(RESERVE));
        let mut body = Vec::with_capacity(reserve.max(b.data.len()));
        body.extend_from_slice(&b.data);
        let assembly = Assembly {
            envelope: b.envelope,
            body_len: b.body_len,
            body,
        };
        if assembly.body.len() as u64 == assembly.body_len {
            return Arrival::Complete(Complete {
                id: b.id,
                envelope: assembly.envelope,
                body: assembly.body,
            });
        }
        self.partial.insert(b.id, assembly);
        Arrival::Waiting
    }

    /// The next part of a move's body.
    pub fn chunk(&mut self, c: MoveChunk) -> Arrival {
        let Some(assembly) = self.partial.get_mut(&c.id) else {
            return Arrival::Waiting;
        };
        let have = assembly.body.len() as u64;
        let problem = if c.offset != have {
            Some(format!(
                "a chunk at offset {} arrived after {have} bytes",
                c.offset
            ))
        } else if have + c.data.len() as u64 > assembly.body_len {
            Some(format!(
                "chunks exceed the announced {}-byte body",
                assembly.body_len
            ))
        } else {
            None
        };
        if let Some(reason) = problem {
            self.partial.remove(&c.id);
            return Arrival::Refused { id: c.id, reason };
        }
        assembly.body.extend_from_slice(&c.data);
        if (assembly.body.len() as u64) < assembly.body_len {
            return Arrival::Waiting;
        }
        let Some(done) = self.partial.remove(&c.id) else {
            return Arrival::Waiting;
        };
        Arrival::Complete(Complete {
            id: c.id,
            envelope: done.envelope,
            body: done.body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> MoveId {
        MoveId::parse(s).unwrap()
    }

    /// A body whose every byte depends on its position.
    fn body(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    fn envelope() -> MoveEnvelope {
        MoveEnvelope {
            mail_from: "a@b".into(),
            recipients: vec!["c@d".into()],
            ..MoveEnvelope::default()
        }
    }

    #[test]
    fn bodies_of_every_size_go_through_in_chunks_and_come_back_whole() {
        for len in [
            0,
            1,
            MOVE_CHUNK - 1,
            MOVE_CHUNK,
            MOVE_CHUNK + 1,
            3 * MOVE_CHUNK,
            3 * MOVE_CHUNK + 17,
        ] {
            let m = id("m1");
            let b = body(len);
            let first = begin(&m, &envelope(), &b);
            assert!(first.data.len() <= MOVE_CHUNK);
            let rest: Vec<MoveChunk> = chunks(&m, &b).collect();
            assert_eq!(rest.len(), len.saturating_sub(1) / MOVE_CHUNK, "{len}");
            assert!(
                rest.iter()
                    .all(|c| !c.data.is_empty() && c.data.len() <= MOVE_CHUNK)
            );
            let mut inbox = Inbox::new(4);
            let mut arrivals = vec![inbox.begin(first)];
            arrivals.extend(rest.into_iter().map(|c| inbox.chunk(c)));
            let last = arrivals.pop().unwrap();
            assert!(arrivals.iter().all(|a| *a == Arrival::Waiting), "{len}");
            assert_eq!(
                last,
                Arrival::Complete(Complete {
                    id: m,
                    envelope: envelope(),
                    body: b
                }),
                "{len}"
            );
            assert!(inbox.is_empty());
        }
    }

    #[test]
    fn interleaved_moves_are_kept_apart() {
        let (a, b) = (id("a"), id("b"));
        let (body_a, body_b) = (body(2 * MOVE_CHUNK + 5), vec![7; MOVE_CHUNK + 1]);
        let mut inbox = Inbox::new(4);
        assert_eq!(
            inbox.begin(begin(&a, &envelope(), &body_a)),
            Arrival::Waiting
        );
        assert_eq!(
            inbox.begin(begin(&b, &envelope(), &body_b)),
            Arrival::Waiting
        );
        let mut rest_a = chunks(&a, &body_a);
        assert_eq!(inbox.chunk(rest_a.next().unwrap()), Arrival::Waiting);
        let done_b = inbox.chunk(chunks(&b, &body_b).next().unwrap());
        assert!(matches!(done_b, Arrival::Complete(c) if c.body == body_b));
        let done_a = inbox.chunk(rest_a.next().unwrap());
        assert!(matches!(done_a, Arrival::Complete(c) if c.body == body_a));
    }

    #[test]
    fn broken_senders_are_refused_and_their_move_dropped() {
        let m = id("m");
        let b = body(3 * MOVE_CHUNK);
        let mut inbox = Inbox::new(1);
        inbox.begin(begin(&m, &envelope(), &b));
        let mut rest = chunks(&m, &b);
        rest.next();
        assert_eq!(
            inbox.chunk(rest.next().unwrap()),
            Arrival::Refused {
                id: m.clone(),
                reason: format!(
                    "a chunk at offset {} arrived after {MOVE_CHUNK} bytes",
                    2 * MOVE_CHUNK
                )
            }
        );
        assert!(inbox.is_empty());
        // Chunks of a dropped move are ignored.
        assert_eq!(
            inbox.chunk(chunks(&m, &b).next().unwrap()),
            Arrival::Waiting
        );

        let mut short = begin(&m, &envelope(), &b);
        short.body_len = 10;
        assert!(matches!(inbox.begin(short), Arrival::Refused { .. }));
        let mut huge = begin(&m, &envelope(), &b);
        huge.body_len = MAX_MOVE_BODY + 1;
        assert!(
            matches!(inbox.begin(huge), Arrival::Refused { reason, .. } if reason.contains("at most"))
        );
        let mut over = begin(&m, &envelope(), &b);
        over.body_len = MOVE_CHUNK as u64 + 1;
        inbox.begin(over);
        let mut extra = chunks(&m, &b).next().unwrap();
        extra.data = vec![0; 2];
        assert_eq!(
            inbox.chunk(extra),
            Arrival::Refused {
                id: m.clone(),
                reason: format!("chunks exceed the announced {}-byte body", MOVE_CHUNK + 1)
            }
        );
    }

    #[test]
    fn a_full_inbox_refuses_and_a_restart_replaces() {
        let b = body(MOVE_CHUNK + 1);
        let mut inbox = Inbox::new(1);
        assert_eq!(
            inbox.begin(begin(&id("a"), &envelope(), &b)),
            Arrival::Waiting
        );
        assert!(matches!(
            inbox.begin(begin(&id("b"), &envelope(), &b)),
            Arrival::Refused { reason, .. } if reason == "1 moves are already arriving on this link"
        ));
        // The same id again: the sender started over.
        assert_eq!(
            inbox.begin(begin(&id("a"), &envelope(), &b)),
            Arrival::Waiting
        );
        assert_eq!(inbox.len(), 1);
        assert!(matches!(
            inbox.chunk(chunks(&id("a"), &b).next().unwrap()),
            Arrival::Complete(c) if c.body == b
        ));
    }
}
