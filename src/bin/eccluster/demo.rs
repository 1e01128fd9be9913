//! `eccluster demo`: a three-node cluster and a manager as real processes,
//! showing membership, a manager's broadcast, DuraVIP ownership, inbound
//! connections counted on each node adding up cluster-wide, the manager
//! pulling each node's mainlog journal into its files, messages routed
//! through a Lua set_binding policy (one moved to the node that owns its
//! binding), and failure detection, DuraVIP failover and the dead node's
//! connections leaving the counts when the leader is killed.
//!
//! By default every node runs on loopback and DuraVIP runs dry (nothing is
//! plumbed: three nodes sharing one host's interfaces could not each own
//! addresses, and each node's start-up purge would remove the others').
//! `--netns` gives every node its own network namespace on a bridge, so the
//! addresses are plumbed and announced for real.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use eccluster::io::control::ControlClient;
use eccluster::io::seal;
use eccluster::io::{host, signals};
use eccluster::node::VERSION;

use crate::inbound::connect_from;
use crate::netns::{self, Lab};

const NODES: [&str; 3] = ["demo1", "demo2", "demo3"];
const MANAGER: &str = "mgr";
/// Every MTA node claims binding `outN` on 10.99.0.N for N in 1..=VIPS.
const VIPS: usize = 6;
const VIP_BLOCK: &str = "10.99.0.0/24";
/// The one binding with a preferred node, and that node: not the leader, so
/// it keeps its address through the failover.
const PREFERRED: (usize, &str) = (6, "demo3");
/// The interface named in the Topology when nothing is plumbed.
const DRY_RUN_INTERFACE: &str = "demo0";
/// Inbound connections each MTA node's listener is sent in the loopback
/// demo: (node, source address, how many).
const INBOUND: [(&str, [u8; 4], usize); 4] = [
    ("demo1", [127, 0, 1, 1], 3),
    ("demo2", [127, 0, 1, 2], 2),
    ("demo2", [127, 0, 2, 2], 1),
    ("demo3", [127, 0, 1, 3], 1),
];

/// The binding group of the outN bindings.
const GROUP: &str = "pool";
/// The MTA nodes' policy script: the default one shipped in lua/.
const POLICY: &str = "set_binding.lua";
const POLICY_SOURCE: &str = include_str!("../../../lua/set_binding.lua");

/// The cluster port in `--netns` mode, where every node has its own ports.
const NETNS_PORT: u16 = 4802;

/// Set on SIGINT or SIGTERM. Every wait and console step checks it, so an
/// interrupted demo unwinds through its guards (processes, namespaces,
/// temporary directory) like a failed one.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Where the nodes run.
enum Net {
    /// All on 127.0.0.1 from this port on, DuraVIP dry.
    Loopback(u16),
    /// Each in its own namespace.
    Namespaces(Lab),
}

impl Net {
    /// The node's cluster address, `ip:port`.
    fn addr(&self, name: &str) -> String {
        match self {
            Net::Loopback(base) => format!("127.0.0.1:{}", *base + index(name) as u16),
            Net::Namespaces(_) => format!("{}:{NETNS_PORT}", host_ip(name)),
        }
    }

    /// Where the MTA node `name` accepts the inbound connections it counts
    /// (`eccluster node --count-inbound`); loopback only.
    fn inbound(&self, name: &str) -> Option<SocketAddr> {
        match self {
            Net::Loopback(base) => Some(SocketAddr::from((
                [127, 0, 0, 1],
                *base + (names().count() + index(name)) as u16,
            ))),
            Net::Namespaces(_) => None,
        }
    }

    fn interface(&self) -> &'static str {
        match self {
            Net::Loopback(_) => DRY_RUN_INTERFACE,
            Net::Namespaces(_) => netns::INTERFACE,
        }
    }

    /// `eccluster node`, in the node's namespace if it has one.
    fn command(&self, exe: &Path, name: &str) -> Command {
        match self {
            Net::Loopback(_) => Command::new(exe),
            Net::Namespaces(lab) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &lab.namespace(name)]).arg(exe);
                c
            }
        }
    }
}

fn names() -> impl Iterator<Item = &'static str> {
    NODES.iter().copied().chain([MANAGER])
}

