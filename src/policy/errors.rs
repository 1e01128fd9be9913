//! Policy errors as an operator reads them: one line that names the
//! script and line (`set_binding.lua:12: attempt to index a nil value`),
//! without mlua's wrapping and tracebacks.
//!
//! Errors raised by Lua carry their position already. Errors our Rust
//! functions raise get it from [`raise`], which prefixes the calling Lua
//! line, as `luaL_error` does. mlua's own conversion errors (a number
//! where a string was expected) have none: [`describe`] takes the first
//! Lua line of their traceback instead.

use mlua::{Error, Lua};

/// A Lua error raised from a Rust function, prefixed with the script and
/// line that called it.
pub fn raise(lua: &Lua, message: impl AsRef<str>) -> Error {
    let message = message.as_ref();
    match caller(lua) {
        Some(at) => Error::runtime(format!("{at}: {message}")),
        None => Error::runtime(message),
    }
}

/// `script:line` of the Lua code calling the running Rust function.
pub fn caller(lua: &Lua) -> Option<String> {
    // Level 0 is the Rust function itself; 1 is whoever called it, which
    // is a C function when a Lua library function (pcall) sits between.
    (1..4).find_map(|level| lua.inspect_stack(level, position).flatten())
}

/// `script:line` of a stack level, when it is Lua code.
pub(crate) fn position(debug: &mlua::debug::Debug) -> Option<String> {
    let line = debug.current_line()?;
    let source = debug.source();
    let src = source.short_src?;
    (src != "[C]").then(|| format!("{src}:{line}"))
}

/// The one-line message of an error (module docs).
pub fn describe(error: &Error) -> String {
    let (innermost, traceback) = unwrap(error, None);
    let message = match innermost {
        // Lua errors come with a traceback appended; the line is enough.
        Error::RuntimeError(m) => m
            .split_once("\nstack traceback:")
            .map_or(m.as_str(), |(head, _)| head)
            .to_string(),
        Error::SyntaxError { message, .. } => message.clone(),
        Error::MemoryError(m) => format!("memory error: {m}"),
        other => other.to_string(),
    };
    match traceback.and_then(first_lua_line) {
        Some(at) if !has_position(&message) => format!("{at}: {message}"),
        _ => message,
    }
}

/// Whether `error` (or what it wraps) is a memory error.
pub fn is_memory_error(error: &Error) -> bool {
    matches!(unwrap(error, None).0, Error::MemoryError(_))
}

/// The error under mlua's wrappers, and the innermost traceback seen.
fn unwrap<'e>(error: &'e Error, traceback: Option<&'e str>) -> (&'e Error, Option<&'e str>) {
    match error {
        Error::CallbackError { traceback, cause } => unwrap(cause, Some(traceback)),
        Error::WithContext { cause, .. } => unwrap(cause, traceback),
        other => (other, traceback),
    }
}

/// `script:line` of the first Lua frame of a traceback
/// (`\tset_binding.lua:3: in main chunk`).
fn first_lua_line(traceback: &str) -> Option<String> {
    traceback
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("[C]") && !l.starts_with("stack traceback"))
        .find_map(|l| {
            let (src, rest) = l.split_once(':')?;
            let (line, _) = rest.split_once(':')?;
            line.parse::<u32>().ok().map(|n| format!("{src}:{n}"))
        })
}

/// Whether a message starts with `something:NUMBER:`.
fn has_position(message: &str) -> bool {
    message
        .split_once(':')
        .and_then(|(_, rest)| rest.split_once(':'))
        .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_keep_their_position_and_gain_one_from_the_traceback() {
        let lua = Lua::new();
        let run = |code: &str| {
            let e = lua.load(code).set_name("=p.lua").exec().unwrap_err();
            describe(&e)
        };
        assert_eq!(
            run("local t\nlocal x = t.y"),
            "p.lua:2: attempt to index a nil value (local 't')"
        );
        assert!(run("x = = 1").starts_with("p.lua:1: unexpected symbol"));
        let f = lua
            .create_function(|lua, ()| Err::<(), _>(raise(lua, "no such hook")))
            .unwrap();
        lua.globals().set("f", f).unwrap();
        assert_eq!(run("\n\nf()"), "p.lua:3: no such hook");
        let g = lua.create_function(|_, _: String| Ok(())).unwrap();
        lua.globals().set("g", g).unwrap();
        let e = run("\ng({})");
        assert!(e.starts_with("p.lua:2: bad argument #1"), "{e}");
    }
}
