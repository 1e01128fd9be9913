//! Replicated key/value caches (`cache(name)`: a `Replicate` scope of
//! `type = "cache"`), the Sieve `ec_cluster_cache_get/set` and the C API's
//! `ecc_cache_*`: one value per key for the whole cluster, last writer
//! wins.
//!
//! ```lua
//! local seen = ecc.cache("greylist")
//! seen:set("192.0.2.7", "1", "5M")     -- ttl: seconds, "5M", "2H"; 0 (default): never expires
//! seen:get("192.0.2.7")                --> "1", or nil when absent or expired
//! seen:delete("192.0.2.7")
//! ```

use std::sync::Arc;

use mlua::{Lua, Table, Value};

use super::NodeRef;
use super::errors::{Args, function};
use super::object::{LuaObject, method, new_object, register as register_type, replicated};
use crate::shared::SharedObject;
use crate::shared::cache::{ClusterCache, parse_ttl};

struct Cache {
    name: String,
    cache: Arc<ClusterCache>,
}

impl LuaObject for Cache {
    const TYPE: &'static str = "eccluster.cache";
    fn describe(&self) -> String {
        self.name.clone()
    }
}

/// A TTL argument: whole seconds as a number, or text as
/// `ec_cluster_cache_set` takes it; nil is 0, never expires.
fn ttl(args: &Args, n: usize) -> Result<u64, String> {
    match args.get(n) {
        Value::Nil => Ok(0),
        Value::String(_) => parse_ttl(&args.string(n)?).map_err(|e| args.bad(n, e)),
        _ => args.opt_integer(n, 0, 0..=i64::MAX).map(i64::unsigned_abs),
    }
}

/// Adds `cache` to `ecc`.
pub(super) fn register(lua: &Lua, ecc: &Table, node: &NodeRef) -> mlua::Result<()> {
    register_type::<Cache>(
        lua,
        [
            method(lua, "get", |lua, c: &Cache, args| {
                let key = args.bytes(1)?;
                match c.cache.get(&key.as_bytes()) {
                    Some(v) => lua
                        .create_string(v)
                        .map(Value::String)
                        .map_err(|e| format!("get: {e}")),
                    None => Ok(Value::Nil),
                }
            }),
            method(lua, "set", |_, c: &Cache, args| {
                let key = args.bytes(1)?;
                let value = args.bytes(2)?;
                let ttl = ttl(&args, 3)?;
                c.cache
                    .set(&key.as_bytes(), &value.as_bytes(), ttl)
                    .map_err(|e| format!("set: {e}"))
            }),
            method(lua, "delete", |_, c: &Cache, args| {
                let key = args.bytes(1)?;
                c.cache
                    .remove(&key.as_bytes())
                    .map_err(|e| format!("delete: {e}"))
            }),
        ],
    )?;
    let n = node.clone();
    ecc.set(
        "cache",
        function(lua, "cache", move |lua, args| {
            let (name, cache) = replicated(&n.get()?, &args, 1, "cache", |o| match o {
                SharedObject::Cache(c) => Some(c),
                _ => None,
            })?;
            new_object(lua, Cache { name, cache })
        })?,
    )
}
