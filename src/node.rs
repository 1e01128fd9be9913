//! The safe Rust API: a [`Node`] is one cluster member inside the host
//! process. The C ABI (`ffi/`), the CLI and the Lua bindings all wrap it.
//!
//! A node is made from a [`Config`], takes hook registrations, and is then
//! started: start fixes its identity (node name, subcluster and address,
//! after the `cluster_nodename` and `cluster_subcluster` hooks) and runs the
//! engine's runtime — on this version, the console socket. Everything later
//! parts of the engine do is keyed by that identity, so it does not change
//! while the node runs; hooks can only be registered while it is stopped.
//!
//! `Node` is a cheap handle (`Arc` inside): clone it to share it between
//! threads. All methods take `&self` and are safe to call from any thread.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};

use crate::config::Config;
use crate::config::model::ReplicationType;
use crate::core::announce::AnnounceConfig;
use crate::core::console::reports::{self, ArpLine, ClusterStatus, InfoView, MemberView};
use crate::core::console::{Caller, Console, Mode};
use crate::core::duravip::{self, DuraVipConfig};
use crate::core::identity::{self, AddrSource, Origin};
use crate::core::membership::{Event, MembershipConfig, digest};
use crate::core::wire::{LogBatch, LogPull};
use crate::core::wire::{NodeType, PeerState, SelfInfo};
use crate::io::control::{ControlServer, Exec};
use crate::io::events::{self, EventHub, EventQueue};
use crate::io::host;
use crate::io::loggroup::LogGroup;
use crate::io::logwriter::{LogWriter, LogWriters, Tee};
use crate::io::mmove::{MoveHook, Moves};
use crate::io::neigh;
use crate::io::plumb::{DryRunPlumber, NetlinkPlumber, Plumber};
use crate::io::replication::{self, SharedObjects};
use crate::io::runtime::{ConsoleExec, Runtime, RuntimeConfig, ViewHook};
use crate::io::seal;
use crate::io::vip::{Maintenance, VipEvent, VipHook, VipSetup};
use crate::journal::Durability;
use crate::journal::aggregator::{self, Aggregator};
use crate::journal::server::LogServer;
use crate::policy::api::NodeRef;
use crate::policy::hooks::{ControlDef, Flow, Hook};
use crate::policy::published::Published;
use crate::policy::set_binding::{self, Decision, Message};
use crate::policy::{Bindings, Engine, Limits, PolicyHost, Script, adapters};
use crate::shared::cache::ClusterCache;
use crate::shared::cidr::CidrCounts;
use crate::shared::gauge::GaugeTable;
use crate::shared::metrics::Metrics;
use crate::shared::outbound::Outbound;
use crate::shared::throttle::ThrottleTable;
use crate::shared::{Scope, SharedObject};

pub use crate::core::logs::group::GroupLine;
pub use crate::core::mmove::{
    MoveEnvelope, MoveError, MoveId, MoveReceipt, MoveRequest, MoveVerdict, MovedMessage,
};

/// The library version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The key of the `logs` dictionary whose lines go out on the `log_group`.
const PANICLOG: &str = "paniclog";

/// An identity hook: given the value so far, returns a replacement or `None`
/// to leave it. Runs on the thread that calls [`Node::start`] (or a getter
/// before start).
pub type IdentityHook = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// A host's console command: given the words after its name, the answer
/// or an error (see [`Node::register_console_command`]).
pub type CommandHandler = Box<dyn Fn(&[String]) -> Result<String, String> + Send + Sync>;

/// Where a hook goes in the chain, as the reference's
/// `register_..._hook_first/last`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookOrder {
    First,
    Last,
}

/// The effective identity of a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub nodename: String,
    pub nodename_origin: Origin,
    pub subcluster: String,
    pub subcluster_origin: Origin,
    pub nodeaddr: IpAddr,
    pub nodeaddr_origin: Origin,
    /// The cluster port (from `ECCluster_Listener`).
    pub cluster_port: u16,
}

impl Identity {
    /// The cluster service address, as `cluster nodeaddr` prints it.
    pub fn service_addr(&self) -> SocketAddr {
        SocketAddr::new(self.nodeaddr, self.cluster_port)
    }
}

/// Why a node operation failed.
#[derive(Debug)]
pub enum NodeError {
    /// The identity could not be determined (no name, unusable address, a
    /// hook returned an invalid name). The node's state is unchanged.
    Identity(String),
    /// An operating-system resource could not be set up; the node stays stopped.
    Io {
        what: String,
        source: std::io::Error,
    },
    /// The call is not allowed in the node's current state; nothing changed.
    InvalidState(&'static str),
    /// The configuration cannot be run as it is (a missing or unsafe key
    /// file, no key on a non-loopback network); the node stays stopped.
    Config(String),
    /// An argument is out of range; nothing changed.
    InvalidArgument(String),
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeError::Identity(m) => write!(f, "identity: {m}"),
            NodeError::Io { what, source } => write!(f, "{what}: {source}"),
            NodeError::InvalidState(m) => f.write_str(m),
            NodeError::Config(m) | NodeError::InvalidArgument(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for NodeError {}

/// Hooks are shared (`Arc`) so a chain can be copied out of the lock and run
/// without holding it: a hook may then call back into its node.
type SharedHook = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// A set_binding hook (a C callback or Rust code): chooses the message's
/// binding, or leaves it, and says whether the hooks after it run. Runs
/// on the thread that calls [`Node::set_binding`].
pub type SetBindingHook = Box<dyn Fn(&mut Message) -> Flow + Send + Sync>;
type SharedSetBindingHook = Arc<dyn Fn(&mut Message) -> Flow + Send + Sync>;

#[derive(Default)]
struct Hooks {
    nodename: Vec<SharedHook>,
    subcluster: Vec<SharedHook>,
}

struct Running {
    identity: Identity,
    control: ControlServer,
    runtime: Arc<Runtime>,
    /// On a manager with a `Logs` scope: pulls the nodes' journals.
    aggregator: Option<Aggregator>,
}

/// The aggregator's view of the cluster, through this node's runtime.
struct RuntimeCluster {
    runtime: Arc<Runtime>,
}

impl aggregator::Cluster for RuntimeCluster {
    fn mta_nodes(&self) -> Vec<(String, String)> {
        // Every node ever seen, down or not: a node that goes down keeps
        // its streams, which show it.
        self.runtime
            .snapshot()
            .membership
            .members()
            .filter(|p| p.info.node_type == NodeType::Momentum)
            .map(|p| (p.info.name.clone(), p.info.subcluster.clone()))
            .collect()
    }

    fn alive_generation(&self, node: &str) -> Option<u64> {
        self.runtime.alive_generation(node)
    }

    fn pull(
        &self,
        node: &str,
        pull: LogPull,
        timeout: Duration,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<LogBatch, String> {
        self.runtime.log_pull(node, pull, timeout, cancelled)
    }
}

/// A view change, as membership hooks see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViewChange {
    /// Counts view changes on this node.
    pub number: u64,
    /// The view's id (a hash of its members and their generations).
    pub id: u64,
    /// Member names, sorted.
    pub members: Vec<String>,
}

/// A member of the cluster as this node sees it ([`Node::members`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberStatus {
    pub name: String,
    pub subcluster: String,
    pub node_type: NodeType,
    /// How this node sees it (itself: always alive).
    pub state: PeerState,
    /// Whether it is in this node's current view.
    pub in_view: bool,
}

/// One DuraVIP as this node sees it ([`Node::duravips`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DuraVipStatus {
    pub address: IpAddr,
    /// The binding and listener names using it, sorted.
    pub names: Vec<String>,
    /// The node that owns it, if any.
    pub owner: Option<String>,
    /// This node owns it.
    pub owned: bool,
    /// This node owns it and has it on an interface now (one maintenance
    /// found missing is not, until it is plumbed again).
    pub plumbed: bool,
}

/// Each node's answer to one console command (`broadcast`, `retrieve`).
type Answers = Vec<(String, Result<String, String>)>;

/// How long a manager waits for each node's answer to a console request.
pub const CONTROL_TIMEOUT: Duration = Duration::from_secs(3);
/// How many distinct commands' answers a manager keeps for `retrieve`.
const RESPONSE_CACHE: usize = 64;

struct Inner {
    config: Config,
    hooks: RwLock<Hooks>,
    view_hooks: HookChain<ViewHook>,
    vip_hooks: HookChain<VipHook>,
    /// The replicated objects, shared with the hot path; they outlive a
    /// stop and start, so handles taken before the start stay good.
    shared_objects: SharedObjects,
    /// The outbound objects among them, for the connection limits.
    outbound: Outbound,
    /// The journals this process appends to.
    log_writers: LogWriters,
    /// The lines received on the `log_group`, and their hooks.
    log_group: Arc<LogGroup>,
    /// The event queues of hosts with their own event loop.
    events: Arc<EventHub>,
    /// The DuraVIPs this node has on its interfaces, as the DuraVIP driver's
    /// ownership reports say (what `duravips()` calls plumbed).
    plumbed: Arc<RwLock<BTreeSet<IpAddr>>>,
    /// Message moves: the host's hook, the id store, the counts.
    moves: Arc<Moves>,
    /// The running runtime, for the paniclog's writer to broadcast on: a
    /// cell of its own, so that an append never waits for a start or stop
    /// to finish.
    log_outlet: Arc<RwLock<Weak<Runtime>>>,
    /// A manager's answers to its last broadcasts: command, then node to answer.
    responses: Mutex<Vec<(String, Answers)>>,
    running: Mutex<Option<Running>>,
    /// Commands are looked up under the read lock and run without it, so
    /// that one may (re)define commands: a policy script loading.
    console: RwLock<Console<Inner>>,
    /// The built-in commands, which scripts and hosts may not replace.
    builtin_commands: Vec<String>,
    /// The policy scripts, with a Lua state per thread that calls in.
    policy: Engine,
    /// Why the configured policy scripts did not load: the node does not
    /// start until a reload succeeds.
    policy_error: Mutex<Option<String>>,
    /// The binding table set_binding reads, following DuraVIP ownership.
    bindings: Arc<Bindings>,
    /// set_binding's C and Rust hooks, read without a lock by every call.
    set_binding_hooks: Published<Vec<SharedSetBindingHook>>,
}

/// One cluster node; see the module docs.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("running", &self.is_running())
            .finish_non_exhaustive()
    }
}

