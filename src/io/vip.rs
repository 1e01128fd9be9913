//! Carries out the DuraVIP core's decisions on this host: plumbs and
//! unplumbs addresses, announces them, runs the host's gained/lost hooks.
//!
//! The engine thread owns one [`VipDriver`]. It feeds the driver the view
//! and peers' tables and sends the tables the driver returns to every peer;
//! the driver turns `Acquire`/`Release` into plumber calls and announcement
//! rounds. On start it removes every address still carrying our tag (a
//! previous run may have died holding them), and on stop it releases what
//! it owns, so a planned leave never leaves two owners.
//!
//! Listeners that follow a binding (`Duravip_Follow`) are plumbed and
//! unplumbed together with the binding's address, and reported to the hooks
//! as addresses of their own.
//!
//! **Maintenance.** The kernel's addresses can drift from what the driver
//! believes: an operator deletes one, an interface is recreated, something
//! else adds one with our tag. Every `if_check_interval` seconds the driver
//! compares the tagged addresses with the ones it should hold. A tagged
//! address it should not hold is removed at once (two owners are worse than
//! none). One that is missing is plumbed again, and announced, once it has
//! been missing for `if_down_limit` seconds, so a flapping interface is not
//! hammered; the check that finds it missing schedules the repair.
//!
//! With `view_broadcast_interval` set, the table is also sent to every peer
//! on that period, changed or not (the reference's speculative view
//! announcement, for views that drift).
//!
//! **Ownership.** After every change the driver tells the ownership hook,
//! if there is one, who owns each claimed address and which of this node's
//! are plumbed (an address maintenance finds missing is not, until it is
//! plumbed again): the node's binding table, which decides whether a
//! message is sent from a binding here or moved to the binding's owner,
//! follows it.
//!
//! **Targeted announcements** (`arp_all_hosts = false`): instead of
//! broadcasting, gratuitous ARP is unicast to the hosts of interest, the
//! cluster peers and the default gateways, by the MACs the kernel's
//! neighbour table holds for them; they are looked up again on every view
//! change and maintenance check. Until one is known, announcements are
//! broadcast rather than sent to nobody.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::RwLock;

use crate::config::model::Topology;
use crate::core::announce::AnnounceConfig;
use crate::core::duravip::{
    Claim, DuraVip, DuraVipConfig, Follower, MoveError, Output, topology_for,
};
use crate::core::membership::View;
use crate::core::wire::DuraVipTable;
use crate::io::arp::Announcer;
use crate::io::neigh;
use crate::io::plumb::{Plumber, purge};

/// A DuraVIP change on this node, for the host's hooks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VipEvent {
    /// This node now holds the address (plumbed and announced).
    Gained(Claim),
    /// This node gave the address up (unplumbed).
    Lost(Claim),
}

/// A hook on DuraVIP gained / lost; runs on the engine thread.
pub type VipHook = Arc<dyn Fn(&VipEvent) + Send + Sync>;

/// Every claimed address and who holds it (module docs, "Ownership").
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ownership {
    pub addresses: Vec<AddressOwner>,
}

/// One claimed address in an [`Ownership`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressOwner {
    pub ip: IpAddr,
    /// The binding names on it.
    pub names: Vec<String>,
    /// The node that owns it, by name.
    pub owner: Option<String>,
    pub owned_here: bool,
    /// Owned here and on the interface now.
    pub plumbed_here: bool,
}

/// Hears the [`Ownership`] after every change; runs on the engine thread.
pub type OwnershipHook = Arc<dyn Fn(&Ownership) + Send + Sync>;

/// What the runtime needs to run DuraVIP.
#[allow(missing_debug_implementations)] // holds the plumber and closures
pub struct VipSetup {
    pub cfg: DuraVipConfig,
    pub claims: Vec<Claim>,
    pub followers: Vec<Follower>,
    pub topology: Vec<Topology>,
    pub plumber: Box<dyn Plumber>,
    /// `None` with the dry-run plumber: there is nothing to announce.
    pub announce: Option<AnnounceConfig>,
    /// `arp_all_hosts = false`: announce to the hosts of interest only.
    pub targeted_arp: bool,
    pub maintenance: Maintenance,
    pub hooks: Arc<RwLock<Vec<VipHook>>>,
    pub ownership: Option<OwnershipHook>,
}

