//! `require "eccluster"`: eccluster for hosts that already run Lua 5.4.
//!
//! An MTA whose policy is Lua (or any program run by a Lua 5.4
//! interpreter) loads this module, starts a node in its process and
//! reaches the cluster from its scripts:
//!
//! ```lua
//! local ecc = require "eccluster"
//! ecc.start("/etc/eccluster/cluster.toml")
//! print(ecc.nodename(), ecc.leader())
//! ecc.gauge("outbound_domains"):inc("aol.com")
//! local log = ecc.log_open("cluster:///var/log/ecelerity/mainlog.cluster=>master")
//! local segment, marker = log:append("1700000000@mta1: delivered ...")
//! require("msys.audit_series")   -- the Momentum shim, as in Momentum
//! ```
//!
//! The table is the engine's `eccluster` Lua API
//! (`eccluster::policy::api::install`, the same code the embedded policy
//! engine runs, documented there and in the README), bound to the node
//! `ecc.start` starts (`start.rs`); before that, functions needing a node
//! raise "no node: call eccluster.start(config) first" (journals work
//! without one). The module also preloads the `msys` shim
//! (`eccluster::policy::msys`), so `require("msys.audit_series")`,
//! `require("msys.gauge_cache")` and `require("msys.audit")` work as in
//! Momentum.
//!
//! It is a *module*, not an embedded interpreter: built with mlua's
//! `module` feature, it leaves the Lua C API unresolved and binds it to
//! the host's own Lua when `require` loads it, so it runs on the host's
//! states, heap and garbage collector. That is why it is a cargo
//! workspace of its own: the main crate embeds a vendored Lua for its
//! policy engine, and cargo cannot build mlua both ways in one build
//! (DESIGN.md §1). The engine itself is the main crate, linked in.
//!
//! The host's state also gets the embedded engine's `register_hook`,
//! `register_control`, and `message`/`set_binding`; they run only on the
//! host's thread, inside `start`, `set_binding` and the host's
//! `q:dispatch()` (see `host.rs` for which runs where).
//!
//! Errors: every function raises a plain string error with the caller's
//! position; wrap a call in `pcall` to handle one. A panic never crosses
//! into Lua.
//!
//! The node is the process's: every Lua state that loads the module
//! (one per host thread, say) sees the same one, and the objects they open
//! share the same counters.

#![deny(unsafe_code)]

mod host;
mod start;
#[cfg(feature = "testing")]
mod testing;

use std::sync::{Arc, LazyLock};

use eccluster::policy::api::{NodeSlot, install};
use eccluster::policy::msys::{install_msys, preload_msys};
use mlua::{Lua, Table};

/// The node `ecc.start` started, shared by every Lua state of the process.
static NODE: LazyLock<Arc<NodeSlot>> = LazyLock::new(Arc::default);

/// `luaopen_eccluster`: the module table.
// The macro writes the exported `extern "C-unwind" fn luaopen_eccluster`.
#[allow(unsafe_code)]
#[mlua::lua_module(name = "eccluster")]
fn open(lua: &Lua) -> mlua::Result<Table> {
    let ecc = lua.create_table()?;
    install(lua, &ecc, Arc::clone(&NODE))?;
    start::register(lua, &ecc, &NODE)?;
    host::register(lua, &ecc, &NODE)?;
    let msys = install_msys(lua, Arc::clone(&NODE))?;
    preload_msys(lua, &msys)?;
    #[cfg(feature = "testing")]
    testing::register(lua, &ecc)?;
    Ok(ecc)
}
