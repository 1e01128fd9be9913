//! The cluster runtime: the cluster port's sockets and the threads that carry
//! the membership core's inputs and outputs.
//!
//! - The **engine thread** owns the [`Membership`] state machine and the UDP
//!   socket. It sleeps until the next datagram or the machine's next
//!   deadline, feeds what arrived in, and carries out what comes out: sends
//!   heartbeats, logs events, runs the membership hooks and publishes a
//!   snapshot for the console. Heartbeats never share a queue with bulk data.
//! - **TCP links**, one per peer pair (the node with the smaller name dials,
//!   with backoff up to `reconnect_interval`), carry console requests from a
//!   manager and their answers, DuraVIP tables, replication, log pulls and
//!   message moves (`io::mmove`). Each link starts with a sealed `Hello`
//!   both ways; a peer that is not configured, or not in our
//!   `cluster_group`, is refused. A frame is sealed under its link's write
//!   lock, so frames leave in sequence order whichever threads send them;
//!   a write that fails or stalls for [`LINK_WRITE_TIMEOUT`] closes the
//!   link (a frame cut short cannot be resumed) and the link is dialled
//!   again.
//!
//! Every datagram and frame passes through [`Sealer`]: authenticated (and
//! encrypted) when the cluster has a key, checked against the configured peer
//! and the replay window, and counted by reason when rejected. This module
//! decides nothing about membership; it only moves bytes and time.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};

use crate::config::model::Replicate;
use crate::core::console::Caller;
use crate::core::duravip::DuraVip;
use crate::core::membership::{Event, Membership, MembershipConfig, Output};
use crate::core::mmove::{MoveError, MoveId, MoveReceipt, MoveRequest};
use crate::core::wire::DuraVipTable;
use crate::core::wire::{
    CacheUpdate, LogBatch, LogGroupLine, LogPull, MAX_LOG_GROUP_LINE, NodeType, ReplicaUpdate,
};
use crate::core::wire::{
    ConsoleRequest, ConsoleResponse, Hello, MAX_DATAGRAM, MAX_FRAME, Message, Reject,
    RejectCounters, ReplayGuard, SelfInfo, decode_message, encode_message,
};
use crate::io::loggroup::LogGroup;
use crate::io::mmove::{Acks, Moves, Transport};
use crate::io::replication::{Audience, ReplicationDriver, Rows, SharedObjects};
use crate::io::seal::{Envelope, Key, Sealer};
use crate::io::vip::{VipDriver, VipSetup};
use crate::journal::server::LogServer;

/// A membership hook: runs on the engine thread after every view change.
pub type ViewHook = Arc<dyn Fn(&Event) + Send + Sync>;

/// Runs a console command locally (for requests arriving from a manager).
pub type ConsoleExec = Arc<dyn Fn(&str, &Caller) -> Result<String, String> + Send + Sync>;

/// What the runtime needs to know.
#[allow(missing_debug_implementations)] // holds closures
pub struct RuntimeConfig {
    pub me: SelfInfo,
    pub membership: MembershipConfig,
    pub bind: SocketAddr,
    /// Every other configured node and where it listens.
    pub peers: Vec<(String, SocketAddr)>,
    pub cluster_group: String,
    pub key: Option<Key>,
    pub reconnect_max: Duration,
    pub connect_timeout: Duration,
    /// Logs one line (the host's log, or stderr).
    pub log: Arc<dyn Fn(&str) + Send + Sync>,
    pub console: ConsoleExec,
    pub view_hooks: Arc<RwLock<Vec<ViewHook>>>,
    /// DuraVIP, when this node has any DuraVIP claims.
    pub vip: Option<VipSetup>,
    /// The replicated objects the hot path writes, and their scopes.
    pub shared_objects: SharedObjects,
    pub replicate: Vec<Replicate>,
    /// Answers managers' pulls of this node's published journals.
    pub log_server: Arc<LogServer>,
    /// Keeps the lines peers broadcast on this node's `log_group`.
    pub log_group: Arc<LogGroup>,
    /// Message moves: the host's hook, the id store, the counts.
    pub moves: Arc<Moves>,
}

