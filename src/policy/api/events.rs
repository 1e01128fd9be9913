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
//! `q:wait([seconds])` blocks until one is pending (true) or the time is up
//! (false), for scripts without a loop; `q:dropped()` counts the events
//! lost to a full queue. Integers are Lua integers (`view_id`, a 64-bit
//! hash, may read negative).

use std::sync::Arc;
use std::time::Duration;

use mlua::{Function, Lua, Table, Value};

use super::NodeRef;
use super::errors::function;
use super::object::{LuaObject, Object, method, new_object, register as register_type};
use crate::io::events::{Event, EventQueue, Field};
use crate::node::NodeError;

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
local is_queue, next_event = ...
local error, pairs, type = error, pairs, type
return function(self, handlers)
  if not is_queue(self) then
    error("calling 'dispatch' on bad self (eccluster.events expected, got " .. type(self) .. ")", 2)
  end
  if type(handlers) ~= "table" then
    error("bad argument #1 to 'dispatch' (table expected, got " .. type(handlers) .. ")", 2)
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

/// Adds `events` to `ecc`.
pub(super) fn register(lua: &Lua, ecc: &Table, node: &NodeRef) -> mlua::Result<()> {
    let (_, next_event) = method(lua, "next", |lua, q: &Queue, _| {
        q.0.next()
            .map(|e| event_table(lua, &e))
            .transpose()
            .map_err(|e| format!("next: {e}"))
    })?;
    let is_queue = lua.create_function(|_, v: Value| {
        Ok(matches!(&v, Value::UserData(ud) if ud.is::<Object<Queue>>()))
    })?;
    let dispatch: Function = lua
        .load(DISPATCH)
        .set_name("=eccluster.dispatch")
        .call((is_queue, next_event.clone()))?;
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
