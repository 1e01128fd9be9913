//! DuraVIP properties (DESIGN §4) checked after every simulation step, on
//! what is actually *plumbed* (the nodes' `plumbed` sets), not on what the
//! machines believe.
//!
//! Timings, from the nodes' configurations and the network: `I` heartbeat
//! interval, `D` down_after, `δ` the largest link delay ever, `M`
//! view_mature, `B` balance interval, `s` balance_set_size. Derived:
//!
//! - `detect = D + I + δ`: a dead generation leaves every view (membership
//!   invariant (c)).
//! - `member_settle = D + 2·(I + δ)`: a quiet cluster's views are final and
//!   agreed (membership invariant (b)).
//! - `deliver = 4·δ`: a few table exchanges on the reliable links (an
//!   announcement, the reaction to it, and the reaction to that).
//! - `settle = member_settle + M + deliver`: a node that started at the
//!   last change has settled (it acquires nothing for `M`), and a preferred
//!   node that returned is given its IP back.
//!
//! "Quiet since `q`" is [`Sim::quiet_since`]: no loss, no pause, no start,
//! crash or network change since `q`. A **component** is a set of running
//! nodes connected by links that are up both ways; the component checks
//! only run when every component is a clique (symmetric partitions), since
//! what an asymmetric cut should converge to is membership's business.
//!
//! State-only facts (owners per IP, components, the owners `states()`
//! names) are computed once per change of the world and memoised for the
//! steps in between, which only compare times: that keeps a 16-node,
//! 1,000-IP run affordable in debug builds.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::rc::Rc;

use eccluster::config::model::QuorumMode;

use super::duravip::DvNode;
use super::{InvariantFn, Sim};

/// Every DuraVIP invariant, by name, as installed by [`super::duravip::cluster`].
pub const DURAVIP: &[(&str, InvariantFn<DvNode>)] = &[
    (
        "plumbed_is_what_the_machine_owns",
        plumbed_is_what_the_machine_owns,
    ),
    ("quiet_ownership_converges", quiet_ownership_converges),
    ("preferred_node_owns", preferred_node_owns),
    ("quiet_cluster_is_balanced", quiet_cluster_is_balanced),
    (
        "balancing_moves_at_most_a_batch",
        balancing_moves_at_most_a_batch,
    ),
    ("dead_owners_ips_fail_over", dead_owners_ips_fail_over),
    ("one_owner_per_component", one_owner_per_component),
    ("planned_moves_have_one_owner", planned_moves_have_one_owner),
    ("minority_owns_nothing", minority_owns_nothing),
];

type TimingMemo = ((u64, usize), Option<Timing>);

/// The timings above, from the first running node.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub hb: u64,
    pub down: u64,
    pub delta: u64,
    pub mature: u64,
    pub balance: u64,
    pub batch: usize,
    pub quorum: QuorumMode,
    /// Configured nodes (for majority).
    pub configured: usize,
}

impl Timing {
    /// Memoised per world change: every invariant asks after every step.
    pub fn of(sim: &Sim<DvNode>) -> Option<Timing> {
        thread_local! {
            /// (sim instance, changes) and the timing then.
            static TIMING: RefCell<Option<TimingMemo>> = const { RefCell::new(None) };
        }
        let key = (sim.instance(), sim.changes());
        TIMING.with(|cell| {
            let mut cell = cell.borrow_mut();
            match &*cell {
                Some((k, t)) if *k == key => *t,
                _ => {
                    let t = Timing::compute(sim);
                    *cell = Some((key, t));
                    t
                }
            }
        })
    }

    fn compute(sim: &Sim<DvNode>) -> Option<Timing> {
        let (_, n) = sim.live().next()?;
        let m = n.m.config();
        let q = n.m.quorum();
        Some(Timing {
            hb: m.heartbeat_interval_ms,
            down: m.down_after_ms,
            delta: sim.max_delay(),
            mature: n.cfg.view_mature_ms,
            balance: n.cfg.balance_interval_ms,
            batch: n.cfg.balance_set_size,
            quorum: n.cfg.quorum,
            configured: q.configured,
        })
    }

