//! Configuration behaviour seen from outside the crate: the reference default
//! configuration, both syntaxes, the listing round trip, error reporting,
//! host-owned scopes, overrides and node identity.

mod common;
use common::TempDir;

use std::net::IpAddr;
use std::path::Path;
use std::sync::Mutex;

use eccluster::config::model::{Metric, PolicyConfig, PolicyScript, QuorumMode, ReplicationType};
use eccluster::config::{ConfigError, ConfigErrors, Format, LoadedConfig};
use eccluster::core::identity::Origin;
use eccluster::{HookOrder, Node, NodeError};

const REFERENCE_CONF: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/examples/config/ecelerity-cluster.conf"
);
const REFERENCE_TOML: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/examples/config/ecelerity-cluster.toml"
);

/// Serialises everything that reads or writes the process environment
/// (identity resolution reads `EC_NODE_NAME` and `EC_SUB_CLUSTER`).
static ENV_LOCK: Mutex<()> = Mutex::new(());

fn env_lock() -> std::sync::MutexGuard<'static, ()> {
    ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn load(path: &Path) -> LoadedConfig {
    LoadedConfig::load(path).unwrap_or_else(|e| panic!("{} should load:\n{e}", path.display()))
}

fn parse(text: &str, format: Format) -> LoadedConfig {
    LoadedConfig::parse(text, format).unwrap_or_else(|e| panic!("should parse:\n{e}\n---\n{text}"))
}

fn parse_err(text: &str, format: Format) -> ConfigErrors {
    match LoadedConfig::parse(text, format) {
        Ok(_) => panic!("should be rejected:\n{text}"),
        Err(e) => e,
    }
}

/// The only error, or a panic listing all of them.
fn single(errors: &ConfigErrors) -> &ConfigError {
    assert_eq!(
        errors.0.len(),
        1,
        "expected exactly one error, got:\n{errors}"
    );
    &errors.0[0]
}

/// The listing parses back (ecelerity syntax) into an equal configuration.
fn assert_round_trip(loaded: &LoadedConfig) {
    let listing = loaded.listing();
    let again = LoadedConfig::parse(&listing, Format::Ecelerity)
        .unwrap_or_else(|e| panic!("the listing does not parse back:\n{e}\n---\n{listing}"));
    assert_eq!(
        again.config, loaded.config,
        "the listing parses into a different configuration:\n{listing}"
    );
    // Read back, every default is written out, so only the markers differ.
    let unmarked = |l: &str| l.replace("  # default", "");
    assert_eq!(
        unmarked(&again.listing()),
        unmarked(&listing),
        "the listing is not a fixed point"
    );
}

// ---------------------------------------------------------------------------
// The reference default configuration
// ---------------------------------------------------------------------------

#[test]
fn reference_conf_yields_documented_defaults() {
    let loaded = load(Path::new(REFERENCE_CONF));
    assert_eq!(loaded.format, Format::Ecelerity);
    let c = &loaded.config.cluster;
    assert_eq!(c.cluster_group, "ec_cluster");
    assert_eq!(c.control_group, "ec_console");
    assert_eq!(c.log_group, None);
    assert_eq!(c.heartbeats_per_sec, 1.0);
    assert_eq!(c.heartbeat_start_delay, 15);
    assert_eq!(c.if_check_interval, 30);
    assert_eq!(c.if_down_limit, 4);
    assert!(c.arp_all_hosts);
    assert_eq!(c.duravip_balance_set_size, 1);
    assert_eq!(c.view_mature_time, 5);
    assert_eq!(c.view_balance_interval, 10);
    assert_eq!(c.view_broadcast_interval, 0);
    assert!(c.unconditional_rebind);
    assert_eq!(c.log_active_interval, 1);
    assert_eq!(c.log_idle_interval, 10);
    assert!(c.enabled);
    assert_eq!(c.tcp_buffer_size, 32768);

    let logs: Vec<(&str, &Path)> = c
        .logs
        .iter()
        .map(|(n, p)| (n.as_str(), p.as_path()))
        .collect();
    let expected_logs: Vec<(&str, &Path)> =
        ["rejectlog", "paniclog", "mainlog", "acctlog", "bouncelog"]
            .iter()
            .map(|n| {
                (
                    *n,
                    Path::new(match *n {
                        "rejectlog" => "/var/log/ecelerity/rejectlog.cluster",
                        "paniclog" => "/var/log/ecelerity/paniclog.cluster",
                        "mainlog" => "/var/log/ecelerity/mainlog.cluster",
                        "acctlog" => "/var/log/ecelerity/acctlog.cluster",
                        _ => "/var/log/ecelerity/bouncelog.cluster",
                    }),
                )
            })
            .collect();
    assert_eq!(logs, expected_logs);

    let scopes: Vec<(&str, ReplicationType)> = c
        .replicate
        .iter()
        .map(|r| (r.name.as_str(), r.kind))
        .collect();
    assert_eq!(
        scopes,
        [
            ("inbound_cidr", ReplicationType::InboundCidr),
            ("outbound_cidr", ReplicationType::OutboundCidr),
            ("outbound_domains", ReplicationType::OutboundDomains),
            (
                "outbound_binding_domains",
                ReplicationType::OutboundBindingDomains
            ),
            (
                "shared_named_throttles",
                ReplicationType::SharedNamedThrottles
            ),
        ]
    );
    for r in &c.replicate {
        assert_eq!(r.max_delay, 1.0, "{}", r.name);
        assert_eq!(r.max_pending, 100, "{}", r.name);
        assert_eq!(r.max_size, -1, "{}", r.name);
        assert!(r.parameters.is_empty(), "{}", r.name);
        assert_eq!(r.binding_group, None, "{}", r.name);
    }

    assert_eq!(c.topology.len(), 1);
    let t = &c.topology[0];
    assert_eq!(t.network, None, "Topology \"\" is the catch-all");
    assert_eq!(t.interface, "eth1");
    assert_eq!(t.cidrmask, 32);

    let cfg = &loaded.config;
    assert_eq!(cfg.cluster_listener.0.port(), 4802);
    assert!(cfg.cluster_listener.0.ip().is_unspecified());
    assert_eq!(cfg.control.path, Path::new("/tmp/2025"));
    assert_eq!(cfg.control.mode, 0o600);
    assert!(cfg.bus.peers.is_empty());
    assert!(cfg.bindings.is_empty());
    assert!(cfg.listeners.is_empty());
    assert_eq!(cfg.manager_logs, None);
    assert!(loaded.ignored.is_empty(), "{:?}", loaded.ignored);
}

