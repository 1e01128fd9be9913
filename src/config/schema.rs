//! Which options exist, where, with which defaults and checks: the one place
//! that knows the configuration's shape. Both readers' trees pass through
//! [`build`], so TOML and ecelerity.conf get exactly the same rules.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use super::model::*;
use super::reader::{Ctx, Effective, Mode, OptionValue, ScopeReader, Strictness};
use super::tree::{Scalar, ScalarKind, Span, Table};
use crate::core::wire::NodeType;

/// The reference's default published journals (`cluster { logs = [...] }`).
pub const DEFAULT_LOGS: [(&str, &str); 5] = [
    ("rejectlog", "/var/log/ecelerity/rejectlog.cluster"),
    ("paniclog", "/var/log/ecelerity/paniclog.cluster"),
    ("mainlog", "/var/log/ecelerity/mainlog.cluster"),
    ("acctlog", "/var/log/ecelerity/acctlog.cluster"),
    ("bouncelog", "/var/log/ecelerity/bouncelog.cluster"),
];

/// The cluster port of the reference's `ECCluster_Listener`.
pub(crate) const DEFAULT_CLUSTER_PORT: u16 = 4802;
/// The reference's console socket.
pub(crate) const DEFAULT_CONTROL_PATH: &str = "/tmp/2025";

/// Builds the typed configuration from a tree, and the effective listing
/// that `check-config` prints.
pub fn build(top: &Table, ctx: &mut Ctx) -> (Option<Config>, Vec<Effective>) {
    let mut r = ScopeReader::new(String::new(), top, Strictness::HostOwned);

    // An absent scope means all defaults; reading an empty one still lists them.
    let empty = empty_scope();
    let mut s = r
        .scope(ctx, "cluster", Strictness::Ours)
        .unwrap_or_else(|| ScopeReader::new("cluster".into(), &empty, Strictness::Ours));
    let cluster = cluster(&mut s, ctx);
    let items = s.finish(ctx);
    r.push_scope("cluster", None, items);

    let bus = bus(&mut r, ctx);
    let cluster_listener = single_listen(
        &mut r,
        ctx,
        "ECCluster_Listener",
        Some("*:4802"),
        |name, _, _| parse_listen(name),
    )
    .unwrap_or(ListenAddr(SocketAddr::new(
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        DEFAULT_CLUSTER_PORT,
    )));
    let control = control(&mut r, ctx);
    let bindings = bindings(&mut r, ctx);
    let listeners = listeners(&mut r, ctx, &bindings);
    let manager_logs = manager_logs(&mut r, ctx);
    let policy = policy(&mut r, ctx);
    let items = r.finish(ctx);

    if !ctx.errors.is_empty() {
        return (None, items);
    }
    let config = Config {
        cluster,
        bus,
        cluster_listener,
        control,
        bindings,
        listeners,
        manager_logs,
        policy,
    };
    (Some(config), items)
}

fn positive(v: &f64) -> Result<(), String> {
    if *v > 0.0 {
        Ok(())
    } else {
        Err(format!("must be greater than 0, found {v}"))
    }
}

fn at_least(min: u32) -> impl Fn(&u32) -> Result<(), String> {
    move |v| {
        if *v >= min {
            Ok(())
        } else {
            Err(format!("must be at least {min}, found {v}"))
        }
    }
}

fn at_most(max: u32) -> impl Fn(&u32) -> Result<(), String> {
    move |v| {
        if *v <= max {
            Ok(())
        } else {
            Err(format!("must be at most {max}, found {v}"))
        }
    }
}

#[allow(clippy::ptr_arg)] // a check for `get_checked::<String>`
fn not_empty(v: &String) -> Result<(), String> {
    if v.trim().is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(())
    }
}

/// A `Logs` `logfile`: a template the aggregator can expand.
#[allow(clippy::ptr_arg)] // a check for `get_checked::<String>`
fn logfile_template(v: &String) -> Result<(), String> {
    crate::core::logs::template::Template::parse(v).map(|_| ())
}

/// Names used on the bus and in group names: the reference requires short,
/// lowercase, DNS-friendly names.
#[allow(clippy::ptr_arg)] // a check for `get_checked::<String>`
fn node_name(v: &String) -> Result<(), String> {
    if v.is_empty() || v.len() > 63 {
        return Err(format!(
            "must be 1 to 63 characters, found {} characters",
            v.len()
        ));
    }
    if !v
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        return Err(format!(
            "must be lowercase letters, digits, '-' or '_' (a short host name), found \"{v}\""
        ));
    }
    Ok(())
}