    pub fn detect(&self) -> u64 {
        self.down + self.hb + self.delta
    }

    pub fn member_settle(&self) -> u64 {
        self.down + 2 * (self.hb + self.delta)
    }

    pub fn deliver(&self) -> u64 {
        4 * self.delta
    }

    pub fn settle(&self) -> u64 {
        self.member_settle() + self.mature + self.deliver()
    }

    /// Whether a component of `size` nodes may own anything.
    pub fn may_own(&self, size: usize) -> bool {
        self.quorum == QuorumMode::None || size > self.configured / 2
    }
}

/// What the members of one component claim about one IP (fixed between
/// changes of the world: starts, crashes, cuts).
#[derive(Debug, Default)]
struct IpClaims {
    candidates: Vec<String>,
    broken: bool,
    /// The one preference of the candidates, if they name exactly one and it
    /// is a candidate here.
    preferred: Option<String>,
}

/// What the world says about one IP within one component.
#[derive(Debug)]
struct IpInfo {
    claims: Rc<IpClaims>,
    owners: Vec<String>,
}

/// A component and what its members claim.
#[derive(Debug, Default)]
struct ClaimsOf {
    members: Vec<String>,
    may_own: bool,
    ips: BTreeMap<IpAddr, Rc<IpClaims>>,
    /// Every member claims the same IPs, none broken, no preference at all:
    /// the balance invariant applies.
    balanceable: bool,
}

/// The components and claims of one world, with whether every component is
/// a clique.
type Layout = (Vec<ClaimsOf>, bool);

#[derive(Debug, Default)]
struct Component {
    members: Vec<String>,
    may_own: bool,
    ips: BTreeMap<IpAddr, IpInfo>,
    /// The IPs some check may flag: managed ones not plumbed on exactly one
    /// node (or not on their preferred node alone), unmanaged ones plumbed
    /// somewhere. The others are fine whatever the time.
    odd: Vec<IpAddr>,
    balanceable: bool,
    loads: BTreeMap<String, usize>,
}

/// State-only facts, recomputed when anything changes.
#[derive(Debug, Default)]
struct World {
    components: Vec<Component>,
    /// Every component is a clique.
    cliques: bool,
    /// The last acquire or release of each IP on any running node.
    last_change: BTreeMap<IpAddr, u64>,
    /// How many running nodes have each IP plumbed, whatever the components.
    owner_counts: Rc<BTreeMap<IpAddr, usize>>,
}

type Key = (usize, Vec<(u64, u64)>);
type StatesMemo = ((u64, u64), Rc<World>, Rc<Vec<(IpAddr, String)>>);

#[derive(Debug, Default)]
struct Memo {
    instance: u64,
    key: Option<Key>,
    world: Rc<World>,
    /// What each generation had plumbed when last seen (for deaths).
    last_plumbed: BTreeMap<(String, u64), (u64, Vec<IpAddr>)>,
    /// (quiet_since, deadline, why) of the balance bound.
    balance: Option<(u64, u64, String)>,
    /// Mismatches between the owner a node's machine names and the plumbed
    /// one, per node: for its (generation, dv_seq) and the world.
    states: BTreeMap<String, StatesMemo>,
    /// The layout, for the `changes()` it was computed at.
    layout: Option<(usize, Rc<Layout>)>,
}

thread_local! {
    static MEMO: RefCell<Memo> = RefCell::new(Memo::default());
}

fn with_memo<T>(sim: &Sim<DvNode>, f: impl FnOnce(&mut Memo) -> T) -> T {
    MEMO.with(|m| {
        let mut m = m.borrow_mut();
        if m.instance != sim.instance() {
            *m = Memo {
                instance: sim.instance(),
                ..Memo::default()
            };
        }
        f(&mut m)
    })
}