#[test]
fn reference_toml_equals_reference_conf() {
    let conf = load(Path::new(REFERENCE_CONF));
    let toml = load(Path::new(REFERENCE_TOML));
    assert_eq!(toml.format, Format::Toml);
    assert_eq!(toml.config, conf.config);
    assert_eq!(toml.listing(), conf.listing());
}

#[test]
fn reference_listing_marks_defaults_and_set_values() {
    let listing = load(Path::new(REFERENCE_CONF)).listing();
    let lines: Vec<&str> = listing.lines().map(str::trim).collect();
    for expected in [
        "cluster_group = \"ec_cluster\"",
        "control_group = \"ec_console\"",
        "heartbeats_per_sec = 1.0  # default",
        "view_broadcast_interval = 0  # default",
        "# log_group is not set",
        "Replicate \"inbound_cidr\" {",
        "Topology \"\" {",
        "interface = \"eth1\"",
        "cidrmask = 32",
    ] {
        assert!(
            lines.contains(&expected),
            "missing {expected:?} in:\n{listing}"
        );
    }
}

#[test]
fn mmove_dir_is_read_in_both_formats_and_unset_by_default() {
    assert_eq!(
        load(Path::new(REFERENCE_CONF)).config.cluster.mmove_dir,
        None
    );
    let toml = parse("[cluster]\nmmove_dir = \"/srv/mmove\"\n", Format::Toml);
    let conf = parse(
        "cluster { mmove_dir = \"/srv/mmove\" }\n",
        Format::Ecelerity,
    );
    assert_eq!(toml.config, conf.config);
    assert_eq!(
        toml.config.cluster.mmove_dir.as_deref(),
        Some(Path::new("/srv/mmove"))
    );
    for (text, format) in [
        ("[cluster]\nmmove_dir = \"\"\n", Format::Toml),
        ("cluster { mmove_dir = \"\" }\n", Format::Ecelerity),
    ] {
        let errors = parse_err(text, format).to_string();
        assert!(errors.contains("cluster.mmove_dir"), "{errors}");
    }
}

#[test]
fn reference_listing_round_trips() {
    assert_round_trip(&load(Path::new(REFERENCE_CONF)));
    assert_round_trip(&load(Path::new(REFERENCE_TOML)));
}

/// A configuration using every kind of scope and value eccluster reads.
const RICH: &str = r#"
cluster {
  nodename = "alpha"
  nodeaddr = "10.0.0.1"
  subcluster = "east"
  log_group = "ec_logger"
  heartbeats_per_sec = 2.5
  heartbeat_start_delay = 3
  arp_all_hosts = false
  quorum = "majority"
  debug_level = "INFO"
  auth_key_file = "/etc/eccluster/key"
  mmove_dir = "/var/spool/eccluster/mmove"
  logs = [
    mainlog = "/var/log/x/main"
    "odd key" = "/var/log/x/odd path"
  ]
  Replicate "cache1" {
    type = "cache"
    max_size = 4096
    parameters = "snapshot;connect;audit_series"
    max_delay = 0.25
    max_pending = 10
  }
  Replicate "ob" { type = "outbound_cidr" binding_group = "bg1" }
  Replicate "inbound_cidr" {}
  Topology "10.1.0.0/16" { interface = "eth0" cidrmask = 24 }
  Topology "2001:db8::/32" { interface = "eth2" cidrmask = 64 }
  Topology "" { interface = "eth1" }
}
msgc_server {
  peers = [
    alpha = "10.0.0.1"
    beta = "10.0.0.2:4900"
    gamma = "[2001:db8::3]:4802"
    delta = "2001:db8::4"
  ]
  port = 4810
  reconnect_interval = 7
}
msgcserver_listener { Listen "10.0.0.1:4809" {} }
ECCluster_Listener { Listen "10.0.0.1:4803" {} }
Control_Listener { Listen "/tmp/ecc-rich-console" { mode = "0660" } }
Binding "b1" {
  Bind_Address = "10.0.0.10"
  Enable_Duravip = true
  Duravip_Preference = "alpha"
  suspend_delivery = true
}
Binding_Group "grp" {
  Binding "b2" { Bind_Address = "10.0.0.11" Enable_Duravip = true }
  Binding "b3" { Bind_Address = "2001:db8::11" }
}
ESMTP_Listener {
  Listen "10.0.0.10:25" { Enable_Duravip = true Duravip_Preference = "beta" }
  Listen "10.0.0.12:587" { Duravip_Follow = "b1" }
  Listen "[2001:db8::10]:25" {}
}
Logs {
  logfile = "/var/log/ecc/%{n}"
  file_mode = "0600"
  max_open = 17
  control_cache = "/var/cache/ecc"
  Manager "mgr1" {
    Node "alpha" { Subscriber = ( "mgr1" "master" "extra" ) }
    Node "beta" {}
  }
  Manager "mgr2" {}
}
"#;

