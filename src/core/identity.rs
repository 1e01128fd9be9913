//! Who this node is: the rules that pick the node name, subcluster and
//! cluster address from the configuration, the environment and the host.
//!
//! The reference's order is: the `nodename` option, else `EC_NODE_NAME`, else
//! the host name cut at its first `.`; `subcluster` likewise with
//! `EC_SUB_CLUSTER`, else `default`; `nodeaddr` from the option, else by
//! resolving the node name, never a loopback address. We add one step before
//! resolving: a node listed in the bus `peers` map is at that address, since
//! every node reads the same peer list. A loopback address is accepted only
//! when the whole cluster is configured on loopback (every peer is), which is
//! how tests and demos run several nodes on one host.
//!
//! The `cluster_nodename` and `cluster_subcluster` hooks run after these rules
//! and may replace the result; the caller applies them, then resolves the
//! address for the final name.

use std::fmt;
use std::net::IpAddr;

use crate::config::model::Peer;

/// Where an identity value came from, shown by `check-config` and the CLI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    Option,
    Environment,
    HostName,
    Default,
    Hook,
    Peers,
    Resolved,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Origin::Option => "the configuration",
            Origin::Environment => "the environment",
            Origin::HostName => "the host name",
            Origin::Default => "the default",
            Origin::Hook => "a hook",
            Origin::Peers => "the peers map",
            Origin::Resolved => "resolving the node name",
        })
    }
}

/// The node name: option, else `EC_NODE_NAME`, else the host name up to its
/// first `.`, lowercased because bus names are lowercase.
pub fn choose_nodename(
    option: Option<&str>,
    env: Option<&str>,
    hostname: Option<&str>,
) -> Result<(String, Origin), String> {
    if let Some(n) = option {
        return Ok((n.to_string(), Origin::Option));
    }
    if let Some(n) = env.filter(|n| !n.is_empty()) {
        return Ok((n.to_string(), Origin::Environment));
    }
    let short = hostname
        .and_then(|h| h.split('.').next())
        .filter(|h| !h.is_empty())
        .ok_or(
            "no node name: set cluster { nodename = ... } or EC_NODE_NAME (the host name is empty)",
        )?;
    Ok((short.to_ascii_lowercase(), Origin::HostName))
}

/// The subcluster: option, else `EC_SUB_CLUSTER`, else `default`.
pub fn choose_subcluster(option: Option<&str>, env: Option<&str>) -> (String, Origin) {
    match (option, env.filter(|s| !s.is_empty())) {
        (Some(s), _) => (s.to_string(), Origin::Option),
        (None, Some(s)) => (s.to_string(), Origin::Environment),
        (None, None) => ("default".to_string(), Origin::Default),
    }
}

/// Whether a loopback node address is acceptable: only when every other
/// configured peer is on loopback too.
pub fn cluster_is_on_loopback(nodename: &str, peers: &[Peer]) -> bool {
    peers
        .iter()
        .filter(|p| p.name != nodename)
        .all(|p| p.addr.is_loopback())
}

/// What the caller needs to resolve before [`choose_nodeaddr`] can decide.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddrSource {
    /// Decided without resolving.
    Known(IpAddr, Origin),
    /// Resolve the node name and pass the addresses to [`choose_nodeaddr`].
    Resolve,
}

/// The first step of choosing the address: the option, else the peers map.
pub fn nodeaddr_source(option: Option<IpAddr>, nodename: &str, peers: &[Peer]) -> AddrSource {
    if let Some(a) = option {
        return AddrSource::Known(a, Origin::Option);
    }
    match peers.iter().find(|p| p.name == nodename) {
        Some(p) => AddrSource::Known(p.addr, Origin::Peers),
        None => AddrSource::Resolve,
    }
}

