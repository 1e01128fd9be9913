//! Message moves in C: `ecc_node_move_message`, `ecc_node_register_move_hook`
//! and the `ecc_moved_message_*` accessors a move hook reads its message
//! with.

use std::ffi::{CStr, c_char, c_void};
use std::time::Duration;

use super::boundary::{Handle, boundary, bytes_arg, str_arg, str_array_arg, write_str};
use super::node::{HostPtr, ecc_node, register_engine_hook};
use super::status::{ecc_status, fail};
use crate::node::{MoveEnvelope, MoveError, MoveId, MoveRequest, MoveVerdict, MovedMessage};

/// Size of a buffer that holds any move id with its NUL.
pub const ECC_MOVE_ID_MAX: usize = 65;
/// Size of the buffer a move hook may write its reason into, with its NUL.
pub const ECC_MOVE_REASON_MAX: usize = 1025;

/// A message to move. Strings are NUL-terminated UTF-8; arrays hold their
/// count of items and may be NULL when the count is 0.
#[repr(C)]
#[derive(Debug)]
pub struct ecc_move_request {
    /// The move's id, or NULL for a random one (128 bits, in hex). A host
    /// may use its spool id: 1 to 64 characters from `A-Z a-z 0-9 . _ - :
    /// @ + =`, not starting with `.`. Moving again under the same id after
    /// a failure or a crash is safe: the receiver answers "duplicate" if it
    /// has the message. A message that comes back to a node it once left
    /// must move under a new id.
    pub id: *const c_char,
    /// The reverse path (MAIL FROM); "" for a bounce.
    pub mail_from: *const c_char,
    pub recipients: *const *const c_char,
    pub recipient_count: usize,
    /// The binding and binding group the sender's policy chose; NULL is "".
    pub binding: *const c_char,
    pub binding_group: *const c_char,
    /// Further fields the receiving host gets, as `header_count` names and
    /// values (a name is printable ASCII without ':').
    pub header_names: *const *const c_char,
    pub header_values: *const *const c_char,
    pub header_count: usize,
    /// The message, as bytes (at most 256 MiB).
    pub body: *const u8,
    pub body_len: usize,
}

/// What a successful move reports.
#[repr(C)]
#[derive(Debug)]
pub struct ecc_move_receipt {
    /// The move's id, NUL-terminated (the one generated when the request
    /// had none).
    pub id: [c_char; ECC_MOVE_ID_MAX],
    /// The receiver had the message already (an earlier attempt got there).
    pub duplicate: bool,
    /// Attempts made, the successful one included.
    pub attempts: u32,
}

/// A move hook's verdict: `ECC_MOVE_ACCEPT`, `ECC_MOVE_REJECT` or
/// `ECC_MOVE_DEFER`. An integer rather than a C enum, so that any value a
/// hook returns is defined behaviour; an unknown one defers the move.
pub type ecc_move_verdict = u32;
/// The host has spooled the message durably; the sender may forget it.
pub const ECC_MOVE_ACCEPT: ecc_move_verdict = 0;
/// Refused for good; the sender gets the reason and does not retry.
pub const ECC_MOVE_REJECT: ecc_move_verdict = 1;
/// Not now; the sender retries until its deadline.
pub const ECC_MOVE_DEFER: ecc_move_verdict = 2;

/// A message moved to this node, as its move hook gets it; read it with
/// the `ecc_moved_message_*` functions. Valid only during the hook's call.
#[derive(Debug)]
pub struct ecc_moved_message {
    _private: [u8; 0],
}

impl Handle for ecc_moved_message {
    type Target = MovedMessage;
}