/// What the console reads: the membership table and the transport's counters.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub membership: Membership,
    pub rejected: Vec<(&'static str, u64)>,
    pub links: Vec<String>,
    pub late_timer_events: u64,
    /// Heartbeat datagrams sent, and their bytes (sealed, without IP/UDP headers).
    pub heartbeats_sent: u64,
    pub heartbeat_bytes: u64,
    /// The DuraVIP core's state and how addresses are plumbed, when enabled.
    /// Shared, and copied from the engine only when it changed: with
    /// thousands of addresses a copy per engine wake-up would dominate.
    pub vip: Option<(Arc<DuraVip>, &'static str)>,
}

enum EngineCommand {
    Reset(u64),
    /// A peer's DuraVIP table, received on its link.
    Table(String, DuraVipTable),
    /// The host registered (or changed) one of its DuraVIPs.
    Claim(crate::core::duravip::Claim),
    /// The host removed one of its DuraVIPs.
    Unclaim(IpAddr),
    /// `cluster duravip announce view`: send our table to every peer again
    /// and re-announce every owned address.
    AnnounceView,
    /// `cluster duravip debug on|off`.
    VipDebug(bool),
    /// A peer's cluster port refused a connection after its link broke.
    PeerGone(String),
    /// A peer's replicated values, received on its link.
    Replica(String, ReplicaUpdate),
    /// A peer's cache entries.
    Cache(CacheUpdate),
    /// A link to this peer opened, or it asked (`SnapshotRequest`): it gets
    /// this node's snapshots.
    LinkUp(String),
    /// `cluster shared show OBJ from NODE`: NODE's values, answered on the
    /// channel (`None`: not replicated here).
    SharedRows(String, String, mpsc::Sender<Option<Rows>>),
    /// `cluster duravip move IP to NODE`, answered on the channel.
    Move(IpAddr, String, mpsc::Sender<Result<(), String>>),
}

/// How long a write to a link may stall before the link is given up:
/// the peer reads continuously, so a stall this long means it is gone.
const LINK_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct Link {
    peer: String,
    writer: Mutex<TcpStream>,
}

impl Link {
    /// Seals and writes one message; see the module docs.
    fn send(&self, shared: &Shared, message: &Message) -> io::Result<()> {
        let mut writer = self.writer.lock();
        let result = write_frame(&mut writer, &shared.seal(message));
        if result.is_err() {
            let _ = writer.shutdown(std::net::Shutdown::Both);
        }
        result
    }
}

struct Shared {
    sealer: Sealer,
    me_name: String,
    generation: AtomicU64,
    seq: AtomicU64,
    snapshot: RwLock<Snapshot>,
    rejects: Mutex<RejectCounters>,
    links: Mutex<HashMap<String, Arc<Link>>>,
    pending: Mutex<HashMap<u64, Sender<ConsoleResponse>>>,
    /// Per peer, the newest (generation, seq) received on any TCP link. A
    /// sender's seq only grows, so every frame, including the `Hello` of a
    /// new connection, must be newer: replaying a captured stream on a fresh
    /// connection is refused.
    stream_high: Mutex<HashMap<String, (u64, u64)>>,
    /// Commands for the engine thread, and the address that wakes it.
    commands: Mutex<Sender<EngineCommand>>,
    wake: SocketAddr,
    /// This node's latest DuraVIP table, sent on every new link.
    latest_table: Mutex<Option<DuraVipTable>>,
    next_request: AtomicU64,
    stopping: AtomicBool,
    peers: Vec<(String, SocketAddr)>,
    cluster_group: String,
    log: Arc<dyn Fn(&str) + Send + Sync>,
    console: ConsoleExec,
    log_server: Arc<LogServer>,
    /// A manager's log pulls waiting for their batch, by job.
    log_pulls: Mutex<HashMap<u64, Sender<LogBatch>>>,
    log_group: Arc<LogGroup>,
    moves: Arc<Moves>,
    /// The answers this node's senders of moves wait for.
    move_acks: Acks,
}

impl Shared {
    fn seal(&self, message: &Message) -> Vec<u8> {
        let envelope = Envelope {
            sender: self.me_name.clone(),
            generation: self.generation.load(Ordering::SeqCst),
            // One counter for datagrams and frames: the nonce must never repeat under one key.
            seq: self.seq.fetch_add(1, Ordering::SeqCst),
            body: encode_message(message),
        };
        self.sealer.seal(&envelope)
    }

    fn reject(&self, why: &Reject, from: impl std::fmt::Display) {
        let first = {
            let mut counters = self.rejects.lock();
            counters.increment(why);
            counters
                .iter()
                .any(|(reason, n)| reason == why.reason() && n == 1)
        };
        // Log the first of each kind; an attacker must not be able to flood the log.
        if first {
            (self.log)(&format!(
                "rejected traffic from {from}: {why} (further ones are only counted)"
            ));
        }
    }

    fn send_command(&self, command: EngineCommand) {
        if self.commands.lock().send(command).is_ok() {
            self.wake_engine();
        }
    }

    fn wake_engine(&self) {
        if let Ok(s) = UdpSocket::bind(SocketAddr::new(self.wake.ip(), 0)) {
            let _ = s.send_to(&[], self.wake);
        }
    }

    /// Sends a message on every link.
    fn broadcast(&self, message: &Message) {
        let links: Vec<Arc<Link>> = self.links.lock().values().cloned().collect();
        for link in links {
            let _ = link.send(self, message);
        }
    }

    /// Sends a message on the link to one peer, if it is up.
    fn send_to(&self, peer: &str, message: &Message) {
        let link = self.links.lock().get(peer).cloned();
        if let Some(link) = link {
            let _ = link.send(self, message);
        }
    }

    fn peer_alive(&self, name: &str) -> bool {
        self.alive_generation(name).is_some()
    }

    /// The generation of `name` while it is alive, `None` otherwise.
    fn alive_generation(&self, name: &str) -> Option<u64> {
        let snapshot = self.snapshot.read();
        snapshot
            .membership
            .member(name)
            .filter(|m| m.state == crate::core::wire::PeerState::Alive)
            .map(|m| m.info.generation)
    }

    fn peer_named(&self, name: &str) -> Option<SocketAddr> {
        self.peers.iter().find(|(n, _)| n == name).map(|(_, a)| *a)
    }
}

/// A running cluster runtime.
pub struct Runtime {
    shared: Arc<Shared>,
    tcp_addr: SocketAddr,
    started: Instant,
    vip_configured: bool,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("me", &self.shared.me_name)
            .finish_non_exhaustive()
    }
}

/// A boot generation: the wall clock in nanoseconds, and always above
/// `previous`. Peers take a higher generation for a restart and reject a
/// lower one as stale, so it must grow across restarts; with the sequence
/// number it also keeps every sealing nonce unique.
pub fn new_generation(previous: u64) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    now.max(previous.saturating_add(1))
}

