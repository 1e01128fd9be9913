//! Hooks and console commands registered from Lua.
//!
//! A script hooks the engine with
//! `eccluster.register_hook(name, fn [, "first"|"last"])`, or in the
//! reference's style with `msys.registerModule(name, mod)`, whose methods
//! named after a hook (`mod:validate_set_binding(msg)`,
//! `mod:cluster_nodename(name)`) are those hooks. It adds console commands
//! with `eccluster.register_control(words, fn [, usage, help])` or
//! `msys.registerControl(prefix, fn)`; the function gets a `cc` with
//! `cc.argc` and `cc.argv[0..]` (the command's words, then its
//! arguments), and what it prints is the command's answer.
//!
//! Registrations live in the Lua state that made them, in its registry,
//! so each state holds its own (the engine runs one state per thread, each
//! running every script). Nothing here knows about engines or threads:
//! the embedded engine ([`super::engine`]) runs the registered functions in
//! its states, and the `require "eccluster"` module (bindings/lua), which
//! lives in the host's own Lua, lists them with [`registered_hooks`] and
//! [`registered_controls`] and runs them from its event loop with the
//! function itself and [`call_control`].
//!
//! Whoever owns the console hears of a new command through the state's
//! [`ControlListener`] (app data), if it set one.

use std::cell::{Cell, RefCell};

use mlua::{Function, Lua, MultiValue, Table, Value};

use super::errors::{caller, describe, raise};

/// The hook points a script can register for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hook {
    /// `fn(name) -> new name or nil`, while the node works out its name.
    ClusterNodename,
    /// `fn(subcluster) -> new subcluster or nil`.
    ClusterSubcluster,
    /// `fn(msg) -> eccluster.CONTINUE or eccluster.DONE`: choose the
    /// message's binding (the reference's `validate_set_binding`).
    SetBinding,
    /// `fn(change)` after a view change: `change.number`, `change.id`
    /// (hex text) and `change.members` (names, sorted).
    MembershipUpdate,
    /// `fn(vip)` when this node gains a DuraVIP: `vip.ip`, `vip.names`
    /// (binding names) and `vip.ports` (listener ports).
    DuravipGained,
    /// `fn(vip)` when it loses one.
    DuravipLost,
}

impl Hook {
    pub const ALL: [Hook; 6] = [
        Hook::ClusterNodename,
        Hook::ClusterSubcluster,
        Hook::SetBinding,
        Hook::MembershipUpdate,
        Hook::DuravipGained,
        Hook::DuravipLost,
    ];

    /// The name `register_hook` takes.
    pub fn name(self) -> &'static str {
        match self {
            Hook::ClusterNodename => "cluster_nodename",
            Hook::ClusterSubcluster => "cluster_subcluster",
            Hook::SetBinding => "set_binding",
            Hook::MembershipUpdate => "membership_update",
            Hook::DuravipGained => "duravip_gained",
            Hook::DuravipLost => "duravip_lost",
        }
    }

    pub fn from_name(name: &str) -> Option<Hook> {
        Hook::ALL.into_iter().find(|h| h.name() == name)
    }

    /// The `msys.registerModule` method implementing it: the reference
    /// names a C hook `<scope>_<hook>` in Lua, and calls set_binding's
    /// policy point `validate_set_binding`.
    fn method(self) -> &'static str {
        match self {
            Hook::ClusterNodename => "cluster_nodename",
            Hook::ClusterSubcluster => "cluster_subcluster",
            Hook::SetBinding => "validate_set_binding",
            Hook::MembershipUpdate => "cluster_membership_update",
            Hook::DuravipGained => "cluster_duravip_gained",
            Hook::DuravipLost => "cluster_duravip_lost",
        }
    }

    fn names() -> String {
        Hook::ALL.map(Hook::name).join(", ")
    }
}

