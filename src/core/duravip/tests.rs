//! Unit tests: a few DuraVIP machines exchanging tables by hand over a
//! perfect network; the simulator drives them with membership and faults.

use super::*;

const MATURE: u64 = 5_000;
const BALANCE: u64 = 10_000;

fn cfg(set_size: usize, quorum: QuorumMode) -> DuraVipConfig {
    DuraVipConfig {
        view_mature_ms: MATURE,
        balance_interval_ms: BALANCE,
        balance_set_size: set_size,
        quorum,
    }
}

fn ip(i: u32) -> IpAddr {
    IpAddr::from([10, 1, (i >> 8) as u8, i as u8])
}

fn claim(i: u32, preference: Option<&str>) -> Claim {
    Claim {
        ip: ip(i),
        names: vec![format!("b{i}")],
        services: vec![Service::Binding],
        preference: preference.map(str::to_string),
    }
}

/// A cluster of machines on a perfect network, all in one view.
struct Net {
    nodes: BTreeMap<String, DuraVip>,
    now: u64,
    acquired: Vec<(String, IpAddr)>,
    released: Vec<(String, IpAddr)>,
    /// Boot generations other than 1 (a restarted node).
    generations: BTreeMap<String, u64>,
}

impl Net {
    fn new(names: &[&str], cfg: DuraVipConfig) -> Net {
        let nodes = names
            .iter()
            .map(|n| (n.to_string(), DuraVip::new(n, cfg.clone(), 0)))
            .collect();
        let mut net = Net {
            nodes,
            now: 0,
            acquired: Vec::new(),
            released: Vec::new(),
            generations: BTreeMap::new(),
        };
        net.set_view(names, true);
        net
    }

    fn claim_everywhere(&mut self, claims: &[Claim]) {
        let names: Vec<String> = self.nodes.keys().cloned().collect();
        for n in names {
            for c in claims {
                let out = self
                    .nodes
                    .get_mut(&n)
                    .unwrap()
                    .set_claim(self.now, c.clone());
                self.deliver(&n, out);
            }
        }
    }

    fn set_view(&mut self, members: &[&str], quorum: bool) {
        let members: Vec<(String, u64)> = members.iter().map(|s| (s.to_string(), 1)).collect();
        for (n, _) in members.clone() {
            if let Some(m) = self.nodes.get_mut(&n) {
                let out = m.set_view(self.now, &members, quorum);
                self.deliver(&n, out);
            }
        }
    }

    /// Carries out a node's outputs: announcements reach every other node.
    fn deliver(&mut self, from: &str, out: Vec<Output>) {
        let mut queue = vec![(from.to_string(), out)];
        while let Some((from, out)) = queue.pop() {
            for o in out {
                match o {
                    Output::Acquire(c) => self.acquired.push((from.clone(), c.ip)),
                    Output::Release(c) => self.released.push((from.clone(), c.ip)),
                    Output::Announce(table) => {
                        let others: Vec<String> =
                            self.nodes.keys().filter(|n| **n != from).cloned().collect();
                        let generation = self.generations.get(&from).copied().unwrap_or(1);
                        for n in others {
                            let o = self.nodes.get_mut(&n).unwrap().on_table(
                                self.now,
                                &from,
                                generation,
                                table.clone(),
                            );
                            queue.push((n, o));
                        }
                    }
                }
            }
        }
    }

    fn advance(&mut self, to: u64) {
        while self.now < to {
            self.now = (self.now + 250).min(to);
            let names: Vec<String> = self.nodes.keys().cloned().collect();
            for n in names {
                let out = self.nodes.get_mut(&n).unwrap().tick(self.now);
                self.deliver(&n, out);
            }
        }
    }

    fn owners_of(&self, i: u32) -> Vec<&str> {
        self.nodes
            .iter()
            .filter(|(_, m)| m.owned().any(|o| *o == ip(i)))
            .map(|(n, _)| n.as_str())
            .collect()
    }

    fn loads(&self) -> Vec<usize> {
        self.nodes.values().map(|m| m.owned().count()).collect()
    }
}

