//! `ecc_node_*` and `ecc_console_exec`.

use std::ffi::{CStr, c_char, c_void};

use super::boundary::{ECC_IDENTITY_MAX, Handle, boundary, boundary_void, put, str_arg, write_str};
use super::config::ecc_config;
use super::status::{ecc_status, fail};
use crate::node::{HookOrder, IdentityHook, Node, NodeError};

/// A cluster node. Thread-safe: every function taking an `ecc_node` may be
/// called from any thread, concurrently, until `ecc_node_free`.
#[derive(Debug)]
pub struct ecc_node {
    _private: [u8; 0],
}

impl Handle for ecc_node {
    type Target = Node;
}

/// Where a hook goes in its chain: `ECC_HOOK_FIRST` or `ECC_HOOK_LAST`. An
/// integer rather than a C enum, so that any value a caller passes is
/// defined behaviour and an unknown one is reported as `ECC_INVALID_ARGUMENT`.
pub type ecc_hook_order = u32;
/// Before the hooks registered so far (`register_..._hook_first`).
pub const ECC_HOOK_FIRST: ecc_hook_order = 0;
/// After them (`register_..._hook_last`).
pub const ECC_HOOK_LAST: ecc_hook_order = 1;

/// An identity hook (`cluster_nodename`, `cluster_subcluster`). It receives
/// the value so far in `current`; to replace it, it writes a NUL-terminated
/// string of at most `buf_len` bytes (including the NUL; `buf_len` is
/// `ECC_IDENTITY_MAX`) into `buf` and returns true. Returning false keeps the
/// value. A replacement without a NUL within `buf_len` is ignored.
///
/// Runs on the thread that calls `ecc_node_start`, or an `ecc_node_*` getter
/// or `ecc_console_exec` before start; never concurrently with itself for one
/// node unless the host calls those concurrently.
pub type ecc_identity_hook_fn = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        current: *const c_char,
        buf: *mut c_char,
        buf_len: usize,
    ) -> bool,
>;

fn node_error(e: &NodeError) -> ecc_status {
    let status = match e {
        NodeError::Identity(_) => ecc_status::ECC_IDENTITY_ERROR,
        NodeError::Io { .. } => ecc_status::ECC_IO_ERROR,
        NodeError::InvalidState(_) => ecc_status::ECC_INVALID_STATE,
        NodeError::Config(_) => ecc_status::ECC_CONFIG_ERROR,
    };
    fail(status, e.to_string())
}

/// Makes a stopped node from a configuration (which is copied; the caller
/// still owns and frees `config`).
///
/// # Safety
/// `config` is a live handle; `out` is a valid pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_node_new(
    config: *const ecc_config,
    out: *mut *mut ecc_node,
) -> ecc_status {
    boundary(|| {
        // SAFETY: per this function's contract.
        let config = match unsafe { ecc_config::borrow(config, "config") } {
            Ok(c) => c,
            Err(s) => return s,
        };
        if out.is_null() {
            return fail(ecc_status::ECC_NULL_ARGUMENT, "out is NULL");
        }
        let node = Node::new(config.config.clone());
        // SAFETY: out is non-null and valid per the contract.
        unsafe { put(out, ecc_node::into_raw(node)) };
        ecc_status::ECC_OK
    })
}

/// Fixes the node's identity (running the identity hooks on this thread) and
/// starts its runtime thread, which serves the console socket.
///
/// # Safety
/// `node` is a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_node_start(node: *mut ecc_node) -> ecc_status {
    boundary(|| {
        // SAFETY: per this function's contract.
        match unsafe { ecc_node::borrow(node, "node") }.map(Node::start) {
            Ok(Ok(())) => ecc_status::ECC_OK,
            Ok(Err(e)) => node_error(&e),
            Err(s) => s,
        }
    })
}

/// Stops the runtime; a stopped node may be started again. Stopping a
/// stopped node succeeds.
///
/// # Safety
/// `node` is a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_node_stop(node: *mut ecc_node) -> ecc_status {
    boundary(|| {
        // SAFETY: per this function's contract.
        match unsafe { ecc_node::borrow(node, "node") } {
            Ok(n) => {
                n.stop();
                ecc_status::ECC_OK
            }
            Err(s) => s,
        }
    })
}

