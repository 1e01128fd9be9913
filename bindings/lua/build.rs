//! Keeps the module's exports to `luaopen_eccluster`. rustc exports every
//! `#[no_mangle]` function of the crates a cdylib links, so the engine's
//! whole C ABI (`ecc_*`) would be exported from eccluster.so too, where a
//! host that also links libeccluster (or loads the module with
//! RTLD_GLOBAL) could bind to the wrong copy. The engine comes in as an
//! rlib, an archive, and `--exclude-libs` makes what archives define local.

fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,--exclude-libs,ALL");
    println!("cargo:rerun-if-changed=build.rs");
}
