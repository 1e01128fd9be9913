//! The Momentum migration shim: the `msys.*` functions through which
//! Momentum policy reaches cluster data, with the reference's signatures
//! and option tables, mapped onto the node's replicated `metrics` objects,
//! so that a Momentum script's cluster parts run unchanged:
//!
//! ```lua
//! require("msys.audit_series")
//! msys.audit_series.define("rcpt", "string", 60, 10, { replicate = "cluster" })
//! msys.audit_series.add("rcpt", { key = "alice@example.com" })
//! msys.audit_series.count("rcpt", { key = "alice@example.com", startv = 0, endv = 4 })
//! require("msys.gauge_cache")
//! msys.gauge_cache.define("conns", 10000, 300, true)
//! msys.gauge_cache.inc("conns", "mx.example.com")
//! require("msys.audit")
//! msys.audit.connections("300,6", { cidr = "10.1.2.0/24", cluster = true })
//! ```
//!
//! Covered (momentum-notes §2.5, §2.6):
//!
//! * `msys.audit_series.define(name, type, interval, num_windows [, options])`:
//!   `type` `cidr`, `cidr_ipv6` or `string`; options `replicate` (`none`,
//!   the default, `cluster` or `manager`), `serialize` and `persist`
//!   (accepted and ignored: series are neither written to log files nor
//!   kept across restarts). `cluster` series live in the `metrics` object,
//!   `manager` ones in `eccmgr_metrics`, `none` ones in either (the
//!   `metrics` one first) without replicating, so a series needs one of
//!   those `Replicate` scopes even when it is local. Defining again with
//!   the same parameters is a no-op. Unlike the reference, a `cluster`
//!   series on a single node does count.
//! * `msys.audit_series.add(name [, options])` (`count`, default 1, and
//!   `key`; a non-table is the key), `.count(name [, options])`
//!   (`startv`, `endv`, both 0 by default, and `key`; the cluster-wide sum
//!   for a replicated series) and `.remove_item(name, key)`. CIDR keys are
//!   addresses, or `addr/mask` prefixes for `count` and `remove_item`.
//! * `msys.gauge_cache.define(name, maxelems, ttl [, replicated])`, `.inc(cache,
//!   key)`, `.dec(cache, key)`, `.get(cache, key)` (the cluster-wide value
//!   of a replicated cache) and `.remove_item(cache, key)`. Replicated
//!   caches live in the `metrics` object, local ones in any metrics object.
//! * `msys.audit.connections|receptions|rejections(monitor [, options])`:
//!   the series a `metrics` scope keeps for its `connect`, `reception` and
//!   `rejection` parameters (six windows of 300 s: the only monitor is
//!   `"300,6"`); options `startv`, `endv`, `cidr` and `cluster` (the
//!   cluster-wide count rather than this node's); a non-table is the cidr.
//! * `msys.audit.inbound_session_count(cidr, servicename)` for the service
//!   `inbound_cidr`: the cluster-wide count of the `inbound_cidr` object.
//!
//! Not covered: anything that needs the MTA's current connection, which
//! the engine does not know — an `accept_construct` as a key, a missing
//! key or cidr meaning the connecting IP, `/24`-style relative masks —
//! is an error asking for an explicit address; so are the services the
//! host MTA runs (`SMTP`, `ECStream`, `Control`, `ECmmove2`, `ECCluster`)
//! in `inbound_session_count`. No other `msys` namespace is provided.
//!
//! [`install_msys`] builds the `msys` table; [`preload_msys`] lets
//! `require("msys.audit_series")` (and `msys`, `msys.gauge_cache`,
//! `msys.audit`) find it, as the module does; the embedded engine maps its
//! sandboxed `require` to the same tables. Errors follow the `eccluster`
//! API's convention (`errors.rs`), naming the function in full.

use std::sync::Arc;

use mlua::{Lua, Table, Value};