/// The periodic work's timing (module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Maintenance {
    /// `if_check_interval`, in milliseconds.
    pub check_interval_ms: u64,
    /// `if_down_limit`, in milliseconds.
    pub down_limit_ms: u64,
    /// `view_broadcast_interval`, in milliseconds; 0 is off.
    pub broadcast_interval_ms: u64,
}

/// See the module docs.
#[allow(missing_debug_implementations)]
pub struct VipDriver {
    dv: DuraVip,
    followers: Vec<Follower>,
    topology: Vec<Topology>,
    plumber: Box<dyn Plumber>,
    announcer: Option<Announcer>,
    /// The peers' addresses when announcements are targeted; `None` when
    /// they are broadcast.
    arp_peers: Option<Vec<IpAddr>>,
    maintenance: Maintenance,
    next_check_ms: u64,
    /// When the table is next sent unasked (`view_broadcast_interval`).
    next_broadcast_ms: Option<u64>,
    /// What each peer owned in its latest table, by (generation, version).
    peer_owned: BTreeMap<String, ((u64, u64), BTreeSet<IpAddr>)>,
    /// Addresses found missing by maintenance, and since when.
    missing_since: BTreeMap<IpAddr, u64>,
    debug: bool,
    /// Whether the core's state changed since [`VipDriver::take_changed`].
    changed: bool,
    /// Whether it changed since the ownership hook last heard.
    ownership_stale: bool,
    /// The addresses this node has on its interfaces now.
    plumbed: BTreeSet<IpAddr>,
    hooks: Arc<RwLock<Vec<VipHook>>>,
    ownership: Option<OwnershipHook>,
    /// Gained / lost events not yet given to the hooks.
    pending_hooks: Vec<VipEvent>,
    log: Arc<dyn Fn(&str) + Send + Sync>,
    generation: u64,
}

impl VipDriver {
    /// Removes stale tagged addresses, then registers this node's claims.
    pub fn start(
        setup: VipSetup,
        me: &str,
        generation: u64,
        now_ms: u64,
        log: Arc<dyn Fn(&str) + Send + Sync>,
    ) -> (VipDriver, Vec<DuraVipTable>) {
        let VipSetup {
            cfg,
            claims,
            followers,
            topology,
            mut plumber,
            announce,
            targeted_arp,
            maintenance,
            hooks,
            ownership,
        } = setup;
        purge(plumber.as_mut(), &*log);
        log(&format!("DuraVIP plumbing: {}", plumber.describe()));
        let mut driver = VipDriver {
            dv: DuraVip::new(me, cfg, now_ms),
            followers,
            topology,
            plumber,
            arp_peers: (targeted_arp && announce.is_some()).then(Vec::new),
            announcer: announce.map(|c| Announcer::new(c, Vec::new())),
            maintenance,
            next_check_ms: now_ms + maintenance.check_interval_ms,
            next_broadcast_ms: (maintenance.broadcast_interval_ms > 0)
                .then_some(now_ms + maintenance.broadcast_interval_ms),
            peer_owned: BTreeMap::new(),
            missing_since: BTreeMap::new(),
            debug: false,
            changed: true,
            ownership_stale: true,
            plumbed: BTreeSet::new(),
            hooks,
            ownership,
            pending_hooks: Vec::new(),
            log,
            generation,
        };
        let mut out = Vec::new();
        for claim in claims {
            let outputs = driver.dv.set_claim(now_ms, claim);
            out.extend(driver.apply(now_ms, outputs));
        }
        (driver, out)
    }

    /// Starts a new round of announcements for every owned address.
    pub fn reannounce(&mut self, now_ms: u64) {
        if let Some(a) = &mut self.announcer {
            a.view_changed(now_ms);
        }
    }

    /// The membership view changed (or its quorum did); `peers` are the
    /// addresses of the view's other members.
    pub fn set_view(
        &mut self,
        now_ms: u64,
        view: &View,
        has_quorum: bool,
        peers: &[IpAddr],
    ) -> Vec<DuraVipTable> {
        let members: Vec<(String, u64)> = view
            .members
            .iter()
            .map(|m| (m.name.clone(), m.generation))
            .collect();
        if let Some(p) = &mut self.arp_peers {
            *p = peers.to_vec();
            self.refresh_arp_targets();
        }
        if let Some(a) = &mut self.announcer {
            // Re-announce on every view change while owner, so that a healed
            // split brain does not leave stale ARP caches behind.
            a.view_changed(now_ms);
        }
        self.touch();
        let outputs = self.dv.set_view(now_ms, &members, has_quorum);
        self.apply(now_ms, outputs)
    }

