//! The `eccluster` Lua API: one [`install`] that fills a table with the
//! node's functions, usable in any Lua 5.4 state — the engine's own
//! sandboxed policy states (vendored Lua) and a host's states through
//! `require "eccluster"` (bindings/lua, mlua's `module` build), which call
//! the same code.
//!
//! ```lua
//! local ecc = require "eccluster"            -- or the engine's `eccluster` global
//! if ecc.is_leader() then ... end
//! local domains = ecc.gauge("outbound_domains")
//! domains:inc("aol.com")
//! if domains:count("aol.com") > 100 then ... end
//! local t = ecc.throttles("shared_named_throttles"):define("aol", "100/60")
//! if not t:consume() then ... end
//! ```
//!
//! | name | what it gives |
//! |---|---|
//! | `version` | the library version (a string) |
//! | `nodename()`, `subcluster()`, `nodeaddr()` | this node's identity; `nodeaddr` is `ip:port` as `cluster nodeaddr` prints it |
//! | `members()` | an array of `{name, subcluster, type, state, in_view}` (this node and every peer heard from; `type` is `"Momentum"` or `"Manager"`, `state` `"alive"`, `"suspect"` or `"down"`) |
//! | `leader()`, `is_leader()` | the view's leader, and whether it is this node |
//! | `duravips()` | an array of `{address, names, owner, owned, plumbed}`: every DuraVIP, its owner (nil: none) and whether this node owns it and has it plumbed |
//! | `gauge(name)` | a gauge table: `:inc(key [, n])` and `:dec(key [, n])` return this node's new count, `:count(key [, scope])` |
//! | `cidr(name)` | a CIDR tree: `:inc(address)`, `:dec(address)`, `:count(prefix [, scope])` (`"10.1.0.0/16"`, or an address for itself) |
//! | `throttles(name)` | a throttle table: `:define(name, limit [, epsilon])` (`"N"` or `"N/S"`) returns a throttle: `:check()`, `:consume([n])` (booleans: admitted), `:usage([scope])` |
//! | `metrics(name)` | audit series and gauge caches: `:define_series(name, type, interval, windows [, replicate])` and `:series(name)` give a series (`:add(key [, count])`, `:count(key [, startv [, endv [, scope]]])`, `:remove_item(key)`); `:define_gauge_cache(name, maxelems, ttl [, replicated])` and `:gauge_cache(name)` a gauge cache (`:inc(key)`, `:dec(key)`, `:get(key [, scope])`, `:remove_item(key)`) |
//! | `cache(name)` | a replicated key/value cache: `:get(key)` (nil when absent), `:set(key, value [, ttl])` (seconds, `"5M"`, `"2H"`; 0, the default, never expires), `:delete(key)` |
//! | `log_open(destination [, options])` | a journal: `:append(line)` returns its position once durable, `:dir()` |
//! | `move_message(node, message [, timeout])` | moves a message to `node` (`{id, mail_from, recipients, binding, binding_group, headers, body}`), returning its id and `"accepted"` or `"duplicate"` once that node's host has it; see `moves.rs` |
//! | `events([capacity])` | an event queue: `:fd()`, `:next()`, `:wait([seconds])`, `:dispatch(handlers)`, `:dropped()` |
//!
//! A `scope` is `"cluster"` (the default: every node's count, as this node
//! knows them) or `"local"` (this node's). Keys are Lua strings (any
//! bytes); addresses are text (`"192.0.2.7"`, `"2001:db8::1"`).
//!
//! Objects are found by their `Replicate` name; an unknown name or one of
//! another kind is an error naming what the configuration has. An object
//! works directly on the shared structure (no engine round trip) and stays
//! usable after its node stops.
//!
//! **Errors** are plain strings raised at the caller's position, for bad
//! arguments and failures alike, and a panic never crosses into Lua (see
//! `errors.rs`). The node is found through a [`NodeRef`]: the embedded
//! engine's is fixed; the module's is whatever `eccluster.start` started,
//! and functions that need one raise "no node: call eccluster.start(config)
//! first" without it.
//!
//! One file per area, each with a `register` that adds its functions:
//! `identity.rs`, `membership.rs`, `duravip.rs`, `counters.rs` (gauges,
//! CIDR trees), `throttle.rs`, `metrics.rs`, `cache.rs`, `log.rs`,
//! `moves.rs`, `events.rs`; `object.rs` is what their objects share. The Momentum
//! `msys.*` functions are [`crate::policy::msys`], on top of this.

