//! DuraVIP: one owner per IP address, agreed by every node without an
//! election round.
//!
//! Every node publishes a **table**: the DuraVIPs it is configured for (its
//! *claims*: the IP, the binding or listener names on it, the services, an
//! optional preferred node) and the IPs it currently *owns*. Tables travel
//! over the reliable links; each node keeps the latest table of every
//! member. From the view and those tables every node evaluates the same
//! rules, and each node acts only on its own part of the result:
//!
//! 1. **Candidates.** The candidates for an IP are the view's members that
//!    claim it. Claims that disagree on the names using the IP make it
//!    `BROKEN` (mail is assigned to bindings by name, so it could leave from
//!    the wrong address): it is not managed at all. Disagreeing services
//!    make it `UNSAFE` (shown, still managed). Two different preferred nodes
//!    make it a `conflict`: the preference is ignored.
//! 2. **Orphans go to their named receiver, else the preferred node, else
//!    to the least loaded candidate.** An IP no live candidate owns is
//!    assigned to the target of a manual move (rule 6), else to the
//!    receiver its releaser named (rule 4), else, in IP
//!    order, to its preferred node when that node is a candidate, otherwise to the
//!    candidate owning the fewest IPs so far (counting the assignments made
//!    earlier in the same pass), ties broken by a rendezvous hash of node
//!    and IP. The node so chosen acquires it; nobody else does. This is the
//!    failover path: when an owner leaves the view, its IPs become orphans
//!    at once, so they move within the detection time.
//! 3. **Owners give way, never take.** A node releases an IP when it is no
//!    longer a candidate, when the preferred node is a candidate and is not
//!    it, when two nodes own it (after a healed partition: the keeper is the
//!    preferred node, else the higher rendezvous hash), or when quorum is
//!    required and lost. Releasing is announced after the address is gone,
//!    and only orphans are acquired, so a planned move never has two owners
//!    (release before acquire).
//! 4. **Balancing** happens only in a mature view (unchanged for
//!    `view_mature_time`), every `view_balance_interval`: a node owning more
//!    than one IP above the least loaded candidate of its IPs releases up to
//!    `duravip_balance_set_size` of them, chosen by rendezvous hash towards
//!    that node, and they are picked up as orphans. That is why the batch
//!    size must be equal everywhere (it travels in the config digest).
//!
//!    **Planned moves name their receiver.** Loads are what each node's
//!    tables say, and tables are in flight: when two nodes balance at once,
//!    the others assign the two orphans by loads that differ from node to
//!    node, and an orphan could go to two nodes (each computing itself) or
//!    to a node its releaser did not mean. So a node that releases an IP
//!    for someone (balancing, giving way to the preferred node, a manual
//!    move) lists a [`Handoff`] in the same table that shows the release:
//!    whoever sees the orphan sees the receiver, by name and generation,
//!    and every node assigns it there (the releaser judged it eligible;
//!    others' eligibility clocks differ by a heartbeat, which is exactly the
//!    disagreement to avoid). A handoff stays in the releaser's table after
//!    the receiver has acquired: dropping it then would let a peer that
//!    hears the drop before the acquisition see a plain orphan. So
//!    handoffs are numbered (one more than any the releaser has seen for
//!    the IP), the highest counts, and older ones are history; a releaser
//!    drops its own when it owns the IP again or the receiver has left,
//!    restarted or stopped claiming it, and an orphan whose latest handoff
//!    names such a node falls back to the rules above.
//! 5. **Start-up.** A node acquires orphans only after it has been a member
//!    for `view_mature_time`, so that it has heard the existing owners.
//!    Others therefore count a node that joins (or restarts) while they run
//!    as *eligible* — a target for orphans, a preferred node to give way
//!    to — only once it has been in their view for `view_mature_time` (it
//!    started before they heard it, so it has settled by then); members
//!    already present when this node itself settled (a cold start) are
//!    eligible at once. Orphans go to eligible candidates when there are
//!    any: a failover never waits for a newcomer to settle, and a preferred
//!    node that returns gets its IPs back only when it can plumb them.
//! 6. **Manual moves.** `cluster duravip move IP to NODE` reaches every
//!    node at about the same time (a manager broadcasts it), and each
//!    records an override, [`DuraVip::move_to`]: it acts like a preference
//!    that wins over the configured one, so the owner gives way to the
//!    target (naming it, rule 4) and the orphan goes to the target even
//!    before it is eligible, since the operator asked; the target itself
//!    acquires before it has settled if it holds a table from every member
//!    (it has heard every owner, so the orphan is one). A node that missed
//!    the broadcast still agrees, through the owner's handoff; if the
//!    owner missed it, nothing moves (owners give way, never take). The
//!    override ends when the target owns the IP, when the target leaves
//!    the view (or restarts, or stops claiming the IP: the normal rules
//!    take over) and after `2 × view_mature_time` at the latest, so a move
//!    that cannot happen (the target lost quorum) is not pending forever.
//!    The target then keeps the IP against balancing *and* against the
//!    preference until the next view change: otherwise balancing or the
//!    preferred node would undo the operator's move at the next round. A
//!    view change is when the cluster rearranges itself anyway.
//!
//! **Cost.** Tables arrive all the time (every acquire and release is
//! announced to every peer), so a decision must not cost the whole
//! cluster: with 16 nodes and 1,000 DuraVIPs, re-evaluating every IP from
//! every member's claims on every table made a simulated cluster take
//! minutes. Only two kinds of IP can call for action on a node: those it
//! owns (rule 3, balancing) and the orphans (rule 2). So the machine keeps
//! an index by IP (each member's claim and ownership, the analysis of the
//! claims, the candidate owners) updated from the *difference* between a
//! member's old and new table, plus the set of orphans, and a decision
//! visits just those. A node's claims rarely change, so tables share them
//! (`Arc`), and a table whose claims are the same list as the last one's
//! costs only the diff of its owned IPs.
//!
//! Everything here is pure: it is given the time, the view and the tables,
//! and returns acquire / release / announce outputs.

