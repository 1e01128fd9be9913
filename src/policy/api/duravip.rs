//! DuraVIP ownership: `duravips()`, every address any member claims with
//! its binding names, its owner (nil while none) and whether this node
//! owns it (`owned`) and has it plumbed on an interface (`plumbed`; the
//! two differ while an acquisition or a release is under way, or when the
//! address has no Topology to plumb it on). Needs a running node; empty
//! when the node runs no DuraVIP.

use mlua::{Lua, Table, Value};

use super::NodeRef;
use super::errors::function;

/// Adds `duravips` to `ecc`.
pub(super) fn register(lua: &Lua, ecc: &Table, node: &NodeRef) -> mlua::Result<()> {
    let node = node.clone();
    ecc.set(
        "duravips",
        function(lua, "duravips", move |lua, _| {
            let vips = node
                .get()?
                .duravips()
                .map_err(|e| format!("duravips: {e}"))?;
            let rows: mlua::Result<Vec<Table>> = vips
                .into_iter()
                .map(|v| {
                    let row = lua.create_table()?;
                    row.set("address", v.address.to_string())?;
                    row.set("names", lua.create_sequence_from(v.names)?)?;
                    row.set(
                        "owner",
                        v.owner.map_or(Value::Nil, |o| {
                            lua.create_string(o).map_or(Value::Nil, Value::String)
                        }),
                    )?;
                    row.set("owned", v.owned)?;
                    row.set("plumbed", v.plumbed)?;
                    Ok(row)
                })
                .collect();
            rows.and_then(|r| lua.create_sequence_from(r))
                .map_err(|e| format!("duravips: {e}"))
        })?,
    )
}
