//! Gives the shared library its SONAME, so hosts link against
//! `libeccluster.so.<major>` and a later incompatible version can sit beside it.

fn main() {
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_else(|_| "0".into());
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libeccluster.so.{major}");
    println!("cargo:rerun-if-changed=build.rs");
}