use crate::config::model::ReplicationType;
use crate::node::Node;
use crate::policy::api::errors::{Args, function, type_name};
use crate::policy::api::{NodeRef, parse_prefix};
use crate::shared::metrics::{GaugeCacheHandle, Metrics, Replication, SeriesHandle};
use crate::shared::{Scope, SharedObject, wall_ms};

/// The sub-namespaces, as `require` names them.
const NAMESPACES: [&str; 3] = ["audit_series", "gauge_cache", "audit"];

/// The event series of a `metrics` scope (see `io::replication`) and the
/// only monitor they make.
const AUDIT_MONITOR: &str = "300,6";

/// Builds the `msys` table (`audit_series`, `gauge_cache`, `audit`) bound
/// to `node`; see the module docs.
pub fn install_msys(lua: &Lua, node: impl Into<NodeRef>) -> mlua::Result<Table> {
    let node = node.into();
    let msys = lua.create_table()?;
    msys.set("audit_series", audit_series(lua, &node)?)?;
    msys.set("gauge_cache", gauge_cache(lua, &node)?)?;
    msys.set("audit", audit(lua, &node)?)?;
    Ok(msys)
}

/// Adds `package.preload` entries for `msys` and `msys.<namespace>`: each
/// puts the namespace into the global `msys` (made if absent, extended if
/// the host has one) and returns it, as Momentum's `require` does. Does
/// nothing in a state without `package`.
pub fn preload_msys(lua: &Lua, msys: &Table) -> mlua::Result<()> {
    let Ok(package) = lua.globals().get::<Table>("package") else {
        return Ok(());
    };
    let preload: Table = package.get("preload")?;
    let ours = msys.clone();
    preload.set(
        "msys",
        lua.create_function(move |lua, ()| {
            let global = global_msys(lua)?;
            for ns in NAMESPACES {
                if global.raw_get::<Value>(ns)?.is_nil() {
                    global.set(ns, ours.get::<Table>(ns)?)?;
                }
            }
            Ok(global)
        })?,
    )?;
    for ns in NAMESPACES {
        let table: Table = msys.get(ns)?;
        preload.set(
            format!("msys.{ns}"),
            lua.create_function(move |lua, ()| {
                global_msys(lua)?.set(ns, &table)?;
                Ok(table.clone())
            })?,
        )?;
    }
    Ok(())
}

/// The global `msys`, made if absent.
fn global_msys(lua: &Lua) -> mlua::Result<Table> {
    match lua.globals().get::<Value>("msys")? {
        Value::Table(t) => Ok(t),
        _ => {
            let t = lua.create_table()?;
            lua.globals().set("msys", &t)?;
            Ok(t)
        }
    }
}

/// The node's metrics objects of `kind`, by configuration order.
fn metrics_of(node: &Node, kind: ReplicationType) -> Vec<(String, Arc<Metrics>)> {
    node.config()
        .cluster
        .replicate
        .iter()
        .filter(|r| r.kind == kind)
        .filter_map(|r| match node.shared_object(&r.name)? {
            SharedObject::Metrics(m) => Some((r.name.clone(), m)),
            _ => None,
        })
        .collect()
}

/// Every metrics object, `metrics` ones first.
fn all_metrics(node: &Node) -> Vec<(String, Arc<Metrics>)> {
    let mut all = metrics_of(node, ReplicationType::Metrics);
    all.extend(metrics_of(node, ReplicationType::EccmgrMetrics));
    all
}

/// Where a series or cache replicating `mode` lives, or what to configure.
fn home(node: &Node, mode: Replication) -> Result<Arc<Metrics>, String> {
    let candidates = match mode {
        Replication::Cluster => metrics_of(node, ReplicationType::Metrics),
        Replication::Manager => metrics_of(node, ReplicationType::EccmgrMetrics),
        Replication::None => all_metrics(node),
    };
    candidates.into_iter().next().map(|(_, m)| m).ok_or_else(|| {
        match mode {
            Replication::Manager => "replicate = \"manager\" needs a Replicate \"eccmgr_metrics\" scope in the cluster configuration",
            _ => "needs a Replicate \"metrics\" scope in the cluster configuration (parameters = \"audit_series;gauge_cache\")",
        }
        .to_string()
    })
}

