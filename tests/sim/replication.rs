//! `core::membership` and the real `io::replication::ReplicationDriver`
//! composed per node in the simulator, as `io::runtime`'s engine loop
//! composes them:
//!
//! - **Heartbeats** are datagrams ([`Effect::Send`]): lossy if the scenario
//!   says so. **Replication messages** (`ReplicaUpdate`, `CacheUpdate`) go
//!   on the reliable stream of each peer pair ([`Effect::SendReliable`]), as
//!   the runtime sends them on the TCP links: never lost, in order, dropped
//!   while the pair is cut. Every message is the real wire [`Message`],
//!   carried as the bytes of [`encode_message`] and decoded on arrival, so
//!   the codec is exercised too.
//! - **Engine passes**: every tick or arrival is one pass of the runtime's
//!   loop: membership input and tick, then on a view change `member_left`
//!   for every name gone from the view and `snapshots` to every peer new in
//!   it (names, as the runtime compares them), then `driver.tick(now, wall,
//!   view size)`, whose messages are broadcast to every configured peer. A
//!   pass happens at least every 250 ms (the runtime's read timeout), so the
//!   hot path's changes are drained without any message to wake the node.
//! - **Link up**: a reliable stream that opens (a node starts and connects,
//!   or a cut heals: [`SimNode::reconnected`]) sends `snapshots` to the peer,
//!   as `EngineCommand::LinkUp` does.
//! - **Hot path**: scenarios change the shared objects directly (through
//!   [`Sim::poke`]) with the `_at` variants, the wall clock being
//!   [`WALL_BASE`] + the simulator's clock, so everything replays.
//! - [`Sabotage`] switches off one duty of the engine, for the scenarios
//!   that show each check can fail.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use eccluster::config::model::{Metric, QuorumMode, Replicate, ReplicationType};
use eccluster::core::membership::{Event, Membership, MembershipConfig, Output as MOutput};
use eccluster::core::wire::{Message, decode_message, encode_message};
use eccluster::io::replication::{ReplicationDriver, SharedObjects, shared_objects};
use eccluster::shared::cache::ClusterCache;
use eccluster::shared::cidr::CidrCounts;
use eccluster::shared::gauge::GaugeTable;
use eccluster::shared::metrics::{Metrics, Replication, SeriesType};
use eccluster::shared::throttle::{Throttle, ThrottleTable};
use eccluster::shared::{Scope, SharedObject};

use super::{Effect, LinkSpec, Sim, SimNode, membership};

/// The wall clock at simulated time 0: a multiple of every window used
/// (throttle periods, series intervals), so windows start with the run.
pub const WALL_BASE: u64 = 1_700_000_000_000 / 3_600_000 * 3_600_000;
/// The runtime's longest wait between two engine passes.
pub const PASS_MS: u64 = 250;

pub const CIDR: &str = "inbound_cidr";
pub const GAUGE: &str = "outbound_domains";
pub const THROTTLES: &str = "shared_named_throttles";
pub const METRICS: &str = "metrics";
pub const CACHE: &str = "cache";

/// The audit series and gauge cache defined on every node.
pub const SERIES: &str = "audit";
pub const SERIES_WINDOWS: u64 = 10;
pub const SERIES_INTERVAL_S: u64 = 60;
pub const GAUGE_CACHE: &str = "gc";
/// The shared throttle defined on every node, and its limit.
pub const THROTTLE: &str = "hard";
pub const THROTTLE_N: u64 = 60;
pub const THROTTLE_S: u64 = 4;
pub const THROTTLE_EPS: f64 = 0.5;
/// `max_size` of the cache scope.
pub const CACHE_MAX: i64 = 50;
/// `max_delay` of every scope, in seconds.
pub const MAX_DELAY_S: f64 = 0.2;

fn scope(name: &str, kind: ReplicationType, parameters: Vec<Metric>, max_size: i64) -> Replicate {
    Replicate {
        name: name.into(),
        kind,
        parameters,
        max_delay: MAX_DELAY_S,
        max_pending: 8,
        max_size,
        binding_group: None,
    }
}

