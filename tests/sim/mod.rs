//! A deterministic simulator for whole clusters of pure state machines.
//!
//! `core/` is pure (DESIGN §2): every engine takes `now` and its inputs and
//! returns messages to send and events. That lets this module play the
//! world around a cluster — a clock, a network and the processes' fates —
//! and drive it through crashes and partitions in milliseconds, replayably:
//!
//! - **One seed.** Every random choice (loss, delay, boot generations, and
//!   whatever a scenario draws from [`Sim::rng`]) comes from one splitmix64
//!   stream seeded once. Nothing iterates a hash map, so a seed *is* a run.
//!   A panic while a [`Sim`] is alive prints `SIM_SEED=<seed>`; setting that
//!   environment variable replays the run ([`seed_or`], [`sweep`]).
//! - **Event-driven time.** The clock jumps to the next thing that happens:
//!   a message arriving, a node's [`SimNode::next_deadline`], a pause
//!   ending. There is no fixed step, so timing claims are exact (a tick
//!   happens *at* the deadline), and a minute of cluster life is a few
//!   thousand steps. [`Sim::set_max_step`] adds idle steps for invariants
//!   that become false by the mere passing of time.
//! - **Network.** Per directed link (`from → to`): a loss probability and a
//!   delay range (a range, so messages reorder), plus cuts: a partition is a
//!   set of cuts, an asymmetric fault is one cut. Loss and cuts are decided
//!   when a message is sent (it is then "on the wire").
//! - **Reliable links.** [`Effect::SendReliable`] models a message on the
//!   TCP stream of a peer pair: never lost, delivered in order (FIFO per
//!   directed link, with the link's delays), but dropped while the link is
//!   cut in either direction (a connection needs both). When [`Sim::heal`]
//!   restores a pair, both ends get [`SimNode::reconnected`], as a TCP
//!   reconnect would tell them.
//! - **Processes.** A node can be started, crashed (it stops; messages to it
//!   are dropped), restarted with a new boot generation, given a new
//!   generation in place ([`Sim::new_generation`], e.g. `cluster reset`), and
//!   paused: its ticks and receptions are held back for a while, then it
//!   resumes and sees the clock jump — a process whose timers ran late.
//! - **Observers and invariants.** Every event a node emits is logged with
//!   its time and node. Invariants registered with [`Sim::add_invariant`] run
//!   after every step (DESIGN §10), and a violation panics with the recent
//!   history.
//!
//! The engines plug in through the small [`SimNode`] trait; [`membership`]
//! adapts `core::membership`, and [`invariants`] holds the properties
//! checked for it. [`duravip`] composes membership and `core::duravip` per
//! node, as the engine does, with [`duravip_invariants`]. Later engines
//! (replication) add their own adapters next to them.

// Each integration test binary that says `mod sim;` uses a different part
// of this shared code; the rest would warn as dead.
#![allow(dead_code)]

pub mod duravip;
pub mod duravip_invariants;
pub mod invariants;
pub mod membership;
pub mod replication;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable that forces (replays) a seed.
pub const SEED_VAR: &str = "SIM_SEED";
/// The environment variable that sets how many seeds a [`sweep`] runs.
pub const SEEDS_VAR: &str = "SIM_SEEDS";

// ---------------------------------------------------------------------------
// Randomness and seeds
// ---------------------------------------------------------------------------

/// splitmix64: tiny, fast, and good enough for choosing losses and delays.
/// Written here because the crate takes no new dependency for tests.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`), by multiply-shift: no modulo bias worth
    /// the name at the sizes used here.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "Rng::below(0)");
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        assert!(lo <= hi, "Rng::range({lo}, {hi})");
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `p`. Draws nothing when `p` is 0 or 1, so a
    /// lossless network leaves the stream to the delays.
    pub fn chance(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        if p >= 1.0 {
            return true;
        }
        // 53 random bits: exactly representable as an f64 in [0, 1).
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

fn parse_seed(text: &str) -> u64 {
    let t = text.trim();
    let parsed = match t.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => t.parse(),
    };
    parsed.unwrap_or_else(|_| panic!("{SEED_VAR}={text:?} is not a u64 (decimal or 0x hex)"))
}

