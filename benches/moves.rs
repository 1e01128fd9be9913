//! Message moves (`#mmove`) per second over loopback: two nodes in this
//! process, a sealed cluster link (a cluster key, as in production)
//! between them, a move hook on the receiver that accepts at once. Each
//! move is timed from the call to the receiver's acceptance coming back;
//! messages of 1 KiB and 100 KiB, from 1 and from 4 sender threads (each
//! waiting for its own move, as an MTA's threads would). The receiver
//! keeps its ids in memory, except in the last case, where it keeps them
//! in a `mmove_dir` next to this binary (on the build's disk, not a
//! tmpfs): two fdatasyncs per move, shared by the moves under way
//! together.
//!
//! Criterion reports moves per second as elements per second.
//! `-- --test` (CI's smoke run) makes each case once.

mod common;
use common::slowest_thread;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use eccluster::config::{Format, LoadedConfig};
use eccluster::io::host::free_loopback_ports;
use eccluster::io::seal::generate_key_file;
use eccluster::node::{MoveEnvelope, MoveRequest, MoveVerdict, Node};

/// A node of the pair; `ids` is the receiver's `mmove_dir`, if any.
fn node(dir: &Path, name: &str, ports: u16, ids: Option<&Path>) -> Node {
    let port = if name == "a" { ports } else { ports + 1 };
    let ids = ids.map_or(String::new(), |d| {
        format!("mmove_dir = {:?}\n", d.display().to_string())
    });
    let text = format!(
        "[cluster]\nnodename = \"{name}\"\nheartbeats_per_sec = 4\nheartbeat_start_delay = 0\n\
         auth_key_file = {key:?}\n{ids}\
         [msgc_server.peers]\na = \"127.0.0.1:{ports}\"\nb = \"127.0.0.1:{b}\"\n\
         [eccluster_listener.listen.\"127.0.0.1:{port}\"]\n\
         [control_listener.listen.{socket:?}]\n",
        key = dir.join("key").display().to_string(),
        b = ports + 1,
        socket = dir.join(format!("{name}.sock")).display().to_string(),
    );
    let config = LoadedConfig::parse(&text, Format::Toml)
        .unwrap_or_else(|e| panic!("{e}\n{text}"))
        .config;
    Node::new(config)
}

/// A sender, a receiver that accepts everything, and the body to move.
struct Pair {
    a: Node,
    b: Node,
    body: Vec<u8>,
    dir: PathBuf,
}

impl Pair {
    fn new(tag: &str, size: usize, durable: bool) -> Pair {
        // Beside the binary: on the build's disk, where fsyncs cost what
        // they cost (a tmpfs would make them free).
        let base = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_else(std::env::temp_dir);
        let dir = base.join(format!("ecc-bench-moves-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        generate_key_file(&dir.join("key")).unwrap();
        let ports = free_loopback_ports(2).unwrap();
        let ids = durable.then(|| dir.join("ids"));
        let b = node(&dir, "b", ports, ids.as_deref());
        b.register_move_hook(Box::new(|_| MoveVerdict::Accept));
        b.start().unwrap();
        let a = node(&dir, "a", ports, None);
        a.start().unwrap();
        let pair = Pair {
            a,
            b,
            body: (0..size).map(|i| (i % 251) as u8).collect(),
            dir,
        };
        // The first move waits for the link.
        pair.send();
        pair
    }

    fn send(&self) {
        let request = MoveRequest {
            id: None,
            envelope: MoveEnvelope {
                mail_from: "sender@example.com".into(),
                recipients: vec!["rcpt@example.net".into()],
                binding: "out1".into(),
                binding_group: "default".into(),
                headers: Vec::new(),
            },
            body: &self.body,
        };
        self.a
            .move_message("b", &request, Duration::from_secs(60))
            .expect("a move");
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        // The nodes first: they hold files in the directory.
        self.a.stop();
        self.b.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn moves(c: &mut Criterion) {
    let mut group = c.benchmark_group("mmove");
    let cases = [
        ("1 KiB", 1024, 1, false),
        ("1 KiB", 1024, 4, false),
        ("100 KiB", 100 * 1024, 1, false),
        ("100 KiB", 100 * 1024, 4, false),
        ("1 KiB, durable ids", 1024, 4, true),
    ];
    for (i, (size_name, size, threads, durable)) in cases.into_iter().enumerate() {
        let pair = Arc::new(Pair::new(&i.to_string(), size, durable));
        group.throughput(Throughput::Elements(threads as u64));
        let name = format!(
            "{size_name}, {threads} thread{}",
            if threads == 1 { "" } else { "s" }
        );
        group.bench_function(&name, |b| {
            b.iter_custom(|iters| slowest_thread(&pair, threads, iters, |p, _| p.send()))
        });
    }
    group.finish();
}

criterion_group!(benches, moves);
criterion_main!(benches);