fn world(sim: &Sim<DvNode>) -> Rc<World> {
    let key: Key = (
        sim.changes(),
        sim.live()
            .map(|(_, n)| (n.generation, n.plumb_seq))
            .collect(),
    );
    with_memo(sim, |memo| {
        if memo.key.as_ref() == Some(&key) {
            return memo.world.clone();
        }
        for (name, n) in sim.live() {
            let k = (name.to_string(), n.generation);
            if memo.last_plumbed.get(&k).map(|(s, _)| *s) != Some(n.plumb_seq) {
                memo.last_plumbed
                    .insert(k, (n.plumb_seq, n.plumbed.keys().copied().collect()));
            }
        }
        let layout = match &memo.layout {
            Some((changes, l)) if *changes == sim.changes() => l.clone(),
            _ => {
                let l = Rc::new(layout(sim));
                memo.layout = Some((sim.changes(), l.clone()));
                l
            }
        };
        let w = Rc::new(compute_world(sim, &layout));
        memo.key = Some(key);
        memo.world = w.clone();
        w
    })
}

/// The components (flood fill over two-way links) and their claims.
fn layout(sim: &Sim<DvNode>) -> Layout {
    let Some(t) = Timing::of(sim) else {
        return Layout::default();
    };
    let live = sim.live_names();
    let both = |a: &str, b: &str| sim.link_up(a, b) && sim.link_up(b, a);
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    let mut groups: Vec<Vec<String>> = Vec::new();
    for start in &live {
        if !seen.insert(start) {
            continue;
        }
        let mut group = vec![start.clone()];
        let mut i = 0;
        while i < group.len() {
            let x = group[i].clone();
            for y in &live {
                if !seen.contains(y.as_str()) && both(&x, y) {
                    seen.insert(y);
                    group.push(y.clone());
                }
            }
            i += 1;
        }
        group.sort();
        groups.push(group);
    }
    let cliques = groups
        .iter()
        .all(|g| g.iter().all(|a| g.iter().all(|b| a == b || both(a, b))));
    let components = groups
        .into_iter()
        .map(|members| {
            let mut ips: BTreeMap<IpAddr, IpClaims> = BTreeMap::new();
            let mut names: BTreeMap<IpAddr, Vec<String>> = BTreeMap::new();
            let mut prefs: BTreeMap<IpAddr, BTreeSet<String>> = BTreeMap::new();
            let mut any_pref = false;
            let mut sets: BTreeSet<Vec<IpAddr>> = BTreeSet::new();
            for name in &members {
                let n = sim.node(name).expect("live");
                sets.insert(n.claims.iter().map(|c| c.ip).collect());
                for c in n.claims.iter() {
                    let info = ips.entry(c.ip).or_default();
                    info.candidates.push(name.clone());
                    match names.get(&c.ip) {
                        None => {
                            names.insert(c.ip, c.names.clone());
                        }
                        Some(first) => info.broken |= *first != c.names,
                    }
                    if let Some(p) = &c.preference {
                        any_pref = true;
                        prefs.entry(c.ip).or_default().insert(p.clone());
                    }
                }
            }
            let mut broken_any = false;
            for (ip, info) in ips.iter_mut() {
                broken_any |= info.broken;
                if let Some(p) = prefs.get(ip)
                    && p.len() == 1
                {
                    let p = p.iter().next().expect("one").clone();
                    if info.candidates.contains(&p) {
                        info.preferred = Some(p);
                    }
                }
            }
            ClaimsOf {
                may_own: t.may_own(members.len()),
                balanceable: !any_pref && !broken_any && sets.len() == 1,
                members,
                ips: ips.into_iter().map(|(ip, c)| (ip, Rc::new(c))).collect(),
            }
        })
        .collect();
    (components, cliques)
}

