//! Announcing DuraVIP addresses: gratuitous ARP for IPv4, unsolicited
//! Neighbour Advertisements for IPv6.
//!
//! When an address moves to this node, hosts and switches on the segment
//! still send its traffic to the previous owner's MAC until they learn
//! otherwise. We tell them:
//!
//! - **IPv4**: a gratuitous ARP *request* (sender IP = target IP = the VIP,
//!   target MAC zero) and a gratuitous ARP *reply* (target MAC broadcast),
//!   both from the interface's MAC. Stacks differ in which they act on and
//!   some switches only learn from replies, so both go out, as MetalLB does.
//!   Linux treats the request as gratuitous and overrides an existing entry
//!   at once; the reply updates it subject to `locktime`.
//! - **IPv6**: an unsolicited Neighbour Advertisement to ff02::1 with the
//!   Override flag and the target link-layer address option, hop limit 255
//!   (receivers drop NAs with any other hop limit).
//!
//! By default frames go to the Ethernet broadcast address; with
//! `arp_all_hosts = false` the engine instead sends the same ARP frames to
//! chosen MACs ([`announce_to`]), which updates the peers that matter without
//! a broadcast storm. IPv6 has no targeted form here: the NA goes to the
//! all-nodes group, where only hosts that cache the address act on it.
//!
//! Frames are built by pure functions ([`arp_frame`],
//! [`neighbour_advertisement`]) and sent from short-lived sockets, which
//! needs `CAP_NET_RAW`. How often to announce is decided by
//! [`crate::core::announce`]; [`Announcer`] couples that schedule to the
//! sending.

use std::ffi::CString;
use std::io;
use std::mem;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::core::announce::{AnnounceConfig, AnnounceSchedule};

/// An Ethernet MAC address.
pub type Mac = [u8; 6];

/// The Ethernet broadcast address.
pub const BROADCAST: Mac = [0xff; 6];

const ETHERTYPE_ARP: u16 = 0x0806;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ARP_HTYPE_ETHERNET: u16 = 1;
/// Ethernet frames shorter than this (without the FCS) are runts. Drivers
/// usually pad, but not every path does (veth does not), so we pad ourselves.
const ETH_MIN_FRAME: usize = 60;
/// The length of an ARP frame we send: padded to the Ethernet minimum.
pub(crate) const ARP_FRAME_LEN: usize = ETH_MIN_FRAME;
/// The length of the ICMPv6 part of a Neighbour Advertisement with one
/// target link-layer address option.
pub(crate) const NA_LEN: usize = 32;

/// The ARP operation of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArpOp {
    /// `who-has` (1); gratuitous when sender and target IP are equal.
    Request,
    /// `is-at` (2).
    Reply,
}

/// A gratuitous ARP frame announcing that `ip` is at `src_mac`, sent to
/// Ethernet `eth_dst`. Sender and target protocol addresses are both `ip`;
/// the target hardware address is zero in a request and broadcast in a
/// reply (the conventional gratuitous forms).
pub fn arp_frame(op: ArpOp, src_mac: Mac, ip: Ipv4Addr, eth_dst: Mac) -> [u8; ARP_FRAME_LEN] {
    let (opcode, target_mac) = match op {
        ArpOp::Request => (1u16, [0u8; 6]),
        ArpOp::Reply => (2u16, BROADCAST),
    };
    let mut f = [0u8; ARP_FRAME_LEN];
    // Ethernet header.
    f[0..6].copy_from_slice(&eth_dst);
    f[6..12].copy_from_slice(&src_mac);
    f[12..14].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
    // ARP for IPv4 over Ethernet.
    f[14..16].copy_from_slice(&ARP_HTYPE_ETHERNET.to_be_bytes());
    f[16..18].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    f[18] = 6;
    f[19] = 4;
    f[20..22].copy_from_slice(&opcode.to_be_bytes());
    f[22..28].copy_from_slice(&src_mac);
    f[28..32].copy_from_slice(&ip.octets());
    f[32..38].copy_from_slice(&target_mac);
    f[38..42].copy_from_slice(&ip.octets());
    // f[42..60] stays zero: padding.
    f
}