/// Moves a message to node `target` (the reference's `#mmove`) and waits
/// until that node's host accepted it: sent over the cluster link, retried
/// with backoff while the link is down, the target restarts or defers, or
/// no answer comes, for at most `timeout_ms` (not 0). Blocks the calling
/// thread; any number of threads may move at once.
///
/// Returns `ECC_OK` once the target accepted it (or had it already) and
/// writes `*out_receipt` (which may be NULL); `ECC_MOVE_REJECTED` at once
/// when the target's host rejected it; `ECC_MOVE_FAILED` at the deadline
/// (the target may still have received it: moving it again under the same
/// id is safe); `ECC_NOT_FOUND` for a node that is not configured;
/// `ECC_INVALID_STATE` when this node is not running; `ECC_INVALID_ARGUMENT`
/// for a request that cannot be sent. `ecc_last_error()` names the node,
/// the move's id and what happened.
///
/// # Safety
/// `node` is a live handle; `target` a NUL-terminated string; `request`
/// points to a request whose pointers are as its fields' docs say;
/// `out_receipt` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_node_move_message(
    node: *const ecc_node,
    target: *const c_char,
    request: *const ecc_move_request,
    timeout_ms: u32,
    out_receipt: *mut ecc_move_receipt,
) -> ecc_status {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (node, target) =
            match unsafe { (ecc_node::borrow(node, "node"), str_arg(target, "target")) } {
                (Ok(n), Ok(t)) => (n, t),
                (Err(s), _) | (_, Err(s)) => return s,
            };
        if request.is_null() {
            return fail(ecc_status::ECC_NULL_ARGUMENT, "request is NULL");
        }
        if timeout_ms == 0 {
            return fail(
                ecc_status::ECC_INVALID_ARGUMENT,
                "timeout_ms is 0: a move needs time to be acknowledged",
            );
        }
        // SAFETY: non-null and valid per the contract.
        let request = match unsafe { request_arg(&*request) } {
            Ok(r) => r,
            Err(s) => return s,
        };
        let timeout = Duration::from_millis(u64::from(timeout_ms));
        match node.move_message(target, &request, timeout) {
            Ok(receipt) => {
                if !out_receipt.is_null() {
                    let mut id = [0 as c_char; ECC_MOVE_ID_MAX];
                    for (slot, b) in id.iter_mut().zip(receipt.id.as_str().bytes()) {
                        *slot = b as c_char;
                    }
                    // SAFETY: non-null and writable per the contract.
                    unsafe {
                        out_receipt.write(ecc_move_receipt {
                            id,
                            duplicate: receipt.duplicate,
                            attempts: receipt.attempts,
                        });
                    }
                }
                ecc_status::ECC_OK
            }
            Err(e) => {
                let status = match &e {
                    MoveError::Invalid(_) => ecc_status::ECC_INVALID_ARGUMENT,
                    MoveError::UnknownNode(_) => ecc_status::ECC_NOT_FOUND,
                    MoveError::NotRunning => ecc_status::ECC_INVALID_STATE,
                    MoveError::Rejected { .. } => ecc_status::ECC_MOVE_REJECTED,
                    MoveError::Failed { .. } => ecc_status::ECC_MOVE_FAILED,
                };
                fail(status, e.to_string())
            }
        }
    })
}

/// The request's fields as the safe API takes them.
///
/// # Safety
/// `r`'s pointers are as its fields' docs say.
unsafe fn request_arg(r: &ecc_move_request) -> Result<MoveRequest<'_>, ecc_status> {
    // SAFETY: each pointer is as the request's docs say.
    unsafe {
        let id = if r.id.is_null() {
            None
        } else {
            let text = str_arg(r.id, "request->id")?;
            Some(MoveId::parse(text).map_err(|e| {
                fail(
                    ecc_status::ECC_INVALID_ARGUMENT,
                    format!("request->id: {e}"),
                )
            })?)
        };
        let optional = |p: *const c_char, name: &str| {
            if p.is_null() {
                Ok(String::new())
            } else {
                str_arg(p, name).map(str::to_string)
            }
        };
        let names = str_array_arg(r.header_names, r.header_count, "request->header_names")?;
        let values = str_array_arg(r.header_values, r.header_count, "request->header_values")?;
        Ok(MoveRequest {
            id,
            envelope: MoveEnvelope {
                mail_from: str_arg(r.mail_from, "request->mail_from")?.to_string(),
                recipients: str_array_arg(r.recipients, r.recipient_count, "request->recipients")?,
                binding: optional(r.binding, "request->binding")?,
                binding_group: optional(r.binding_group, "request->binding_group")?,
                headers: names.into_iter().zip(values).collect(),
            },
            body: bytes_arg(r.body, r.body_len, "request->body")?,
        })
    }
}

