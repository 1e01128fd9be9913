//! "May this node open another outbound connection?", answered from the
//! replicated counts as the reference's cluster connection limits mean it.
//!
//! The MTA resolves its own configuration (which scope sets
//! `cluster_max_outbound_connections`, `cluster_server_max_outbound_connections`
//! or `cluster_scope_max_outbound_connections` for this binding, domain and
//! MX; momentum-notes §2.4) into [`Limits`], describes the attempt as an
//! [`Attempt`], asks [`Outbound::may_open`], and reports the connection with
//! [`Outbound::opened`] and [`Outbound::closed`]. Each limit is compared
//! with the cluster-wide count of what it caps; a connection may open when
//! every limit that is set is above its count.
//!
//! # What is counted where
//!
//! One opened connection adds one to each of these keys (and `closed`
//! takes it away), so that every limit has its count ready:
//!
//! | object | keys |
//! |---|---|
//! | `outbound_domains` | `DOMAIN`, `binding:BINDING`, `group:GROUP` (bindings in a group), `host:MX` (when the MX is known) |
//! | `outbound_binding_domains` | `BINDING::DOMAIN`, `group:GROUP::DOMAIN`, `BINDING::host:MX` |
//! | `outbound_cidr` | the binding's source address |
//!
//! A `Replicate "outbound_domains"` or `"outbound_cidr"` scope with a
//! `binding_group` serves only that group's bindings; one without serves
//! the rest. An object that is not configured is not counted, and a limit
//! that needs it is refused with the `Replicate` scope to add.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use super::Scope;
use super::cidr::CidrCounts;
use super::gauge::GaugeTable;

/// One outbound connection, as the MTA knows it when it is about to open.
#[derive(Clone, Copy, Debug)]
pub struct Attempt<'a> {
    pub binding: &'a str,
    pub binding_group: Option<&'a str>,
    pub domain: &'a str,
    /// The MX host name, when the connection goes to a known MX.
    pub host: Option<&'a str>,
    /// The binding's source address.
    pub source: Option<IpAddr>,
}

/// The scope whose `cluster_max_outbound_connections` applies, most
/// specific first as the reference's precedence has it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaxScope {
    BindingHost,
    Host,
    BindingDomain,
    Binding,
    Domain,
    /// Set globally: a cap on every domain.
    Global,
}

/// Where `cluster_server_max_outbound_connections` is set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerScope {
    /// Every connection from the whole cluster.
    Global,
    /// The binding's connections, cluster-wide.
    Binding,
    /// The connections of the binding group's bindings, cluster-wide.
    BindingGroup,
}

/// Where `cluster_scope_max_outbound_connections` is set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScopeLevel {
    /// `Global`: as `cluster_server_max_outbound_connections` globally.
    Global,
    /// `Global::Domain`: the domain across every binding.
    GlobalDomain,
    /// `Binding_Group::Domain`: the domain across the group's bindings.
    GroupDomain,
    /// `Binding::Domain`: as `cluster_max_outbound_connections` there.
    BindingDomain,
    /// `Global::Host`: the MX across every binding.
    GlobalHost,
}

/// The limits the MTA's configuration sets for an attempt; `None` (or a
/// negative limit, the reference's -1) means unlimited.
#[derive(Clone, Copy, Debug, Default)]
pub struct Limits {
    pub cluster_max: Option<(MaxScope, i64)>,
    pub cluster_server_max: Option<(ServerScope, i64)>,
    pub cluster_scope_max: Option<(ScopeLevel, i64)>,
}

/// The answer to [`Outbound::may_open`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Open,
    /// At a limit: which option, the cluster-wide count and the limit.
    AtLimit {
        option: &'static str,
        count: i64,
        limit: i64,
    },
}

/// The outbound objects of one node; see the module docs.
#[derive(Clone, Debug, Default)]
pub struct Outbound {
    /// `outbound_domains` objects, by the binding group they serve.
    pub domains: Vec<(Option<String>, Arc<GaugeTable>)>,
    pub binding_domains: Option<Arc<GaugeTable>>,
    /// `outbound_cidr` objects, by the binding group they serve.
    pub cidr: Vec<(Option<String>, Arc<CidrCounts>)>,
}

fn for_group<'a, T>(objects: &'a [(Option<String>, T)], group: Option<&str>) -> Option<&'a T> {
    let served = |g: Option<&str>| objects.iter().find(|(og, _)| og.as_deref() == g);
    group
        .and_then(|g| served(Some(g)))
        .or_else(|| served(None))
        .map(|(_, t)| t)
}

