//! Only with the `testing` feature (the tests' build, never a release):
//! `ecc._testing.panic(message)` panics inside a module function, to show
//! that the panic comes back to the script as an ordinary string error,
//! and `ecc._testing.panic_unguarded(message)` panics in a bare mlua
//! function, to show that mlua, too, turns a panic into a Lua error rather
//! than unwinding through Lua's C frames. `ecc._testing.console(line)`
//! runs a console command on another thread, as an operator at the
//! console socket would while the script's loop goes on, and returns a
//! function that waits for the answer (the answer, or nil and the error).

use mlua::{Lua, Table};

use std::sync::Arc;

use eccluster::policy::api::NodeRef;
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
    t.set(
        "console",
        function(lua, "console", |lua, args: Args| {
            let line = args.string(1)?;
            let node = NodeRef::from(Arc::clone(&crate::NODE)).get()?;
            let running = std::thread::spawn(move || node.console_exec(&line));
            let running = std::cell::Cell::new(Some(running));
            lua.create_function(move |_, ()| {
                let running = running
                    .take()
                    .ok_or_else(|| mlua::Error::runtime("the answer was taken already"))?;
                Ok(match running.join() {
                    Ok(Ok(answer)) => (Some(answer), None),
                    Ok(Err(e)) => (None, Some(e)),
                    Err(_) => (None, Some("the console thread panicked".to_string())),
                })
            })
            .map_err(|e| e.to_string())
        })?,
    )?;
    ecc.set("_testing", t)
}
