//! Replicated gauge tables between real nodes: three nodes in this process
//! on loopback, talking over their real sockets, each counting on its own
//! shared table while every node's cluster-wide view converges.

mod common;
use common::{TempDir, free_port, wait_until};

use eccluster::node::Node;
use eccluster::shared::Scope;
use eccluster::shared::metrics::{Replication, SeriesType};

const NAMES: [&str; 3] = ["r1", "r2", "r3"];

const COUNTS: &str = "[cluster.replicate.outbound_domains]\nmax_delay = 0.2\n\
                      [cluster.replicate.inbound_cidr]\nmax_delay = 0.2\n";

/// Starts node `name` of a cluster on `ports`, replicating what `scopes`
/// (TOML tables under `cluster.replicate`) configures; `r3` is a manager
/// when `scopes` replicates `eccmgr_metrics`.
fn start(dir: &TempDir, name: &str, ports: &[(&str, u16)], scopes: &str) -> Node {
    let kind = if name == "r3" && scopes.contains("eccmgr_metrics") {
        "Manager"
    } else {
        "Momentum"
    };
    let port = ports.iter().find(|(n, _)| *n == name).unwrap().1;
    let peers: String = ports
        .iter()
        .map(|(n, p)| format!("{n} = \"127.0.0.1:{p}\"\n"))
        .collect();
    let text = format!(
        "[cluster]\nnodename = \"{name}\"\nnode_type = \"{kind}\"\n\
         heartbeats_per_sec = 4\nheartbeat_start_delay = 0\n\
         {scopes}\
         [msgc_server.peers]\n{peers}\
         [eccluster_listener.listen.\"127.0.0.1:{port}\"]\n\
         [control_listener.listen.\"{socket}\"]\n",
        socket = dir.0.join(format!("{name}.sock")).display(),
    );
    common::started_node(&text)
}

/// The three nodes, started and all members of one view.
fn cluster(dir: &TempDir, scopes: &str) -> Vec<Node> {
    let ports: Vec<(&str, u16)> = NAMES.iter().map(|n| (*n, free_port())).collect();
    let nodes: Vec<Node> = NAMES
        .iter()
        .map(|n| start(dir, n, &ports, scopes))
        .collect();
    wait_until("three members everywhere", || {
        nodes.iter().all(|n| {
            n.console_exec("cluster membership")
                .is_ok_and(|m| NAMES.iter().all(|name| m.contains(name)))
        })
    });
    nodes
}

