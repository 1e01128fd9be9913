#!/usr/bin/env bash
# Checks the shared library's ABI surface: every exported symbol starts with
# `ecc_` (nothing of Rust's std leaks out to clash with the host), exports and
# include/eccluster.h declare the same functions, and the SONAME is
# libeccluster.so.<major>.
# Usage: scripts/check-symbols.sh [LIB.so...]   (default: a fresh debug build)
set -euo pipefail
args=()
for a in "$@"; do
  case "$a" in /*) args+=("$a") ;; *) args+=("$PWD/$a") ;; esac
done
cd "$(dirname "$0")/.."
if [ ${#args[@]} -eq 0 ]; then
  cargo build --lib --locked
  args=("${CARGO_TARGET_DIR:-target}/debug/libeccluster.so")
fi
major=$(sed -n 's/^version = "\([0-9]*\)\..*"$/\1/p' Cargo.toml | head -n1)
# Function declarations, not the mentions in comments.
declared=$(grep -vE '^[[:space:]]*(//|\*|/\*)' include/eccluster.h |
  grep -oE '\becc_[a-z0-9_]+\(' | tr -d '(' | sort -u)
failed=0
for so in "${args[@]}"; do
  bad=0
  if [ ! -f "$so" ]; then
    echo "FAIL: $so: no such file" >&2
    failed=1
    continue
  fi
  exported=$(nm -D --defined-only "$so" | awk '{print $NF}' | sort -u)
  offenders=$(grep -v '^ecc_' <<<"$exported" || true)
  if [ -n "$offenders" ]; then
    echo "FAIL: $so exports symbols without the ecc_ prefix:" >&2
    sed 's/^/  /' <<<"$offenders" >&2
    bad=1
  fi
  missing=$(comm -23 <(echo "$declared") <(echo "$exported"))
  if [ -n "$missing" ]; then
    echo "FAIL: $so does not export functions the header declares:" >&2
    sed 's/^/  /' <<<"$missing" >&2
    bad=1
  fi
  undeclared=$(comm -13 <(echo "$declared") <(echo "$exported"))
  if [ -n "$undeclared" ]; then
    echo "FAIL: $so exports functions include/eccluster.h lacks (run scripts/header.sh):" >&2
    sed 's/^/  /' <<<"$undeclared" >&2
    bad=1
  fi
  soname=$(readelf -d "$so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
  if [ "$soname" != "libeccluster.so.$major" ]; then
    echo "FAIL: $so has SONAME '${soname:-none}', expected libeccluster.so.$major" >&2
    bad=1
  fi
  if [ $bad -eq 0 ]; then
    echo "symbols: $so exports $(wc -l <<<"$exported") ecc_ functions, SONAME $soname"
  else
    failed=1
  fi
done
exit $failed