/// The seed for a single-seed scenario: `SIM_SEED` if set, else `default`.
/// Scenarios keep a fixed default so that CI runs are reproducible; a
/// developer explores other seeds by setting the variable.
pub fn seed_or(default: u64) -> u64 {
    std::env::var(SEED_VAR).map_or(default, |s| parse_seed(&s))
}

/// Runs `f` over several seeds: `base`, `base + 1`, ... (`SIM_SEEDS` of
/// them, else `default_count`). With `SIM_SEED` set it runs that one seed
/// only, so the line a failure prints replays exactly the failing run.
pub fn sweep(base: u64, default_count: u64, mut f: impl FnMut(u64)) {
    if let Ok(s) = std::env::var(SEED_VAR) {
        f(parse_seed(&s));
        return;
    }
    let count = std::env::var(SEEDS_VAR).map_or(default_count, |s| {
        s.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{SEEDS_VAR}={s:?} is not a count"))
    });
    for i in 0..count {
        let seed = base.wrapping_add(i);
        let _guard = SeedGuard {
            seed,
            what: format!("sweep run {} of {count} (base seed {base})", i + 1),
        };
        f(seed);
    }
}

/// Prints the seed when dropped during a panic, so that every failure —
/// an invariant, a scenario's own assertion — says how to replay it.
#[derive(Debug)]
struct SeedGuard {
    seed: u64,
    what: String,
}

impl Drop for SeedGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let test = std::thread::current().name().unwrap_or("?").to_string();
            eprintln!(
                "{} failed: {SEED_VAR}={} (replay: {SEED_VAR}={} cargo test --test <file> {test})",
                self.what, self.seed, self.seed
            );
        }
    }
}

// ---------------------------------------------------------------------------
// The node trait
// ---------------------------------------------------------------------------

/// What a node asks of the world.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect<M, E> {
    /// Send `msg` to the node named `to`, through the simulated network.
    Send { to: String, msg: M },
    /// Send `msg` to `to` on the pair's reliable stream: no loss, in order,
    /// dropped while the link is cut either way (see the module docs).
    SendReliable { to: String, msg: M },
    /// Something for observers; logged with the time and the node's name.
    Event(E),
}

/// A pure state machine the simulator can drive: the same shape as every
/// engine in `core/` (given the time and inputs, it returns effects).
///
/// Contract: after `tick(now)`, `next_deadline()` is later than `now`
/// (otherwise the node would ask to be ticked forever at one instant; the
/// simulator panics rather than spin).
pub trait SimNode {
    type Msg: Clone + Debug;
    type Event: Clone + Debug + PartialEq;

    fn name(&self) -> &str;
    /// Time passes: do what is due at `now`.
    fn tick(&mut self, now: u64) -> Vec<Effect<Self::Msg, Self::Event>>;
    /// A message from `from` arrived at `now`.
    fn receive(
        &mut self,
        now: u64,
        from: &str,
        msg: Self::Msg,
    ) -> Vec<Effect<Self::Msg, Self::Event>>;
    /// When the node next needs a tick (may be in the past: then "now").
    fn next_deadline(&self) -> u64;
    /// The reliable stream to `peer` came back after a cut (a TCP
    /// reconnect): typically, re-send what the peer may have missed.
    fn reconnected(&mut self, _now: u64, _peer: &str) -> Vec<Effect<Self::Msg, Self::Event>> {
        Vec::new()
    }
}

/// Builds a node: `(name, boot generation, now)`. Called for every start
/// and restart, so a restart is a fresh process with a new generation.
pub type Factory<N> = Box<dyn FnMut(&str, u64, u64) -> N>;

/// A property that must hold after every step; `Err` explains the breach.
pub type InvariantFn<N> = fn(&Sim<N>) -> Result<(), String>;

// ---------------------------------------------------------------------------
// The network
// ---------------------------------------------------------------------------

/// How one directed link behaves.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkSpec {
    /// Probability that a message is lost, in [0, 1].
    pub loss: f64,
    /// Delay range in ms, inclusive; a range wider than the send interval
    /// reorders messages.
    pub delay_min: u64,
    pub delay_max: u64,
}

