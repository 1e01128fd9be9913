//! `core::membership` and `core::duravip` composed per node in the
//! simulator, as the engine composes them:
//!
//! - **Heartbeats** are unreliable datagrams ([`Effect::Send`]): the sim's
//!   normal links, lossy if the scenario says so.
//! - **DuraVIP tables** travel on the reliable stream of each peer pair
//!   ([`Effect::SendReliable`]): no loss, in order, dropped while the pair
//!   is cut; when the link heals each end re-sends its current table
//!   ([`SimNode::reconnected`]), as after a TCP reconnect.
//! - On every `Event::ViewChanged` (and whenever quorum flips) the node
//!   calls `DuraVip::set_view(now, members, quorum.has_quorum())`; tables
//!   arrive through `on_table(now, from, generation, table)`; both machines
//!   are ticked when due, and `next_deadline` is the earlier of the two.
//! - **Plumbing** is simulated: `Acquire` / `Release` outputs update the
//!   node's `plumbed` set (with the time) and are logged as events, so the
//!   invariants ([`super::duravip_invariants`]) judge what is actually
//!   plumbed, not what the machines believe.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;

use eccluster::config::model::QuorumMode;
use eccluster::core::duravip::{Claim, DuraVip, DuraVipConfig, Output as DvOutput, Service, Table};
use eccluster::core::membership::{Event, Membership, MembershipConfig, Output as MOutput};
use eccluster::core::wire::Heartbeat;

use super::{Effect, LinkSpec, Sim, SimNode, duravip_invariants, membership};

/// What travels between composed nodes.
#[derive(Clone, Debug)]
pub enum DvMsg {
    /// A membership heartbeat (unreliable).
    Heartbeat(Heartbeat),
    /// A DuraVIP table (reliable), with the sender's boot generation.
    Table { generation: u64, table: Arc<Table> },
}

/// What a composed node logs.
#[derive(Clone, Debug, PartialEq)]
pub enum DvEvent {
    Member(Event),
    /// The IP was plumbed here.
    Acquired(IpAddr),
    /// The IP was unplumbed here.
    Released(IpAddr),
}

type Eff = Effect<DvMsg, DvEvent>;

/// One node: membership plus DuraVIP plus a simulated plumber.
#[derive(Debug)]
pub struct DvNode {
    pub m: Membership,
    pub dv: DuraVip,
    pub cfg: DuraVipConfig,
    pub generation: u64,
    /// When this process started.
    pub started_at: u64,
    /// This node's configured DuraVIPs.
    pub claims: Rc<Vec<Claim>>,
    /// Whether any of them names a preferred node.
    pub has_preferences: bool,
    peers: Vec<String>,
    view_number: u64,
    quorum: bool,
    /// What is plumbed here, and since when.
    pub plumbed: BTreeMap<IpAddr, u64>,
    /// Every release here: (time, IP).
    pub releases: Vec<(u64, IpAddr)>,
    /// The last acquire or release of each IP here.
    pub last_change: BTreeMap<IpAddr, u64>,
    /// Bumped on every acquire or release (cheap change detection).
    pub plumb_seq: u64,
    /// Bumped on every input to the DuraVIP machine.
    pub dv_seq: u64,
}

impl DvNode {
    pub fn new(
        mcfg: MembershipConfig,
        cfg: DuraVipConfig,
        name: &str,
        generation: u64,
        now: u64,
        claims: Rc<Vec<Claim>>,
    ) -> DvNode {
        let peers: Vec<String> = mcfg.peers.iter().filter(|p| *p != name).cloned().collect();
        let m = Membership::new(mcfg, membership::self_info(name, generation), now);
        let mut dv = DuraVip::new(name, cfg.clone(), now);
        for c in claims.iter() {
            // Only an announcement comes out before the node has settled; peers
            // get the table when they enter the view (a newcomer is announced to).
            let out = dv.set_claim(now, c.clone());
            assert!(
                out.iter().all(|o| matches!(o, DvOutput::Announce(_))),
                "{name} acted at start: {out:?}"
            );
        }
        let view: Vec<(String, u64)> = m
            .view()
            .members
            .iter()
            .map(|v| (v.name.clone(), v.generation))
            .collect();
        let quorum = m.quorum().has_quorum();
        let out = dv.set_view(now, &view, quorum);
        assert!(out.iter().all(|o| matches!(o, DvOutput::Announce(_))));
        DvNode {
            view_number: m.view_number(),
            m,
            dv,
            cfg,
            generation,
            started_at: now,
            has_preferences: claims.iter().any(|c| c.preference.is_some()),
            claims,
            peers,
            quorum,
            plumbed: BTreeMap::new(),
            releases: Vec::new(),
            last_change: BTreeMap::new(),
            plumb_seq: 0,
            dv_seq: 0,
        }
    }