/// Decides the address: a known one is checked, resolved ones are preferred
/// non-loopback first.
pub fn choose_nodeaddr(
    source: AddrSource,
    resolved: &[IpAddr],
    nodename: &str,
    peers: &[Peer],
) -> Result<(IpAddr, Origin), String> {
    let loopback_ok = cluster_is_on_loopback(nodename, peers);
    let (addr, origin) = match source {
        AddrSource::Known(a, o) => (a, o),
        AddrSource::Resolve => {
            let pick = resolved
                .iter()
                .find(|a| !a.is_loopback())
                .or_else(|| resolved.first())
                .ok_or_else(|| {
                    format!(
                        "cannot find an address for node '{nodename}': set cluster {{ nodeaddr = ... }}, list the node in msgc_server {{ peers }}, or make the name resolve"
                    )
                })?;
            (*pick, Origin::Resolved)
        }
    };
    if addr.is_loopback() && !loopback_ok {
        return Err(format!(
            "node address {addr} (from {origin}) is a loopback address, but other peers are not on loopback: set cluster {{ nodeaddr }} to an address the peers can reach"
        ));
    }
    if addr.is_unspecified() || addr.is_multicast() {
        return Err(format!(
            "node address {addr} (from {origin}) cannot identify a node"
        ));
    }
    Ok((addr, origin))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(name: &str, addr: &str) -> Peer {
        Peer {
            name: name.into(),
            addr: addr.parse().unwrap(),
            port: None,
        }
    }

    #[test]
    fn nodename_follows_option_then_env_then_short_hostname() {
        assert_eq!(
            choose_nodename(Some("a"), Some("b"), Some("c")).unwrap(),
            ("a".into(), Origin::Option)
        );
        assert_eq!(
            choose_nodename(None, Some("b"), Some("c")).unwrap(),
            ("b".into(), Origin::Environment)
        );
        assert_eq!(
            choose_nodename(None, Some(""), Some("Labrat-1.example.com")).unwrap(),
            ("labrat-1".into(), Origin::HostName)
        );
        assert!(choose_nodename(None, None, Some(".x")).is_err());
    }

    #[test]
    fn subcluster_defaults_to_default() {
        assert_eq!(
            choose_subcluster(None, None),
            ("default".into(), Origin::Default)
        );
        assert_eq!(
            choose_subcluster(None, Some("west")),
            ("west".into(), Origin::Environment)
        );
        assert_eq!(
            choose_subcluster(Some("east"), Some("west")),
            ("east".into(), Origin::Option)
        );
    }

    #[test]
    fn address_comes_from_option_then_peers_then_resolution() {
        let peers = [peer("a", "10.0.0.1"), peer("b", "10.0.0.2")];
        let opt = nodeaddr_source(Some("10.9.9.9".parse().unwrap()), "a", &peers);
        assert_eq!(
            opt,
            AddrSource::Known("10.9.9.9".parse().unwrap(), Origin::Option)
        );
        let from_peers = nodeaddr_source(None, "b", &peers);
        assert_eq!(
            from_peers,
            AddrSource::Known("10.0.0.2".parse().unwrap(), Origin::Peers)
        );
        assert_eq!(nodeaddr_source(None, "c", &peers), AddrSource::Resolve);
        let resolved = ["127.0.1.1".parse().unwrap(), "10.0.0.3".parse().unwrap()];
        assert_eq!(
            choose_nodeaddr(AddrSource::Resolve, &resolved, "c", &peers).unwrap(),
            ("10.0.0.3".parse().unwrap(), Origin::Resolved)
        );
    }

    #[test]
    fn loopback_only_when_the_whole_cluster_is_on_loopback() {
        let mixed = [peer("a", "127.0.0.1"), peer("b", "10.0.0.2")];
        let lo = AddrSource::Known("127.0.0.1".parse().unwrap(), Origin::Peers);
        let err = choose_nodeaddr(lo.clone(), &[], "a", &mixed).unwrap_err();
        assert!(err.contains("loopback"), "{err}");
        let all_lo = [peer("a", "127.0.0.1"), peer("b", "127.0.0.2")];
        assert!(choose_nodeaddr(lo, &[], "a", &all_lo).is_ok());
        let only_loopback_resolves = ["127.0.1.1".parse().unwrap()];
        assert!(
            choose_nodeaddr(AddrSource::Resolve, &only_loopback_resolves, "c", &mixed).is_err()
        );
        assert!(choose_nodeaddr(AddrSource::Resolve, &[], "c", &[]).is_err());
    }
}
