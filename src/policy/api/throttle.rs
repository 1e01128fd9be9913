//! Cluster-wide throttles (`throttles(name)`: a `shared_named_throttles`,
//! `OBTM` or `OBTC` object), as the C API's `ecc_throttle_*`: a throttle
//! is defined once by name and limit, then checked and consumed on the hot
//! path.
//!
//! ```lua
//! local aol = ecc.throttles("shared_named_throttles"):define("aol", "100/60")
//! if aol:consume() then ... end       -- admitted and counted, or not
//! aol:check()                         -- would one more be admitted now?
//! aol:usage()                         -- this window's admissions, cluster-wide
//! ```
//!
//! Defining a name again with the same limit and epsilon gives the same
//! throttle (every policy state may define it); with others it is an
//! error.

use std::sync::Arc;

use mlua::{Lua, Table, Value};

use super::NodeRef;
use super::errors::function;
use super::object::{LuaObject, method, new_object, register as register_type, replicated, scope};
use crate::shared::SharedObject;
use crate::shared::throttle::{Throttle, ThrottleTable};

struct Throttles {
    name: String,
    table: Arc<ThrottleTable>,
}

impl LuaObject for Throttles {
    const TYPE: &'static str = "eccluster.throttles";
    fn describe(&self) -> String {
        self.name.clone()
    }
}

struct ThrottleObject(Arc<Throttle>);

impl LuaObject for ThrottleObject {
    const TYPE: &'static str = "eccluster.throttle";
    fn describe(&self) -> String {
        format!("{} {}", self.0.name(), self.0.limit())
    }
}

/// Adds `throttles` to `ecc`.
pub(super) fn register(lua: &Lua, ecc: &Table, node: &NodeRef) -> mlua::Result<()> {
    register_type::<Throttles>(
        lua,
        [
            method(lua, "define", |lua, t: &Throttles, args| {
                let name = args.string(1)?;
                let limit = args.string(2)?;
                let epsilon = match args.get(3) {
                    Value::Nil => None,
                    Value::Integer(i) => Some(*i as f64),
                    Value::Number(f) => Some(*f),
                    _ => return Err(args.expected(3, "number or nil")),
                };
                let throttle = t
                    .table
                    .define(&name, &limit, epsilon)
                    .map_err(|e| format!("define: {e}"))?;
                new_object(lua, ThrottleObject(throttle))
            }),
            method(lua, "get", |lua, t: &Throttles, args| {
                match t.table.get(&args.string(1)?) {
                    Some(throttle) => {
                        new_object(lua, ThrottleObject(throttle)).map(Value::UserData)
                    }
                    None => Ok(Value::Nil),
                }
            }),
        ],
    )?;
    register_type::<ThrottleObject>(
        lua,
        [
            method(lua, "check", |_, t: &ThrottleObject, _| Ok(t.0.check())),
            method(lua, "consume", |_, t: &ThrottleObject, args| {
                let n = args.opt_integer(1, 1, 0..=i64::MAX)?;
                Ok(t.0.consume_n(n.unsigned_abs()))
            }),
            method(lua, "usage", |_, t: &ThrottleObject, args| {
                Ok(t.0.usage(scope(&args, 1)?))
            }),
        ],
    )?;
    let n = node.clone();
    ecc.set(
        "throttles",
        function(lua, "throttles", move |lua, args| {
            let (name, table) = replicated(&n.get()?, &args, 1, "throttle object", |o| match o {
                SharedObject::Throttles(t) => Some(t),
                _ => None,
            })?;
            new_object(lua, Throttles { name, table })
        })?,
    )
}