fn index(name: &str) -> usize {
    names().position(|n| n == name).unwrap_or(0)
}

/// A node's own address in `--netns` mode: 10.99.0.11.. for the MTA nodes,
/// 10.99.0.20 for the manager, in the VIPs' subnet so that the manager can
/// stand for a client that reaches the VIPs by ARP.
fn host_ip(name: &str) -> String {
    if name == MANAGER {
        "10.99.0.20".into()
    } else {
        format!("10.99.0.{}", 11 + index(name))
    }
}

fn vip(n: usize) -> String {
    format!("10.99.0.{n}")
}

/// A child node, killed if the demo ends early.
struct Proc {
    name: &'static str,
    child: Child,
    socket: PathBuf,
    log: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(name: &str, net: &Net, dir: &Path) -> String {
    let manager = name == MANAGER;
    let peers: String = names()
        .map(|n| format!("{n} = \"{}\"\n", net.addr(n)))
        .collect();
    // DuraVIP settles within seconds: the defaults (5 s to mature, 10 s
    // between balancing rounds, one address a round) suit production, not a
    // demo. Every node gets them, as they must be equal cluster-wide.
    let mut text = format!(
        r#"[cluster]
nodename = "{name}"
node_type = "{kind}"
heartbeats_per_sec = 4
heartbeat_start_delay = 0
auth_key_file = "{key}"
view_mature_time = 1
view_balance_interval = 1
duravip_balance_set_size = 2
log_active_interval = 0
log_idle_interval = 1
"#,
        kind = if manager { "Manager" } else { "Momentum" },
        key = dir.join("cluster.key").display(),
    );
    if !manager {
        if matches!(net, Net::Loopback(_)) {
            text.push_str("duravip_dry_run = true\n");
        }
        text.push_str("[cluster.replicate.inbound_cidr]\nmax_delay = 0.2\n");
        text.push_str(&format!(
            "[cluster.topology.\"{VIP_BLOCK}\"]\ninterface = \"{}\"\n",
            net.interface()
        ));
    }
    // The log service: each MTA node publishes its mainlog; the manager
    // pulls the keys its own dictionary names, at once while there is more
    // (log_active_interval = 0) and each second when idle.
    text.push_str(&format!(
        "[cluster.logs]\nmainlog = \"{}\"\n",
        mainlog(dir, name).display()
    ));
    text.push_str(&format!(
        "\n[msgc_server.peers]\n{peers}\n[eccluster_listener.listen.\"{addr}\"]\n\n\
         [control_listener.listen.\"{socket}\"]\n",
        addr = net.addr(name),
        socket = dir.join(format!("{name}.sock")).display(),
    ));
    if manager {
        text.push_str(&format!(
            "\n[logs]\nlogfile = \"{}/%Y/%m/%d/%{{l}}/%{{s}}/%{{n}}\"\n",
            dir.join("aggregated").display()
        ));
    } else {
        // The MTA's policy: the shipped set_binding.lua (run_in writes it).
        text.push_str(&format!(
            "\n[policy]\nscripts = [\"{}\"]\n",
            dir.join(POLICY).display()
        ));
        for n in 1..=VIPS {
            text.push_str(&format!(
                "\n[binding_group.{GROUP}.binding.out{n}]\nbind_address = \"{}\"\nenable_duravip = true\n",
                vip(n)
            ));
            if n == PREFERRED.0 {
                text.push_str(&format!("duravip_preference = \"{}\"\n", PREFERRED.1));
            }
        }
    }
    text
}

/// Where node `name` keeps its mainlog journal.
fn mainlog(dir: &Path, name: &str) -> PathBuf {
    dir.join(name).join("mainlog.cluster")
}

/// Where the MTA node `name` spools the messages moved to it.
fn spool(dir: &Path, name: &str) -> PathBuf {
    dir.join(name).join("spool")
}

/// demo1's MTA places three messages through its Lua set_binding policy
/// (`mta send`, the stand-in MTA's command): two leave from bindings
/// demo1 holds; one names a binding demo2 holds, so it moves there, and
/// demo2 runs set_binding again as it takes it (`unconditional_rebind`).
fn route_messages(
    dir: &Path,
    mtas: &[Proc],
    table: &[(String, Option<String>)],
) -> Result<(), String> {
    let held_by = |node: &str| {
        let ip = table
            .iter()
            .find(|(_, owner)| owner.as_deref() == Some(node))
            .map(|(ip, _)| ip.clone())
            .ok_or(format!("{node} holds no DuraVIP"))?;
        let n = (1..=VIPS)
            .find(|n| vip(*n) == ip)
            .ok_or("an unknown DuraVIP")?;
        Ok::<String, String>(format!("out{n}"))
    };
    let (mine, theirs) = (held_by(NODES[0])?, held_by(NODES[1])?);
    println!(
        "\n== set_binding: demo1's MTA places messages through lua/{POLICY} (X-Binding names a \
         binding, X-Binding-Group a group); {mine} is demo1's, {theirs} demo2's =="
    );
    show(&mtas[0], "policy show")?;
    let file = dir.join("message.eml");
    std::fs::write(
        &file,
        "From: sender@example.com\r\nTo: rcpt@example.net\r\nSubject: demo\r\n\r\nHello.\r\n",
    )
    .map_err(|e| e.to_string())?;
    let send = |header: String| {
        format!(
            "mta send {} sender@example.com rcpt@example.net '{header}'",
            file.display()
        )
    };
    show(&mtas[0], &send(format!("X-Binding: {mine}")))?;
    show(&mtas[0], &send(format!("X-Binding-Group: {GROUP}")))?;
    let log_seen = std::fs::metadata(&mtas[1].log).map_or(0, |m| m.len() as usize);
    show(&mtas[0], &send(format!("X-Binding: {theirs}")))?;
    let mut took = String::new();
    wait_for(
        "demo2's spool to take the moved message",
        Duration::from_secs(5),
        || {
            let log = std::fs::read_to_string(&mtas[1].log).unwrap_or_default();
            took = log
                .get(log_seen..)
                .and_then(|new| new.lines().find(|l| l.contains("spool: took")))
                .unwrap_or_default()
                .to_string();
            !took.is_empty()
        },
    )?;
    println!(
        "\n== demo2's MTA spooled it ({}) ==",
        spool(dir, "demo2").display()
    );
    println!("{took}");
    show(&mtas[0], "cluster show mmove")?;
    Ok(())
}

/// Lines each MTA node logs in the demo.
const LOG_LINES: usize = 5;

/// Each MTA node's MTA logs a few mainlog lines through its `cluster://`
/// destination; the manager pulls them into its files, and checkpoints.
fn aggregate_logs(dir: &Path, procs: &[Proc]) -> Result<(), String> {
    println!(
        "\n== the log service: each MTA node's MTA appends {LOG_LINES} lines to its mainlog \
         (cluster://{}=>master), durably ==",
        mainlog(dir, "demoN").display()
    );
    let writers = eccluster::io::logwriter::LogWriters::default();
    let group = eccluster::journal::Durability::Group {
        interval: Duration::from_millis(1),
    };
    for name in NODES {
        let destination = format!("cluster://{}=>master", mainlog(dir, name).display());
        let writer = writers.open(&destination, group)?.writer;
        for i in 1..=LOG_LINES {
            writer.append(format!("{name}: delivered message {i}").as_bytes())?;
        }
    }
    let (mtas, mgr) = (&procs[..NODES.len()], &procs[NODES.len()]);
    println!("\n== before the manager pulls ==");
    show(&mtas[1], "cluster show logs")?;
    let files: Vec<PathBuf> = NODES.iter().map(|n| aggregated(dir, n)).collect();
    let took = wait_for(
        "the manager to pull every node's mainlog",
        Duration::from_secs(10),
        || {
            files
                .iter()
                .all(|f| std::fs::read_to_string(f).is_ok_and(|t| t.lines().count() >= LOG_LINES))
        },
    )?;
    println!(
        "\n== the manager wrote every node's lines {} ms later, synced them, then checkpointed ==",
        took.as_millis()
    );
    wait_for(
        "demo2's checkpoint to follow",
        Duration::from_secs(10),
        || {
            console(&mtas[1].socket, "cluster show logs")
                .is_ok_and(|t| t.contains(&format!("@ 00000000:{LOG_LINES:08x}]")))
        },
    )?;
    show(&mtas[1], "cluster show logs")?;
    println!();
    show(mgr, "cluster show aggregator")?;
    println!();
    show(mgr, "cluster jobs")?;
    println!("\n== {} ==", files[1].display());
    print!(
        "{}",
        std::fs::read_to_string(&files[1]).map_err(|e| e.to_string())?
    );
    Ok(())
}

/// The manager's file for node `name`'s mainlog today.
fn aggregated(dir: &Path, name: &str) -> PathBuf {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let t = eccluster::core::logs::template::BrokenTime::utc(now);
    dir.join("aggregated")
        .join(format!("{:04}/{:02}/{:02}", t.year, t.month, t.day))
        .join("mainlog/default")
        .join(name)
}

fn inbound_total(inbound: &[(&str, [u8; 4], usize)]) -> i64 {
    inbound.iter().map(|(_, _, n)| *n as i64).sum()
}

/// The cluster-wide count of `127.0.0.0/8` in a node's `cluster shared show
/// inbound_cidr`.
fn inbound_global(p: &Proc) -> Option<i64> {
    let out = console(&p.socket, "cluster shared show inbound_cidr").ok()?;
    let row = out.lines().find(|l| l.ends_with(" 127.0.0.0/8"))?;
    row.split_whitespace().next()?.parse().ok()
}

/// Opens the [`INBOUND`] connections to the MTA nodes' listeners (loopback
/// only) and shows them adding up on every node.
fn inbound_connections(net: &Net, mtas: &[Proc]) -> Result<Vec<TcpStream>, String> {
    if net.inbound(NODES[0]).is_none() {
        println!("\n== (inbound connection counting is shown by the loopback demo) ==");
        return Ok(Vec::new());
    }
    println!("\n== inbound connections: each MTA node counts its own in inbound_cidr ==");
    let mut open = Vec::new();
    for (name, from, n) in INBOUND {
        let to = net.inbound(name).ok_or("no inbound listener")?;
        for _ in 0..n {
            open.push(connect_from(IpAddr::from(from), to)?);
        }
        println!("   {n} from {} to {name}", std::net::Ipv4Addr::from(from));
    }
    let total = inbound_total(&INBOUND);
    let took = wait_for(
        "every MTA node to count every connection",
        Duration::from_secs(10),
        || mtas.iter().all(|p| inbound_global(p) == Some(total)),
    )?;
    println!(
        "== every node's cluster-wide view counts all {total} after {} ms (max_delay = 0.2 s) ==\n",
        took.as_millis()
    );
    show(&mtas[2], "cluster shared show inbound_cidr")?;
    show(&mtas[2], "cluster shared show inbound_cidr from demo1")?;
    Ok(open)
}

fn interrupted() -> Result<(), String> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        Err("interrupted".into())
    } else {
        Ok(())
    }
}

