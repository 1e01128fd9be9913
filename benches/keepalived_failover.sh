#!/usr/bin/env bash
# keepalived's failover time at its defaults, measured, as the comparison
# peer for the membership detection figures (`cargo bench --bench cluster`).
#
# Two keepalived (VRRPv2) instances run in two network namespaces joined by a
# veth pair, with unicast_peer and one VIP: the master has priority 200, the
# backup keepalived's default 100, advert_int 1 s (the default). Each trial
# SIGKILLs every process of the master's namespace and times until the VIP is
# plumbed in the backup's namespace (`ip -n NS addr`, polled), then restarts
# the master and waits for it to take the VIP back (preemption).
#
#   benches/keepalived_failover.sh [TRIALS]     # default 10
#
# All traffic stays inside the two namespaces. Exits 0 with a message when
# keepalived, root or network namespaces are unavailable. Not part of
# scripts/test.sh.
set -euo pipefail

trials=${1:-10}
skip() {
  echo "keepalived_failover: skipped: $*"
  exit 0
}

command -v keepalived >/dev/null 2>&1 || skip "keepalived is not installed (apt-get install keepalived)"
command -v ip >/dev/null 2>&1 || skip "iproute2 (ip) is not installed"
[ "$(id -u)" -eq 0 ] || skip "needs root for network namespaces"

tag="eccka$$"
nsa="${tag}a"
nsb="${tag}b"
dir=$(mktemp -d "/tmp/${tag}.XXXXXX")
vip=10.213.77.100
ipa=10.213.77.1
ipb=10.213.77.2

cleanup() {
  # Only processes inside our own namespaces, which this script started.
  for ns in "$nsa" "$nsb"; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do
      kill -9 "$pid" 2>/dev/null || true
    done
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$nsa" 2>/dev/null || skip "cannot create network namespaces here"
ip netns add "$nsb" || skip "cannot create network namespaces here"
ip link add "${tag}x" netns "$nsa" type veth peer name "${tag}y" netns "$nsb" ||
  skip "cannot create a veth pair"
ip -n "$nsa" link set lo up
ip -n "$nsb" link set lo up
ip -n "$nsa" addr add "$ipa/24" dev "${tag}x"
ip -n "$nsb" addr add "$ipb/24" dev "${tag}y"
ip -n "$nsa" link set "${tag}x" up
ip -n "$nsb" link set "${tag}y" up

config() { # name state priority interface self peer
  cat <<EOF
global_defs {
  router_id $1
}
vrrp_instance VI_1 {
  state $2
  interface $4
  virtual_router_id 51
  priority $3
  advert_int 1
  unicast_src_ip $5
  unicast_peer {
    $6
  }
  virtual_ipaddress {
    $vip/24 dev $4
  }
}
EOF
}
config ka-a MASTER 200 "${tag}x" "$ipa" "$ipb" >"$dir/a.conf"
config ka-b BACKUP 100 "${tag}y" "$ipb" "$ipa" >"$dir/b.conf"

# A crash: freeze every process of the namespace first, then SIGKILL them. A
# plain SIGKILL of keepalived's parent makes its VRRP child exit gracefully
# (parent-death signal) and send a priority-0 advert, a clean hand-over that
# the backup answers within the skew time instead of the master-down interval.
crash() { # ns
  local pids
  pids=$(ip netns pids "$1")
  [ -n "$pids" ] || return 0
  # shellcheck disable=SC2086
  kill -STOP $pids 2>/dev/null || true
  # shellcheck disable=SC2086
  kill -KILL $pids 2>/dev/null || true
  while [ -n "$(ip netns pids "$1")" ]; do sleep 0.01; done
}

start() { # ns name
  rm -f "$dir/$2.pid" "$dir/$2.vrrp.pid" "$dir/$2.check.pid"
  # -n: stay in the foreground, -P: VRRP only, -l: log to the console.
  # In a subshell, so that this shell does not report the killed job.
  (ip netns exec "$1" keepalived -n -P -l -D -f "$dir/$2.conf" \
    -p "$dir/$2.pid" -r "$dir/$2.vrrp.pid" -c "$dir/$2.check.pid" \
    >>"$dir/$2.log" 2>&1 &)
}

has_vip() { ip -n "$1" -4 addr show 2>/dev/null | grep -q " $vip/"; }

now_ns() { date +%s%N; }

wait_until() { # seconds command...
  local deadline=$(($(now_ns) + $1 * 1000000000))
  shift
  until "$@"; do
    if [ "$(now_ns)" -gt "$deadline" ]; then
      echo "keepalived_failover: timed out waiting for: $*" >&2
      tail -n 20 "$dir"/*.log >&2 || true
      exit 1
    fi
    sleep 0.05
  done
}

master_only() { has_vip "$nsa" && ! has_vip "$nsb"; }

start "$nsb" b
start "$nsa" a
wait_until 20 master_only
# Let the backup settle into BACKUP with the master's adverts flowing.
sleep 2

echo "keepalived $(keepalived --version 2>&1 | head -n 1 | awk '{print $2}'): VRRPv2, advert_int 1 s, backup priority 100 (master 200), unicast over a veth pair"
echo "expected: master-down interval 3 x 1 s + (256-100)/256 s = 3.609 s after the last advert, so (2609, 3609] ms after the kill"
samples=()
gaps=()
for t in $(seq 1 "$trials"); do
  # A random phase relative to the adverts.
  sleep "0.$((RANDOM % 1000))"
  killed=$(now_ns)
  crash "$nsa"
  last=$killed
  worst=0
  until has_vip "$nsb"; do
    sleep 0.005
    n=$(now_ns)
    [ $((n - last)) -gt "$worst" ] && worst=$((n - last))
    last=$n
    if [ $((n - killed)) -gt 20000000000 ]; then
      echo "keepalived_failover: the backup did not take the VIP within 20 s" >&2
      tail -n 20 "$dir"/*.log >&2 || true
      exit 1
    fi
  done
  took=$(($(now_ns) - killed))
  samples+=("$took")
  gaps+=("$worst")
  printf '  trial %2d: backup holds the VIP %7.1f ms after SIGKILL of the master (poll gap <= %.1f ms)\n' \
    "$t" "$(echo "$took / 1000000" | bc -l)" "$(echo "$worst / 1000000" | bc -l)"
  if [ "$t" -lt "$trials" ]; then
    # The killed master's VIP is still plumbed in its namespace; keepalived
    # removes stale VIPs at start. It preempts and takes the VIP back.
    start "$nsa" a
    wait_until 20 master_only
    sleep 2
  fi
done

printf '%s\n' "${samples[@]}" | sort -n | awk -v n="${#samples[@]}" '
  { v[NR] = $1 / 1e6 }
  END {
    p50 = v[int((n + 1) / 2)]
    r99 = int(0.99 * n); if (r99 < 0.99 * n) r99++
    printf "  keepalived failover (kill -> VIP on the backup): min %.1f  median %.1f  p99 %.1f  max %.1f  (ms, n=%d)\n", v[1], p50, v[r99], v[n], n
  }'
printf '%s\n' "${gaps[@]}" | sort -n | tail -n 1 | awk '{ printf "  polling resolution: `ip -n NS addr` every 5 ms plus one fork/exec, worst gap %.1f ms\n", $1 / 1e6 }'
