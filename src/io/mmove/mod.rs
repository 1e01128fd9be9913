//! Message moves over the cluster links; `core::mmove` has the idea, the
//! guarantees and the pure parts.
//!
//! - [`Moves`] is the node's part that outlives its runtime: the host's
//!   hook, the id store (`store`), the per-peer counts.
//! - [`LinkInbound`] is the receiving side of one link, run by the thread
//!   that reads it: it puts moves together and hands each whole one to a
//!   thread of its own (`workers`), which asks the id store (and syncs
//!   it), runs the host's hook and answers. The reader never waits for
//!   either, so the link's other traffic (replication, console answers)
//!   keeps flowing; a peer has at most [`MAX_INCOMING`] moves arriving or
//!   being settled at once.
//! - [`Acks`] are the answers that senders wait for, and `sender` the
//!   sending loop (retries, deadline), over a [`Transport`] the runtime
//!   implements.

mod sender;
mod store;
mod workers;

pub use store::cut_torn_line;

pub(crate) use sender::{Transport, send};

use std::collections::{BTreeMap, HashMap};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender};

use parking_lot::{Mutex, RwLock};

use self::store::Ids;
use self::workers::Workers;
use crate::core::mmove::counts::PeerCounts;
use crate::core::mmove::ids::{Admission, Key};
use crate::core::mmove::transfer::{Arrival, Complete, Inbox};
use crate::core::mmove::{MoveId, MoveOutcome, MoveVerdict, MovedMessage};
use crate::core::wire::{MoveAck, MoveBegin, MoveChunk};

/// The host's move hook: given a moved message, its verdict. Runs on a
/// thread of its own per message, so several may run at once.
pub type MoveHook = Arc<dyn Fn(&MovedMessage) -> MoveVerdict + Send + Sync>;

/// Sends an answer to the peer a move came from (on whatever link is
/// current then).
pub(crate) type Reply = Arc<dyn Fn(MoveAck) + Send + Sync>;

/// Logs one line.
pub(crate) type Log = Arc<dyn Fn(&str) + Send + Sync>;

/// How many moves from one peer may be arriving or in the host's hook at
/// once; more are deferred (and retried by their senders).
pub(crate) const MAX_INCOMING: usize = 64;

/// See the module docs.
#[allow(missing_debug_implementations)] // holds the host's closure
pub struct Moves {
    hook: RwLock<Option<MoveHook>>,
    /// Open while the node runs.
    ids: Mutex<Option<Arc<Ids>>>,
    dir: Option<PathBuf>,
    /// `unconditional_rebind`, passed to the hook.
    rebind: bool,
    /// This node's name, for the answers that name it.
    me: RwLock<String>,
    counts: Mutex<BTreeMap<String, PeerCounts>>,
    /// The threads hooks run on.
    workers: Arc<Workers>,
}

fn now_s() -> u64 {
    crate::io::clock::coarse_wall_ms() / 1000
}

impl Moves {
    /// Ids are kept in `dir` (`mmove_dir`), or in memory only.
    pub fn new(dir: Option<PathBuf>, rebind: bool) -> Moves {
        Moves {
            hook: RwLock::new(None),
            ids: Mutex::new(None),
            dir,
            rebind,
            me: RwLock::new(String::new()),
            counts: Mutex::new(BTreeMap::new()),
            workers: Arc::default(),
        }
    }

    /// Sets the host's hook, replacing any earlier one: a moved message
    /// goes to one spool.
    pub fn set_hook(&self, hook: MoveHook) {
        *self.hook.write() = Some(hook);
    }

    /// Opens the id store (replaying it from `mmove_dir`), as node `me`.
    pub fn start(&self, me: &str) -> Result<(), String> {
        *self.me.write() = me.to_string();
        let mut ids = self.ids.lock();
        // The last start's store first, or its lock would refuse this one.
        *ids = None;
        *ids = Some(Arc::new(match &self.dir {
            Some(dir) => Ids::open(dir, now_s())?,
            None => Ids::in_memory(),
        }));
        Ok(())
    }

    /// Lets go of the id store (and its directory's lock) once the hooks
    /// running now are done; moves arriving meanwhile are deferred. Then
    /// waits for the hooks' threads to end (see `workers`).
    pub fn stop(&self) {
        *self.ids.lock() = None;
        self.workers.stop();
    }

