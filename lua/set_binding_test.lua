-- Tests of set_binding.lua, run by tests/lua_scripts.rs (lua/README.md).

local t = eccluster.testing

-- Two groups: "pool" spread over the cluster, "example.com" for one sender
-- domain, and a binding of no group.
t.bindings {
  { name = "mine", group = "pool", state = "owned" },
  { name = "plain", group = "pool", state = "local" },
  { name = "theirs", group = "pool", state = "remote", owner = "mta2" },
  { name = "dead", group = "pool", state = "unowned" },
  { name = "ex1", group = "example.com", state = "remote", owner = "mta3" },
  { name = "lonely", state = "local" },
}

t.case("an X-Binding header names the binding, even another node's", function()
  local d = t.set_binding { sender = "a@b.org", headers = { { "X-Binding", "theirs" } } }
  t.eq(d.kind, "move")
  t.eq(d.binding, "theirs")
  t.eq(d.node, "mta2")
end)

t.case("an X-Binding header naming no binding is passed over", function()
  local d = t.set_binding {
    sender = "a@b.org",
    headers = { { "X-Binding", "nope" }, { "X-Binding-Group", "pool" } },
  }
  t.eq(d.kind, "send")
  t.eq(d.binding, "mine", "the owned DuraVIP comes first")
end)

t.case("the sender's domain picks its group", function()
  local d = t.set_binding { sender = "news@Example.COM" }
  t.eq(d.kind, "move")
  t.eq(d.binding, "ex1")
  t.eq(d.group, "example.com")
end)

t.case("otherwise the message's own group is chosen from again", function()
  local d = t.set_binding { sender = "a@b.org", binding = "theirs", group = "pool" }
  t.eq(d.kind, "send")
  t.eq(d.binding, "mine")
end)

t.case("without a group the host keeps its binding", function()
  local d = t.set_binding { sender = "", binding = "lonely" }
  t.eq(d.kind, "send")
  t.eq(d.binding, "lonely")
  d = t.set_binding { sender = "" }
  t.eq(d.kind, "unchanged")
end)

t.case("a group with nothing available says why", function()
  t.bindings {
    { name = "dead", group = "pool", state = "unowned" },
    { name = "broken", group = "pool", state = "unplumbed" },
  }
  local d = t.set_binding { sender = "a@b.org", group = "pool" }
  t.eq(d.kind, "unavailable")
  t.matches(d.reason, "no node holds its DuraVIP")
  t.matches(d.reason, "owned here but not plumbed")
end)
