//! Whole-cluster DuraVIP scenarios in the deterministic simulator: each
//! node runs membership and DuraVIP composed as in the engine
//! (`tests/sim/duravip.rs`), with the DuraVIP invariants of DESIGN §4
//! (`tests/sim/duravip_invariants.rs`) checked after every step. Every
//! scenario runs from one seed (`SIM_SEED` replays a failure; `SIM_SEEDS`
//! widens the sweep).
//!
//! The 16-node scenario runs 1,000 DuraVIPs (`SIM_N=<n>` any size): about
//! 40 s in a debug build on the CI kind of machine, most of it the
//! invariants. It was 48 while every table re-evaluated every IP and cloned
//! every claim (17 minutes for 1,000 in a release build); the machine now
//! keeps an index and visits only its own IPs and the orphans (module docs
//! of `core::duravip`).

mod sim;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Instant;

use eccluster::config::model::QuorumMode;
use eccluster::core::duravip::{DuraVipConfig, Service};

use sim::LinkSpec;
use sim::duravip::{ClaimsOf, DvEvent, DvNode, claim, cluster, dv_config, ip, same_claims};
use sim::duravip_invariants::Timing;

type DvSim = sim::Sim<DvNode>;

const MATURE: u64 = 5000;
const BALANCE: u64 = 10_000;
const LINK: LinkSpec = LinkSpec {
    loss: 0.0,
    delay_min: 1,
    delay_max: 20,
};

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("n{i:02}")).collect()
}

fn started(seed: u64, nodes: &[&str], cfg: DuraVipConfig, claims: ClaimsOf) -> DvSim {
    let mut sim = cluster(seed, nodes, cfg, claims, LINK);
    for n in nodes {
        sim.start(n);
    }
    sim
}

fn timing(sim: &DvSim) -> Timing {
    Timing::of(sim).expect("a node runs")
}

/// Every IP in `ips` has exactly one owner among the running nodes.
fn one_owner_each(sim: &DvSim, ips: &[IpAddr]) -> bool {
    let counts = sim::duravip_invariants::owner_counts(sim);
    counts.len() >= ips.len() && ips.iter().all(|ip| counts.get(ip) == Some(&1))
}

fn spread(sim: &DvSim) -> usize {
    let loads = sim.loads();
    loads.values().max().unwrap_or(&0) - loads.values().min().unwrap_or(&0)
}

fn ips(n: u32) -> Vec<IpAddr> {
    (0..n).map(ip).collect()
}

/// Runs until every IP has one owner and loads are within one; the time.
fn converge_balanced(sim: &mut DvSim, all: &[IpAddr], within: u64) -> u64 {
    let deadline = sim.now() + within;
    sim.wait_until(deadline, |s| spread(s) <= 1 && one_owner_each(s, all))
        .unwrap_or_else(|| {
            panic!(
                "not converged and balanced by {deadline}: loads {:?}",
                sim.loads()
            )
        })
}

/// When an IP was last plumbed on `node` at or after `since`.
fn acquired_at(sim: &DvSim, node: &str, ip: IpAddr, since: u64) -> Option<u64> {
    sim.events_of(node)
        .filter(|(t, e)| *t >= since && **e == DvEvent::Acquired(ip))
        .map(|(t, _)| t)
        .last()
}

#[test]
fn three_nodes_thirty_vips_converge_to_one_balanced_owner_each() {
    let nodes = ["a", "b", "c"];
    let mut sim = started(
        sim::seed_or(101),
        &nodes,
        dv_config(1, QuorumMode::None),
        same_claims(30),
    );
    let all = ips(30);
    // Nothing before the nodes have settled (module docs, rule 5).
    sim.run_until(MATURE - 1);
    assert!(sim.loads().values().all(|l| *l == 0), "{:?}", sim.loads());
    let at = converge_balanced(&mut sim, &all, 1000);
    assert!(at >= MATURE);
    assert_eq!(
        sim.loads().values().copied().collect::<Vec<_>>(),
        [10, 10, 10]
    );
    // Once the tables have gone round, every node's states() agrees.
    sim.run_for(timing(&sim).deliver());
    for name in nodes {
        for s in sim.dv_node(name).dv.states(sim.now()) {
            assert_eq!(s.owner, sim.owners_of(s.ip).first().cloned());
        }
    }
    // Quiet for several intervals: nothing moves.
    let releases = sim.events().len();
    sim.run_for(3 * BALANCE);
    assert!(
        !sim.events()[releases..]
            .iter()
            .any(|l| matches!(l.event, DvEvent::Released(_))),
        "a balanced cluster moved IPs"
    );
}