#[test]
fn nothing_is_acquired_before_a_node_has_settled() {
    let mut net = Net::new(&["a", "b", "c"], cfg(1, QuorumMode::None));
    net.claim_everywhere(&[claim(1, None)]);
    assert!(net.acquired.is_empty());
    net.advance(MATURE);
    assert_eq!(net.owners_of(1).len(), 1);
}

#[test]
fn every_ip_gets_exactly_one_owner_and_counts_are_balanced() {
    let mut net = Net::new(&["a", "b", "c"], cfg(1, QuorumMode::None));
    let claims: Vec<Claim> = (0..100).map(|i| claim(i, None)).collect();
    net.claim_everywhere(&claims);
    net.advance(MATURE);
    for i in 0..100 {
        assert_eq!(net.owners_of(i).len(), 1, "ip {i}: {:?}", net.owners_of(i));
    }
    let loads = net.loads();
    assert!(
        loads.iter().max().unwrap() - loads.iter().min().unwrap() <= 1,
        "{loads:?}"
    );
    // Every node agrees who owns what.
    for m in net.nodes.values() {
        for s in m.states(net.now) {
            let owner = s.owner.expect("owned");
            assert!(net.nodes[&owner].owned().any(|o| *o == s.ip));
        }
    }
}

#[test]
fn preference_wins_when_its_node_is_up_and_a_conflict_is_ignored() {
    let mut net = Net::new(&["a", "b", "c"], cfg(1, QuorumMode::None));
    net.claim_everywhere(&[claim(1, Some("c")), claim(2, None)]);
    net.advance(MATURE);
    assert_eq!(net.owners_of(1), ["c"]);
    // c leaves: a survivor takes over; c returns: it gets its IP back.
    net.set_view(&["a", "b"], true);
    net.nodes
        .get_mut("c")
        .unwrap()
        .set_view(net.now, &[("c".to_string(), 1)], false);
    let survivors: Vec<&str> = net.owners_of(1).into_iter().filter(|n| *n != "c").collect();
    assert_eq!(survivors.len(), 1, "a survivor owns it at once");
    net.set_view(&["a", "b", "c"], true);
    net.advance(net.now + MATURE + 500);
    assert_eq!(net.owners_of(1), ["c"]);

    // Two nodes prefer themselves: conflict, the preference is ignored.
    let mut net = Net::new(&["a", "b"], cfg(1, QuorumMode::None));
    let out = net
        .nodes
        .get_mut("a")
        .unwrap()
        .set_claim(0, claim(9, Some("a")));
    net.deliver("a", out);
    let out = net
        .nodes
        .get_mut("b")
        .unwrap()
        .set_claim(0, claim(9, Some("b")));
    net.deliver("b", out);
    net.advance(MATURE);
    assert_eq!(net.owners_of(9).len(), 1);
    let s = &net.nodes["a"].states(net.now)[0];
    assert!(s.flags.conflict && s.flags.owned);
}

#[test]
fn broken_ips_are_not_managed_and_unsafe_ones_are_flagged() {
    let mut net = Net::new(&["a", "b"], cfg(1, QuorumMode::None));
    let mut other_name = claim(1, None);
    other_name.names = vec!["different".into()];
    let out = net.nodes.get_mut("a").unwrap().set_claim(0, claim(1, None));
    net.deliver("a", out);
    let out = net.nodes.get_mut("b").unwrap().set_claim(0, other_name);
    net.deliver("b", out);
    let mut listener_too = claim(2, None);
    listener_too.services.push(Service::Listener(25));
    let out = net.nodes.get_mut("a").unwrap().set_claim(0, listener_too);
    net.deliver("a", out);
    let out = net.nodes.get_mut("b").unwrap().set_claim(0, claim(2, None));
    net.deliver("b", out);
    net.advance(MATURE);
    assert!(net.owners_of(1).is_empty(), "BROKEN is never owned");
    assert_eq!(net.owners_of(2).len(), 1, "UNSAFE is still managed");
    let states = net.nodes["a"].states(net.now);
    assert!(states[0].flags.broken);
    assert!(states[1].flags.unsafe_services && !states[1].flags.broken);
}

