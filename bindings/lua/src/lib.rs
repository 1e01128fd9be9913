//! `require "eccluster"`: eccluster for hosts that already run Lua 5.4.
//!
//! An MTA whose policy is Lua (or any program run by a Lua 5.4
//! interpreter) loads this module and reaches the engine from its scripts:
//!
//! ```lua
//! local ecc = require "eccluster"
//! print(ecc.version)
//! local log = ecc.log_open("cluster:///var/log/ecelerity/mainlog.cluster=>master")
//! local segment, marker = log:append("1700000000@mta1: delivered ...")
//! ```
//!
//! It is a *module*, not an embedded interpreter: built with mlua's
//! `module` feature, it leaves the Lua C API unresolved and binds it to
//! the host's own Lua when `require` loads it, so it runs on the host's
//! states, heap and garbage collector. That is why it is a cargo
//! workspace of its own: the main crate embeds a vendored Lua for its
//! policy engine, and cargo cannot build mlua both ways in one build
//! (DESIGN.md §1). The engine itself is the main crate, linked in.
//!
//! The layout grows by area, one file each, each with a
//! `register(lua, ecc)` that adds its functions to the module table;
//! [`open`] calls them in turn:
//!
//! * `log.rs`: journals, `ecc.log_open` and `log:append`.
//!
//! Errors: every function raises a plain string error with the caller's
//! position, for bad arguments and for failures alike (an append that is
//! not durable must not pass unnoticed, as a `nil, message` return would
//! when called as a statement); wrap a call in `pcall` to handle one.
//! `errors.rs` says how, and why a panic never crosses into Lua.
//!
//! The module's objects may be used from any Lua state of the process;
//! what they share (one writer per journal) is shared across states.

#![deny(unsafe_code)]

mod errors;
mod log;
#[cfg(feature = "testing")]
mod testing;

use mlua::{Lua, Table};

/// `luaopen_eccluster`: the module table.
// The macro writes the exported `extern "C-unwind" fn luaopen_eccluster`.
#[allow(unsafe_code)]
#[mlua::lua_module(name = "eccluster")]
fn open(lua: &Lua) -> mlua::Result<Table> {
    let ecc = lua.create_table()?;
    ecc.set("version", eccluster::node::VERSION)?;
    log::register(lua, &ecc)?;
    #[cfg(feature = "testing")]
    testing::register(lua, &ecc)?;
    Ok(ecc)
}