    pub fn name(&self) -> &str {
        &self.m.me().name
    }

    /// `cluster duravip move IP to NODE` reaches this node.
    pub fn move_to(&mut self, now: u64, ip: IpAddr, to: &str) -> Vec<Eff> {
        let mut effects = Vec::new();
        let out = self.dv.move_to(now, ip, to).expect("a valid move");
        self.duravip(now, out, &mut effects);
        effects
    }

    fn membership(&mut self, now: u64, out: Vec<MOutput>, effects: &mut Vec<Eff>) {
        let mut view_changed = false;
        for o in out {
            match o {
                MOutput::Send { to, heartbeat } => effects.push(Effect::Send {
                    to,
                    msg: DvMsg::Heartbeat(heartbeat),
                }),
                MOutput::Event(e) => {
                    view_changed |= matches!(e, Event::ViewChanged { .. });
                    effects.push(Effect::Event(DvEvent::Member(e)));
                }
            }
        }
        // Quorum is a function of the view, so it can only flip with it.
        if !view_changed && self.m.view_number() == self.view_number {
            return;
        }
        let quorum = self.m.quorum().has_quorum();
        {
            self.view_number = self.m.view_number();
            self.quorum = quorum;
            let view: Vec<(String, u64)> = self
                .m
                .view()
                .members
                .iter()
                .map(|v| (v.name.clone(), v.generation))
                .collect();
            let o = self.dv.set_view(now, &view, quorum);
            self.duravip(now, o, effects);
        }
    }

    fn duravip(&mut self, now: u64, out: Vec<DvOutput>, effects: &mut Vec<Eff>) {
        self.dv_seq += 1;
        for o in out {
            match o {
                DvOutput::Acquire(c) => {
                    let before = self.plumbed.insert(c.ip, now);
                    assert!(before.is_none(), "{}: {} acquired twice", self.name(), c.ip);
                    self.last_change.insert(c.ip, now);
                    self.plumb_seq += 1;
                    effects.push(Effect::Event(DvEvent::Acquired(c.ip)));
                }
                DvOutput::Release(c) => {
                    let before = self.plumbed.remove(&c.ip);
                    assert!(
                        before.is_some(),
                        "{}: released unplumbed {}",
                        self.name(),
                        c.ip
                    );
                    self.last_change.insert(c.ip, now);
                    self.releases.push((now, c.ip));
                    self.plumb_seq += 1;
                    effects.push(Effect::Event(DvEvent::Released(c.ip)));
                }
                DvOutput::Announce(table) => {
                    let table = Arc::new(table);
                    for p in &self.peers {
                        effects.push(Effect::SendReliable {
                            to: p.clone(),
                            msg: DvMsg::Table {
                                generation: self.generation,
                                table: table.clone(),
                            },
                        });
                    }
                }
            }
        }
    }
}

impl SimNode for DvNode {
    type Msg = DvMsg;
    type Event = DvEvent;

    fn name(&self) -> &str {
        &self.m.me().name
    }

    fn tick(&mut self, now: u64) -> Vec<Eff> {
        let mut effects = Vec::new();
        let out = self.m.tick(now);
        self.membership(now, out, &mut effects);
        if now >= self.dv.next_deadline() {
            let out = self.dv.tick(now);
            self.duravip(now, out, &mut effects);
        }
        effects
    }

    fn receive(&mut self, now: u64, from: &str, msg: DvMsg) -> Vec<Eff> {
        let mut effects = Vec::new();
        match msg {
            DvMsg::Heartbeat(hb) => {
                let out = self.m.on_heartbeat(now, hb);
                self.membership(now, out, &mut effects);
            }
            DvMsg::Table { generation, table } => {
                let out = self.dv.on_table(now, from, generation, table);
                self.duravip(now, out, &mut effects);
            }
        }
        effects
    }