/// The layout with what is plumbed where now.
fn compute_world(sim: &Sim<DvNode>, layout: &Layout) -> World {
    let mut last_change: BTreeMap<IpAddr, u64> = BTreeMap::new();
    let mut owner_counts: BTreeMap<IpAddr, usize> = BTreeMap::new();
    for (_, n) in sim.live() {
        for (ip, at) in &n.last_change {
            let e = last_change.entry(*ip).or_default();
            *e = (*e).max(*at);
        }
        for ip in n.plumbed.keys() {
            *owner_counts.entry(*ip).or_default() += 1;
        }
    }
    let (claims, cliques) = layout;
    let components = claims
        .iter()
        .map(|c| {
            let mut ips: BTreeMap<IpAddr, IpInfo> = c
                .ips
                .iter()
                .map(|(ip, claims)| {
                    let info = IpInfo {
                        claims: claims.clone(),
                        owners: Vec::new(),
                    };
                    (*ip, info)
                })
                .collect();
            for name in &c.members {
                for ip in sim.node(name).expect("live").plumbed.keys() {
                    ips.entry(*ip)
                        .or_insert_with(|| IpInfo {
                            claims: Rc::default(),
                            owners: Vec::new(),
                        })
                        .owners
                        .push(name.clone());
                }
            }
            let odd = ips
                .iter()
                .filter(|(_, info)| {
                    let managed = c.may_own && !info.claims.broken;
                    if managed {
                        info.owners.len() != 1
                            || info
                                .claims
                                .preferred
                                .as_ref()
                                .is_some_and(|p| info.owners[0] != *p)
                    } else {
                        !info.owners.is_empty()
                    }
                })
                .map(|(ip, _)| *ip)
                .collect();
            let loads = c
                .members
                .iter()
                .map(|m| (m.clone(), sim.node(m).expect("live").plumbed.len()))
                .collect();
            Component {
                members: c.members.clone(),
                may_own: c.may_own,
                ips,
                odd,
                balanceable: c.balanceable,
                loads,
            }
        })
        .collect();
    World {
        components,
        cliques: *cliques,
        last_change,
        owner_counts: Rc::new(owner_counts),
    }
}

/// How many running nodes have each IP plumbed (memoised with the world,
/// so that scenarios may ask after every step).
pub fn owner_counts(sim: &Sim<DvNode>) -> Rc<BTreeMap<IpAddr, usize>> {
    world(sim).owner_counts.clone()
}

/// Quiet for longer than `wait` (and the world is one of cliques)?
fn quiet_for(sim: &Sim<DvNode>, wait: u64) -> Option<u64> {
    let q = sim.quiet_since()?;
    (sim.now() > q + wait).then_some(q)
}

/// (0) Sanity of the harness: what a node has plumbed is exactly what its
/// machine says it owns (`Acquire` / `Release` were carried out).
pub fn plumbed_is_what_the_machine_owns(sim: &Sim<DvNode>) -> Result<(), String> {
    for (name, n) in sim.live() {
        if n.plumbed.len() != n.dv.owned().len() {
            let owned: Vec<_> = n.dv.owned().collect();
            return Err(format!(
                "{name} plumbed {:?} but owns {owned:?}",
                n.plumbed.keys().collect::<Vec<_>>()
            ));
        }
    }
    Ok(())
}