#[test]
fn rich_config_reads_what_it_says() {
    let loaded = parse(RICH, Format::Ecelerity);
    let cfg = &loaded.config;
    let c = &cfg.cluster;
    assert_eq!(c.nodename.as_deref(), Some("alpha"));
    assert_eq!(c.nodeaddr, Some("10.0.0.1".parse().unwrap()));
    assert_eq!(c.heartbeats_per_sec, 2.5);
    assert_eq!(c.quorum, QuorumMode::Majority);
    assert_eq!(
        c.mmove_dir.as_deref(),
        Some(Path::new("/var/spool/eccluster/mmove"))
    );
    assert_eq!(c.logs[1].0, "odd key");
    let cache = &c.replicate[0];
    assert_eq!(cache.kind, ReplicationType::Cache);
    assert_eq!(cache.max_size, 4096);
    assert_eq!(
        cache.parameters,
        [Metric::Snapshot, Metric::Connect, Metric::AuditSeries]
    );
    assert_eq!(c.replicate[1].binding_group.as_deref(), Some("bg1"));
    let v6 = &c.topology[1];
    assert_eq!(v6.network, Some(("2001:db8::".parse().unwrap(), 32)));
    assert_eq!(v6.cidrmask, 64);

    let peers: Vec<(&str, IpAddr, Option<u16>)> = cfg
        .bus
        .peers
        .iter()
        .map(|p| (p.name.as_str(), p.addr, p.port))
        .collect();
    assert_eq!(
        peers,
        [
            ("alpha", "10.0.0.1".parse().unwrap(), None),
            ("beta", "10.0.0.2".parse().unwrap(), Some(4900)),
            ("gamma", "2001:db8::3".parse().unwrap(), Some(4802)),
            ("delta", "2001:db8::4".parse().unwrap(), None),
        ]
    );
    assert_eq!(cfg.bus.port, 4810);
    assert_eq!(cfg.cluster_listener.0, "10.0.0.1:4803".parse().unwrap());
    assert_eq!(cfg.control.path, Path::new("/tmp/ecc-rich-console"));
    assert_eq!(cfg.control.mode, 0o660);

    let bindings: Vec<(&str, Option<&str>, bool)> = cfg
        .bindings
        .iter()
        .map(|b| (b.name.as_str(), b.group.as_deref(), b.enable_duravip))
        .collect();
    assert_eq!(
        bindings,
        [
            ("b1", None, true),
            ("b2", Some("grp"), true),
            ("b3", Some("grp"), false)
        ]
    );
    assert_eq!(cfg.bindings[0].duravip_preference.as_deref(), Some("alpha"));
    assert_eq!(cfg.listeners.len(), 3);
    assert!(cfg.listeners[0].enable_duravip);
    assert_eq!(cfg.listeners[0].duravip_preference.as_deref(), Some("beta"));
    assert_eq!(cfg.listeners[1].duravip_follow.as_deref(), Some("b1"));

    let logs = cfg.manager_logs.as_ref().expect("Logs scope");
    assert_eq!(logs.file_mode, 0o600);
    assert_eq!(logs.max_open, 17);
    assert_eq!(logs.managers.len(), 2);
    assert_eq!(
        logs.managers[0].nodes,
        [
            (
                "alpha".to_string(),
                vec!["mgr1".to_string(), "master".into(), "extra".into()]
            ),
            (
                "beta".to_string(),
                vec!["mgr1".to_string(), "master".into()]
            ),
        ]
    );
    assert!(
        loaded
            .ignored
            .iter()
            .any(|i| i.contains("suspend_delivery")),
        "{:?}",
        loaded.ignored
    );
}

#[test]
fn rich_config_listing_round_trips() {
    assert_round_trip(&parse(RICH, Format::Ecelerity));
}

