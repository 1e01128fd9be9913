//! Membership: `members()` (this node and every peer heard from, down
//! ones included, sorted by name), `leader()` and `is_leader()`. They read
//! the engine's latest snapshot, so they need a running node.

use mlua::{Lua, Table};

use super::NodeRef;
use super::errors::function;
use crate::core::wire::{NodeType, PeerState};
use crate::node::MemberStatus;

/// One member as Lua sees it.
fn row(lua: &Lua, m: MemberStatus) -> mlua::Result<Table> {
    let row = lua.create_table()?;
    row.set("name", m.name)?;
    row.set("subcluster", m.subcluster)?;
    row.set(
        "type",
        match m.node_type {
            NodeType::Momentum => "Momentum",
            NodeType::Manager => "Manager",
        },
    )?;
    row.set(
        "state",
        match m.state {
            PeerState::Alive => "alive",
            PeerState::Suspect => "suspect",
            PeerState::Down => "down",
        },
    )?;
    row.set("in_view", m.in_view)?;
    Ok(row)
}

/// Adds the membership functions to `ecc`.
pub(super) fn register(lua: &Lua, ecc: &Table, node: &NodeRef) -> mlua::Result<()> {
    let n = node.clone();
    ecc.set(
        "members",
        function(lua, "members", move |lua, _| {
            let members = n.get()?.members().map_err(|e| format!("members: {e}"))?;
            let rows: mlua::Result<Vec<Table>> = members.into_iter().map(|m| row(lua, m)).collect();
            rows.and_then(|r| lua.create_sequence_from(r))
                .map_err(|e| format!("members: {e}"))
        })?,
    )?;
    let n = node.clone();
    ecc.set(
        "leader",
        function(lua, "leader", move |_, _| {
            n.get()?.leader().map_err(|e| format!("leader: {e}"))
        })?,
    )?;
    let n = node.clone();
    ecc.set(
        "is_leader",
        function(lua, "is_leader", move |_, _| {
            let node = n.get()?;
            let leader = node.leader().map_err(|e| format!("is_leader: {e}"))?;
            let me = node.identity().map_err(|e| format!("is_leader: {e}"))?;
            Ok(leader == me.nodename)
        })?,
    )
}
