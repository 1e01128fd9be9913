-- The eccluster Lua module as a rock. Built by the rust-mlua backend
-- (luarocks-build-rust-mlua), which runs `cargo build --release
-- --features lua54` here and installs target/release/libeccluster_lua.so
-- as eccluster.so. From a checkout:
--
--   cd bindings/lua && luarocks make eccluster-0.1.0-1.rockspec
--
-- `luarocks make` builds the checkout and fetches nothing; `source` says
-- where a published rock would come from (set `url` to the repository's).
rockspec_format = "3.0"
package = "eccluster"
version = "0.1.0-1"

source = {
   url = "git+https://example.invalid/eccluster.git",
   tag = "v0.1.0",
   -- The module is a cargo workspace of its own, in this directory.
   dir = "eccluster/bindings/lua",
}

description = {
   summary = "eccluster for Lua 5.4: cluster membership, DuraVIP, replicated counters and journals for mail servers",
   detailed = [[
      require "eccluster" starts a cluster node in the host process
      (eccluster.start) and gives its scripts the eccluster Lua API, plus
      Momentum's msys.audit_series, msys.gauge_cache and msys.audit
      through require("msys.*").
   ]],
   license = "Apache-2.0",
}

dependencies = {
   "lua >= 5.4, < 5.5",
   "luarocks-build-rust-mlua",
}

build = {
   type = "rust-mlua",
   modules = {
      -- require name = the cargo library's name (libeccluster_lua.so)
      eccluster = "eccluster_lua",
   },
}
