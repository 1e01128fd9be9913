//! Membership: who is up, the view they agree on, the leader, and quorum.
//!
//! Mail clusters are small (2–16 nodes) and every node is configured, so
//! instead of SWIM's probabilistic probing every node sends a heartbeat to
//! every configured peer at `heartbeats_per_sec` and judges each peer only by
//! what it hears from that peer directly. That gives a hard detection bound,
//! like VRRP's: a peer silent for `suspect_heartbeats` intervals is suspect,
//! for `down_heartbeats` intervals it is down (defaults 3 and 5: 0.75 s and
//! 1.25 s at 4 heartbeats/s).
//!
//! One lossy link must not down a live node, so silence alone is not enough:
//! every heartbeat also says how long ago its sender last heard each peer.
//! A peer is **down** only when neither this node nor any member it
//! currently hears has heard from it for `down_after` (foca and memberlist
//! get the same robustness from indirect probes). A crash is still detected
//! within the bound, counted from the last heartbeat *anyone* received; a
//! peer silent only towards us stays in the view as suspect. In a two-node
//! cluster there is no third witness, so there silence alone decides.
//!
//! A crashed *process* on a live host is found faster: its kernel closes the
//! cluster links, and a connection to its cluster port is then refused,
//! which proves the process is gone ([`Membership::peer_gone`]). Only a
//! dead host or a cut link waits for the heartbeat timeout.
//!
//! The rest follows from that table:
//! - **Identity.** A member is a name plus a boot *generation* chosen anew on
//!   every start: a heartbeat with a newer generation is a restarted node (the
//!   old member is gone at once), an older one is stale and ignored.
//! - **Refutation.** Each heartbeat carries the sender's opinion of the
//!   receiver. A node that learns it is suspected or down raises its own
//!   *incarnation* (only it may), so observers can tell a fresh "I am alive"
//!   from a delayed old one.
//! - **Self-check.** If this node's own clock shows a gap much longer than a
//!   heartbeat interval between two calls (the process was descheduled, the VM
//!   paused), it was deaf too: instead of accusing everyone it gives every peer
//!   a fresh deadline (keepalived's `timer_expired_backup` lesson).
//! - **Views.** The view is this node plus every peer not down, sorted by
//!   name; its id is a hash of the names and generations. Every heartbeat
//!   carries the sender's view id, so "the view is agreed" is observable.
//! - **Leader.** A deterministic function of the view: the first MTA
//!   (`Momentum`) node by name, else the first node. No election messages.
//! - **Quorum.** A majority of the configured nodes (the peers map plus this
//!   node) in the view. In a two-node cluster a split leaves neither side with
//!   quorum; with `quorum = "none"` (the reference's behaviour) both sides
//!   carry on and converge when the link returns, with `quorum = "majority"`
//!   neither side owns DuraVIPs until it does.
//!
//! The state machine is pure: it is given the time (milliseconds on a
//! monotonic clock) and heartbeats, and returns heartbeats to send and
//! events. `next_deadline` says when it next needs a tick.

pub mod digest;

use std::collections::BTreeMap;

use crate::config::Config;
use crate::config::model::QuorumMode;
use crate::core::wire::{Heard, Heartbeat, NodeType, Opinion, PeerState, SelfInfo};

/// Timing and peer set of one node's membership.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MembershipConfig {
    pub heartbeat_interval_ms: u64,
    pub start_delay_ms: u64,
    pub suspect_after_ms: u64,
    pub down_after_ms: u64,
    /// Every configured node name (the peers map), possibly including this node.
    pub peers: Vec<String>,
    pub quorum: QuorumMode,
}

impl MembershipConfig {
    pub fn from_config(config: &Config) -> MembershipConfig {
        let c = &config.cluster;
        // heartbeats_per_sec is checked to be in (0, 100], so this is 10 ms or more.
        let interval = (1000.0 / c.heartbeats_per_sec).round().max(1.0) as u64;
        MembershipConfig {
            heartbeat_interval_ms: interval,
            start_delay_ms: u64::from(c.heartbeat_start_delay) * 1000,
            suspect_after_ms: interval * u64::from(c.suspect_heartbeats),
            down_after_ms: interval * u64::from(c.down_heartbeats),
            peers: config.bus.peers.iter().map(|p| p.name.clone()).collect(),
            quorum: c.quorum,
        }
    }

