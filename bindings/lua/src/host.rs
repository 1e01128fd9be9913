//! Hooks, console commands and set_binding in the host's Lua state.
//!
//! The module has no Lua states of its own: the host's is single-threaded
//! and only the host may call into it, so the registrations made with
//! `eccluster.register_hook` and `register_control` (the embedded
//! engine's own functions, `eccluster::policy::hooks`, kept in the host
//! state) run only on the host's thread, at points the host chooses:
//!
//! - `cluster_nodename` and `cluster_subcluster` run inside
//!   `eccluster.start(config)`, which works out the node's identity on the
//!   calling thread; an error in one fails the start;
//! - `membership_update`, `duravip_gained` and `duravip_lost` run when the
//!   host's loop calls `q:dispatch()` (no handlers) on an event queue;
//! - a command defined with `register_control` is queued for the host when
//!   someone runs it at the console, and answered when the host's loop
//!   takes it from a queue (`dispatch` or `next`); the console waits
//!   [`CONSOLE_TIMEOUT`] and then says the loop did not answer;
//! - `set_binding` hooks run inside `eccluster.set_binding(msg)`, after
//!   the node's own (C and Rust hooks, the node's policy scripts).
//!
//! ```lua
//! ecc.register_hook("cluster_nodename", function(name) return name .. "-a" end)
//! ecc.register_control("mta queue", function(cc) print("queued", 12) end)
//! ecc.start(config)
//! local q = ecc.events()
//! loop:watch_read(q:fd(), function() q:dispatch() end)
//! local d = ecc.set_binding(ecc.message { sender = "a@example.com", binding_group = "pool" })
//! if d.action == "move" then ... end
//! ```

use std::cell::RefCell;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use eccluster::node::{HookOrder, IdentityHook, Node};
use eccluster::policy::api::errors::{Args, function, type_name};
use eccluster::policy::api::{NodeRef, NodeSlot};
use eccluster::policy::errors::describe;
use eccluster::policy::hooks::{self, ControlDef, ControlListener, Hook};
use eccluster::policy::set_binding::{call_with_message, message_userdata, with_message_userdata};
use eccluster::policy::{Decision, Flow, Message};
use mlua::{AnyUserData, Function, Lua, Table, Value};

/// How long the console waits for the host's loop to answer a command.
const CONSOLE_TIMEOUT: Duration = Duration::from_secs(10);

/// The commands the process's states defined, to register with every node
/// `eccluster.start` starts (those defined while one runs go to it at once).
static CONTROLS: Mutex<Vec<ControlDef>> = Mutex::new(Vec::new());

/// [`CONTROLS`]; a panic while it was held left it whole.
fn controls() -> MutexGuard<'static, Vec<ControlDef>> {
    CONTROLS.lock().unwrap_or_else(PoisonError::into_inner)
}

thread_local! {
    /// The state running `eccluster.start` on this thread, while it runs,
    /// and its identity hooks' errors: the node's identity hooks must be
    /// `Send + Sync`, which a Lua function is not, so they find the state
    /// here, on the only thread that runs them.
    static STARTING: RefCell<Option<(Lua, Vec<String>)>> = const { RefCell::new(None) };
}

/// Adds `register_hook`, `register_control`, `CONTINUE`, `DONE`, `HOOKS`,
/// `message` and `set_binding` to the module table `ecc`.
pub(crate) fn register(lua: &Lua, ecc: &Table, slot: &Arc<NodeSlot>) -> mlua::Result<()> {
    hooks::install(lua, ecc)?;
    for name in ["register_hook", "register_control"] {
        let registers: Function = ecc.get(name)?;
        ecc.set(name, with_string_errors(lua, registers)?)?;
    }
    let s = Arc::clone(slot);
    lua.set_app_data(ControlListener(Box::new(move |def: &ControlDef| {
        if let Some(node) = s.get() {
            node.register_queued_command(def, CONSOLE_TIMEOUT)?;
        }
        let mut defs = controls();
        defs.retain(|d| d.words != def.words);
        defs.push(def.clone());
        Ok(())
    })));
    ecc.set(
        "message",
        function(lua, "message", |lua, args| {
            let msg = message_from(&args)?;
            message_userdata(lua, msg).map_err(|e| format!("message: {e}"))
        })?,
    )?;
    let s = Arc::clone(slot);
    ecc.set(
        "set_binding",
        function(lua, "set_binding", move |lua, args| {
            let node = NodeRef::from(Arc::clone(&s)).get()?;
            let Value::UserData(ud) = args.get(1) else {
                return Err(args.expected(1, "message"));
            };
            let decision = set_binding(lua, &node, ud).map_err(|e| args.bad(1, e))?;
            decision_table(lua, &decision).map_err(|e| format!("set_binding: {e}"))
        })?,
    )
}

/// `register`, raising its errors as plain strings at its caller's
/// position, as the module's other functions do (the embedded engine's
/// raise mlua errors, which a script can only `tostring`).
fn with_string_errors(lua: &Lua, register: Function) -> mlua::Result<Function> {
    const WRAP: &str = r#"
local register, describe = ...
local error, pcall = error, pcall
return function(...)
  local ok, err = pcall(register, ...)
  if not ok then
    error((describe(err):gsub("^eccluster%.hooks:%d+: ", "")), 2)
  end
end
"#;
    let describe = lua.create_function(|_, err: Value| {
        Ok(match err {
            Value::Error(e) => describe(&e),
            other => other.to_string()?,
        })
    })?;
    lua.load(WRAP)
        .set_name("=eccluster.hooks")
        .call((register, describe))
}

