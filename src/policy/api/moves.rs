//! Moving a message to the node that owns its binding (the reference's
//! `#mmove`), from Lua: `move_message(node, message [, timeout])`, the
//! same call as `Node::move_message` and `ecc_node_move_message`.
//!
//! ```lua
//! local id, outcome = ecc.move_message("mta2", {
//!   mail_from = "sender@example.com",
//!   recipients = { "rcpt@example.net" },
//!   binding = "out2", binding_group = "default",
//!   headers = { { "X-Spool-Id", "1F/00-4711" } },
//!   body = message_bytes,
//! }, 30)
//! -- outcome: "accepted", or "duplicate" when an earlier attempt got there
//! ```
//!
//! It returns once the receiving host has accepted the message, retrying
//! meanwhile, so it blocks the calling Lua state for as long (no
//! instruction budget can interrupt it). A rejection, an unknown node or
//! the deadline raise an error saying which.

use std::time::Duration;

use mlua::{Lua, Table, Value};

use super::NodeRef;
use super::errors::{Args, function, type_name};
use crate::node::{MoveEnvelope, MoveId, MoveRequest};

/// How long a move may take when the caller does not say.
const DEFAULT_TIMEOUT_S: i64 = 30;

/// Adds `move_message` to `ecc`.
pub(super) fn register(lua: &Lua, ecc: &Table, node: &NodeRef) -> mlua::Result<()> {
    let node = node.clone();
    ecc.set(
        "move_message",
        function(lua, "move_message", move |_, args| {
            let target = args.string(1)?;
            let message = args.table(2)?;
            let timeout = args.opt_integer(3, DEFAULT_TIMEOUT_S, 1..=86_400)?;
            let id = opt_field(&args, &message, "id")?
                .map(|id| MoveId::parse(&id).map_err(|e| args.bad(2, format!("id: {e}"))))
                .transpose()?;
            let envelope = MoveEnvelope {
                mail_from: opt_field(&args, &message, "mail_from")?.unwrap_or_default(),
                recipients: recipients(&args, &message)?,
                binding: opt_field(&args, &message, "binding")?.unwrap_or_default(),
                binding_group: opt_field(&args, &message, "binding_group")?.unwrap_or_default(),
                headers: headers(&args, &message)?,
            };
            let body = match message.raw_get::<Value>("body") {
                Ok(Value::String(s)) => s.as_bytes().to_vec(),
                Ok(other) => {
                    return Err(args.bad(
                        2,
                        format!("field 'body': string expected, got {}", type_name(&other)),
                    ));
                }
                Err(e) => return Err(e.to_string()),
            };
            let request = MoveRequest {
                id,
                envelope,
                body: &body,
            };
            let receipt = node
                .get()?
                .move_message(&target, &request, Duration::from_secs(timeout as u64))
                .map_err(|e| e.to_string())?;
            let outcome = if receipt.duplicate {
                "duplicate"
            } else {
                "accepted"
            };
            Ok((receipt.id.to_string(), outcome))
        })?,
    )
}

/// The text field `name` of the message table, `None` when nil.
fn opt_field(args: &Args, message: &Table, name: &str) -> Result<Option<String>, String> {
    match message.raw_get::<Value>(name).map_err(|e| e.to_string())? {
        Value::Nil => Ok(None),
        Value::String(s) => s
            .to_str()
            .map(|s| Some(s.to_string()))
            .map_err(|_| args.bad(2, format!("field '{name}' is not UTF-8"))),
        other => Err(args.bad(
            2,
            format!("field '{name}': string expected, got {}", type_name(&other)),
        )),
    }
}

/// `recipients`: an array of addresses, at least one.
fn recipients(args: &Args, message: &Table) -> Result<Vec<String>, String> {
    let bad = |why: String| args.bad(2, format!("field 'recipients': {why}"));
    let list: Table = match message.raw_get::<Value>("recipients") {
        Ok(Value::Table(t)) => t,
        Ok(other) => {
            return Err(bad(format!(
                "an array of addresses expected, got {}",
                type_name(&other)
            )));
        }
        Err(e) => return Err(e.to_string()),
    };
    let recipients = list
        .sequence_values::<String>()
        .collect::<mlua::Result<Vec<_>>>()
        .map_err(|_| bad("every recipient must be a string".into()))?;
    if recipients.is_empty() {
        return Err(bad("no recipients".into()));
    }
    Ok(recipients)
}

/// `headers`: an array of `{name, value}` pairs (order and repeats kept),
/// or nil.
fn headers(args: &Args, message: &Table) -> Result<Vec<(String, String)>, String> {
    let bad = |why: &str| args.bad(2, format!("field 'headers': {why}"));
    match message.raw_get::<Value>("headers") {
        Ok(Value::Nil) => Ok(Vec::new()),
        Ok(Value::Table(list)) => list
            .sequence_values::<Value>()
            .map(|pair| {
                let pair = match pair {
                    Ok(Value::Table(pair)) => pair,
                    _ => return Err(bad("each header must be a {name, value} pair of strings")),
                };
                match (pair.raw_get::<String>(1), pair.raw_get::<String>(2)) {
                    (Ok(name), Ok(value)) => Ok((name, value)),
                    _ => Err(bad("each header must be a {name, value} pair of strings")),
                }
            })
            .collect(),
        Ok(_) => Err(bad("an array of {name, value} pairs expected")),
        Err(e) => Err(e.to_string()),
    }
}
