//! Properties of membership checked after every simulation step.
//!
//! Each follows from the design (DESIGN §3, `core::membership` module docs)
//! and from what the simulator knows for certain: who runs, who crashed
//! when, which links are cut, and the longest delay a message can have had.
//! Timings come from the observing node's own `MembershipConfig`:
//! `I` = heartbeat interval, `D` = down_after, `δ` = the largest link delay.

use std::collections::BTreeSet;

use eccluster::core::membership::ViewMember;

use super::Sim;
use super::membership::MemberNode;

/// Every membership invariant, by name, as installed by
/// [`super::membership::cluster`].
pub const MEMBERSHIP: &[(&str, super::InvariantFn<MemberNode>)] = &[
    ("self_in_own_view", self_in_own_view),
    ("dead_generation_leaves_views", dead_generation_leaves_views),
    ("quiet_cluster_converges", quiet_cluster_converges),
];

/// (a) A node's view always holds itself, with its current generation, and
/// names each member once.
///
/// Why: the view is "this node plus every peer not down" (module docs); a
/// node that dropped itself, or held two generations of one name, would
/// compute a wrong leader and quorum.
pub fn self_in_own_view(sim: &Sim<MemberNode>) -> Result<(), String> {
    for (name, node) in sim.live() {
        let view = node.m.view();
        let me = ViewMember {
            name: name.to_string(),
            generation: sim.generation(name),
        };
        if !view.members.contains(&me) {
            return Err(format!("{name}'s view {:?} lacks {me:?}", view.members));
        }
        let names: BTreeSet<&str> = view.members.iter().map(|m| m.name.as_str()).collect();
        if names.len() != view.members.len() {
            return Err(format!(
                "{name}'s view names a node twice: {:?}",
                view.members
            ));
        }
    }
    Ok(())
}

/// (c) The hard detection bound: a generation that died (crash, restart,
/// reset) at `t` is out of every running node's view by `t + D + I + δ`.
///
/// Why: DESIGN §3 promises "a hard bound". The dead generation's last
/// heartbeat arrives by `t + δ`; silence of `D` then makes it down. `I` is
/// slack for the tick that notices (exact in the simulator, one timer
/// period in a real runtime). An observer paused past `t` refreshed its
/// deadlines when it resumed (the self-check), so its clock starts then;
/// while paused it is not judged at all.
pub fn dead_generation_leaves_views(sim: &Sim<MemberNode>) -> Result<(), String> {
    let now = sim.now();
    for death in sim.deaths() {
        for (observer, node) in sim.live() {
            if sim.is_paused(observer) {
                continue;
            }
            let cfg = node.m.config();
            let from = death.at.max(sim.resumed_at(observer).unwrap_or(0));
            let bound = from + cfg.down_after_ms + cfg.heartbeat_interval_ms + sim.max_delay();
            if now <= bound {
                continue;
            }
            let dead = ViewMember {
                name: death.name.clone(),
                generation: death.generation,
            };
            if node.m.view().members.contains(&dead) {
                return Err(format!(
                    "{observer} still holds {dead:?}, dead since {} (bound {bound})",
                    death.at
                ));
            }
        }
    }
    Ok(())
}

/// (b) Convergence: once nothing has disturbed the cluster (no loss, no
/// pause, no start/crash/network change) for longer than
/// `start_delay + D + 2·(I + δ)`, every running node's view is exactly the
/// running nodes it hears, directly or through a witness it hears (itself,
/// those whose link to it is not cut, and those a node it hears can hear),
/// with their current generations. With no cut at all, that makes every
/// view equal; then every node also reports agreement and names the same
/// leader.
///
/// Why the settle time: a crash at the last change leaves views by
/// `δ + D` (as in (c)); a start, restart or healed link is heard within
/// `I + δ`. Then each node's next heartbeat (within `I`, arriving within
/// `δ`) tells the others its final view id, which is what agreement
/// compares. A start delay postpones all of it.
pub fn quiet_cluster_converges(sim: &Sim<MemberNode>) -> Result<(), String> {
    let Some(since) = sim.quiet_since() else {
        return Ok(());
    };
    let now = sim.now();
    let live: Vec<String> = sim.live_names();
    for (observer, node) in sim.live() {
        let cfg = node.m.config();
        let settle = cfg.start_delay_ms
            + cfg.down_after_ms
            + 2 * (cfg.heartbeat_interval_ms + sim.max_delay());
        if now <= since + settle {
            return Ok(());
        }
        // x is in the observer's view if the observer hears it, or hears a
        // witness that hears it (indirect evidence, membership module docs).
        let heard_by = |listener: &str, x: &str| x == listener || sim.link_up(x, listener);
        let expected: Vec<ViewMember> = live
            .iter()
            .filter(|x| {
                heard_by(observer, x)
                    || live.iter().any(|w| {
                        w != observer && w != *x && sim.link_up(w, observer) && sim.link_up(x, w)
                    })
            })
            .map(|x| ViewMember {
                name: x.clone(),
                generation: sim.generation(x),
            })
            .collect();
        if node.m.view().members != expected {
            return Err(format!(
                "quiet since {since}: {observer}'s view {:?}, expected {expected:?}",
                node.m.view().members
            ));
        }
    }
    if sim.any_cut() {
        return Ok(());
    }
    for (observer, node) in sim.live() {
        let agreement = node.m.agreement();
        if !agreement.agreed {
            return Err(format!(
                "quiet since {since}, fully connected: {observer} disagrees with {:?}",
                agreement.disagreeing
            ));
        }
    }
    let leaders = sim.leaders();
    if leaders.len() > 1 {
        return Err(format!("quiet since {since}: several leaders {leaders:?}"));
    }
    Ok(())
}
