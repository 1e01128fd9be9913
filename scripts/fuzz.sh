#!/usr/bin/env bash
# Coverage-guided fuzzing of the configuration readers, the wire decoder and
# the journal (against its model) on stable Rust.
#
#   scripts/fuzz.sh [SECONDS]      (default 40: the four targets take 3 min)
#
# Runs every target in fuzz/ (ecelerity_config, toml_config, wire_decode,
# journal_model) one after the other, EACH for SECONDS, with libFuzzer via
# the pinned cargo-fuzz. No nightly is needed: `--sanitizer none` makes
# cargo-fuzz pass only stable flags (-Cpasses=sancov-module,
# -Cllvm-args=-sanitizer-coverage-*, --cfg fuzzing, -Cdebug-assertions), and
# libfuzzer-sys builds libFuzzer itself with the system C++ compiler. Debug assertions are on so that integer overflow panics
# as it does under `cargo test`.
#
# fuzz/config.dict gives the config targets the syntax and option names to
# splice in. Their seeds come from examples/config/; wire_decode's are a few
# valid messages and an envelope, written below; journal_model's are random
# bytes, as any input is a sequence of operations (src/journal/model.rs).
# Seeds go into fuzz/corpus/<target>/ (not committed) on every run; what
# libFuzzer adds there is kept between runs.
# Exits non-zero if any target crashes, panics or times out, and prints the
# path of the input that did it (under fuzz/artifacts/<target>/).
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_TARGET=${1:-40}
case "$SECONDS_PER_TARGET" in
  '' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;;
esac
CARGO_FUZZ_VERSION=0.13.1
TARGETS=(ecelerity_config toml_config wire_decode journal_model)
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

# wire_decode's seeds, in the layout of src/core/wire/codec.rs and
# src/io/seal.rs: little-endian integers (`le VALUE WIDTH`) and u32-length-
# prefixed strings (`str TEXT`), as printf escapes. A protocol change makes
# them stale, not wrong: they only give libFuzzer a head start.
le() {
  local i out=
  for ((i = 0; i < $2; i++)); do out+=$(printf '\\x%02x' $((($1 >> (8 * i)) & 255))); done
  printf '%s' "$out"
}
str() { le ${#1} 4; printf '%s' "$1"; }
wire_seeds() {
  local v; v=$(le 6 1) # PROTOCOL_VERSION
  local request="$v$(le 3 1)$(le 1 8)$(str 'cluster info')"
  printf "$request" >"$1/console_request"
  printf "$v$(le 4 1)$(le 1 8)$(le 1 1)$(str 'ok')" >"$1/console_response"
  printf "$v$(le 2 1)$(str mta1)$(le 7 8)$(str ec_cluster)" >"$1/hello"
  # sender: name generation incarnation node_type subcluster pid version
  # port config_digest; then view_id view_size heard about_you.
  printf "$v$(le 1 1)$(str mta1)$(le 7 8)$(le 1 4)$(le 0 1)$(str east)$(le 42 4)$(str 0.1.0)$(le 4802 2)$(le 1 2)$(le 99 4)$(le 5 8)$(le 2 4)$(le 1 2)$(str mta2)$(le 120 2)$(le 1 1)$(le 1 1)$(le 3 8)$(le 0 4)" >"$1/heartbeat"
  # A message move: id, MAIL FROM, recipients, binding, binding group,
  # headers, body length and the first bytes; a chunk; an answer.
  printf "$v$(le 12 1)$(str m1)$(str a@b)$(le 1 4)$(str c@d)$(str out1)$(str default)$(le 1 4)$(str X-Id)$(str 7)$(le 7 8)$(le 5 4)hello" >"$1/move_begin"
  printf "$v$(le 13 1)$(str m1)$(le 5 8)$(le 2 4)!!" >"$1/move_chunk"
  printf "$v$(le 14 1)$(str m1)$(le 2 1)$(str '550 no')" >"$1/move_ack"
  # A clear envelope: "EC" version flags sender_len sender generation seq body.
  printf "EC$v$(le 0 1)$(le 4 1)mta1$(le 7 8)$(le 1 8)$request" >"$1/envelope"
}

cd fuzz
cargo fuzz build "${BUILD_FLAGS[@]}"

status=0
for target in "${TARGETS[@]}"; do
  corpus=corpus/$target
  artifacts=artifacts/$target
  mkdir -p "$corpus" "$artifacts"
  dict=()
  case "$target" in
    ecelerity_config) cp ../examples/config/*.conf "$corpus"/; dict=(-dict=config.dict) ;;
    toml_config) cp ../examples/config/*.toml "$corpus"/; dict=(-dict=config.dict) ;;
    wire_decode) wire_seeds "$corpus" ;;
    # Fixed names, so that each run replaces them rather than adding more.
    journal_model) for i in 1 2 3 4; do head -c 1200 /dev/urandom >"$corpus/random-$i"; done ;;
  esac
  log=$artifacts/last-run.log
  set +e
  # -timeout: an input that takes over 10 s counts as a failure (a hang).
  cargo fuzz run "${BUILD_FLAGS[@]}" "$target" "$corpus" -- \
    -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -print_final_stats=1 \
    "${dict[@]}" >"$log" 2>&1
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
