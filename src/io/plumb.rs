//! Plumbing DuraVIP addresses: adding and removing them on interfaces.
//!
//! The engine decides which addresses this node owns; a [`Plumber`] makes the
//! interfaces agree. [`NetlinkPlumber`] talks rtnetlink to the kernel, as
//! `ip addr add/del` does; [`DryRunPlumber`] only records what it would do,
//! for unprivileged demos and tests.
//!
//! # Knowing which addresses are ours
//!
//! On start a node must remove every DuraVIP address a previous run may have
//! left behind, and nothing else: the operator's own addresses on the same
//! interface must survive. So every address we plumb carries a tag, and
//! [`Plumber::list_ours`] finds addresses by that tag:
//!
//! - `IFA_PROTO` = [`ADDR_PROTO`] (0x45, ASCII `E`). The kernel stores this
//!   "address protocol" byte since Linux 5.18 and reports it in dumps
//!   (`ip addr` shows `proto 69`); keepalived tags its VIPs the same way.
//!   Older kernels silently ignore the attribute.
//! - For IPv4, also the label `<ifname>:ecc` ([`LABEL_SUFFIX`]) when it fits
//!   the kernel's 15 bytes, so the tag survives on kernels before 5.18 and
//!   shows in `ip addr` as a classic alias name. IPv6 has no labels.
//!
//! An address is ours if it carries either tag. An address that already
//! existed untagged when we added it stays untagged: it was the operator's
//! first, and the start-up purge must not take it away.
//!
//! IPv6 addresses are added with `IFA_F_NODAD`: a VIP must work as soon as
//! it is plumbed, and duplicate address detection during a transient split
//! brain could leave it `dadfailed` for good.

use std::collections::BTreeSet;
use std::io;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use netlink_packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressProtocol,
    AddressScope,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::netlink::RtNetlink;
pub use super::netlink::{NetlinkError, errno_of};

/// The `IFA_PROTO` value that marks an address as plumbed by eccluster
/// (0x45 = `E`). Not registered anywhere; chosen clear of the kernel's own
/// values (1–3) and keepalived's.
pub(crate) const ADDR_PROTO: u8 = 0x45;

/// Appended to the interface name to form the IPv4 label of our addresses.
pub const LABEL_SUFFIX: &str = ":ecc";

/// The longest interface label the kernel accepts (IFNAMSIZ - 1).
const MAX_LABEL_LEN: usize = 15;

/// Keeps the addresses of this node's DuraVIPs on its interfaces.
pub trait Plumber: Send {
    /// Adds `ip/prefix` on `interface`, tagged as ours. Idempotent.
    fn add(&mut self, interface: &str, ip: IpAddr, prefix: u8) -> io::Result<()>;
    /// Removes it. Idempotent (absent is fine).
    fn remove(&mut self, interface: &str, ip: IpAddr, prefix: u8) -> io::Result<()>;
    /// Every address currently carrying our tag: (interface, ip, prefix).
    fn list_ours(&mut self) -> io::Result<Vec<(String, IpAddr, u8)>>;
    /// Whether `ip` is present on `interface` (tagged or not).
    fn present(&mut self, interface: &str, ip: IpAddr) -> io::Result<bool>;
    /// What kind of plumber this is, for logs and `cluster info`.
    fn describe(&self) -> &'static str;
}

/// Removes every address carrying our tag, logging each, and returns how
/// many were removed. A node does this before it joins (a previous run
/// may have died holding addresses), and `eccluster purge` does it for a
/// supervisor after a node died without releasing them.
pub fn purge(plumber: &mut dyn Plumber, log: &dyn Fn(&str)) -> usize {
    let stale = match plumber.list_ours() {
        Ok(stale) => stale,
        Err(e) => {
            log(&format!("cannot list plumbed addresses: {e}"));
            return 0;
        }
    };
    let mut removed = 0;
    for (iface, ip, prefix) in stale {
        match plumber.remove(&iface, ip, prefix) {
            Ok(()) => {
                removed += 1;
                log(&format!("removed stale DuraVIP {ip}/{prefix} from {iface}"));
            }
            Err(e) => log(&format!(
                "cannot remove stale DuraVIP {ip} from {iface}: {e}"
            )),
        }
    }
    removed
}