#[test]
fn every_node_sees_the_cluster_wide_counts_and_a_stopped_node_leaves_them() {
    let dir = TempDir::new("replication");
    let nodes = cluster(&dir, COUNTS);
    let tables: Vec<_> = nodes
        .iter()
        .map(|n| n.shared_gauge("outbound_domains").expect("configured"))
        .collect();
    assert!(nodes[0].shared_gauge("outbound_cidr").is_none());
    assert!(
        nodes[0].shared_gauge("inbound_cidr").is_none(),
        "a cidrtree"
    );
    let trees: Vec<_> = nodes
        .iter()
        .map(|n| n.shared_cidr("inbound_cidr").expect("configured"))
        .collect();
    let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    for (i, tree) in trees.iter().enumerate() {
        for _ in 0..=i {
            tree.increment(ip("10.0.0.103"));
        }
        tree.increment(ip(&format!("10.0.{i}.1")));
    }
    wait_until("every node counts 9 in 10/8 and 6 for 10.0.0.103", || {
        trees.iter().all(|t| {
            t.count(ip("10.0.0.0"), 8, Scope::Global) == 9
                && t.count(ip("10.0.0.103"), 32, Scope::Global) == 6
        })
    });

    tables[0].add(b"aol.com", 1);
    tables[0].add(b"aol.com", 1);
    tables[1].add(b"aol.com", 3);
    tables[2].add(b"gmx.de", 1);
    let converged = |aol: i64, gmx: i64| {
        tables.iter().all(|t| {
            t.get(b"aol.com", Scope::Global) == aol && t.get(b"gmx.de", Scope::Global) == gmx
        })
    };
    wait_until("every node counts 5 for aol.com and 1 for gmx.de", || {
        converged(5, 1)
    });
    assert_eq!(tables[0].get(b"aol.com", Scope::Local), 2);
    assert_eq!(tables[1].get(b"aol.com", Scope::Local), 3);

    // The console, in the reference's formats.
    let pid = std::process::id();
    assert_eq!(
        nodes[0].console_exec("cluster shared list").unwrap(),
        "Currently managed objects:\n                  inbound_cidr [lazy, cidrtree w/ snapshots]\n              outbound_domains [lazy, gauge table w/ snapshots]\n"
    );
    let cidr_row = |n: i64, prefix: &str| format!("{n:>7}{:25}{prefix}\n", "");
    assert_eq!(
        nodes[1]
            .console_exec("cluster shared show inbound_cidr")
            .unwrap(),
        format!(
            "lazy, snapped cidrtree 'inbound_cidr', view 'global'\n{}{}{}{}{}{}{}{}",
            cidr_row(9, "10.0.0.0/8"),
            cidr_row(9, "10.0.0.0/16"),
            cidr_row(7, "10.0.0.0/24"),
            cidr_row(1, "10.0.0.1/32"),
            cidr_row(6, "10.0.0.103/32"),
            cidr_row(1, "10.0.1.0/24"),
            cidr_row(1, "10.0.1.1/32"),
            cidr_row(1, "10.0.2.0/24"),
        ) + &cidr_row(1, "10.0.2.1/32")
    );
    assert_eq!(
        nodes[0]
            .console_exec("cluster shared show inbound_cidr from r3")
            .unwrap(),
        format!(
            "lazy, snapped cidrtree 'inbound_cidr', view '#ec1-{pid:05}#r3'\n{}{}{}{}{}{}",
            cidr_row(4, "10.0.0.0/8"),
            cidr_row(4, "10.0.0.0/16"),
            cidr_row(3, "10.0.0.0/24"),
            cidr_row(3, "10.0.0.103/32"),
            cidr_row(1, "10.0.2.0/24"),
            cidr_row(1, "10.0.2.1/32"),
        )
    );
    let row = |key: &str, n: i64| format!("{:>61}{n:>13}\n", format!("{key}:"));
    assert_eq!(
        nodes[0]
            .console_exec("cluster shared show outbound_domains")
            .unwrap(),
        format!(
            "lazy, snapped gauge table 'outbound_domains', view 'global'\n{}{}",
            row("aol.com", 5),
            row("gmx.de", 1)
        )
    );
    for (from, expected) in [("r1", row("aol.com", 2)), ("r2", row("aol.com", 3))] {
        assert_eq!(
            nodes[0]
                .console_exec(&format!("cluster shared show outbound_domains from {from}"))
                .unwrap(),
            format!(
                "lazy, snapped gauge table 'outbound_domains', view '#ec1-{pid:05}#{from}'\n{expected}"
            )
        );
    }
    let e = nodes[0]
        .console_exec("cluster shared show nosuch")
        .unwrap_err();
    assert!(e.contains("no replicated object 'nosuch'"), "{e}");

    // Connections close: the counts follow.
    tables[1].add(b"aol.com", -3);
    wait_until("aol.com back to 2 everywhere", || converged(2, 1));

    // r3 stops: its connections are not connections any more.
    nodes[2].stop();
    wait_until("gmx.de gone from the survivors", || {
        tables[..2]
            .iter()
            .all(|t| t.get(b"gmx.de", Scope::Global) == 0 && t.get(b"aol.com", Scope::Global) == 2)
    });
    wait_until("r3's connections gone from the survivors' trees", || {
        trees[..2]
            .iter()
            .all(|t| t.count(ip("10.0.0.0"), 8, Scope::Global) == 5)
    });

    // It comes back: a snapshot gives the others its counts again.
    nodes[2].start().expect("restart");
    wait_until("gmx.de back on the survivors", || converged(2, 1));
    for n in &nodes {
        n.stop();
    }
}

