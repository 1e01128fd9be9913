//! `ecc_node_*` and `ecc_console_exec`.

use std::ffi::{CStr, c_char, c_void};

use super::boundary::{
    ECC_IDENTITY_MAX, Handle, boundary, boundary_void, put, str_arg, str_array_arg, write_str,
};
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

pub(super) fn node_error(e: &NodeError) -> ecc_status {
    let status = match e {
        NodeError::Identity(_) => ecc_status::ECC_IDENTITY_ERROR,
        NodeError::Io { .. } => ecc_status::ECC_IO_ERROR,
        NodeError::InvalidState(_) => ecc_status::ECC_INVALID_STATE,
        NodeError::Config(_) => ecc_status::ECC_CONFIG_ERROR,
        NodeError::InvalidArgument(_) => ecc_status::ECC_INVALID_ARGUMENT,
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

/// Userdata the host promises may be used from the threads its hook's
/// docs name (e.g. `ecc_identity_hook_fn`'s).
pub(crate) struct HostPtr(pub(crate) *mut c_void);
// SAFETY: the header documents on which threads the hook runs; the host
// passes a userdata that is safe to use there. We never dereference it.
unsafe impl Send for HostPtr {}
// SAFETY: as above; we only pass the pointer back to the host's function.
unsafe impl Sync for HostPtr {}

impl HostPtr {
    // A method, not a field access, so closures capture the whole (Send) wrapper.
    pub(crate) fn get(&self) -> *mut c_void {
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

/// The live node and the non-NULL function of a hook registration.
pub(super) fn node_and_hook<'a, F>(
    node: *mut ecc_node,
    hook: Option<F>,
) -> Result<(&'a Node, F), ecc_status> {
    // SAFETY: the exported registration functions pass their caller's live handle.
    let node = unsafe { ecc_node::borrow(node, "node")? };
    let hook = hook.ok_or_else(|| fail(ecc_status::ECC_NULL_ARGUMENT, "hook is NULL"))?;
    Ok((node, hook))
}

/// `ECC_HOOK_FIRST` or `ECC_HOOK_LAST`.
pub(super) fn hook_order(order: ecc_hook_order) -> Result<HookOrder, ecc_status> {
    match order {
        ECC_HOOK_FIRST => Ok(HookOrder::First),
        ECC_HOOK_LAST => Ok(HookOrder::Last),
        other => Err(fail(
            ecc_status::ECC_INVALID_ARGUMENT,
            format!("unknown hook order {other}"),
        )),
    }
}

fn register(
    node: *mut ecc_node,
    order: ecc_hook_order,
    hook: ecc_identity_hook_fn,
    userdata: *mut c_void,
    add: fn(&Node, HookOrder, IdentityHook) -> Result<(), NodeError>,
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

/// The shared part of registering a hook run on the node's threads: a live node and a
/// non-NULL function, then `register` with the host's userdata.
pub(crate) fn register_engine_hook<F>(
    node: *mut ecc_node,
    hook: Option<F>,
    userdata: *mut c_void,
    register: impl FnOnce(&Node, F, HostPtr),
) -> ecc_status {
    boundary(|| {
        let (node, hook) = match node_and_hook(node, hook) {
            Ok(pair) => pair,
            Err(s) => return s,
        };
        register(node, hook, HostPtr(userdata));
        ecc_status::ECC_OK
    })
}

/// Lends `names` to C as an array of NUL-terminated strings for the
/// duration of `f` (names with an interior NUL are left out).
fn with_c_strings<R>(names: &[String], f: impl FnOnce(*const *const c_char, usize) -> R) -> R {
    let owned: Vec<std::ffi::CString> = names
        .iter()
        .filter_map(|n| std::ffi::CString::new(n.as_str()).ok())
        .collect();
    let pointers: Vec<*const c_char> = owned.iter().map(|n| n.as_ptr()).collect();
    f(pointers.as_ptr(), pointers.len())
}

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
    register_engine_hook(node, hook, userdata, |node, hook, userdata| {
        node.register_membership_hook(Box::new(move |change| {
            with_c_strings(&change.members, |names, count| {
                // SAFETY: the strings outlive the call; the host's function
                // is called as its type declares.
                unsafe { hook(userdata.get(), change.number, change.id, names, count) }
            });
        }));
    })
}

/// A DuraVIP hook: called when this node gains (`gained` true: the address is
/// plumbed and announced) or loses (`gained` false: unplumbed) a DuraVIP,
/// with the address as text, the binding names using it and the ports of
/// the listeners on it (a listener that follows a binding arrives as an
/// address of its own, with no names), so the host can start or stop a
/// listener or a binding. The arrays are valid only during the call. Runs
/// on the node's engine thread.
pub type ecc_duravip_hook_fn = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        gained: bool,
        ip: *const c_char,
        names: *const *const c_char,
        name_count: usize,
        listener_ports: *const u16,
        port_count: usize,
    ),
>;

/// Registers a DuraVIP gained/lost hook; may be called at any time.
///
/// # Safety
/// `node` is a live handle; `hook` a valid function; `userdata` usable on
/// the engine thread until the node is freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_node_register_duravip_hook(
    node: *mut ecc_node,
    hook: ecc_duravip_hook_fn,
    userdata: *mut c_void,
) -> ecc_status {
    register_engine_hook(node, hook, userdata, |node, hook, userdata| {
        node.register_duravip_hook(Box::new(move |event| {
            let (gained, claim) = match event {
                crate::io::vip::VipEvent::Gained(c) => (true, c),
                crate::io::vip::VipEvent::Lost(c) => (false, c),
            };
            let Ok(ip) = std::ffi::CString::new(claim.ip.to_string()) else {
                return;
            };
            let ports: Vec<u16> = claim
                .services
                .iter()
                .filter_map(|s| match s {
                    crate::core::duravip::Service::Listener(port) => Some(*port),
                    crate::core::duravip::Service::Binding => None,
                })
                .collect();
            with_c_strings(&claim.names, |names, count| {
                // SAFETY: every pointer outlives the call; the host's function
                // is called as its type declares.
                unsafe {
                    hook(
                        userdata.get(),
                        gained,
                        ip.as_ptr(),
                        names,
                        count,
                        ports.as_ptr(),
                        ports.len(),
                    );
                }
            });
        }));
    })
}

/// A log group hook: called for every paniclog line a peer broadcast on
/// this node's `log_group`, with the sending node's name, the log's key in
/// its `logs` dictionary (`"paniclog"`), when the sender appended the line
/// (microseconds since the epoch, by the sender's clock) and the line as
/// appended (`line_len` bytes, not NUL-terminated, cut at 64 KiB). The
/// pointers are valid only during the call.
///
/// Runs on the thread that reads the sender's cluster link: lines from one
/// node come in order, lines from different nodes may come concurrently.
/// Keep it short (that link waits for it), and do not call
/// `ecc_node_stop` or `ecc_node_free` on this node from it.
pub type ecc_log_group_hook_fn = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        sender: *const c_char,
        log: *const c_char,
        time_us: u64,
        line: *const u8,
        line_len: usize,
    ),