impl Node {
    /// A stopped node with the built-in console commands and the
    /// configured policy scripts. Scripts that fail to load are reported by
    /// [`Node::start`] (and `policy show`); the node then has none.
    pub fn new(config: Config) -> Node {
        let shared_objects =
            replication::shared_objects(&config.cluster.replicate, &cache_origin(&config));
        let mut console = Console::default();
        register_builtin_commands(&mut console, config.cluster.node_type == NodeType::Manager);
        let builtin_commands = console.names().collect();
        let events = Arc::new(EventHub::default());
        let plumbed = Arc::default();
        let log_group = Arc::new(LogGroup::new(config.cluster.log_group.clone()));
        let (view_hooks, vip_hooks) = internal_hooks(&events, &log_group);
        let inner = Arc::new_cyclic(|weak: &Weak<Inner>| Inner {
            hooks: RwLock::default(),
            view_hooks,
            vip_hooks,
            outbound: outbound_of(&config, &shared_objects),
            log_writers: LogWriters::default(),
            log_group,
            events,
            plumbed,
            moves: Arc::new(Moves::new(
                config.cluster.mmove_dir.clone(),
                config.cluster.unconditional_rebind,
            )),
            log_outlet: Arc::default(),
            shared_objects,
            responses: Mutex::new(Vec::new()),
            running: Mutex::new(None),
            console: RwLock::new(console),
            builtin_commands,
            policy: Engine::new(
                Limits::from_config(&config.policy),
                Arc::new(NodePolicy {
                    inner: weak.clone(),
                }),
            ),
            policy_error: Mutex::new(None),
            bindings: Arc::new(Bindings::from_config(&config)),
            set_binding_hooks: Published::new(Vec::new()),
            config,
        });
        let node = Node { inner };
        node.install_policy_hooks();
        if let Err(e) = node.policy_reload() {
            *node.inner.policy_error.lock() = Some(e);
        }
        node
    }

    /// The node's own hooks that run the scripts' functions (see
    /// [`crate::policy::adapters`]); registered last at creation, so a host
    /// hook registered first runs before the scripts' and one registered
    /// last after them.
    fn install_policy_hooks(&self) {
        let engine = &self.inner.policy;
        for (hook, register) in [
            (
                Hook::ClusterNodename,
                Node::register_nodename_hook as fn(&Node, _, _) -> _,
            ),
            (Hook::ClusterSubcluster, Node::register_subcluster_hook),
        ] {
            if let Err(e) = register(
                self,
                HookOrder::Last,
                adapters::identity(engine.clone(), hook),
            ) {
                unreachable!("a new node is stopped, so identity hooks register: {e}");
            }
        }
        self.register_membership_hook(adapters::membership(engine.clone()));
        self.register_duravip_hook(adapters::duravip(engine.clone()));
    }

    /// Loads a policy script from `source`, replacing the script of that
    /// name or adding it last (errors call it `NAME.lua`). The new set is
    /// tried in a fresh Lua state first: on an error (with the script and
    /// line) nothing changes. Each thread picks the new scripts up on its
    /// next call.
    pub fn policy_load(&self, name: &str, source: &str) -> Result<(), String> {
        self.inner.policy.load_script(name, source)
    }

    /// Reads the configured policy scripts again and loads them all, as
    /// [`Node::policy_load`] does one.
    pub fn policy_reload(&self) -> Result<(), String> {
        self.inner.policy_reload()
    }

    /// Why the configured policy scripts did not load, until a reload
    /// succeeds; the node does not start meanwhile.
    pub fn policy_error(&self) -> Option<String> {
        self.inner.policy_error.lock().clone()
    }

    /// What `policy show` reports.
    pub fn policy_status(&self) -> reports::PolicyStatus {
        self.inner.policy.status()
    }

    /// The binding table now: every binding, its group and address, and
    /// whether messages leave from it here or move to its owner.
    pub fn bindings(&self) -> Arc<crate::policy::BindingTable> {
        self.inner.bindings.current()
    }

    /// Adds a set_binding hook, first or last among the C and Rust hooks
    /// (which all run before the scripts'). May be registered at any time.
    pub fn register_set_binding_hook(&self, order: HookOrder, hook: SetBindingHook) {
        let hook: SharedSetBindingHook = Arc::from(hook);
        self.inner.set_binding_hooks.update(|hooks| {
            let mut chain = hooks.clone();
            match order {
                HookOrder::First => chain.insert(0, hook),
                HookOrder::Last => chain.push(hook),
            }
            chain
        });
    }

    /// Chooses the binding `msg` leaves from (the reference's
    /// `validate_set_binding`): the C and Rust hooks run, then the scripts'
    /// `set_binding` hooks, until one says it is done; the decision comes
    /// from the binding the message has then (see
    /// [`crate::policy::set_binding`]). Runs the hooks on this thread; any
    /// thread may call it.
    pub fn set_binding(&self, msg: &mut Message) -> Decision {
        self.set_binding_then(msg, |_| {})
    }

    /// [`Node::set_binding`], with `last` run after the scripts' hooks
    /// unless one of the hooks said it is done: the hooks of a Lua host
    /// (the `require "eccluster"` module's `set_binding` hooks), which
    /// live in the host's state, not in the node.
    pub fn set_binding_then(&self, msg: &mut Message, last: impl FnOnce(&mut Message)) -> Decision {
        let inner = &*self.inner;
        msg.begin(inner.bindings.current());
        let hooks = inner.set_binding_hooks.get();
        let mut flow = hooks
            .iter()
            .map(|hook| hook(msg))
            .find(|flow| *flow == Flow::Done)
            .unwrap_or(Flow::Continue);
        if flow == Flow::Continue {
            flow = set_binding::run_lua_hooks(&inner.policy, msg);
        }
        if flow == Flow::Continue {
            last(msg);
        }
        msg.finish()
    }

    /// A replicated gauge table configured by a `Replicate` scope
    /// (`outbound_domains`, `outbound_binding_domains`): MTA threads count
    /// on it directly, and read this node's or the cluster's counts. `None`
    /// when the configuration does not replicate `name`.
    pub fn shared_gauge(&self, name: &str) -> Option<Arc<GaugeTable>> {
        match self.inner.shared_objects.get(name)? {
            SharedObject::Gauge(g) => Some(Arc::clone(g)),
            _ => None,
        }
    }

    /// A replicated CIDR tree configured by a `Replicate` scope
    /// (`inbound_cidr`, `outbound_cidr`): MTA threads count connections by
    /// address on it directly, and count any prefix, here or cluster-wide.
    /// `None` when the configuration does not replicate `name` as one.
    pub fn shared_cidr(&self, name: &str) -> Option<Arc<CidrCounts>> {
        match self.inner.shared_objects.get(name)? {
            SharedObject::Cidr(c) => Some(Arc::clone(c)),
            _ => None,
        }
    }

    /// The cluster-wide throttles of a `Replicate` scope of type
    /// `shared_named_throttles`, `OBTM` or `OBTC`: define a throttle once
    /// by name and limit ("N" or "N/S"), then check and consume it from any
    /// thread.
    pub fn shared_throttles(&self, name: &str) -> Option<Arc<ThrottleTable>> {
        match self.inner.shared_objects.get(name)? {
            SharedObject::Throttles(t) => Some(Arc::clone(t)),
            _ => None,
        }
    }

    /// The audit series and gauge caches of a `Replicate "metrics"` (or
    /// `"eccmgr_metrics"`) scope.
    pub fn shared_metrics(&self, name: &str) -> Option<Arc<Metrics>> {
        match self.inner.shared_objects.get(name)? {
            SharedObject::Metrics(m) => Some(Arc::clone(m)),
            _ => None,
        }
    }

    /// The replicated key/value cache of a `type = "cache"` scope.
    pub fn shared_cache(&self, name: &str) -> Option<Arc<ClusterCache>> {
        match self.inner.shared_objects.get(name)? {
            SharedObject::Cache(c) => Some(Arc::clone(c)),
            _ => None,
        }
    }

    /// The outbound connection counts and limits
    /// (`cluster_max_outbound_connections` and friends) over this node's
    /// `outbound_domains`, `outbound_binding_domains` and `outbound_cidr`
    /// objects; see [`crate::shared::outbound`].
    pub fn outbound(&self) -> &Outbound {
        &self.inner.outbound
    }

