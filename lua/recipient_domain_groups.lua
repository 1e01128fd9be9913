-- recipient_domain_groups.lua: an example in the reference's (Momentum's)
-- style: a module table registered with msys.registerModule, whose
-- validate_set_binding method is the set_binding hook, and a console
-- command added with msys.registerControl.
--
-- Mail to the domains below leaves from their binding group; other mail is
-- left to the policies after this one.

require("msys.core")

local routes = {
  ["gmail.com"] = "freemail",
  ["hotmail.com"] = "freemail",
  ["yahoo.com"] = "freemail",
}

local mod = {}

function mod:init()
  return true
end

function mod:validate_set_binding(msg)
  for _, domain in ipairs(msg:recipient_domains()) do
    local group = routes[domain:lower()]
    if group and msg:binding_group(group) then
      return msys.core.VALIDATE_DONE
    end
  end
  return msys.core.VALIDATE_CONT
end

msys.registerModule("recipient_domain_groups", mod)

-- `binding routes` at the console: one line per domain, then its group.
msys.registerControl("binding routes", function(cc)
  local domains = {}
  for domain in pairs(routes) do
    domains[#domains + 1] = domain
  end
  table.sort(domains)
  for _, domain in ipairs(domains) do
    print(domain, routes[domain])
  end
end)