/// A move hook: given a message moved to this node, spool it and return
/// `ECC_MOVE_ACCEPT` only once it is durable; or return `ECC_MOVE_REJECT`
/// or `ECC_MOVE_DEFER` with a reason written into `reason` (NUL-terminated,
/// at most `reason_len` bytes with the NUL; `reason_len` is
/// `ECC_MOVE_REASON_MAX`), which the sender gets. Read the message with the
/// `ecc_moved_message_*` functions; it is valid only during the call.
///
/// When `ecc_moved_message_redelivery` says so, this node saw the message
/// before but did not learn the verdict (it stopped inside the hook): look
/// in the spool, and accept without spooling again if it is there.
///
/// Runs on a thread of the library's own, one per message being received,
/// so calls may run concurrently with each other (never two for the same
/// move) and with every other hook; the cluster link keeps carrying other
/// traffic meanwhile. Do not call `ecc_node_stop` or `ecc_node_free` on
/// this node from it.
pub type ecc_move_hook_fn = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        message: *const ecc_moved_message,
        reason: *mut c_char,
        reason_len: usize,
    ) -> ecc_move_verdict,
>;

/// Sets the node's move hook, replacing any earlier one (a moved message
/// goes to one spool); may be called at any time. Without a hook, moves to
/// this node are deferred.
///
/// # Safety
/// `node` is a live handle; `hook` a valid function; `userdata` usable on
/// the library's threads (see `ecc_move_hook_fn`) until the node is freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_node_register_move_hook(
    node: *mut ecc_node,
    hook: ecc_move_hook_fn,
    userdata: *mut c_void,
) -> ecc_status {
    register_engine_hook(node, hook, userdata, |node, hook, userdata| {
        node.register_move_hook(Box::new(move |m| c_move_hook(hook, &userdata, m)));
    })
}

type HookFn = unsafe extern "C" fn(
    *mut c_void,
    *const ecc_moved_message,
    *mut c_char,
    usize,
) -> ecc_move_verdict;

/// Runs the host's hook on a message and turns its answer into a verdict.
fn c_move_hook(hook: HookFn, userdata: &HostPtr, m: &MovedMessage) -> MoveVerdict {
    let mut reason = [0 as c_char; ECC_MOVE_REASON_MAX];
    let message = std::ptr::from_ref(m).cast::<ecc_moved_message>();
    // SAFETY: the message lives for the call, the buffer is as long as we
    // say; the host's function is called as its type declares.
    let verdict = unsafe { hook(userdata.get(), message, reason.as_mut_ptr(), reason.len()) };
    let bytes: Vec<u8> = reason.iter().map(|c| *c as u8).collect();
    let text = CStr::from_bytes_until_nul(&bytes).map_or_else(
        |_| String::from_utf8_lossy(&bytes).into_owned(),
        |s| s.to_string_lossy().into_owned(),
    );
    let or = |default: &str| {
        if text.is_empty() {
            default.to_string()
        } else {
            text.clone()
        }
    };
    match verdict {
        ECC_MOVE_ACCEPT => MoveVerdict::Accept,
        ECC_MOVE_REJECT => MoveVerdict::Reject(or("rejected by the host")),
        ECC_MOVE_DEFER => MoveVerdict::Defer(or("deferred by the host")),
        other => MoveVerdict::Defer(format!(
            "the move hook returned {other}, which is not a verdict"
        )),
    }
}