/// The ICMPv6 message of an unsolicited Neighbour Advertisement (RFC 4861
/// §4.4): `ip` is at `mac`, Override set, Solicited and Router clear. The
/// checksum is left zero: the kernel fills it in for raw ICMPv6 sockets.
pub fn neighbour_advertisement(mac: Mac, ip: Ipv6Addr) -> [u8; NA_LEN] {
    const TYPE_NA: u8 = 136;
    const FLAG_OVERRIDE: u8 = 0x20;
    const OPT_TARGET_LLADDR: u8 = 2;
    let mut m = [0u8; NA_LEN];
    m[0] = TYPE_NA;
    // m[1] code 0, m[2..4] checksum by the kernel.
    m[4] = FLAG_OVERRIDE;
    // m[5..8] reserved.
    m[8..24].copy_from_slice(&ip.octets());
    m[24] = OPT_TARGET_LLADDR;
    m[25] = 1; // option length in units of 8 bytes
    m[26..32].copy_from_slice(&mac);
    m
}

/// Announces `ip` on `interface` to everyone: a GARP request and reply to
/// the Ethernet broadcast address, or an unsolicited NA to ff02::1.
pub fn announce(interface: &str, ip: IpAddr) -> io::Result<()> {
    match ip {
        IpAddr::V4(v4) => send_arp(interface, v4, BROADCAST),
        IpAddr::V6(v6) => send_na(interface, v6),
    }
}

/// Announces `ip` on `interface` to one host: the same ARP frames, unicast
/// to `dst_mac` (for `arp_all_hosts = false`). IPv6 falls back to the
/// all-nodes NA, see the module docs.
pub fn announce_to(interface: &str, ip: IpAddr, dst_mac: Mac) -> io::Result<()> {
    match ip {
        IpAddr::V4(v4) => send_arp(interface, v4, dst_mac),
        IpAddr::V6(v6) => send_na(interface, v6),
    }
}

/// Sends the gratuitous ARP request and reply for `ip` from `interface`.
fn send_arp(interface: &str, ip: Ipv4Addr, eth_dst: Mac) -> io::Result<()> {
    let context = |e: io::Error| annotate(e, "announcing", ip.into(), interface);
    let index = ifindex(interface).map_err(context)?;
    // Protocol 0: the socket only sends. With ETH_P_ARP it would also be
    // handed a copy of every ARP frame on the interface, which we never read.
    let fd = socket(libc::AF_PACKET, libc::SOCK_RAW, 0).map_err(context)?;
    let src_mac = hardware_address(&fd, interface).map_err(context)?;
    let mut addr = sockaddr_ll(index, eth_dst);
    // SAFETY: `addr` is a fully initialised sockaddr_ll and the length passed
    // is its size; bind only reads it.
    #[allow(unsafe_code)]
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&raw const addr).cast(),
            socklen::<libc::sockaddr_ll>(),
        )
    };
    check(rc).map_err(context)?;
    addr.sll_protocol = (ETHERTYPE_ARP).to_be();
    for op in [ArpOp::Request, ArpOp::Reply] {
        let frame = arp_frame(op, src_mac, ip, eth_dst);
        send_to(
            &fd,
            &frame,
            (&raw const addr).cast(),
            socklen::<libc::sockaddr_ll>(),
        )
        .map_err(context)?;
    }
    Ok(())
}

