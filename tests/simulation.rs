//! Whole-cluster membership scenarios in the deterministic simulator
//! (`tests/sim`). Every scenario runs from one seed (`SIM_SEED` replays a
//! failure; `SIM_SEEDS` widens the sweep) with the membership invariants
//! checked after every step, and asserts its own behaviour on top.

mod sim;

use eccluster::config::model::QuorumMode;
use eccluster::core::membership::Event;
use eccluster::core::wire::PeerState;

use sim::LinkSpec;
use sim::membership::{MemberNode, cluster, config, started};

const FIVE: [&str; 5] = ["a", "b", "c", "d", "e"];
const HB: u64 = 250;
const SUSPECT: u64 = 750;
const DOWN: u64 = 1250;

fn five(seed: u64, quorum: QuorumMode) -> sim::Sim<MemberNode> {
    started(seed, config(&FIVE, quorum), LinkSpec::delay(1, 20))
}

/// Runs until every running node holds the same agreed view of `n` members
/// and names one leader; panics with the views if that takes past `within`.
fn converge(sim: &mut sim::Sim<MemberNode>, n: usize, within: u64) -> u64 {
    let deadline = sim.now() + within;
    let at = sim.wait_until(deadline, |s| {
        s.all_agree() && s.live().all(|(name, _)| s.view_of(name).len() == n)
    });
    let views: Vec<_> = sim
        .live_names()
        .iter()
        .map(|n| (n.clone(), sim.view_of(n)))
        .collect();
    let at = at.unwrap_or_else(|| panic!("no agreed view of {n} by {deadline}: {views:?}"));
    assert_eq!(sim.leaders().len(), 1, "{:?}", sim.leaders());
    at
}

#[test]
fn join_nodes_starting_at_different_times_converge() {
    let cfg = config(&FIVE, QuorumMode::Majority);
    let mut sim = cluster(sim::seed_or(1), cfg, LinkSpec::delay(1, 20));
    for (name, at) in FIVE.iter().zip([0, 300, 1100, 2000, 4000]) {
        sim.run_until(at);
        sim.start(name);
    }
    // The last node is heard within a heartbeat, and everyone's view id
    // reaches everyone within another.
    let at = converge(&mut sim, 5, 2 * (HB + 20));
    assert!(at >= 4000);
    assert_eq!(sim.leaders().into_iter().collect::<Vec<_>>(), ["a"]);
    for name in FIVE {
        assert!(sim.membership(name).quorum().has_quorum());
    }
}

#[test]
fn crash_is_detected_within_the_bound_and_a_new_leader_takes_over() {
    let mut sim = five(sim::seed_or(2), QuorumMode::Majority);
    converge(&mut sim, 5, 2000);
    sim.run_for(1000);
    let crashed_at = sim.now();
    sim.crash("a"); // the leader
    let bound = DOWN + HB + sim.max_delay();
    sim.run_for(bound + 1000);
    for survivor in ["b", "c", "d", "e"] {
        let down = sim
            .down_at(survivor, "a", crashed_at)
            .unwrap_or_else(|| panic!("{survivor} never marked a down"));
        let took = down - crashed_at;
        assert!(took <= bound, "{survivor} took {took} ms > bound {bound}");
        // Not too early either: a was alive until the crash.
        assert!(
            took >= DOWN - HB - sim.max_delay(),
            "{survivor}: down after {took} ms"
        );
    }
    converge(&mut sim, 4, 1000);
    assert_eq!(sim.leaders().into_iter().collect::<Vec<_>>(), ["b"]);
}

#[test]
fn restart_with_a_new_generation_is_seen_as_a_restart() {
    let mut sim = five(sim::seed_or(3), QuorumMode::None);
    converge(&mut sim, 5, 2000);
    let old = sim.generation("c");
    sim.crash("c");
    sim.run_for(300); // back before anyone declares it down
    let restarted_at = sim.now();
    sim.start("c");
    let new = sim.generation("c");
    assert!(new > old);
    converge(&mut sim, 5, 2 * (HB + 20));
    for survivor in ["a", "b", "d", "e"] {
        let seen = sim.events_of(survivor).any(|(t, e)| {
            t >= restarted_at
                && *e
                    == Event::MemberRestarted {
                        name: "c".into(),
                        old,
                        new,
                    }
        });
        assert!(seen, "{survivor} did not see c restart");
        assert!(
            sim.down_at(survivor, "c", 0).is_none(),
            "{survivor} declared c down: it was back within 300 ms"
        );
        let view = sim.membership(survivor).view();
        assert!(
            view.members
                .iter()
                .any(|m| m.name == "c" && m.generation == new)
        );
    }
}