/// Copies one string field of a moved message into a caller buffer.
///
/// # Safety
/// As the accessors' contract.
unsafe fn string_field(
    message: *const ecc_moved_message,
    field: impl FnOnce(&MovedMessage) -> Result<&str, ecc_status>,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> ecc_status {
    boundary(|| {
        // SAFETY: per the accessors' contract.
        let m = match unsafe { ecc_moved_message::borrow(message, "message") } {
            Ok(m) => m,
            Err(s) => return s,
        };
        match field(m) {
            // SAFETY: per the accessors' contract.
            Ok(text) => unsafe { write_str(text, buf, len, out_len) },
            Err(s) => s,
        }
    })
}

/// Item `index` of a list of the message, or an error naming the list.
fn item<'a, T>(items: &'a [T], index: usize, what: &str) -> Result<&'a T, ecc_status> {
    items.get(index).ok_or_else(|| {
        fail(
            ecc_status::ECC_INVALID_ARGUMENT,
            format!(
                "index {index} is out of range: the message has {} {what}",
                items.len()
            ),
        )
    })
}

/// Reads a value of the message into a non-NULL out-pointer.
///
/// # Safety
/// As the accessors' contract; `out` is NULL or writable.
unsafe fn value_field<T>(
    message: *const ecc_moved_message,
    out: *mut T,
    value: impl FnOnce(&MovedMessage) -> T,
) -> ecc_status {
    boundary(|| {
        // SAFETY: per the accessors' contract.
        let m = match unsafe { ecc_moved_message::borrow(message, "message") } {
            Ok(m) => m,
            Err(s) => return s,
        };
        if out.is_null() {
            return fail(ecc_status::ECC_NULL_ARGUMENT, "out is NULL");
        }
        // SAFETY: non-null and writable per the contract.
        unsafe { out.write(value(m)) };
        ecc_status::ECC_OK
    })
}

/// The move's id, into a caller buffer (`ECC_MOVE_ID_MAX` bytes always
/// suffice).
///
/// # Safety
/// `message` is the hook's message, during the hook's call; `buf`, `len`
/// and `out_len` as for `ecc_node_nodename`. The same holds for every
/// `ecc_moved_message_*` function.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_moved_message_id(
    message: *const ecc_moved_message,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> ecc_status {
    // SAFETY: per this function's contract.
    unsafe { string_field(message, |m| Ok(m.id.as_str()), buf, len, out_len) }
}

/// The name of the node that sent the message.
///
/// # Safety
/// As `ecc_moved_message_id`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_moved_message_from(
    message: *const ecc_moved_message,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> ecc_status {
    // SAFETY: per this function's contract.
    unsafe { string_field(message, |m| Ok(&m.from), buf, len, out_len) }
}

/// The reverse path (MAIL FROM); "" for a bounce.
///
/// # Safety
/// As `ecc_moved_message_id`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_moved_message_mail_from(
    message: *const ecc_moved_message,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> ecc_status {
    // SAFETY: per this function's contract.
    unsafe { string_field(message, |m| Ok(&m.envelope.mail_from), buf, len, out_len) }
}

/// The binding the sender's policy chose.
///
/// # Safety
/// As `ecc_moved_message_id`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_moved_message_binding(
    message: *const ecc_moved_message,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> ecc_status {
    // SAFETY: per this function's contract.
    unsafe { string_field(message, |m| Ok(&m.envelope.binding), buf, len, out_len) }
}

/// The binding group the sender's policy chose.
///
/// # Safety
/// As `ecc_moved_message_id`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_moved_message_binding_group(
    message: *const ecc_moved_message,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> ecc_status {
    // SAFETY: per this function's contract.
    unsafe {
        string_field(
            message,
            |m| Ok(&m.envelope.binding_group),
            buf,
            len,
            out_len,
        )
    }
}

/// How many recipients the message has.
///
/// # Safety
/// As `ecc_moved_message_id`; `out_count` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_moved_message_recipient_count(
    message: *const ecc_moved_message,
    out_count: *mut usize,
) -> ecc_status {
    // SAFETY: per this function's contract.
    unsafe { value_field(message, out_count, |m| m.envelope.recipients.len()) }
}

