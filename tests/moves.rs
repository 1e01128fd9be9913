//! Message moves (`#mmove`) between real nodes on loopback: the sending
//! node runs in this process (as an MTA host calls the library), the
//! receiver is an `eccluster node --accept-moves DIR` process (a stand-in
//! spool: DIR/<id> and DIR/deliveries.log), and a third node runs without
//! a move hook.
//!
//! The receiver is SIGKILLed in the middle of a stream of moves and
//! restarted; every message must end up accepted exactly once, with the
//! right bytes, and every sender told so. Progress is awaited (deliveries
//! in the spool's log), never a fixed time.

mod common;
use common::process::{NodeProcess, Spec};
use common::{TempDir, free_port, started_node, wait_until, wait_until_within};

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use eccluster::node::{
    MoveEnvelope, MoveError, MoveId, MoveRequest, MoveVerdict, MovedMessage, Node,
};
use parking_lot::Mutex;

/// How long one move may keep trying: longer than a restart of the
/// receiver on a slow machine.
const MOVE_TIMEOUT: Duration = Duration::from_secs(60);

/// Three nodes: n1 in this process, n2 a spool process, n3 a process
/// without a move hook.
struct Lab {
    dir: TempDir,
    n1: Node,
    n2: NodeProcess,
    n3: NodeProcess,
}

impl Lab {
    fn start(tag: &str) -> Lab {
        let dir = TempDir::new(&format!("moves-{tag}"));
        let peers: Vec<(String, u16)> = ["n1", "n2", "n3"]
            .iter()
            .map(|n| (n.to_string(), free_port()))
            .collect();
        let spec = |name: &str, extra: String, args: Vec<String>| Spec {
            name: name.into(),
            peers: peers.clone(),
            key: None,
            extra,
            listen: None,
            args,
            command: "node",
        };
        let n2 = NodeProcess::start(
            &dir.0,
            &spec(
                "n2",
                format!(
                    "mmove_dir = {:?}\n",
                    dir.0.join("n2-ids").display().to_string()
                ),
                vec![
                    "--accept-moves".into(),
                    dir.0.join("spool").display().to_string(),
                ],
            ),
        );
        let n3 = NodeProcess::start(&dir.0, &spec("n3", String::new(), Vec::new()));
        let n1 =
            started_node(&spec("n1", String::new(), Vec::new()).render(&dir.0.join("n1.sock")));
        Lab { dir, n1, n2, n3 }
    }

    fn spool(&self) -> PathBuf {
        self.dir.0.join("spool")
    }

    /// The ids in the spool's log, in order.
    fn deliveries(&self) -> Vec<String> {
        std::fs::read_to_string(self.spool().join("deliveries.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.n1.stop();
    }
}

/// Message `i`'s bytes: every seventh is 300 kB (two chunks on the wire),
/// the others up to 4 kB; each byte depends on the message and its place.
fn body(i: usize) -> Vec<u8> {
    let len = if i.is_multiple_of(7) {
        300_000
    } else {
        1 + i * 37 % 4096
    };
    (0..len).map(|k| ((k * 31 + i * 7) % 251) as u8).collect()
}

fn request<'a>(id: &str, body: &'a [u8]) -> MoveRequest<'a> {
    MoveRequest {
        id: Some(MoveId::parse(id).unwrap()),
        envelope: MoveEnvelope {
            mail_from: "sender@example.com".into(),
            recipients: vec!["rcpt@example.net".into()],
            binding: "out1".into(),
            binding_group: "default".into(),
            headers: vec![("X-Spool-Id".into(), id.into())],
        },
        body,
    }
}

/// One direction of a peer in `cluster show mmove`: `sent 3, in flight 0`
/// as a map.
fn counts(shown: &str, peer: &str, direction: &str) -> BTreeMap<String, u64> {
    let mut lines = shown.lines().skip_while(|l| *l != peer).skip(1);
    let line = lines
        .find_map(|l| l.trim().strip_prefix(&format!("[{direction}: ")))
        .unwrap_or_else(|| panic!("no {direction} line for {peer} in:\n{shown}"));
    line.trim_end_matches(']')
        .split(", ")
        .map(|item| {
            let (name, n) = item.rsplit_once(' ').expect("a count");
            (name.to_string(), n.parse().expect("a number"))
        })
        .collect()
}

