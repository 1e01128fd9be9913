//! Unit tests that pass heartbeats between state machines by hand; the
//! simulator (tests/simulation.rs) drives whole clusters.

use super::*;

const HB: u64 = 250;

fn cfg(peers: &[&str]) -> MembershipConfig {
    MembershipConfig {
        heartbeat_interval_ms: HB,
        start_delay_ms: 0,
        suspect_after_ms: 3 * HB,
        down_after_ms: 6 * HB,
        peers: peers.iter().map(|p| p.to_string()).collect(),
        quorum: QuorumMode::None,
    }
}

fn me(name: &str, generation: u64) -> SelfInfo {
    SelfInfo {
        name: name.into(),
        generation,
        incarnation: 0,
        node_type: NodeType::Momentum,
        subcluster: "default".into(),
        pid: 1,
        version: "test".into(),
        port: 4802,
        config_digest: vec![1, 2, 3],
    }
}

fn node(name: &str, generation: u64, peers: &[&str]) -> Membership {
    Membership::new(cfg(peers), me(name, generation), 0)
}

/// Delivers every heartbeat in `out` addressed to `to`.
fn deliver(out: &[Output], to: &mut Membership, now: u64) -> Vec<Output> {
    let mut produced = Vec::new();
    for o in out {
        if let Output::Send {
            to: dest,
            heartbeat,
        } = o
            && *dest == to.me().name
        {
            produced.extend(to.on_heartbeat(now, heartbeat.clone()));
        }
    }
    produced
}

fn events(out: &[Output]) -> Vec<&Event> {
    out.iter()
        .filter_map(|o| match o {
            Output::Event(e) => Some(e),
            Output::Send { .. } => None,
        })
        .collect()
}

/// Runs a and b, exchanging heartbeats both ways, until `until`.
fn run_pair(
    a: &mut Membership,
    b: &mut Membership,
    from: u64,
    until: u64,
    link_up: bool,
) -> Vec<Event> {
    let mut seen = Vec::new();
    let mut now = from;
    while now <= until {
        let oa = a.tick(now);
        let ob = b.tick(now);
        seen.extend(events(&oa).into_iter().cloned());
        seen.extend(events(&ob).into_iter().cloned());
        if link_up {
            seen.extend(events(&deliver(&oa, b, now)).into_iter().cloned());
            seen.extend(events(&deliver(&ob, a, now)).into_iter().cloned());
        }
        now += 50;
    }
    seen
}

#[test]
fn two_nodes_find_each_other_and_agree() {
    let mut a = node("a", 1, &["a", "b"]);
    let mut b = node("b", 2, &["a", "b"]);
    run_pair(&mut a, &mut b, 0, 1000, true);
    assert_eq!(a.view(), b.view());
    assert_eq!(a.view().members.len(), 2);
    assert!(a.agreement().agreed && b.agreement().agreed);
    assert_eq!(a.leader(), "a");
    assert_eq!(b.leader(), "a");
    assert!(a.quorum().has_quorum());
}

#[test]
fn a_silent_peer_is_suspected_then_down_within_the_bound() {
    let mut a = node("a", 1, &["a", "b"]);
    let mut b = node("b", 2, &["a", "b"]);
    run_pair(&mut a, &mut b, 0, 1000, true);
    let last_heard = a.member("b").unwrap().last_heard_ms;
    // b dies: only a keeps ticking.
    let mut suspect_at = None;
    let mut down_at = None;
    let mut now = 1050;
    while now < 4000 {
        for e in events(&a.tick(now)) {
            match e {
                Event::MemberSuspect { .. } => suspect_at = Some(now),
                Event::MemberDown { .. } => down_at = Some(now),
                _ => {}
            }
        }
        now += 50;
    }
    let suspect_at = suspect_at.expect("b suspected");
    let down_at = down_at.expect("b declared down");
    assert!(suspect_at - last_heard >= 3 * HB && suspect_at - last_heard < 3 * HB + 50);
    assert!(down_at - last_heard >= 6 * HB && down_at - last_heard < 6 * HB + 50);
    assert_eq!(a.view().members.len(), 1);
    assert!(!a.quorum().has_quorum(), "1 of 2 is not a majority");
}

