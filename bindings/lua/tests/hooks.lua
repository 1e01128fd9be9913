-- The module's hooks, console commands and set_binding, run by the real
-- interpreter:
--
--   LUA_CPATH='/path/to/?.so' lua5.4 tests/hooks.lua CONFIG READY
--
-- with eccluster.so built with `--features testing`. tests/lua.rs writes
-- CONFIG for this node, named "draft" there (a cluster_nodename hook names
-- it "lua1" as it starts), and starts a peer node ("peer1") once this
-- script has created the file READY, after making its event queue. Any
-- failed check raises, and the interpreter exits non-zero.

local config, ready = assert(arg[1]), assert(arg[2])
local ecc = require("eccluster")

local function fails(text, f, ...)
  local ok, err = pcall(f, ...)
  assert(not ok, "no error; expected one with: " .. text)
  assert(type(err) == "string", "the error is a " .. type(err) .. ", not a string: " .. tostring(err))
  assert(err:find(text, 1, true), string.format("error %q lacks %q", err, text))
  return err
end

-- Hooks: the embedded engine's names and errors.
assert(table.concat(ecc.HOOKS, ",") ==
  "cluster_nodename,cluster_subcluster,set_binding,membership_update,duravip_gained,duravip_lost")
fails("unknown hook 'set_bindings'; the hooks are cluster_nodename, cluster_subcluster, " ..
  "set_binding, membership_update, duravip_gained, duravip_lost", ecc.register_hook, "set_bindings", print)
fails('the order is "first" or "last", not "middle"', ecc.register_hook, "set_binding", print, "middle")
fails("no node: call eccluster.start(config) first", ecc.set_binding, ecc.message {})

-- Identity hooks run inside start, in order.
local asked = {}
ecc.register_hook("cluster_nodename", function(name) asked[#asked + 1] = name; return "lua1" end)
ecc.register_hook("cluster_nodename", function(name) asked[#asked + 1] = name end, "last")
ecc.register_hook("cluster_subcluster", function(sc) return sc .. "-east" end)
-- A command defined before start, queued for this loop once the node runs.
local greeted = 0
ecc.register_control("host greet", function(cc)
  greeted = greeted + 1
  print("hello", cc.argv[1])
  return "bye\n"
end, "<who>", "Greets.")

ecc.start(config)
assert(table.concat(asked, ",") == "draft,lua1", table.concat(asked, ","))
assert(ecc.nodename() == "lua1" and ecc.subcluster() == "default-east", ecc.subcluster())

-- Event hooks run from the loop: q:dispatch() without handlers.
local q = ecc.events()
local views = {}
ecc.register_hook("membership_update", function(change) views[#views + 1] = change end)
assert(io.open(ready, "w")):close() -- the peer starts now: q hears it join
local function loop_until(what, done)
  local deadline = os.time() + 15
  while not done() do
    assert(os.time() <= deadline, "timed out waiting until " .. what)
    if q:wait(0.5) then
      q:dispatch()
    end
  end
end
loop_until("a view of two", function()
  return #views > 0 and #views[#views].members == 2
end)
local view = views[#views]
assert(view.members[1] == "lua1" and view.members[2] == "peer1", table.concat(view.members, ","))
assert(math.type(view.number) == "integer" and view.id:match("^%x+$") and #view.id == 16, view.id)

-- Console commands: answered by this loop while another thread waits.
fails("'cluster info' is a built-in console command", ecc.register_control, "cluster info", print)
ecc.register_control("host views", function() return tostring(#views) end)
local answer = ecc._testing.console("host greet world")
loop_until("the console's command ran", function() return greeted == 1 end)
local text, err = answer()
assert(text == "hello\tworld\nbye\n", tostring(text) .. " / " .. tostring(err))
answer = ecc._testing.console("host views")
local n = #views
-- q:next() answers a command too, and shows it as a "console" event.
local deadline = os.time() + 15
while true do
  assert(os.time() <= deadline, "timed out waiting for the second command")
  local e = q:wait(0.5) and q:next()
  if e and e.kind == "console" then
    assert(e.words == "host views" and #e.args == 0, e.words)
    break
  end
end
assert(answer() == tostring(n))
-- Nobody else answers: a state without the command leaves it alone, so
-- a command nobody dispatches times out at the console (not waited for here).

-- set_binding: the node's hooks, then this state's.
local refused
ecc.register_hook("set_binding", function(msg)
  local group = msg:header("X-Group")[1]
  if group then
    local chosen, why = msg:binding_group(group)
    refused = why
  end
  return ecc.DONE
end)
ecc.register_hook("set_binding", function() error("never runs: the hook before said DONE") end)
local msg = ecc.message {
  sender = "a@example.com",
  recipient_domains = { "x.org", "y.org" },
  headers = { { "X-Group", "pool" }, { "Subject", "hi" } },
}
assert(msg:sender() == "a@example.com")
assert(table.concat(msg:recipient_domains(), ",") == "x.org,y.org")
assert(msg:header("x-group")[1] == "pool" and #msg:header("nothing") == 0)
local chosen, why = msg:binding("p1")
assert(chosen == nil and why == "a binding can be chosen only during set_binding", why)
local d = ecc.set_binding(msg)
assert(d.action == "send" and d.binding == "p1", d.action .. " " .. tostring(d.reason))
assert(msg:binding() == "p1" and msg:binding_group() == "pool")
d = ecc.set_binding(ecc.message { sender = "" })
assert(d.action == "unchanged" and d.reason == "no binding was chosen", d.reason)
d = ecc.set_binding(ecc.message { headers = { { "X-Group", "nope" } } })
assert(d.action == "unchanged" and refused == "unknown binding group 'nope'", tostring(refused))
fails("bad argument #1 to 'message' (headers: each is {name, value})", ecc.message, { headers = { "X-Group: pool" } })
fails("bad argument #1 to 'message' (sender: string expected, got number)", ecc.message, { sender = 1 })
fails("bad argument #1 to 'message' (table expected, got nil)", ecc.message)
fails("bad argument #1 to 'set_binding' (message expected, got string)", ecc.set_binding, "m")

ecc.stop()
io.stderr:write("hooks.lua: ok\n")
