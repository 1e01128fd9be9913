//! The hot path of replication in C: `ecc_gauge_*`, `ecc_cidr_*`,
//! `ecc_throttle_*`, `ecc_metrics_*` (audit series and gauge caches),
//! `ecc_cache_*` and `ecc_outbound_*`.
//!
//! An MTA opens an object once by its `Replicate` name and keeps the
//! handle; the calls on it touch only the shared structure (atomics and
//! sharded locks), never the engine, from any thread. A handle stays valid
//! after its node stops or is freed (it shares the structure), until its own
//! `_free`.

use std::ffi::c_char;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use super::boundary::{Handle, boundary, boundary_void, bytes_arg, put, str_arg, write_bytes};
use super::node::ecc_node;
use super::status::{ecc_status, fail, set_last_error};
use crate::node::Node;
use crate::shared::cache::{ClusterCache, parse_ttl};
use crate::shared::cidr::CidrCounts;
use crate::shared::gauge::GaugeTable;
use crate::shared::metrics::{Metrics, MetricsError, Replication, SeriesType};
use crate::shared::outbound::{
    Attempt, Limits, MaxScope, OutboundError, ScopeLevel, ServerScope, Verdict,
};
use crate::shared::throttle::Throttle;
use crate::shared::{Scope, wall_ms};

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
    match object(node, name, kind, pick) {
        Ok(object) => {
            // SAFETY: out is non-null and valid per the contract.
            unsafe { put(out, H::into_raw(object)) };
            ecc_status::ECC_OK
        }
        Err(s) => s,
    }
}

/// The object `name` of `node`, or `ECC_NOT_FOUND` naming the `kind` missing.
fn object<T>(
    node: &Node,
    name: &str,
    kind: &str,
    pick: impl FnOnce(&Node, &str) -> Option<T>,
) -> Result<T, ecc_status> {
    pick(node, name).ok_or_else(|| {
        fail(
            ecc_status::ECC_NOT_FOUND,
            format!("the configuration replicates no {kind} named '{name}'"),
        )
    })
}

/// Runs an export's body inside [`boundary`]; the body returns early with
/// `?` on the first bad argument, so the status and `ecc_last_error()`
/// always describe the same problem.
pub(super) fn guarded(body: impl FnOnce() -> Result<(), ecc_status>) -> ecc_status {
    boundary(|| match body() {
        Ok(()) => ecc_status::ECC_OK,
        Err(s) => s,
    })
}

/// Checks that an out-parameter is not NULL, before any work is done.
pub(super) fn out_arg<T>(out: *mut T, name: &str) -> Result<(), ecc_status> {
    if out.is_null() {
        Err(fail(
            ecc_status::ECC_NULL_ARGUMENT,
            format!("{name} is NULL"),
        ))
    } else {
        Ok(())
    }
}

/// Bytes of a key argument; a NULL key is allowed only with length 0.
///
/// # Safety
/// `key` is NULL or readable for `len` bytes that live for `'a`.
unsafe fn key_arg<'a>(key: *const u8, len: usize) -> Result<&'a [u8], ecc_status> {
    // SAFETY: per this function's contract.
    unsafe { bytes_arg(key, len, "key") }
}

/// An address argument: 4 bytes (IPv4) or 16 (IPv6), network order.
///
/// # Safety
/// `addr` is NULL or readable for `len` bytes.
unsafe fn addr_arg(addr: *const u8, len: usize) -> Result<IpAddr, ecc_status> {
    // SAFETY: per this function's contract.
    unsafe { named_addr_arg(addr, len, "addr", "addr_len") }
}

/// [`addr_arg`] with the argument's names for the messages.
///
/// # Safety
/// `addr` is NULL or readable for `len` bytes.
unsafe fn named_addr_arg(
    addr: *const u8,
    len: usize,
    name: &str,
    len_name: &str,
) -> Result<IpAddr, ecc_status> {
    if addr.is_null() {
        return Err(fail(
            ecc_status::ECC_NULL_ARGUMENT,
            format!("{name} is NULL"),
        ));
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
            format!("{len_name} is {len}; an address is 4 bytes (IPv4) or 16 (IPv6)"),
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

// ---------------------------------------------------------------------------
// Throttles
// ---------------------------------------------------------------------------

/// One cluster-wide throttle ("at most N per S seconds across the
/// cluster"), defined in a `shared_named_throttles`, `OBTM` or `OBTC`
/// object. Thread-safe.
#[derive(Debug)]
pub struct ecc_throttle {
    _private: [u8; 0],
}

impl Handle for ecc_throttle {
    type Target = Arc<Throttle>;
}

/// Defines the throttle `throttle_name` in the throttle object
/// `object_name` (a `Replicate` scope of type `shared_named_throttles`,
/// `OBTM` or `OBTC`) as `limit` ("N": N per second, or "N/S": N per S
/// seconds) and writes a handle to it to `out`. `epsilon` is the share of
/// the limit one node may use up per round, strictly between 0 and 1; 0 or
/// NaN means the default 0.95. Defining a name again with the same limit
/// and epsilon returns the same throttle; with others it is an error.
///
/// Every node that counts against the throttle defines it alike. Across the
/// cluster at most N + members - 1 are admitted per window.
///
/// Returns `ECC_NOT_FOUND` when the configuration has no throttle object
/// `object_name`, `ECC_INVALID_ARGUMENT` for a bad limit or epsilon or a
/// redefinition.
///
/// # Safety
/// `node` is a live handle; `object_name`, `throttle_name` and `limit` are
/// C strings; `out` a valid pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_throttle_define(
    node: *const ecc_node,
    object_name: *const c_char,
    throttle_name: *const c_char,
    limit: *const c_char,
    epsilon: f64,
    out: *mut *mut ecc_throttle,
) -> ecc_status {
    guarded(|| {
        // SAFETY: per this function's contract.
        let node = unsafe { ecc_node::borrow(node, "node") }?;
        // SAFETY: per this function's contract.
        let object_name = unsafe { str_arg(object_name, "object_name") }?;
        // SAFETY: per this function's contract.
        let throttle_name = unsafe { str_arg(throttle_name, "throttle_name") }?;
        // SAFETY: per this function's contract.
        let limit = unsafe { str_arg(limit, "limit") }?;
        out_arg(out, "out")?;
        let table = object(node, object_name, "throttle object", Node::shared_throttles)?;
        let epsilon = (epsilon != 0.0 && !epsilon.is_nan()).then_some(epsilon);
        let throttle = table
            .define(throttle_name, limit, epsilon)
            .map_err(|e| fail(ecc_status::ECC_INVALID_ARGUMENT, e.to_string()))?;
        // SAFETY: out is non-null and valid per the contract.
        unsafe { put(out, ecc_throttle::into_raw(throttle)) };
        Ok(())
    })
}

/// Whether one more would be admitted now, without counting it (the Sieve
/// `ec_shared_throttle_check` answers the opposite: "over quota").
///
/// # Safety
/// `throttle` is a live handle; `out_allowed` a valid pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_throttle_check(
    throttle: *const ecc_throttle,
    out_allowed: *mut bool,
) -> ecc_status {
    guarded(|| {
        // SAFETY: per this function's contract.
        let t = unsafe { ecc_throttle::borrow(throttle, "throttle") }?;
        out_arg(out_allowed, "out_allowed")?;
        let allowed = t.check();
        // SAFETY: non-null and valid per the contract.
        unsafe { *out_allowed = allowed };
        Ok(())
    })
}