/// What a set_binding hook returns to let the next hook run (also the
/// reference's `msys.core.VALIDATE_CONT`); returning nothing does the same.
pub(crate) const CONTINUE: i64 = 0;
/// What a set_binding hook returns to end the chain
/// (`msys.core.VALIDATE_DONE`).
pub(crate) const DONE: i64 = 1;

/// What a hook asks of the chain it is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Run the next hook.
    Continue,
    /// The hooks after this one are skipped (`eccluster.DONE`).
    Done,
}

impl Flow {
    /// What a hook's return value means: `eccluster.DONE` ends the chain,
    /// anything else (nothing included) continues it.
    pub fn from_returned(value: &Value) -> Flow {
        match value {
            Value::Integer(n) if *n == DONE => Flow::Done,
            _ => Flow::Continue,
        }
    }
}

/// A registered hook function, and where the script registered it (for
/// errors that have no line of their own, such as a memory error).
#[derive(Clone, Debug)]
pub struct RegisteredHook {
    pub function: Function,
    pub registered_at: String,
}

/// A console command defined by a script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlDef {
    /// Lowercase, separated by single spaces: `"policy hello"`.
    pub words: String,
    pub usage: String,
    pub help: String,
}

/// App data of a state: told of every command a script (re)defines; an
/// error refuses the definition (a script may not replace a built-in
/// command).
#[allow(missing_debug_implementations)] // a closure
pub struct ControlListener(pub Box<ControlCheck>);

/// What a [`ControlListener`] runs.
pub type ControlCheck = dyn Fn(&ControlDef) -> Result<(), String>;

/// App data: counts changes to the state's hooks, so that a caller may
/// cache the chains it runs (see [`generation`]).
struct Generation(Cell<u64>);

/// App data: the answer of the console command running now, if any.
struct Capture(RefCell<Option<String>>);

const HOOKS_KEY: &str = "eccluster.hooks";
const CONTROLS_KEY: &str = "eccluster.controls";
const PRINT_KEY: &str = "eccluster.print";

/// Adds `register_hook`, `register_control`, `CONTINUE`, `DONE` and
/// `HOOKS` (the hook names) to the `eccluster` table `ecc`.
pub fn install(lua: &Lua, ecc: &Table) -> mlua::Result<()> {
    prepare(lua)?;
    ecc.set(
        "register_hook",
        lua.create_function(
            |lua, (name, f, order): (String, Function, Option<String>)| {
                let hook = Hook::from_name(&name).ok_or_else(|| {
                    raise(
                        lua,
                        format!("unknown hook '{name}'; the hooks are {}", Hook::names()),
                    )
                })?;
                let first = match order.as_deref() {
                    None | Some("last") => false,
                    Some("first") => true,
                    Some(other) => {
                        return Err(raise(
                            lua,
                            format!("the order is \"first\" or \"last\", not {other:?}"),
                        ));
                    }
                };
                add_hook(lua, hook, f, first)
            },
        )?,
    )?;
    ecc.set(
        "register_control",
        lua.create_function(
            |lua, (words, f, usage, help): (String, Function, Option<String>, Option<String>)| {
                add_control(
                    lua,
                    &words,
                    f,
                    usage.unwrap_or_default(),
                    help.unwrap_or_else(|| "Defined by a policy script.".into()),
                )
            },
        )?,
    )?;
    ecc.set("CONTINUE", CONTINUE)?;
    ecc.set("DONE", DONE)?;
    ecc.set(
        "HOOKS",
        lua.create_sequence_from(Hook::ALL.map(Hook::name))?,
    )?;
    Ok(())
}