    /// The host registered or changed one of its DuraVIPs.
    pub fn set_claim(&mut self, now_ms: u64, claim: Claim) -> Vec<DuraVipTable> {
        self.touch();
        let outputs = self.dv.set_claim(now_ms, claim);
        self.apply(now_ms, outputs)
    }

    /// An operator moves `ip` to `node` (`cluster duravip move`, run on
    /// every node through a manager's broadcast).
    pub fn move_to(
        &mut self,
        now_ms: u64,
        ip: IpAddr,
        node: &str,
    ) -> Result<Vec<DuraVipTable>, MoveError> {
        let outputs = self.dv.move_to(now_ms, ip, node)?;
        self.touch();
        Ok(self.apply(now_ms, outputs))
    }

    /// The host removed one of its DuraVIPs.
    pub fn remove_claim(&mut self, now_ms: u64, ip: std::net::IpAddr) -> Vec<DuraVipTable> {
        self.touch();
        let outputs = self.dv.remove_claim(now_ms, ip);
        self.apply(now_ms, outputs)
    }

    /// A peer's table arrived over its link.
    pub fn on_table(&mut self, now_ms: u64, from: &str, table: DuraVipTable) -> Vec<DuraVipTable> {
        if self.debug {
            (self.log)(&format!(
                "debug: DuraVIP table v{} from {from}: claims {}, owns [{}]",
                table.table.version,
                table.table.claims.len(),
                join(&table.table.owned)
            ));
        }
        self.touch();
        let given_up = self.given_up_by(from, &table);
        let outputs = self
            .dv
            .on_table(now_ms, from, table.generation, table.table);
        let tables = self.apply(now_ms, outputs);
        // After a healed split brain the loser may have announced an address
        // after we last did, pointing neighbours at it; now that it has let
        // go, announce ours again so that ours is the last word.
        for ip in given_up {
            if self.dv.owned().any(|o| *o == ip)
                && let (Some(a), Some((iface, _))) =
                    (&mut self.announcer, topology_for(&self.topology, ip))
            {
                a.acquired(ip, &iface, now_ms);
            }
        }
        tables
    }

    /// Advances time: balancing, maintenance, and due announcement rounds.
    pub fn tick(&mut self, now_ms: u64) -> Vec<DuraVipTable> {
        let outputs = self.dv.tick(now_ms);
        let mut out = self.apply(now_ms, outputs);
        if now_ms >= self.next_check_ms {
            self.maintain(now_ms);
        }
        if let Some(at) = self.next_broadcast_ms
            && now_ms >= at
        {
            // Speculative: tables travel on reliable links, but a link that
            // broke and came back between two changes may have missed one.
            self.next_broadcast_ms = Some(now_ms + self.maintenance.broadcast_interval_ms);
            if out.is_empty() {
                out.push(self.table());
            }
        }
        if let Some(a) = &mut self.announcer {
            for e in a.poll(now_ms) {
                (self.log)(&format!("announcing a DuraVIP failed: {e}"));
            }
        }
        out
    }

    pub fn next_deadline(&self) -> u64 {
        let core = self
            .dv
            .next_deadline()
            .min(self.next_check_ms)
            .min(self.next_broadcast_ms.unwrap_or(u64::MAX));
        let announce = self.announcer.as_ref().and_then(Announcer::next_deadline);
        announce.map_or(core, |a| a.min(core))
    }

    /// `cluster duravip debug on|off`: log every table and maintenance check.
    pub fn set_debug(&mut self, on: bool) {
        self.debug = on;
    }

    /// Whether the state changed since the last call (for the console's
    /// snapshot, which is worth copying only then).
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    /// Marks the state changed, for the console and the ownership hook.
    fn touch(&mut self) {
        self.changed = true;
        self.ownership_stale = true;
    }

    /// This node's table, for a peer whose link just came up.
    pub fn table(&self) -> DuraVipTable {
        DuraVipTable {
            generation: self.generation,
            table: self.dv.table(),
        }
    }

    /// The core's state, for the console.
    pub fn state(&self) -> &DuraVip {
        &self.dv
    }

