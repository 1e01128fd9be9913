//! The API in a plain (unsandboxed) vendored Lua state, bound to a
//! started single node on loopback that replicates one object of every
//! kind; each test runs Lua that checks results and errors itself.

use std::path::PathBuf;
use std::sync::Arc;

use mlua::{Lua, Table};

use super::{NodeSlot, install};
use crate::config::{Format, LoadedConfig};
use crate::core::duravip::{Claim, Service};
use crate::node::Node;

/// Defines `fails(text, f, ...)`: `f(...)` must raise a string error
/// containing `text`; the error is returned.
const PRELUDE: &str = r#"
function fails(text, f, ...)
  local ok, err = pcall(f, ...)
  assert(not ok, "no error; expected one with: " .. text)
  assert(type(err) == "string", "the error is a " .. type(err) .. ": " .. tostring(err))
  assert(err:find(text, 1, true), string.format("error %q lacks %q", err, text))
  return err
end
"#;

/// A started node, a Lua state with the API as the global `ecc`, and a
/// directory for the node's files.
pub(crate) struct Fixture {
    pub node: Node,
    pub lua: Lua,
    dir: PathBuf,
}

impl Fixture {
    pub fn new(tag: &str) -> Fixture {
        let dir = std::env::temp_dir().join(format!("ecc-lua-api-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let text = format!(
            "[cluster]\nnodename = \"lua1\"\nnodeaddr = \"127.0.0.1\"\n\
             duravip_dry_run = true\nview_mature_time = 1\n\
             [cluster.topology.\"10.98.0.0/24\"]\ninterface = \"demo0\"\n\
             [cluster.replicate.inbound_cidr]\n\
             [cluster.replicate.outbound_domains]\n\
             [cluster.replicate.shared_named_throttles]\n\
             [cluster.replicate.metrics]\nparameters = \"connect;reception;rejection;audit_series;gauge_cache\"\n\
             [cluster.replicate.eccmgr_metrics]\nparameters = \"audit_series\"\n\
             [cluster.replicate.greylist]\ntype = \"cache\"\n\
             [eccluster_listener.listen.\"127.0.0.1:0\"]\n\
             [control_listener.listen.\"{}\"]\n",
            dir.join("console.sock").display()
        );
        let config = LoadedConfig::parse(&text, Format::Toml)
            .unwrap_or_else(|e| panic!("{e}"))
            .config;
        let node = Node::new(config);
        node.start().unwrap();
        let lua = Lua::new();
        let ecc = lua.create_table().unwrap();
        install(&lua, &ecc, &node).unwrap();
        lua.globals().set("ecc", ecc).unwrap();
        lua.load(PRELUDE).exec().unwrap();
        Fixture { node, lua, dir }
    }

    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Runs `chunk` as `test.lua`; a failed check fails the test with the
    /// Lua error.
    pub fn run(&self, chunk: &str) {
        if let Err(e) = self.lua.load(chunk).set_name("@test.lua").exec() {
            panic!("{e}");
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.node.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn identity_membership_and_leader() {
    let f = Fixture::new("identity");
    let port = f.node.identity().unwrap().cluster_port;
    f.lua.globals().set("port", port).unwrap();
    f.run(
        r#"
        assert(ecc.version:match("^%d+%.%d+%.%d+"), ecc.version)
        assert(ecc.nodename() == "lua1", ecc.nodename())
        assert(ecc.subcluster() == "default", ecc.subcluster())
        assert(ecc.nodeaddr() == "127.0.0.1:" .. port, ecc.nodeaddr())
        local members = ecc.members()
        assert(#members == 1, #members)
        local me = members[1]
        assert(me.name == "lua1" and me.subcluster == "default" and me.type == "Momentum"
          and me.state == "alive" and me.in_view == true)
        assert(ecc.leader() == "lua1")
        assert(ecc.is_leader() == true)
        "#,
    );
    f.node.stop();
    f.run(
        r#"
        fails("members: the node is not running", ecc.members)
        fails("leader: the node is not running", ecc.leader)
        fails("duravips: the node is not running", ecc.duravips)
        -- The identity is known before start and after stop.
        assert(ecc.nodename() == "lua1")
        "#,
    );
}

#[test]
fn duravips_and_their_events() {
    let f = Fixture::new("duravip");
    f.run(
        r#"
        q = ecc.events(8)
        assert(math.type(q:fd()) == "integer" and q:fd() >= 0)
        assert(q:next() == nil and q:wait(0) == false and q:dropped() == 0)
        assert(#ecc.duravips() == 0)
        assert(tostring(q):find("eccluster.events: fd ", 1, true), tostring(q))
        "#,
    );
    let claim = Claim {
        ip: "10.98.0.9".parse().unwrap(),
        names: vec!["lua-out".into(), "lua-bounce".into()],
        services: vec![Service::Binding, Service::Listener(25)],
        preference: None,
    };
    f.node.register_duravip(claim.clone()).unwrap();
    f.run(
        r#"
        assert(q:wait(10), "no event within 10 s")
        local e = q:next()
        assert(e.kind == "duravip_gained", e.kind)
        assert(e.address == "10.98.0.9", e.address)
        assert(table.concat(e.names, ",") == "lua-bounce,lua-out", table.concat(e.names, ","))
        assert(#e.listener_ports == 1 and e.listener_ports[1] == 25)
        local vips = ecc.duravips()
        assert(#vips == 1)
        local v = vips[1]
        assert(v.address == "10.98.0.9" and v.owner == "lua1" and v.owned and v.plumbed)
        assert(#v.names == 2)
        "#,
    );
    f.node.remove_duravip(claim.ip).unwrap();
    f.run(
        r#"
        local seen = {}
        assert(q:wait(10.5), "no event within 10 s")
        local taken = q:dispatch {
          duravip_lost = function(e) seen[#seen + 1] = e.address end,
        }
        assert(taken == 1 and seen[1] == "10.98.0.9", taken)
        assert(q:dispatch {} == 0)
        assert(q:wait(0.01) == false)
        -- Bad arguments; a handler's own error reaches the caller as it is.
        fails("bad argument #1 to 'dispatch' (table or nil expected, got number)", q.dispatch, q, 1)
        fails("handler for 'membership': function expected, got string", q.dispatch, q,
          { membership = "print" })
        fails("calling 'dispatch' on bad self (eccluster.events expected, got number)", q.dispatch, 1, {})
        fails("calling 'next' on bad self (eccluster.events expected, got nil)", q.next)
        fails("bad argument #1 to 'wait' (seconds must be 0 or more)", q.wait, q, -1)
        fails("bad argument #1 to 'wait' (number or nil expected, got string)", q.wait, q, "1")
        fails("bad argument #1 to 'events' (an event queue holds at most 1048576 events, not 2000000)",
          ecc.events, 2000000)
        "#,
    );
    // A handler that raises: the error is the handler's, with its position.
    f.node.register_duravip(claim).unwrap();
    f.run(
        r#"
        assert(q:wait(10))
        local ok, err = pcall(q.dispatch, q, { duravip_gained = function() error("host says no") end })
        assert(not ok and err:match("test%.lua:%d+: host says no"), err)
        "#,
    );
}

/// A host's loop: `q:dispatch()` without handlers calls the state's
/// hooks, and answers the console commands the node queued for it.
#[test]
fn dispatch_without_handlers_runs_hooks_and_answers_queued_commands() {
    let f = Fixture::new("hostloop");
    let ecc: Table = f.lua.globals().get("ecc").unwrap();
    crate::policy::hooks::install(&f.lua, &ecc).unwrap();
    f.run(
        r#"
        q = ecc.events()
        gained = {}
        ecc.register_hook("duravip_gained", function(vip) gained[#gained + 1] = vip.ip end)
        ecc.register_hook("duravip_gained", function(vip) gained[#gained + 1] = vip.ports[1] end)
        ecc.register_control("host hello", function(cc) print("hello", cc.argv[1]) end)
        "#,
    );
    let claim = Claim {
        ip: "10.98.0.9".parse().unwrap(),
        names: vec!["lua-out".into()],
        services: vec![Service::Listener(25)],
        preference: None,
    };
    f.node.register_duravip(claim).unwrap();
    f.run(
        r#"
        assert(q:wait(10), "no event within 10 s")
        assert(q:dispatch() == 1)
        assert(gained[1] == "10.98.0.9" and gained[2] == 25, tostring(gained[1]))
        "#,
    );
    let def = |words: &str| crate::policy::ControlDef {
        words: words.into(),
        usage: String::new(),
        help: "A test.".into(),
    };
    let timeout = std::time::Duration::from_secs(30);
    let e = f
        .node
        .register_queued_command(&def("cluster info"), timeout)
        .unwrap_err();
    assert!(e.contains("built-in"), "{e}");
    f.node
        .register_queued_command(&def("host hello"), timeout)
        .unwrap();
    let console = {
        let node = f.node.clone();
        std::thread::spawn(move || node.console_exec("host hello world"))
    };
    f.run(
        r#"
        assert(q:wait(10), "no console request within 10 s")
        local e
        while e == nil or e.kind ~= "console" do e = q:next() end
        assert(e.words == "host hello" and e.args[1] == "world", e.words)
        "#,
    );
    assert_eq!(console.join().unwrap().unwrap(), "hello\tworld\n");
    // Nobody dispatches: the console says so.
    let short = std::time::Duration::from_millis(50);
    f.node
        .register_queued_command(&def("host hello"), short)
        .unwrap();
    let e = f.node.console_exec("host hello").unwrap_err();
    assert!(
        e.contains("the host's event loop did not answer 'host hello'"),
        "{e}"
    );
    f.run("q = nil; collectgarbage()");
    let e = f.node.console_exec("host hello").unwrap_err();
    assert!(e.contains("no event queue listens"), "{e}");
}

#[test]
fn gauges_and_cidr_trees_count_here_and_cluster_wide() {
    let f = Fixture::new("counters");
    f.run(
        r#"
        local g = ecc.gauge("outbound_domains")
        assert(tostring(g) == "eccluster.gauge: outbound_domains", tostring(g))
        assert(g:inc("aol.com") == 1)
        assert(g:inc("aol.com", 4) == 5)
        assert(g:dec("aol.com") == 4)
        assert(g:count("aol.com") == 4 and g:count("aol.com", "local") == 4)
        assert(g:count("bytes\0key") == 0)
        fails("bad argument #2 to 'count' (scope 'global': expected 'cluster' or 'local')",
          g.count, g, "aol.com", "global")
        fails("bad argument #1 to 'inc' (string expected, got nil)", g.inc, g)
        fails("bad argument #2 to 'inc' (-1 is out of range 0..", g.inc, g, "k", -1)
        fails("bad argument #2 to 'inc' (number has no integer representation)", g.inc, g, "k", 1.5)
        fails("calling 'inc' on bad self (eccluster.gauge expected, got table)", g.inc, {}, "k")

        local c = ecc.cidr("inbound_cidr")
        c:inc("10.1.2.3"); c:inc("10.1.2.4"); c:inc("10.1.9.9"); c:dec("10.1.9.9")
        c:inc("2001:db8::1")
        assert(c:count("10.1.2.0/24") == 2)
        assert(c:count("10.1.0.0/16", "local") == 2)
        assert(c:count("10.1.2.3") == 1)
        assert(c:count("2001:db8::/32") == 1)
        fails("bad argument #1 to 'inc' ('10.1.2' is not an IP address)", c.inc, c, "10.1.2")
        fails("bad argument #1 to 'count' ('10.1.2.0/33' is not an address or a prefix",
          c.count, c, "10.1.2.0/33")

        -- Names: unknown ones list what is configured; another kind says which opener.
        local err = fails("bad argument #1 to 'gauge' (no replicated object 'outbound_domain'; configured: ",
          ecc.gauge, "outbound_domain")
        assert(err:find("inbound_cidr (cidrtree)", 1, true) and err:find("greylist (cache)", 1, true), err)
        fails("'inbound_cidr' is a cidrtree, not a gauge table: open it with eccluster.cidr",
          ecc.gauge, "inbound_cidr")
        fails("'outbound_domains' is a gauge table, not a cidrtree: open it with eccluster.gauge",
          ecc.cidr, "outbound_domains")
        fails("bad argument #1 to 'metrics' (string expected, got nil)", ecc.metrics)
        -- At the caller's position, as Lua's own errors.
        err = fails("bad argument", function() ecc.gauge(42) end)
        assert(err:match("^test%.lua:%d+: bad argument #1 to 'gauge' %(string expected, got number%)"), err)
        "#,
    );
}

#[test]
fn throttles_define_check_and_consume() {
    let f = Fixture::new("throttles");
    f.run(
        r#"
        local ts = ecc.throttles("shared_named_throttles")
        local t = ts:define("aol", "3/60")
        assert(tostring(t) == "eccluster.throttle: aol 3/60", tostring(t))
        assert(t:check() == true)
        assert(t:consume() and t:consume(2))
        assert(t:consume() == false and t:check() == false)
        assert(t:usage() == 3 and t:usage("local") == 3)
        assert(t:consume(0) == true, "nothing is always admitted")
        -- The same definition gives the same throttle; another is an error.
        assert(ts:define("aol", "3/60"):usage() == 3)
        assert(ts:get("aol"):usage() == 3 and ts:get("nope") == nil)
        fails("define: throttle 'aol': already defined as 3/60", ts.define, ts, "aol", "4/60")
        fails("define: throttle 'x': limit \"ten\" is not N or N/S", ts.define, ts, "x", "ten")
        fails("epsilon 1.5 is not strictly between 0 and 1", ts.define, ts, "y", "10", 1.5)
        fails("bad argument #3 to 'define' (number or nil expected, got string)", ts.define, ts, "y", "10", "0.5")
        fails("'metrics' is a metrics, not a throttle object", ecc.throttles, "metrics")
        "#,
    );
}

#[test]
fn audit_series_and_gauge_caches() {
    let f = Fixture::new("metrics");
    f.run(
        r#"
        local m = ecc.metrics("metrics")
        local rcpt = m:define_series("rcpt", "string", 60, 10)
        assert(tostring(rcpt) == "eccluster.series: rcpt")
        rcpt:add("alice@example.com")
        rcpt:add("alice@example.com", 2)
        -- Windows 0 and 1: an add just before a window rolls still counts.
        assert(rcpt:count("alice@example.com", 0, 1) == 3)
        assert(rcpt:count("alice@example.com", 0, 1, "local") == 3)
        assert(m:series("rcpt"):count("alice@example.com", 0, 1) == 3)
        rcpt:remove_item("alice@example.com")
        assert(rcpt:count("alice@example.com", 0, 1) == 0)
        local ips = m:define_series("ips", "cidr", 60, 2, "none")
        ips:add("10.1.2.3"); ips:add("10.1.2.4")
        assert(ips:count("10.1.2.0/24", 0, 1) == 2)
        fails("count: window range 3..1 is empty", ips.count, ips, "10.1.2.3", 3, 1)
        fails("add: '10.1.2' is not an IPv4 address or prefix", ips.add, ips, "10.1.2")
        fails("define_series: 'rcpt' is already defined with other parameters",
          m.define_series, m, "rcpt", "string", 30, 10)
        fails("bad argument #2 to 'define_series' (unknown series type 'strings'", m.define_series, m, "x", "strings", 60, 1)
        fails("bad argument #5 to 'define_series' ('metrics' replicates 'cluster', not 'manager'",
          m.define_series, m, "x", "string", 60, 1, "manager")
        fails("bad argument #3 to 'define_series' (-60 is negative)", m.define_series, m, "x", "string", -60, 1)
        fails("bad argument #1 to 'series' (no audit series named 'nope')", m.series, m, "nope")
        -- eccmgr_metrics takes manager series.
        ecc.metrics("eccmgr_metrics"):define_series("mgr", "string", 60, 1, "manager")

        local conns = m:define_gauge_cache("conns", 100, 300)
        assert(conns:inc("mx.example.com") == 1 and conns:inc("mx.example.com") == 2)
        assert(conns:dec("mx.example.com") == 1)
        assert(conns:get("mx.example.com") == 1 and conns:get("mx.example.com", "local") == 1)
        conns:remove_item("mx.example.com")
        assert(conns:get("mx.example.com") == 0)
        assert(m:gauge_cache("conns"):get("x") == 0)
        fails("bad argument #1 to 'gauge_cache' (no gauge cache named 'nope')", m.gauge_cache, m, "nope")
        fails("define_gauge_cache: a gauge cache needs room for at least one element",
          m.define_gauge_cache, m, "c0", 0, 1)
        fails("bad argument #4 to 'define_gauge_cache' (boolean or nil expected, got number)",
          m.define_gauge_cache, m, "c1", 1, 1, 1)
        "#,
    );
}

#[test]
fn caches_get_set_and_delete() {
    let f = Fixture::new("cache");
    f.run(
        r#"
        local c = ecc.cache("greylist")
        assert(c:get("192.0.2.7") == nil)
        c:set("192.0.2.7", "seen\0bytes", "5M")
        assert(c:get("192.0.2.7") == "seen\0bytes")
        c:set("k", "v")
        c:set("k2", "v", 30)
        assert(c:get("k") == "v" and c:get("k2") == "v")
        c:delete("192.0.2.7")
        assert(c:get("192.0.2.7") == nil)
        fails("bad argument #3 to 'set' (invalid TTL '5X': expected seconds, or a number followed by H or M)",
          c.set, c, "k", "v", "5X")
        fails("bad argument #3 to 'set' (-1 is out of range", c.set, c, "k", "v", -1)
        fails("bad argument #2 to 'set' (string expected, got nil)", c.set, c, "k")
        fails("set: cache key of 5000 bytes exceeds 4096", c.set, c, string.rep("k", 5000), "v")
        "#,
    );
}

#[test]
fn journals_open_through_the_node() {
    let f = Fixture::new("log");
    let dest = format!("cluster://{}/mainlog=>master", f.dir().display());
    f.lua.globals().set("dest", dest).unwrap();
    f.lua
        .globals()
        .set("dir", f.dir().display().to_string())
        .unwrap();
    f.run(
        r#"
        local log = ecc.log_open(dest, { group_commit_ms = 0 })
        assert(log:dir() == dir .. "/mainlog", log:dir())
        assert(tostring(log) == "eccluster.log: " .. dir .. "/mainlog", tostring(log))
        local s1, m1 = log:append("one")
        local s2, m2 = ecc.log_open(dest):append("two")
        assert(s1 == s2 and m2 == m1 + 1, "one writer per journal")
        fails("bad argument #1 to 'log_open' (", ecc.log_open, "ftp://x")
        fails("unknown option 'group_comit_ms'", ecc.log_open, dest, { group_comit_ms = 2 })
        "#,
    );
    // The node's own writer: the same one the Rust API gets.
    let writer = f
        .node
        .open_log(
            &format!("cluster://{}/mainlog=>master", f.dir().display()),
            crate::journal::Durability::EveryRecord,
        )
        .unwrap();
    assert_eq!(writer.append(b"three").unwrap().marker, 3);
}

#[test]
fn moves_check_their_message_and_name_the_failure() {
    // The successful move between nodes is tests/policy_moves.rs's; here
    // every refusal that happens before anything is sent.
    let f = Fixture::new("moves");
    f.run(
        r#"
        local ok = { recipients = { "a@example.net" }, body = "x" }
        fails("no node of that name is configured", ecc.move_message, "nowhere", ok)
        fails("lua1 is this node: a move goes to another node", ecc.move_message, "lua1", ok)
        fails("bad argument #2 to 'move_message' (table expected, got nil)", ecc.move_message, "n2")
        fails("field 'recipients': no recipients", ecc.move_message, "n2", { recipients = {}, body = "" })
        fails("field 'recipients': an array of addresses expected, got string",
              ecc.move_message, "n2", { recipients = "a@b", body = "" })
        fails("field 'body': string expected, got nil", ecc.move_message, "n2", { recipients = { "a@b" } })
        fails("field 'headers': each header must be a {name, value} pair",
              ecc.move_message, "n2", { recipients = { "a@b" }, body = "", headers = { "X-A: 1" } })
        fails("id: a move id is made of", ecc.move_message, "n2",
              { id = "a/b", recipients = { "a@b" }, body = "" })
        fails("bad argument #3 to 'move_message' (0 is out of range", ecc.move_message, "n2", ok, 0)
        "#,
    );
}

#[test]
fn without_a_node_functions_say_how_to_get_one() {
    let slot = Arc::new(NodeSlot::default());
    let lua = Lua::new();
    let ecc: Table = lua.create_table().unwrap();
    install(&lua, &ecc, Arc::clone(&slot)).unwrap();
    lua.globals().set("ecc", ecc).unwrap();
    lua.load(PRELUDE).exec().unwrap();
    let dir = std::env::temp_dir().join(format!("ecc-lua-api-nonode-{}", std::process::id()));
    lua.globals()
        .set("dest", format!("cluster://{}/x=>master", dir.display()))
        .unwrap();
    lua.load(
        r#"
        assert(type(ecc.version) == "string")
        for _, name in ipairs { "nodename", "members", "leader", "is_leader", "duravips",
                                "gauge", "cidr", "throttles", "metrics", "cache", "events" } do
          fails("no node: call eccluster.start(config) first", ecc[name], "x")
        end
        -- Journals work without a node.
        assert(ecc.log_open(dest):append("line") == 0)
        "#,
    )
    .set_name("@nonode.lua")
    .exec()
    .unwrap();
    let f = Fixture::new("slot");
    assert!(slot.fill(f.node.clone()).is_ok());
    assert!(slot.fill(f.node.clone()).is_err(), "one node at a time");
    lua.load(r#"assert(ecc.nodename() == "lua1")"#)
        .exec()
        .unwrap();
    slot.take();
    lua.load(r#"fails("no node", ecc.nodename)"#)
        .exec()
        .unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_panic_comes_back_as_an_error_and_the_state_lives_on() {
    let lua = Lua::new();
    let boom = super::errors::function(&lua, "boom", |_, _| -> Result<(), String> {
        panic!("kaboom")
    })
    .unwrap();
    lua.globals().set("boom", boom).unwrap();
    lua.load(PRELUDE).exec().unwrap();
    lua.load(r#"fails("eccluster: internal error in 'boom': kaboom", boom); assert(1 + 1 == 2)"#)
        .exec()
        .unwrap();
}