impl Runtime {
    /// Binds the cluster port (UDP and TCP) and starts the threads.
    pub fn start(mut cfg: RuntimeConfig) -> io::Result<Runtime> {
        let udp = UdpSocket::bind(cfg.bind)?;
        let tcp = TcpListener::bind(udp.local_addr()?)?;
        let local = udp.local_addr()?;
        let wake = if local.ip().is_unspecified() {
            SocketAddr::new(IpAddr::from([127, 0, 0, 1]), local.port())
        } else {
            local
        };
        let now = Instant::now();
        let membership = Membership::new(cfg.membership.clone(), cfg.me.clone(), 0);
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            sealer: Sealer::new(cfg.key.clone()),
            me_name: cfg.me.name.clone(),
            generation: AtomicU64::new(cfg.me.generation),
            seq: AtomicU64::new(1),
            snapshot: RwLock::new(Snapshot {
                membership: membership.clone(),
                rejected: Vec::new(),
                links: Vec::new(),
                late_timer_events: 0,
                heartbeats_sent: 0,
                heartbeat_bytes: 0,
                vip: None,
            }),
            rejects: Mutex::new(RejectCounters::default()),
            links: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            stream_high: Mutex::new(HashMap::new()),
            commands: Mutex::new(tx),
            wake,
            latest_table: Mutex::new(None),
            next_request: AtomicU64::new(1),
            stopping: AtomicBool::new(false),
            peers: cfg.peers.clone(),
            cluster_group: cfg.cluster_group.clone(),
            log: Arc::clone(&cfg.log),
            console: Arc::clone(&cfg.console),
            log_server: Arc::clone(&cfg.log_server),
            log_pulls: Mutex::new(HashMap::new()),
            log_group: Arc::clone(&cfg.log_group),
            moves: Arc::clone(&cfg.moves),
            move_acks: Acks::default(),
        });
        let mut threads = Vec::new();
        let vip_configured;
        {
            let shared = Arc::clone(&shared);
            let hooks = Arc::clone(&cfg.view_hooks);
            let duties = Duties {
                vip: cfg.vip.take(),
                replication: ReplicationDriver::new(
                    &cfg.shared_objects,
                    &cfg.replicate,
                    cfg.me.generation,
                ),
            };
            vip_configured = duties.vip.is_some();
            // First in the list: `stop` joins it before closing the links.
            threads.push(spawn("ecc-engine", move || {
                engine(shared, udp, membership, now, rx, hooks, duties)
            })?);
        }
        {
            let shared = Arc::clone(&shared);
            threads.push(spawn("ecc-accept", move || accept_loop(shared, tcp))?);
        }
        for (peer, addr) in &cfg.peers {
            if cfg.me.name < *peer {
                let shared = Arc::clone(&shared);
                let (peer, addr) = (peer.clone(), *addr);
                let (max, timeout) = (cfg.reconnect_max, cfg.connect_timeout);
                threads.push(spawn("ecc-dial", move || {
                    dial_loop(shared, peer, addr, max, timeout)
                })?);
            }
        }
        Ok(Runtime {
            shared,
            tcp_addr: local,
            started: now,
            vip_configured,
            threads: Mutex::new(threads),
        })
    }

    /// The address the cluster port is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.tcp_addr
    }

    /// Registers or changes one of this node's DuraVIPs (the host owns its
    /// bindings). Fails when the node runs without DuraVIP.
    pub fn set_claim(&self, claim: crate::core::duravip::Claim) -> Result<(), String> {
        self.vip_enabled()?;
        self.shared.send_command(EngineCommand::Claim(claim));
        Ok(())
    }

    /// Sends this node's DuraVIP table to every peer again and re-announces
    /// every owned address (`cluster duravip announce view`).
    pub fn announce_view(&self) -> Result<(), String> {
        self.vip_enabled()?;
        self.shared.send_command(EngineCommand::AnnounceView);
        Ok(())
    }

    /// Moves a DuraVIP to `node` (`cluster duravip move`); the answer says
    /// why the move cannot be done, if it cannot.
    pub fn move_vip(&self, ip: IpAddr, node: &str) -> Result<(), String> {
        self.vip_enabled()?;
        let (tx, rx) = mpsc::channel();
        self.shared
            .send_command(EngineCommand::Move(ip, node.to_string(), tx));
        rx.recv_timeout(Duration::from_secs(2))
            .map_err(|_| "the engine did not answer within 2 s".to_string())?
    }

    /// A peer's values of a replicated object, as this node holds them.
    pub fn shared_rows(&self, object: &str, node: &str) -> Result<Rows, String> {
        let (tx, rx) = mpsc::channel();
        self.shared.send_command(EngineCommand::SharedRows(
            object.to_string(),
            node.to_string(),
            tx,
        ));
        rx.recv_timeout(Duration::from_secs(2))
            .map_err(|_| "the engine did not answer within 2 s".to_string())?
            .ok_or_else(|| format!("this node does not replicate '{object}'"))
    }

    /// Turns DuraVIP debug logging on or off (`cluster duravip debug`).
    pub fn set_vip_debug(&self, on: bool) -> Result<(), String> {
        self.vip_enabled()?;
        self.shared.send_command(EngineCommand::VipDebug(on));
        Ok(())
    }

    /// Removes one of this node's DuraVIPs (released if owned).
    pub fn remove_claim(&self, ip: IpAddr) -> Result<(), String> {
        self.vip_enabled()?;
        self.shared.send_command(EngineCommand::Unclaim(ip));
        Ok(())
    }

    fn vip_enabled(&self) -> Result<(), String> {
        if self.vip_configured {
            Ok(())
        } else {
            Err("DuraVIP is not enabled on this node: configure a Topology (and duravip_dry_run without privileges)".into())
        }
    }

    /// The engine's clock: milliseconds since the runtime started.
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The latest membership table and counters.
    pub fn snapshot(&self) -> Snapshot {
        self.shared.snapshot.read().clone()
    }

    /// Rejoins with a new generation (`cluster reset`).
    pub fn reset(&self) -> io::Result<u64> {
        let generation = new_generation(self.shared.generation.load(Ordering::SeqCst));
        self.shared.send_command(EngineCommand::Reset(generation));
        Ok(generation)
    }

    /// Sends a console command to one peer over its TCP link and waits for
    /// the answer at most `timeout`.
    pub fn console_request(
        &self,
        node: &str,
        command: &str,
        timeout: Duration,
    ) -> Result<String, String> {
        let pending = self.send_console_request(node, command)?;
        wait_response(pending, timeout)
    }

    /// Sends a command to several peers at once and gathers the answers, each
    /// waited for at most `timeout` from now.
    pub fn console_request_many(
        &self,
        nodes: &[String],
        command: &str,
        timeout: Duration,
    ) -> Vec<(String, Result<String, String>)> {
        let sent: Vec<(String, Result<Receiver<ConsoleResponse>, String>)> = nodes
            .iter()
            .map(|n| (n.clone(), self.send_console_request(n, command)))
            .collect();
        let deadline = Instant::now() + timeout;
        sent.into_iter()
            .map(|(node, rx)| {
                let left = deadline.saturating_duration_since(Instant::now());
                (node, rx.and_then(|rx| wait_response(rx, left)))
            })
            .collect()
    }

    /// The link to `node`, waiting briefly for one to a live peer that is
    /// still connecting (right after it joined).
    fn link_to(&self, node: &str) -> Result<Arc<Link>, String> {
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            if let Some(link) = self.shared.links.lock().get(node).cloned() {
                return Ok(link);
            }
            if !self.shared.peer_alive(node) {
                return Err(format!("no connection to {node}: it is not up"));
            }
            if Instant::now() >= deadline {
                return Err(format!("no connection to {node}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn send_console_request(
        &self,
        node: &str,
        command: &str,
    ) -> Result<Receiver<ConsoleResponse>, String> {
        let link = self.link_to(node)?;
        let id = self.shared.next_request.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = mpsc::channel();
        self.shared.pending.lock().insert(id, tx);
        let request = Message::ConsoleRequest(ConsoleRequest {
            id,
            command: command.to_string(),
        });
        if let Err(e) = link.send(&self.shared, &request) {
            self.shared.pending.lock().remove(&id);
            return Err(format!("sending to {node} failed: {e}"));
        }
        Ok(rx)
    }

    /// Sends a pull of a journal to `node` (see `journal::server`) and
    /// waits at most `timeout` for its batch, or until `cancelled` says so.
    pub fn log_pull(
        &self,
        node: &str,
        pull: LogPull,
        timeout: Duration,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<LogBatch, String> {
        let link = self.link_to(node)?;
        let job = pull.job;
        let (tx, rx) = mpsc::channel();
        self.shared.log_pulls.lock().insert(job, tx);
        let result = match link.send(&self.shared, &Message::LogPull(pull)) {
            Err(e) => Err(format!("sending to {node} failed: {e}")),
            Ok(()) => {
                let deadline = Instant::now() + timeout;
                loop {
                    let left = deadline.saturating_duration_since(Instant::now());
                    match rx.recv_timeout(left.min(Duration::from_millis(100))) {
                        Ok(batch) => break Ok(batch),
                        Err(mpsc::RecvTimeoutError::Disconnected) => {
                            break Err(format!("the link to {node} closed"));
                        }
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                    }
                    if cancelled() {
                        break Err("cancelled".to_string());
                    }
                    if left.is_zero() {
                        break Err(format!(
                            "no answer from {node} within {} ms",
                            timeout.as_millis()
                        ));
                    }
                    if !self.is_current(node, &link) {
                        break Err(format!("the link to {node} closed"));
                    }
                }
            }
        };
        self.shared.log_pulls.lock().remove(&job);
        result
    }

    /// Sends a line just appended to the log `log` to every peer, on this
    /// node's `log_group` (nothing without one). Best effort: a peer whose
    /// link is down misses it, and a line beyond the wire's cap is cut.
    pub fn broadcast_log_line(&self, log: &str, time_us: u64, line: &[u8]) {
        let Some(group) = self.shared.log_group.group() else {
            return;
        };
        let line = &line[..line.len().min(MAX_LOG_GROUP_LINE)];
        self.shared.broadcast(&Message::LogGroupLine(LogGroupLine {
            group,
            log: log.to_string(),
            time_us,
            line: line.to_vec(),
        }));
    }

    /// Whether `link` is still `node`'s link.
    fn is_current(&self, node: &str, link: &Arc<Link>) -> bool {
        self.shared
            .links
            .lock()
            .get(node)
            .is_some_and(|l| Arc::ptr_eq(l, link))
    }

    /// Moves a message to `target` and waits until its host accepted it,
    /// retrying until `timeout` (see `io::mmove`); any thread may call it,
    /// many at once.
    pub fn move_message(
        &self,
        target: &str,
        request: &MoveRequest<'_>,
        timeout: Duration,
    ) -> Result<MoveReceipt, MoveError> {
        if target == self.shared.me_name {
            return Err(MoveError::Invalid(format!(
                "{target} is this node: a move goes to another node"
            )));
        }
        if self.shared.peer_named(target).is_none() {
            return Err(MoveError::UnknownNode(target.to_string()));
        }
        let id = match &request.id {
            Some(id) => id.clone(),
            None => {
                use chacha20poly1305::aead::Generate;
                let bytes = <[u8; 16]>::try_generate().map_err(|e| {
                    MoveError::Invalid(format!("cannot get random bytes for an id: {e}"))
                })?;
                MoveId::from_random(bytes)
            }
        };
        crate::io::mmove::send(
            self,
            &self.shared.move_acks,
            &self.shared.moves,
            target,
            id,
            request,
            timeout,
        )
    }

    /// `node`'s generation while it is alive in this node's view.
    pub fn alive_generation(&self, node: &str) -> Option<u64> {
        self.shared.alive_generation(node)
    }

    /// Stops every thread and closes the sockets; later calls do nothing.
    pub fn stop(&self) {
        if self.shared.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        self.shared.wake_engine();
        // The engine first: it releases this node's DuraVIPs and tells the
        // peers over the links, which must still be open.
        let engine = self.threads.lock().drain(..1).next();
        if let Some(engine) = engine {
            let _ = engine.join();
        }
        let _ = TcpStream::connect_timeout(&self.shared.wake, Duration::from_millis(200));
        for link in self.shared.links.lock().drain().map(|(_, l)| l) {
            let _ = link.writer.lock().shutdown(std::net::Shutdown::Both);
        }
        let threads: Vec<JoinHandle<()>> = self.threads.lock().drain(..).collect();
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Transport for Runtime {
    type Link = Arc<Link>;

    fn link(&self, node: &str) -> Result<Arc<Link>, String> {
        self.link_to(node)
    }

    fn send(&self, link: &Arc<Link>, message: &Message) -> Result<(), String> {
        link.send(&self.shared, message).map_err(|e| e.to_string())
    }

    fn is_current(&self, node: &str, link: &Arc<Link>) -> bool {
        Runtime::is_current(self, node, link)
    }

    fn stopping(&self) -> bool {
        self.shared.stopping.load(Ordering::SeqCst)
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name(name.into()).spawn(f)
}

fn wait_response(rx: Receiver<ConsoleResponse>, timeout: Duration) -> Result<String, String> {
    match rx.recv_timeout(timeout) {
        Ok(r) if r.ok => Ok(r.output),
        Ok(r) => Err(r.output),
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
    }
}

/// What the engine drives besides membership.
struct Duties {
    vip: Option<VipSetup>,
    replication: ReplicationDriver,
}

/// The engine thread; see the module docs.
fn engine(
    shared: Arc<Shared>,
    udp: UdpSocket,
    mut membership: Membership,
    start: Instant,
    commands: Receiver<EngineCommand>,
    hooks: Arc<RwLock<Vec<ViewHook>>>,
    duties: Duties,
) {
    let now_ms = || u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    let generation = shared.generation.load(Ordering::SeqCst);
    let Duties {
        vip,
        mut replication,
    } = duties;
    let mut members: Vec<String> = Vec::new();
    let mut vip = vip.map(|setup| {
        let (driver, tables) = VipDriver::start(
            setup,
            &shared.me_name,
            generation,
            now_ms(),
            Arc::clone(&shared.log),
        );
        send_tables(&shared, &driver, tables);
        driver
    });
    let mut had_quorum = None;
    let mut guards: HashMap<String, ReplayGuard> = HashMap::new();
    let mut late_timer_events = 0u64;
    let (mut heartbeats_sent, mut heartbeat_bytes) = (0u64, 0u64);
    let mut buf = vec![0u8; MAX_DATAGRAM + 512];
    while !shared.stopping.load(Ordering::SeqCst) {
        let deadline = vip
            .as_ref()
            .map_or(membership.next_deadline(), |v| {
                v.next_deadline().min(membership.next_deadline())
            })
            .min(replication.next_deadline(now_ms()).unwrap_or(u64::MAX));
        let wait = deadline.saturating_sub(now_ms()).clamp(1, 250);
        let _ = udp.set_read_timeout(Some(Duration::from_millis(wait)));
        let mut outputs = Vec::new();
        // DuraVIP tables go out at the end of the pass, after the hooks
        // have run: a node's "lost" hook runs before any peer can gain
        // the address it gave up.
        let mut outbox: Vec<DuraVipTable> = Vec::new();
        if let Ok((n, from)) = udp.recv_from(&mut buf)
            && n > 0
        {
            match accept_datagram(&shared, &mut guards, &buf[..n], from) {
                Ok(hb) => outputs.extend(membership.on_heartbeat(now_ms(), hb)),
                Err(why) => shared.reject(&why, from),
            }
        }
        while let Ok(command) = commands.try_recv() {
            match command {
                EngineCommand::Reset(generation) => {
                    shared.generation.store(generation, Ordering::SeqCst);
                    (shared.log)(&format!(
                        "cluster reset: rejoining with generation {generation:016x}"
                    ));
                    outputs.extend(membership.reset(now_ms(), generation));
                    // Peers drop the old generation's contributions when the
                    // new one speaks; give them all of it.
                    replication.set_generation(generation);
                    let peers: Vec<&String> =
                        members.iter().filter(|m| **m != shared.me_name).collect();
                    send_snapshots(&shared, &membership, &replication, &peers);
                }
                EngineCommand::Replica(from, update) => replication.on_update(&from, &update),
                EngineCommand::Cache(update) => replication.on_cache_update(&update),
                EngineCommand::SharedRows(object, node, reply) => {
                    let _ = reply.send(replication.values_of(&object, &node));
                }
                EngineCommand::LinkUp(peer) => {
                    send_snapshots(&shared, &membership, &replication, &[&peer]);
                }
                EngineCommand::Table(from, table) => {
                    if let Some(v) = &mut vip {
                        let tables = v.on_table(now_ms(), &from, table);
                        publish_tables(&shared, v, tables, &mut outbox);
                    }
                }
                EngineCommand::Claim(claim) => {
                    if let Some(v) = &mut vip {
                        let tables = v.set_claim(now_ms(), claim);
                        publish_tables(&shared, v, tables, &mut outbox);
                    }
                }
                EngineCommand::AnnounceView => {
                    if let Some(v) = &mut vip {
                        v.reannounce(now_ms());
                        let table = v.table();
                        *shared.latest_table.lock() = Some(table.clone());
                        shared.broadcast(&Message::DuraVipTable(table));
                    }
                }
                EngineCommand::Move(ip, node, reply) => {
                    let answer = match &mut vip {
                        Some(v) => v
                            .move_to(now_ms(), ip, &node)
                            .map(|tables| publish_tables(&shared, v, tables, &mut outbox))
                            .map_err(|e| e.to_string()),
                        None => Err("DuraVIP is not enabled on this node".to_string()),
                    };
                    let _ = reply.send(answer);
                }
                EngineCommand::PeerGone(name) => {
                    outputs.extend(membership.peer_gone(now_ms(), &name));
                }
                EngineCommand::VipDebug(on) => {
                    if let Some(v) = &mut vip {
                        v.set_debug(on);
                        (shared.log)(&format!(
                            "DuraVIP debugging {}",
                            if on { "on" } else { "off" }
                        ));
                    }
                }
                EngineCommand::Unclaim(ip) => {
                    if let Some(v) = &mut vip {
                        let tables = v.remove_claim(now_ms(), ip);
                        publish_tables(&shared, v, tables, &mut outbox);
                    }
                }
            }
        }
        outputs.extend(membership.tick(now_ms()));
        let mut view_changed = false;
        for output in outputs {
            match output {
                Output::Send { to, heartbeat } => {
                    if let Some(addr) = shared.peer_named(&to) {
                        let datagram = shared.seal(&Message::Heartbeat(heartbeat));
                        if udp.send_to(&datagram, addr).is_ok() {
                            heartbeats_sent += 1;
                            heartbeat_bytes += datagram.len() as u64;
                        }
                    }
                }
                Output::Event(event) => {
                    if matches!(event, Event::TimersLate { .. }) {
                        late_timer_events += 1;
                    }
                    if let Event::MemberSuspect { name } = &event {
                        probe_gone(&shared, name);
                    }
                    (shared.log)(&describe(&event));
                    if matches!(event, Event::ViewChanged { .. }) {
                        view_changed = true;
                        for hook in hooks.read().iter() {
                            hook(&event);
                        }
                    }
                }
            }
        }
        if view_changed {
            let now: Vec<String> = membership
                .view()
                .members
                .iter()
                .map(|m| m.name.clone())
                .collect();
            for gone in members.iter().filter(|m| !now.contains(m)) {
                replication.member_left(gone);
            }
            // A member back in the view (after a partition its link may have
            // survived) dropped this node's contributions when it left.
            let back: Vec<&String> = now
                .iter()
                .filter(|m| !members.contains(m) && **m != shared.me_name)
                .collect();
            send_snapshots(&shared, &membership, &replication, &back);
            // And this node dropped theirs, which they may not know.
            for peer in back {
                shared.send_to(peer, &Message::SnapshotRequest);
            }
            members = now;
        }
        let due = replication.tick(now_ms(), crate::shared::wall_ms(), members.len().max(1));
        for (audience, message) in due {
            match audience {
                Audience::All => shared.broadcast(&message),
                Audience::Managers => {
                    for peer in members.iter().filter(|m| is_manager(&membership, m)) {
                        shared.send_to(peer, &message);
                    }
                }
            }
        }
        if let Some(v) = &mut vip {
            let has_quorum = membership.quorum().has_quorum();
            let mut tables = Vec::new();
            if view_changed || had_quorum != Some(has_quorum) {
                let view = membership.view();
                let peers: Vec<IpAddr> = view
                    .members
                    .iter()
                    .filter_map(|m| shared.peer_named(&m.name))
                    .map(|a| a.ip())
                    .collect();
                tables.extend(v.set_view(now_ms(), view, has_quorum, &peers));
                had_quorum = Some(has_quorum);
            }
            tables.extend(v.tick(now_ms()));
            publish_tables(&shared, v, tables, &mut outbox);
        }
        let rejected = shared.rejects.lock().iter().collect();
        let links = shared.links.lock().keys().cloned().collect();
        let vip_state = vip.as_mut().and_then(|v| {
            if v.take_changed() {
                Some((Arc::new(v.state().clone()), v.plumbing()))
            } else {
                shared.snapshot.read().vip.clone()
            }
        });
        *shared.snapshot.write() = Snapshot {
            membership: membership.clone(),
            rejected,
            links,
            late_timer_events,
            heartbeats_sent,
            heartbeat_bytes,
            vip: vip_state,
        };
        if let Some(v) = &mut vip {
            v.run_hooks();
        }
        for table in outbox {
            shared.broadcast(&Message::DuraVipTable(table));
        }
    }
    // A planned stop releases before anyone else acquires, and says so
    // while the links are still up (`Runtime::stop` waits for this).
    if let Some(v) = &mut vip {
        let tables = v.release_all(now_ms());
        v.run_hooks();
        send_tables(&shared, v, tables);
    }
}

/// Sends DuraVIP tables to every peer and keeps the newest for new links.
fn is_manager(membership: &Membership, name: &str) -> bool {
    membership
        .member(name)
        .is_some_and(|m| m.info.node_type == NodeType::Manager)
}

/// Sends this node's whole contribution to `peers` (a link opened, they
/// are back in the view, or this node restarted its generation; a snapshot
/// copies every local value, so it is made once for all of them).
fn send_snapshots(
    shared: &Shared,
    membership: &Membership,
    replication: &ReplicationDriver,
    peers: &[&String],
) {
    if peers.is_empty() {
        return;
    }
    for (audience, message) in replication.snapshots() {
        for peer in peers {
            if audience == Audience::All || is_manager(membership, peer) {
                shared.send_to(peer, &message);
            }
        }
    }
}

/// Makes `tables` the latest for the console and queues them for the end
/// of the engine's pass.
fn publish_tables(
    shared: &Shared,
    driver: &VipDriver,
    tables: Vec<DuraVipTable>,
    outbox: &mut Vec<DuraVipTable>,
) {
    if !tables.is_empty() {
        *shared.latest_table.lock() = Some(driver.table());
        outbox.extend(tables);
    }
}

/// Publishes `tables` and sends them at once.
fn send_tables(shared: &Shared, driver: &VipDriver, tables: Vec<DuraVipTable>) {
    let mut outbox = Vec::new();
    publish_tables(shared, driver, tables, &mut outbox);
    for table in outbox {
        shared.broadcast(&Message::DuraVipTable(table));
    }
}

/// Opens a datagram: sealed by a configured peer, from that peer's address,
/// not a replay, and a heartbeat.
fn accept_datagram(
    shared: &Shared,
    guards: &mut HashMap<String, ReplayGuard>,
    bytes: &[u8],
    from: SocketAddr,
) -> Result<crate::core::wire::Heartbeat, Reject> {
    let env = shared.sealer.open(bytes)?;
    let expected = shared.peer_named(&env.sender).ok_or(Reject::UnknownPeer)?;
    if expected != from {
        return Err(Reject::UnknownPeer);
    }
    guards
        .entry(env.sender.clone())
        .or_default()
        .check_and_record(env.generation, env.seq)?;
    match decode_message(&env.body) {
        Ok(Message::Heartbeat(hb)) if hb.sender.name == env.sender => Ok(hb),
        Ok(_) => Err(Reject::Malformed("not a heartbeat".into())),
        Err(e) => Err(Reject::Malformed(e.to_string())),
    }
}

fn describe(event: &Event) -> String {
    match event {
        Event::ViewChanged { number, view } => {
            let names: Vec<&str> = view.members.iter().map(|m| m.name.as_str()).collect();
            format!("view {number} ({:016x}): {}", view.id, names.join(", "))
        }
        Event::MemberUp { name, generation } => {
            format!("{name} is up (generation {generation:016x})")
        }
        Event::MemberSuspect { name } => format!("{name} is suspect"),
        Event::MemberDown { name } => format!("{name} is down"),
        Event::MemberRestarted { name, .. } => format!("{name} restarted"),
        Event::TimersLate { late_by_ms } => {
            format!("our own timers ran {late_by_ms} ms late; giving every peer a fresh deadline")
        }
        Event::Refuted { by, incarnation } => {
            format!("{by} suspected us; refuted with incarnation {incarnation}")
        }
        Event::ConfigMismatch { node, options } => {
            format!(
                "configuration differs from {node}: {} (must be equal on every node)",
                options.join(", ")
            )
        }
        Event::DuplicateName { generation } => {
            format!("another node uses our name (generation {generation:016x}): check nodename")
        }
    }
}

fn write_frame(stream: &mut TcpStream, frame: &[u8]) -> io::Result<()> {
    let len = u32::try_from(frame.len()).map_err(|_| io::Error::other("frame too large"))?;
    let mut buf = Vec::with_capacity(frame.len() + 4);
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(frame);
    stream.write_all(&buf)
}

fn read_frame(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    // Sealing adds a header and a tag; anything far beyond a frame is an attack or a bug.
    if len > MAX_FRAME + 1024 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes"),
        ));
    }
    let mut buf = vec![0u8; len];
    stream.read_exact(&mut buf)?;
    Ok(buf)
}

/// Reads and checks one frame of a link: from `peer`, in sequence, decodable.
fn read_message(
    shared: &Shared,
    stream: &mut TcpStream,
    peer: Option<&str>,
) -> io::Result<(String, Message)> {
    let frame = read_frame(stream)?;
    let bad = |why: Reject| {
        let from = stream
            .peer_addr()
            .map_or("?".to_string(), |a| a.to_string());
        shared.reject(&why, from);
        io::Error::new(io::ErrorKind::InvalidData, why.to_string())
    };
    let env = shared.sealer.open(&frame).map_err(bad)?;
    if shared.peer_named(&env.sender).is_none() || peer.is_some_and(|p| p != env.sender) {
        return Err(bad(Reject::UnknownPeer));
    }
    {
        let mut high = shared.stream_high.lock();
        let newest = high.entry(env.sender.clone()).or_insert((0, 0));
        if (env.generation, env.seq) <= *newest {
            drop(high);
            return Err(bad(Reject::Replay));
        }
        *newest = (env.generation, env.seq);
    }
    let message = decode_message(&env.body).map_err(|e| bad(Reject::Malformed(e.to_string())))?;
    Ok((env.sender, message))
}

/// At most this many inbound connections may be between accept and a
/// checked `Hello` at once, so that a flood of idle connections cannot pile
/// up threads.
const MAX_HANDSHAKES: usize = 32;

fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    let handshakes = Arc::new(AtomicU64::new(0));
    for conn in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(mut stream) = conn else { continue };
        // Only configured peers' addresses may even start a handshake.
        let from = stream.peer_addr().ok();
        if !from.is_some_and(|f| shared.peers.iter().any(|(_, a)| a.ip() == f.ip())) {
            let who = from.map_or("?".to_string(), |f| f.to_string());
            shared.reject(&Reject::UnknownPeer, who);
            continue;
        }
        if handshakes.fetch_add(1, Ordering::SeqCst) >= MAX_HANDSHAKES as u64 {
            handshakes.fetch_sub(1, Ordering::SeqCst);
            continue;
        }
        let shared = Arc::clone(&shared);
        let handshakes = Arc::clone(&handshakes);
        let _ = spawn("ecc-link", move || {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let hello = read_message(&shared, &mut stream, None);
            handshakes.fetch_sub(1, Ordering::SeqCst);
            let Ok((peer, Message::Hello(hello))) = hello else {
                return;
            };
            let source_ok = stream
                .peer_addr()
                .ok()
                .zip(shared.peer_named(&peer))
                .is_some_and(|(from, configured)| from.ip() == configured.ip());
            if !source_ok || hello.cluster_group != shared.cluster_group || hello.name != peer {
                shared.reject(&Reject::UnknownPeer, &peer);
                return;
            }
            if write_frame(&mut stream, &shared.seal(&hello_from(&shared))).is_err() {
                return;
            }
            run_link(&shared, stream, peer);
        });
    }
}

fn hello_from(shared: &Shared) -> Message {
    Message::Hello(Hello {
        name: shared.me_name.clone(),
        generation: shared.generation.load(Ordering::SeqCst),
        cluster_group: shared.cluster_group.clone(),
    })
}

/// The shortest wait between two failed dials of one peer.
const MIN_REDIAL: Duration = Duration::from_millis(100);

/// How long the probe after a broken link waits. A refusal comes back in
/// one round trip; anything slower is a host that does not answer, which
/// the heartbeat timeout handles.
const GONE_PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// How often, and how far apart, a peer's port is probed before it counts
/// as listening (see `probe_gone`): 10 tries over a quarter of a second.
const GONE_PROBE_TRIES: u32 = 10;
const GONE_PROBE_PAUSE: Duration = Duration::from_millis(25);

fn dial_loop(
    shared: Arc<Shared>,
    peer: String,
    addr: SocketAddr,
    max: Duration,
    timeout: Duration,
) {
    let mut backoff = MIN_REDIAL;
    while !shared.stopping.load(Ordering::SeqCst) {
        match dial(&shared, &peer, addr, timeout) {
            Ok(stream) => {
                backoff = MIN_REDIAL;
                run_link(&shared, stream, peer.clone());
            }
            Err(_) => {
                // Back off. When the peer comes up meanwhile (alive after
                // silence, or alive with a new generation: restarted) it is
                // listening, so retry promptly. A peer that stays alive and
                // still refuses the link (another cluster_group, another
                // source address) only gets the normal backoff: retrying it
                // at once would spin, thousands of connections a second.
                let before = shared.alive_generation(&peer);
                let until = Instant::now() + backoff;
                let mut came_up = false;
                while Instant::now() < until && !shared.stopping.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(50));
                    let now = shared.alive_generation(&peer);
                    if now.is_some() && now != before {
                        came_up = true;
                        break;
                    }
                }
                backoff = if came_up {
                    MIN_REDIAL
                } else {
                    (backoff * 2).min(max)
                };
            }
        }
    }
}

