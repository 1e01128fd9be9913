//! The engine and its sandbox, against broken and hostile scripts.

use std::sync::Arc;

use mlua::Value;
use parking_lot::Mutex;

use super::engine::{Engine, Limits, PolicyHost, Script};
use super::hooks::{ControlDef, Flow, Hook};

/// A host that records what the engine tells it.
#[derive(Default)]
struct TestHost {
    log: Mutex<Vec<String>>,
    commands: Mutex<Vec<String>>,
}

impl PolicyHost for TestHost {
    fn install(&self, lua: &mlua::Lua, ecc: &mlua::Table, _: &mlua::Table) -> mlua::Result<()> {
        ecc.set("answer", lua.create_function(|_, ()| Ok(42))?)
    }
    fn may_define_control(&self, words: &str) -> Result<(), String> {
        if words == "version" {
            return Err("'version' is a built-in console command".into());
        }
        Ok(())
    }
    fn register_control(&self, def: &ControlDef) {
        let mut commands = self.commands.lock();
        commands.retain(|w| *w != def.words);
        commands.push(def.words.clone());
    }
    fn unregister_control(&self, words: &str) {
        self.commands.lock().retain(|w| w != words);
    }
    fn log(&self, line: &str) {
        self.log.lock().push(line.to_string());
    }
}

const LIMITS: Limits = Limits {
    instruction_budget: 100_000,
    memory_limit: 4 << 20,
};

fn engine_with(scripts: &[(&str, &str)]) -> (Engine, Arc<TestHost>) {
    engine_limited(LIMITS, scripts)
}

fn engine_limited(limits: Limits, scripts: &[(&str, &str)]) -> (Engine, Arc<TestHost>) {
    let host = Arc::new(TestHost::default());
    let engine = Engine::new(limits, host.clone());
    engine
        .set_scripts(scripts.iter().map(|(n, s)| script(n, s)).collect())
        .unwrap();
    (engine, host)
}

fn script(name: &str, source: &str) -> Script {
    Script {
        name: name.into(),
        source: source.into(),
    }
}

/// Runs the `cluster_nodename` hooks with `arg`: what each returned, or
/// its error.
fn call(engine: &Engine, arg: &str) -> Vec<Result<String, String>> {
    let results = std::cell::RefCell::new(Vec::new());
    engine.run_hook(
        Hook::ClusterNodename,
        |_, f| {
            let r = f.call::<String>(arg)?;
            results.borrow_mut().push(Ok(r));
            Ok(Flow::Continue)
        },
        |e| results.borrow_mut().push(Err(e.to_string())),
    );
    results.into_inner()
}

/// A script whose `cluster_nodename` hook runs `body` and returns "ok".
fn hook_script(body: &str) -> String {
    format!(
        "eccluster.register_hook('cluster_nodename', function(arg)\n{body}\nreturn 'ok'\nend)\n"
    )
}

#[test]
fn a_script_that_does_not_load_is_refused_with_its_line_and_nothing_changes() {
    let (engine, _) = engine_with(&[("good", &hook_script(""))]);
    let e = engine
        .load_script("broken", "local x = 1\nlocal = 2\n")
        .unwrap_err();
    assert!(e.starts_with("broken.lua:2: "), "{e}");
    let e = engine
        .load_script("fails", "\n\nerror('no config')")
        .unwrap_err();
    assert_eq!(e, "fails.lua:3: no config");
    assert_eq!(engine.status().epoch, 1, "no reload happened");
    assert_eq!(
        engine
            .scripts()
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>(),
        ["good"]
    );
    assert_eq!(call(&engine, "x"), [Ok("ok".to_string())]);
}

#[test]
fn runtime_errors_name_the_line_and_the_other_hooks_still_run() {
    let (engine, host) = engine_with(&[
        (
            "bad",
            &hook_script("local t = nil\nif arg == 'boom' then return t.field end"),
        ),
        ("good", &hook_script("")),
    ]);
    let results = call(&engine, "boom");
    assert_eq!(
        results,
        [
            Err("bad.lua:3: attempt to index a nil value (local 't')".to_string()),
            Ok("ok".to_string())
        ]
    );
    assert_eq!(
        host.log.lock().last().unwrap(),
        "policy: cluster_nodename hook: bad.lua:3: attempt to index a nil value (local 't')"
    );
    assert_eq!(call(&engine, "fine"), [Ok("ok".into()), Ok("ok".into())]);
    let status = engine.status();
    assert_eq!((status.calls, status.errors), (4, 1));
    assert!(status.last_error.unwrap().starts_with("bad.lua:3:"));
}

