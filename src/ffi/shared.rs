//! The hot path of replication in C: `ecc_gauge_*` and `ecc_cidr_*`.
//!
//! An MTA opens an object once by its `Replicate` name and keeps the
//! handle; the calls on it touch only the shared structure (atomics and
//! sharded locks), never the engine, from any thread. A handle stays valid
//! after its node stops or is freed (it shares the structure), until its own
//! `_free`.

use std::ffi::c_char;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use super::boundary::{Handle, boundary, boundary_void, put, str_arg};
use super::node::ecc_node;
use super::status::{ecc_status, fail};
use crate::node::Node;
use crate::shared::Scope;
use crate::shared::cidr::CidrCounts;
use crate::shared::gauge::GaugeTable;

/// Whose count a read wants: `ECC_SCOPE_LOCAL` or `ECC_SCOPE_GLOBAL` (an
/// integer, so that an unknown value is reported, not undefined).
pub type ecc_scope = u32;
/// This node's own count.
pub const ECC_SCOPE_LOCAL: ecc_scope = 0;
/// The whole cluster's: this node's plus every peer's.
pub const ECC_SCOPE_GLOBAL: ecc_scope = 1;

/// A replicated gauge table (`outbound_domains`, `outbound_binding_domains`).
/// Thread-safe.
#[derive(Debug)]
pub struct ecc_gauge {
    _private: [u8; 0],
}

impl Handle for ecc_gauge {
    type Target = Arc<GaugeTable>;
}

/// A replicated CIDR tree (`inbound_cidr`, `outbound_cidr`). Thread-safe.
#[derive(Debug)]
pub struct ecc_cidr {
    _private: [u8; 0],
}

impl Handle for ecc_cidr {
    type Target = Arc<CidrCounts>;
}

fn scope_arg(scope: ecc_scope) -> Result<Scope, ecc_status> {
    match scope {
        ECC_SCOPE_LOCAL => Ok(Scope::Local),
        ECC_SCOPE_GLOBAL => Ok(Scope::Global),
        other => Err(fail(
            ecc_status::ECC_INVALID_ARGUMENT,
            format!("scope {other} is neither ECC_SCOPE_LOCAL (0) nor ECC_SCOPE_GLOBAL (1)"),
        )),
    }
}

/// Opens the object `name` of `node` as a handle of kind `H`.
///
/// # Safety
/// `node` is a live handle, `name` NULL or a C string, `out` NULL or valid.
unsafe fn open<H: Handle>(
    node: *const ecc_node,
    name: *const c_char,
    out: *mut *mut H,
    kind: &str,
    pick: impl FnOnce(&Node, &str) -> Option<H::Target>,
) -> ecc_status {
    // SAFETY: per this function's contract.
    let (node, name) = match unsafe { (ecc_node::borrow(node, "node"), str_arg(name, "name")) } {
        (Ok(n), Ok(s)) => (n, s),
        (Err(s), _) | (_, Err(s)) => return s,
    };
    if out.is_null() {
        return fail(ecc_status::ECC_NULL_ARGUMENT, "out is NULL");
    }
    match pick(node, name) {
        Some(object) => {
            // SAFETY: out is non-null and valid per the contract.
            unsafe { put(out, H::into_raw(object)) };
            ecc_status::ECC_OK
        }
        None => fail(
            ecc_status::ECC_NOT_FOUND,
            format!("the configuration replicates no {kind} named '{name}'"),
        ),
    }
}

/// Bytes of a key argument; a NULL key is allowed only with length 0.
///
/// # Safety
/// `key` is NULL or readable for `len` bytes that live for `'a`.
unsafe fn key_arg<'a>(key: *const u8, len: usize) -> Result<&'a [u8], ecc_status> {
    if key.is_null() {
        return if len == 0 {
            Ok(&[])
        } else {
            Err(fail(ecc_status::ECC_NULL_ARGUMENT, "key is NULL"))
        };
    }
    // SAFETY: per this function's contract.
    Ok(unsafe { std::slice::from_raw_parts(key, len) })
}

/// An address argument: 4 bytes (IPv4) or 16 (IPv6), network order.
///
/// # Safety
/// `addr` is NULL or readable for `len` bytes.
unsafe fn addr_arg(addr: *const u8, len: usize) -> Result<IpAddr, ecc_status> {
    if addr.is_null() {
        return Err(fail(ecc_status::ECC_NULL_ARGUMENT, "addr is NULL"));
    }
    // SAFETY: per this function's contract.
    let bytes = unsafe { std::slice::from_raw_parts(addr, len) };
    if let Ok(a) = <[u8; 4]>::try_from(bytes) {
        Ok(IpAddr::V4(Ipv4Addr::from(a)))
    } else if let Ok(a) = <[u8; 16]>::try_from(bytes) {
        Ok(IpAddr::V6(Ipv6Addr::from(a)))
    } else {
        Err(fail(
            ecc_status::ECC_INVALID_ARGUMENT,
            format!("addr_len is {len}; an address is 4 bytes (IPv4) or 16 (IPv6)"),
        ))
    }
}

/// Writes a count to an out-parameter.
///
/// # Safety
/// `out` is NULL or valid.
unsafe fn put_count(out: *mut i64, value: i64) -> ecc_status {
    if out.is_null() {
        return fail(ecc_status::ECC_NULL_ARGUMENT, "out is NULL");
    }
    // SAFETY: non-null and valid per the contract.
    unsafe { *out = value };
    ecc_status::ECC_OK
}