fn dial(shared: &Shared, peer: &str, addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    let _ = stream.set_nodelay(true);
    write_frame(&mut stream, &shared.seal(&hello_from(shared)))?;
    match read_message(shared, &mut stream, Some(peer))? {
        (_, Message::Hello(h)) if h.cluster_group == shared.cluster_group => Ok(stream),
        _ => Err(io::Error::new(io::ErrorKind::InvalidData, "bad hello")),
    }
}

/// Serves an established link until it breaks: registers its writer, then
/// reads frames and answers console requests.
fn run_link(shared: &Arc<Shared>, mut stream: TcpStream, peer: String) {
    let Ok(writer) = stream.try_clone() else {
        return;
    };
    let link = Arc::new(Link {
        peer: peer.clone(),
        writer: Mutex::new(writer),
    });
    if let Some(old) = shared.links.lock().insert(peer.clone(), Arc::clone(&link)) {
        let _ = old.writer.lock().shutdown(std::net::Shutdown::Both);
    }
    (shared.log)(&format!("link to {peer} established"));
    // A new link may be a peer that restarted: give it our DuraVIP table.
    let table = shared.latest_table.lock().clone();
    if let Some(table) = table {
        let _ = link.send(shared, &Message::DuraVipTable(table));
    }
    shared.send_command(EngineCommand::LinkUp(peer.clone()));
    // Links are idle for long stretches; only a broken stream ends the loop.
    let _ = stream.set_read_timeout(None);
    let _ = stream.set_write_timeout(Some(LINK_WRITE_TIMEOUT));
    let weak: Weak<Link> = Arc::downgrade(&link);
    let mut moves = {
        let (answers, to) = (Arc::clone(shared), peer.clone());
        let reply = Arc::new(move |ack| answers.send_to(&to, &Message::MoveAck(ack)));
        shared.moves.link(&peer, reply, Arc::clone(&shared.log))
    };
    while !shared.stopping.load(Ordering::SeqCst) {
        let Ok((_, message)) = read_message(shared, &mut stream, Some(&peer)) else {
            break;
        };
        match message {
            Message::ConsoleRequest(req) => {
                let shared = Arc::clone(shared);
                let weak = weak.clone();
                let caller = Caller::Peer(peer.clone());
                // A slow command must not hold up the link's other traffic.
                let _ = spawn("ecc-console-req", move || {
                    let (ok, output) = match (shared.console)(&req.command, &caller) {
                        Ok(o) => (true, o),
                        Err(e) => (false, e),
                    };
                    let answer = Message::ConsoleResponse(ConsoleResponse {
                        id: req.id,
                        ok,
                        output,
                    });
                    if let Some(link) = weak.upgrade() {
                        let _ = link.send(&shared, &answer);
                    }
                });
            }
            Message::ConsoleResponse(resp) => {
                if let Some(tx) = shared.pending.lock().remove(&resp.id) {
                    let _ = tx.send(resp);
                }
            }
            Message::DuraVipTable(table) => {
                shared.send_command(EngineCommand::Table(peer.clone(), table))
            }
            Message::ReplicaUpdate(update) => {
                shared.send_command(EngineCommand::Replica(peer.clone(), update))
            }
            // Caches are not driven by the engine yet: their updates are dropped.
            Message::CacheUpdate(update) => shared.send_command(EngineCommand::Cache(update)),
            Message::SnapshotRequest => shared.send_command(EngineCommand::LinkUp(peer.clone())),
            Message::LogPull(pull) => {
                let shared = Arc::clone(shared);
                let weak = weak.clone();
                let peer = peer.clone();
                // The server waits out its pacing; the link reads on.
                let _ = spawn("ecc-log-serve", move || {
                    let batch = shared.log_server.serve(&peer, &pull, &shared.stopping);
                    if let Some(link) = weak.upgrade() {
                        let _ = link.send(&shared, &Message::LogBatch(batch));
                    }
                });
            }
            Message::LogBatch(batch) => {
                if let Some(tx) = shared.log_pulls.lock().get(&batch.job) {
                    let _ = tx.send(batch);
                }
            }
            Message::LogGroupLine(line) => shared.log_group.receive(&peer, line),
            Message::Hello(_) | Message::Heartbeat(_) => {}
            Message::MoveBegin(begin) => moves.begin(begin),
            Message::MoveChunk(chunk) => moves.chunk(chunk),
            Message::MoveAck(ack) => shared.move_acks.deliver(&peer, ack),
        }
    }
    let mut links = shared.links.lock();
    let current = links.get(&peer).is_some_and(|l| Arc::ptr_eq(l, &link));
    if current {
        links.remove(&peer);
    }
    drop(links);
    (shared.log)(&format!("link to {} closed", link.peer));
    // A link that ended by itself (not replaced by a newer one, not our
    // stop) may mean the peer's process died.
    if current {
        probe_gone(shared, &peer);
    }
}