/// Admits and counts `n` at once if the throttle allows it now, or none;
/// `*out_admitted` says which. `n == 0` is always admitted; `n` above the
/// limit's N never is.
///
/// # Safety
/// `throttle` is a live handle; `out_admitted` a valid pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_throttle_consume(
    throttle: *const ecc_throttle,
    n: u64,
    out_admitted: *mut bool,
) -> ecc_status {
    guarded(|| {
        // SAFETY: per this function's contract.
        let t = unsafe { ecc_throttle::borrow(throttle, "throttle") }?;
        out_arg(out_admitted, "out_admitted")?;
        let admitted = t.consume_n(n);
        // SAFETY: non-null and valid per the contract.
        unsafe { *out_admitted = admitted };
        Ok(())
    })
}

/// The current window's admissions in `scope` (this node's, or the
/// cluster's as this node knows them).
///
/// # Safety
/// `throttle` is a live handle; `out` a valid pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_throttle_usage(
    throttle: *const ecc_throttle,
    scope: ecc_scope,
    out: *mut i64,
) -> ecc_status {
    guarded(|| {
        // SAFETY: per this function's contract.
        let t = unsafe { ecc_throttle::borrow(throttle, "throttle") }?;
        let scope = scope_arg(scope)?;
        out_arg(out, "out")?;
        let usage = t.usage(scope);
        // SAFETY: non-null and valid per the contract.
        unsafe { *out = usage };
        Ok(())
    })
}

/// Frees a throttle handle (the throttle stays defined); NULL is a no-op.
///
/// # Safety
/// `throttle` is NULL or a live handle, not used again.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_throttle_free(throttle: *mut ecc_throttle) {
    // SAFETY: per this function's contract.
    boundary_void(|| unsafe { ecc_throttle::free(throttle) });
}

// ---------------------------------------------------------------------------
// Audit series and gauge caches
// ---------------------------------------------------------------------------

/// The audit series and gauge caches of a `Replicate "metrics"` (or
/// `"eccmgr_metrics"`) object. Thread-safe.
#[derive(Debug)]
pub struct ecc_metrics {
    _private: [u8; 0],
}

impl Handle for ecc_metrics {
    type Target = Arc<Metrics>;
}

/// Unknown names are `ECC_NOT_FOUND`, anything else `ECC_INVALID_ARGUMENT`;
/// the message is the error's own.
fn metrics_fail(e: MetricsError) -> ecc_status {
    let status = match e {
        MetricsError::UnknownSeries(_) | MetricsError::UnknownGaugeCache(_) => {
            ecc_status::ECC_NOT_FOUND
        }
        MetricsError::Redefined(_)
        | MetricsError::BadType(_)
        | MetricsError::BadKey(_)
        | MetricsError::BadArgument(_) => ecc_status::ECC_INVALID_ARGUMENT,
    };
    fail(status, e.to_string())
}

/// A metrics handle and a series or cache name argument.
///
/// # Safety
/// `metrics` is NULL or a live handle; `name` NULL or a C string.
unsafe fn metrics_args<'a>(
    metrics: *const ecc_metrics,
    name: *const c_char,
) -> Result<(&'a Metrics, &'a str), ecc_status> {
    // SAFETY: per this function's contract.
    let m = unsafe { ecc_metrics::borrow(metrics, "metrics") }?;
    // SAFETY: per this function's contract.
    let name = unsafe { str_arg(name, "name") }?;
    Ok((m, name))
}

/// Opens the metrics object `name` (a `Replicate` scope of type `metrics`
/// or `eccmgr_metrics`); `ECC_NOT_FOUND` when the configuration has none by
/// that name.
///
/// # Safety
/// `node` is a live handle; `name` a C string; `out` a valid pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_metrics_open(
    node: *const ecc_node,
    name: *const c_char,
    out: *mut *mut ecc_metrics,
) -> ecc_status {
    // SAFETY: per this function's contract.
    boundary(|| unsafe { open(node, name, out, "metrics object", Node::shared_metrics) })
}

