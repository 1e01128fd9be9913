-- The eccluster Lua API from the module, run by the real interpreter:
--
--   LUA_CPATH='/path/to/?.so' lua5.4 tests/api.lua DIR CONFIG PORT
--
-- with eccluster.so built with `--features testing`. tests/lua.rs runs a
-- peer node ("peer1") in its own process, writes CONFIG for this one
-- ("lua1", cluster port PORT, files under DIR) and, while this script
-- runs, answers it: once peer1 sees lua1's count of "from-lua" it sets
-- the cache key "ack" and appends a paniclog line. Any failed check
-- raises, and the interpreter exits non-zero.

local dir, config, port = assert(arg[1]), assert(arg[2]), assert(tonumber(arg[3]))
local ecc = require("eccluster")

-- `f(...)` raises a string error containing `text`; the error is returned.
local function fails(text, f, ...)
  local ok, err = pcall(f, ...)
  assert(not ok, "no error; expected one with: " .. text)
  assert(type(err) == "string", "the error is a " .. type(err) .. ", not a string: " .. tostring(err))
  assert(err:find(text, 1, true), string.format("error %q lacks %q", err, text))
  return err
end

-- Before start: what needs a node says how to get one.
fails("no node: call eccluster.start(config) first", ecc.nodename)
fails("no node: call eccluster.start(config) first", ecc.gauge, "outbound_domains")
fails("no node: call eccluster.start(config) first", ecc.events)
require("msys.audit_series")
fails("no node: call eccluster.start(config) first", msys.audit_series.count, "x", "k")
ecc.stop() -- nothing to stop: fine
fails("bad argument #1 to 'start' (string expected, got nil)", ecc.start)
fails("start: " .. dir .. "/missing.toml: cannot read", ecc.start, dir .. "/missing.toml")
fails("start: <string>:2:", ecc.start, "[cluster]\nnodname = \"x\"\n")

ecc.start(config)
fails("start: a node already runs in this process; call eccluster.stop() first", ecc.start, config)

local q = ecc.events()
-- Now tests/lua.rs starts the peer: q hears the view its joining makes.
assert(io.open(dir .. "/queue-ready", "w")):close()
local nap = ecc.events(1)
-- A pause: waiting on a queue nobody cares about.
local function sleep(seconds)
  while nap:next() do end
  nap:wait(seconds)
end
-- Calls `check` until it returns true, for at most 10 s.
local function eventually(what, check)
  local deadline = os.time() + 10
  while not check() do
    assert(os.time() <= deadline, "timed out waiting until " .. what)
    sleep(0.02)
  end