/// Why a limit could not be checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutboundError {
    /// The limit needs an object the configuration does not replicate.
    NotReplicated {
        option: &'static str,
        object: &'static str,
    },
    /// The attempt lacks what the limit counts by (an MX host, a binding
    /// group, a source address).
    MissingDetail {
        option: &'static str,
        what: &'static str,
    },
}

impl std::fmt::Display for OutboundError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OutboundError::NotReplicated { option, object } => write!(
                f,
                "{option} needs Replicate \"{object}\" in the cluster configuration"
            ),
            OutboundError::MissingDetail { option, what } => write!(f, "{option} {what}"),
        }
    }
}

impl std::error::Error for OutboundError {}

fn needs(option: &'static str, object: &'static str) -> OutboundError {
    OutboundError::NotReplicated { option, object }
}

impl Outbound {
    /// Whether one more connection may open now; an error names a limit
    /// whose object is not replicated, or an attempt that lacks what a limit
    /// counts by (an MX host, a binding group, a source address).
    pub fn may_open(&self, a: &Attempt, limits: &Limits) -> Result<Verdict, OutboundError> {
        let checks = [
            limits
                .cluster_max
                .map(|(s, l)| ("cluster_max_outbound_connections", l, self.max_count(a, s))),
            limits.cluster_server_max.map(|(s, l)| {
                (
                    "cluster_server_max_outbound_connections",
                    l,
                    self.server_count(a, s),
                )
            }),
            limits.cluster_scope_max.map(|(s, l)| {
                (
                    "cluster_scope_max_outbound_connections",
                    l,
                    self.scope_count(a, s),
                )
            }),
        ];
        for (option, limit, count) in checks.into_iter().flatten() {
            if limit < 0 {
                continue;
            }
            let count = count?;
            if count >= limit {
                return Ok(Verdict::AtLimit {
                    option,
                    count,
                    limit,
                });
            }
        }
        Ok(Verdict::Open)
    }

    /// The connection opened on this node.
    pub fn opened(&self, a: &Attempt) {
        self.add(a, 1);
    }

    /// The connection closed.
    pub fn closed(&self, a: &Attempt) {
        self.add(a, -1);
    }

    fn add(&self, a: &Attempt, delta: i64) {
        if let Some(d) = for_group(&self.domains, a.binding_group) {
            for key in domain_keys(a) {
                d.add(key.as_bytes(), delta);
            }
        }
        if let Some(bd) = &self.binding_domains {
            for key in binding_domain_keys(a) {
                bd.add(key.as_bytes(), delta);
            }
        }
        if let (Some(c), Some(ip)) = (for_group(&self.cidr, a.binding_group), a.source) {
            c.add(ip, delta);
        }
    }

    fn domain_count(
        &self,
        a: &Attempt,
        key: &str,
        option: &'static str,
    ) -> Result<i64, OutboundError> {
        let d = for_group(&self.domains, a.binding_group)
            .ok_or_else(|| needs(option, "outbound_domains"))?;
        Ok(d.get(key.as_bytes(), Scope::Global))
    }

    fn binding_domain_count(&self, key: &str, option: &'static str) -> Result<i64, OutboundError> {
        let bd = self
            .binding_domains
            .as_ref()
            .ok_or_else(|| needs(option, "outbound_binding_domains"))?;
        Ok(bd.get(key.as_bytes(), Scope::Global))
    }

    fn max_count(&self, a: &Attempt, scope: MaxScope) -> Result<i64, OutboundError> {
        const OPTION: &str = "cluster_max_outbound_connections";
        match scope {
            MaxScope::BindingHost => {
                let key = format!("{}::host:{}", a.binding, host(a, OPTION)?);
                self.binding_domain_count(&key, OPTION)
            }
            MaxScope::Host => self.domain_count(a, &format!("host:{}", host(a, OPTION)?), OPTION),
            MaxScope::BindingDomain => {
                self.binding_domain_count(&format!("{}::{}", a.binding, a.domain), OPTION)
            }
            MaxScope::Binding => self.domain_count(a, &format!("binding:{}", a.binding), OPTION),
            MaxScope::Domain | MaxScope::Global => self.domain_count(a, a.domain, OPTION),
        }
    }