/// The longest stretch (ms) during which some IP of `watch` had no owner,
/// while running until `until`.
fn longest_gap(sim: &mut DvSim, watch: &[IpAddr], until: u64) -> u64 {
    let mut since: BTreeMap<IpAddr, u64> = BTreeMap::new();
    let mut longest = 0;
    sim.wait_until(until, |s| {
        for ip in watch {
            if s.owners_of(*ip).is_empty() {
                let from = *since.entry(*ip).or_insert(s.now());
                longest = longest.max(s.now() - from);
            } else {
                since.remove(ip);
            }
        }
        false
    });
    longest
}

#[test]
fn the_preferred_node_owns_loses_its_ips_when_it_crashes_and_gets_them_back() {
    let nodes = ["a", "b", "c"];
    // IPs 0..4 prefer c everywhere; 4..12 have no preference.
    let claims: ClaimsOf =
        Box::new(|_| (0..12).map(|i| claim(i, (i < 4).then_some("c"))).collect());
    let mut sim = started(
        sim::seed_or(102),
        &nodes,
        dv_config(1, QuorumMode::None),
        claims,
    );
    let t = timing(&sim);
    let preferred = ips(4);
    sim.wait_until(MATURE + 1000, |s| {
        preferred.iter().all(|ip| s.owners_of(*ip) == ["c"])
    })
    .expect("c owns what it is preferred for");
    sim.run_for(2 * BALANCE);
    assert!(preferred.iter().all(|ip| sim.owners_of(*ip) == ["c"]));

    // c crashes: its IPs move to a survivor within the detection bound.
    let crashed = sim.now();
    sim.crash("c");
    let moved = sim
        .wait_until(crashed + t.detect() + t.deliver(), |s| {
            one_owner_each(s, &preferred)
        })
        .expect("c's IPs failed over");
    println!(
        "preferred node crash: failover after {} ms",
        moved - crashed
    );
    assert!(moved - crashed <= t.detect());

    // c restarts with a new generation: once it has settled (a mature
    // member), its IPs return, released before it plumbs them, so each is
    // unowned only while a table is in flight.
    sim.run_for(3000);
    let restarted = sim.now();
    sim.start("c");
    let gap = longest_gap(&mut sim, &preferred, restarted + t.settle());
    assert!(
        preferred.iter().all(|ip| sim.owners_of(*ip) == ["c"]),
        "not back on c: {:?}",
        preferred
            .iter()
            .map(|ip| sim.owners_of(*ip))
            .collect::<Vec<_>>()
    );
    let back = preferred
        .iter()
        .map(|ip| acquired_at(&sim, "c", *ip, restarted).expect("acquired"))
        .max()
        .unwrap();
    println!(
        "preferred node restart: back after {} ms, longest gap {gap} ms",
        back - restarted
    );
    assert!(back - restarted >= MATURE, "returned before maturity");
    assert!(gap <= t.deliver(), "an IP was unowned for {gap} ms");
}

#[test]
fn conflict_broken_and_unsafe_are_flagged_and_handled() {
    let nodes = ["a", "b", "c"];
    // ip 0: a and b each prefer themselves (conflict); ip 1: c names it
    // differently (BROKEN); ip 2: a also listens on it (UNSAFE).
    let claims: ClaimsOf = Box::new(|node: &str| {
        (0..10)
            .map(|i| {
                let mut c = claim(i, None);
                match (i, node) {
                    (0, "a") | (0, "b") => c.preference = Some(node.to_string()),
                    (1, "c") => c.names = vec!["elsewhere".into()],
                    (2, "a") => c.services.push(Service::Listener(25)),
                    _ => {}
                }
                c
            })
            .collect()
    });
    let mut sim = started(
        sim::seed_or(103),
        &nodes,
        dv_config(1, QuorumMode::None),
        claims,
    );
    sim.run_until(MATURE + 3 * BALANCE);
    assert_eq!(sim.owners_of(ip(0)).len(), 1, "conflict: one owner");
    assert!(sim.owners_of(ip(1)).is_empty(), "BROKEN: no owner");
    assert_eq!(sim.owners_of(ip(2)).len(), 1, "UNSAFE: still one owner");
    for name in nodes {
        // Acquisitions, not just the final state: BROKEN was never plumbed.
        assert!(
            !sim.events_of(name)
                .any(|(_, e)| *e == DvEvent::Acquired(ip(1)))
        );
        let states = sim.dv_node(name).dv.states(sim.now());
        let s = |i: u32| states.iter().find(|s| s.ip == ip(i)).expect("known");
        assert!(s(0).flags.conflict && s(0).owner.is_some(), "{name}");
        assert!(s(1).flags.broken && s(1).owner.is_none(), "{name}");
        assert!(
            s(2).flags.unsafe_services && !s(2).flags.broken && s(2).owner.is_some(),
            "{name}"
        );
        assert!(!s(3).flags.conflict && !s(3).flags.broken && !s(3).flags.unsafe_services);
    }
}

