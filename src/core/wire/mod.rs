//! The messages nodes exchange, and their versioned binary codec.
//!
//! Two carriers exist: UDP datagrams (heartbeats only, so that liveness never
//! waits behind bulk data) and one TCP stream per peer pair (everything
//! reliable: console requests and answers now, replication, DuraVIP tables,
//! log pulls and message moves). Both carry *envelopes*: a fixed
//! header naming the sender and a per-sender sequence number, then the
//! message body, sealed by `io::seal` when the cluster has a key.
//!
//! Decoding is total: any byte string yields a message or a [`DecodeError`]
//! naming what was wrong; it never panics and never allocates more than the
//! input's length justifies.
//!
//! Besides the codec, this module holds the pure half of receiving: the
//! [`Reject`] reasons a packet is refused for (with their counters) and the
//! per-peer [`ReplayGuard`]. The AEAD itself lives in `io::seal`.

mod codec;
mod reject;
mod replay;

pub(crate) use codec::envelope_len;
pub use codec::{DecodeError, decode_message, encode_message};
pub use reject::{Reject, RejectCounters};
pub use replay::{REPLAY_WINDOW, ReplayGuard};

use crate::core::mmove::{MoveEnvelope, MoveId, MoveOutcome};
use crate::journal::format::LogId;

/// The protocol version this build speaks; bumped on incompatible changes.
pub const PROTOCOL_VERSION: u8 = 6;
/// Largest UDP payload we send or accept (fits an Ethernet MTU with headers).
pub const MAX_DATAGRAM: usize = 1400;
/// Largest TCP frame we send or accept.
pub const MAX_FRAME: usize = 1 << 20;
/// Longest line a [`LogGroupLine`] carries: a paniclog line is a sentence,
/// and a broadcast that every peer must read should stay small. A sender
/// cuts a longer one (crate-private: cbindgen would export a `pub` one).
pub(crate) const MAX_LOG_GROUP_LINE: usize = 64 * 1024;
/// Longest node name, subcluster, version or cluster group, in bytes: names
/// travel in every heartbeat and envelope header (behind a one-byte length).
pub const MAX_NAME: usize = 255;

/// The reference's node types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NodeType {
    /// An MTA node (the reference's `Momentum`).
    Momentum,
    /// A manager node (the reference's `eccmgr`).
    Manager,
}

/// How one node sees another in its membership table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PeerState {
    Alive,
    Suspect,
    Down,
}

/// What a node says about itself in every heartbeat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelfInfo {
    pub name: String,
    /// A new value on every start (and `cluster reset`): a restarted node is a new member.
    pub generation: u64,
    /// Raised only by the node itself, to refute a suspicion of it.
    pub incarnation: u32,
    pub node_type: NodeType,
    pub subcluster: String,
    /// The host process id, for the reference-style private names.
    pub pid: u32,
    /// The library version, for `cluster membership`.
    pub version: String,
    /// The cluster port the node listens on.
    pub port: u16,
    /// One hash per option that must be equal on every node, in the order of
    /// `core::membership::digest::AGREED_OPTIONS`.
    pub config_digest: Vec<u32>,
}

/// A heartbeat: sent by every node to every configured peer at
/// `heartbeats_per_sec`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    pub sender: SelfInfo,
    /// The id of the view the sender holds (a hash of its members), so that
    /// every node can tell whether the view is agreed.
    pub view_id: u64,
    /// How many members that view has.
    pub view_size: u32,
    /// How long ago the sender last heard each peer it considers up: the
    /// indirect evidence that keeps one lossy link from downing a live node.
    pub heard: Vec<Heard>,
    /// The sender's opinion of the receiver: the state and the incarnation
    /// and generation it last saw. A receiver that learns it is suspected or
    /// down raises its incarnation (refutation).
    pub about_you: Option<Opinion>,
}

/// "I heard `name` `age_ms` milliseconds ago" (saturating at `u16::MAX`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heard {
    pub name: String,
    pub age_ms: u16,
}

/// One node's opinion of another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opinion {
    pub state: PeerState,
    pub generation: u64,
    pub incarnation: u32,
}

/// Sent first on a new TCP stream, by both sides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    pub name: String,
    pub generation: u64,
    /// Both ends must be in the same `cluster_group`.
    pub cluster_group: String,
}

/// A console command sent over the control group (a manager's `broadcast`,
/// `unicast`, ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsoleRequest {
    pub id: u64,
    pub command: String,
}

/// The answer to a [`ConsoleRequest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsoleResponse {
    pub id: u64,
    pub ok: bool,
    pub output: String,
}

/// A node's DuraVIP table (its claims and the IPs it owns), sent over the
/// reliable links on every change and whenever a link comes up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DuraVipTable {
    /// The sender's generation: a restarted node's versions start again.
    pub generation: u64,
    pub table: crate::core::duravip::Table,
}