    /// The journal a logger writes to, by its destination
    /// (`cluster:///var/log/ecelerity/mainlog.cluster=>master`, `jlog://`,
    /// `?subscribers=a,b`): created with its subscribers if need be, shared
    /// by every destination naming the same directory. Appends return once
    /// durable under `durability` (the first open of a journal decides it).
    /// A torn record a crash left is cut, and said on standard error.
    ///
    /// With a `log_group`, every line appended to the journal the `logs`
    /// dictionary publishes as `paniclog` is also sent to the peers while
    /// the node runs (see [`Node::register_log_group_hook`]); the append
    /// never fails because of that.
    pub fn open_log(
        &self,
        destination: &str,
        durability: Durability,
    ) -> Result<Arc<LogWriter>, String> {
        let opened = self
            .inner
            .log_writers
            .open_with_tee(destination, durability, |dir| self.inner.paniclog_tee(dir))?;
        if let Some(torn) = opened.torn {
            eprintln!(
                "eccluster: journal {}: {torn}",
                opened.writer.dir().display()
            );
        }
        Ok(opened.writer)
    }

    /// A replicated object by name, whatever its kind.
    pub fn shared_object(&self, name: &str) -> Option<SharedObject> {
        self.inner.shared_objects.get(name).cloned()
    }

    /// The configuration the node was made with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Adds a `cluster_nodename` hook. Only while stopped.
    pub fn register_nodename_hook(
        &self,
        order: HookOrder,
        hook: IdentityHook,
    ) -> Result<(), NodeError> {
        self.register_hook(order, hook, |h| &mut h.nodename)
    }

    /// Adds a `cluster_subcluster` hook. Only while stopped.
    pub fn register_subcluster_hook(
        &self,
        order: HookOrder,
        hook: IdentityHook,
    ) -> Result<(), NodeError> {
        self.register_hook(order, hook, |h| &mut h.subcluster)
    }

    fn register_hook(
        &self,
        order: HookOrder,
        hook: IdentityHook,
        chain: impl FnOnce(&mut Hooks) -> &mut Vec<SharedHook>,
    ) -> Result<(), NodeError> {
        let running = self.inner.running.lock();
        if running.is_some() {
            return Err(NodeError::InvalidState(
                "identity hooks must be registered before the node starts",
            ));
        }
        let mut hooks = self.inner.hooks.write();
        let chain = chain(&mut hooks);
        let hook: SharedHook = Arc::from(hook);
        match order {
            HookOrder::First => chain.insert(0, hook),
            HookOrder::Last => chain.push(hook),
        }
        Ok(())
    }

    /// The effective identity: fixed while running, otherwise worked out now
    /// (running the hooks on this thread).
    pub fn identity(&self) -> Result<Identity, NodeError> {
        self.inner.identity()
    }

    /// Whether `other` is a handle to this same node.
    pub fn same_as(&self, other: &Node) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    pub fn is_running(&self) -> bool {
        self.inner.running.lock().is_some()
    }

    /// Fixes the identity and starts the runtime (the console socket).
    /// Refused while the configured policy scripts have not loaded (see
    /// [`Node::policy_reload`]).
    pub fn start(&self) -> Result<(), NodeError> {
        const ALREADY: NodeError = NodeError::InvalidState("the node is already running");
        if self.is_running() {
            return Err(ALREADY);
        }
        if let Some(e) = self.inner.policy_error.lock().clone() {
            return Err(NodeError::Config(format!("policy: {e}")));
        }
        // Outside the lock: the hooks run here and may call back into this node.
        let identity = self.inner.resolve_identity()?;
        let mut running = self.inner.running.lock();
        if running.is_some() {
            return Err(ALREADY);
        }
        let control_cfg = &self.inner.config.control;
        let weak = Arc::downgrade(&self.inner);
        let exec_as = move |line: &str, caller: &Caller| match weak.upgrade() {
            Some(inner) => inner.exec(line, caller),
            None => Err("the node is gone".into()),
        };
        let exec: Exec = {
            let exec_as = exec_as.clone();
            Arc::new(move |line: &str| exec_as(line, &Caller::Local))
        };
        // A previous run released its addresses as it stopped.
        self.inner.plumbed.write().clear();
        self.inner
            .moves
            .start(&identity.nodename)
            .map_err(|e| NodeError::Config(format!("mmove_dir: {e}")))?;
        let runtime = self.inner.start_runtime(&identity, Arc::new(exec_as))?;
        let mut identity = identity;
        identity.cluster_port = runtime.local_addr().port();
        let control =
            ControlServer::start(&control_cfg.path, control_cfg.mode, exec).map_err(|source| {
                runtime.stop();
                NodeError::Io {
                    what: format!("console socket {}", control_cfg.path.display()),
                    source,
                }
            })?;
        let runtime = Arc::new(runtime);
        let aggregator = match self.inner.start_aggregator(&identity, &runtime) {
            Ok(a) => a,
            Err(e) => {
                control.stop();
                runtime.stop();
                return Err(NodeError::Config(e));
            }
        };
        *self.inner.log_outlet.write() = Arc::downgrade(&runtime);
        *running = Some(Running {
            identity,
            control,
            runtime,
            aggregator,
        });
        Ok(())
    }

    /// Registers (or changes) a DuraVIP at run time: the host MTA owns its
    /// bindings and listeners. `names` are the binding names on the address;
    /// `services` says what uses it. Only while running, with DuraVIP enabled.
    pub fn register_duravip(&self, claim: duravip::Claim) -> Result<(), NodeError> {
        let (runtime, _) = self
            .inner
            .runtime()
            .map_err(|_| NodeError::InvalidState("the node is not running"))?;
        runtime.set_claim(claim).map_err(NodeError::Config)
    }

    /// Removes a DuraVIP registered at run time (or from the configuration).
    pub fn remove_duravip(&self, ip: IpAddr) -> Result<(), NodeError> {
        let (runtime, _) = self
            .inner
            .runtime()
            .map_err(|_| NodeError::InvalidState("the node is not running"))?;
        runtime.remove_claim(ip).map_err(NodeError::Config)
    }

    /// Adds a DuraVIP hook: it runs on the engine thread when this node gains
    /// or loses an address, so the host can start or stop a listener or a
    /// binding. May be registered at any time.
    pub fn register_duravip_hook(&self, hook: Box<dyn Fn(&VipEvent) + Send + Sync>) {
        self.inner.vip_hooks.write().push(Arc::from(hook));
    }

    /// Adds a log group hook: it runs for every paniclog line a peer
    /// broadcast on this node's `log_group` (none without one), on the
    /// thread reading that peer's cluster link, so lines from one peer come
    /// in order and lines from different peers may come concurrently. Keep
    /// it short: that link waits for it. May be registered at any time.
    pub fn register_log_group_hook(&self, hook: Box<dyn Fn(&GroupLine) + Send + Sync>) {
        self.inner.log_group.add_hook(Arc::from(hook));
    }

    /// Moves a message to node `target` (the reference's `#mmove`): sends
    /// it over the cluster link and returns once the target's host accepted
    /// it (or had it already: a retry that got through before), retrying
    /// with backoff while the link is down, the target restarts or defers,
    /// or no answer comes, until `timeout`. A rejection by the target's
    /// host returns at once. Blocks the calling thread; any number of
    /// threads may move at once. A move that fails may still have reached
    /// the target: moving it again under the same id is safe.
    pub fn move_message(
        &self,
        target: &str,
        request: &MoveRequest<'_>,
        timeout: Duration,
    ) -> Result<MoveReceipt, MoveError> {
        let (runtime, _) = self.inner.runtime().map_err(|_| MoveError::NotRunning)?;
        runtime.move_message(target, request, timeout)
    }

    /// Sets the move hook, which receives every message moved to this node
    /// and answers accept, reject or defer (see [`MovedMessage`] for what
    /// it gets). It runs on a thread of its own per message, so several
    /// may run at once and the cluster link keeps carrying other traffic
    /// meanwhile. Accepting means the host has the message durably. A
    /// later registration replaces the hook; without one, moves to this
    /// node are deferred. May be registered at any time.
    pub fn register_move_hook(
        &self,
        hook: Box<dyn Fn(&MovedMessage) -> MoveVerdict + Send + Sync>,
    ) {
        let hook: MoveHook = Arc::from(hook);
        self.inner.moves.set_hook(hook);
    }

    /// Adds a membership hook: it runs on the engine thread after every view
    /// change. May be registered at any time.
    pub fn register_membership_hook(&self, hook: Box<dyn Fn(&ViewChange) + Send + Sync>) {
        let adapter: ViewHook = Arc::new(move |event: &Event| {
            if let Event::ViewChanged { number, view } = event {
                hook(&ViewChange {
                    number: *number,
                    id: view.id,
                    members: view.members.iter().map(|m| m.name.clone()).collect(),
                });
            }
        });
        self.inner.view_hooks.write().push(adapter);
    }

    /// Stops the runtime; stopping a stopped node does nothing.
    pub fn stop(&self) {
        let running = self.inner.running.lock().take();
        *self.inner.log_outlet.write() = Weak::new();
        if let Some(r) = running {
            r.stop();
        }
        self.inner.moves.stop();
        // It owns no DuraVIP now, nor hears who does.
        self.inner.bindings.reset();
    }

    /// A handle that does not keep the node alive: what a Lua state's
    /// functions hold (see [`PolicyHost::install`]).
    pub fn downgrade(&self) -> WeakNode {
        WeakNode(Arc::downgrade(&self.inner))
    }

    /// The console socket path while running.
    pub fn console_path(&self) -> Option<PathBuf> {
        self.inner
            .running
            .lock()
            .as_ref()
            .map(|r| r.control.path().to_path_buf())
    }

    /// Runs one console command, as if typed at the console.
    pub fn console_exec(&self, line: &str) -> Result<String, String> {
        self.inner.exec(line, &Caller::Local)
    }