/// Opens the replicated gauge table `name` (a `Replicate` scope of type
/// `outbound_domains` or `outbound_binding_domains`); `ECC_NOT_FOUND` when
/// the configuration has none by that name.
///
/// # Safety
/// `node` is a live handle; `name` a C string; `out` a valid pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_gauge_open(
    node: *const ecc_node,
    name: *const c_char,
    out: *mut *mut ecc_gauge,
) -> ecc_status {
    // SAFETY: per this function's contract.
    boundary(|| unsafe { open(node, name, out, "gauge table", Node::shared_gauge) })
}

/// Adds `delta` (negative to take away) to this node's count of the key
/// `key[0..key_len]` and writes the new local count to `out` (may be NULL).
///
/// # Safety
/// `gauge` is a live handle; `key` readable for `key_len` bytes; `out`
/// NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_gauge_add(
    gauge: *const ecc_gauge,
    key: *const u8,
    key_len: usize,
    delta: i64,
    out: *mut i64,
) -> ecc_status {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (gauge, key) =
            match unsafe { (ecc_gauge::borrow(gauge, "gauge"), key_arg(key, key_len)) } {
                (Ok(g), Ok(k)) => (g, k),
                (Err(s), _) | (_, Err(s)) => return s,
            };
        let now = gauge.add(key, delta);
        if !out.is_null() {
            // SAFETY: non-null and valid per the contract.
            unsafe { *out = now };
        }
        ecc_status::ECC_OK
    })
}

/// The count of `key[0..key_len]` in `scope`.
///
/// # Safety
/// `gauge` is a live handle; `key` readable for `key_len` bytes; `out` valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_gauge_get(
    gauge: *const ecc_gauge,
    key: *const u8,
    key_len: usize,
    scope: ecc_scope,
    out: *mut i64,
) -> ecc_status {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (gauge, key) =
            match unsafe { (ecc_gauge::borrow(gauge, "gauge"), key_arg(key, key_len)) } {
                (Ok(g), Ok(k)) => (g, k),
                (Err(s), _) | (_, Err(s)) => return s,
            };
        match scope_arg(scope) {
            // SAFETY: per this function's contract.
            Ok(scope) => unsafe { put_count(out, gauge.get(key, scope)) },
            Err(s) => s,
        }
    })
}

/// Frees a gauge handle; NULL is a no-op.
///
/// # Safety
/// `gauge` is NULL or a live handle, not used again.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_gauge_free(gauge: *mut ecc_gauge) {
    // SAFETY: per this function's contract.
    boundary_void(|| unsafe { ecc_gauge::free(gauge) });
}

/// Opens the replicated CIDR tree `name` (a `Replicate` scope of type
/// `inbound_cidr` or `outbound_cidr`); `ECC_NOT_FOUND` when the
/// configuration has none by that name.
///
/// # Safety
/// `node` is a live handle; `name` a C string; `out` a valid pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_cidr_open(
    node: *const ecc_node,
    name: *const c_char,
    out: *mut *mut ecc_cidr,
) -> ecc_status {
    // SAFETY: per this function's contract.
    boundary(|| unsafe { open(node, name, out, "cidrtree", Node::shared_cidr) })
}

/// `delta` connections from (or to) the address `addr[0..addr_len]` (4
/// bytes for IPv4, 16 for IPv6, network order, as in `struct in_addr` and
/// `struct in6_addr`) opened on this node, or closed when negative.
///
/// # Safety
/// `cidr` is a live handle; `addr` readable for `addr_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_cidr_add(
    cidr: *const ecc_cidr,
    addr: *const u8,
    addr_len: usize,
    delta: i64,
) -> ecc_status {
    boundary(|| {
        // SAFETY: per this function's contract.
        match unsafe { (ecc_cidr::borrow(cidr, "cidr"), addr_arg(addr, addr_len)) } {
            (Ok(c), Ok(ip)) => {
                c.add(ip, delta);
                ecc_status::ECC_OK
            }
            (Err(s), _) | (_, Err(s)) => s,
        }
    })
}

/// The connections whose address is in the prefix `addr/prefix_len`, in
/// `scope`, for any prefix length (host bits of `addr` are ignored; a
/// length beyond the family's width means the whole address).
///
/// # Safety
/// `cidr` is a live handle; `addr` readable for `addr_len` bytes; `out` valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_cidr_count(
    cidr: *const ecc_cidr,
    addr: *const u8,
    addr_len: usize,
    prefix_len: u8,
    scope: ecc_scope,
    out: *mut i64,
) -> ecc_status {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (c, ip) = match unsafe { (ecc_cidr::borrow(cidr, "cidr"), addr_arg(addr, addr_len)) } {
            (Ok(c), Ok(ip)) => (c, ip),
            (Err(s), _) | (_, Err(s)) => return s,
        };
        match scope_arg(scope) {
            // SAFETY: per this function's contract.
            Ok(scope) => unsafe { put_count(out, c.count(ip, prefix_len, scope)) },
            Err(s) => s,
        }
    })
}

/// Frees a CIDR tree handle; NULL is a no-op.
///
/// # Safety
/// `cidr` is NULL or a live handle, not used again.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_cidr_free(cidr: *mut ecc_cidr) {
    // SAFETY: per this function's contract.
    boundary_void(|| unsafe { ecc_cidr::free(cidr) });
}
