//! The aggregator's throughput over loopback: an MTA node's journal holds
//! a backlog of 100-byte records; a manager node in the same process pulls
//! it over the sealed cluster link into its output file, syncing each
//! batch before it checkpoints. Timed from the manager's start to the last
//! byte in the file; printed as a markdown table, at
//! `log_active_interval = 0` (pull on as long as there is more) and at the
//! reference's default of 1 s between segments.
//!
//! `-- --test` (CI's smoke run) moves a small backlog, at interval 0 only.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use eccluster::config::{Format, LoadedConfig};
use eccluster::io::host::free_loopback_ports;
use eccluster::io::seal::generate_key_file;
use eccluster::journal::{Journal, Start, Writer};
use eccluster::node::Node;

const RECORD: usize = 100;

fn node_config(dir: &Path, name: &str, ports: u16, active: u32, manager: bool) -> String {
    let (mta_port, mgr_port) = (ports, ports + 1);
    let mut text = format!(
        "[cluster]\nnodename = \"{name}\"\nnode_type = \"{kind}\"\nheartbeats_per_sec = 4\n\
         heartbeat_start_delay = 0\nauth_key_file = {key:?}\n\
         log_active_interval = {active}\nlog_idle_interval = 1\n\
         [cluster.logs]\nmainlog = {journal:?}\n\
         [msgc_server.peers]\nmta = \"127.0.0.1:{mta_port}\"\nmgr = \"127.0.0.1:{mgr_port}\"\n\
         [eccluster_listener.listen.\"127.0.0.1:{port}\"]\n\
         [control_listener.listen.{socket:?}]\n",
        kind = if manager { "Manager" } else { "Momentum" },
        key = dir.join("key").display().to_string(),
        journal = dir.join("mainlog").display().to_string(),
        port = if manager { mgr_port } else { mta_port },
        socket = dir.join(format!("{name}.sock")).display().to_string(),
    );
    if manager {
        text += &format!(
            "[logs]\nlogfile = {:?}\n",
            dir.join("out/%{l}/%{n}").display().to_string()
        );
    }
    text
}

fn start(text: &str) -> Node {
    let config = LoadedConfig::parse(text, Format::Toml)
        .unwrap_or_else(|e| panic!("{e}\n{text}"))
        .config;
    let node = Node::new(config);
    node.start().expect("start a node");
    node
}

/// Moves `records` records from a fresh journal to the manager's file;
/// the time it took.
fn run(records: u64, active: u32) -> Duration {
    let dir: PathBuf =
        std::env::temp_dir().join(format!("ecc-bench-logs-{}-{active}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    generate_key_file(&dir.join("key")).unwrap();
    let journal = Journal::create(&dir.join("mainlog"), None).unwrap();
    journal.add_subscriber("master", Start::Begin).unwrap();
    let (mut writer, _) = Writer::open(&journal).unwrap();
    let mut line = [b'x'; RECORD];
    for i in 0..records {
        line[..16].copy_from_slice(format!("{i:016}").as_bytes());
        writer.append(0, 0, &line).unwrap();
    }
    writer.sync().unwrap();
    let ports = free_loopback_ports(2).unwrap();
    let mta = start(&node_config(&dir, "mta", ports, active, false));
    let started = Instant::now();
    let mgr = start(&node_config(&dir, "mgr", ports, active, true));
    let out = dir.join("out/mainlog/mta");
    let expected = records * (RECORD as u64 + 1);
    while std::fs::metadata(&out).map_or(0, |m| m.len()) < expected {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the backlog did not arrive"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let took = started.elapsed();
    mgr.stop();
    mta.stop();
    let _ = std::fs::remove_dir_all(&dir);
    took
}

fn main() {
    let smoke = std::env::args().any(|a| a == "--test");
    println!("| log_active_interval | records of {RECORD} B | seconds | records/s | MB/s |");
    println!("|---|---|---|---|---|");
    let cases: &[(u64, u32)] = if smoke {
        &[(5_000, 0)]
    } else {
        &[(1_000_000, 0), (200_000, 1)]
    };
    for &(records, active) in cases {
        let took = run(records, active).as_secs_f64();
        let rate = records as f64 / took;
        println!(
            "| {active} | {records} | {took:.2} | {rate:.0} | {:.1} |",
            rate * RECORD as f64 / 1e6
        );
    }
}