#[test]
fn reset_gives_a_new_generation_in_place() {
    let mut sim = five(sim::seed_or(4), QuorumMode::None);
    converge(&mut sim, 5, 2000);
    let old = sim.generation("d");
    sim.reset("d");
    let new = sim.generation("d");
    converge(&mut sim, 5, 2 * (HB + 20));
    let restarted = |s: &sim::Sim<MemberNode>, who: &str| {
        s.events_of(who).any(|(_, e)| {
            *e == Event::MemberRestarted {
                name: "d".into(),
                old,
                new,
            }
        })
    };
    assert!(["a", "b", "c", "e"].iter().all(|w| restarted(&sim, w)));
}

#[test]
fn partition_each_side_converges_and_heals() {
    let mut sim = five(sim::seed_or(5), QuorumMode::Majority);
    converge(&mut sim, 5, 2000);
    sim.partition(&[&["a", "b", "c"], &["d", "e"]]);
    sim.run_for(DOWN + HB + sim.max_delay() + 2 * (HB + 20));
    for name in ["a", "b", "c"] {
        assert_eq!(sim.view_of(name), ["a", "b", "c"]);
        assert!(sim.membership(name).agreement().agreed);
        assert_eq!(sim.membership(name).leader(), "a");
        assert!(sim.membership(name).quorum().has_quorum(), "3 of 5");
    }
    for name in ["d", "e"] {
        assert_eq!(sim.view_of(name), ["d", "e"]);
        assert!(sim.membership(name).agreement().agreed);
        assert_eq!(sim.membership(name).leader(), "d");
        assert!(!sim.membership(name).quorum().has_quorum(), "2 of 5");
    }
    sim.heal();
    converge(&mut sim, 5, 2 * (HB + 20));
    assert_eq!(sim.leaders().into_iter().collect::<Vec<_>>(), ["a"]);
}

/// An asymmetric cut in a larger cluster: a -> b is lost, everything else
/// works. b stops hearing a and suspects it, but c, d and e keep reporting
/// that they hear a, so b does not down it (indirect evidence): the view
/// stays whole and agreed, and a refutes b's suspicion once.
#[test]
fn asymmetric_cut_keeps_a_node_that_others_hear() {
    let mut sim = five(sim::seed_or(6), QuorumMode::None);
    converge(&mut sim, 5, 2000);
    let cut_at = sim.now();
    sim.cut("a", "b"); // a -> b lost; b -> a fine
    let suspected = sim.wait_until(cut_at + SUSPECT + HB + sim.max_delay(), |s| {
        s.membership("b").member("a").unwrap().state == PeerState::Suspect
    });
    assert!(suspected.is_some(), "b never suspected a");
    let refuted = sim.wait_until(sim.now() + HB + sim.max_delay(), |s| {
        s.events_of("a")
            .any(|(t, e)| t >= cut_at && matches!(e, Event::Refuted { by, .. } if by == "b"))
    });
    assert!(refuted.is_some(), "a did not refute b's suspicion");
    sim.run_for(4 * DOWN);
    assert_eq!(
        sim.membership("b").member("a").unwrap().state,
        PeerState::Suspect
    );
    assert_eq!(sim.view_of("b"), FIVE, "others' reports keep a in b's view");
    assert!(sim.all_agree());
    assert!(
        !sim.events_of("b")
            .any(|(t, e)| t >= cut_at && matches!(e, Event::MemberDown { .. })),
        "b downed a node that everyone else hears"
    );
    // A refutation is made once per accusation, not once per heartbeat.
    let incarnation = sim.membership("a").me().incarnation;
    assert!(incarnation >= 1);
    sim.run_for(2000);
    assert_eq!(sim.membership("a").me().incarnation, incarnation);
    sim.heal();
    // a was in every view all along; its next heartbeat reaches b directly.
    sim.run_for(2 * (HB + 20));
    let b = sim.membership("b");
    let a_at_b = b.member("a").unwrap();
    assert_eq!(
        (a_at_b.state, a_at_b.info.incarnation),
        (PeerState::Alive, incarnation)
    );
}

