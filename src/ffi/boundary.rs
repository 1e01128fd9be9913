//! Crossing the boundary: panics, pointers, strings and handles.
//!
//! All pointer casts of the C ABI are here, so the rest of `ffi/` reads as
//! plain conversions.

use std::ffi::{CStr, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};

use super::status::{ecc_status, fail};

/// Size of the buffer an identity hook may write its replacement into,
/// including the terminating NUL.
pub const ECC_IDENTITY_MAX: usize = 256;

/// Runs an export's body, turning a panic into `ECC_PANIC`.
pub(crate) fn boundary(body: impl FnOnce() -> ecc_status) -> ecc_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(status) => status,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            fail(
                ecc_status::ECC_PANIC,
                format!("internal error (please report): {what}"),
            )
        }
    }
}

/// Runs a function that returns nothing (the `_free`s), swallowing panics.
pub(crate) fn boundary_void(body: impl FnOnce()) {
    let _ = catch_unwind(AssertUnwindSafe(body));
}

/// A C string argument as UTF-8.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that lives for `'a`.
pub(crate) unsafe fn str_arg<'a>(p: *const c_char, name: &str) -> Result<&'a str, ecc_status> {
    if p.is_null() {
        return Err(fail(
            ecc_status::ECC_NULL_ARGUMENT,
            format!("{name} is NULL"),
        ));
    }
    // SAFETY: non-null and NUL-terminated per this function's contract.
    let c = unsafe { CStr::from_ptr(p) };
    c.to_str().map_err(|_| {
        fail(
            ecc_status::ECC_INVALID_ARGUMENT,
            format!("{name} is not valid UTF-8"),
        )
    })
}

/// Bytes of a pointer-and-length argument called `name`; NULL is allowed
/// only with length 0.
///
/// # Safety
/// `p` is NULL or readable for `len` bytes that live for `'a`.
pub(crate) unsafe fn bytes_arg<'a>(
    p: *const u8,
    len: usize,
    name: &str,
) -> Result<&'a [u8], ecc_status> {
    if p.is_null() {
        return if len == 0 {
            Ok(&[])
        } else {
            Err(fail(
                ecc_status::ECC_NULL_ARGUMENT,
                format!("{name} is NULL but its length is {len}"),
            ))
        };
    }
    // SAFETY: per this function's contract.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// An array argument of `count` C strings called `name`, as UTF-8; NULL
/// is allowed only with a count of 0.
///
/// # Safety
/// `p` is NULL or points to `count` NUL-terminated strings.
pub(crate) unsafe fn str_array_arg(
    p: *const *const c_char,
    count: usize,
    name: &str,
) -> Result<Vec<String>, ecc_status> {
    if p.is_null() && count > 0 {
        return Err(fail(
            ecc_status::ECC_NULL_ARGUMENT,
            format!("{name} is NULL but its count is {count}"),
        ));
    }
    (0..count)
        .map(|i| {
            // SAFETY: p points to count pointers per the contract.
            let item = unsafe { *p.add(i) };
            // SAFETY: each is NULL or a NUL-terminated string per the contract.
            unsafe { str_arg(item, &format!("{name}[{i}]")) }.map(str::to_string)
        })
        .collect()
}

