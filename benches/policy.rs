//! What set_binding costs an MTA thread: a Lua hook choosing from a
//! binding group; the shipped policy (lua/set_binding.lua), which also
//! reads two headers first; and a C hook choosing from the group through
//! the Rust path the C ABI wraps (`Node::set_binding` with a hook as
//! `ecc_node_register_set_binding_hook` registers one). Each on one
//! thread, and on two at once (each with its own Lua state).

mod common;

use std::cell::RefCell;
use std::hint::black_box;
use std::sync::Arc;

use common::slowest_thread;
use criterion::{Criterion, criterion_group, criterion_main};
use eccluster::config::{Format, LoadedConfig};
use eccluster::node::{HookOrder, Node};
use eccluster::policy::{Decision, Flow, Message};

/// A stopped node with a group of four bindings of its own, and `scripts`.
fn node(scripts: &str) -> Arc<Node> {
    let text = format!(
        "[cluster]\nnodename = \"bench\"\n{scripts}\
         [binding_group.pool.binding.b1]\nbind_address = \"10.1.0.1\"\n\
         [binding_group.pool.binding.b2]\nbind_address = \"10.1.0.2\"\n\
         [binding_group.pool.binding.b3]\nbind_address = \"10.1.0.3\"\n\
         [binding_group.pool.binding.b4]\nbind_address = \"10.1.0.4\"\n"
    );
    let config = LoadedConfig::parse(&text, Format::Toml)
        .unwrap_or_else(|e| panic!("{e}"))
        .config;
    Arc::new(Node::new(config))
}

thread_local! {
    /// Each thread's message, as an MTA thread has the one it works on.
    static MESSAGE: RefCell<Message> = RefCell::new({
        let mut m = Message::new("news@b.example.org");
        m.recipient_domains.push("example.com".into());
        m.headers.push(("X-Binding-Group".into(), "pool".into()));
        m
    });
}

fn set_binding(node: &Node, _: usize) {
    MESSAGE.with_borrow_mut(|m| {
        let decision = node.set_binding(black_box(m));
        debug_assert!(matches!(decision, Decision::Send { .. }), "{decision:?}");
        black_box(decision);
    });
}

/// A one-line Lua policy: choose from the group the header names.
const GROUP_HOOK: &str =
    "eccluster.register_hook('set_binding', function(msg) msg:binding_group('pool') end)";

fn policy(c: &mut Criterion) {
    let hook = node("");
    hook.policy_load("group", GROUP_HOOK).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/lua/set_binding.lua");
    let shipped = node(&format!("[policy]\nscripts = [\"{script}\"]\n"));
    let hooked = node("");
    hooked.register_set_binding_hook(
        HookOrder::Last,
        Box::new(|msg: &mut Message| match msg.choose_binding_group("pool") {
            Ok(_) => Flow::Done,
            Err(_) => Flow::Continue,
        }),
    );
    for (what, node) in [
        ("Lua hook", &hook),
        ("shipped Lua policy", &shipped),
        ("C hook", &hooked),
    ] {
        c.bench_function(&format!("set_binding/{what} (one thread)"), |b| {
            b.iter(|| set_binding(node, 0))
        });
        c.bench_function(&format!("set_binding/{what} (two threads)"), |b| {
            b.iter_custom(|iters| slowest_thread(node, 2, iters, set_binding))
        });
    }
}

criterion_group!(benches, policy);
criterion_main!(benches);
