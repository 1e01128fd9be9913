-- Tests of recipient_domain_groups.lua, run by tests/lua_scripts.rs.

local t = eccluster.testing

t.bindings {
  { name = "free1", group = "freemail", state = "owned" },
  { name = "free2", group = "freemail", state = "remote", owner = "mta2" },
  { name = "other", group = "default", state = "local" },
}

t.case("a listed recipient domain picks its group, and ends the chain", function()
  local d = t.set_binding { sender = "a@b.org", domains = { "example.net", "GMail.com" } }
  t.eq(d.kind, "send")
  t.eq(d.binding, "free1")
  t.eq(d.group, "freemail")
  t.eq(d.flow, "done")
end)

t.case("other domains are left to the next policy", function()
  local d = t.set_binding { sender = "a@b.org", domains = { "example.net" }, binding = "other" }
  t.eq(d.kind, "send")
  t.eq(d.binding, "other")
  t.eq(d.flow, "continue")
end)

t.case("the console command lists the routes", function()
  t.eq(t.control("binding routes"), "gmail.com\tfreemail\nhotmail.com\tfreemail\nyahoo.com\tfreemail\n")
end)
