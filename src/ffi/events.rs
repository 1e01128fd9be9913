//! The event queue in C: `ecc_events_*` for the queue (its pollable
//! descriptor, taking events) and `ecc_event_*` to read one event's kind
//! and fields by name, the same names the Lua API's event tables use.

use std::ffi::{c_char, c_int};
use std::sync::Arc;

use super::boundary::{Handle, boundary_void, put, str_arg, write_bytes, write_str};
use super::node::{ecc_node, node_error};
use super::shared::{guarded, out_arg};
use super::status::{ecc_status, fail};
use crate::io::events::{Event, EventQueue, Field};

/// A node's event queue; see `ecc_events_new`. Thread-safe.
#[derive(Debug)]
pub struct ecc_events {
    _private: [u8; 0],
}

impl Handle for ecc_events {
    type Target = Arc<EventQueue>;
}

/// One event taken from a queue, owned by the caller until
/// `ecc_event_free`. Use it from one thread at a time.
#[derive(Debug)]
pub struct ecc_event {
    _private: [u8; 0],
}

impl Handle for ecc_event {
    type Target = Event;
}

/// What an event is about (an integer, so that kinds added later are
/// defined behaviour for older hosts: skip what you do not know).
pub type ecc_event_kind = u32;
/// The view changed. Fields: `view_number`, `view_id` (integers),
/// `members` (strings, sorted).
pub const ECC_EVENT_MEMBERSHIP: ecc_event_kind = 1;
/// This node gained a DuraVIP (plumbed and announced). Fields: `address`
/// (string), `names` (strings: the bindings using it), `listener_ports`
/// (integers).
pub const ECC_EVENT_DURAVIP_GAINED: ecc_event_kind = 2;
/// This node gave a DuraVIP up (unplumbed). Fields as
/// `ECC_EVENT_DURAVIP_GAINED`.
pub const ECC_EVENT_DURAVIP_LOST: ecc_event_kind = 3;
/// A peer's paniclog line on this node's `log_group`. Fields: `sender`,
/// `log` (strings), `time_us` (integer: microseconds since the epoch, by
/// the sender's clock), `line` (bytes, possibly with NULs).
pub const ECC_EVENT_LOG_LINE: ecc_event_kind = 4;
/// Events were lost here because the queue was full; read the state
/// again. Field: `dropped` (integer).
pub const ECC_EVENT_OVERFLOW: ecc_event_kind = 5;
/// A console command waiting for the answer of a Lua host (one the
/// `require "eccluster"` module's `register_control` defined): that
/// host's queues answer it; others skip it. Fields: `words` (string),
/// `args` (strings).
pub const ECC_EVENT_CONSOLE: ecc_event_kind = 6;

fn kind_code(event: &Event) -> ecc_event_kind {
    match event {
        Event::Membership { .. } => ECC_EVENT_MEMBERSHIP,
        Event::DuraVipGained(_) => ECC_EVENT_DURAVIP_GAINED,
        Event::DuraVipLost(_) => ECC_EVENT_DURAVIP_LOST,
        Event::LogLine(_) => ECC_EVENT_LOG_LINE,
        Event::Overflow { .. } => ECC_EVENT_OVERFLOW,
        Event::Console(_) => ECC_EVENT_CONSOLE,
    }
}

/// Makes an event queue for `node` holding at most `capacity` events (0:
/// 1024; at most 1048576). It hears every membership change, DuraVIP
/// gained or lost and log group line from now on (events come while the
/// node runs); several queues may listen to one node, each getting every
/// event.
///
/// Poll its descriptor (`ecc_events_fd`) for reading in your event loop:
/// it is level-triggered, readable exactly while events are pending. When
/// it is, call `ecc_events_next` until it gives no event. Never read or
/// write the descriptor yourself.
///
/// When the queue is full, new events are dropped (the engine never waits
/// for the host) and counted: an `ECC_EVENT_OVERFLOW` event in their place
/// says how many, and `ecc_events_dropped` the total.
///
/// `ECC_INVALID_ARGUMENT` for a capacity too large, `ECC_IO_ERROR` when the
/// descriptor cannot be made.
///
/// # Safety
/// `node` is a live handle; `out` a valid pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_events_new(
    node: *const ecc_node,
    capacity: usize,
    out: *mut *mut ecc_events,
) -> ecc_status {
    guarded(|| {
        // SAFETY: per this function's contract.
        let node = unsafe { ecc_node::borrow(node, "node") }?;
        out_arg(out, "out")?;
        let queue = node.events(capacity).map_err(|e| node_error(&e))?;
        // SAFETY: out is non-null and valid per the contract.
        unsafe { put(out, ecc_events::into_raw(queue)) };
        Ok(())
    })
}