#[test]
fn an_endless_loop_is_stopped_by_the_budget_and_the_state_goes_on() {
    let (engine, _) = engine_with(&[
        (
            "loop",
            &hook_script("if arg == 'spin' then\nwhile true do end\nend"),
        ),
        // pcall cannot swallow the budget: it is charged again at once.
        (
            "stubborn",
            &hook_script(
                "if arg == 'spin' then\nwhile true do pcall(function() while true do end end) end\nend",
            ),
        ),
        // Nor does a coroutine escape it.
        (
            "co",
            &hook_script(
                "if arg == 'spin' then\ncoroutine.wrap(function() while true do end end)()\nend",
            ),
        ),
    ]);
    let results = call(&engine, "spin");
    assert_eq!(results.len(), 3);
    for (r, line) in results
        .iter()
        .zip(["loop.lua:3:", "stubborn.lua:3:", "co.lua:3:"])
    {
        let e = r.as_ref().unwrap_err();
        assert!(
            e.starts_with(line) && e.ends_with("instruction budget of 100000 exhausted"),
            "{e}"
        );
    }
    assert_eq!(call(&engine, "calm"), vec![Ok("ok".to_string()); 3]);
}

#[test]
fn a_memory_bomb_hits_the_limit_and_the_next_call_works() {
    // Instructions enough to fill the memory first.
    let limits = Limits {
        instruction_budget: u32::MAX,
        ..LIMITS
    };
    let (engine, host) = engine_limited(
        limits,
        &[
            (
                "bomb",
                &hook_script(
                    "if arg == 'bomb' then\nlocal t = {}\nfor i = 1, 1e9 do t[i] = string.rep('x', 64) .. i end\nend",
                ),
            ),
            (
                "hoard",
                &hook_script(
                    "kept = kept or {}\nif arg == 'hoard' then\nfor i = 1, 1e9 do kept[i] = string.rep('y', 64) .. i end\nend",
                ),
            ),
        ],
    );
    let limit = limits.memory_limit;
    let results = call(&engine, "bomb");
    assert_eq!(
        results[0].as_ref().unwrap_err(),
        &format!("bomb.lua:1 (the cluster_nodename hook): memory limit of {limit} bytes reached")
    );
    assert_eq!(results[1], Ok("ok".into()), "the other script runs");
    assert_eq!(call(&engine, "calm"), vec![Ok("ok".to_string()); 2]);
    // A script that keeps what it allocated in its globals fills the state
    // for good: the engine replaces the state, and the next call works.
    let results = call(&engine, "hoard");
    assert!(results[1].as_ref().unwrap_err().contains("memory limit"));
    assert_eq!(engine.status().states, 0, "the full state is gone");
    assert!(
        host.log
            .lock()
            .iter()
            .any(|l| l.contains("it is replaced on the next call"))
    );
    assert_eq!(call(&engine, "calm"), vec![Ok("ok".to_string()); 2]);
    assert_eq!(engine.status().states, 1);
}

#[test]
fn the_sandbox_holds() {
    let attempts = [
        ("io", "return io.open('/etc/passwd')"),
        ("os", "return os.execute('true')"),
        ("load", "return load('return 1')()"),
        ("loadfile", "return loadfile('/etc/passwd')"),
        ("dofile", "return dofile('/etc/passwd')"),
        ("dump", "return string.dump(function() end)"),
        ("debug", "return debug.getregistry()"),
        ("package", "return package.loadlib('libc.so.6', 'system')"),
        ("require", "local os = require('os')"),
        ("gc", "collectgarbage('stop')"),
        ("rawset", "rawset(string, 'x', 1)"),
        ("string_lib", "string.upper = nil"),
        ("string_meta", "getmetatable('').__index = {}"),
        ("setmeta", "setmetatable(_G, nil)"),
        ("ecc", "eccluster.register_hook = nil"),
        ("msys", "msys.core.VALIDATE_DONE = 0"),
    ];
    let (engine, _) = engine_with(&[]);
    for (what, code) in attempts {
        let e = engine.load_script(what, code).unwrap_err();
        assert!(e.starts_with(&format!("{what}.lua:1: ")), "{what}: {e}");
    }
    // Precompiled bytecode is refused: only text loads.
    let lua = mlua::Lua::new();
    let bytecode = lua.load("return 1").into_function().unwrap().dump(false);
    let e = engine
        .load_script("bytecode", &String::from_utf8_lossy(&bytecode))
        .unwrap_err();
    assert!(e.contains("binary chunk") || e.contains("bytecode"), "{e}");
    // What is allowed still works, and `require` gives our modules.
    engine
        .load_script(
            "fine",
            "local ecc = require('eccluster')\nassert(ecc.answer() == 42)\n\
             assert(require('msys.core') == msys.core)\n\
             assert(require('msys.extended.message') == msys)\n\
             assert(('abc'):upper() == 'ABC' and string.format('%d', 7) == '7')\n\
             assert(getmetatable('') == false)",
        )
        .unwrap();
}

