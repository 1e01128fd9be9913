#!/usr/bin/env bash
# DuraVIP failover, measured end to end from a client, side by side with
# keepalived (VRRP) in the same topology.
#
# Three nodes, each in its own network namespace, on a Linux bridge (its own
# namespace), plus a client namespace on the same bridge; one VIP. Each node
# namespace runs a tiny TCP service answering with the node's name. A probe
# in the client namespace connects to the VIP every ~20 ms (15 ms connect
# timeout). Each trial crashes the host owning the VIP (every process of its
# namespace frozen and SIGKILLed, its bridge port set down) and measures
# from the kill to the client's first answer from a live node; the host is
# then brought back (its daemon must clear the stale VIP and rejoin) and the
# lab settles before the next kill, at a random phase.
#
# Systems (ECC_BENCH_SYSTEMS, comma-separated; the default below):
#   eccluster:4        heartbeats_per_sec = 4, other options at their defaults
#   eccluster:1        every option at its default (1 heartbeat/s)
#   eccluster:4:3      4/s with down_heartbeats = 3 (suspect 2): VRRP's rule
#   keepalived:0.25    VRRPv3, advert_int 0.25 s, unicast peers, nopreempt
#   keepalived:1       the same with advert_int 1 s
# heartbeat_start_delay is 0 for eccluster (it only delays a start).
#
#   benches/duravip_failover.sh [TRIALS]     # default 20; ~15 min for all
#
# The driver is the ignored `failover_bench` test of tests/netns_cluster.rs,
# built in release mode (so is the `eccluster` binary it runs). Needs root
# and `ip netns`; exits 0 with a message without them. Not part of
# scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

trials=${1:-20}
skip() {
  echo "duravip_failover: skipped: $*"
  exit 0
}
command -v ip >/dev/null 2>&1 || skip "iproute2 (ip) is not installed"
[ "$(id -u)" -eq 0 ] || skip "needs root for network namespaces"
command -v keepalived >/dev/null 2>&1 ||
  echo "duravip_failover: keepalived is not installed; its rows are skipped (apt-get install keepalived)"

tag="eccbench$$"
cleanup() {
  # The driver deletes its namespaces itself; this catches an interrupted
  # run. Only our own namespaces, and only the processes inside them.
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$tag-" || true); do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do
      kill -9 "$pid" 2>/dev/null || true
    done
    ip netns del "$ns" 2>/dev/null || true
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "duravip_failover: building (release)"
cargo test --release --quiet --test netns_cluster --no-run
echo "duravip_failover: $trials trials per system; $(nproc) cores; keepalived $(keepalived --version 2>&1 | head -n 1 | awk '{print $2}' || true)"
ECC_NETNS_TAG="$tag" \
  ECC_BENCH_TRIALS="$trials" \
  ECC_BENCH_SYSTEMS="${ECC_BENCH_SYSTEMS:-eccluster:4,eccluster:1,eccluster:4:3,keepalived:0.25,keepalived:1}" \
  cargo test --release --quiet --test netns_cluster -- \
  --ignored --exact failover_bench --nocapture --test-threads=1
