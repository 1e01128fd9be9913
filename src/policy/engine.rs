//! The embedded engine: the node's policy scripts, run in sandboxed Lua
//! 5.4 states, one per host thread.
//!
//! **States.** Lua states are not thread-safe, and one state behind a lock
//! would serialise every MTA thread's policy calls (ecosystem notes §1.7:
//! 1.8 M calls/s shared against 6.3 M with a state per thread). So each
//! thread that calls into the engine gets a state of its own, made on its
//! first call and kept in a thread-local, keyed by engine: a sandbox
//! ([`super::sandbox`]) holding the `eccluster` and `msys` tables, into
//! which every script has been loaded. A script's top level thus runs once
//! per state; hooks and commands it registers are registered in each.
//!
//! **Reloads.** The scripts form a generation, numbered by an epoch. A
//! reload (new scripts from the configuration, or one script replaced
//! through the API) first builds a fresh state on the calling thread and
//! runs the new scripts in it: if one fails, nothing changes and the error
//! (script and line) is returned. Otherwise the epoch moves on, and each
//! thread builds a new state on its next call; states of the old epoch
//! finish the calls they are in.
//!
//! **Limits.** Every call into Lua runs under an instruction budget: a
//! count hook, installed for the state and inherited by the coroutines
//! scripts create, charges the running call, and once the budget is spent
//! it raises an error naming the script and line, which `pcall` cannot
//! catch (see [`super::sandbox`]). Calls made from inside a call
//! (a hook that calls back into the node) share the outer call's budget.
//! Each state has a memory limit. Both stop the call with an error and
//! leave the state usable; after a memory error a state still holding
//! most of its limit (a script that hoards in its globals) is dropped, and
//! the thread's next call builds a fresh one.
//!
//! **Errors** are returned to the caller as one line naming the script and
//! line (or the limit), counted, and kept as the last error for `policy
//! show`; hooks have no caller to return to, so their errors go to the
//! host's log (once per distinct message in a row, so a hook failing on
//! every message does not flood it). A failing hook does not stop the
//! ones after it.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use mlua::{Function, HookTriggers, Lua, Table, VmState};
use parking_lot::{Mutex, RwLock};

use super::errors::{describe, is_memory_error, position};
use super::hooks::{self, ControlDef, ControlListener, Flow, Hook, RegisteredHook};
use super::sandbox;
use crate::config::model::PolicyConfig;
use crate::core::console::reports::PolicyStatus;

/// The limits of every call and state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Lua VM instructions one call may run.
    pub instruction_budget: u32,
    /// Bytes one state may allocate.
    pub memory_limit: usize,
}

impl Limits {
    pub fn from_config(policy: &PolicyConfig) -> Limits {
        Limits {
            instruction_budget: policy.instruction_budget,
            memory_limit: usize::try_from(policy.memory_limit).unwrap_or(usize::MAX),
        }
    }
}

/// A policy script: its name (errors call it `NAME.lua`) and its source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Script {
    pub name: String,
    pub source: String,
}

/// What the engine needs from whoever embeds it (the node).
pub trait PolicyHost: Send + Sync {
    /// Adds the host's functions to a new state's `eccluster` and `msys`
    /// tables, before any script runs. The state lives in a thread-local
    /// of the thread it serves, for as long as that thread: what it
    /// captures must not keep the host alive (hold a weak reference).
    fn install(&self, lua: &Lua, ecc: &Table, msys: &Table) -> mlua::Result<()>;
    /// Whether a script may define a console command with these words (it
    /// may not replace a built-in one).
    fn may_define_control(&self, words: &str) -> Result<(), String>;
    /// Adds (or redefines) a console command whose handler calls
    /// [`Engine::call_control`].
    fn register_control(&self, def: &ControlDef);
    /// Removes a command the current scripts no longer define.
    fn unregister_control(&self, words: &str);
    /// A line for the operator: a script's `print` outside a console
    /// command, a failing hook.
    fn log(&self, line: &str);
}