/// The audit series `name`, wherever it was defined.
fn series(node: &Node, args: &Args, name: &str) -> Result<SeriesHandle, String> {
    all_metrics(node)
        .iter()
        .find_map(|(_, m)| m.series(name).ok())
        .ok_or_else(|| {
            args.bad(
                1,
                format!("no audit series named '{name}' (define it with msys.audit_series.define)"),
            )
        })
}

/// The gauge cache `name`, wherever it was defined.
fn cache(node: &Node, args: &Args, name: &str) -> Result<GaugeCacheHandle, String> {
    all_metrics(node)
        .iter()
        .find_map(|(_, m)| m.gauge_cache(name).ok())
        .ok_or_else(|| {
            args.bad(
                1,
                format!("no gauge cache named '{name}' (define it with msys.gauge_cache.define)"),
            )
        })
}

/// Argument `n`, an options table whose keys must be among `known`, or
/// `None` when it is not a table (the reference then takes it as the
/// key). A misspelt option is an error rather than silently ignored.
fn options(args: &Args, n: usize, known: &[&str]) -> Result<Option<Table>, String> {
    let Value::Table(t) = args.get(n) else {
        return Ok(None);
    };
    for pair in t.pairs::<Value, Value>() {
        let (k, _) = pair.map_err(|e| args.bad(n, e))?;
        let ok = matches!(&k, Value::String(s) if known.iter().any(|o| s.as_bytes().as_ref() == o.as_bytes()));
        if !ok {
            let what = match &k {
                Value::String(s) => format!("unknown option '{}'", s.to_string_lossy()),
                other => format!("option names are strings, got {}", type_name(other)),
            };
            return Err(args.bad(n, format!("{what} (known: {})", known.join(", "))));
        }
    }
    Ok(Some(t.clone()))
}

/// Option `key` of table argument `n` as an integer from `min`, or
/// `default`.
fn int_option(
    args: &Args,
    n: usize,
    t: &Table,
    key: &str,
    default: i64,
    min: i64,
) -> Result<i64, String> {
    match t.get::<Value>(key).map_err(|e| args.bad(n, e))? {
        Value::Nil => Ok(default),
        Value::Integer(i) if i >= min => Ok(i),
        Value::Number(f) if f.fract() == 0.0 && f >= min as f64 && f < 9.2e18 => Ok(f as i64),
        other => Err(args.bad(
            n,
            format!(
                "{key}: an integer from {min} expected, got {}",
                describe(&other)
            ),
        )),
    }
}

/// Option `key` of table argument `n` as a boolean, or `default`.
fn bool_option(args: &Args, n: usize, t: &Table, key: &str, default: bool) -> Result<bool, String> {
    match t.get::<Value>(key).map_err(|e| args.bad(n, e))? {
        Value::Nil => Ok(default),
        Value::Boolean(b) => Ok(b),
        other => Err(args.bad(
            n,
            format!("{key}: boolean expected, got {}", type_name(&other)),
        )),
    }
}

/// A value as a message shows it.
fn describe(v: &Value) -> String {
    match v {
        Value::Integer(i) => i.to_string(),
        Value::Number(f) => f.to_string(),
        other => type_name(other).to_string(),
    }
}

/// A key: a string (any bytes) or an integer, as Lua would turn it into
/// one. `what` names it in messages.
fn key_of(args: &Args, n: usize, v: &Value, what: &str) -> Result<Vec<u8>, String> {
    match v {
        Value::String(s) => Ok(s.as_bytes().to_vec()),
        Value::Integer(i) => Ok(i.to_string().into_bytes()),
        Value::Nil => Err(args.bad(
            n,
            format!("{what} is required: the engine does not know the MTA's current connection"),
        )),
        other => Err(args.bad(
            n,
            format!("{what}: string expected, got {}", type_name(other)),
        )),
    }
}

