//! `ecc_node_policy_*`, `ecc_message_*` and set_binding.

use std::ffi::{c_char, c_void};

use super::boundary::{Handle, boundary, boundary_void, put, str_arg, write_str};
use super::node::{HostPtr, ecc_hook_order, ecc_node, hook_order, node_and_hook};
use super::status::{ecc_status, fail};
use crate::policy::{ChooseError, Decision, Flow, Message};

/// A message whose binding is being chosen: its envelope sender,
/// recipient domains, header fields and binding. Made by
/// `ecc_message_new`, freed by `ecc_message_free`; one thread at a time.
#[derive(Debug)]
pub struct ecc_message {
    _private: [u8; 0],
}

impl Handle for ecc_message {
    type Target = Message;
}

/// What a set_binding hook returns: `ECC_HOOK_CONTINUE` or `ECC_HOOK_DONE`.
pub type ecc_hook_flow = u32;
/// Let the next hook run.
pub const ECC_HOOK_CONTINUE: ecc_hook_flow = 0;
/// Skip the hooks after this one (the reference's `VALIDATE_DONE`).
pub const ECC_HOOK_DONE: ecc_hook_flow = 1;

/// What `ecc_node_set_binding` decided (`ecc_binding_decision.kind`).
pub type ecc_decision_kind = u32;
/// Send from `binding`, here.
pub const ECC_DECISION_SEND: ecc_decision_kind = 0;
/// `binding`'s DuraVIP is owned by `node`: move the message there.
pub const ECC_DECISION_MOVE: ecc_decision_kind = 1;
/// No policy chose a binding; keep the message's own (`reason` says why).
pub const ECC_DECISION_UNCHANGED: ecc_decision_kind = 2;
/// The chosen binding (or group) cannot be used now, anywhere (`reason`).
pub const ECC_DECISION_UNAVAILABLE: ecc_decision_kind = 3;

/// Size of each text field of `ecc_binding_decision`, with its NUL.
pub const ECC_DECISION_TEXT_MAX: usize = 256;

/// The answer of `ecc_node_set_binding`. Fields that do not apply to
/// `kind` are empty strings; `reason` is cut (at a character) to fit.
#[repr(C)]
#[derive(Debug)]
pub struct ecc_binding_decision {
    pub kind: ecc_decision_kind,
    /// The binding to send from (SEND, MOVE).
    pub binding: [c_char; ECC_DECISION_TEXT_MAX],
    /// The node to move the message to (MOVE).
    pub node: [c_char; ECC_DECISION_TEXT_MAX],
    /// Why (UNCHANGED, UNAVAILABLE).
    pub reason: [c_char; ECC_DECISION_TEXT_MAX],
}

/// A set_binding hook: called with the message, whose binding it may
/// choose (`ecc_message_choose_binding`, `ecc_message_choose_binding_group`);
/// returns `ECC_HOOK_CONTINUE` or `ECC_HOOK_DONE`. `msg` is the handle the
/// host passed to `ecc_node_set_binding`.
///
/// Runs on the thread that calls `ecc_node_set_binding`, concurrently when
/// several threads do: keep `userdata` thread-safe.
pub type ecc_set_binding_hook_fn =
    Option<unsafe extern "C" fn(userdata: *mut c_void, msg: *mut ecc_message) -> ecc_hook_flow>;

/// A message handle, or the status its NULL gets.
///
/// # Safety
/// `msg` is NULL or a live handle.
unsafe fn message<'a>(msg: *const ecc_message) -> Result<&'a Message, ecc_status> {
    // SAFETY: per this function's contract.
    unsafe { ecc_message::borrow(msg, "msg") }
}

/// # Safety
/// As [`message`], and no other reference to it is live.
unsafe fn message_mut<'a>(msg: *mut ecc_message) -> Result<&'a mut Message, ecc_status> {
    // SAFETY: per this function's contract.
    unsafe { ecc_message::borrow_mut(msg, "msg") }
}

/// Runs an export's body with the message, turning `Err` into its status.
fn with_message(
    msg: *mut ecc_message,
    body: impl FnOnce(&mut Message) -> Result<ecc_status, ecc_status>,
) -> ecc_status {
    boundary(|| {
        // SAFETY: the exports pass their caller's handle, live per their contracts.
        match unsafe { message_mut(msg) }.and_then(body) {
            Ok(s) | Err(s) => s,
        }
    })
}

/// A new message with an empty sender (the null sender `<>`), no
/// recipients, headers or binding.
///
/// # Safety
/// `out` is a valid pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_message_new(out: *mut *mut ecc_message) -> ecc_status {
    boundary(|| {
        if out.is_null() {
            return fail(ecc_status::ECC_NULL_ARGUMENT, "out is NULL");
        }
        // SAFETY: out is non-null and valid per the contract.
        unsafe { put(out, ecc_message::into_raw(Message::default())) };
        ecc_status::ECC_OK
    })
}

