//! How failures reach Lua: every function of the API raises a plain
//! string error, with the caller's position, as Lua's own libraries do
//! (`log.lua:12: bad argument #1 to 'append' (string expected, got nil)`).
//!
//! mlua raises a Rust function's `Err` as a userdata wrapping the error
//! (with a traceback and a "runtime error:" prefix), which a script can
//! only `tostring`. So each Rust function here is *raw*: it returns `true`
//! and its results, or `false` and a message, never raising; and the
//! API exposes it through a two-line Lua wrapper ([`WRAP`]) that turns
//! `false, message` into `error(message, 2)`. The raw functions are kept
//! as upvalues of their wrappers, out of scripts' reach.
//!
//! A panic in a raw function is caught there and becomes an error like any
//! other (`eccluster: internal error in 'append': ...`), so it never
//! unwinds into Lua's C frames. (mlua would also catch it, at the edge of
//! every callback, and raise it as an error; this keeps the message a
//! string.)

use std::panic::{AssertUnwindSafe, catch_unwind};

use mlua::{Function, IntoLuaMulti, Lua, MultiValue, Value};

/// The Lua side of the convention above. `check` tail-calls out of the
/// wrapper, so level 2 is the script that called the wrapper.
const WRAP: &str = r#"
local error = error
local function check(ok, ...)
  if ok then
    return ...
  end
  error((...), 2)
end
return function(raw)
  return function(...)
    return check(raw(...))
  end
end
"#;

/// The Lua function `name` of the API: `f` is its body, returning its
/// results or the message of the error to raise.
pub fn function<F, R>(lua: &Lua, name: &'static str, f: F) -> mlua::Result<Function>
where
    F: Fn(&Lua, Args) -> Result<R, String> + 'static,
    R: IntoLuaMulti,
{
    let raw = lua.create_function(move |lua, args: MultiValue| {
        let args = Args {
            name,
            args,
            offset: 0,
        };
        match catch_unwind(AssertUnwindSafe(|| f(lua, args))) {
            Ok(Ok(results)) => {
                let mut out = results.into_lua_multi(lua)?;
                out.push_front(Value::Boolean(true));
                Ok(out)
            }
            Ok(Err(message)) => (false, message).into_lua_multi(lua),
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .copied()
                    .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
                    .unwrap_or("a panic");
                (
                    false,
                    format!("eccluster: internal error in '{name}': {what}"),
                )
                    .into_lua_multi(lua)
            }
        }
    })?;
    wrapper(lua)?.call(raw)
}

/// The compiled [`WRAP`], once per Lua state.
fn wrapper(lua: &Lua) -> mlua::Result<Function> {
    const KEY: &str = "eccluster.wrap";
    if let Ok(wrap) = lua.named_registry_value::<Function>(KEY) {
        return Ok(wrap);
    }
    let wrap: Function = lua.load(WRAP).set_name("=eccluster").eval()?;
    lua.set_named_registry_value(KEY, &wrap)?;
    Ok(wrap)
}

/// A function's arguments, and what it is called in messages.
#[derive(Debug)]
pub struct Args {
    name: &'static str,
    args: MultiValue,
    /// Arguments skipped: a method's `self`.
    offset: usize,
}

impl Args {
    /// Argument `n` (from 1); nil when absent, as in Lua.
    pub fn get(&self, n: usize) -> &Value {
        self.args.get(self.offset + n - 1).unwrap_or(&Value::Nil)
    }

    /// The function's name, as messages give it.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The message for a bad argument `n`, in Lua's words.
    pub fn bad(&self, n: usize, why: impl std::fmt::Display) -> String {
        format!("bad argument #{n} to '{}' ({why})", self.name)
    }

    /// The message for argument `n` not being a `expected`.
    pub fn expected(&self, n: usize, expected: &str) -> String {
        self.bad(
            n,
            format!("{expected} expected, got {}", type_name(self.get(n))),
        )
    }

    /// Argument `n` as a string's bytes (Lua strings may hold any byte).
    pub fn bytes(&self, n: usize) -> Result<mlua::LuaString, String> {
        match self.get(n) {
            Value::String(s) => Ok(s.clone()),
            _ => Err(self.expected(n, "string")),
        }
    }

    /// Argument `n` as a string, which must be UTF-8.
    pub fn string(&self, n: usize) -> Result<String, String> {
        let s = self.bytes(n)?;
        s.to_str()
            .map(|s| s.to_string())
            .map_err(|_| self.bad(n, "not UTF-8"))
    }

    /// The method's `self`, a `T` userdata (`what` names it in messages),
    /// with Lua's wording for a bad one.
    pub fn this<T: 'static>(&self, what: &str) -> Result<mlua::UserDataRef<T>, String> {
        let bad = || {
            format!(
                "calling '{}' on bad self ({what} expected, got {})",
                self.name,
                type_name(self.get(1))
            )
        };
        match self.get(1) {
            Value::UserData(ud) => ud.borrow::<T>().map_err(|_| bad()),
            _ => Err(bad()),
        }
    }

    /// Argument `n` as an integer: a Lua integer, or a float with an exact
    /// integer value (as Lua's own `luaL_checkinteger` takes them).
    pub fn integer(&self, n: usize) -> Result<i64, String> {
        match self.get(n) {
            Value::Integer(i) => Ok(*i),
            Value::Number(f) if f.fract() == 0.0 && (-9.2e18..=9.2e18).contains(f) => Ok(*f as i64),
            Value::Number(_) => Err(self.bad(n, "number has no integer representation")),
            _ => Err(self.expected(n, "number")),
        }
    }

    /// Argument `n` as an integer from `range`, `default` when nil.
    pub fn opt_integer(
        &self,
        n: usize,
        default: i64,
        range: std::ops::RangeInclusive<i64>,
    ) -> Result<i64, String> {
        if self.get(n).is_nil() {
            return Ok(default);
        }
        let i = self.integer(n)?;
        if range.contains(&i) {
            Ok(i)
        } else {
            Err(self.bad(
                n,
                format!("{i} is out of range {}..{}", range.start(), range.end()),
            ))
        }
    }

    /// Argument `n` as a boolean, `default` when nil.
    pub fn opt_boolean(&self, n: usize, default: bool) -> Result<bool, String> {
        match self.get(n) {
            Value::Nil => Ok(default),
            Value::Boolean(b) => Ok(*b),
            _ => Err(self.expected(n, "boolean or nil")),
        }
    }

    /// Argument `n` as a string, `None` when nil.
    pub fn opt_string(&self, n: usize) -> Result<Option<String>, String> {
        match self.get(n) {
            Value::Nil => Ok(None),
            _ => self.string(n).map(Some),
        }
    }

    /// Argument `n` as a table.
    pub fn table(&self, n: usize) -> Result<mlua::Table, String> {
        match self.get(n) {
            Value::Table(t) => Ok(t.clone()),
            _ => Err(self.expected(n, "table")),
        }
    }

    /// The arguments after a method's `self`, numbered from 1 again, as
    /// Lua numbers them in messages (`log:append(nil)` is argument #1).
    pub fn after_self(self) -> Args {
        Args {
            offset: self.offset + 1,
            ..self
        }
    }
}

/// The type's name as Lua's `type()` says it.
pub fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Integer(_) | Value::Number(_) => "number",
        Value::LightUserData(_) | Value::UserData(_) => "userdata",
        other => other.type_name(),
    }
}
