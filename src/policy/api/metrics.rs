//! Audit series and gauge caches (`metrics(name)`: a `metrics` or
//! `eccmgr_metrics` object), as the C API's `ecc_audit_series_*` and
//! `ecc_gauge_cache_*`. Series and caches are defined once by name (every
//! policy state may define them alike), then used through their objects.
//!
//! ```lua
//! local m = ecc.metrics("metrics")
//! local rcpt = m:define_series("rcpt", "string", 60, 10)   -- 10 windows of 60 s
//! rcpt:add("alice@example.com")                            -- count 1 in window 0
//! rcpt:count("alice@example.com", 0, 4)                    -- windows 0-4, cluster-wide
//! local conns = m:define_gauge_cache("conns", 10000, 300)  -- 300 s TTL
//! conns:inc("mx.example.com")                              --> this node's new count
//! conns:get("mx.example.com")                              --> the cluster's
//! ```
//!
//! Here a series or cache replicates through the object it is defined in
//! unless told otherwise (`replicate = "none"`, `replicated = false`);
//! `msys.audit_series` keeps Momentum's default, local.

use std::sync::Arc;

use mlua::{Lua, Table};

use super::NodeRef;
use super::errors::{Args, function};
use super::object::{LuaObject, method, new_object, register as register_type, replicated, scope};
use crate::shared::metrics::{GaugeCacheHandle, Metrics, Replication, SeriesHandle};
use crate::shared::{SharedObject, wall_ms};

struct MetricsObject {
    name: String,
    metrics: Arc<Metrics>,
}

impl LuaObject for MetricsObject {
    const TYPE: &'static str = "eccluster.metrics";
    fn describe(&self) -> String {
        self.name.clone()
    }
}

struct Series(SeriesHandle);

impl LuaObject for Series {
    const TYPE: &'static str = "eccluster.series";
    fn describe(&self) -> String {
        self.0.name().to_string()
    }
}

struct GaugeCache(GaugeCacheHandle);

impl LuaObject for GaugeCache {
    const TYPE: &'static str = "eccluster.gauge_cache";
    fn describe(&self) -> String {
        self.0.name().to_string()
    }
}

/// The name a replication mode has in Lua.
fn mode_name(mode: Replication) -> &'static str {
    match mode {
        Replication::None => "none",
        Replication::Cluster => "cluster",
        Replication::Manager => "manager",
    }
}

/// A `replicate` argument for a series of `m`: its own mode by default,
/// or "none"; another object's mode is an error (the series would not go
/// where the caller thinks).
fn replicate(m: &MetricsObject, args: &Args, n: usize) -> Result<Replication, String> {
    let carries = m.metrics.carries();
    let Some(text) = args.opt_string(n)? else {
        return Ok(carries);
    };
    let mode: Replication = text.parse().map_err(|e| args.bad(n, e))?;
    if mode != Replication::None && mode != carries {
        return Err(args.bad(
            n,
            format!(
                "'{}' replicates '{}', not '{text}' (an {} object does)",
                m.name,
                mode_name(carries),
                if mode == Replication::Manager {
                    "eccmgr_metrics"
                } else {
                    "metrics"
                }
            ),
        ));
    }
    Ok(mode)
}

/// A non-negative integer argument that must be present.
fn count_arg(args: &Args, n: usize) -> Result<u64, String> {
    let i = args.integer(n)?;
    u64::try_from(i).map_err(|_| args.bad(n, format!("{i} is negative")))
}

