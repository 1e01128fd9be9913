//! The `eccluster` command, run as a real process.

mod common;
use common::{Guard, TempDir, first_line, free_port, output_within_deadline, wait_until};

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_eccluster");
const REFERENCE_CONF: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/examples/config/ecelerity-cluster.conf"
);
const REFERENCE_TOML: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/examples/config/ecelerity-cluster.toml"
);

#[allow(unsafe_code)]
fn send_signal(pid: libc::pid_t, signal: libc::c_int) {
    // SAFETY: kill(2) takes plain integers and touches no memory of ours;
    // `pid` is our own unreaped child, so it cannot name another process.
    let rc = unsafe { libc::kill(pid, signal) };
    assert_eq!(rc, 0, "kill({pid}, {signal}) failed");
}

/// A running `eccluster node` with its temp directory.
struct RunningNode {
    // Declared first so the process is gone before its directory is removed.
    guard: Guard,
    name: String,
    port: u16,
    socket: PathBuf,
    ready: String,
    _dir: TempDir,
}

fn start_node(tag: &str) -> RunningNode {
    let dir = TempDir::new(tag);
    let socket = dir.0.join("console");
    let port = free_port();
    let name = format!("cli-{tag}");
    let config = dir.write(
        "node.toml",
        &format!(
            "[cluster]\nnodename = \"{name}\"\nnodeaddr = \"127.0.0.1\"\n\
             [msgc_server.peers]\n\"{name}\" = \"127.0.0.1:{port}\"\n\
             [eccluster_listener.listen.\"127.0.0.1:{port}\"]\n\
             [control_listener.listen.{:?}]\n",
            socket.display().to_string()
        ),
    );
    let child = Command::new(BIN)
        .args(["node", "--config"])
        .arg(&config)
        .env_remove("EC_NODE_NAME")
        .env_remove("EC_SUB_CLUSTER")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn eccluster node");
    let mut guard = Guard(Some(child));
    let stdout = guard.child().stdout.take().expect("stdout");
    let ready = first_line(stdout);
    RunningNode {
        guard,
        name,
        port,
        socket,
        ready,
        _dir: dir,
    }
}

fn console(socket: &Path, command: &str) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("console").arg("--socket").arg(socket);
    cmd.args(command.split_whitespace());
    output_within_deadline(cmd, None)
}

