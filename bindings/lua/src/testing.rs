//! Only with the `testing` feature (the tests' build, never a release):
//! `ecc._testing.panic(message)` panics inside a module function, to show
//! that the panic comes back to the script as an ordinary string error,
//! and `ecc._testing.panic_unguarded(message)` panics in a bare mlua
//! function, to show that mlua, too, turns a panic into a Lua error rather
//! than unwinding through Lua's C frames.

use mlua::{Lua, Table};

use eccluster::policy::api::errors::{Args, function};

/// Adds `_testing` to the module table `ecc`.
pub(crate) fn register(lua: &Lua, ecc: &Table) -> mlua::Result<()> {
    let t = lua.create_table()?;
    t.set(
        "panic",
        function(lua, "panic", |_, args: Args| -> Result<(), String> {
            panic!("{}", args.string(1)?)
        })?,
    )?;
    t.set(
        "panic_unguarded",
        lua.create_function(|_, message: String| -> mlua::Result<()> { panic!("{message}") })?,
    )?;
    ecc.set("_testing", t)
}