#[test]
fn overridden_config_listing_round_trips() {
    let mut loaded = load(Path::new(REFERENCE_TOML));
    loaded
        .set("cluster Replicate cache1 type", "\"cache\"")
        .unwrap();
    loaded
        .set("cluster Replicate cache1 max_size", "100")
        .unwrap();
    loaded
        .set(
            "msgc_server peers",
            "[ a = \"10.0.0.1\" b = \"10.0.0.2:4803\" ]",
        )
        .unwrap();
    assert_round_trip(&loaded);
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

#[test]
fn misspelled_option_names_file_line_column_option_and_suggestion() {
    let dir = TempDir::new("misspelled");
    let conf = dir.write(
        "bad.conf",
        "# a comment\ncluster {\n  cluster_group = \"ec_cluster\"\n    hearbeats_per_sec = 4\n}\n",
    );
    let toml = dir.write(
        "bad.toml",
        "# a comment\n[cluster]\ncluster_group = \"ec_cluster\"\nhearbeats_per_sec = 4\n",
    );
    for (path, line, col) in [(&conf, 4, 5), (&toml, 4, 1)] {
        let errors = LoadedConfig::load(path).expect_err("misspelling must be rejected");
        let e = single(&errors);
        assert_eq!(e.file, path.display().to_string());
        assert_eq!((e.line, e.col), (line, col), "{e}");
        assert_eq!(e.option.as_deref(), Some("cluster.hearbeats_per_sec"));
        assert_eq!(e.suggestion.as_deref(), Some("heartbeats_per_sec"));
        let text = e.to_string();
        assert!(
            text.starts_with(&format!("{}:{line}:{col}: ", path.display())),
            "{text}"
        );
        assert!(text.contains("did you mean 'heartbeats_per_sec'"), "{text}");
        assert!(text.contains("unknown option"), "{text}");
    }
}

#[test]
fn wrong_type_is_an_error_at_the_value() {
    let errors = parse_err(
        "cluster {\n  heartbeats_per_sec = \"fast\"\n}\n",
        Format::Ecelerity,
    );
    let e = single(&errors);
    assert_eq!((e.line, e.col), (2, 24), "{e}");
    assert_eq!(e.option.as_deref(), Some("cluster.heartbeats_per_sec"));
    assert!(e.message.contains("expected a number"), "{e}");
    assert!(e.message.contains("fast"), "{e}");

    let errors = parse_err("[cluster]\narp_all_hosts = 3\n", Format::Toml);
    let e = single(&errors);
    assert_eq!((e.line, e.col), (2, 17), "{e}");
    assert!(e.message.contains("true or false"), "{e}");

    // A list where a single value belongs.
    let errors = parse_err("cluster { cluster_group = ( a b ) }", Format::Ecelerity);
    let e = single(&errors);
    assert!(e.message.contains("found a list"), "{e}");
}

#[test]
fn out_of_range_values_are_errors() {
    let errors = parse_err(
        "cluster {\n  heartbeats_per_sec = 0\n}\n",
        Format::Ecelerity,
    );
    let e = single(&errors);
    assert_eq!((e.line, e.col), (2, 24), "{e}");
    assert!(e.message.contains("greater than 0"), "{e}");

    let errors = parse_err("[cluster]\nheartbeats_per_sec = 0\n", Format::Toml);
    assert!(single(&errors).message.contains("greater than 0"));

    let errors = parse_err(
        "cluster {\n  Topology \"\" {\n    interface = eth1\n    cidrmask = 33\n  }\n}\n",
        Format::Ecelerity,
    );
    let e = single(&errors);
    assert_eq!((e.line, e.col), (4, 16), "{e}");
    assert_eq!(e.option.as_deref(), Some("cluster.Topology \"\".cidrmask"));
    assert!(e.message.contains("at most 32"), "{e}");

    // IPv6 blocks allow up to 128.
    parse(
        "cluster { Topology \"2001:db8::/32\" { interface = eth1 cidrmask = 64 } }",
        Format::Ecelerity,
    );
    let errors = parse_err(
        "cluster { Topology \"2001:db8::/32\" { interface = eth1 cidrmask = 129 } }",
        Format::Ecelerity,
    );
    assert!(single(&errors).message.contains("at most 128"));
    let errors = parse_err(
        "cluster { Topology \"10.0.0.0/33\" { interface = eth1 } }",
        Format::Ecelerity,
    );
    assert!(single(&errors).message.contains("0 to 32"), "{errors}");
}

#[test]
fn duplicate_option_is_an_error_naming_both_places() {
    let errors = parse_err(
        "cluster {\n  if_down_limit = 4\n  if_down_limit = 5\n}\n",
        Format::Ecelerity,
    );
    let e = single(&errors);
    assert_eq!((e.line, e.col), (3, 3), "{e}");
    assert_eq!(e.option.as_deref(), Some("cluster.if_down_limit"));
    assert!(e.message.contains("more than once"), "{e}");
    assert!(e.message.contains("line 2, col 3"), "{e}");
}

#[test]
fn duplicate_named_scope_is_an_error() {
    let errors = parse_err(
        "cluster {\n  Replicate \"inbound_cidr\" {}\n  Replicate \"inbound_cidr\" { max_delay = 2 }\n}\n",
        Format::Ecelerity,
    );
    let e = single(&errors);
    assert_eq!((e.line, e.col), (3, 3), "{e}");
    assert!(e.message.contains("duplicate scope"), "{e}");
    assert!(e.message.contains("line 2, col 3"), "{e}");
    assert!(
        e.option.as_deref().unwrap_or("").contains("inbound_cidr"),
        "{e}"
    );
}

#[test]
fn a_following_listener_must_follow_a_duravip_binding_from_an_address_of_its_own() {
    let base = "Binding \"b1\" { Bind_Address = \"10.0.0.10\" Enable_Duravip = true }\nBinding \"plain\" { Bind_Address = \"10.0.0.20\" }\n";
    let cases = [
        (
            "Listen \"10.0.0.12:25\" { Duravip_Follow = \"nosuch\" }",
            "names no binding with Enable_Duravip",
        ),
        (
            "Listen \"10.0.0.12:25\" { Duravip_Follow = \"plain\" }",
            "names no binding with Enable_Duravip",
        ),
        (
            "Listen \"10.0.0.10:25\" { Duravip_Follow = \"b1\" }",
            "needs an address of its own",
        ),
        (
            "Listen \"*:25\" { Duravip_Follow = \"b1\" }",
            "wildcard address",
        ),
    ];
    for (listen, expected) in cases {
        let text = format!("{base}ESMTP_Listener {{\n  {listen}\n}}\n");
        let errors = parse_err(&text, Format::Ecelerity);
        let e = single(&errors);
        assert_eq!((e.line, e.col), (4, 3), "{e}");
        assert!(e.message.contains(expected), "{listen}: {e}");
    }
    for ok in ["Duravip_Follow = \"b1\"", "Duravip_Follow = \"10.0.0.10\""] {
        let text = format!("{base}ESMTP_Listener {{ Listen \"10.0.0.12:25\" {{ {ok} }} }}\n");
        parse(&text, Format::Ecelerity);
    }
}

#[test]
fn duplicate_singleton_scope_is_an_error() {
    let errors = parse_err(
        "cluster {\n  if_down_limit = 4\n}\ncluster {\n  if_down_limit = 5\n}\n",
        Format::Ecelerity,
    );
    let e = single(&errors);
    assert_eq!((e.line, e.col), (4, 1), "{e}");
    assert_eq!(e.option.as_deref(), Some("cluster"));
    assert!(e.message.contains("more than once"), "{e}");
}

#[test]
fn include_cycle_is_an_error() {
    let dir = TempDir::new("cycle");
    let a = dir.write("a.conf", "include \"b.conf\"\n");
    dir.write("b.conf", "cluster { }\n  include \"a.conf\"\n");
    let errors = LoadedConfig::load(&a).expect_err("a cycle must be rejected");
    let e = single(&errors);
    assert!(e.message.contains("include cycle"), "{e}");
    assert!(
        e.message.contains("a.conf") && e.message.contains("b.conf"),
        "{e}"
    );
    assert!(
        e.file.ends_with("b.conf"),
        "the error is at the directive: {e}"
    );
    assert_eq!((e.line, e.col), (2, 3), "{e}");
}

#[test]
fn missing_include_is_an_error() {
    let dir = TempDir::new("missing-include");
    let main = dir.write("main.conf", "cluster {}\ninclude \"nope.conf\"\n");
    let errors = LoadedConfig::load(&main).expect_err("a missing include must be rejected");
    let e = single(&errors);
    assert_eq!(e.file, main.display().to_string());
    assert_eq!((e.line, e.col), (2, 1), "{e}");
    assert!(e.message.contains("cannot include"), "{e}");
    assert!(e.message.contains("nope.conf"), "{e}");
}

#[test]
fn includes_are_read_relative_to_the_including_file() {
    let dir = TempDir::new("include");
    std::fs::create_dir_all(dir.0.join("conf.d")).unwrap();
    dir.write(
        "conf.d/10-a.conf",
        "Binding \"x\" { Bind_Address = \"10.0.0.1\" }\n",
    );
    dir.write("conf.d/20-b.conf", "cluster { if_down_limit = 9 }\n");
    let main = dir.write("main.conf", "include conf.d\n");
    let loaded = load(&main);
    assert_eq!(loaded.config.cluster.if_down_limit, 9);
    assert_eq!(loaded.config.bindings[0].name, "x");
    assert_eq!(loaded.files().len(), 3);
}

#[test]
fn missing_file_is_an_error_naming_it() {
    let dir = TempDir::new("missing");
    let path = dir.0.join("missing.toml");
    let errors = LoadedConfig::load(&path).expect_err("missing file");
    let e = single(&errors);
    assert_eq!(e.file, path.display().to_string());
    assert!(e.message.contains("cannot read"), "{e}");
}

#[test]
fn several_errors_are_all_reported_in_order() {
    let text = "\
cluster {
  heartbeats_per_sec = 0
  nodenme = \"a\"
  if_down_limit = x
  Topology \"\" { interface = eth1 cidrmask = 40 }
}
Control_Listener { Listen \"/tmp/x\" { mode = \"999\" } }
";
    let errors = parse_err(text, Format::Ecelerity);
    let lines: Vec<u32> = errors.0.iter().map(|e| e.line).collect();
    assert_eq!(lines, [2, 3, 4, 5, 7], "{errors}");
    let e = &errors.0[1];
    assert_eq!(e.suggestion.as_deref(), Some("nodename"), "{e}");
    assert!(errors.0[4].message.contains("octal"), "{errors}");
    assert_eq!(errors.to_string().lines().count(), 5);
}

#[test]
fn syntax_errors_have_a_place() {
    let errors = parse_err("cluster {\n  a = \n}\n", Format::Ecelerity);
    let e = single(&errors);
    assert_eq!(e.file, "<string>");
    assert!(e.line >= 2, "{e}");
    let errors = parse_err("[cluster\n", Format::Toml);
    assert_eq!(single(&errors).line, 1);
    let errors = parse_err("cluster {\n", Format::Ecelerity);
    assert!(single(&errors).line >= 1);
}

// ---------------------------------------------------------------------------
// Host-owned scopes
// ---------------------------------------------------------------------------

#[test]
fn unknown_options_in_host_scopes_are_ignored_and_listed() {
    let loaded = parse(
        "Binding \"x\" {\n  suspend_delivery = true\n  Bind_Address = \"10.0.0.1\"\n}\nESMTP_Listener { Listen \"*:25\" { concurrency = 20 } SMTP_Extensions = ( \"ENHANCEDSTATUSCODES\" ) }\n",
        Format::Ecelerity,
    );
    assert_eq!(loaded.config.bindings.len(), 1);
    assert!(
        loaded
            .ignored
            .iter()
            .any(|i| i.contains("Binding \"x\"") && i.contains("suspend_delivery")),
        "{:?}",
        loaded.ignored
    );
    assert!(
        loaded.ignored.iter().any(|i| i.contains("concurrency")),
        "{:?}",
        loaded.ignored
    );
    assert!(
        loaded.ignored.iter().any(|i| i.contains("SMTP_Extensions")),
        "{:?}",
        loaded.ignored
    );
}

#[test]
fn near_miss_in_host_scope_is_an_error_with_suggestion() {
    let errors = parse_err(
        "Binding \"x\" {\n  Bind_Address = \"10.0.0.1\"\n  Enable_Duravp = true\n}\n",
        Format::Ecelerity,
    );
    let e = single(&errors);
    assert_eq!((e.line, e.col), (3, 3), "{e}");
    assert_eq!(e.suggestion.as_deref(), Some("Enable_Duravip"), "{e}");
    assert!(
        e.to_string().contains("did you mean 'Enable_Duravip'"),
        "{e}"
    );

    let errors = parse_err("[binding.x]\nenable_duravp = true\n", Format::Toml);
    assert_eq!(
        single(&errors).suggestion.as_deref(),
        Some("Enable_Duravip")
    );
}

#[test]
fn unknown_top_level_module_scopes_are_ignored() {
    let loaded = parse(
        "ec_logger \"ec_logger1\" {\n  mainlog = \"/var/log/ecelerity/mainlog.ec\"\n}\nspool_mode = \"transactional\"\ncluster { nodename = \"a\" }\n",
        Format::Ecelerity,
    );
    assert_eq!(loaded.config.cluster.nodename.as_deref(), Some("a"));
    assert!(
        loaded.ignored.iter().any(|i| i.contains("ec_logger")),
        "{:?}",
        loaded.ignored
    );
    assert!(
        loaded.ignored.iter().any(|i| i.contains("spool_mode")),
        "{:?}",
        loaded.ignored
    );
}

#[test]
fn unknown_option_in_our_scope_is_always_an_error() {
    let errors = parse_err("cluster {\n  frobnicate = 1\n}\n", Format::Ecelerity);
    let e = single(&errors);
    assert_eq!(e.suggestion, None);
    assert!(e.message.contains("unknown option in cluster"), "{e}");
    assert!(
        e.message.contains("heartbeats_per_sec"),
        "lists the valid names: {e}"
    );
}

// ---------------------------------------------------------------------------
// Policy scripts
// ---------------------------------------------------------------------------

fn policy_script(name: &str, path: &str) -> PolicyScript {
    PolicyScript {
        name: name.into(),
        path: path.into(),
    }
}

#[test]
fn policy_scripts_come_from_the_policy_scope_and_the_scriptlet_stanza() {
    let conf = parse(
        "policy {\n  scripts = ( \"lua/set_binding.lua\" )\n  instruction_budget = 5000\n  memory_limit = \"8M\"\n}\n\
         scriptlet \"scriptlet\" {\n\
           script \"routes\" { source = \"policy.recipient_domain_groups\" }\n\
           script \"abs\" { source = \"/etc/ecelerity/x.lua\" }\n\
         }\n",
        Format::Ecelerity,
    );
    let expected = PolicyConfig {
        scripts: vec![
            policy_script("set_binding", "lua/set_binding.lua"),
            policy_script("routes", "policy/recipient_domain_groups.lua"),
            policy_script("abs", "/etc/ecelerity/x.lua"),
        ],
        instruction_budget: 5000,
        memory_limit: 8 << 20,
    };
    assert_eq!(conf.config.policy, expected);
    assert_round_trip(&conf);
    let toml = parse(
        "[policy]\nscripts = [\"lua/set_binding.lua\"]\ninstruction_budget = 5000\nmemory_limit = 8388608\n\
         [scriptlet.scriptlet.script.routes]\nsource = \"policy/recipient_domain_groups\"\n\
         [scriptlet.scriptlet.script.abs]\nsource = \"/etc/ecelerity/x.lua\"\n",
        Format::Toml,
    );
    assert_eq!(toml.config.policy, expected);
    let defaults = parse("", Format::Ecelerity).config.policy;
    assert_eq!(
        (
            defaults.scripts.len(),
            defaults.instruction_budget,
            defaults.memory_limit
        ),
        (0, 1_000_000, 16 << 20)
    );
}

#[test]
fn policy_mistakes_are_errors_naming_the_option() {
    let cases = [
        (
            "policy { instruction_budgets = 5000 }",
            "policy.instruction_budgets",
            "unknown option in policy",
        ),
        (
            "policy { memory_limit = \"lots\" }",
            "policy.memory_limit",
            "expected a size in bytes",
        ),
        (
            "policy { memory_limit = \"16K\" }",
            "policy.memory_limit",
            "must be at least \"256K\"",
        ),
        (
            "policy { instruction_budget = 10 }",
            "policy.instruction_budget",
            "must be at least 1000",
        ),
        (
            "scriptlet \"scriptlet\" { script \"x\" { } }",
            "scriptlet \"scriptlet\".script \"x\".source",
            "a script needs a source",
        ),
        (
            "policy { scripts = ( \"a/p.lua\" \"b/p.lua\" ) }",
            "policy",
            "two policy scripts are named 'p'",
        ),
    ];
    for (text, option, message) in cases {
        let errors = parse_err(text, Format::Ecelerity);
        let e = single(&errors);
        assert_eq!(e.option.as_deref(), Some(option), "{text}: {e}");
        assert!(e.message.contains(message), "{text}: {e}");
    }
    let errors = parse_err("policy { instruction_budgets = 5000 }", Format::Ecelerity);
    assert_eq!(
        single(&errors).suggestion.as_deref(),
        Some("instruction_budget")
    );
}

// ---------------------------------------------------------------------------
// Overrides
// ---------------------------------------------------------------------------

fn listing_line<'a>(listing: &'a str, prefix: &str) -> &'a str {
    listing
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting {prefix:?} in:\n{listing}"))
}

