#!/usr/bin/env bash
# eccluster's hot path side by side with Redis in the same run: Redis on
# loopback (Debian's redis-server) doing what an MTA would otherwise use it
# for, INCR for a counter and a GCRA Lua script for a throttle, against
# eccluster's in-process increment and throttle check, as a ratio
# (benches/redis_compare.rs prints the table).
#
#   benches/redis_compare.sh        # ~20 s once built
#
# Installs redis-server with apt-get when it is missing, then starts a
# private one on a free loopback port with no persistence, stopped on exit
# whatever happens; a Redis already running on the machine is left alone.
# Not part of scripts/test.sh: CI smoke-runs the bench without Redis.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
  echo "redis_compare: installing redis-server (apt-get)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq redis-server >/dev/null
fi

# Built before Redis starts, so that a first build's minutes are not spent
# with a server up, and a build failure stops here.
cargo bench --quiet --bench redis_compare --no-run

dir=$(mktemp -d "/tmp/ecc-redis.XXXXXX")
redis_pid=
cleanup() {
  if [ -n "$redis_pid" ]; then
    kill "$redis_pid" 2>/dev/null || true
    wait "$redis_pid" 2>/dev/null || true
  fi
  rm -rf "$dir"
}
trap cleanup EXIT
# So that Ctrl-C and kill also go through the EXIT trap.
trap 'exit 130' INT
trap 'exit 143' TERM

# Something listening (another Redis, say) would answer our PINGs and be
# measured in our place, so a port must refuse connections before we use it.
port_taken() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

port=
for _ in $(seq 1 20); do
  candidate=$((20000 + RANDOM % 30000))
  port_taken "$candidate" && continue
  redis-server --bind 127.0.0.1 --port "$candidate" --save '' --appendonly no \
    --daemonize no --dir "$dir" --logfile "$dir/redis.log" &
  redis_pid=$!
  for _ in $(seq 1 50); do
    # Lost a race for the port: the server exits on the failed bind.
    kill -0 "$redis_pid" 2>/dev/null || break
    if [ "$(redis-cli -h 127.0.0.1 -p "$candidate" ping 2>/dev/null)" = PONG ]; then
      port=$candidate
      break
    fi
    sleep 0.1
  done
  [ -n "$port" ] && break
  kill "$redis_pid" 2>/dev/null || true
  wait "$redis_pid" 2>/dev/null || true
  redis_pid=
done
if [ -z "$port" ]; then
  echo "redis_compare: could not start redis-server on a loopback port" >&2
  [ -f "$dir/redis.log" ] && tail -n 20 "$dir/redis.log" >&2
  exit 1
fi

REDIS_PORT=$port cargo bench --quiet --bench redis_compare
