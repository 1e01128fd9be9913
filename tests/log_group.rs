//! The paniclog broadcast on a `log_group`, between real nodes: three nodes
//! in this process on loopback. n1 and n2 are in the group "panics", n3 in
//! none; a line n1's logger appends to its paniclog reaches n2's console
//! and hook, and not n3.

mod common;
use common::{TempDir, free_port, wait_until};

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use parking_lot::Mutex;

use eccluster::journal::{Durability, Journal};
use eccluster::node::{GroupLine, Node};
use eccluster::shared::Scope;

const NAMES: [&str; 3] = ["n1", "n2", "n3"];

/// Node `name`, started; in the group "panics" unless it is n3. Each
/// publishes its own paniclog and mainlog, and replicates a gauge table,
/// whose updates show when a link has carried what was sent before them.
fn start(dir: &TempDir, name: &str, ports: &[(&str, u16)]) -> Node {
    let port = ports.iter().find(|(n, _)| *n == name).unwrap().1;
    let peers: String = ports
        .iter()
        .map(|(n, p)| format!("{n} = \"127.0.0.1:{p}\"\n"))
        .collect();
    let group = if name == "n3" {
        ""
    } else {
        "log_group = \"panics\"\n"
    };
    let logs = dir.0.join(name);
    let text = format!(
        "[cluster]\nnodename = \"{name}\"\n{group}\
         heartbeats_per_sec = 4\nheartbeat_start_delay = 0\n\
         [cluster.logs]\n\
         paniclog = \"{logs}/paniclog.cluster\"\n\
         mainlog = \"{logs}/mainlog.cluster\"\n\
         [cluster.replicate.outbound_domains]\nmax_delay = 0.1\n\
         [msgc_server.peers]\n{peers}\
         [eccluster_listener.listen.\"127.0.0.1:{port}\"]\n\
         [control_listener.listen.\"{socket}\"]\n",
        logs = logs.display(),
        socket = dir.0.join(format!("{name}.sock")).display(),
    );
    common::started_node(&text)
}

/// What a node's log group hook heard.
fn listen(node: &Node) -> Arc<Mutex<Vec<GroupLine>>> {
    let heard: Arc<Mutex<Vec<GroupLine>>> = Arc::default();
    let sink = Arc::clone(&heard);
    node.register_log_group_hook(Box::new(move |line| sink.lock().push(line.clone())));
    heard
}

#[test]
fn a_paniclog_line_reaches_the_group_and_no_one_else() {
    let dir = TempDir::new("log-group");
    let ports: Vec<(&str, u16)> = NAMES.iter().map(|n| (*n, free_port())).collect();
    let nodes: Vec<Node> = NAMES.iter().map(|n| start(&dir, n, &ports)).collect();
    let (n1, n2, n3) = (&nodes[0], &nodes[1], &nodes[2]);
    let heard2 = listen(n2);
    let heard3 = listen(n3);
    let gauges: Vec<_> = nodes
        .iter()
        .map(|n| n.shared_gauge("outbound_domains").expect("configured"))
        .collect();
    // n1's links work: its counts reach both peers.
    gauges[0].add(b"example.com", 1);
    wait_until("n2 and n3 hear n1's first count", || {
        gauges[1..]
            .iter()
            .all(|g| g.get(b"example.com", Scope::Global) == 1)
    });

    let logs = dir.0.join("n1");
    let paniclog = n1
        .open_log(
            &format!("cluster://{}/paniclog.cluster=>master", logs.display()),
            Durability::EveryRecord,
        )
        .unwrap();
    let mainlog = n1
        .open_log(
            &format!("cluster://{}/mainlog.cluster=>master", logs.display()),
            Durability::EveryRecord,
        )
        .unwrap();
    // Before the panic line, on the same links: were it broadcast, it
    // would arrive first.
    mainlog.append(b"1700000000@n1: delivered").unwrap();
    paniclog
        .append(b"1700000001@n1: assertion failed: queue != NULL\n")
        .unwrap();

    wait_until("n2's hook hears the line", || !heard2.lock().is_empty());
    let line = heard2.lock()[0].clone();
    assert_eq!(line.sender, "n1");
    assert_eq!(line.log, "paniclog");
    assert_eq!(
        line.line,
        b"1700000001@n1: assertion failed: queue != NULL\n"
    );
    // Its time is the journal's stamp of the record.
    let journal = Journal::open(&logs.join("paniclog.cluster")).unwrap();
    let (from, to) = journal.read_interval("master").unwrap().unwrap();
    let record = journal.read_range(from, to).unwrap().remove(0);
    assert_eq!(
        line.time,
        UNIX_EPOCH + Duration::new(u64::from(record.tv_sec), record.tv_usec * 1000)
    );

    let shown = n2.console_exec("cluster show log_group").unwrap();
    let mut lines = shown.lines();
    assert_eq!(lines.next(), Some("Logger Group: panics"), "{shown}");
    let entry = lines.next().unwrap_or_default();
    assert!(
        entry.ends_with("Z n1 paniclog: 1700000001@n1: assertion failed: queue != NULL"),
        "{shown}"
    );
    assert_eq!(
        lines.next(),
        None,
        "the mainlog line is not broadcast: {shown}"
    );
    let xml = n2.console_exec("xml cluster show log_group").unwrap();
    assert!(xml.starts_with("<log_group name=\"panics\">\n"), "{xml}");
    assert!(
        xml.contains(
            "node=\"n1\" log=\"paniclog\">1700000001@n1: assertion failed: queue != NULL</line>"
        ),
        "{xml}"
    );
    assert_eq!(heard2.lock().len(), 1);

    // A count n1 makes after the append reaches n3 on the link that
    // carried the line, so n3 has read the line by the time it counts it.
    gauges[0].add(b"example.com", 1);
    wait_until("n3 hears n1's second count", || {
        gauges[2].get(b"example.com", Scope::Global) == 2
    });
    assert_eq!(
        n3.console_exec("cluster show log_group").unwrap(),
        "Logger Group: none\n"
    );
    assert!(heard3.lock().is_empty(), "n3 has no log_group");
    // n1 keeps no copy of its own lines: it has them in its journal.
    assert_eq!(
        n1.console_exec("cluster show log_group").unwrap(),
        "Logger Group: panics\n"
    );

    // Stopped, n1 still appends; it only sends nothing.
    n1.stop();
    paniclog.append(b"1700000002@n1: after stop").unwrap();
    for n in &nodes {
        n.stop();
    }
}