#[test]
fn set_changes_a_value_and_the_listing() {
    let mut loaded = load(Path::new(REFERENCE_CONF));
    assert_eq!(
        listing_line(&loaded.listing(), "heartbeats_per_sec ="),
        "heartbeats_per_sec = 1.0  # default"
    );
    loaded.set("cluster heartbeats_per_sec", "4").unwrap();
    assert_eq!(loaded.config.cluster.heartbeats_per_sec, 4.0);
    assert_eq!(
        listing_line(&loaded.listing(), "heartbeats_per_sec ="),
        "heartbeats_per_sec = 4.0"
    );
    // Setting again replaces rather than duplicating.
    loaded.set("cluster heartbeats_per_sec", "2").unwrap();
    assert_eq!(loaded.config.cluster.heartbeats_per_sec, 2.0);
}

#[test]
fn set_with_a_misspelling_fails_and_changes_nothing() {
    let mut loaded = load(Path::new(REFERENCE_CONF));
    let before_config = loaded.config.clone();
    let before_listing = loaded.listing();
    let errors = loaded
        .set("cluster hearbeats_per_sec", "4")
        .expect_err("misspelled override");
    let text = errors.to_string();
    assert!(
        errors
            .0
            .iter()
            .any(|e| e.suggestion.as_deref() == Some("heartbeats_per_sec")),
        "{text}"
    );
    assert!(text.contains("did you mean 'heartbeats_per_sec'"), "{text}");
    assert_eq!(loaded.config, before_config);
    assert_eq!(loaded.listing(), before_listing);

    // A bad value is refused the same way.
    assert!(loaded.set("cluster heartbeats_per_sec", "0").is_err());
    assert_eq!(loaded.config, before_config);
    // The configuration still accepts good overrides afterwards.
    loaded.set("cluster heartbeats_per_sec", "3").unwrap();
    assert_eq!(loaded.config.cluster.heartbeats_per_sec, 3.0);
}