/// Defines the audit series `name` (`msys.audit_series.define`): `type` is
/// "cidr" (IPv4 addresses), "cidr_ipv6" or "string"; counts are kept in
/// `num_windows` windows of `interval_secs` seconds; `replicate` is "none"
/// (this node only), "cluster" (the `metrics` object) or "manager" (the
/// `eccmgr_metrics` object). Defining again with the same parameters is a
/// no-op; with others it is `ECC_INVALID_ARGUMENT`.
///
/// # Safety
/// `metrics` is a live handle; `name`, `type` and `replicate` C strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_audit_series_define(
    metrics: *const ecc_metrics,
    name: *const c_char,
    r#type: *const c_char,
    interval_secs: u64,
    num_windows: u64,
    replicate: *const c_char,
) -> ecc_status {
    guarded(|| {
        // SAFETY: per this function's contract.
        let (m, name) = unsafe { metrics_args(metrics, name) }?;
        // SAFETY: per this function's contract.
        let ty = unsafe { str_arg(r#type, "type") }?;
        // SAFETY: per this function's contract.
        let replicate = unsafe { str_arg(replicate, "replicate") }?;
        let ty: SeriesType = ty.parse().map_err(metrics_fail)?;
        let replicate: Replication = replicate.parse().map_err(metrics_fail)?;
        m.define_series(name, ty, interval_secs, num_windows, replicate)
            .map_err(metrics_fail)?;
        Ok(())
    })
}

/// Adds `count` to the key `key[0..key_len]` in the current window of the
/// audit series `name` (`msys.audit_series.add`). For CIDR series the key
/// is an address as text, e.g. "10.1.2.3".
///
/// # Safety
/// `metrics` is a live handle; `name` a C string; `key` readable for
/// `key_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_audit_series_add(
    metrics: *const ecc_metrics,
    name: *const c_char,
    key: *const u8,
    key_len: usize,
    count: i64,
) -> ecc_status {
    guarded(|| {
        // SAFETY: per this function's contract.
        let (m, name) = unsafe { metrics_args(metrics, name) }?;
        // SAFETY: per this function's contract.
        let key = unsafe { key_arg(key, key_len) }?;
        m.series_add(name, key, count, wall_ms())
            .map_err(metrics_fail)
    })
}

/// The sum of windows `startv` to `endv` (0 is the current window) of the
/// key `key[0..key_len]` in the audit series `name`, in `scope`
/// (`msys.audit_series.count`). For CIDR series the key may also be a
/// prefix, e.g. "10.1.2.0/24".
///
/// # Safety
/// `metrics` is a live handle; `name` a C string; `key` readable for
/// `key_len` bytes; `out` a valid pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_audit_series_count(
    metrics: *const ecc_metrics,
    name: *const c_char,
    key: *const u8,
    key_len: usize,
    startv: u32,
    endv: u32,
    scope: ecc_scope,
    out: *mut i64,
) -> ecc_status {
    guarded(|| {
        // SAFETY: per this function's contract.
        let (m, name) = unsafe { metrics_args(metrics, name) }?;
        // SAFETY: per this function's contract.
        let key = unsafe { key_arg(key, key_len) }?;
        let scope = scope_arg(scope)?;
        out_arg(out, "out")?;
        let n = m
            .series_count(
                name,
                key,
                u64::from(startv),
                u64::from(endv),
                scope,
                wall_ms(),
            )
            .map_err(metrics_fail)?;
        // SAFETY: non-null and valid per the contract.
        unsafe { *out = n };
        Ok(())
    })
}

/// Forgets the key `key[0..key_len]` (or, for CIDR series, every address in
/// a prefix) in every window of the audit series `name`
/// (`msys.audit_series.remove_item`).
///
/// # Safety
/// `metrics` is a live handle; `name` a C string; `key` readable for
/// `key_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_audit_series_remove_item(
    metrics: *const ecc_metrics,
    name: *const c_char,
    key: *const u8,
    key_len: usize,
) -> ecc_status {
    guarded(|| {
        // SAFETY: per this function's contract.
        let (m, name) = unsafe { metrics_args(metrics, name) }?;
        // SAFETY: per this function's contract.
        let key = unsafe { key_arg(key, key_len) }?;
        m.series_remove_item(name, key).map_err(metrics_fail)
    })
}

/// Defines the gauge cache `name` (`msys.gauge_cache.define`): at most
/// `maxelems` keys, each expiring `ttl_secs` seconds after its last change
/// (0: never); `replicated` shares it through this metrics object,
/// otherwise it is this node's only. Defining again with the same
/// parameters is a no-op; with others it is `ECC_INVALID_ARGUMENT`.
///
/// # Safety
/// `metrics` is a live handle; `name` a C string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_gauge_cache_define(
    metrics: *const ecc_metrics,
    name: *const c_char,
    maxelems: u64,
    ttl_secs: u64,
    replicated: bool,
) -> ecc_status {
    guarded(|| {
        // SAFETY: per this function's contract.
        let (m, name) = unsafe { metrics_args(metrics, name) }?;
        let maxelems = usize::try_from(maxelems).map_err(|_| {
            fail(
                ecc_status::ECC_INVALID_ARGUMENT,
                format!("maxelems {maxelems} does not fit this platform's size_t"),
            )
        })?;
        m.define_gauge_cache(name, maxelems, ttl_secs, replicated)
            .map_err(metrics_fail)?;
        Ok(())
    })
}

