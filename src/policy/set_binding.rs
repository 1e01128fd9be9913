//! set_binding: choosing the binding a message leaves from (the
//! reference's `validate_set_binding` policy point).
//!
//! The host hands over a [`Message`]: its envelope sender, recipient
//! domains, any headers it cares to pass, and the binding (and group) it
//! has now. The node runs the C and Rust hooks, then the Lua ones, each of
//! which may choose a binding by name ([`Message::choose_binding`],
//! `msg:binding(name)`) or from a group ([`Message::choose_binding_group`],
//! `msg:binding_group(name)`, see [`super::bindings`]), and may end the
//! chain. The answer ([`Decision`]) comes from the binding the message has
//! at the end, read against the binding table the call started with:
//! send from it here, move the message to the node that owns its DuraVIP,
//! or neither (no binding chosen, or none available), with the reason.
//!
//! Choosing is valid only during the call, as in the reference; in Lua the
//! message is a userdata that holds it only for the hook's call.

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;
use std::sync::Arc;

use mlua::{Function, IntoLuaMulti, Lua, UserData, UserDataMethods, Value};

use super::bindings::{BindingState, BindingTable, Choice};
use super::engine::Engine;
use super::hooks::{Flow, Hook};

/// A message whose binding is being chosen (module docs).
#[derive(Clone, Debug, Default)]
pub struct Message {
    /// The envelope sender (`MAIL FROM`), as the host has it.
    pub sender: String,
    pub recipient_domains: Vec<String>,
    /// Header fields the host passes, in order; names match without case.
    pub headers: Vec<(String, String)>,
    /// The binding the message has: the host's assignment before the
    /// call, the policy's choice after.
    pub binding: Option<String>,
    pub binding_group: Option<String>,
    /// Set during a set_binding call.
    call: Option<Call>,
}

#[derive(Clone, Debug)]
struct Call {
    table: Arc<BindingTable>,
    /// Where the chosen binding is in `table`; `None` while the binding
    /// is the host's.
    chosen: Option<usize>,
    /// Why the latest choice failed, until one succeeds.
    failed: Option<String>,
    /// A hook's error, for a decision that has nothing better to say.
    policy_error: Option<String>,
}

/// Why a choice was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChooseError {
    /// Choosing is valid only during set_binding.
    NotInSetBinding,
    UnknownBinding(String),
    UnknownGroup(String),
    /// None of the group's bindings is available now: why.
    NoneAvailable(String),
}

impl fmt::Display for ChooseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChooseError::NotInSetBinding => {
                f.write_str("a binding can be chosen only during set_binding")
            }
            ChooseError::UnknownBinding(name) => write!(f, "unknown binding '{name}'"),
            ChooseError::UnknownGroup(name) => write!(f, "unknown binding group '{name}'"),
            ChooseError::NoneAvailable(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for ChooseError {}

/// The answer to the host (module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Send from this binding, here.
    Send { binding: String },
    /// The binding's DuraVIP is owned by `node`: move the message there.
    Move { binding: String, node: String },
    /// No policy chose a binding; the host keeps its own choice.
    Unchanged { reason: String },
    /// The chosen binding cannot be used now, anywhere.
    Unavailable { reason: String },
}

impl Message {
    /// A message from `sender` (an empty sender is the null sender `<>`).
    pub fn new(sender: impl Into<String>) -> Message {
        Message {
            sender: sender.into(),
            ..Message::default()
        }
    }