/// Adds the reference's `registerModule` and `registerControl` to the
/// `msys` table, and `msys.core.VALIDATE_CONT` / `VALIDATE_DONE`.
pub fn install_msys(lua: &Lua, msys: &Table) -> mlua::Result<()> {
    prepare(lua)?;
    msys.set(
        "registerModule",
        lua.create_function(|lua, (name, module): (String, Table)| {
            register_module(lua, &name, module)
        })?,
    )?;
    msys.set(
        "registerControl",
        lua.create_function(|lua, (prefix, f): (String, Function)| {
            add_control(
                lua,
                &prefix,
                f,
                "[args]".into(),
                "Defined by a policy script (msys.registerControl).".into(),
            )
        })?,
    )?;
    let core = lua.create_table()?;
    core.set("VALIDATE_CONT", CONTINUE)?;
    core.set("VALIDATE_DONE", DONE)?;
    msys.set("core", core)?;
    Ok(())
}

/// The registry tables and app data, once per state.
fn prepare(lua: &Lua) -> mlua::Result<()> {
    if lua.app_data_ref::<Generation>().is_some() {
        return Ok(());
    }
    lua.set_app_data(Generation(Cell::new(0)));
    lua.set_app_data(Capture(RefCell::new(None)));
    lua.set_named_registry_value(HOOKS_KEY, lua.create_table()?)?;
    lua.set_named_registry_value(CONTROLS_KEY, lua.create_table()?)?;
    Ok(())
}

/// Changes whenever a hook is registered in this state (0 before any).
pub fn generation(lua: &Lua) -> u64 {
    lua.app_data_ref::<Generation>().map_or(0, |g| g.0.get())
}

fn add_hook(lua: &Lua, hook: Hook, f: Function, first: bool) -> mlua::Result<()> {
    let chains: Table = lua.named_registry_value(HOOKS_KEY)?;
    let chain: Table = match chains.raw_get::<Option<Table>>(hook.name())? {
        Some(c) => c,
        None => {
            let c = lua.create_table()?;
            chains.raw_set(hook.name(), &c)?;
            c
        }
    };
    let entry = lua.create_table()?;
    entry.raw_set("fn", f)?;
    entry.raw_set("at", caller(lua).unwrap_or_else(|| "?".into()))?;
    if first {
        chain.raw_insert(1, entry)?;
    } else {
        chain.raw_push(entry)?;
    }
    if let Some(g) = lua.app_data_ref::<Generation>() {
        g.0.set(g.0.get() + 1);
    }
    Ok(())
}

/// `msys.registerModule(name, mod)`: each hook method `mod` has becomes a
/// hook (last in its chain); `mod:init()`, if defined, runs first and must
/// return true, as the reference requires.
fn register_module(lua: &Lua, name: &str, module: Table) -> mlua::Result<()> {
    if let Some(init) = module.get::<Option<Function>>("init")? {
        let ok: Value = init.call(&module)?;
        if !matches!(ok, Value::Boolean(true)) {
            return Err(raise(
                lua,
                format!("module '{name}': init must return true"),
            ));
        }
    }
    for hook in Hook::ALL {
        if module.get::<Option<Function>>(hook.method())?.is_none() {
            continue;
        }
        let (module, method) = (module.clone(), hook.method());
        // Looked up on every call, as a method: a script may replace it.
        let bound = lua.create_function(move |_, args: MultiValue| {
            let f: Function = module.get(method)?;
            let mut with_self = args;
            with_self.push_front(Value::Table(module.clone()));
            f.call::<MultiValue>(with_self)
        })?;
        add_hook(lua, hook, bound, false)?;
    }
    Ok(())
}

/// A hook's functions in this state, in the order they run.
pub fn registered_hooks(lua: &Lua, hook: Hook) -> mlua::Result<Vec<RegisteredHook>> {
    let chains: Option<Table> = lua.named_registry_value(HOOKS_KEY)?;
    let Some(chain) = chains
        .map(|c| c.raw_get::<Option<Table>>(hook.name()))
        .transpose()?
        .flatten()
    else {
        return Ok(Vec::new());
    };
    chain
        .sequence_values::<Table>()
        .map(|entry| {
            let entry = entry?;
            Ok(RegisteredHook {
                function: entry.raw_get("fn")?,
                registered_at: entry.raw_get("at")?,
            })
        })
        .collect()
}

