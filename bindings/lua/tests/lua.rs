//! Runs the Lua tests with Debian's `lua5.4` against the module this
//! package builds (DESIGN.md §10: Lua tests run by the real interpreter):
//! `tests/log.lua`, whose journal is then read with the engine's own
//! reader (it must hold exactly the records the script was told were
//! durable), and `tests/api.lua`, which starts a node from Lua beside a
//! peer node this test runs, and goes through the whole `eccluster` API
//! and the `msys` shim.
//!
//! Needs `--features testing` (the script checks panics through
//! `ecc._testing`) and `lua5.4` on the PATH; without either it fails,
//! saying so, rather than skip.

use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use eccluster::config::{Format, LoadedConfig};
use eccluster::journal::format::LogId;
use eccluster::journal::{Durability, Journal};
use eccluster::node::{GroupLine, Node};
use eccluster::shared::Scope;
use parking_lot::Mutex;

/// `libeccluster_lua.so`, beside the test in `target/<profile>/deps/`:
/// cargo builds it there, up to date, before running the test, because
/// the test depends on the library's rlib and cargo builds all of a
/// library's crate types at once. (The copy in `target/<profile>/` is
/// only refreshed by `cargo build`.)
fn module() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let so = exe.parent().unwrap().join("libeccluster_lua.so");
    assert!(so.exists(), "{} was not built", so.display());
    so
}

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ecc-lua-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("cpath")).unwrap();
    dir
}

/// Runs `lua5.4 SCRIPT ARGS...` (a path under this package, or `-e` and
/// a chunk) with the module on its cpath, from `dir`.
fn lua(dir: &Path, script: &str, args: &[&str]) -> Output {
    // `require "eccluster"` looks for eccluster.so on the cpath.
    let link = dir.join("cpath/eccluster.so");
    if !link.exists() {
        std::os::unix::fs::symlink(module(), &link).unwrap();
    }
    let script = if script == "-e" {
        script.to_string()
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(script)
            .display()
            .to_string()
    };
    Command::new("lua5.4")
        .arg(&script)
        .args(args)
        .env("LUA_CPATH", dir.join("cpath/?.so"))
        // The scripts' panics print their message; a backtrace each is noise.
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("lua5.4 runs (apt-get install lua5.4)")
}

