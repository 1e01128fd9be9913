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
//! 2. **Orphans go to the preferred node, else to the least loaded
//!    candidate.** An IP no live candidate owns is assigned, in IP order, to
//!    its preferred node when that node is a candidate, otherwise to the
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
    pub claims: Vec<Claim>,
    pub owned: Vec<IpAddr>,
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
}

/// When an IP's candidate set and its configuration last changed.
#[derive(Clone, Debug, Default)]
struct Track {
    candidates: Vec<String>,
    candidates_since_ms: u64,
    /// Each candidate's claim.
    config: Vec<(String, Claim)>,
    config_since_ms: u64,
}

/// One node's DuraVIP state machine; see the module docs.
#[derive(Clone, Debug)]
pub struct DuraVip {
    me: String,
    cfg: DuraVipConfig,
    joined_ms: u64,
    local: BTreeMap<IpAddr, Claim>,
    /// What this node owns, with the claim it acquired it under (for the
    /// "lost" hook, even after the claim itself is gone).
    owned: BTreeMap<IpAddr, Claim>,
    version: u64,
    announced: u64,
    /// The latest table of every node heard from, with the generation that
    /// sent it; only those of current view members count.
    tables: BTreeMap<String, (u64, Table)>,
    /// The view's members and their generations.
    view: Vec<(String, u64)>,
    /// When each peer in the view (by name: generation, since) entered it.
    member_since: BTreeMap<String, (u64, u64)>,
    view_since_ms: u64,
    has_quorum: bool,
    next_balance_ms: u64,
    last_ms: u64,
    tracks: BTreeMap<IpAddr, Track>,
}