/// The `Replicate` scopes every node runs.
pub fn scopes() -> Vec<Replicate> {
    vec![
        scope(CIDR, ReplicationType::InboundCidr, vec![], -1),
        scope(GAUGE, ReplicationType::OutboundDomains, vec![], -1),
        scope(THROTTLES, ReplicationType::SharedNamedThrottles, vec![], -1),
        scope(
            METRICS,
            ReplicationType::Metrics,
            vec![Metric::AuditSeries, Metric::GaugeCache],
            -1,
        ),
        scope(
            CACHE,
            ReplicationType::Cache,
            vec![Metric::Snapshot],
            CACHE_MAX,
        ),
    ]
}

/// One engine duty switched off, to show that a scenario notices.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sabotage {
    /// Never call `member_left`.
    pub skip_member_left: bool,
    /// Never send `snapshots` (neither on a view change nor on link up).
    pub skip_snapshots: bool,
    /// Drop peers' cache updates.
    pub skip_cache_apply: bool,
    /// Tell the driver the view has this many members, whatever it is.
    pub members_override: Option<usize>,
}

/// What a node logs.
#[derive(Clone, Debug, PartialEq)]
pub enum RepEvent {
    Member(Event),
}

type Eff = Effect<Vec<u8>, RepEvent>;

/// One node: membership, the replication driver and its shared objects.
#[derive(Debug)]
pub struct RepNode {
    pub m: Membership,
    pub driver: ReplicationDriver,
    pub objects: SharedObjects,
    pub generation: u64,
    pub throttle: Arc<Throttle>,
    /// The names in the view as of the last pass (the runtime's `members`).
    pub members: Vec<String>,
    peers: Vec<String>,
    sabotage: Sabotage,
    last_pass: u64,
    /// Replication messages this node received (decoded).
    pub received: u64,
}

/// The wall clock at simulated time `now`.
pub fn wall(now: u64) -> u64 {
    WALL_BASE + now
}

fn encode(m: &Message) -> Vec<u8> {
    encode_message(m)
}

impl RepNode {
    pub fn new(
        mcfg: MembershipConfig,
        name: &str,
        generation: u64,
        now: u64,
        sabotage: Sabotage,
    ) -> RepNode {
        let peers: Vec<String> = mcfg.peers.iter().filter(|p| *p != name).cloned().collect();
        let m = Membership::new(mcfg, membership::self_info(name, generation), now);
        let scopes = scopes();
        let objects = shared_objects(&scopes, name);
        let driver = ReplicationDriver::new(&objects, &scopes, generation);
        let SharedObject::Metrics(metrics) = &objects[METRICS] else {
            panic!("metrics is not a metrics object");
        };
        metrics
            .define_series(
                SERIES,
                SeriesType::String,
                SERIES_INTERVAL_S,
                SERIES_WINDOWS,
                Replication::Cluster,
            )
            .expect("define the series");
        metrics
            .define_gauge_cache(GAUGE_CACHE, 1000, 0, true)
            .expect("define the gauge cache");
        let SharedObject::Throttles(throttles) = &objects[THROTTLES] else {
            panic!("shared_named_throttles is not a throttle table");
        };
        let throttle = throttles
            .define(
                THROTTLE,
                &format!("{THROTTLE_N}/{THROTTLE_S}"),
                Some(THROTTLE_EPS),
            )
            .expect("define the throttle");
        RepNode {
            m,
            driver,
            objects,
            generation,
            throttle,
            members: Vec::new(),
            peers,
            sabotage,
            last_pass: now,
            received: 0,
        }
    }

    pub fn name(&self) -> &str {
        &self.m.me().name
    }

    pub fn cidr(&self) -> &CidrCounts {
        match &self.objects[CIDR] {
            SharedObject::Cidr(c) => c,
            _ => unreachable!(),
        }
    }

    pub fn gauge(&self) -> &GaugeTable {
        match &self.objects[GAUGE] {
            SharedObject::Gauge(g) => g,
            _ => unreachable!(),
        }
    }

    pub fn metrics(&self) -> &Metrics {
        match &self.objects[METRICS] {
            SharedObject::Metrics(m) => m,
            _ => unreachable!(),
        }
    }

    pub fn cache(&self) -> &ClusterCache {
        match &self.objects[CACHE] {
            SharedObject::Cache(c) => c,
            _ => unreachable!(),
        }
    }

    pub fn throttles(&self) -> &ThrottleTable {
        match &self.objects[THROTTLES] {
            SharedObject::Throttles(t) => t,
            _ => unreachable!(),
        }
    }

    /// The names in this node's membership view.
    pub fn view(&self) -> Vec<String> {
        self.m
            .view()
            .members
            .iter()
            .map(|m| m.name.clone())
            .collect()
    }