/// The same cut between two nodes: no third witness, so b downs a, a learns
/// it and refutes, and the disagreement is visible until the link heals.
#[test]
fn asymmetric_cut_between_two_nodes_is_refuted_and_visible_as_disagreement() {
    let cfg = config(&["a", "b"], QuorumMode::None);
    let mut sim = started(sim::seed_or(16), cfg, LinkSpec::delay(1, 20));
    converge(&mut sim, 2, 2000);
    let cut_at = sim.now();
    sim.cut("a", "b");
    let down = sim.wait_until(cut_at + DOWN + HB + sim.max_delay(), |s| {
        s.membership("b").member("a").unwrap().state == PeerState::Down
    });
    assert!(down.is_some(), "b never downed a");
    let refuted = sim.wait_until(sim.now() + HB + sim.max_delay(), |s| {
        s.events_of("a")
            .any(|(t, e)| t >= cut_at && matches!(e, Event::Refuted { by, .. } if by == "b"))
    });
    assert!(refuted.is_some(), "a did not refute b's accusation");
    sim.run_for(2 * (HB + 20));
    assert_eq!(sim.view_of("b"), ["b"]);
    assert_eq!(sim.view_of("a"), ["a", "b"]);
    let agreement = sim.membership("a").agreement();
    assert!(!agreement.agreed);
    assert!(
        agreement.disagreeing.iter().any(|(n, _)| n == "b"),
        "{agreement:?}"
    );
    sim.heal();
    converge(&mut sim, 2, 2 * (HB + 20));
    assert!(sim.all_agree());
}

/// 20 % loss on every link, 1–50 ms jitter, 60 s, 5 nodes, default
/// thresholds (down after 5 heartbeats): no member may flap.
///
/// Silence on one link alone would flap: with independent loss `p` a peer is
/// downed when 5–6 heartbeats in a row are lost, at 6: per received heartbeat
/// `p^5 · (p + (1-p)·0.49)` ≈ 1.9e-4 with this jitter, ≈ 0.7 downs per run
/// (measured before indirect evidence: 53 % of 400 seeds clean; at 5 it is
/// about five times worse). A down now
/// also needs every member we hear to have missed the peer for as long, so
/// a false down needs that run on several links at once (≈ 1e-10 per run).
/// Seed 7 was one that failed before.
#[test]
fn heavy_loss_does_not_flap_members() {
    let seed = sim::seed_or(7);
    let mut sim = started(
        seed,
        config(&FIVE, QuorumMode::None),
        LinkSpec::delay(1, 50).with_loss(0.2),
    );
    sim.run_until(60_000);
    let downs: Vec<_> = sim
        .events()
        .iter()
        .filter(|l| matches!(l.event, Event::MemberDown { .. }))
        .map(|l| (l.at, l.node.clone(), l.event.clone()))
        .collect();
    assert!(
        downs.is_empty(),
        "{} MemberDown events under 20 % loss: {downs:?}",
        downs.len()
    );
}

/// What the thresholds do tolerate: at 5 % loss a flap needs a run of 5–6
/// lost heartbeats (≈ 1.6e-7 per heartbeat, < 1e-3 per run), so any
/// `MemberDown` here is the state machine's fault, not the dice's.
#[test]
fn moderate_loss_does_not_flap_members() {
    let mut sim = started(
        sim::seed_or(11),
        config(&FIVE, QuorumMode::None),
        LinkSpec::delay(1, 50).with_loss(0.05),
    );
    sim.run_until(60_000);
    assert_eq!(
        sim.downs_since(0),
        0,
        "{:?}",
        sim.events()
            .iter()
            .filter(|l| matches!(l.event, Event::MemberDown { .. }))
            .collect::<Vec<_>>()
    );
    assert!(sim.stats().lost > 0, "the links did lose messages");
}

#[test]
fn two_node_split_loses_quorum_on_both_sides() {
    let cfg = config(&["a", "b"], QuorumMode::Majority);
    let mut sim = started(sim::seed_or(8), cfg, LinkSpec::delay(1, 20));
    converge(&mut sim, 2, 2000);
    assert!(sim.membership("a").quorum().has_quorum());
    sim.partition(&[&["a"], &["b"]]);
    sim.run_for(DOWN + HB + sim.max_delay());
    for name in ["a", "b"] {
        let m = sim.membership(name);
        assert_eq!(sim.view_of(name), [name]);
        // Each side leads its own view of one...
        assert_eq!(m.leader(), name);
        // ...and with quorum "majority" neither side has quorum (1 of 2),
        // so neither may own a DuraVIP. With quorum "none" (the reference's
        // behaviour) the same facts hold, but the quorum is not enforced:
        // both sides carry on, each as leader, until the link returns.
        let q = m.quorum();
        assert_eq!((q.up, q.needed, q.configured), (1, 2, 2));
        assert!(!q.has_quorum());
    }
    sim.heal();
    converge(&mut sim, 2, 2 * (HB + 20));
    assert_eq!(sim.leaders().into_iter().collect::<Vec<_>>(), ["a"]);
    assert!(sim.membership("b").quorum().has_quorum());
}