impl OptionValue for IpAddr {
    const EXPECTED: &'static str = "an IP address";
    fn parse(s: &Scalar) -> Option<Self> {
        s.text.trim().parse().ok()
    }
    fn render(&self) -> String {
        format!("\"{self}\"")
    }
}

impl OptionValue for PathBuf {
    const EXPECTED: &'static str = "a path";
    fn parse(s: &Scalar) -> Option<Self> {
        (!s.text.is_empty()).then(|| PathBuf::from(&s.text))
    }
    fn render(&self) -> String {
        super::reader::quote(&self.display().to_string())
    }
}

/// Implements [`OptionValue`] for an enum spelled as a fixed set of words.
macro_rules! word_option {
    ($t:ty, $expected:literal, [$($word:literal => $variant:expr),+ $(,)?]) => {
        impl OptionValue for $t {
            const EXPECTED: &'static str = $expected;
            fn parse(s: &Scalar) -> Option<Self> {
                let w = s.text.trim();
                $(if w.eq_ignore_ascii_case($word) { return Some($variant); })+
                None
            }
            fn render(&self) -> String {
                $(if *self == $variant { return format!("\"{}\"", $word); })+
                unreachable!("every variant has a word")
            }
        }
    };
}

/// A size in bytes: a whole number, optionally with a `K`, `M` or `G`
/// suffix (powers of 1024).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl OptionValue for ByteSize {
    const EXPECTED: &'static str = "a size in bytes, optionally with a K, M or G suffix (\"16M\")";
    fn parse(s: &Scalar) -> Option<Self> {
        if matches!(s.kind, ScalarKind::Float | ScalarKind::Boolean) {
            return None;
        }
        let text = s.text.trim();
        let (digits, shift) = match text.as_bytes().last()? {
            b'k' | b'K' => (&text[..text.len() - 1], 10),
            b'm' | b'M' => (&text[..text.len() - 1], 20),
            b'g' | b'G' => (&text[..text.len() - 1], 30),
            _ => (text, 0),
        };
        let n: u64 = digits.trim_end().parse().ok()?;
        n.checked_mul(1 << shift).map(ByteSize)
    }
    fn render(&self) -> String {
        for (suffix, shift) in [("G", 30), ("M", 20), ("K", 10)] {
            if self.0 != 0 && self.0.is_multiple_of(1 << shift) {
                return format!("\"{}{suffix}\"", self.0 >> shift);
            }
        }
        self.0.to_string()
    }
}

word_option!(QuorumMode, "\"none\" or \"majority\"", [
    "none" => QuorumMode::None,
    "majority" => QuorumMode::Majority,
]);

word_option!(NodeType, "\"Momentum\" (an MTA node) or \"Manager\"", [
    "Momentum" => NodeType::Momentum,
    "Manager" => NodeType::Manager,
]);

word_option!(DebugLevel, "one of DEBUG, INFO, NOTICE, WARNING, ERROR, CRITICAL", [
    "DEBUG" => DebugLevel::Debug,
    "INFO" => DebugLevel::Info,
    "NOTICE" => DebugLevel::Notice,
    "WARNING" => DebugLevel::Warning,
    "ERROR" => DebugLevel::Error,
    "CRITICAL" => DebugLevel::Critical,
]);

word_option!(ReplicationType, "one of inbound_cidr, outbound_cidr, outbound_domains, outbound_binding_domains, shared_named_throttles, OBTM, OBTC, metrics, eccmgr_metrics, cache", [
    "inbound_cidr" => ReplicationType::InboundCidr,
    "outbound_cidr" => ReplicationType::OutboundCidr,
    "outbound_domains" => ReplicationType::OutboundDomains,
    "outbound_binding_domains" => ReplicationType::OutboundBindingDomains,
    "shared_named_throttles" => ReplicationType::SharedNamedThrottles,
    "OBTM" => ReplicationType::Obtm,
    "OBTC" => ReplicationType::Obtc,
    "metrics" => ReplicationType::Metrics,
    "eccmgr_metrics" => ReplicationType::EccmgrMetrics,
    "cache" => ReplicationType::Cache,
]);

word_option!(Metric, "a metric", [
    "snapshot" => Metric::Snapshot,
    "connect" => Metric::Connect,
    "delivery" => Metric::Delivery,
    "transfail" => Metric::Transfail,
    "permfail" => Metric::Permfail,
    "reception" => Metric::Reception,
    "rejection" => Metric::Rejection,
    "audit_series" => Metric::AuditSeries,
    "gauge_cache" => Metric::GaugeCache,
]);

