//! The API's Lua objects (a gauge table, a throttle, a journal...): one
//! userdata type per Rust type, whose methods are wrapped Lua functions
//! (see `errors.rs`) kept in a table that the userdata's `__index` points
//! at; and how an object is found by name among the node's replicated
//! ones, with errors that say what is configured.

use std::net::IpAddr;

use mlua::{AnyUserData, Function, IntoLuaMulti, Lua, Table, UserData};

use super::errors::{Args, function};
use crate::node::Node;
use crate::shared::{Scope, SharedObject};

/// A Rust value Lua holds as an object of the API.
pub(crate) trait LuaObject: Sized + 'static {
    /// Its type name in messages and `tostring` (`eccluster.gauge`).
    const TYPE: &'static str;

    /// What `tostring` says after the type name.
    fn describe(&self) -> String;
}

/// The userdata wrapping a [`LuaObject`].
pub(crate) struct Object<T>(pub T);

/// The registry key of `T`'s methods table.
fn methods_key<T: LuaObject>() -> String {
    format!("{}.methods", T::TYPE)
}

impl<T: LuaObject> UserData for Object<T> {
    fn add_fields<F: mlua::UserDataFields<Self>>(fields: &mut F) {
        fields.add_meta_field_with("__index", |lua| {
            lua.named_registry_value::<Table>(&methods_key::<T>())
        });
        fields.add_meta_field("__name", T::TYPE);
    }

    fn add_methods<M: mlua::UserDataMethods<Self>>(methods: &mut M) {
        methods.add_meta_method("__tostring", |_, this, ()| {
            Ok(format!("{}: {}", T::TYPE, this.0.describe()))
        });
    }
}

/// A method of `T` objects: `f` gets the object and the arguments after
/// it, numbered from 1 as Lua numbers them in messages.
pub(crate) fn method<T, R>(
    lua: &Lua,
    name: &'static str,
    f: impl Fn(&Lua, &T, Args) -> Result<R, String> + 'static,
) -> mlua::Result<(&'static str, Function)>
where
    T: LuaObject,
    R: IntoLuaMulti,
{
    let function = function(lua, name, move |lua, args| {
        let this = args.this::<Object<T>>(T::TYPE)?;
        f(lua, &this.0, args.after_self())
    })?;
    Ok((name, function))
}

/// Makes `methods` the methods of `T` objects in this Lua state.
pub(crate) fn register<T: LuaObject>(
    lua: &Lua,
    methods: impl IntoIterator<Item = mlua::Result<(&'static str, Function)>>,
) -> mlua::Result<()> {
    let table = lua.create_table()?;
    for m in methods {
        let (name, f) = m?;
        table.set(name, f)?;
    }
    lua.set_named_registry_value(&methods_key::<T>(), table)
}

/// A new `T` object for Lua.
pub(crate) fn new_object<T: LuaObject>(lua: &Lua, value: T) -> Result<AnyUserData, String> {
    lua.create_userdata(Object(value))
        .map_err(|e| format!("{}: {e}", T::TYPE))
}

/// The API function that opens an object of this kind.
fn opener(object: &SharedObject) -> &'static str {
    match object {
        SharedObject::Cidr(_) => "cidr",
        SharedObject::Gauge(_) => "gauge",
        SharedObject::Throttles(_) => "throttles",
        SharedObject::Metrics(_) => "metrics",
        SharedObject::Cache(_) => "cache",
    }
}

/// The replicated object named by argument `n`, as `pick` wants it (a
/// `kind`), with its name, or an error naming what the configuration has.
pub(crate) fn replicated<T>(
    node: &Node,
    args: &Args,
    n: usize,
    kind: &str,
    pick: impl FnOnce(SharedObject) -> Option<T>,
) -> Result<(String, T), String> {
    let name = args.string(n)?;
    let Some(object) = node.shared_object(&name) else {
        let configured: Vec<String> = node
            .config()
            .cluster
            .replicate
            .iter()
            .filter_map(|r| {
                let o = node.shared_object(&r.name)?;
                Some(format!("{} ({})", r.name, o.kind()))
            })
            .collect();
        let have = if configured.is_empty() {
            "the configuration has no Replicate scope".to_string()
        } else {
            format!("configured: {}", configured.join(", "))
        };
        return Err(args.bad(n, format!("no replicated object '{name}'; {have}")));
    };
    let (is, open) = (object.kind(), opener(&object));
    match pick(object) {
        Some(t) => Ok((name, t)),
        None => Err(args.bad(
            n,
            format!("'{name}' is a {is}, not a {kind}: open it with eccluster.{open}"),
        )),
    }
}

/// A scope argument: "cluster" (the default: every node's count) or
/// "local" (this node's).
pub(crate) fn scope(args: &Args, n: usize) -> Result<Scope, String> {
    match args.opt_string(n)?.as_deref() {
        None | Some("cluster") => Ok(Scope::Global),
        Some("local") => Ok(Scope::Local),
        Some(other) => Err(args.bad(n, format!("scope '{other}': expected 'cluster' or 'local'"))),
    }
}

/// An address argument (`"192.0.2.7"`, `"2001:db8::1"`).
pub(crate) fn address(args: &Args, n: usize) -> Result<IpAddr, String> {
    let text = args.string(n)?;
    text.trim()
        .parse()
        .map_err(|_| args.bad(n, format!("'{text}' is not an IP address")))
}

/// A prefix argument: `"10.1.0.0/16"`, or an address for itself alone.
pub(crate) fn prefix(args: &Args, n: usize) -> Result<(IpAddr, u8), String> {
    let text = args.string(n)?;
    parse_prefix(&text).ok_or_else(|| {
        args.bad(
            n,
            format!("'{text}' is not an address or a prefix such as 10.1.0.0/16"),
        )
    })
}

/// `"10.1.0.0/16"` or an address (the whole of it); the length must fit
/// the family.
pub(crate) fn parse_prefix(text: &str) -> Option<(IpAddr, u8)> {
    let text = text.trim();
    let (addr, len) = match text.split_once('/') {
        Some((a, l)) => (a, Some(l.parse::<u8>().ok()?)),
        None => (text, None),
    };
    let ip: IpAddr = addr.parse().ok()?;
    let full = if ip.is_ipv4() { 32 } else { 128 };
    match len {
        None => Some((ip, full)),
        Some(l) if l <= full => Some((ip, l)),
        Some(_) => None,
    }
}
