#!/usr/bin/env bash
# Coverage-guided fuzzing of the configuration readers on stable Rust.
#
#   scripts/fuzz.sh [SECONDS]      (default 60)
#
# Runs every target in fuzz/ (ecelerity_config, toml_config) one after the
# other, EACH for SECONDS, with libFuzzer via the pinned cargo-fuzz. No nightly
# is needed: `--sanitizer none` makes cargo-fuzz pass only stable flags
# (-Cpasses=sancov-module, -Cllvm-args=-sanitizer-coverage-*, --cfg fuzzing,
# -Cdebug-assertions), and libfuzzer-sys builds libFuzzer itself with the
# system C++ compiler. Debug assertions are on so that integer overflow panics
# as it does under `cargo test`.
#
# fuzz/config.dict gives libFuzzer the syntax and option names to splice in.
# Seeds come from examples/config/ and are copied into fuzz/corpus/<target>/
# (not committed) on every run; what libFuzzer adds there is kept between runs.
# Exits non-zero if any target crashes, panics or times out, and prints the
# path of the input that did it (under fuzz/artifacts/<target>/).
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_TARGET=${1:-60}
case "$SECONDS_PER_TARGET" in
  '' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;;
esac
CARGO_FUZZ_VERSION=0.13.1
TARGETS=(ecelerity_config toml_config)
# Flags for both `build` and `run`, so `run` reuses the build.
BUILD_FLAGS=(--sanitizer none --release --debug-assertions)

# Tools: a C++ compiler for libFuzzer, and the pinned cargo-fuzz.
if ! command -v c++ >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq g++
  else
    echo "fuzz: a C++ compiler (g++) is needed to build libFuzzer" >&2
    exit 1
  fi
fi
if ! cargo fuzz --version 2>/dev/null | grep -qx "cargo-fuzz $CARGO_FUZZ_VERSION"; then
  cargo install --locked "cargo-fuzz@$CARGO_FUZZ_VERSION"
fi

cd fuzz
cargo fuzz build "${BUILD_FLAGS[@]}"

status=0
for target in "${TARGETS[@]}"; do
  corpus=corpus/$target
  artifacts=artifacts/$target
  mkdir -p "$corpus" "$artifacts"
  case "$target" in
    ecelerity_config) cp ../examples/config/*.conf "$corpus"/ ;;
    toml_config) cp ../examples/config/*.toml "$corpus"/ ;;
  esac
  log=$artifacts/last-run.log
  set +e
  # -timeout: an input that takes over 10 s counts as a failure (a hang).
  cargo fuzz run "${BUILD_FLAGS[@]}" "$target" "$corpus" -- \
    -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -print_final_stats=1 \
    -dict=config.dict \
    >"$log" 2>&1
  rc=$?
  set -e
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$(sed -n 's/.* cov: \([0-9]*\) .*/\1/p' "$log" | tail -1)
  units=$(find "$corpus" -type f | wc -l)
  if [ "$rc" -eq 0 ]; then
    echo "fuzz: $target: ok, ${runs:-?} runs in ${SECONDS_PER_TARGET}s (${rate:-?} exec/s), coverage ${cov:-?}, corpus $units inputs"
  else
    status=1
    crash=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    echo "fuzz: $target: FAILED (exit $rc) after ${runs:-?} runs; crashing input: ${crash:-none written}"
    { grep -E "panicked at|ERROR: libFuzzer|SUMMARY" "$log" || true; } | head -5 | sed 's/^/    /'
    echo "    full log: fuzz/$log"
    echo "    reproduce: cd fuzz && cargo fuzz run ${BUILD_FLAGS[*]} $target ${crash:-<input>}"
  fi
done
exit "$status"