    /// A gap between two calls longer than this means our own timers ran late.
    fn late_after_ms(&self) -> u64 {
        (2 * self.heartbeat_interval_ms).max(self.suspect_after_ms)
    }
}

/// One member of a view.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ViewMember {
    pub name: String,
    pub generation: u64,
}

/// A view: the members this node considers up, sorted by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct View {
    pub id: u64,
    pub members: Vec<ViewMember>,
}

impl View {
    fn of(mut members: Vec<ViewMember>) -> View {
        members.sort();
        let id = members.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, m| {
            let h = fnv1a64(h, m.name.as_bytes());
            fnv1a64(h, &m.generation.to_le_bytes())
        });
        View { id, members }
    }
}

fn fnv1a64(h: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(h, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// What this node knows of one peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub info: SelfInfo,
    pub state: PeerState,
    pub last_heard_ms: u64,
    /// The view id and size the peer last reported holding.
    pub view_id: u64,
    pub view_size: u32,
    /// Options on which the peer's configuration differs from ours.
    pub mismatched: Vec<&'static str>,
    /// The peer's last report of whom it heard, and how long before
    /// `last_heard_ms` it heard them.
    pub heard: Vec<Heard>,
}

/// Whether every member holds this node's view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Agreement {
    pub agreed: bool,
    /// Members holding a different view: name and the view id they hold.
    pub disagreeing: Vec<(String, u64)>,
}

/// Quorum against the configured node set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quorum {
    pub configured: usize,
    pub up: usize,
    pub needed: usize,
    pub mode: QuorumMode,
}

impl Quorum {
    pub fn has_quorum(&self) -> bool {
        self.up >= self.needed
    }
}

/// Something that happened, for the log, hooks and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The view changed; `number` counts changes on this node.
    ViewChanged {
        number: u64,
        view: View,
    },
    MemberUp {
        name: String,
        generation: u64,
    },
    MemberSuspect {
        name: String,
    },
    MemberDown {
        name: String,
    },
    /// A peer came back with a new generation: the old member is gone.
    MemberRestarted {
        name: String,
        old: u64,
        new: u64,
    },
    /// Our own timers ran this late; peers were given fresh deadlines.
    TimersLate {
        late_by_ms: u64,
    },
    /// A peer suspected or declared us down; we raised our incarnation.
    Refuted {
        by: String,
        incarnation: u32,
    },
    /// A peer's must-be-equal options differ from ours.
    ConfigMismatch {
        node: String,
        options: Vec<&'static str>,
    },
    /// A heartbeat claimed to come from this node's own name.
    DuplicateName {
        generation: u64,
    },
}

/// What the caller must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Send this heartbeat to the named peer.
    Send {
        to: String,
        heartbeat: Heartbeat,
    },
    Event(Event),
}

/// One node's membership state machine; see the module docs.
#[derive(Clone, Debug)]
pub struct Membership {
    cfg: MembershipConfig,
    me: SelfInfo,
    started_ms: u64,
    next_heartbeat_ms: u64,
    last_call_ms: u64,
    members: BTreeMap<String, Member>,
    view: View,
    view_number: u64,
}

impl Membership {
    /// A node that starts at `now_ms`; its first heartbeat goes out after
    /// the start delay.
    pub fn new(cfg: MembershipConfig, me: SelfInfo, now_ms: u64) -> Membership {
        let view = View::of(vec![ViewMember {
            name: me.name.clone(),
            generation: me.generation,
        }]);
        Membership {
            next_heartbeat_ms: now_ms + cfg.start_delay_ms,
            cfg,
            me,
            started_ms: now_ms,
            last_call_ms: now_ms,
            members: BTreeMap::new(),
            view,
            view_number: 1,
        }
    }

    pub fn me(&self) -> &SelfInfo {
        &self.me
    }

    pub fn config(&self) -> &MembershipConfig {
        &self.cfg
    }

