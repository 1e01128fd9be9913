//! The sandbox of the engine's Lua states (ecosystem notes §1.4: Lua 5.4
//! has no `Lua::sandbox`, so it is built here).
//!
//! - Libraries: the base functions, `string`, `table`, `math`, `utf8` and
//!   `coroutine`; no `io`, `os`, `package` or `debug`. From the base,
//!   `load`, `loadfile`, `dofile`, `collectgarbage`, `rawset` (which would
//!   write through a read-only proxy) and `warn` are removed, and
//!   `string.dump`; `require` returns only our modules (`eccluster`,
//!   `msys.*`).
//! - Scripts are text: [`run_script`] loads with `ChunkMode::Text`, which
//!   refuses precompiled bytecode (PUC Lua does not verify it).
//! - The instruction budget cannot be caught: once it is spent, `pcall`,
//!   `xpcall` and `coroutine.resume` pass errors on instead of returning
//!   them.
//! - Nothing shared is writable: the libraries, `eccluster` and `msys`
//!   (with their sub-tables) are read-only proxies, the string metatable
//!   is hidden from `getmetatable`, and each script runs in an environment
//!   of its own whose `__index` is a read-only proxy of the globals; its
//!   `_G` is that environment. So one script's globals never reach another.
//!
//! Limits (memory here, instructions in the engine) are set before any
//! script runs, so a script's top level is bound by them too.

use mlua::chunk::ChunkMode;
use mlua::{Function, Lua, LuaOptions, StdLib, Table};

/// Base functions a script must not have (module docs).
const REMOVED: [&str; 6] = [
    "load",
    "loadfile",
    "dofile",
    "collectgarbage",
    "rawset",
    "warn",
];

/// Wraps the shared tables read-only and returns the globals' proxy.
/// Runs once per state, before any script; arguments: the globals, the
/// `eccluster` and `msys` tables.
const SEAL: &str = r#"
local G, ecc, msys, exhausted = ...
local error, next, type, tostring, getmetatable, setmetatable =
  error, next, type, tostring, getmetatable, setmetatable

-- Once the budget is spent, an error caught on the way out is raised
-- again, so no pcall loop outlives it.
local pcall, xpcall, resume = pcall, xpcall, coroutine.resume
local function pass(ok, ...)
  if not ok and exhausted() then error((...), 0) end
  return ok, ...
end
G.pcall = function(...) return pass(pcall(...)) end
G.xpcall = function(...) return pass(xpcall(...)) end
G.coroutine.resume = function(...) return pass(resume(...)) end

local function readonly(t, name)
  return setmetatable({}, {
    __index = t,
    __newindex = function(_, k)
      error(name .. "." .. tostring(k) .. " is read-only", 2)
    end,
    __pairs = function() return next, t, nil end,
    __len = function() return #t end,
    __metatable = false,
  })
end

-- Sub-tables first, so that no path leads to a writable one.
local function deep(t, name, seen)
  for k, v in next, t do
    if type(v) == "table" and getmetatable(v) == nil and not seen[v] then
      seen[v] = true
      t[k] = deep(v, name .. "." .. tostring(k), seen)
    end
  end
  return readonly(t, name)
end

for _, lib in next, { "string", "table", "math", "utf8", "coroutine" } do
  G[lib] = readonly(G[lib], lib)
end
G.eccluster = deep(ecc, "eccluster", {})
G.msys = deep(msys, "msys", {})
local eccluster, msys_proxy = G.eccluster, G.msys
G.require = function(name)
  if name == "eccluster" then return eccluster end
  if name == "msys" then return msys_proxy end
  if type(name) == "string" and name:sub(1, 5) == "msys." then
    -- msys.audit_series and friends are namespaces of their own; others
    -- (msys.core, msys.extended.*) keep their functions in msys itself.
    local ns = rawget(msys, name:sub(6))
    if type(ns) == "table" then return msys_proxy[name:sub(6)] end
    return msys_proxy
  end
  error("module '" .. tostring(name) .. "' is not available: policy scripts may require "
    .. "\"eccluster\" and \"msys.*\"", 2)
end
getmetatable("").__metatable = false
return readonly(G, "_G")
"#;

/// A state with the libraries of the module docs and a memory limit.
/// Fails where memory cannot be limited (mlua's module mode).
pub(crate) fn new_state(memory_limit: usize) -> mlua::Result<Lua> {
    let libs = StdLib::STRING | StdLib::TABLE | StdLib::MATH | StdLib::UTF8 | StdLib::COROUTINE;
    let lua = Lua::new_with(libs, LuaOptions::new())?;
    lua.set_memory_limit(memory_limit)?;
    let globals = lua.globals();
    for name in REMOVED {
        globals.raw_remove(name)?;
    }
    globals.get::<Table>("string")?.raw_remove("dump")?;
    Ok(lua)
}

/// Makes the shared tables read-only, publishes `eccluster` and `msys` as
/// globals, and returns the globals' proxy that script environments read.
/// `exhausted` says whether the running call's instruction budget is
/// spent: `pcall`, `xpcall` and `coroutine.resume` then let no error go.
pub(crate) fn seal(lua: &Lua, ecc: Table, msys: Table, exhausted: Function) -> mlua::Result<Table> {
    lua.load(SEAL)
        .set_name("=eccluster sandbox")
        .set_mode(ChunkMode::Text)
        .call((lua.globals(), ecc, msys, exhausted))
}

/// Runs a script's top level in an environment of its own. Its chunk is
/// named after the script (`set_binding.lua`), which is what errors show.
pub(crate) fn run_script(lua: &Lua, globals: &Table, name: &str, source: &str) -> mlua::Result<()> {
    let env = lua.create_table()?;
    let meta = lua.create_table()?;
    meta.raw_set("__index", globals)?;
    meta.raw_set("__metatable", false)?;
    env.set_metatable(Some(meta))?;
    env.raw_set("_G", &env)?;
    lua.load(source)
        .set_name(format!("={}", chunk_name(name)))
        .set_mode(ChunkMode::Text)
        .set_environment(env)
        .exec()
}

/// What errors call a script: its name, with `.lua`.
pub fn chunk_name(name: &str) -> String {
    if name.ends_with(".lua") {
        name.to_string()
    } else {
        format!("{name}.lua")
    }
}