impl LinkSpec {
    pub fn delay(delay_min: u64, delay_max: u64) -> LinkSpec {
        LinkSpec {
            loss: 0.0,
            delay_min,
            delay_max,
        }
    }

    pub fn with_loss(self, loss: f64) -> LinkSpec {
        LinkSpec { loss, ..self }
    }
}

impl Default for LinkSpec {
    /// A healthy LAN-ish link: no loss, 1–10 ms.
    fn default() -> LinkSpec {
        LinkSpec::delay(1, 10)
    }
}

#[derive(Clone, Debug, Default)]
struct Net {
    default: LinkSpec,
    links: BTreeMap<(String, String), LinkSpec>,
    cuts: BTreeSet<(String, String)>,
    /// The largest delay any link has had: messages already in flight keep
    /// the delay they were sent with, so bounds must use this, not today's.
    max_delay_ever: u64,
    /// The latest arrival time on each directed reliable stream (FIFO).
    reliable_last: BTreeMap<(String, String), u64>,
}

impl Net {
    fn spec(&self, from: &str, to: &str) -> LinkSpec {
        self.links
            .get(&(from.to_string(), to.to_string()))
            .copied()
            .unwrap_or(self.default)
    }

    fn lossy(&self) -> bool {
        self.default.loss > 0.0 || self.links.values().any(|l| l.loss > 0.0)
    }
}

/// Message counts, for scenarios that reason about the network.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub sent: u64,
    pub lost: u64,
    pub cut: u64,
    /// Arrived at a node that was not running.
    pub dropped: u64,
    pub delivered: u64,
}

// ---------------------------------------------------------------------------
// The simulator
// ---------------------------------------------------------------------------

/// One event a node emitted, with when and where.
#[derive(Clone, Debug, PartialEq)]
pub struct Logged<E> {
    pub at: u64,
    pub node: String,
    pub event: E,
}

/// A boot generation that stopped existing: crashed, or replaced by a
/// restart or reset. Invariants use these for detection bounds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Death {
    pub name: String,
    pub generation: u64,
    pub at: u64,
}

#[derive(Debug)]
struct Slot<N> {
    /// `None` while crashed.
    node: Option<N>,
    generation: u64,
    paused_until: Option<u64>,
    /// When the node last came back from a pause: it then refreshes its
    /// timers, which restarts its detection clocks.
    resumed_at: Option<u64>,
}

#[derive(Debug)]
struct InFlight<M> {
    from: String,
    to: String,
    msg: M,
}

enum Action {
    Resume(String),
    Deliver,
    Tick(String),
}