pub mod errors;

mod cache;
mod counters;
mod duravip;
mod events;
mod identity;
mod log;
mod membership;
mod metrics;
mod moves;
mod object;
mod throttle;

use std::sync::Arc;

use mlua::{Lua, Table};
use parking_lot::RwLock;

use crate::node::{Node, WeakNode};

/// What a function needing a node raises without one.
pub(crate) const NO_NODE: &str = "no node: call eccluster.start(config) first";
/// What it raises once an embedded engine's node is gone.
const GONE: &str = "the node is gone";

/// A node started later, or stopped again: the module's `eccluster.start`
/// fills it. Shared by every Lua state that installed the API with it.
#[derive(Debug, Default)]
pub struct NodeSlot(RwLock<Option<Node>>);

impl NodeSlot {
    /// The node in the slot.
    pub fn get(&self) -> Option<Node> {
        self.0.read().clone()
    }

    /// Puts `node` in the slot unless one is there; gives it back if so.
    pub fn fill(&self, node: Node) -> Result<(), Node> {
        let mut slot = self.0.write();
        if slot.is_some() {
            return Err(node);
        }
        *slot = Some(node);
        Ok(())
    }

    /// Empties the slot.
    pub fn take(&self) -> Option<Node> {
        self.0.write().take()
    }
}

/// Where the API's functions find their node.
#[derive(Clone, Debug)]
pub enum NodeRef {
    /// One node for the life of the Lua state (the embedded engine).
    Fixed(Node),
    /// Whatever node the slot holds at each call (the module).
    Slot(Arc<NodeSlot>),
    /// A node the state must not keep alive (the embedded engine's states,
    /// which live as long as their threads).
    Weak(WeakNode),
}

impl NodeRef {
    /// The node, or [`NO_NODE`].
    pub fn get(&self) -> Result<Node, String> {
        match self {
            NodeRef::Fixed(node) => Ok(node.clone()),
            NodeRef::Slot(slot) => slot.get().ok_or_else(|| NO_NODE.to_string()),
            NodeRef::Weak(weak) => weak.upgrade().ok_or_else(|| GONE.to_string()),
        }
    }

    /// The node if there is one, for functions that also work without.
    pub fn optional(&self) -> Option<Node> {
        match self {
            NodeRef::Fixed(node) => Some(node.clone()),
            NodeRef::Slot(slot) => slot.get(),
            NodeRef::Weak(weak) => weak.upgrade(),
        }
    }
}

impl From<&Node> for NodeRef {
    fn from(node: &Node) -> NodeRef {
        NodeRef::Fixed(node.clone())
    }
}

impl From<Node> for NodeRef {
    fn from(node: Node) -> NodeRef {
        NodeRef::Fixed(node)
    }
}

impl From<Arc<NodeSlot>> for NodeRef {
    fn from(slot: Arc<NodeSlot>) -> NodeRef {
        NodeRef::Slot(slot)
    }
}

/// Adds the API (module docs) to the table `ecc`, bound to `node`: a
/// [`Node`] (`&node`), or an [`Arc<NodeSlot>`] for a node started later.
/// Call it once per Lua state; calling it again replaces the functions.
pub fn install(lua: &Lua, ecc: &Table, node: impl Into<NodeRef>) -> mlua::Result<()> {
    let node = node.into();
    ecc.set("version", crate::node::VERSION)?;
    identity::register(lua, ecc, &node)?;
    membership::register(lua, ecc, &node)?;
    duravip::register(lua, ecc, &node)?;
    counters::register(lua, ecc, &node)?;
    throttle::register(lua, ecc, &node)?;
    metrics::register(lua, ecc, &node)?;
    cache::register(lua, ecc, &node)?;
    log::register(lua, ecc, &node)?;
    moves::register(lua, ecc, &node)?;
    events::register(lua, ecc, &node)
}

pub(crate) use object::parse_prefix;

#[cfg(test)]
pub(crate) mod tests;
