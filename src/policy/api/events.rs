//! The event queue for hosts with their own event loop (see
//! [`crate::io::events`]): `events([capacity])` gives a queue whose
//! descriptor the host polls, and whose events are Lua tables: `kind`
//! (`"membership"`, `"duravip_gained"`, `"duravip_lost"`, `"log_line"`,
//! `"overflow"`) and the kind's fields, named as in C.
//!
//! ```lua
//! local q = ecc.events()
//! loop:watch_read(q:fd(), function()       -- the host's own loop
//!   q:dispatch {
//!     membership = function(e) print(e.view_number, table.concat(e.members, ",")) end,
//!     duravip_gained = function(e) start_listener(e.address) end,
//!     overflow = function(e) resync() end,
//!   }
//! end)
//! ```
//!
//! `q:next()` takes one event (nil when none is pending); `q:dispatch`
//! takes every pending one and calls the handler for its kind (kinds
//! without one are taken and skipped), returning how many it took;
//! `q:dispatch()` with no handlers calls the state's hooks instead (those
//! `register_hook` registered for `membership_update`, `duravip_gained`
//! and `duravip_lost`, with the arguments the embedded engine's hooks
//! get);
//! `q:wait([seconds])` blocks until one is pending (true) or the time is up
//! (false), for scripts without a loop; `q:dropped()` counts the events
//! lost to a full queue. Integers are Lua integers (`view_id`, a 64-bit
//! hash, may read negative).
//!
//! A `"console"` event (`words`, `args`) is a console command that
//! `register_control` defined in a host's state (the module's, see
//! [`crate::Node::register_queued_command`]): taking it, by `next` or
//! `dispatch`, runs the command in this state, if this state defines it,
//! and sends what it prints back to the console.

use std::sync::Arc;
use std::time::Duration;

use mlua::{Function, Lua, Table, Value};

use super::NodeRef;
use super::errors::function;
use super::object::{LuaObject, Object, method, new_object, register as register_type};
use crate::io::events::{ConsoleRequest, Event, EventQueue, Field};
use crate::node::NodeError;
use crate::policy::adapters::{view_change_table, vip_table};
use crate::policy::hooks::{self, Hook};

struct Queue(Arc<EventQueue>);

impl LuaObject for Queue {
    const TYPE: &'static str = "eccluster.events";
    fn describe(&self) -> String {
        format!("fd {}, {} pending", self.0.fd(), self.0.len())
    }
}

/// `dispatch`, in Lua so that a handler's error reaches the caller as the
/// handler raised it. `is_queue` and `next_event` are its upvalues.
const DISPATCH: &str = r#"
local is_queue, next_event, next_for_hooks = ...
local error, pairs, type = error, pairs, type
return function(self, handlers)
  if not is_queue(self) then
    error("calling 'dispatch' on bad self (eccluster.events expected, got " .. type(self) .. ")", 2)
  end
  if handlers == nil then
    local taken = 0
    while true do
      local hooks, arg = next_for_hooks(self)
      if hooks == nil then
        return taken
      end
      taken = taken + 1
      for i = 1, #hooks do
        hooks[i](arg)
      end
    end
  end
  if type(handlers) ~= "table" then
    error("bad argument #1 to 'dispatch' (table or nil expected, got " .. type(handlers) .. ")", 2)
  end
  for kind, handler in pairs(handlers) do
    if type(handler) ~= "function" then
      error("bad argument #1 to 'dispatch' (handler for '" .. tostring(kind) ..
        "': function expected, got " .. type(handler) .. ")", 2)
    end
  end
  local taken = 0
  while true do
    local event = next_event(self)
    if event == nil then
      return taken
    end
    taken = taken + 1
    local handler = handlers[event.kind]
    if handler then
      handler(event)
    end
  end
end
"#;

/// An event as a Lua table.
fn event_table(lua: &Lua, event: &Event) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("kind", event.kind())?;
    for (name, field) in event.fields() {
        // Lua integers are 64-bit signed: a u64 keeps its bits.
        let value = match field {
            Field::Integer(i) => Value::Integer(i as i64),
            Field::Bytes(b) => Value::String(lua.create_string(&*b)?),
            Field::Strings(s) => {
                Value::Table(lua.create_sequence_from(s.iter().map(String::as_str))?)
            }
            Field::Integers(v) => {
                Value::Table(lua.create_sequence_from(v.into_iter().map(|i| i as i64))?)
            }
        };
        t.set(name, value)?;
    }
    Ok(t)
}

