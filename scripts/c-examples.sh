#!/usr/bin/env bash
# Builds and runs the C examples against the library, as a C host would:
#   1. examples/c/minimal.c against the shared library, output checked;
#   2. the same under AddressSanitizer + UBSan;
#   3. the same under valgrind (errors, definite and indirect leaks fail);
#   4. against libeccluster.a (no libeccluster.so at run time);
#   5. examples/c/membership.c (two nodes in one process, a membership hook
#      on the engine thread), plain and under ASan + UBSan, output checked;
#   6. examples/c/duravip.c (a DuraVIP registered at run time and handed
#      over between two nodes, seen through the gained/lost hooks), plain,
#      under ASan + UBSan, under valgrind and against libeccluster.a, output
#      checked;
#   7. examples/c/replication.c (two nodes counting connections through
#      cidr and gauge handles, their cluster-wide views adding up; a
#      cluster-wide throttle, a gauge cache, an audit series, the replicated
#      cache and an outbound connection limit; a stopped node's share
#      dropped), plain, under ASan + UBSan and valgrind, output checked;
#   8. examples/c/journal.c (a logger appending durably to a cluster://
#      journal, its positions and `cluster show logs`), plain, under ASan +
#      UBSan and valgrind, output checked;
#   9. examples/c/log_group.c (a paniclog line one node's logger appends,
#      broadcast on the log_group and heard by the other node's hook and
#      console), plain, under ASan + UBSan and valgrind, output checked;
#  10. examples/c/events.c (a host's event loop polling an event queue's
#      descriptor: a view, a DuraVIP gained and lost, a log group line, a
#      full queue's overflow), plain, under ASan + UBSan and valgrind,
#      output checked;
#  11. examples/c/moves.c (a message moved between two nodes through
#      ecc_node_move_message and seen by the receiver's move hook; a
#      duplicate, a generated id and every error), plain, under ASan +
#      UBSan and valgrind, output checked;
#  12. examples/c/set_binding.c (a C set_binding hook and a Lua policy
#      choosing bindings on one of two nodes whose DuraVIPs decide between
#      sending here and moving the message; the errors of a broken script
#      and of a choice outside a hook), plain, under ASan + UBSan and
#      valgrind, output checked;
#  13. examples/c/mta_sim.c (three simulated MTAs with spools: a Lua policy
#      on each chooses bindings, m1 sends or moves each injected message to
#      the owner of its binding's DuraVIP, the receivers rebind; a deferred
#      move retried until accepted, each message in exactly one spool),
#      plain, under ASan + UBSan and valgrind, output checked;
#  14. installed into a temporary prefix (scripts/install.sh), minimal.c and
#      duravip.c compiled with `pkg-config --cflags --libs eccluster`, to
#      prove the .pc file works.
# Steps 1-13 use the debug build (fast for CI); step 14 the release build that
# install.sh makes.
# Outputs go to target/c-examples/ (under CARGO_TARGET_DIR when set, where
# cargo puts the library too).
set -euo pipefail
cd "$(dirname "$0")/.."
target=$(realpath -m "${CARGO_TARGET_DIR:-target}")

step() { printf '\n== %s\n' "$*"; }
die() {
  echo "c-examples: FAILED: $*" >&2
  exit 1
}