/// The engine; cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct Engine {
    shared: Arc<Shared>,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("epoch", &self.shared.epoch.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

struct Shared {
    /// Tells this engine's states from other engines' in a thread-local.
    id: u64,
    limits: Limits,
    host: Arc<dyn PolicyHost>,
    generation: RwLock<Arc<Generation>>,
    /// The generation's epoch, read on every call.
    epoch: AtomicU64,
    /// Whether the generation has any script: without one, no call needs
    /// a state.
    has_scripts: AtomicBool,
    /// The commands registered with the host for the current scripts.
    controls: Mutex<BTreeMap<String, ControlDef>>,
    /// One reload at a time.
    reloading: Mutex<()>,
    states: AtomicUsize,
    /// Calls made in states that are gone; the live states count their own.
    retired_calls: AtomicU64,
    live_calls: Mutex<Vec<Weak<CallCount>>>,
    errors: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// The error the log heard last (module docs, "Errors").
    last_logged: Mutex<String>,
}

struct Generation {
    epoch: u64,
    scripts: Vec<Script>,
}

/// One thread's state for one engine.
struct ThreadState {
    engine: Weak<Shared>,
    engine_id: u64,
    epoch: u64,
    lua: Lua,
    budget: Rc<Budget>,
    /// The hook chains, read from the state while its hooks do not change.
    chains: RefCell<Chains>,
    calls: Arc<CallCount>,
}

/// One state's calls: written by its thread only, on a cache line of its
/// own, so that threads calling at once do not share one counter's line.
#[repr(align(64))]
#[derive(Default)]
struct CallCount(AtomicU64);

#[derive(Default)]
struct Chains {
    generation: u64,
    by_hook: [Option<Rc<[RegisteredHook]>>; Hook::ALL.len()],
}

impl Drop for ThreadState {
    fn drop(&mut self) {
        if let Some(shared) = self.engine.upgrade() {
            shared.states.fetch_sub(1, Ordering::Relaxed);
            // Under the lock `status` counts under, so no call is counted
            // twice or not at all.
            let mut live = shared.live_calls.lock();
            live.retain(|c| {
                c.strong_count() > 0 && !std::ptr::eq(c.as_ptr(), Arc::as_ptr(&self.calls))
            });
            let calls = self.calls.0.load(Ordering::Relaxed);
            shared.retired_calls.fetch_add(calls, Ordering::Relaxed);
        }
    }
}

/// The instructions left to the running call (module docs, "Limits").
struct Budget {
    limit: u64,
    left: Cell<u64>,
    /// Calls in progress on this state; the outermost one sets the budget.
    depth: Cell<u32>,
}

/// How often the count hook checks the budget, in instructions.
const CHECK_EVERY: u32 = 1000;

impl Budget {
    fn enter(&self) {
        if self.depth.get() == 0 {
            self.left.set(self.limit);
        }
        self.depth.set(self.depth.get() + 1);
    }

    fn leave(&self) {
        self.depth.set(self.depth.get().saturating_sub(1));
    }
}

thread_local! {
    static STATES: RefCell<Vec<Rc<ThreadState>>> = const { RefCell::new(Vec::new()) };
    /// Engines whose state this thread is building: a script's top level
    /// that calls back into its own engine gets an error, not a second build.
    static BUILDING: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Engine {
    /// An engine without scripts.
    pub fn new(limits: Limits, host: Arc<dyn PolicyHost>) -> Engine {
        Engine {
            shared: Arc::new(Shared {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                limits,
                host,
                generation: RwLock::new(Arc::new(Generation {
                    epoch: 0,
                    scripts: Vec::new(),
                })),
                epoch: AtomicU64::new(0),
                has_scripts: AtomicBool::new(false),
                controls: Mutex::new(BTreeMap::new()),
                reloading: Mutex::new(()),
                states: AtomicUsize::new(0),
                retired_calls: AtomicU64::new(0),
                live_calls: Mutex::new(Vec::new()),
                errors: AtomicU64::new(0),
                last_error: Mutex::new(None),
                last_logged: Mutex::new(String::new()),
            }),
        }
    }

    /// Whether any script is loaded.
    pub fn has_scripts(&self) -> bool {
        self.shared.has_scripts.load(Ordering::Acquire)
    }

    /// The scripts, in load order.
    pub fn scripts(&self) -> Vec<Script> {
        self.shared.generation.read().scripts.clone()
    }

    /// Replaces every script (a reload; module docs). On error nothing
    /// changes.
    pub fn set_scripts(&self, scripts: Vec<Script>) -> Result<(), String> {
        let _one_at_a_time = self.shared.reloading.lock();
        self.commit(scripts)
    }

    /// Loads one script, replacing the one of that name (in its place) or
    /// adding it last; a reload of every script. On error nothing changes.
    pub fn load_script(&self, name: &str, source: &str) -> Result<(), String> {
        let _one_at_a_time = self.shared.reloading.lock();
        let mut scripts = self.scripts();
        let script = Script {
            name: name.to_string(),
            source: source.to_string(),
        };
        match scripts.iter_mut().find(|s| s.name == name) {
            Some(existing) => *existing = script,
            None => scripts.push(script),
        }
        self.commit(scripts)
    }

    /// Validates `scripts` in a fresh state and makes them current.
    fn commit(&self, scripts: Vec<Script>) -> Result<(), String> {
        if let Some(s) = scripts.iter().find(|s| s.name.trim().is_empty()) {
            return Err(format!(
                "a policy script needs a name (source {} bytes)",
                s.source.len()
            ));
        }
        for (i, s) in scripts.iter().enumerate() {
            if scripts[..i].iter().any(|o| o.name == s.name) {
                return Err(format!("two policy scripts are named '{}'", s.name));
            }
        }
        let shared = &self.shared;
        let epoch = shared.generation.read().epoch + 1;
        let next = Generation { epoch, scripts };
        let defined = Rc::new(RefCell::new(Vec::new()));
        if !next.scripts.is_empty() {
            // Dropped at once: threads build their own on their next call.
            build(shared, &next, Some(&defined))?;
        }
        let has_scripts = !next.scripts.is_empty();
        *shared.generation.write() = Arc::new(next);
        shared.has_scripts.store(has_scripts, Ordering::Release);
        shared.epoch.store(epoch, Ordering::Release);
        let defined = defined.take();
        let stale: Vec<String> = {
            let mut controls = shared.controls.lock();
            let stale = controls
                .keys()
                .filter(|w| !defined.iter().any(|d| d.words == **w))
                .cloned()
                .collect();
            *controls = defined
                .iter()
                .map(|d| (d.words.clone(), d.clone()))
                .collect();
            stale
        };
        for words in stale {
            shared.host.unregister_control(&words);
        }
        for def in &defined {
            shared.host.register_control(def);
        }
        Ok(())
    }

    /// What `policy show` prints.
    pub fn status(&self) -> PolicyStatus {
        let shared = &self.shared;
        let generation = shared.generation.read().clone();
        PolicyStatus {
            scripts: generation
                .scripts
                .iter()
                .map(|s| (s.name.clone(), s.source.len()))
                .collect(),
            epoch: generation.epoch,
            states: shared.states.load(Ordering::Relaxed),
            calls: {
                let live = shared.live_calls.lock();
                shared.retired_calls.load(Ordering::Relaxed)
                    + live
                        .iter()
                        .filter_map(Weak::upgrade)
                        .map(|c| c.0.load(Ordering::Relaxed))
                        .sum::<u64>()
            },
            errors: shared.errors.load(Ordering::Relaxed),
            last_error: shared.last_error.lock().clone(),
            instruction_budget: shared.limits.instruction_budget,
            memory_limit: shared.limits.memory_limit,
        }
    }

    /// Runs `f` in this thread's state, under the budget, and accounts
    /// for it (module docs). `context` names what ran, for an error that
    /// has no line of its own (a memory error).
    pub fn call<R>(
        &self,
        context: impl FnOnce() -> String,
        f: impl FnOnce(&Lua) -> mlua::Result<R>,
    ) -> Result<R, String> {
        let state = self.state()?;
        self.call_in(&state, context, f)
    }

    fn call_in<R>(
        &self,
        state: &Rc<ThreadState>,
        context: impl FnOnce() -> String,
        f: impl FnOnce(&Lua) -> mlua::Result<R>,
    ) -> Result<R, String> {
        let shared = &self.shared;
        state.budget.enter();
        let result = f(&state.lua);
        state.budget.leave();
        // Only this thread writes its count: no read-modify-write needed.
        let calls = &state.calls.0;
        calls.store(calls.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        result.map_err(|e| {
            let message = if is_memory_error(&e) {
                self.after_memory_error(state);
                format!(
                    "{}: memory limit of {} bytes reached",
                    context(),
                    shared.limits.memory_limit
                )
            } else {
                describe(&e)
            };
            shared.failed(&message);
            message
        })
    }

    /// Runs a hook's functions in this thread's state, in order, until one
    /// returns [`Flow::Done`]: `each` calls one. A function that fails is
    /// logged, told to `failed`, and the next one runs. Returns what ended
    /// the chain.
    pub fn run_hook(
        &self,
        hook: Hook,
        mut each: impl FnMut(&Lua, &Function) -> mlua::Result<Flow>,
        mut failed: impl FnMut(&str),
    ) -> Flow {
        if !self.has_scripts() {
            return Flow::Continue;
        }
        let chain = self
            .state()
            .and_then(|state| Ok((state.chain(hook).map_err(|e| describe(&e))?, state)));
        let (chain, state) = match chain {
            Ok(found) => found,
            Err(e) => {
                failed(&e);
                return Flow::Continue;
            }
        };
        for registered in chain.iter() {
            let context = || format!("{} (the {} hook)", registered.registered_at, hook.name());
            match self.call_in(&state, context, |lua| each(lua, &registered.function)) {
                Ok(Flow::Done) => return Flow::Done,
                Ok(Flow::Continue) => {}
                Err(e) => {
                    self.shared
                        .log_error(&format!("policy: {} hook: {e}", hook.name()));
                    failed(&e);
                }
            }
        }
        Flow::Continue
    }

    /// Runs a console command a script defined, in this thread's state.
    pub fn call_control(&self, words: &str, args: &[String]) -> Result<String, String> {
        self.call(
            || format!("the command '{words}'"),
            |lua| hooks::call_control(lua, words, args).map_err(mlua::Error::runtime),
        )
    }

    /// This thread's state for the current epoch, built if need be.
    fn state(&self) -> Result<Rc<ThreadState>, String> {
        let shared = &self.shared;
        let epoch = shared.epoch.load(Ordering::Acquire);
        let found = STATES.with_borrow(|states| {
            states
                .iter()
                .find(|s| s.engine_id == shared.id && s.epoch == epoch)
                .cloned()
        });
        if let Some(state) = found {
            return Ok(state);
        }
        if BUILDING.with_borrow(|b| b.contains(&shared.id)) {
            return Err(
                "a policy script's top level called into the policy engine while it was loading"
                    .into(),
            );
        }
        let generation = shared.generation.read().clone();
        BUILDING.with_borrow_mut(|b| b.push(shared.id));
        let built = build(shared, &generation, None);
        BUILDING.with_borrow_mut(|b| b.retain(|id| *id != shared.id));
        let state = Rc::new(built.inspect_err(|e| shared.failed(e))?);
        STATES.with_borrow_mut(|states| {
            // Also drops states of engines that are gone.
            states.retain(|s| s.engine_id != shared.id && s.engine.strong_count() > 0);
            states.push(Rc::clone(&state));
        });
        Ok(state)
    }

    /// After a memory error: collect, and drop the state if it still holds
    /// most of its limit.
    fn after_memory_error(&self, state: &Rc<ThreadState>) {
        let _ = state.lua.gc_collect();
        let used = state.lua.used_memory();
        if used > self.shared.limits.memory_limit / 4 * 3 {
            self.shared.host.log(&format!(
                "policy: this thread's Lua state still uses {used} bytes after a memory error; it is replaced on the next call"
            ));
            STATES.with_borrow_mut(|states| states.retain(|s| !Rc::ptr_eq(s, state)));
        }
    }
}

impl Shared {
    fn failed(&self, message: &str) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock() = Some(message.to_string());
    }

    /// Logs a hook's error unless it repeats the one logged before.
    fn log_error(&self, line: &str) {
        let mut last = self.last_logged.lock();
        if *last != line {
            line.clone_into(&mut last);
            drop(last);
            self.host.log(line);
        }
    }

    /// A console command defined by a state at run time (not in a reload's
    /// validation): registered with the host unless it already is.
    fn define_control(&self, def: &ControlDef) -> Result<(), String> {
        self.host.may_define_control(&def.words)?;
        if self.controls.lock().get(&def.words) == Some(def) {
            return Ok(());
        }
        self.host.register_control(def);
        self.controls.lock().insert(def.words.clone(), def.clone());
        Ok(())
    }
}

impl ThreadState {
    /// A hook's chain, cached until the state's hooks change.
    fn chain(&self, hook: Hook) -> mlua::Result<Rc<[RegisteredHook]>> {
        let index = Hook::ALL.iter().position(|h| *h == hook).unwrap_or(0);
        let generation = hooks::generation(&self.lua);
        {
            let mut chains = self.chains.borrow_mut();
            if chains.generation != generation {
                *chains = Chains {
                    generation,
                    ..Chains::default()
                };
            }
            if let Some(chain) = &chains.by_hook[index] {
                return Ok(Rc::clone(chain));
            }
        }
        let chain: Rc<[RegisteredHook]> = hooks::registered_hooks(&self.lua, hook)?.into();
        self.chains.borrow_mut().by_hook[index] = Some(Rc::clone(&chain));
        Ok(chain)
    }
}

/// Builds a state running `generation`'s scripts. Validating a reload
/// (`defined` is where its commands go), a failing script fails the build;
/// otherwise it is counted and logged, and the others still load.
fn build(
    shared: &Arc<Shared>,
    generation: &Generation,
    defined: Option<&Rc<RefCell<Vec<ControlDef>>>>,
) -> Result<ThreadState, String> {
    let lua = sandbox::new_state(shared.limits.memory_limit)
        .map_err(|e| format!("cannot make a Lua state for the policy: {}", describe(&e)))?;
    let budget = Rc::new(Budget {
        limit: u64::from(shared.limits.instruction_budget),
        left: Cell::new(0),
        depth: Cell::new(0),
    });
    install_budget(&lua, &budget).map_err(|e| describe(&e))?;
    let listener: ControlListener = match defined {
        Some(defined) => {
            let (defined, weak) = (Rc::clone(defined), Arc::downgrade(shared));
            ControlListener(Box::new(move |def: &ControlDef| {
                if let Some(shared) = weak.upgrade() {
                    shared.host.may_define_control(&def.words)?;
                }
                let mut defined = defined.borrow_mut();
                defined.retain(|d| d.words != def.words);
                defined.push(def.clone());
                Ok(())
            }))
        }
        None => {
            let weak = Arc::downgrade(shared);
            ControlListener(Box::new(move |def: &ControlDef| match weak.upgrade() {
                Some(shared) => shared.define_control(def),
                None => Ok(()),
            }))
        }
    };
    lua.set_app_data(listener);
    budget.enter();
    let globals = prepare(&lua, &shared.host, &budget);
    budget.leave();
    let globals =
        globals.map_err(|e| format!("cannot set up the policy's Lua state: {}", describe(&e)))?;
    for script in &generation.scripts {
        budget.enter();
        let ran = sandbox::run_script(&lua, &globals, &script.name, &script.source);
        budget.leave();
        if let Err(e) = ran {
            let message = if is_memory_error(&e) {
                format!(
                    "{}: memory limit of {} bytes reached while loading",
                    sandbox::chunk_name(&script.name),
                    shared.limits.memory_limit
                )
            } else {
                describe(&e)
            };
            if defined.is_some() {
                return Err(message);
            }
            shared.failed(&message);
            shared.log_error(&format!("policy: loading {}: {message}", script.name));
        }
    }
    shared.states.fetch_add(1, Ordering::Relaxed);
    let calls = Arc::new(CallCount::default());
    shared.live_calls.lock().push(Arc::downgrade(&calls));
    Ok(ThreadState {
        calls,
        engine: Arc::downgrade(shared),
        engine_id: shared.id,
        epoch: generation.epoch,
        lua,
        budget,
        chains: RefCell::new(Chains::default()),
    })
}

/// The `eccluster` and `msys` tables, `print`, and the seal; returns the
/// globals' proxy.
fn prepare(lua: &Lua, host: &Arc<dyn PolicyHost>, budget: &Rc<Budget>) -> mlua::Result<Table> {
    let ecc = lua.create_table()?;
    ecc.set("version", crate::node::VERSION)?;
    hooks::install(lua, &ecc)?;
    let msys = lua.create_table()?;
    hooks::install_msys(lua, &msys)?;
    host.install(lua, &ecc, &msys)?;
    let weak = Arc::downgrade(host);
    hooks::install_print(lua, move |line| {
        if let Some(host) = weak.upgrade() {
            host.log(&format!("policy: {line}"));
        }
    })?;
    let budget = Rc::clone(budget);
    let exhausted = lua.create_function(move |_, ()| Ok(budget.left.get() == 0))?;
    sandbox::seal(lua, ecc, msys, exhausted)
}

/// The count hook of the module docs.
fn install_budget(lua: &Lua, budget: &Rc<Budget>) -> mlua::Result<()> {
    let step = CHECK_EVERY
        .min(u32::try_from(budget.limit).unwrap_or(u32::MAX))
        .max(1);
    let budget = Rc::clone(budget);
    lua.set_global_hook(
        HookTriggers::new().every_nth_instruction(step),
        move |_, debug| {
            let left = budget.left.get().saturating_sub(u64::from(step));
            budget.left.set(left);
            if left > 0 {
                return Ok(VmState::Continue);
            }
            let at = position(debug).unwrap_or_else(|| "?".into());
            Err(mlua::Error::runtime(format!(
                "{at}: instruction budget of {} exhausted",
                budget.limit
            )))
        },
    )
}
