//! The `eccluster` command: run a node, talk to a node's console, check a
//! configuration, make a cluster key, and run the demo.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use eccluster::config::{Format, LoadedConfig};
use eccluster::io::control::ControlClient;
use eccluster::io::plumb::{NetlinkPlumber, purge};
use eccluster::io::{host, seal, signals};
use eccluster::node::{Node, VERSION};

mod demo;
mod inbound;
mod netns;
mod spool;

const USAGE: &str = "\
usage:
  eccluster node --config FILE [--count-inbound ADDR:PORT] [--accept-moves DIR]
                                        run a node in the foreground (SIGTERM/SIGINT stop it);
                                        --count-inbound: accept TCP connections there and count
                                        them in inbound_cidr, as an MTA's listener would;
                                        --accept-moves: take messages moved to this node into a
                                        stand-in spool, DIR/<id> and DIR/deliveries.log (send one
                                        with the console's `cluster mmove send NODE FILE`)
  eccluster aggregate --config FILE     run a manager node that pulls every MTA node's journals into
                                        the files its Logs scope names (the node type is Manager)
  eccluster console [--socket PATH] [COMMAND...]
                                        run a console command on a node (no command: interactive)
  eccluster check-config FILE           print the effective configuration, or its errors
  eccluster keygen FILE                 write a new cluster key to FILE (mode 0600; never overwrites)
  eccluster purge                       remove every DuraVIP address a dead node left plumbed on this host
                                        (for a supervisor, e.g. systemd ExecStopPost; needs CAP_NET_ADMIN)
  eccluster demo [--netns]              three MTA nodes and a manager: membership, a broadcast, DuraVIP,
                                        and failover when the leader is killed (DuraVIP dry run);
                                        --netns (root): each node in its own network namespace, plumbed for real
  eccluster version
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("node") => cmd_node(&args[1..]),
        Some("aggregate") => cmd_aggregate(&args[1..]),
        Some("console") => cmd_console(&args[1..]),
        Some("check-config") => cmd_check_config(&args[1..]),
        Some("keygen") => cmd_keygen(&args[1..]),
        Some("purge") => cmd_purge(&args[1..]),
        Some("demo") => demo::run(&args[1..]),
        Some("version" | "--version" | "-V") => {
            println!("eccluster {VERSION}");
            Ok(())
        }
        Some("help" | "--help" | "-h") => {
            print!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(format!("unknown command '{other}'\n{USAGE}")),
        None => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("eccluster: {}", message.trim_end());
            ExitCode::FAILURE
        }
    }
}

/// `eccluster purge`: what a node does at start-up, for when it died
/// (SIGKILL, a crash) and is not restarted at once: otherwise this host's
/// kernel keeps answering ARP for addresses another node now owns.
fn cmd_purge(args: &[String]) -> Result<(), String> {
    if !args.is_empty() {
        return Err(format!("purge takes no arguments\n{USAGE}"));
    }
    let mut plumber = NetlinkPlumber::new()
        .map_err(|e| format!("cannot open netlink (needs CAP_NET_ADMIN): {e}"))?;
    let failed = std::cell::Cell::new(false);
    let removed = purge(&mut plumber, &|line: &str| {
        failed.set(failed.get() || line.starts_with("cannot"));
        println!("{line}");
    });
    println!("purge: removed {removed} DuraVIP address(es)");
    if failed.get() {
        Err("some addresses could not be removed (see above)".into())
    } else {
        Ok(())
    }
}

/// `--name VALUE` from an argument list, and the arguments left over.
fn take_flag(args: &[String], name: &str) -> Result<(Option<String>, Vec<String>), String> {
    let mut value = None;
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == name {
            value = Some(
                it.next()
                    .ok_or_else(|| format!("{name} needs a value"))?
                    .clone(),
            );
        } else if let Some(v) = a.strip_prefix(&format!("{name}=")) {
            value = Some(v.to_string());
        } else {
            rest.push(a.clone());
        }
    }
    Ok((value, rest))
}

fn load(path: &str) -> Result<LoadedConfig, String> {
    LoadedConfig::load(Path::new(path)).map_err(|e| format!("configuration errors:\n{e}"))
}

fn cmd_node(args: &[String]) -> Result<(), String> {
    let (config, rest) = take_flag(args, "--config")?;
    let config = config.ok_or("node needs --config FILE")?;
    let (count_inbound, rest) = take_flag(&rest, "--count-inbound")?;
    let (accept_moves, rest) = take_flag(&rest, "--accept-moves")?;
    if !rest.is_empty() {
        return Err(format!("unexpected arguments: {}", rest.join(" ")));
    }
    let host = Host {
        count_inbound,
        accept_moves: accept_moves.map(PathBuf::from),
    };
    run_node(load(&config)?.config, host)
}

/// What `eccluster node` does as the node's host, beside running it.
#[derive(Default)]
struct Host {
    /// Accept connections here and count them (`--count-inbound`).
    count_inbound: Option<String>,
    /// Spool moved messages here (`--accept-moves`).
    accept_moves: Option<PathBuf>,
}