mod follow;
mod from_config;
#[cfg(test)]
mod tests;

pub use follow::{Follower, followers_from_config};
pub use from_config::{claims_from_config, topology_for};

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use crate::config::model::QuorumMode;

/// What uses an IP on a node.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Service {
    /// A sending binding (the reference shows it as `multivip`).
    Binding,
    /// A listener, by port (the reference's `smtp` and friends).
    Listener(u16),
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Service::Binding => f.write_str("multivip"),
            Service::Listener(25) => f.write_str("smtp"),
            Service::Listener(port) => write!(f, "listener:{port}"),
        }
    }
}

/// One node's configuration for one DuraVIP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    pub ip: IpAddr,
    /// Binding and listener names using the IP, sorted.
    pub names: Vec<String>,
    /// Services using the IP, sorted.
    pub services: Vec<Service>,
    pub preference: Option<String>,
}

/// What a node publishes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    /// Increases with every change, so an older table is never applied
    /// over a newer one.
    pub version: u64,
    /// Shared between the tables of one node while it does not change,
    /// which is most of the time: announcing and comparing are then cheap.
    pub claims: Arc<Vec<Claim>>,
    pub owned: Vec<IpAddr>,
    /// The IPs this node released towards a chosen receiver and nobody owns
    /// yet (module docs, rule 4).
    pub handoffs: Vec<Handoff>,
}

/// "I released this IP for that node": the receiver, by name and
/// generation, that every node assigns the orphan to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handoff {
    pub ip: IpAddr,
    pub to: String,
    pub generation: u64,
    /// One more than any handoff of the IP its releaser had seen: the
    /// latest handoff of an IP is the one with the highest number.
    pub seq: u64,
}

/// Timing and policy, from the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DuraVipConfig {
    pub view_mature_ms: u64,
    pub balance_interval_ms: u64,
    pub balance_set_size: usize,
    pub quorum: QuorumMode,
}

/// Flags of one IP, as `cluster duravip show` prints them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    pub owned: bool,
    pub unsafe_services: bool,
    pub conflict: bool,
    pub broken: bool,
}

/// What the caller must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Plumb the IP here and announce it (the host's "gained" hook follows).
    Acquire(Claim),
    /// Unplumb it (the host's "lost" hook follows). Carry it out before the
    /// next `Announce`.
    Release(Claim),
    /// Send this table to every peer.
    Announce(Table),
}

/// The state of one IP for display.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpState {
    pub ip: IpAddr,
    pub names: Vec<String>,
    pub services: Vec<Service>,
    pub flags: Flags,
    /// The candidates, with their services, and which one owns it.
    pub candidates: Vec<(String, Vec<Service>)>,
    pub owner: Option<String>,
    pub view_stable_ms: u64,
    pub config_stable_ms: u64,
    /// Where an operator's move is taking it (rule 6), until it is there.
    pub moving_to: Option<String>,
}

/// One claimed IP as [`DuraVip::owners`] lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpOwner<'a> {
    pub ip: IpAddr,
    /// The binding names on it, as the candidates' claims give them.
    pub names: &'a [String],
    /// The candidate that owns it, by name (the first by name in a split
    /// brain).
    pub owner: Option<&'a str>,
    /// Whether this node owns it (also in a split brain where `owner`
    /// names the other side).
    pub owned_here: bool,
}

/// Why [`DuraVip::move_to`] refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MoveError {
    /// No member of the view claims the IP.
    NotClaimed,
    /// The node is not in the view.
    NotInView,
    /// The node is in the view but does not claim the IP.
    NotACandidate,
    /// The claims disagree on the names using the IP: it is not managed.
    Broken,
    /// This node may own nothing (quorum required and lost).
    NoQuorum,
}

impl fmt::Display for MoveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MoveError::NotClaimed => "no node in the view claims that address",
            MoveError::NotInView => "that node is not in the view",
            MoveError::NotACandidate => "that node does not claim that address",
            MoveError::Broken => "that address is BROKEN (its claims disagree on the names)",
            MoveError::NoQuorum => "no quorum",
        })
    }
}

impl std::error::Error for MoveError {}

/// An operator's move in progress (rule 6).
#[derive(Clone, Debug)]
struct Move {
    to: String,
    generation: u64,
    until_ms: u64,
}

/// A member's latest table, as sent by one generation of it.
#[derive(Clone, Debug)]
struct Peer {
    generation: u64,
    table: Arc<Table>,
}

/// Everything the rules need about one IP, kept up to date as claims,
/// tables and the view change, so that a decision only visits the IPs this
/// node owns and the orphans.
#[derive(Clone, Debug)]
struct IpEntry {
    /// The view's members (this node included) that claim the IP or list it
    /// as owned, by name.
    nodes: BTreeMap<String, Slot>,
    /// How many of them are candidates, how many candidates own it and
    /// the first of those by name (counted on every change, read far more
    /// often).
    candidate_count: usize,
    owner_count: usize,
    owner: Option<String>,
    /// What the claims say, recomputed when they change.
    analysis: Analysis,
    candidates_since_ms: u64,
    config_since_ms: u64,
}

/// One member's part in an IP.
#[derive(Clone, Debug)]
struct Slot {
    /// Its claim: with one, the member is a candidate.
    claim: Option<Claim>,
    owns: bool,
    /// The receiver this member released the IP for.
    handoff: Option<Handoff>,
    /// `affinity(member, ip)`, which every tie-break asks for.
    affinity: u64,
}

impl Slot {
    fn new(node: &str, ip: &IpAddr) -> Slot {
        Slot {
            claim: None,
            owns: false,
            handoff: None,
            affinity: affinity(node, ip),
        }
    }
}

