//! The C ABI: the only place with `extern "C"`.
//!
//! Every export null-checks its pointers, converts C strings, calls the safe
//! API in `node.rs` / `config/`, and turns the result into an [`ecc_status`].
//! No logic lives here. Each export body runs inside [`boundary`], which
//! catches panics and returns `ECC_PANIC` instead of unwinding into C.
//!
//! Conventions (also in the README, "C API conventions"):
//! - names are `ecc_<object>_<verb>`; handles are opaque, made by `_new` /
//!   `_load` / `_parse`, freed by `_free` (NULL is a no-op);
//! - functions return `ecc_status`; out-parameters are written only on success;
//!   the error text is in `ecc_last_error()` (per thread);
//! - strings in are NUL-terminated UTF-8; strings out are copied into a caller
//!   buffer, NUL-terminated, with the length (without the NUL) in `out_len`;
//!   when the buffer is too small the call returns `ECC_BUFFER_TOO_SMALL`
//!   and writes only `out_len`.
#![allow(unsafe_code)]
#![allow(non_camel_case_types)]

mod boundary;
mod config;
mod events;
mod mmove;
mod node;
mod policy;
mod shared;
mod status;

pub use boundary::ECC_IDENTITY_MAX;
pub use config::*;
pub use events::*;
pub use mmove::*;
pub use node::*;
pub use policy::*;
pub use shared::*;
pub use status::*;