/// Splits and lowercases a command's words: `"Policy  Hello"` is `"policy hello"`.
fn normalize(words: &str) -> Result<String, String> {
    let words: Vec<String> = crate::core::console::tokenize(words)?
        .into_iter()
        .map(|w| w.to_ascii_lowercase())
        .collect();
    match words.first().map(String::as_str) {
        None => Err("a command needs at least one word".into()),
        Some(w @ ("help" | "xml")) => Err(format!("'{w}' is reserved by the console")),
        Some(_) => Ok(words.join(" ")),
    }
}

fn add_control(
    lua: &Lua,
    words: &str,
    f: Function,
    usage: String,
    help: String,
) -> mlua::Result<()> {
    let words = normalize(words).map_err(|e| raise(lua, e))?;
    let def = ControlDef { words, usage, help };
    if let Some(listener) = lua.app_data_ref::<ControlListener>() {
        (listener.0)(&def).map_err(|e| raise(lua, e))?;
    }
    let entry = lua.create_table()?;
    entry.raw_set("fn", f)?;
    entry.raw_set("usage", def.usage.as_str())?;
    entry.raw_set("help", def.help.as_str())?;
    let controls: Table = lua.named_registry_value(CONTROLS_KEY)?;
    controls.raw_set(def.words, entry)
}

/// The console commands defined in this state, by their words.
pub fn registered_controls(lua: &Lua) -> mlua::Result<Vec<ControlDef>> {
    let Some(controls) = lua.named_registry_value::<Option<Table>>(CONTROLS_KEY)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for pair in controls.pairs::<String, Table>() {
        let (words, entry) = pair?;
        out.push(ControlDef {
            words,
            usage: entry.raw_get("usage")?,
            help: entry.raw_get("help")?,
        });
    }
    out.sort_by(|a, b| a.words.cmp(&b.words));
    Ok(out)
}

/// Runs the command `words` (as registered) with `args`: its function gets
/// `cc` (module docs); what it prints, then what it returns if that is a
/// string, is the answer. Errors name the script and line.
pub fn call_control(lua: &Lua, words: &str, args: &[String]) -> Result<String, String> {
    let words = normalize(words)?;
    let controls: Option<Table> = lua
        .named_registry_value(CONTROLS_KEY)
        .map_err(|e| describe(&e))?;
    let entry = controls
        .and_then(|c| c.raw_get::<Option<Table>>(words.as_str()).ok().flatten())
        .ok_or_else(|| format!("no policy script defines the command '{words}'"))?;
    let run = || -> mlua::Result<Value> {
        let f: Function = entry.raw_get("fn")?;
        let argv = lua.create_table()?;
        argv.raw_set(0, words.as_str())?;
        for (i, a) in args.iter().enumerate() {
            argv.raw_set(i + 1, a.as_str())?;
        }
        let cc = lua.create_table()?;
        cc.raw_set("argc", args.len() + 1)?;
        cc.raw_set("argv", argv)?;
        f.call(cc)
    };
    let (returned, mut answer) = with_captured_print(lua, run).map_err(|e| describe(&e))?;
    if let Value::String(s) = returned.map_err(|e| describe(&e))? {
        answer.push_str(&s.to_string_lossy());
    }
    Ok(answer)
}