/// Sends the unsolicited Neighbour Advertisement for `ip` from `interface`.
fn send_na(interface: &str, ip: Ipv6Addr) -> io::Result<()> {
    let context = |e: io::Error| annotate(e, "announcing", ip.into(), interface);
    let index = ifindex(interface).map_err(context)?;
    // The MAC comes from a packet socket: ioctls need a socket of some
    // family, and this one answers for any interface type.
    let probe = socket(libc::AF_PACKET, libc::SOCK_RAW, 0).map_err(context)?;
    let mac = hardware_address(&probe, interface).map_err(context)?;
    drop(probe);

    let fd = socket(libc::AF_INET6, libc::SOCK_RAW, libc::IPPROTO_ICMPV6).map_err(context)?;
    // SO_BINDTODEVICE keeps the NA on this interface whatever the routes say.
    set_option(
        &fd,
        libc::SOL_SOCKET,
        libc::SO_BINDTODEVICE,
        interface.as_bytes(),
    )
    .map_err(context)?;
    let hops: libc::c_int = 255;
    set_option(
        &fd,
        libc::IPPROTO_IPV6,
        libc::IPV6_MULTICAST_HOPS,
        &hops.to_ne_bytes(),
    )
    .map_err(context)?;
    let index_int =
        libc::c_int::try_from(index).map_err(|_| context(io::ErrorKind::InvalidInput.into()))?;
    set_option(
        &fd,
        libc::IPPROTO_IPV6,
        libc::IPV6_MULTICAST_IF,
        &index_int.to_ne_bytes(),
    )
    .map_err(context)?;
    // SAFETY: sockaddr_in6 is plain data; all-zero is a valid value.
    #[allow(unsafe_code)]
    let mut dst: libc::sockaddr_in6 = unsafe { mem::zeroed() };
    dst.sin6_family = libc::AF_INET6 as libc::sa_family_t;
    dst.sin6_addr.s6_addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1).octets();
    dst.sin6_scope_id = index;
    let message = neighbour_advertisement(mac, ip);
    send_to(
        &fd,
        &message,
        (&raw const dst).cast(),
        socklen::<libc::sockaddr_in6>(),
    )
    .map_err(context)
}

/// Adds what we were doing to an I/O error, keeping its kind.
fn annotate(e: io::Error, what: &str, ip: IpAddr, interface: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {ip} on {interface}: {e}"))
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn socklen<T>() -> libc::socklen_t {
    // Socket address structures are a few dozen bytes.
    libc::socklen_t::try_from(mem::size_of::<T>()).unwrap_or(libc::socklen_t::MAX)
}

/// The index of `interface`, or `ENODEV`.
fn ifindex(interface: &str) -> io::Result<u32> {
    let name = CString::new(interface).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `name` is a valid NUL-terminated string that outlives the call.
    #[allow(unsafe_code)]
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(index)
    }
}

/// A new socket, closed on drop.
fn socket(domain: libc::c_int, ty: libc::c_int, protocol: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: socket takes no pointers; the result is checked below.
    #[allow(unsafe_code)]
    let fd = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, protocol) };
    check(fd)?;
    // SAFETY: `fd` is a freshly opened descriptor that nothing else owns.
    #[allow(unsafe_code)]
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok(owned)
}

fn set_option(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, value: &[u8]) -> io::Result<()> {
    let len = libc::socklen_t::try_from(value.len())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `value` is valid for `len` bytes for the duration of the call,
    // and setsockopt only reads it.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::setsockopt(fd.as_raw_fd(), level, name, value.as_ptr().cast(), len) };
    check(rc)
}

fn send_to(
    fd: &OwnedFd,
    data: &[u8],
    addr: *const libc::sockaddr,
    addr_len: libc::socklen_t,
) -> io::Result<()> {
    // SAFETY: `data` is valid for its length; callers pass `addr` pointing at
    // a live socket address of `addr_len` bytes. sendto only reads both.
    #[allow(unsafe_code)]
    let sent = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            data.as_ptr().cast(),
            data.len(),
            0,
            addr,
            addr_len,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    if usize::try_from(sent).ok() != Some(data.len()) {
        return Err(io::Error::new(io::ErrorKind::WriteZero, "short send"));
    }
    Ok(())
}

