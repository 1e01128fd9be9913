//! The node's hooks, served by the scripts: the node registers one hook of
//! its own per hook point (identity, membership, DuraVIP), and when it
//! fires, on whatever thread, these run the Lua functions registered for
//! it in that thread's state. Errors are the engine's to count and log.
//!
//! The tables the hooks get ([`view_change_table`], [`vip_table`]) are
//! also what the `require "eccluster"` module's hooks get when its host
//! dispatches the same news from an event queue.

use mlua::{Lua, Table, Value};

use super::engine::Engine;
use super::hooks::{Flow, Hook};
use crate::core::duravip::{Claim, Service};
use crate::io::vip::VipEvent;
use crate::node::{IdentityHook, ViewChange};

/// `cluster_nodename` or `cluster_subcluster`: each function gets the value
/// so far and may return a new one.
pub fn identity(engine: Engine, hook: Hook) -> IdentityHook {
    Box::new(move |current: &str| {
        let mut value: Option<String> = None;
        engine.run_hook(
            hook,
            |_, f| {
                let so_far = value.as_deref().unwrap_or(current);
                if let Some(v) = f.call::<Option<String>>(so_far)? {
                    value = Some(v);
                }
                Ok(Flow::Continue)
            },
            |_| {},
        );
        value
    })
}

/// A `membership_update` hook's argument: `change.number`, `change.id` (16
/// hex digits) and `change.members`.
pub fn view_change_table(
    lua: &Lua,
    number: u64,
    id: u64,
    members: &[String],
) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set("number", number)?;
    t.raw_set("id", format!("{id:016x}"))?;
    t.raw_set(
        "members",
        lua.create_sequence_from(members.iter().map(String::as_str))?,
    )?;
    Ok(t)
}

/// A `duravip_gained` / `duravip_lost` hook's argument: `vip.ip`,
/// `vip.names` and `vip.ports`.
pub fn vip_table(lua: &Lua, claim: &Claim) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set("ip", claim.ip.to_string())?;
    t.raw_set(
        "names",
        lua.create_sequence_from(claim.names.iter().map(String::as_str))?,
    )?;
    let ports = claim.services.iter().filter_map(|s| match s {
        Service::Listener(port) => Some(*port),
        Service::Binding => None,
    });
    t.raw_set("ports", lua.create_sequence_from(ports)?)?;
    Ok(t)
}

/// `membership_update`: `fn(change)`, see [`view_change_table`].
pub fn membership(engine: Engine) -> Box<dyn Fn(&ViewChange) + Send + Sync> {
    Box::new(move |change: &ViewChange| {
        engine.run_hook(
            Hook::MembershipUpdate,
            |lua, f| {
                f.call::<Value>(view_change_table(
                    lua,
                    change.number,
                    change.id,
                    &change.members,
                )?)?;
                Ok(Flow::Continue)
            },
            |_| {},
        );
    })
}

/// `duravip_gained` / `duravip_lost`: `fn(vip)`, see [`vip_table`].
pub fn duravip(engine: Engine) -> Box<dyn Fn(&VipEvent) + Send + Sync> {
    Box::new(move |event: &VipEvent| {
        let (hook, claim) = match event {
            VipEvent::Gained(c) => (Hook::DuravipGained, c),
            VipEvent::Lost(c) => (Hook::DuravipLost, c),
        };
        engine.run_hook(
            hook,
            |lua, f| {
                f.call::<Value>(vip_table(lua, claim)?)?;
                Ok(Flow::Continue)
            },
            |_| {},
        );
    })
}