end
-- Takes events from `q` through its descriptor until `want(event)`.
local seen = {}
local function event_until(what, want)
  local deadline = os.time() + 10
  while true do
    assert(os.time() <= deadline, "timed out waiting for " .. what)
    if q:wait(1) then
      local e = q:next()
      seen[#seen + 1] = e.kind
      if want(e) then
        return e
      end
    end
  end
end

-- Membership: the peer joins.
local view = event_until("a view of two", function(e)
  return e.kind == "membership" and #e.members == 2
end)
assert(view.members[1] == "lua1" and view.members[2] == "peer1", table.concat(view.members, ","))
assert(math.type(view.view_number) == "integer" and math.type(view.view_id) == "integer")

assert(ecc.nodename() == "lua1" and ecc.subcluster() == "default")
assert(ecc.nodeaddr() == "127.0.0.1:" .. port, ecc.nodeaddr())
eventually("both members alive", function()
  local m = ecc.members()
  return #m == 2 and m[1].state == "alive" and m[2].state == "alive"
end)
local members = ecc.members()
assert(members[1].name == "lua1" and members[2].name == "peer1" and members[2].type == "Momentum")
assert(members[2].in_view and members[2].subcluster == "default")
local leader = ecc.leader()
assert(leader == "lua1" or leader == "peer1", leader)
assert(ecc.is_leader() == (leader == "lua1"))

-- DuraVIP: lua1 alone claims its binding's address and gains it.
local gained = event_until("lua-out gained", function(e)
  return e.kind == "duravip_gained"
end)
assert(gained.address == "10.98.1.7" and gained.names[1] == "lua-out", gained.address)
local vips = ecc.duravips()
assert(#vips == 1 and vips[1].address == "10.98.1.7" and vips[1].owner == "lua1"
  and vips[1].owned and vips[1].plumbed)

-- Counts both ways: peer1 counted aol.com twice before we started.
local domains = ecc.gauge("outbound_domains")
assert(domains:inc("aol.com") == 1)
eventually("peer1's aol.com counts here", function()
  return domains:count("aol.com") == 3
end)
assert(domains:count("aol.com", "local") == 1)
local inbound = ecc.cidr("inbound_cidr")
inbound:inc("10.1.2.3")
eventually("peer1's 10.1.0.0/16 counts here", function()
  return inbound:count("10.1.0.0/16") == 2
end)
assert(inbound:count("10.1.2.3", "local") == 1)
-- The other way, and the peer's answer through the replicated cache.
domains:inc("from-lua")
local greylist = ecc.cache("greylist")
eventually("peer1 acknowledges from-lua", function()
  return greylist:get("ack") == "seen"
end)
greylist:set("from-lua", "v", "5M")
assert(greylist:get("from-lua") == "v")
greylist:delete("from-lua")
assert(greylist:get("from-lua") == nil)

-- ...and the paniclog line peer1 appended then, on our event queue.
local line = event_until("peer1's paniclog line", function(e)
  return e.kind == "log_line"
end)
assert(line.sender == "peer1" and line.log == "paniclog" and line.line == "hello from peer1\0!",
  line.line)
assert(math.type(line.time_us) == "integer" and line.time_us > 0)

-- Throttles.
local throttles = ecc.throttles("shared_named_throttles")
local t = throttles:define("lua-t", "2/60")
-- At most N + members - 1 across the cluster per window: 3 here.
local admitted = 0
while t:consume() do
  admitted = admitted + 1
  assert(admitted <= 3, "the throttle admits too many")
end
assert(admitted >= 1 and not t:check(), admitted)
assert(t:usage("local") == admitted)
fails("define: throttle 'lua-t': already defined as 2/60", throttles.define, throttles, "lua-t", "3/60")

-- Audit series and gauge caches, natively...
local m = ecc.metrics("metrics")
local rcpt = m:define_series("lua-rcpt", "string", 60, 10)
rcpt:add("alice@example.com", 3)
assert(rcpt:count("alice@example.com", 0, 1) == 3)
local gc = m:define_gauge_cache("lua-conns", 100, 300)
assert(gc:inc("mx") == 1 and gc:get("mx") == 1)

-- ...and through the msys shim, as a Momentum script writes them.
msys.audit_series.define("momentum", "string", 60, 10, { replicate = "cluster" })
msys.audit_series.add("momentum", { key = "bob@example.com", count = 2 })
assert(msys.audit_series.count("momentum", { key = "bob@example.com", endv = 1 }) == 2)
require("msys.gauge_cache")
msys.gauge_cache.define("momentum", 10, 60, true)
msys.gauge_cache.inc("momentum", "k")
assert(msys.gauge_cache.get("momentum", "k") == 1)
require("msys.audit")
m:series("connections"):add("10.1.2.3", 4)
assert(msys.audit.connections("300,6", { cidr = "10.1.2.0/24", cluster = true, endv = 1 }) == 4)
fails("monitor '60,1' is not configured", msys.audit.connections, "60,1", "10.1.2.3")
eventually("inbound sessions cluster-wide", function()
  return msys.audit.inbound_session_count("10.1.0.0/16", "inbound_cidr") == 2
end)

-- Journals go through the node: our paniclog line goes out on the
-- log_group too (tests/lua.rs checks peer1 heard it).
local paniclog = ecc.log_open("cluster://" .. dir .. "/lua1/paniclog.cluster=>master")
local segment, marker = paniclog:append("hello from lua1")
assert(segment == 0 and marker == 1, string.format("%d:%d", segment, marker))

-- Errors: names, kinds, arguments, positions.
fails("no replicated object 'outbound_domain'; configured: ", ecc.gauge, "outbound_domain")
fails("'inbound_cidr' is a cidrtree, not a gauge table: open it with eccluster.cidr", ecc.gauge, "inbound_cidr")
fails("bad argument #2 to 'count' (scope 'global': expected 'cluster' or 'local')", domains.count, domains, "k", "global")
fails("calling 'inc' on bad self (eccluster.gauge expected, got nil)", domains.inc)
fails("bad argument #1 to 'dispatch' (table or nil expected, got number)", q.dispatch, q, 1)
local err = fails("bad argument", function()
  inbound:inc("not an address")
end)
assert(err:match("api%.lua:%d+: bad argument #1 to 'inc' %('not an address' is not an IP address%)"), err)

-- Stop: the node is gone, the objects still count.
ecc.stop()
fails("no node: call eccluster.start(config) first", ecc.members)
assert(domains:count("aol.com", "local") == 1)
-- And it starts again.
ecc.start(config)
assert(ecc.nodename() == "lua1")
ecc.stop()

-- A panic comes back as an error, and the process lives on.
fails("eccluster: internal error in 'panic': boom", ecc._testing.panic, "boom")

io.stderr:write(string.format("api.lua: ok (events: %s)\n", table.concat(seen, ",")))
