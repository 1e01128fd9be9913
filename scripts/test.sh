#!/usr/bin/env bash
# Every check, as CI runs it: installs what it needs (idempotent), then
# formatting, lints, the Rust tests, the header drift check, the exported
# symbols, the C examples (plain, ASan, valgrind, pkg-config), the Lua
# module, the benchmarks in smoke mode and a bounded fuzz run. Exits
# non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "install: Debian packages"
need=()
for tool in gcc pkg-config valgrind nm readelf lua5.4; do
  command -v "$tool" >/dev/null || need+=("$tool")
done
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq gcc pkg-config valgrind binutils lua5.4 >/dev/null
fi
echo "ok: gcc pkg-config valgrind binutils lua5.4"

step "cargo fmt --check"
cargo fmt --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --quiet --all-targets -- -D warnings

step "cargo test"
results=$(mktemp)
trap 'rm -f "$results"' EXIT
# Under CI (root) the network-namespace tests must run, not skip.
if [ "${CI:-}" = true ]; then
  export ECC_REQUIRE_NETNS=1
fi
cargo test 2>&1 | tee "$results"

step "header drift (cbindgen, pinned)"
scripts/header.sh --check

step "exported symbols and SONAME"
scripts/check-symbols.sh

step "C examples"
scripts/c-examples.sh

step "Lua tests (the shipped policy scripts, lua/*_test.lua)"
# In the embedded engine itself, by tests/lua_scripts.rs (lua/README.md):
# `cargo test` ran them already; run alone, each case's result shows.
cargo test --quiet --test lua_scripts -- --nocapture

step "Lua module (bindings/lua: its own workspace)"
# In a target directory of its own (target/lua), beside the main crate's
# and apart from it: sharing the main crate's saved only ~7 of ~48 s, as
# mlua's dependencies change the features of some shared ones and the
# engine is compiled again either way. The `testing` feature adds what
# tests/log.lua needs to check panics.
lua_module() {
  CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}/lua" \
    cargo "$1" --manifest-path bindings/lua/Cargo.toml "${@:2}"
}
lua_module fmt --check
lua_module clippy --quiet --all-targets --features testing -- -D warnings
lua_module clippy --quiet --all-targets -- -D warnings
lua_module test --quiet --features testing

step "benchmarks (smoke: each runs once)"
cargo bench --quiet --bench '*' -- --test

step "fuzz the configuration readers, the wire decoder and the journal (bounded)"
scripts/fuzz.sh "${ECC_FUZZ_SECONDS:-40}"

step "all checks passed"
# The closing line counts the Rust tests of the `cargo test` step (the
# check scripts after it have passed too, or the run would have stopped).
passed=$(awk '/^test result:/ { n += $4 } END { print n + 0 }' "$results")
failed=$(awk '/^test result:/ { n += $6 } END { print n + 0 }' "$results")
echo "tests: $passed passed, $failed failed"