    /// The reliable stream to `peer` opened: send it this node's whole
    /// contribution (`EngineCommand::LinkUp`).
    pub fn link_up(&mut self, peer: &str) -> Vec<Eff> {
        let mut effects = Vec::new();
        self.send_snapshots(peer, &mut effects);
        effects
    }

    fn send_snapshots(&self, peer: &str, effects: &mut Vec<Eff>) {
        if self.sabotage.skip_snapshots {
            return;
        }
        // No managers here: every snapshot goes to every peer.
        for (_, message) in self.driver.snapshots() {
            effects.push(Effect::SendReliable {
                to: peer.to_string(),
                msg: encode(&message),
            });
        }
    }

    /// One pass of the runtime's engine loop, after `outputs` came from an
    /// input to membership.
    fn pass(&mut self, now: u64, mut outputs: Vec<MOutput>) -> Vec<Eff> {
        let mut effects = Vec::new();
        outputs.extend(self.m.tick(now));
        let mut view_changed = false;
        for o in outputs {
            match o {
                MOutput::Send { to, heartbeat } => effects.push(Effect::Send {
                    to,
                    msg: encode(&Message::Heartbeat(heartbeat)),
                }),
                MOutput::Event(e) => {
                    view_changed |= matches!(e, Event::ViewChanged { .. });
                    effects.push(Effect::Event(RepEvent::Member(e)));
                }
            }
        }
        if view_changed {
            let now_members = self.view();
            if !self.sabotage.skip_member_left {
                for gone in self.members.iter().filter(|m| !now_members.contains(m)) {
                    self.driver.member_left(gone);
                }
            }
            let me = self.name().to_string();
            for peer in now_members
                .iter()
                .filter(|m| !self.members.contains(m) && **m != me)
            {
                self.send_snapshots(peer, &mut effects);
                if !self.sabotage.skip_snapshots {
                    effects.push(Effect::SendReliable {
                        to: peer.clone(),
                        msg: encode(&Message::SnapshotRequest),
                    });
                }
            }
            self.members = now_members;
        }
        let size = self
            .sabotage
            .members_override
            .unwrap_or(self.members.len().max(1));
        for (_, message) in self.driver.tick(now, wall(now), size) {
            let bytes = encode(&message);
            for p in &self.peers {
                effects.push(Effect::SendReliable {
                    to: p.clone(),
                    msg: bytes.clone(),
                });
            }
        }
        self.last_pass = now;
        effects
    }
}

impl SimNode for RepNode {
    type Msg = Vec<u8>;
    type Event = RepEvent;

    fn name(&self) -> &str {
        &self.m.me().name
    }

    fn tick(&mut self, now: u64) -> Vec<Eff> {
        self.pass(now, Vec::new())
    }

    fn receive(&mut self, now: u64, from: &str, bytes: Vec<u8>) -> Vec<Eff> {
        let message = decode_message(&bytes).expect("a message the codec wrote decodes");
        assert_eq!(
            encode_message(&message),
            bytes,
            "the codec does not round-trip"
        );
        let mut outputs = Vec::new();
        match message {
            Message::Heartbeat(hb) => outputs = self.m.on_heartbeat(now, hb),
            Message::ReplicaUpdate(u) => {
                self.received += 1;
                self.driver.on_update(from, &u);
            }
            Message::CacheUpdate(u) => {
                self.received += 1;
                if !self.sabotage.skip_cache_apply {
                    self.driver.on_cache_update(&u);
                }
            }
            Message::SnapshotRequest => {
                let mut effects = Vec::new();
                self.send_snapshots(from, &mut effects);
                effects.extend(self.pass(now, outputs));
                return effects;
            }
            other => panic!("unexpected message {other:?}"),
        }
        self.pass(now, outputs)
    }

    fn next_deadline(&self) -> u64 {
        self.m
            .next_deadline()
            .min(
                self.driver
                    .next_deadline(self.last_pass)
                    .unwrap_or(u64::MAX),
            )
            .min(self.last_pass + PASS_MS)
    }

    fn reconnected(&mut self, _now: u64, peer: &str) -> Vec<Eff> {
        self.link_up(peer)
    }
}

