-- The journal append API from Lua, run by the real interpreter:
--
--   LUA_CPATH='/path/to/?.so' lua5.4 tests/log.lua DIR
--
-- with eccluster.so built with `--features testing`. It appends to
-- DIR/mainlog and writes one line per record it was told is durable to
-- DIR/appended.txt, "%08x:%08x <hex of the line>", for tests/lua.rs to
-- find in the journal exactly. Any failed check raises, and the
-- interpreter exits non-zero.

local dir = assert(arg[1], "usage: lua5.4 log.lua DIR")
local ecc = require("eccluster")

assert(ecc._testing, "eccluster.so was built without --features testing: the panic checks cannot run")
assert(type(ecc.version) == "string" and ecc.version:match("^%d+%.%d+%.%d+"), "ecc.version")

local function hex(s)
  return (s:gsub(".", function(c)
    return string.format("%02x", c:byte())
  end))
end

-- `f(...)` raises a string error containing `text`; the error is returned.
local function fails(text, f, ...)
  local ok, err = pcall(f, ...)
  assert(not ok, "no error; expected one with: " .. text)
  assert(type(err) == "string", "the error is a " .. type(err) .. ", not a string: " .. tostring(err))
  assert(err:find(text, 1, true), string.format("error %q lacks %q", err, text))
  return err
end

local dest = "cluster://" .. dir .. "/mainlog=>master"

-- Opening: the destination, the options.
fails("bad argument #1 to 'log_open' (string expected, got nil)", ecc.log_open)
fails("bad argument #1 to 'log_open' (string expected, got number)", ecc.log_open, 42)
fails("bad argument #1 to 'log_open' (", ecc.log_open, "ftp://" .. dir .. "/x")
fails("bad argument #2 to 'log_open' (table or nil expected, got number)", ecc.log_open, dest, 2)
fails("group_commit_ms: a whole number of milliseconds from 0 to 4294967295 expected, got -1",
  ecc.log_open, dest, { group_commit_ms = -1 })
fails("expected, got 1.5", ecc.log_open, dest, { group_commit_ms = 1.5 })
fails("expected, got 4294967296", ecc.log_open, dest, { group_commit_ms = 1 << 32 })
fails("group_commit_ms: number expected, got string", ecc.log_open, dest, { group_commit_ms = "2" })
fails("unknown option 'group_comit_ms'", ecc.log_open, dest, { group_comit_ms = 2 })
fails("option names are strings, got number", ecc.log_open, dest, { 2 })
-- A journal that cannot be created fails the open, not the arguments.
local err = fails("log_open: ", ecc.log_open, "cluster:///proc/eccluster-nowhere/mainlog=>master")
assert(not err:find("bad argument", 1, true), err)

-- Errors carry the caller's position, as Lua's own do.
err = fails("bad argument", function()
  ecc.log_open(nil)
end)
assert(err:match("log%.lua:%d+: bad argument #1 to 'log_open'"), "no position in: " .. err)

-- Appending: ids increase, NUL bytes and empty lines are records too.
local log = ecc.log_open(dest, { group_commit_ms = 0 })
assert(log:dir() == dir .. "/mainlog", log:dir())
assert(tostring(log):find("eccluster.log: " .. dir, 1, true), tostring(log))

local appended_txt = assert(io.open(dir .. "/appended.txt", "w"))
local last_segment, last_marker = -1, -1
local appended = 0
local function append(l, line)
  local segment, marker = l:append(line)
  assert(math.type(segment) == "integer" and math.type(marker) == "integer", "ids are integers")
  assert(segment > last_segment or (segment == last_segment and marker > last_marker),
    string.format("%08x:%08x does not follow %08x:%08x", segment, marker, last_segment, last_marker))
  last_segment, last_marker = segment, marker
  appended = appended + 1
  -- Flushed per record: what was acknowledged is said even if a later
  -- check fails.
  appended_txt:write(string.format("%08x:%08x %s\n", segment, marker, hex(line)))
  appended_txt:flush()
end

append(log, "1700000000@mta1: first")
append(log, "with\0a NUL\0")
append(log, "")
append(log, string.rep("x", 100000))

-- Bad arguments to the methods, with Lua's numbering (self is not #1).
fails("bad argument #1 to 'append' (string expected, got nil)", log.append, log)
fails("bad argument #1 to 'append' (string expected, got number)", log.append, log, 42)
fails("bad argument #1 to 'append' (string expected, got table)", log.append, log, {})
fails("calling 'append' on bad self (eccluster.log expected, got nil)", log.append, nil, "x")
fails("calling 'append' on bad self (eccluster.log expected, got string)", log.append, "x", "y")
fails("calling 'dir' on bad self (eccluster.log expected, got number)", log.dir, 42)
err = fails("bad argument", function()
  log:append(nil)
end)
assert(err:match("log%.lua:%d+: bad argument #1 to 'append'"), "no position in: " .. err)

-- A second open of the journal shares the writer: ids go on, with the
-- default options.
local again = ecc.log_open(dest)
append(again, "from the second handle")

-- Nor does the first handle's collection stop the second.
log = nil
collectgarbage()
append(again, "after a collection")

-- A panic comes back as an error, and the process lives on.
fails("eccluster: internal error in 'panic': boom", ecc._testing.panic, "boom")
-- mlua's own boundary, without ours: an error too (a userdata, which says
-- what it is through tostring).
local ok, e = pcall(ecc._testing.panic_unguarded, "unguarded boom")
assert(not ok, "the unguarded panic did not fail")
assert(tostring(e):find("unguarded boom", 1, true), tostring(e))
append(again, "after the panics")

appended_txt:close()
io.stderr:write(string.format("log.lua: ok, %d records\n", appended))