/// Adds `delta` (+1 or -1) to a gauge cache key and writes this node's new
/// count to `out` (may be NULL).
///
/// # Safety
/// As [`ecc_gauge_cache_inc`].
unsafe fn gauge_cache_step(
    metrics: *const ecc_metrics,
    name: *const c_char,
    key: *const u8,
    key_len: usize,
    up: bool,
    out: *mut i64,
) -> ecc_status {
    guarded(|| {
        // SAFETY: per this function's contract.
        let (m, name) = unsafe { metrics_args(metrics, name) }?;
        // SAFETY: per this function's contract.
        let key = unsafe { key_arg(key, key_len) }?;
        let now = if up {
            m.gauge_inc(name, key, wall_ms())
        } else {
            m.gauge_dec(name, key, wall_ms())
        }
        .map_err(metrics_fail)?;
        if !out.is_null() {
            // SAFETY: non-null and valid per the contract.
            unsafe { *out = now };
        }
        Ok(())
    })
}

/// Adds one to the key `key[0..key_len]` of the gauge cache `name`
/// (`msys.gauge_cache.inc`), creating it, and writes this node's new count
/// to `out` (may be NULL).
///
/// # Safety
/// `metrics` is a live handle; `name` a C string; `key` readable for
/// `key_len` bytes; `out` NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_gauge_cache_inc(
    metrics: *const ecc_metrics,
    name: *const c_char,
    key: *const u8,
    key_len: usize,
    out: *mut i64,
) -> ecc_status {
    // SAFETY: per this function's contract.
    unsafe { gauge_cache_step(metrics, name, key, key_len, true, out) }
}

/// Subtracts one from the key `key[0..key_len]` of the gauge cache `name`
/// (`msys.gauge_cache.dec`) and writes this node's new count to `out` (may
/// be NULL).
///
/// # Safety
/// `metrics` is a live handle; `name` a C string; `key` readable for
/// `key_len` bytes; `out` NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_gauge_cache_dec(
    metrics: *const ecc_metrics,
    name: *const c_char,
    key: *const u8,
    key_len: usize,
    out: *mut i64,
) -> ecc_status {
    // SAFETY: per this function's contract.
    unsafe { gauge_cache_step(metrics, name, key, key_len, false, out) }
}

/// The gauge of the key `key[0..key_len]` of the gauge cache `name` in
/// `scope` (0 if absent or expired; `msys.gauge_cache.get`).
///
/// # Safety
/// `metrics` is a live handle; `name` a C string; `key` readable for
/// `key_len` bytes; `out` a valid pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_gauge_cache_get(
    metrics: *const ecc_metrics,
    name: *const c_char,
    key: *const u8,
    key_len: usize,
    scope: ecc_scope,
    out: *mut i64,
) -> ecc_status {
    guarded(|| {
        // SAFETY: per this function's contract.
        let (m, name) = unsafe { metrics_args(metrics, name) }?;
        // SAFETY: per this function's contract.
        let key = unsafe { key_arg(key, key_len) }?;
        let scope = scope_arg(scope)?;
        out_arg(out, "out")?;
        let n = m
            .gauge_get(name, key, scope, wall_ms())
            .map_err(metrics_fail)?;
        // SAFETY: non-null and valid per the contract.
        unsafe { *out = n };
        Ok(())
    })
}

/// Forgets the key `key[0..key_len]` of the gauge cache `name`: this node's
/// count goes to zero cluster-wide (`msys.gauge_cache.remove_item`).
///
/// # Safety
/// `metrics` is a live handle; `name` a C string; `key` readable for
/// `key_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_gauge_cache_remove_item(
    metrics: *const ecc_metrics,
    name: *const c_char,
    key: *const u8,
    key_len: usize,
) -> ecc_status {
    guarded(|| {
        // SAFETY: per this function's contract.
        let (m, name) = unsafe { metrics_args(metrics, name) }?;
        // SAFETY: per this function's contract.
        let key = unsafe { key_arg(key, key_len) }?;
        m.gauge_remove_item(name, key).map_err(metrics_fail)
    })
}

/// Frees a metrics handle (its series and caches stay defined); NULL is a
/// no-op.
///
/// # Safety
/// `metrics` is NULL or a live handle, not used again.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_metrics_free(metrics: *mut ecc_metrics) {
    // SAFETY: per this function's contract.
    boundary_void(|| unsafe { ecc_metrics::free(metrics) });
}

// ---------------------------------------------------------------------------
// Replicated key/value cache
// ---------------------------------------------------------------------------

/// A replicated key/value cache (a `Replicate` scope of `type = "cache"`;
/// Sieve `ec_cluster_cache_get` / `ec_cluster_cache_set`). Thread-safe.
#[derive(Debug)]
pub struct ecc_cache {
    _private: [u8; 0],
}

impl Handle for ecc_cache {
    type Target = Arc<ClusterCache>;
}

/// Opens the cache `name` (a `Replicate` scope of `type = "cache"`);
/// `ECC_NOT_FOUND` when the configuration has none by that name.
///
/// # Safety
/// `node` is a live handle; `name` a C string; `out` a valid pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_cache_open(
    node: *const ecc_node,
    name: *const c_char,
    out: *mut *mut ecc_cache,
) -> ecc_status {
    // SAFETY: per this function's contract.
    boundary(|| unsafe { open(node, name, out, "cache", Node::shared_cache) })
}