/// Copies `s` into a caller buffer, per the conventions in the module docs.
///
/// # Safety
/// `buf` is NULL (then `len` must be 0) or writable for `len` bytes;
/// `out_len` is NULL or a valid pointer.
pub(crate) unsafe fn write_str(
    s: &str,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> ecc_status {
    if out_len.is_null() {
        return fail(ecc_status::ECC_NULL_ARGUMENT, "out_len is NULL");
    }
    // SAFETY: out_len is non-null and valid per the contract.
    unsafe { *out_len = s.len() };
    if buf.is_null() || len < s.len() + 1 {
        return fail(
            ecc_status::ECC_BUFFER_TOO_SMALL,
            format!("the buffer holds {len} bytes; {} are needed", s.len() + 1),
        );
    }
    // SAFETY: buf is writable for len >= s.len() + 1 bytes and cannot overlap
    // `s`, which Rust owns.
    unsafe {
        std::ptr::copy_nonoverlapping(s.as_ptr(), buf.cast::<u8>(), s.len());
        *buf.add(s.len()) = 0;
    }
    ecc_status::ECC_OK
}

/// Copies the bytes `b` into a caller buffer: as [`write_str`], without the
/// terminating NUL (binary values may hold any byte), so `len >= b.len()`
/// suffices and `out_len` is the value's length.
///
/// # Safety
/// `buf` is NULL (then `len` must be 0) or writable for `len` bytes;
/// `out_len` is NULL or a valid pointer.
pub(crate) unsafe fn write_bytes(
    b: &[u8],
    buf: *mut u8,
    len: usize,
    out_len: *mut usize,
) -> ecc_status {
    if out_len.is_null() {
        return fail(ecc_status::ECC_NULL_ARGUMENT, "out_len is NULL");
    }
    // SAFETY: out_len is non-null and valid per the contract.
    unsafe { *out_len = b.len() };
    if b.is_empty() {
        return ecc_status::ECC_OK;
    }
    if buf.is_null() || len < b.len() {
        return fail(
            ecc_status::ECC_BUFFER_TOO_SMALL,
            format!("the buffer holds {len} bytes; {} are needed", b.len()),
        );
    }
    // SAFETY: buf is writable for len >= b.len() bytes and cannot overlap
    // `b`, which Rust owns.
    unsafe { std::ptr::copy_nonoverlapping(b.as_ptr(), buf, b.len()) };
    ecc_status::ECC_OK
}

/// An opaque C handle and the Rust value behind it.
pub(crate) trait Handle: Sized {
    type Target;

    /// Hands a value to C.
    fn into_raw(value: Self::Target) -> *mut Self {
        Box::into_raw(Box::new(value)).cast()
    }

    /// Borrows the value behind a handle.
    ///
    /// # Safety
    /// `p` is NULL or came from [`Handle::into_raw`] of this type and has not
    /// been freed.
    unsafe fn borrow<'a>(p: *const Self, name: &str) -> Result<&'a Self::Target, ecc_status> {
        if p.is_null() {
            return Err(fail(
                ecc_status::ECC_NULL_ARGUMENT,
                format!("{name} is NULL"),
            ));
        }
        // SAFETY: per the contract, p points to a live Box<Target>.
        Ok(unsafe { &*p.cast::<Self::Target>() })
    }

    /// Mutably borrows the value behind a handle.
    ///
    /// # Safety
    /// As [`Handle::borrow`], and no other reference to it is live.
    unsafe fn borrow_mut<'a>(p: *mut Self, name: &str) -> Result<&'a mut Self::Target, ecc_status> {
        if p.is_null() {
            return Err(fail(
                ecc_status::ECC_NULL_ARGUMENT,
                format!("{name} is NULL"),
            ));
        }
        // SAFETY: per the contract, p points to a live Box<Target> not aliased elsewhere.
        Ok(unsafe { &mut *p.cast::<Self::Target>() })
    }

    /// Frees a handle; NULL is a no-op.
    ///
    /// # Safety
    /// `p` is NULL or came from [`Handle::into_raw`] and is not used again.
    unsafe fn free(p: *mut Self) {
        if !p.is_null() {
            // SAFETY: per the contract, p owns a Box<Target>.
            drop(unsafe { Box::from_raw(p.cast::<Self::Target>()) });
        }
    }
}

/// Writes a handle to an out-parameter.
///
/// # Safety
/// `out` is a valid pointer (checked for NULL by the caller).
pub(crate) unsafe fn put<T>(out: *mut *mut T, value: *mut T) {
    // SAFETY: per the contract.
    unsafe { *out = value };
}