fn cluster(s: &mut ScopeReader, ctx: &mut Ctx) -> ClusterConfig {
    let cluster_group = s.get_checked(ctx, "cluster_group", "ec_cluster".to_string(), not_empty);
    let control_group = s.get_checked(ctx, "control_group", "ec_console".to_string(), not_empty);
    let log_group = s.maybe_checked(ctx, "log_group", not_empty);
    let nodename = s.maybe_checked(ctx, "nodename", node_name);
    let nodeaddr = s.maybe(ctx, "nodeaddr");
    let subcluster = s.maybe_checked(ctx, "subcluster", node_name);
    let arp_all_hosts = s.get(ctx, "arp_all_hosts", true);
    let heartbeat_start_delay = s.get(ctx, "heartbeat_start_delay", 15u32);
    let heartbeats_per_sec = s.get_checked(ctx, "heartbeats_per_sec", 1.0, |v: &f64| {
        positive(v)?;
        if *v > 100.0 {
            return Err(format!("must be at most 100, found {v}"));
        }
        Ok(())
    });
    let if_check_interval = s.get_checked(ctx, "if_check_interval", 30u32, at_least(1));
    let if_down_limit = s.get(ctx, "if_down_limit", 4u32);
    let log_active_interval = s.get(ctx, "log_active_interval", 1u32);
    let log_idle_interval = s.get_checked(ctx, "log_idle_interval", 10u32, at_least(1));
    let duravip_balance_set_size =
        s.get_checked(ctx, "duravip_balance_set_size", 1u32, at_least(1));
    let view_mature_time = s.get(ctx, "view_mature_time", 5u32);
    let view_balance_interval = s.get_checked(ctx, "view_balance_interval", 10u32, at_least(1));
    let view_broadcast_interval = s.get(ctx, "view_broadcast_interval", 0u32);
    let unconditional_rebind = s.get(ctx, "unconditional_rebind", true);
    let enabled = s.get(ctx, "enabled", true);
    let debug_level = s.get(ctx, "debug_level", DebugLevel::Error);
    let tcp_buffer_size = s.get_checked(ctx, "tcp_buffer_size", 32768u32, at_least(1024));
    s.ignore(
        ctx,
        "mbus_daemon",
        "deprecated in the reference: Spread's daemon port",
    );
    let logs = s
        .dict(ctx, "logs", &DEFAULT_LOGS)
        .into_iter()
        .filter_map(|(name, path, span)| {
            if path.is_empty() {
                ctx.error(
                    span,
                    &format!("cluster.logs.{name}"),
                    "the journal path must not be empty",
                );
                return None;
            }
            Some((name, PathBuf::from(path)))
        })
        .collect();
    let auth_key_file = s.maybe(ctx, "auth_key_file");
    let insecure = s.get(ctx, "insecure", false);
    let quorum = s.get(ctx, "quorum", QuorumMode::None);
    let node_type = s.get(ctx, "node_type", NodeType::Momentum);
    let duravip_dry_run = s.get(ctx, "duravip_dry_run", false);
    let arp_refresh_interval = s.get(ctx, "arp_refresh_interval", 60u32);
    let suspect_heartbeats = s.get_checked(ctx, "suspect_heartbeats", 3u32, at_least(1));
    let down_heartbeats = s.get_checked(ctx, "down_heartbeats", 5u32, at_least(1));
    let mmove_dir = s.maybe(ctx, "mmove_dir");
    if down_heartbeats < suspect_heartbeats {
        let span = s
            .span_of("down_heartbeats")
            .or(s.span_of("suspect_heartbeats"));
        ctx.error(
            span.unwrap_or_default(),
            "cluster.down_heartbeats",
            format!("must not be smaller than suspect_heartbeats ({suspect_heartbeats}), found {down_heartbeats}"),
        );
    }

    let mut replicate = Vec::new();
    for (name, span, mut r) in s.named_scopes(ctx, "Replicate", Strictness::Ours) {
        if let Some(rep) = replication(&name, span, &mut r, ctx) {
            replicate.push(rep);
        }
        let items = r.finish(ctx);
        s.push_scope("Replicate", Some(name), items);
    }
    let mut topology = Vec::new();
    for (name, span, mut r) in s.named_scopes(ctx, "Topology", Strictness::Ours) {
        if let Some(t) = topology_scope(&name, span, &mut r, ctx) {
            topology.push(t);
        }
        let items = r.finish(ctx);
        s.push_scope("Topology", Some(name), items);
    }

    ClusterConfig {
        cluster_group,
        control_group,
        log_group,
        nodename,
        nodeaddr,
        subcluster,
        arp_all_hosts,
        heartbeat_start_delay,
        heartbeats_per_sec,
        if_check_interval,
        if_down_limit,
        log_active_interval,
        log_idle_interval,
        duravip_balance_set_size,
        view_mature_time,
        view_balance_interval,
        view_broadcast_interval,
        unconditional_rebind,
        enabled,
        debug_level,
        tcp_buffer_size,
        logs,
        replicate,
        topology,
        auth_key_file,
        insecure,
        quorum,
        node_type,
        duravip_dry_run,
        arp_refresh_interval,
        suspect_heartbeats,
        down_heartbeats,
        mmove_dir,
    }
}

