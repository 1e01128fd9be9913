//! `ecc_config_*`: loading, parsing and overriding a configuration.

use std::ffi::c_char;
use std::path::Path;

use super::boundary::{Handle, boundary, boundary_void, put, str_arg};
use super::status::{ecc_status, fail};
use crate::config::{ConfigErrors, Format, LoadedConfig};

/// A loaded configuration. Not thread-safe: use one from one thread at a
/// time. A node made from it keeps its own copy, so it may be freed after
/// `ecc_node_new`.
#[derive(Debug)]
pub struct ecc_config {
    _private: [u8; 0],
}

impl Handle for ecc_config {
    type Target = LoadedConfig;
}

/// Which syntax `ecc_config_parse` reads: one of the `ECC_FORMAT_` values.
/// An integer rather than a C enum, so that an unknown value is reported as
/// `ECC_INVALID_ARGUMENT` instead of being undefined behaviour.
pub type ecc_config_format = u32;
/// Detect from the text: a `[table]` header line means TOML.
pub const ECC_FORMAT_AUTO: ecc_config_format = 0;
/// eccluster's native TOML.
pub const ECC_FORMAT_TOML: ecc_config_format = 1;
/// Momentum's ecelerity.conf syntax.
pub const ECC_FORMAT_ECELERITY: ecc_config_format = 2;

fn config_error(e: &ConfigErrors) -> ecc_status {
    fail(ecc_status::ECC_CONFIG_ERROR, e.to_string())
}

/// Loads a configuration file, TOML or ecelerity.conf (by extension, else by
/// content), with everything it includes. The path must be UTF-8.
///
/// # Safety
/// `path` is a NUL-terminated string; `out` is a valid pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_config_load(
    path: *const c_char,
    out: *mut *mut ecc_config,
) -> ecc_status {
    boundary(|| {
        // SAFETY: per this function's contract.
        let path = match unsafe { str_arg(path, "path") } {
            Ok(p) => p,
            Err(s) => return s,
        };
        if out.is_null() {
            return fail(ecc_status::ECC_NULL_ARGUMENT, "out is NULL");
        }
        match LoadedConfig::load(Path::new(path)) {
            // SAFETY: out is non-null and valid per the contract.
            Ok(c) => unsafe { put(out, ecc_config::into_raw(c)) },
            Err(e) => return config_error(&e),
        }
        ecc_status::ECC_OK
    })
}

/// Parses configuration text. Relative includes resolve against the current
/// directory.
///
/// # Safety
/// `text` is a NUL-terminated string; `out` is a valid pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_config_parse(
    text: *const c_char,
    format: ecc_config_format,
    out: *mut *mut ecc_config,
) -> ecc_status {
    boundary(|| {
        // SAFETY: per this function's contract.
        let text = match unsafe { str_arg(text, "text") } {
            Ok(t) => t,
            Err(s) => return s,
        };
        if out.is_null() {
            return fail(ecc_status::ECC_NULL_ARGUMENT, "out is NULL");
        }
        let format = match format {
            ECC_FORMAT_AUTO => Format::detect(Path::new(""), text),
            ECC_FORMAT_TOML => Format::Toml,
            ECC_FORMAT_ECELERITY => Format::Ecelerity,
            other => {
                return fail(
                    ecc_status::ECC_INVALID_ARGUMENT,
                    format!("unknown configuration format {other}"),
                );
            }
        };
        match LoadedConfig::parse(text, format) {
            // SAFETY: out is non-null and valid per the contract.
            Ok(c) => unsafe { put(out, ecc_config::into_raw(c)) },
            Err(e) => return config_error(&e),
        }
        ecc_status::ECC_OK
    })
}

/// Sets one option. `option` is a scope path and option name separated by
/// spaces, e.g. `"cluster heartbeats_per_sec"` or
/// `"cluster Replicate inbound_cidr max_delay"`; `value` is in ecelerity.conf
/// syntax (`"4"`, `"\"eth1\""`, `"( a b )"`). The whole configuration is
/// checked again; on error it is unchanged.
///
/// # Safety
/// `config` is a live handle; `option` and `value` are NUL-terminated strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_config_set(
    config: *mut ecc_config,
    option: *const c_char,
    value: *const c_char,
) -> ecc_status {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (config, option, value) = match unsafe {
            (
                ecc_config::borrow_mut(config, "config"),
                str_arg(option, "option"),
                str_arg(value, "value"),
            )
        } {
            (Ok(c), Ok(o), Ok(v)) => (c, o, v),
            (Err(s), _, _) | (_, Err(s), _) | (_, _, Err(s)) => return s,
        };
        match config.set(option, value) {
            Ok(()) => ecc_status::ECC_OK,
            Err(e) => config_error(&e),
        }
    })
}

/// Frees a configuration; NULL is a no-op.
///
/// # Safety
/// `config` is NULL or a live handle that is not used again.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ecc_config_free(config: *mut ecc_config) {
    // SAFETY: per this function's contract.
    boundary_void(|| unsafe { ecc_config::free(config) });
}