/// Whether `peer`'s process is gone: if its cluster port refuses a
/// connection, its host is up and nothing listens, so it is down without
/// waiting for the heartbeat timeout (`Membership::peer_gone`). Asked when
/// its link breaks and when it becomes suspect; answers on the engine's
/// command queue, so the caller never waits.
fn probe_gone(shared: &Arc<Shared>, peer: &str) {
    let Some(addr) = shared.peer_named(peer) else {
        return;
    };
    if shared.stopping.load(Ordering::SeqCst) {
        return;
    }
    let shared = Arc::clone(shared);
    let peer = peer.to_string();
    let _ = spawn("ecc-probe", move || {
        // A dying process closes its links before its listening socket,
        // and until that closes the kernel still completes handshakes for
        // it; so a connection that succeeds proves little for a short
        // while: ask again a few times before concluding it lives.
        let refused = (0..GONE_PROBE_TRIES).any(|attempt| {
            if attempt > 0 {
                std::thread::sleep(GONE_PROBE_PAUSE);
            }
            !shared.stopping.load(Ordering::SeqCst)
                && TcpStream::connect_timeout(&addr, GONE_PROBE_TIMEOUT)
                    .is_err_and(|e| e.kind() == io::ErrorKind::ConnectionRefused)
        });
        if refused && !shared.stopping.load(Ordering::SeqCst) {
            (shared.log)(&format!(
                "{peer}'s cluster port {addr} refuses connections: its process is gone"
            ));
            shared.send_command(EngineCommand::PeerGone(peer));
        }
    });
}
