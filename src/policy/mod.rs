//! Lua policy: the `eccluster` Lua API, and the embedded Lua 5.4 that runs
//! the host's policy scripts (`set_binding` and friends).
//!
//! The API (`api`) is written against any `mlua::Lua`, so the same
//! functions serve two homes: the engine's own sandboxed states (vendored
//! Lua, built here) and a host's Lua through `require "eccluster"`
//! (bindings/lua, mlua's `module` build). Only the embedded engine knows
//! about sandboxes, budgets and per-thread states.
//!
//! - [`engine`]: scripts, reloads, one sandboxed state per host thread,
//!   instruction budgets and memory limits, errors;
//! - [`sandbox`]: what a state holds and what a script can reach;
//! - [`hooks`]: `eccluster.register_hook`, `register_control` and the
//!   reference's `msys.registerModule` / `registerControl`, usable in any
//!   Lua state;
//! - [`bindings`]: the binding table set_binding reads, kept current with
//!   DuraVIP ownership;
//! - [`set_binding`]: the message, the choice and the decision;
//! - [`published`]: values the hot path reads without locks (the binding
//!   table, the set_binding hooks);
//! - [`adapters`]: the node's hooks, served by the scripts' functions;
//! - [`errors`]: errors as one line naming the script and line;
//! - [`api`]: the `eccluster` functions every state gets (identity,
//!   membership, DuraVIPs, replicated objects, journals, moves, events);
//! - [`msys`]: the Momentum `msys.*` functions for cluster data, on `api`.

pub mod adapters;
pub mod api;
pub mod bindings;
pub mod engine;
pub mod errors;
pub mod hooks;
pub mod msys;
pub mod published;
pub mod sandbox;
pub mod set_binding;
#[cfg(test)]
mod tests;

pub use bindings::{BindingInfo, BindingState, BindingTable, Bindings};
pub use engine::{Engine, Limits, PolicyHost, Script};
pub use hooks::{ControlDef, Flow, Hook, RegisteredHook};
pub use set_binding::{ChooseError, Decision, Message};