>;

/// Registers a log group hook; may be called at any time. A node without a
/// `log_group` never calls it.
///
/// # Safety
/// `node` is a live handle; `hook` a valid function; `userdata` usable on
/// the link threads until the node is freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_node_register_log_group_hook(
    node: *mut ecc_node,
    hook: ecc_log_group_hook_fn,
    userdata: *mut c_void,
) -> ecc_status {
    register_engine_hook(node, hook, userdata, |node, hook, userdata| {
        node.register_log_group_hook(Box::new(move |line| {
            // Names are configured node names and log keys: a NUL in one
            // comes from a broken peer, and C could not read it anyway.
            let (Ok(sender), Ok(log)) = (
                std::ffi::CString::new(line.sender.as_str()),
                std::ffi::CString::new(line.log.as_str()),
            ) else {
                return;
            };
            let time_us = line
                .time
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
            // SAFETY: every pointer outlives the call; the host's function
            // is called as its type declares.
            unsafe {
                hook(
                    userdata.get(),
                    sender.as_ptr(),
                    log.as_ptr(),
                    time_us,
                    line.line.as_ptr(),
                    line.line.len(),
                );
            }
        }));
    })
}

/// The node and the parsed address of a DuraVIP call.
///
/// # Safety
/// `node` is a live handle; `ip` is a NUL-terminated string.
unsafe fn node_and_ip<'a>(
    node: *const ecc_node,
    ip: *const c_char,
) -> Result<(&'a Node, std::net::IpAddr), ecc_status> {
    // SAFETY: per this function's contract.
    let (node, text) = unsafe { (ecc_node::borrow(node, "node")?, str_arg(ip, "ip")?) };
    let ip = text.parse().map_err(|_| {
        fail(
            ecc_status::ECC_INVALID_ARGUMENT,
            format!("ip {text:?} is not an IP address"),
        )
    })?;
    Ok((node, ip))
}