/// Runs `f` with `print` writing into a capture, and returns what `f`
/// returned and what it printed. The global `print` is swapped for ours
/// unless it is ours already (the engine's states install ours, which
/// also catches a `local print = print`).
fn with_captured_print<R>(
    lua: &Lua,
    f: impl FnOnce() -> mlua::Result<R>,
) -> mlua::Result<(mlua::Result<R>, String)> {
    prepare(lua)?;
    let outer = lua
        .app_data_ref::<Capture>()
        .and_then(|c| c.0.replace(Some(String::new())));
    let globals = lua.globals();
    let ours: Option<Function> = lua.named_registry_value(PRINT_KEY)?;
    let current: Value = globals.raw_get("print")?;
    let swap = !matches!((&current, &ours), (Value::Function(c), Some(o)) if c == o);
    if swap {
        globals.raw_set("print", print_function(lua, |_| {})?)?;
    }
    let result = f();
    if swap {
        globals.raw_set("print", current)?;
    }
    let printed = lua
        .app_data_ref::<Capture>()
        .and_then(|c| c.0.replace(outer))
        .unwrap_or_default();
    Ok((result, printed))
}

/// Makes the global `print` write into the answer of the console command
/// running now, and to `elsewhere` when none runs (the engine's states).
pub fn install_print(lua: &Lua, elsewhere: impl Fn(&str) + 'static) -> mlua::Result<()> {
    let print = print_function(lua, elsewhere)?;
    lua.set_named_registry_value(PRINT_KEY, &print)?;
    lua.globals().raw_set("print", print)
}