#[test]
fn a_restarted_peer_replaces_its_old_generation() {
    let mut a = node("a", 1, &["a", "b"]);
    let mut b = node("b", 2, &["a", "b"]);
    run_pair(&mut a, &mut b, 0, 1000, true);
    let mut b2 = node("b", 3, &["a", "b"]);
    let seen = run_pair(&mut a, &mut b2, 1050, 2000, true);
    assert!(seen.contains(&Event::MemberRestarted {
        name: "b".into(),
        old: 2,
        new: 3
    }));
    assert!(a.view().members.contains(&ViewMember {
        name: "b".into(),
        generation: 3
    }));
    assert_eq!(a.view().members.len(), 2);
    // A delayed heartbeat of the old generation changes nothing.
    let stale = Heartbeat {
        sender: me("b", 2),
        view_id: 0,
        view_size: 1,
        heard: Vec::new(),
        about_you: None,
    };
    let view = a.view().clone();
    a.on_heartbeat(2050, stale);
    assert_eq!(a.view(), &view);
}

#[test]
fn a_suspected_node_refutes_by_raising_its_incarnation() {
    let mut a = node("a", 1, &["a", "b"]);
    let mut b = node("b", 2, &["a", "b"]);
    run_pair(&mut a, &mut b, 0, 1000, true);
    // a stops hearing b (one-way loss), suspects it, and tells b so.
    let mut now = 1050;
    while a.member("b").unwrap().state == PeerState::Alive {
        a.tick(now);
        b.tick(now);
        now += 50;
    }
    // The next heartbeat a sends carries its opinion of b.
    let mut oa = a.tick(now);
    while !oa.iter().any(|o| matches!(o, Output::Send { .. })) {
        now += 50;
        oa = a.tick(now);
    }
    let seen = deliver(&oa, &mut b, now);
    assert!(
        events(&seen)
            .iter()
            .any(|e| matches!(e, Event::Refuted { by, incarnation: 1 } if by == "a")),
        "{seen:?}"
    );
    assert_eq!(b.me().incarnation, 1);
    // When the link heals, a sees the new incarnation and b is alive again.
    run_pair(&mut a, &mut b, now + 50, now + 600, true);
    assert_eq!(a.member("b").unwrap().state, PeerState::Alive);
    assert_eq!(a.member("b").unwrap().info.incarnation, 1);
}

#[test]
fn late_timers_do_not_accuse_peers() {
    let mut a = node("a", 1, &["a", "b"]);
    let mut b = node("b", 2, &["a", "b"]);
    run_pair(&mut a, &mut b, 0, 1000, true);
    // a is descheduled for 5 s: far beyond down_after, but it was a's fault.
    let out = a.tick(6000);
    let ev = events(&out);
    assert!(
        ev.iter().any(|e| matches!(e, Event::TimersLate { .. })),
        "{ev:?}"
    );
    assert!(
        !ev.iter()
            .any(|e| matches!(e, Event::MemberDown { .. } | Event::MemberSuspect { .. }))
    );
    assert_eq!(a.member("b").unwrap().state, PeerState::Alive);
    // If b really is gone, it is still detected one bound later.
    let mut now = 6050;
    while a.member("b").unwrap().state != PeerState::Down {
        a.tick(now);
        now += 50;
        assert!(now < 6000 + 6 * HB + 100, "detection bound after the pause");
    }
}

