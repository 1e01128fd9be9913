//! When to announce DuraVIP addresses: the gratuitous ARP / unsolicited
//! Neighbour Advertisement schedule, without sending anything.
//!
//! An announcement tells the hosts and switches of a segment that an address
//! now lives behind our MAC. One is not enough in practice:
//!
//! - **Repeat, more than a second apart.** Linux ignores a neighbour update
//!   that arrives within `locktime` (1 s by default) of the previous one, and
//!   any single frame can be lost. So an acquired address is announced in
//!   several *rounds* (3 by default) 1.1 s apart, as MetalLB does; the next
//!   round is timed from when the previous one actually went out, so rate
//!   limiting can delay rounds but never squeeze them below the interval.
//! - **Re-announce on every view change**, not only on our own transitions.
//!   After a split brain heals, the node that kept an address made no
//!   transition, yet neighbours may still point at the loser's MAC (the
//!   classic keepalived and MetalLB complaint). [`AnnounceSchedule::view_changed`]
//!   starts fresh rounds for every owned address.
//! - **Refresh periodically** (optional): switch FDB entries and router ARP
//!   caches age out on their own clocks; one round every
//!   `refresh_interval_ms` while we own an address keeps them warm.
//! - **Rate-limit bursts.** A node may own thousands of addresses; announcing
//!   them all in the same millisecond upsets switches and fills queues. At
//!   most one announcement per interface leaves every `min_gap_ms`.
//!
//! This module is pure: the caller passes the time in milliseconds (any
//! monotonic origin) and sends what [`AnnounceSchedule::due`] returns;
//! `io::arp::Announcer` is that caller. Keeping the timing here makes it
//! testable to the millisecond and lets the simulator reuse it.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

/// How announcements are repeated and paced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceConfig {
    /// Rounds sent when an address is acquired or a view changes (at least 1).
    pub rounds: u32,
    /// Time between two rounds for one address. Keep it above Linux's
    /// neighbour `locktime` (1 s), or receivers may ignore the repeats.
    pub round_interval_ms: u64,
    /// A single refresh round this long after the last round, for as long
    /// as the address is owned; 0 turns refreshing off.
    pub refresh_interval_ms: u64,
    /// Minimum time between two announcements on one interface.
    pub min_gap_ms: u64,
}

impl Default for AnnounceConfig {
    fn default() -> Self {
        AnnounceConfig {
            rounds: 3,
            round_interval_ms: 1100,
            refresh_interval_ms: 0,
            min_gap_ms: 1,
        }
    }
}

/// One owned address.
#[derive(Debug, Clone)]
struct Entry {
    interface: String,
    /// Rounds still to send in the current burst (refreshes excluded).
    rounds_left: u32,
    /// When the next round is due; `None` when nothing is scheduled (the
    /// burst is over and refreshing is off).
    next_at: Option<u64>,
}

/// The announcement schedule of the addresses this node owns.
#[derive(Debug, Clone)]
pub struct AnnounceSchedule {
    config: AnnounceConfig,
    entries: HashMap<IpAddr, Entry>,
    /// Scheduled rounds in due order: (due time, address). Mirrors the
    /// `next_at` of `entries`, so `due` never scans idle addresses.
    queue: BTreeSet<(u64, IpAddr)>,
    /// Per interface, the earliest time the next announcement may leave.
    interface_free_at: HashMap<String, u64>,
}