/// DESIGN §4 (1). Once quiet for `settle`, in every component that may own
/// (quorum none, or a majority): every managed IP (a candidate in the
/// component, not BROKEN) is plumbed on exactly one node of the component,
/// unmanaged ones on none; and every member's `states()` names that node
/// as owner (None for unmanaged ones).
///
/// Weaker than stated, by design: a balancing move releases before the new
/// owner acquires (DESIGN §4 (4), release before acquire), so an IP
/// released or acquired within the last `deliver` may be unplumbed for that
/// long, and the nodes' `states()` may lag it by as much; and an orphan may
/// briefly get two owners (see [`one_owner_per_component`]). IPs whose
/// plumbing changed within the last `deliver` are excused; an IP that stays
/// orphaned or doubly owned longer is not.
pub fn quiet_ownership_converges(sim: &Sim<DvNode>) -> Result<(), String> {
    let Some(t) = Timing::of(sim) else {
        return Ok(());
    };
    let Some(q) = quiet_for(sim, t.settle()) else {
        return Ok(());
    };
    let w = world(sim);
    if !w.cliques {
        return Ok(());
    }
    let now = sim.now();
    let recent = |ip: &IpAddr| {
        w.last_change
            .get(ip)
            .is_some_and(|at| *at + t.deliver() >= now)
    };
    for c in &w.components {
        for ip in &c.odd {
            let info = &c.ips[ip];
            let managed = c.may_own && !info.claims.broken;
            let ok = if managed {
                info.owners.len() == 1 || recent(ip)
            } else {
                info.owners.is_empty()
            };
            if !ok {
                return Err(format!(
                    "quiet since {q}: {ip} (managed {managed}, broken {}) is plumbed on {:?} in component {:?}",
                    info.claims.broken, info.owners, c.members
                ));
            }
        }
    }
    // The owner each node names (what its states() shows), compared per
    // node; recomputed when that machine got input or the plumbing changed.
    let mut mismatches: Vec<(IpAddr, String)> = Vec::new();
    for c in &w.components {
        for name in &c.members {
            let n = sim.node(name).expect("live");
            let key = (n.generation, n.dv_seq);
            let cached = with_memo(sim, |memo| match memo.states.get(name) {
                Some((k, world, m)) if *k == key && Rc::ptr_eq(world, &w) => Some(m.clone()),
                _ => None,
            });
            let m = cached.unwrap_or_else(|| {
                let m = Rc::new(said_owner_mismatches(name, n, c));
                with_memo(sim, |memo| {
                    memo.states
                        .insert(name.clone(), (key, w.clone(), m.clone()))
                });
                m
            });
            mismatches.extend(m.iter().cloned());
        }
    }
    // Excuse the IPs that moved just now (their owner in states() lags).
    for (ip, m) in &mismatches {
        if !recent(ip) {
            return Err(format!("quiet since {q}: {ip}: {m}"));
        }
    }
    Ok(())
}

/// Where `name`'s machine names another owner than the plumbing shows, for
/// the IPs of its component (both lists are in IP order: merged, not
/// looked up).
fn said_owner_mismatches(name: &str, n: &DvNode, c: &Component) -> Vec<(IpAddr, String)> {
    let mut said = n.dv.owner_by_ip().peekable();
    let mut out = Vec::new();
    for (ip, info) in &c.ips {
        while said.next_if(|(s, _)| s < ip).is_some() {}
        let says = said.next_if(|(s, _)| s == ip).and_then(|(_, o)| o);
        let actual = (info.owners.len() == 1).then(|| info.owners[0].as_str());
        if says != actual {
            out.push((
                *ip,
                format!(
                    "{name}'s states() says {says:?}, plumbed on {:?}",
                    info.owners
                ),
            ));
        }
    }
    out
}

/// DESIGN §4 (2). Once quiet for `settle`: an IP whose candidates name one
/// preferred node (no conflict), not BROKEN, is plumbed on that node (only)
/// when it is up and a candidate in a component that may own. As in (1), an
/// IP whose plumbing changed within `deliver` is excused (a move in flight).
pub fn preferred_node_owns(sim: &Sim<DvNode>) -> Result<(), String> {
    let Some(t) = Timing::of(sim) else {
        return Ok(());
    };
    let Some(q) = quiet_for(sim, t.settle()) else {
        return Ok(());
    };
    let w = world(sim);
    if !w.cliques {
        return Ok(());
    }
    let now = sim.now();
    for c in w.components.iter().filter(|c| c.may_own) {
        for ip in &c.odd {
            let info = &c.ips[ip];
            if let Some(p) = &info.claims.preferred
                && !info.claims.broken
                && info.owners != [p.clone()]
                && w.last_change
                    .get(ip)
                    .is_none_or(|at| *at + t.deliver() < now)
            {
                return Err(format!(
                    "quiet since {q}: {ip} prefers {p} but is plumbed on {:?}",
                    info.owners
                ));
            }
        }
    }
    Ok(())
}