#[test]
fn every_move_is_accepted_exactly_once_across_a_receiver_crash() {
    const MESSAGES: usize = 300;
    const THREADS: usize = 4;
    let mut lab = Lab::start("crash");
    let next = Arc::new(AtomicUsize::new(0));
    let senders: Vec<_> = (0..THREADS)
        .map(|_| {
            let (node, next) = (lab.n1.clone(), Arc::clone(&next));
            std::thread::spawn(move || {
                let mut results = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= MESSAGES {
                        return results;
                    }
                    let (id, body) = (format!("m{i:03}"), body(i));
                    results.push((
                        id.clone(),
                        node.move_message("n2", &request(&id, &body), MOVE_TIMEOUT),
                    ));
                }
            })
        })
        .collect();

    // A third of the way in, the receiver dies with moves in flight.
    wait_until_within("100 deliveries", MOVE_TIMEOUT, || {
        lab.deliveries().len() >= 100
    });
    lab.n2.kill();
    let before_restart = lab.deliveries().len();
    assert!(
        before_restart < MESSAGES,
        "the stream ended before the kill"
    );
    lab.n2.spawn();

    let results: Vec<(String, Result<_, MoveError>)> = senders
        .into_iter()
        .flat_map(|t| t.join().expect("a sender thread"))
        .collect();
    assert_eq!(results.len(), MESSAGES);
    for (id, result) in &results {
        let receipt = result.as_ref().unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(receipt.id.as_str(), id);
    }

    // Each id once in the spool's log, every file the message's bytes.
    let delivered = lab.deliveries();
    let unique: BTreeSet<&String> = delivered.iter().collect();
    assert_eq!(unique.len(), delivered.len(), "an id was spooled twice");
    let expected: BTreeSet<String> = (0..MESSAGES).map(|i| format!("m{i:03}")).collect();
    assert_eq!(unique, expected.iter().collect());
    for i in 0..MESSAGES {
        let file = std::fs::read(lab.spool().join(format!("m{i:03}"))).expect("a spool file");
        assert!(file == body(i), "m{i:03} differs from what was sent");
    }
    let log = lab.n2.log_text();
    assert!(
        !log.contains("without the redelivery flag"),
        "the receiver gave its host a duplicate:\n{log}"
    );

    // The sender's counts add up; the kill cost retries.
    let shown = lab.n1.console_exec("cluster show mmove").unwrap();
    let out = counts(&shown, "n2", "out");
    assert_eq!(out["sent"], MESSAGES as u64, "{shown}");
    assert_eq!(
        out["accepted"] + out["duplicates"],
        MESSAGES as u64,
        "{shown}"
    );
    assert_eq!(
        (out["rejected"], out["failed"], out["in flight"]),
        (0, 0, 0),
        "{shown}"
    );
    assert!(out["retries"] >= 1, "{shown}");
    // The restarted receiver's do too, for what it saw since.
    let shown = lab.n2.console("cluster show mmove").unwrap();
    let inc = counts(&shown, "n1", "in");
    assert_eq!(
        inc["received"],
        inc["accepted"] + inc["duplicates"] + inc["rejected"] + inc["deferred"] + inc["in flight"],
        "{shown}"
    );
    assert_eq!(inc["in flight"], 0, "{shown}");
    assert!(
        inc["accepted"] >= (MESSAGES - before_restart) as u64,
        "{shown}"
    );
    let xml = lab.n2.console("xml cluster show mmove").unwrap();
    assert!(xml.contains("<peer name=\"n1\">"), "{xml}");
}

#[test]
fn rejections_unknown_nodes_and_hookless_nodes_are_reported() {
    let lab = Lab::start("errors");
    // A message with no recipients: the spool rejects it, at once.
    let mut no_rcpt = request("r1", b"hello");
    no_rcpt.envelope.recipients.clear();
    match lab.n1.move_message("n2", &no_rcpt, MOVE_TIMEOUT) {
        Err(MoveError::Rejected { node, id, reason }) => {
            assert_eq!((node.as_str(), id.as_str()), ("n2", "r1"));
            assert_eq!(reason, "550 5.5.1 no recipients");
        }
        other => panic!("{other:?}"),
    }
    let err = lab
        .n1
        .move_message("nx", &request("u1", b"hello"), MOVE_TIMEOUT)
        .unwrap_err();
    assert_eq!(err, MoveError::UnknownNode("nx".into()));
    assert_eq!(
        err.to_string(),
        "cannot move to nx: no node of that name is configured (msgc_server peers)"
    );
    // n3 has no move hook: deferred until the deadline.
    match lab
        .n1
        .move_message("n3", &request("h1", b"hello"), Duration::from_secs(3))
    {
        Err(MoveError::Failed { node, last, .. }) => {
            assert_eq!(node, "n3");
            assert_eq!(last, "n3 deferred it: no move hook is registered on n3");
        }
        other => panic!("{other:?}"),
    }
    // From the console, as the demo does.
    let file = lab.dir.write("message.eml", "Subject: hi\r\n\r\nhello\r\n");
    let shown = lab
        .n1
        .console_exec(&format!(
            "cluster mmove send n2 {} a@example.com b@example.net",
            file.display()
        ))
        .unwrap();
    let id = shown
        .strip_prefix("moved ")
        .and_then(|s| s.split_once(" to n2 after 1 attempt"))
        .map(|(id, _)| id.to_string())
        .unwrap_or_else(|| panic!("{shown}"));
    assert_eq!(
        std::fs::read(lab.spool().join(&id)).unwrap(),
        b"Subject: hi\r\n\r\nhello\r\n"
    );
    let shown = lab.n1.console_exec("cluster show mmove").unwrap();
    let to_n2 = counts(&shown, "n2", "out");
    assert_eq!(
        (to_n2["sent"], to_n2["rejected"], to_n2["accepted"]),
        (2, 1, 1),
        "{shown}"
    );
    let to_n3 = counts(&shown, "n3", "out");
    assert_eq!(
        (to_n3["failed"], to_n3["deferred"] >= 1),
        (1, true),
        "{shown}"
    );
    // n3 deferred every attempt (the last may have been answered after
    // the sender's deadline, unheard).
    let shown = lab.n3.console("cluster show mmove").unwrap();
    let from_n1 = counts(&shown, "n1", "in");
    assert_eq!(from_n1["received"], from_n1["deferred"], "{shown}");
    assert!(from_n1["deferred"] >= to_n3["deferred"], "{shown}");
    assert!(
        lab.n1
            .console_exec("cluster mmove send n2")
            .unwrap_err()
            .starts_with("usage: cluster mmove send")
    );
}