fn replication(name: &str, span: Span, r: &mut ScopeReader, ctx: &mut Ctx) -> Option<Replicate> {
    let path = format!("cluster.Replicate \"{name}\"");
    let from_name = ReplicationType::parse(&Scalar {
        text: name.to_string(),
        kind: ScalarKind::Quoted,
        span,
    });
    // `class` is the reference's older spelling of `type`.
    let class_opt: Option<ReplicationType> = r.maybe(ctx, "class");
    let type_opt: Option<ReplicationType> = match from_name.or(class_opt) {
        Some(default) => Some(r.get(ctx, "type", default)),
        None => r.maybe(ctx, "type"),
    };
    if let (Some(t), Some(c)) = (type_opt, class_opt)
        && t != c
    {
        ctx.error(
            span,
            &path,
            format!("type {} and class {} disagree", t.render(), c.render()),
        );
    }
    let kind = type_opt;
    let parameters: Vec<Metric> = r
        .maybe::<String>(ctx, "parameters")
        .map(|p| {
            p.split(';')
                .map(str::trim)
                .filter(|w| !w.is_empty())
                .filter_map(|w| {
                    let m = Metric::parse(&Scalar {
                        text: w.to_string(),
                        kind: ScalarKind::Quoted,
                        span,
                    });
                    if m.is_none() {
                        ctx.error(
                            span,
                            &format!("{path}.parameters"),
                            format!(
                                "unknown metric \"{w}\"; expected a ';'-separated list of snapshot, connect, delivery, transfail, permfail, reception, rejection, audit_series, gauge_cache"
                            ),
                        );
                    }
                    m
                })
                .collect()
        })
        .unwrap_or_default();
    let max_delay = r.get_checked(ctx, "max_delay", 1.0, |v: &f64| {
        if *v >= 0.0 {
            Ok(())
        } else {
            Err(format!("must not be negative, found {v}"))
        }
    });
    let max_pending = r.get_checked(ctx, "max_pending", 100u32, at_least(1));
    let max_size = r.get_checked(ctx, "max_size", -1i64, |v: &i64| {
        if *v == -1 || *v > 0 {
            Ok(())
        } else {
            Err(format!(
                "must be -1 (no limit) or a positive size, found {v}"
            ))
        }
    });
    let binding_group = r.maybe_checked(ctx, "binding_group", not_empty);
    let Some(kind) = kind else {
        ctx.error(
            span,
            &path,
            format!(
                "\"{name}\" is not a replication type; add type = \"...\", where the type is {}",
                ReplicationType::EXPECTED
            ),
        );
        return None;
    };
    if binding_group.is_some()
        && !matches!(
            kind,
            ReplicationType::OutboundCidr | ReplicationType::OutboundDomains
        )
    {
        ctx.error(
            span,
            &format!("{path}.binding_group"),
            "only valid for outbound_cidr and outbound_domains",
        );
    }
    if max_size != -1 && kind != ReplicationType::Cache {
        ctx.error(
            span,
            &format!("{path}.max_size"),
            "only valid for caches (type = \"cache\")",
        );
    }
    Some(Replicate {
        name: name.to_string(),
        kind,
        parameters,
        max_delay,
        max_pending,
        max_size,
        binding_group,
    })
}

/// Parses `a.b.c.d/len` (or an IPv6 block); the empty string is the catch-all.
pub fn parse_cidr(text: &str) -> Result<Option<(IpAddr, u8)>, String> {
    if text.is_empty() {
        return Ok(None);
    }
    let (addr, len) = match text.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (text, None),
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("\"{text}\" is not a CIDR block such as \"10.1.1.0/24\""))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = match len {
        Some(l) => l
            .parse::<u8>()
            .ok()
            .filter(|l| *l <= max)
            .ok_or_else(|| format!("prefix length in \"{text}\" must be 0 to {max}"))?,
        None => max,
    };
    Ok(Some((addr, len)))
}