/// The queue's descriptor, to poll for reading (`POLLIN`, `EPOLLIN`); valid
/// until `ecc_events_free`.
///
/// # Safety
/// `events` is a live handle; `out_fd` a valid pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_events_fd(
    events: *const ecc_events,
    out_fd: *mut c_int,
) -> ecc_status {
    guarded(|| {
        // SAFETY: per this function's contract.
        let queue = unsafe { ecc_events::borrow(events, "events") }?;
        out_arg(out_fd, "out_fd")?;
        // SAFETY: non-null and valid per the contract.
        unsafe { *out_fd = queue.fd() };
        Ok(())
    })
}

/// Takes the oldest pending event: `*out_event` is the event (free it
/// with `ecc_event_free`), or NULL when none is pending. Never blocks.
///
/// # Safety
/// `events` is a live handle; `out_event` a valid pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_events_next(
    events: *const ecc_events,
    out_event: *mut *mut ecc_event,
) -> ecc_status {
    guarded(|| {
        // SAFETY: per this function's contract.
        let queue = unsafe { ecc_events::borrow(events, "events") }?;
        out_arg(out_event, "out_event")?;
        let event = queue
            .next()
            .map_or(std::ptr::null_mut(), ecc_event::into_raw);
        // SAFETY: out_event is non-null and valid per the contract.
        unsafe { put(out_event, event) };
        Ok(())
    })
}

/// How many events the queue dropped because it was full, in all.
///
/// # Safety
/// `events` is a live handle; `out` a valid pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_events_dropped(
    events: *const ecc_events,
    out: *mut u64,
) -> ecc_status {
    guarded(|| {
        // SAFETY: per this function's contract.
        let queue = unsafe { ecc_events::borrow(events, "events") }?;
        out_arg(out, "out")?;
        // SAFETY: non-null and valid per the contract.
        unsafe { *out = queue.dropped() };
        Ok(())
    })
}

/// Frees a queue: it stops hearing events, and its descriptor is closed
/// (take it out of your poll set first); NULL is a no-op.
///
/// # Safety
/// `events` is NULL or a live handle, not used again.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_events_free(events: *mut ecc_events) {
    // SAFETY: per this function's contract.
    boundary_void(|| unsafe { ecc_events::free(events) });
}

/// The event's kind, one of `ECC_EVENT_`.
///
/// # Safety
/// `event` is a live event; `out_kind` a valid pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_event_get_kind(
    event: *const ecc_event,
    out_kind: *mut ecc_event_kind,
) -> ecc_status {
    guarded(|| {
        // SAFETY: per this function's contract.
        let event = unsafe { ecc_event::borrow(event, "event") }?;
        out_arg(out_kind, "out_kind")?;
        // SAFETY: non-null and valid per the contract.
        unsafe { *out_kind = kind_code(event) };
        Ok(())
    })
}

/// The field `field` of `event`, or `ECC_NOT_FOUND` naming the fields its
/// kind has.
///
/// # Safety
/// `event` is NULL or a live event; `field` NULL or a C string.
unsafe fn field_arg<'a>(
    event: *const ecc_event,
    field: *const c_char,
) -> Result<(&'a str, Field<'a>), ecc_status> {
    // SAFETY: per this function's contract.
    let event = unsafe { ecc_event::borrow(event, "event") }?;
    // SAFETY: per this function's contract.
    let name = unsafe { str_arg(field, "field") }?;
    match event.field(name) {
        Some(f) => Ok((name, f)),
        None => {
            let known: Vec<&str> = event.fields().iter().map(|(n, _)| *n).collect();
            Err(fail(
                ecc_status::ECC_NOT_FOUND,
                format!(
                    "a {} event has no field '{name}' (it has: {})",
                    event.kind(),
                    known.join(", ")
                ),
            ))
        }
    }
}

/// Item `index` of a field: 0 for a single value, below the count for a
/// list.
fn index_arg(name: &str, index: usize, count: usize) -> Result<(), ecc_status> {
    if index < count {
        return Ok(());
    }
    Err(fail(
        ecc_status::ECC_INVALID_ARGUMENT,
        if count == 1 {
            format!("field '{name}' holds one value: index {index} must be 0")
        } else {
            format!("index {index} is past the {count} items of field '{name}'")
        },
    ))
}

fn wrong_type(name: &str, holds: &str, use_instead: &str) -> ecc_status {
    fail(
        ecc_status::ECC_INVALID_ARGUMENT,
        format!("field '{name}' holds {holds}: read it with {use_instead}"),
    )
}

/// How many items the field `field` holds: the length of a list (which
/// may be 0), 1 for a single value.
///
/// # Safety
/// `event` is a live event; `field` a C string; `out_count` a valid pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_event_count(
    event: *const ecc_event,
    field: *const c_char,
    out_count: *mut usize,
) -> ecc_status {
    guarded(|| {
        // SAFETY: per this function's contract.
        let (_, f) = unsafe { field_arg(event, field) }?;
        out_arg(out_count, "out_count")?;
        let count = match f {
            Field::Integer(_) | Field::Bytes(_) => 1,
            Field::Strings(s) => s.len(),
            Field::Integers(v) => v.len(),
        };
        // SAFETY: non-null and valid per the contract.
        unsafe { *out_count = count };
        Ok(())
    })
}

