//! This node's identity: `nodename()`, `subcluster()`, `nodeaddr()`, as
//! the console's `cluster nodename` and `cluster nodeaddr` say them (fixed
//! while the node runs; before, worked out now, running the hooks).

use mlua::{Lua, Table};

use super::NodeRef;
use super::errors::function;
use crate::node::Identity;

/// Adds the identity functions to `ecc`.
pub(super) fn register(lua: &Lua, ecc: &Table, node: &NodeRef) -> mlua::Result<()> {
    type Getter = fn(&Identity) -> String;
    let getters: [(&'static str, Getter); 3] = [
        ("nodename", |id| id.nodename.clone()),
        ("subcluster", |id| id.subcluster.clone()),
        ("nodeaddr", |id| id.service_addr().to_string()),
    ];
    for (name, get) in getters {
        let node = node.clone();
        ecc.set(
            name,
            function(lua, name, move |_, _| {
                let id = node.get()?.identity().map_err(|e| format!("{name}: {e}"))?;
                Ok(get(&id))
            })?,
        )?;
    }
    Ok(())
}
