#!/usr/bin/env bash
# Regenerates include/eccluster.h with the pinned cbindgen; with --check,
# fails if the committed header differs from a fresh one.
set -euo pipefail
cd "$(dirname "$0")/.."
CBINDGEN_VERSION=0.29.4
if ! cbindgen --version 2>/dev/null | grep -q "$CBINDGEN_VERSION"; then
  cargo install --locked "cbindgen@$CBINDGEN_VERSION"
fi
out=include/eccluster.h
if [ "${1:-}" = "--check" ]; then
  fresh=$(mktemp)
  trap 'rm -f "$fresh"' EXIT
  cbindgen --quiet --config cbindgen.toml --crate eccluster --output "$fresh"
  if ! diff -u "$out" "$fresh"; then
    echo "include/eccluster.h is stale: run scripts/header.sh and commit it" >&2
    exit 1
  fi
  # cbindgen exports every public constant of the crate; anything not named
  # ECC_ is a Rust-side constant that leaked (add it to [export] exclude).
  leaked=$(grep -E '^#define ' "$out" | awk '{print $2}' | grep -v -E '^(ECC_|ECCLUSTER_H$)' || true)
  if [ -n "$leaked" ]; then
    echo "include/eccluster.h exports non-ECC_ names: $leaked (exclude them in cbindgen.toml)" >&2
    exit 1
  fi
  echo "header: include/eccluster.h is up to date"
else
  cbindgen --quiet --config cbindgen.toml --crate eccluster --output "$out"
  echo "wrote $out"
fi