/// A candidate for an IP, as the rules see it.
#[derive(Clone, Copy, Debug)]
struct Candidate<'a> {
    name: &'a str,
    claim: &'a Claim,
    owns: bool,
    affinity: u64,
}

impl IpEntry {
    fn new(now_ms: u64) -> IpEntry {
        IpEntry {
            nodes: BTreeMap::new(),
            candidate_count: 0,
            owner_count: 0,
            owner: None,
            analysis: analyse(&[]),
            candidates_since_ms: now_ms,
            config_since_ms: now_ms,
        }
    }

    /// The candidates, by name.
    fn candidates(&self) -> impl Iterator<Item = Candidate<'_>> {
        self.nodes.iter().filter_map(|(n, s)| {
            Some(Candidate {
                name: n,
                claim: s.claim.as_ref()?,
                owns: s.owns,
                affinity: s.affinity,
            })
        })
    }

    fn is_candidate(&self, node: &str) -> bool {
        self.nodes.get(node).is_some_and(|s| s.claim.is_some())
    }

    /// The candidates that own it.
    fn owners(&self) -> impl Iterator<Item = Candidate<'_>> {
        self.candidates().filter(|c| c.owns)
    }

    fn is_claimed(&self) -> bool {
        self.candidate_count > 0
    }

    /// Claimed, and no candidate owns it.
    fn is_orphan(&self) -> bool {
        self.is_claimed() && self.owner_count == 0
    }

    /// The one preference of the candidates, when it names a candidate.
    fn candidate_preference(&self) -> Option<&str> {
        self.analysis
            .preference
            .as_deref()
            .filter(|p| self.is_candidate(p))
    }
}

/// What an owner does with an IP (rule 3).
#[derive(Debug)]
enum Verdict<'a> {
    Keep,
    /// Nobody in particular is to have it (or another owner keeps it).
    Release,
    /// A planned move: release it for this node (rule 4).
    HandTo(&'a str),
}

/// What one pass of the rules decided.
#[derive(Debug, Default)]
struct Plan {
    /// With the receiver of a planned move.
    release: Vec<(IpAddr, Option<String>)>,
    acquire: Vec<IpAddr>,
    next_balance_ms: Option<u64>,
}

/// One node's DuraVIP state machine; see the module docs.
#[derive(Clone, Debug)]
pub struct DuraVip {
    me: String,
    cfg: DuraVipConfig,
    joined_ms: u64,
    /// This node's claims, in IP order: the list its tables publish,
    /// shared with them.
    local: Arc<Vec<Claim>>,
    /// What this node owns, with the claim it acquired it under (for the
    /// "lost" hook, even after the claim itself is gone).
    owned: BTreeMap<IpAddr, Claim>,
    version: u64,
    announced: u64,
    /// The latest table of every node heard from; only those of current
    /// view members (with that generation) count, and only those are in
    /// `index`.
    tables: BTreeMap<String, Peer>,
    /// The view's members and their generations.
    view: Vec<(String, u64)>,
    /// When each peer in the view (by name: generation, since) entered it.
    member_since: BTreeMap<String, (u64, u64)>,
    view_since_ms: u64,
    has_quorum: bool,
    next_balance_ms: u64,
    last_ms: u64,
    /// Every IP a member claims or owns: this node's claims and ownership
    /// and those of the counted tables.
    index: BTreeMap<IpAddr, IpEntry>,
    /// The IPs of `index` that are claimed and owned by no candidate.
    orphans: BTreeSet<IpAddr>,
    /// What this node released towards a receiver, until the receiver is
    /// gone or this node owns the IP again.
    handoffs: BTreeMap<IpAddr, Handoff>,
    /// Operators' moves in progress, by IP (rule 6).
    moves: BTreeMap<IpAddr, Move>,
    /// What was moved here by hand: kept against balancing and preference
    /// until the next view change (rule 6).
    pinned: BTreeSet<IpAddr>,
}

/// How long an operator's move may take, in `view_mature_time`s: the
/// target acquires within a table exchange or two; past this it is not
/// coming (it lost quorum, or never heard every member), and the normal
/// rules take over again.
const MOVE_TIMEOUT_MATURES: u64 = 2;

