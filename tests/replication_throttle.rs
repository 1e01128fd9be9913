//! The shared throttle's bound, checked the way the engine runs it: three
//! nodes, each with its own `ThrottleTable`, `Replica` and `Batcher`,
//! passing batches to each other with random delays, under random demand,
//! on a simulated clock with skew. Pure and deterministic: a failure
//! prints its seed and replays exactly.
//!
//! What is checked, per throttle and window (see `shared::throttle`'s
//! module docs for the rule and the proof):
//!
//! * the whole cluster admits at most N + (members - 1), whatever the
//!   demand, when updates reach every peer within one round;
//! * the throttle is not uselessly conservative: in windows of ten rounds
//!   or more, with eps >= 0.5 and N >= 20, and allowing the
//!   `2 * (members - 1)` tokens the rule may strand at a window's end, it
//!   admits at least 90% of N when every node wants more than N, at least
//!   70% of N when a single node does, and at least 80% of the demand
//!   when the cluster wants N or less, spread out.

use std::collections::BTreeMap;
use std::sync::Arc;

use eccluster::core::replicate::Entry;
use eccluster::core::replicate::Replica;
use eccluster::core::replicate::batch::{BatchConfig, Batcher};
use eccluster::shared::Counted;
use eccluster::shared::throttle::{Throttle, ThrottleTable};

const NODES: usize = 3;
const NAMES: [&str; NODES] = ["t1", "t2", "t3"];
/// The engine passes every 50 ms; batches wait up to 200 ms; transit
/// takes up to 150 ms; clocks differ by up to 20 ms. An admission is in
/// every peer's view within 50 + 200 + 50 + 150 = 450 ms, and
/// 450 + 2 * 20 <= 500: one round.
const PASS_MS: u64 = 50;
const MAX_DELAY_MS: u64 = 200;
const MAX_TRANSIT_MS: u64 = 150;
const MAX_SKEW_MS: u64 = 20;
const ROUND_MS: u64 = 500;
const STEP_MS: u64 = 10;
const RUN_MS: u64 = 40_000;
/// Divisible by every period used, so the run starts on a window edge.
const START_MS: u64 = 1_700_000_000_000 / 3_600_000 * 3_600_000;

/// splitmix64: enough randomness for a simulation, and no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// What the cluster wants in one window of one throttle.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Demand {
    /// Every node wants three times N, spread over the window.
    HeavyAll,
    /// One node wants three times N; the others nothing.
    HeavyOne(usize),
    /// The cluster wants `u * N` (u <= 1), spread over nodes and window.
    Light(f64),
    /// Every node wants N within the window's first 100 ms.
    Burst,
}

fn demand_of(seed: u64, throttle: usize, window: u64) -> Demand {
    let mut r = Rng(seed ^ (throttle as u64) << 40 ^ window.wrapping_mul(0x2545_f491_4f6c_dd1d));
    match r.below(4) {
        0 => Demand::HeavyAll,
        1 => Demand::HeavyOne(r.below(NODES as u64) as usize),
        2 => Demand::Light(0.3 + 0.7 * r.unit()),
        _ => Demand::Burst,
    }
}

/// Attempts node `node` makes in one step of a window of `steps` steps.
fn attempts(d: Demand, node: usize, n: u64, step: u64, steps: u64, r: &mut Rng) -> u64 {
    let rate = match d {
        Demand::HeavyAll => 3.0 * n as f64 / steps as f64,
        Demand::HeavyOne(who) if who == node => 3.0 * n as f64 / steps as f64,
        Demand::HeavyOne(_) => 0.0,
        Demand::Light(u) => u * n as f64 / (NODES as f64 * steps as f64),
        Demand::Burst if step < 10 => n as f64 / 10.0,
        Demand::Burst => 0.0,
    };
    rate.floor() as u64 + u64::from(r.unit() < rate.fract())
}

struct Node {
    table: Arc<ThrottleTable>,
    throttles: Vec<Arc<Throttle>>,
    replica: Replica,
    batcher: Batcher,
    skew: u64,
    phase: u64,
}

/// Batches in flight by (arrival, sequence): (from, to, entries).
type InFlight = BTreeMap<(u64, u64), (usize, usize, Vec<Entry>)>;

#[derive(Default, Debug)]
struct Tally {
    admitted: u64,
    demand: u64,
}

struct Outcome {
    /// (throttle, window) -> what was wanted and admitted, cluster-wide.
    windows: BTreeMap<(usize, u64), Tally>,
    limits: Vec<(u64, u64)>,
    eps: Vec<f64>,
}