/// A simulated cluster of `N` nodes; see the module docs.
pub struct Sim<N: SimNode> {
    now: u64,
    seed: u64,
    instance: u64,
    rng: Rng,
    factory: Factory<N>,
    slots: BTreeMap<String, Slot<N>>,
    /// Keyed by (arrival time, send sequence): ties go in send order.
    queue: BTreeMap<(u64, u64), InFlight<N::Msg>>,
    next_seq: u64,
    net: Net,
    log: Vec<Logged<N::Event>>,
    history: Vec<(u64, String)>,
    deaths: Vec<Death>,
    last_change: u64,
    max_step: Option<u64>,
    invariants: Vec<(&'static str, InvariantFn<N>)>,
    stats: Stats,
    _guard: SeedGuard,
}

impl<N: SimNode> Debug for Sim<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("now", &self.now)
            .field("seed", &self.seed)
            .field("nodes", &self.slots.keys().collect::<Vec<_>>())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<N: SimNode> Sim<N> {
    /// An empty cluster at time 0. Nodes join with [`Sim::start`].
    pub fn new(seed: u64, factory: Factory<N>) -> Sim<N> {
        static INSTANCES: AtomicU64 = AtomicU64::new(0);
        Sim {
            now: 0,
            seed,
            instance: INSTANCES.fetch_add(1, Ordering::Relaxed),
            rng: Rng::new(seed),
            factory,
            slots: BTreeMap::new(),
            queue: BTreeMap::new(),
            next_seq: 0,
            net: Net {
                max_delay_ever: LinkSpec::default().delay_max,
                ..Net::default()
            },
            log: Vec::new(),
            history: Vec::new(),
            deaths: Vec::new(),
            last_change: 0,
            max_step: None,
            invariants: Vec::new(),
            stats: Stats::default(),
            _guard: SeedGuard {
                seed,
                what: "simulation".into(),
            },
        }
    }

    pub fn now(&self) -> u64 {
        self.now
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// A number unique to this simulator in the process, for invariants
    /// that memoise work between steps.
    pub fn instance(&self) -> u64 {
        self.instance
    }

    /// How many faults and other changes (starts, crashes, network changes)
    /// have been made so far: equal counts mean the same world.
    pub fn changes(&self) -> usize {
        self.history.len()
    }

    /// The run's random stream, for scenario choices (which node to crash,
    /// where to split) so that they too replay from the seed.
    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Checks `check` after every step from now on.
    pub fn add_invariant(&mut self, name: &'static str, check: InvariantFn<N>) {
        self.invariants.push((name, check));
    }

    /// Without steps of its own the clock only stops where something
    /// happens; with a cap it also stops at least every `cap` ms, so that
    /// invariants about elapsed time are checked near the moment they
    /// could first fail.
    pub fn set_max_step(&mut self, cap: Option<u64>) {
        assert!(cap != Some(0), "a zero step never advances");
        self.max_step = cap;
    }

    // --- processes -------------------------------------------------------

    /// Starts (or, after a crash, restarts) `name` as a new process with a
    /// fresh boot generation.
    pub fn start(&mut self, name: &str) {
        let previous = self.slots.get(name).map(|s| s.generation);
        if self.is_live(name) {
            panic!("start({name}): already running");
        }
        let generation = self.fresh_generation(previous);
        let node = (self.factory)(name, generation, self.now);
        assert_eq!(node.name(), name, "the factory built the wrong node");
        self.slots.insert(
            name.to_string(),
            Slot {
                node: Some(node),
                generation,
                paused_until: None,
                resumed_at: None,
            },
        );
        self.note(format!("start {name} generation {generation}"));
    }

    /// Stops `name` at once: it neither ticks nor receives; what it already
    /// sent is still on the wire.
    pub fn crash(&mut self, name: &str) {
        let now = self.now;
        let slot = self.slot_mut(name);
        assert!(slot.node.is_some(), "crash({name}): not running");
        slot.node = None;
        slot.paused_until = None;
        let generation = slot.generation;
        self.deaths.push(Death {
            name: name.to_string(),
            generation,
            at: now,
        });
        self.note(format!("crash {name} generation {generation}"));
    }

    /// Crashes `name` if it runs, then starts it again.
    pub fn restart(&mut self, name: &str) {
        if self.is_live(name) {
            self.crash(name);
        }
        self.start(name);
    }

    /// Gives a running node a new generation in place (`cluster reset`):
    /// `f(node, now, generation)` applies it; its effects are processed.
    pub fn new_generation(
        &mut self,
        name: &str,
        f: impl FnOnce(&mut N, u64, u64) -> Vec<Effect<N::Msg, N::Event>>,
    ) {
        let now = self.now;
        let old = self.slot(name).generation;
        let generation = self.fresh_generation(Some(old));
        let slot = self.slot_mut(name);
        let node = slot.node.as_mut().expect("new_generation: not running");
        let effects = f(node, now, generation);
        slot.generation = generation;
        self.deaths.push(Death {
            name: name.to_string(),
            generation: old,
            at: now,
        });
        self.note(format!("new generation {name}: {old} -> {generation}"));
        self.apply(name, effects);
        self.check();
    }

    /// Holds back `name`'s ticks and arriving messages for `ms`; then it
    /// is ticked at once (its clock has jumped) and gets the held messages
    /// right after, as a descheduled process would.
    pub fn pause(&mut self, name: &str, ms: u64) {
        let until = self.now + ms;
        let slot = self.slot_mut(name);
        assert!(slot.node.is_some(), "pause({name}): not running");
        slot.paused_until = Some(until);
        self.note(format!("pause {name} until {until}"));
    }

    /// Boot generations grow with time, like a real node's (a clock-based
    /// value: a newer generation must compare greater, or peers would take
    /// the restarted node for a stale one). The low bits come from the seed
    /// so that nodes booting in the same millisecond still differ.
    fn fresh_generation(&mut self, previous: Option<u64>) -> u64 {
        let g = ((self.now + 1) << 16) | self.rng.below(1 << 16);
        previous.map_or(g, |p| g.max(p + 1))
    }

    // --- network ---------------------------------------------------------

    /// The spec of every link without one of its own.
    pub fn set_default_link(&mut self, spec: LinkSpec) {
        self.net.max_delay_ever = self.net.max_delay_ever.max(spec.delay_max);
        self.net.default = spec;
        self.note(format!("default link {spec:?}"));
    }

    /// The spec of the directed link `from → to`.
    pub fn set_link(&mut self, from: &str, to: &str, spec: LinkSpec) {
        self.net.max_delay_ever = self.net.max_delay_ever.max(spec.delay_max);
        self.net.links.insert((from.into(), to.into()), spec);
        self.note(format!("link {from}->{to} {spec:?}"));
    }

    /// Cuts `from → to` only: `to → from` keeps working.
    pub fn cut(&mut self, from: &str, to: &str) {
        self.net.cuts.insert((from.into(), to.into()));
        self.note(format!("cut {from}->{to}"));
    }

    /// Cuts every link between nodes of different groups (both ways).
    /// Nodes in no group keep all their links.
    pub fn partition(&mut self, groups: &[&[&str]]) {
        for (i, g) in groups.iter().enumerate() {
            for (j, h) in groups.iter().enumerate() {
                if i != j {
                    for a in *g {
                        for b in *h {
                            self.net.cuts.insert(((*a).into(), (*b).into()));
                        }
                    }
                }
            }
        }
        self.note(format!("partition {groups:?}"));
    }

    /// Restores every cut link (loss and delays are left as they are).
    /// Running pairs that were cut either way reconnect their reliable
    /// streams: both ends get [`SimNode::reconnected`].
    pub fn heal(&mut self) {
        let pairs: BTreeSet<(String, String)> = std::mem::take(&mut self.net.cuts)
            .into_iter()
            .map(|(a, b)| if a < b { (a, b) } else { (b, a) })
            .collect();
        self.note("heal".into());
        let now = self.now;
        for (a, b) in pairs {
            for (me, peer) in [(&a, &b), (&b, &a)] {
                if !self.is_live(peer) {
                    continue;
                }
                let Some(node) = self.slots.get_mut(me).and_then(|s| s.node.as_mut()) else {
                    continue;
                };
                let effects = node.reconnected(now, peer);
                self.apply(me, effects);
            }
        }
        self.check();
    }

    /// Whether `from → to` is not cut.
    pub fn link_up(&self, from: &str, to: &str) -> bool {
        !self.net.cuts.contains(&(from.to_string(), to.to_string()))
    }

    pub fn any_cut(&self) -> bool {
        !self.net.cuts.is_empty()
    }

    /// The longest a message sent so far can have been in flight.
    pub fn max_delay(&self) -> u64 {
        self.net.max_delay_ever
    }

    // --- observers ---------------------------------------------------------

    /// The running node `name` (paused or not).
    pub fn node(&self, name: &str) -> Option<&N> {
        self.slots.get(name).and_then(|s| s.node.as_ref())
    }

    pub fn is_live(&self, name: &str) -> bool {
        self.node(name).is_some()
    }

    pub fn is_paused(&self, name: &str) -> bool {
        self.slots
            .get(name)
            .is_some_and(|s| s.paused_until.is_some())
    }

    /// Running nodes (paused ones included), by name.
    pub fn live(&self) -> impl Iterator<Item = (&str, &N)> {
        self.slots
            .iter()
            .filter_map(|(n, s)| s.node.as_ref().map(|node| (n.as_str(), node)))
    }

    pub fn live_names(&self) -> Vec<String> {
        self.live().map(|(n, _)| n.to_string()).collect()
    }

    /// The current boot generation of `name` (the last one if crashed).
    pub fn generation(&self, name: &str) -> u64 {
        self.slot(name).generation
    }

    pub fn resumed_at(&self, name: &str) -> Option<u64> {
        self.slots.get(name).and_then(|s| s.resumed_at)
    }

    pub fn deaths(&self) -> &[Death] {
        &self.deaths
    }

    /// Every event so far, in order.
    pub fn events(&self) -> &[Logged<N::Event>] {
        &self.log
    }

    /// The events `name` emitted, with their times.
    pub fn events_of<'a>(&'a self, name: &'a str) -> impl Iterator<Item = (u64, &'a N::Event)> {
        self.log
            .iter()
            .filter(move |l| l.node == name)
            .map(|l| (l.at, &l.event))
    }

    /// Since when nothing has disturbed the cluster, if nothing does now:
    /// `None` while any link is lossy or any node is paused; otherwise the
    /// time of the last start, crash, restart, reset, resume or network
    /// change. Cuts that stay put are not a disturbance: a stable partition
    /// is a state the cluster must settle in too.
    pub fn quiet_since(&self) -> Option<u64> {
        let paused = self.slots.values().any(|s| s.paused_until.is_some());
        (!paused && !self.net.lossy()).then_some(self.last_change)
    }

    // --- running -----------------------------------------------------------

    /// Runs until the clock reads `t`, checking invariants after every step.
    pub fn run_until(&mut self, t: u64) {
        assert!(
            t >= self.now,
            "run_until({t}) is in the past (now {})",
            self.now
        );
        while self.step(t) {}
        self.now = t;
        self.check();
    }

    pub fn run_for(&mut self, ms: u64) {
        self.run_until(self.now + ms);
    }

    /// Runs until `pred` holds or the clock reaches `deadline`; returns the
    /// time at which it first held. The state only changes at steps, so
    /// that time is exact.
    pub fn wait_until(
        &mut self,
        deadline: u64,
        mut pred: impl FnMut(&Sim<N>) -> bool,
    ) -> Option<u64> {
        loop {
            if pred(self) {
                return Some(self.now);
            }
            if !self.step(deadline) {
                self.now = self.now.max(deadline);
                self.check();
                return pred(self).then_some(self.now);
            }
        }
    }

    /// Performs the next action due at or before `limit` (or an idle step
    /// when capped); false when there is none.
    pub fn step(&mut self, limit: u64) -> bool {
        let next = self.next_action();
        let at = next.as_ref().map_or(u64::MAX, |(t, _)| *t);
        if let Some(cap) = self.max_step {
            let idle = self.now + cap;
            if idle < at && idle <= limit {
                self.now = idle;
                self.check();
                return true;
            }
        }
        let Some((at, action)) = next else {
            return false;
        };
        if at > limit {
            return false;
        }
        self.now = at;
        match action {
            Action::Resume(name) => {
                let slot = self.slot_mut(&name);
                slot.paused_until = None;
                slot.resumed_at = Some(at);
                self.note(format!("resume {name}"));
                // The late timer fires before the held messages are read:
                // the hard case, where a node that does not notice its own
                // lateness sees every peer silent and accuses them all.
                self.tick(&name);
            }
            Action::Deliver => self.deliver(),
            Action::Tick(name) => self.tick(&name),
        }
        self.check();
        true
    }

    fn tick(&mut self, name: &str) {
        let at = self.now;
        let node = self
            .slot_mut(name)
            .node
            .as_mut()
            .expect("ticked a live node");
        let effects = node.tick(at);
        let next = node.next_deadline();
        assert!(
            next > at,
            "{name}: next_deadline() {next} did not advance past the tick at {at}"
        );
        self.apply(name, effects);
    }

    /// The earliest thing due: a pause ending, then a delivery, then a tick
    /// (that order at equal times, nodes by name, messages by send order).
    fn next_action(&self) -> Option<(u64, Action)> {
        let mut best: Option<(u64, u8, Action)> = None;
        let mut offer = |t: u64, rank: u8, a: Action| {
            if best
                .as_ref()
                .is_none_or(|(bt, br, _)| (t, rank) < (*bt, *br))
            {
                best = Some((t, rank, a));
            }
        };
        for (name, s) in &self.slots {
            if let Some(until) = s.paused_until {
                offer(until, 0, Action::Resume(name.clone()));
            }
        }
        if let Some((&(t, _), _)) = self.queue.first_key_value() {
            offer(t, 1, Action::Deliver);
        }
        for (name, s) in &self.slots {
            if let (Some(node), None) = (&s.node, s.paused_until) {
                offer(
                    node.next_deadline().max(self.now),
                    2,
                    Action::Tick(name.clone()),
                );
            }
        }
        best.map(|(t, _, a)| (t, a))
    }

    fn deliver(&mut self) {
        let ((_, _), m) = self.queue.pop_first().expect("a message is due");
        let paused_until = self.slots.get(&m.to).and_then(|s| s.paused_until);
        if let Some(until) = paused_until {
            // Held in the socket buffer until the process runs again.
            let seq = self.next_seq;
            self.next_seq += 1;
            self.queue.insert((until, seq), m);
            return;
        }
        let now = self.now;
        match self.slots.get_mut(&m.to).and_then(|s| s.node.as_mut()) {
            None => self.stats.dropped += 1,
            Some(node) => {
                self.stats.delivered += 1;
                let effects = node.receive(now, &m.from, m.msg);
                self.apply(&m.to, effects);
            }
        }
    }

    /// Logs events and puts messages on the wire.
    fn apply(&mut self, from: &str, effects: Vec<Effect<N::Msg, N::Event>>) {
        for e in effects {
            match e {
                Effect::Event(event) => self.log.push(Logged {
                    at: self.now,
                    node: from.to_string(),
                    event,
                }),
                Effect::Send { to, msg } => {
                    self.stats.sent += 1;
                    if !self.link_up(from, &to) {
                        self.stats.cut += 1;
                        continue;
                    }
                    let spec = self.net.spec(from, &to);
                    if self.rng.chance(spec.loss) {
                        self.stats.lost += 1;
                        continue;
                    }
                    let at = self.now + self.rng.range(spec.delay_min, spec.delay_max);
                    self.enqueue(at, from, to, msg);
                }
                Effect::SendReliable { to, msg } => {
                    self.stats.sent += 1;
                    if !self.link_up(from, &to) || !self.link_up(&to, from) {
                        self.stats.cut += 1;
                        continue;
                    }
                    let spec = self.net.spec(from, &to);
                    let key = (from.to_string(), to.clone());
                    let last = self.net.reliable_last.get(&key).copied().unwrap_or(0);
                    let at = (self.now + self.rng.range(spec.delay_min, spec.delay_max)).max(last);
                    self.net.reliable_last.insert(key, at);
                    self.enqueue(at, from, to, msg);
                }
            }
        }
    }

    fn enqueue(&mut self, at: u64, from: &str, to: String, msg: N::Msg) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.queue.insert(
            (at, seq),
            InFlight {
                from: from.to_string(),
                to,
                msg,
            },
        );
    }