#[test]
fn a_crashed_owner_of_many_ips_fails_over_within_the_bound() {
    let nodes = ["a", "b", "c", "d"];
    let n = 200;
    let mut sim = started(
        sim::seed_or(104),
        &nodes,
        dv_config(2, QuorumMode::None),
        same_claims(n),
    );
    let t = timing(&sim);
    let all = ips(n);
    converge_balanced(&mut sim, &all, MATURE + 2000);
    sim.run_for(BALANCE);
    let loads = sim.loads();
    let victim = loads.iter().max_by_key(|(_, l)| **l).unwrap().0.clone();
    let held: Vec<IpAddr> = sim.dv_node(&victim).plumbed.keys().copied().collect();
    assert!(held.len() >= 50, "{loads:?}");
    let crashed = sim.now();
    sim.crash(&victim);
    sim.wait_until(crashed + t.detect() + t.deliver(), |s| {
        one_owner_each(s, &all)
    })
    .expect("failed over");
    let took = held
        .iter()
        .map(|ip| {
            let owner = sim.owners_of(*ip)[0].clone();
            acquired_at(&sim, &owner, *ip, crashed).expect("acquired after the crash") - crashed
        })
        .max()
        .unwrap();
    println!(
        "crash of {victim} holding {}: all failed over after {took} ms (bound {})",
        held.len(),
        t.detect()
    );
    assert!(took <= t.detect(), "{took} ms");
    assert!(
        took >= t.down - t.hb - t.delta,
        "{took} ms: before detection?"
    );
    // And the survivors end balanced again.
    converge_balanced(&mut sim, &all, 10 * BALANCE);
}

fn partition_and_heal(seed: u64, quorum: QuorumMode) {
    let nodes = ["a", "b", "c"];
    let mut sim = started(seed, &nodes, dv_config(1, quorum), same_claims(30));
    let t = timing(&sim);
    let all = ips(30);
    converge_balanced(&mut sim, &all, MATURE + 2000);
    sim.partition(&[&["a", "b"], &["c"]]);
    sim.run_for(t.detect() + t.deliver());
    let side = |s: &DvSim, ip: IpAddr, group: &[&str]| {
        s.owners_of(ip)
            .iter()
            .filter(|o| group.contains(&o.as_str()))
            .count()
    };
    for ip in &all {
        assert_eq!(side(&sim, *ip, &["a", "b"]), 1, "majority side: {ip}");
        let minority = side(&sim, *ip, &["c"]);
        match quorum {
            QuorumMode::None => assert_eq!(minority, 1, "quorum none: c owns {ip} too"),
            QuorumMode::Majority => assert_eq!(minority, 0, "majority: c owns nothing"),
        }
    }
    sim.run_for(2 * BALANCE);
    let healed = sim.now();
    sim.heal();
    let at = sim
        .wait_until(healed + t.member_settle() + t.deliver(), |s| {
            one_owner_each(s, &all)
        })
        .expect("one owner each after the heal");
    println!(
        "{quorum:?}: one owner each {} ms after the heal",
        at - healed
    );
    let at = converge_balanced(&mut sim, &all, t.settle() + 10 * BALANCE);
    println!("{quorum:?}: balanced {} ms after the heal", at - healed);
    sim.run_for(BALANCE);
}

#[test]
fn partition_and_heal_without_quorum_both_sides_own_then_one() {
    partition_and_heal(sim::seed_or(105), QuorumMode::None);
}

#[test]
fn partition_and_heal_with_majority_the_minority_owns_nothing() {
    partition_and_heal(sim::seed_or(106), QuorumMode::Majority);
}