#[test]
fn a_node_whose_timers_run_late_accuses_no_one() {
    let mut sim = five(sim::seed_or(9), QuorumMode::None);
    converge(&mut sim, 5, 2000);
    let paused_at = sim.now();
    sim.pause("c", 5000);
    sim.run_for(5000 + 3000);
    let c_events: Vec<_> = sim
        .events_of("c")
        .filter(|(t, _)| *t >= paused_at)
        .collect();
    assert!(
        c_events
            .iter()
            .any(|(t, e)| *t == paused_at + 5000 && matches!(e, Event::TimersLate { .. })),
        "{c_events:?}"
    );
    assert!(
        !c_events
            .iter()
            .any(|(_, e)| matches!(e, Event::MemberDown { .. } | Event::MemberSuspect { .. })),
        "c accused a peer: {c_events:?}"
    );
    for other in ["a", "b", "d", "e"] {
        let down = sim.down_at(other, "c", paused_at).expect("c was silent");
        assert!(down - paused_at <= DOWN + HB + sim.max_delay());
        let back = sim.events_of(other).any(|(t, e)| {
            t >= paused_at + 5000 && matches!(e, Event::MemberUp { name, .. } if name == "c")
        });
        assert!(back, "{other} did not see c come back");
    }
    assert!(sim.all_agree());
}

/// The scenario of the replay test: joins, loss, a crash, a partition.
fn busy_run(seed: u64) -> sim::Sim<MemberNode> {
    let mut sim = five(seed, QuorumMode::None);
    sim.set_default_link(LinkSpec::delay(1, 60).with_loss(0.1));
    sim.run_until(3000);
    sim.crash("b");
    sim.partition(&[&["a", "c"], &["d", "e"]]);
    sim.run_until(6000);
    sim.heal();
    sim.start("b");
    sim.run_until(9000);
    sim
}

#[test]
fn replay_same_seed_same_run_other_seed_other_run() {
    let seed = sim::seed_or(10);
    let one = busy_run(seed);
    let two = busy_run(seed);
    assert!(one.events().len() > 50);
    assert_eq!(one.events(), two.events());
    assert_eq!(one.stats(), two.stats());
    let other = busy_run(seed.wrapping_add(1));
    assert_ne!(one.events(), other.events());
}

/// Crash a random node, split the rest at random, heal, restart; over
/// many seeds, with loss while the faults last. The invariants do the
/// checking; the end state must be one agreed view of all five.
fn crash_and_partition(seed: u64) {
    let mut sim = five(seed, QuorumMode::Majority);
    sim.set_max_step(Some(50));
    converge(&mut sim, 5, 2000);
    let victim = *sim.rng().pick(&FIVE);
    sim.crash(victim);
    let crashed_at = sim.now();
    let mut rest: Vec<&str> = FIVE.iter().copied().filter(|n| *n != victim).collect();
    let split = 1 + sim.rng().below(3) as usize;
    let shift = sim.rng().below(4) as usize;
    rest.rotate_left(shift);
    let (left, right) = rest.split_at(split);
    let wait = sim.rng().range(0, 1500);
    sim.run_for(wait);
    sim.partition(&[left, right]);
    sim.set_default_link(LinkSpec::delay(1, 40).with_loss(0.05));
    sim.run_for(3000);
    for (observer, _) in sim.live() {
        assert!(
            sim.down_at(observer, victim, crashed_at).is_some(),
            "{observer} never downed {victim}"
        );
    }
    sim.set_default_link(LinkSpec::delay(1, 40));
    sim.heal();
    sim.start(victim);
    converge(&mut sim, 5, 2 * (HB + 40) + HB);
    // Let the quiet-convergence invariant run for a while too.
    sim.run_for(DOWN + 4 * (HB + 40));
}

#[test]
fn seed_sweep_crash_and_partition() {
    sim::sweep(1000, 20, crash_and_partition);
}