    /// Adds a console command of the host's (or replaces one the host or
    /// a script added): `words` name it (`"mta send"`), `usage` and
    /// `help` are what `help` shows, and `handler` gets the words after
    /// the name and returns the answer or an error. It runs on the
    /// thread of whoever runs the command (the console socket's, a
    /// peer's link for `broadcast`, or the caller of `console_exec`).
    /// A built-in command cannot be replaced.
    pub fn register_console_command(
        &self,
        words: &str,
        usage: &str,
        help: &str,
        handler: CommandHandler,
    ) -> Result<(), NodeError> {
        self.inner
            .may_define_command(words)
            .map_err(NodeError::InvalidArgument)?;
        self.inner
            .console
            .write()
            .register(words, usage, help, move |_: &Inner, args, _, _| {
                handler(args)
            })
            .map_err(NodeError::InvalidArgument)
    }

    /// Adds a console command answered by the host's event loop (the
    /// `require "eccluster"` module's `register_control`): running it
    /// queues an [`events::Event::Console`] on the node's event queues and
    /// waits, at most `timeout`, for the host that claims it to answer.
    /// Without a queue, or without an answer in time, the command fails
    /// saying so. Refuses a built-in command's words; may be added at any
    /// time, and replaces an earlier command of the same words.
    pub fn register_queued_command(
        &self,
        def: &ControlDef,
        timeout: Duration,
    ) -> Result<(), String> {
        let inner = &*self.inner;
        inner.may_define_command(&def.words)?;
        let words = def.words.clone();
        inner.console.write().register(
            &def.words,
            &def.usage,
            &def.help,
            move |inner: &Inner, args, _, _| {
                let (request, answer) = events::ConsoleRequest::new(&words, args);
                if inner
                    .events
                    .publish(|| events::Event::Console(request.clone()))
                    == 0
                {
                    return Err(format!(
                        "'{words}' is answered by the host's event loop, and no event queue listens"
                    ));
                }
                answer.recv_timeout(timeout).unwrap_or_else(|_| {
                    request.withdraw();
                    Err(format!(
                        "the host's event loop did not answer '{words}' within {} s: \
                         it must dispatch its event queue",
                        timeout.as_secs_f64()
                    ))
                })
            },
        )
    }

    /// A new event queue (see [`crate::io::events`]) that hears every
    /// membership change, DuraVIP gained or lost and log group line from
    /// now on, holding at most `capacity` events (0: 1024). May be made at
    /// any time; events come while the node runs. Dropping the queue
    /// unsubscribes it.
    pub fn events(&self, capacity: usize) -> Result<Arc<EventQueue>, NodeError> {
        events::capacity_for(capacity).map_err(NodeError::InvalidArgument)?;
        let queue = EventQueue::new(capacity).map_err(|source| NodeError::Io {
            what: "event queue".into(),
            source,
        })?;
        let queue = Arc::new(queue);
        self.inner.events.subscribe(&queue);
        Ok(queue)
    }

    /// This node and every peer it has heard from (down ones included),
    /// sorted by name. Only while running.
    pub fn members(&self) -> Result<Vec<MemberStatus>, NodeError> {
        let (runtime, id) = self.running_runtime()?;
        let snapshot = runtime.snapshot();
        let m = &snapshot.membership;
        let in_view = |name: &str| m.view().members.iter().any(|v| v.name == name);
        let me = m.me();
        let mut members: Vec<MemberStatus> = std::iter::once(MemberStatus {
            name: id.nodename.clone(),
            subcluster: id.subcluster.clone(),
            node_type: me.node_type,
            state: PeerState::Alive,
            in_view: in_view(&id.nodename),
        })
        .chain(m.members().map(|p| MemberStatus {
            name: p.info.name.clone(),
            subcluster: p.info.subcluster.clone(),
            node_type: p.info.node_type,
            state: p.state,
            in_view: in_view(&p.info.name),
        }))
        .collect();
        members.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(members)
    }

    /// The leader of the current view (the console's `cluster info`
    /// names it too). Only while running.
    pub fn leader(&self) -> Result<String, NodeError> {
        let (runtime, _) = self.running_runtime()?;
        Ok(runtime.snapshot().membership.leader().to_string())
    }

    /// Every DuraVIP any member claims, with its owner, by address; empty
    /// when the node runs no DuraVIP. Only while running.
    pub fn duravips(&self) -> Result<Vec<DuraVipStatus>, NodeError> {
        let (runtime, id) = self.running_runtime()?;
        let Some((dv, _)) = runtime.snapshot().vip else {
            return Ok(Vec::new());
        };
        let plumbed = self.inner.plumbed.read();
        Ok(dv
            .states(runtime.now_ms())
            .into_iter()
            .map(|s| DuraVipStatus {
                address: s.ip,
                owned: s.owner.as_deref() == Some(id.nodename.as_str()),
                plumbed: plumbed.contains(&s.ip),
                names: s.names,
                owner: s.owner,
            })
            .collect())
    }

    fn running_runtime(&self) -> Result<(Arc<Runtime>, Identity), NodeError> {
        self.inner
            .runtime()
            .map_err(|_| NodeError::InvalidState("the node is not running"))
    }
}

/// A chain of engine hooks, shared with the runtime.
type HookChain<H> = Arc<RwLock<Vec<H>>>;

/// The node's own hooks, registered before any of the host's: they feed
/// the event queues.
fn internal_hooks(
    hub: &Arc<EventHub>,
    log_group: &LogGroup,
) -> (HookChain<ViewHook>, HookChain<VipHook>) {
    let view: ViewHook = {
        let hub = Arc::clone(hub);
        Arc::new(move |event: &Event| {
            if let Event::ViewChanged { number, view } = event {
                hub.publish(|| events::Event::Membership {
                    view_number: *number,
                    view_id: view.id,
                    members: view.members.iter().map(|m| m.name.clone()).collect(),
                });
            }
        })
    };
    let vip: VipHook = {
        let hub = Arc::clone(hub);
        Arc::new(move |event: &VipEvent| {
            hub.publish(|| match event {
                VipEvent::Gained(c) => events::Event::DuraVipGained(c.clone()),
                VipEvent::Lost(c) => events::Event::DuraVipLost(c.clone()),
            });
        })
    };
    let hub = Arc::clone(hub);
    log_group.add_hook(Arc::new(move |line: &GroupLine| {
        hub.publish(|| events::Event::LogLine(line.clone()));
    }));
    (
        Arc::new(RwLock::new(vec![view])),
        Arc::new(RwLock::new(vec![vip])),
    )
}

/// A [`Node`] that may be gone (see [`Node::downgrade`]).
#[derive(Clone, Debug)]
pub struct WeakNode(Weak<Inner>);

impl WeakNode {
    pub fn upgrade(&self) -> Option<Node> {
        self.0.upgrade().map(|inner| Node { inner })
    }
}

/// The node as its policy engine's host.
struct NodePolicy {
    inner: Weak<Inner>,
}

impl PolicyHost for NodePolicy {
    fn install(&self, lua: &mlua::Lua, ecc: &mlua::Table, msys: &mlua::Table) -> mlua::Result<()> {
        // Weak: a state lives as long as its thread, the engine's own
        // included, and must not keep the node alive.
        let node = NodeRef::Weak(WeakNode(self.inner.clone()));
        crate::policy::api::install(lua, ecc, node.clone())?;
        for pair in
            crate::policy::msys::install_msys(lua, node)?.pairs::<mlua::Value, mlua::Value>()
        {
            let (name, namespace) = pair?;
            msys.set(name, namespace)?;
        }
        Ok(())
    }

    fn may_define_control(&self, words: &str) -> Result<(), String> {
        match self.inner.upgrade() {
            Some(inner) => inner.may_define_command(words),
            None => Ok(()),
        }
    }

    fn register_control(&self, def: &ControlDef) {
        let Some(inner) = self.inner.upgrade() else {
            return;
        };
        let words = def.words.clone();
        let registered = inner.console.write().register(
            &def.words,
            &def.usage,
            &def.help,
            move |inner: &Inner, args, _, _| inner.policy.call_control(&words, args),
        );
        if let Err(e) = registered {
            eprintln!("eccluster: policy command '{}': {e}", def.words);
        }
    }

    fn unregister_control(&self, words: &str) {
        if let Some(inner) = self.inner.upgrade() {
            inner.console.write().unregister(words);
        }
    }

    fn log(&self, line: &str) {
        eprintln!("eccluster: {line}");
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(r) = self.running.get_mut().take() {
            r.stop();
        }
    }
}

impl Running {
    /// The aggregator first: it finishes the batch it is writing while the
    /// links are still up.
    fn stop(self) {
        if let Some(a) = &self.aggregator {
            a.stop();
        }
        self.control.stop();
        self.runtime.stop();
    }
}

impl Inner {
    /// The tee of the journal in `dir` when it is the published paniclog
    /// and the node has a `log_group`: it sends each line on the running
    /// runtime, if any.
    fn paniclog_tee(&self, dir: &Path) -> Option<Tee> {
        self.config.cluster.log_group.as_ref()?;
        self.config
            .cluster
            .logs
            .iter()
            .find(|(name, published)| name == PANICLOG && same_dir(published, dir))?;
        let outlet = Arc::clone(&self.log_outlet);
        Some(Arc::new(move |line: &[u8], at: Duration| {
            // Out of the cell first: the send may wait on a slow peer.
            let runtime = outlet.read().upgrade();
            if let Some(runtime) = runtime {
                let time_us = u64::try_from(at.as_micros()).unwrap_or(u64::MAX);
                runtime.broadcast_log_line(PANICLOG, time_us, line);
            }
        }))
    }