    fn server_count(&self, a: &Attempt, scope: ServerScope) -> Result<i64, OutboundError> {
        const OPTION: &str = "cluster_server_max_outbound_connections";
        match scope {
            ServerScope::Global => self.total_connections(OPTION),
            ServerScope::Binding => {
                let c = for_group(&self.cidr, a.binding_group)
                    .ok_or_else(|| needs(OPTION, "outbound_cidr"))?;
                let ip = a.source.ok_or(OutboundError::MissingDetail {
                    option: OPTION,
                    what: "in a binding needs the binding's source address",
                })?;
                Ok(c.count(ip, 128, Scope::Global))
            }
            ServerScope::BindingGroup => {
                let key = format!("group:{}", group(a, OPTION)?);
                self.domain_count(a, &key, OPTION)
            }
        }
    }

    fn scope_count(&self, a: &Attempt, level: ScopeLevel) -> Result<i64, OutboundError> {
        const OPTION: &str = "cluster_scope_max_outbound_connections";
        match level {
            ScopeLevel::Global => self.total_connections(OPTION),
            ScopeLevel::GlobalDomain => self.domain_count(a, a.domain, OPTION),
            ScopeLevel::GroupDomain => {
                let key = format!("group:{}::{}", group(a, OPTION)?, a.domain);
                self.binding_domain_count(&key, OPTION)
            }
            ScopeLevel::BindingDomain => {
                self.binding_domain_count(&format!("{}::{}", a.binding, a.domain), OPTION)
            }
            ScopeLevel::GlobalHost => {
                self.domain_count(a, &format!("host:{}", host(a, OPTION)?), OPTION)
            }
        }
    }

    /// Every outbound connection of the cluster: all of the `outbound_cidr`
    /// objects, every address of both families.
    fn total_connections(&self, option: &'static str) -> Result<i64, OutboundError> {
        if self.cidr.is_empty() {
            return Err(needs(option, "outbound_cidr"));
        }
        Ok(self
            .cidr
            .iter()
            .map(|(_, c)| {
                c.count(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0, Scope::Global)
                    + c.count(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0, Scope::Global)
            })
            .sum())
    }
}

fn host<'a>(a: &Attempt<'a>, option: &'static str) -> Result<&'a str, OutboundError> {
    a.host.ok_or(OutboundError::MissingDetail {
        option,
        what: "set for a host needs the attempt's MX host",
    })
}

fn group<'a>(a: &Attempt<'a>, option: &'static str) -> Result<&'a str, OutboundError> {
    a.binding_group.ok_or(OutboundError::MissingDetail {
        option,
        what: "set for a binding group needs the attempt's group",
    })
}

fn domain_keys(a: &Attempt) -> Vec<String> {
    let mut keys = vec![a.domain.to_string(), format!("binding:{}", a.binding)];
    keys.extend(a.binding_group.map(|g| format!("group:{g}")));
    keys.extend(a.host.map(|h| format!("host:{h}")));
    keys
}