    fn check(&self) {
        for (name, check) in &self.invariants {
            if let Err(why) = check(self) {
                let recent: Vec<String> = self
                    .history
                    .iter()
                    .rev()
                    .take(12)
                    .rev()
                    .map(|(t, h)| format!("  {t:>7} {h}"))
                    .collect();
                panic!(
                    "invariant {name} broken at t={} ms: {why}\nrecent faults:\n{}",
                    self.now,
                    recent.join("\n")
                );
            }
        }
    }

    fn note(&mut self, what: String) {
        self.last_change = self.now;
        self.history.push((self.now, what));
    }

    fn slot(&self, name: &str) -> &Slot<N> {
        self.slots
            .get(name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    /// An input from outside the cluster (an operator's command) reaches
    /// the running node `name` now: `f` hands it over and returns the
    /// effects, which are carried out as a step's would be.
    pub fn poke(
        &mut self,
        name: &str,
        f: impl FnOnce(&mut N, u64) -> Vec<Effect<N::Msg, N::Event>>,
    ) {
        let at = self.now;
        let node = self
            .slot_mut(name)
            .node
            .as_mut()
            .unwrap_or_else(|| panic!("poke({name}): not running"));
        let effects = f(node, at);
        self.apply(name, effects);
        self.check();
    }

    fn slot_mut(&mut self, name: &str) -> &mut Slot<N> {
        self.slots
            .get_mut(name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }
}