/// The key of `add` and `count`: option `key`, or argument `n` itself.
fn key_arg(args: &Args, n: usize, t: Option<&Table>) -> Result<Vec<u8>, String> {
    match t {
        Some(t) => {
            let v: Value = t.get("key").map_err(|e| args.bad(n, e))?;
            key_of(args, n, &v, "key")
        }
        None => key_of(args, n, args.get(n), "key"),
    }
}

fn audit_series(lua: &Lua, node: &NodeRef) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    let n = node.clone();
    t.set(
        "define",
        function(lua, "msys.audit_series.define", move |_, args| {
            let node = n.get()?;
            let name = args.string(1)?;
            let ty = args.string(2)?.parse().map_err(|e| args.bad(2, e))?;
            let interval = args.integer(3)?;
            let windows = args.integer(4)?;
            let (interval, windows) = match (u64::try_from(interval), u64::try_from(windows)) {
                (Ok(i), Ok(w)) => (i, w),
                (Err(_), _) => return Err(args.bad(3, "interval must be positive")),
                (_, Err(_)) => return Err(args.bad(4, "num_windows must be positive")),
            };
            let mut mode = Replication::None;
            if let Some(o) = options(&args, 5, &["replicate", "serialize", "persist"])? {
                bool_option(&args, 5, &o, "serialize", false)?;
                bool_option(&args, 5, &o, "persist", false)?;
                match o.get::<Value>("replicate").map_err(|e| args.bad(5, e))? {
                    Value::Nil => {}
                    Value::String(s) => {
                        mode = s.to_string_lossy().parse().map_err(|e| args.bad(5, e))?;
                    }
                    other => {
                        return Err(args.bad(
                            5,
                            format!("replicate: string expected, got {}", type_name(&other)),
                        ));
                    }
                }
            } else if !args.get(5).is_nil() {
                return Err(args.expected(5, "table or nil"));
            }
            let target = home(&node, mode).map_err(|e| format!("msys.audit_series.define: {e}"))?;
            if let Some((object, _)) = all_metrics(&node)
                .into_iter()
                .find(|(_, m)| !Arc::ptr_eq(m, &target) && m.series(&name).is_ok())
            {
                return Err(format!(
                    "msys.audit_series.define: '{name}' is already defined in '{object}' with another replicate"
                ));
            }
            target
                .define_series(&name, ty, interval, windows, mode)
                .map(|_| ())
                .map_err(|e| format!("msys.audit_series.define: {e}"))
        })?,
    )?;
    let n = node.clone();
    t.set(
        "add",
        function(lua, "msys.audit_series.add", move |_, args| {
            let node = n.get()?;
            let series = series(&node, &args, &args.string(1)?)?;
            let o = options(&args, 2, &["count", "key"])?;
            let count = match &o {
                Some(o) => int_option(&args, 2, o, "count", 1, i64::MIN)?,
                None => 1,
            };
            let key = key_arg(&args, 2, o.as_ref())?;
            series
                .add(&key, count, wall_ms())
                .map_err(|e| args.bad(2, e))
        })?,
    )?;
    let n = node.clone();
    t.set(
        "count",
        function(lua, "msys.audit_series.count", move |_, args| {
            let node = n.get()?;
            let series = series(&node, &args, &args.string(1)?)?;
            let o = options(&args, 2, &["startv", "endv", "key"])?;
            let (startv, endv) = match &o {
                Some(o) => (
                    int_option(&args, 2, o, "startv", 0, 0)?,
                    int_option(&args, 2, o, "endv", 0, 0)?,
                ),
                None => (0, 0),
            };
            let key = key_arg(&args, 2, o.as_ref())?;
            series
                .count(
                    &key,
                    startv.unsigned_abs(),
                    endv.unsigned_abs(),
                    Scope::Global,
                    wall_ms(),
                )
                .map_err(|e| args.bad(2, e))
        })?,
    )?;
    let n = node.clone();
    t.set(
        "remove_item",
        function(lua, "msys.audit_series.remove_item", move |_, args| {
            let node = n.get()?;
            let series = series(&node, &args, &args.string(1)?)?;
            let key = key_of(&args, 2, args.get(2), "key")?;
            series.remove_item(&key).map_err(|e| args.bad(2, e))
        })?,
    )?;
    Ok(t)
}