fn topology_scope(name: &str, span: Span, r: &mut ScopeReader, ctx: &mut Ctx) -> Option<Topology> {
    let path = format!("cluster.Topology \"{name}\"");
    let network = parse_cidr(name).map_err(|e| ctx.error(span, &path, e)).ok();
    let interface = r.maybe_checked::<String>(ctx, "interface", not_empty);
    let max = match network {
        Some(Some((IpAddr::V6(_), _))) => 128,
        _ => 32,
    };
    let cidrmask = r.get_checked(ctx, "cidrmask", 32u32, at_most(max));
    let Some(interface) = interface else {
        ctx.error(
            span,
            &format!("{path}.interface"),
            "a Topology needs an interface",
        );
        return None;
    };
    Some(Topology {
        network: network?,
        interface,
        cidrmask: u8::try_from(cidrmask).ok()?,
    })
}

/// Parses a `Listen` address: `*:4802`, `:4809`, `10.0.0.1:4802`, `[::1]:4802`.
pub fn parse_listen(text: &str) -> Result<ListenAddr, String> {
    let bad =
        || format!("\"{text}\" is not a listen address such as \"*:4802\" or \"10.0.0.1:4802\"");
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let ip = match host {
        "" | "*" => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        h => h
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(h)
            .parse()
            .map_err(|_| bad())?,
    };
    Ok(ListenAddr(SocketAddr::new(ip, port)))
}

/// A listener scope holding exactly one `Listen "<address>" {}`. `read`
/// parses the address and reads the `Listen` scope's own options; `None`
/// when the scope is absent or wrong (the error is recorded).
///
/// `default_shown` is the address the caller assumes when the scope is
/// absent, listed as a default; `None` when the caller assumes no listener,
/// which is then listed as unset. (Listing an address the configuration does
/// not hold would make the listing read back as a different configuration.)
fn single_listen<T>(
    r: &mut ScopeReader,
    ctx: &mut Ctx,
    keyword: &'static str,
    default_shown: Option<&str>,
    read: impl Fn(&str, &mut ScopeReader, &mut Ctx) -> Result<T, String>,
) -> Option<T> {
    let Some(mut scope) = r.scope(ctx, keyword, Strictness::Ours) else {
        match default_shown {
            Some(address) => {
                // Read the default as if written `Listen "<address>" {}`, so the
                // listing shows the Listen scope's own defaults (a mode) too.
                let empty = empty_scope();
                let path = format!("{keyword}.Listen {}", super::reader::quote(address));
                let mut listen = ScopeReader::new(path, &empty, Strictness::Ours);
                let _ = read(address, &mut listen, ctx);
                let listen = Effective::Scope {
                    keyword: "Listen",
                    name: Some(address.to_string()),
                    items: listen.finish(ctx),
                    default: true,
                };
                r.push_scope(keyword, None, vec![listen]);
            }
            None => r.push_unset(keyword),
        }
        return None;
    };
    let mut result = None;
    for (i, (name, span, mut listen)) in scope
        .named_scopes(ctx, "Listen", Strictness::Ours)
        .into_iter()
        .enumerate()
    {
        if i > 0 {
            ctx.error(
                span,
                &scope.option_path("Listen"),
                "only one Listen address is supported here",
            );
        } else {
            match read(&name, &mut listen, ctx) {
                Ok(v) => result = Some(v),
                Err(e) => ctx.error(span, &scope.option_path("Listen"), e),
            }
        }
        let items = listen.finish(ctx);
        scope.push_scope("Listen", Some(name), items);
    }
    let items = scope.finish(ctx);
    r.push_scope(keyword, None, items);
    result
}

