#!/usr/bin/env bash
# Builds the release library and installs it for C hosts:
#   PREFIX/lib/libeccluster.so.X.Y.Z, libeccluster.so.X -> it (the SONAME),
#   libeccluster.so -> libeccluster.so.X (for -leccluster), libeccluster.a,
#   PREFIX/include/eccluster.h and PREFIX/lib/pkgconfig/eccluster.pc.
# Usage: scripts/install.sh PREFIX     (DESTDIR is honoured for staging.)
set -euo pipefail
if [ $# -ne 1 ] || [ -z "$1" ]; then
  echo "usage: $0 PREFIX" >&2
  exit 2
fi
# The .pc file records the prefix, so it must be absolute; resolve it
# against the caller's directory before moving to the repository.
case "$1" in
  /*) prefix=$1 ;;
  *) prefix=$PWD/$1 ;;
esac
prefix=${prefix%/}
destdir=${DESTDIR:-}
cd "$(dirname "$0")/.."

version=$(sed -n 's/^version = "\([^"]*\)"$/\1/p' Cargo.toml | head -n1)
if ! [[ $version =~ ^([0-9]+)\.[0-9]+\.[0-9]+$ ]]; then
  echo "install: cannot read the package version from Cargo.toml (got '$version')" >&2
  exit 1
fi
major=${BASH_REMATCH[1]}

cargo build --release --lib --locked

target=${CARGO_TARGET_DIR:-target}
so=$target/release/libeccluster.so
# The symlink names below must match what hosts record at link time.
soname=$(readelf -d "$so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
if [ "$soname" != "libeccluster.so.$major" ]; then
  echo "install: $so has SONAME '$soname', expected libeccluster.so.$major" >&2
  exit 1
fi

lib=$destdir$prefix/lib
install -d "$lib/pkgconfig" "$destdir$prefix/include"
install -m 0755 "$so" "$lib/libeccluster.so.$version"
ln -sfn "libeccluster.so.$version" "$lib/libeccluster.so.$major"
ln -sfn "libeccluster.so.$major" "$lib/libeccluster.so"
install -m 0644 "$target/release/libeccluster.a" "$lib/libeccluster.a"
install -m 0644 include/eccluster.h "$destdir$prefix/include/eccluster.h"
sed -e "s|@PREFIX@|$prefix|g" -e "s|@VERSION@|$version|g" eccluster.pc.in \
  >"$lib/pkgconfig/eccluster.pc"
chmod 0644 "$lib/pkgconfig/eccluster.pc"
echo "installed eccluster $version into $destdir$prefix"