    /// On a manager whose configuration has a `Logs` scope, starts pulling
    /// the nodes' journals.
    fn start_aggregator(
        &self,
        identity: &Identity,
        runtime: &Arc<Runtime>,
    ) -> Result<Option<Aggregator>, String> {
        let cluster = &self.config.cluster;
        let Some(scope) = &self.config.manager_logs else {
            return Ok(None);
        };
        if cluster.node_type != NodeType::Manager {
            return Ok(None);
        }
        let settings = aggregator::Settings {
            me: identity.nodename.clone(),
            logs: cluster.logs.iter().map(|(name, _)| name.clone()).collect(),
            scope: scope.clone(),
            idle_interval: log_interval(cluster.log_idle_interval),
            active_interval: log_interval(cluster.log_active_interval),
        };
        let cluster = Arc::new(RuntimeCluster {
            runtime: Arc::clone(runtime),
        });
        Aggregator::start(settings, cluster).map(Some)
    }

    /// The running aggregator, for the console.
    fn with_aggregator<T>(&self, f: impl FnOnce(&Aggregator) -> T) -> Result<T, String> {
        let running = self.running.lock();
        let running = running.as_ref().ok_or("the node is not running")?;
        let aggregator = running.aggregator.as_ref().ok_or(
            "no aggregator runs here: it runs on a manager node whose configuration has a Logs scope",
        )?;
        Ok(f(aggregator))
    }

    /// Loads the key, checks the no-key rule, and starts the cluster runtime.
    fn start_runtime(
        &self,
        identity: &Identity,
        console: ConsoleExec,
    ) -> Result<Runtime, NodeError> {
        let config = &self.config;
        let cluster = &config.cluster;
        let bind = config.cluster_listener.0;
        let port = bind.port();
        let peers: Vec<(String, SocketAddr)> = config
            .bus
            .peers
            .iter()
            .filter(|p| p.name != identity.nodename)
            .map(|p| {
                (
                    p.name.clone(),
                    SocketAddr::new(p.addr, p.port.unwrap_or(port)),
                )
            })
            .collect();
        let key = match &cluster.auth_key_file {
            Some(path) => Some(seal::load_key_file(path).map_err(NodeError::Config)?),
            None => {
                let loopback =
                    bind.ip().is_loopback() && peers.iter().all(|(_, a)| a.ip().is_loopback());
                if !loopback && !cluster.insecure {
                    return Err(NodeError::Config(
                        "no cluster key: set cluster { auth_key_file = ... } (create one with `eccluster keygen FILE`), \
                         or run only on loopback, or set insecure = true to run unauthenticated on this network"
                            .into(),
                    ));
                }
                eprintln!(
                    "eccluster[{}]: WARNING: no cluster key; traffic is not authenticated ({})",
                    identity.nodename,
                    if loopback {
                        "loopback only"
                    } else {
                        "insecure = true"
                    }
                );
                None
            }
        };
        let generation = crate::io::runtime::new_generation(0);
        let me = SelfInfo {
            name: identity.nodename.clone(),
            generation,
            incarnation: 0,
            node_type: cluster.node_type,
            subcluster: identity.subcluster.clone(),
            pid: std::process::id(),
            version: VERSION.to_string(),
            port,
            config_digest: digest::config_digest(config),
        };
        let name = identity.nodename.clone();
        let log = Arc::new(move |line: &str| eprintln!("eccluster[{name}]: {line}"));
        let rc = RuntimeConfig {
            me,
            membership: MembershipConfig::from_config(config),
            bind,
            peers,
            cluster_group: cluster.cluster_group.clone(),
            key,
            reconnect_max: Duration::from_secs(u64::from(config.bus.reconnect_interval)),
            connect_timeout: Duration::from_secs(u64::from(
                config.bus.connect_timeout.clamp(1, 60),
            )),
            log,
            console,
            view_hooks: Arc::clone(&self.view_hooks),
            vip: self.vip_setup()?,
            shared_objects: self.shared_objects.clone(),
            replicate: config.cluster.replicate.clone(),
            log_server: Arc::new(LogServer::new(
                cluster.logs.clone(),
                log_interval(cluster.log_active_interval),
                log_interval(cluster.log_idle_interval),
            )),
            log_group: Arc::clone(&self.log_group),
            moves: Arc::clone(&self.moves),
        };
        Runtime::start(rc).map_err(|source| NodeError::Io {
            what: format!("cluster port {bind}"),
            source,
        })
    }

    /// DuraVIP for this node, when its configuration claims any address.
    fn vip_setup(&self) -> Result<Option<VipSetup>, NodeError> {
        let config = &self.config;
        let cluster = &config.cluster;
        let claims = duravip::claims_from_config(config);
        // DuraVIP runs when the configuration claims an address, or names a
        // Topology so that the host can register its DuraVIPs at run time.
        if claims.is_empty() && cluster.topology.is_empty() {
            return Ok(None);
        }
        let (plumber, announce): (Box<dyn Plumber>, Option<AnnounceConfig>) = if cluster
            .duravip_dry_run
        {
            (Box::new(DryRunPlumber::new()), None)
        } else {
            let plumber = NetlinkPlumber::new().map_err(|source| NodeError::Io {
                what: "netlink for DuraVIP plumbing (needs CAP_NET_ADMIN; duravip_dry_run = true runs without)".into(),
                source,
            })?;
            let announce = AnnounceConfig {
                refresh_interval_ms: u64::from(cluster.arp_refresh_interval) * 1000,
                ..AnnounceConfig::default()
            };
            (Box::new(plumber), Some(announce))
        };
        Ok(Some(VipSetup {
            cfg: DuraVipConfig {
                view_mature_ms: u64::from(cluster.view_mature_time) * 1000,
                balance_interval_ms: u64::from(cluster.view_balance_interval) * 1000,
                balance_set_size: cluster.duravip_balance_set_size as usize,
                quorum: cluster.quorum,
            },
            claims,
            followers: duravip::followers_from_config(config),
            topology: cluster.topology.clone(),
            plumber,
            announce,
            targeted_arp: !cluster.arp_all_hosts,
            maintenance: Maintenance {
                check_interval_ms: u64::from(cluster.if_check_interval) * 1000,
                down_limit_ms: u64::from(cluster.if_down_limit) * 1000,
                broadcast_interval_ms: u64::from(cluster.view_broadcast_interval) * 1000,
            },
            hooks: Arc::clone(&self.vip_hooks),
            ownership: Some({
                let bindings = Arc::clone(&self.bindings);
                let plumbed = Arc::clone(&self.plumbed);
                Arc::new(move |ownership: &crate::io::vip::Ownership| {
                    bindings.set_ownership(ownership);
                    *plumbed.write() = ownership
                        .addresses
                        .iter()
                        .filter(|a| a.plumbed_here)
                        .map(|a| a.ip)
                        .collect();
                })
            }),
        }))
    }

    /// The running runtime, cloned out of the lock so that slow commands do not hold it.
    fn runtime(&self) -> Result<(Arc<Runtime>, Identity), String> {
        self.running
            .lock()
            .as_ref()
            .map(|r| (Arc::clone(&r.runtime), r.identity.clone()))
            .ok_or_else(|| "the node is not running".to_string())
    }

    /// Refuses a script's command that would replace a built-in one.
    fn may_define_command(&self, words: &str) -> Result<(), String> {
        if self.builtin_commands.iter().any(|b| b == words) {
            return Err(format!(
                "'{words}' is a built-in console command and cannot be replaced"
            ));
        }
        Ok(())
    }

    fn exec(&self, line: &str, caller: &Caller) -> Result<String, String> {
        let prepared = self.console.read().prepare(line)?;
        prepared.run(self, caller)
    }

    /// Reads the configured scripts and loads them (see
    /// [`Node::policy_reload`]); success clears an earlier failure.
    fn policy_reload(&self) -> Result<(), String> {
        let mut scripts = Vec::new();
        for s in &self.config.policy.scripts {
            let source = std::fs::read_to_string(&s.path)
                .map_err(|e| format!("{}: cannot read: {e}", s.path.display()))?;
            scripts.push(Script {
                name: s.name.clone(),
                source,
            });
        }
        self.policy.set_scripts(scripts)?;
        *self.policy_error.lock() = None;
        Ok(())
    }

    fn identity(&self) -> Result<Identity, NodeError> {
        let fixed = self.running.lock().as_ref().map(|r| r.identity.clone());
        match fixed {
            Some(identity) => Ok(identity),
            None => self.resolve_identity(),
        }
    }

    fn resolve_identity(&self) -> Result<Identity, NodeError> {
        let cluster = &self.config.cluster;
        let (name, name_origin) = identity::choose_nodename(
            cluster.nodename.as_deref(),
            host::env(host::ENV_NODE_NAME).as_deref(),
            host::hostname().as_deref(),
        )
        .map_err(NodeError::Identity)?;
        let (sub, sub_origin) = identity::choose_subcluster(
            cluster.subcluster.as_deref(),
            host::env(host::ENV_SUB_CLUSTER).as_deref(),
        );
        let (nodename_hooks, subcluster_hooks) = {
            let hooks = self.hooks.read();
            (hooks.nodename.clone(), hooks.subcluster.clone())
        };
        let (nodename, nodename_origin) = run_hooks(&nodename_hooks, name, name_origin);
        let (subcluster, subcluster_origin) = run_hooks(&subcluster_hooks, sub, sub_origin);
        for (what, value) in [("node name", &nodename), ("subcluster", &subcluster)] {
            if value.is_empty() || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(NodeError::Identity(format!(
                    "the {what} {value:?} is empty or contains spaces"
                )));
            }
        }
        let peers = &self.config.bus.peers;
        let source = identity::nodeaddr_source(cluster.nodeaddr, &nodename, peers);
        let resolved = match source {
            AddrSource::Resolve => host::resolve(&nodename),
            AddrSource::Known(..) => Vec::new(),
        };
        let (nodeaddr, nodeaddr_origin) =
            identity::choose_nodeaddr(source, &resolved, &nodename, peers)
                .map_err(NodeError::Identity)?;
        Ok(Identity {
            nodename,
            nodename_origin,
            subcluster,
            subcluster_origin,
            nodeaddr,
            nodeaddr_origin,
            cluster_port: self.config.cluster_listener.0.port(),
        })
    }
}