    /// What the plumber is, for the console.
    pub fn plumbing(&self) -> &'static str {
        self.plumber.describe()
    }

    /// Gives up every address and claim (planned stop) and returns the
    /// table saying so: peers that receive it take the addresses over at
    /// once instead of waiting to detect the stop.
    pub fn release_all(&mut self, now_ms: u64) -> Vec<DuraVipTable> {
        let claimed: Vec<IpAddr> = self.dv.table().claims.iter().map(|c| c.ip).collect();
        let mut tables = Vec::new();
        for ip in claimed {
            let outputs = self.dv.remove_claim(now_ms, ip);
            tables.extend(self.apply(now_ms, outputs));
        }
        tables
    }

    fn apply(&mut self, now_ms: u64, outputs: Vec<Output>) -> Vec<DuraVipTable> {
        let mut tables = Vec::new();
        if !outputs.is_empty() {
            self.touch();
        }
        for output in outputs {
            match output {
                Output::Acquire(claim) => {
                    let followers = self.followers_of(&claim);
                    for claim in std::iter::once(claim).chain(followers) {
                        self.plumb(now_ms, claim);
                    }
                }
                Output::Release(claim) => {
                    let followers = self.followers_of(&claim);
                    for claim in std::iter::once(claim).chain(followers) {
                        self.unplumb(claim);
                    }
                }
                Output::Announce(table) => {
                    if self.debug {
                        (self.log)(&format!(
                            "debug: announcing DuraVIP table v{}: owns [{}]",
                            table.version,
                            join(&table.owned)
                        ));
                    }
                    tables.push(DuraVipTable {
                        generation: self.generation,
                        table,
                    });
                }
            }
        }
        tables
    }

    /// The addresses `from` owned in its previous table and no longer owns
    /// in `table`; remembers `table`'s for the next time.
    fn given_up_by(&mut self, from: &str, table: &DuraVipTable) -> Vec<IpAddr> {
        let key = (table.generation, table.table.version);
        let owned: BTreeSet<IpAddr> = table.table.owned.iter().copied().collect();
        match self.peer_owned.get(from) {
            Some((seen, _)) if *seen >= key => Vec::new(),
            previous => {
                let given_up = previous
                    .map(|(_, before)| before.difference(&owned).copied().collect())
                    .unwrap_or_default();
                self.peer_owned.insert(from.to_string(), (key, owned));
                given_up
            }
        }
    }

    /// The listeners following `claim`, as claims of their own.
    fn followers_of(&self, claim: &Claim) -> Vec<Claim> {
        self.followers
            .iter()
            .filter(|f| f.follows(claim))
            .map(Follower::as_claim)
            .collect()
    }

    /// The interface and prefix `ip` is plumbed with, or a log line saying
    /// how to configure one.
    fn placement(&self, ip: IpAddr) -> Option<(String, u8)> {
        let found = topology_for(&self.topology, ip);
        if found.is_none() {
            (self.log)(&format!(
                "DuraVIP {ip} has no Topology: add cluster {{ Topology \"<block>\" {{ interface = ... }} }}"
            ));
        }
        found
    }

    fn plumb(&mut self, now_ms: u64, claim: Claim) {
        let Some((iface, prefix)) = self.placement(claim.ip) else {
            return;
        };
        match self.plumber.add(&iface, claim.ip, prefix) {
            Ok(()) => {
                (self.log)(&format!("gained DuraVIP {}/{prefix} on {iface}", claim.ip));
                self.plumbed.insert(claim.ip);
                if let Some(a) = &mut self.announcer {
                    a.acquired(claim.ip, &iface, now_ms);
                }
                self.queue_hook(VipEvent::Gained(claim));
            }
            Err(e) => (self.log)(&format!("cannot plumb DuraVIP {}: {e}", claim.ip)),
        }
    }

    fn unplumb(&mut self, claim: Claim) {
        if let Some(a) = &mut self.announcer {
            a.released(claim.ip);
        }
        self.missing_since.remove(&claim.ip);
        self.plumbed.remove(&claim.ip);
        if let Some((iface, prefix)) = topology_for(&self.topology, claim.ip) {
            match self.plumber.remove(&iface, claim.ip, prefix) {
                Ok(()) => (self.log)(&format!("released DuraVIP {} from {iface}", claim.ip)),
                Err(e) => (self.log)(&format!("cannot unplumb DuraVIP {}: {e}", claim.ip)),
            }
        }
        self.queue_hook(VipEvent::Lost(claim));
    }

    /// Every address this node should have plumbed: what it owns and the
    /// listeners following it, with where each goes.
    fn wanted(&self) -> Vec<(String, IpAddr, u8)> {
        self.dv
            .owned_claims()
            .flat_map(|c| {
                std::iter::once(c.ip)
                    .chain(self.followers.iter().filter(|f| f.follows(c)).map(|f| f.ip))
            })
            .filter_map(|ip| topology_for(&self.topology, ip).map(|(i, p)| (i, ip, p)))
            .collect()
    }

    /// One maintenance check (module docs).
    fn maintain(&mut self, now_ms: u64) {
        self.next_check_ms = now_ms + self.maintenance.check_interval_ms;
        self.refresh_arp_targets();
        let tagged = match self.plumber.list_ours() {
            Ok(tagged) => tagged,
            Err(e) => {
                (self.log)(&format!("DuraVIP maintenance cannot list addresses: {e}"));
                return;
            }
        };
        let wanted = self.wanted();
        for (iface, ip, prefix) in &tagged {
            if !wanted.iter().any(|(_, w, _)| w == ip) {
                match self.plumber.remove(iface, *ip, *prefix) {
                    Ok(()) => (self.log)(&format!(
                        "maintenance: removed {ip}/{prefix} from {iface}: tagged as a DuraVIP this node does not own"
                    )),
                    Err(e) => (self.log)(&format!("maintenance: cannot remove {ip}: {e}")),
                }
            }
        }
        let mut missing = Vec::new();
        for (iface, ip, prefix) in wanted {
            let plumbed = tagged.iter().any(|(i, t, _)| *i == iface && *t == ip)
                // An address the operator had before we plumbed it stays
                // untagged; it is there all the same.
                || self.plumber.present(&iface, ip).unwrap_or(false);
            if !plumbed {
                missing.push((iface, ip, prefix));
            }
            if plumbed != self.plumbed.contains(&ip) {
                if plumbed {
                    self.plumbed.insert(ip);
                } else {
                    self.plumbed.remove(&ip);
                }
                self.touch();
            }
        }
        self.missing_since
            .retain(|ip, _| missing.iter().any(|(_, m, _)| m == ip));
        for (iface, ip, prefix) in missing {
            let since = *self.missing_since.entry(ip).or_insert(now_ms);
            let due = since + self.maintenance.down_limit_ms;
            if now_ms < due {
                (self.log)(&format!(
                    "maintenance: DuraVIP {ip} is missing from {iface}; plumbing it again in {} ms unless it returns",
                    due - now_ms
                ));
                self.next_check_ms = self.next_check_ms.min(due);
                continue;
            }
            match self.plumber.add(&iface, ip, prefix) {
                Ok(()) => {
                    (self.log)(&format!(
                        "maintenance: plumbed missing DuraVIP {ip}/{prefix} on {iface} again"
                    ));
                    self.missing_since.remove(&ip);
                    self.plumbed.insert(ip);
                    self.touch();
                    if let Some(a) = &mut self.announcer {
                        a.acquired(ip, &iface, now_ms);
                    }
                }
                Err(e) => (self.log)(&format!("maintenance: cannot plumb {ip}: {e}")),
            }
        }
        if self.debug {
            (self.log)(&format!(
                "debug: DuraVIP maintenance: {} tagged address(es), {} missing",
                tagged.len(),
                self.missing_since.len()
            ));
        }
    }

    /// Looks up the MACs of the hosts of interest (targeted ARP only).
    fn refresh_arp_targets(&mut self) {
        let (Some(peers), Some(announcer)) = (&self.arp_peers, &mut self.announcer) else {
            return;
        };
        let mut hosts = peers.clone();
        match neigh::default_gateways() {
            Ok(gateways) => hosts.extend(gateways),
            Err(e) => (self.log)(&format!("cannot read the default gateways: {e}")),
        }
        match neigh::lookup(&hosts) {
            Ok(found) => {
                let mut macs: Vec<_> = found.iter().filter_map(|n| n.mac).collect();
                macs.sort_unstable();
                macs.dedup();
                announcer.set_targets(macs);
            }
            Err(e) => (self.log)(&format!("cannot read the neighbour table: {e}")),
        }
    }

    /// Queues a hook event: the host hears of it from
    /// [`VipDriver::run_hooks`], once the console shows the change.
    fn queue_hook(&mut self, event: VipEvent) {
        self.pending_hooks.push(event);
    }

    /// Runs the host's hooks for every change since the last call. The
    /// engine calls it after publishing the console's snapshot, so a hook
    /// that asks `cluster duravip show` sees its own address owned.
    pub fn run_hooks(&mut self) {
        if let Some(hook) = &self.ownership
            && std::mem::take(&mut self.ownership_stale)
        {
            hook(&self.ownership());
        }
        let events = std::mem::take(&mut self.pending_hooks);
        let hooks = self.hooks.read();
        for event in &events {
            for hook in hooks.iter() {
                hook(event);
            }
        }
    }
}