/// Sets the key `key[0..key_len]` to the value `value[0..value_len]` (any
/// bytes) cluster-wide, for `ttl` as `ec_cluster_cache_set` takes it:
/// seconds ("300"), minutes ("5M") or hours ("2H"), "0" for never.
/// `ECC_INVALID_ARGUMENT` for a bad TTL or a key or value too large for the
/// wire.
///
/// # Safety
/// `cache` is a live handle; `key` readable for `key_len` bytes, `value`
/// for `value_len`; `ttl` a C string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_cache_set(
    cache: *const ecc_cache,
    key: *const u8,
    key_len: usize,
    value: *const u8,
    value_len: usize,
    ttl: *const c_char,
) -> ecc_status {
    guarded(|| {
        // SAFETY: per this function's contract.
        let c = unsafe { ecc_cache::borrow(cache, "cache") }?;
        // SAFETY: per this function's contract.
        let key = unsafe { key_arg(key, key_len) }?;
        // SAFETY: per this function's contract.
        let value = unsafe { bytes_arg(value, value_len, "value") }?;
        // SAFETY: per this function's contract.
        let ttl = unsafe { str_arg(ttl, "ttl") }?;
        let ttl_secs = parse_ttl(ttl).map_err(|e| fail(ecc_status::ECC_INVALID_ARGUMENT, e))?;
        c.set(key, value, ttl_secs)
            .map_err(|e| fail(ecc_status::ECC_INVALID_ARGUMENT, e.to_string()))
    })
}

/// Reads the live value of the key `key[0..key_len]`. When there is none,
/// writes `*out_found = false` and `*out_len = 0`. Otherwise copies it into
/// `buf` (no NUL is added: values are bytes), its length to `*out_len` and
/// `*out_found = true`; when `buf_len` is too small it returns
/// `ECC_BUFFER_TOO_SMALL` and writes only `*out_len` (the length needed).
/// The value may change between two calls, so retry until the buffer fits.
///
/// # Safety
/// `cache` is a live handle; `key` readable for `key_len` bytes; `buf`
/// NULL (with `buf_len` 0) or writable for `buf_len` bytes; `out_len` and
/// `out_found` valid pointers.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_cache_get(
    cache: *const ecc_cache,
    key: *const u8,
    key_len: usize,
    buf: *mut u8,
    buf_len: usize,
    out_len: *mut usize,
    out_found: *mut bool,
) -> ecc_status {
    guarded(|| {
        // SAFETY: per this function's contract.
        let c = unsafe { ecc_cache::borrow(cache, "cache") }?;
        // SAFETY: per this function's contract.
        let key = unsafe { key_arg(key, key_len) }?;
        out_arg(out_len, "out_len")?;
        out_arg(out_found, "out_found")?;
        let value = c.get(key);
        // SAFETY: buf and out_len per this function's contract.
        match unsafe { write_bytes(value.as_deref().unwrap_or_default(), buf, buf_len, out_len) } {
            ecc_status::ECC_OK => {
                // SAFETY: non-null and valid per the contract.
                unsafe { *out_found = value.is_some() };
                Ok(())
            }
            other => Err(other),
        }
    })
}

/// Removes the key `key[0..key_len]` cluster-wide (absent keys are fine).
///
/// # Safety
/// `cache` is a live handle; `key` readable for `key_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_cache_remove(
    cache: *const ecc_cache,
    key: *const u8,
    key_len: usize,
) -> ecc_status {
    guarded(|| {
        // SAFETY: per this function's contract.
        let c = unsafe { ecc_cache::borrow(cache, "cache") }?;
        // SAFETY: per this function's contract.
        let key = unsafe { key_arg(key, key_len) }?;
        c.remove(key)
            .map_err(|e| fail(ecc_status::ECC_INVALID_ARGUMENT, e.to_string()))
    })
}

/// Frees a cache handle (the cache and its entries stay); NULL is a no-op.
///
/// # Safety
/// `cache` is NULL or a live handle, not used again.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_cache_free(cache: *mut ecc_cache) {
    // SAFETY: per this function's contract.
    boundary_void(|| unsafe { ecc_cache::free(cache) });
}

// ---------------------------------------------------------------------------
// Outbound connection limits
// ---------------------------------------------------------------------------

/// Where `cluster_max_outbound_connections` is set for an attempt: one of
/// the `ECC_MAX_SCOPE_` values (most specific first).
pub type ecc_max_scope = u32;
/// Set in a `Binding { Domain { Host } }` scope.
pub const ECC_MAX_SCOPE_BINDING_HOST: ecc_max_scope = 0;
/// Set in a `Host` scope.
pub const ECC_MAX_SCOPE_HOST: ecc_max_scope = 1;
/// Set in a `Binding { Domain }` scope.
pub const ECC_MAX_SCOPE_BINDING_DOMAIN: ecc_max_scope = 2;
/// Set in a `Binding` scope.
pub const ECC_MAX_SCOPE_BINDING: ecc_max_scope = 3;
/// Set in a `Domain` scope.
pub const ECC_MAX_SCOPE_DOMAIN: ecc_max_scope = 4;
/// Set globally: a cap on every domain.
pub const ECC_MAX_SCOPE_GLOBAL: ecc_max_scope = 5;

/// Where `cluster_server_max_outbound_connections` is set: one of the
/// `ECC_SERVER_SCOPE_` values.
pub type ecc_server_scope = u32;
/// Globally: every connection of the whole cluster.
pub const ECC_SERVER_SCOPE_GLOBAL: ecc_server_scope = 0;
/// In a `Binding`: the binding's connections, cluster-wide.
pub const ECC_SERVER_SCOPE_BINDING: ecc_server_scope = 1;
/// In a `Binding_Group`: the group's bindings' connections, cluster-wide.
pub const ECC_SERVER_SCOPE_BINDING_GROUP: ecc_server_scope = 2;