fn console(socket: &Path, command: &str) -> Result<String, String> {
    let mut c = ControlClient::connect(socket).map_err(|e| e.to_string())?;
    c.exec(command).map_err(|e| e.to_string())?
}

fn show(p: &Proc, command: &str) -> Result<(), String> {
    interrupted()?;
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
        interrupted()?;
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

/// Each DuraVIP and its owner, if any, as `cluster duravip show` gives
/// them: a header line `ip/names: (flags) services` per address, then a
/// line per candidate, the owner's marked ` *  `.
fn owners(show: &str) -> Vec<(String, Option<String>)> {
    let mut out: Vec<(String, Option<String>)> = Vec::new();
    for line in show.lines() {
        if let Some((head, _)) = line.split_once(": (") {
            let ip = head.split('/').next().unwrap_or(head);
            out.push((ip.to_string(), None));
        } else if let Some(rest) = line.strip_prefix(" *  \t")
            && let Some(last) = out.last_mut()
        {
            last.1 = rest.split(' ').next().map(str::to_string);
        }
    }
    out
}

/// The owners every one of `procs` reports, when they all answer and agree.
fn agreed_owners(procs: &[Proc]) -> Option<Vec<(String, Option<String>)>> {
    let mut tables = procs
        .iter()
        .map(|p| console(&p.socket, "cluster duravip show").map(|s| owners(&s)));
    let first = tables.next()?.ok()?;
    for t in tables {
        if t.ok()? != first {
            return None;
        }
    }
    Some(first)
}

/// Whether `table` has every DuraVIP owned by one of `holders`, spread
/// evenly (at most one apart), and the preferred address on its node.
fn settled(table: &[(String, Option<String>)], holders: &[&str]) -> bool {
    let counts: Vec<usize> = holders
        .iter()
        .map(|h| {
            table
                .iter()
                .filter(|(_, o)| o.as_deref() == Some(*h))
                .count()
        })
        .collect();
    let (min, max) = (
        counts.iter().min().copied().unwrap_or(0),
        counts.iter().max().copied().unwrap_or(0),
    );
    table.len() == VIPS
        && counts.iter().sum::<usize>() == VIPS
        && max - min <= 1
        && table
            .iter()
            .any(|(ip, o)| *ip == vip(PREFERRED.0) && o.as_deref() == Some(PREFERRED.1))
}

/// One line per node: the addresses it holds. `before` marks the addresses
/// that changed owner since that table.
fn print_holdings(table: &[(String, Option<String>)], before: Option<&[(String, Option<String>)]>) {
    for node in NODES {
        let held: Vec<String> = table
            .iter()
            .filter(|(_, o)| o.as_deref() == Some(node))
            .map(|(ip, _)| {
                let mut s = ip.clone();
                if *ip == vip(PREFERRED.0) {
                    s.push_str(" (preferred)");
                }
                let old = before.and_then(|b| b.iter().find(|(i, _)| i == ip));
                if let Some((_, Some(from))) = old
                    && from != node
                {
                    s.push_str(&format!(" (from {from})"));
                }
                s
            })
            .collect();
        let held = if held.is_empty() {
            "-".to_string()
        } else {
            held.join(", ")
        };
        println!("  {node}: {held}");
    }
}

/// `--netns` only: each MTA node's `ip -o addr`, and the client's (the
/// manager's) neighbour entries for the DuraVIPs with the MAC's owner.
fn print_network(lab: &Lab) -> Result<(), String> {
    for node in NODES {
        println!("$ ip -n {} -o -4 addr show dev eth0", lab.namespace(node));
        for line in lab.addresses(node)? {
            println!("{line}");
        }
    }
    let macs: Vec<(String, &str)> = NODES
        .iter()
        .map(|n| lab.mac(n).map(|m| (m, *n)))
        .collect::<Result<_, _>>()?;
    println!(
        "$ ip -n {} -4 neigh show dev eth0   (the manager, as a client on the segment)",
        lab.namespace(MANAGER)
    );
    let mut entries = lab.neighbours(MANAGER)?;
    entries.retain(|(ip, _)| (1..=VIPS).any(|n| vip(n) == *ip));
    entries.sort_by_key(|(ip, _)| ip.rsplit('.').next().and_then(|o| o.parse::<u8>().ok()));
    for (ip, mac) in entries {
        let owner = macs
            .iter()
            .find(|(m, _)| *m == mac)
            .map_or("?", |(_, n)| *n);
        println!("{ip} lladdr {mac}  ({owner})");
    }
    Ok(())
}

/// Whether the client's neighbour entry for every DuraVIP points at the
/// node that owns it in `table`.
fn client_agrees(lab: &Lab, table: &[(String, Option<String>)]) -> bool {
    let Ok(entries) = lab.neighbours(MANAGER) else {
        return false;
    };
    table.iter().all(|(ip, owner)| {
        let Some(owner) = owner else { return false };
        let Ok(mac) = lab.mac(owner) else {
            return false;
        };
        entries.iter().any(|(i, m)| i == ip && *m == mac)
    })
}

/// Turns SIGINT and SIGTERM into [`INTERRUPTED`]; a second one exits at
/// once, for a demo stuck somewhere that does not check.
fn watch_signals() -> Result<(), String> {
    // Before any thread starts, so that only the watcher takes them.
    signals::block_termination().map_err(|e| format!("cannot block signals: {e}"))?;
    std::thread::spawn(|| {
        while signals::wait_for_termination().is_ok() {
            if INTERRUPTED.swap(true, Ordering::SeqCst) {
                eprintln!(
                    "eccluster demo: interrupted twice; exiting without cleaning up \
                     (`ip netns list | grep eccdemo-{}` shows what is left)",
                    std::process::id()
                );
                std::process::exit(130);
            }
            eprintln!("eccluster demo: interrupted; cleaning up");
        }
    });
    Ok(())
}

pub fn run(args: &[String]) -> Result<(), String> {
    let namespaces = match args {
        [] => false,
        [flag] if flag == "--netns" => true,
        _ => return Err(format!("demo takes only --netns, not {}", args.join(" "))),
    };
    watch_signals()?;
    let dir = std::env::temp_dir().join(format!("eccluster-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let result = setup(namespaces).and_then(|net| run_in(&dir, &net));
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn setup(namespaces: bool) -> Result<Net, String> {
    if !namespaces {
        // Free ports below the ephemeral range, so two demos on one host do not collide.
        // Four cluster ports, then each MTA node's inbound listener.
        let base = host::free_loopback_ports(4 + NODES.len() as u16).map_err(|e| e.to_string())?;
        return Ok(Net::Loopback(base));
    }
    let members: Vec<(&str, String)> = names().map(|n| (n, format!("{}/24", host_ip(n)))).collect();
    let members: Vec<(&str, &str)> = members.iter().map(|(n, c)| (*n, c.as_str())).collect();
    let lab = Lab::new(&members)?;
    lab.accept_gratuitous_arp(MANAGER)?;
    Ok(Net::Namespaces(lab))
}

fn start(exe: &Path, dir: &Path, net: &Net, name: &'static str) -> Result<Proc, String> {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, config(name, net, dir)).map_err(|e| e.to_string())?;
    let log = dir.join(format!("{name}.log"));
    let log_file = std::fs::File::create(&log).map_err(|e| e.to_string())?;
    let mut command = net.command(exe, name);
    command.args(["node", "--config"]).arg(&path);
    if let Some(addr) = net.inbound(name).filter(|_| name != MANAGER) {
        command.arg("--count-inbound").arg(addr.to_string());
    }
    if name != MANAGER {
        command.arg("--accept-moves").arg(spool(dir, name));
    }
    let child = command
        .stdout(Stdio::piped())
        .stderr(log_file)
        .spawn()
        .map_err(|e| format!("cannot start {name}: {e}"))?;
    let mut p = Proc {
        name,
        child,
        socket: dir.join(format!("{name}.sock")),
        log,
    };
    let stdout = p.child.stdout.take().ok_or("no stdout")?;
    let mut ready = String::new();
    BufReader::new(stdout)
        .read_line(&mut ready)
        .map_err(|e| e.to_string())?;
    if ready.is_empty() {
        let _ = p.child.wait();
        let log = std::fs::read_to_string(&p.log).unwrap_or_default();
        return Err(format!("{name} did not start; its log:\n{log}"));
    }
    print!("{name}: {ready}");
    Ok(p)
}

fn run_in(dir: &Path, net: &Net) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    seal::generate_key_file(&dir.join("cluster.key")).map_err(|e| e.to_string())?;
    std::fs::write(dir.join(POLICY), POLICY_SOURCE).map_err(|e| e.to_string())?;
    let lab = match net {
        Net::Loopback(_) => {
            println!(
                "== eccluster {VERSION} demo: three MTA nodes and a manager on loopback, sealed with a cluster key =="
            );
            None
        }
        Net::Namespaces(lab) => {
            println!(
                "== eccluster {VERSION} demo: three MTA nodes and a manager, each in its own network namespace \
                 ({}-*) on one bridge, sealed with a cluster key ==",
                lab.namespace("").trim_end_matches('-')
            );
            Some(lab)
        }
    };
    println!(
        "== DuraVIP: every MTA node has bindings out1..out{VIPS} on {}..{} (Topology \"{VIP_BLOCK}\", \
         interface {}); out{} prefers {} ==",
        vip(1),
        vip(VIPS),
        net.interface(),
        PREFERRED.0,
        PREFERRED.1
    );
    if lab.is_none() {
        println!(
            "== DRY RUN: duravip_dry_run = true, so nothing is plumbed or announced; each node only \
             records what it would do (`eccluster demo --netns`, as root, plumbs for real) =="
        );
    }
    let mut procs = Vec::new();
    for name in names() {
        procs.push(start(&exe, dir, net, name)?);
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

    let mtas = &procs[..NODES.len()];
    let mut table = Vec::new();
    let took = wait_for(
        "the three MTA nodes to agree on one owner per DuraVIP, evenly spread",
        Duration::from_secs(15),
        || {
            table = agreed_owners(mtas).unwrap_or_default();
            settled(&table, &NODES)
        },
    )?;
    println!(
        "\n== DuraVIP settled {} ms after the view: every MTA node reports the same owners ==\n",
        took.as_millis()
    );
    show(&procs[1], "cluster duravip show")?;
    println!("\n== who holds what ==");
    print_holdings(&table, None);
    if let Some(lab) = lab {
        wait_for(
            "the client's ARP cache to learn every DuraVIP",
            Duration::from_secs(10),
            || client_agrees(lab, &table),
        )?;
        println!();
        print_network(lab)?;
    }

    route_messages(dir, mtas, &table)?;

    // Held open until the end: the counts are of open connections.
    let _connections = inbound_connections(net, mtas)?;

    aggregate_logs(dir, &procs)?;

    println!("\n== killing demo1 (the leader) with SIGKILL ==");
    let log_seen = std::fs::metadata(dir.join("demo2.log")).map_or(0, |m| m.len() as usize);
    let killed = Instant::now();
    if let Some(lab) = lab {
        // Unplugged first, so that the node never answers for its addresses
        // after the kill.
        lab.unplug("demo1")?;
        println!(
            "== (and unplugging its bridge port: the machine is gone, not just the process) =="
        );
    }
    let _ = procs[0].child.kill();
    let _ = procs[0].child.wait();
    let survivors = &procs[1..NODES.len()];
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
        "== demo2 and demo3 dropped demo1 {} ms after the kill ==",
        killed.elapsed().as_millis()
    );
    let before = table.clone();
    wait_for(
        "demo1's DuraVIPs to move to demo2 and demo3",
        Duration::from_secs(10),
        || {
            table = agreed_owners(survivors).unwrap_or_default();
            settled(&table, &NODES[1..])
        },
    )?;
    println!(
        "== demo1's DuraVIPs are owned by the survivors {} ms after the kill{} ==\n",
        killed.elapsed().as_millis(),
        if lab.is_some() {
            ""
        } else {
            " (dry run: recorded, not plumbed)"
        }
    );
    show(&procs[1], "cluster duravip show")?;
    println!("\n== who holds what now ==");
    print_holdings(&table, Some(&before));
    if let Some(lab) = lab {
        wait_for(
            "the client's ARP cache to follow the moved DuraVIPs",
            Duration::from_secs(10),
            || client_agrees(lab, &table),
        )?;
        println!(
            "\n== the client's ARP cache follows {} ms after the kill (gratuitous ARP); demo1's \
             namespace keeps the addresses it had, as a dead machine would ==",
            killed.elapsed().as_millis()
        );
        print_network(lab)?;
    }
    if net.inbound(NODES[0]).is_some() {
        let expected = inbound_total(&INBOUND[1..]);
        wait_for(
            "demo1's connections to leave the survivors' inbound_cidr",
            Duration::from_secs(10),
            || {
                survivors
                    .iter()
                    .all(|p| inbound_global(p) == Some(expected))
            },
        )?;
        println!(
            "\n== demo1's {} connections left every survivor's inbound_cidr with demo1 itself \
             (the view change drops a node's contribution); checked {} ms after the kill ==",
            inbound_total(&INBOUND[..1]),
            killed.elapsed().as_millis()
        );
        show(&procs[2], "cluster shared show inbound_cidr")?;
    }
    println!();
    show(&procs[1], "cluster info")?;
    let log = std::fs::read_to_string(dir.join("demo2.log")).unwrap_or_default();
    println!("\n== demo2's log since the kill ==");
    for line in log.get(log_seen..).unwrap_or_default().lines() {
        println!("{line}");
    }
    println!("\n== stopping the rest with SIGTERM ==");
    for p in &mut procs[1..] {
        let _ = Command::new("kill").arg(p.child.id().to_string()).status();
        let _ = p.child.wait();
    }
    Ok(())
}
