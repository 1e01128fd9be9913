//! What a policy script pays to reach the cluster through the `eccluster`
//! Lua API (`policy::api::install`): a gauge increment, a throttle check
//! and consume, a gauge cache increment through the `msys` shim, each
//! called from a Lua loop, beside an empty loop and a bare mlua function
//! (no error wrapper) for scale. The node is made, not started: the shared
//! objects are there either way.

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use eccluster::config::{Format, LoadedConfig};
use eccluster::node::Node;
use eccluster::policy::api::install;
use eccluster::policy::msys::install_msys;
use mlua::{Function, Lua};

const CONFIG: &str = "[cluster]\nnodename = \"bench\"\n\
                      [cluster.replicate.outbound_domains]\n\
                      [cluster.replicate.shared_named_throttles]\n\
                      [cluster.replicate.metrics]\nparameters = \"gauge_cache\"\n";

/// A Lua state with the API as `ecc` and the shim as `msys`, and the
/// objects the loops use.
fn state(node: &Node) -> Lua {
    let lua = Lua::new();
    let ecc = lua.create_table().unwrap();
    install(&lua, &ecc, node).unwrap();
    lua.globals().set("ecc", ecc).unwrap();
    lua.globals()
        .set("msys", install_msys(&lua, node).unwrap())
        .unwrap();
    lua.globals()
        .set("noop", lua.create_function(|_, ()| Ok(())).unwrap())
        .unwrap();
    lua.load(
        r#"
        g = ecc.gauge("outbound_domains")
        -- Never runs out during a bench.
        t = ecc.throttles("shared_named_throttles"):define("bench", "9007199254740992/4294967296", 0.99)
        msys.gauge_cache.define("bench", 1000, 0, true)
        "#,
    )
    .exec()
    .unwrap();
    lua
}

/// `function(n) for i = 1, n do BODY end end`, compiled once.
fn looped(lua: &Lua, body: &str) -> Function {
    lua.load(format!("return function(n) for i = 1, n do {body} end end"))
        .eval()
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let node = Node::new(
        LoadedConfig::parse(CONFIG, Format::Toml)
            .expect("valid")
            .config,
    );
    let lua = state(&node);
    for (name, body) in [
        ("lua_api/empty loop", ""),
        ("lua_api/bare mlua function", "noop()"),
        ("lua_api/gauge:inc", "g:inc('aol.com')"),
        ("lua_api/gauge:count", "g:count('aol.com')"),
        ("lua_api/throttle:check", "t:check()"),
        ("lua_api/throttle:consume", "t:consume()"),
        (
            "lua_api/msys.gauge_cache.inc",
            "msys.gauge_cache.inc('bench', 'mx.example.com')",
        ),
    ] {
        let f = looped(&lua, body);
        c.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let began = Instant::now();
                f.call::<()>(black_box(iters)).expect("the loop runs");
                began.elapsed()
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