/// Frees a message; NULL is a no-op.
///
/// # Safety
/// `msg` is NULL or a live handle that is not used again.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_message_free(msg: *mut ecc_message) {
    // SAFETY: per this function's contract.
    boundary_void(|| unsafe { ecc_message::free(msg) });
}

/// Sets the envelope sender (`MAIL FROM`, "" for `<>`).
///
/// # Safety
/// `msg` is a live handle; `sender` a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_message_set_sender(
    msg: *mut ecc_message,
    sender: *const c_char,
) -> ecc_status {
    with_message(msg, |m| {
        // SAFETY: per this function's contract.
        m.sender = unsafe { str_arg(sender, "sender") }?.to_string();
        Ok(ecc_status::ECC_OK)
    })
}

/// Adds a recipient domain.
///
/// # Safety
/// `msg` is a live handle; `domain` a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_message_add_recipient_domain(
    msg: *mut ecc_message,
    domain: *const c_char,
) -> ecc_status {
    with_message(msg, |m| {
        // SAFETY: per this function's contract.
        let domain = unsafe { str_arg(domain, "domain") }?;
        m.recipient_domains.push(domain.to_string());
        Ok(ecc_status::ECC_OK)
    })
}

/// Adds a header field the policy may read (names match without case).
///
/// # Safety
/// `msg` is a live handle; `name` and `value` NUL-terminated strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_message_add_header(
    msg: *mut ecc_message,
    name: *const c_char,
    value: *const c_char,
) -> ecc_status {
    with_message(msg, |m| {
        // SAFETY: per this function's contract.
        let (name, value) = unsafe { (str_arg(name, "name")?, str_arg(value, "value")?) };
        m.headers.push((name.to_string(), value.to_string()));
        Ok(ecc_status::ECC_OK)
    })
}

/// Sets the binding (and group) the message has now, the host's own
/// assignment: any names, NULL for none. (A hook chooses with
/// `ecc_message_choose_binding` instead, which checks the name.)
///
/// # Safety
/// `msg` is a live handle; `binding` and `group` NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_message_set_binding(
    msg: *mut ecc_message,
    binding: *const c_char,
    group: *const c_char,
) -> ecc_status {
    with_message(msg, |m| {
        // SAFETY: per this function's contract.
        let optional = |p: *const c_char, name| unsafe { optional_str(p, name) };
        let (binding, group) = (optional(binding, "binding")?, optional(group, "group")?);
        m.binding = binding;
        m.binding_group = group;
        Ok(ecc_status::ECC_OK)
    })
}

/// An optional C string argument.
///
/// # Safety
/// As [`str_arg`], NULL allowed.
unsafe fn optional_str(p: *const c_char, name: &str) -> Result<Option<String>, ecc_status> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: non-null, and NUL-terminated per the contract.
    unsafe { str_arg(p, name) }.map(|s| Some(s.to_string()))
}