    fn next_deadline(&self) -> u64 {
        self.m.next_deadline().min(self.dv.next_deadline())
    }

    fn reconnected(&mut self, _now: u64, peer: &str) -> Vec<Eff> {
        vec![Effect::SendReliable {
            to: peer.to_string(),
            msg: DvMsg::Table {
                generation: self.generation,
                table: Arc::new(self.dv.table()),
            },
        }]
    }
}

/// The scenarios' DuraVIP timings: mature after 5 s, balance every 10 s.
pub fn dv_config(balance_set_size: usize, quorum: QuorumMode) -> DuraVipConfig {
    DuraVipConfig {
        view_mature_ms: 5000,
        balance_interval_ms: 10_000,
        balance_set_size,
        quorum,
    }
}

/// The `i`-th test DuraVIP address.
pub fn ip(i: u32) -> IpAddr {
    IpAddr::from([10, 1, (i >> 8) as u8, i as u8])
}

/// A claim of IP `i` used by binding `b{i}`.
pub fn claim(i: u32, preference: Option<&str>) -> Claim {
    Claim {
        ip: ip(i),
        names: vec![format!("b{i}")],
        services: vec![Service::Binding],
        preference: preference.map(str::to_string),
    }
}

/// Which claims each node is configured with.
pub type ClaimsOf = Box<dyn Fn(&str) -> Vec<Claim>>;

/// Every node claims IPs `0..n`, no preferences.
pub fn same_claims(n: u32) -> ClaimsOf {
    let claims: Vec<Claim> = (0..n).map(|i| claim(i, None)).collect();
    Box::new(move |_| claims.clone())
}

/// A cluster of `names` (none started), membership at 250 ms heartbeats
/// (suspect 750, down 1250, no start delay), every link `link`, with the
/// membership and DuraVIP invariants checked after every step.
pub fn cluster(
    seed: u64,
    names: &[&str],
    cfg: DuraVipConfig,
    claims_of: ClaimsOf,
    link: LinkSpec,
) -> Sim<DvNode> {
    let mcfg = membership::config(names, cfg.quorum);
    // A node's configuration is the same at every (re)start.
    let claims: BTreeMap<String, Rc<Vec<Claim>>> = names
        .iter()
        .map(|n| (n.to_string(), Rc::new(claims_of(n))))
        .collect();
    let mut sim = Sim::new(
        seed,
        Box::new(move |name: &str, generation, now| {
            DvNode::new(
                mcfg.clone(),
                cfg.clone(),
                name,
                generation,
                now,
                claims[name].clone(),
            )
        }),
    );
    sim.set_default_link(link);
    for (name, check) in duravip_invariants::DURAVIP {
        sim.add_invariant(name, *check);
    }
    sim
}

impl Sim<DvNode> {
    /// The running node; panics if it is not running.
    pub fn dv_node(&self, name: &str) -> &DvNode {
        self.node(name)
            .unwrap_or_else(|| panic!("{name} is not running"))
    }

    /// The running nodes that have `ip` plumbed.
    pub fn owners_of(&self, ip: IpAddr) -> Vec<String> {
        self.live()
            .filter(|(_, n)| n.plumbed.contains_key(&ip))
            .map(|(name, _)| name.to_string())
            .collect()
    }

    /// How many IPs each running node has plumbed.
    pub fn loads(&self) -> BTreeMap<String, usize> {
        self.live()
            .map(|(name, n)| (name.to_string(), n.plumbed.len()))
            .collect()
    }

    /// The names in `name`'s membership view.
    pub fn view_of(&self, name: &str) -> Vec<String> {
        let view = self.dv_node(name).m.view();
        view.members.iter().map(|m| m.name.clone()).collect()
    }

    /// Every running node holds the same agreed view.
    pub fn views_agree(&self) -> bool {
        let mut views = self.live().map(|(_, n)| n.m.view());
        let Some(first) = views.next() else {
            return true;
        };
        views.all(|v| v == first) && self.live().all(|(_, n)| n.m.agreement().agreed)
    }
}