#[test]
fn disagreement_is_visible_and_names_the_node() {
    let mut a = node("a", 1, &["a", "b", "c"]);
    let mut b = node("b", 2, &["a", "b", "c"]);
    run_pair(&mut a, &mut b, 0, 1000, true);
    // c talks only to a: a's view has c, b's does not.
    let c = Membership::new(cfg(&["a", "b", "c"]), me("c", 3), 1000);
    let mut c = c;
    let oc = c.tick(1000);
    deliver(&oc, &mut a, 1000);
    let ag = a.agreement();
    assert!(!ag.agreed);
    assert!(ag.disagreeing.iter().any(|(n, _)| n == "b"));
    assert_eq!(a.quorum().up, 3);
    assert_eq!(a.quorum().needed, 2);
}

#[test]
fn the_leader_is_the_first_mta_node() {
    let mut mgr = Membership::new(
        cfg(&["a", "m"]),
        SelfInfo {
            node_type: NodeType::Manager,
            ..me("a", 1)
        },
        0,
    );
    let mut z = node("z", 2, &["a", "z"]);
    run_pair(&mut mgr, &mut z, 0, 1000, true);
    assert_eq!(
        mgr.leader(),
        "z",
        "a manager leads only when no MTA node is up"
    );
    assert_eq!(z.leader(), "z");
}

#[test]
fn a_config_mismatch_is_named() {
    let mut a = node("a", 1, &["a", "b"]);
    let mut b = Membership::new(
        cfg(&["a", "b"]),
        SelfInfo {
            config_digest: vec![1, 9, 3],
            ..me("b", 2)
        },
        0,
    );
    let seen = run_pair(&mut a, &mut b, 0, 500, true);
    assert!(
        seen.contains(&Event::ConfigMismatch {
            node: "b".into(),
            options: vec!["heartbeats_per_sec"]
        }),
        "{seen:?}"
    );
    assert_eq!(a.member("b").unwrap().mismatched, ["heartbeats_per_sec"]);
}

#[test]
fn heartbeats_wait_for_the_start_delay() {
    let mut c = cfg(&["a", "b"]);
    c.start_delay_ms = 15_000;
    let mut a = Membership::new(c, me("a", 1), 0);
    assert!(
        a.tick(14_000)
            .iter()
            .all(|o| !matches!(o, Output::Send { .. }))
    );
    assert!(
        a.tick(15_000)
            .iter()
            .any(|o| matches!(o, Output::Send { .. }))
    );
    assert!(a.next_deadline() <= 15_000 + HB);
}

#[test]
fn reset_rejoins_with_a_new_generation() {
    let mut a = node("a", 1, &["a", "b"]);
    let mut b = node("b", 2, &["a", "b"]);
    run_pair(&mut a, &mut b, 0, 1000, true);
    b.reset(1050, 7);
    assert_eq!(b.view().members.len(), 1);
    let seen = run_pair(&mut a, &mut b, 1100, 1600, true);
    assert!(seen.contains(&Event::MemberRestarted {
        name: "b".into(),
        old: 2,
        new: 7
    }));
    assert_eq!(a.view(), b.view());
}

#[test]
fn a_peer_whose_port_refuses_is_down_at_once_and_may_return() {
    let mut a = node("a", 1, &["a", "b"]);
    let mut b = node("b", 2, &["a", "b"]);
    run_pair(&mut a, &mut b, 0, 1000, true);
    assert_eq!(a.view().members.len(), 2);
    // Heard from just now, yet gone: the refusal is proof.
    let out = a.peer_gone(1010, "b");
    assert!(
        matches!(events(&out)[..], [Event::MemberDown { name }, Event::ViewChanged { .. }] if name == "b"),
        "{out:?}"
    );
    assert_eq!(a.view().members.len(), 1);
    assert!(events(&a.peer_gone(1020, "b")).is_empty(), "already down");
    assert!(events(&a.peer_gone(1020, "nosuch")).is_empty());
    // A restarted b (new generation) joins again.
    let mut b2 = node("b", 3, &["a", "b"]);
    run_pair(&mut a, &mut b2, 1050, 2000, true);
    assert_eq!(a.view().members.len(), 2);
    assert_eq!(a.member("b").unwrap().info.generation, 3);
}