fn bus(r: &mut ScopeReader, ctx: &mut Ctx) -> BusConfig {
    let empty = empty_scope();
    let mut s = r
        .scope(ctx, "msgc_server", Strictness::Ours)
        .unwrap_or_else(|| ScopeReader::new("msgc_server".into(), &empty, Strictness::Ours));
    let mut peers: Vec<Peer> = Vec::new();
    for (name, addr, span) in s.dict(ctx, "peers", &[]) {
        let path = format!("msgc_server.peers.{name}");
        if let Err(e) = node_name(&name) {
            ctx.error(span, &path, format!("peer name {e}"));
            continue;
        }
        match parse_peer_addr(&addr) {
            Ok((addr, port)) => peers.push(Peer { name, addr, port }),
            Err(e) => ctx.error(span, &path, e),
        }
    }
    let port = s.get(ctx, "port", 4809u16);
    let connect_timeout = s.get(ctx, "connect_timeout", 60u32);
    let idle_timeout = s.get(ctx, "idle_timeout", 30u32);
    let keepalive_interval = s.get(ctx, "keepalive_interval", 5u32);
    let reconnect_interval = s.get_checked(ctx, "reconnect_interval", 5u32, at_least(1));
    let max_backlog = s.get(ctx, "max_backlog", 5000u32);
    let why = "msgc tuning with no counterpart in eccluster's transport";
    for key in ["messages_per_iter", "tcpbuf_size", "debug_level"] {
        s.ignore(ctx, key, why);
    }
    let items = s.finish(ctx);
    r.push_scope("msgc_server", None, items);
    let listener = single_listen(r, ctx, "msgcserver_listener", None, |name, _, _| {
        parse_listen(name)
    });
    BusConfig {
        peers,
        port,
        listener,
        connect_timeout,
        idle_timeout,
        keepalive_interval,
        reconnect_interval,
        max_backlog,
    }
}

fn empty_scope() -> Table {
    Table {
        kind: super::tree::TableKind::Scope,
        entries: Vec::new(),
        span: Span::default(),
    }
}

/// A peer address: `10.0.0.1`, `10.0.0.1:4802`, `::1`, `[::1]:4802`.
pub fn parse_peer_addr(text: &str) -> Result<(IpAddr, Option<u16>), String> {
    let bad = || format!("\"{text}\" is not an IP address with an optional :port");
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok((ip, None));
    }
    let sa: SocketAddr = text.parse().map_err(|_| bad())?;
    Ok((sa.ip(), Some(sa.port())))
}

fn control(r: &mut ScopeReader, ctx: &mut Ctx) -> ControlConfig {
    let parsed = single_listen(
        r,
        ctx,
        "Control_Listener",
        Some(DEFAULT_CONTROL_PATH),
        |name, listen, ctx| {
            let mode = listen.get(ctx, "mode", Mode(0o600)).0;
            if name.starts_with('/') || name.starts_with('.') {
                Ok(ControlConfig {
                    path: PathBuf::from(name),
                    mode,
                })
            } else {
                Err(format!(
                    "\"{name}\": eccluster's console listens on a local socket; give a path such as \"/tmp/2025\""
                ))
            }
        },
    );
    parsed.unwrap_or_else(|| ControlConfig {
        path: PathBuf::from(DEFAULT_CONTROL_PATH),
        mode: 0o600,
    })
}

fn duravip_options(r: &mut ScopeReader, ctx: &mut Ctx) -> (bool, Option<String>) {
    (
        r.get(ctx, "Enable_Duravip", false),
        r.maybe_checked(ctx, "Duravip_Preference", node_name),
    )
}

fn binding(
    name: String,
    span: Span,
    group: Option<String>,
    mut r: ScopeReader,
    ctx: &mut Ctx,
) -> (Binding, Vec<Effective>) {
    let bind_address = r.maybe(ctx, "Bind_Address");
    let (enable_duravip, duravip_preference) = duravip_options(&mut r, ctx);
    if enable_duravip && bind_address.is_none() {
        ctx.error(
            span,
            &format!("Binding \"{name}\""),
            "Enable_Duravip needs a Bind_Address",
        );
    }
    let items = r.finish(ctx);
    (
        Binding {
            name,
            group,
            bind_address,
            enable_duravip,
            duravip_preference,
        },
        items,
    )
}

fn bindings(r: &mut ScopeReader, ctx: &mut Ctx) -> Vec<Binding> {
    let mut out = Vec::new();
    for (name, span, b) in r.named_scopes(ctx, "Binding", Strictness::HostOwned) {
        let (binding, items) = binding(name.clone(), span, None, b, ctx);
        out.push((binding, span));
        r.push_scope("Binding", Some(name), items);
    }
    for (group, _, mut g) in r.named_scopes(ctx, "Binding_Group", Strictness::HostOwned) {
        let mut group_items = Vec::new();
        for (name, span, b) in g.named_scopes(ctx, "Binding", Strictness::HostOwned) {
            let (binding, items) = binding(name.clone(), span, Some(group.clone()), b, ctx);
            out.push((binding, span));
            group_items.push(Effective::Scope {
                keyword: "Binding",
                name: Some(name),
                items,
                default: false,
            });
        }
        group_items.extend(g.finish(ctx));
        r.push_scope("Binding_Group", Some(group), group_items);
    }
    // Binding names are global to the MTA, groups or not.
    for (i, (b, span)) in out.iter().enumerate() {
        if let Some((_, first)) = out[..i].iter().find(|(o, _)| o.name == b.name) {
            ctx.error(
                *span,
                &format!("Binding \"{}\"", b.name),
                format!(
                    "binding defined more than once (first at line {}, col {})",
                    first.line, first.col
                ),
            );
        }
    }
    out.into_iter().map(|(b, _)| b).collect()
}

