//! What a node's configuration claims: its DuraVIP bindings and listeners
//! as [`Claim`]s, and where each address is plumbed (`Topology`).

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::{Claim, Service};
use crate::config::Config;
use crate::config::model::Topology;

/// One claim per DuraVIP address: the bindings with `Enable_Duravip` give
/// their names and the `multivip` service, listeners with `Enable_Duravip`
/// add their service. An address marked DuraVIP on one service is DuraVIP
/// for every service using it (the reference "upgrades" it), so a
/// non-DuraVIP listener or binding on a claimed address joins the claim.
/// Listeners that `Duravip_Follow` a binding are not claims of their own:
/// they move with the binding.
pub fn claims_from_config(config: &Config) -> Vec<Claim> {
    let mut claims: BTreeMap<IpAddr, Claim> = BTreeMap::new();
    fn entry(claims: &mut BTreeMap<IpAddr, Claim>, ip: IpAddr) -> &mut Claim {
        claims.entry(ip).or_insert_with(|| Claim {
            ip,
            names: Vec::new(),
            services: Vec::new(),
            preference: None,
        })
    }
    let duravip_ips: Vec<IpAddr> = config
        .bindings
        .iter()
        .filter(|b| b.enable_duravip)
        .filter_map(|b| b.bind_address)
        .chain(
            config
                .listeners
                .iter()
                .filter(|l| l.enable_duravip)
                .map(|l| l.address.0.ip()),
        )
        .collect();
    for b in &config.bindings {
        let Some(ip) = b.bind_address else { continue };
        if !duravip_ips.contains(&ip) {
            continue;
        }
        let c = entry(&mut claims, ip);
        c.names.push(b.name.clone());
        c.services.push(Service::Binding);
        if c.preference.is_none() {
            c.preference = b.duravip_preference.clone();
        }
    }
    for l in config
        .listeners
        .iter()
        .filter(|l| l.duravip_follow.is_none())
    {
        let ip = l.address.0.ip();
        if !duravip_ips.contains(&ip) {
            continue;
        }
        let c = entry(&mut claims, ip);
        c.services.push(Service::Listener(l.address.0.port()));
        if c.preference.is_none() {
            c.preference = l.duravip_preference.clone();
        }
    }
    claims
        .into_values()
        .map(|mut c| {
            c.names.sort();
            c.names.dedup();
            c.services.sort();
            c.services.dedup();
            c
        })
        .collect()
}

/// The interface and prefix length an address is plumbed with: the most
/// specific `Topology` block containing it, else the catch-all `Topology ""`.
pub fn topology_for(topology: &[Topology], ip: IpAddr) -> Option<(String, u8)> {
    topology
        .iter()
        .filter_map(|t| match t.network {
            None => Some((0u8, t)),
            Some((net, len)) if contains(net, len, ip) => Some((len.saturating_add(1), t)),
            Some(_) => None,
        })
        .max_by_key(|(specificity, _)| *specificity)
        .map(|(_, t)| (t.interface.clone(), t.cidrmask))
}

fn contains(net: IpAddr, len: u8, ip: IpAddr) -> bool {
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(len.min(32)))
                .unwrap_or(0);
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(len.min(128)))
                .unwrap_or(0);
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Format, LoadedConfig};

    fn config(text: &str) -> Config {
        LoadedConfig::parse(text, Format::Ecelerity).unwrap().config
    }

    #[test]
    fn bindings_and_listeners_become_claims() {
        let c = config(
            r#"
            Binding "out1" { Bind_Address = "10.1.1.1" Enable_Duravip = true Duravip_Preference = "mta2" }
            Binding "out2" { Bind_Address = "10.1.1.1" }
            Binding "plain" { Bind_Address = "10.1.1.9" }
            ESMTP_Listener {
              Listen "10.1.1.1:25" {}
              Listen "10.1.1.2:25" { Enable_Duravip = true }
              Listen "10.1.1.3:25" { Duravip_Follow = "out1" }
            }
            "#,
        );
        let claims = claims_from_config(&c);
        assert_eq!(claims.len(), 2, "{claims:?}");
        assert_eq!(claims[0].ip, "10.1.1.1".parse::<IpAddr>().unwrap());
        assert_eq!(
            claims[0].names,
            ["out1", "out2"],
            "a DuraVIP address upgrades every binding on it"
        );
        assert_eq!(
            claims[0].services,
            [Service::Binding, Service::Listener(25)]
        );
        assert_eq!(claims[0].preference.as_deref(), Some("mta2"));
        assert_eq!(claims[1].names, Vec::<String>::new());
        assert_eq!(claims[1].services, [Service::Listener(25)]);
    }

    #[test]
    fn the_most_specific_topology_wins() {
        let c = config(
            r#"cluster {
              Topology "" { interface = "eth1" }
              Topology "10.1.0.0/16" { interface = "eth2" cidrmask = 24 }
              Topology "10.1.1.0/24" { interface = "eth3" }
              Topology "2001:db8::/32" { interface = "eth6" cidrmask = 128 }
            }"#,
        );
        let t = &c.cluster.topology;
        let at = |ip: &str| topology_for(t, ip.parse().unwrap());
        assert_eq!(at("10.1.1.5"), Some(("eth3".into(), 32)));
        assert_eq!(at("10.1.2.5"), Some(("eth2".into(), 24)));
        assert_eq!(at("192.0.2.1"), Some(("eth1".into(), 32)));
        assert_eq!(at("2001:db8::1"), Some(("eth6".into(), 128)));
        assert_eq!(topology_for(&[], "10.0.0.1".parse().unwrap()), None);
    }
}