#[test]
fn set_in_a_named_scope_works_for_both_formats() {
    for path in [REFERENCE_CONF, REFERENCE_TOML] {
        let mut loaded = load(Path::new(path));
        loaded
            .set("cluster Replicate inbound_cidr max_delay", "2.5")
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        let r = &loaded.config.cluster.replicate;
        assert_eq!(r.len(), 5, "{path}: no scope was added");
        assert_eq!(r[0].name, "inbound_cidr");
        assert_eq!(r[0].max_delay, 2.5, "{path}");
        assert_eq!(r[1].max_delay, 1.0, "{path}: only the named scope changes");
        assert!(
            loaded.listing().contains("max_delay = 2.5\n"),
            "{path}:\n{}",
            loaded.listing()
        );
    }
}

#[test]
fn set_creates_a_named_scope_that_does_not_exist() {
    for path in [REFERENCE_CONF, REFERENCE_TOML] {
        let mut loaded = load(Path::new(path));
        loaded
            .set("cluster Replicate cache1 type", "\"cache\"")
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        let r = &loaded.config.cluster.replicate;
        assert_eq!(r.len(), 6, "{path}");
        let cache = r.iter().find(|r| r.name == "cache1").expect("cache1");
        assert_eq!(cache.kind, ReplicationType::Cache);
        loaded
            .set("cluster Replicate cache1 max_size", "2048")
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        let cache = loaded
            .config
            .cluster
            .replicate
            .iter()
            .find(|r| r.name == "cache1")
            .unwrap();
        assert_eq!(cache.max_size, 2048);
        assert_eq!(cache.kind, ReplicationType::Cache, "earlier override kept");
    }
    // And singleton scopes and listener paths.
    let mut loaded = load(Path::new(REFERENCE_CONF));
    loaded
        .set("Control_Listener Listen /tmp/ecc-x mode", "\"0640\"")
        .unwrap();
    assert_eq!(loaded.config.control.path, Path::new("/tmp/ecc-x"));
    assert_eq!(loaded.config.control.mode, 0o640);
}