/// Recipient `index` (from 0), into a caller buffer.
///
/// # Safety
/// As `ecc_moved_message_id`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_moved_message_recipient(
    message: *const ecc_moved_message,
    index: usize,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> ecc_status {
    // SAFETY: per this function's contract.
    unsafe {
        string_field(
            message,
            |m| item(&m.envelope.recipients, index, "recipients").map(|r| r.as_str()),
            buf,
            len,
            out_len,
        )
    }
}

/// How many header fields the sender passed along.
///
/// # Safety
/// As `ecc_moved_message_id`; `out_count` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_moved_message_header_count(
    message: *const ecc_moved_message,
    out_count: *mut usize,
) -> ecc_status {
    // SAFETY: per this function's contract.
    unsafe { value_field(message, out_count, |m| m.envelope.headers.len()) }
}

/// The name of header field `index` (from 0), into a caller buffer.
///
/// # Safety
/// As `ecc_moved_message_id`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_moved_message_header_name(
    message: *const ecc_moved_message,
    index: usize,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> ecc_status {
    // SAFETY: per this function's contract.
    unsafe {
        string_field(
            message,
            |m| item(&m.envelope.headers, index, "header fields").map(|h| h.0.as_str()),
            buf,
            len,
            out_len,
        )
    }
}

/// The value of header field `index` (from 0), into a caller buffer.
///
/// # Safety
/// As `ecc_moved_message_id`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_moved_message_header_value(
    message: *const ecc_moved_message,
    index: usize,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> ecc_status {
    // SAFETY: per this function's contract.
    unsafe {
        string_field(
            message,
            |m| item(&m.envelope.headers, index, "header fields").map(|h| h.1.as_str()),
            buf,
            len,
            out_len,
        )
    }
}

/// The message's bytes, without copying: `*out_body` points to
/// `*out_len` bytes that stay valid until the hook returns.
///
/// # Safety
/// As `ecc_moved_message_id`; `out_body` and `out_len` are writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_moved_message_body(
    message: *const ecc_moved_message,
    out_body: *mut *const u8,
    out_len: *mut usize,
) -> ecc_status {
    boundary(|| {
        // SAFETY: per this function's contract.
        let m = match unsafe { ecc_moved_message::borrow(message, "message") } {
            Ok(m) => m,
            Err(s) => return s,
        };
        if out_body.is_null() || out_len.is_null() {
            return fail(ecc_status::ECC_NULL_ARGUMENT, "out_body or out_len is NULL");
        }
        // SAFETY: both non-null and writable per the contract.
        unsafe {
            out_body.write(m.body.as_ptr());
            out_len.write(m.body.len());
        }
        ecc_status::ECC_OK
    })
}

/// Whether this is a redelivery: this node saw the move before and never
/// learnt its verdict, so the host should look for it in its spool (see
/// `ecc_move_hook_fn`).
///
/// # Safety
/// As `ecc_moved_message_id`; `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_moved_message_redelivery(
    message: *const ecc_moved_message,
    out: *mut bool,
) -> ecc_status {
    // SAFETY: per this function's contract.
    unsafe { value_field(message, out, |m| m.redelivery) }
}

