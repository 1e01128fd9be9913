//! The kernel's neighbour table (the ARP and NDP cache) and default
//! gateways, read over rtnetlink.
//!
//! Two users: `cluster arp show`, which prints the cluster's MAC addresses
//! as this node sees them (the reference's command), and
//! `arp_all_hosts = false`, which aims DuraVIP announcements at the hosts of
//! interest (the cluster peers and the default gateways, whose caches are
//! the ones that matter for mail flowing to and from the VIPs) by unicast
//! instead of broadcasting. Both only read: no privileges are needed.

use std::io;
use std::net::IpAddr;

use netlink_packet_core::NLM_F_DUMP;
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::arp::Mac;
use super::netlink::{NetlinkError, RtNetlink};

/// The kernel reports neighbour ages in clock ticks of `USER_HZ`, which is
/// 100 on every Linux architecture.
const USER_HZ: u64 = 100;

/// What the kernel knows about one address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Neighbour {
    pub ip: IpAddr,
    /// `None` when the kernel has no usable entry (never resolved, failed,
    /// or still incomplete).
    pub mac: Option<Mac>,
    /// Seconds since the kernel last updated the entry.
    pub age_s: Option<u64>,
}

/// One entry per address asked for, in the same order; an address the
/// kernel has no resolved entry for has no MAC.
pub fn lookup(ips: &[IpAddr]) -> io::Result<Vec<Neighbour>> {
    let mut netlink = RtNetlink::open()?;
    let mut entries = Vec::new();
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        let mut msg = NeighbourMessage::default();
        msg.header.family = family;
        let answers = netlink
            .request(RouteNetlinkMessage::GetNeighbour(msg), NLM_F_DUMP, &|| {
                "listing neighbours".to_string()
            })
            .map_err(NetlinkError::into_io)?;
        entries.extend(answers.into_iter().filter_map(|m| match m {
            RouteNetlinkMessage::NewNeighbour(n) => resolved(&n),
            _ => None,
        }));
    }
    Ok(ips
        .iter()
        .map(|ip| {
            // Several interfaces may know the address; the freshest wins.
            let best = entries
                .iter()
                .filter(|n| n.ip == *ip)
                .min_by_key(|n| n.age_s);
            best.cloned().unwrap_or(Neighbour {
                ip: *ip,
                mac: None,
                age_s: None,
            })
        })
        .collect())
}

/// A neighbour message as a resolved entry, if it is one.
fn resolved(msg: &NeighbourMessage) -> Option<Neighbour> {
    if matches!(
        msg.header.state,
        NeighbourState::Incomplete | NeighbourState::Failed | NeighbourState::None
    ) {
        return None;
    }
    let mut ip = None;
    let mut mac = None;
    let mut age_s = None;
    for attr in &msg.attributes {
        match attr {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => ip = Some((*v4).into()),
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => {
                ip = Some((*v6).into());
            }
            NeighbourAttribute::LinkLayerAddress(bytes) => mac = <Mac>::try_from(&bytes[..]).ok(),
            NeighbourAttribute::CacheInfo(info) => age_s = Some(u64::from(info.updated) / USER_HZ),
            _ => {}
        }
    }
    Some(Neighbour {
        ip: ip?,
        mac: Some(mac?),
        age_s,
    })
}

/// The gateways of the default routes in the main table, IPv4 and IPv6.
pub fn default_gateways() -> io::Result<Vec<IpAddr>> {
    let mut netlink = RtNetlink::open()?;
    let mut gateways = Vec::new();
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        let mut msg = RouteMessage::default();
        msg.header.address_family = family;
        let answers = netlink
            .request(RouteNetlinkMessage::GetRoute(msg), NLM_F_DUMP, &|| {
                "listing routes".to_string()
            })
            .map_err(NetlinkError::into_io)?;
        for answer in answers {
            let RouteNetlinkMessage::NewRoute(route) = answer else {
                continue;
            };
            if route.header.destination_prefix_length != 0 {
                continue;
            }
            gateways.extend(route.attributes.iter().filter_map(|a| match a {
                RouteAttribute::Gateway(RouteAddress::Inet(v4)) => Some(IpAddr::from(*v4)),
                RouteAttribute::Gateway(RouteAddress::Inet6(v6)) => Some(IpAddr::from(*v6)),
                _ => None,
            }));
        }
    }
    gateways.sort();
    gateways.dedup();
    Ok(gateways)
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &Mac) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_has_no_neighbour_entry_and_lookups_keep_order() {
        let ips: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
        let found = lookup(&ips).expect("reading the neighbour table needs no privileges");
        assert_eq!(found.iter().map(|n| n.ip).collect::<Vec<_>>(), ips);
        assert!(found.iter().all(|n| n.mac.is_none()), "{found:?}");
    }

    #[test]
    fn default_gateways_are_unicast_addresses() {
        for gw in default_gateways().expect("reading routes needs no privileges") {
            assert!(!gw.is_unspecified() && !gw.is_multicast(), "{gw}");
        }
    }

    #[test]
    fn macs_print_as_colon_separated_hex() {
        assert_eq!(
            format_mac(&[0x00, 0xe0, 0x81, 0x63, 0x5c, 0xe8]),
            "00:e0:81:63:5c:e8"
        );
    }
}