/// The IPv4 label that tags our addresses on `interface`, if it fits.
pub fn our_label(interface: &str) -> Option<String> {
    let label = format!("{interface}{LABEL_SUFFIX}");
    (label.len() <= MAX_LABEL_LEN).then_some(label)
}

/// The plumber that changes the kernel's addresses, over a synchronous
/// `NETLINK_ROUTE` socket. Needs `CAP_NET_ADMIN`.
#[derive(Debug)]
pub struct NetlinkPlumber {
    netlink: RtNetlink,
}

impl NetlinkPlumber {
    /// Opens the netlink socket.
    pub fn new() -> io::Result<Self> {
        Ok(NetlinkPlumber {
            netlink: RtNetlink::open()?,
        })
    }

    /// Every address on every interface.
    fn addresses(&mut self) -> Result<Vec<AddressMessage>, NetlinkError> {
        let answers = self.netlink.request(
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            NLM_F_DUMP,
            &|| "listing addresses".to_string(),
        )?;
        Ok(answers
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) => Some(a),
                _ => None,
            })
            .collect())
    }
}

/// The address an address message is about: `IFA_LOCAL` when present (for
/// IPv4 `IFA_ADDRESS` is the peer on point-to-point links), else `IFA_ADDRESS`.
fn address_of(msg: &AddressMessage) -> Option<IpAddr> {
    let mut address = None;
    for attr in &msg.attributes {
        match attr {
            AddressAttribute::Local(ip) => return Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            _ => {}
        }
    }
    address
}

/// Whether an address message carries our tag (see the module docs).
fn is_ours(msg: &AddressMessage, interface: &str) -> bool {
    let label = our_label(interface);
    msg.attributes.iter().any(|attr| match attr {
        AddressAttribute::Protocol(p) => u8::from(*p) == ADDR_PROTO,
        AddressAttribute::Label(l) => label.as_deref() == Some(l.as_str()),
        _ => false,
    })
}

/// The request that adds or deletes `ip/prefix` on interface `index`.
fn address_message(index: u32, interface: &str, ip: IpAddr, prefix: u8) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.index = index;
    msg.header.prefix_len = prefix;
    msg.header.scope = AddressScope::Universe;
    msg.attributes.push(AddressAttribute::Local(ip));
    msg.attributes.push(AddressAttribute::Address(ip));
    match ip {
        IpAddr::V4(_) => {
            msg.header.family = AddressFamily::Inet;
            if let Some(label) = our_label(interface) {
                msg.attributes.push(AddressAttribute::Label(label));
            }
        }
        IpAddr::V6(_) => {
            msg.header.family = AddressFamily::Inet6;
            // The header's 8-bit flags for old kernels, IFA_FLAGS for new.
            msg.header.flags = AddressHeaderFlags::Nodad;
            msg.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
    }
    msg.attributes
        .push(AddressAttribute::Protocol(AddressProtocol::from(
            ADDR_PROTO,
        )));
    msg
}

impl Plumber for NetlinkPlumber {
    fn add(&mut self, interface: &str, ip: IpAddr, prefix: u8) -> io::Result<()> {
        let context = || format!("adding {ip}/{prefix} on {interface}");
        let index = self.netlink.ifindex(interface).map_err(|e| {
            NetlinkError {
                context: context(),
                ..e
            }
            .into_io()
        })?;
        let msg = address_message(index, interface, ip, prefix);
        // EXCL so that an existing address is reported rather than replaced:
        // replacing would put our tag on an operator's address.
        match self.netlink.request(
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            &context,
        ) {
            Ok(_) => Ok(()),
            Err(e) if e.errno == libc::EEXIST => Ok(()),
            Err(e) => Err(e.into_io()),
        }
    }

    fn remove(&mut self, interface: &str, ip: IpAddr, prefix: u8) -> io::Result<()> {
        let context = || format!("removing {ip}/{prefix} from {interface}");
        let index = match self.netlink.ifindex(interface) {
            Ok(index) => index,
            // The interface is gone, and the address with it.
            Err(e) if e.errno == libc::ENODEV => return Ok(()),
            Err(e) => {
                return Err(NetlinkError {
                    context: context(),
                    ..e
                }
                .into_io());
            }
        };
        let msg = address_message(index, interface, ip, prefix);
        match self
            .netlink
            .request(RouteNetlinkMessage::DelAddress(msg), NLM_F_ACK, &context)
        {
            Ok(_) => Ok(()),
            // IPv4 answers EADDRNOTAVAIL for an absent address, IPv6 ENOENT
            // (or EADDRNOTAVAIL, depending on the kernel).
            Err(e) if e.errno == libc::EADDRNOTAVAIL || e.errno == libc::ENOENT => Ok(()),
            Err(e) => Err(e.into_io()),
        }
    }