/// A link-layer address for interface `index` and destination `dst`.
fn sockaddr_ll(index: u32, dst: Mac) -> libc::sockaddr_ll {
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
    #[allow(unsafe_code)]
    let mut addr: libc::sockaddr_ll = unsafe { mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as libc::c_ushort;
    addr.sll_ifindex = libc::c_int::try_from(index).unwrap_or(0);
    addr.sll_halen = 6;
    addr.sll_addr[..6].copy_from_slice(&dst);
    addr
}

/// The Ethernet MAC of `interface` (SIOCGIFHWADDR, which answers for the
/// caller's network namespace, unlike a sysfs mounted elsewhere). Fails with
/// `Unsupported` for interfaces that are not Ethernet-like (loopback, tun).
fn hardware_address(fd: &OwnedFd, interface: &str) -> io::Result<Mac> {
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    #[allow(unsafe_code)]
    let mut req: libc::ifreq = unsafe { mem::zeroed() };
    let name = interface.as_bytes();
    if name.len() >= req.ifr_name.len() || name.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "interface name too long",
        ));
    }
    for (dst, src) in req.ifr_name.iter_mut().zip(name) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: `req` is a valid ifreq with a NUL-terminated name; the ioctl
    // writes the hardware address into its union and nothing else.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFHWADDR as _, &raw mut req) };
    check(rc)?;
    // SAFETY: SIOCGIFHWADDR succeeded, so the union holds `ifru_hwaddr`.
    #[allow(unsafe_code)]
    let hw = unsafe { req.ifr_ifru.ifru_hwaddr };
    if hw.sa_family != libc::ARPHRD_ETHER {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("not an Ethernet interface (hardware type {})", hw.sa_family),
        ));
    }
    let mut mac = [0u8; 6];
    for (dst, src) in mac.iter_mut().zip(hw.sa_data) {
        *dst = src as u8;
    }
    Ok(mac)
}

/// Sends announcements when the schedule says so.
///
/// The engine tells it about ownership ([`Announcer::acquired`],
/// [`Announcer::released`], [`Announcer::view_changed`]) and calls
/// [`Announcer::poll`] by [`Announcer::next_deadline`]; times are
/// milliseconds on any monotonic clock.
#[derive(Debug)]
pub struct Announcer {
    schedule: AnnounceSchedule,
    /// Empty: broadcast. Otherwise ARP goes to each of these MACs instead
    /// (`arp_all_hosts = false`).
    targets: Vec<Mac>,
}

impl Announcer {
    /// An announcer with nothing to announce. `targets` empty means
    /// broadcast; otherwise IPv4 announcements go to each listed MAC.
    pub fn new(config: AnnounceConfig, targets: Vec<Mac>) -> Self {
        Announcer {
            schedule: AnnounceSchedule::new(config),
            targets,
        }
    }

    /// Replaces the hosts announcements are aimed at (empty: broadcast).
    pub fn set_targets(&mut self, targets: Vec<Mac>) {
        self.targets = targets;
    }

    /// We now own `ip` on `interface`.
    pub fn acquired(&mut self, ip: IpAddr, interface: &str, now_ms: u64) {
        self.schedule.acquired(ip, interface, now_ms);
    }

    /// We no longer own `ip`.
    pub fn released(&mut self, ip: IpAddr) {
        self.schedule.released(ip);
    }

    /// The view changed: every owned address is announced again.
    pub fn view_changed(&mut self, now_ms: u64) {
        self.schedule.view_changed(now_ms);
    }

    /// When [`Announcer::poll`] next has work, if ever.
    pub fn next_deadline(&self) -> Option<u64> {
        self.schedule.next_deadline()
    }

