//! Keeps the module's exports to `luaopen_eccluster`. rustc exports every
//! `#[no_mangle]` function of the crates a cdylib links, so the engine's
//! whole C ABI (`ecc_*`) would be exported from eccluster.so too, where a
//! host that also links libeccluster (or loads the module with
//! RTLD_GLOBAL) could bind to the wrong copy. The engine comes in as an
//! rlib, an archive, and `--exclude-libs` makes what archives define local.
//!
//! The test executables (tests/lua.rs runs a peer node in its own
//! process) link the engine too, but no host brings them a Lua: they get
//! one of their own, built from source, linked into them only (never into
//! the module, which must use its host's).

fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,--exclude-libs,ALL");
    let lua = lua_src::Build::new().build(lua_src::Version::Lua54);
    for lib in lua.libs() {
        println!(
            "cargo:rustc-link-arg-tests={}/lib{lib}.a",
            lua.lib_dir().display()
        );
    }
    println!("cargo:rerun-if-changed=build.rs");
}