fn listeners(r: &mut ScopeReader, ctx: &mut Ctx, bindings: &[Binding]) -> Vec<Listener> {
    let mut out = Vec::new();
    let Some(mut esmtp) = r.scope(ctx, "ESMTP_Listener", Strictness::HostOwned) else {
        return out;
    };
    for (name, span, mut l) in esmtp.named_scopes(ctx, "Listen", Strictness::HostOwned) {
        let path = format!("ESMTP_Listener.Listen \"{name}\"");
        let (enable_duravip, duravip_preference) = duravip_options(&mut l, ctx);
        let duravip_follow: Option<String> = l.maybe_checked(ctx, "Duravip_Follow", not_empty);
        if enable_duravip && duravip_follow.is_some() {
            ctx.error(
                span,
                &path,
                "a listener cannot be both Enable_Duravip and Duravip_Follow",
            );
        }
        if duravip_follow.is_some() && duravip_preference.is_some() {
            ctx.error(
                span,
                &path,
                "a listener that follows a binding takes no Duravip_Preference",
            );
        }
        let address = parse_listen(&name);
        if let (Some(follow), Ok(address)) = (&duravip_follow, &address) {
            check_follow(ctx, span, &path, follow, address.0.ip(), bindings);
        }
        match address {
            Ok(address) => out.push(Listener {
                address,
                enable_duravip,
                duravip_preference,
                duravip_follow,
            }),
            Err(e) => ctx.error(span, &path, e),
        }
        let items = l.finish(ctx);
        esmtp.push_scope("Listen", Some(name), items);
    }
    let items = esmtp.finish(ctx);
    r.push_scope("ESMTP_Listener", None, items);
    out
}

/// A listener follows a DuraVIP binding, named or by its address, and must
/// not share that binding's address (it is plumbed as a second address).
fn check_follow(
    ctx: &mut Ctx,
    span: Span,
    path: &str,
    follow: &str,
    listener_ip: IpAddr,
    bindings: &[Binding],
) {
    if listener_ip.is_unspecified() {
        ctx.error(
            span,
            path,
            "a listener on a wildcard address cannot follow a binding: give it the address to plumb",
        );
        return;
    }
    let followed = bindings.iter().find(|b| {
        b.enable_duravip
            && (b.name == follow || b.bind_address.is_some_and(|ip| ip.to_string() == follow))
    });
    match followed {
        None => ctx.error(
            span,
            path,
            format!(
                "Duravip_Follow = \"{follow}\" names no binding with Enable_Duravip = true (give a binding's name or Bind_Address)"
            ),
        ),
        Some(b) if b.bind_address == Some(listener_ip) => ctx.error(
            span,
            path,
            format!(
                "the listener is on {listener_ip}, the address of the binding \"{}\" it follows; a following listener needs an address of its own",
                b.name
            ),
        ),
        Some(_) => {}
    }
}

fn manager_logs(r: &mut ScopeReader, ctx: &mut Ctx) -> Option<ManagerLogs> {
    let mut s = r.scope(ctx, "Logs", Strictness::Ours)?;
    let logfile = s.get_checked(
        ctx,
        "logfile",
        "/var/log/eccluster/%Y/%m/%d/%{l}/%{s}/%{n}".to_string(),
        logfile_template,
    );
    let file_mode = s.get(ctx, "file_mode", Mode(0o640)).0;
    let dir_mode = s.get(ctx, "dir_mode", Mode(0o755)).0;
    let max_open = s.get_checked(ctx, "max_open", 256u32, at_least(1));
    let max_idle = s.get(ctx, "max_idle", 300u32);
    let control_cache = s.maybe(ctx, "control_cache");
    let mut managers = Vec::new();
    for (name, _, mut m) in s.named_scopes(ctx, "Manager", Strictness::Ours) {
        let mut nodes = Vec::new();
        for (node, _, mut n) in m.named_scopes(ctx, "Node", Strictness::Ours) {
            let default = [name.as_str(), "master"];
            let subscribers = n.list(ctx, "Subscriber", &default);
            nodes.push((node.clone(), subscribers));
            let items = n.finish(ctx);
            m.push_scope("Node", Some(node), items);
        }
        let items = m.finish(ctx);
        s.push_scope("Manager", Some(name.clone()), items);
        managers.push(LogManager { name, nodes });
    }
    let items = s.finish(ctx);
    r.push_scope("Logs", None, items);
    Some(ManagerLogs {
        logfile,
        file_mode,
        dir_mode,
        max_open,
        max_idle,
        control_cache,
        managers,
    })
}