/// A `print` as [`install_print`]'s.
fn print_function(lua: &Lua, elsewhere: impl Fn(&str) + 'static) -> mlua::Result<Function> {
    prepare(lua)?;
    let tostring: Function = lua.globals().get("tostring")?;
    let print = lua.create_function(move |lua, args: MultiValue| {
        let mut line = String::new();
        for (i, v) in args.into_iter().enumerate() {
            if i > 0 {
                line.push('\t');
            }
            let text: mlua::LuaString = tostring.call(v)?;
            line.push_str(&text.to_string_lossy());
        }
        let captured = lua.app_data_ref::<Capture>().is_some_and(|c| {
            let mut answer = c.0.borrow_mut();
            if let Some(answer) = answer.as_mut() {
                answer.push_str(&line);
                answer.push('\n');
            }
            answer.is_some()
        });
        if !captured {
            elsewhere(&line);
        }
        Ok(())
    })?;
    Ok(print)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain state with `eccluster` and `msys` as globals.
    fn state() -> Lua {
        let lua = Lua::new();
        let ecc = lua.create_table().unwrap();
        install(&lua, &ecc).unwrap();
        let msys = lua.create_table().unwrap();
        install_msys(&lua, &msys).unwrap();
        lua.globals().set("eccluster", ecc).unwrap();
        lua.globals().set("msys", msys).unwrap();
        lua
    }

    fn run(lua: &Lua, code: &str) -> Result<(), String> {
        lua.load(code)
            .set_name("=t.lua")
            .exec()
            .map_err(|e| describe(&e))
    }

    fn call_all(lua: &Lua, hook: Hook, arg: &str) -> Vec<String> {
        registered_hooks(lua, hook)
            .unwrap()
            .iter()
            .map(|h| h.function.call::<String>(arg).unwrap())
            .collect()
    }

    #[test]
    fn hooks_run_in_registration_order_first_and_last() {
        let lua = state();
        assert_eq!(generation(&lua), 0);
        run(
            &lua,
            r#"
            eccluster.register_hook("cluster_nodename", function(n) return n .. "-b" end)
            eccluster.register_hook("cluster_nodename", function(n) return n .. "-a" end, "first")
            eccluster.register_hook("cluster_nodename", function(n) return n .. "-c" end, "last")
            "#,
        )
        .unwrap();
        assert_eq!(
            call_all(&lua, Hook::ClusterNodename, "n"),
            ["n-a", "n-b", "n-c"]
        );
        assert_eq!(generation(&lua), 3);
        let hooks = registered_hooks(&lua, Hook::ClusterNodename).unwrap();
        assert_eq!(hooks[1].registered_at, "t.lua:2");
        assert!(registered_hooks(&lua, Hook::SetBinding).unwrap().is_empty());
    }

    #[test]
    fn unknown_hooks_and_orders_are_errors_naming_the_line_and_the_choices() {
        let lua = state();
        let e = run(&lua, "\neccluster.register_hook('set_bindings', print)").unwrap_err();
        assert_eq!(
            e,
            "t.lua:2: unknown hook 'set_bindings'; the hooks are cluster_nodename, \
             cluster_subcluster, set_binding, membership_update, duravip_gained, duravip_lost"
        );
        let e = run(
            &lua,
            "eccluster.register_hook('set_binding', print, 'middle')",
        )
        .unwrap_err();
        assert_eq!(
            e,
            "t.lua:1: the order is \"first\" or \"last\", not \"middle\""
        );
    }

    #[test]
    fn register_module_methods_are_hooks_and_init_must_return_true() {
        let lua = state();
        run(
            &lua,
            r#"
            local mod = { suffix = "-m" }
            function mod:init() return true end
            function mod:cluster_subcluster(s) return s .. self.suffix end
            msys.registerModule("m", mod)
            "#,
        )
        .unwrap();
        assert_eq!(call_all(&lua, Hook::ClusterSubcluster, "sc"), ["sc-m"]);
        let e = run(
            &lua,
            "local bad = {}\nfunction bad:init() end\nmsys.registerModule('bad', bad)",
        )
        .unwrap_err();
        assert_eq!(e, "t.lua:3: module 'bad': init must return true");
    }

    #[test]
    fn controls_get_cc_and_answer_with_what_they_print() {
        let lua = state();
        let hosts_print: Function = lua.globals().get("print").unwrap();
        let heard = std::rc::Rc::new(RefCell::new(Vec::new()));
        let seen = std::rc::Rc::clone(&heard);
        lua.set_app_data(ControlListener(Box::new(move |def: &ControlDef| {
            seen.borrow_mut().push(def.words.clone());
            Ok(())
        })));
        run(
            &lua,
            r#"
            eccluster.register_control("Policy  Hello", function(cc)
              print("argc", cc.argc)
              print(cc.argv[0], cc.argv[1], cc.argv[2])
              return "done\n"
            end, "<who>", "Says hello.")
            msys.registerControl("boom", function(cc) print("before"); error("broken") end)
            "#,
        )
        .unwrap();
        assert_eq!(*heard.borrow(), ["policy hello", "boom"]);
        let answer = call_control(&lua, "policy hello", &["a".into(), "b".into()]).unwrap();
        assert_eq!(answer, "argc\t3\npolicy hello\ta\tb\ndone\n");
        let e = call_control(&lua, "boom", &[]).unwrap_err();
        assert_eq!(e, "t.lua:7: broken");
        assert!(
            call_control(&lua, "nothing", &[])
                .unwrap_err()
                .contains("no policy script defines the command 'nothing'")
        );
        let defs = registered_controls(&lua).unwrap();
        assert_eq!(
            defs.iter().map(|d| d.words.as_str()).collect::<Vec<_>>(),
            ["boom", "policy hello"]
        );
        assert_eq!(defs[1].usage, "<who>");
        let e = run(&lua, "eccluster.register_control('help me', print)").unwrap_err();
        assert_eq!(e, "t.lua:1: 'help' is reserved by the console");
        // The host's own print is back once the command is over.
        let print: Function = lua.globals().get("print").unwrap();
        assert!(print == hosts_print, "the host's print is restored");
    }

    #[test]
    fn a_listener_may_refuse_a_command() {
        let lua = state();
        lua.set_app_data(ControlListener(Box::new(|def: &ControlDef| {
            Err(format!("'{}' is a built-in command", def.words))
        })));
        let e = run(&lua, "eccluster.register_control('cluster info', print)").unwrap_err();
        assert_eq!(e, "t.lua:1: 'cluster info' is a built-in command");
        assert!(registered_controls(&lua).unwrap().is_empty());
    }
}