/// Copies a text field of a message into a caller buffer, or says it has
/// none (`ECC_NOT_FOUND`).
fn message_text(
    msg: *const ecc_message,
    what: &str,
    pick: impl FnOnce(&Message) -> Option<String>,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> ecc_status {
    boundary(|| {
        // SAFETY: the exported getters pass their caller's handle.
        let m = match unsafe { message(msg) } {
            Ok(m) => m,
            Err(s) => return s,
        };
        match pick(m) {
            // SAFETY: buf/len/out_len come from the caller per the getters' contracts.
            Some(text) => unsafe { write_str(&text, buf, len, out_len) },
            None => fail(
                ecc_status::ECC_NOT_FOUND,
                format!("the message has no {what}"),
            ),
        }
    })
}

/// The envelope sender.
///
/// # Safety
/// `msg` is a live handle; `buf` writable for `len` bytes (or NULL with
/// `len` 0 to ask the size); `out_len` a valid pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_message_sender(
    msg: *const ecc_message,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> ecc_status {
    message_text(msg, "sender", |m| Some(m.sender.clone()), buf, len, out_len)
}

/// The `index`th recipient domain (from 0); `ECC_NOT_FOUND` past the last.
///
/// # Safety
/// As `ecc_message_sender`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_message_recipient_domain(
    msg: *const ecc_message,
    index: usize,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> ecc_status {
    let what = format!("recipient domain {index}");
    let pick = |m: &Message| m.recipient_domains.get(index).cloned();
    message_text(msg, &what, pick, buf, len, out_len)
}

/// The `index`th value (from 0) of the header field `name`;
/// `ECC_NOT_FOUND` past the last.
///
/// # Safety
/// As `ecc_message_sender`; `name` a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_message_header(
    msg: *const ecc_message,
    name: *const c_char,
    index: usize,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> ecc_status {
    boundary(|| {
        let name = match boundary_str(name, "name") {
            Ok(n) => n,
            Err(s) => return s,
        };
        let what = format!("value {index} of header {name}");
        let pick = |m: &Message| m.header(name).nth(index).map(str::to_string);
        message_text(msg, &what, pick, buf, len, out_len)
    })
}

/// A string argument outside an export's boundary (the check cannot panic).
fn boundary_str<'a>(p: *const c_char, name: &str) -> Result<&'a str, ecc_status> {
    // SAFETY: the exports pass their caller's argument, NUL-terminated per their contracts.
    unsafe { str_arg(p, name) }
}

/// The message's binding: the host's, or the one a hook chose;
/// `ECC_NOT_FOUND` when it has none.
///
/// # Safety
/// As `ecc_message_sender`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_message_binding(
    msg: *const ecc_message,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> ecc_status {
    message_text(msg, "binding", |m| m.binding.clone(), buf, len, out_len)
}

/// The message's binding group; `ECC_NOT_FOUND` when it has none.
///
/// # Safety
/// As `ecc_message_sender`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_message_binding_group(
    msg: *const ecc_message,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> ecc_status {
    let pick = |m: &Message| m.binding_group.clone();
    message_text(msg, "binding group", pick, buf, len, out_len)
}

fn choose_error(e: &ChooseError) -> ecc_status {
    let status = match e {
        ChooseError::NotInSetBinding => ecc_status::ECC_INVALID_STATE,
        ChooseError::UnknownBinding(_)
        | ChooseError::UnknownGroup(_)
        | ChooseError::NoneAvailable(_) => ecc_status::ECC_NOT_FOUND,
    };
    fail(status, e.to_string())
}

/// Chooses the binding `name` (in a set_binding hook only:
/// `ECC_INVALID_STATE` elsewhere). `ECC_NOT_FOUND` for a binding the node
/// does not know; the message keeps its binding.
///
/// # Safety
/// `msg` is a live handle; `name` a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_message_choose_binding(
    msg: *mut ecc_message,
    name: *const c_char,
) -> ecc_status {
    with_message(msg, |m| {
        let name = boundary_str(name, "name")?;
        m.choose_binding(name).map_err(|e| choose_error(&e))?;
        Ok(ecc_status::ECC_OK)
    })
}

/// Chooses a binding of `group` (in a set_binding hook only): one whose
/// DuraVIP this node holds first, then one of its own non-DuraVIP
/// bindings, then one another node holds (the message moves there),
/// randomly among equals; copies its name into `buf`. `ECC_NOT_FOUND`
/// when the group is unknown or has no binding available now
/// (`ecc_last_error()` says why, binding by binding).
///
/// # Safety
/// `msg` is a live handle; `group` a NUL-terminated string; `buf`, `len`
/// and `out_len` as for `ecc_message_sender`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_message_choose_binding_group(
    msg: *mut ecc_message,
    group: *const c_char,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> ecc_status {
    with_message(msg, |m| {
        let group = boundary_str(group, "group")?;
        let chosen = m
            .choose_binding_group(group)
            .map_err(|e| choose_error(&e))?;
        // SAFETY: buf/len/out_len come from the caller per the contract.
        Ok(unsafe { write_str(chosen, buf, len, out_len) })
    })
}

/// Registers a set_binding hook, first or last among the C hooks (which
/// run before the policy scripts' hooks). May be called at any time.
///
/// # Safety
/// `node` is a live handle; `hook` a valid function; `userdata` usable on
/// every thread that calls `ecc_node_set_binding`, until the node is freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_node_register_set_binding_hook(
    node: *mut ecc_node,
    order: ecc_hook_order,
    hook: ecc_set_binding_hook_fn,
    userdata: *mut c_void,
) -> ecc_status {
    boundary(|| {
        let (node, hook) = match node_and_hook(node, hook) {
            Ok(pair) => pair,
            Err(s) => return s,
        };
        let order = match hook_order(order) {
            Ok(o) => o,
            Err(s) => return s,
        };
        let userdata = HostPtr(userdata);
        node.register_set_binding_hook(
            order,
            Box::new(move |msg: &mut Message| {
                let handle = std::ptr::from_mut(msg).cast::<ecc_message>();
                // SAFETY: the handle points to the message for the call's
                // duration and nothing else touches it meanwhile; the host's
                // function is called as its type declares.
                match unsafe { hook(userdata.get(), handle) } {
                    ECC_HOOK_DONE => Flow::Done,
                    _ => Flow::Continue,
                }
            }),
        );
        ecc_status::ECC_OK
    })
}