/// Stops (if running) and frees a node; NULL is a no-op.
///
/// # Safety
/// `node` is NULL or a live handle that no thread uses again.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_node_free(node: *mut ecc_node) {
    boundary_void(|| {
        // SAFETY: per this function's contract.
        if let Ok(n) = unsafe { ecc_node::borrow(node, "node") } {
            n.stop();
        }
        // SAFETY: per this function's contract.
        unsafe { ecc_node::free(node) };
    });
}

/// Which identity value a getter returns.
fn identity_getter(
    node: *const ecc_node,
    pick: impl FnOnce(&crate::node::Identity) -> String,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> ecc_status {
    boundary(|| {
        // SAFETY: the exported getters pass their caller's handle, which is live per their contract.
        let node = match unsafe { ecc_node::borrow(node, "node") } {
            Ok(n) => n,
            Err(s) => return s,
        };
        match node.identity() {
            // SAFETY: buf/len/out_len come from the caller per the getters' contract.
            Ok(id) => unsafe { write_str(&pick(&id), buf, len, out_len) },
            Err(e) => node_error(&e),
        }
    })
}

/// The effective node name (fixed while running; before start, worked out now).
///
/// # Safety
/// `node` is a live handle; `buf` is writable for `len` bytes (or NULL with
/// `len` 0 to ask the size); `out_len` is a valid pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_node_nodename(
    node: *const ecc_node,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> ecc_status {
    identity_getter(node, |id| id.nodename.clone(), buf, len, out_len)
}

/// The effective subcluster.
///
/// # Safety
/// As `ecc_node_nodename`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_node_subcluster(
    node: *const ecc_node,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> ecc_status {
    identity_getter(node, |id| id.subcluster.clone(), buf, len, out_len)
}

/// The cluster service address, `ip:port` (`[ip]:port` for IPv6), as the
/// `cluster nodeaddr` command prints it.
///
/// # Safety
/// As `ecc_node_nodename`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_node_nodeaddr(
    node: *const ecc_node,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> ecc_status {
    identity_getter(node, |id| id.service_addr().to_string(), buf, len, out_len)
}

/// Userdata the host promises may be used from the threads named in
/// `ecc_identity_hook_fn`'s docs.
struct HostPtr(*mut c_void);
// SAFETY: the header documents on which threads the hook runs; the host
// passes a userdata that is safe to use there. We never dereference it.
unsafe impl Send for HostPtr {}
// SAFETY: as above; we only pass the pointer back to the host's function.
unsafe impl Sync for HostPtr {}

impl HostPtr {
    // A method, not a field access, so closures capture the whole (Send) wrapper.
    fn get(&self) -> *mut c_void {
        self.0
    }
}

fn c_identity_hook(
    hook: unsafe extern "C" fn(*mut c_void, *const c_char, *mut c_char, usize) -> bool,
    userdata: *mut c_void,
) -> IdentityHook {
    let userdata = HostPtr(userdata);
    Box::new(move |current: &str| {
        let current = std::ffi::CString::new(current).ok()?;
        let mut buf = [0 as c_char; ECC_IDENTITY_MAX];
        // SAFETY: we pass a NUL-terminated string and a buffer of the length we
        // state; the host's function is called as its type declares.
        let replaced = unsafe {
            hook(
                userdata.get(),
                current.as_ptr(),
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        if !replaced {
            return None;
        }
        let bytes: Vec<u8> = buf.iter().map(|c| *c as u8).collect();
        let s = CStr::from_bytes_until_nul(&bytes).ok()?;
        s.to_str().ok().map(str::to_string)
    })
}

fn register(
    node: *mut ecc_node,
    order: ecc_hook_order,
    hook: ecc_identity_hook_fn,
    userdata: *mut c_void,
    add: fn(&Node, HookOrder, IdentityHook) -> Result<(), NodeError>,
) -> ecc_status {
    boundary(|| {
        // SAFETY: the exported registration functions pass their caller's live handle.
        let node = match unsafe { ecc_node::borrow(node, "node") } {
            Ok(n) => n,
            Err(s) => return s,
        };
        let Some(hook) = hook else {
            return fail(ecc_status::ECC_NULL_ARGUMENT, "hook is NULL");
        };
        let order = match order {
            ECC_HOOK_FIRST => HookOrder::First,
            ECC_HOOK_LAST => HookOrder::Last,
            other => {
                return fail(
                    ecc_status::ECC_INVALID_ARGUMENT,
                    format!("unknown hook order {other}"),
                );
            }
        };
        match add(node, order, c_identity_hook(hook, userdata)) {
            Ok(()) => ecc_status::ECC_OK,
            Err(e) => node_error(&e),
        }
    })
}

/// Registers a `cluster_nodename` hook (before start only).
///
/// # Safety
/// `node` is a live handle; `hook` is a valid function; `userdata` is usable
/// on the threads the hook runs on (see `ecc_identity_hook_fn`) until the
/// node is freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_node_register_nodename_hook(
    node: *mut ecc_node,
    order: ecc_hook_order,
    hook: ecc_identity_hook_fn,
    userdata: *mut c_void,
) -> ecc_status {
    register(node, order, hook, userdata, Node::register_nodename_hook)
}

/// Registers a `cluster_subcluster` hook (before start only).
///
/// # Safety
/// As `ecc_node_register_nodename_hook`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_node_register_subcluster_hook(
    node: *mut ecc_node,
    order: ecc_hook_order,
    hook: ecc_identity_hook_fn,
    userdata: *mut c_void,
) -> ecc_status {
    register(node, order, hook, userdata, Node::register_subcluster_hook)
}

/// Runs a console command (e.g. `"cluster nodename"`, `"xml cluster info"`)
/// and copies its output into `buf`. A failing command returns
/// `ECC_COMMAND_FAILED` with its message in `ecc_last_error()`. When the
/// output does not fit, `ECC_BUFFER_TOO_SMALL` reports its length in
/// `out_len`; run the command again with a larger buffer.
///
/// # Safety
/// `node` is a live handle; `command` a NUL-terminated string; `buf`,
/// `len` and `out_len` as for `ecc_node_nodename`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_console_exec(
    node: *const ecc_node,
    command: *const c_char,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> ecc_status {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (node, command) =
            match unsafe { (ecc_node::borrow(node, "node"), str_arg(command, "command")) } {
                (Ok(n), Ok(c)) => (n, c),
                (Err(s), _) | (_, Err(s)) => return s,
            };
        match node.console_exec(command) {
            // SAFETY: per this function's contract.
            Ok(output) => unsafe { write_str(&output, buf, len, out_len) },
            Err(e) => fail(ecc_status::ECC_COMMAND_FAILED, e),
        }
    })
}

