//! Carries out the DuraVIP core's decisions on this host: plumbs and
//! unplumbs addresses, announces them, runs the host's gained/lost hooks.
//!
//! The engine thread owns one [`VipDriver`]. It feeds the driver the view
//! and peers' tables and sends the tables the driver returns to every peer;
//! the driver turns `Acquire`/`Release` into plumber calls and announcement
//! rounds. On start it removes every address still carrying our tag (a
//! previous run may have died holding them), and on stop it releases what
//! it owns, so a planned leave never leaves two owners.

use std::sync::Arc;

use parking_lot::RwLock;

use crate::config::model::Topology;
use crate::core::announce::AnnounceConfig;
use crate::core::duravip::{Claim, DuraVip, DuraVipConfig, Output, topology_for};
use crate::core::membership::View;
use crate::core::wire::DuraVipTable;
use crate::io::arp::Announcer;
use crate::io::plumb::Plumber;

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

/// What the runtime needs to run DuraVIP.
#[allow(missing_debug_implementations)] // holds the plumber and closures
pub struct VipSetup {
    pub cfg: DuraVipConfig,
    pub claims: Vec<Claim>,
    pub topology: Vec<Topology>,
    pub plumber: Box<dyn Plumber>,
    /// `None` with the dry-run plumber: there is nothing to announce.
    pub announce: Option<AnnounceConfig>,
    pub hooks: Arc<RwLock<Vec<VipHook>>>,
}

/// See the module docs.
#[allow(missing_debug_implementations)]
pub struct VipDriver {
    dv: DuraVip,
    topology: Vec<Topology>,
    plumber: Box<dyn Plumber>,
    announcer: Option<Announcer>,
    hooks: Arc<RwLock<Vec<VipHook>>>,
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
            topology,
            mut plumber,
            announce,
            hooks,
        } = setup;
        match plumber.list_ours() {
            Ok(stale) => {
                for (iface, ip, prefix) in stale {
                    match plumber.remove(&iface, ip, prefix) {
                        Ok(()) => log(&format!("removed stale DuraVIP {ip}/{prefix} from {iface}")),
                        Err(e) => log(&format!(
                            "cannot remove stale DuraVIP {ip} from {iface}: {e}"
                        )),
                    }
                }
            }
            Err(e) => log(&format!("cannot list plumbed addresses: {e}")),
        }
        log(&format!("DuraVIP plumbing: {}", plumber.describe()));
        let mut driver = VipDriver {
            dv: DuraVip::new(me, cfg, now_ms),
            topology,
            plumber,
            announcer: announce.map(|c| Announcer::new(c, Vec::new())),
            hooks,
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

    /// The membership view changed (or its quorum did).
    pub fn set_view(&mut self, now_ms: u64, view: &View, has_quorum: bool) -> Vec<DuraVipTable> {
        let members: Vec<(String, u64)> = view
            .members
            .iter()
            .map(|m| (m.name.clone(), m.generation))
            .collect();
        if let Some(a) = &mut self.announcer {
            // Re-announce on every view change while owner, so that a healed
            // split brain does not leave stale ARP caches behind.
            a.view_changed(now_ms);
        }
        let outputs = self.dv.set_view(now_ms, &members, has_quorum);
        self.apply(now_ms, outputs)
    }

    /// The host registered or changed one of its DuraVIPs.
    pub fn set_claim(&mut self, now_ms: u64, claim: Claim) -> Vec<DuraVipTable> {
        let outputs = self.dv.set_claim(now_ms, claim);
        self.apply(now_ms, outputs)
    }

    /// The host removed one of its DuraVIPs.
    pub fn remove_claim(&mut self, now_ms: u64, ip: std::net::IpAddr) -> Vec<DuraVipTable> {
        let outputs = self.dv.remove_claim(now_ms, ip);
        self.apply(now_ms, outputs)
    }

    /// A peer's table arrived over its link.
    pub fn on_table(&mut self, now_ms: u64, from: &str, table: DuraVipTable) -> Vec<DuraVipTable> {
        let outputs = self
            .dv
            .on_table(now_ms, from, table.generation, table.table);
        self.apply(now_ms, outputs)
    }

    /// Advances time: balancing, and due announcement rounds.
    pub fn tick(&mut self, now_ms: u64) -> Vec<DuraVipTable> {
        let outputs = self.dv.tick(now_ms);
        let out = self.apply(now_ms, outputs);
        if let Some(a) = &mut self.announcer {
            for e in a.poll(now_ms) {
                (self.log)(&format!("announcing a DuraVIP failed: {e}"));
            }
        }
        out
    }

    pub fn next_deadline(&self) -> u64 {
        let announce = self.announcer.as_ref().and_then(Announcer::next_deadline);
        announce.map_or(self.dv.next_deadline(), |a| a.min(self.dv.next_deadline()))
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

    /// Gives up every owned address (planned stop).
    pub fn release_all(&mut self, now_ms: u64) {
        let owned: Vec<std::net::IpAddr> = self.dv.owned().copied().collect();
        for ip in owned {
            let outputs = self.dv.remove_claim(now_ms, ip);
            self.apply(now_ms, outputs);
        }
    }

    fn apply(&mut self, now_ms: u64, outputs: Vec<Output>) -> Vec<DuraVipTable> {
        let mut tables = Vec::new();
        for output in outputs {
            match output {
                Output::Acquire(claim) => {
                    let Some((iface, prefix)) = topology_for(&self.topology, claim.ip) else {
                        (self.log)(&format!(
                            "DuraVIP {} has no Topology: add cluster {{ Topology \"<block>\" {{ interface = ... }} }}",
                            claim.ip
                        ));
                        continue;
                    };
                    match self.plumber.add(&iface, claim.ip, prefix) {
                        Ok(()) => {
                            (self.log)(&format!("gained DuraVIP {}/{prefix} on {iface}", claim.ip));
                            if let Some(a) = &mut self.announcer {
                                a.acquired(claim.ip, &iface, now_ms);
                            }
                            self.run_hooks(&VipEvent::Gained(claim));
                        }
                        Err(e) => (self.log)(&format!("cannot plumb DuraVIP {}: {e}", claim.ip)),
                    }
                }
                Output::Release(claim) => {
                    if let Some(a) = &mut self.announcer {
                        a.released(claim.ip);
                    }
                    if let Some((iface, prefix)) = topology_for(&self.topology, claim.ip) {
                        match self.plumber.remove(&iface, claim.ip, prefix) {
                            Ok(()) => {
                                (self.log)(&format!("released DuraVIP {} from {iface}", claim.ip))
                            }
                            Err(e) => {
                                (self.log)(&format!("cannot unplumb DuraVIP {}: {e}", claim.ip))
                            }
                        }
                    }
                    self.run_hooks(&VipEvent::Lost(claim));
                }
                Output::Announce(table) => tables.push(DuraVipTable {
                    generation: self.generation,
                    table,
                }),
            }
        }
        tables
    }

    fn run_hooks(&self, event: &VipEvent) {
        for hook in self.hooks.read().iter() {
            hook(event);
        }
    }
}