/// Chooses the binding `msg` leaves from: runs the C hooks, then the
/// policy scripts' `set_binding` hooks, on this thread, until one is done,
/// and writes the decision to `out`: send from a binding here, move the
/// message to the node owning the binding's DuraVIP, or neither, with the
/// reason. Afterwards the message holds the chosen binding. May be called
/// from any thread, concurrently (with different messages).
///
/// # Safety
/// `node` and `msg` are live handles; `out` a valid pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_node_set_binding(
    node: *const ecc_node,
    msg: *mut ecc_message,
    out: *mut ecc_binding_decision,
) -> ecc_status {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (node, msg) = match unsafe { (ecc_node::borrow(node, "node"), message_mut(msg)) } {
            (Ok(n), Ok(m)) => (n, m),
            (Err(s), _) | (_, Err(s)) => return s,
        };
        if out.is_null() {
            return fail(ecc_status::ECC_NULL_ARGUMENT, "out is NULL");
        }
        let decision = node.set_binding(msg);
        match decision_of(&decision) {
            // SAFETY: out is non-null and valid per the contract.
            Ok(d) => unsafe { out.write(d) },
            Err(s) => return s,
        }
        ecc_status::ECC_OK
    })
}

/// The C form of a decision; binding and node names must fit.
fn decision_of(decision: &Decision) -> Result<ecc_binding_decision, ecc_status> {
    let mut d = ecc_binding_decision {
        kind: 0,
        binding: [0; ECC_DECISION_TEXT_MAX],
        node: [0; ECC_DECISION_TEXT_MAX],
        reason: [0; ECC_DECISION_TEXT_MAX],
    };
    let name = |field: &mut [c_char; ECC_DECISION_TEXT_MAX], text: &str| {
        if text.len() >= ECC_DECISION_TEXT_MAX {
            return Err(fail(
                ecc_status::ECC_BUFFER_TOO_SMALL,
                format!("the name '{text}' is longer than ECC_DECISION_TEXT_MAX - 1 bytes"),
            ));
        }
        copy_text(field, text);
        Ok(())
    };
    match decision {
        Decision::Send { binding } => {
            d.kind = ECC_DECISION_SEND;
            name(&mut d.binding, binding)?;
        }
        Decision::Move { binding, node } => {
            d.kind = ECC_DECISION_MOVE;
            name(&mut d.binding, binding)?;
            name(&mut d.node, node)?;
        }
        Decision::Unchanged { reason } => {
            d.kind = ECC_DECISION_UNCHANGED;
            copy_text(&mut d.reason, cut(reason, ECC_DECISION_TEXT_MAX - 1));
        }
        Decision::Unavailable { reason } => {
            d.kind = ECC_DECISION_UNAVAILABLE;
            copy_text(&mut d.reason, cut(reason, ECC_DECISION_TEXT_MAX - 1));
        }
    }
    Ok(d)
}

/// At most `max` bytes of `s`, cut at a character.
fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Copies `text` (which fits, NUL included) into a fixed field.
fn copy_text(field: &mut [c_char; ECC_DECISION_TEXT_MAX], text: &str) {
    for (slot, byte) in field.iter_mut().zip(text.bytes()) {
        *slot = byte as c_char;
    }
    field[text.len()] = 0;
}

/// Loads a policy script from `source` under `name`, replacing the script
/// of that name or adding it last. The scripts are tried in a fresh Lua
/// state first: on an error nothing changes and `ECC_CONFIG_ERROR` comes
/// with the script and line in `ecc_last_error()`. Threads pick the new
/// scripts up on their next call into the policy.
///
/// # Safety
/// `node` is a live handle; `name` and `source` NUL-terminated strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_node_policy_load(
    node: *const ecc_node,
    name: *const c_char,
    source: *const c_char,
) -> ecc_status {
    boundary(|| {
        // SAFETY: per this function's contract.
        let args = unsafe {
            (
                ecc_node::borrow(node, "node"),
                str_arg(name, "name"),
                str_arg(source, "source"),
            )
        };
        match args {
            (Ok(node), Ok(name), Ok(source)) => policy_result(node.policy_load(name, source)),
            (Err(s), _, _) | (_, Err(s), _) | (_, _, Err(s)) => s,
        }
    })
}

/// Reads the configured policy scripts again and loads them, as
/// `ecc_node_policy_load` does one.
///
/// # Safety
/// `node` is a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_node_policy_reload(node: *const ecc_node) -> ecc_status {
    boundary(|| {
        // SAFETY: per this function's contract.
        match unsafe { ecc_node::borrow(node, "node") } {
            Ok(node) => policy_result(node.policy_reload()),
            Err(s) => s,
        }
    })
}

fn policy_result(r: Result<(), String>) -> ecc_status {
    match r {
        Ok(()) => ecc_status::ECC_OK,
        Err(e) => fail(ecc_status::ECC_CONFIG_ERROR, format!("policy: {e}")),
    }
}