/// Where `cluster_scope_max_outbound_connections` is set: one of the
/// `ECC_SCOPE_LEVEL_` values.
pub type ecc_scope_level = u32;
/// `Global`: as `cluster_server_max_outbound_connections` globally.
pub const ECC_SCOPE_LEVEL_GLOBAL: ecc_scope_level = 0;
/// `Global::Domain`: the domain across every binding.
pub const ECC_SCOPE_LEVEL_GLOBAL_DOMAIN: ecc_scope_level = 1;
/// `Binding_Group::Domain`: the domain across the group's bindings.
pub const ECC_SCOPE_LEVEL_GROUP_DOMAIN: ecc_scope_level = 2;
/// `Binding::Domain`: as `cluster_max_outbound_connections` there.
pub const ECC_SCOPE_LEVEL_BINDING_DOMAIN: ecc_scope_level = 3;
/// `Global::Host`: the MX across every binding.
pub const ECC_SCOPE_LEVEL_GLOBAL_HOST: ecc_scope_level = 4;

/// One outbound connection, as the MTA knows it when it is about to open.
/// Strings are NUL-terminated UTF-8.
#[repr(C)]
#[derive(Debug)]
pub struct ecc_outbound_attempt {
    /// The binding's name.
    pub binding: *const c_char,
    /// The binding's group; NULL: none.
    pub binding_group: *const c_char,
    /// The destination domain.
    pub domain: *const c_char,
    /// The MX host name, when the connection goes to a known MX; NULL: unknown.
    pub host: *const c_char,
    /// The binding's source address, 4 bytes (IPv4) or 16 (IPv6), network
    /// order; NULL or `source_len` 0: none.
    pub source: *const u8,
    /// The length of `source`: 0, 4 or 16.
    pub source_len: usize,
}

/// The limits the MTA's configuration sets for an attempt. Each has the
/// scope it is set in and a value; a negative value (-1, as in the
/// reference) means not set. 0 is a limit (nothing may open), so a zeroed
/// struct refuses everything: set the limits you do not use to -1.
#[repr(C)]
#[derive(Debug)]
pub struct ecc_outbound_limits {
    /// One of `ECC_MAX_SCOPE_`.
    pub cluster_max_scope: ecc_max_scope,
    /// `cluster_max_outbound_connections`; negative: not set.
    pub cluster_max: i64,
    /// One of `ECC_SERVER_SCOPE_`.
    pub server_max_scope: ecc_server_scope,
    /// `cluster_server_max_outbound_connections`; negative: not set.
    pub server_max: i64,
    /// One of `ECC_SCOPE_LEVEL_`.
    pub scope_max_level: ecc_scope_level,
    /// `cluster_scope_max_outbound_connections`; negative: not set.
    pub scope_max: i64,
}

/// An optional string field: NULL is `None`.
///
/// # Safety
/// `p` is NULL or a C string that lives for `'a`.
unsafe fn opt_str_arg<'a>(p: *const c_char, name: &str) -> Result<Option<&'a str>, ecc_status> {
    if p.is_null() {
        Ok(None)
    } else {
        // SAFETY: per this function's contract.
        unsafe { str_arg(p, name) }.map(Some)
    }
}

/// The attempt behind a C pointer.
///
/// # Safety
/// `a` is NULL or points to an `ecc_outbound_attempt` whose pointers are
/// as its fields document and live for `'a`.
unsafe fn attempt_arg<'a>(a: *const ecc_outbound_attempt) -> Result<Attempt<'a>, ecc_status> {
    if a.is_null() {
        return Err(fail(ecc_status::ECC_NULL_ARGUMENT, "attempt is NULL"));
    }
    // SAFETY: non-null and valid per the contract.
    let a = unsafe { &*a };
    // SAFETY: per this function's contract.
    let binding = unsafe { str_arg(a.binding, "attempt->binding") }?;
    // SAFETY: per this function's contract.
    let binding_group = unsafe { opt_str_arg(a.binding_group, "attempt->binding_group") }?;
    // SAFETY: per this function's contract.
    let domain = unsafe { str_arg(a.domain, "attempt->domain") }?;
    // SAFETY: per this function's contract.
    let host = unsafe { opt_str_arg(a.host, "attempt->host") }?;
    let source = if a.source_len == 0 {
        None
    } else {
        // SAFETY: per this function's contract.
        Some(unsafe {
            named_addr_arg(
                a.source,
                a.source_len,
                "attempt->source",
                "attempt->source_len",
            )
        }?)
    };
    Ok(Attempt {
        binding,
        binding_group,
        domain,
        host,
        source,
    })
}

fn bad_scope(field: &str, value: u32, first: &str, last: &str, max: u32) -> ecc_status {
    fail(
        ecc_status::ECC_INVALID_ARGUMENT,
        format!("limits->{field} is {value}; expected {first} (0) to {last} ({max})"),
    )
}

