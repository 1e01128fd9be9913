-- set_binding.lua: eccluster's default binding policy.
--
-- For each message the host hands to set_binding, in this order:
--   1. an X-Binding header (when the host passes one) names the binding;
--   2. an X-Binding-Group header names the group;
--   3. a binding group named after the sender's domain, if there is one
--      (Binding_Group "example.com" { ... } for mail from @example.com);
--   4. else the group the message has already: choosing again within it
--      follows the DuraVIPs as they move.
-- Within a group eccluster prefers a binding whose DuraVIP this node holds,
-- then this node's own bindings, then one another node holds (the message
-- then moves there), and never one nobody holds; randomly among equals.
-- A name that is not a binding or group is passed over, and with nothing
-- chosen the host keeps its own binding.

local ecc = require "eccluster"

local function sender_domain(msg)
  local domain = msg:sender():match("@([^@]+)$")
  return domain and domain:lower()
end

local function set_binding(msg)
  local binding = msg:header("X-Binding")[1]
  if binding and msg:binding(binding) then
    return ecc.DONE
  end
  local group = msg:header("X-Binding-Group")[1]
  if group and msg:binding_group(group) then
    return ecc.CONTINUE
  end
  group = sender_domain(msg)
  if group and msg:binding_group(group) then
    return ecc.CONTINUE
  end
  group = msg:binding_group()
  if group then
    msg:binding_group(group)
  end
  return ecc.CONTINUE
end

ecc.register_hook("set_binding", set_binding)