/// This node's `unconditional_rebind`: whether the host should run its
/// full set_binding policy for the message again (rather than keep the
/// binding the sender chose).
///
/// # Safety
/// As `ecc_moved_message_id`; `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_moved_message_rebind(
    message: *const ecc_moved_message,
    out: *mut bool,
) -> ecc_status {
    // SAFETY: per this function's contract.
    unsafe { value_field(message, out, |m| m.rebind) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hook that answers with the verdict and reason its userdata holds.
    unsafe extern "C" fn scripted(
        userdata: *mut c_void,
        message: *const ecc_moved_message,
        reason: *mut c_char,
        reason_len: usize,
    ) -> ecc_move_verdict {
        // SAFETY: the test passes a (u32, &[u8]) and a live message.
        unsafe {
            let (verdict, text) = *userdata.cast::<(u32, &[u8])>();
            let mut id = [0 as c_char; ECC_MOVE_ID_MAX];
            let mut n = 0;
            assert_eq!(
                ecc_moved_message_id(message, id.as_mut_ptr(), id.len(), &raw mut n),
                ecc_status::ECC_OK
            );
            assert_eq!(n, 2);
            let copy = text.len().min(reason_len);
            std::ptr::copy_nonoverlapping(text.as_ptr(), reason.cast::<u8>(), copy);
            verdict
        }
    }

    fn verdict(verdict: u32, reason: &[u8]) -> MoveVerdict {
        let mut script: (u32, &[u8]) = (verdict, reason);
        let userdata = HostPtr(std::ptr::from_mut(&mut script).cast());
        let message = MovedMessage {
            id: MoveId::parse("m1").unwrap(),
            from: "n1".into(),
            envelope: MoveEnvelope::default(),
            body: Vec::new(),
            redelivery: false,
            rebind: true,
        };
        c_move_hook(scripted, &userdata, &message)
    }

    #[test]
    fn verdicts_and_reasons_come_back_whatever_the_hook_writes() {
        assert_eq!(verdict(ECC_MOVE_ACCEPT, b"\0"), MoveVerdict::Accept);
        assert_eq!(
            verdict(ECC_MOVE_REJECT, b"550 no such user\0"),
            MoveVerdict::Reject("550 no such user".into())
        );
        assert_eq!(
            verdict(ECC_MOVE_DEFER, b""),
            MoveVerdict::Defer("deferred by the host".into())
        );
        // No NUL anywhere, and not UTF-8: kept, replaced.
        let unterminated = vec![b'\xff'; ECC_MOVE_REASON_MAX];
        let MoveVerdict::Reject(text) = verdict(ECC_MOVE_REJECT, &unterminated) else {
            panic!("not a rejection");
        };
        assert_eq!(text.chars().count(), ECC_MOVE_REASON_MAX);
        assert_eq!(
            verdict(7, b"\0"),
            MoveVerdict::Defer("the move hook returned 7, which is not a verdict".into())
        );
    }

    #[test]
    fn out_of_range_items_are_named() {
        let message = MovedMessage {
            id: MoveId::parse("m1").unwrap(),
            from: "n1".into(),
            envelope: MoveEnvelope {
                recipients: vec!["a@b".into()],
                ..MoveEnvelope::default()
            },
            body: b"hi".to_vec(),
            redelivery: true,
            rebind: false,
        };
        let m = std::ptr::from_ref(&message).cast::<ecc_moved_message>();
        let mut buf = [0 as c_char; 16];
        let mut n = 0;
        // SAFETY: a live message, a buffer of the length given.
        unsafe {
            assert_eq!(
                ecc_moved_message_recipient(m, 0, buf.as_mut_ptr(), buf.len(), &raw mut n),
                ecc_status::ECC_OK
            );
            assert_eq!(n, 3);
            assert_eq!(
                ecc_moved_message_recipient(m, 1, buf.as_mut_ptr(), buf.len(), &raw mut n),
                ecc_status::ECC_INVALID_ARGUMENT
            );
            let error = CStr::from_ptr(super::super::status::ecc_last_error());
            assert_eq!(
                error.to_str().unwrap(),
                "index 1 is out of range: the message has 1 recipients"
            );
            let (mut body, mut len) = (std::ptr::null(), 0);
            assert_eq!(
                ecc_moved_message_body(m, &raw mut body, &raw mut len),
                ecc_status::ECC_OK
            );
            assert_eq!(std::slice::from_raw_parts(body, len), b"hi");
            let mut flag = false;
            assert_eq!(
                ecc_moved_message_redelivery(m, &raw mut flag),
                ecc_status::ECC_OK
            );
            assert!(flag);
            assert_eq!(
                ecc_moved_message_rebind(m, std::ptr::null_mut()),
                ecc_status::ECC_NULL_ARGUMENT
            );
        }
    }
}