fn run(args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("EC_NODE_NAME")
        .env_remove("EC_SUB_CLUSTER");
    output_within_deadline(cmd, None)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok_stdout(what: &str, o: &Output) -> String {
    assert!(
        o.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        o.status,
        stdout(o),
        stderr(o)
    );
    stdout(o)
}

// ---------------------------------------------------------------------------
// node + console
// ---------------------------------------------------------------------------

#[test]
fn node_serves_the_console_and_stops_on_sigterm() {
    let mut node = start_node("term");
    let ready = node.ready.trim_end().to_string();
    assert!(ready.starts_with("ready "), "{ready:?}");
    assert!(ready.contains(&format!("node={}", node.name)), "{ready:?}");
    assert!(
        ready.contains(&format!("nodeaddr=127.0.0.1:{}", node.port)),
        "{ready:?}"
    );
    assert!(ready.contains("subcluster=default"), "{ready:?}");
    assert!(
        ready.contains(&format!("console={}", node.socket.display())),
        "{ready:?}"
    );

    // The socket exists once ready was printed, owner-only.
    let mode = std::fs::metadata(&node.socket)
        .expect("the console socket exists")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");

    let out = ok_stdout(
        "cluster nodename",
        &console(&node.socket, "cluster nodename"),
    );
    assert_eq!(out.trim(), node.name);

    let out = ok_stdout(
        "cluster nodeaddr",
        &console(&node.socket, "cluster nodeaddr"),
    );
    assert!(out.contains(&format!("127.0.0.1:{}", node.port)), "{out:?}");

    let out = ok_stdout("cluster info", &console(&node.socket, "cluster info"));
    let lines: Vec<&str> = out.lines().collect();
    // The reference's four lines come first; eccluster's status lines follow.
    assert!(lines.len() > 4, "{out}");
    assert!(lines[4].starts_with("View: "), "{out}");
    let daemon = lines[0];
    let prefix = format!("Daemon: {} [m:#ec0-", node.port);
    assert!(daemon.starts_with(&prefix), "{daemon}");
    let inner = &daemon[prefix.len()..];
    let (main, rest) = inner
        .split_once(&format!("#{},s:#ec1-", node.name))
        .expect(daemon);
    assert!(
        !main.is_empty() && main.bytes().all(|b| b.is_ascii_digit()),
        "{daemon}"
    );
    let shared = rest
        .strip_suffix(&format!("#{}]", node.name))
        .unwrap_or_else(|| panic!("{daemon}"));
    assert!(
        !shared.is_empty() && shared.bytes().all(|b| b.is_ascii_digit()),
        "{daemon}"
    );
    assert_eq!(lines[1], "Control Group: ec_console");
    assert_eq!(
        lines[2],
        format!("Cluster Group: ec_cluster ({} is leader)", node.name)
    );
    assert_eq!(lines[3], "Logger Group: none");

    let out = ok_stdout(
        "xml cluster info",
        &console(&node.socket, "xml cluster info"),
    );
    let out = out.trim();
    assert!(out.starts_with("<cluster_info>"), "{out}");
    assert!(out.ends_with("</cluster_info>"), "{out}");
    assert!(out.contains(&node.name), "{out}");

    let out = ok_stdout("version", &console(&node.socket, "version"));
    assert!(out.contains(env!("CARGO_PKG_VERSION")), "{out}");

    let out = ok_stdout("cluster help", &console(&node.socket, "cluster help"));
    for command in ["cluster nodename", "cluster nodeaddr", "cluster info"] {
        assert!(out.contains(command), "{command} missing from help:\n{out}");
    }

    let bad = console(&node.socket, "cluster nodenmae");
    assert!(!bad.status.success(), "an unknown command must fail");
    let err = stderr(&bad);
    assert!(err.contains("did you mean"), "{err}");
    assert!(err.contains("cluster nodename"), "{err}");

    let pid = node.guard.pid();
    send_signal(pid, libc::SIGTERM);
    let status = node.guard.wait_exit();
    assert!(status.success(), "SIGTERM exit: {status}");
    assert!(!node.socket.exists(), "the socket file is removed on exit");
}

#[test]
fn node_stops_cleanly_on_sigint() {
    let mut node = start_node("int");
    assert!(node.ready.starts_with("ready "), "{:?}", node.ready);
    assert!(node.socket.exists());
    let out = ok_stdout(
        "cluster nodename",
        &console(&node.socket, "cluster nodename"),
    );
    assert_eq!(out.trim(), node.name);
    let pid = node.guard.pid();
    send_signal(pid, libc::SIGINT);
    let status = node.guard.wait_exit();
    assert!(status.success(), "SIGINT exit: {status}");
    wait_until("the socket to disappear", || !node.socket.exists());
}

#[test]
fn interactive_console_prompts_and_runs_commands() {
    let mut node = start_node("interactive");
    let mut cmd = Command::new(BIN);
    cmd.arg("console").arg("--socket").arg(&node.socket);
    let out = output_within_deadline(cmd, Some("cluster nodename\nquit\n"));
    let text = ok_stdout("interactive console", &out);
    let marker = format!(" eccluster({})> ", node.socket.display());
    let at = text
        .find(&marker)
        .unwrap_or_else(|| panic!("no prompt in {text:?}"));
    assert!(at >= 8, "{text:?}");
    let clock = &text.as_bytes()[at - 8..at];
    let is_hms = clock.iter().enumerate().all(|(i, b)| match i {
        2 | 5 => *b == b':',
        _ => b.is_ascii_digit(),
    });
    assert!(is_hms, "the prompt starts HH:MM:SS: {text:?}");
    assert!(
        text.lines().any(|l| l.ends_with(&node.name)),
        "the command's output is shown: {text:?}"
    );
    assert!(
        text.matches(&marker).count() >= 2,
        "prompted again: {text:?}"
    );

    send_signal(node.guard.pid(), libc::SIGTERM);
    assert!(node.guard.wait_exit().success());
}

#[test]
fn console_without_a_node_fails() {
    let dir = TempDir::new("nonode");
    let out = console(&dir.0.join("nothing"), "cluster nodename");
    assert!(!out.status.success());
    assert!(!stderr(&out).trim().is_empty());
}

#[test]
fn node_with_a_missing_config_fails_clearly() {
    let dir = TempDir::new("missing");
    let path = dir.0.join("missing.toml");
    let out = run(&["node", "--config", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("missing.toml"), "{err}");
    assert!(err.contains("cannot read"), "{err}");
    assert!(stdout(&out).is_empty(), "no ready line: {}", stdout(&out));

    let out = run(&["node"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--config"), "{}", stderr(&out));
}

// ---------------------------------------------------------------------------
// keygen
// ---------------------------------------------------------------------------

#[test]
fn keygen_writes_a_private_key_once() {
    let dir = TempDir::new("keygen");
    let path = dir.0.join("cluster.key");
    let file = path.to_str().unwrap();
    let out = ok_stdout("keygen", &run(&["keygen", file]));
    assert_eq!(out, format!("wrote key {file} (mode 0600)\n"));
    let meta = std::fs::metadata(&path).expect("key file");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.len(), 65);
    let key = std::fs::read(&path).expect("read key");

    let again = run(&["keygen", file]);
    assert!(!again.status.success());
    let err = stderr(&again);
    assert!(err.contains("refusing to overwrite"), "{err}");
    assert_eq!(
        std::fs::read(&path).expect("read key"),
        key,
        "key unchanged"
    );

    assert!(!run(&["keygen"]).status.success());
}

// ---------------------------------------------------------------------------
// check-config, demo
// ---------------------------------------------------------------------------

fn listing_lines(out: &str) -> Vec<&str> {
    out.lines()
        .filter(|l| !l.starts_with("# ") || l.contains("is not set"))
        .collect()
}

#[test]
fn check_config_prints_the_effective_configuration() {
    let conf = ok_stdout("check-config conf", &run(&["check-config", REFERENCE_CONF]));
    let lines: Vec<&str> = conf.lines().map(str::trim).collect();
    for expected in [
        "heartbeats_per_sec = 1.0  # default",
        "cluster_group = \"ec_cluster\"",
        "control_group = \"ec_console\"",
        "if_down_limit = 4  # default",
        "interface = \"eth1\"",
        "Replicate \"shared_named_throttles\" {",
    ] {
        assert!(lines.contains(&expected), "missing {expected:?}:\n{conf}");
    }
    assert!(
        conf.starts_with(&format!("# {REFERENCE_CONF}: valid")),
        "{conf}"
    );

    let toml = ok_stdout("check-config toml", &run(&["check-config", REFERENCE_TOML]));
    assert_eq!(listing_lines(&toml), listing_lines(&conf));
}

#[test]
fn check_config_reports_a_misspelling_with_its_place() {
    let dir = TempDir::new("check-bad");
    let path = dir.write(
        "bad.conf",
        "cluster {\n  cluster_group = \"ec_cluster\"\n  hearbeats_per_sec = 4\n}\n",
    );
    let out = run(&["check-config", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains(&format!("{}:3:3", path.display())), "{err}");
    assert!(err.contains("did you mean 'heartbeats_per_sec'"), "{err}");

    let out = run(&["check-config"]);
    assert!(!out.status.success());
}

#[test]
fn check_config_loads_the_policy_scripts() {
    let dir = TempDir::new("check-policy");
    let script = dir.write("route.lua", "-- fine\n");
    let conf = format!(
        "scriptlet \"scriptlet\" {{ script \"route\" {{ source = \"{}\" }} }}\n",
        script.display()
    );
    let path = dir.write("policy.conf", &conf);
    let out = ok_stdout(
        "check-config",
        &run(&["check-config", path.to_str().unwrap()]),
    );
    assert!(out.contains("# policy scripts load: route\n"), "{out}");

    std::fs::write(&script, "local x = \n").unwrap();
    let out = run(&["check-config", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("policy: route.lua:2:"), "{err}");
}

#[test]
fn demo_runs_a_cluster_and_shows_failover() {
    let out = run(&["demo"]);
    let text = ok_stdout("demo", &out);
    for name in ["demo1", "demo2", "demo3", "mgr"] {
        assert!(
            text.contains(&format!("Node Name: {name}")),
            "{name} in the membership:\n{text}"
        );
    }
    assert!(
        text.contains("Cluster Group: ec_cluster (demo1 is leader)"),
        "{text}"
    );
    assert!(
        text.contains("[demo3]\ndemo3\n"),
        "the manager's broadcast answers:\n{text}"
    );
    assert!(text.contains("dropped demo1"), "{text}");
    assert!(
        text.contains("Cluster Group: ec_cluster (demo2 is leader)"),
        "the new leader:\n{text}"
    );
    assert!(text.contains("Down: demo1"), "{text}");
    // Inbound connections add up on every node, and demo1's share leaves.
    let row = |n: i64, prefix: &str| format!("\n{n:>7}{:25}{prefix}\n", "");
    let (before, after) = text
        .split_once("== killing demo1")
        .expect("the kill is announced");
    assert!(before.contains("counts all 7"), "{text}");
    assert!(before.contains(&row(7, "127.0.0.0/8")), "{text}");
    assert!(before.contains(&row(3, "127.0.1.1/32")), "{text}");
    assert!(after.contains(&row(4, "127.0.0.0/8")), "{text}");
    assert!(!after.contains("127.0.1.1/32"), "{text}");
    // The manager pulled every node's mainlog and the node checkpointed.
    let (_, pulled) = before
        .split_once("== the manager wrote every node's lines")
        .expect("the aggregation is shown");
    assert!(
        pulled.contains("mainlog\n\t[on disk: ")
            && pulled.contains("\t[subscriber: 'master' @ 00000000:00000005]\n"),
        "{text}"
    );
    for node in ["demo1", "demo2", "demo3"] {
        assert!(
            pulled.contains(&format!(
                "{node} mainlog\n\t[subscriber: 'master' @ 00000000:00000005]\n\t[written: 5 lines,"
            )),
            "{text}"
        );
    }
    assert!(
        pulled.contains("demo2: delivered message 1\ndemo2: delivered message 2\n"),
        "{text}"
    );
    // demo1's MTA routes messages through the Lua policy: two leave from
    // its own bindings, one moves to demo2, which spools it and runs
    // set_binding again, and the move is counted.
    let routed = text
        .split_once("== set_binding: ")
        .map(|(_, after)| after)
        .unwrap_or_default();
    let routed = routed.split_once("== inbound").map_or(routed, |(r, _)| r);
    assert_eq!(routed.matches("\nsend from out").count(), 2, "{text}");
    assert!(routed.contains(" is on demo2: moved there as "), "{text}");
    assert!(
        routed.contains("from demo1; set_binding here: send from out"),
        "{text}"
    );
    assert!(
        routed.contains("demo2\n\t[out: sent 1, accepted 1, duplicates 0, rejected 0"),
        "{text}"
    );
}

#[test]
fn unknown_subcommand_fails_with_usage() {
    let out = run(&["frobnicate"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("unknown command 'frobnicate'"), "{err}");
    assert!(err.contains("usage:"), "{err}");
    let out = ok_stdout("version", &run(&["version"]));
    assert!(out.contains(env!("CARGO_PKG_VERSION")));
}