/// Item `index` of the integer field `field` (`index` 0 for a single
/// value, e.g. `view_number`; below `ecc_event_count` for a list, e.g.
/// `listener_ports`).
///
/// # Safety
/// `event` is a live event; `field` a C string; `out` a valid pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_event_integer(
    event: *const ecc_event,
    field: *const c_char,
    index: usize,
    out: *mut u64,
) -> ecc_status {
    guarded(|| {
        // SAFETY: per this function's contract.
        let (name, f) = unsafe { field_arg(event, field) }?;
        out_arg(out, "out")?;
        let value = match f {
            Field::Integer(v) => {
                index_arg(name, index, 1)?;
                v
            }
            Field::Integers(v) => {
                index_arg(name, index, v.len())?;
                v[index]
            }
            Field::Bytes(_) | Field::Strings(_) => {
                return Err(wrong_type(
                    name,
                    "text",
                    "ecc_event_string or ecc_event_bytes",
                ));
            }
        };
        // SAFETY: non-null and valid per the contract.
        unsafe { *out = value };
        Ok(())
    })
}

/// The bytes of item `index` of the text field `field`, as they are: the
/// text of a string or the bytes of a log `line`.
fn text_item<'a>(name: &str, f: &'a Field<'a>, index: usize) -> Result<&'a [u8], ecc_status> {
    match f {
        Field::Bytes(b) => {
            index_arg(name, index, 1)?;
            Ok(b)
        }
        Field::Strings(s) => {
            index_arg(name, index, s.len())?;
            Ok(s[index].as_bytes())
        }
        Field::Integer(_) | Field::Integers(_) => {
            Err(wrong_type(name, "integers", "ecc_event_integer"))
        }
    }
}

/// Item `index` of the text field `field` as a NUL-terminated string in
/// `buf` (`index` 0 for a single value, e.g. `address`; below
/// `ecc_event_count` for a list, e.g. `members`), with its length (without
/// the NUL) in `*out_len`. `ECC_BUFFER_TOO_SMALL` writes only `*out_len`.
/// A value holding a NUL byte (a log `line` may) is `ECC_INVALID_ARGUMENT`:
/// read it with `ecc_event_bytes`.
///
/// # Safety
/// `event` is a live event; `field` a C string; `buf` NULL (with `buf_len`
/// 0) or writable for `buf_len` bytes; `out_len` a valid pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_event_string(
    event: *const ecc_event,
    field: *const c_char,
    index: usize,
    buf: *mut c_char,
    buf_len: usize,
    out_len: *mut usize,
) -> ecc_status {
    guarded(|| {
        // SAFETY: per this function's contract.
        let (name, f) = unsafe { field_arg(event, field) }?;
        let bytes = text_item(name, &f, index)?;
        let text = std::str::from_utf8(bytes)
            .ok()
            .filter(|t| !t.contains('\0'))
            .ok_or_else(|| {
                fail(
                    ecc_status::ECC_INVALID_ARGUMENT,
                    format!(
                        "field '{name}' is not text without NUL bytes: read it with ecc_event_bytes"
                    ),
                )
            })?;
        // SAFETY: buf, buf_len and out_len per this function's contract.
        match unsafe { write_str(text, buf, buf_len, out_len) } {
            ecc_status::ECC_OK => Ok(()),
            other => Err(other),
        }
    })
}

/// Item `index` of the text field `field` as bytes in `buf`, without a
/// NUL (for a log `line`, which may hold any byte), with its length in
/// `*out_len`. `ECC_BUFFER_TOO_SMALL` writes only `*out_len`.
///
/// # Safety
/// `event` is a live event; `field` a C string; `buf` NULL (with `buf_len`
/// 0) or writable for `buf_len` bytes; `out_len` a valid pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_event_bytes(
    event: *const ecc_event,
    field: *const c_char,
    index: usize,
    buf: *mut u8,
    buf_len: usize,
    out_len: *mut usize,
) -> ecc_status {
    guarded(|| {
        // SAFETY: per this function's contract.
        let (name, f) = unsafe { field_arg(event, field) }?;
        let bytes = text_item(name, &f, index)?;
        // SAFETY: buf, buf_len and out_len per this function's contract.
        match unsafe { write_bytes(bytes, buf, buf_len, out_len) } {
            ecc_status::ECC_OK => Ok(()),
            other => Err(other),
        }
    })
}

/// Frees an event; NULL is a no-op.
///
/// # Safety
/// `event` is NULL or a live event, not used again.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_event_free(event: *mut ecc_event) {
    // SAFETY: per this function's contract.
    boundary_void(|| unsafe { ecc_event::free(event) });
}