#[test]
fn globals_do_not_leak_between_scripts() {
    let (engine, _) = engine_with(&[
        (
            "a",
            "secret = 'a'\n_G.also = 1\neccluster.register_hook('cluster_nodename', function() return tostring(secret) end)",
        ),
        (
            "b",
            "eccluster.register_hook('cluster_nodename', function() return tostring(secret) .. tostring(also) end)",
        ),
    ]);
    assert_eq!(call(&engine, ""), [Ok("a".into()), Ok("nilnil".into())]);
}

#[test]
fn a_broken_reload_keeps_the_old_scripts() {
    let (engine, _) = engine_with(&[(
        "p",
        "eccluster.register_hook('cluster_nodename', function() return 'v1' end)",
    )]);
    assert_eq!(call(&engine, ""), [Ok("v1".into())]);
    let e = engine
        .set_scripts(vec![script(
            "p",
            "eccluster.register_hook('cluster_nodename', function() return 'v2' end",
        )])
        .unwrap_err();
    assert!(e.starts_with("p.lua:1:"), "{e}");
    assert_eq!(call(&engine, ""), [Ok("v1".into())]);
    engine
        .load_script(
            "p",
            "eccluster.register_hook('cluster_nodename', function() return 'v2' end)",
        )
        .unwrap();
    assert_eq!(
        call(&engine, ""),
        [Ok("v2".into())],
        "the next call picks the reload up"
    );
    assert_eq!(engine.status().epoch, 2);
}

#[test]
fn threads_use_states_of_their_own_concurrently() {
    let (engine, _) = engine_with(&[(
        "count",
        "local n = 0\neccluster.register_hook('cluster_nodename', function() n = n + 1; return tostring(n) end)",
    )]);
    let barrier = Arc::new(std::sync::Barrier::new(2));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let (engine, barrier) = (engine.clone(), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                let mut last = String::new();
                for _ in 0..1000 {
                    last = call(&engine, "")[0].clone().unwrap();
                }
                // Both states live until both threads are done.
                barrier.wait();
                let states = engine.status().states;
                barrier.wait();
                (last, states)
            })
        })
        .collect();
    for t in threads {
        // Each thread's state counted its own calls only.
        assert_eq!(t.join().unwrap(), ("1000".to_string(), 2));
    }
    assert_eq!(engine.status().states, 0, "a thread's state ends with it");
}

#[test]
fn commands_follow_the_scripts_through_reloads() {
    let (engine, host) = engine_with(&[(
        "c",
        "eccluster.register_control('policy hello', function(cc) print('hello', cc.argv[1]) end)\n\
         eccluster.register_control('policy old', function() end)",
    )]);
    assert_eq!(*host.commands.lock(), ["policy hello", "policy old"]);
    assert_eq!(
        engine
            .call_control("policy hello", &["you".into()])
            .unwrap(),
        "hello\tyou\n"
    );
    engine
        .load_script(
            "c",
            "eccluster.register_control('policy hello', function(cc) print('hi') end)",
        )
        .unwrap();
    assert_eq!(
        *host.commands.lock(),
        ["policy hello"],
        "the dropped command is gone"
    );
    assert_eq!(engine.call_control("policy hello", &[]).unwrap(), "hi\n");
    let e = engine
        .load_script("d", "eccluster.register_control('version', print)")
        .unwrap_err();
    assert_eq!(e, "d.lua:1: 'version' is a built-in console command");
    // print outside a command goes to the host's log.
    engine.load_script("p", "print('loaded', 1)").unwrap();
    call(&engine, "");
    assert!(host.log.lock().iter().any(|l| l == "policy: loaded\t1"));
}

#[test]
fn a_hook_that_returns_done_ends_the_chain() {
    let (engine, _) = engine_with(&[
        (
            "first",
            "eccluster.register_hook('set_binding', function() return eccluster.DONE end)",
        ),
        (
            "second",
            "eccluster.register_hook('set_binding', function() error('not reached') end)",
        ),
    ]);
    let flow = engine.run_hook(
        Hook::SetBinding,
        |_, f| Ok(Flow::from_returned(&f.call::<Value>(())?)),
        |e| panic!("{e}"),
    );
    assert_eq!(flow, Flow::Done);
}
