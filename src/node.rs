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

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::config::Config;
use crate::core::console::reports::{self, InfoView};
use crate::core::console::{Console, Mode};
use crate::core::identity::{self, AddrSource, Origin};
use crate::io::control::{ControlServer, Exec};
use crate::io::host;

/// The library version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// An identity hook: given the value so far, returns a replacement or `None`
/// to leave it. Runs on the thread that calls [`Node::start`] (or a getter
/// before start).
pub type IdentityHook = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

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
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeError::Identity(m) => write!(f, "identity: {m}"),
            NodeError::Io { what, source } => write!(f, "{what}: {source}"),
            NodeError::InvalidState(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for NodeError {}

/// Hooks are shared (`Arc`) so a chain can be copied out of the lock and run
/// without holding it: a hook may then call back into its node.
type SharedHook = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

#[derive(Default)]
struct Hooks {
    nodename: Vec<SharedHook>,
    subcluster: Vec<SharedHook>,
}

struct Running {
    identity: Identity,
    control: ControlServer,
}

struct Inner {
    config: Config,
    hooks: RwLock<Hooks>,
    running: Mutex<Option<Running>>,
    /// Readers run commands concurrently; Lua-defined commands (later) register under the write lock.
    console: RwLock<Console<Inner>>,
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
    /// A stopped node with the built-in console commands.
    pub fn new(config: Config) -> Node {
        let mut console = Console::default();
        register_builtin_commands(&mut console);
        Node {
            inner: Arc::new(Inner {
                config,
                hooks: RwLock::default(),
                running: Mutex::new(None),
                console: RwLock::new(console),
            }),
        }
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

    pub fn is_running(&self) -> bool {
        self.inner.running.lock().is_some()
    }

    /// Fixes the identity and starts the runtime (the console socket).
    pub fn start(&self) -> Result<(), NodeError> {
        const ALREADY: NodeError = NodeError::InvalidState("the node is already running");
        if self.is_running() {
            return Err(ALREADY);
        }
        // Outside the lock: the hooks run here and may call back into this node.
        let identity = self.inner.resolve_identity()?;
        let mut running = self.inner.running.lock();
        if running.is_some() {
            return Err(ALREADY);
        }
        let control_cfg = &self.inner.config.control;
        let weak = Arc::downgrade(&self.inner);
        let exec: Exec = Arc::new(move |line: &str| match weak.upgrade() {
            Some(inner) => inner.exec(line),
            None => Err("the node is gone".into()),
        });
        let control =
            ControlServer::start(&control_cfg.path, control_cfg.mode, exec).map_err(|source| {
                NodeError::Io {
                    what: format!("console socket {}", control_cfg.path.display()),
                    source,
                }
            })?;
        *running = Some(Running { identity, control });
        Ok(())
    }

    /// Stops the runtime; stopping a stopped node does nothing.
    pub fn stop(&self) {
        let running = self.inner.running.lock().take();
        if let Some(r) = running {
            r.control.stop();
        }
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
        self.inner.exec(line)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(r) = self.running.get_mut().take() {
            r.control.stop();
        }
    }
}

impl Inner {
    fn exec(&self, line: &str) -> Result<String, String> {
        self.console.read().exec(self, line)
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
    fn(&Inner, &[String], Mode) -> Result<String, String>,
);

fn register_builtin_commands(console: &mut Console<Inner>) {
    let commands: [Builtin; 4] = [
        (
            "cluster nodename",
            "",
            "Show the name of the local node.",
            |inner, _, mode| {
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
            |inner, _, mode| {
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
            |inner, _, mode| {
                let id = identity_or_err(inner)?;
                let pid = std::process::id();
                let cluster = &inner.config.cluster;
                let view = InfoView {
                    cluster_port: id.cluster_port,
                    main_private_name: reports::private_name(0, pid, &id.nodename),
                    shared_private_name: reports::private_name(1, pid, &id.nodename),
                    control_group: cluster.control_group.clone(),
                    cluster_group: cluster.cluster_group.clone(),
                    // A node alone in its view leads it.
                    leader: Some(id.nodename.clone()),
                    log_group: cluster.log_group.clone(),
                };
                Ok(reports::info(&view, mode))
            },
        ),
        (
            "version",
            "",
            "Show the eccluster version.",
            |_, _, mode| Ok(reports::version(VERSION, mode)),
        ),
    ];
    for (words, usage, help, handler) in commands {
        if let Err(e) = console.register(words, usage, help, handler) {
            unreachable!("built-in command {words:?} is valid: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Format, LoadedConfig};

    fn node(tag: &str) -> Node {
        let socket = std::env::temp_dir().join(format!("ecc-node-{tag}-{}", std::process::id()));
        let text = format!(
            "cluster {{ nodename = \"n1\" nodeaddr = \"127.0.0.1\" }}\nControl_Listener {{ Listen \"{}\" {{}} }}\n",
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
        assert_eq!(
            n.console_exec("cluster nodeaddr").unwrap(),
            "127.0.0.1:4802\n"
        );
        let path = n.console_path().unwrap();
        assert!(path.exists());
        n.stop();
        assert!(!path.exists());
        assert!(n.console_path().is_none());
    }
}
