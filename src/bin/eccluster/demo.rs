//! `eccluster demo`: a three-node cluster and a manager on loopback, as real
//! processes, showing membership, a manager's broadcast, and failure
//! detection when the leader is killed.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use eccluster::io::control::ControlClient;
use eccluster::io::host;
use eccluster::io::seal;
use eccluster::node::VERSION;

const NODES: [&str; 3] = ["demo1", "demo2", "demo3"];
const MANAGER: &str = "mgr";

/// A child node, killed if the demo ends early.
struct Proc {
    name: &'static str,
    child: Child,
    socket: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(name: &str, ports: &[(&str, u16)], dir: &Path, manager: bool) -> String {
    let port = ports
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(0, |(_, p)| *p);
    let peers: String = ports
        .iter()
        .map(|(n, p)| format!("{n} = \"127.0.0.1:{p}\"\n"))
        .collect();
    format!(
        r#"[cluster]
nodename = "{name}"
node_type = "{kind}"
heartbeats_per_sec = 4
heartbeat_start_delay = 0
auth_key_file = "{key}"

[msgc_server.peers]
{peers}
[eccluster_listener.listen."127.0.0.1:{port}"]

[control_listener.listen."{socket}"]
"#,
        kind = if manager { "Manager" } else { "Momentum" },
        key = dir.join("cluster.key").display(),
        socket = dir.join(format!("{name}.sock")).display(),
    )
}

fn console(socket: &Path, command: &str) -> Result<String, String> {
    let mut c = ControlClient::connect(socket).map_err(|e| e.to_string())?;
    c.exec(command).map_err(|e| e.to_string())?
}

fn show(p: &Proc, command: &str) -> Result<(), String> {
    println!("{} eccluster({})> {command}", host::local_hms(), p.name);
    match console(&p.socket, command) {
        Ok(out) => print!("{out}"),
        Err(e) => println!("error: {e}"),
    }
    Ok(())
}

fn wait_for(
    what: &str,
    deadline: Duration,
    mut check: impl FnMut() -> bool,
) -> Result<Duration, String> {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if check() {
            return Ok(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("timed out waiting for {what}"))
}

/// The size of a node's view, and whether every member holds it.
fn view_state(socket: &Path) -> Option<(usize, bool)> {
    let info = console(socket, "cluster info").ok()?;
    let line = info.lines().find(|l| l.starts_with("View: "))?;
    let size = line.split(", ").nth(1)?.split(' ').next()?.parse().ok()?;
    let agreed = info
        .lines()
        .any(|l| l == "View Agreement: agreed by all members");
    Some((size, agreed))
}

pub fn run() -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("eccluster-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let result = run_in(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run_in(dir: &Path) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    seal::generate_key_file(&dir.join("cluster.key")).map_err(|e| e.to_string())?;
    // Free ports below the ephemeral range, so two demos on one host do not collide.
    let base = host::free_loopback_ports(4).map_err(|e| e.to_string())?;
    let names: Vec<&'static str> = NODES.iter().copied().chain([MANAGER]).collect();
    let ports: Vec<(&str, u16)> = names.iter().zip(base..).map(|(n, p)| (*n, p)).collect();
    println!(
        "== eccluster {VERSION} demo: three MTA nodes and a manager on loopback, sealed with a cluster key =="
    );
    let mut procs = Vec::new();
    for name in &names {
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, config(name, &ports, dir, *name == MANAGER))
            .map_err(|e| e.to_string())?;
        let log =
            std::fs::File::create(dir.join(format!("{name}.log"))).map_err(|e| e.to_string())?;
        let mut child = Command::new(&exe)
            .args(["node", "--config"])
            .arg(&path)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut ready = String::new();
        BufReader::new(stdout)
            .read_line(&mut ready)
            .map_err(|e| e.to_string())?;
        print!("{name}: {ready}");
        procs.push(Proc {
            name,
            child,
            socket: dir.join(format!("{name}.sock")),
        });
    }
    let took = wait_for(
        "every node to see all four",
        Duration::from_secs(10),
        || {
            procs
                .iter()
                .all(|p| view_state(&p.socket) == Some((4, true)))
        },
    )?;
    println!(
        "\n== all four agree on the view after {} ms ==\n",
        took.as_millis()
    );
    show(&procs[0], "cluster membership")?;
    show(&procs[1], "cluster info")?;
    println!();
    show(&procs[3], "broadcast cluster nodename")?;

    println!("\n== killing demo1 (the leader) with SIGKILL ==");
    let killed = Instant::now();
    let _ = procs[0].child.kill();
    let _ = procs[0].child.wait();
    let survivors = &procs[1..3];
    wait_for(
        "demo2 and demo3 to drop demo1",
        Duration::from_secs(10),
        || {
            survivors
                .iter()
                .all(|p| view_state(&p.socket).is_some_and(|(n, _)| n == 3))
        },
    )?;
    println!(
        "== demo2 and demo3 dropped demo1 {} ms after the kill ==\n",
        killed.elapsed().as_millis()
    );
    show(&procs[1], "cluster info")?;
    let log = std::fs::read_to_string(dir.join("demo2.log")).unwrap_or_default();
    println!("\n== demo2's log ==");
    for line in log
        .lines()
        .filter(|l| l.contains("demo1") || l.contains("view"))
    {
        println!("{line}");
    }
    println!("\n== stopping the rest with SIGTERM ==");
    for p in &mut procs[1..] {
        let _ = Command::new("kill").arg(p.child.id().to_string()).status();
        let _ = p.child.wait();
    }
    Ok(())
}