    fn list_ours(&mut self) -> io::Result<Vec<(String, IpAddr, u8)>> {
        let names = self
            .netlink
            .interface_names()
            .map_err(NetlinkError::into_io)?;
        let addresses = self.addresses().map_err(NetlinkError::into_io)?;
        let mut ours = Vec::new();
        for msg in &addresses {
            let Some(name) = names.get(&msg.header.index) else {
                continue;
            };
            if let Some(ip) = address_of(msg)
                && is_ours(msg, name)
            {
                ours.push((name.clone(), ip, msg.header.prefix_len));
            }
        }
        Ok(ours)
    }

    fn present(&mut self, interface: &str, ip: IpAddr) -> io::Result<bool> {
        let index = self
            .netlink
            .ifindex(interface)
            .map_err(NetlinkError::into_io)?;
        let addresses = self.addresses().map_err(NetlinkError::into_io)?;
        Ok(addresses
            .iter()
            .any(|m| m.header.index == index && address_of(m) == Some(ip)))
    }

    fn describe(&self) -> &'static str {
        "netlink"
    }
}

/// What a [`DryRunPlumber`] did, one line per call: `add eth1 10.1.1.1/32`,
/// `remove eth1 10.1.1.1/32`.
pub type DryRunLog = Arc<Mutex<Vec<String>>>;

/// A plumber that changes nothing: it records each call in a shared log and
/// remembers what would be plumbed, so `list_ours` and `present` answer as
/// the real one would on an otherwise empty host.
#[derive(Debug, Default)]
pub struct DryRunPlumber {
    log: DryRunLog,
    plumbed: BTreeSet<(String, IpAddr, u8)>,
}

impl DryRunPlumber {
    /// A dry-run plumber with nothing plumbed and an empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// The shared log; it keeps growing while the plumber is used.
    pub fn log(&self) -> DryRunLog {
        Arc::clone(&self.log)
    }

    /// Forgets `ip` on `interface` without logging it, as if an operator had
    /// deleted the address behind the engine's back (for drift tests).
    pub fn forget(&mut self, interface: &str, ip: IpAddr) {
        self.plumbed
            .retain(|(i, a, _)| !(i == interface && *a == ip));
    }

    fn record(&self, line: String) {
        // A poisoned log only means another holder panicked mid-push; the
        // lines are still worth keeping.
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(line);
    }
}

impl Plumber for DryRunPlumber {
    fn add(&mut self, interface: &str, ip: IpAddr, prefix: u8) -> io::Result<()> {
        self.record(format!("add {interface} {ip}/{prefix}"));
        self.plumbed.insert((interface.to_string(), ip, prefix));
        Ok(())
    }

    fn remove(&mut self, interface: &str, ip: IpAddr, prefix: u8) -> io::Result<()> {
        self.record(format!("remove {interface} {ip}/{prefix}"));
        self.plumbed.remove(&(interface.to_string(), ip, prefix));
        Ok(())
    }

    fn list_ours(&mut self) -> io::Result<Vec<(String, IpAddr, u8)>> {
        Ok(self.plumbed.iter().cloned().collect())
    }

    fn present(&mut self, interface: &str, ip: IpAddr) -> io::Result<bool> {
        Ok(self
            .plumbed
            .iter()
            .any(|(i, a, _)| i == interface && *a == ip))
    }

