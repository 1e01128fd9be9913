//! The shipped policy scripts' tests: `lua/NAME_test.lua` tests
//! `lua/NAME.lua`, in the real embedded engine (the sandbox, the limits,
//! `eccluster` and `msys`), with a harness as `eccluster.testing`:
//!
//! - `t.case(name, fn)`: a test case; each runs as a call of its own;
//! - `t.bindings{ {name=, group=, state=, owner=, address=}, ... }`: the
//!   binding table set_binding reads (`state`: owned, local, remote,
//!   unowned, unplumbed);
//! - `t.set_binding{ sender=, domains={...}, headers={{name, value}...},
//!   binding=, group= }`: runs the registered set_binding hooks on such a
//!   message and returns the decision: `kind` (send, move, unchanged,
//!   unavailable), `binding`, `node`, `reason`, the message's `group`, and
//!   `flow` (done when a hook ended the chain, else continue);
//! - `t.fire(hook, arg)`: calls the functions registered for a hook;
//! - `t.control(words, args...)`: runs a console command the script
//!   defined and returns its answer;
//! - `t.eq(got, want [, what])`, `t.matches(text, fragment)`: assertions
//!   whose errors name the test's line.
//!
//! `scripts/test.sh` runs this file on its own, so that each case's result
//! shows (lua/README.md).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use eccluster::policy::errors::raise;
use eccluster::policy::hooks::{self, ControlDef, Flow, Hook};
use eccluster::policy::set_binding::call_with_message;
use eccluster::policy::{
    BindingInfo, BindingState, BindingTable, Decision, Engine, Limits, Message, PolicyHost, Script,
};
use mlua::{Function, Lua, Table, Value};
use parking_lot::Mutex;

/// The binding table the test script set last.
type Shared = Arc<Mutex<Arc<BindingTable>>>;

struct Harness {
    table: Shared,
}

impl PolicyHost for Harness {
    fn install(&self, lua: &Lua, ecc: &Table, _: &Table) -> mlua::Result<()> {
        ecc.set("testing", testing(lua, Arc::clone(&self.table))?)
    }
    fn may_define_control(&self, _: &str) -> Result<(), String> {
        Ok(())
    }
    fn register_control(&self, _: &ControlDef) {}
    fn unregister_control(&self, _: &str) {}
    fn log(&self, line: &str) {
        println!("    {line}");
    }
}

const CASES: &str = "testing.cases";

/// The `eccluster.testing` table (module docs).
fn testing(lua: &Lua, table: Shared) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    lua.set_named_registry_value(CASES, lua.create_table()?)?;
    t.set(
        "case",
        lua.create_function(|lua, (name, f): (String, Function)| {
            let cases: Table = lua.named_registry_value(CASES)?;
            cases.push(lua.create_sequence_from([
                Value::String(lua.create_string(name)?),
                Value::Function(f),
            ])?)
        })?,
    )?;
    let shared = Arc::clone(&table);
    t.set(
        "bindings",
        lua.create_function(move |lua, list: Vec<Table>| {
            let bindings = list
                .iter()
                .map(|b| binding(lua, b))
                .collect::<mlua::Result<Vec<_>>>()?;
            *shared.lock() = Arc::new(BindingTable::new(bindings));
            Ok(())
        })?,
    )?;
    t.set(
        "set_binding",
        lua.create_function(move |lua, spec: Table| {
            set_binding(lua, &spec, Arc::clone(&table.lock()))
        })?,
    )?;
    t.set(
        "fire",
        lua.create_function(|lua, (name, arg): (String, Value)| {
            let hook =
                Hook::from_name(&name).ok_or_else(|| raise(lua, format!("no hook '{name}'")))?;
            hooks::registered_hooks(lua, hook)?
                .iter()
                .map(|h| h.function.call::<Value>(arg.clone()))
                .collect::<mlua::Result<Vec<Value>>>()
        })?,
    )?;
    t.set(
        "control",
        lua.create_function(|lua, (words, args): (String, mlua::Variadic<String>)| {
            hooks::call_control(lua, &words, &args).map_err(|e| raise(lua, e))
        })?,
    )?;
    t.set(
        "eq",
        lua.create_function(|lua, (got, want, what): (Value, Value, Option<String>)| {
            if got == want {
                return Ok(());
            }
            let what = what.map(|w| format!("{w}: ")).unwrap_or_default();
            Err(raise(
                lua,
                format!("{what}expected {}, got {}", shown(&want), shown(&got)),
            ))
        })?,
    )?;
    t.set(
        "matches",
        lua.create_function(|lua, (text, fragment): (String, String)| {
            if text.contains(&fragment) {
                return Ok(());
            }
            Err(raise(
                lua,
                format!("{text:?} does not contain {fragment:?}"),
            ))
        })?,
    )?;
    Ok(t)
}

/// A value as an assertion shows it.
fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{:?}", s.to_string_lossy()),
        other => other.to_string().unwrap_or_else(|_| format!("{other:?}")),
    }
}

fn binding(lua: &Lua, b: &Table) -> mlua::Result<BindingInfo> {
    let name: String = b.get("name")?;
    let state: String = b.get("state")?;
    let state = match state.as_str() {
        "owned" => BindingState::Owned,
        "local" => BindingState::Local,
        "remote" => BindingState::Remote(b.get("owner")?),
        "unowned" => BindingState::Unowned,
        "unplumbed" => BindingState::Unplumbed,
        other => {
            return Err(raise(
                lua,
                format!("binding '{name}': unknown state '{other}'"),
            ));
        }
    };
    let address: Option<String> = b.get("address")?;
    Ok(BindingInfo {
        name,
        group: b.get("group")?,
        address: address
            .map(|a| {
                a.parse()
                    .map_err(|_| raise(lua, format!("bad address {a:?}")))
            })
            .transpose()?,
        state,
    })
}