fn binding_domain_keys(a: &Attempt) -> Vec<String> {
    let mut keys = vec![format!("{}::{}", a.binding, a.domain)];
    keys.extend(a.binding_group.map(|g| format!("group:{g}::{}", a.domain)));
    keys.extend(a.host.map(|h| format!("{}::host:{h}", a.binding)));
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbound() -> Outbound {
        Outbound {
            domains: vec![(None, Arc::new(GaugeTable::new()))],
            binding_domains: Some(Arc::new(GaugeTable::new())),
            cidr: vec![(None, Arc::new(CidrCounts::new()))],
        }
    }

    fn attempt<'a>(binding: &'a str, domain: &'a str) -> Attempt<'a> {
        Attempt {
            binding,
            binding_group: Some("bulk"),
            domain,
            host: Some("mx1.aol.com"),
            source: Some(format!("192.0.2.{}", binding.len()).parse().unwrap()),
        }
    }

    fn verdict(o: &Outbound, a: &Attempt, limits: Limits) -> Verdict {
        o.may_open(a, &limits).unwrap()
    }

    #[test]
    fn each_limit_counts_what_its_scope_caps() {
        let o = outbound();
        let (b1, b22) = (attempt("b1", "aol.com"), attempt("b22", "aol.com"));
        o.opened(&b1);
        o.opened(&b1);
        o.opened(&b22);
        o.opened(&attempt("b1", "gmx.de"));
        let at = |option, count, limit| Verdict::AtLimit {
            option,
            count,
            limit,
        };
        let max = "cluster_max_outbound_connections";
        let cases = [
            (MaxScope::Domain, 3, at(max, 3, 3)),
            (MaxScope::Domain, 4, Verdict::Open),
            (MaxScope::Global, 3, at(max, 3, 3)),
            (MaxScope::Binding, 3, at(max, 3, 3)),
            (MaxScope::BindingDomain, 2, at(max, 2, 2)),
            (MaxScope::BindingDomain, 3, Verdict::Open),
            (MaxScope::Host, 4, at(max, 4, 4)),
            (MaxScope::BindingHost, 3, at(max, 3, 3)),
            (MaxScope::BindingHost, -1, Verdict::Open),
        ];
        for (scope, limit, expected) in cases {
            let limits = Limits {
                cluster_max: Some((scope, limit)),
                ..Limits::default()
            };
            assert_eq!(verdict(&o, &b1, limits), expected, "{scope:?} {limit}");
        }
        let server = |s, l| Limits {
            cluster_server_max: Some((s, l)),
            ..Limits::default()
        };
        let name = "cluster_server_max_outbound_connections";
        assert_eq!(
            verdict(&o, &b1, server(ServerScope::Global, 4)),
            at(name, 4, 4)
        );
        assert_eq!(
            verdict(&o, &b22, server(ServerScope::Binding, 2)),
            Verdict::Open
        );
        assert_eq!(
            verdict(&o, &b1, server(ServerScope::Binding, 3)),
            at(name, 3, 3)
        );
        assert_eq!(
            verdict(&o, &b1, server(ServerScope::BindingGroup, 5)),
            Verdict::Open
        );
        let scoped = |s, l| Limits {
            cluster_scope_max: Some((s, l)),
            ..Limits::default()
        };
        let name = "cluster_scope_max_outbound_connections";
        assert_eq!(
            verdict(&o, &b1, scoped(ScopeLevel::GroupDomain, 3)),
            at(name, 3, 3)
        );
        assert_eq!(
            verdict(&o, &b22, scoped(ScopeLevel::BindingDomain, 2)),
            Verdict::Open
        );
        assert_eq!(
            verdict(&o, &b1, scoped(ScopeLevel::GlobalHost, 4)),
            at(name, 4, 4)
        );

        // Closing brings the counts back, and peers' counts are included.
        o.closed(&b1);
        let limits = Limits {
            cluster_max: Some((MaxScope::BindingDomain, 2)),
            ..Limits::default()
        };
        assert_eq!(verdict(&o, &b1, limits), Verdict::Open);
        o.binding_domains
            .as_ref()
            .unwrap()
            .set_peer_sum(b"b1::aol.com", 1);
        assert_eq!(verdict(&o, &b1, limits), at(max, 2, 2));
    }

    #[test]
    fn a_limit_without_its_object_or_attempt_detail_is_refused_by_name() {
        let o = Outbound::default();
        let a = attempt("b1", "aol.com");
        let e = o
            .may_open(
                &a,
                &Limits {
                    cluster_max: Some((MaxScope::Domain, 10)),
                    ..Limits::default()
                },
            )
            .unwrap_err();
        assert!(
            e.to_string().contains("Replicate \"outbound_domains\""),
            "{e}"
        );
        let e = o
            .may_open(
                &a,
                &Limits {
                    cluster_server_max: Some((ServerScope::Global, 10)),
                    ..Limits::default()
                },
            )
            .unwrap_err();
        assert!(e.to_string().contains("Replicate \"outbound_cidr\""), "{e}");
        let o = outbound();
        let no_host = Attempt { host: None, ..a };
        let e = o
            .may_open(
                &no_host,
                &Limits {
                    cluster_max: Some((MaxScope::Host, 10)),
                    ..Limits::default()
                },
            )
            .unwrap_err();
        assert!(e.to_string().contains("MX host"), "{e}");
        // Unlimited needs nothing.
        assert_eq!(
            Outbound::default().may_open(&a, &Limits::default()),
            Ok(Verdict::Open)
        );
    }

    #[test]
    fn a_group_object_serves_its_group_and_the_plain_one_the_rest() {
        let group = Arc::new(GaugeTable::new());
        let rest = Arc::new(GaugeTable::new());
        let o = Outbound {
            domains: vec![
                (Some("bulk".into()), Arc::clone(&group)),
                (None, Arc::clone(&rest)),
            ],
            ..Outbound::default()
        };
        o.opened(&attempt("b1", "aol.com"));
        o.opened(&Attempt {
            binding_group: None,
            ..attempt("b2", "aol.com")
        });
        assert_eq!(group.get(b"aol.com", Scope::Local), 1);
        assert_eq!(rest.get(b"aol.com", Scope::Local), 1);
        assert_eq!(group.get(b"group:bulk", Scope::Local), 1);
    }
}