    pub fn view(&self) -> &View {
        &self.view
    }

    /// How many times the view changed on this node (1 for the first view).
    pub fn view_number(&self) -> u64 {
        self.view_number
    }

    /// Every peer heard from, including those now down.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    pub fn member(&self, name: &str) -> Option<&Member> {
        self.members.get(name)
    }

    /// When the machine next needs [`Membership::tick`].
    pub fn next_deadline(&self) -> u64 {
        let timeouts = self.members.values().filter_map(|m| match m.state {
            PeerState::Alive => Some(m.last_heard_ms + self.cfg.suspect_after_ms),
            PeerState::Suspect => {
                Some(self.last_evidence_ms(&m.info.name) + self.cfg.down_after_ms)
            }
            PeerState::Down => None,
        });
        timeouts.fold(self.next_heartbeat_ms, u64::min)
    }

    /// Advances time: sends due heartbeats, suspects and downs silent peers.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Output> {
        let mut out = Vec::new();
        self.observe_time(now_ms, &mut out);
        // Suspicion first: it decides which members count as witnesses below.
        for m in self.members.values_mut() {
            let silent = now_ms.saturating_sub(m.last_heard_ms);
            if m.state == PeerState::Alive && silent >= self.cfg.suspect_after_ms {
                m.state = PeerState::Suspect;
                out.push(Output::Event(Event::MemberSuspect {
                    name: m.info.name.clone(),
                }));
            }
        }
        // Only suspects can go down, so downing one never changes the witnesses.
        let evidence: BTreeMap<String, u64> = self
            .members
            .values()
            .filter(|m| m.state == PeerState::Suspect)
            .map(|m| (m.info.name.clone(), self.last_evidence_ms(&m.info.name)))
            .collect();
        for (name, last) in evidence {
            if now_ms.saturating_sub(last) >= self.cfg.down_after_ms
                && let Some(m) = self.members.get_mut(&name)
            {
                m.state = PeerState::Down;
                out.push(Output::Event(Event::MemberDown { name }));
            }
        }
        // Before sending, so that the heartbeats carry the new view.
        self.update_view(now_ms, &mut out);
        if now_ms >= self.next_heartbeat_ms {
            self.send_heartbeats(now_ms, &mut out);
            // Skip missed slots rather than bursting after a pause.
            self.next_heartbeat_ms = (self.next_heartbeat_ms + self.cfg.heartbeat_interval_ms)
                .max(now_ms + self.cfg.heartbeat_interval_ms / 2);
        }
        out
    }

    /// Takes a heartbeat that the transport authenticated as coming from a
    /// configured peer.
    pub fn on_heartbeat(&mut self, now_ms: u64, hb: Heartbeat) -> Vec<Output> {
        let mut out = Vec::new();
        self.observe_time(now_ms, &mut out);
        let name = hb.sender.name.clone();
        if name == self.me.name {
            if hb.sender.generation != self.me.generation {
                out.push(Output::Event(Event::DuplicateName {
                    generation: hb.sender.generation,
                }));
            }
            return out;
        }
        if let Some(opinion) = hb.about_you {
            self.consider_opinion(&name, opinion, &mut out);
        }
        let mismatched = digest::differing(&self.me.config_digest, &hb.sender.config_digest);
        match self.members.get_mut(&name) {
            Some(m) if hb.sender.generation < m.info.generation => return out,
            Some(m)
                if hb.sender.generation == m.info.generation
                    && hb.sender.incarnation < m.info.incarnation =>
            {
                return out;
            }
            Some(m) => {
                if hb.sender.generation > m.info.generation {
                    out.push(Output::Event(Event::MemberRestarted {
                        name: name.clone(),
                        old: m.info.generation,
                        new: hb.sender.generation,
                    }));
                } else if m.state != PeerState::Alive {
                    out.push(Output::Event(Event::MemberUp {
                        name: name.clone(),
                        generation: hb.sender.generation,
                    }));
                }
                if !mismatched.is_empty() && mismatched != m.mismatched {
                    out.push(Output::Event(Event::ConfigMismatch {
                        node: name.clone(),
                        options: mismatched.clone(),
                    }));
                }
                m.info = hb.sender;
                m.state = PeerState::Alive;
                m.last_heard_ms = now_ms;
                m.view_id = hb.view_id;
                m.view_size = hb.view_size;
                m.mismatched = mismatched;
                m.heard = hb.heard;
            }
            None => {
                out.push(Output::Event(Event::MemberUp {
                    name: name.clone(),
                    generation: hb.sender.generation,
                }));
                if !mismatched.is_empty() {
                    out.push(Output::Event(Event::ConfigMismatch {
                        node: name.clone(),
                        options: mismatched.clone(),
                    }));
                }
                self.members.insert(
                    name,
                    Member {
                        info: hb.sender,
                        state: PeerState::Alive,
                        last_heard_ms: now_ms,
                        view_id: hb.view_id,
                        view_size: hb.view_size,
                        mismatched,
                        heard: hb.heard,
                    },
                );
            }
        }
        self.update_view(now_ms, &mut out);
        if now_ms >= self.next_heartbeat_ms {
            out.extend(self.tick(now_ms));
        }
        out
    }

    /// The peer's host refused a TCP connection to its cluster port: the
    /// host is up but the process is gone (it crashed or was killed, and
    /// its kernel closed its sockets). That is proof, not suspicion, so the
    /// peer is down at once instead of after `down_heartbeats`; if it was
    /// only restarting, its new generation joins as usual. A host that
    /// died outright refuses nothing and is found by the heartbeat timeout.
    pub fn peer_gone(&mut self, now_ms: u64, name: &str) -> Vec<Output> {
        let mut out = Vec::new();
        self.observe_time(now_ms, &mut out);
        if let Some(m) = self.members.get_mut(name)
            && m.state != PeerState::Down
        {
            m.state = PeerState::Down;
            out.push(Output::Event(Event::MemberDown {
                name: name.to_string(),
            }));
            self.update_view(now_ms, &mut out);
        }
        out
    }

    /// Rejoins as a new member (`cluster reset`): a new generation, an empty
    /// table; peers see a restart.
    pub fn reset(&mut self, now_ms: u64, generation: u64) -> Vec<Output> {
        self.me.generation = generation;
        self.me.incarnation = 0;
        self.members.clear();
        self.last_call_ms = now_ms;
        self.next_heartbeat_ms = now_ms;
        let mut out = Vec::new();
        self.update_view(now_ms, &mut out);
        out.extend(self.tick(now_ms));
        out
    }

    /// Whether every member of the view reports holding the same view.
    pub fn agreement(&self) -> Agreement {
        let disagreeing: Vec<(String, u64)> = self
            .view
            .members
            .iter()
            .filter_map(|vm| self.members.get(&vm.name))
            .filter(|m| m.view_id != self.view.id)
            .map(|m| (m.info.name.clone(), m.view_id))
            .collect();
        Agreement {
            agreed: disagreeing.is_empty(),
            disagreeing,
        }
    }

    /// The leader of the view: the first MTA node by name, else the first node.
    pub fn leader(&self) -> &str {
        let node_type = |name: &str| {
            if name == self.me.name {
                self.me.node_type
            } else {
                self.members
                    .get(name)
                    .map_or(NodeType::Momentum, |m| m.info.node_type)
            }
        };
        let members = &self.view.members;
        members
            .iter()
            .find(|m| node_type(&m.name) == NodeType::Momentum)
            .or_else(|| members.first())
            .map_or(self.me.name.as_str(), |m| m.name.as_str())
    }

    /// Quorum: a majority of the configured nodes are in the view.
    pub fn quorum(&self) -> Quorum {
        let mut configured: Vec<&str> = self.cfg.peers.iter().map(String::as_str).collect();
        configured.push(&self.me.name);
        configured.sort_unstable();
        configured.dedup();
        let up = self
            .view
            .members
            .iter()
            .filter(|m| configured.contains(&m.name.as_str()))
            .count();
        Quorum {
            configured: configured.len(),
            up,
            needed: configured.len() / 2 + 1,
            mode: self.cfg.quorum,
        }
    }

    /// Detects a pause of this process (see the module docs).
    fn observe_time(&mut self, now_ms: u64, out: &mut Vec<Output>) {
        let gap = now_ms.saturating_sub(self.last_call_ms);
        self.last_call_ms = self.last_call_ms.max(now_ms);
        let late_after = self.cfg.late_after_ms();
        if gap > late_after && now_ms >= self.started_ms + self.cfg.start_delay_ms {
            for m in self.members.values_mut() {
                if m.state != PeerState::Down {
                    m.last_heard_ms = m.last_heard_ms.max(now_ms);
                }
            }
            out.push(Output::Event(Event::TimersLate {
                late_by_ms: gap - self.cfg.heartbeat_interval_ms.min(gap),
            }));
        }
    }

    fn consider_opinion(&mut self, from: &str, opinion: Opinion, out: &mut Vec<Output>) {
        let about_current_me = opinion.generation == self.me.generation;
        if about_current_me
            && opinion.state != PeerState::Alive
            && opinion.incarnation >= self.me.incarnation
        {
            self.me.incarnation = opinion.incarnation.saturating_add(1);
            out.push(Output::Event(Event::Refuted {
                by: from.to_string(),
                incarnation: self.me.incarnation,
            }));
        }
    }

    /// When anyone we trust last heard `name`: our own last heartbeat from it,
    /// or what a member we currently hear (alive, not suspect) reported.
    fn last_evidence_ms(&self, name: &str) -> u64 {
        let direct = self.members.get(name).map_or(0, |m| m.last_heard_ms);
        self.members
            .values()
            .filter(|w| w.state == PeerState::Alive && w.info.name != name)
            .filter_map(|w| {
                let h = w.heard.iter().find(|h| h.name == name)?;
                Some(w.last_heard_ms.saturating_sub(u64::from(h.age_ms)))
            })
            .fold(direct, u64::max)
    }

    /// The `heard` list of our heartbeats at `now_ms`.
    fn heard_list(&self, now_ms: u64) -> Vec<Heard> {
        self.members
            .values()
            .filter(|m| m.state != PeerState::Down)
            .map(|m| Heard {
                name: m.info.name.clone(),
                age_ms: u16::try_from(now_ms.saturating_sub(m.last_heard_ms)).unwrap_or(u16::MAX),
            })
            .collect()
    }

    fn send_heartbeats(&self, now_ms: u64, out: &mut Vec<Output>) {
        let heard = self.heard_list(now_ms);
        for peer in &self.cfg.peers {
            if *peer == self.me.name {
                continue;
            }
            let about_you = self.members.get(peer).map(|m| Opinion {
                state: m.state,
                generation: m.info.generation,
                incarnation: m.info.incarnation,
            });
            out.push(Output::Send {
                to: peer.clone(),
                heartbeat: Heartbeat {
                    sender: self.me.clone(),
                    view_id: self.view.id,
                    view_size: u32::try_from(self.view.members.len()).unwrap_or(u32::MAX),
                    heard: heard.clone(),
                    about_you,
                },
            });
        }
    }

    /// Recomputes the view; on a change, the next heartbeats go out at once
    /// so that peers learn the new view id (and agreement returns) within a
    /// round trip instead of a heartbeat interval.
    fn update_view(&mut self, now_ms: u64, out: &mut Vec<Output>) {
        let mut members: Vec<ViewMember> = self
            .members
            .values()
            .filter(|m| m.state != PeerState::Down)
            .map(|m| ViewMember {
                name: m.info.name.clone(),
                generation: m.info.generation,
            })
            .collect();
        members.push(ViewMember {
            name: self.me.name.clone(),
            generation: self.me.generation,
        });
        let view = View::of(members);
        if view != self.view {
            self.view = view;
            self.view_number += 1;
            out.push(Output::Event(Event::ViewChanged {
                number: self.view_number,
                view: self.view.clone(),
            }));
            if now_ms >= self.started_ms + self.cfg.start_delay_ms {
                self.next_heartbeat_ms = self.next_heartbeat_ms.min(now_ms);
            }
        }
    }
}

#[cfg(test)]
mod tests;
