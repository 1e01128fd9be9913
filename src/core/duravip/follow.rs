//! Listeners that follow a binding (`Duravip_Follow`).
//!
//! A following listener is not a DuraVIP of its own: it has no claim, no
//! owner election and no preference. Its address is plumbed wherever the
//! binding it follows is owned, so inbound mail arrives at the node that
//! sends from that binding and never needs a message move. Every node
//! configures the same followers, so each can act on its own part: the
//! node that gains the binding's address plumbs the follower too, and the
//! node that loses it unplumbs both.

use std::net::IpAddr;

use super::{Claim, Service};
use crate::config::Config;

/// One followed address: a listener IP (with every port listening on it)
/// and the binding it follows, by name or by address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Follower {
    pub ip: IpAddr,
    pub ports: Vec<u16>,
    pub follows: String,
}

impl Follower {
    /// Whether gaining or losing `claim` moves this follower.
    pub fn follows(&self, claim: &Claim) -> bool {
        claim.names.contains(&self.follows) || claim.ip.to_string() == self.follows
    }

    /// The follower as a claim, for the host's gained / lost hooks.
    pub fn as_claim(&self) -> Claim {
        Claim {
            ip: self.ip,
            names: Vec::new(),
            services: self.ports.iter().map(|p| Service::Listener(*p)).collect(),
            preference: None,
        }
    }
}

/// The configuration's following listeners, one per (address, followed
/// binding), ports merged.
pub fn followers_from_config(config: &Config) -> Vec<Follower> {
    let mut followers: Vec<Follower> = Vec::new();
    for l in &config.listeners {
        let Some(follows) = &l.duravip_follow else {
            continue;
        };
        let (ip, port) = (l.address.0.ip(), l.address.0.port());
        match followers
            .iter_mut()
            .find(|f| f.ip == ip && f.follows == *follows)
        {
            Some(f) => f.ports.push(port),
            None => followers.push(Follower {
                ip,
                ports: vec![port],
                follows: follows.clone(),
            }),
        }
    }
    for f in &mut followers {
        f.ports.sort_unstable();
        f.ports.dedup();
    }
    followers
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Format, LoadedConfig};

    #[test]
    fn listeners_follow_by_name_or_address_and_merge_ports() {
        let c = LoadedConfig::parse(
            r#"
            Binding "out1" { Bind_Address = "10.1.1.1" Enable_Duravip = true }
            ESMTP_Listener {
              Listen "10.1.1.3:25" { Duravip_Follow = "out1" }
              Listen "10.1.1.3:587" { Duravip_Follow = "out1" }
              Listen "10.1.1.4:25" { Duravip_Follow = "10.1.1.1" }
            }
            "#,
            Format::Ecelerity,
        )
        .unwrap()
        .config;
        let followers = followers_from_config(&c);
        assert_eq!(followers.len(), 2, "{followers:?}");
        assert_eq!(followers[0].ports, [25, 587]);
        let binding = Claim {
            ip: "10.1.1.1".parse().unwrap(),
            names: vec!["out1".into()],
            services: vec![Service::Binding],
            preference: None,
        };
        assert!(followers.iter().all(|f| f.follows(&binding)));
        let other = Claim {
            ip: "10.1.1.9".parse().unwrap(),
            names: vec!["out9".into()],
            ..binding
        };
        assert!(!followers.iter().any(|f| f.follows(&other)));
        assert_eq!(
            followers[0].as_claim().services,
            [Service::Listener(25), Service::Listener(587)]
        );
    }
}