/// Ours: `policy { scripts instruction_budget memory_limit }`, and the
/// reference's `scriptlet "scriptlet" { script "NAME" { source = "dir.file" } }`
/// (a module of the host's, so its other options are the host's): both
/// give scripts, policy's first.
fn policy(r: &mut ScopeReader, ctx: &mut Ctx) -> PolicyConfig {
    let empty = empty_scope();
    let mut s = r
        .scope(ctx, "policy", Strictness::Ours)
        .unwrap_or_else(|| ScopeReader::new("policy".into(), &empty, Strictness::Ours));
    let span = s.span_of("scripts").unwrap_or_default();
    let mut scripts: Vec<(PolicyScript, Span)> = s
        .list(ctx, "scripts", &[])
        .into_iter()
        .filter_map(|path| {
            let name = script_name_of(&path)
                .map_err(|e| ctx.error(span, "policy.scripts", e))
                .ok()?;
            let path = PathBuf::from(path);
            Some((PolicyScript { name, path }, span))
        })
        .collect();
    let instruction_budget = s.get_checked(ctx, "instruction_budget", 1_000_000u32, at_least(1000));
    let memory_limit = s
        .get_checked(ctx, "memory_limit", ByteSize(16 << 20), |v: &ByteSize| {
            if v.0 >= 256 << 10 {
                Ok(())
            } else {
                Err(format!("must be at least \"256K\", found {}", v.0))
            }
        })
        .0;
    let items = s.finish(ctx);
    r.push_scope("policy", None, items);

    for (instance, _, mut scriptlet) in r.named_scopes(ctx, "scriptlet", Strictness::HostOwned) {
        let mut listed = Vec::new();
        for (name, span, mut script) in scriptlet.named_scopes(ctx, "script", Strictness::HostOwned)
        {
            let path = format!("scriptlet \"{instance}\".script \"{name}\".source");
            match script.maybe::<String>(ctx, "source") {
                Some(source) => match script_source_path(&source) {
                    Ok(file) => scripts.push((
                        PolicyScript {
                            name: name.clone(),
                            path: file,
                        },
                        span,
                    )),
                    Err(e) => ctx.error(span, &path, e),
                },
                None => ctx.error(span, &path, "a script needs a source = \"dir.file\""),
            }
            listed.push(Effective::Scope {
                keyword: "script",
                name: Some(name),
                items: script.finish(ctx),
                default: false,
            });
        }
        listed.extend(scriptlet.finish(ctx));
        r.push_scope("scriptlet", Some(instance), listed);
    }
    for (i, (script, span)) in scripts.iter().enumerate() {
        if let Some((_, first)) = scripts[..i].iter().find(|(s, _)| s.name == script.name) {
            ctx.error(
                *span,
                "policy",
                format!(
                    "two policy scripts are named '{}' (first at line {}, col {}); script names must differ",
                    script.name, first.line, first.col
                ),
            );
        }
    }
    PolicyConfig {
        scripts: scripts.into_iter().map(|(s, _)| s).collect(),
        instruction_budget,
        memory_limit,
    }
}

/// A script's name from its file: the file name without `.lua`.
fn script_name_of(path: &str) -> Result<String, String> {
    let file = std::path::Path::new(path)
        .file_name()
        .and_then(|f| f.to_str())
        .unwrap_or_default();
    let name = file.strip_suffix(".lua").unwrap_or(file);
    if name.is_empty() {
        return Err(format!(
            "\"{path}\" is not a script file such as \"lua/set_binding.lua\""
        ));
    }
    Ok(name.to_string())
}

/// The file of a `scriptlet` script's `source`: as the reference, the
/// `.lua` extension is left out and `.` separates directories as `/` does
/// (`"policy.set_binding"` is `policy/set_binding.lua`). A source that
/// already ends in `.lua` is a path as it is.
fn script_source_path(source: &str) -> Result<PathBuf, String> {
    if source.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if source.ends_with(".lua") {
        return Ok(PathBuf::from(source));
    }
    Ok(PathBuf::from(format!("{}.lua", source.replace('.', "/"))))
}