// ---------------------------------------------------------------------------
// Identity
// ---------------------------------------------------------------------------

fn node(text: &str) -> Node {
    Node::new(parse(text, Format::Toml).config)
}

#[test]
fn identity_from_option_env_and_defaults() {
    let _guard = env_lock();
    let saved: Vec<(&str, Option<std::ffi::OsString>)> = ["EC_NODE_NAME", "EC_SUB_CLUSTER"]
        .into_iter()
        .map(|k| (k, std::env::var_os(k)))
        .collect();
    // SAFETY: every test in this binary that reads or writes the environment
    // holds ENV_LOCK, so no other thread touches it concurrently.
    #[allow(unsafe_code)]
    unsafe {
        std::env::set_var("EC_NODE_NAME", "fromenv");
        std::env::remove_var("EC_SUB_CLUSTER");
    }

    let peers = "[msgc_server.peers]\nfromenv = \"10.0.0.5\"\nopt = \"10.0.0.6\"\n";
    let with_option = node(&format!("[cluster]\nnodename = \"opt\"\n{peers}"))
        .identity()
        .unwrap();
    assert_eq!(with_option.nodename, "opt", "the option beats EC_NODE_NAME");
    assert_eq!(with_option.nodename_origin, Origin::Option);
    assert_eq!(with_option.subcluster, "default");
    assert_eq!(with_option.subcluster_origin, Origin::Default);
    assert_eq!(with_option.nodeaddr, "10.0.0.6".parse::<IpAddr>().unwrap());

    let from_env = node(peers).identity().unwrap();
    assert_eq!(from_env.nodename, "fromenv");
    assert_eq!(from_env.nodename_origin, Origin::Environment);
    assert_eq!(from_env.nodeaddr, "10.0.0.5".parse::<IpAddr>().unwrap());

    // SAFETY: as above.
    #[allow(unsafe_code)]
    unsafe {
        std::env::set_var("EC_SUB_CLUSTER", "west");
    }
    let sub_env = node(peers).identity().unwrap();
    assert_eq!(sub_env.subcluster, "west");
    assert_eq!(sub_env.subcluster_origin, Origin::Environment);
    let sub_opt = node(&format!("[cluster]\nsubcluster = \"east\"\n{peers}"))
        .identity()
        .unwrap();
    assert_eq!(sub_opt.subcluster, "east");

    // SAFETY: as above.
    #[allow(unsafe_code)]
    unsafe {
        for (k, v) in saved {
            match v {
                Some(v) => std::env::set_var(k, v),
                None => std::env::remove_var(k),
            }
        }
    }
}