/// A membership hook (the reference's `cluster_membership_update`): called
/// after every view change with the view's number (counting changes on this
/// node), its id, and the member names, sorted. `members` and the strings
/// are valid only during the call.
///
/// Runs on the node's engine thread: keep it short, and do not call
/// `ecc_node_stop` or `ecc_node_free` on this node from it.
pub type ecc_membership_hook_fn = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        view_number: u64,
        view_id: u64,
        members: *const *const c_char,
        member_count: usize,
    ),
>;

/// Registers a membership hook; may be called at any time.
///
/// # Safety
/// `node` is a live handle; `hook` a valid function; `userdata` usable on
/// the engine thread until the node is freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_node_register_membership_hook(
    node: *mut ecc_node,
    hook: ecc_membership_hook_fn,
    userdata: *mut c_void,
) -> ecc_status {
    boundary(|| {
        // SAFETY: per this function's contract.
        let node = match unsafe { ecc_node::borrow(node, "node") } {
            Ok(n) => n,
            Err(s) => return s,
        };
        let Some(hook) = hook else {
            return fail(ecc_status::ECC_NULL_ARGUMENT, "hook is NULL");
        };
        let userdata = HostPtr(userdata);
        node.register_membership_hook(Box::new(move |change| {
            let names: Vec<std::ffi::CString> = change
                .members
                .iter()
                .filter_map(|m| std::ffi::CString::new(m.as_str()).ok())
                .collect();
            let pointers: Vec<*const c_char> = names.iter().map(|n| n.as_ptr()).collect();
            // SAFETY: the pointers and strings outlive the call; the host's
            // function is called as its type declares.
            unsafe {
                hook(
                    userdata.get(),
                    change.number,
                    change.id,
                    pointers.as_ptr(),
                    pointers.len(),
                )
            };
        }));
        ecc_status::ECC_OK
    })
}