/// `t.set_binding` (module docs).
fn set_binding(lua: &Lua, spec: &Table, table: Arc<BindingTable>) -> mlua::Result<Table> {
    let mut msg = Message::new(spec.get::<Option<String>>("sender")?.unwrap_or_default());
    msg.recipient_domains = spec
        .get::<Option<Vec<String>>>("domains")?
        .unwrap_or_default();
    for pair in spec
        .get::<Option<Vec<Vec<String>>>>("headers")?
        .unwrap_or_default()
    {
        if let [name, value] = pair.as_slice() {
            msg.headers.push((name.clone(), value.clone()));
        }
    }
    msg.binding = spec.get("binding")?;
    msg.binding_group = spec.get("group")?;
    msg.begin(table);
    let mut flow = Flow::Continue;
    for hook in hooks::registered_hooks(lua, Hook::SetBinding)? {
        flow = call_with_message(lua, &hook.function, &mut msg)?;
        if flow == Flow::Done {
            break;
        }
    }
    let decision = msg.finish();
    let out = lua.create_table()?;
    let (kind, binding, node, reason) = match decision {
        Decision::Send { binding } => ("send", Some(binding), None, None),
        Decision::Move { binding, node } => ("move", Some(binding), Some(node), None),
        Decision::Unchanged { reason } => ("unchanged", None, None, Some(reason)),
        Decision::Unavailable { reason } => ("unavailable", None, None, Some(reason)),
    };
    out.set("kind", kind)?;
    out.set("binding", binding)?;
    out.set("node", node)?;
    out.set("reason", reason)?;
    out.set("group", msg.binding_group)?;
    out.set(
        "flow",
        if flow == Flow::Done {
            "done"
        } else {
            "continue"
        },
    )?;
    Ok(out)
}

/// Runs one test file's cases; returns the failures.
fn run(test: &Path) -> Vec<String> {
    let file = test.file_name().unwrap().to_string_lossy().to_string();
    let stem = file.trim_end_matches("_test.lua");
    let script = test.with_file_name(format!("{stem}.lua"));
    let read =
        |p: &Path| std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let harness = Arc::new(Harness {
        table: Arc::new(Mutex::new(Arc::new(BindingTable::default()))),
    });
    let engine = Engine::new(
        Limits {
            instruction_budget: 1_000_000,
            memory_limit: 16 << 20,
        },
        harness,
    );
    let loaded = engine.set_scripts(vec![
        Script {
            name: stem.to_string(),
            source: read(&script),
        },
        Script {
            name: format!("{stem}_test"),
            source: read(test),
        },
    ]);
    if let Err(e) = loaded {
        return vec![format!("{file}: does not load: {e}")];
    }
    let names: Vec<String> = engine
        .call(
            || "listing the cases".into(),
            |lua| {
                let cases: Table = lua.named_registry_value(CASES)?;
                cases
                    .sequence_values::<Table>()
                    .map(|c| c?.get(1))
                    .collect()
            },
        )
        .unwrap();
    if names.is_empty() {
        return vec![format!("{file}: has no t.case")];
    }
    let mut failures = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let ran = engine.call(
            || format!("case '{name}'"),
            |lua| {
                let cases: Table = lua.named_registry_value(CASES)?;
                let case: Table = cases.get(i + 1)?;
                case.get::<Function>(2)?.call::<()>(())
            },
        );
        match ran {
            Ok(()) => println!("{file}: {name}: ok"),
            Err(e) => {
                println!("{file}: {name}: FAILED: {e}");
                failures.push(format!("{file}: {name}: {e}"));
            }
        }
    }
    failures
}

fn lua_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("lua")
}

#[test]
fn every_shipped_script_has_a_test_and_passes_it() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(lua_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "lua"))
        .collect();
    files.sort();
    let (tests, scripts): (Vec<PathBuf>, Vec<PathBuf>) = files
        .into_iter()
        .partition(|p| p.to_string_lossy().ends_with("_test.lua"));
    assert!(!scripts.is_empty(), "no scripts in {}", lua_dir().display());
    for s in &scripts {
        let test = s.with_extension("").to_string_lossy().to_string() + "_test.lua";
        assert!(
            Path::new(&test).exists(),
            "{} has no test ({test})",
            s.display()
        );
    }
    let failures: Vec<String> = tests.iter().flat_map(|t| run(t)).collect();
    assert!(failures.is_empty(), "failed:\n{}", failures.join("\n"));
}

/// The harness can fail: a wrong expectation is reported with its line.
#[test]
fn a_failing_case_is_reported_with_its_line() {
    let dir = std::env::temp_dir().join(format!("ecc-lua-scripts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("p.lua"),
        "eccluster.register_hook('set_binding', function(msg) msg:binding('b') end)",
    )
    .unwrap();
    std::fs::write(
        dir.join("p_test.lua"),
        "local t = eccluster.testing\nt.bindings { { name = 'b', state = 'local' } }\n\
         t.case('right', function() t.eq(t.set_binding{}.kind, 'send') end)\n\
         t.case('wrong', function()\n  t.eq(t.set_binding{}.kind, 'move', 'kind')\nend)",
    )
    .unwrap();
    let failures = run(&dir.join("p_test.lua"));
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(
        failures,
        ["p_test.lua: wrong: p_test.lua:5: kind: expected \"move\", got \"send\""]
    );
}