/// DESIGN §4 (3). In a quiet cluster without preferences where every
/// member claims the same IPs, owned counts differ by at most one.
///
/// The bound: at `t0`, the first step quiet for `settle` (views mature,
/// ownership converged), take the loads, `avg` their mean, `E` the largest
/// excess `load − ⌈avg⌉` and `F` the largest deficit `⌊avg⌋ − load`. Every
/// node above the minimum + 1 balances once per interval `B`, giving up
/// `min(s, load − min − 1)` IPs that go to the least loaded nodes: the most
/// loaded node sheds at least `min(s, E)` per interval and the least loaded
/// gains at least `min(s, F)` (at least one node above it releases into
/// it). So `k = ⌈max(E, F) / s⌉` intervals suffice, plus one for the phase
/// of each node's balancing timer and one for decisions taken on loads a
/// table exchange old: balanced by `t0 + (k + 2)·B + deliver`.
pub fn quiet_cluster_is_balanced(sim: &Sim<DvNode>) -> Result<(), String> {
    let Some(t) = Timing::of(sim) else {
        return Ok(());
    };
    let Some(q) = quiet_for(sim, t.settle()) else {
        return Ok(());
    };
    let w = world(sim);
    if !w.cliques {
        return Ok(());
    }
    let now = sim.now();
    let relevant: Vec<&Component> = w
        .components
        .iter()
        .filter(|c| c.balanceable && c.may_own)
        .collect();
    let spread = |c: &Component| {
        let max = c.loads.values().max().copied().unwrap_or(0);
        let min = c.loads.values().min().copied().unwrap_or(0);
        max - min
    };
    let bound = with_memo(sim, |memo| {
        if memo.balance.as_ref().is_none_or(|(bq, _, _)| *bq != q) {
            let mut k = 0;
            let mut why = String::new();
            for c in &relevant {
                let n = c.loads.len().max(1);
                let total: usize = c.loads.values().sum();
                let ceil = total.div_ceil(n);
                let floor = total / n;
                let e = c.loads.values().map(|l| l.saturating_sub(ceil)).max();
                let f = c.loads.values().map(|l| floor.saturating_sub(*l)).max();
                let worst = e.unwrap_or(0).max(f.unwrap_or(0));
                k = k.max(worst.div_ceil(t.batch.max(1)) as u64);
                why.push_str(&format!("{:?} ", c.loads));
            }
            let deadline = now + (k + 2) * t.balance + t.deliver();
            memo.balance = Some((q, deadline, format!("k={k} from {why}at {now}")));
        }
        memo.balance.clone().expect("set")
    });
    let (_, deadline, why) = bound;
    if now <= deadline {
        return Ok(());
    }
    for c in relevant {
        if spread(c) > 1 {
            return Err(format!(
                "quiet since {q}, balance due by {deadline} ({why}): loads {:?}",
                c.loads
            ));
        }
    }
    Ok(())
}

/// DESIGN §4 (3), the rate. In a quiet cluster (for `settle`) without
/// preferences, a node balances at most once per interval: no node makes
/// more than `s` balancing releases within any window of length `B`.
/// The other kind of release left in a quiet cluster gives way to a
/// second owner (see [`one_owner_per_component`]); it is recognised by
/// another running node holding the IP since before the release.
pub fn balancing_moves_at_most_a_batch(sim: &Sim<DvNode>) -> Result<(), String> {
    let Some(t) = Timing::of(sim) else {
        return Ok(());
    };
    let Some(q) = quiet_for(sim, t.settle()) else {
        return Ok(());
    };
    let now = sim.now();
    let from = (q + t.settle()).max(now.saturating_sub(t.balance - 1));
    for (name, n) in sim.live() {
        if n.has_preferences {
            continue;
        }
        let window = n.releases.iter().rev().take_while(|(at, _)| *at >= from);
        if window.clone().count() <= t.batch {
            // Too few to matter, whatever kind they are.
            continue;
        }
        let recent = window
            .filter(|(at, ip)| {
                !sim.live()
                    .any(|(o, on)| o != name && on.plumbed.get(ip).is_some_and(|since| since <= at))
            })
            .count();
        if recent > t.batch {
            return Err(format!(
                "{name} released {recent} IPs since {from} (batch {}, interval {})",
                t.batch, t.balance
            ));
        }
    }
    Ok(())
}