fn gauge_cache(lua: &Lua, node: &NodeRef) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    let n = node.clone();
    t.set(
        "define",
        function(lua, "msys.gauge_cache.define", move |_, args| {
            let node = n.get()?;
            let name = args.string(1)?;
            let maxelems = usize::try_from(args.integer(2)?)
                .map_err(|_| args.bad(2, "maxelems must be positive"))?;
            let ttl = u64::try_from(args.integer(3)?)
                .map_err(|_| args.bad(3, "ttl must be 0 (never) or more seconds"))?;
            let replicated = args.opt_boolean(4, false)?;
            let mode = if replicated {
                Replication::Cluster
            } else {
                Replication::None
            };
            let target = home(&node, mode).map_err(|e| format!("msys.gauge_cache.define: {e}"))?;
            if let Some((object, _)) = all_metrics(&node)
                .into_iter()
                .find(|(_, m)| !Arc::ptr_eq(m, &target) && m.gauge_cache(&name).is_ok())
            {
                return Err(format!(
                    "msys.gauge_cache.define: '{name}' is already defined in '{object}' with another replicated"
                ));
            }
            target
                .define_gauge_cache(&name, maxelems, ttl, replicated)
                .map(|_| ())
                .map_err(|e| format!("msys.gauge_cache.define: {e}"))
        })?,
    )?;
    type Op = fn(&GaugeCacheHandle, &[u8]) -> Result<Value, String>;
    let ops: [(&'static str, &'static str, Op); 4] = [
        ("inc", "msys.gauge_cache.inc", |c, k| {
            c.inc(k, wall_ms())
                .map(|_| Value::Nil)
                .map_err(|e| e.to_string())
        }),
        ("dec", "msys.gauge_cache.dec", |c, k| {
            c.dec(k, wall_ms())
                .map(|_| Value::Nil)
                .map_err(|e| e.to_string())
        }),
        ("get", "msys.gauge_cache.get", |c, k| {
            Ok(Value::Integer(c.get(k, Scope::Global, wall_ms())))
        }),
        ("remove_item", "msys.gauge_cache.remove_item", |c, k| {
            c.remove_item(k);
            Ok(Value::Nil)
        }),
    ];
    for (key, name, op) in ops {
        let n = node.clone();
        t.set(
            key,
            function(lua, name, move |_, args| {
                let node = n.get()?;
                let cache = cache(&node, &args, &args.string(1)?)?;
                let k = key_of(&args, 2, args.get(2), "key")?;
                op(&cache, &k).map_err(|e| args.bad(2, e))
            })?,
        )?;
    }
    Ok(t)
}

fn audit(lua: &Lua, node: &NodeRef) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    for (key, name, series, parameter) in [
        (
            "connections",
            "msys.audit.connections",
            "connections",
            "connect",
        ),
        (
            "receptions",
            "msys.audit.receptions",
            "receptions",
            "reception",
        ),
        (
            "rejections",
            "msys.audit.rejections",
            "rejections",
            "rejection",
        ),
    ] {
        let n = node.clone();
        t.set(
            key,
            function(lua, name, move |_, args| {
                audit_count(&n.get()?, &args, series, parameter)
            })?,
        )?;
    }
    let n = node.clone();
    t.set(
        "inbound_session_count",
        function(lua, "msys.audit.inbound_session_count", move |_, args| {
            let node = n.get()?;
            let (ip, len) = cidr(&args, 1, args.get(1))?;
            let service = args.string(2)?;
            if service != "inbound_cidr" {
                return Err(args.bad(
                    2,
                    format!(
                        "service '{service}': the engine counts only 'inbound_cidr'; SMTP, ECStream, Control, ECmmove2 and ECCluster sessions are the MTA's"
                    ),
                ));
            }
            let counts = inbound_cidr(&node).ok_or_else(|| {
                "msys.audit.inbound_session_count: needs Replicate \"inbound_cidr\" in the cluster configuration"
                    .to_string()
            })?;
            Ok(counts.count(ip, len, Scope::Global))
        })?,
    )?;
    Ok(t)
}