#[test]
fn a_dead_owners_ips_move_at_once() {
    let mut net = Net::new(&["a", "b", "c"], cfg(1, QuorumMode::None));
    let claims: Vec<Claim> = (0..30).map(|i| claim(i, None)).collect();
    net.claim_everywhere(&claims);
    net.advance(MATURE);
    let c_had: Vec<u32> = (0..30).filter(|i| net.owners_of(*i) == ["c"]).collect();
    assert!(!c_had.is_empty());
    // c dies: a and b see a view without it; no time passes.
    net.nodes.remove("c");
    net.set_view(&["a", "b"], true);
    for i in 0..30 {
        assert_eq!(
            net.owners_of(i).len(),
            1,
            "ip {i} has one owner right after the view change"
        );
    }
}

#[test]
fn balancing_moves_at_most_the_batch_per_interval() {
    let mut net = Net::new(&["a", "b"], cfg(2, QuorumMode::None));
    let claims: Vec<Claim> = (0..20).map(|i| claim(i, None)).collect();
    net.claim_everywhere(&claims);
    net.advance(MATURE);
    // c joins late: it owns nothing, then gains at most 2 per node per interval.
    net.nodes.insert(
        "c".into(),
        DuraVip::new("c", cfg(2, QuorumMode::None), net.now),
    );
    let out = {
        let c = net.nodes.get_mut("c").unwrap();
        let mut out = Vec::new();
        for cl in &claims {
            out.extend(c.set_claim(net.now, cl.clone()));
        }
        out
    };
    net.deliver("c", out);
    net.set_view(&["a", "b", "c"], true);
    // Once the view is mature, each node balances once per interval, so any
    // window shorter than an interval sees at most one batch per node.
    net.advance(net.now + MATURE - 250);
    let before = net.released.len();
    net.advance(net.now + BALANCE);
    let moved = net.released.len() - before;
    assert!(
        (1..=2 * 2).contains(&moved),
        "moved {moved} in one interval"
    );
    net.advance(net.now + 10 * BALANCE);
    let loads = net.loads();
    assert!(
        loads.iter().max().unwrap() - loads.iter().min().unwrap() <= 1,
        "{loads:?}"
    );
    for i in 0..20 {
        assert_eq!(net.owners_of(i).len(), 1);
    }
}

#[test]
fn without_quorum_in_majority_mode_a_node_owns_nothing() {
    let mut net = Net::new(&["a", "b", "c"], cfg(1, QuorumMode::Majority));
    net.claim_everywhere(&[claim(1, Some("a"))]);
    net.advance(MATURE);
    assert_eq!(net.owners_of(1), ["a"]);
    let out = net
        .nodes
        .get_mut("a")
        .unwrap()
        .set_view(net.now, &[("a".to_string(), 1)], false);
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Release(c) if c.ip == ip(1)))
    );
}

#[test]
fn after_a_healed_split_one_owner_keeps_the_ip() {
    let mut net = Net::new(&["a", "b"], cfg(1, QuorumMode::None));
    net.claim_everywhere(&[claim(1, None)]);
    net.advance(MATURE);
    // Split: each side is alone and owns the IP (the reference's behaviour).
    for n in ["a", "b"] {
        let out = net
            .nodes
            .get_mut(n)
            .unwrap()
            .set_view(net.now, &[(n.to_string(), 1)], false);
        assert!(out.iter().all(|o| !matches!(o, Output::Release(_))));
        let out = net.nodes.get_mut(n).unwrap().tick(net.now);
        drop(out);
    }
    assert_eq!(net.owners_of(1).len(), 2, "both sides own it while split");
    // The link returns: the view gains the other node, and each announces.
    net.set_view(&["a", "b"], true);
    assert_eq!(net.owners_of(1).len(), 1, "{:?}", net.owners_of(1));
}

