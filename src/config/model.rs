//! The typed configuration: every option of the reference cluster module under
//! its documented name, plus the few options eccluster adds (marked "ours").
//!
//! Values here are already validated; code that consumes the configuration
//! never re-checks ranges or formats.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// A whole configuration, as read from one file and what it includes.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub cluster: ClusterConfig,
    pub bus: BusConfig,
    /// `ECCluster_Listener { Listen "*:4802" {} }`: where this node's cluster
    /// port listens. eccluster runs all node-to-node traffic (UDP heartbeats
    /// and the per-peer TCP stream) on this one port.
    pub cluster_listener: ListenAddr,
    /// `Control_Listener { Listen "/tmp/2025" {} }`: the local console socket.
    pub control: ControlConfig,
    pub bindings: Vec<Binding>,
    pub listeners: Vec<Listener>,
    /// The manager's `Logs` scope (eccluster.conf); present only when configured.
    pub manager_logs: Option<ManagerLogs>,
    /// Ours: the Lua policy scripts and their limits (`policy { }`, plus the
    /// reference's `scriptlet "scriptlet" { script "NAME" { source } }`).
    pub policy: PolicyConfig,
}

/// Ours: the `policy { }` scope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyConfig {
    /// In load order: `policy { scripts }` first, then the `scriptlet` scripts.
    pub scripts: Vec<PolicyScript>,
    /// Lua VM instructions one call into a policy may run.
    pub instruction_budget: u32,
    /// Bytes one Lua state (one per host thread) may allocate.
    pub memory_limit: u64,
}

/// One policy script: its name (a `scriptlet` script's name, or the file's
/// stem) and where it is read from (relative paths from the working
/// directory, as every path option).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyScript {
    pub name: String,
    pub path: PathBuf,
}

/// The `cluster { }` scope.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterConfig {
    pub cluster_group: String,
    pub control_group: String,
    pub log_group: Option<String>,
    pub nodename: Option<String>,
    pub nodeaddr: Option<IpAddr>,
    pub subcluster: Option<String>,
    pub arp_all_hosts: bool,
    pub heartbeat_start_delay: u32,
    pub heartbeats_per_sec: f64,
    pub if_check_interval: u32,
    pub if_down_limit: u32,
    pub log_active_interval: u32,
    pub log_idle_interval: u32,
    /// The reference's summary table says 1 and its module page says "must be
    /// greater than 1"; we keep the default 1 and accept any value >= 1 (one IP
    /// per balance step is the most conservative, and a positive batch size is
    /// all the balancing algorithm needs).
    pub duravip_balance_set_size: u32,
    pub view_mature_time: u32,
    pub view_balance_interval: u32,
    pub view_broadcast_interval: u32,
    pub unconditional_rebind: bool,
    pub enabled: bool,
    pub debug_level: DebugLevel,
    pub tcp_buffer_size: u32,
    /// Published journals: log name to journal directory, in config order.
    pub logs: Vec<(String, PathBuf)>,
    pub replicate: Vec<Replicate>,
    pub topology: Vec<Topology>,
    /// Ours: the cluster key; without it traffic is unauthenticated.
    pub auth_key_file: Option<PathBuf>,
    /// Ours: allow running without a key on non-loopback addresses.
    pub insecure: bool,
    /// Ours: whether a minority partition may own DuraVIPs.
    pub quorum: QuorumMode,
    /// Ours: whether this node is an MTA node or a manager (the reference ran
    /// the manager as a separate `eccmgr` daemon; here it is a node type).
    pub node_type: crate::core::wire::NodeType,
    /// Ours: record what DuraVIP would plumb instead of plumbing (for
    /// unprivileged demos and tests).
    pub duravip_dry_run: bool,
    /// Ours: seconds between gratuitous ARP refreshes of owned DuraVIPs (0: off).
    pub arp_refresh_interval: u32,
    /// Ours: missed heartbeats before a peer is suspected.
    pub suspect_heartbeats: u32,
    /// Ours: missed heartbeats before a suspected peer is declared down.
    pub down_heartbeats: u32,
    /// Ours: where a receiver of message moves keeps the ids it accepted,
    /// so that a retry after a crash is answered `duplicate`; unset, they
    /// are kept in memory only.
    pub mmove_dir: Option<PathBuf>,
}