/// `eccluster.message{...}`'s argument as a [`Message`].
fn message_from(args: &Args) -> Result<Message, String> {
    let t = args.table(1)?;
    let field = |name: &str| -> Result<Value, String> {
        t.get(name).map_err(|e| args.bad(1, format!("{name}: {e}")))
    };
    let text = |name: &str, v: Value| -> Result<Option<String>, String> {
        match v {
            Value::Nil => Ok(None),
            Value::String(s) => Ok(Some(s.to_string_lossy())),
            other => Err(args.bad(
                1,
                format!("{name}: string expected, got {}", type_name(&other)),
            )),
        }
    };
    let list = |name: &str| -> Result<Vec<Value>, String> {
        match field(name)? {
            Value::Nil => Ok(Vec::new()),
            Value::Table(l) => l
                .sequence_values::<Value>()
                .collect::<mlua::Result<_>>()
                .map_err(|e| args.bad(1, format!("{name}: {e}"))),
            other => Err(args.bad(
                1,
                format!("{name}: table expected, got {}", type_name(&other)),
            )),
        }
    };
    let mut msg = Message::new(text("sender", field("sender")?)?.unwrap_or_default());
    for domain in list("recipient_domains")? {
        msg.recipient_domains
            .extend(text("recipient_domains", domain)?);
    }
    for header in list("headers")? {
        let pair = match header {
            Value::Table(pair) => (pair.raw_get::<Value>(1), pair.raw_get::<Value>(2)),
            _ => return Err(args.bad(1, "headers: each is {name, value}")),
        };
        let (Ok(name), Ok(value)) = pair else {
            return Err(args.bad(1, "headers: each is {name, value}"));
        };
        match (text("headers", name)?, text("headers", value)?) {
            (Some(name), Some(value)) => msg.headers.push((name, value)),
            _ => return Err(args.bad(1, "headers: each is {name, value}")),
        }
    }
    msg.binding = text("binding", field("binding")?)?;
    msg.binding_group = text("binding_group", field("binding_group")?)?;
    Ok(msg)
}

/// The node's set_binding, then this state's `set_binding` hooks; a
/// hook's error goes into the decision, as in the embedded engine.
fn set_binding(lua: &Lua, node: &Node, ud: &AnyUserData) -> mlua::Result<Decision> {
    let chain = hooks::registered_hooks(lua, Hook::SetBinding)?;
    with_message_userdata(ud, |msg| {
        node.set_binding_then(msg, |msg| {
            for hook in &chain {
                match call_with_message(lua, &hook.function, msg) {
                    Ok(Flow::Done) => return,
                    Ok(Flow::Continue) => {}
                    Err(e) => msg.policy_failed(&describe(&e)),
                }
            }
        })
    })
}

/// `{ action = "send"|"move"|"unchanged"|"unavailable", binding, node, reason }`.
fn decision_table(lua: &Lua, decision: &Decision) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    match decision {
        Decision::Send { binding } => {
            t.set("action", "send")?;
            t.set("binding", binding.as_str())?;
        }
        Decision::Move { binding, node } => {
            t.set("action", "move")?;
            t.set("binding", binding.as_str())?;
            t.set("node", node.as_str())?;
        }
        Decision::Unchanged { reason } => {
            t.set("action", "unchanged")?;
            t.set("reason", reason.as_str())?;
        }
        Decision::Unavailable { reason } => {
            t.set("action", "unavailable")?;
            t.set("reason", reason.as_str())?;
        }
    }
    Ok(t)
}

/// Readies `node` (stopped) for the state `lua` starting it: its identity
/// hooks run this state's, and the commands defined so far are queued
/// for the host.
pub(crate) fn prepare(node: &Node) -> Result<(), String> {
    for hook in [Hook::ClusterNodename, Hook::ClusterSubcluster] {
        let register = match hook {
            Hook::ClusterNodename => Node::register_nodename_hook,
            _ => Node::register_subcluster_hook,
        };
        register(node, HookOrder::Last, identity_hook(hook)).map_err(|e| e.to_string())?;
    }
    for def in controls().iter() {
        node.register_queued_command(def, CONSOLE_TIMEOUT)?;
    }
    Ok(())
}

/// Starts `node` with `lua` as the state its identity hooks run in; the
/// first error of one of them fails the start (and stops the node).
pub(crate) fn start(lua: &Lua, node: &Node) -> Result<(), String> {
    STARTING.with(|s| *s.borrow_mut() = Some((lua.clone(), Vec::new())));
    let started = node.start().map_err(|e| e.to_string());
    let (_, errors) = STARTING.with(|s| s.borrow_mut().take()).unwrap_or_default();
    started?;
    if let Some(e) = errors.into_iter().next() {
        node.stop();
        return Err(e);
    }
    Ok(())
}

/// A node identity hook running the `hook` functions of the state
/// starting the node on this thread (none elsewhere).
fn identity_hook(hook: Hook) -> IdentityHook {
    Box::new(move |current: &str| {
        let lua = STARTING.with(|s| s.borrow().as_ref().map(|(lua, _)| lua.clone()))?;
        let mut value: Option<String> = None;
        let chain = hooks::registered_hooks(&lua, hook).unwrap_or_default();
        for registered in chain {
            let so_far = value.as_deref().unwrap_or(current);
            match registered.function.call::<Option<String>>(so_far) {
                Ok(Some(v)) => value = Some(v),
                Ok(None) => {}
                Err(e) => STARTING.with(|s| {
                    if let Some((_, errors)) = s.borrow_mut().as_mut() {
                        errors.push(format!("{} hook: {}", hook.name(), describe(&e)));
                    }
                }),
            }
        }
        value
    })
}