/// A loopback port free for TCP and UDP now, never handed out twice.
/// Starts `peer` once the script has made its event queue (it creates
/// `ready`), so that the queue hears the view the peer's joining makes: a
/// peer already up could form it first, before any queue listened.
fn start_when_ready(peer: Node, ready: PathBuf) -> std::thread::JoinHandle<Node> {
    std::thread::spawn(move || {
        for _ in 0..3000 {
            if ready.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        peer.start().unwrap();
        peer
    })
}

fn free_port() -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    loop {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        let mut given = GIVEN.lock();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() && !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// A node's configuration: both nodes replicate the same objects and
/// share a log_group; `lua1` also claims a DuraVIP (dry run).
fn config(dir: &Path, name: &str, ports: &[(&str, u16)]) -> String {
    let port = ports.iter().find(|(n, _)| *n == name).unwrap().1;
    let peers: String = ports
        .iter()
        .map(|(n, p)| format!("{n} = \"127.0.0.1:{p}\"\n"))
        .collect();
    let binding = if name == "lua1" {
        "[binding.lua-out]\nbind_address = \"10.98.1.7\"\nenable_duravip = true\n"
    } else {
        ""
    };
    format!(
        "[cluster]\nnodename = \"{name}\"\nnodeaddr = \"127.0.0.1\"\nlog_group = \"panics\"\n\
         heartbeats_per_sec = 10\nheartbeat_start_delay = 0\ndown_heartbeats = 30\n\
         view_mature_time = 1\nduravip_dry_run = true\n\
         [cluster.topology.\"10.98.1.0/24\"]\ninterface = \"demo0\"\n\
         [cluster.logs]\npaniclog = \"{logs}/paniclog.cluster\"\n\
         [cluster.replicate.inbound_cidr]\nmax_delay = 0.1\n\
         [cluster.replicate.outbound_domains]\nmax_delay = 0.1\n\
         [cluster.replicate.shared_named_throttles]\n\
         [cluster.replicate.metrics]\nparameters = \"connect;reception;rejection;audit_series;gauge_cache\"\n\
         [cluster.replicate.greylist]\ntype = \"cache\"\nmax_delay = 0.1\n\
         {binding}\
         [msgc_server.peers]\n{peers}\
         [eccluster_listener.listen.\"127.0.0.1:{port}\"]\n\
         [control_listener.listen.\"{socket}\"]\n",
        logs = dir.join(name).display(),
        socket = dir.join(format!("{name}.sock")).display(),
    )
}

#[test]
fn api_lua_drives_a_node_started_from_lua_beside_a_peer() {
    let dir = scratch("api");
    let ports = [("lua1", free_port()), ("peer1", free_port())];
    let lua_config = dir.join("lua1.toml");
    std::fs::write(&lua_config, config(&dir, "lua1", &ports)).unwrap();
    let peer = Node::new(
        LoadedConfig::parse(&config(&dir, "peer1", &ports), Format::Toml)
            .unwrap()
            .config,
    );
    let heard: Arc<Mutex<Vec<GroupLine>>> = Arc::default();
    let sink = Arc::clone(&heard);
    peer.register_log_group_hook(Box::new(move |line| sink.lock().push(line.clone())));
    let starting = start_when_ready(peer.clone(), dir.join("queue-ready"));
    let domains = peer.shared_gauge("outbound_domains").unwrap();
    domains.add(b"aol.com", 2);
    peer.shared_cidr("inbound_cidr")
        .unwrap()
        .add("10.1.5.5".parse().unwrap(), 1);

    // peer1's side of the conversation (see api.lua).
    let done = Arc::new(AtomicBool::new(false));
    let answer = {
        let (done, peer) = (Arc::clone(&done), peer.clone());
        let paniclog = format!("cluster://{}/peer1/paniclog.cluster=>master", dir.display());
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                if domains.get(b"from-lua", Scope::Global) >= 1 {
                    let cache = peer.shared_cache("greylist").unwrap();
                    cache.set(b"ack", b"seen", 0).unwrap();
                    let log = peer.open_log(&paniclog, Durability::EveryRecord).unwrap();
                    log.append(b"hello from peer1\0!").unwrap();
                    return true;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            false
        })
    };
    let port = ports[0].1.to_string();
    let out = lua(
        &dir,
        "tests/api.lua",
        &[dir.to_str().unwrap(), lua_config.to_str().unwrap(), &port],
    );
    let peer = starting.join().unwrap();
    done.store(true, Ordering::SeqCst);
    let answered = answer.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tests/api.lua failed:\n{stderr}");
    assert!(stderr.contains("api.lua: ok"), "{stderr}");
    assert!(answered, "peer1 never saw lua1's count");
    let lines: Vec<(String, Vec<u8>)> = heard
        .lock()
        .iter()
        .map(|l| (l.sender.clone(), l.line.clone()))
        .collect();
    assert_eq!(
        lines,
        [("lua1".to_string(), b"hello from lua1".to_vec())],
        "lua1's paniclog line went out on the log_group"
    );
    peer.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// tests/hooks.lua: register_hook, register_control answered by the
/// script's loop, and set_binding, on a node the script renames from
/// "draft" to "lua1" with a cluster_nodename hook, beside a peer.
#[test]
fn hooks_lua_runs_hooks_commands_and_set_binding_from_its_loop() {
    let dir = scratch("hooks");
    let ports = [("lua1", free_port()), ("peer1", free_port())];
    let lua_config = dir.join("lua1.toml");
    let text = config(&dir, "lua1", &ports).replace("nodename = \"lua1\"", "nodename = \"draft\"")
        + "[binding_group.pool.binding.p1]\nbind_address = \"10.1.0.1\"\n";
    std::fs::write(&lua_config, text).unwrap();
    let peer = Node::new(
        LoadedConfig::parse(&config(&dir, "peer1", &ports), Format::Toml)
            .unwrap()
            .config,
    );
    let ready = dir.join("queue-ready");
    let starting = start_when_ready(peer, ready.clone());
    let out = lua(
        &dir,
        "tests/hooks.lua",
        &[lua_config.to_str().unwrap(), ready.to_str().unwrap()],
    );
    starting.join().unwrap().stop();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tests/hooks.lua failed:\n{stderr}");
    assert!(stderr.contains("hooks.lua: ok"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A script that starts a node and ends without `ecc.stop()`: closing
/// its Lua state stops the node (its console socket is gone).
#[test]
fn the_node_stops_when_the_state_that_started_it_closes() {
    let dir = scratch("close");
    let ports = [("lua1", free_port()), ("peer1", free_port())];
    let lua_config = dir.join("lua1.toml");
    std::fs::write(&lua_config, config(&dir, "lua1", &ports)).unwrap();
    let out = lua(
        &dir,
        "-e",
        &[&format!(
            "local ecc = require 'eccluster'; ecc.start('{}'); \
             assert(os.execute('test -S {}')); io.stderr:write('started\\n')",
            lua_config.display(),
            dir.join("lua1.sock").display()
        )],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.contains("started"),
        "{stderr}"
    );
    assert!(
        !dir.join("lua1.sock").exists(),
        "the console socket outlived the script: the node was not stopped"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The rockspec is Lua that luarocks can read, and names what this
/// package builds: its version, and the library the rust-mlua backend
/// copies (`lib<name>.so`) as the `eccluster` module.
#[test]
fn the_rockspec_matches_the_package() {
    let dir = scratch("rockspec");
    let rockspec = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!(
        "eccluster-{}-1.rockspec",
        env!("CARGO_PKG_VERSION")
    ));
    let out = lua(
        &dir,
        "-e",
        &[&format!(
            "local r = {{}}; assert(loadfile('{}', 't', r))(); \
             print(r.rockspec_format, r.package, r.version, r.build.type, r.build.modules.eccluster, \
                   r.dependencies[1])",
            rockspec.display()
        )],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!(
            "3.0\teccluster\t{}-1\trust-mlua\t{}\tlua >= 5.4, < 5.5",
            env!("CARGO_PKG_VERSION"),
            // Cargo.toml's [lib] name, as module() finds it.
            "eccluster_lua"
        )
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn parse_hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn log_lua_appends_exactly_the_records_it_was_told_are_durable() {
    let dir = scratch("log");
    let out = lua(&dir, "tests/log.lua", &[dir.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tests/log.lua failed:\n{stderr}");
    assert!(stderr.contains("log.lua: ok, 7 records"), "{stderr}");

    let told: Vec<(String, Vec<u8>)> = std::fs::read_to_string(dir.join("appended.txt"))
        .unwrap()
        .lines()
        .map(|l| {
            let (id, hex) = l.split_once(' ').unwrap();
            (id.to_string(), parse_hex(hex))
        })
        .collect();
    assert_eq!(told.len(), 7);
    assert_eq!(
        told[1].1, b"with\0a NUL\0",
        "a NUL byte is part of the line"
    );
    assert_eq!(told[2].1, b"", "an empty line is a record");

    // Everything the journal holds, from its subscriber's start.
    let journal = Journal::open(&dir.join("mainlog")).unwrap();
    let mut held = Vec::new();
    while let Some((from, to)) = journal.read_interval("master").unwrap() {
        for record in journal.read_range(from, to).unwrap() {
            held.push((record.id.to_string(), record.payload));
        }
        journal.set_checkpoint("master", to).unwrap();
    }
    // Compared in short first, so that a failure prints something readable.
    let short = |records: &[(String, Vec<u8>)]| -> Vec<String> {
        records
            .iter()
            .map(|(id, line)| {
                let head: String = line
                    .iter()
                    .take(32)
                    .map(|b| b.escape_ascii().to_string())
                    .collect();
                format!("{id} {} bytes: {head}", line.len())
            })
            .collect()
    };
    assert_eq!(
        short(&held),
        short(&told),
        "the journal holds exactly what Lua was told"
    );
    assert!(held == told, "the journal holds exactly what Lua was told");
    let last: LogId = journal.last_written().unwrap();
    assert_eq!(last.to_string(), told.last().unwrap().0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The module exports its entry point and nothing else: not the engine's
/// C ABI, which a host linking libeccluster as well could bind to (see
/// build.rs).
#[test]
fn the_module_exports_only_luaopen_eccluster() {
    let out = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(module())
        .output()
        .expect("nm runs (binutils)");
    assert!(out.status.success());
    let exported: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (kind, name) = (f.nth(1)?, f.next()?);
            // Functions and data the module defines for others to use.
            matches!(kind, "T" | "D" | "B" | "R").then(|| name.to_string())
        })
        .collect();
    assert_eq!(exported, ["luaopen_eccluster"]);
}