/// Registers (or changes) a DuraVIP at run time, as the host owns its
/// bindings: `ip` (IPv4 or IPv6 text), the binding names on it (`names`,
/// `name_count`; may be 0), whether a listener uses it too (`listener_port`,
/// 0 for none), and an optional preferred node (`preference`, may be NULL).
/// The node must be running with DuraVIP enabled (a `Topology` configured).
///
/// # Safety
/// `node` is a live handle; `ip` and `preference` (if not NULL) are
/// NUL-terminated strings; `names` points to `name_count` of them.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_node_register_duravip(
    node: *const ecc_node,
    ip: *const c_char,
    names: *const *const c_char,
    name_count: usize,
    listener_port: u16,
    preference: *const c_char,
) -> ecc_status {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (node, ip) = match unsafe { node_and_ip(node, ip) } {
            Ok(pair) => pair,
            Err(s) => return s,
        };
        // SAFETY: names points to name_count strings per the contract.
        let binding_names = match unsafe { str_array_arg(names, name_count, "names") } {
            Ok(names) => names,
            Err(s) => return s,
        };
        let preference = if preference.is_null() {
            None
        } else {
            // SAFETY: non-null and NUL-terminated per the contract.
            match unsafe { str_arg(preference, "preference") } {
                Ok(p) => Some(p.to_string()),
                Err(s) => return s,
            }
        };
        if binding_names.is_empty() && listener_port == 0 {
            return fail(
                ecc_status::ECC_INVALID_ARGUMENT,
                "a DuraVIP needs a binding name or a listener port",
            );
        }
        let mut services = Vec::new();
        if !binding_names.is_empty() {
            services.push(crate::core::duravip::Service::Binding);
        }
        if listener_port != 0 {
            services.push(crate::core::duravip::Service::Listener(listener_port));
        }
        let claim = crate::core::duravip::Claim {
            ip,
            names: binding_names,
            services,
            preference,
        };
        match node.register_duravip(claim) {
            Ok(()) => ecc_status::ECC_OK,
            Err(e) => node_error(&e),
        }
    })
}

/// Removes a DuraVIP (released first if this node owns it).
///
/// # Safety
/// `node` is a live handle; `ip` a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_node_remove_duravip(
    node: *const ecc_node,
    ip: *const c_char,
) -> ecc_status {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (node, ip) = match unsafe { node_and_ip(node, ip) } {
            Ok(pair) => pair,
            Err(s) => return s,
        };
        match node.remove_duravip(ip) {
            Ok(()) => ecc_status::ECC_OK,
            Err(e) => node_error(&e),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::config::{ECC_FORMAT_TOML, ecc_config_free, ecc_config_parse};
    use crate::ffi::status::ecc_last_error;
    use std::ffi::{CStr, CString};

    fn last_error() -> String {
        // SAFETY: ecc_last_error always returns a valid C string.
        unsafe { CStr::from_ptr(ecc_last_error()) }
            .to_string_lossy()
            .into_owned()
    }

    /// Each bad argument of ecc_node_register_duravip gives its own status
    /// and a message naming it, and registers nothing.
    #[test]
    fn register_duravip_names_each_bad_argument() {
        let text = CString::new("[cluster]\nnodename = \"n1\"\n").unwrap();
        let mut config = std::ptr::null_mut();
        let mut node = std::ptr::null_mut();
        // SAFETY: valid strings and out-pointers; everything is freed below.
        unsafe {
            assert_eq!(
                ecc_config_parse(text.as_ptr(), ECC_FORMAT_TOML, &raw mut config),
                ecc_status::ECC_OK
            );
            assert_eq!(ecc_node_new(config, &raw mut node), ecc_status::ECC_OK);
        }
        let name = CString::new("out1").unwrap();
        let names = [name.as_ptr()];
        let cases: [(&str, *const *const c_char, usize, u16, ecc_status, &str); 3] = [
            (
                "10.1.1.300",
                names.as_ptr(),
                1,
                0,
                ecc_status::ECC_INVALID_ARGUMENT,
                "is not an IP address",
            ),
            (
                "10.1.1.1",
                std::ptr::null(),
                1,
                0,
                ecc_status::ECC_NULL_ARGUMENT,
                "names is NULL",
            ),
            (
                "10.1.1.1",
                std::ptr::null(),
                0,
                0,
                ecc_status::ECC_INVALID_ARGUMENT,
                "a binding name or a listener port",
            ),
        ];
        for (ip, names, count, port, status, message) in cases {
            let ip = CString::new(ip).unwrap();
            // SAFETY: `node` is live; the arrays hold `count` valid strings
            // or are NULL, which is what is being tested.
            let got = unsafe {
                ecc_node_register_duravip(node, ip.as_ptr(), names, count, port, std::ptr::null())
            };
            assert_eq!(got, status, "{ip:?}");
            assert!(last_error().contains(message), "{}", last_error());
        }
        // SAFETY: both handles came from their constructors above.
        unsafe {
            ecc_node_free(node);
            ecc_config_free(config);
        }
    }
}
