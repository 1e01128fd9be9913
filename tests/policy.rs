//! Policy scripts in a node: loaded from the configuration, reloaded,
//! reached from the console, and set_binding across two nodes whose
//! DuraVIPs (dry-run plumbing) decide between sending here and moving the
//! message.

mod common;

use std::path::Path;

use common::{TempDir, free_port, wait_until};
use eccluster::config::{Format, LoadedConfig};
use eccluster::node::{HookOrder, Node, NodeError};
use eccluster::policy::{BindingState, Decision, Flow, Message};

/// A stopped node of one member, from TOML `scopes` (and `extra` options
/// in `[cluster]`).
fn node(dir: &TempDir, name: &str, ports: &[(&str, u16)], extra: &str, scopes: &str) -> Node {
    let port = ports.iter().find(|(n, _)| *n == name).unwrap().1;
    let peers: String = ports
        .iter()
        .map(|(n, p)| format!("{n} = \"127.0.0.1:{p}\"\n"))
        .collect();
    let text = format!(
        "[cluster]\nnodename = \"{name}\"\nheartbeats_per_sec = 10\nheartbeat_start_delay = 0\n{extra}\
         {scopes}\
         [msgc_server.peers]\n{peers}\
         [eccluster_listener.listen.\"127.0.0.1:{port}\"]\n\
         [control_listener.listen.\"{socket}\"]\n",
        socket = dir.0.join(format!("{name}.sock")).display(),
    );
    let config = LoadedConfig::parse(&text, Format::Toml)
        .unwrap_or_else(|e| panic!("{e}\n{text}"))
        .config;
    Node::new(config)
}

fn alone(dir: &TempDir, scopes: &str) -> Node {
    node(dir, "p1", &[("p1", free_port())], "", scopes)
}

fn policy_scope(scripts: &[&Path]) -> String {
    let list: Vec<String> = scripts
        .iter()
        .map(|p| format!("\"{}\"", p.display()))
        .collect();
    format!("[policy]\nscripts = [{}]\n", list.join(", "))
}

fn shipped(script: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("lua")
        .join(script)
}

const GROUPS: &str = "[binding_group.pool.binding.b1]\nbind_address = \"10.1.0.1\"\n\
                      [binding_group.pool.binding.b2]\nbind_address = \"10.1.0.2\"\n\
                      [binding_group.\"example.com\".binding.ex]\nbind_address = \"10.1.0.3\"\n";

#[test]
fn the_shipped_policy_from_the_configuration_chooses_bindings() {
    let dir = TempDir::new("policy-config");
    let n = alone(
        &dir,
        &(policy_scope(&[&shipped("set_binding.lua")]) + GROUPS),
    );
    let mut msg = Message::new("news@example.com");
    assert_eq!(
        n.set_binding(&mut msg),
        Decision::Send {
            binding: "ex".into()
        }
    );
    let mut msg = Message::new("a@b.org");
    msg.binding_group = Some("pool".into());
    assert!(
        matches!(n.set_binding(&mut msg), Decision::Send { binding } if binding == "b1" || binding == "b2")
    );
    let show = n.console_exec("policy show").unwrap();
    assert!(
        show.starts_with("Policy scripts: 1 (epoch 1)\n  set_binding (")
            && show.contains("Lua states: 1\n")
            && show.contains("Calls: 2, errors: 0\n"),
        "{show}"
    );
}

#[test]
fn c_and_rust_hooks_run_before_the_scripts_and_may_end_the_chain() {
    let dir = TempDir::new("policy-hooks");
    let n = alone(&dir, GROUPS);
    n.policy_load(
        "last_word",
        "eccluster.register_hook('set_binding', function(msg) msg:binding('ex') end)",
    )
    .unwrap();
    n.register_set_binding_hook(
        HookOrder::Last,
        Box::new(|msg: &mut Message| {
            let done = msg.header("X-Done").next().is_some();
            msg.choose_binding_group("pool").unwrap();
            if done { Flow::Done } else { Flow::Continue }
        }),
    );
    n.register_set_binding_hook(
        HookOrder::First,
        Box::new(|msg: &mut Message| {
            assert!(msg.binding.is_none(), "the first hook runs first");
            Flow::Continue
        }),
    );
    let mut msg = Message::new("a@b.org");
    assert_eq!(
        n.set_binding(&mut msg),
        Decision::Send {
            binding: "ex".into()
        },
        "the script had the last word"
    );
    let mut msg = Message::new("a@b.org");
    msg.headers.push(("x-done".into(), "1".into()));
    assert!(
        matches!(n.set_binding(&mut msg), Decision::Send { binding } if binding != "ex"),
        "done: the script did not run"
    );
    assert_eq!(
        msg.choose_binding("b1").unwrap_err().to_string(),
        "a binding can be chosen only during set_binding"
    );
}