/// Adds `metrics` to `ecc`.
pub(super) fn register(lua: &Lua, ecc: &Table, node: &NodeRef) -> mlua::Result<()> {
    register_type::<MetricsObject>(
        lua,
        [
            method(lua, "define_series", |lua, m: &MetricsObject, args| {
                let name = args.string(1)?;
                let ty = args.string(2)?.parse().map_err(|e| args.bad(2, e))?;
                let interval = count_arg(&args, 3)?;
                let windows = count_arg(&args, 4)?;
                let mode = replicate(m, &args, 5)?;
                let series = m
                    .metrics
                    .define_series(&name, ty, interval, windows, mode)
                    .map_err(|e| format!("define_series: {e}"))?;
                new_object(lua, Series(series))
            }),
            method(lua, "series", |lua, m: &MetricsObject, args| {
                let series = m
                    .metrics
                    .series(&args.string(1)?)
                    .map_err(|e| args.bad(1, e))?;
                new_object(lua, Series(series))
            }),
            method(lua, "define_gauge_cache", |lua, m: &MetricsObject, args| {
                let name = args.string(1)?;
                let maxelems =
                    usize::try_from(count_arg(&args, 2)?).map_err(|_| args.bad(2, "too large"))?;
                let ttl = count_arg(&args, 3)?;
                let replicated = args.opt_boolean(4, true)?;
                let cache = m
                    .metrics
                    .define_gauge_cache(&name, maxelems, ttl, replicated)
                    .map_err(|e| format!("define_gauge_cache: {e}"))?;
                new_object(lua, GaugeCache(cache))
            }),
            method(lua, "gauge_cache", |lua, m: &MetricsObject, args| {
                let cache = m
                    .metrics
                    .gauge_cache(&args.string(1)?)
                    .map_err(|e| args.bad(1, e))?;
                new_object(lua, GaugeCache(cache))
            }),
        ],
    )?;
    register_type::<Series>(
        lua,
        [
            method(lua, "add", |_, s: &Series, args| {
                let key = args.bytes(1)?;
                let count = args.opt_integer(2, 1, i64::MIN..=i64::MAX)?;
                s.0.add(&key.as_bytes(), count, wall_ms())
                    .map_err(|e| format!("add: {e}"))
            }),
            method(lua, "count", |_, s: &Series, args| {
                let key = args.bytes(1)?;
                let startv = args.opt_integer(2, 0, 0..=i64::MAX)?.unsigned_abs();
                let endv = args.opt_integer(3, 0, 0..=i64::MAX)?.unsigned_abs();
                s.0.count(&key.as_bytes(), startv, endv, scope(&args, 4)?, wall_ms())
                    .map_err(|e| format!("count: {e}"))
            }),
            method(lua, "remove_item", |_, s: &Series, args| {
                let key = args.bytes(1)?;
                s.0.remove_item(&key.as_bytes())
                    .map_err(|e| format!("remove_item: {e}"))
            }),
        ],
    )?;
    register_type::<GaugeCache>(
        lua,
        [
            method(lua, "inc", |_, c: &GaugeCache, args| {
                let key = args.bytes(1)?;
                c.0.inc(&key.as_bytes(), wall_ms())
                    .map_err(|e| format!("inc: {e}"))
            }),
            method(lua, "dec", |_, c: &GaugeCache, args| {
                let key = args.bytes(1)?;
                c.0.dec(&key.as_bytes(), wall_ms())
                    .map_err(|e| format!("dec: {e}"))
            }),
            method(lua, "get", |_, c: &GaugeCache, args| {
                let key = args.bytes(1)?;
                Ok(c.0.get(&key.as_bytes(), scope(&args, 2)?, wall_ms()))
            }),
            method(lua, "remove_item", |_, c: &GaugeCache, args| {
                let key = args.bytes(1)?;
                c.0.remove_item(&key.as_bytes());
                Ok(())
            }),
        ],
    )?;
    let n = node.clone();
    ecc.set(
        "metrics",
        function(lua, "metrics", move |lua, args| {
            let (name, metrics) = replicated(&n.get()?, &args, 1, "metrics object", |o| match o {
                SharedObject::Metrics(m) => Some(m),
                _ => None,
            })?;
            new_object(lua, MetricsObject { name, metrics })
        })?,
    )
}