/// A cluster of `names` (none started): membership at 250 ms heartbeats
/// (suspect 750, down 1250), every link `link`, `sabotage` on every node.
pub fn cluster(seed: u64, names: &[&str], link: LinkSpec, sabotage: Sabotage) -> Sim<RepNode> {
    let mcfg = membership::config(names, QuorumMode::None);
    let mut sim = Sim::new(
        seed,
        Box::new(move |name: &str, generation, now| {
            RepNode::new(mcfg.clone(), name, generation, now, sabotage)
        }),
    );
    sim.set_default_link(link);
    sim
}

// ---------------------------------------------------------------------------
// The keys scenarios use, and what "converged" means
// ---------------------------------------------------------------------------

/// The addresses the CIDR scenarios count: 10.{0,1}.{0,1,2}.{1,2,3}, so
/// that every maintained level and a few in between have several leaves.
pub fn addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    for b in 0..2u8 {
        for c in 0..3u8 {
            for d in 1..4u8 {
                out.push(IpAddr::V4(Ipv4Addr::new(10, b, c, d)));
            }
        }
    }
    out
}

/// The prefixes the checks read: /0, /8, /12, /16, /20, /24, /30 and /32s.
pub fn prefixes() -> Vec<(IpAddr, u8)> {
    let mut out = vec![
        (IpAddr::V4(Ipv4Addr::new(0, 0, 0, 0)), 0),
        (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 0)), 8),
        (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 0)), 12),
    ];
    for b in 0..2u8 {
        out.push((IpAddr::V4(Ipv4Addr::new(10, b, 0, 0)), 16));
        out.push((IpAddr::V4(Ipv4Addr::new(10, b, 0, 0)), 20));
        for c in 0..3u8 {
            out.push((IpAddr::V4(Ipv4Addr::new(10, b, c, 0)), 24));
            out.push((IpAddr::V4(Ipv4Addr::new(10, b, c, 0)), 30));
        }
    }
    out.extend(addresses().into_iter().map(|a| (a, 32)));
    out
}

pub fn gauge_keys() -> Vec<Vec<u8>> {
    (0..5)
        .map(|i| format!("dom{i}.example").into_bytes())
        .collect()
}

pub fn series_keys() -> Vec<Vec<u8>> {
    (0..4).map(|i| format!("item{i}").into_bytes()).collect()
}

pub fn gauge_cache_keys() -> Vec<Vec<u8>> {
    (0..4).map(|i| format!("gk{i}").into_bytes()).collect()
}

/// One random hot-path change on `node` at `now`: a CIDR increment or
/// decrement, a gauge add, a series add, a gauge cache inc/dec, or a cache
/// set or remove (keys `c0..c{cache_keys}`).
pub fn random_op(node: &RepNode, now: u64, pick: u64, arg: u64, cache_keys: u64) {
    let w = wall(now);
    match pick % 6 {
        0 => {
            let a = addresses();
            let ip = a[(arg % a.len() as u64) as usize];
            if (arg / 64).is_multiple_of(3) {
                node.cidr().decrement(ip);
            } else {
                node.cidr().increment(ip);
            }
        }
        1 => {
            let k = gauge_keys();
            let delta = (arg / 16 % 5) as i64 - 1;
            node.gauge().add(&k[(arg % k.len() as u64) as usize], delta);
        }
        2 => {
            let k = series_keys();
            node.metrics()
                .series_add(SERIES, &k[(arg % k.len() as u64) as usize], 1, w)
                .expect("series add");
        }
        3 => {
            let k = gauge_cache_keys();
            let key = &k[(arg % k.len() as u64) as usize];
            if (arg / 16).is_multiple_of(3) {
                node.metrics().gauge_dec(GAUGE_CACHE, key, w).expect("dec");
            } else {
                node.metrics().gauge_inc(GAUGE_CACHE, key, w).expect("inc");
            }
        }
        _ => {
            let key = format!("c{}", arg % cache_keys.max(1));
            if (arg / 1024).is_multiple_of(5) {
                node.cache().remove_at(key.as_bytes(), w).expect("remove");
            } else {
                let value = format!("{}@{}", arg % 1000, node.name());
                node.cache()
                    .set_at(key.as_bytes(), value.as_bytes(), 0, w)
                    .expect("set");
            }
        }
    }
}

