//! Lua policy: the `eccluster` Lua API, and the embedded Lua 5.4 that runs
//! the host's policy scripts (`set_binding` and friends).
//!
//! The API (`api`) is written against any `mlua::Lua`, so the same
//! functions serve two homes: the engine's own sandboxed states (vendored
//! Lua, built here) and a host's Lua through `require "eccluster"`
//! (bindings/lua, mlua's `module` build). Only the embedded engine knows
//! about sandboxes, budgets and per-thread states.

pub mod api;
pub mod msys;