/// The node's `inbound_cidr` object.
fn inbound_cidr(node: &Node) -> Option<Arc<crate::shared::cidr::CidrCounts>> {
    node.config()
        .cluster
        .replicate
        .iter()
        .filter(|r| r.kind == ReplicationType::InboundCidr)
        .find_map(|r| node.shared_cidr(&r.name))
}

/// A cidr argument or option: an address or `addr/mask`.
fn cidr(args: &Args, n: usize, v: &Value) -> Result<(std::net::IpAddr, u8), String> {
    let text = match v {
        Value::String(s) => s.to_string_lossy(),
        Value::Nil => {
            return Err(args.bad(
                n,
                "cidr is required: the engine does not know the MTA's connecting IP",
            ));
        }
        other => {
            return Err(args.bad(
                n,
                format!("cidr: string expected, got {}", type_name(other)),
            ));
        }
    };
    if text.trim_start().starts_with('/') {
        return Err(args.bad(
            n,
            format!("cidr '{text}' is relative to the connecting IP, which the engine does not know: give addr/mask"),
        ));
    }
    parse_prefix(&text)
        .ok_or_else(|| args.bad(n, format!("cidr '{text}' is not an address or addr/mask")))
}

/// `msys.audit.connections` and friends: the `series` a `metrics` scope
/// keeps for its `parameter`.
fn audit_count(node: &Node, args: &Args, series: &str, parameter: &str) -> Result<i64, String> {
    let monitor = args.string(1)?;
    if monitor.split_whitespace().collect::<String>() != AUDIT_MONITOR {
        return Err(args.bad(
            1,
            format!(
                "monitor '{monitor}' is not configured: the metrics object keeps six windows of 300 s (monitor \"{AUDIT_MONITOR}\")"
            ),
        ));
    }
    let o = options(args, 2, &["startv", "endv", "cidr", "cluster"])?;
    let (startv, endv, cluster, cidr_value) = match &o {
        Some(o) => (
            int_option(args, 2, o, "startv", 0, 0)?,
            int_option(args, 2, o, "endv", 0, 0)?,
            bool_option(args, 2, o, "cluster", false)?,
            o.get::<Value>("cidr").map_err(|e| args.bad(2, e))?,
        ),
        None => (0, 0, false, args.get(2).clone()),
    };
    let (ip, len) = cidr(args, 2, &cidr_value)?;
    let name = if ip.is_ipv4() {
        series.to_string()
    } else {
        format!("{series}_ipv6")
    };
    let handle = all_metrics(node)
        .iter()
        .find_map(|(_, m)| m.series(&name).ok())
        .ok_or_else(|| {
            format!(
                "{}: needs Replicate \"metrics\" {{ parameters = \"{parameter}\" }} in the cluster configuration",
                args.name()
            )
        })?;
    let scope = if cluster { Scope::Global } else { Scope::Local };
    let key = format!("{ip}/{len}");
    handle
        .count(
            key.as_bytes(),
            startv.unsigned_abs(),
            endv.unsigned_abs(),
            scope,
            wall_ms(),
        )
        .map_err(|e| args.bad(2, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Format, LoadedConfig};
    use crate::policy::api::tests::Fixture;

    #[test]
    fn momentum_snippets_run_against_the_metrics_objects() {
        let f = Fixture::new("msys");
        let msys = install_msys(&f.lua, &f.node).unwrap();
        preload_msys(&f.lua, &msys).unwrap();
        f.run(
            r#"
            assert(msys == nil, "nothing global before a require")
            local as = require("msys.audit_series")
            assert(msys.audit_series == as)

            msys.audit_series.define("rcpt", "string", 60, 10, { replicate = "cluster" })
            -- Again, with the options accepted and ignored: the same series.
            msys.audit_series.define("rcpt", "string", 60, 10,
              { replicate = "cluster", serialize = false, persist = true })
            msys.audit_series.add("rcpt", { key = "alice@example.com" })
            msys.audit_series.add("rcpt", { key = "alice@example.com", count = 2 })
            msys.audit_series.add("rcpt", "alice@example.com")
            -- Windows 0 and 1, so that a window rolling over counts too.
            assert(msys.audit_series.count("rcpt", { key = "alice@example.com", endv = 1 }) == 4)
            -- A cluster series lives in the metrics object, as the native API sees.
            assert(ecc.metrics("metrics"):series("rcpt"):count("alice@example.com", 0, 1) == 4)
            msys.audit_series.remove_item("rcpt", "alice@example.com")
            assert(msys.audit_series.count("rcpt", { key = "alice@example.com", endv = 1 }) == 0)

            msys.audit_series.define("ips", "cidr", 60, 2)
            msys.audit_series.add("ips", "10.1.2.3")
            msys.audit_series.add("ips", { key = "10.1.2.4" })
            assert(msys.audit_series.count("ips", { key = "10.1.2.0/24", endv = 1 }) == 2)
            msys.audit_series.define("mgr", "string", 60, 2, { replicate = "manager" })
            assert(ecc.metrics("eccmgr_metrics"):series("mgr"))

            fails("bad argument #5 to 'msys.audit_series.define' (unknown option 'replicat' (known: replicate, serialize, persist))",
              msys.audit_series.define, "x", "string", 60, 1, { replicat = "cluster" })
            fails("unknown replication 'everywhere'",
              msys.audit_series.define, "x", "string", 60, 1, { replicate = "everywhere" })
            fails("serialize: boolean expected, got string",
              msys.audit_series.define, "x", "string", 60, 1, { serialize = "yes" })
            fails("bad argument #5 to 'msys.audit_series.define' (table or nil expected, got string)",
              msys.audit_series.define, "x", "string", 60, 1, "cluster")
            fails("msys.audit_series.define: 'rcpt' is already defined in 'metrics' with another replicate",
              msys.audit_series.define, "rcpt", "string", 60, 10, { replicate = "manager" })
            fails("msys.audit_series.define: 'rcpt' is already defined with other parameters",
              msys.audit_series.define, "rcpt", "string", 30, 10, { replicate = "cluster" })
            fails("bad argument #1 to 'msys.audit_series.add' (no audit series named 'nope'",
              msys.audit_series.add, "nope", "k")
            fails("key is required: the engine does not know the MTA's current connection",
              msys.audit_series.add, "rcpt", { count = 1 })
            fails("count: an integer from -9223372036854775808 expected, got 1.5",
              msys.audit_series.add, "rcpt", { key = "k", count = 1.5 })
            fails("'10.1.2' is not an IPv4 address or prefix", msys.audit_series.add, "ips", "10.1.2")

            require("msys.gauge_cache")
            msys.gauge_cache.define("conns", 100, 300, true)
            msys.gauge_cache.define("conns", 100, 300, true)
            msys.gauge_cache.inc("conns", "mx.example.com")
            msys.gauge_cache.inc("conns", "mx.example.com")
            msys.gauge_cache.dec("conns", "mx.example.com")
            assert(msys.gauge_cache.get("conns", "mx.example.com") == 1)
            assert(ecc.metrics("metrics"):gauge_cache("conns"):get("mx.example.com") == 1)
            msys.gauge_cache.remove_item("conns", "mx.example.com")
            assert(msys.gauge_cache.get("conns", "mx.example.com") == 0)
            msys.gauge_cache.define("local", 10, 0)
            msys.gauge_cache.inc("local", 42)
            assert(msys.gauge_cache.get("local", "42") == 1, "an integer key is its text")
            fails("bad argument #1 to 'msys.gauge_cache.inc' (no gauge cache named 'nope'",
              msys.gauge_cache.inc, "nope", "k")
            fails("bad argument #2 to 'msys.gauge_cache.define' (maxelems must be positive)",
              msys.gauge_cache.define, "x", -1, 1)
            fails("bad argument #2 to 'msys.gauge_cache.get' (key: string expected, got table)",
              msys.gauge_cache.get, "conns", {})

            require("msys.audit")
            ecc.metrics("metrics"):series("connections"):add("10.1.2.3", 5)
            assert(msys.audit.connections("300,6", { cidr = "10.1.2.0/24", cluster = true, endv = 1 }) == 5)
            assert(msys.audit.connections("300,6", { cidr = "10.1.2.3", endv = 1 }) == 5)
            local n = msys.audit.connections("300,6", "10.1.2.3")
            assert(math.type(n) == "integer" and n >= 0 and n <= 5)
            assert(msys.audit.receptions("300,6", { cidr = "2001:db8::1", endv = 1 }) == 0)
            assert(msys.audit.rejections("300, 6", "10.1.2.3") == 0)
            fails("bad argument #1 to 'msys.audit.connections' (monitor '60,1' is not configured",
              msys.audit.connections, "60,1", "10.1.2.3")
            fails("cidr '/24' is relative to the connecting IP", msys.audit.connections, "300,6", "/24")
            fails("cidr is required", msys.audit.connections, "300,6")
            fails("unknown option 'cdir'", msys.audit.connections, "300,6", { cdir = "10.0.0.1" })
            local c = ecc.cidr("inbound_cidr")
            c:inc("10.9.0.1"); c:inc("10.9.0.2")
            assert(msys.audit.inbound_session_count("10.9.0.0/16", "inbound_cidr") == 2)
            assert(msys.audit.inbound_session_count("10.9.0.1", "inbound_cidr") == 1)
            fails("service 'SMTP': the engine counts only 'inbound_cidr'",
              msys.audit.inbound_session_count, "10.9.0.0/16", "SMTP")

            -- `require "msys"` fills in every namespace.
            assert(require("msys") == msys and msys.audit and msys.gauge_cache and msys.audit_series)
            "#,
        );
    }

    #[test]
    fn a_host_msys_is_extended_and_missing_scopes_are_named() {
        let config = LoadedConfig::parse("[cluster]\nnodename = \"bare\"\n", Format::Toml)
            .unwrap()
            .config;
        let node = Node::new(config);
        let lua = Lua::new();
        let msys = install_msys(&lua, &node).unwrap();
        preload_msys(&lua, &msys).unwrap();
        lua.load(
            r#"
            msys = { core = { VALIDATE_CONT = 0 } }
            require("msys.audit_series")
            assert(msys.core.VALIDATE_CONT == 0 and msys.audit_series.define)
            local ok, err = pcall(msys.audit_series.define, "x", "string", 60, 1)
            assert(not ok and err:find('needs a Replicate "metrics" scope', 1, true), err)
            ok, err = pcall(msys.audit_series.define, "x", "string", 60, 1, { replicate = "manager" })
            assert(not ok and err:find('needs a Replicate "eccmgr_metrics" scope', 1, true), err)
            require("msys.audit")
            ok, err = pcall(msys.audit.connections, "300,6", "10.0.0.1")
            assert(not ok and err:find('needs Replicate "metrics" { parameters = "connect" }', 1, true), err)
            ok, err = pcall(msys.audit.inbound_session_count, "10.0.0.1", "inbound_cidr")
            assert(not ok and err:find('needs Replicate "inbound_cidr"', 1, true), err)
            "#,
        )
        .exec()
        .unwrap();
    }
}