impl VipDriver {
    /// Who owns what, for the ownership hook.
    fn ownership(&self) -> Ownership {
        Ownership {
            addresses: self
                .dv
                .owners()
                .map(|o| AddressOwner {
                    ip: o.ip,
                    names: o.names.to_vec(),
                    owner: o.owner.map(str::to_string),
                    owned_here: o.owned_here,
                    plumbed_here: o.owned_here && self.plumbed.contains(&o.ip),
                })
                .collect(),
        }
    }
}

/// Addresses as a comma-separated list, for log lines.
fn join(ips: &[IpAddr]) -> String {
    ips.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::{QuorumMode, Topology};
    use crate::core::duravip::Service;
    use crate::core::membership::ViewMember;
    use crate::io::plumb::{DryRunLog, DryRunPlumber};
    use parking_lot::Mutex;
    use std::io;

    /// The dry-run plumber, shared so that a test can delete an address
    /// behind the driver's back.
    struct SharedPlumber(Arc<Mutex<DryRunPlumber>>);

    impl Plumber for SharedPlumber {
        fn add(&mut self, interface: &str, ip: IpAddr, prefix: u8) -> io::Result<()> {
            self.0.lock().add(interface, ip, prefix)
        }
        fn remove(&mut self, interface: &str, ip: IpAddr, prefix: u8) -> io::Result<()> {
            self.0.lock().remove(interface, ip, prefix)
        }
        fn list_ours(&mut self) -> io::Result<Vec<(String, IpAddr, u8)>> {
            self.0.lock().list_ours()
        }
        fn present(&mut self, interface: &str, ip: IpAddr) -> io::Result<bool> {
            self.0.lock().present(interface, ip)
        }
        fn describe(&self) -> &'static str {
            "shared dry run"
        }
    }

    const MATURE_MS: u64 = 1000;
    const CHECK_MS: u64 = 30_000;
    const DOWN_MS: u64 = 4000;
    const BROADCAST_MS: u64 = 7000;

    struct Rig {
        driver: VipDriver,
        plumber: Arc<Mutex<DryRunPlumber>>,
        plumbed: DryRunLog,
        events: Arc<Mutex<Vec<VipEvent>>>,
        owners: Arc<Mutex<Vec<Ownership>>>,
        log: Arc<Mutex<Vec<String>>>,
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn binding(address: &str, name: &str) -> Claim {
        Claim {
            ip: ip(address),
            names: vec![name.into()],
            services: vec![Service::Binding],
            preference: None,
        }
    }

    /// A single node owning one binding address, followed by a listener.
    fn rig() -> Rig {
        rig_with(None, Vec::new())
    }

    /// The same, announcing with `announce` (on an interface that does not
    /// exist: the rounds fail, but their schedule is what is tested), and
    /// with `peers` in the view.
    fn rig_with(announce: Option<AnnounceConfig>, peers: Vec<ViewMember>) -> Rig {
        let plumber = Arc::new(Mutex::new(DryRunPlumber::new()));
        let plumbed = plumber.lock().log();
        let events = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&events);
        let hook: VipHook = Arc::new(move |e: &VipEvent| seen.lock().push(e.clone()));
        let owners = Arc::new(Mutex::new(Vec::new()));
        let heard = Arc::clone(&owners);
        let ownership_hook: OwnershipHook =
            Arc::new(move |o: &Ownership| heard.lock().push(o.clone()));
        let log = Arc::new(Mutex::new(Vec::new()));
        let lines = Arc::clone(&log);
        let setup = VipSetup {
            cfg: DuraVipConfig {
                view_mature_ms: MATURE_MS,
                balance_interval_ms: 10_000,
                balance_set_size: 10,
                quorum: QuorumMode::None,
            },
            claims: vec![binding("10.1.1.1", "out1")],
            followers: vec![Follower {
                ip: ip("10.1.1.3"),
                ports: vec![25],
                follows: "out1".into(),
            }],
            topology: vec![Topology {
                network: None,
                interface: "ecc-test0".into(),
                cidrmask: 32,
            }],
            plumber: Box::new(SharedPlumber(Arc::clone(&plumber))),
            announce,
            targeted_arp: false,
            maintenance: Maintenance {
                check_interval_ms: CHECK_MS,
                down_limit_ms: DOWN_MS,
                broadcast_interval_ms: BROADCAST_MS,
            },
            hooks: Arc::new(RwLock::new(vec![hook])),
            ownership: Some(ownership_hook),
        };
        let (mut driver, _) = VipDriver::start(
            setup,
            "n1",
            7,
            0,
            Arc::new(move |l: &str| lines.lock().push(l.to_string())),
        );
        let mut members = vec![ViewMember {
            name: "n1".into(),
            generation: 7,
        }];
        members.extend(peers);
        let view = View { id: 1, members };
        driver.set_view(0, &view, true, &[]);
        driver.tick(MATURE_MS);
        driver.run_hooks();
        Rig {
            driver,
            plumber,
            plumbed,
            events,
            owners,
            log,
        }
    }

    /// Whether the (fake) kernel has `address` on the test interface.
    fn present(r: &Rig, address: &str) -> bool {
        r.plumber.lock().present("ecc-test0", ip(address)).unwrap()
    }

    fn plumbed(r: &Rig) -> Vec<String> {
        r.plumbed.lock().unwrap().clone()
    }

    #[test]
    fn a_following_listener_moves_with_its_binding() {
        let mut r = rig();
        assert_eq!(
            plumbed(&r),
            ["add ecc-test0 10.1.1.1/32", "add ecc-test0 10.1.1.3/32"]
        );
        let gained: Vec<(IpAddr, Vec<Service>)> = r
            .events
            .lock()
            .iter()
            .map(|e| match e {
                VipEvent::Gained(c) => (c.ip, c.services.clone()),
                VipEvent::Lost(c) => panic!("lost {c:?}"),
            })
            .collect();
        assert_eq!(
            gained,
            [
                (ip("10.1.1.1"), vec![Service::Binding]),
                (ip("10.1.1.3"), vec![Service::Listener(25)])
            ]
        );
        r.driver.remove_claim(MATURE_MS + 1, ip("10.1.1.1"));
        assert_eq!(r.events.lock().len(), 2, "nothing before run_hooks");
        r.driver.run_hooks();
        assert_eq!(
            plumbed(&r)[2..],
            [
                "remove ecc-test0 10.1.1.1/32",
                "remove ecc-test0 10.1.1.3/32"
            ]
        );
        assert!(matches!(&r.events.lock()[3], VipEvent::Lost(c) if c.ip == ip("10.1.1.3")));
    }

    /// Whether the ownership hook last heard 10.1.1.1 owned and plumbed here.
    fn last_heard_plumbed(r: &Rig) -> bool {
        let owners = r.owners.lock();
        let last = owners.last().expect("the ownership hook was called");
        let a = last
            .addresses
            .iter()
            .find(|a| a.ip == ip("10.1.1.1"))
            .expect("10.1.1.1 is listed");
        assert_eq!(
            (a.names.as_slice(), a.owner.as_deref(), a.owned_here),
            (&["out1".to_string()][..], Some("n1"), true)
        );
        a.plumbed_here
    }

    #[test]
    fn the_ownership_hook_hears_owners_and_what_is_plumbed() {
        let mut r = rig();
        assert!(last_heard_plumbed(&r));
        let heard = r.owners.lock().len();
        r.driver.run_hooks();
        assert_eq!(
            r.owners.lock().len(),
            heard,
            "nothing changed, nothing said"
        );
        r.plumber.lock().forget("ecc-test0", ip("10.1.1.1"));
        r.driver.tick(CHECK_MS + MATURE_MS);
        r.driver.run_hooks();
        assert!(!last_heard_plumbed(&r), "missing from the interface");
        r.driver.tick(CHECK_MS + MATURE_MS + DOWN_MS);
        r.driver.run_hooks();
        assert!(last_heard_plumbed(&r), "plumbed again");
    }

    #[test]
    fn maintenance_replumbs_a_deleted_address_after_the_down_limit() {
        let mut r = rig();
        r.plumber.lock().forget("ecc-test0", ip("10.1.1.1"));
        // Nothing happens before the check is due.
        r.driver.tick(CHECK_MS - 1);
        assert_eq!(plumbed(&r).len(), 2);
        let found = CHECK_MS + MATURE_MS;
        r.driver.tick(found);
        assert_eq!(plumbed(&r).len(), 2, "waits for if_down_limit");
        assert!(
            r.log
                .lock()
                .iter()
                .any(|l| l.contains("10.1.1.1 is missing")),
            "{:?}",
            r.log.lock()
        );
        assert_eq!(r.driver.next_deadline(), found + DOWN_MS);
        r.driver.tick(found + DOWN_MS);
        assert_eq!(plumbed(&r)[2..], ["add ecc-test0 10.1.1.1/32"]);
        assert!(present(&r, "10.1.1.1"));
    }

    #[test]
    fn an_address_that_returns_by_itself_is_not_plumbed_again() {
        let mut r = rig();
        r.plumber.lock().forget("ecc-test0", ip("10.1.1.3"));
        r.driver.tick(CHECK_MS + MATURE_MS);
        r.plumber
            .lock()
            .add("ecc-test0", ip("10.1.1.3"), 32)
            .unwrap();
        let before = plumbed(&r).len();
        r.driver.tick(CHECK_MS + MATURE_MS + DOWN_MS);
        assert_eq!(plumbed(&r).len(), before, "{:?}", plumbed(&r));
    }

    #[test]
    fn maintenance_removes_a_tagged_address_this_node_does_not_own() {
        let mut r = rig();
        r.plumber
            .lock()
            .add("ecc-test0", ip("10.1.1.77"), 32)
            .unwrap();
        r.driver.tick(CHECK_MS + MATURE_MS);
        assert_eq!(plumbed(&r).last().unwrap(), "remove ecc-test0 10.1.1.77/32");
        assert!(!present(&r, "10.1.1.77"));
        assert!(present(&r, "10.1.1.1"));
    }

    #[test]
    fn the_table_is_sent_unasked_every_view_broadcast_interval() {
        let mut r = rig();
        let version = r.driver.table().table.version;
        assert!(r.driver.tick(BROADCAST_MS - 1).is_empty());
        assert_eq!(r.driver.next_deadline(), BROADCAST_MS);
        let sent = r.driver.tick(BROADCAST_MS);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].table.version, version, "unchanged, sent anyway");
        assert!(r.driver.tick(BROADCAST_MS + 1).is_empty());
    }

    #[test]
    fn the_keeper_announces_again_when_the_other_owner_lets_go() {
        let n2 = ViewMember {
            name: "n2".into(),
            generation: 9,
        };
        let announce = AnnounceConfig {
            refresh_interval_ms: 0,
            ..AnnounceConfig::default()
        };
        let mut r = rig_with(Some(announce), vec![n2]);
        // n1 prefers itself; n2 also owns the address (a healed split).
        r.driver.set_claim(
            MATURE_MS,
            Claim {
                preference: Some("n1".into()),
                ..binding("10.1.1.1", "out1")
            },
        );
        let table = |version: u64, owned: Vec<IpAddr>| DuraVipTable {
            generation: 9,
            table: crate::core::duravip::Table {
                version,
                claims: vec![Claim {
                    preference: Some("n1".into()),
                    ..binding("10.1.1.1", "out1")
                }]
                .into(),
                owned,
                handoffs: Vec::new(),
            },
        };
        r.driver
            .on_table(MATURE_MS, "n2", table(5, vec![ip("10.1.1.1")]));
        assert!(r.driver.state().owned().any(|o| *o == ip("10.1.1.1")));
        // Let the announcement rounds run out.
        let mut now = MATURE_MS;
        while r.driver.next_deadline() < 10_000 {
            now = r.driver.next_deadline();
            r.driver.tick(now);
        }
        let quiet = r.driver.next_deadline();
        // n2 gives way: n1 announces again at once.
        r.driver.on_table(now + 1, "n2", table(6, Vec::new()));
        assert_eq!(r.driver.next_deadline(), now + 1, "quiet until {quiet}");
        // An old table again changes nothing.
        r.driver.tick(now + 1);
        let next = r.driver.next_deadline();
        r.driver
            .on_table(now + 2, "n2", table(5, vec![ip("10.1.1.1")]));
        assert_eq!(r.driver.next_deadline(), next);
    }
}
