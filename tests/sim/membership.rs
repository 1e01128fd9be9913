//! `core::membership` in the simulator: the [`SimNode`] adapter, a cluster
//! builder with the membership invariants installed, and observers
//! (`view_of`, `all_agree`, `leaders`, ...).

use std::collections::BTreeSet;

use eccluster::config::model::QuorumMode;
use eccluster::core::membership::{Event, Membership, MembershipConfig, Output};
use eccluster::core::wire::{Heartbeat, NodeType, SelfInfo};

use super::{Effect, LinkSpec, Sim, SimNode, invariants};

/// One node's membership state machine.
#[derive(Debug)]
pub struct MemberNode {
    pub m: Membership,
}

fn effects(out: Vec<Output>) -> Vec<Effect<Heartbeat, Event>> {
    out.into_iter()
        .map(|o| match o {
            Output::Send { to, heartbeat } => Effect::Send { to, msg: heartbeat },
            Output::Event(e) => Effect::Event(e),
        })
        .collect()
}

impl SimNode for MemberNode {
    type Msg = Heartbeat;
    type Event = Event;

    fn name(&self) -> &str {
        &self.m.me().name
    }

    fn tick(&mut self, now: u64) -> Vec<Effect<Heartbeat, Event>> {
        effects(self.m.tick(now))
    }

    fn receive(&mut self, now: u64, _from: &str, hb: Heartbeat) -> Vec<Effect<Heartbeat, Event>> {
        // The real transport authenticates the sender; the simulated one
        // cannot forge, so the heartbeat's own sender is the truth.
        effects(self.m.on_heartbeat(now, hb))
    }

    fn next_deadline(&self) -> u64 {
        self.m.next_deadline()
    }
}

/// The timings the scenarios use: 4 heartbeats/s, suspect after 3 missed,
/// down after 5 (the defaults), no start delay.
pub fn config(names: &[&str], quorum: QuorumMode) -> MembershipConfig {
    MembershipConfig {
        heartbeat_interval_ms: 250,
        start_delay_ms: 0,
        suspect_after_ms: 750,
        down_after_ms: 1250,
        peers: names.iter().map(|n| n.to_string()).collect(),
        quorum,
    }
}

/// What a simulated node says about itself; every node has the same
/// configuration digest, so no `ConfigMismatch` noise.
pub fn self_info(name: &str, generation: u64) -> SelfInfo {
    SelfInfo {
        name: name.into(),
        generation,
        incarnation: 0,
        node_type: NodeType::Momentum,
        subcluster: "default".into(),
        pid: 1,
        version: "sim".into(),
        port: 4802,
        config_digest: vec![7; 8],
    }
}

/// A cluster of `cfg.peers`, none started yet, every link `link`, with
/// the membership invariants checked after every step.
pub fn cluster(seed: u64, cfg: MembershipConfig, link: LinkSpec) -> Sim<MemberNode> {
    let factory_cfg = cfg.clone();
    let mut sim = Sim::new(
        seed,
        Box::new(move |name: &str, generation, now| MemberNode {
            m: Membership::new(factory_cfg.clone(), self_info(name, generation), now),
        }),
    );
    sim.set_default_link(link);
    for (name, check) in invariants::MEMBERSHIP {
        sim.add_invariant(name, *check);
    }
    sim
}

/// [`cluster`] with every node started at time 0.
pub fn started(seed: u64, cfg: MembershipConfig, link: LinkSpec) -> Sim<MemberNode> {
    let names = cfg.peers.clone();
    let mut sim = cluster(seed, cfg, link);
    for n in &names {
        sim.start(n);
    }
    sim
}

impl Sim<MemberNode> {
    /// The running node's state machine; panics if it is not running.
    pub fn membership(&self, name: &str) -> &Membership {
        &self
            .node(name)
            .unwrap_or_else(|| panic!("{name} is not running"))
            .m
    }

    /// The names in `name`'s view.
    pub fn view_of(&self, name: &str) -> Vec<String> {
        let view = self.membership(name).view();
        view.members.iter().map(|m| m.name.clone()).collect()
    }

    /// Every running node holds the same view, and each knows it.
    pub fn all_agree(&self) -> bool {
        let mut views = self.live().map(|(_, n)| n.m.view());
        let Some(first) = views.next() else {
            return true;
        };
        views.all(|v| v == first) && self.live().all(|(_, n)| n.m.agreement().agreed)
    }

    /// The leaders the running nodes name (one when they agree).
    pub fn leaders(&self) -> BTreeSet<String> {
        self.live().map(|(_, n)| n.m.leader().to_string()).collect()
    }

    /// `cluster reset` on `name`: a new generation, an empty table.
    pub fn reset(&mut self, name: &str) {
        self.new_generation(name, |n, now, generation| {
            super::membership::effects(n.m.reset(now, generation))
        });
    }

    /// When `observer` logged `MemberDown` for `whom` at or after `since`.
    pub fn down_at(&self, observer: &str, whom: &str, since: u64) -> Option<u64> {
        self.events_of(observer)
            .find(|(t, e)| *t >= since && matches!(e, Event::MemberDown { name } if name == whom))
            .map(|(t, _)| t)
    }

    /// How many `MemberDown` events were logged at or after `since`.
    pub fn downs_since(&self, since: u64) -> usize {
        self.events()
            .iter()
            .filter(|l| l.at >= since && matches!(l.event, Event::MemberDown { .. }))
            .count()
    }
}