    /// The values of a header field, in order (names match without case).
    pub fn header(&self, name: &str) -> impl Iterator<Item = &str> {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Chooses a binding by name, during set_binding.
    pub fn choose_binding(&mut self, name: &str) -> Result<(), ChooseError> {
        let call = self.call.as_mut().ok_or(ChooseError::NotInSetBinding)?;
        let Some(index) = call.table.index_of(name) else {
            return Err(ChooseError::UnknownBinding(name.to_string()));
        };
        let info = call.table.at(index).ok_or(ChooseError::NotInSetBinding)?;
        set_text(&mut self.binding, Some(&info.name));
        set_text(&mut self.binding_group, info.group.as_deref());
        call.chosen = Some(index);
        call.failed = None;
        Ok(())
    }

    /// Chooses a binding of a group (see [`super::bindings`]), during
    /// set_binding, and returns its name. When none is available the
    /// message keeps its binding, and the decision says why unless a later
    /// choice succeeds; an unknown group changes nothing (a policy may try
    /// a group named after the sender's domain, say).
    pub fn choose_binding_group(&mut self, group: &str) -> Result<&str, ChooseError> {
        let call = self.call.as_mut().ok_or(ChooseError::NotInSetBinding)?;
        match call.table.choose_from_group(group) {
            Choice::Chosen(index, info) => {
                set_text(&mut self.binding, Some(&info.name));
                set_text(&mut self.binding_group, Some(group));
                call.chosen = Some(index);
                call.failed = None;
                Ok(self.binding.as_deref().unwrap_or_default())
            }
            Choice::UnknownGroup => Err(ChooseError::UnknownGroup(group.to_string())),
            Choice::NoneAvailable(why) => {
                call.failed = Some(why.clone());
                Err(ChooseError::NoneAvailable(why))
            }
        }
    }

    /// Starts a set_binding call against `table`.
    pub fn begin(&mut self, table: Arc<BindingTable>) {
        self.call = Some(Call {
            table,
            chosen: None,
            failed: None,
            policy_error: None,
        });
    }

    /// A hook failed: the decision mentions it if it has nothing better.
    pub fn policy_failed(&mut self, error: &str) {
        if let Some(call) = &mut self.call {
            call.policy_error.get_or_insert_with(|| error.to_string());
        }
    }

    /// Ends the call and answers it (module docs).
    pub fn finish(&mut self) -> Decision {
        let Some(call) = self.call.take() else {
            return Decision::Unchanged {
                reason: "set_binding did not run".into(),
            };
        };
        if let Some(why) = call.failed {
            return Decision::Unavailable { reason: why };
        }
        let Some(binding) = self.binding.clone() else {
            return Decision::Unchanged {
                reason: call
                    .policy_error
                    .map(|e| format!("no binding was chosen (policy error: {e})"))
                    .unwrap_or_else(|| "no binding was chosen".into()),
            };
        };
        // The chosen binding by its place, unless a hook wrote another name
        // into the message since.
        let chosen = call
            .chosen
            .and_then(|i| call.table.at(i))
            .filter(|info| info.name == binding);
        let Some(info) = chosen.or_else(|| call.table.get(&binding)) else {
            return if call.chosen.is_none() {
                Decision::Unchanged {
                    reason: format!("binding '{binding}' is the host's, not one eccluster knows"),
                }
            } else {
                Decision::Unavailable {
                    reason: format!("unknown binding '{binding}'"),
                }
            };
        };
        match &info.state {
            BindingState::Local | BindingState::Owned => Decision::Send { binding },
            BindingState::Remote(node) => Decision::Move {
                binding,
                node: node.clone(),
            },
            BindingState::Unowned | BindingState::Unplumbed => Decision::Unavailable {
                reason: info.unavailable().unwrap_or_default(),
            },
        }
    }
}

/// Sets `slot` to `text`, reusing the string it holds: a message's binding
/// is chosen once per message, on the hot path.
fn set_text(slot: &mut Option<String>, text: Option<&str>) {
    match (slot.as_mut(), text) {
        (Some(s), Some(t)) => {
            s.clear();
            s.push_str(t);
        }
        (_, t) => *slot = t.map(str::to_string),
    }
}

/// Runs the Lua set_binding hooks of `engine` on this thread, with `msg`
/// as their argument.
pub fn run_lua_hooks(engine: &Engine, msg: &mut Message) -> Flow {
    let mut errors = Vec::new();
    let flow = engine.run_hook(
        Hook::SetBinding,
        |lua, f| call_with_message(lua, f, msg),
        |e| errors.push(e.to_string()),
    );
    for e in errors {
        msg.policy_failed(&e);
    }
    flow
}

/// Calls one set_binding hook with `msg`. Lua sees the message as a
/// userdata that holds it only during the call: the state keeps one
/// ([`MessageSlot`]), into which the message moves for the call and out
/// of which it moves back after, so a call allocates nothing.
pub fn call_with_message(lua: &Lua, hook: &Function, msg: &mut Message) -> mlua::Result<Flow> {
    let slot = match lua.app_data_ref::<MessageSlot>() {
        Some(slot) => slot.clone(),
        None => {
            let slot = MessageSlot::new(lua)?;
            lua.set_app_data(slot.clone());
            slot
        }
    };
    // A hook that places another message (re-entering set_binding on this
    // thread) finds the state's slot taken and gets one of its own.
    let slot = if slot.message.borrow().is_some() {
        MessageSlot::new(lua)?
    } else {
        slot
    };
    *slot.message.borrow_mut() = Some(std::mem::take(msg));
    let returned = hook.call::<Value>(&slot.userdata);
    if let Some(back) = slot.message.borrow_mut().take() {
        *msg = back;
    }
    Ok(Flow::from_returned(&returned?))
}

/// Where a message is while a set_binding hook runs: the userdata Lua
/// sees as `msg`, and the cell that holds the message (app data of the
/// state, so the cell is reached without borrowing the userdata).
#[derive(Clone, Debug)]
pub struct MessageSlot {
    userdata: mlua::AnyUserData,
    message: Rc<RefCell<Option<Message>>>,
}

impl MessageSlot {
    fn new(lua: &Lua) -> mlua::Result<MessageSlot> {
        let message = Rc::new(RefCell::new(None));
        Ok(MessageSlot {
            userdata: lua.create_userdata(LuaMessage(Rc::clone(&message)))?,
            message,
        })
    }
}

/// A message as a Lua userdata of its own, with the methods a set_binding
/// hook's `msg` has, for a host that builds messages in Lua (the
/// `require "eccluster"` module's `eccluster.message{...}`). Outside a
/// set_binding call it reads the message, and choosing says it cannot.
pub fn message_userdata(lua: &Lua, msg: Message) -> mlua::Result<mlua::AnyUserData> {
    lua.create_userdata(LuaMessage(Rc::new(RefCell::new(Some(msg)))))
}

/// Runs `f` with the message of a [`message_userdata`] taken out of it
/// (so that a hook reaching the same userdata meanwhile finds it outside
/// its call rather than borrowed), and puts it back after.
pub fn with_message_userdata<R>(
    userdata: &mlua::AnyUserData,
    f: impl FnOnce(&mut Message) -> R,
) -> mlua::Result<R> {
    let cell = Rc::clone(&userdata.borrow::<LuaMessage>()?.0);
    let mut msg = cell.borrow_mut().take().ok_or_else(outside)?;
    let result = f(&mut msg);
    *cell.borrow_mut() = Some(msg);
    Ok(result)
}

/// `msg` in Lua: `msg:sender()`, `msg:recipient_domains()`,
/// `msg:header(name)` (a list of the values), `msg:binding([name])` and
/// `msg:binding_group([name])`. Choosing returns the chosen binding's name,
/// or nil and the reason. Outside its set_binding call (a script that kept
/// it) every method is an error.
struct LuaMessage(Rc<RefCell<Option<Message>>>);

impl LuaMessage {
    fn with<R>(&self, f: impl FnOnce(&mut Message) -> mlua::Result<R>) -> mlua::Result<R> {
        let mut message = self.0.borrow_mut();
        f(message.as_mut().ok_or_else(outside)?)
    }
}

fn outside() -> mlua::Error {
    mlua::Error::runtime("a message is valid only during its set_binding call")
}

impl UserData for LuaMessage {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("sender", |lua, m, ()| {
            m.with(|m| lua.create_string(&m.sender))
        });
        methods.add_method("recipient_domains", |lua, m, ()| {
            m.with(|m| lua.create_sequence_from(m.recipient_domains.iter().map(String::as_str)))
        });
        methods.add_method("header", |lua, m, name: mlua::LuaString| {
            let name = name.to_str()?;
            m.with(|m| lua.create_sequence_from(m.header(&name)))
        });
        methods.add_method("binding", |lua, m, name: Option<mlua::LuaString>| {
            m.with(|m| {
                let Some(name) = name else {
                    return (m.binding.as_deref(),).into_lua_multi(lua);
                };
                match m.choose_binding(&name.to_str()?) {
                    Ok(()) => (m.binding.as_deref(),).into_lua_multi(lua),
                    Err(e) => (Value::Nil, e.to_string()).into_lua_multi(lua),
                }
            })
        });
        methods.add_method("binding_group", |lua, m, group: Option<mlua::LuaString>| {
            m.with(|m| {
                let Some(group) = group else {
                    return (m.binding_group.as_deref(),).into_lua_multi(lua);
                };
                match m.choose_binding_group(&group.to_str()?) {
                    Ok(chosen) => (lua.create_string(chosen)?,).into_lua_multi(lua),
                    Err(e) => (Value::Nil, e.to_string()).into_lua_multi(lua),
                }
            })
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::bindings::BindingInfo;

    fn table() -> Arc<BindingTable> {
        let b = |name: &str, state: BindingState| BindingInfo {
            name: name.into(),
            group: Some("pool".into()),
            address: None,
            state,
        };
        Arc::new(BindingTable::new([
            b("here", BindingState::Owned),
            b("there", BindingState::Remote("n2".into())),
            b("nowhere", BindingState::Unowned),
        ]))
    }

    #[test]
    fn the_decision_follows_the_chosen_bindings_state() {
        let mut m = Message::new("a@example.com");
        assert_eq!(
            m.choose_binding("here"),
            Err(ChooseError::NotInSetBinding),
            "only during set_binding"
        );
        let cases = [
            (
                "here",
                Decision::Send {
                    binding: "here".into(),
                },
            ),
            (
                "there",
                Decision::Move {
                    binding: "there".into(),
                    node: "n2".into(),
                },
            ),
            (
                "nowhere",
                Decision::Unavailable {
                    reason: "binding 'nowhere': no node holds its DuraVIP".into(),
                },
            ),
        ];
        for (name, decision) in cases {
            m.begin(table());
            m.choose_binding(name).unwrap();
            assert_eq!(m.binding_group.as_deref(), Some("pool"));
            assert_eq!(m.finish(), decision, "{name}");
        }
        m.begin(table());
        assert_eq!(
            m.choose_binding("bogus"),
            Err(ChooseError::UnknownBinding("bogus".into()))
        );
        assert_eq!(m.choose_binding_group("pool").unwrap(), "here");
    }

    #[test]
    fn without_a_choice_the_hosts_binding_stands() {
        let mut m = Message::new("");
        m.begin(table());
        assert_eq!(
            m.finish(),
            Decision::Unchanged {
                reason: "no binding was chosen".into()
            }
        );
        m.binding = Some("default".into());
        m.begin(table());
        m.policy_failed("p.lua:1: boom");
        assert!(
            matches!(m.finish(), Decision::Unchanged { reason } if reason.contains("the host's"))
        );
        m.binding = None;
        m.begin(table());
        m.policy_failed("p.lua:1: boom");
        assert_eq!(
            m.finish(),
            Decision::Unchanged {
                reason: "no binding was chosen (policy error: p.lua:1: boom)".into()
            }
        );
    }

    #[test]
    fn a_failed_group_choice_is_the_answer_unless_a_later_choice_succeeds() {
        let unavailable = Arc::new(BindingTable::new([BindingInfo {
            name: "gone".into(),
            group: Some("g".into()),
            address: None,
            state: BindingState::Unowned,
        }]));
        let mut m = Message::new("");
        m.binding = Some("default".into());
        m.begin(Arc::clone(&unavailable));
        assert!(m.choose_binding_group("g").is_err());
        assert_eq!(m.binding.as_deref(), Some("default"), "unchanged");
        assert!(
            matches!(m.finish(), Decision::Unavailable { reason } if reason.contains("no binding to send from"))
        );
        m.begin(table());
        assert_eq!(
            m.choose_binding_group("nope"),
            Err(ChooseError::UnknownGroup("nope".into()))
        );
        assert!(
            matches!(m.finish(), Decision::Unchanged { .. }),
            "an unknown group changes nothing"
        );
        m.begin(Arc::clone(&unavailable));
        assert!(m.choose_binding_group("g").is_err());
        m.begin(table());
        m.choose_binding_group("pool").unwrap();
        assert_eq!(
            m.finish(),
            Decision::Send {
                binding: "here".into()
            }
        );
    }
}