impl AnnounceSchedule {
    /// An empty schedule. `rounds` below 1 is taken as 1: acquiring an
    /// address always announces it at least once.
    pub fn new(mut config: AnnounceConfig) -> Self {
        config.rounds = config.rounds.max(1);
        AnnounceSchedule {
            config,
            entries: HashMap::new(),
            queue: BTreeSet::new(),
            interface_free_at: HashMap::new(),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &AnnounceConfig {
        &self.config
    }

    /// We now own `ip` on `interface`: announce it, `rounds` times from `now_ms`.
    /// Acquiring an address already owned (perhaps on another interface)
    /// restarts its burst there.
    pub fn acquired(&mut self, ip: IpAddr, interface: &str, now_ms: u64) {
        let entry = Entry {
            interface: interface.to_string(),
            rounds_left: self.config.rounds,
            next_at: None,
        };
        if let Some(old) = self.entries.insert(ip, entry) {
            self.unqueue(ip, old.next_at);
            self.forget_unused_interfaces();
        }
        self.reschedule(ip, Some(now_ms));
    }

    /// We no longer own `ip`: nothing more is sent for it.
    pub fn released(&mut self, ip: IpAddr) {
        if let Some(old) = self.entries.remove(&ip) {
            self.unqueue(ip, old.next_at);
        }
        self.forget_unused_interfaces();
    }

    /// The view changed: announce every owned address again, a full burst
    /// each, starting now. Rounds already due keep their place.
    pub fn view_changed(&mut self, now_ms: u64) {
        let ips: Vec<IpAddr> = self.entries.keys().copied().collect();
        for ip in ips {
            let Some(entry) = self.entries.get_mut(&ip) else {
                continue;
            };
            entry.rounds_left = self.config.rounds;
            let at = entry.next_at.map_or(now_ms, |t| t.min(now_ms));
            self.reschedule(ip, Some(at));
        }
    }

    /// The announcements to send now, as (address, interface), at most one
    /// per interface (and none on an interface still within `min_gap_ms` of
    /// its previous one). Each returned round counts as sent.
    pub fn due(&mut self, now_ms: u64) -> Vec<(IpAddr, String)> {
        let interfaces = self.interface_free_at.len();
        let mut out: Vec<(IpAddr, String)> = Vec::new();
        // Interfaces already settled in this call, served or still busy:
        // once every interface is, the rest of the queue cannot yield more.
        let mut settled: BTreeSet<String> = BTreeSet::new();
        let mut chosen: Vec<IpAddr> = Vec::new();
        for &(at, ip) in &self.queue {
            if at > now_ms || settled.len() == interfaces {
                break;
            }
            let iface = &self.entries[&ip].interface;
            if settled.contains(iface) {
                continue;
            }
            settled.insert(iface.clone());
            if self
                .interface_free_at
                .get(iface)
                .is_none_or(|t| *t <= now_ms)
            {
                chosen.push(ip);
            }
        }
        for ip in chosen {
            let (interface, next) = {
                let entry = self
                    .entries
                    .get_mut(&ip)
                    .expect("queued addresses are owned");
                entry.rounds_left = entry.rounds_left.saturating_sub(1);
                let next = if entry.rounds_left > 0 {
                    Some(now_ms + self.config.round_interval_ms)
                } else if self.config.refresh_interval_ms > 0 {
                    // A refresh is a burst of one round.
                    entry.rounds_left = 1;
                    Some(now_ms + self.config.refresh_interval_ms)
                } else {
                    None
                };
                (entry.interface.clone(), next)
            };
            self.interface_free_at
                .insert(interface.clone(), now_ms + self.config.min_gap_ms);
            self.reschedule(ip, next);
            out.push((ip, interface));
        }
        out
    }

    /// When `due` next has something to return, if ever (without new
    /// events): the time to sleep until. It may be in the past.
    pub fn next_deadline(&self) -> Option<u64> {
        // The earliest queued round, delayed by its interface's gap. Only the
        // first round of each interface matters, but the earliest over all
        // of them is the minimum of (due, free_at) per first round.
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        let mut best: Option<u64> = None;
        for &(at, ip) in &self.queue {
            if best.is_some_and(|b| at >= b) {
                break;
            }
            let iface = self.entries[&ip].interface.as_str();
            if !seen.insert(iface) {
                continue;
            }
            let free = self.interface_free_at.get(iface).copied().unwrap_or(0);
            let t = at.max(free);
            best = Some(best.map_or(t, |b| b.min(t)));
        }
        best
    }

    /// The owned addresses and their interfaces, in no particular order.
    pub fn owned(&self) -> impl Iterator<Item = (IpAddr, &str)> {
        self.entries
            .iter()
            .map(|(ip, e)| (*ip, e.interface.as_str()))
    }

    /// Drops the pacing state of interfaces no owned address uses, so the
    /// map stays the set of interfaces in use (`due` relies on that).
    fn forget_unused_interfaces(&mut self) {
        let used: BTreeSet<&str> = self
            .entries
            .values()
            .map(|e| e.interface.as_str())
            .collect();
        self.interface_free_at
            .retain(|iface, _| used.contains(iface.as_str()));
    }

    fn unqueue(&mut self, ip: IpAddr, at: Option<u64>) {
        if let Some(at) = at {
            self.queue.remove(&(at, ip));
        }
    }

    /// Moves `ip`'s next round to `at` (or unschedules it), keeping the
    /// queue in step with the entry.
    fn reschedule(&mut self, ip: IpAddr, at: Option<u64>) {
        let Some(entry) = self.entries.get_mut(&ip) else {
            return;
        };
        let old = std::mem::replace(&mut entry.next_at, at);
        self.interface_free_at
            .entry(entry.interface.clone())
            .or_insert(0);
        self.unqueue(ip, old);
        if let Some(at) = at {
            self.queue.insert((at, ip));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Drives the schedule every millisecond from `from` to `to` inclusive
    /// and returns (time, address, interface) of everything sent.
    fn run(s: &mut AnnounceSchedule, from: u64, to: u64) -> Vec<(u64, IpAddr, String)> {
        let mut sent = Vec::new();
        for now in from..=to {
            for (ip, iface) in s.due(now) {
                sent.push((now, ip, iface));
            }
        }
        sent
    }

    #[test]
    fn acquire_sends_three_rounds_spaced_beyond_locktime() {
        let mut s = AnnounceSchedule::new(AnnounceConfig::default());
        s.acquired(ip("10.0.0.1"), "eth0", 1000);
        let sent = run(&mut s, 0, 10_000);
        let times: Vec<u64> = sent.iter().map(|x| x.0).collect();
        assert_eq!(times, [1000, 2100, 3200]);
        assert!(sent.iter().all(|x| x.1 == ip("10.0.0.1") && x.2 == "eth0"));
        assert_eq!(s.next_deadline(), None, "no refresh configured");
    }

    #[test]
    fn rounds_and_interval_are_configurable_and_at_least_one_round_is_sent() {
        let mut s = AnnounceSchedule::new(AnnounceConfig {
            rounds: 5,
            round_interval_ms: 2000,
            ..AnnounceConfig::default()
        });
        s.acquired(ip("10.0.0.1"), "eth0", 0);
        let times: Vec<u64> = run(&mut s, 0, 20_000).iter().map(|x| x.0).collect();
        assert_eq!(times, [0, 2000, 4000, 6000, 8000]);

        let mut s = AnnounceSchedule::new(AnnounceConfig {
            rounds: 0,
            ..AnnounceConfig::default()
        });
        s.acquired(ip("10.0.0.1"), "eth0", 0);
        assert_eq!(run(&mut s, 0, 20_000).len(), 1);
    }

    #[test]
    fn refresh_repeats_one_round_until_released() {
        let mut s = AnnounceSchedule::new(AnnounceConfig {
            refresh_interval_ms: 60_000,
            ..AnnounceConfig::default()
        });
        s.acquired(ip("10.0.0.1"), "eth0", 0);
        let times: Vec<u64> = run(&mut s, 0, 130_000).iter().map(|x| x.0).collect();
        assert_eq!(times, [0, 1100, 2200, 62_200, 122_200]);
        assert_eq!(s.next_deadline(), Some(182_200));
        s.released(ip("10.0.0.1"));
        assert_eq!(s.next_deadline(), None);
        assert!(run(&mut s, 130_001, 300_000).is_empty());
    }

    #[test]
    fn released_address_is_not_announced_again() {
        let mut s = AnnounceSchedule::new(AnnounceConfig::default());
        s.acquired(ip("10.0.0.1"), "eth0", 0);
        assert_eq!(s.due(0).len(), 1);
        s.released(ip("10.0.0.1"));
        assert!(run(&mut s, 1, 10_000).is_empty());
        assert_eq!(s.owned().count(), 0);
    }

    #[test]
    fn view_change_restarts_the_burst_for_every_owned_address() {
        let mut s = AnnounceSchedule::new(AnnounceConfig::default());
        s.acquired(ip("10.0.0.1"), "eth0", 0);
        s.acquired(ip("10.0.0.2"), "eth1", 0);
        assert_eq!(run(&mut s, 0, 10_000).len(), 6);
        s.view_changed(20_000);
        let sent = run(&mut s, 10_001, 30_000);
        let at =
            |a: &str| -> Vec<u64> { sent.iter().filter(|x| x.1 == ip(a)).map(|x| x.0).collect() };
        assert_eq!(at("10.0.0.1"), [20_000, 21_100, 22_200]);
        assert_eq!(at("10.0.0.2"), [20_000, 21_100, 22_200]);
    }

    #[test]
    fn view_change_mid_burst_does_not_postpone_a_due_round() {
        let mut s = AnnounceSchedule::new(AnnounceConfig::default());
        s.acquired(ip("10.0.0.1"), "eth0", 0);
        assert_eq!(s.due(0).len(), 1);
        // The next round is due at 1100; a view change at 500 brings it
        // forward (the view change is news) and restores a full burst.
        s.view_changed(500);
        let times: Vec<u64> = run(&mut s, 1, 10_000).iter().map(|x| x.0).collect();
        assert_eq!(times, [500, 1600, 2700]);
    }

    #[test]
    fn reacquiring_on_another_interface_moves_the_announcements() {
        let mut s = AnnounceSchedule::new(AnnounceConfig::default());
        s.acquired(ip("10.0.0.1"), "eth0", 0);
        assert_eq!(s.due(0), [(ip("10.0.0.1"), "eth0".to_string())]);
        s.acquired(ip("10.0.0.1"), "eth1", 10);
        let sent = run(&mut s, 1, 10_000);
        assert_eq!(sent.len(), 3);
        assert!(sent.iter().all(|x| x.2 == "eth1"));
    }

    #[test]
    fn many_addresses_are_paced_one_per_gap_per_interface() {
        let mut s = AnnounceSchedule::new(AnnounceConfig {
            rounds: 1,
            min_gap_ms: 2,
            ..AnnounceConfig::default()
        });
        for i in 0..100u8 {
            s.acquired(IpAddr::from([10, 0, 0, i]), "eth0", 0);
            s.acquired(IpAddr::from([10, 0, 1, i]), "eth1", 0);
        }
        let sent = run(&mut s, 0, 1000);
        assert_eq!(sent.len(), 200, "every address announced");
        for iface in ["eth0", "eth1"] {
            let times: Vec<u64> = sent.iter().filter(|x| x.2 == iface).map(|x| x.0).collect();
            assert_eq!(times.len(), 100);
            assert!(
                times.windows(2).all(|w| w[1] - w[0] >= 2),
                "{iface}: {times:?}"
            );
            // Interfaces are paced independently: both start at once and
            // finish after 99 gaps.
            assert_eq!((times[0], times[99]), (0, 198));
        }
    }

    #[test]
    fn pacing_delays_later_rounds_but_keeps_them_an_interval_apart() {
        let mut s = AnnounceSchedule::new(AnnounceConfig {
            min_gap_ms: 10,
            ..AnnounceConfig::default()
        });
        for i in 0..5u8 {
            s.acquired(IpAddr::from([10, 0, 0, i]), "eth0", 0);
        }
        let sent = run(&mut s, 0, 10_000);
        assert_eq!(sent.len(), 15);
        for i in 0..5u8 {
            let times: Vec<u64> = sent
                .iter()
                .filter(|x| x.1 == IpAddr::from([10, 0, 0, i]))
                .map(|x| x.0)
                .collect();
            assert_eq!(times.len(), 3);
            assert!(times.windows(2).all(|w| w[1] - w[0] >= 1100), "{times:?}");
        }
    }

    #[test]
    fn next_deadline_accounts_for_the_gap() {
        let mut s = AnnounceSchedule::new(AnnounceConfig {
            rounds: 1,
            min_gap_ms: 5,
            ..AnnounceConfig::default()
        });
        assert_eq!(s.next_deadline(), None);
        s.acquired(ip("10.0.0.1"), "eth0", 100);
        s.acquired(ip("10.0.0.2"), "eth0", 100);
        assert_eq!(s.next_deadline(), Some(100));
        assert_eq!(s.due(100).len(), 1);
        assert_eq!(s.next_deadline(), Some(105));
        assert!(s.due(104).is_empty());
        assert_eq!(s.due(105).len(), 1);
        assert_eq!(s.next_deadline(), None);
    }

    #[test]
    fn late_polling_does_not_burst() {
        // A runtime that wakes up late gets one announcement per interface
        // per call, not the whole backlog at once.
        let mut s = AnnounceSchedule::new(AnnounceConfig::default());
        for i in 0..10u8 {
            s.acquired(IpAddr::from([10, 0, 0, i]), "eth0", 0);
        }
        assert_eq!(s.due(5000).len(), 1);
        assert_eq!(s.due(5000).len(), 0);
        assert_eq!(s.due(5001).len(), 1);
    }
}
