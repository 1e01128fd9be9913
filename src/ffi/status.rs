//! Status codes and the per-thread error text.

use std::cell::RefCell;
use std::ffi::{CString, c_char};

/// The library's major version; the SONAME is `libeccluster.so.<major>`.
pub const ECC_VERSION_MAJOR: u32 = 0;
/// The library's minor version.
pub const ECC_VERSION_MINOR: u32 = 1;
/// The library's patch version.
pub const ECC_VERSION_PATCH: u32 = 0;

/// What a call did. Values are fixed and never reused.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ecc_status {
    /// Success.
    ECC_OK = 0,
    /// A required pointer argument was NULL.
    ECC_NULL_ARGUMENT = 1,
    /// An argument was not valid (not UTF-8, an unknown enum value, ...).
    ECC_INVALID_ARGUMENT = 2,
    /// The configuration has errors; `ecc_last_error()` lists them with file, line and column.
    ECC_CONFIG_ERROR = 3,
    /// An operating-system call failed (a socket, a file).
    ECC_IO_ERROR = 4,
    /// The caller's buffer is too small; `out_len` holds the length needed (without the NUL).
    ECC_BUFFER_TOO_SMALL = 5,
    /// Not allowed in the object's current state (e.g. starting a running node).
    ECC_INVALID_STATE = 6,
    /// The node's name, subcluster or address could not be determined.
    ECC_IDENTITY_ERROR = 7,
    /// A console command failed; `ecc_last_error()` holds its message.
    ECC_COMMAND_FAILED = 8,
    /// A bug inside the library was caught at the boundary; the call did nothing reliable.
    ECC_PANIC = 9,
    /// No such object: the configuration replicates nothing by that name and kind
    /// (or, for a move, no node of that name is configured).
    ECC_NOT_FOUND = 10,
    /// The receiving node's host rejected a moved message; `ecc_last_error()` holds its reason.
    ECC_MOVE_REJECTED = 11,
    /// A move was not accepted before its deadline; `ecc_last_error()` says what happened last.
    ECC_MOVE_FAILED = 12,
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Records the error text for this thread (interior NULs are replaced).
pub(crate) fn set_last_error(message: &str) {
    let c = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

/// Records `message` and returns `status`.
pub(crate) fn fail(status: ecc_status, message: impl AsRef<str>) -> ecc_status {
    set_last_error(message.as_ref());
    status
}

/// The text of the last error on this thread ("" if none). The pointer is
/// valid until the next `ecc_` call on this thread.
#[unsafe(no_mangle)]
pub extern "C" fn ecc_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// A short, constant description of a status code ("unknown status" for a
/// value this version does not define). Takes an `int` so that any value a
/// caller passes is defined behaviour.
#[unsafe(no_mangle)]
pub extern "C" fn ecc_status_str(status: i32) -> *const c_char {
    use ecc_status::*;
    let known = [
        (ECC_OK, &b"ok\0"[..]),
        (ECC_NULL_ARGUMENT, b"null argument\0"),
        (ECC_INVALID_ARGUMENT, b"invalid argument\0"),
        (ECC_CONFIG_ERROR, b"configuration error\0"),
        (ECC_IO_ERROR, b"I/O error\0"),
        (ECC_BUFFER_TOO_SMALL, b"buffer too small\0"),
        (ECC_INVALID_STATE, b"invalid state\0"),
        (ECC_IDENTITY_ERROR, b"identity error\0"),
        (ECC_COMMAND_FAILED, b"command failed\0"),
        (ECC_PANIC, b"internal error (panic)\0"),
        (ECC_NOT_FOUND, b"not found\0"),
        (ECC_MOVE_REJECTED, b"move rejected\0"),
        (ECC_MOVE_FAILED, b"move failed\0"),
    ];
    let text = known
        .iter()
        .find(|(s, _)| *s as i32 == status)
        .map_or(&b"unknown status\0"[..], |(_, t)| t);
    text.as_ptr().cast()
}

/// The library version, e.g. "0.1.0" (a static string).
#[unsafe(no_mangle)]
pub extern "C" fn ecc_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_macros_match_the_crate_version() {
        let v = format!("{ECC_VERSION_MAJOR}.{ECC_VERSION_MINOR}.{ECC_VERSION_PATCH}");
        assert_eq!(v, env!("CARGO_PKG_VERSION"));
    }
}