/// Ours: what a node does when it cannot see a majority of the configured peers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuorumMode {
    /// The reference behaviour: each side of a partition carries on, and may
    /// own the same DuraVIP until the partition heals.
    None,
    /// A side without a majority of the configured nodes owns no DuraVIP.
    Majority,
}

/// Momentum's `debug_level` words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum DebugLevel {
    Debug,
    Info,
    Notice,
    Warning,
    Error,
    Critical,
}

/// `Replicate "<name>" { }`.
#[derive(Clone, Debug, PartialEq)]
pub struct Replicate {
    pub name: String,
    pub kind: ReplicationType,
    pub parameters: Vec<Metric>,
    pub max_delay: f64,
    pub max_pending: u32,
    /// -1 means the largest supported size.
    pub max_size: i64,
    pub binding_group: Option<String>,
}

/// The replication types of the reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplicationType {
    InboundCidr,
    OutboundCidr,
    OutboundDomains,
    OutboundBindingDomains,
    SharedNamedThrottles,
    Obtm,
    Obtc,
    Metrics,
    EccmgrMetrics,
    Cache,
}

/// A `parameters` word of a `Replicate` scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    Snapshot,
    Connect,
    Delivery,
    Transfail,
    Permfail,
    Reception,
    Rejection,
    AuditSeries,
    GaugeCache,
}

/// `Topology "<cidr>" { interface cidrmask }`. An empty name matches every address.
#[derive(Clone, Debug, PartialEq)]
pub struct Topology {
    /// The block as written; `None` for the catch-all `Topology ""`.
    pub network: Option<(IpAddr, u8)>,
    pub interface: String,
    pub cidrmask: u8,
}

/// The message bus (`msgc_server`): who the peers are.
#[derive(Clone, Debug, PartialEq)]
pub struct BusConfig {
    /// Node name to address, in config order. A peer written without `:port`
    /// is reached on this node's cluster port.
    pub peers: Vec<Peer>,
    /// The reference bus port (4809). eccluster carries bus traffic on the
    /// cluster port, so this is read, checked and shown, not used.
    pub port: u16,
    /// `msgcserver_listener`: likewise read and shown, not used.
    pub listener: Option<ListenAddr>,
    pub connect_timeout: u32,
    pub idle_timeout: u32,
    pub keepalive_interval: u32,
    pub reconnect_interval: u32,
    pub max_backlog: u32,
}

/// One entry of `msgc_server { peers = [ name = "address[:port]" ] }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub name: String,
    pub addr: IpAddr,
    pub port: Option<u16>,
}

/// A `Listen "<address>"` of a TCP/UDP listener: `*:4802`, `:4809`,
/// `10.0.0.1:4802`, `[::1]:4802`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenAddr(pub SocketAddr);

/// The console socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlConfig {
    pub path: PathBuf,
    /// Ours: permissions of the socket file (default 0600).
    pub mode: u32,
}

/// A `Binding "<name>"` stanza (the MTA's sending address), as far as the
/// cluster is concerned.
#[derive(Clone, Debug, PartialEq)]
pub struct Binding {
    pub name: String,
    /// The enclosing `Binding_Group`, if any.
    pub group: Option<String>,
    pub bind_address: Option<IpAddr>,
    pub enable_duravip: bool,
    pub duravip_preference: Option<String>,
}

/// A `Listen "<address>"` inside `ESMTP_Listener`.
#[derive(Clone, Debug, PartialEq)]
pub struct Listener {
    pub address: ListenAddr,
    pub enable_duravip: bool,
    pub duravip_preference: Option<String>,
    /// A binding name or IP whose DuraVIP this listener follows.
    pub duravip_follow: Option<String>,
}

/// The manager's `Logs { }` scope.
#[derive(Clone, Debug, PartialEq)]
pub struct ManagerLogs {
    pub logfile: String,
    pub file_mode: u32,
    pub dir_mode: u32,
    /// Ours (the reference documents the option but not its default): 256.
    pub max_open: u32,
    /// Ours (likewise): 300 seconds.
    pub max_idle: u32,
    pub control_cache: Option<PathBuf>,
    pub managers: Vec<LogManager>,
}

/// `Manager "<name>" { Node "<node>" { Subscriber = ( ... ) } }`.
#[derive(Clone, Debug, PartialEq)]
pub struct LogManager {
    pub name: String,
    pub nodes: Vec<(String, Vec<String>)>,
}