/// DESIGN §4 (4). A generation that dies (crash, restart) loses its IPs to
/// survivors within `detect + deliver`, counted from the latest death at
/// or after it (an IP handed to a node that died too waits for that one's
/// detection) or the last other change, if later (a partition that
/// followed the crash, healed: the views merge again within the same
/// bound). Failover needs no mature view.
///
/// Checked when there is no cut (a partition is (7)'s business), no loss
/// (so that the last change is known), no pause,
/// the survivors may own (quorum), and some surviving candidate of the IP
/// had been up for `M + I + δ` by then (a node acquires nothing before it
/// has settled, DuraVIP module docs, rule 5). BROKEN IPs are not managed;
/// an IP moved by balancing within `deliver` is excused (release before
/// acquire).
pub fn dead_owners_ips_fail_over(sim: &Sim<DvNode>) -> Result<(), String> {
    let Some(t) = Timing::of(sim) else {
        return Ok(());
    };
    if sim.any_cut() {
        return Ok(());
    }
    let Some(q) = sim.quiet_since() else {
        return Ok(());
    };
    let live: Vec<(&str, &DvNode)> = sim.live().collect();
    if !t.may_own(live.len()) {
        return Ok(());
    }
    let w = world(sim);
    let now = sim.now();
    let deaths = sim.deaths();
    for (i, d) in deaths.iter().enumerate() {
        let last = deaths[i..].iter().map(|x| x.at).fold(q, u64::max);
        let deadline = last + t.detect() + t.deliver();
        if now <= deadline {
            continue;
        }
        let held = with_memo(sim, |memo| {
            memo.last_plumbed
                .get(&(d.name.clone(), d.generation))
                .map(|(_, v)| v.clone())
        });
        for ip in held.unwrap_or_default() {
            let Some(info) = w.components.iter().find_map(|c| c.ips.get(&ip)) else {
                continue;
            };
            if info.claims.broken || !info.owners.is_empty() {
                continue;
            }
            let settled = info.claims.candidates.iter().any(|c| {
                live.iter()
                    .any(|(n, node)| n == c && node.started_at + t.mature + t.hb + t.delta <= last)
            });
            if !settled {
                continue;
            }
            if w.last_change
                .get(&ip)
                .is_some_and(|at| *at + t.deliver() >= now && *at > deadline)
            {
                continue;
            }
            return Err(format!(
                "{ip}, held by {} generation {} (died at {}), is plumbed nowhere at {now} (due by {deadline})",
                d.name, d.generation, d.at
            ));
        }
    }
    Ok(())
}

