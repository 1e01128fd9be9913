//! Journals, the log service's append side: `log_open(destination
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
//! With a node, journals open through [`crate::Node::open_log`], so that
//! the node's published paniclog also goes out on its `log_group`. Without
//! one (the module before `eccluster.start`), through a process-wide set
//! of writers. Either way, every destination naming one directory shares
//! one writer, whichever Lua state opened it, so appends from several
//! states (threads) share group commits. A host that also links
//! libeccluster has a second writer for the same journal there; the two
//! take turns through jlog's fcntl locks, as two processes do.
//!
//! `append` blocks the calling Lua thread until the record is durable.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use mlua::{Lua, Table, Value};

use super::NodeRef;
use super::errors::{Args, function, type_name};
use super::object::{LuaObject, method, new_object, register as register_type};
use crate::io::logwriter::{LogWriter, LogWriters};
use crate::journal::Durability;

/// What `group_commit_ms` is when the options leave it out.
const DEFAULT_GROUP_COMMIT_MS: u32 = 2;

/// The journals this process writes through the API without a node.
static WRITERS: LazyLock<LogWriters> = LazyLock::new(LogWriters::default);

/// A journal opened for appending (the Lua `log` object).
struct Log(Arc<LogWriter>);

impl LuaObject for Log {
    const TYPE: &'static str = "eccluster.log";
    fn describe(&self) -> String {
        self.0.dir().display().to_string()
    }
}

/// Adds `log_open` to `ecc`.
pub(super) fn register(lua: &Lua, ecc: &Table, node: &NodeRef) -> mlua::Result<()> {
    register_type::<Log>(
        lua,
        [
            method(lua, "append", |_, log: &Log, args| {
                let line = args.bytes(1)?;
                let id = log
                    .0
                    .append(&line.as_bytes())
                    .map_err(|e| format!("append: {e}"))?;
                Ok((id.log, id.marker))
            }),
            method(lua, "dir", |lua, log: &Log, _| {
                use std::os::unix::ffi::OsStrExt;
                lua.create_string(log.0.dir().as_os_str().as_bytes())
                    .map_err(|e| format!("dir: {e}"))
            }),
        ],
    )?;
    let node = node.clone();
    ecc.set(
        "log_open",
        function(lua, "log_open", move |lua, args| open(lua, &node, args))?,
    )
}

/// `ecc.log_open(destination [, options])`.
fn open(lua: &Lua, node: &NodeRef, args: Args) -> Result<mlua::AnyUserData, String> {
    let destination = args.string(1)?;
    let group_commit_ms = group_commit_ms(&args, 2)?;
    if let Err(e) = crate::core::logs::destination::Destination::parse(&destination) {
        return Err(args.bad(1, e));
    }
    let durability = match group_commit_ms {
        0 => Durability::EveryRecord,
        ms => Durability::Group {
            interval: Duration::from_millis(u64::from(ms)),
        },
    };
    let writer = match node.optional() {
        Some(node) => node.open_log(&destination, durability),
        None => WRITERS.open(&destination, durability).map(|opened| {
            if let Some(torn) = opened.torn {
                // As Node::open_log: the cut is news for the operator, not
                // a failure of the open.
                eprintln!(
                    "eccluster: journal {}: {torn}",
                    opened.writer.dir().display()
                );
            }
            opened.writer
        }),
    }
    .map_err(|e| format!("log_open: {e}"))?;
    new_object(lua, Log(writer))
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