/// What an in-process receiver's hook saw of each message: its id, and
/// whether it was a redelivery, its length, and whether to rebind.
type Seen = Vec<(String, bool, usize, bool)>;

/// A started node in this process named `name` among `ports`, keeping
/// its move ids in `ids`, with a hook that accepts and records.
fn receiver(dir: &Path, name: &str, ports: &[(&str, u16)], ids: &Path) -> (Node, Arc<Mutex<Seen>>) {
    let peers: String = ports
        .iter()
        .map(|(n, p)| format!("{n} = \"127.0.0.1:{p}\"\n"))
        .collect();
    let port = ports.iter().find(|(n, _)| *n == name).unwrap().1;
    let text = format!(
        "[cluster]\nnodename = \"{name}\"\nheartbeats_per_sec = 4\nheartbeat_start_delay = 0\n\
         mmove_dir = {ids:?}\n\
         [msgc_server.peers]\n{peers}\
         [eccluster_listener.listen.\"127.0.0.1:{port}\"]\n\
         [control_listener.listen.{socket:?}]\n",
        ids = ids.display().to_string(),
        socket = dir.join(format!("{name}.sock")).display().to_string(),
    );
    let config = eccluster::config::LoadedConfig::parse(&text, eccluster::config::Format::Toml)
        .unwrap()
        .config;
    let node = Node::new(config);
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let sink = Arc::clone(&seen);
    node.register_move_hook(Box::new(move |m: &MovedMessage| {
        sink.lock()
            .push((m.id.to_string(), m.redelivery, m.body.len(), m.rebind));
        MoveVerdict::Accept
    }));
    node.start().unwrap();
    (node, seen)
}

#[test]
fn a_50_mb_message_moves_and_its_id_is_a_duplicate_after_a_restart() {
    let dir = TempDir::new("moves-big");
    let ports = [("a", free_port()), ("b", free_port())];
    let (b, seen) = receiver(&dir.0, "b", &ports, &dir.0.join("b-ids"));
    let a = started_node(&format!(
        "[cluster]\nnodename = \"a\"\nheartbeats_per_sec = 4\nheartbeat_start_delay = 0\n\
         [msgc_server.peers]\na = \"127.0.0.1:{}\"\nb = \"127.0.0.1:{}\"\n\
         [eccluster_listener.listen.\"127.0.0.1:{}\"]\n\
         [control_listener.listen.{:?}]\n",
        ports[0].1,
        ports[1].1,
        ports[0].1,
        dir.0.join("a.sock").display().to_string()
    ));
    let big: Vec<u8> = (0..50 << 20).map(|i: usize| (i % 253) as u8).collect();
    let receipt = a
        .move_message("b", &request("big-1", &big), MOVE_TIMEOUT)
        .unwrap();
    assert!(!receipt.duplicate);
    // unconditional_rebind is true by default.
    assert_eq!(
        *seen.lock(),
        vec![("big-1".to_string(), false, big.len(), true)]
    );

    // Again: the receiver has it, and its host is not asked.
    let again = a
        .move_message("b", &request("big-1", b"x"), MOVE_TIMEOUT)
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(seen.lock().len(), 1);

    // A new process's worth of receiver on the same mmove_dir still knows.
    b.stop();
    drop(b);
    let (b, seen_after) = receiver(&dir.0, "b", &ports, &dir.0.join("b-ids"));
    let after = a
        .move_message("b", &request("big-1", b"x"), MOVE_TIMEOUT)
        .unwrap();
    assert!(after.duplicate);
    assert!(seen_after.lock().is_empty());
    let fresh = a
        .move_message("b", &request("small-1", b"x"), MOVE_TIMEOUT)
        .unwrap();
    assert!(!fresh.duplicate);
    wait_until("the hook's record", || seen_after.lock().len() == 1);
    let shown = a.console_exec("cluster show mmove").unwrap();
    let out = counts(&shown, "b", "out");
    assert_eq!(
        (out["sent"], out["accepted"], out["duplicates"]),
        (4, 2, 2),
        "{shown}"
    );
    a.stop();
    b.stop();
}
