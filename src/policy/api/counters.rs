//! The counting objects of the hot path: gauge tables (`gauge(name)`:
//! `outbound_domains`, `outbound_binding_domains`) and CIDR trees
//! (`cidr(name)`: `inbound_cidr`, `outbound_cidr`), as the C API's
//! `ecc_gauge_*` and `ecc_cidr_*` use them.
//!
//! ```lua
//! local domains = ecc.gauge("outbound_domains")
//! domains:inc("aol.com")                 --> this node's new count
//! domains:count("aol.com")               --> the cluster's
//! domains:count("aol.com", "local")      --> this node's
//! local inbound = ecc.cidr("inbound_cidr")
//! inbound:inc("10.1.2.3")
//! inbound:count("10.1.0.0/16")
//! ```

use std::sync::Arc;

use mlua::{Lua, Table};

use super::NodeRef;
use super::errors::function;
use super::object::{
    LuaObject, address, method, new_object, prefix, register as register_type, replicated, scope,
};
use crate::shared::SharedObject;
use crate::shared::cidr::CidrCounts;
use crate::shared::gauge::GaugeTable;

struct Gauge {
    name: String,
    table: Arc<GaugeTable>,
}

impl LuaObject for Gauge {
    const TYPE: &'static str = "eccluster.gauge";
    fn describe(&self) -> String {
        self.name.clone()
    }
}

struct Cidr {
    name: String,
    counts: Arc<CidrCounts>,
}

impl LuaObject for Cidr {
    const TYPE: &'static str = "eccluster.cidr";
    fn describe(&self) -> String {
        self.name.clone()
    }
}

/// Adds `gauge` and `cidr` to `ecc`.
pub(super) fn register(lua: &Lua, ecc: &Table, node: &NodeRef) -> mlua::Result<()> {
    register_type::<Gauge>(
        lua,
        [
            method(lua, "inc", |_, g: &Gauge, args| {
                let key = args.bytes(1)?;
                let n = args.opt_integer(2, 1, 0..=i64::MAX)?;
                Ok(g.table.add(&key.as_bytes(), n))
            }),
            method(lua, "dec", |_, g: &Gauge, args| {
                let key = args.bytes(1)?;
                let n = args.opt_integer(2, 1, 0..=i64::MAX)?;
                Ok(g.table.add(&key.as_bytes(), -n))
            }),
            method(lua, "count", |_, g: &Gauge, args| {
                let key = args.bytes(1)?;
                Ok(g.table.get(&key.as_bytes(), scope(&args, 2)?))
            }),
        ],
    )?;
    register_type::<Cidr>(
        lua,
        [
            method(lua, "inc", |_, c: &Cidr, args| {
                c.counts.add(address(&args, 1)?, 1);
                Ok(())
            }),
            method(lua, "dec", |_, c: &Cidr, args| {
                c.counts.add(address(&args, 1)?, -1);
                Ok(())
            }),
            method(lua, "count", |_, c: &Cidr, args| {
                let (ip, len) = prefix(&args, 1)?;
                Ok(c.counts.count(ip, len, scope(&args, 2)?))
            }),
        ],
    )?;
    let n = node.clone();
    ecc.set(
        "gauge",
        function(lua, "gauge", move |lua, args| {
            let (name, table) = replicated(&n.get()?, &args, 1, "gauge table", |o| match o {
                SharedObject::Gauge(g) => Some(g),
                _ => None,
            })?;
            new_object(lua, Gauge { name, table })
        })?,
    )?;
    let n = node.clone();
    ecc.set(
        "cidr",
        function(lua, "cidr", move |lua, args| {
            let (name, counts) = replicated(&n.get()?, &args, 1, "cidrtree", |o| match o {
                SharedObject::Cidr(c) => Some(c),
                _ => None,
            })?;
            new_object(lua, Cidr { name, counts })
        })?,
    )
}