/// A rendezvous hash of node and IP: each IP ranks the nodes differently, so
/// ties spread evenly and removing a node moves only its own IPs.
fn affinity(node: &str, ip: &IpAddr) -> u64 {
    let bytes = match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    let h = node
        .bytes()
        .chain([0])
        .chain(bytes)
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    // Finalise (splitmix64) so that similar inputs rank very differently.
    let h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

impl DuraVip {
    pub fn new(me: &str, cfg: DuraVipConfig, now_ms: u64) -> DuraVip {
        DuraVip {
            me: me.to_string(),
            next_balance_ms: now_ms + cfg.balance_interval_ms,
            cfg,
            joined_ms: now_ms,
            local: BTreeMap::new(),
            owned: BTreeMap::new(),
            version: 1,
            announced: 0,
            tables: BTreeMap::new(),
            view: vec![(me.to_string(), 0)],
            member_since: BTreeMap::new(),
            view_since_ms: now_ms,
            has_quorum: true,
            last_ms: now_ms,
            tracks: BTreeMap::new(),
        }
    }

    /// Adds or replaces this node's claim for an IP (config load, or the host
    /// registering a binding at run time).
    pub fn set_claim(&mut self, now_ms: u64, mut claim: Claim) -> Vec<Output> {
        claim.names.sort();
        claim.names.dedup();
        claim.services.sort();
        claim.services.dedup();
        if self.local.get(&claim.ip) != Some(&claim) {
            self.local.insert(claim.ip, claim);
            self.version += 1;
        }
        self.decide(now_ms)
    }

    /// Removes this node's claim for an IP (and releases it if owned).
    pub fn remove_claim(&mut self, now_ms: u64, ip: IpAddr) -> Vec<Output> {
        if self.local.remove(&ip).is_some() {
            self.version += 1;
        }
        self.decide(now_ms)
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
            // A restarted node starts its versions again: forget old generations.
            let view = &self.view;
            self.tables
                .retain(|n, (g, _)| view.iter().all(|(vn, vg)| vn != n || vg == g));
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
    /// the sender is in the view.
    pub fn on_table(
        &mut self,
        now_ms: u64,
        node: &str,
        generation: u64,
        table: Table,
    ) -> Vec<Output> {
        if node == self.me {
            return Vec::new();
        }
        let newer = match self.tables.get(node) {
            Some((g, t)) => generation > *g || (generation == *g && table.version > t.version),
            None => true,
        };
        if !newer {
            return Vec::new();
        }
        self.tables.insert(node.to_string(), (generation, table));
        self.decide(now_ms)
    }

    /// The tables of current view members.
    fn live_tables(&self) -> impl Iterator<Item = (&str, &Table)> {
        self.tables
            .iter()
            .filter_map(|(n, (g, t))| self.live_table(n, *g).then_some((n.as_str(), t)))
    }

    /// Whether `node`'s table of generation `generation` counts: the peer is
    /// in the view with that generation (`member_since` holds exactly the
    /// view's peers).
    fn live_table(&self, node: &str, generation: u64) -> bool {
        self.member_since
            .get(node)
            .is_some_and(|(g, _)| *g == generation)
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
        [settle, mature]
            .into_iter()
            .chain(eligible)
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
            claims: self.local.values().cloned().collect(),
            owned: self.owned.keys().copied().collect(),
        }
    }

    /// The IPs this node owns.
    pub fn owned(&self) -> impl Iterator<Item = &IpAddr> {
        self.owned.keys()
    }

    /// What this node owns, with the claims it acquired them under.
    pub fn owned_claims(&self) -> impl Iterator<Item = &Claim> {
        self.owned.values()
    }

    /// Every IP any member claims, with its flags, candidates and owner.
    pub fn states(&self, now_ms: u64) -> Vec<IpState> {
        let claims = self.claims_by_ip();
        claims
            .iter()
            .map(|(ip, per_node)| {
                let analysis = analyse(per_node);
                let owner = self.owners(ip, per_node).into_iter().next();
                let track = self.tracks.get(ip);
                IpState {
                    ip: *ip,
                    names: analysis.names.clone(),
                    services: analysis.services.clone(),
                    flags: Flags {
                        owned: owner.is_some(),
                        unsafe_services: analysis.unsafe_services,
                        conflict: analysis.conflict,
                        broken: analysis.broken,
                    },
                    candidates: per_node
                        .iter()
                        .map(|(n, c)| (n.to_string(), c.services.clone()))
                        .collect(),
                    owner: owner.map(str::to_string),
                    view_stable_ms: track
                        .map_or(0, |t| now_ms.saturating_sub(t.candidates_since_ms)),
                    config_stable_ms: track.map_or(0, |t| now_ms.saturating_sub(t.config_since_ms)),
                }
            })
            .collect()
    }

    /// Every claim of every view member, by IP then node name.
    fn claims_by_ip(&self) -> BTreeMap<IpAddr, Vec<(&str, &Claim)>> {
        let mut by_ip: BTreeMap<IpAddr, Vec<(&str, &Claim)>> = BTreeMap::new();
        for claim in self.local.values() {
            by_ip
                .entry(claim.ip)
                .or_default()
                .push((self.me.as_str(), claim));
        }
        for (node, table) in self.live_tables() {
            for claim in &table.claims {
                by_ip.entry(claim.ip).or_default().push((node, claim));
            }
        }
        for v in by_ip.values_mut() {
            v.sort_by(|a, b| a.0.cmp(b.0));
        }
        by_ip
    }

    /// The candidates that currently own `ip`, by name.
    fn owners<'a>(&'a self, ip: &IpAddr, candidates: &[(&'a str, &Claim)]) -> Vec<&'a str> {
        candidates
            .iter()
            .map(|(n, _)| *n)
            .filter(|n| {
                if *n == self.me {
                    self.owned.contains_key(ip)
                } else {
                    self.tables
                        .get(*n)
                        .is_some_and(|(g, t)| self.live_table(n, *g) && t.owned.contains(ip))
                }
            })
            .collect()
    }

    /// How many IPs each view member owns now.
    fn loads(&self) -> BTreeMap<String, usize> {
        let mut loads: BTreeMap<String, usize> =
            self.view.iter().map(|(n, _)| (n.clone(), 0)).collect();
        loads.insert(self.me.clone(), self.owned.len());
        for (node, table) in self.live_tables() {
            loads.insert(node.to_string(), table.owned.len());
        }
        loads
    }

    /// Applies the rules of the module docs and returns what this node must do.
    fn decide(&mut self, now_ms: u64) -> Vec<Output> {
        self.last_ms = self.last_ms.max(now_ms);
        let claims: BTreeMap<IpAddr, Vec<(String, Claim)>> = self
            .claims_by_ip()
            .into_iter()
            .map(|(ip, v)| {
                (
                    ip,
                    v.into_iter()
                        .map(|(n, c)| (n.to_string(), c.clone()))
                        .collect(),
                )
            })
            .collect();
        self.update_tracks(now_ms, &claims);
        let settled = now_ms >= self.joined_ms + self.cfg.view_mature_ms;
        let may_own = self.has_quorum || self.cfg.quorum == QuorumMode::None;
        let mut loads = self.loads();
        let mut acquire = Vec::new();
        let mut release = Vec::new();
        // Preferred addresses first: their owners are fixed, so the least
        // loaded choice for the others should already count them.
        let mut order: Vec<(&IpAddr, &Vec<(String, Claim)>)> = claims.iter().collect();
        order.sort_by_key(|(ip, per_node)| {
            let candidates: Vec<(&str, &Claim)> =
                per_node.iter().map(|(n, c)| (n.as_str(), c)).collect();
            let preferred = analyse(&candidates)
                .preference
                .is_some_and(|p| candidates.iter().any(|(n, _)| *n == p));
            (!preferred, **ip)
        });
        for (ip, per_node) in order {
            let candidates: Vec<(&str, &Claim)> =
                per_node.iter().map(|(n, c)| (n.as_str(), c)).collect();
            let analysis = analyse(&candidates);
            let mine = self.local.get(ip);
            let owned_here = self.owned.contains_key(ip);
            if analysis.broken || mine.is_none() || !may_own {
                if owned_here {
                    release.push(*ip);
                }
                continue;
            }
            let preferred = analysis
                .preference
                .as_deref()
                .filter(|p| candidates.iter().any(|(n, _)| n == p) && self.eligible(p, now_ms));
            let owners = self.owners(ip, &candidates);
            if owners.is_empty() {
                let eligible: Vec<(&str, &Claim)> = candidates
                    .iter()
                    .copied()
                    .filter(|(n, _)| self.eligible(n, now_ms))
                    .collect();
                let pool = if eligible.is_empty() {
                    &candidates
                } else {
                    &eligible
                };
                let target = preferred.unwrap_or_else(|| least_loaded(pool, ip, &loads));
                *loads.entry(target.to_string()).or_default() += 1;
                if target == self.me && settled {
                    acquire.push(*ip);
                }
                continue;
            }
            if !owned_here {
                continue;
            }
            // A preferred node that already owns it keeps it, eligible or not
            // (it has plumbed it): every owner agrees on that at once.
            let preferred_owner = analysis
                .preference
                .as_deref()
                .filter(|p| owners.contains(p));
            let keeper = preferred_owner.or(preferred).unwrap_or_else(|| {
                owners
                    .iter()
                    .copied()
                    .max_by_key(|n| affinity(n, ip))
                    .unwrap_or(self.me.as_str())
            });
            if keeper != self.me {
                release.push(*ip);
            }
        }
        // What this node owns but nobody claims any more (its own claim removed
        // and no peer's either) is not in `claims` at all.
        release.extend(
            self.owned
                .keys()
                .filter(|ip| !claims.contains_key(ip))
                .copied(),
        );
        // Balancing: only in a mature view, once per interval.
        let mature = now_ms >= self.view_since_ms + self.cfg.view_mature_ms;
        // A round that falls in an immature view waits for maturity rather
        // than a whole interval.
        if now_ms >= self.next_balance_ms {
            if mature && settled && may_own && release.is_empty() {
                self.next_balance_ms = now_ms + self.cfg.balance_interval_ms;
                release.extend(self.balance_batch(&claims, &loads));
            } else if may_own {
                // Due but blocked: wait for maturity and settling, or (after
                // this pass's releases) for the next pass; never leave the
                // deadline in the past, which asks to be ticked forever.
                self.next_balance_ms = (self.view_since_ms + self.cfg.view_mature_ms)
                    .max(self.joined_ms + self.cfg.view_mature_ms)
                    .max(now_ms + 1);
            } else {
                // Without quorum there is nothing to balance; regaining it is
                // a new view, immature for a while anyway.
                self.next_balance_ms = now_ms + self.cfg.balance_interval_ms;
            }
        }
        let mut out = Vec::new();
        for ip in release {
            if let Some(claim) = self.owned.remove(&ip) {
                out.push(Output::Release(claim));
            }
        }
        for ip in acquire {
            if let Some(claim) = self.local.get(&ip).cloned()
                && !self.owned.contains_key(&ip)
            {
                self.owned.insert(ip, claim.clone());
                out.push(Output::Acquire(claim));
            }
        }
        if !out.is_empty() {
            self.version += 1;
        }
        if self.version > self.announced {
            self.announced = self.version;
            out.push(Output::Announce(self.table()));
        }
        out
    }

    /// The IPs this node gives up in one balancing round.
    fn balance_batch(
        &self,
        claims: &BTreeMap<IpAddr, Vec<(String, Claim)>>,
        loads: &BTreeMap<String, usize>,
    ) -> Vec<IpAddr> {
        let my_load = self.owned.len();
        let mut movable: Vec<(u64, IpAddr)> = Vec::new();
        for ip in self.owned.keys() {
            let Some(per_node) = claims.get(ip) else {
                continue;
            };
            let candidates: Vec<(&str, &Claim)> =
                per_node.iter().map(|(n, c)| (n.as_str(), c)).collect();
            let analysis = analyse(&candidates);
            if analysis
                .preference
                .as_deref()
                .is_some_and(|p| candidates.iter().any(|(n, _)| *n == p))
            {
                continue;
            }
            // The least loaded other candidate, and whether moving helps.
            let Some((target, load)) = candidates
                .iter()
                .filter(|(n, _)| *n != self.me)
                .map(|(n, _)| (*n, loads.get(*n).copied().unwrap_or(0)))
                .min_by_key(|(n, l)| (*l, std::cmp::Reverse(affinity(n, ip))))
            else {
                continue;
            };
            if load + 1 < my_load {
                movable.push((affinity(target, ip), *ip));
            }
        }
        movable.sort_by(|a, b| b.cmp(a));
        let excess = my_load.saturating_sub(loads.values().copied().min().unwrap_or(0) + 1);
        movable
            .into_iter()
            .take(self.cfg.balance_set_size.min(excess.max(1)))
            .map(|(_, ip)| ip)
            .collect()
    }

    fn update_tracks(&mut self, now_ms: u64, claims: &BTreeMap<IpAddr, Vec<(String, Claim)>>) {
        self.tracks.retain(|ip, _| claims.contains_key(ip));
        for (ip, per_node) in claims {
            let candidates: Vec<String> = per_node.iter().map(|(n, _)| n.clone()).collect();
            let config = per_node.clone();
            let track = self.tracks.entry(*ip).or_insert_with(|| Track {
                candidates_since_ms: now_ms,
                config_since_ms: now_ms,
                ..Track::default()
            });
            if track.candidates != candidates {
                track.candidates = candidates;
                track.candidates_since_ms = now_ms;
            }
            if track.config != config {
                track.config = config;
                track.config_since_ms = now_ms;
            }
        }
    }
}

/// What the claims of all candidates say about an IP.
#[derive(Debug)]
struct Analysis {
    names: Vec<String>,
    services: Vec<Service>,
    preference: Option<String>,
    conflict: bool,
    unsafe_services: bool,
    broken: bool,
}

fn analyse(candidates: &[(&str, &Claim)]) -> Analysis {
    let first = candidates.first().map(|(_, c)| *c);
    let names = first.map(|c| c.names.clone()).unwrap_or_default();
    let services = first.map(|c| c.services.clone()).unwrap_or_default();
    let broken = candidates.iter().any(|(_, c)| c.names != names);
    let unsafe_services = candidates.iter().any(|(_, c)| c.services != services);
    let prefs: BTreeSet<&str> = candidates
        .iter()
        .filter_map(|(_, c)| c.preference.as_deref())
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

fn least_loaded<'a>(
    candidates: &[(&'a str, &Claim)],
    ip: &IpAddr,
    loads: &BTreeMap<String, usize>,
) -> &'a str {
    candidates
        .iter()
        .map(|(n, _)| *n)
        .min_by_key(|n| {
            (
                loads.get(*n).copied().unwrap_or(0),
                std::cmp::Reverse(affinity(n, ip)),
            )
        })
        .unwrap_or_default()
}