#[test]
fn nodeaddr_comes_from_the_peers_map() {
    let _guard = env_lock();
    let id = node(
        "[cluster]\nnodename = \"beta\"\n[msgc_server.peers]\nalpha = \"10.0.0.1\"\nbeta = \"10.0.0.2:4900\"\n[eccluster_listener.listen.\"*:4811\"]\n",
    )
    .identity()
    .unwrap();
    assert_eq!(id.nodeaddr, "10.0.0.2".parse::<IpAddr>().unwrap());
    assert_eq!(id.nodeaddr_origin, Origin::Peers);
    assert_eq!(id.cluster_port, 4811);
    assert_eq!(id.service_addr().to_string(), "10.0.0.2:4811");

    // The option beats the peers map.
    let id = node(
        "[cluster]\nnodename = \"beta\"\nnodeaddr = \"10.9.9.9\"\n[msgc_server.peers]\nbeta = \"10.0.0.2\"\n",
    )
    .identity()
    .unwrap();
    assert_eq!(id.nodeaddr, "10.9.9.9".parse::<IpAddr>().unwrap());
    assert_eq!(id.nodeaddr_origin, Origin::Option);
}

#[test]
fn loopback_is_refused_when_other_peers_are_not_on_loopback() {
    let _guard = env_lock();
    let err = node(
        "[cluster]\nnodename = \"a\"\n[msgc_server.peers]\na = \"127.0.0.1\"\nb = \"10.0.0.2\"\n",
    )
    .identity()
    .expect_err("loopback with a non-loopback peer");
    assert!(matches!(err, NodeError::Identity(_)), "{err:?}");
    assert!(err.to_string().contains("loopback"), "{err}");

    // The same via the option.
    let err = node(
        "[cluster]\nnodename = \"a\"\nnodeaddr = \"::1\"\n[msgc_server.peers]\nb = \"10.0.0.2\"\n",
    )
    .identity()
    .expect_err("loopback option with a non-loopback peer");
    assert!(err.to_string().contains("loopback"), "{err}");

    // An all-loopback cluster is fine.
    let id = node(
        "[cluster]\nnodename = \"a\"\n[msgc_server.peers]\na = \"127.0.0.1\"\nb = \"127.0.0.2\"\n",
    )
    .identity()
    .unwrap();
    assert!(id.nodeaddr.is_loopback());
}

#[test]
fn nodename_hooks_run_first_to_last_and_override() {
    let _guard = env_lock();
    let dir = TempDir::new("hooks");
    let socket = dir.0.join("console");
    let n = node(&format!(
        "[cluster]\nnodename = \"base\"\nnodeaddr = \"127.0.0.1\"\n\
         [eccluster_listener.listen.\"127.0.0.1:0\"]\n[control_listener.listen.{:?}]\n",
        socket.display().to_string()
    ));
    n.register_nodename_hook(HookOrder::Last, Box::new(|v| Some(format!("{v}-last1"))))
        .unwrap();
    n.register_nodename_hook(HookOrder::First, Box::new(|v| Some(format!("{v}-first"))))
        .unwrap();
    n.register_nodename_hook(HookOrder::Last, Box::new(|v| Some(format!("{v}-last2"))))
        .unwrap();
    // A hook that returns None leaves the value alone.
    n.register_nodename_hook(HookOrder::Last, Box::new(|_| None))
        .unwrap();
    let id = n.identity().unwrap();
    assert_eq!(id.nodename, "base-first-last1-last2");
    assert_eq!(id.nodename_origin, Origin::Hook);

    n.start().expect("start");
    assert_eq!(n.identity().unwrap().nodename, "base-first-last1-last2");
    let err = n
        .register_nodename_hook(HookOrder::First, Box::new(|_| Some("late".into())))
        .expect_err("hooks cannot be registered while running");
    assert!(matches!(err, NodeError::InvalidState(_)), "{err:?}");
    assert!(
        n.register_subcluster_hook(HookOrder::Last, Box::new(|_| Some("late".into())))
            .is_err()
    );
    assert_eq!(
        n.identity().unwrap().nodename,
        "base-first-last1-last2",
        "a refused hook changes nothing"
    );
    assert_eq!(
        n.console_exec("cluster nodename").unwrap().trim(),
        "base-first-last1-last2"
    );
    n.stop();
    assert!(!socket.exists(), "stop removes the console socket");
}

#[test]
fn a_hook_returning_an_invalid_name_is_an_identity_error() {
    let _guard = env_lock();
    let n = node("[cluster]\nnodename = \"base\"\nnodeaddr = \"10.0.0.1\"\n");
    n.register_nodename_hook(HookOrder::First, Box::new(|_| Some("has space".into())))
        .unwrap();
    let err = n.identity().expect_err("a name with a space");
    assert!(matches!(err, NodeError::Identity(_)), "{err:?}");
}

#[test]
fn a_logfile_template_the_aggregator_cannot_expand_is_refused_by_name() {
    let errors = parse_err(
        "Logs {\n  logfile = \"/var/log/ecc/%Q/%{n}\"\n}\n",
        Format::Ecelerity,
    );
    let e = single(&errors);
    assert_eq!(e.line, 2, "{e}");
    assert!(
        e.option.as_deref().is_some_and(|o| o.ends_with("logfile")),
        "{e}"
    );
    assert!(e.message.contains("%Q"), "{e}");
}