    /// Every peer's counts, by name.
    pub fn counts(&self) -> Vec<(String, PeerCounts)> {
        self.counts
            .lock()
            .iter()
            .map(|(n, c)| (n.clone(), *c))
            .collect()
    }

    pub(crate) fn count(&self, peer: &str, f: impl FnOnce(&mut PeerCounts)) {
        let mut counts = self.counts.lock();
        match counts.get_mut(peer) {
            Some(c) => f(c),
            None => f(counts.entry(peer.to_string()).or_default()),
        }
    }

    /// The receiving side of a new link from `peer`.
    pub(crate) fn link(self: &Arc<Self>, peer: &str, reply: Reply, log: Log) -> LinkInbound {
        LinkInbound {
            moves: Arc::clone(self),
            peer: peer.to_string(),
            inbox: Inbox::new(MAX_INCOMING),
            reply,
            log,
        }
    }

    fn ids(&self) -> Option<Arc<Ids>> {
        self.ids.lock().clone()
    }

    /// Why this node does not take a move now (before its body is read),
    /// if it does not.
    fn refusal(&self, key: &Key) -> Option<MoveOutcome> {
        if self.hook.read().is_none() {
            return Some(MoveOutcome::Deferred(format!(
                "no move hook is registered on {}",
                self.me.read()
            )));
        }
        let ids = self.ids()?;
        ids.is_accepted(key).then_some(MoveOutcome::Duplicate)
    }

    /// A move arrived whole: counted, and settled on a worker thread, so
    /// that neither the id store's syncs nor the hook hold up the link.
    fn deliver(self: &Arc<Self>, from: &str, complete: Complete, reply: &Reply, log: &Log) {
        self.count(from, |c| c.incoming.arrived());
        let answer = |outcome: MoveOutcome| {
            self.count(from, |c| c.incoming.answered(&outcome));
            reply(MoveAck {
                id: complete.id.clone(),
                outcome,
            });
        };
        let (Some(hook), Some(ids)) = (self.hook.read().clone(), self.ids()) else {
            let refusal = self.refusal(&key(from, &complete.id));
            return answer(
                refusal.unwrap_or_else(|| MoveOutcome::Deferred("the node is not running".into())),
            );
        };
        let id = complete.id.clone();
        let settle = {
            let (moves, from) = (Arc::clone(self), from.to_string());
            let (reply, log) = (Arc::clone(reply), Arc::clone(log));
            move || moves.settle(&hook, ids, from, complete, &reply, &log)
        };
        if let Err(e) = self.workers.run(Box::new(settle)) {
            let outcome = MoveOutcome::Deferred(format!(
                "{} cannot start a thread for its move hook: {e}",
                self.me.read()
            ));
            self.count(from, |c| c.incoming.answered(&outcome));
            reply(MoveAck { id, outcome });
        }
    }

    /// On a worker: what the id store says (see `core::mmove::ids`), the
    /// host's hook if it is to be asked, and the answer.
    fn settle(
        &self,
        hook: &MoveHook,
        ids: Arc<Ids>,
        from: String,
        complete: Complete,
        reply: &Reply,
        log: &Log,
    ) {
        let key = key(&from, &complete.id);
        let answer = |outcome: MoveOutcome| {
            self.count(&from, |c| c.incoming.answered(&outcome));
            reply(MoveAck {
                id: key.id.clone(),
                outcome,
            });
        };
        let redelivery = match ids.admit(key.clone(), now_s()) {
            Err(e) => {
                log(&format!(
                    "mmove: cannot record move {} from {from}: {e}",
                    key.id
                ));
                return answer(MoveOutcome::Deferred(format!(
                    "{} cannot record the move: {e}",
                    self.me.read()
                )));
            }
            Ok(Admission::Duplicate) => return answer(MoveOutcome::Duplicate),
            // The running hook answers; this arrival counts as a duplicate.
            Ok(Admission::InProgress) => {
                return self.count(&from, |c| c.incoming.answered(&MoveOutcome::Duplicate));
            }
            Ok(Admission::Deliver { redelivery, .. }) => redelivery,
        };
        let message = MovedMessage {
            id: complete.id,
            from: from.clone(),
            envelope: complete.envelope,
            body: complete.body,
            redelivery,
            rebind: self.rebind,
        };
        // A Rust hook that panics defers the move; the panic hook has
        // printed why.
        let verdict = catch_unwind(AssertUnwindSafe(|| hook(&message)))
            .unwrap_or_else(|_| MoveVerdict::Defer("the move hook panicked".into()));
        let outcome = MoveOutcome::of(verdict);
        let accepted = outcome == MoveOutcome::Accepted;
        // An acceptance that cannot be recorded is still the host's: the
        // sender is told. Were this node to crash before it could record
        // it, the move comes back as a redelivery, which the host
        // recognises.
        if let Err(e) = ids.resolve(key.clone(), accepted, now_s()) {
            log(&format!(
                "mmove: cannot record move {} from {from}: {e}",
                key.id
            ));
        }
        // Before the answer: a node stopped once its sender heard must not
        // still hold the store.
        drop(ids);
        answer(outcome);
    }
}