/// A rendezvous hash of node and IP: each IP ranks the nodes differently, so
/// ties spread evenly and removing a node moves only its own IPs.
fn affinity(node: &str, ip: &IpAddr) -> u64 {
    let h = node.bytes().chain([0]);
    let h = match ip {
        IpAddr::V4(v4) => fnv(h.chain(v4.octets())),
        IpAddr::V6(v6) => fnv(h.chain(v6.octets())),
    };
    // Finalise (splitmix64) so that similar inputs rank very differently.
    let h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

fn fnv(bytes: impl Iterator<Item = u8>) -> u64 {
    bytes.fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl DuraVip {
    pub fn new(me: &str, cfg: DuraVipConfig, now_ms: u64) -> DuraVip {
        DuraVip {
            me: me.to_string(),
            next_balance_ms: now_ms + cfg.balance_interval_ms,
            cfg,
            joined_ms: now_ms,
            local: Arc::default(),
            owned: BTreeMap::new(),
            version: 1,
            announced: 0,
            tables: BTreeMap::new(),
            view: vec![(me.to_string(), 0)],
            member_since: BTreeMap::new(),
            view_since_ms: now_ms,
            has_quorum: true,
            last_ms: now_ms,
            index: BTreeMap::new(),
            orphans: BTreeSet::new(),
            handoffs: BTreeMap::new(),
            moves: BTreeMap::new(),
            pinned: BTreeSet::new(),
        }
    }

    /// Adds or replaces this node's claim for an IP (config load, or the host
    /// registering a binding at run time).
    pub fn set_claim(&mut self, now_ms: u64, mut claim: Claim) -> Vec<Output> {
        claim.names.sort();
        claim.names.dedup();
        claim.services.sort();
        claim.services.dedup();
        if self.local_claim(&claim.ip) != Some(&claim) {
            let me = self.me.clone();
            self.put_claim(now_ms, &me, claim.ip, Some(&claim));
            // In place when no announced table still shares the list.
            let local = Arc::make_mut(&mut self.local);
            match local.binary_search_by_key(&claim.ip, |c| c.ip) {
                Ok(i) => local[i] = claim,
                Err(i) => local.insert(i, claim),
            }
            self.version += 1;
        }
        self.decide(now_ms)
    }

    /// Removes this node's claim for an IP (and releases it if owned).
    pub fn remove_claim(&mut self, now_ms: u64, ip: IpAddr) -> Vec<Output> {
        if let Ok(i) = self.local.binary_search_by_key(&ip, |c| c.ip) {
            Arc::make_mut(&mut self.local).remove(i);
            let me = self.me.clone();
            self.put_claim(now_ms, &me, ip, None);
            self.version += 1;
        }
        self.decide(now_ms)
    }

    /// This node's claim for `ip`.
    fn local_claim(&self, ip: &IpAddr) -> Option<&Claim> {
        let i = self.local.binary_search_by_key(ip, |c| c.ip).ok()?;
        self.local.get(i)
    }

    /// A new membership view (names and generations, including this node)
    /// and whether it has quorum.
    pub fn set_view(
        &mut self,
        now_ms: u64,
        members: &[(String, u64)],
        has_quorum: bool,
    ) -> Vec<Output> {
        let mut members: Vec<(String, u64)> = members.to_vec();
        members.sort();
        if members != self.view {
            let newcomer = members
                .iter()
                .any(|m| m.0 != self.me && !self.view.contains(m));
            let before = self.counted_tables();
            let old = std::mem::take(&mut self.member_since);
            self.member_since = members
                .iter()
                .filter(|(n, _)| *n != self.me)
                .map(|(n, g)| {
                    let since = match old.get(n) {
                        Some((og, s)) if og == g => *s,
                        _ => now_ms,
                    };
                    (n.clone(), (*g, since))
                })
                .collect();
            self.view = members;
            self.view_since_ms = now_ms;
            self.pinned.clear();
            // A restarted node starts its versions again: forget old generations.
            let view = &self.view;
            self.tables
                .retain(|n, p| view.iter().all(|(vn, vg)| vn != n || *vg == p.generation));
            let after = self.counted_tables();
            let nodes: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
            for node in nodes {
                let (b, a) = (before.get(node), after.get(node));
                if !matches!((b, a), (Some(b), Some(a)) if Arc::ptr_eq(b, a)) {
                    self.reindex(now_ms, node, b.map(|t| &**t), a.map(|t| &**t));
                }
            }
            if newcomer {
                // A new member has no table from us yet.
                self.announced = 0;
            }
        }
        self.has_quorum = has_quorum;
        self.decide(now_ms)
    }

    /// A peer's table arrived, sent by the given generation of that node. A
    /// table may arrive before membership shows its sender; it counts once
    /// the sender is in the view. A table shared between several machines
    /// (a simulator's, or a host's that runs several) is passed as an `Arc`
    /// and never copied.
    pub fn on_table(
        &mut self,
        now_ms: u64,
        node: &str,
        generation: u64,
        table: impl Into<Arc<Table>>,
    ) -> Vec<Output> {
        if node == self.me {
            return Vec::new();
        }
        let table = table.into();
        let newer = match self.tables.get(node) {
            Some(p) => {
                generation > p.generation
                    || (generation == p.generation && table.version > p.table.version)
            }
            None => true,
        };
        if !newer {
            return Vec::new();
        }
        let before = self.counted_table(node);
        self.tables
            .insert(node.to_string(), Peer { generation, table });
        let after = self.counted_table(node);
        self.reindex(now_ms, node, before.as_deref(), after.as_deref());
        self.decide(now_ms)
    }

    /// `node`'s table if it counts: the peer is in the view with the
    /// generation that sent it (`member_since` holds exactly the view's
    /// peers).
    fn counted_table(&self, node: &str) -> Option<Arc<Table>> {
        let p = self.tables.get(node)?;
        self.member_since
            .get(node)
            .is_some_and(|(g, _)| *g == p.generation)
            .then(|| p.table.clone())
    }

    /// Every table that counts, by node.
    fn counted_tables(&self) -> BTreeMap<String, Arc<Table>> {
        self.tables
            .keys()
            .filter_map(|n| Some((n.clone(), self.counted_table(n)?)))
            .collect()
    }

    /// Moves `node`'s part of the index from table `before` to `after`
    /// (either may be absent: the node entered or left the view, or was
    /// heard from for the first time). Tables usually differ only in what
    /// they own, so the claims are compared first and walked only if they
    /// changed.
    fn reindex(&mut self, now_ms: u64, node: &str, before: Option<&Table>, after: Option<&Table>) {
        fn claims(t: Option<&Table>) -> &[Claim] {
            t.map_or(&[], |t| &t.claims)
        }
        let same =
            matches!((before, after), (Some(b), Some(a)) if Arc::ptr_eq(&b.claims, &a.claims));
        let (old, new) = (claims(before), claims(after));
        if !same && old != new {
            let old: BTreeMap<IpAddr, &Claim> = old.iter().map(|c| (c.ip, c)).collect();
            let new: BTreeMap<IpAddr, &Claim> = new.iter().map(|c| (c.ip, c)).collect();
            for ip in old.keys().filter(|ip| !new.contains_key(ip)) {
                self.put_claim(now_ms, node, *ip, None);
            }
            for (ip, c) in &new {
                if old.get(ip) != Some(c) {
                    self.put_claim(now_ms, node, *ip, Some(c));
                }
            }
        }
        let owned = |t: Option<&Table>| -> BTreeSet<IpAddr> {
            t.map(|t| t.owned.iter().copied().collect())
                .unwrap_or_default()
        };
        let (old, new) = (owned(before), owned(after));
        for ip in old.difference(&new) {
            self.put_owner(now_ms, node, *ip, false);
        }
        for ip in new.difference(&old) {
            self.put_owner(now_ms, node, *ip, true);
        }
        let handoffs = |t: Option<&Table>| -> BTreeMap<IpAddr, Handoff> {
            t.map(|t| t.handoffs.iter().map(|h| (h.ip, h.clone())).collect())
                .unwrap_or_default()
        };
        let (old, new) = (handoffs(before), handoffs(after));
        for ip in old.keys().filter(|ip| !new.contains_key(ip)) {
            self.put_handoff(now_ms, node, *ip, None);
        }
        for (ip, to) in new {
            if old.get(&ip) != Some(&to) {
                self.put_handoff(now_ms, node, ip, Some(to));
            }
        }
    }

    /// Sets (or with `None` removes) `node`'s claim for `ip` in the index.
    fn put_claim(&mut self, now_ms: u64, node: &str, ip: IpAddr, claim: Option<&Claim>) {
        let e = self.index.entry(ip).or_insert_with(|| IpEntry::new(now_ms));
        let slot = e
            .nodes
            .entry(node.to_string())
            .or_insert_with(|| Slot::new(node, &ip));
        if slot.claim.as_ref() == claim {
            return;
        }
        if slot.claim.is_some() != claim.is_some() {
            e.candidates_since_ms = now_ms;
        }
        e.config_since_ms = now_ms;
        slot.claim = claim.cloned();
        let claims: Vec<&Claim> = e.candidates().map(|c| c.claim).collect();
        e.analysis = analyse(&claims);
        self.refresh(ip, node);
    }

    /// Records whether `node` owns `ip` in the index.
    fn put_owner(&mut self, now_ms: u64, node: &str, ip: IpAddr, owns: bool) {
        self.slot(now_ms, node, ip).owns = owns;
        self.refresh(ip, node);
    }

    /// Records the receiver `node` released `ip` for, in the index.
    fn put_handoff(&mut self, now_ms: u64, node: &str, ip: IpAddr, to: Option<Handoff>) {
        self.slot(now_ms, node, ip).handoff = to;
        self.refresh(ip, node);
    }

    /// `node`'s slot for `ip`, created empty if need be.
    fn slot(&mut self, now_ms: u64, node: &str, ip: IpAddr) -> &mut Slot {
        self.index
            .entry(ip)
            .or_insert_with(|| IpEntry::new(now_ms))
            .nodes
            .entry(node.to_string())
            .or_insert_with(|| Slot::new(node, &ip))
    }

    /// Keeps `orphans` in step with an entry after `node`'s slot changed,
    /// and drops what nobody claims or owns any more.
    fn refresh(&mut self, ip: IpAddr, node: &str) {
        let Some(e) = self.index.get_mut(&ip) else {
            return;
        };
        if e.nodes
            .get(node)
            .is_some_and(|s| s.claim.is_none() && !s.owns && s.handoff.is_none())
        {
            e.nodes.remove(node);
        }
        e.candidate_count = e.candidates().count();
        e.owner_count = e.owners().count();
        let owner = e.owners().next().map(|c| c.name);
        if e.owner.as_deref() != owner {
            e.owner = owner.map(str::to_string);
        }
        if e.is_orphan() {
            self.orphans.insert(ip);
        } else {
            self.orphans.remove(&ip);
        }
        if e.nodes.is_empty() {
            self.index.remove(&ip);
        }
    }

    /// An operator moves `ip` to `node` (the reference's `cluster duravip
    /// move`, broadcast so that every node gets it at about the same time):
    /// rule 6.
    pub fn move_to(
        &mut self,
        now_ms: u64,
        ip: IpAddr,
        node: &str,
    ) -> Result<Vec<Output>, MoveError> {
        let e = self
            .index
            .get(&ip)
            .filter(|e| e.is_claimed())
            .ok_or(MoveError::NotClaimed)?;
        let generation = self.generation_of(node).ok_or(MoveError::NotInView)?;
        if !e.is_candidate(node) {
            return Err(MoveError::NotACandidate);
        }
        if e.analysis.broken {
            return Err(MoveError::Broken);
        }
        if !self.may_own() {
            return Err(MoveError::NoQuorum);
        }
        let until_ms = now_ms + MOVE_TIMEOUT_MATURES * self.cfg.view_mature_ms;
        self.moves.insert(
            ip,
            Move {
                to: node.to_string(),
                generation,
                until_ms,
            },
        );
        Ok(self.decide(now_ms))
    }

    fn may_own(&self) -> bool {
        self.has_quorum || self.cfg.quorum == QuorumMode::None
    }

    /// The move in progress for an IP, if its target can still take it.
    fn move_of(&self, ip: &IpAddr, e: &IpEntry) -> Option<&Move> {
        self.moves
            .get(ip)
            .filter(|m| e.is_candidate(&m.to) && self.generation_of(&m.to) == Some(m.generation))
    }

    /// Forgets the moves that are over: the target owns the IP (pinning it
    /// there when that is this node), left, restarted, stopped claiming it,
    /// or the move timed out.
    fn prune_moves(&mut self, now_ms: u64) {
        let over: Vec<(IpAddr, bool)> = self
            .moves
            .iter()
            .filter_map(|(ip, m)| {
                let e = self.index.get(ip)?;
                let arrived = e.owners().any(|o| o.name == m.to);
                (arrived || now_ms >= m.until_ms || self.move_of(ip, e).is_none())
                    .then_some((*ip, arrived && m.to == self.me))
            })
            .collect();
        for (ip, here) in over {
            self.moves.remove(&ip);
            if here {
                self.pinned.insert(ip);
            }
        }
        self.moves.retain(|ip, _| self.index.contains_key(ip));
    }

    /// Whether this node holds a table from every other member: it has
    /// heard every owner, so an orphan it sees is one.
    fn heard_everyone(&self) -> bool {
        self.member_since
            .iter()
            .all(|(n, (g, _))| self.tables.get(n).is_some_and(|p| p.generation == *g))
    }

    /// Advances time (balancing rounds).
    pub fn tick(&mut self, now_ms: u64) -> Vec<Output> {
        self.decide(now_ms)
    }

    /// When the machine next needs a tick.
    pub fn next_deadline(&self) -> u64 {
        // Settling and maturing change what may happen; only future ones count.
        let settle = self.joined_ms + self.cfg.view_mature_ms;
        let mature = self.view_since_ms + self.cfg.view_mature_ms;
        // Newcomers becoming eligible change what may happen too.
        let eligible = self
            .member_since
            .values()
            .map(|(_, since)| since + self.cfg.view_mature_ms);
        let moves = self.moves.values().map(|m| m.until_ms);
        [settle, mature]
            .into_iter()
            .chain(eligible)
            .chain(moves)
            .filter(|t| *t > self.last_ms)
            .fold(self.next_balance_ms, u64::min)
    }

    /// Whether `node` may be given an orphan or a preferred IP now (module
    /// docs, rule 5).
    fn eligible(&self, node: &str, now_ms: u64) -> bool {
        let settle_at = self.joined_ms + self.cfg.view_mature_ms;
        if node == self.me {
            return now_ms >= settle_at;
        }
        self.member_since.get(node).is_some_and(|(_, since)| {
            *since <= settle_at || now_ms >= since + self.cfg.view_mature_ms
        })
    }

    /// This node's table, to send to a peer whose link just came up.
    pub fn table(&self) -> Table {
        Table {
            version: self.version,
            claims: self.local.clone(),
            owned: self.owned.keys().copied().collect(),
            handoffs: self.handoffs.values().cloned().collect(),
        }
    }

    /// The IPs this node owns.
    pub fn owned(&self) -> impl ExactSizeIterator<Item = &IpAddr> {
        self.owned.keys()
    }

    /// What this node owns, with the claims it acquired them under.
    pub fn owned_claims(&self) -> impl Iterator<Item = &Claim> {
        self.owned.values()
    }

    /// Every IP any member claims, with its flags, candidates and owner.
    pub fn states(&self, now_ms: u64) -> Vec<IpState> {
        self.index
            .iter()
            .filter(|(_, e)| e.is_claimed())
            .map(|(ip, e)| {
                let a = &e.analysis;
                let owner = e.owner.as_deref();
                IpState {
                    ip: *ip,
                    names: a.names.clone(),
                    services: a.services.clone(),
                    flags: Flags {
                        owned: owner.is_some(),
                        unsafe_services: a.unsafe_services,
                        conflict: a.conflict,
                        broken: a.broken,
                    },
                    candidates: e
                        .candidates()
                        .map(|c| (c.name.to_string(), c.claim.services.clone()))
                        .collect(),
                    owner: owner.map(str::to_string),
                    view_stable_ms: now_ms.saturating_sub(e.candidates_since_ms),
                    config_stable_ms: now_ms.saturating_sub(e.config_since_ms),
                    moving_to: self.moves.get(ip).map(|m| m.to.clone()),
                }
            })
            .collect()
    }

    /// Every IP any member claims, with the candidate that owns it: the
    /// owner column of [`DuraVip::states`] without building the display.
    pub fn owner_by_ip(&self) -> impl Iterator<Item = (IpAddr, Option<&str>)> {
        self.index
            .iter()
            .filter(|(_, e)| e.is_claimed())
            .map(|(ip, e)| (*ip, e.owner.as_deref()))
    }

    /// Every IP any member claims, with its binding names and its owner:
    /// what choosing a sending binding needs (send here, or move the
    /// message to the owner).
    pub fn owners(&self) -> impl Iterator<Item = IpOwner<'_>> {
        self.index
            .iter()
            .filter(|(_, e)| e.is_claimed())
            .map(|(ip, e)| IpOwner {
                ip: *ip,
                names: &e.analysis.names,
                owner: e.owner.as_deref(),
                owned_here: self.owned.contains_key(ip),
            })
    }

    /// How many IPs each view member owns now.
    fn loads(&self) -> BTreeMap<&str, usize> {
        self.view
            .iter()
            .map(|(n, _)| {
                let load = if *n == self.me {
                    self.owned.len()
                } else {
                    self.counted_table(n).map_or(0, |t| t.owned.len())
                };
                (n.as_str(), load)
            })
            .collect()
    }

    /// Applies the rules of the module docs and returns what this node must do.
    fn decide(&mut self, now_ms: u64) -> Vec<Output> {
        self.last_ms = self.last_ms.max(now_ms);
        self.prune_moves(now_ms);
        let plan = self.plan(now_ms);
        if let Some(next) = plan.next_balance_ms {
            self.next_balance_ms = next;
        }
        let me = self.me.clone();
        let mut out = Vec::new();
        for (ip, to) in plan.release {
            if let Some(claim) = self.owned.remove(&ip) {
                self.put_owner(now_ms, &me, ip, false);
                if let Some(h) = to.and_then(|to| self.handoff(ip, to)) {
                    self.handoffs.insert(ip, h.clone());
                    self.put_handoff(now_ms, &me, ip, Some(h));
                }
                out.push(Output::Release(claim));
            }
        }
        for ip in plan.acquire {
            if let Some(claim) = self.local_claim(&ip).cloned()
                && !self.owned.contains_key(&ip)
            {
                self.owned.insert(ip, claim.clone());
                self.put_owner(now_ms, &me, ip, true);
                out.push(Output::Acquire(claim));
            }
        }
        if !out.is_empty() | self.prune_handoffs(now_ms) {
            self.version += 1;
        }
        if self.version > self.announced {
            self.announced = self.version;
            out.push(Output::Announce(self.table()));
        }
        out
    }

    /// Forgets the handoffs that can no longer be carried out: the
    /// receiver left, restarted or stopped claiming the IP, or this node
    /// owns it again. Not those merely done: a peer that heard this node
    /// forget before it heard the receiver acquire would see a plain orphan
    /// (rule 4). True if any went.
    fn prune_handoffs(&mut self, now_ms: u64) -> bool {
        let done: Vec<IpAddr> = self
            .handoffs
            .iter()
            .filter(|(ip, h)| {
                self.owned.contains_key(ip)
                    || self.index.get(ip).is_none_or(|e| !self.valid_handoff(e, h))
            })
            .map(|(ip, _)| *ip)
            .collect();
        let me = self.me.clone();
        for ip in &done {
            self.handoffs.remove(ip);
            self.put_handoff(now_ms, &me, *ip, None);
        }
        !done.is_empty()
    }

    /// A handoff of `ip` to `to` (a view member), numbered after every
    /// handoff of it this node has seen.
    fn handoff(&self, ip: IpAddr, to: String) -> Option<Handoff> {
        let seen = self.index.get(&ip).map_or(0, |e| {
            e.nodes
                .values()
                .filter_map(|s| s.handoff.as_ref())
                .map(|h| h.seq)
                .max()
                .unwrap_or(0)
        });
        Some(Handoff {
            ip,
            generation: self.generation_of(&to)?,
            to,
            seq: seen + 1,
        })
    }

    /// Whether a handoff can still be carried out: its receiver is a
    /// candidate, of that generation.
    fn valid_handoff(&self, e: &IpEntry, h: &Handoff) -> bool {
        e.is_candidate(&h.to) && self.generation_of(&h.to) == Some(h.generation)
    }

    /// The generation of a view member.
    fn generation_of(&self, node: &str) -> Option<u64> {
        self.view.iter().find(|(n, _)| n == node).map(|(_, g)| *g)
    }

    /// One pass of the rules. Only two kinds of IP can call for action here:
    /// those this node owns (it may have to give them way) and the orphans
    /// (it may be their target); the index keeps both at hand, so a pass
    /// costs what this node owns plus what is in flight, not the cluster.
    fn plan(&self, now_ms: u64) -> Plan {
        let settled = now_ms >= self.joined_ms + self.cfg.view_mature_ms;
        let may_own = self.may_own();
        let mut plan = Plan::default();
        for ip in self.owned.keys() {
            match self.verdict(ip, may_own, now_ms) {
                Verdict::Keep => {}
                Verdict::Release => plan.release.push((*ip, None)),
                Verdict::HandTo(to) => plan.release.push((*ip, Some(to.to_string()))),
            }
        }
        let mut loads = self.loads();
        // A target of a move acquires before it has settled if it has heard
        // every member (rule 6).
        let moved_here = self.moves.values().any(|m| m.to == self.me) && self.heard_everyone();
        if may_own && (settled || moved_here) {
            plan.acquire = self.assign_orphans(now_ms, &mut loads, settled);
        }
        // Balancing: only in a mature view, once per interval.
        let mature = now_ms >= self.view_since_ms + self.cfg.view_mature_ms;
        // A round that falls in an immature view waits for maturity rather
        // than a whole interval.
        if now_ms >= self.next_balance_ms {
            plan.next_balance_ms =
                Some(if mature && settled && may_own && plan.release.is_empty() {
                    plan.release = self
                        .balance_batch(&loads)
                        .into_iter()
                        .map(|(ip, to)| (ip, Some(to.to_string())))
                        .collect();
                    now_ms + self.cfg.balance_interval_ms
                } else if may_own {
                    // Due but blocked: wait for maturity and settling, or (after
                    // this pass's releases) for the next pass; never leave the
                    // deadline in the past, which asks to be ticked forever.
                    (self.view_since_ms + self.cfg.view_mature_ms)
                        .max(self.joined_ms + self.cfg.view_mature_ms)
                        .max(now_ms + 1)
                } else {
                    // Without quorum there is nothing to balance; regaining it is
                    // a new view, immature for a while anyway.
                    now_ms + self.cfg.balance_interval_ms
                });
        }
        plan
    }

    /// Whether this node keeps an IP it owns (rule 3).
    fn verdict(&self, ip: &IpAddr, may_own: bool, now_ms: u64) -> Verdict<'_> {
        // What nobody claims any more (its own claim removed and no peer's
        // either) has no candidates at all.
        let Some(e) = self.index.get(ip) else {
            return Verdict::Release;
        };
        if e.analysis.broken || self.local_claim(ip).is_none() || !may_own {
            return Verdict::Release;
        }
        if let Some(m) = self.move_of(ip, e) {
            return if m.to == self.me {
                Verdict::Keep
            } else {
                Verdict::HandTo(&m.to)
            };
        }
        if e.analysis.preference.is_none() && e.owner_count == 1 {
            // The common case: nobody preferred, and the only owner is here.
            return Verdict::Keep;
        }
        let pinned = self.pinned.contains(ip);
        let preferred = e
            .candidate_preference()
            .filter(|p| !pinned && self.eligible(p, now_ms));
        // A preferred node that already owns it keeps it, eligible or not
        // (it has plumbed it): every owner agrees on that at once.
        let preferred_owner = e
            .analysis
            .preference
            .as_deref()
            .filter(|p| e.owners().any(|o| o.name == *p));
        let keeper = preferred_owner.or(preferred).unwrap_or_else(|| {
            e.owners()
                .max_by_key(|o| o.affinity)
                .map_or(self.me.as_str(), |o| o.name)
        });
        if keeper == self.me {
            Verdict::Keep
        } else if e.owners().any(|o| o.name == keeper) {
            // Two owners: the other one simply stays.
            Verdict::Release
        } else {
            // Giving way to the preferred node: a planned move.
            Verdict::HandTo(keeper)
        }
    }

    /// Rule 2 for every orphan, as every node computes it; returns the ones
    /// that fall to this node. `loads` counts the assignments as they are
    /// made.
    fn assign_orphans<'a>(
        &'a self,
        now_ms: u64,
        loads: &mut BTreeMap<&'a str, usize>,
        settled: bool,
    ) -> Vec<IpAddr> {
        // Handed-off and preferred addresses first: their receivers are
        // fixed, so the least loaded choice for the others should already
        // count them.
        let mut order: Vec<(Option<&str>, IpAddr, &IpEntry)> = self
            .orphans
            .iter()
            .filter_map(|ip| {
                let e = self.index.get(ip)?;
                (!e.analysis.broken).then(|| (self.fixed_target(ip, e, now_ms), *ip, e))
            })
            .collect();
        order.sort_by_key(|(fixed, ip, _)| (fixed.is_none(), *ip));
        // Usually every member is eligible: then nobody needs asking.
        let all_eligible = self.view.iter().all(|(n, _)| self.eligible(n, now_ms));
        let mut mine = Vec::new();
        for (fixed, ip, e) in order {
            let target = fixed.or_else(|| {
                let mut pool: Vec<Candidate> = e.candidates().collect();
                if !all_eligible && pool.iter().any(|c| self.eligible(c.name, now_ms)) {
                    pool.retain(|c| self.eligible(c.name, now_ms));
                }
                least_loaded(pool.into_iter(), loads).map(|c| c.name)
            });
            let Some(target) = target else {
                continue;
            };
            *loads.entry(target).or_default() += 1;
            if target == self.me && (settled || self.move_of(&ip, e).is_some()) {
                mine.push(ip);
            }
        }
        mine
    }

    /// Who an orphan goes to whatever the loads: the receiver its last owner
    /// released it for (rule 4), else the preferred node when it is an
    /// eligible candidate (rule 2).
    fn fixed_target<'a>(&'a self, ip: &IpAddr, e: &'a IpEntry, now_ms: u64) -> Option<&'a str> {
        let moved = self.move_of(ip, e).map(|m| m.to.as_str());
        moved.or_else(|| self.handed_to(e)).or_else(|| {
            e.candidate_preference()
                .filter(|p| self.eligible(p, now_ms))
        })
    }

    /// Where the handoffs of an IP lead. Handoffs stay in their releasers'
    /// tables after the receiver has acquired (see `prune_handoffs`), so the
    /// latest one counts (the highest number; by releaser name on a tie),
    /// and only if it can still be carried out: older ones are history.
    fn handed_to<'a>(&'a self, e: &'a IpEntry) -> Option<&'a str> {
        let latest = e.nodes.values().filter_map(|s| s.handoff.as_ref()).fold(
            None::<&Handoff>,
            |best, h| match best {
                Some(b) if b.seq >= h.seq => Some(b),
                _ => Some(h),
            },
        )?;
        self.valid_handoff(e, latest).then_some(latest.to.as_str())
    }

    /// The IPs this node gives up in one balancing round.
    fn balance_batch(&self, loads: &BTreeMap<&str, usize>) -> Vec<(IpAddr, &str)> {
        let my_load = self.owned.len();
        let mut movable: Vec<(u64, IpAddr, &str)> = Vec::new();
        for ip in self.owned.keys() {
            let Some(e) = self.index.get(ip) else {
                continue;
            };
            if e.candidate_preference().is_some()
                || self.pinned.contains(ip)
                || self.moves.contains_key(ip)
            {
                continue;
            }
            // The least loaded other candidate, and whether moving helps.
            let others = e.candidates().filter(|c| c.name != self.me);
            let Some(target) = least_loaded(others, loads) else {
                continue;
            };
            if load_of(loads, target.name) + 1 < my_load {
                movable.push((target.affinity, *ip, target.name));
            }
        }
        movable.sort_by(|a, b| b.cmp(a));
        let excess = my_load.saturating_sub(loads.values().copied().min().unwrap_or(0) + 1);
        movable
            .into_iter()
            .take(self.cfg.balance_set_size.min(excess.max(1)))
            .map(|(_, ip, to)| (ip, to))
            .collect()
    }
}