    /// Sends what is due and returns the failures, each naming the address
    /// and interface, for the caller to log. A failed round is not retried
    /// early: the next round (or refresh) comes as scheduled.
    pub fn poll(&mut self, now_ms: u64) -> Vec<io::Error> {
        let mut errors = Vec::new();
        for (ip, interface) in self.schedule.due(now_ms) {
            if self.targets.is_empty() {
                errors.extend(announce(&interface, ip).err());
            } else {
                for mac in &self.targets {
                    errors.extend(announce_to(&interface, ip, *mac).err());
                }
            }
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: Mac = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];
    const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);

    #[test]
    fn garp_request_bytes() {
        let f = arp_frame(ArpOp::Request, MAC, VIP, BROADCAST);
        assert_eq!(f.len(), 60);
        #[rustfmt::skip]
        let expected: [u8; 42] = [
            // Ethernet: broadcast, from MAC, type ARP.
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0x02, 0x11, 0x22, 0x33, 0x44, 0x55,
            0x08, 0x06,
            // ARP: Ethernet, IPv4, hlen 6, plen 4, request.
            0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01,
            // Sender MAC and IP.
            0x02, 0x11, 0x22, 0x33, 0x44, 0x55, 192, 0, 2, 100,
            // Target MAC zero, target IP = sender IP.
            0, 0, 0, 0, 0, 0, 192, 0, 2, 100,
        ];
        assert_eq!(f[..42], expected);
        assert!(f[42..].iter().all(|b| *b == 0), "zero padding");
    }

    #[test]
    fn garp_reply_bytes() {
        let f = arp_frame(ArpOp::Reply, MAC, VIP, BROADCAST);
        assert_eq!(f[0..6], BROADCAST);
        assert_eq!(f[12..14], [0x08, 0x06]);
        assert_eq!(f[20..22], [0x00, 0x02], "opcode reply");
        assert_eq!(f[22..28], MAC);
        assert_eq!(f[28..32], [192, 0, 2, 100]);
        assert_eq!(f[32..38], BROADCAST, "target MAC broadcast");
        assert_eq!(f[38..42], [192, 0, 2, 100]);
    }

    #[test]
    fn targeted_frames_differ_only_in_the_ethernet_destination() {
        let peer = [0x02, 0, 0, 0, 0, 0x07];
        for op in [ArpOp::Request, ArpOp::Reply] {
            let b = arp_frame(op, MAC, VIP, BROADCAST);
            let t = arp_frame(op, MAC, VIP, peer);
            assert_eq!(t[0..6], peer);
            assert_eq!(t[6..], b[6..]);
        }
    }

    #[test]
    fn neighbour_advertisement_bytes() {
        let ip: Ipv6Addr = "2001:db8::100".parse().unwrap();
        let m = neighbour_advertisement(MAC, ip);
        #[rustfmt::skip]
        let expected: [u8; 32] = [
            136, 0, 0, 0,          // type NA, code 0, checksum (kernel)
            0x20, 0, 0, 0,         // Override; not Solicited, not Router
            0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00,
            2, 1,                  // target link-layer address, 8 bytes
            0x02, 0x11, 0x22, 0x33, 0x44, 0x55,
        ];
        assert_eq!(m, expected);
    }

    #[test]
    fn announcing_on_a_missing_interface_names_it() {
        let e = announce("ecc-no-such0", IpAddr::V4(VIP)).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("192.0.2.100 on ecc-no-such0"), "{text}");
    }

    #[test]
    fn announcer_reports_failures_per_round() {
        let mut a = Announcer::new(AnnounceConfig::default(), Vec::new());
        a.acquired(IpAddr::V4(VIP), "ecc-no-such0", 0);
        assert_eq!(a.next_deadline(), Some(0));
        assert_eq!(a.poll(0).len(), 1);
        assert_eq!(a.next_deadline(), Some(1100));
        a.released(IpAddr::V4(VIP));
        assert_eq!(a.next_deadline(), None);
    }
}