/// `eccluster aggregate`: a manager node, which runs the aggregator since
/// its configuration must have a `Logs` scope.
fn cmd_aggregate(args: &[String]) -> Result<(), String> {
    let (config, rest) = take_flag(args, "--config")?;
    let config = config.ok_or("aggregate needs --config FILE")?;
    if !rest.is_empty() {
        return Err(format!("unexpected arguments: {}", rest.join(" ")));
    }
    let mut config = load(&config)?.config;
    if config.manager_logs.is_none() {
        return Err(
            "the configuration has no Logs scope: add Logs { logfile = \"...\" } to say where the logs go"
                .into(),
        );
    }
    config.cluster.node_type = eccluster::core::wire::NodeType::Manager;
    run_node(config, Host::default())
}

/// Runs a node until SIGTERM or SIGINT.
fn run_node(config: eccluster::config::model::Config, host: Host) -> Result<(), String> {
    // Before any thread starts, so every thread inherits the blocked mask.
    signals::block_termination().map_err(|e| format!("cannot block signals: {e}"))?;
    let node = Node::new(config);
    // Before the start: a move that arrives at once finds its spool.
    if let Some(dir) = &host.accept_moves {
        spool::accept_moves(&node, dir)?;
    }
    node.start().map_err(|e| format!("cannot start: {e}"))?;
    if let Some(addr) = host.count_inbound {
        inbound::count_inbound(&node, &addr)?;
    }
    let id = node.identity().map_err(|e| e.to_string())?;
    let console = node.console_path().unwrap_or_default();
    println!(
        "ready node={} subcluster={} nodeaddr={} console={}",
        id.nodename,
        id.subcluster,
        id.service_addr(),
        console.display()
    );
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    let signal = signals::wait_for_termination().map_err(|e| e.to_string())?;
    node.stop();
    eprintln!("eccluster: {signal}: node {} stopped", id.nodename);
    Ok(())
}

fn cmd_console(args: &[String]) -> Result<(), String> {
    let (socket, rest) = take_flag(args, "--socket")?;
    let socket = PathBuf::from(socket.unwrap_or_else(|| "/tmp/2025".into()));
    let mut client = ControlClient::connect(&socket).map_err(|e| e.to_string())?;
    if !rest.is_empty() {
        let command = rest.join(" ");
        return match client.exec(&command).map_err(|e| e.to_string())? {
            Ok(out) => {
                print!("{out}");
                Ok(())
            }
            Err(e) => Err(e),
        };
    }
    interactive(&mut client, &socket)
}

/// The reference's prompt: `HH:MM:SS eccluster(/tmp/2025)> `.
fn interactive(client: &mut ControlClient, socket: &Path) -> Result<(), String> {
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        print!("{} eccluster({})> ", host::local_hms(), socket.display());
        std::io::stdout().flush().map_err(|e| e.to_string())?;
        let Some(line) = lines.next() else {
            println!();
            return Ok(());
        };
        let line = line.map_err(|e| e.to_string())?;
        let command = line.trim();
        match command {
            "" => continue,
            "quit" | "exit" => return Ok(()),
            _ => match client.exec(command).map_err(|e| e.to_string())? {
                Ok(out) => print!("{out}"),
                Err(e) => println!("error: {e}"),
            },
        }
    }
}

fn cmd_check_config(args: &[String]) -> Result<(), String> {
    let [path] = args else {
        return Err("check-config needs exactly one FILE".into());
    };
    let loaded = load(path)?;
    let format = match loaded.format {
        Format::Toml => "TOML",
        Format::Ecelerity => "ecelerity.conf",
    };
    println!("# {path}: valid ({format} syntax)");
    for file in loaded.files().iter().skip(1) {
        println!("# includes {}", file.display());
    }
    println!("# Effective configuration; '# default' marks values not set in the file.");
    print!("{}", loaded.listing());
    for ignored in &loaded.ignored {
        println!("# not used by eccluster: {ignored}");
    }
    let node = Node::new(loaded.config);
    match node.identity() {
        Ok(id) => println!(
            "# identity here: nodename {:?} (from {}), subcluster {:?} (from {}), nodeaddr {} (from {})",
            id.nodename,
            id.nodename_origin,
            id.subcluster,
            id.subcluster_origin,
            id.service_addr(),
            id.nodeaddr_origin
        ),
        Err(e) => println!("# identity here: {e}"),
    }
    // The node loaded the policy scripts; one that fails would stop it.
    if let Some(e) = node.policy_error() {
        return Err(format!("policy: {e}"));
    }
    let scripts: Vec<String> = node
        .policy_status()
        .scripts
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    if !scripts.is_empty() {
        println!("# policy scripts load: {}", scripts.join(", "));
    }
    Ok(())
}

fn cmd_keygen(args: &[String]) -> Result<(), String> {
    let [path] = args else {
        return Err("keygen needs exactly one FILE".into());
    };
    seal::generate_key_file(Path::new(path)).map_err(|e| e.to_string())?;
    println!("wrote key {path} (mode 0600)");
    Ok(())
}