/// The next event, with a console request answered on the way.
fn take(lua: &Lua, q: &Queue) -> mlua::Result<Option<Event>> {
    let event = q.0.next();
    if let Some(Event::Console(request)) = &event {
        answer_console(lua, request)?;
    }
    Ok(event)
}

/// Runs the command `request` names if this state defines it, unless
/// another host claimed it first (each queue has a copy) or the console
/// stopped waiting.
fn answer_console(lua: &Lua, request: &ConsoleRequest) -> mlua::Result<()> {
    let defined = hooks::registered_controls(lua)?
        .iter()
        .any(|def| def.words == request.words);
    if let Some(reply) = defined.then(|| request.claim()).flatten() {
        reply.send(hooks::call_control(lua, &request.words, &request.args));
    }
    Ok(())
}

/// The hooks for `event` in this state and their argument; for kinds no
/// hook hears, none and the event's table.
fn hooks_for(lua: &Lua, event: &Event) -> mlua::Result<(Table, Table)> {
    let (hook, arg) = match event {
        Event::Membership {
            view_number,
            view_id,
            members,
        } => (
            Hook::MembershipUpdate,
            view_change_table(lua, *view_number, *view_id, members)?,
        ),
        Event::DuraVipGained(claim) => (Hook::DuravipGained, vip_table(lua, claim)?),
        Event::DuraVipLost(claim) => (Hook::DuravipLost, vip_table(lua, claim)?),
        other => return Ok((lua.create_table()?, event_table(lua, other)?)),
    };
    let functions = hooks::registered_hooks(lua, hook)?
        .into_iter()
        .map(|h| h.function);
    Ok((lua.create_sequence_from(functions)?, arg))
}

/// Adds `events` to `ecc`.
pub(super) fn register(lua: &Lua, ecc: &Table, node: &NodeRef) -> mlua::Result<()> {
    let (_, next_event) = method(lua, "next", |lua, q: &Queue, _| {
        take(lua, q)
            .and_then(|e| e.map(|e| event_table(lua, &e)).transpose())
            .map_err(|e| format!("next: {e}"))
    })?;
    let (_, next_for_hooks) = method(lua, "dispatch", |lua, q: &Queue, _| {
        take(lua, q)
            .and_then(|e| e.map(|e| hooks_for(lua, &e)).transpose())
            .map(|found| found.map_or((None, None), |(f, a)| (Some(f), Some(a))))
            .map_err(|e| format!("dispatch: {e}"))
    })?;
    let is_queue = lua.create_function(|_, v: Value| {
        Ok(matches!(&v, Value::UserData(ud) if ud.is::<Object<Queue>>()))
    })?;
    let dispatch: Function = lua.load(DISPATCH).set_name("=eccluster.dispatch").call((
        is_queue,
        next_event.clone(),
        next_for_hooks,
    ))?;
    register_type::<Queue>(
        lua,
        [
            Ok(("next", next_event)),
            Ok(("dispatch", dispatch)),
            method(lua, "fd", |_, q: &Queue, _| Ok(q.0.fd())),
            method(lua, "dropped", |_, q: &Queue, _| Ok(q.0.dropped())),
            method(lua, "wait", |_, q: &Queue, args| {
                let timeout = match args.get(1) {
                    Value::Nil => None,
                    Value::Integer(i) if *i >= 0 => Some(Duration::from_secs(i.unsigned_abs())),
                    Value::Number(f) if *f >= 0.0 && f.is_finite() => {
                        Some(Duration::from_secs_f64(*f))
                    }
                    Value::Integer(_) | Value::Number(_) => {
                        return Err(args.bad(1, "seconds must be 0 or more"));
                    }
                    _ => return Err(args.expected(1, "number or nil")),
                };
                q.0.wait(timeout).map_err(|e| format!("wait: {e}"))
            }),
        ],
    )?;
    let node = node.clone();
    ecc.set(
        "events",
        function(lua, "events", move |lua, args| {
            let node = node.get()?;
            let capacity = args.opt_integer(1, 0, 0..=i64::MAX)?;
            let queue = node
                .events(usize::try_from(capacity).unwrap_or(usize::MAX))
                .map_err(|e| match e {
                    NodeError::InvalidArgument(why) => args.bad(1, why),
                    other => format!("events: {other}"),
                })?;
            new_object(lua, Queue(queue))
        })?,
    )
}