CC=${CC:-gcc}
CFLAGS=(-std=c11 -Wall -Wextra -Werror -pedantic -g)
out=$target/c-examples
tmp=$(mktemp -d "${TMPDIR:-/tmp}/eccluster-c.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$out/lib"

step "build the library (debug)"
cargo build --lib --locked
# Binaries record the SONAME (libeccluster.so.0), which cargo does not
# create, so give the linker and the loader a directory that has it.
major=$(sed -n 's/^#define ECC_VERSION_MAJOR \([0-9]*\)$/\1/p' include/eccluster.h)
ln -sfn "$target/debug/libeccluster.so" "$out/lib/libeccluster.so"
ln -sfn "$target/debug/libeccluster.so" "$out/lib/libeccluster.so.$major"

# A unique console socket per run, so parallel runs and a leftover node
# cannot collide.
config=$tmp/minimal.toml
cat >"$config" <<CONF
[cluster]
nodename = "demo1"
nodeaddr = "127.0.0.1"
[msgc_server.peers]
demo1 = "127.0.0.1:14802"
[eccluster_listener.listen."127.0.0.1:14802"]
[control_listener.listen."$tmp/console.sock"]
CONF

version=$(sed -n 's/^version = "\([^"]*\)"$/\1/p' Cargo.toml | head -n1)
expected=(
  "library: $version (header $version)"
  "misspelled option: configuration error: <override cluster heartbeat_per_sec>:1:1: cluster.heartbeat_per_sec: unknown option in cluster (did you mean 'heartbeats_per_sec'?)"
  "hook calls: 1"
  "console: 4 bytes too small, retrying with 9"
  "nodename: demo1-c"
  "nodeaddr: 127.0.0.1:14802"
  "late hook: invalid state: identity hooks must be registered before the node starts"
  "unknown command: command failed: unknown command 'cluster frobnicate'; 'help' lists the commands"
  "stopped"
)

# run_checked NAME CMD...: runs CMD with the config, requires exit 0 and
# every expected line, exactly.
run_checked() {
  local name=$1
  shift
  local log=$out/$name.out
  if ! "$@" "$config" >"$log" 2>"$out/$name.err"; then
    cat "$log" "$out/$name.err" >&2
    die "$name exited non-zero (output above)"
  fi
  local line
  for line in "${expected[@]}"; do
    grep -qxF -- "$line" "$log" || {
      cat "$log" >&2
      die "$name: missing output line: $line"
    }
  done
  [ ! -e "$tmp/console.sock" ] || die "$name: console socket left behind after stop"
  echo "$name: ok (${#expected[@]} lines checked)"
}

step "minimal.c against the shared library"
"$CC" "${CFLAGS[@]}" -O2 -Iinclude examples/c/minimal.c \
  -L"$out/lib" -Wl,-rpath,"$out/lib" -leccluster -o "$out/minimal"
[[ $(ldd "$out/minimal") == *"libeccluster.so.$major => $out/lib/"* ]] ||
  die "minimal does not load libeccluster.so.$major from $out/lib"
run_checked minimal "$out/minimal"
sed 's/^/  /' "$out/minimal.out"

step "a configuration error exits non-zero with the library's message"
if "$out/minimal" "$tmp/missing.toml" >/dev/null 2>"$out/missing.err"; then
  die "minimal succeeded on a missing config file"
fi
grep -qxF "$tmp/missing.toml: cannot read: No such file or directory (os error 2)" "$out/missing.err" ||
  die "unexpected error for a missing config: $(cat "$out/missing.err")"
echo "missing config: ok ($(cat "$out/missing.err"))"

step "minimal.c under AddressSanitizer + UBSan"
asan=$("$CC" -print-file-name=libasan.so)
[ -e "$asan" ] || die "libasan is not installed for $CC (e.g. apt-get install libasan8)"
"$CC" "${CFLAGS[@]}" -O1 -fno-omit-frame-pointer -fsanitize=address,undefined \
  -fno-sanitize-recover=all -Iinclude examples/c/minimal.c \
  -L"$out/lib" -Wl,-rpath,"$out/lib" -leccluster -o "$out/minimal-asan"
[[ $(ldd "$out/minimal-asan") == *libasan.so* ]] || die "minimal-asan is not linked with ASan"
[[ $(nm -u "$out/minimal-asan") == *__asan_init* ]] || die "minimal-asan is not instrumented"
ASAN_OPTIONS=detect_leaks=1:halt_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  run_checked minimal-asan "$out/minimal-asan"

step "minimal.c under valgrind"
command -v valgrind >/dev/null || die "valgrind is not installed"
# Only errors and definite/indirect leaks fail: a Rust library may leave
# thread-local or once-initialised allocations "still reachable" at exit,
# which is not a leak. No suppressions are needed today.
run_checked minimal-valgrind valgrind -q --error-exitcode=1 --leak-check=full \
  --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect \
  "$out/minimal"

step "minimal.c against the static library"
"$CC" "${CFLAGS[@]}" -O2 -Iinclude examples/c/minimal.c \
  "$target/debug/libeccluster.a" -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc \
  -o "$out/minimal-static"
[[ $(ldd "$out/minimal-static") != *libeccluster* ]] || die "minimal-static needs libeccluster.so"
run_checked minimal-static "$out/minimal-static"

# build_example NAME: examples/c/NAME.c against the shared library, plain
# (-O2) as $out/NAME and with ASan+UBSan as $out/NAME-asan.
build_example() {
  local name=$1
  "$CC" "${CFLAGS[@]}" -O2 -Iinclude "examples/c/$name.c" \
    -L"$out/lib" -Wl,-rpath,"$out/lib" -leccluster -o "$out/$name"
  "$CC" "${CFLAGS[@]}" -O1 -fno-omit-frame-pointer -fsanitize=address,undefined \
    -fno-sanitize-recover=all -Iinclude "examples/c/$name.c" \
    -L"$out/lib" -Wl,-rpath,"$out/lib" -leccluster -o "$out/$name-asan"
  [[ $(nm -u "$out/$name-asan") == *__asan_init* ]] || die "$name-asan is not instrumented"
}

# run_three_ways NAME RUNNER: builds examples/c/NAME.c and runs it through
# RUNNER (a run_* function taking a label and a command) plain, with
# ASan+UBSan, and under valgrind, where errors and definite or indirect
# leaks fail, as for minimal.c.
run_three_ways() {
  local name=$1 runner=$2
  build_example "$name"
  "$runner" "$name" "$out/$name"
  sed 's/^/  /' "$out/$name.out"
  ASAN_OPTIONS=detect_leaks=1:halt_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$runner" "$name-asan" "$out/$name-asan"
  "$runner" "$name-valgrind" valgrind -q --error-exitcode=1 --leak-check=full \
    --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect \
    "$out/$name"
}

step "membership.c: two nodes in one process and a membership hook"
# Seventeen loopback ports not in use (two each for membership.c, duravip.c,
# replication.c, log_group.c, events.c, moves.c and set_binding.c, three for
# mta_sim.c), derived
# from our pid so parallel runs differ (a TCP connect that succeeds means the
# port is taken).
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
ports=()
p=$((20000 + ($$ % 5000) * 2))
while [ ${#ports[@]} -lt 17 ]; do
  p=$((p + 1))
  [ "$p" -lt 32000 ] || p=20000
  if port_free "$p"; then ports+=("$p"); fi
done
for i in 1 2; do
  cat >"$tmp/member$i.toml" <<CONF
[cluster]
nodename = "member$i"
nodeaddr = "127.0.0.1"
heartbeat_start_delay = 0
heartbeats_per_sec = 10
[msgc_server.peers]
member1 = "127.0.0.1:${ports[0]}"
member2 = "127.0.0.1:${ports[1]}"
[eccluster_listener.listen."127.0.0.1:${ports[$((i - 1))]}"]
[control_listener.listen."$tmp/member$i.sock"]
CONF
done

# run_membership NAME CMD...: runs CMD with both configs; requires exit 0, the
# hook's view of both nodes (a node's first view, itself alone, is not a
# change, so the hook does not see it), then the final lines.
run_membership() {
  local name=$1
  shift
  local log=$out/$name.out
  if ! "$@" "$tmp/member1.toml" "$tmp/member2.toml" >"$log" 2>"$out/$name.err"; then
    cat "$log" "$out/$name.err" >&2
    die "$name exited non-zero (output above)"
  fi
  local re
  for re in '^view [0-9]+: member1, member2$' '^joined: 2 members$' '^stopped$'; do
    grep -qE -- "$re" "$log" || {
      cat "$log" >&2
      die "$name: no output line matches $re"
    }
  done
  [ "$(tail -n 2 "$log" | head -n 1)" = "joined: 2 members" ] || {
    cat "$log" >&2
    die "$name: the hook printed after the nodes stopped"
  }
  if grep -vqE '^(view [0-9]+: member[12](, member2)?|joined: 2 members|stopped)$' "$log"; then
    cat "$log" >&2
    die "$name: unexpected output"
  fi
  for i in 1 2; do
    [ ! -e "$tmp/member$i.sock" ] || die "$name: console socket $i left behind after stop"
  done
  echo "$name: ok ($(grep -c '^view ' "$log") views)"
}

build_example membership
run_membership membership "$out/membership"
sed 's/^/  /' "$out/membership.out"
ASAN_OPTIONS=detect_leaks=1:halt_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  run_membership membership-asan "$out/membership-asan"

if "$out/membership" "$tmp/member1.toml" >/dev/null 2>"$out/membership-usage.err"; then
  die "membership succeeded with one config"
fi
grep -q '^usage: ' "$out/membership-usage.err" || die "membership: no usage message"

step "duravip.c: a DuraVIP registered at run time, handed over between two nodes"
# The whole output, in order: each event is caused by the one before it (c2
# gains the address only after c1 has released it and said so).
duravip_expected=$(
  cat <<'OUT'
joined: c1, c2
c1: gained 10.99.0.7 (c-bounce, c-out) ports (25)
c1: cluster duravip show: 10.99.0.7/c-bounce/c-out: (owned,safe) multivip,smtp
c1: lost 10.99.0.7 (c-bounce, c-out) ports (25)
c2: gained 10.99.0.7 (c-bounce, c-out) ports (25)
c2: cluster duravip show: 10.99.0.7/c-bounce/c-out: (owned,safe) multivip,smtp
c2: lost 10.99.0.7 (c-bounce, c-out) ports (25)
stopped
OUT
)

# run_exact NAME WANT CMD...: runs CMD; requires exit 0 and exactly WANT
# on its standard output.
run_exact() {
  local name=$1 want=$2
  shift 2
  local log=$out/$name.out
  if ! "$@" >"$log" 2>"$out/$name.err"; then
    cat "$log" "$out/$name.err" >&2
    die "$name exited non-zero (output above)"
  fi
  [ "$(cat "$log")" = "$want" ] || {
    diff <(echo "$want") "$log" >&2 || true
    die "$name: unexpected output (diff above: expected, got)"
  }
}

# run_duravip NAME CMD...: runs CMD with two free ports and the socket
# directory; requires exit 0, exactly the expected output, and no console
# socket left behind.
run_duravip() {
  local name=$1
  shift
  run_exact "$name" "$duravip_expected" "$@" "${ports[2]}" "${ports[3]}" "$tmp"
  for n in c1 c2; do
    [ ! -e "$tmp/$n.sock" ] || die "$name: console socket of $n left behind after stop"
  done
  echo "$name: ok"
}

run_three_ways duravip run_duravip

"$CC" "${CFLAGS[@]}" -O2 -Iinclude examples/c/duravip.c \
  "$target/debug/libeccluster.a" -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc \
  -o "$out/duravip-static"
[[ $(ldd "$out/duravip-static") != *libeccluster* ]] || die "duravip-static needs libeccluster.so"
run_duravip duravip-static "$out/duravip-static"

if "$out/duravip" "${ports[2]}" >/dev/null 2>"$out/duravip-usage.err"; then
  die "duravip succeeded with one argument"
fi
grep -q '^usage: ' "$out/duravip-usage.err" || die "duravip: no usage message"

step "replication.c: connection counts adding up across two nodes"
replication_expected=$(
  cat <<'OUT'
r1: 10.1.0.0/16 local 2 global 3; 10.1.2.0/24 global 2; 2001:db8::/32 global 1; aol.com local 1 global 3
r2: 10.1.0.0/16 local 1 global 3; 10.1.2.0/24 global 2; 2001:db8::/32 global 1; aol.com local 2 global 3
open inbound_cidr as a gauge: not found: the configuration replicates no gauge table named 'inbound_cidr'
3-byte address: invalid argument: addr_len is 3; an address is 4 bytes (IPv4) or 16 (IPv6)
scope 7: invalid argument: scope 7 is neither ECC_SCOPE_LOCAL (0) nor ECC_SCOPE_GLOBAL (1)
throttle 10/60: r1 admitted some: yes; r2 admitted some: yes; total at most 10 + 2 - 1: yes; r1's local usage matches: yes
throttle limit "ten": invalid argument: throttle 'c-bad': limit "ten" is not N or N/S
throttle epsilon 1.5: invalid argument: throttle 'c-bad': epsilon 1.5 is not strictly between 0 and 1
throttle object OBTM: not found: the configuration replicates no throttle object named 'OBTM'
gauge cache c-conns: mx.example.com: r1 inc -> 1; r1 local 1 global 2; r2 local 1 global 2
audit series c-rcpt: alice@example.com in windows 0-4: r1 local 3 global 7; r2 local 4 global 7
gauge cache c-nope: not found: no gauge cache named 'c-nope'
series type "strings": invalid argument: unknown series type 'strings' (cidr, cidr_ipv6 or string)
c-rcpt redefined: invalid argument: 'c-rcpt' is already defined with other parameters
cache c1 on r2 before: absent
cache c1 on r2 after r1 set it: greylist:192.0.2.7 = seen
cache get into 2 bytes: buffer too small (needs 4): the buffer holds 2 bytes; 4 are needed
cache TTL "5X": invalid argument: invalid TTL '5X': expected seconds, or a number followed by H or M
may_open example.net (cluster_max 3) with none open: yes
may_open example.net with 3 open in the cluster: no: cluster_max_outbound_connections: 3 open in the cluster, limit 3
may_open example.net after r2 closed one: yes
limit per host, no host: invalid argument: cluster_max_outbound_connections set for a host needs the attempt's MX host
limit per binding and domain: not found: cluster_max_outbound_connections needs Replicate "outbound_binding_domains" in the cluster configuration
server scope 9: invalid argument: limits->server_max_scope is 9; expected ECC_SERVER_SCOPE_GLOBAL (0) to ECC_SERVER_SCOPE_BINDING_GROUP (2)
r2 stopped
r1: 10.1.0.0/16 local 2 global 2; 10.1.2.0/24 global 2; 2001:db8::/32 global 0; aol.com local 1 global 1
stopped
OUT
)

# run_replication NAME CMD...: as run_duravip, with the last two ports.
run_replication() {
  local name=$1
  shift
  run_exact "$name" "$replication_expected" "$@" "${ports[4]}" "${ports[5]}" "$tmp"
  echo "$name: ok"
}

run_three_ways replication run_replication

step "journal.c: a logger appending to a cluster journal"
journal_expected=$(
  cat <<'OUT'
appended 00000000:00000001
appended 00000000:00000002
appended 00000000:00000003
mainlog listed
master at the start
bad destination: invalid argument: log destination 'ftp:///var/log/x': unknown scheme 'ftp' (expected 'cluster' or 'jlog')
NULL line: null argument: line is NULL but its length is 5
OUT
)

# run_journal NAME CMD...: runs CMD on a fresh directory; requires exit 0,
# exactly the expected output, and the journal's files where they belong.
run_journal() {
  local name=$1
  shift
  local dir=$tmp/journal-$name
  mkdir -p "$dir"
  run_exact "$name" "$journal_expected" "$@" "$dir"
  for f in metastore 00000000 cp.6d6173746572; do
    [ -f "$dir/mainlog.cluster/$f" ] || die "$name: the journal has no $f"
  done
  echo "$name: ok"
}

run_three_ways journal run_journal

step "log_group.c: a paniclog line broadcast on the log_group"
log_group_expected=$(
  cat <<'OUT'
linked: g1, g2
appended 00000000:00000001
g2 hook: from g1, log paniclog, 46 bytes: 1700000000@g1: assertion failed: queue != NULL
time: the sender's append time
g2 cluster show log_group: Logger Group: panics
g2 cluster show log_group: g1 paniclog: 1700000000@g1: assertion failed: queue != NULL
g1 cluster show log_group: Logger Group: panics
g1 heard 0 lines
NULL hook: null argument: hook is NULL
stopped
OUT
)

# run_log_group NAME CMD...: runs CMD with the last two ports and a fresh
# directory; requires exit 0, exactly the expected output, and the line in
# g1's journal.
run_log_group() {
  local name=$1
  shift
  local dir=$tmp/log-group-$name
  mkdir -p "$dir"
  run_exact "$name" "$log_group_expected" "$@" "${ports[6]}" "${ports[7]}" "$dir"
  grep -qF "1700000000@g1: assertion failed" "$dir/g1/paniclog.cluster/00000000" ||
    die "$name: the line is not in g1's paniclog journal"
  for n in g1 g2; do
    [ ! -e "$dir/$n.sock" ] || die "$name: console socket of $n left behind after stop"
  done
  echo "$name: ok"
}

run_three_ways log_group run_log_group

if "$out/log_group" "${ports[6]}" >/dev/null 2>"$out/log_group-usage.err"; then
  die "log_group succeeded with one argument"
fi
grep -q '^usage: ' "$out/log_group-usage.err" || die "log_group: no usage message"

step "events.c: a host's event loop polling the event queue's descriptor"
events_expected=$(
  cat <<'OUT'
capacity 2000000: invalid argument: an event queue holds at most 1048576 events, not 2000000
fd readable before any event: no
view: v1, v2
gained 10.99.1.7 (v-out) ports (25)
lost 10.99.1.7 (v-out) ports (25)
log line from v2 (paniclog), 22 bytes: 1700000000@v2: panic (then \0!)
time: microseconds since the epoch
line as a string: invalid argument: field 'line' is not text without NUL bytes: read it with ecc_event_bytes
field nope: not found: a log_line event has no field 'nope' (it has: sender, log, time_us, line)
sender as an integer: invalid argument: field 'sender' holds text: read it with ecc_event_string or ecc_event_bytes
sender item 1: invalid argument: field 'sender' holds one value: index 1 must be 0
sender into 2 bytes: buffer too small (needs 3)
view: v1
fd readable once drained: no
small queue: first a membership event
small queue: then an overflow: at least 4 dropped: yes; the total agrees: yes
stopped
OUT
)

# run_events NAME CMD...: runs CMD with ports 8 and 9 and a fresh
# directory; requires exit 0, exactly the expected output, and no console
# socket left behind.
run_events() {
  local name=$1
  shift
  local dir=$tmp/events-$name
  mkdir -p "$dir"
  run_exact "$name" "$events_expected" "$@" "${ports[8]}" "${ports[9]}" "$dir"
  for n in v1 v2; do
    [ ! -e "$dir/$n.sock" ] || die "$name: console socket of $n left behind after stop"
  done
  echo "$name: ok"
}

run_three_ways events run_events

if "$out/events" "${ports[8]}" >/dev/null 2>"$out/events-usage.err"; then
  die "events succeeded with one argument"
fi
grep -q '^usage: ' "$out/events-usage.err" || die "events: no usage message"

step "moves.c: a message moved between two nodes"
moves_expected=$(
  cat <<'OUT'
moved c-move-1 to m2: accepted
m2 hook: id c-move-1 from m1, mail from <sender@example.com>, 2 recipients: a@example.net, b@example.org
m2 hook: binding out1 in group default, 1 header: X-Spool-Id: 1F/00-4711
m2 hook: 34 bytes, as sent
m2 hook: redelivery no, rebind no
moved c-move-1 again: duplicate, the hook ran 1 time(s)
moved a message with a generated id of 32 hex digits
no recipients: move rejected: m2 rejected move c-move-2: 550 5.5.1 no recipients
unknown node: not found: cannot move to m9: no node of that name is configured (msgc_server peers)
bad id: invalid argument: request->id: a move id is made of A-Z a-z 0-9 . _ - : @ + =, found '/' in "a/b"
NULL request: null argument: request is NULL
NULL hook: null argument: hook is NULL
m2 cluster show mmove:
m1
	[out: sent 0, accepted 0, duplicates 0, rejected 0, deferred 0, retries 0, failed 0, in flight 0]
	[in: received 4, accepted 2, duplicates 1, rejected 1, deferred 0, in flight 0]
stopped
OUT
)

# run_moves NAME CMD...: runs CMD with ports 10 and 11 and a fresh
# directory; requires exit 0, exactly the expected output, and m2's id
# store holding the two accepted moves.
run_moves() {
  local name=$1
  shift
  local dir=$tmp/moves-$name
  mkdir -p "$dir"
  run_exact "$name" "$moves_expected" "$@" "${ports[10]}" "${ports[11]}" "$dir"
  [ "$(grep -c '^A m1 ' "$dir/m2-ids/mmove-ids")" = 2 ] ||
    die "$name: m2's id store does not hold the two accepted moves"
  for n in m1 m2; do
    [ ! -e "$dir/$n.sock" ] || die "$name: console socket of $n left behind after stop"
  done
  echo "$name: ok"
}

run_three_ways moves run_moves

if "$out/moves" "${ports[10]}" >/dev/null 2>"$out/moves-usage.err"; then
  die "moves succeeded with one argument"
fi
grep -q '^usage: ' "$out/moves-usage.err" || die "moves: no usage message"

step "set_binding.c: a C hook and a Lua policy choose bindings"
set_binding_expected=$(
  cat <<'OUT'
policy loaded: route
broken policy: configuration error: policy: broken.lua:2: 'end' expected (to close 'function' at line 1) near <eof>
settled: p1 on s1, p2 on s2
a@bulk.example: send from b1
X-Group pool: send from p1
on p2: move to s2 (p2)
X-Group nowhere: unchanged: no binding was chosen
choose outside a hook: invalid state: a binding can be chosen only during set_binding
stopped
OUT
)

# run_set_binding NAME CMD...: runs CMD with ports 12 and 13 and the
# socket directory; requires exit 0, exactly the expected output, and no
# console socket left behind.
run_set_binding() {
  local name=$1
  shift
  run_exact "$name" "$set_binding_expected" "$@" "${ports[12]}" "${ports[13]}" "$tmp"
  for n in s1 s2; do
    [ ! -e "$tmp/$n.sock" ] || die "$name: console socket of $n left behind after stop"
  done
  echo "$name: ok"
}

run_three_ways set_binding run_set_binding

if "$out/set_binding" "${ports[12]}" >/dev/null 2>"$out/set_binding-usage.err"; then
  die "set_binding succeeded with one argument"
fi
grep -q '^usage: ' "$out/set_binding-usage.err" || die "set_binding: no usage message"

step "mta_sim.c: three simulated MTAs sending and moving messages"
mta_sim_expected=$(
  cat <<'OUT'
policy pick loaded on m1, m2, m3
settled: out1 on m1, out2 on m2, out3 on m3
injected 6 messages into m1
msg-1, no X-Binding: send from out1 in pool on m1
msg-2, X-Binding out2: move to m2 (out2), accepted after 1 attempt, in m2's spool: yes
msg-3, X-Binding out3: move to m3 (out3), accepted after 2 attempts, in m3's spool: yes
msg-4, no X-Binding: send from out1 in pool on m1
msg-5, X-Binding out1: send from out1 in pool on m1
msg-6, X-Binding out3: move to m3 (out3), accepted after 1 attempt, in m3's spool: yes
m1 spool: 3 messages
  msg-1: injected here, sends from out1, bytes intact
  msg-4: injected here, sends from out1, bytes intact
  msg-5: injected here, sends from out1, bytes intact
m2 spool: 1 message
  msg-2: moved from m1, rebound to out2, bytes intact
m3 spool: 2 messages
  msg-3: moved from m1, rebound to out3, bytes intact
  msg-6: moved from m1, rebound to out3, bytes intact
in exactly one spool: 6 of 6 messages
m3 deferred 1 move(s)
m1 cluster show mmove:
m2
	[out: sent 1, accepted 1, duplicates 0, rejected 0, deferred 0, retries 0, failed 0, in flight 0]
	[in: received 0, accepted 0, duplicates 0, rejected 0, deferred 0, in flight 0]
m3
	[out: sent 2, accepted 2, duplicates 0, rejected 0, deferred 1, retries 1, failed 0, in flight 0]
	[in: received 0, accepted 0, duplicates 0, rejected 0, deferred 0, in flight 0]
stopped
OUT
)

# run_mta_sim NAME CMD...: runs CMD with ports 14 to 16 and a fresh
# directory; requires exit 0, exactly the expected output, and no console
# socket left behind.
run_mta_sim() {
  local name=$1
  shift
  local dir=$tmp/mta-sim-$name
  mkdir -p "$dir"
  run_exact "$name" "$mta_sim_expected" "$@" "${ports[14]}" "${ports[15]}" "${ports[16]}" "$dir"
  for n in m1 m2 m3; do
    [ ! -e "$dir/$n.sock" ] || die "$name: console socket of $n left behind after stop"
  done
  echo "$name: ok"
}

run_three_ways mta_sim run_mta_sim

if "$out/mta_sim" "${ports[14]}" "${ports[15]}" >/dev/null 2>"$out/mta_sim-usage.err"; then
  die "mta_sim succeeded with two arguments"
fi
grep -q '^usage: ' "$out/mta_sim-usage.err" || die "mta_sim: no usage message"

step "install into a temporary prefix and build with pkg-config"
prefix=$tmp/prefix
scripts/install.sh "$prefix"
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
pc_version=$(pkg-config --modversion eccluster)
[ "$pc_version" = "$version" ] || die "eccluster.pc says version $pc_version, Cargo.toml $version"
for f in "lib/libeccluster.so.$version" "lib/libeccluster.so.$major" lib/libeccluster.so \
  lib/libeccluster.a include/eccluster.h lib/pkgconfig/eccluster.pc; do
  [ -e "$prefix/$f" ] || die "install.sh did not install $f"
done
# pkg-config gives -L but no run path; a host installed into a system
# directory would not need one.
libdir=$(pkg-config --variable=libdir eccluster)
# shellcheck disable=SC2046 # pkg-config output is meant to be word-split
"$CC" "${CFLAGS[@]}" -O2 examples/c/minimal.c $(pkg-config --cflags --libs eccluster) \
  -Wl,-rpath,"$libdir" -o "$tmp/minimal-pc"
[[ $(ldd "$tmp/minimal-pc") == *"libeccluster.so.$major => $libdir/"* ]] ||
  die "minimal-pc does not load the installed library"
run_checked minimal-pkg-config "$tmp/minimal-pc"
# With both libraries installed, -l:libeccluster.a is how a host picks the
# archive; --static adds the Libs.private it needs.
static_libs=$(pkg-config --static --libs eccluster | sed 's/-leccluster\b/-l:libeccluster.a/')
# shellcheck disable=SC2046,SC2086
"$CC" "${CFLAGS[@]}" -O2 examples/c/minimal.c $(pkg-config --cflags eccluster) \
  $static_libs -o "$tmp/minimal-pc-static"
[[ $(ldd "$tmp/minimal-pc-static") != *libeccluster* ]] || die "minimal-pc-static needs libeccluster.so"
run_checked minimal-pkg-config-static "$tmp/minimal-pc-static"
# shellcheck disable=SC2046 # pkg-config output is meant to be word-split
"$CC" "${CFLAGS[@]}" -O2 examples/c/duravip.c $(pkg-config --cflags --libs eccluster) \
  -Wl,-rpath,"$libdir" -o "$tmp/duravip-pc"
[[ $(ldd "$tmp/duravip-pc") == *"libeccluster.so.$major => $libdir/"* ]] ||
  die "duravip-pc does not load the installed library"
run_duravip duravip-pkg-config "$tmp/duravip-pc"

printf '\nc-examples: all passed\n'
