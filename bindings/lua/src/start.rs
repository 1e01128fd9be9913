//! The module's node: `ecc.start(config)` starts one in the host process
//! and binds the `eccluster` API to it, in every Lua state that loaded the
//! module; `ecc.stop()` stops it. One node per process at a time.
//!
//! ```lua
//! ecc.start("/etc/eccluster/cluster.toml")   -- a file (.toml, or ecelerity.conf syntax)
//! ecc.start([[
//! [cluster]
//! nodename = "mta1"
//! ...]])                                     -- or TOML text: anything with a newline
//! ecc.stop()
//! ```
//!
//! The node also stops when the Lua state that started it is closed (the
//! interpreter exits normally), so its threads and console socket do not
//! outlive the script.

use std::path::Path;
use std::sync::Arc;

use eccluster::config::{Format, LoadedConfig};
use eccluster::node::Node;
use eccluster::policy::api::NodeSlot;
use eccluster::policy::api::errors::function;
use mlua::{Lua, Table, UserData};

/// The registry key of the started node's [`StopOnClose`].
const STARTED: &str = "eccluster.started";

/// Held in the registry of the state that started the node: stops it when
/// that state is closed, unless it was stopped (or replaced) already.
struct StopOnClose {
    node: Node,
    slot: Arc<NodeSlot>,
}

impl UserData for StopOnClose {}

impl Drop for StopOnClose {
    fn drop(&mut self) {
        if self.slot.get().is_some_and(|n| n.same_as(&self.node)) {
            self.slot.take();
            self.node.stop();
        }
    }
}

/// The configuration `ecc.start` was given: TOML text when it has a
/// newline, otherwise a file's path.
fn load(config: &str) -> Result<LoadedConfig, String> {
    let loaded = if config.contains('\n') {
        LoadedConfig::parse(config, Format::Toml)
    } else {
        LoadedConfig::load(Path::new(config))
    };
    loaded.map_err(|e| e.to_string())
}

/// Adds `start` and `stop` to the module table `ecc`.
pub(crate) fn register(lua: &Lua, ecc: &Table, slot: &Arc<NodeSlot>) -> mlua::Result<()> {
    let s = Arc::clone(slot);
    ecc.set(
        "start",
        function(lua, "start", move |lua, args| {
            let config = args.string(1)?;
            const RUNNING: &str =
                "start: a node already runs in this process; call eccluster.stop() first";
            if s.get().is_some() {
                return Err(RUNNING.into());
            }
            let loaded = load(&config).map_err(|e| format!("start: {e}"))?;
            let node = Node::new(loaded.config);
            crate::host::prepare(&node).map_err(|e| format!("start: {e}"))?;
            crate::host::start(lua, &node).map_err(|e| format!("start: {e}"))?;
            if let Err(node) = s.fill(node.clone()) {
                // Another state started one meanwhile.
                node.stop();
                return Err(RUNNING.into());
            }
            let guard = StopOnClose {
                node,
                slot: Arc::clone(&s),
            };
            lua.set_named_registry_value(STARTED, guard)
                .map_err(|e| format!("start: {e}"))
        })?,
    )?;
    let s = Arc::clone(slot);
    ecc.set(
        "stop",
        function(lua, "stop", move |_, _| {
            if let Some(node) = s.take() {
                node.stop();
            }
            Ok(())
        })?,
    )
}