#[test]
fn a_broken_configured_script_stops_the_start_until_a_reload_fixes_it() {
    let dir = TempDir::new("policy-reload");
    let script = dir.write(
        "mine.lua",
        "eccluster.register_control('policy hello', function() print('v1') end)",
    );
    let n = alone(&dir, &policy_scope(&[&script]));
    assert_eq!(n.console_exec("policy hello").unwrap(), "v1\n");

    // A broken edit: the reload is refused and v1 keeps running.
    std::fs::write(
        &script,
        "eccluster.register_control('policy hello', function()\n",
    )
    .unwrap();
    let e = n.console_exec("policy reload").unwrap_err();
    assert!(e.starts_with("mine.lua:2:"), "{e}");
    assert_eq!(n.console_exec("policy hello").unwrap(), "v1\n");
    assert!(n.console_exec("policy show").unwrap().contains("epoch 1"));

    std::fs::write(
        &script,
        "eccluster.register_control('policy hello', function(cc) print('v2', cc.argv[1]) end)",
    )
    .unwrap();
    assert_eq!(
        n.console_exec("policy reload").unwrap(),
        "policy reloaded: epoch 2\n"
    );
    assert_eq!(n.console_exec("policy hello you").unwrap(), "v2\tyou\n");

    // A node made while its script is broken does not start.
    std::fs::write(&script, "error('not yet')").unwrap();
    let broken = alone(&dir, &policy_scope(&[&script]));
    match broken.start() {
        Err(NodeError::Config(e)) => assert_eq!(e, "policy: mine.lua:1: not yet"),
        other => panic!("{other:?}"),
    }
    std::fs::write(&script, "-- fixed").unwrap();
    broken.policy_reload().unwrap();
    broken.start().unwrap();
    broken.stop();
}

#[test]
fn scripts_may_not_replace_built_in_commands_and_errors_show() {
    let dir = TempDir::new("policy-console");
    let n = alone(&dir, "");
    let e = n
        .policy_load("evil", "eccluster.register_control('cluster info', print)")
        .unwrap_err();
    assert_eq!(
        e,
        "evil.lua:1: 'cluster info' is a built-in console command and cannot be replaced"
    );
    n.policy_load(
        "cmd",
        "msys.registerControl('policy fail', function(cc)\n  error('on purpose')\nend)",
    )
    .unwrap();
    assert_eq!(
        n.console_exec("policy fail").unwrap_err(),
        "cmd.lua:2: on purpose"
    );
    let show = n.console_exec("policy show").unwrap();
    assert!(show.contains("Last error: cmd.lua:2: on purpose"), "{show}");
    assert!(
        n.console_exec("help policy")
            .unwrap()
            .contains("policy fail")
    );
}

#[test]
fn embedded_scripts_reach_the_api_and_the_msys_shim() {
    let dir = TempDir::new("policy-api");
    let n = node(
        &dir,
        "p1",
        &[("p1", free_port())],
        "nodeaddr = \"127.0.0.1\"\n",
        "[cluster.replicate.outbound_domains]\n\
         [cluster.replicate.metrics]\nparameters = \"gauge_cache\"\n",
    );
    n.start().unwrap();
    // A console command defined in Lua, run on the console's thread in
    // that thread's own state: it uses the node's identity, a replicated
    // gauge table and a Momentum gauge cache through `require`.
    n.policy_load(
        "count",
        r#"
local ecc = require "eccluster"
local gc = require "msys.gauge_cache"
gc.define("seen", 100, 60, true)
ecc.register_control("count domain", function(cc)
  local domains = ecc.gauge("outbound_domains")
  domains:inc(cc.argv[1])
  gc.inc("seen", cc.argv[1])
  print(ecc.nodename(), cc.argv[1], domains:count(cc.argv[1]), gc.get("seen", cc.argv[1]))
end)
"#,
    )
    .unwrap();
    assert_eq!(
        n.console_exec("count domain aol.com").unwrap(),
        "p1\taol.com\t1\t1\n"
    );
    assert_eq!(
        n.console_exec("count domain aol.com").unwrap(),
        "p1\taol.com\t2\t2\n"
    );
    // The same object, seen from Rust.
    let gauge = n.shared_gauge("outbound_domains").unwrap();
    assert_eq!(gauge.get(b"aol.com", eccluster::shared::Scope::Local), 2);
    // Unknown objects are errors naming what is configured.
    let e = n
        .policy_load("bad", "eccluster.gauge('inbound_cidr')")
        .unwrap_err();
    assert!(e.starts_with("bad.lua:1: "), "{e}");
    assert!(e.contains("inbound_cidr"), "{e}");
    n.stop();
}

#[test]
fn a_lua_nodename_hook_names_the_node() {
    let dir = TempDir::new("policy-nodename");
    let n = node(
        &dir,
        "p1",
        &[("p1", free_port())],
        "nodeaddr = \"127.0.0.1\"\n",
        "",
    );
    n.policy_load(
        "name",
        "eccluster.register_hook('cluster_nodename', function(name) return name .. '-lua' end)",
    )
    .unwrap();
    assert_eq!(n.identity().unwrap().nodename, "p1-lua");
}