fn run_hooks(chain: &[SharedHook], mut value: String, mut origin: Origin) -> (String, Origin) {
    for hook in chain {
        if let Some(v) = hook(&value) {
            value = v;
            origin = Origin::Hook;
        }
    }
    (value, origin)
}

fn identity_or_err(inner: &Inner) -> Result<Identity, String> {
    inner.identity().map_err(|e| e.to_string())
}

/// A built-in console command: words, usage, help, handler.
type Builtin = (
    &'static str,
    &'static str,
    &'static str,
    fn(&Inner, &[String], Mode, &Caller) -> Result<String, String>,
);

fn register_builtin_commands(console: &mut Console<Inner>, manager: bool) {
    let node_commands: [Builtin; 20] = [
        (
            "cluster show mmove",
            "",
            "Count message moves per peer: sent, accepted, duplicates, rejected, deferred, retries and failed out; received, accepted, duplicates, rejected and deferred in; in flight both ways.",
            |inner, _, mode, _| Ok(reports::mmove(&inner.moves.counts(), mode)),
        ),
        (
            "cluster mmove send",
            "<node> <file> [<mail from> [<recipient> ...]]",
            "Move the message in <file> (read by this node) to <node>, and wait until its host accepted it (at most 30 s).",
            mmove_send,
        ),
        (
            "policy show",
            "",
            "Show the policy scripts, the reload epoch, Lua states, calls, errors and the last error.",
            |inner, _, mode, _| Ok(reports::policy_show(&inner.policy.status(), mode)),
        ),
        (
            "policy reload",
            "",
            "Read the configured policy scripts again; if one fails, the running ones stay and the error is shown.",
            |inner, _, mode, _| {
                inner.policy_reload()?;
                let text = format!("policy reloaded: epoch {}", inner.policy.status().epoch);
                Ok(reports::value("policy", &text, mode))
            },
        ),
        (
            "cluster show logs",
            "",
            "List the published journals: size on disk and each subscriber's checkpoint.",
            |inner, _, mode, _| {
                let logs: Vec<reports::LogBlock> = inner
                    .config
                    .cluster
                    .logs
                    .iter()
                    .map(|(name, dir)| journal_block(name, dir))
                    .collect();
                Ok(reports::show_logs(&logs, mode))
            },
        ),
        (
            "cluster show log_group",
            "",
            "List the last paniclog lines peers broadcast on this node's log_group: time, node, log, line.",
            |inner, _, mode, _| {
                let group = inner.log_group.group();
                Ok(reports::log_group(
                    group.as_deref(),
                    &inner.log_group.lines(),
                    mode,
                ))
            },
        ),
        (
            "cluster shared list",
            "",
            "List the replicated objects this node manages.",
            |inner, _, mode, _| {
                let objects: Vec<(String, &str)> = inner
                    .shared_objects
                    .iter()
                    .map(|(name, object)| (name.clone(), object.kind()))
                    .collect();
                Ok(reports::shared_list(&objects, mode))
            },
        ),
        (
            "cluster shared show",
            "<object> [from <node>]",
            "Show a replicated object: the cluster-wide view, or one node's contribution.",
            shared_show,
        ),
        (
            "cluster duravip move",
            "<ip> to <node>",
            "Move a DuraVIP to a node; run it on every node at once with `broadcast` on a manager.",
            duravip_move,
        ),
        (
            "cluster arp show",
            "",
            "Show the MAC address the kernel holds for each cluster peer, and its age.",
            |inner, _, mode, _| {
                let id = identity_or_err(inner)?;
                let peers: Vec<IpAddr> = inner
                    .config
                    .bus
                    .peers
                    .iter()
                    .filter(|p| p.name != id.nodename)
                    .map(|p| p.addr)
                    .collect();
                let found = neigh::lookup(&peers)
                    .map_err(|e| format!("cannot read the neighbour table: {e}"))?;
                let lines: Vec<ArpLine> = found
                    .into_iter()
                    .map(|n| ArpLine {
                        ip: n.ip,
                        mac: n.mac.as_ref().map(neigh::format_mac),
                        age_s: n.age_s,
                    })
                    .collect();
                Ok(reports::arp_show(&lines, mode))
            },
        ),
        (
            "cluster duravip debug",
            "on|off",
            "Log every DuraVIP table sent and received and every maintenance check.",
            |inner, args, mode, _| {
                let on = match args {
                    [a] if a.eq_ignore_ascii_case("on") => true,
                    [a] if a.eq_ignore_ascii_case("off") => false,
                    _ => return Err("usage: cluster duravip debug on|off".into()),
                };
                let (runtime, id) = inner.runtime()?;
                runtime.set_vip_debug(on)?;
                let text = format!(
                    "DuraVIP debugging {} on {}",
                    if on { "on" } else { "off" },
                    id.nodename
                );
                Ok(reports::value("debug", &text, mode))
            },
        ),
        (
            "cluster duravip announce view",
            "",
            "Send this node's DuraVIP table to every peer again and re-announce its addresses (run it with broadcast after a config reload).",
            |inner, _, mode, _| {
                let (runtime, id) = inner.runtime()?;
                runtime.announce_view()?;
                Ok(reports::value(
                    "announce",
                    &format!("{} announced its DuraVIP view", id.nodename),
                    mode,
                ))
            },
        ),
        (
            "cluster duravip show",
            "",
            "Show every DuraVIP: its names, flags and services, and its candidates with the owner marked *.",
            |inner, _, mode, _| duravip_show(inner, mode),
        ),
        (
            "cluster duravip show tables",
            "",
            "Show the DuraVIP state tables in XML (the schema is in the README).",
            |inner, _, _, _| duravip_show(inner, Mode::Xml),
        ),
        (
            "cluster nodename",
            "",
            "Show the name of the local node.",
            |inner, _, mode, _| {
                Ok(reports::value(
                    "nodename",
                    &identity_or_err(inner)?.nodename,
                    mode,
                ))
            },
        ),
        (
            "cluster nodeaddr",
            "",
            "Show the cluster protocol service address.",
            |inner, _, mode, _| {
                Ok(reports::nodeaddr(
                    identity_or_err(inner)?.service_addr(),
                    mode,
                ))
            },
        ),
        (
            "cluster info",
            "",
            "Display the current operating status and parameters.",
            cluster_info,
        ),
        (
            "cluster membership",
            "",
            "Display every node in the view: private name, node name, subcluster, type, version, address, groups.",
            cluster_membership,
        ),
        (
            "cluster reset",
            "",
            "Rejoin the cluster as a new member (a new generation); peers see a restart.",
            |inner, _, mode, _| {
                let (runtime, id) = inner.runtime()?;
                let generation = runtime.reset().map_err(|e| e.to_string())?;
                let text = format!(
                    "{} rejoining with generation {generation:016x}",
                    id.nodename
                );
                Ok(reports::value("reset", &text, mode))
            },
        ),
        (
            "version",
            "",
            "Show the eccluster version.",
            |_, _, mode, _| Ok(reports::version(VERSION, mode)),
        ),
    ];
    let manager_commands: [Builtin; 9] = [
        (
            "cluster show aggregator",
            "",
            "Show what the log aggregator pulls: per node and log, its checkpoint, lines written, job and file.",
            |inner, _, mode, _| {
                inner.with_aggregator(|a| reports::show_aggregator(a.logfile(), &a.streams(), mode))
            },
        ),
        (
            "cluster jobs",
            "",
            "List the running log pulls (jobs) and their ids.",
            |inner, _, mode, _| inner.with_aggregator(|a| reports::jobs(&a.jobs(), mode)),
        ),
        (
            "cluster abort",
            "<id>",
            "Abort a job: nothing is lost, and the log's next job starts after a pause.",
            |inner, args, _, _| {
                let [id] = args else {
                    return Err("usage: cluster abort <id>".into());
                };
                let id: u64 = id
                    .parse()
                    .map_err(|_| format!("'{id}' is not a job id (see `cluster jobs`)"))?;
                inner.with_aggregator(|a| a.abort(id))??;
                Ok(format!("Job {id} aborted.\n"))
            },
        ),
        (
            "broadcast",
            "<command>",
            "Run a console command on every MTA node and show each answer.",
            |inner, args, mode, _| gather(inner, None, &join_args(args)?, mode),
        ),
        (
            "unicast",
            "<node> <command>",
            "Run a console command on one node and show its answer.",
            |inner, args, mode, _| {
                let (node, command) = node_and_command(args)?;
                let (runtime, _) = inner.runtime()?;
                let answer = runtime.console_request(node, &command, CONTROL_TIMEOUT);
                let answers = vec![(node.to_string(), answer)];
                inner.remember(&command, &answers);
                Ok(reports::gathered(&answers, mode))
            },
        ),
        (
            "retrieve",
            "<command>",
            "Show the answers to the last broadcast of a command.",
            |inner, args, mode, _| {
                Ok(reports::gathered(
                    &inner.recall(&join_args(args)?, |_| true)?,
                    mode,
                ))
            },
        ),
        (
            "retrieve_node",
            "<node> <command>",
            "Show one node's answer to the last broadcast of a command.",
            |inner, args, mode, _| {
                let (node, command) = node_and_command(args)?;
                Ok(reports::gathered(
                    &inner.recall(&command, |n| n == node)?,
                    mode,
                ))
            },
        ),
        (
            "subcluster broadcast",
            "<subcluster> <command>",
            "Run a console command on every MTA node of a subcluster.",
            |inner, args, mode, _| {
                let (sc, command) = node_and_command(args)?;
                gather(inner, Some(sc), &command, mode)
            },
        ),
        (
            "subcluster retrieve",
            "<subcluster> <command>",
            "Show a subcluster's answers to the last broadcast of a command.",
            |inner, args, mode, _| {
                let (sc, command) = node_and_command(args)?;
                let members = inner.mta_nodes(Some(sc))?;
                Ok(reports::gathered(
                    &inner.recall(&command, |n| members.iter().any(|m| m == n))?,
                    mode,
                ))
            },
        ),
    ];
    let manager_commands: &[Builtin] = if manager { &manager_commands } else { &[] };
    for (words, usage, help, handler) in node_commands.iter().chain(manager_commands) {
        if let Err(e) = console.register(words, usage, help, *handler) {
            unreachable!("built-in command {words:?} is valid: {e}");
        }
    }
}

