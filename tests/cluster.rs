//! Clusters of real `eccluster node` processes on loopback: membership,
//! failure detection, restart, authentication, the manager's console
//! commands, `cluster reset` and configuration mismatches.
//!
//! Every test builds its own cluster in its own temp directory, with its own
//! key and ports (`common::free_port`), so the tests run in parallel. Nodes
//! run with `heartbeats_per_sec = 4` and no start delay: a peer is suspect
//! after 0.75 s of silence and down after 1.25 s. Everything is polled with a
//! deadline; no assertion depends on a fixed sleep.

mod common;
use common::process::{BIN, NodeProcess as Node, Spec};
use common::{TempDir, free_port, output_within_deadline, wait_until, wait_until_within};

use std::collections::BTreeMap;

use eccluster::journal::{Journal, Start, Writer};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

impl Node {
    /// `cluster info`, parsed; `None` while the console does not answer.
    fn info(&self) -> Option<Info> {
        self.console("cluster info").ok().map(|t| Info::parse(&t))
    }

    /// The node names `cluster membership` lists; empty while the console
    /// does not answer.
    fn membership(&self) -> Vec<String> {
        self.console("cluster membership")
            .map(|t| {
                t.lines()
                    .filter_map(|l| l.strip_prefix("Node Name: "))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The parts of `cluster info` the tests look at.
#[derive(Debug, Default)]
struct Info {
    text: String,
    leader: String,
    view_id: String,
    members: Vec<String>,
    agreed: bool,
    quorum: bool,
    suspect: Vec<String>,
    down: Vec<String>,
    rejected: BTreeMap<String, u64>,
    mismatches: Vec<String>,
    heartbeats_sent: u64,
}

fn names(list: &str) -> Vec<String> {
    if list == "none" || list.is_empty() {
        Vec::new()
    } else {
        list.split(", ").map(str::to_string).collect()
    }
}

impl Info {
    fn parse(text: &str) -> Info {
        let mut info = Info {
            text: text.to_string(),
            ..Info::default()
        };
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("Cluster Group: ") {
                if let Some((_, l)) = rest.split_once(" (") {
                    info.leader = l.trim_end_matches(" is leader)").to_string();
                }
            } else if let Some(rest) = line.strip_prefix("View: ") {
                // "View: N (id), K members: a, b"
                if let Some((head, list)) = rest.split_once(" members: ") {
                    info.view_id = head.split(['(', ')']).nth(1).unwrap_or("").to_string();
                    info.members = names(list);
                }
            } else if let Some(rest) = line.strip_prefix("View Agreement: ") {
                info.agreed = rest == "agreed by all members";
            } else if let Some(rest) = line.strip_prefix("Quorum: ") {
                info.quorum = rest.starts_with("yes ");
            } else if let Some(rest) = line.strip_prefix("Suspect: ") {
                info.suspect = names(rest);
            } else if let Some(rest) = line.strip_prefix("Down: ") {
                info.down = names(rest);
            } else if let Some(rest) = line.strip_prefix("Rejected: ") {
                if rest != "none" {
                    for item in rest.split(", ") {
                        let (reason, n) = item.rsplit_once(' ').expect("reason count");
                        info.rejected
                            .insert(reason.to_string(), n.parse().expect("a count"));
                    }
                }
            } else if let Some(rest) = line.strip_prefix("Heartbeats Sent: ") {
                info.heartbeats_sent = rest
                    .split(' ')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("a heartbeat count");
            } else if let Some(rest) = line.strip_prefix("Config Mismatch: ")
                && rest != "none"
            {
                info.mismatches.push(rest.to_string());
            }
        }
        info
    }

    fn rejected(&self, reason: &str) -> u64 {
        self.rejected.get(reason).copied().unwrap_or(0)
    }
}

/// A cluster's files: its temp directory and its key.
struct Lab {
    dir: TempDir,
    key: PathBuf,
}

impl Lab {
    fn new(tag: &str) -> Lab {
        let dir = TempDir::new(&format!("cluster-{tag}"));
        let key = dir.0.join("cluster.key");
        eccluster::io::seal::generate_key_file(&key).expect("generate the cluster key");
        Lab { dir, key }
    }

    /// A port for each name.
    fn ports(names: &[&str]) -> Vec<(String, u16)> {
        names.iter().map(|n| (n.to_string(), free_port())).collect()
    }

    /// The spec of `name`, holding the cluster key, with `peers` as its peers map.
    fn spec(&self, name: &str, peers: &[(String, u16)]) -> Spec {
        Spec {
            name: name.to_string(),
            peers: peers.to_vec(),
            key: Some(self.key.clone()),
            extra: String::new(),
            listen: None,
            args: Vec::new(),
            command: "node",
        }
    }

    fn start(&self, spec: &Spec) -> Node {
        Node::start(&self.dir.0, spec)
    }

    /// Starts every node of `peers` whose name is in `names`, each with the
    /// whole map as its peers.
    fn start_all(&self, names: &[&str], peers: &[(String, u16)]) -> Vec<Node> {
        names
            .iter()
            .map(|n| self.start(&self.spec(n, peers)))
            .collect()
    }
}

fn strings(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

/// Every node's view is exactly `expected`, agreed by all, with one view id
/// and one leader; returns that leader.
fn converged(nodes: &[&Node], expected: &[&str]) -> Option<String> {
    let infos: Vec<Info> = nodes.iter().map(|n| n.info()).collect::<Option<_>>()?;
    let first = infos.first()?;
    let same = infos.iter().all(|i| {
        i.members == strings(expected)
            && i.agreed
            && i.view_id == first.view_id
            && i.leader == first.leader
    });
    same.then(|| first.leader.clone())
}

fn wait_converged(nodes: &[&Node], expected: &[&str]) -> String {
    let mut leader = String::new();
    wait_until(&format!("a common view of {expected:?}"), || {
        leader = converged(nodes, expected).unwrap_or_default();
        !leader.is_empty()
    });
    leader
}

fn all(nodes: &[Node]) -> Vec<&Node> {
    nodes.iter().collect()
}

// ---------------------------------------------------------------------------

/// The cluster-wide count a node's `cluster shared show inbound_cidr`
/// gives `prefix` (`None` while the console does not answer or the row is
/// absent).
fn inbound_count(node: &Node, prefix: &str) -> Option<i64> {
    let out = node.console("cluster shared show inbound_cidr").ok()?;
    let row = out.lines().find(|l| l.ends_with(&format!(" {prefix}")))?;
    row.split_whitespace().next()?.parse().ok()
}

#[test]
fn inbound_connections_add_up_on_every_node_within_max_delay() {
    const MAX_DELAY: Duration = Duration::from_millis(500);
    let lab = Lab::new("inbound");
    let names = ["i1", "i2", "i3"];
    let peers = Lab::ports(&names);
    let listeners: Vec<u16> = names.iter().map(|_| free_port()).collect();
    let mut nodes: Vec<Node> = names
        .iter()
        .zip(&listeners)
        .map(|(name, port)| {
            lab.start(&Spec {
                extra: format!(
                    "[cluster.replicate.inbound_cidr]\nmax_delay = {}\n",
                    MAX_DELAY.as_secs_f64()
                ),
                args: vec!["--count-inbound".into(), format!("127.0.0.1:{port}")],
                ..lab.spec(name, &peers)
            })
        })
        .collect();
    wait_converged(&all(&nodes), &names);

    // Node i takes i + 1 connections: 6 in all, each from 127.0.0.1.
    let connect = |i: usize| -> Vec<std::net::TcpStream> {
        (0..=i)
            .map(|_| std::net::TcpStream::connect(("127.0.0.1", listeners[i])).expect("connect"))
            .collect()
    };
    let mut open: Vec<Vec<std::net::TcpStream>> = (0..names.len()).map(connect).collect();
    let opened = Instant::now();
    let everywhere = |nodes: &[Node], n: i64| {
        nodes
            .iter()
            .all(|node| inbound_count(node, "127.0.0.1/32") == Some(n))
    };
    wait_until("every node counts the 6 connections", || {
        everywhere(&nodes, 6)
    });
    // The listeners count a connection once accepted, which the margin
    // covers, as it covers the console polls.
    let took = opened.elapsed();
    assert!(
        took <= MAX_DELAY + Duration::from_secs(1),
        "converged after {took:?}, max_delay is {MAX_DELAY:?}"
    );
    assert_eq!(inbound_count(&nodes[0], "127.0.0.0/8"), Some(6));
    let own = nodes[2]
        .console("cluster shared show inbound_cidr from i3")
        .unwrap();
    assert!(
        own.ends_with(&format!("{:>7}{:25}127.0.0.1/32\n", 3, "")),
        "{own}"
    );

    // i2's connections close; then i3 dies and its share leaves with it.
    open[1].clear();
    wait_until("every node counts 4", || everywhere(&nodes, 4));
    nodes[2].kill();
    wait_until("the survivors count only i1's connection", || {
        everywhere(&nodes[..2], 1)
    });
    drop(open);
}

#[test]
fn three_nodes_converge_on_one_view_and_leader() {
    let lab = Lab::new("converge");
    let names = ["n1", "n2", "n3"];
    let peers = Lab::ports(&names);
    let nodes = lab.start_all(&names, &peers);
    let leader = wait_converged(&all(&nodes), &names);
    assert_eq!(leader, "n1", "the first MTA node by name leads");

    for node in &nodes {
        assert_eq!(
            node.membership(),
            strings(&names),
            "{}'s cluster membership",
            node.name
        );
        let info = node.info().expect("cluster info");
        let text = &info.text;
        assert!(
            text.contains("\nCluster Group: ec_cluster (n1 is leader)\n"),
            "{}: {text}",
            node.name
        );
        assert!(
            text.contains(", 3 members: n1, n2, n3\n"),
            "{}: {text}",
            node.name
        );
        assert!(
            text.contains("\nView Agreement: agreed by all members\n"),
            "{}: {text}",
            node.name
        );
        assert!(
            text.contains("\nQuorum: yes (3 of 3 configured nodes up, 2 needed; mode none)\n"),
            "{}: {text}",
            node.name
        );
        assert!(
            text.contains("\nSecurity: sealed (cluster key)\n"),
            "{}: {text}",
            node.name
        );
        assert!(
            text.contains("\nConfig Mismatch: none\n"),
            "{}: {text}",
            node.name
        );
        assert!(
            info.suspect.is_empty() && info.down.is_empty(),
            "{}: {text}",
            node.name
        );
        assert!(
            info.rejected.is_empty(),
            "a healthy cluster rejects nothing: {}: {text}",
            node.name
        );
    }
}

#[test]
fn a_killed_leader_is_dropped_quickly_and_rejoins_when_restarted() {
    let lab = Lab::new("kill");
    let names = ["n1", "n2", "n3"];
    let peers = Lab::ports(&names);
    let mut nodes = lab.start_all(&names, &peers);
    assert_eq!(wait_converged(&all(&nodes), &names), "n1");
    // n1 dials both: with the links up, its death breaks them at once.
    wait_until("n1's links to the others", || {
        let log = nodes[0].log_text();
        ["n2", "n3"]
            .iter()
            .all(|n| log.contains(&format!("link to {n} established")))
    });

    let logged: Vec<usize> = nodes.iter().map(Node::log_len).collect();
    let killed = Instant::now();
    nodes[0].kill();
    let survivors = [&nodes[1], &nodes[2]];
    wait_until_within("the survivors to drop n1", Duration::from_secs(5), || {
        survivors
            .iter()
            .all(|n| n.membership() == strings(&["n2", "n3"]))
    });
    let took = killed.elapsed();
    assert!(
        took < Duration::from_millis(3500),
        "n1 was dropped {} ms after SIGKILL (1.25 s down bound at 4 heartbeats/s)",
        took.as_millis()
    );
    eprintln!("n1 dropped {} ms after SIGKILL", took.as_millis());

    assert_eq!(wait_converged(&survivors, &["n2", "n3"]), "n2");
    for node in survivors {
        let info = node.info().expect("cluster info");
        assert_eq!(info.down, ["n1"], "{}: {}", node.name, info.text);
        assert!(
            info.text
                .contains("\nCluster Group: ec_cluster (n2 is leader)\n"),
            "{}: {}",
            node.name,
            info.text
        );
        assert!(
            info.text.contains("\nQuorum: yes (2 of 3 configured"),
            "{}: {}",
            node.name,
            info.text
        );
    }

    nodes[0].spawn();
    assert_eq!(wait_converged(&all(&nodes), &names), "n1");
    for node in &nodes {
        assert_eq!(node.membership(), strings(&names), "{}", node.name);
    }
    for (node, from) in nodes.iter().zip(&logged).skip(1) {
        let log = node.log_since(*from);
        assert!(
            log.contains("n1 is down"),
            "{} logged the failure:\n{log}",
            node.name
        );
        // n1's host is up, so its port refused: down on proof, never
        // merely suspected first.
        let down = log.find("n1 is down").unwrap();
        assert!(
            log.contains("n1's cluster port") && log.contains("refuses connections"),
            "{} probed n1's port:\n{log}",
            node.name
        );
        assert!(
            !log[..down].contains("n1 is suspect"),
            "{} waited for the heartbeat timeout:\n{log}",
            node.name
        );
        assert!(
            log.contains("n1 restarted") || log.contains("n1 is up"),
            "{} logged the return:\n{log}",
            node.name
        );
    }
}

#[test]
fn nodes_without_the_cluster_key_cannot_join() {
    let lab = Lab::new("nokey");
    let members = ["n1", "n2", "n3"];
    // Everyone's peers map names the outsiders too: only the key keeps them out.
    let peers = Lab::ports(&["n1", "n2", "n3", "rogue", "plain"]);
    let nodes = lab.start_all(&members, &peers);
    let other_key = lab.dir.0.join("other.key");
    eccluster::io::seal::generate_key_file(&other_key).expect("another key");
    let rogue = lab.start(&Spec {
        key: Some(other_key),
        ..lab.spec("rogue", &peers)
    });
    let plain = lab.start(&Spec {
        key: None,
        extra: "insecure = true\n".into(),
        ..lab.spec("plain", &peers)
    });

    let outsiders = ["rogue", "plain"];
    let never_listed = |node: &Node| {
        let listed = node.membership();
        assert!(
            !listed.iter().any(|n| outsiders.contains(&n.as_str())),
            "{} lists an outsider: {listed:?}",
            node.name
        );
    };
    // Several heartbeats from each outsider must have arrived and been refused.
    wait_until("the members to converge and refuse both outsiders", || {
        nodes.iter().for_each(never_listed);
        converged(&all(&nodes), &members).is_some()
            && nodes.iter().all(|n| {
                n.info()
                    .is_some_and(|i| i.rejected("bad_auth") >= 4 && i.rejected("not_sealed") >= 4)
            })
    });
    for node in &nodes {
        never_listed(node);
        let info = node.info().expect("cluster info");
        assert_eq!(info.members, strings(&members), "{}", info.text);
        let log = node.log_text();
        assert!(
            log.contains("authentication failed"),
            "{} logs the bad key:\n{log}",
            node.name
        );
        assert!(
            log.contains("not sealed, but this node has a cluster key"),
            "{} logs the unsealed traffic:\n{log}",
            node.name
        );
    }
    for (outsider, refused) in [(&rogue, "bad_auth"), (&plain, "unexpectedly_sealed")] {
        assert_eq!(outsider.membership(), [outsider.name.as_str()]);
        let info = outsider.info().expect("cluster info");
        assert_eq!(info.members, [outsider.name.as_str()], "{}", info.text);
        assert!(info.rejected(refused) > 0, "{}", info.text);
    }
    assert!(
        plain
            .info()
            .expect("info")
            .text
            .contains("\nSecurity: none (no cluster key)\n")
    );
}

#[test]
fn a_node_missing_from_the_peers_map_cannot_join() {
    let lab = Lab::new("unknown");
    let members = ["n1", "n2", "n3"];
    let peers = Lab::ports(&members);
    let nodes = lab.start_all(&members, &peers);
    // The intruder holds the key and knows everyone; nobody knows it.
    let mut its_peers = peers.clone();
    its_peers.push(("intruder".into(), free_port()));
    let intruder = lab.start(&lab.spec("intruder", &its_peers));

    wait_until("the members to converge and refuse the intruder", || {
        for node in &nodes {
            let listed = node.membership();
            assert!(
                !listed.iter().any(|n| n == "intruder"),
                "{} lists the intruder: {listed:?}",
                node.name
            );
        }
        converged(&all(&nodes), &members).is_some()
            && nodes
                .iter()
                .all(|n| n.info().is_some_and(|i| i.rejected("unknown_peer") >= 4))
    });
    for node in &nodes {
        let info = node.info().expect("cluster info");
        assert_eq!(info.members, strings(&members), "{}", info.text);
        assert!(!info.rejected.contains_key("bad_auth"), "{}", info.text);
        let log = node.log_text();
        assert!(
            log.contains("sender is not a configured peer"),
            "{} logs the refusal:\n{log}",
            node.name
        );
        assert!(!log.contains("intruder is up"), "{log}");
    }
    let info = intruder.info().expect("cluster info");
    assert_eq!(info.members, ["intruder"], "{}", info.text);
    assert_eq!(intruder.membership(), ["intruder"]);
}

#[test]
fn a_manager_runs_console_commands_on_the_mta_nodes() {
    let lab = Lab::new("manager");
    let names = ["mgr", "n1", "n2", "n3"];
    let peers = Lab::ports(&names);
    let mgr = lab.start(&Spec {
        extra: "node_type = \"Manager\"\n".into(),
        ..lab.spec("mgr", &peers)
    });
    let nodes = lab.start_all(&names[1..], &peers);
    let mut everyone = vec![&mgr];
    everyone.extend(&nodes);
    assert_eq!(
        wait_converged(&everyone, &names),
        "n1",
        "the manager never leads while an MTA node is up"
    );
    // The manager (first by name) dials every node; wait for those links.
    wait_until("the manager's links to every node", || {
        let log = mgr.log_text();
        names[1..]
            .iter()
            .all(|n| log.contains(&format!("link to {n} established")))
    });

    let ok = |node: &Node, command: &str| -> String {
        let out = node.cli(command);
        assert!(
            out.status.success(),
            "{command} on {} failed: {}",
            node.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let every = "[n1]\nn1\n[n2]\nn2\n[n3]\nn3\n";

    // Nothing cached before the first broadcast.
    let out = mgr.cli("retrieve cluster nodename");
    assert!(!out.status.success(), "retrieve before broadcast succeeded");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("broadcast it first"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    assert_eq!(ok(&mgr, "broadcast cluster nodename"), every);
    assert_eq!(ok(&mgr, "retrieve cluster nodename"), every);
    assert_eq!(ok(&mgr, "retrieve_node n2 cluster nodename"), "[n2]\nn2\n");
    assert_eq!(ok(&mgr, "unicast n3 cluster nodename"), "[n3]\nn3\n");
    assert_eq!(
        ok(&mgr, "subcluster broadcast default cluster nodename"),
        every
    );
    assert_eq!(
        ok(&mgr, "subcluster retrieve default cluster nodename"),
        every
    );
    let addrs = ok(&mgr, "broadcast cluster nodeaddr");
    for (name, port) in &peers[1..] {
        assert!(
            addrs.contains(&format!("[{name}]\n127.0.0.1:{port}\n")),
            "{addrs}"
        );
    }
    let out = mgr.cli("subcluster broadcast nosuch cluster nodename");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no MTA node of subcluster 'nosuch'"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The manager-only commands do not exist on an MTA node.
    let out = nodes[0].cli("broadcast cluster nodename");
    assert!(!out.status.success(), "broadcast succeeded on an MTA node");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown command"), "{err}");
}

#[test]
fn cluster_reset_rejoins_as_a_restart() {
    let lab = Lab::new("reset");
    let names = ["n1", "n2", "n3"];
    let peers = Lab::ports(&names);
    let nodes = lab.start_all(&names, &peers);
    wait_converged(&all(&nodes), &names);
    let before = nodes[0].info().expect("info").view_id;
    let logged: Vec<usize> = nodes.iter().map(Node::log_len).collect();

    let out = nodes[1].cli("cluster reset");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("n2 rejoining with generation "), "{text}");

    wait_until("n1 and n3 to log n2's restart", || {
        [0, 2]
            .iter()
            .all(|&i| nodes[i].log_since(logged[i]).contains("n2 restarted"))
    });
    wait_converged(&all(&nodes), &names);
    let after = nodes[0].info().expect("info").view_id;
    assert_ne!(before, after, "a new generation makes a new view");
    assert!(
        nodes[1]
            .log_since(logged[1])
            .contains("cluster reset: rejoining with generation"),
        "{}",
        nodes[1].log_text()
    );
    for node in &nodes {
        assert_eq!(node.membership(), strings(&names), "{}", node.name);
    }
}

#[test]
fn a_mismatched_must_be_equal_option_is_named() {
    let lab = Lab::new("mismatch");
    let names = ["n1", "n2", "n3"];
    let peers = Lab::ports(&names);
    let mut nodes = lab.start_all(&names[..2], &peers);
    nodes.push(lab.start(&Spec {
        extra: "duravip_balance_set_size = 3\n".into(),
        ..lab.spec("n3", &peers)
    }));
    wait_converged(&all(&nodes), &names);
    let expected = "n3 differs in duravip_balance_set_size";
    wait_until("n1 and n2 to report n3's mismatch", || {
        nodes[..2]
            .iter()
            .all(|n| n.info().is_some_and(|i| i.mismatches == [expected]))
    });
    for node in &nodes[..2] {
        let info = node.info().expect("info");
        assert!(
            info.text
                .contains(&format!("\nConfig Mismatch: {expected}\n")),
            "{}",
            info.text
        );
        let log = node.log_text();
        assert!(
            log.contains("configuration differs from n3: duravip_balance_set_size"),
            "{}'s log:\n{log}",
            node.name
        );
    }
    let info = nodes[2].info().expect("info");
    assert_eq!(
        info.mismatches,
        [
            "n1 differs in duravip_balance_set_size",
            "n2 differs in duravip_balance_set_size"
        ],
        "{}",
        info.text
    );
    let log = nodes[2].log_text();
    assert!(
        log.contains("configuration differs from n1: duravip_balance_set_size"),
        "{log}"
    );
}

#[test]
fn no_key_on_a_non_loopback_address_is_refused() {
    let lab = Lab::new("open");
    let peers = Lab::ports(&["lone"]);
    let port = peers[0].1;
    let spec = Spec {
        key: None,
        listen: Some(format!("0.0.0.0:{port}")),
        ..lab.spec("lone", &peers)
    };
    let config = lab
        .dir
        .write("lone.toml", &spec.render(&lab.dir.0.join("lone.sock")));
    let mut cmd = Command::new(BIN);
    cmd.args(["node", "--config"]).arg(&config);
    let out = output_within_deadline(cmd, None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started without a key: {err}");
    assert!(err.contains("auth_key_file"), "{err}");
    assert!(err.contains("insecure"), "{err}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("ready"),
        "{out:?}"
    );

    // With insecure = true the same node runs, and says it is unauthenticated.
    let node = lab.start(&Spec {
        extra: "insecure = true\n".into(),
        name: "lone".into(),
        ..spec
    });
    let info = node.info().expect("info");
    assert!(
        info.text.contains("\nSecurity: none (no cluster key)\n"),
        "{}",
        info.text
    );
    assert!(
        node.log_text()
            .contains("no cluster key; traffic is not authenticated"),
        "{}",
        node.log_text()
    );
}

#[test]
fn a_peer_that_refuses_the_link_is_not_redialled_in_a_tight_loop() {
    // Another cluster_group: heartbeats pass (the mismatch is reported), but
    // the TCP link is refused at its Hello. n1 (the smaller name) dials.
    let lab = Lab::new("refused");
    let names = ["n1", "n2"];
    let peers = Lab::ports(&names);
    let n1 = lab.start(&lab.spec("n1", &peers));
    let n2 = lab.start(&Spec {
        extra: "cluster_group = \"other\"\n".into(),
        ..lab.spec("n2", &peers)
    });
    wait_until("the mismatch and a refused link", || {
        n2.info().is_some_and(|i| {
            i.mismatches == ["n1 differs in cluster_group"] && i.rejected("unknown_peer") > 0
        })
    });
    // Use n2's own heartbeats as the clock: 8 more is 2 s at 4 per second.
    let start = n2.info().expect("info").heartbeats_sent;
    let mut info = Info::default();
    wait_until("n2 to send 8 more heartbeats", || {
        info = n2.info().expect("info");
        info.heartbeats_sent >= start + 8
    });
    // With backoff (100 ms doubling) that is a handful of attempts, not thousands.
    let refused = info.rejected("unknown_peer");
    assert!(
        refused <= 12,
        "n1 dialled n2 {refused} times in about 2 s:\n{}",
        info.text
    );
    let log = n2.log_text();
    assert!(log.contains("rejected traffic from n1"), "{log}");
    assert_eq!(n1.membership(), strings(&names));
}

/// The owner of each DuraVIP as every node's `cluster duravip show` says:
/// address to owner, or `None` while the nodes disagree or a node does not
/// answer.
fn duravip_owners(nodes: &[&Node]) -> Option<Vec<(String, String)>> {
    let mut agreed: Option<Vec<(String, String)>> = None;
    for node in nodes {
        let text = node.console("cluster duravip show").ok()?;
        let mut owners = Vec::new();
        let mut ip = String::new();
        for line in text.lines() {
            if let Some((head, _)) = line.split_once(": (") {
                ip = head.split('/').next().unwrap_or_default().to_string();
            } else if let Some(rest) = line.strip_prefix(" *  \t") {
                owners.push((
                    ip.clone(),
                    rest.split(' ').next().unwrap_or_default().to_string(),
                ));
            }
        }
        match &agreed {
            None => agreed = Some(owners),
            Some(a) if *a == owners => {}
            Some(_) => return None,
        }
    }
    agreed
}

/// DuraVIP across real processes (dry-run plumbing, so no privileges are
/// needed; the netns tests plumb for real): one agreed owner per address,
/// the preferred node owns its address, a SIGKILLed owner's addresses move
/// to a survivor within the detection bound, and a planned stop releases.
/// Three dry-run DuraVIPs, one preferring n2, with fast maturing and
/// balancing.
const DURAVIP_EXTRA: &str = "view_mature_time = 1\nview_balance_interval = 1\nduravip_dry_run = true\n\
     [cluster.topology.\"\"]\ninterface = \"eth1\"\n\
     [binding.out1]\nbind_address = \"10.9.0.1\"\nenable_duravip = true\n\
     [binding.out2]\nbind_address = \"10.9.0.2\"\nenable_duravip = true\n\
     [binding.out3]\nbind_address = \"10.9.0.3\"\nenable_duravip = true\nduravip_preference = \"n2\"\n";

#[test]
fn duravip_addresses_have_one_owner_and_fail_over() {
    let lab = Lab::new("duravip");
    let names = ["n1", "n2", "n3"];
    let peers = Lab::ports(&names);
    let mut nodes: Vec<Node> = names
        .iter()
        .map(|n| {
            let mut spec = lab.spec(n, &peers);
            spec.extra = DURAVIP_EXTRA.to_string();
            lab.start(&spec)
        })
        .collect();
    wait_converged(&all(&nodes), &names);
    let mut owners = Vec::new();
    let per_node = |owners: &[(String, String)]| {
        let mut counts: Vec<usize> = names
            .iter()
            .map(|n| owners.iter().filter(|(_, o)| o == n).count())
            .collect();
        counts.sort_unstable();
        counts
    };
    // One agreed owner each, balanced (balancing runs every second here).
    wait_until("one agreed owner for each DuraVIP, one per node", || {
        owners = duravip_owners(&all(&nodes)).unwrap_or_default();
        owners.len() == 3 && per_node(&owners) == [1, 1, 1]
    });
    assert!(
        owners.contains(&("10.9.0.3".to_string(), "n2".to_string())),
        "{owners:?}"
    );

    // Debugging logs every table; on loopback no peer has a MAC.
    for node in &nodes {
        assert_eq!(
            node.console("cluster duravip debug on").unwrap(),
            format!("DuraVIP debugging on on {}\n", node.name)
        );
        assert_eq!(
            node.console("cluster arp show").unwrap(),
            "127.0.0.1        [unresolved]\n".repeat(2)
        );
    }
    let e = nodes[0].console("cluster duravip debug maybe").unwrap_err();
    assert!(e.contains("usage: cluster duravip debug on|off"), "{e}");

    // SIGKILL the owner of 10.9.0.1: a survivor takes it over.
    let victim = owners
        .iter()
        .find(|(ip, _)| ip == "10.9.0.1")
        .map(|(_, o)| o.clone())
        .unwrap();
    let index = names.iter().position(|n| *n == victim).unwrap();
    let killed = Instant::now();
    nodes[index].kill();
    let survivors: Vec<&Node> = nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != index)
        .map(|(_, n)| n)
        .collect();
    wait_until("a survivor owns 10.9.0.1", || {
        duravip_owners(&survivors)
            .is_some_and(|o| o.iter().any(|(ip, n)| ip == "10.9.0.1" && *n != victim))
    });
    let took = killed.elapsed();
    assert!(took < Duration::from_secs(4), "failover took {took:?}");
    let log: String = survivors.iter().map(|n| n.log_text()).collect();
    assert!(log.contains("gained DuraVIP 10.9.0.1/32 on eth1"), "{log}");
    assert!(log.contains("dry run (nothing is plumbed)"), "{log}");
    assert!(log.contains("debug: DuraVIP table v"), "{log}");

    // A planned stop hands its addresses over before the peers even notice
    // it is gone: the last node gains them, then sees the node down.
    let (leaving, staying) = (survivors[0].name.clone(), survivors[1].name.clone());
    drop(survivors);
    let leaving_index = names.iter().position(|n| *n == leaving).unwrap();
    let staying_index = names.iter().position(|n| *n == staying).unwrap();
    let handed_over: Vec<String> = duravip_owners(&[&nodes[staying_index]])
        .unwrap()
        .into_iter()
        .filter(|(_, o)| *o == leaving)
        .map(|(ip, _)| ip)
        .collect();
    assert!(!handed_over.is_empty(), "{leaving} owns nothing");
    nodes[leaving_index].terminate();
    let staying_node = &nodes[staying_index];
    wait_until("the last node sees the stopped one down", || {
        staying_node
            .log_text()
            .contains(&format!("{leaving} is down"))
    });
    let log = staying_node.log_text();
    let down_at = log.find(&format!("{leaving} is down")).unwrap();
    for ip in &handed_over {
        let gained_at = log
            .rfind(&format!("gained DuraVIP {ip}/32"))
            .unwrap_or_else(|| panic!("{staying} never gained {ip}:\n{log}"));
        assert!(gained_at < down_at, "{ip} waited for detection:\n{log}");
    }
}

#[test]
fn a_duravip_moves_when_a_manager_broadcasts_the_move_and_only_then() {
    let lab = Lab::new("move");
    let names = ["mgr", "n1", "n2", "n3"];
    let peers = Lab::ports(&names);
    let mgr = lab.start(&Spec {
        extra: "node_type = \"Manager\"\n".into(),
        ..lab.spec("mgr", &peers)
    });
    let nodes: Vec<Node> = names[1..]
        .iter()
        .map(|n| {
            lab.start(&Spec {
                extra: DURAVIP_EXTRA.into(),
                ..lab.spec(n, &peers)
            })
        })
        .collect();
    let mut everyone = vec![&mgr];
    everyone.extend(&nodes);
    wait_converged(&everyone, &names);
    wait_until("the manager's links to every node", || {
        let log = mgr.log_text();
        names[1..]
            .iter()
            .all(|n| log.contains(&format!("link to {n} established")))
    });
    let owner_of = |ip: &str| -> Option<String> {
        duravip_owners(&all(&nodes))?
            .into_iter()
            .find(|(i, _)| i == ip)
            .map(|(_, o)| o)
    };
    let mut before = None;
    wait_until("an agreed owner of 10.9.0.1", || {
        before = owner_of("10.9.0.1");
        before.is_some()
    });
    let before = before.unwrap();
    let target = names[1..]
        .iter()
        .find(|n| **n != before)
        .unwrap()
        .to_string();

    // Run on one node alone it would move nothing everywhere else.
    let e = nodes[0]
        .console(&format!("cluster duravip move 10.9.0.1 to {target}"))
        .unwrap_err();
    assert!(
        e.contains(&format!(
            "broadcast cluster duravip move 10.9.0.1 to {target}"
        )),
        "{e}"
    );
    let e = nodes[0]
        .console("cluster duravip move 10.9.0.1 n2")
        .unwrap_err();
    assert!(
        e.contains("usage: cluster duravip move <ip> to <node>"),
        "{e}"
    );

    // Through the manager every node takes part.
    let out = mgr.cli(&format!(
        "broadcast cluster duravip move 10.9.0.1 to {target}"
    ));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for n in &names[1..] {
        assert!(
            text.contains(&format!("[{n}]\n{n}: moving 10.9.0.1 to {target}\n")),
            "{text}"
        );
    }
    wait_until("10.9.0.1 to move", || {
        owner_of("10.9.0.1").as_deref() == Some(target.as_str())
    });
    // It stays there: balancing (every second here) leaves it alone until
    // the view changes.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(owner_of("10.9.0.1").as_deref(), Some(target.as_str()));

    // A move every node refuses says why, per node.
    let out = mgr.cli("broadcast cluster duravip move 10.9.0.1 to nosuch");
    let text = String::from_utf8_lossy(&out.stdout);
    for n in &names[1..] {
        assert!(
            text.contains(&format!(
                "[{n}] error: cannot move 10.9.0.1 to nosuch: that node is not in the view"
            )),
            "{text}"
        );
    }
}

/// Appends lines `from..to` of `node` to the journal in `dir`, as the
/// node's MTA would (another process than the node), creating it with a
/// `master` subscriber and small segments, so that segments rotate and
/// are deleted once consumed.
fn append_log_lines(dir: &Path, node: &str, from: u32, to: u32) {
    let journal = Journal::create(dir, Some(64 * 1024)).expect("create the journal");
    journal
        .add_subscriber("master", Start::Begin)
        .expect("add the subscriber");
    let (mut writer, _) = Writer::open(&journal).expect("open a writer");
    for i in from..to {
        writer
            .append(1_700_000_000, 0, log_line(node, i).as_bytes())
            .expect("append");
    }
    writer.sync().expect("sync");
}

fn log_line(node: &str, i: u32) -> String {
    format!("{node} line {i:06} of the mainlog")
}

/// The lines of an aggregated file (none while it does not exist).
fn file_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|t| t.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

/// Checks that `path` holds exactly lines `0..n` of `node`, in order, but
/// for repeats of at most one batch after each of `restarts` manager
/// restarts; returns how many lines were repeated.
fn check_aggregated(path: &Path, node: &str, n: u32, restarts: usize) -> usize {
    let lines = file_lines(path);
    let mut next = 0u32;
    let mut repeated = 0;
    let mut rewinds = 0;
    let mut in_repeat = false;
    for line in &lines {
        let i: u32 = line
            .strip_prefix(&format!("{node} line "))
            .and_then(|rest| rest.split(' ').next())
            .and_then(|i| i.parse().ok())
            .unwrap_or_else(|| panic!("{}: garbage line {line:?}", path.display()));
        assert_eq!(
            *line,
            log_line(node, i),
            "{}: a changed line",
            path.display()
        );
        if i == next {
            next += 1;
            in_repeat = false;
        } else if i < next {
            // A batch served again after a restart.
            rewinds += usize::from(!in_repeat);
            in_repeat = true;
            repeated += 1;
        } else {
            panic!(
                "{}: line {i} of {node} before line {next}: {next} lost",
                path.display()
            );
        }
    }
    assert_eq!(
        next,
        n,
        "{}: lines {next}..{n} of {node} missing",
        path.display()
    );
    assert!(
        rewinds <= restarts,
        "{}: {rewinds} runs of repeated lines for {restarts} restarts",
        path.display()
    );
    repeated
}

#[test]
fn a_manager_pulls_every_nodes_journal_and_loses_nothing() {
    let lab = Lab::new("logs");
    let names = ["mgr", "n1", "n2", "n3"];
    let peers = Lab::ports(&names);
    let journal = |node: &str| lab.dir.0.join(node).join("mainlog.cluster");
    let out = lab.dir.0.join("out");
    let output = |node: &str| out.join("mainlog").join("default").join(node);
    let pacing = "log_active_interval = 0\nlog_idle_interval = 1\n";
    let mut nodes: Vec<Node> = names[1..]
        .iter()
        .map(|n| {
            lab.start(&Spec {
                extra: format!(
                    "{pacing}[cluster.logs]\nmainlog = {:?}\n",
                    journal(n).display().to_string()
                ),
                ..lab.spec(n, &peers)
            })
        })
        .collect();
    for n in &names[1..] {
        append_log_lines(&journal(n), n, 0, 2000);
    }
    // An output path that cannot be written (a directory where the file
    // goes): n3's lines wait, with the reason on the console.
    std::fs::create_dir_all(output("n3").join("blocker")).unwrap();
    let mgr_spec = Spec {
        extra: format!(
            "node_type = \"Manager\"\n{pacing}[cluster.logs]\nmainlog = \"/nonexistent\"\n\
             [logs]\nlogfile = {:?}\n",
            format!("{}/%{{l}}/%{{s}}/%{{n}}", out.display())
        ),
        command: "aggregate",
        ..lab.spec("mgr", &peers)
    };
    let mut mgr = lab.start(&mgr_spec);
    wait_until("n1 and n2 aggregated", || {
        file_lines(&output("n1")).len() >= 2000 && file_lines(&output("n2")).len() >= 2000
    });
    check_aggregated(&output("n1"), "n1", 2000, 0);
    wait_until("n3's write error on the console", || {
        mgr.console("cluster show aggregator")
            .is_ok_and(|t| t.contains("n3 mainlog") && t.contains("Is a directory"))
    });
    // Nothing was checkpointed for n3.
    let shown = nodes[2].console("cluster show logs").unwrap();
    assert!(
        shown.contains("[subscriber: 'master' @ 00000000:00000000]"),
        "{shown}"
    );
    std::fs::remove_dir_all(output("n3")).unwrap();
    wait_until("n3 aggregated after the fix", || {
        file_lines(&output("n3")).len() >= 2000
    });
    check_aggregated(&output("n3"), "n3", 2000, 0);

    // Jobs: one per node; an aborted one is followed by a new one and
    // loses nothing.
    let jobs = mgr.console("cluster jobs").unwrap();
    let n1_job: u64 = jobs
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("n1"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no job for n1:\n{jobs}"));
    assert_eq!(
        mgr.console(&format!("cluster abort {n1_job}")).unwrap(),
        format!("Job {n1_job} aborted.\n")
    );
    assert!(
        mgr.console("cluster abort 999999")
            .unwrap_err()
            .contains("no job 999999")
    );
    wait_until("a new job for n1", || {
        mgr.console("cluster jobs").is_ok_and(|t| {
            t.lines().any(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                w.get(1) == Some(&"n1") && w[0] != n1_job.to_string()
            })
        })
    });

    // The manager is killed while lines stream in, and restarted.
    let writers: Vec<_> = names[1..]
        .iter()
        .map(|n| {
            let (dir, n) = (journal(n), n.to_string());
            std::thread::spawn(move || {
                for chunk in 0..20 {
                    append_log_lines(&dir, &n, 2000 + chunk * 1000, 3000 + chunk * 1000);
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        })
        .collect();
    wait_until("the manager is pulling the new lines", || {
        file_lines(&output("n1")).len() > 4000
    });
    mgr.kill();
    let mut mgr = lab.start(&mgr_spec);
    for w in writers {
        w.join().unwrap();
    }
    wait_until("the new manager pulls from n2", || {
        mgr.console("cluster jobs")
            .is_ok_and(|t| t.lines().any(|l| l.split_whitespace().nth(1) == Some("n2")))
    });
    // n2 is down while its MTA goes on logging; it drains when back.
    nodes[1].kill();
    append_log_lines(&journal("n2"), "n2", 22_000, 25_000);
    wait_until("the aggregator sees n2 down", || {
        mgr.console("cluster show aggregator")
            .is_ok_and(|t| t.contains("n2 mainlog\n") && t.contains("[node down]"))
    });
    nodes[1].spawn();
    let total = |n: &str| if n == "n2" { 25_000 } else { 22_000 };
    wait_until_within("every line aggregated", Duration::from_secs(60), || {
        names[1..]
            .iter()
            .all(|n| file_lines(&output(n)).len() >= total(n) as usize)
    });
    for n in &names[1..] {
        // The manager's restart may repeat a batch of each node; n2's own
        // restart one more of n2 (the aggregator then trusts n2's
        // checkpoint file over its own).
        let restarts = if *n == "n2" { 2 } else { 1 };
        let repeated = check_aggregated(&output(n), n, total(n), restarts);
        eprintln!("{n}: {repeated} lines repeated after the restarts");
    }
    // Every subscriber has read everything, and consumed segments are gone.
    wait_until("the checkpoints caught up", || {
        names[1..].iter().all(|n| {
            let j = Journal::open(&journal(n)).unwrap();
            j.checkpoint("master").unwrap() == j.last_written().unwrap()
        })
    });
    for n in &names[1..] {
        let segments = std::fs::read_dir(journal(n))
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                let name = name.to_string_lossy();
                name.len() == 8 && name.chars().all(|c| c.is_ascii_hexdigit())
            })
            .count();
        assert!(segments <= 2, "{n}: {segments} segments left");
    }
    let status = mgr.console("cluster show aggregator").unwrap();
    assert!(
        status.contains("n1 mainlog\n\t[subscriber: 'master' @ "),
        "{status}"
    );
    mgr.terminate();
}