#[test]
fn a_removed_claim_is_released_and_the_lost_hook_gets_the_claim() {
    let mut net = Net::new(&["a"], cfg(1, QuorumMode::None));
    net.claim_everywhere(&[claim(1, None)]);
    net.advance(MATURE);
    let out = net.nodes.get_mut("a").unwrap().remove_claim(net.now, ip(1));
    assert!(out.contains(&Output::Release(claim(1, None))), "{out:?}");
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Announce(t) if t.owned.is_empty()))
    );
}

/// Found by the simulator: a balancing round that fell due while the view
/// was immature (or quorum was lost) left `next_balance_ms` in the past, so
/// `next_deadline()` stayed at or before the last tick and the engine would
/// have been asked to tick forever (a busy loop until maturity, or without
/// quorum until it returned).
#[test]
fn a_blocked_balancing_round_never_leaves_the_deadline_in_the_past() {
    for quorum in [QuorumMode::None, QuorumMode::Majority] {
        let mut net = Net::new(&["a", "b", "c"], cfg(1, quorum));
        net.claim_everywhere(&[claim(1, None), claim(2, None)]);
        net.advance(MATURE);
        // A view change just before the round is due: the round waits.
        net.advance(BALANCE - 1000);
        net.set_view(&["a", "b"], true);
        // c alone, without quorum in majority mode.
        let c = net.nodes.get_mut("c").unwrap();
        c.set_view(net.now, &[("c".to_string(), 1)], false);
        net.advance(BALANCE + 2000);
        for (name, m) in &mut net.nodes {
            let _ = m.tick(net.now);
            assert!(
                m.next_deadline() > net.now,
                "{quorum:?}: {name}'s deadline {} is not after {}",
                m.next_deadline(),
                net.now
            );
        }
    }
}

/// Found by the simulator: when a preferred node restarted (a new
/// generation), the owner gave its IP way at once, but the restarted node
/// may acquire nothing until it has settled, so the IP had no owner for
/// `view_mature_ms`. Likewise an orphan went to a newly joined node (least
/// loaded, owning nothing) that could not plumb it yet. Now a newcomer is
/// eligible only after `view_mature_ms` in the view.
#[test]
fn a_returning_preferred_node_gets_its_ip_only_when_it_can_plumb_it() {
    let mut net = Net::new(&["a", "b", "c"], cfg(1, QuorumMode::None));
    net.claim_everywhere(&[claim(1, Some("c")), claim(2, None)]);
    net.advance(MATURE);
    assert_eq!(net.owners_of(1), ["c"]);
    // c dies; a survivor takes its IP at once.
    net.nodes.remove("c");
    net.set_view(&["a", "b"], true);
    assert_eq!(net.owners_of(1).len(), 1);
    net.advance(net.now + 3000);
    // c restarts: a new process (generation 2) that cannot acquire for MATURE.
    net.generations.insert("c".into(), 2);
    net.nodes.insert(
        "c".into(),
        DuraVip::new("c", cfg(1, QuorumMode::None), net.now),
    );
    let out: Vec<Output> = [claim(1, Some("c")), claim(2, None)]
        .into_iter()
        .flat_map(|cl| net.nodes.get_mut("c").unwrap().set_claim(net.now, cl))
        .collect();
    net.deliver("c", out);
    let view: Vec<(String, u64)> = vec![("a".into(), 1), ("b".into(), 1), ("c".into(), 2)];
    for n in ["a", "b", "c"] {
        let out = net.nodes.get_mut(n).unwrap().set_view(net.now, &view, true);
        net.deliver(n, out);
    }
    let start = net.now;
    while net.now < start + MATURE + 1000 {
        net.advance(net.now + 250);
        assert_eq!(
            net.owners_of(1).len(),
            1,
            "ip 1 must keep an owner at {} (c restarted at {start})",
            net.now
        );
    }
    assert_eq!(net.owners_of(1), ["c"], "back on c after maturity");
}