/// What the claims of all candidates say about an IP.
#[derive(Clone, Debug)]
struct Analysis {
    names: Vec<String>,
    services: Vec<Service>,
    preference: Option<String>,
    conflict: bool,
    unsafe_services: bool,
    broken: bool,
}

/// Judges the candidates' claims (by name) against the first one's.
fn analyse(claims: &[&Claim]) -> Analysis {
    let first = claims.first();
    let names = first.map(|c| c.names.clone()).unwrap_or_default();
    let services = first.map(|c| c.services.clone()).unwrap_or_default();
    let broken = claims.iter().any(|c| c.names != names);
    let unsafe_services = claims.iter().any(|c| c.services != services);
    let prefs: BTreeSet<&str> = claims
        .iter()
        .filter_map(|c| c.preference.as_deref())
        .collect();
    let conflict = prefs.len() > 1;
    let preference = if conflict {
        None
    } else {
        prefs.into_iter().next().map(str::to_string)
    };
    Analysis {
        names,
        services,
        preference,
        conflict,
        unsafe_services,
        broken,
    }
}

/// The candidate owning the fewest IPs, ties broken by affinity.
fn least_loaded<'a>(
    candidates: impl Iterator<Item = Candidate<'a>>,
    loads: &BTreeMap<&str, usize>,
) -> Option<Candidate<'a>> {
    candidates.min_by_key(|c| (load_of(loads, c.name), std::cmp::Reverse(c.affinity)))
}

fn load_of(loads: &BTreeMap<&str, usize>, node: &str) -> usize {
    loads.get(node).copied().unwrap_or(0)
}