fn simulate(seed: u64) -> Outcome {
    let mut r = Rng(seed);
    let periods = [1u64, 2, 3, 5, 6, 10];
    let limits: Vec<(u64, u64)> = (0..2)
        .map(|_| {
            let n = match r.below(3) {
                0 => 1 + r.below(20),
                1 => 20 + r.below(200),
                _ => 200 + r.below(1500),
            };
            (n, periods[r.below(periods.len() as u64) as usize])
        })
        .collect();
    let eps: Vec<f64> = (0..2)
        .map(|_| match r.below(3) {
            0 => 0.95,
            1 => 0.99,
            _ => 0.05 + 0.9 * r.unit(),
        })
        .collect();
    let mut nodes: Vec<Node> = (0..NODES)
        .map(|_| {
            let table = Arc::new(ThrottleTable::new(ROUND_MS));
            let throttles = limits
                .iter()
                .zip(&eps)
                .enumerate()
                .map(|(i, ((n, s), e))| {
                    table
                        .define(&format!("thr{i}"), &format!("{n}/{s}"), Some(*e))
                        .expect("valid")
                })
                .collect();
            Node {
                table,
                throttles,
                replica: Replica::new(),
                batcher: Batcher::new(BatchConfig {
                    max_delay_ms: MAX_DELAY_MS,
                    max_pending: 100_000,
                }),
                skew: r.below(MAX_SKEW_MS + 1),
                phase: r.below(PASS_MS / STEP_MS) * STEP_MS,
            }
        })
        .collect();
    let mut queue = InFlight::new();
    let mut seq = 0u64;
    let mut windows: BTreeMap<(usize, u64), Tally> = BTreeMap::new();
    let mut t = START_MS;
    while t < START_MS + RUN_MS {
        while let Some(entry) = queue.first_entry() {
            if entry.key().0 > t {
                break;
            }
            let (from, to, entries) = entry.remove();
            let node = &mut nodes[to];
            for c in node.replica.apply(NAMES[from], 1, &entries) {
                node.table.set_peer_sum(&c.key, c.peer_sum);
            }
        }
        for (i, node) in nodes.iter_mut().enumerate() {
            let now = t + node.skew;
            if (t - START_MS) % PASS_MS == node.phase {
                let counted: &dyn Counted = &*node.table;
                counted.maintain(now, NODES);
                for (key, value) in counted.drain_changed() {
                    node.batcher.note(now, key, value);
                }
                if node.batcher.due(now) {
                    let entries = node.batcher.take();
                    for to in (0..NODES).filter(|&to| to != i) {
                        let at = t + r.below(MAX_TRANSIT_MS + 1);
                        seq += 1;
                        queue.insert((at, seq), (i, to, entries.clone()));
                    }
                }
            }
            for (k, th) in node.throttles.iter().enumerate() {
                let period = limits[k].1 * 1000;
                let window = now / period;
                let steps = period / STEP_MS;
                let step = (now % period) / STEP_MS;
                let d = demand_of(seed, k, window);
                let want = attempts(d, i, limits[k].0, step, steps, &mut r);
                let tally = windows.entry((k, window)).or_default();
                tally.demand += want;
                for _ in 0..want {
                    if th.consume_n_at(now, 1) {
                        tally.admitted += 1;
                    }
                }
            }
        }
        t += STEP_MS;
    }
    // Only windows every node saw from start to end.
    windows.retain(|(k, w), _| {
        let period = limits[*k].1 * 1000;
        w * period >= START_MS + MAX_SKEW_MS && (w + 1) * period <= START_MS + RUN_MS
    });
    Outcome {
        windows,
        limits,
        eps,
    }
}

/// Tokens the rule may leave unused at a window's end, whatever N: a node
/// holds back at least one per peer while any of theirs may be unseen.
const SLACK: u64 = 2 * (NODES as u64 - 1);

#[test]
fn three_nodes_never_admit_more_than_n_plus_two_per_window_and_use_most_of_n() {
    let mut worst = [1.0f64; 3];
    let mut checked = 0;
    for seed in 0..60u64 {
        let out = simulate(seed);
        for ((k, w), tally) in &out.windows {
            let (n, s) = out.limits[*k];
            let d = demand_of(seed, *k, *w);
            let ctx = format!(
                "seed {seed}, throttle {n}/{s} eps {:.3}, window {w}, {d:?}: {tally:?}",
                out.eps[*k]
            );
            assert!(
                tally.admitted <= n + (NODES as u64 - 1),
                "over the bound: {ctx}"
            );
            checked += 1;
            // Utilisation, where the window has ten rounds or more, eps is
            // at least 0.5 and N is not of the order of the node count.
            if s * 1000 / ROUND_MS < 10 || out.eps[*k] < 0.5 || n < 20 {
                continue;
            }
            let (i, share, floor) = match d {
                Demand::HeavyAll => (0, (tally.admitted + SLACK) as f64 / n as f64, 0.9),
                Demand::HeavyOne(_) => (1, (tally.admitted + SLACK) as f64 / n as f64, 0.7),
                Demand::Light(_) if tally.demand <= n && tally.demand > 0 => (
                    2,
                    (tally.admitted + SLACK) as f64 / tally.demand as f64,
                    0.8,
                ),
                _ => continue,
            };
            worst[i] = worst[i].min(share);
            assert!(share >= floor, "too conservative ({share:.3}): {ctx}");
        }
    }
    assert!(checked > 1000, "only {checked} windows checked");
    eprintln!(
        "worst utilisation: heavy all {:.3}, heavy one {:.3}, light {:.3}",
        worst[0], worst[1], worst[2]
    );
}