#[test]
fn a_joining_node_gets_ips_a_batch_per_node_per_interval() {
    for batch in [1, 3] {
        let nodes = ["a", "b", "c", "d"];
        let mut sim = cluster(
            sim::seed_or(107),
            &nodes,
            dv_config(batch, QuorumMode::None),
            same_claims(60),
            LINK,
        );
        for n in ["a", "b", "c"] {
            sim.start(n);
        }
        let all = ips(60);
        converge_balanced(&mut sim, &all, MATURE + 2000);
        sim.run_for(BALANCE);
        let joined = sim.now();
        sim.start("d");
        let at = converge_balanced(&mut sim, &all, 20 * BALANCE);
        // What d gained and kept (a doubly owned orphan given up again is not
        // a balancing move: see one_owner_per_component).
        let d = sim.dv_node("d");
        let gains: Vec<u64> = sim
            .events_of("d")
            .filter_map(|(t, e)| match e {
                DvEvent::Acquired(ip) if d.plumbed.get(ip) == Some(&t) => Some(t),
                _ => None,
            })
            .collect();
        assert_eq!(gains.len(), 15);
        assert!(gains[0] >= joined + MATURE, "d took IPs before maturity");
        // Each of the three others releases at most a batch per interval; d
        // plumbs a released IP within δ, so any window shorter than B − δ
        // sees d gain at most a batch from each.
        let delta = timing(&sim).delta;
        for (i, t0) in gains.iter().enumerate() {
            let within = gains[i..]
                .iter()
                .take_while(|t| **t < t0 + BALANCE - delta)
                .count();
            assert!(
                within <= 3 * batch,
                "batch {batch}: {within} gains from {t0}"
            );
        }
        println!(
            "join, batch {batch}: balanced {} ms after d started ({:?})",
            at - joined,
            sim.loads()
        );
        sim.run_for(2 * BALANCE);
    }
}

/// 16 nodes and `n` DuraVIPs: staggered joins, a crash, a partition and
/// its heal, with every invariant checked after every step; prints the
/// simulated convergence times and the real time taken.
fn large_cluster(seed: u64, n: u32) {
    let real = Instant::now();
    let owned = names(16);
    let nodes: Vec<&str> = owned.iter().map(String::as_str).collect();
    let mut sim = cluster(
        seed,
        &nodes,
        dv_config(2, QuorumMode::None),
        same_claims(n),
        LINK,
    );
    let all = ips(n);
    // Half at once, then one every 700 ms: the last joins after the first
    // have settled, so it gets its share by balancing.
    for (i, name) in nodes.iter().enumerate() {
        let at = (i.saturating_sub(7) as u64) * 700;
        sim.run_until(at);
        sim.start(name);
    }
    let started = sim.now();
    let t = timing(&sim);
    let first = converge_balanced(&mut sim, &all, 20 * BALANCE);
    println!("{n} VIPs: converged and balanced at {first} ms (last start {started} ms)");

    // The busiest node crashes.
    sim.run_for(BALANCE);
    let loads = sim.loads();
    let victim = loads.iter().max_by_key(|(_, l)| **l).unwrap().0.clone();
    let crashed = sim.now();
    sim.crash(&victim);
    let failed_over = sim
        .wait_until(crashed + t.detect() + t.deliver(), |s| {
            one_owner_each(s, &all)
        })
        .expect("failed over")
        - crashed;
    let rebalanced = converge_balanced(&mut sim, &all, 20 * BALANCE) - crashed;
    println!(
        "{n} VIPs: crash of {victim}: failover {failed_over} ms, balanced after {rebalanced} ms"
    );
    assert!(failed_over <= t.detect());

    // Split 10 / 5 (quorum none: both sides own everything), then heal.
    let live = sim.live_names();
    let (left, right) = live.split_at(10);
    let left: Vec<&str> = left.iter().map(String::as_str).collect();
    let right: Vec<&str> = right.iter().map(String::as_str).collect();
    sim.partition(&[&left, &right]);
    let split = sim.now();
    sim.run_for(t.detect() + t.deliver());
    for ip in all.iter().step_by(7) {
        assert_eq!(sim.owners_of(*ip).len(), 2, "{ip}: one owner per side");
    }
    sim.run_for(2 * BALANCE);
    sim.heal();
    let healed = sim.now();
    let one = sim
        .wait_until(healed + t.member_settle() + t.deliver(), |s| {
            one_owner_each(s, &all)
        })
        .expect("one owner each after the heal")
        - healed;
    let balanced = converge_balanced(&mut sim, &all, 30 * BALANCE) - healed;
    println!(
        "{n} VIPs: split at {split} ms; after the heal one owner each in {one} ms, balanced in {balanced} ms"
    );
    sim.run_for(BALANCE);
    println!(
        "{n} VIPs: {} ms simulated, {:?} real, {} messages",
        sim.now(),
        real.elapsed(),
        sim.stats().sent
    );
}

#[test]
fn sixteen_nodes_many_vips_join_crash_partition_heal() {
    let n = std::env::var("SIM_N").map_or(1000, |v| v.parse().unwrap());
    large_cluster(sim::seed_or(108), n);
}