/// Replicated values of one object from their origin (`core::replicate`):
/// a batch of changes, or a snapshot of the origin's whole contribution
/// taken at its version `as_of`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaUpdate {
    /// The object's name (`inbound_cidr`, a cache's name...).
    pub object: String,
    /// The origin's generation: a restarted node's versions start again.
    pub generation: u64,
    /// `Some` for (a part of) a snapshot, `None` for a batch.
    pub snapshot: Option<SnapshotPart>,
    pub entries: Vec<crate::core::replicate::Entry>,
}

/// A snapshot of an origin's whole contribution, taken at its version
/// `as_of`, may take several messages to stay under [`MAX_FRAME`]: every
/// part but the last says `more`, and the receiver applies the snapshot
/// once it has the last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotPart {
    pub as_of: u64,
    pub more: bool,
}

/// Entries of one replicated key/value cache (`core::replicate::cache`):
/// writes and deletes this node made since its last update, or, for a
/// joining node, everything it holds. Unlike [`ReplicaUpdate`] there is no
/// generation or version: every entry carries its own stamp and origin, and
/// merging is order-independent. A sender keeps each message under
/// [`MAX_FRAME`] (`core::replicate::cache::split_batches`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheUpdate {
    /// The cache's name (the `Replicate` scope's).
    pub object: String,
    pub entries: Vec<crate::core::replicate::cache::CacheEntry>,
}

/// A manager's pull of one node's journal (the log service, DESIGN.md §6):
/// "checkpoint what I have durably written, then send me what comes next".
/// A pull carries the manager's latest checkpoint every time, so a pull
/// repeated after a broken link or an aborted job changes nothing twice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogPull {
    /// The manager's job; the answer names it.
    pub job: u64,
    /// The log's key in the node's `logs` dictionary.
    pub log: String,
    /// Subscriber names by preference: the node serves the first its
    /// journal has.
    pub subscribers: Vec<String>,
    /// The last record the manager holds durably, as the subscriber it
    /// was served to. The node never moves a checkpoint backwards.
    pub checkpoint: Option<(String, LogId)>,
}

/// One record of a [`LogBatch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub id: LogId,
    /// When the record was appended (seconds since the epoch).
    pub tv_sec: u32,
    pub payload: Vec<u8>,
}

/// A node's answer to a [`LogPull`]: records after the subscriber's
/// checkpoint, in order, under [`MAX_FRAME`]; or why there are none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogBatch {
    pub job: u64,
    pub log: String,
    /// The subscriber served (empty with an error).
    pub subscriber: String,
    pub records: Vec<LogLine>,
    /// More records wait after these.
    pub more: bool,
    /// Why nothing can be served: the log is not published here, the
    /// journal has none of the subscribers, it cannot be read.
    pub error: Option<String>,
}

/// A line a node appended to its paniclog, broadcast on its `log_group`
/// (the reference sent these over Spread for `spuser` and other listeners
/// to hear). Fire and forget: nothing acknowledges it, and a node in
/// another group, or in none, drops it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogGroupLine {
    /// The sender's `log_group`.
    pub group: String,
    /// The log's key in the sender's `logs` dictionary (`paniclog`).
    pub log: String,
    /// When the sender appended it: microseconds since the epoch, as the
    /// journal stamped the record.
    pub time_us: u64,
    /// At most [`MAX_LOG_GROUP_LINE`] bytes.
    pub line: Vec<u8>,
}

/// The start of a message move (`core::mmove`): its id, the envelope, the
/// body's length, and its first bytes (at most `MOVE_CHUNK`; a small
/// message is all here). [`MoveChunk`]s carry the rest, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MoveBegin {
    pub id: MoveId,
    pub envelope: MoveEnvelope,
    pub body_len: u64,
    pub data: Vec<u8>,
}

/// The next part of a moved message's body, at `offset`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MoveChunk {
    pub id: MoveId,
    pub offset: u64,
    pub data: Vec<u8>,
}

/// The receiver's answer to a move, by id; sent once the receiving host
/// decided (or earlier, when it need not be asked: a duplicate, a move it
/// cannot take now).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MoveAck {
    pub id: MoveId,
    pub outcome: MoveOutcome,
}

/// Every message of the protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Heartbeat(Heartbeat),
    Hello(Hello),
    ConsoleRequest(ConsoleRequest),
    ConsoleResponse(ConsoleResponse),
    DuraVipTable(DuraVipTable),
    ReplicaUpdate(ReplicaUpdate),
    CacheUpdate(CacheUpdate),
    /// "Send me your snapshots": a node that dropped the sender's
    /// contributions (it left this node's view) and now has it back sends
    /// this, since the sender may have seen no change that would make it
    /// resend them.
    SnapshotRequest,
    LogPull(LogPull),
    LogBatch(LogBatch),
    LogGroupLine(LogGroupLine),
    MoveBegin(MoveBegin),
    MoveChunk(MoveChunk),
    MoveAck(MoveAck),
}
