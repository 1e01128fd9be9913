//! Journals, the log service's append side: `ecc.log_open(destination
//! [, options])` and the `log` object it returns.
//!
//! ```lua
//! local log = ecc.log_open("cluster:///var/log/ecelerity/mainlog.cluster=>master",
//!                          { group_commit_ms = 2 })
//! local segment, marker = log:append("1700000000@mta1: delivered ...")
//! print(log:dir())   --> /var/log/ecelerity/mainlog.cluster
//! ```
//!
//! The same as the Rust API (`Node::open_log`) and the C API
//! (`ecc_log_open`, `ecc_log_append`): the journal is created on demand
//! with the destination's subscribers, and an append returns once its
//! record is durable — after its own fdatasync with `group_commit_ms = 0`,
//! otherwise sharing one with the appends under way together, waiting at
//! most that many milliseconds (2 by default, the README's example for
//! Rust). The first open of a journal in the process decides it.
//!
//! Every destination naming one directory shares one writer in this
//! process, whichever Lua state opened it, so appends from several states
//! (threads) share group commits. A host that also links libeccluster has
//! a second writer for the same journal there; the two take turns through
//! jlog's fcntl locks, as two processes do.
//!
//! `append` blocks the calling Lua thread until the record is durable.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use eccluster::io::logwriter::{LogWriter, LogWriters};
use eccluster::journal::Durability;
use mlua::{Lua, Table, UserData, Value};

use crate::errors::{Args, function, type_name};

/// What `group_commit_ms` is when the options leave it out.
const DEFAULT_GROUP_COMMIT_MS: u32 = 2;

/// The journals this process writes through the module, by directory.
static WRITERS: LazyLock<LogWriters> = LazyLock::new(LogWriters::default);

/// A journal opened for appending (the Lua `log` object).
#[derive(Debug)]
struct Log(Arc<LogWriter>);

/// The registry key of the `log` objects' methods.
const METHODS: &str = "eccluster.log.methods";

impl UserData for Log {
    fn add_fields<F: mlua::UserDataFields<Self>>(fields: &mut F) {
        // The methods are wrapped Lua functions (see errors.rs), so they
        // are a table rather than mlua methods.
        fields.add_meta_field_with("__index", |lua| lua.named_registry_value::<Table>(METHODS));
        fields.add_meta_field("__name", "eccluster.log");
    }

    fn add_methods<M: mlua::UserDataMethods<Self>>(methods: &mut M) {
        methods.add_meta_method("__tostring", |_, log, ()| {
            Ok(format!("eccluster.log: {}", log.0.dir().display()))
        });
    }
}

/// Adds `log_open` to the module table `ecc`.
pub(crate) fn register(lua: &Lua, ecc: &Table) -> mlua::Result<()> {
    let methods = lua.create_table()?;
    methods.set("append", function(lua, "append", append)?)?;
    methods.set("dir", function(lua, "dir", dir)?)?;
    lua.set_named_registry_value(METHODS, methods)?;
    ecc.set("log_open", function(lua, "log_open", open)?)
}

/// `ecc.log_open(destination [, options])`.
fn open(lua: &Lua, args: Args) -> Result<mlua::AnyUserData, String> {
    let destination = args.string(1)?;
    let group_commit_ms = group_commit_ms(&args, 2)?;
    if let Err(e) = eccluster::core::logs::destination::Destination::parse(&destination) {
        return Err(args.bad(1, e));
    }
    let durability = match group_commit_ms {
        0 => Durability::EveryRecord,
        ms => Durability::Group {
            interval: Duration::from_millis(u64::from(ms)),
        },
    };
    let opened = WRITERS
        .open(&destination, durability)
        .map_err(|e| format!("log_open: {e}"))?;
    if let Some(torn) = opened.torn {
        // As Node::open_log: the cut is news for the operator, not a
        // failure of the open.
        eprintln!(
            "eccluster: journal {}: {torn}",
            opened.writer.dir().display()
        );
    }
    lua.create_userdata(Log(opened.writer))
        .map_err(|e| format!("log_open: {e}"))
}

/// The options table, argument `n`: only `group_commit_ms`, a whole number
/// of milliseconds from 0 to 2^32 - 1. Unknown keys are errors, so a
/// misspelt option is not silently the default.
fn group_commit_ms(args: &Args, n: usize) -> Result<u32, String> {
    let options = match args.get(n) {
        Value::Nil => return Ok(DEFAULT_GROUP_COMMIT_MS),
        Value::Table(t) => t,
        _ => return Err(args.expected(n, "table or nil")),
    };
    let mut ms = DEFAULT_GROUP_COMMIT_MS;
    for pair in options.pairs::<Value, Value>() {
        let (key, value) = pair.map_err(|e| args.bad(n, e))?;
        match &key {
            Value::String(k) if k.as_bytes().as_ref() == b"group_commit_ms" => {
                ms = match value {
                    Value::Integer(i) => u32::try_from(i).ok(),
                    // 2.0 is an integer in Lua's eyes (math.type aside).
                    Value::Number(f) if f.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&f) => {
                        Some(f as u32)
                    }
                    Value::Number(_) => None,
                    other => {
                        return Err(args.bad(
                            n,
                            format!("group_commit_ms: number expected, got {}", type_name(&other)),
                        ));
                    }
                }
                .ok_or_else(|| {
                    args.bad(
                        n,
                        format!(
                            "group_commit_ms: a whole number of milliseconds from 0 to {} expected, got {}",
                            u32::MAX,
                            number(&value)
                        ),
                    )
                })?;
            }
            Value::String(k) => {
                return Err(args.bad(
                    n,
                    format!(
                        "unknown option '{}' (known: group_commit_ms)",
                        k.to_string_lossy()
                    ),
                ));
            }
            other => {
                return Err(args.bad(
                    n,
                    format!("option names are strings, got {}", type_name(other)),
                ));
            }
        }
    }
    Ok(ms)
}

/// A number as Lua prints it, near enough for a message.
fn number(value: &Value) -> String {
    match value {
        Value::Integer(i) => i.to_string(),
        Value::Number(f) => f.to_string(),
        other => type_name(other).to_string(),
    }
}

/// `log:append(line)`: the record's position, once it is durable.
fn append(_: &Lua, args: Args) -> Result<(u32, u32), String> {
    let log = args.this::<Log>("eccluster.log")?;
    let line = args.after_self().bytes(1)?;
    let id = log
        .0
        .append(&line.as_bytes())
        .map_err(|e| format!("append: {e}"))?;
    Ok((id.log, id.marker))
}

/// `log:dir()`: the journal's directory.
fn dir(lua: &Lua, args: Args) -> Result<mlua::LuaString, String> {
    let log = args.this::<Log>("eccluster.log")?;
    use std::os::unix::ffi::OsStrExt;
    lua.create_string(log.0.dir().as_os_str().as_bytes())
        .map_err(|e| format!("dir: {e}"))
}