#[test]
fn throttles_metrics_and_caches_replicate_and_show_in_the_console() {
    let dir = TempDir::new("replication-more");
    let scopes = "[cluster.replicate.shared_named_throttles]\nmax_delay = 0.1\n\
                  [cluster.replicate.metrics]\nparameters = \"audit_series;gauge_cache\"\n\
                  max_delay = 0.1\n\
                  [cluster.replicate.senders]\ntype = \"cache\"\nparameters = \"snapshot\"\n\
                  max_delay = 0.1\n";
    let nodes = cluster(&dir, scopes);
    let listed = |name: &str, kind: &str| format!("{name:>30} [lazy, {kind} w/ snapshots]\n");
    assert_eq!(
        nodes[0].console_exec("cluster shared list").unwrap(),
        format!(
            "Currently managed objects:\n{}{}{}",
            listed("metrics", "metrics"),
            listed("senders", "cache"),
            listed("shared_named_throttles", "throttle")
        )
    );

    // A throttle: each node takes 2 of 1000 an hour; all see 6 used.
    let throttles: Vec<_> = nodes
        .iter()
        .map(|n| {
            n.shared_throttles("shared_named_throttles")
                .expect("configured")
                .define("bulk", "1000/3600", None)
                .expect("a valid limit")
        })
        .collect();
    for t in &throttles {
        assert!(t.consume() && t.consume());
    }
    wait_until("every node counts 6 used", || {
        throttles.iter().all(|t| t.usage(Scope::Global) == 6)
    });
    let row = |key: &str, v: &str| format!("{:>61}{v:>13}\n", format!("{key}:"));
    assert_eq!(
        nodes[1]
            .console_exec("cluster shared show shared_named_throttles")
            .unwrap(),
        format!(
            "lazy, snapped throttle 'shared_named_throttles', view 'global'\n{}",
            row("bulk", "6")
        )
    );

    // A replicated gauge cache and an audit series.
    let now = eccluster::shared::wall_ms;
    let metrics: Vec<_> = nodes
        .iter()
        .map(|n| n.shared_metrics("metrics").expect("configured"))
        .collect();
    for m in &metrics {
        m.define_gauge_cache("rcpt", 100, 3600, true).unwrap();
        m.define_series("spam", SeriesType::Cidr, 3600, 2, Replication::Cluster)
            .unwrap();
        m.gauge_inc("rcpt", b"a@example.com", now()).unwrap();
        m.series_add("spam", b"192.0.2.7", 2, now()).unwrap();
    }
    wait_until("every node counts the gauge and the series", || {
        metrics.iter().all(|m| {
            m.gauge_get("rcpt", b"a@example.com", Scope::Global, now()) == Ok(3)
                && m.series_count("spam", b"192.0.2.0/24", 0, 1, Scope::Global, now()) == Ok(6)
        })
    });
    assert_eq!(
        nodes[2]
            .console_exec("cluster shared show metrics")
            .unwrap(),
        format!(
            "lazy, snapped metrics 'metrics', view 'global'\n{}{}",
            row("gauge_cache rcpt a@example.com", "3"),
            row("series spam 192.0.2.7 window 0", "6")
        )
    );

    // A cache entry set on one node is read on the others.
    let caches: Vec<_> = nodes
        .iter()
        .map(|n| n.shared_cache("senders").expect("configured"))
        .collect();
    caches[0].set(b"192.0.2.7", b"greylisted", 300).unwrap();
    wait_until("every node reads the entry", || {
        caches
            .iter()
            .all(|c| c.get(b"192.0.2.7").as_deref() == Some(&b"greylisted"[..]))
    });
    assert_eq!(
        nodes[1]
            .console_exec("cluster shared show senders")
            .unwrap(),
        format!(
            "lazy, snapped cache 'senders', view 'global'\n{}",
            row("192.0.2.7", "greylisted")
        )
    );
    let e = nodes[1]
        .console_exec("cluster shared show senders from r1")
        .unwrap_err();
    assert!(e.contains("no per-node view"), "{e}");
    for n in &nodes {
        n.stop();
    }
}

#[test]
fn eccmgr_metrics_reach_the_manager_only() {
    let dir = TempDir::new("replication-manager");
    let nodes = cluster(
        &dir,
        "[cluster.replicate.eccmgr_metrics]\nparameters = \"audit_series\"\nmax_delay = 0.1\n",
    );
    let now = eccluster::shared::wall_ms;
    let metrics: Vec<_> = nodes
        .iter()
        .map(|n| n.shared_metrics("eccmgr_metrics").expect("configured"))
        .collect();
    for m in &metrics {
        m.define_series("spam", SeriesType::String, 3600, 2, Replication::Manager)
            .unwrap();
    }
    metrics[0].series_add("spam", b"x", 2, now()).unwrap();
    metrics[1].series_add("spam", b"x", 3, now()).unwrap();
    let count = |m: &eccluster::shared::metrics::Metrics| {
        m.series_count("spam", b"x", 0, 1, Scope::Global, now())
            .unwrap()
    };
    wait_until("the manager counts both MTA nodes' series", || {
        count(&metrics[2]) == 5
    });
    // Well past max_delay: the MTA nodes still count only their own.
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(count(&metrics[0]), 2);
    assert_eq!(count(&metrics[1]), 3);
    for n in &nodes {
        n.stop();
    }
}