/// The limits behind a C pointer; every scope is checked, set or not.
///
/// # Safety
/// `l` is NULL or points to an `ecc_outbound_limits`.
unsafe fn limits_arg(l: *const ecc_outbound_limits) -> Result<Limits, ecc_status> {
    if l.is_null() {
        return Err(fail(ecc_status::ECC_NULL_ARGUMENT, "limits is NULL"));
    }
    // SAFETY: non-null and valid per the contract.
    let l = unsafe { &*l };
    let max_scope = match l.cluster_max_scope {
        ECC_MAX_SCOPE_BINDING_HOST => MaxScope::BindingHost,
        ECC_MAX_SCOPE_HOST => MaxScope::Host,
        ECC_MAX_SCOPE_BINDING_DOMAIN => MaxScope::BindingDomain,
        ECC_MAX_SCOPE_BINDING => MaxScope::Binding,
        ECC_MAX_SCOPE_DOMAIN => MaxScope::Domain,
        ECC_MAX_SCOPE_GLOBAL => MaxScope::Global,
        other => {
            return Err(bad_scope(
                "cluster_max_scope",
                other,
                "ECC_MAX_SCOPE_BINDING_HOST",
                "ECC_MAX_SCOPE_GLOBAL",
                ECC_MAX_SCOPE_GLOBAL,
            ));
        }
    };
    let server_scope = match l.server_max_scope {
        ECC_SERVER_SCOPE_GLOBAL => ServerScope::Global,
        ECC_SERVER_SCOPE_BINDING => ServerScope::Binding,
        ECC_SERVER_SCOPE_BINDING_GROUP => ServerScope::BindingGroup,
        other => {
            return Err(bad_scope(
                "server_max_scope",
                other,
                "ECC_SERVER_SCOPE_GLOBAL",
                "ECC_SERVER_SCOPE_BINDING_GROUP",
                ECC_SERVER_SCOPE_BINDING_GROUP,
            ));
        }
    };
    let level = match l.scope_max_level {
        ECC_SCOPE_LEVEL_GLOBAL => ScopeLevel::Global,
        ECC_SCOPE_LEVEL_GLOBAL_DOMAIN => ScopeLevel::GlobalDomain,
        ECC_SCOPE_LEVEL_GROUP_DOMAIN => ScopeLevel::GroupDomain,
        ECC_SCOPE_LEVEL_BINDING_DOMAIN => ScopeLevel::BindingDomain,
        ECC_SCOPE_LEVEL_GLOBAL_HOST => ScopeLevel::GlobalHost,
        other => {
            return Err(bad_scope(
                "scope_max_level",
                other,
                "ECC_SCOPE_LEVEL_GLOBAL",
                "ECC_SCOPE_LEVEL_GLOBAL_HOST",
                ECC_SCOPE_LEVEL_GLOBAL_HOST,
            ));
        }
    };
    let set = |v: i64| v >= 0;
    Ok(Limits {
        cluster_max: set(l.cluster_max).then_some((max_scope, l.cluster_max)),
        cluster_server_max: set(l.server_max).then_some((server_scope, l.server_max)),
        cluster_scope_max: set(l.scope_max).then_some((level, l.scope_max)),
    })
}

/// The status of a `may_open` refusal: an object the configuration does
/// not replicate is `ECC_NOT_FOUND`, an attempt lacking what a limit counts
/// by (an MX host, a binding group, a source address) is
/// `ECC_INVALID_ARGUMENT`.
fn may_open_fail(e: OutboundError) -> ecc_status {
    let status = match e {
        OutboundError::NotReplicated { .. } => ecc_status::ECC_NOT_FOUND,
        OutboundError::MissingDetail { .. } => ecc_status::ECC_INVALID_ARGUMENT,
    };
    fail(status, e.to_string())
}

/// Whether one more outbound connection for `attempt` may open now under
/// `limits`, compared with the cluster-wide counts of the node's
/// `outbound_domains`, `outbound_binding_domains` and `outbound_cidr`
/// objects. When it may not, `*out_may_open` is false, the call returns
/// `ECC_OK` and `ecc_last_error()` says which option refused, the
/// cluster-wide count and the limit, e.g.
/// "cluster_max_outbound_connections: 3 open in the cluster, limit 3".
///
/// `ECC_NOT_FOUND` when a limit that is set needs an object the
/// configuration does not replicate (the message names the `Replicate`
/// scope to add); `ECC_INVALID_ARGUMENT` for an unknown scope value or an
/// attempt that lacks what a limit counts by.
///
/// # Safety
/// `node` is a live handle; `attempt` and `limits` valid pointers (with
/// `attempt`'s fields as documented); `out_may_open` a valid pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_outbound_may_open(
    node: *const ecc_node,
    attempt: *const ecc_outbound_attempt,
    limits: *const ecc_outbound_limits,
    out_may_open: *mut bool,
) -> ecc_status {
    guarded(|| {
        // SAFETY: per this function's contract.
        let node = unsafe { ecc_node::borrow(node, "node") }?;
        // SAFETY: per this function's contract.
        let attempt = unsafe { attempt_arg(attempt) }?;
        // SAFETY: per this function's contract.
        let limits = unsafe { limits_arg(limits) }?;
        out_arg(out_may_open, "out_may_open")?;
        let verdict = node
            .outbound()
            .may_open(&attempt, &limits)
            .map_err(may_open_fail)?;
        let may_open = match verdict {
            Verdict::Open => true,
            Verdict::AtLimit {
                option,
                count,
                limit,
            } => {
                set_last_error(&format!(
                    "{option}: {count} open in the cluster, limit {limit}"
                ));
                false
            }
        };
        // SAFETY: non-null and valid per the contract.
        unsafe { *out_may_open = may_open };
        Ok(())
    })
}

/// Counts the connection of `attempt` as opened on this node (in every
/// outbound object the configuration replicates).
///
/// # Safety
/// `node` is a live handle; `attempt` a valid pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_outbound_opened(
    node: *const ecc_node,
    attempt: *const ecc_outbound_attempt,
) -> ecc_status {
    guarded(|| {
        // SAFETY: per this function's contract.
        let node = unsafe { ecc_node::borrow(node, "node") }?;
        // SAFETY: per this function's contract.
        let attempt = unsafe { attempt_arg(attempt) }?;
        node.outbound().opened(&attempt);
        Ok(())
    })
}