fn key(from: &str, id: &MoveId) -> Key {
    Key {
        from: from.to_string(),
        id: id.clone(),
    }
}

/// The receiving side of one link; see the module docs.
#[allow(missing_debug_implementations)] // holds closures
pub(crate) struct LinkInbound {
    moves: Arc<Moves>,
    peer: String,
    inbox: Inbox,
    reply: Reply,
    log: Log,
}

impl LinkInbound {
    pub fn begin(&mut self, b: MoveBegin) {
        let key = key(&self.peer, &b.id);
        // A duplicate, or a node that cannot take it, is answered at once:
        // the sender stops sending the body.
        let busy = || {
            let in_hooks = self
                .moves
                .counts
                .lock()
                .get(&self.peer)
                .map_or(0, |c| c.incoming.in_flight);
            in_hooks as usize + self.inbox.len() >= MAX_INCOMING
        };
        let refusal = self.moves.refusal(&key).or_else(|| {
            busy().then(|| {
                MoveOutcome::Deferred(format!(
                    "{} is receiving {MAX_INCOMING} moves from {} already",
                    self.moves.me.read(),
                    self.peer
                ))
            })
        });
        if let Some(outcome) = refusal {
            return self.answer_now(b.id, outcome);
        }
        let arrival = self.inbox.begin(b);
        self.arrived(arrival);
    }

    pub fn chunk(&mut self, c: MoveChunk) {
        let arrival = self.inbox.chunk(c);
        self.arrived(arrival);
    }

    fn arrived(&mut self, arrival: Arrival) {
        match arrival {
            Arrival::Waiting => {}
            Arrival::Complete(complete) => {
                self.moves
                    .deliver(&self.peer, complete, &self.reply, &self.log)
            }
            Arrival::Refused { id, reason } => {
                let reason = format!("{}: {reason}", self.moves.me.read());
                self.answer_now(id, MoveOutcome::Deferred(reason));
            }
        }
    }

    /// Answers a move the host is not asked about.
    fn answer_now(&self, id: MoveId, outcome: MoveOutcome) {
        self.moves.count(&self.peer, |c| {
            c.incoming.arrived();
            c.incoming.answered(&outcome);
        });
        (self.reply)(MoveAck { id, outcome });
    }
}

/// The answers that senders wait for, by peer and id.
#[derive(Debug, Default)]
pub(crate) struct Acks {
    waiting: Mutex<HashMap<(String, MoveId), Sender<MoveOutcome>>>,
}

impl Acks {
    /// Starts waiting for `node`'s answers about `id`; `None` when a move
    /// of that id to that node is under way already.
    pub fn expect(&self, node: &str, id: &MoveId) -> Option<Receiver<MoveOutcome>> {
        let mut waiting = self.waiting.lock();
        let slot = (node.to_string(), id.clone());
        if waiting.contains_key(&slot) {
            return None;
        }
        let (tx, rx) = mpsc::channel();
        waiting.insert(slot, tx);
        Some(rx)
    }

    pub fn forget(&self, node: &str, id: &MoveId) {
        self.waiting.lock().remove(&(node.to_string(), id.clone()));
    }

    /// An answer arrived from `from`; one nobody waits for any more (a
    /// move that ended) is dropped.
    pub fn deliver(&self, from: &str, ack: MoveAck) {
        if let Some(tx) = self.waiting.lock().get(&(from.to_string(), ack.id)) {
            let _ = tx.send(ack.outcome);
        }
    }
}