/// With eligibility (above), the keeper after a healed split must not
/// depend on it: the preferred node, if it owns the IP, keeps it, as both
/// sides see at once (a side that had just re-admitted it would otherwise
/// keep its own copy by hash until the preferred node became eligible).
#[test]
fn after_a_healed_split_the_preferred_owner_keeps_the_ip() {
    for preferred in ["a", "b"] {
        let mut net = Net::new(&["a", "b"], cfg(1, QuorumMode::None));
        net.claim_everywhere(&[claim(1, Some(preferred))]);
        net.advance(MATURE);
        assert_eq!(net.owners_of(1), [preferred]);
        for n in ["a", "b"] {
            let out = net
                .nodes
                .get_mut(n)
                .unwrap()
                .set_view(net.now, &[(n.to_string(), 1)], false);
            net.deliver(n, out);
        }
        net.advance(net.now + 1000);
        assert_eq!(net.owners_of(1).len(), 2, "both sides own it while split");
        net.set_view(&["a", "b"], true);
        assert_eq!(net.owners_of(1), [preferred], "preferring {preferred}");
    }
}

/// Found by the simulator: two nodes balancing at once each release an IP,
/// and the others assign both orphans by loads that the tables in flight
/// make them see differently, so an orphan could get two owners (or go to
/// another node than its releaser meant). A release now names its
/// receiver, and every node that sees the orphan sees the name with it.
#[test]
fn a_balancing_release_names_its_receiver_and_everyone_follows_it() {
    let mut net = Net::new(&["a", "b"], cfg(1, QuorumMode::None));
    let claims: Vec<Claim> = (0..10).map(|i| claim(i, None)).collect();
    net.claim_everywhere(&claims);
    net.advance(MATURE);
    // c joins; hold its table back from b to give b a stale picture.
    net.nodes.insert(
        "c".into(),
        DuraVip::new("c", cfg(1, QuorumMode::None), net.now),
    );
    let out: Vec<Output> = claims
        .iter()
        .flat_map(|cl| {
            net.nodes
                .get_mut("c")
                .unwrap()
                .set_claim(net.now, cl.clone())
        })
        .collect();
    net.deliver("c", out);
    net.set_view(&["a", "b", "c"], true);
    net.advance(net.now + MATURE);
    let before = net.released.len();
    net.advance(net.now + BALANCE);
    let (giver, moved) = net.released[before].clone();
    let table = net.nodes[&giver].table();
    let h = table
        .handoffs
        .iter()
        .find(|h| h.ip == moved)
        .expect("the release names its receiver");
    assert_eq!(h.to, "c", "the least loaded node");
    let index = (0..10).find(|i| ip(*i) == moved).unwrap();
    assert_eq!(net.owners_of(index), ["c"]);
    // A node that sees the orphan and the handoff, whatever loads it
    // believes in, assigns it to c: here the other one, told that c and
    // the giver own everything else (so that by loads it would take it).
    let other = if giver == "a" { "b" } else { "a" };
    let mut x = net.nodes[other].clone();
    let rest: Vec<IpAddr> = (0..10).map(ip).filter(|i| *i != moved).collect();
    for node in ["c", giver.as_str()] {
        let mut busy = net.nodes[node].table();
        busy.version += 100;
        busy.owned = rest.clone();
        let _ = x.on_table(net.now, node, 1, busy);
    }
    assert!(!x.owned().any(|i| *i == moved), "{other} takes c's IP");
}

impl Net {
    /// An operator's move, broadcast: every node in `at` gets it now.
    fn move_at(&mut self, at: &[&str], i: u32, to: &str) {
        for n in at {
            let out = self
                .nodes
                .get_mut(*n)
                .unwrap()
                .move_to(self.now, ip(i), to)
                .expect("a valid move");
            self.deliver(n, out);
        }
    }
}