/// How long `cluster mmove send` tries.
const MMOVE_SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// `cluster mmove send NODE FILE [FROM [RCPT...]]`: a move from the
/// console, for demos and checks, in the binding group and binding
/// `default`. Only from this node's own console: the file is read here.
fn mmove_send(
    inner: &Inner,
    args: &[String],
    mode: Mode,
    caller: &Caller,
) -> Result<String, String> {
    const USAGE: &str = "usage: cluster mmove send <node> <file> [<mail from> [<recipient> ...]]";
    let [node, file, envelope @ ..] = args else {
        return Err(USAGE.into());
    };
    if *caller != Caller::Local {
        return Err(
            "cluster mmove send reads a file on this node: run it on this node's own console"
                .into(),
        );
    }
    let body = std::fs::read(file).map_err(|e| format!("{file}: {e}"))?;
    let (mail_from, recipients) = match envelope {
        [] => (String::new(), Vec::new()),
        [from, rcpts @ ..] => (from.clone(), rcpts.to_vec()),
    };
    let request = MoveRequest {
        id: None,
        envelope: MoveEnvelope {
            mail_from,
            recipients,
            binding: "default".into(),
            binding_group: "default".into(),
            headers: Vec::new(),
        },
        body: &body,
    };
    let (runtime, _) = inner.runtime()?;
    let receipt = runtime
        .move_message(node, &request, MMOVE_SEND_TIMEOUT)
        .map_err(|e| e.to_string())?;
    let text = format!(
        "moved {} to {node}{} after {} attempt{}",
        receipt.id,
        if receipt.duplicate {
            " (it had it already)"
        } else {
            ""
        },
        receipt.attempts,
        if receipt.attempts == 1 { "" } else { "s" }
    );
    Ok(reports::value("mmove", &text, mode))
}

fn duravip_show(inner: &Inner, mode: Mode) -> Result<String, String> {
    let (runtime, _) = inner.runtime()?;
    let snapshot = runtime.snapshot();
    let Some((dv, plumbing)) = snapshot.vip else {
        return Err(
            "this node has no DuraVIP: no Binding or Listen has Enable_Duravip = true".into(),
        );
    };
    // The engine's clock started with the runtime; the snapshot is recent enough.
    let now = runtime.now_ms();
    let mut out = reports::duravip_show(&dv.states(now), mode);
    if mode == Mode::Text && plumbing != "netlink" {
        out.push_str(&format!("(plumbing: {plumbing})\n"));
    }
    Ok(out)
}

/// `cluster duravip move IP to NODE`. Every node must act on it at about
/// the same time (the owner releases towards NODE, NODE acquires, the others
/// agree), so it runs only when a manager sends it, as the reference
/// requires (`broadcast cluster duravip move ...` from `eccmgr`).
fn duravip_move(
    inner: &Inner,
    args: &[String],
    mode: Mode,
    caller: &Caller,
) -> Result<String, String> {
    const USAGE: &str = "usage: cluster duravip move <ip> to <node>";
    let (ip, node) = match args {
        [ip, to, node] if to.eq_ignore_ascii_case("to") => (ip, node),
        _ => return Err(USAGE.into()),
    };
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| format!("{ip:?} is not an IP address; {USAGE}"))?;
    if *caller == Caller::Local {
        return Err(format!(
            "cluster duravip move must reach every node at once: run `broadcast cluster duravip move {ip} to {node}` on a manager node"
        ));
    }
    let (runtime, id) = inner.runtime()?;
    runtime
        .move_vip(ip, node)
        .map_err(|e| format!("cannot move {ip} to {node}: {e}"))?;
    Ok(reports::value(
        "move",
        &format!("{}: moving {ip} to {node}", id.nodename),
        mode,
    ))
}

/// `cluster shared show OBJ [from NODE]`: the global view from the shared
/// table itself; this node's own counts likewise; a peer's as this node's
/// engine holds them. Views are named as the reference names them: `global`,
/// or the node's shared-data private name.
fn shared_show(inner: &Inner, args: &[String], mode: Mode, _: &Caller) -> Result<String, String> {
    const USAGE: &str = "usage: cluster shared show <object> [from <node>]";
    let (object, from) = match args {
        [object] => (object, None),
        [object, from, node] if from.eq_ignore_ascii_case("from") => (object, Some(node)),
        _ => return Err(USAGE.into()),
    };
    let table = inner.shared_objects.get(object).ok_or_else(|| {
        format!("no replicated object '{object}' here (cluster shared list shows them)")
    })?;
    if from.is_some() && matches!(table, SharedObject::Cache(_)) {
        return Err(format!(
            "'{object}' is a cache: one value per key for the whole cluster, no per-node view"
        ));
    }
    let (view, rows) = match from {
        None => ("global".to_string(), table.rows(Scope::Global)),
        Some(node) => {
            let (runtime, id) = inner.runtime()?;
            if *node == id.nodename {
                (
                    reports::private_name(1, std::process::id(), node),
                    table.rows(Scope::Local),
                )
            } else {
                let snapshot = runtime.snapshot();
                let member = snapshot
                    .membership
                    .member(node)
                    .ok_or_else(|| format!("{node} is not a member this node knows"))?;
                (
                    reports::private_name(1, member.info.pid, node),
                    table.rows_of(&runtime.shared_rows(object, node)?),
                )
            }
        }
    };
    Ok(reports::shared_show(
        object,
        table.kind(),
        &view,
        &rows,
        mode,
    ))
}

/// The outbound objects of `objects` as their `Replicate` scopes say.
fn outbound_of(config: &Config, objects: &SharedObjects) -> Outbound {
    let mut outbound = Outbound::default();
    for r in &config.cluster.replicate {
        let group = r.binding_group.clone();
        match (r.kind, objects.get(&r.name)) {
            (ReplicationType::OutboundDomains, Some(SharedObject::Gauge(g))) => {
                outbound.domains.push((group, Arc::clone(g)));
            }
            (ReplicationType::OutboundBindingDomains, Some(SharedObject::Gauge(g))) => {
                outbound.binding_domains = Some(Arc::clone(g));
            }
            (ReplicationType::OutboundCidr, Some(SharedObject::Cidr(c))) => {
                outbound.cidr.push((group, Arc::clone(c)));
            }
            _ => {}
        }
    }
    outbound
}

/// A published journal as `cluster show logs` lists it. A journal not
/// written yet is empty; one that cannot be read says why in place of its
/// subscribers.
fn journal_block(name: &str, dir: &std::path::Path) -> reports::LogBlock {
    let bytes = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0);
    let subscribers = if dir.join("metastore").exists() {
        crate::journal::Journal::open(dir)
            .and_then(|j| j.subscribers())
            .map(|subs| {
                subs.into_iter()
                    .map(|(name, at)| (name, at.to_string()))
                    .collect()
            })
            .map_err(|e| e.to_string())
    } else {
        Ok(Vec::new())
    };
    reports::LogBlock {
        name: name.to_string(),
        bytes,
        subscribers,
    }
}

/// `log_active_interval` or `log_idle_interval` (whole seconds), which the
/// log server paces by and the aggregator waits for.
fn log_interval(seconds: u32) -> Duration {
    Duration::from_secs(u64::from(seconds))
}

/// Whether two paths name one directory: as written, or once resolved (a
/// destination may spell the published path differently).
fn same_dir(a: &Path, b: &Path) -> bool {
    a == b
        || matches!(
            (std::fs::canonicalize(a), std::fs::canonicalize(b)),
            (Ok(a), Ok(b)) if a == b
        )
}

/// What names this node's cache writes, to break ties between writes of
/// the same instant: its configured name, or (a name a hook decides is not
/// known yet) a random one, unique just the same.
fn cache_origin(config: &Config) -> String {
    config.cluster.nodename.clone().unwrap_or_else(|| {
        let random = crate::shared::hash::random_seed().hash_bytes(b"origin");
        format!("{}-{random:016x}", std::process::id())
    })
}

fn join_args(args: &[String]) -> Result<String, String> {
    if args.is_empty() {
        return Err("which command? e.g. broadcast cluster nodename".into());
    }
    Ok(args.join(" "))
}