/// DESIGN §4 (7), after the heal, and "one owner" in general. Both sides
/// of a partition may own an IP (quorum none): they are different
/// components. Within one component, once it has been quiet for
/// `member_settle + deliver` (views merged, each side re-sent its table on
/// reconnect, the owners that are not the keeper released; no maturity
/// needed), no IP stays plumbed on two nodes for longer than `deliver`.
///
/// Weaker than "never two owners": an orphan nobody named a receiver for
/// (a failover, one left waiting at a cold start for its target to
/// settle) goes to the least loaded candidate *as each node computes it
/// from the tables it holds*, and tables are in flight, so two nodes can
/// each compute themselves as the target. The keeper rule resolves it as
/// soon as the tables cross, within a few `δ`; this invariant bounds that.
/// Planned moves name their receiver and never do it
/// ([`planned_moves_have_one_owner`]).
pub fn one_owner_per_component(sim: &Sim<DvNode>) -> Result<(), String> {
    let Some(t) = Timing::of(sim) else {
        return Ok(());
    };
    let Some(q) = quiet_for(sim, t.member_settle() + t.deliver()) else {
        return Ok(());
    };
    let w = world(sim);
    if !w.cliques {
        return Ok(());
    }
    let now = sim.now();
    for c in &w.components {
        for ip in &c.odd {
            let info = &c.ips[ip];
            if info.owners.len() < 2 {
                continue;
            }
            // Since when two nodes have had it: the second acquisition.
            let mut times: Vec<u64> = info
                .owners
                .iter()
                .map(|o| sim.node(o).expect("live").plumbed[ip])
                .collect();
            times.sort_unstable();
            let since = times[1].max(q);
            if now > since + t.deliver() {
                return Err(format!(
                    "quiet since {q}: {ip} is plumbed on {:?} (acquired at {times:?}), all in component {:?}",
                    info.owners, c.members
                ));
            }
        }
    }
    Ok(())
}

/// DESIGN §4 (4), release before acquire, strictly. Once a component has
/// been quiet for `member_settle + deliver` (views agreed, the tables of
/// the last change exchanged, the second owners of a healed split gone),
/// every release in it is a planned move (balancing, a preferred node's
/// return, a manual move): the owner names the receiver in its table, so
/// every node assigns the orphan to that one node, and an IP released in
/// the quiet period is never plumbed on two nodes at once. (An orphan left
/// from before, e.g. one waiting at a cold start for its target to settle,
/// is assigned by loads, which tables in flight can make nodes disagree
/// on: [`one_owner_per_component`] bounds that.)
pub fn planned_moves_have_one_owner(sim: &Sim<DvNode>) -> Result<(), String> {
    let Some(t) = Timing::of(sim) else {
        return Ok(());
    };
    let Some(q) = quiet_for(sim, t.member_settle() + t.deliver()) else {
        return Ok(());
    };
    let w = world(sim);
    if !w.cliques {
        return Ok(());
    }
    for c in &w.components {
        for (ip, info) in &c.ips {
            if info.owners.len() < 2 {
                continue;
            }
            let mut times: Vec<u64> = info
                .owners
                .iter()
                .map(|o| sim.node(o).expect("live").plumbed[ip])
                .collect();
            times.sort_unstable();
            let released_when_quiet = sim
                .live()
                .any(|(_, n)| n.releases.iter().any(|(at, r)| r == ip && *at >= q));
            if times[1] > q + t.member_settle() + t.deliver() && released_when_quiet {
                return Err(format!(
                    "quiet since {q}: {ip} became plumbed on {:?} (acquired at {times:?})",
                    info.owners
                ));
            }
        }
    }
    Ok(())
}

/// DESIGN §4 (7), quorum mode. With `quorum = "majority"`, a component
/// without a majority of the configured nodes has nothing plumbed once the
/// others have left its views and it has heard so: quiet for
/// `detect + deliver`.
pub fn minority_owns_nothing(sim: &Sim<DvNode>) -> Result<(), String> {
    let Some(t) = Timing::of(sim) else {
        return Ok(());
    };
    if t.quorum != QuorumMode::Majority {
        return Ok(());
    }
    let Some(q) = quiet_for(sim, t.detect() + t.deliver()) else {
        return Ok(());
    };
    let w = world(sim);
    if !w.cliques {
        return Ok(());
    }
    for c in w.components.iter().filter(|c| !c.may_own) {
        for name in &c.members {
            let n = sim.node(name).expect("live");
            if !n.plumbed.is_empty() {
                return Err(format!(
                    "quiet since {q}: {name}, in minority {:?}, has {:?} plumbed",
                    c.members,
                    n.plumbed.keys().collect::<Vec<_>>()
                ));
            }
        }
    }
    Ok(())
}