#[test]
fn a_move_is_refused_with_the_reason() {
    let mut net = Net::new(&["a", "b", "c"], cfg(1, QuorumMode::Majority));
    net.claim_everywhere(&[claim(1, None)]);
    let mut only_a = claim(2, None);
    only_a.names = vec!["a-only".into()];
    let out = net.nodes.get_mut("a").unwrap().set_claim(0, only_a.clone());
    net.deliver("a", out);
    let mut other = claim(3, None);
    let out = net.nodes.get_mut("a").unwrap().set_claim(0, other.clone());
    net.deliver("a", out);
    other.names = vec!["elsewhere".into()];
    let out = net.nodes.get_mut("b").unwrap().set_claim(0, other);
    net.deliver("b", out);
    net.advance(MATURE);
    let a = net.nodes.get_mut("a").unwrap();
    assert_eq!(a.move_to(net.now, ip(9), "b"), Err(MoveError::NotClaimed));
    assert_eq!(a.move_to(net.now, ip(1), "z"), Err(MoveError::NotInView));
    assert_eq!(
        a.move_to(net.now, ip(2), "b"),
        Err(MoveError::NotACandidate)
    );
    assert_eq!(a.move_to(net.now, ip(3), "b"), Err(MoveError::Broken));
    let _ = a.set_view(net.now, &[("a".to_string(), 1)], false);
    assert_eq!(a.move_to(net.now, ip(1), "a"), Err(MoveError::NoQuorum));
}

#[test]
fn a_moved_ip_goes_to_its_target_and_balancing_leaves_it_there() {
    let mut net = Net::new(&["a", "b", "c"], cfg(1, QuorumMode::None));
    let claims: Vec<Claim> = (0..6).map(|i| claim(i, None)).collect();
    net.claim_everywhere(&claims);
    net.advance(MATURE + BALANCE);
    let from = net.owners_of(1)[0].to_string();
    let to = if from == "c" { "b" } else { "c" };
    // The owner and the target get the broadcast; the third node does not
    // and follows the handoff.
    let third = ["a", "b", "c"]
        .into_iter()
        .find(|n| *n != from && *n != to)
        .unwrap();
    let acquired = net.acquired.len();
    net.move_at(&[from.as_str(), to], 1, to);
    assert_eq!(net.owners_of(1), [to]);
    assert!(
        !net.acquired[acquired..].iter().any(|(n, _)| n == third),
        "{third} took nothing"
    );
    // The move is over once the target owns it; balancing (to owns one
    // more than its share now) never moves it back in this view.
    for n in ["a", "b", "c"] {
        assert!(net.nodes[n].states(net.now)[1].moving_to.is_none(), "{n}");
    }
    net.advance(net.now + 5 * BALANCE);
    assert_eq!(net.owners_of(1), [to]);
    for i in 0..6 {
        assert_eq!(net.owners_of(i).len(), 1);
    }
}

#[test]
fn a_manual_move_beats_the_preference_until_the_view_changes() {
    let mut net = Net::new(&["a", "b", "c"], cfg(1, QuorumMode::None));
    net.claim_everywhere(&[claim(1, Some("c")), claim(2, None)]);
    net.advance(MATURE);
    assert_eq!(net.owners_of(1), ["c"]);
    net.move_at(&["a", "b", "c"], 1, "a");
    net.advance(net.now + 3 * BALANCE);
    assert_eq!(net.owners_of(1), ["a"], "the operator's choice holds");
    // b leaves: a new view, and the preference applies again.
    net.set_view(&["a", "c"], true);
    net.advance(net.now + 1000);
    assert_eq!(net.owners_of(1), ["c"]);
}

#[test]
fn a_move_whose_target_dies_falls_back_to_the_normal_rules() {
    let mut net = Net::new(&["a", "b", "c"], cfg(1, QuorumMode::None));
    net.claim_everywhere(&[claim(1, Some("a"))]);
    net.advance(MATURE);
    assert_eq!(net.owners_of(1), ["a"]);
    // Only a hears the move to c, and c dies before it acquires.
    net.nodes.remove("c");
    let out = net
        .nodes
        .get_mut("a")
        .unwrap()
        .move_to(net.now, ip(1), "c")
        .unwrap();
    assert!(out.contains(&Output::Release(claim(1, Some("a")))));
    net.deliver("a", out);
    assert!(net.owners_of(1).is_empty(), "released for c");
    net.set_view(&["a", "b"], true);
    assert_eq!(net.owners_of(1), ["a"], "c left: the preference again");
}