fn node_and_command(args: &[String]) -> Result<(&str, String), String> {
    match args {
        [first, rest @ ..] if !rest.is_empty() => Ok((first.as_str(), rest.join(" "))),
        _ => Err("give a name and a command, e.g. unicast node1 cluster nodename".into()),
    }
}

fn cluster_info(inner: &Inner, _: &[String], mode: Mode, _: &Caller) -> Result<String, String> {
    let id = identity_or_err(inner)?;
    let pid = std::process::id();
    let cluster = &inner.config.cluster;
    let runtime = inner.runtime().ok();
    let snapshot = runtime.as_ref().map(|(r, _)| r.snapshot());
    let leader = snapshot.as_ref().map_or_else(
        || id.nodename.clone(),
        |s| s.membership.leader().to_string(),
    );
    let view = InfoView {
        cluster_port: id.cluster_port,
        main_private_name: reports::private_name(0, pid, &id.nodename),
        shared_private_name: reports::private_name(1, pid, &id.nodename),
        control_group: cluster.control_group.clone(),
        cluster_group: cluster.cluster_group.clone(),
        leader: Some(leader),
        log_group: cluster.log_group.clone(),
    };
    let status = snapshot.map(|s| {
        let m = &s.membership;
        let q = m.quorum();
        let by_state = |state: PeerState| -> Vec<String> {
            m.members()
                .filter(|p| p.state == state)
                .map(|p| p.info.name.clone())
                .collect()
        };
        ClusterStatus {
            view_number: m.view_number(),
            view_id: m.view().id,
            view_members: m.view().members.iter().map(|v| v.name.clone()).collect(),
            disagreeing: m.agreement().disagreeing,
            quorum_up: q.up,
            quorum_configured: q.configured,
            quorum_needed: q.needed,
            quorum_mode: QuorumModeName(q.mode).to_string(),
            suspect: by_state(PeerState::Suspect),
            down: by_state(PeerState::Down),
            mismatches: m
                .members()
                .filter(|p| !p.mismatched.is_empty() && p.state != PeerState::Down)
                .map(|p| {
                    (
                        p.info.name.clone(),
                        p.mismatched.iter().map(|o| o.to_string()).collect(),
                    )
                })
                .collect(),
            rejected: s
                .rejected
                .iter()
                .map(|(r, n)| (r.to_string(), *n))
                .collect(),
            late_timer_events: s.late_timer_events,
            secured: cluster.auth_key_file.is_some(),
            heartbeats_sent: s.heartbeats_sent,
            heartbeat_bytes: s.heartbeat_bytes,
        }
    });
    Ok(reports::info(&view, status.as_ref(), mode))
}

/// Displays a quorum mode as the configuration spells it.
struct QuorumModeName(crate::config::model::QuorumMode);

impl fmt::Display for QuorumModeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::config::reader::OptionValue;
        f.write_str(self.0.render().trim_matches('"'))
    }
}

fn cluster_membership(
    inner: &Inner,
    _: &[String],
    mode: Mode,
    _: &Caller,
) -> Result<String, String> {
    let (runtime, id) = inner.runtime()?;
    let snapshot = runtime.snapshot();
    let m = &snapshot.membership;
    let cluster = &inner.config.cluster;
    let view_of = |info: &SelfInfo, address: SocketAddr| {
        let manager = info.node_type == NodeType::Manager;
        MemberView {
            private_name: reports::private_name(0, info.pid, &info.name),
            name: info.name.clone(),
            subcluster: info.subcluster.clone(),
            node_type: if manager { "Manager" } else { "Momentum" }.to_string(),
            version: info.version.clone(),
            address,
            groups: reports::groups(
                manager,
                &cluster.control_group,
                &info.subcluster,
                &cluster.cluster_group,
                cluster.log_group.as_deref(),
            ),
        }
    };
    let peer_addr = |name: &str, port: u16| {
        inner
            .config
            .bus
            .peers
            .iter()
            .find(|p| p.name == name)
            .map_or(SocketAddr::new(IpAddr::from([0, 0, 0, 0]), port), |p| {
                SocketAddr::new(p.addr, port)
            })
    };
    let mut members: Vec<MemberView> = m
        .view()
        .members
        .iter()
        .filter_map(|vm| {
            if vm.name == id.nodename {
                Some(view_of(m.me(), id.service_addr()))
            } else {
                m.member(&vm.name)
                    .map(|p| view_of(&p.info, peer_addr(&p.info.name, p.info.port)))
            }
        })
        .collect();
    members.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(reports::membership(&members, mode))
}

/// Sends a command to every MTA node (of one subcluster) and remembers the answers.
fn gather(
    inner: &Inner,
    subcluster: Option<&str>,
    command: &str,
    mode: Mode,
) -> Result<String, String> {
    let (runtime, _) = inner.runtime()?;
    let nodes = inner.mta_nodes(subcluster)?;
    if nodes.is_empty() {
        return Err(match subcluster {
            Some(sc) => format!("no MTA node of subcluster '{sc}' is up"),
            None => "no MTA node is up".into(),
        });
    }
    let answers = runtime.console_request_many(&nodes, command, CONTROL_TIMEOUT);
    inner.remember(command, &answers);
    Ok(reports::gathered(&answers, mode))
}

impl Inner {
    /// The MTA nodes in the view (other than this one), optionally of one subcluster.
    fn mta_nodes(&self, subcluster: Option<&str>) -> Result<Vec<String>, String> {
        let (runtime, id) = self.runtime()?;
        let snapshot = runtime.snapshot();
        let m = &snapshot.membership;
        Ok(m.view()
            .members
            .iter()
            .filter(|vm| vm.name != id.nodename)
            .filter_map(|vm| m.member(&vm.name))
            .filter(|p| p.info.node_type == NodeType::Momentum)
            .filter(|p| subcluster.is_none_or(|sc| p.info.subcluster == sc))
            .map(|p| p.info.name.clone())
            .collect())
    }

    /// Keeps a command's answers for `retrieve`, newest last, bounded.
    fn remember(&self, command: &str, answers: &[(String, Result<String, String>)]) {
        let mut cache = self.responses.lock();
        let mut merged = cache
            .iter()
            .position(|(c, _)| c == command)
            .map(|i| cache.remove(i).1)
            .unwrap_or_default();
        for (node, answer) in answers {
            merged.retain(|(n, _)| n != node);
            merged.push((node.clone(), answer.clone()));
        }
        merged.sort_by(|a, b| a.0.cmp(&b.0));
        cache.push((command.to_string(), merged));
        if cache.len() > RESPONSE_CACHE {
            cache.remove(0);
        }
    }

    fn recall(&self, command: &str, keep: impl Fn(&str) -> bool) -> Result<Answers, String> {
        let cache = self.responses.lock();
        let (_, answers) = cache
            .iter()
            .find(|(c, _)| c == command)
            .ok_or_else(|| format!("no answers to '{command}' are cached; broadcast it first"))?;
        Ok(answers.iter().filter(|(n, _)| keep(n)).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Format, LoadedConfig};

    fn node(tag: &str) -> Node {
        let socket = std::env::temp_dir().join(format!("ecc-node-{tag}-{}", std::process::id()));
        let text = format!(
            "cluster {{ nodename = \"n1\" nodeaddr = \"127.0.0.1\" }}\n\
             ECCluster_Listener {{ Listen \"127.0.0.1:0\" {{}} }}\n\
             Control_Listener {{ Listen \"{}\" {{}} }}\n",
            socket.display()
        );
        Node::new(
            LoadedConfig::parse(&text, Format::Ecelerity)
                .unwrap()
                .config,
        )
    }

    #[test]
    fn hooks_run_in_order_and_may_call_back_into_their_node() {
        let n = node("reentrant");
        let slot: Arc<Mutex<Option<Node>>> = Arc::default();
        let seen = Arc::clone(&slot);
        // Calls back into the node while start is in progress: must not deadlock.
        n.register_nodename_hook(
            HookOrder::Last,
            Box::new(move |v| {
                let running = seen.lock().as_ref().map(Node::is_running);
                Some(format!("{v}-last-{running:?}"))
            }),
        )
        .unwrap();
        n.register_nodename_hook(HookOrder::First, Box::new(|v| Some(format!("{v}-first"))))
            .unwrap();
        *slot.lock() = Some(n.clone());
        n.start().unwrap();
        let id = n.identity().unwrap();
        assert_eq!(id.nodename, "n1-first-last-Some(false)");
        assert_eq!(id.nodename_origin, Origin::Hook);
        assert!(matches!(
            n.register_subcluster_hook(HookOrder::Last, Box::new(|_| None)),
            Err(NodeError::InvalidState(_))
        ));
        assert!(matches!(n.start(), Err(NodeError::InvalidState(_))));
        n.stop();
        // Break the node -> hook -> node cycle so the test does not leak it.
        slot.lock().take();
    }

    #[test]
    fn console_answers_before_and_after_start() {
        let n = node("console");
        assert_eq!(n.console_exec("cluster nodename").unwrap(), "n1\n");
        n.start().unwrap();
        let port = n.identity().unwrap().cluster_port;
        assert_ne!(port, 0, "the identity shows the port actually bound");
        assert_eq!(
            n.console_exec("cluster nodeaddr").unwrap(),
            format!("127.0.0.1:{port}\n")
        );
        let path = n.console_path().unwrap();
        assert!(path.exists());
        n.stop();
        assert!(!path.exists());
        assert!(n.console_path().is_none());
    }
}