    fn describe(&self) -> &'static str {
        "dry run (nothing is plumbed)"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::{Emitable, Parseable};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn dry_run_logs_and_answers_consistently() {
        let mut p = DryRunPlumber::new();
        let log = p.log();
        assert_eq!(p.describe(), "dry run (nothing is plumbed)");
        p.add("eth1", ip("10.1.1.1"), 32).unwrap();
        p.add("eth1", ip("10.1.1.1"), 32).unwrap();
        p.add("eth2", ip("2001:db8::5"), 128).unwrap();
        assert!(p.present("eth1", ip("10.1.1.1")).unwrap());
        assert!(!p.present("eth2", ip("10.1.1.1")).unwrap());
        assert_eq!(
            p.list_ours().unwrap(),
            [
                ("eth1".to_string(), ip("10.1.1.1"), 32),
                ("eth2".to_string(), ip("2001:db8::5"), 128)
            ]
        );
        p.remove("eth1", ip("10.1.1.1"), 32).unwrap();
        p.remove("eth1", ip("10.1.1.1"), 32).unwrap();
        assert!(!p.present("eth1", ip("10.1.1.1")).unwrap());
        assert_eq!(p.list_ours().unwrap().len(), 1);
        assert_eq!(
            *log.lock().unwrap(),
            [
                "add eth1 10.1.1.1/32",
                "add eth1 10.1.1.1/32",
                "add eth2 2001:db8::5/128",
                "remove eth1 10.1.1.1/32",
                "remove eth1 10.1.1.1/32",
            ]
        );
    }

    #[test]
    fn dry_run_forget_simulates_drift() {
        let mut p = DryRunPlumber::new();
        p.add("eth1", ip("10.1.1.1"), 32).unwrap();
        p.forget("eth1", ip("10.1.1.1"));
        assert!(!p.present("eth1", ip("10.1.1.1")).unwrap());
        assert_eq!(p.log().lock().unwrap().len(), 1, "forget is not logged");
    }

    #[test]
    fn label_is_used_only_when_it_fits() {
        assert_eq!(our_label("eth1").as_deref(), Some("eth1:ecc"));
        assert_eq!(our_label("enp0s31f6").as_deref(), Some("enp0s31f6:ecc"));
        assert_eq!(our_label("enp0s31f6abc"), None);
    }

    /// The add request survives a round trip through its wire form with
    /// every tag in place.
    fn roundtrip(msg: &AddressMessage) -> AddressMessage {
        let mut bytes = vec![0; msg.buffer_len()];
        msg.emit(&mut bytes);
        AddressMessage::parse(&bytes[..]).unwrap()
    }

    #[test]
    fn ipv4_request_carries_proto_and_label() {
        let msg = roundtrip(&address_message(7, "eth1", ip("10.1.1.1"), 32));
        assert_eq!(msg.header.family, AddressFamily::Inet);
        assert_eq!((msg.header.index, msg.header.prefix_len), (7, 32));
        assert!(
            msg.attributes
                .contains(&AddressAttribute::Protocol(AddressProtocol::Other(
                    ADDR_PROTO
                )))
        );
        assert!(
            msg.attributes
                .contains(&AddressAttribute::Label("eth1:ecc".to_string()))
        );
        assert_eq!(address_of(&msg), Some(ip("10.1.1.1")));
        assert!(is_ours(&msg, "eth1"));
    }

    #[test]
    fn ipv6_request_is_nodad_without_label() {
        let msg = roundtrip(&address_message(3, "eth1", ip("2001:db8::1"), 128));
        assert_eq!(msg.header.family, AddressFamily::Inet6);
        assert!(msg.header.flags.contains(AddressHeaderFlags::Nodad));
        assert!(
            msg.attributes
                .contains(&AddressAttribute::Flags(AddressFlags::Nodad))
        );
        assert!(
            !msg.attributes
                .iter()
                .any(|a| matches!(a, AddressAttribute::Label(_)))
        );
        assert!(is_ours(&msg, "eth1"));
    }

    #[test]
    fn ours_by_proto_or_by_label_but_not_by_interface_name() {
        let mut by_label = AddressMessage::default();
        by_label
            .attributes
            .push(AddressAttribute::Label("eth1:ecc".to_string()));
        assert!(is_ours(&by_label, "eth1"));
        assert!(!is_ours(&by_label, "eth2"));

        // The kernel labels every IPv4 address with the interface name.
        let mut plain = AddressMessage::default();
        plain
            .attributes
            .push(AddressAttribute::Label("eth1".to_string()));
        plain
            .attributes
            .push(AddressAttribute::Protocol(AddressProtocol::Other(0x12)));
        assert!(!is_ours(&plain, "eth1"));
    }

    #[test]
    fn netlink_errors_keep_the_errno_and_name_the_address() {
        let e = NetlinkError {
            errno: libc::EPERM,
            context: "adding 10.1.1.1/32 on eth1".to_string(),
        }
        .into_io();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        assert_eq!(errno_of(&e), Some(libc::EPERM));
        let text = e.to_string();
        assert!(text.contains("10.1.1.1/32 on eth1"), "{text}");
    }
}