/// `cluster duravip move`, broadcast through a manager: every node gets it
/// now. The IP moves with one owner at every moment (release before
/// acquire, the receiver named), and stays on its target through balancing
/// rounds; a move whose target crashes at once still ends with one owner.
#[test]
fn a_manual_move_lands_on_its_target_and_stays() {
    let nodes = ["a", "b", "c", "d", "e"];
    let mut sim = started(
        sim::seed_or(109),
        &nodes,
        dv_config(1, QuorumMode::None),
        same_claims(40),
    );
    let t = timing(&sim);
    let all = ips(40);
    converge_balanced(&mut sim, &all, MATURE + 2000);
    sim.run_for(BALANCE);
    let moved = ip(7);
    let from = sim.owners_of(moved)[0].clone();
    let to = *nodes.iter().find(|n| **n != from).unwrap();
    let asked = sim.now();
    for n in nodes {
        sim.poke(n, |node, now| node.move_to(now, moved, to));
    }
    let gap = longest_gap(&mut sim, &[moved], asked + t.deliver());
    assert_eq!(
        sim.owners_of(moved),
        [to],
        "moved within {} ms",
        t.deliver()
    );
    assert!(gap <= t.deliver(), "unowned for {gap} ms");
    // Balancing rounds leave it there (its target may own one more than
    // its share now).
    sim.run_for(3 * BALANCE);
    assert_eq!(sim.owners_of(moved), [to]);
    // A move whose target crashes right away: the releaser named it, the
    // view loses it, and the normal rules give the IP one owner.
    let other = ip(8);
    let owner = sim.owners_of(other)[0].clone();
    let target = *nodes.iter().find(|n| **n != owner && **n != to).unwrap();
    for n in nodes {
        sim.poke(n, |node, now| node.move_to(now, other, target));
    }
    sim.crash(target);
    let crashed = sim.now();
    sim.wait_until(crashed + t.detect() + t.deliver(), |s| {
        s.owners_of(other).len() == 1
    })
    .expect("one owner after the target died");
}

/// Random starts, a crash, a random split with loss, heal and restart; the
/// invariants do the checking, and the cluster must end balanced.
fn faults(seed: u64) {
    let nodes = ["a", "b", "c", "d", "e"];
    let mut rng = sim::Rng::new(seed ^ 0x5eed);
    let quorum = if rng.below(2) == 0 {
        QuorumMode::None
    } else {
        QuorumMode::Majority
    };
    let batch = 1 + rng.below(3) as usize;
    // Every other seed, IPs 0..5 prefer one node.
    let preferred = (rng.below(2) == 0).then(|| *rng.pick(&nodes));
    let claims: ClaimsOf = Box::new(move |_| {
        (0..40)
            .map(|i| claim(i, preferred.filter(|_| i < 5)))
            .collect()
    });
    let mut sim = cluster(seed, &nodes, dv_config(batch, quorum), claims, LINK);
    let all = ips(40);
    let mut starts: Vec<(u64, &str)> = nodes.iter().map(|n| (rng.below(4000), *n)).collect();
    starts.sort();
    for (at, n) in starts {
        sim.run_until(at);
        sim.start(n);
    }
    converge_balanced(&mut sim, &all, 20 * BALANCE);
    let victim = *sim.rng().pick(&nodes);
    let wait = sim.rng().range(0, 3 * BALANCE);
    sim.run_for(wait);
    sim.crash(victim);
    let mut rest: Vec<&str> = nodes.iter().copied().filter(|n| *n != victim).collect();
    let split = 1 + sim.rng().below(3) as usize;
    let shift = sim.rng().below(4) as usize;
    rest.rotate_left(shift);
    let (left, right) = rest.split_at(split);
    let wait = sim.rng().range(0, 2000);
    sim.run_for(wait);
    sim.partition(&[left, right]);
    sim.set_default_link(LINK.with_loss(0.05));
    let wait = sim.rng().range(1000, 2 * BALANCE);
    sim.run_for(wait);
    sim.set_default_link(LINK);
    let wait = sim.rng().range(0, BALANCE);
    sim.run_for(wait);
    sim.heal();
    sim.start(victim);
    converge_balanced(&mut sim, &all, 20 * BALANCE);
    sim.run_for(2 * BALANCE);
    if let Some(p) = preferred {
        assert!(
            (0..5).all(|i| sim.owners_of(ip(i)) == [p]),
            "{p} owns its IPs"
        );
    }
}

#[test]
fn seed_sweep_faults() {
    sim::sweep(2000, 8, faults);
}