/// Every counting object's global view on `node` against the sum of the
/// local values of `contributors`; the first difference.
pub fn counts_match(sim: &Sim<RepNode>, node: &str, contributors: &[String]) -> Result<(), String> {
    let me = sim
        .node(node)
        .ok_or_else(|| format!("{node} not running"))?;
    let others: Vec<&RepNode> = contributors
        .iter()
        .map(|c| sim.node(c).expect("a running contributor"))
        .collect();
    let w = wall(sim.now());
    let check = |what: String, global: i64, f: &dyn Fn(&RepNode) -> i64| {
        let sum: i64 = others.iter().map(|n| f(n)).sum();
        if global == sum {
            Ok(())
        } else {
            let locals: Vec<(String, i64)> = others
                .iter()
                .map(|n| (n.name().to_string(), f(n)))
                .collect();
            Err(format!(
                "t={} {node}: {what}: global {global}, but locals {locals:?} sum to {sum}",
                sim.now()
            ))
        }
    };
    for (p, len) in prefixes() {
        check(
            format!("{CIDR} {p}/{len}"),
            me.cidr().count(p, len, Scope::Global),
            &|n| n.cidr().count(p, len, Scope::Local),
        )?;
    }
    for k in gauge_keys() {
        check(
            format!("{GAUGE} {}", String::from_utf8_lossy(&k)),
            me.gauge().get(&k, Scope::Global),
            &|n| n.gauge().get(&k, Scope::Local),
        )?;
    }
    let series = |n: &RepNode, k: &[u8], scope| {
        n.metrics()
            .series_count(SERIES, k, 0, SERIES_WINDOWS - 1, scope, w)
            .expect("series count")
    };
    for k in series_keys() {
        check(
            format!("series {}", String::from_utf8_lossy(&k)),
            series(me, &k, Scope::Global),
            &|n| series(n, &k, Scope::Local),
        )?;
    }
    let gc = |n: &RepNode, k: &[u8], scope| {
        n.metrics()
            .gauge_get(GAUGE_CACHE, k, scope, w)
            .expect("gauge get")
    };
    for k in gauge_cache_keys() {
        check(
            format!("gauge cache {}", String::from_utf8_lossy(&k)),
            gc(me, &k, Scope::Global),
            &|n| gc(n, &k, Scope::Local),
        )?;
    }
    Ok(())
}

/// A node's live cache values now.
pub type CacheRows = Vec<(Vec<u8>, Vec<u8>)>;

impl Sim<RepNode> {
    pub fn rep(&self, name: &str) -> &RepNode {
        self.node(name)
            .unwrap_or_else(|| panic!("{name} is not running"))
    }

    /// Starts `name` and opens its reliable streams to every running peer
    /// it is not cut from: both ends send their snapshots (`LinkUp`).
    pub fn join(&mut self, name: &str) {
        self.start(name);
        let peers: Vec<String> = self
            .live_names()
            .into_iter()
            .filter(|p| p != name && self.link_up(name, p) && self.link_up(p, name))
            .collect();
        for p in peers {
            let to = p.clone();
            self.poke(name, |n, _| n.link_up(&to));
            let to = name.to_string();
            self.poke(&p, |n, _| n.link_up(&to));
        }
    }

    /// Every running node's view is every running node, and agreed.
    pub fn views_complete(&self) -> bool {
        let live = self.live_names();
        self.live()
            .all(|(_, n)| n.view() == live && n.m.agreement().agreed)
    }

    /// Every running node's live cache values.
    pub fn cache_rows(&self) -> BTreeMap<String, CacheRows> {
        let w = wall(self.now());
        self.live()
            .map(|(name, n)| (name.to_string(), n.cache().rows_at(w)))
            .collect()
    }

    /// Every running node's counts match the sum of the running nodes'
    /// locals, and every cache holds the same live values.
    pub fn converged(&self) -> Result<(), String> {
        let live = self.live_names();
        for n in &live {
            counts_match(self, n, &live)?;
        }
        let rows = self.cache_rows();
        let mut it = rows.iter();
        if let Some((first, r0)) = it.next() {
            for (name, r) in it {
                if r != r0 {
                    return Err(format!(
                        "t={} caches differ: {first} {} values, {name} {} values; \
                         {first} {:?}\n{name} {:?}",
                        self.now(),
                        r0.len(),
                        r.len(),
                        show(r0),
                        show(r)
                    ));
                }
            }
        }
        Ok(())
    }
}

fn show(rows: &CacheRows) -> Vec<String> {
    rows.iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                String::from_utf8_lossy(k),
                String::from_utf8_lossy(v)
            )
        })
        .collect()
}