/// Counts the connection of `attempt`, reported by `ecc_outbound_opened`,
/// as closed. Pass the same attempt.
///
/// # Safety
/// `node` is a live handle; `attempt` a valid pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_outbound_closed(
    node: *const ecc_node,
    attempt: *const ecc_outbound_attempt,
) -> ecc_status {
    guarded(|| {
        // SAFETY: per this function's contract.
        let node = unsafe { ecc_node::borrow(node, "node") }?;
        // SAFETY: per this function's contract.
        let attempt = unsafe { attempt_arg(attempt) }?;
        node.outbound().closed(&attempt);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::outbound::Outbound;

    #[test]
    fn may_open_errors_map_to_not_found_or_invalid_argument() {
        let attempt = Attempt {
            binding: "b",
            binding_group: None,
            domain: "aol.com",
            host: None,
            source: None,
        };
        let limits = |scope| Limits {
            cluster_max: Some((scope, 3)),
            ..Limits::default()
        };
        let none = Outbound::default();
        let e = none
            .may_open(&attempt, &limits(MaxScope::Domain))
            .unwrap_err();
        assert_eq!(may_open_fail(e), ecc_status::ECC_NOT_FOUND);
        let e = none
            .may_open(&attempt, &limits(MaxScope::Host))
            .unwrap_err();
        assert_eq!(may_open_fail(e), ecc_status::ECC_INVALID_ARGUMENT);
    }

    #[test]
    fn write_bytes_reports_the_length_needed() {
        let mut buf = [0u8; 4];
        let mut len = 99usize;
        // SAFETY: buf is writable for its length; len is valid.
        let s = unsafe { write_bytes(b"hello", buf.as_mut_ptr(), buf.len(), &mut len) };
        assert_eq!((s, len), (ecc_status::ECC_BUFFER_TOO_SMALL, 5));
        let mut big = [0u8; 5];
        // SAFETY: as above.
        let s = unsafe { write_bytes(b"hello", big.as_mut_ptr(), big.len(), &mut len) };
        assert_eq!((s, len, &big), (ecc_status::ECC_OK, 5, b"hello"));
        // SAFETY: an empty value needs no buffer.
        let s = unsafe { write_bytes(b"", std::ptr::null_mut(), 0, &mut len) };
        assert_eq!((s, len), (ecc_status::ECC_OK, 0));
    }
}

// ---------------------------------------------------------------------------
// Journals (the log service)
// ---------------------------------------------------------------------------

/// A journal a logger appends to, opened by its destination. Thread-safe.
#[derive(Debug)]
pub struct ecc_log {
    _private: [u8; 0],
}

impl Handle for ecc_log {
    type Target = Arc<crate::io::logwriter::LogWriter>;
}

/// Opens the journal of `destination` (`"cluster:///var/log/ecelerity/mainlog.cluster=>master"`,
/// `jlog://` the same, `?subscribers=a,b` for several), creating it with its
/// subscribers if need be. Appends return once durable: after their own
/// fdatasync when `group_commit_ms` is 0, otherwise sharing one with the
/// appends under way together, waiting at most that many milliseconds.
/// Every destination naming the same directory shares one writer.
///
/// `ECC_INVALID_ARGUMENT` for a destination that does not parse;
/// `ECC_IO_ERROR` when the journal cannot be created or opened.
///
/// # Safety
/// `node` is a live handle; `destination` a C string; `out` a valid pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_log_open(
    node: *const ecc_node,
    destination: *const c_char,
    group_commit_ms: u32,
    out: *mut *mut ecc_log,
) -> ecc_status {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (node, destination) = match unsafe {
            (
                ecc_node::borrow(node, "node"),
                str_arg(destination, "destination"),
            )
        } {
            (Ok(n), Ok(d)) => (n, d),
            (Err(s), _) | (_, Err(s)) => return s,
        };
        if out.is_null() {
            return fail(ecc_status::ECC_NULL_ARGUMENT, "out is NULL");
        }
        if let Err(e) = crate::core::logs::destination::Destination::parse(destination) {
            return fail(ecc_status::ECC_INVALID_ARGUMENT, e.to_string());
        }
        let durability = match group_commit_ms {
            0 => crate::journal::Durability::EveryRecord,
            ms => crate::journal::Durability::Group {
                interval: std::time::Duration::from_millis(u64::from(ms)),
            },
        };
        match node.open_log(destination, durability) {
            Ok(writer) => {
                // SAFETY: out is non-null and valid per the contract.
                unsafe { put(out, ecc_log::into_raw(writer)) };
                ecc_status::ECC_OK
            }
            Err(e) => fail(ecc_status::ECC_IO_ERROR, e),
        }
    })
}

/// Appends the record `line[0..len]` stamped with the current time, and
/// returns once it is durable; its position (`%08x:%08x` is how jlog prints
/// it) goes to `out_segment` and `out_marker` when they are not NULL.
///
/// # Safety
/// `log` is a live handle; `line` readable for `len` bytes; the outs NULL
/// or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_log_append(
    log: *const ecc_log,
    line: *const u8,
    len: usize,
    out_segment: *mut u32,
    out_marker: *mut u32,
) -> ecc_status {
    boundary(|| {
        if line.is_null() && len > 0 {
            return fail(
                ecc_status::ECC_NULL_ARGUMENT,
                format!("line is NULL but its length is {len}"),
            );
        }
        // SAFETY: per this function's contract.
        let (log, line) = match unsafe { (ecc_log::borrow(log, "log"), key_arg(line, len)) } {
            (Ok(l), Ok(b)) => (l, b),
            (Err(s), _) | (_, Err(s)) => return s,
        };
        match log.append(line) {
            Ok(id) => {
                // SAFETY: each out is NULL or valid per the contract.
                unsafe {
                    if !out_segment.is_null() {
                        *out_segment = id.log;
                    }
                    if !out_marker.is_null() {
                        *out_marker = id.marker;
                    }
                }
                ecc_status::ECC_OK
            }
            Err(e) => fail(ecc_status::ECC_IO_ERROR, e),
        }
    })
}

/// Frees a journal handle; NULL is a no-op. The journal stays open while
/// other handles to it live.
///
/// # Safety
/// `log` is NULL or a live handle, not used again.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_log_free(log: *mut ecc_log) {
    // SAFETY: per this function's contract.
    boundary_void(|| unsafe { ecc_log::free(log) });
}