/// Two nodes with DuraVIP in dry run: `mine` prefers d1, `theirs` d2;
/// `nowhere` has no Topology, so d1 owns it but cannot plumb it.
const DURAVIP: &str = "view_mature_time = 1\nview_balance_interval = 1\nduravip_dry_run = true\n\
     [cluster.topology.\"10.9.0.0/24\"]\ninterface = \"eth1\"\n";
const DURAVIP_GROUPS: &str = "[binding_group.pool.binding.mine]\nbind_address = \"10.9.0.1\"\n\
     enable_duravip = true\nduravip_preference = \"d1\"\n\
     [binding_group.pool.binding.theirs]\nbind_address = \"10.9.0.2\"\n\
     enable_duravip = true\nduravip_preference = \"d2\"\n\
     [binding_group.pool.binding.plain]\nbind_address = \"10.1.0.9\"\n\
     [binding_group.far.binding.theirs2]\nbind_address = \"10.9.0.3\"\n\
     enable_duravip = true\nduravip_preference = \"d2\"\n\
     [binding_group.broken.binding.nowhere]\nbind_address = \"10.8.0.1\"\n\
     enable_duravip = true\nduravip_preference = \"d1\"\n";

/// What set_binding decides for a message of `group` (the shipped policy
/// chooses again from the message's group).
fn decide(n: &Node, group: &str) -> Decision {
    let mut msg = Message::new("a@b.org");
    msg.binding_group = Some(group.into());
    n.set_binding(&mut msg)
}

#[test]
fn set_binding_sends_from_owned_bindings_and_moves_to_the_owner_of_others() {
    let dir = TempDir::new("policy-duravip");
    let ports = [("d1", free_port()), ("d2", free_port())];
    let nodes: Vec<Node> = ["d1", "d2"]
        .iter()
        .map(|name| {
            let scopes = policy_scope(&[&shipped("set_binding.lua")]) + DURAVIP_GROUPS;
            node(&dir, name, &ports, DURAVIP, &scopes)
        })
        .collect();
    // The scripts' DuraVIP hooks run on the engine thread; an error is how
    // this test sees them (in `policy show`).
    nodes[0]
        .policy_load(
            "watch",
            "eccluster.register_hook('duravip_gained', function(vip)\n\
               error('gained ' .. vip.ip .. ' ' .. table.concat(vip.names, ','))\nend)",
        )
        .unwrap();
    nodes[1]
        .policy_load(
            "members",
            "eccluster.register_hook('membership_update', function(change)\n\
               error('view of ' .. table.concat(change.members, ',') .. ' ' .. #change.id)\nend)",
        )
        .unwrap();
    for n in &nodes {
        n.start().unwrap();
    }
    let state = |n: &Node, b: &str| n.bindings().get(b).map(|b| b.state.clone());
    wait_until("the DuraVIPs settle on their preferred nodes", || {
        state(&nodes[0], "mine") == Some(BindingState::Owned)
            && state(&nodes[0], "theirs") == Some(BindingState::Remote("d2".into()))
            && state(&nodes[0], "nowhere") == Some(BindingState::Unplumbed)
            && state(&nodes[1], "theirs") == Some(BindingState::Owned)
            && state(&nodes[1], "mine") == Some(BindingState::Remote("d1".into()))
    });
    let d1 = &nodes[0];
    for _ in 0..20 {
        assert_eq!(
            decide(d1, "pool"),
            Decision::Send {
                binding: "mine".into()
            },
            "the owned DuraVIP before the plain binding and the remote one"
        );
    }
    assert_eq!(
        decide(d1, "far"),
        Decision::Move {
            binding: "theirs2".into(),
            node: "d2".into()
        }
    );
    assert_eq!(
        decide(d1, "broken"),
        Decision::Unavailable {
            reason: "binding group 'broken' has no binding to send from: binding 'nowhere': \
                     its DuraVIP 10.8.0.1 is owned here but not plumbed"
                .into()
        }
    );
    let mut msg = Message::new("a@b.org");
    msg.binding = Some("mine".into());
    assert_eq!(
        nodes[1].set_binding(&mut msg),
        Decision::Move {
            binding: "mine".into(),
            node: "d1".into()
        },
        "the host's own binding is checked too"
    );
    wait_until("the Lua membership hook ran on d2's engine thread", || {
        nodes[1]
            .console_exec("policy show")
            .unwrap()
            .contains("Last error: members.lua:2: view of d1,d2 16\n")
    });
    wait_until("the Lua DuraVIP hook ran on d1's engine thread", || {
        d1.console_exec("policy show")
            .unwrap()
            .contains("Last error: watch.lua:2: gained 10.9.0.1 mine\n")
    });

    // A stopped node owns nothing, and knows no owner.
    nodes[1].stop();
    assert_eq!(state(&nodes[1], "theirs"), Some(BindingState::Unowned));
    nodes[0].stop();
}
