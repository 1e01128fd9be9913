//! The event queue between real nodes: two nodes in this process on
//! loopback, a queue on each taken through its pollable descriptor as a
//! host's event loop would. Membership changes, a DuraVIP gained and lost
//! (dry-run plumbing) and a paniclog line on the log_group all arrive, in
//! order, and `Node::members`, `leader` and `duravips` agree with them.

mod common;
use common::{DEADLINE, TempDir, free_port, wait_until};

use std::collections::BTreeSet;
use std::sync::Arc;

use eccluster::core::duravip::{Claim, Service};
use eccluster::core::wire::{NodeType, PeerState};
use eccluster::io::events::{Event, EventQueue};
use eccluster::journal::Durability;
use eccluster::node::Node;

const VIP: &str = "10.99.5.7";

fn start(dir: &TempDir, name: &str, ports: &[(&str, u16)]) -> Node {
    let port = ports.iter().find(|(n, _)| *n == name).unwrap().1;
    let peers: String = ports
        .iter()
        .map(|(n, p)| format!("{n} = \"127.0.0.1:{p}\"\n"))
        .collect();
    let text = format!(
        "[cluster]\nnodename = \"{name}\"\nlog_group = \"panics\"\n\
         heartbeats_per_sec = 10\nheartbeat_start_delay = 0\n\
         view_mature_time = 1\nduravip_dry_run = true\n\
         [cluster.topology.\"10.99.5.0/24\"]\ninterface = \"demo0\"\n\
         [cluster.logs]\npaniclog = \"{logs}/paniclog.cluster\"\n\
         [msgc_server.peers]\n{peers}\
         [eccluster_listener.listen.\"127.0.0.1:{port}\"]\n\
         [control_listener.listen.\"{socket}\"]\n",
        logs = dir.0.join(name).display(),
        socket = dir.0.join(format!("{name}.sock")).display(),
    );
    common::started_node(&text)
}

/// The next event, waited for on the descriptor.
fn next(queue: &EventQueue) -> Event {
    assert!(
        queue.wait(Some(DEADLINE)).unwrap(),
        "no event within {DEADLINE:?}"
    );
    queue.next().expect("readable means an event is pending")
}

/// Events until one `pick` accepts, which is returned; the others (views
/// on the way there) are skipped.
fn next_matching<T>(queue: &EventQueue, mut pick: impl FnMut(&Event) -> Option<T>) -> T {
    loop {
        let event = next(queue);
        if let Some(t) = pick(&event) {
            return t;
        }
    }
}

#[test]
fn membership_duravip_and_log_line_events_arrive_through_the_descriptor() {
    let dir = TempDir::new("events");
    let ports = [("e1", free_port()), ("e2", free_port())];
    let e1 = start(&dir, "e1", &ports);
    let q1 = e1.events(0).unwrap();
    assert_eq!(q1.capacity(), 1024);
    assert!(!q1.wait(Some(std::time::Duration::ZERO)).unwrap());
    let e2 = start(&dir, "e2", &ports);
    let q2: Arc<EventQueue> = e2.events(16).unwrap();

    let members = next_matching(&q1, |e| match e {
        Event::Membership { members, .. } if members.len() == 2 => Some(members.clone()),
        _ => None,
    });
    assert_eq!(members, ["e1", "e2"]);

    wait_until("both see both alive", || {
        [&e1, &e2].iter().all(|n| {
            n.members()
                .unwrap()
                .iter()
                .all(|m| m.state == PeerState::Alive)
                && n.members().unwrap().len() == 2
        })
    });
    let m = e1.members().unwrap();
    assert_eq!(m[1].name, "e2");
    assert_eq!(m[1].node_type, NodeType::Momentum);
    assert!(
        m.iter().all(|m| m.in_view && m.subcluster == "default"),
        "{m:?}"
    );
    assert_eq!(e1.leader().unwrap(), e2.leader().unwrap());

    // A DuraVIP only e1 claims: e1 gains it.
    let claim = Claim {
        ip: VIP.parse().unwrap(),
        names: vec!["ev-out".into()],
        services: vec![Service::Binding],
        preference: None,
    };
    e1.register_duravip(claim.clone()).unwrap();
    let gained = next_matching(&q1, |e| match e {
        Event::DuraVipGained(c) => Some(c.clone()),
        _ => None,
    });
    assert_eq!(gained, claim);
    let vips = e1.duravips().unwrap();
    assert_eq!(vips.len(), 1, "{vips:?}");
    assert_eq!(vips[0].address.to_string(), VIP);
    assert_eq!(vips[0].owner.as_deref(), Some("e1"));
    assert!(vips[0].owned && vips[0].plumbed, "{vips:?}");
    wait_until("e2 hears e1 owns it", || {
        e2.duravips()
            .unwrap()
            .first()
            .is_some_and(|v| v.owner.as_deref() == Some("e1") && !v.owned && !v.plumbed)
    });
    e1.remove_duravip(claim.ip).unwrap();
    let lost = next_matching(&q1, |e| match e {
        Event::DuraVipLost(c) => Some(c.clone()),
        _ => None,
    });
    assert_eq!(lost.ip, claim.ip);
    assert!(e1.duravips().unwrap().iter().all(|v| !v.plumbed));

    // e1's paniclog line reaches e2's queue, not e1's own.
    let log = e1
        .open_log(
            &format!("cluster://{}/e1/paniclog.cluster=>master", dir.0.display()),
            Durability::EveryRecord,
        )
        .unwrap();
    log.append(b"1700000000@e1: panic\0with a NUL").unwrap();
    let line = next_matching(&q2, |e| match e {
        Event::LogLine(l) => Some(l.clone()),
        _ => None,
    });
    assert_eq!(line.sender, "e1");
    assert_eq!(line.line, b"1700000000@e1: panic\0with a NUL");

    // e2 stops: e1's view shrinks, and its queue says so.
    e2.stop();
    let members = next_matching(&q1, |e| match e {
        Event::Membership { members, .. } if members.len() == 1 => Some(members.clone()),
        _ => None,
    });
    assert_eq!(members, ["e1"]);
    let kinds: BTreeSet<&str> = std::iter::from_fn(|| q1.next()).map(|e| e.kind()).collect();
    assert!(
        kinds.iter().all(|k| *k == "membership"),
        "no log line on e1's own queue: {kinds:?}"
    );
    assert_eq!(q1.dropped(), 0);
    e1.stop();
    assert!(e1.members().is_err(), "members need a running node");
}
