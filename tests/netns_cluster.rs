//! DuraVIP on a real (virtual) LAN: three `eccluster node` processes, each
//! in its own network namespace, plumbing real addresses and announcing them
//! with gratuitous ARP, seen by a client on the same Ethernet segment.
//!
//! The lab of each test (see [`Lab`]): a namespace `…-br` holding a Linux
//! bridge `br0`; one namespace per node (`…-n1`, `…-n2`, …), each with a
//! veth `ecc0` (address 10.77.0.N/24, MAC 02:ec:c0:00:00:0N) whose peer `pN`
//! is a port of the bridge; and a client namespace `…-cl` with `cl0`
//! (10.77.0.100) on the bridge too. The DuraVIPs are 10.77.0.201–203, in the
//! Topology block 10.77.0.200/29 on `ecc0`. Every node namespace runs a tiny
//! TCP service on port 2525 that answers with the node's name, so a client
//! connecting to a VIP learns which node its packets reached: that proves
//! the address *and* the client's ARP entry point at the owner.
//!
//! Code that must run inside a namespace (the TCP service, the client, an
//! ARP capture, the benchmark's probe) runs in this same test binary
//! started under `ip netns exec NS`, running only the ignored [`helper`]
//! test with its command in `ECC_NETNS_CLUSTER_HELPER`, as in
//! `tests/netns.rs`. Nodes run the real binary under `ip netns exec`.
//!
//! Namespaces are named after the process id and the test, and a guard
//! deletes them (killing what still runs inside) even when an assertion
//! fails. The tests need root and `ip netns`; without them they print
//! `skipped: ...` and pass. Everything is polled with a deadline.
//!
//! The ignored [`failover_bench`] is the DuraVIP failover benchmark against
//! keepalived (`benches/duravip_failover.sh` runs it; see BENCHMARKS.md).

mod common;
use common::{Guard, TempDir, is_root, run, wait_until_within};

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::thread::sleep;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_eccluster");
const HELPER_ENV: &str = "ECC_NETNS_CLUSTER_HELPER";
const HELPER_PREFIX: &str = "ecc-helper: ";

/// The node-side interface in every node namespace.
const IFACE: &str = "ecc0";
const CLIENT_IFACE: &str = "cl0";
const CLIENT_IP: &str = "10.77.0.100";
/// The TCP service every node namespace runs.
const SERVICE_PORT: u16 = 2525;
const VIPS: [&str; 3] = ["10.77.0.201", "10.77.0.202", "10.77.0.203"];
const TOPOLOGY: &str = "10.77.0.200/29";

/// Long enough for a start, a balance round or a failover on a loaded
/// 2-core machine; the usual figure is a tenth of it.
const SETTLE: Duration = Duration::from_secs(20);

fn node_name(i: usize) -> String {
    format!("n{i}")
}

fn node_ip(i: usize) -> String {
    format!("10.77.0.{i}")
}

fn node_mac(i: usize) -> String {
    format!("02:ec:c0:00:00:{i:02x}")
}

/// CLOCK_MONOTONIC in nanoseconds: one clock for this process and the
/// helpers it starts (namespaces do not change it).
fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    u64::try_from(ts.tv_sec).unwrap() * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap()
}

// ---- the helper, run inside a namespace ---------------------------------

/// Runs the command in `ECC_NETNS_CLUSTER_HELPER` and prints its results,
/// one `ecc-helper: ` line each. Ignored: only meaningful when the tests
/// below start it inside a namespace with the variable set.
///
/// - `serve PORT NAME`: answer every TCP connection on 0.0.0.0:PORT with
///   `NAME\n`; prints `listening` once bound, then runs until killed.
/// - `client`: per stdin line `connect IP PORT`, prints `ok NAME` (what the
///   service answered) or `error WHY`.
/// - `capture IFACE`: prints `ready` once an AF_PACKET socket for ARP is
///   bound, then one line per ARP frame seen (`op=1 sha=MAC spa=IP tha=MAC
///   tpa=IP`); runs until killed.
/// - `probe IP PORT`: connects every ~20 ms (15 ms connect timeout) and
///   prints `MONO_NS ok NAME` or `MONO_NS fail` whenever the result changes.
/// - `plumb IFACE ADDR/PREFIX`: adds a tagged address with the real
///   `NetlinkPlumber` (a stale DuraVIP for the start-up test).
#[test]
#[ignore = "run by the netns cluster tests inside a namespace, not on its own"]
fn helper() {
    let command = std::env::var(HELPER_ENV).expect("ECC_NETNS_CLUSTER_HELPER is set");
    let words: Vec<&str> = command.split_whitespace().collect();
    match words.as_slice() {
        ["serve", port, name] => serve(port.parse().expect("a port"), name),
        ["client"] => client(),
        ["capture", iface] => capture(iface),
        ["probe", ip, port] => probe(ip.parse().expect("an IPv4 address"), port.parse().unwrap()),
        ["plumb", iface, cidr] => {
            use eccluster::io::plumb::{NetlinkPlumber, Plumber};
            let (ip, prefix) = cidr.split_once('/').expect("address/prefix");
            let mut plumber = NetlinkPlumber::new().expect("netlink socket");
            match plumber.add(iface, ip.parse().unwrap(), prefix.parse().unwrap()) {
                Ok(()) => say("ok"),
                Err(e) => say(&format!("error: {e}")),
            }
        }
        _ => panic!("unknown helper command {command:?}"),
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{HELPER_PREFIX}{line}");
    let _ = out.flush();
}

fn serve(port: u16, name: &str) {
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)))
        .expect("bind the service port");
    say("listening");
    for stream in listener.incoming() {
        // A failed accept (say, a connection reset before it was taken)
        // must not end the service.
        let Ok(mut s) = stream else { continue };
        let _ = s.write_all(format!("{name}\n").as_bytes());
    }
}

/// Connects to `ip:port` and reads the service's answer.
fn ask(addr: SocketAddr, connect_timeout: Duration) -> Result<String, String> {
    let mut s = TcpStream::connect_timeout(&addr, connect_timeout).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(1)))
        .map_err(|e| e.to_string())?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).map_err(|e| e.to_string())?;
    match answer.trim() {
        "" => Err("empty answer".into()),
        name => Ok(name.to_string()),
    }
}

fn client() {
    for line in std::io::stdin().lock().lines() {
        let line = line.expect("stdin");
        let words: Vec<&str> = line.split_whitespace().collect();
        let ["connect", ip, port] = words.as_slice() else {
            panic!("unknown client command {line:?}");
        };
        let addr = SocketAddr::new(ip.parse().unwrap(), port.parse().unwrap());
        match ask(addr, Duration::from_millis(500)) {
            Ok(name) => say(&format!("ok {name}")),
            Err(e) => say(&format!("error {e}")),
        }
    }
}

fn probe(ip: Ipv4Addr, port: u16) {
    let addr = SocketAddr::from((ip, port));
    let mut last = String::new();
    loop {
        let state = match ask(addr, Duration::from_millis(15)) {
            Ok(name) => format!("ok {name}"),
            Err(_) => "fail".to_string(),
        };
        let at = mono_ns();
        if state != last {
            say(&format!("{at} {state}"));
            last = state;
        }
        sleep(Duration::from_millis(5));
    }
}

fn capture(iface: &str) {
    const ETH_P_ARP: u16 = 0x0806;
    let name = std::ffi::CString::new(iface).unwrap();
    // SAFETY: `name` is a valid NUL-terminated string.
    #[allow(unsafe_code)]
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    assert!(index != 0, "no interface {iface}");
    // SAFETY: plain socket(2) call; the result is checked.
    #[allow(unsafe_code)]
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW,
            i32::from(ETH_P_ARP.to_be()),
        )
    };
    assert!(
        fd >= 0,
        "AF_PACKET socket: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
    #[allow(unsafe_code)]
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = u16::try_from(libc::AF_PACKET).unwrap();
    sll.sll_protocol = ETH_P_ARP.to_be();
    sll.sll_ifindex = i32::try_from(index).unwrap();
    // SAFETY: `sll` is initialised and the length passed is its size.
    #[allow(unsafe_code)]
    let rc = unsafe {
        libc::bind(
            fd,
            (&raw const sll).cast(),
            u32::try_from(std::mem::size_of::<libc::sockaddr_ll>()).unwrap(),
        )
    };
    assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
    say("ready");
    let mut buf = [0u8; 2048];
    loop {
        // SAFETY: `buf` is writable for its whole length.
        #[allow(unsafe_code)]
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        let Ok(n) = usize::try_from(n) else {
            continue;
        };
        // Ethernet header (14) + ARP for Ethernet/IPv4 (28).
        if n < 42 || buf[12..14] != [0x08, 0x06] {
            continue;
        }
        let arp = &buf[14..42];
        let mac = |b: &[u8]| {
            b.iter()
                .map(|x| format!("{x:02x}"))
                .collect::<Vec<_>>()
                .join(":")
        };
        let ip = |b: &[u8]| Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string();
        say(&format!(
            "op={} sha={} spa={} tha={} tpa={}",
            u16::from_be_bytes([arp[6], arp[7]]),
            mac(&arp[8..14]),
            ip(&arp[14..18]),
            mac(&arp[18..24]),
            ip(&arp[24..28]),
        ));
    }
}

// ---- processes inside the lab -------------------------------------------

/// A helper process in a namespace: its result lines (stamped with the
/// monotonic time they arrived) and, for the client, its stdin.
struct HelperProc {
    guard: Guard,
    lines: Receiver<(u64, String)>,
    stdin: Option<ChildStdin>,
}

impl HelperProc {
    fn start(ns: &str, command: &str, log: &std::path::Path, with_stdin: bool) -> HelperProc {
        let exe = std::env::current_exe().unwrap();
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(exe)
            .args([
                "--exact",
                "helper",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(HELPER_ENV, command)
            .stdin(if with_stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(File::create(log).expect("helper log"))
            .spawn()
            .expect("start a helper");
        let stdout = child.stdout.take().unwrap();
        let stdin = child.stdin.take();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // libtest may write `test helper ... ` in front of the first line.
                if let Some((_, rest)) = line.split_once(HELPER_PREFIX)
                    && tx.send((mono_ns(), rest.to_string())).is_err()
                {
                    break;
                }
            }
        });
        HelperProc {
            guard: Guard(Some(child)),
            lines: rx,
            stdin,
        }
    }

    /// The next result line within `limit`.
    fn next_line(&self, limit: Duration) -> Option<(u64, String)> {
        self.lines.recv_timeout(limit).ok()
    }

    /// Kills the helper (SIGKILL) and reaps it.
    fn stop(&mut self) {
        self.guard.kill();
    }

    /// Waits for the first line, which must be `expected`.
    fn expect_first(&self, expected: &str, what: &str) {
        let line = self.next_line(SETTLE).map(|(_, l)| l);
        assert_eq!(line.as_deref(), Some(expected), "{what} did not start");
    }
}

/// The persistent client in the client namespace.
struct Client(HelperProc);

impl Client {
    /// Connects to the service on `ip`: the node name that answered.
    fn ask(&mut self, ip: &str) -> Result<String, String> {
        let stdin = self.0.stdin.as_mut().expect("client stdin");
        writeln!(stdin, "connect {ip} {SERVICE_PORT}").expect("write to the client");
        stdin.flush().unwrap();
        let (_, line) = self
            .0
            .next_line(Duration::from_secs(10))
            .expect("the client answers");
        match line.strip_prefix("ok ") {
            Some(name) => Ok(name.to_string()),
            None => Err(line),
        }
    }
}

/// A running `eccluster node` inside its namespace; stderr is kept with the
/// monotonic time of each line (for the benchmark's breakdown).
struct EccNode {
    index: usize,
    ns: String,
    config: PathBuf,
    socket: PathBuf,
    log: Arc<Mutex<Vec<(u64, String)>>>,
    guard: Guard,
}

impl EccNode {
    fn spawn(&mut self) {
        assert!(self.guard.0.is_none(), "n{} is already running", self.index);
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.ns, BIN, "node", "--config"])
            .arg(&self.config)
            .env_remove("EC_NODE_NAME")
            .env_remove("EC_SUB_CLUSTER")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn eccluster node");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::clone(&self.log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                log.lock().unwrap().push((mono_ns(), line));
            }
        });
        let stdout = child.stdout.take().unwrap();
        self.guard = Guard(Some(child));
        let ready = common::first_line(stdout);
        assert!(
            ready.starts_with(&format!("ready node=n{} ", self.index)),
            "n{} did not start: {ready:?}\nlog:\n{}",
            self.index,
            self.log_text()
        );
    }

    fn log_text(&self) -> String {
        self.log
            .lock()
            .unwrap()
            .iter()
            .map(|(_, l)| format!("{l}\n"))
            .collect()
    }

    fn console(&self, command: &str) -> Result<String, String> {
        common::console(&self.socket, command, Duration::from_secs(5))
    }

    /// Address to owner, from `cluster duravip show`; `None` while the
    /// console does not answer.
    fn duravip_owners(&self) -> Option<BTreeMap<String, String>> {
        let text = self.console("cluster duravip show").ok()?;
        let mut owners = BTreeMap::new();
        let mut ip = String::new();
        for line in text.lines() {
            if let Some((head, _)) = line.split_once(": (") {
                ip = head.split('/').next().unwrap_or_default().to_string();
            } else if let Some(rest) = line.strip_prefix(" *  \t") {
                owners.insert(
                    ip.clone(),
                    rest.split(' ').next().unwrap_or_default().to_string(),
                );
            }
        }
        Some(owners)
    }

    fn running(&self) -> bool {
        self.guard.0.is_some()
    }
}

// ---- the lab --------------------------------------------------------------

/// The namespaces of one test; deleted on drop (after killing whatever
/// still runs in them: only processes this test started).
struct Lab {
    tag: String,
    nodes: usize,
    namespaces: Vec<String>,
    dir: TempDir,
    key: PathBuf,
}

impl Lab {
    /// Builds the bridge, `nodes` node namespaces and the client namespace,
    /// or says why it cannot (and the test should skip).
    fn new(test: &str, nodes: usize) -> Result<Lab, String> {
        if !is_root() {
            return Err("not running as root".into());
        }
        let tag = std::env::var("ECC_NETNS_TAG")
            .map(|t| format!("{t}-{test}"))
            .unwrap_or_else(|_| format!("ecc-{}-{test}", std::process::id()));
        let dir = TempDir::new(&format!("netns-{test}"));
        let key = dir.0.join("cluster.key");
        eccluster::io::seal::generate_key_file(&key).map_err(|e| e.to_string())?;
        let mut lab = Lab {
            tag,
            nodes,
            namespaces: Vec::new(),
            dir,
            key,
        };
        // Every namespace is recorded before anything is put in it, so the
        // guard cleans up after a failure half-way.
        let br = lab.br();
        lab.add_ns(&br)
            .map_err(|e| format!("`ip netns add` does not work here: {e}"))?;
        ip(&["-n", &br, "link", "add", "br0", "type", "bridge"])
            .map_err(|e| format!("cannot create a bridge: {e}"))?;
        ip(&["-n", &br, "link", "set", "br0", "up"])?;
        for i in 1..=nodes {
            let ns = lab.node_ns(i);
            lab.add_ns(&ns)?;
            lab.join(
                &ns,
                IFACE,
                &format!("p{i}"),
                &format!("{}/24", node_ip(i)),
                Some(&node_mac(i)),
            )?;
        }
        let cl = lab.client_ns();
        lab.add_ns(&cl)?;
        lab.join(&cl, CLIENT_IFACE, "pc", &format!("{CLIENT_IP}/24"), None)?;
        Ok(lab)
    }

    fn add_ns(&mut self, ns: &str) -> Result<(), String> {
        self.namespaces.push(ns.to_string());
        ip(&["netns", "add", ns])?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        Ok(())
    }

    /// A veth pair: `dev` in `ns` with `cidr`, and `port` on the bridge.
    fn join(
        &self,
        ns: &str,
        dev: &str,
        port: &str,
        cidr: &str,
        mac: Option<&str>,
    ) -> Result<(), String> {
        let br = self.br();
        let mut args = vec!["link", "add", dev, "netns", ns];
        if let Some(mac) = mac {
            args.extend(["address", mac]);
        }
        args.extend(["type", "veth", "peer", "name", port, "netns", &br]);
        ip(&args).map_err(|e| format!("cannot create a veth pair: {e}"))?;
        ip(&["-n", &br, "link", "set", port, "master", "br0", "up"])?;
        ip(&["-n", ns, "addr", "add", cidr, "dev", dev])?;
        ip(&["-n", ns, "link", "set", dev, "up"])?;
        Ok(())
    }

    fn br(&self) -> String {
        format!("{}-br", self.tag)
    }

    fn node_ns(&self, i: usize) -> String {
        format!("{}-n{i}", self.tag)
    }

    fn client_ns(&self) -> String {
        format!("{}-cl", self.tag)
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.dir.0.join(format!("{name}.log"))
    }

    /// `ip -n NS ARGS...`, which must succeed.
    fn ip(&self, ns: &str, args: &[&str]) -> String {
        let mut all = vec!["-n", ns];
        all.extend_from_slice(args);
        ip(&all).unwrap()
    }

    /// The IPv4 addresses on `ecc0` in node `i`'s namespace, other than the
    /// node's own.
    fn plumbed(&self, i: usize) -> Vec<String> {
        let own = node_ip(i);
        self.ip(
            &self.node_ns(i),
            &["-o", "-4", "addr", "show", "dev", IFACE],
        )
        .lines()
        .filter_map(|l| l.split_whitespace().skip_while(|w| *w != "inet").nth(1))
        .filter_map(|cidr| cidr.split('/').next())
        .filter(|a| *a != own)
        .map(str::to_string)
        .collect()
    }

    /// For each VIP, the nodes among `among` whose namespace has it plumbed.
    fn holders(&self, among: &[usize]) -> BTreeMap<String, Vec<usize>> {
        let mut map: BTreeMap<String, Vec<usize>> =
            VIPS.iter().map(|v| (v.to_string(), Vec::new())).collect();
        for &i in among {
            for a in self.plumbed(i) {
                if let Some(v) = map.get_mut(&a) {
                    v.push(i);
                }
            }
        }
        map
    }

    /// The client's neighbour entry for `ip` (`ip neigh` line).
    fn client_neighbour(&self, ip: &str) -> String {
        self.ip(
            &self.client_ns(),
            &["neigh", "show", ip, "dev", CLIENT_IFACE],
        )
        .trim()
        .to_string()
    }

    /// A node's configuration: keyed, nodes on the bridge subnet, the VIP
    /// block on `ecc0`, one binding per VIP in `vips`, plus `extra` lines
    /// for the `[cluster]` table.
    fn node_config(&self, i: usize, extra: &str, vips: &[&str]) -> String {
        let peers: String = (1..=self.nodes)
            .map(|j| format!("n{j} = \"{}\"\n", node_ip(j)))
            .collect();
        let bindings: String = vips
            .iter()
            .enumerate()
            .map(|(k, v)| {
                format!("[binding.vip{k}]\nbind_address = \"{v}\"\nenable_duravip = true\n")
            })
            .collect();
        format!(
            "[cluster]\n\
             nodename = \"n{i}\"\n\
             nodeaddr = \"{ip}\"\n\
             auth_key_file = {key:?}\n\
             heartbeat_start_delay = 0\n\
             {extra}\
             [cluster.topology.\"{TOPOLOGY}\"]\n\
             cidrmask = 32\n\
             interface = \"{IFACE}\"\n\
             [msgc_server.peers]\n{peers}\
             [eccluster_listener.listen.\"{ip}:4802\"]\n\
             [control_listener.listen.{socket:?}]\n\
             {bindings}",
            ip = node_ip(i),
            key = self.key.display().to_string(),
            socket = self.socket(i).display().to_string(),
        )
    }

    fn socket(&self, i: usize) -> PathBuf {
        self.dir.0.join(format!("n{i}.sock"))
    }

    /// Writes node `i`'s configuration and starts it.
    fn start_node(&self, i: usize, extra: &str, vips: &[&str]) -> EccNode {
        let config = self.dir.0.join(format!("n{i}.toml"));
        std::fs::write(&config, self.node_config(i, extra, vips)).expect("write config");
        let mut node = EccNode {
            index: i,
            ns: self.node_ns(i),
            config,
            socket: self.socket(i),
            log: Arc::new(Mutex::new(Vec::new())),
            guard: Guard(None),
        };
        node.spawn();
        node
    }

    /// The TCP service in node `i`'s namespace, answering `n{i}`.
    fn start_service(&self, i: usize) -> HelperProc {
        let name = node_name(i);
        let h = HelperProc::start(
            &self.node_ns(i),
            &format!("serve {SERVICE_PORT} {name}"),
            &self.log_path(&format!("serve-{name}")),
            false,
        );
        h.expect_first("listening", "the TCP service");
        h
    }

    fn start_client(&self) -> Client {
        Client(HelperProc::start(
            &self.client_ns(),
            "client",
            &self.log_path("client"),
            true,
        ))
    }

    fn start_capture(&self) -> HelperProc {
        let h = HelperProc::start(
            &self.client_ns(),
            &format!("capture {CLIENT_IFACE}"),
            &self.log_path("capture"),
            false,
        );
        h.expect_first("ready", "the ARP capture");
        h
    }

    /// Detaches node `i`'s bridge port (its link stays up: a switch that
    /// stopped forwarding for it), or attaches it again.
    fn isolate(&self, i: usize, cut: bool) {
        let port = format!("p{i}");
        let br = self.br();
        if cut {
            self.ip(&br, &["link", "set", &port, "nomaster"]);
        } else {
            self.ip(&br, &["link", "set", &port, "master", "br0"]);
        }
    }

    /// A debugging picture of who holds what.
    fn picture(&self) -> String {
        (1..=self.nodes)
            .map(|i| format!("n{i}: {:?}\n", self.plumbed(i)))
            .collect()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.namespaces.iter().rev() {
            // Only what runs in our own namespaces, which this test started
            // (the node guards normally got there first).
            if let Ok(pids) = run("ip", &["netns", "pids", ns]) {
                for pid in pids.split_whitespace().filter_map(|p| p.parse().ok()) {
                    // SAFETY: kill(2) with a pid read from our namespace.
                    #[allow(unsafe_code)]
                    unsafe {
                        libc::kill(pid, libc::SIGKILL);
                    }
                }
            }
            let _ = run("ip", &["netns", "del", ns]);
        }
    }
}

fn ip(args: &[&str]) -> Result<String, String> {
    run("ip", args)
}

/// The lab, or `None` after printing why the test is skipped.
fn lab_or_skip(test: &str, nodes: usize) -> Option<Lab> {
    match Lab::new(test, nodes) {
        Ok(lab) => Some(lab),
        Err(why) => {
            common::skip_netns(test, &why);
            None
        }
    }
}

/// Each VIP on exactly one of `among`: VIP to node.
fn single_holders(lab: &Lab, among: &[usize]) -> Option<BTreeMap<String, usize>> {
    lab.holders(among)
        .into_iter()
        .map(|(v, h)| match h.as_slice() {
            [one] => Some((v, *one)),
            _ => None,
        })
        .collect()
}

/// How many VIPs each of `among` holds, sorted.
fn per_node(owners: &BTreeMap<String, usize>, among: &[usize]) -> Vec<usize> {
    let mut counts: Vec<usize> = among
        .iter()
        .map(|i| owners.values().filter(|o| *o == i).count())
        .collect();
    counts.sort_unstable();
    counts
}

/// Every running node's console agrees on the owners, and they match the
/// namespaces: `owners` is VIP to node index.
fn consoles_agree(nodes: &[&EccNode], owners: &BTreeMap<String, usize>) -> bool {
    let expected: BTreeMap<String, String> = owners
        .iter()
        .map(|(v, i)| (v.clone(), node_name(*i)))
        .collect();
    nodes
        .iter()
        .all(|n| n.duravip_owners().is_some_and(|o| o == expected))
}

// ---- the tests ------------------------------------------------------------

/// Three nodes and a client: one owner per VIP, the client reaches each
/// owner, a SIGKILLed owner's VIP moves and the client follows through ARP,
/// a restarted node clears its stale address, and a split brain heals to
/// one owner per VIP with a gratuitous ARP the client sees.
#[test]
fn three_nodes_fail_over_and_heal_a_split_brain() {
    let Some(lab) = lab_or_skip("fail", 3) else {
        return;
    };
    let all = [1, 2, 3];
    let extra = "heartbeats_per_sec = 4\nview_mature_time = 1\nview_balance_interval = 1\n";
    let _services: Vec<HelperProc> = all.iter().map(|&i| lab.start_service(i)).collect();
    let mut client = lab.start_client();
    let mut nodes: Vec<EccNode> = all
        .iter()
        .map(|&i| lab.start_node(i, extra, &VIPS))
        .collect();
    let running = |nodes: &[EccNode]| -> Vec<usize> {
        nodes
            .iter()
            .filter(|n| n.running())
            .map(|n| n.index)
            .collect()
    };

    // (a) Settled: every VIP plumbed on exactly one node, one each, and the
    // consoles agree with the kernel.
    let mut owners = BTreeMap::new();
    wait_until_within("one VIP plumbed on each node", SETTLE, || {
        owners = single_holders(&lab, &all).unwrap_or_default();
        owners.len() == 3 && per_node(&owners, &all) == [1, 1, 1]
    });
    wait_until_within("the consoles to agree with the kernel", SETTLE, || {
        consoles_agree(&nodes.iter().collect::<Vec<_>>(), &owners)
    });
    let shown = lab.ip(
        &lab.node_ns(owners[VIPS[0]]),
        &["-o", "addr", "show", "dev", IFACE],
    );
    let line = shown
        .lines()
        .find(|l| l.contains(&format!(" {}/32 ", VIPS[0])));
    assert!(
        line.is_some_and(|l| l.contains("ecc0:ecc")),
        "plumbed with our label: {shown}"
    );

    // (b) The client reaches each VIP's owner.
    for (vip, owner) in &owners {
        let mut answer = Err(String::new());
        wait_until_within(&format!("the client to reach {vip}"), SETTLE, || {
            answer = client.ask(vip);
            answer.is_ok()
        });
        assert_eq!(answer, Ok(node_name(*owner)), "{vip} answered by its owner");
    }

    // (c) SIGKILL the owner of the first VIP. Its service keeps running and
    // its kernel keeps the address (a crashed daemon), so the client can
    // only reach another node once ARP points there.
    let vip = VIPS[0];
    let victim = owners[vip];
    eprintln!("settled: {owners:?}; killing n{victim}");
    let killed = Instant::now();
    nodes[victim - 1].guard.kill();
    let survivors: Vec<usize> = running(&nodes);
    let mut new_owner = 0;
    wait_until_within(&format!("a survivor to take {vip}"), SETTLE, || {
        match lab.holders(&survivors)[vip].as_slice() {
            [one] => {
                new_owner = *one;
                true
            }
            _ => false,
        }
    });
    let mut answer = Err(String::new());
    wait_until_within(
        &format!("the client to reach {vip} on n{new_owner}"),
        SETTLE,
        || {
            answer = client.ask(vip);
            answer == Ok(node_name(new_owner))
        },
    );
    eprintln!(
        "the client reached {vip} on n{new_owner} {:?} after the kill",
        killed.elapsed()
    );
    let neighbour = lab.client_neighbour(vip);
    assert!(
        neighbour.contains(&format!("lladdr {}", node_mac(new_owner))),
        "the client's entry for {vip} points at n{new_owner}: {neighbour}"
    );
    let log = nodes[new_owner - 1].log_text();
    assert!(
        log.contains(&format!("gained DuraVIP {vip}/32 on ecc0")),
        "{log}"
    );
    // Nothing else moved, and no VIP has two owners among the survivors.
    let after = single_holders(&lab, &survivors).expect("one owner each among the survivors");
    for (v, o) in &owners {
        if v != vip {
            assert_eq!(after[v], *o, "{v} stayed put");
        }
    }

    // The crashed node restarts: its stale address goes at start-up, before
    // it may own anything again.
    assert!(
        lab.plumbed(victim).contains(&vip.to_string()),
        "still stale"
    );
    nodes[victim - 1].spawn();
    wait_until_within("the restarted node to remove its stale VIP", SETTLE, || {
        nodes[victim - 1]
            .log_text()
            .contains(&format!("removed stale DuraVIP {vip}/32 from ecc0"))
    });

    // Balanced again (the restarted node gets one VIP back).
    wait_until_within("one VIP on each node again", SETTLE, || {
        owners = single_holders(&lab, &all).unwrap_or_default();
        owners.len() == 3 && per_node(&owners, &all) == [1, 1, 1]
    });

    // (d) Split brain: isolate the owner of the second VIP. It takes every
    // VIP; the other two keep one owner each between them.
    let isolated = owners[VIPS[1]];
    let rest: Vec<usize> = all.iter().copied().filter(|i| *i != isolated).collect();
    let mut capture = lab.start_capture();
    lab.isolate(isolated, true);
    wait_until_within("the isolated node to take every VIP", SETTLE, || {
        lab.plumbed(isolated).len() == 3 && single_holders(&lab, &rest).is_some()
    });
    eprintln!("split brain:\n{}", lab.picture());
    let healed_at = mono_ns();
    lab.isolate(isolated, false);
    wait_until_within("one owner per VIP after the heal", SETTLE, || {
        owners = single_holders(&lab, &all).unwrap_or_default();
        owners.len() == 3 && consoles_agree(&nodes.iter().collect::<Vec<_>>(), &owners)
    });
    eprintln!("healed: {owners:?}");
    // Still so a moment later (no flapping back to two owners).
    sleep(Duration::from_millis(500));
    assert_eq!(
        single_holders(&lab, &all).as_ref(),
        Some(&owners),
        "owners changed after settling:\n{}",
        lab.picture()
    );

    // Gratuitous ARP after the heal: every final owner announces its VIP,
    // and the last announcement of each VIP is its final owner's (so the
    // client ends up pointing at it). Frames are collected until 3.5 s after
    // the owners settled: every round of the heal's view change (three,
    // 1.1 s apart) has gone out by then, and a loser has released.
    let settled = Instant::now();
    let mut seen: Vec<String> = Vec::new();
    while let Some(left) =
        (settled + Duration::from_millis(3500)).checked_duration_since(Instant::now())
    {
        if let Some((t, line)) = capture.next_line(left)
            && t >= healed_at
        {
            seen.push(format!("{:5.0} ms {line}", (t - healed_at) as f64 / 1e6));
        }
    }
    let frames = seen.join("\n");
    for (v, o) in &owners {
        let garps: Vec<&String> = seen
            .iter()
            .filter(|l| l.contains(&format!(" spa={v} ")) && l.ends_with(&format!(" tpa={v}")))
            .collect();
        let from_owner = |l: &&String| l.contains(&format!(" sha={} ", node_mac(*o)));
        assert!(
            garps.last().is_some_and(from_owner),
            "the last gratuitous ARP for {v} after the heal is from its owner n{o}:\n{frames}"
        );
    }
    eprintln!("ARP after the heal (ms after it):\n{frames}");

    // The client reaches each final owner, through an entry that points at it.
    for (vip, owner) in &owners {
        let mut answer = Err(String::new());
        wait_until_within(
            &format!("the client to reach {vip} after the heal"),
            SETTLE,
            || {
                answer = client.ask(vip);
                answer == Ok(node_name(*owner))
            },
        );
        let neighbour = lab.client_neighbour(vip);
        assert!(
            neighbour.contains(&format!("lladdr {}", node_mac(*owner))),
            "{vip}: {neighbour}"
        );
    }
    capture.stop();
}

/// A node that starts while its namespace still holds tagged addresses
/// (from a crashed run) removes them, keeps the operator's own addresses,
/// then plumbs its VIPs; a planned stop releases them.
#[test]
fn a_starting_node_removes_stale_tagged_addresses() {
    let Some(lab) = lab_or_skip("stale", 1) else {
        return;
    };
    let ns = lab.node_ns(1);
    // Tagged by label, as `ip` can do it; one of them is the node's own VIP.
    for stale in ["10.77.0.201/32", "10.77.0.206/32"] {
        lab.ip(
            &ns,
            &["addr", "add", stale, "dev", IFACE, "label", "ecc0:ecc"],
        );
    }
    // Tagged by our NetlinkPlumber (IFA_PROTO and label).
    let h = HelperProc::start(
        &ns,
        "plumb ecc0 10.77.0.205/32",
        &lab.log_path("plumb"),
        false,
    );
    h.expect_first("ok", "plumbing a stale address");
    drop(h);
    // The operator's own address, untagged, and one with another label.
    lab.ip(&ns, &["addr", "add", "10.77.0.204/32", "dev", IFACE]);
    lab.ip(
        &ns,
        &[
            "addr",
            "add",
            "10.77.0.207/32",
            "dev",
            IFACE,
            "label",
            "ecc0:op",
        ],
    );
    let before = lab.plumbed(1);
    for a in [
        "10.77.0.201",
        "10.77.0.204",
        "10.77.0.205",
        "10.77.0.206",
        "10.77.0.207",
    ] {
        assert!(before.contains(&a.to_string()), "{a} set up: {before:?}");
    }

    let extra = "heartbeats_per_sec = 4\nview_mature_time = 1\n";
    let mut node = lab.start_node(1, extra, &VIPS[..2]);
    wait_until_within("the stale addresses to go", SETTLE, || {
        let now = lab.plumbed(1);
        !now.iter().any(|a| a == "10.77.0.205" || a == "10.77.0.206")
    });
    let log = node.log_text();
    for stale in ["10.77.0.201/32", "10.77.0.205/32", "10.77.0.206/32"] {
        assert!(
            log.contains(&format!("removed stale DuraVIP {stale} from ecc0")),
            "{log}"
        );
    }
    for kept in ["10.77.0.204", "10.77.0.207"] {
        assert!(
            lab.plumbed(1).contains(&kept.to_string()),
            "the operator's {kept} stays: {:?}",
            lab.plumbed(1)
        );
    }

    // Alone in its view, the node owns both its VIPs once mature.
    wait_until_within("the node to plumb its VIPs", SETTLE, || {
        let now = lab.plumbed(1);
        VIPS[..2].iter().all(|v| now.contains(&v.to_string()))
    });
    assert!(!lab.plumbed(1).contains(&VIPS[2].to_string()));

    // A planned stop (SIGTERM) releases them and leaves the operator's.
    let pid = node.guard.pid();
    // SAFETY: kill(2) on our own child.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
    assert_eq!(rc, 0);
    assert!(node.guard.wait_exit().success(), "{}", node.log_text());
    let mut now = lab.plumbed(1);
    now.sort();
    assert_eq!(now, ["10.77.0.204", "10.77.0.207"], "{}", node.log_text());
}

// ---- the failover benchmark -------------------------------------------------

/// What runs on the three nodes of a benchmark lab.
#[derive(Clone, Copy, Debug)]
enum System {
    /// eccluster at this many heartbeats per second (1 = the default),
    /// and `down_heartbeats` if not the default (5).
    Eccluster(f64, Option<u32>),
    /// keepalived (VRRPv3) with this advert interval in seconds.
    Keepalived(f64),
}

impl System {
    fn parse(s: &str) -> System {
        let mut parts = s.split(':');
        let kind = parts.next().unwrap_or_default();
        let value: f64 = parts
            .next()
            .and_then(|v| v.parse().ok())
            .expect("SYSTEM:NUMBER");
        let down = parts.next().map(|d| d.parse().expect("down_heartbeats"));
        match kind {
            "eccluster" => System::Eccluster(value, down),
            "keepalived" => System::Keepalived(value),
            _ => panic!("unknown system {kind:?}"),
        }
    }

    fn label(&self) -> String {
        match self {
            System::Eccluster(r, None) if *r == 1.0 => "eccluster, 1 heartbeat/s (defaults)".into(),
            System::Eccluster(r, None) => format!("eccluster, {r} heartbeats/s"),
            System::Eccluster(r, Some(d)) => {
                format!("eccluster, {r} heartbeats/s, down_heartbeats {d}")
            }
            System::Keepalived(a) => format!("keepalived, advert_int {a} s"),
        }
    }

    /// The heartbeat / advert interval in milliseconds.
    fn interval_ms(&self) -> f64 {
        match self {
            System::Eccluster(r, _) => 1000.0 / r,
            System::Keepalived(a) => 1000.0 * a,
        }
    }
}

/// keepalived in a node namespace: all three BACKUP with `nopreempt`, so a
/// restarted node does not take the VIP back (as DuraVIP does not), VRRPv3
/// with unicast peers, priorities 254/253/252 (the smallest skew).
fn keepalived_config(i: usize, nodes: usize, advert: f64, vip: &str) -> String {
    let peers: String = (1..=nodes)
        .filter(|j| *j != i)
        .map(|j| format!("    {}\n", node_ip(j)))
        .collect();
    format!(
        "global_defs {{\n  router_id n{i}\n  vrrp_version 3\n}}\n\
         vrrp_instance VI_1 {{\n  state BACKUP\n  nopreempt\n  interface {IFACE}\n  \
         virtual_router_id 51\n  version 3\n  priority {prio}\n  advert_int {advert}\n  \
         unicast_src_ip {ip}\n  unicast_peer {{\n{peers}  }}\n  \
         virtual_ipaddress {{\n    {vip}/32 dev {IFACE}\n  }}\n}}\n",
        prio = 255 - i,
        ip = node_ip(i),
    )
}

/// A node's daemon in a benchmark lab.
enum Daemon {
    Ecc(EccNode),
    Ka {
        ns: String,
        config: PathBuf,
        dir: PathBuf,
        index: usize,
        log: Arc<Mutex<Vec<(u64, String)>>>,
        guard: Guard,
    },
}

impl Daemon {
    fn start(lab: &Lab, system: System, i: usize, vip: &str) -> Daemon {
        match system {
            System::Eccluster(rate, down) => {
                let mut extra = String::new();
                if rate != 1.0 {
                    extra += &format!("heartbeats_per_sec = {rate}\n");
                }
                if let Some(down) = down {
                    let suspect = down.saturating_sub(1).clamp(1, 3);
                    extra += &format!("suspect_heartbeats = {suspect}\ndown_heartbeats = {down}\n");
                }
                Daemon::Ecc(lab.start_node(i, &extra, &[vip]))
            }
            System::Keepalived(advert) => {
                let config = lab.dir.0.join(format!("ka-n{i}.conf"));
                std::fs::write(&config, keepalived_config(i, lab.nodes, advert, vip))
                    .expect("write keepalived.conf");
                let mut d = Daemon::Ka {
                    ns: lab.node_ns(i),
                    config,
                    dir: lab.dir.0.clone(),
                    index: i,
                    log: Arc::new(Mutex::new(Vec::new())),
                    guard: Guard(None),
                };
                d.respawn();
                d
            }
        }
    }

    /// Starts the daemon again after a crash.
    fn respawn(&mut self) {
        match self {
            Daemon::Ecc(node) => node.spawn(),
            Daemon::Ka {
                ns,
                config,
                dir,
                index,
                log,
                guard,
            } => {
                let file = |what: &str| dir.join(format!("ka-n{index}.{what}"));
                for what in ["pid", "vrrp.pid", "check.pid"] {
                    let _ = std::fs::remove_file(file(what));
                }
                // -n: foreground, -P: VRRP only, -l: log to the console.
                let mut child = Command::new("ip")
                    .args(["netns", "exec", ns, "keepalived", "-n", "-P", "-l", "-D"])
                    .arg("-f")
                    .arg(&*config)
                    .arg("-p")
                    .arg(file("pid"))
                    .arg("-r")
                    .arg(file("vrrp.pid"))
                    .arg("-c")
                    .arg(file("check.pid"))
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("start keepalived");
                let out = child.stdout.take().unwrap();
                let err = child.stderr.take().unwrap();
                for stream in [Box::new(out) as Box<dyn Read + Send>, Box::new(err)] {
                    let log = Arc::clone(log);
                    std::thread::spawn(move || {
                        for line in BufReader::new(stream).lines() {
                            let Ok(line) = line else { break };
                            log.lock().unwrap().push((mono_ns(), line));
                        }
                    });
                }
                *guard = Guard(Some(child));
            }
        }
    }

    fn guard(&mut self) -> &mut Guard {
        match self {
            Daemon::Ecc(node) => &mut node.guard,
            Daemon::Ka { guard, .. } => guard,
        }
    }

    fn log(&self) -> &Arc<Mutex<Vec<(u64, String)>>> {
        match self {
            Daemon::Ecc(node) => &node.log,
            Daemon::Ka { log, .. } => log,
        }
    }

    /// The first log line after `since` containing `needle`.
    fn logged_after(&self, since: u64, needle: &str) -> Option<u64> {
        self.log()
            .lock()
            .unwrap()
            .iter()
            .find(|(t, l)| *t >= since && l.contains(needle))
            .map(|(t, _)| *t)
    }

    fn log_text(&self) -> String {
        self.log()
            .lock()
            .unwrap()
            .iter()
            .map(|(_, l)| format!("{l}\n"))
            .collect()
    }

    /// The members of an eccluster node's view (empty for keepalived or
    /// while the console does not answer).
    fn members(&self) -> Vec<String> {
        let Daemon::Ecc(node) = self else {
            return Vec::new();
        };
        node.console("cluster info")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("View: "))
                    .and_then(|r| r.split_once(" members: "))
                    .map(|(_, list)| list.split(", ").map(str::to_string).collect())
            })
            .unwrap_or_default()
    }
}

/// One failover: from the SIGKILL to the client's first answer from a live
/// node, and the steps in between as the new owner logged them (ms).
#[derive(Debug, Default, Clone, Copy)]
struct Trial {
    total: f64,
    /// eccluster: `nX is down` on the new owner; keepalived: `Entering
    /// MASTER STATE`.
    detected: Option<f64>,
    /// eccluster: `gained DuraVIP` (plumbed; the first ARP round follows).
    plumbed: Option<f64>,
}

/// A small xorshift for the random phase of each kill.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Runs `trials` failovers of one system in a fresh lab.
/// What dies in a trial.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Crash {
    /// The MTA process dies (SIGKILL; eccluster runs inside it, so do its
    /// listeners): the host stays up, keeps its link and answers for its
    /// addresses at the IP layer, refusing connections nobody accepts.
    Process,
    /// The whole host dies: everything frozen and killed, its link dark.
    Host,
}

impl Crash {
    fn parse(s: &str) -> Crash {
        match s {
            "process" => Crash::Process,
            "host" => Crash::Host,
            _ => panic!("unknown crash kind {s:?}: process or host"),
        }
    }
}

fn bench_system(
    lab: &Lab,
    system: System,
    crash: Crash,
    trials: usize,
    rng: &mut Rng,
) -> Vec<Trial> {
    let vip = VIPS[0];
    let all = [1, 2, 3];
    let mut services: Vec<Option<HelperProc>> =
        all.iter().map(|&i| Some(lab.start_service(i))).collect();
    let mut daemons: Vec<Daemon> = all
        .iter()
        .map(|&i| Daemon::start(lab, system, i, vip))
        .collect();
    let probe = HelperProc::start(
        &lab.client_ns(),
        &format!("probe {vip} {SERVICE_PORT}"),
        &lab.log_path("probe"),
        false,
    );
    // eccluster needs a mature view before anyone owns the VIP; both need
    // the restarted node to be a settled candidate before the next kill.
    let settle = match system {
        System::Eccluster(..) => Duration::from_secs(6),
        System::Keepalived(_) => Duration::from_secs(2),
    };
    let holder = |lab: &Lab| -> Option<usize> {
        match lab.holders(&all)[vip].as_slice() {
            [one] => Some(*one),
            _ => None,
        }
    };
    wait_until_within("a first owner of the VIP", Duration::from_secs(30), || {
        holder(lab).is_some()
    });
    sleep(settle);
    let mut results = Vec::new();
    for trial in 1..=trials {
        // A random phase relative to the heartbeats / adverts.
        sleep(Duration::from_millis(rng.below(1000)));
        let victim = holder(lab).expect("one owner before the kill");
        while probe.lines.try_recv().is_ok() {}
        let ns = lab.node_ns(victim);
        let pids: Vec<i32> = run("ip", &["netns", "pids", &ns])
            .unwrap()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        // Every process of the namespace frozen, then killed: a plain
        // SIGKILL of keepalived's parent lets its VRRP child send a
        // priority-0 advert on the way out, which no crash would. For a
        // host crash its link goes dark too.
        // The link first: a dead host sends nothing, not even the FIN or
        // RST of its dying sockets.
        let pids: Vec<String> = pids.iter().map(ToString::to_string).collect();
        let t0 = mono_ns();
        if crash == Crash::Host {
            lab.ip(&lab.br(), &["link", "set", &format!("p{victim}"), "down"]);
        }
        for sig in ["-STOP", "-KILL"] {
            let mut args = vec![sig];
            args.extend(pids.iter().map(String::as_str));
            run("kill", &args).expect("kill the victim's processes");
        }
        // The client's first answer from a live node.
        let deadline = Instant::now() + Duration::from_secs(30);
        let reached = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some((_, line)) = probe.next_line(left) else {
                panic!(
                    "{}: the client reached no live node within 30 s\n{}",
                    system.label(),
                    lab.picture()
                );
            };
            let (t, state) = line.split_once(' ').unwrap();
            let t: u64 = t.parse().unwrap();
            if t > t0
                && let Some(name) = state.strip_prefix("ok ")
                && name != node_name(victim)
            {
                break (t, name.to_string());
            }
        };
        let new = reached.1[1..].parse::<usize>().unwrap();
        let ms = |t: u64| (t - t0) as f64 / 1e6;
        let (detected, plumbed) = match system {
            System::Eccluster(..) => (
                daemons[new - 1].logged_after(t0, &format!("n{victim} is down")),
                daemons[new - 1].logged_after(t0, &format!("gained DuraVIP {vip}/32")),
            ),
            System::Keepalived(_) => (
                daemons[new - 1].logged_after(t0, "Entering MASTER STATE"),
                None,
            ),
        };
        let result = Trial {
            total: ms(reached.0),
            detected: detected.map(ms),
            plumbed: plumbed.map(ms),
        };
        eprintln!(
            "  trial {trial:2}: killed n{victim}, client reached {} after {:7.1} ms \
             (detected {}, plumbed {})",
            reached.1,
            result.total,
            result.detected.map_or("-".into(), |d| format!("{d:.1}")),
            result.plumbed.map_or("-".into(), |d| format!("{d:.1}")),
        );
        if crash == Crash::Process
            && matches!(system, System::Eccluster(..))
            && result.total > 100.0
        {
            // Not the port refusal: show why.
            eprintln!("{}", daemons[new - 1].log_text());
        }
        results.push(result);

        // Restart the dead host: link up, its service, its daemon; it
        // must clear the stale VIP and join before the next kill.
        daemons[victim - 1].guard().kill();
        if let Some(mut s) = services[victim - 1].take() {
            s.stop();
        }
        if crash == Crash::Host {
            lab.ip(&lab.br(), &["link", "set", &format!("p{victim}"), "up"]);
        }
        services[victim - 1] = Some(lab.start_service(victim));
        let restarted = mono_ns();
        daemons[victim - 1].respawn();
        wait_until_within(
            "the restarted node to settle",
            Duration::from_secs(30),
            || {
                let joined = match system {
                    System::Eccluster(..) => daemons.iter().all(|d| d.members().len() == 3),
                    System::Keepalived(_) => daemons[victim - 1]
                        .logged_after(restarted, "Entering BACKUP STATE")
                        .is_some(),
                };
                joined && holder(lab).is_some_and(|h| h != victim)
            },
        );
        sleep(settle);
    }
    for d in &daemons {
        if d.log_text().contains("cannot") {
            eprintln!("note: a daemon logged an error:\n{}", d.log_text());
        }
    }
    drop(probe);
    results
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let rank = (q * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

fn median_of(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    (!v.is_empty()).then(|| percentile(&v, 0.5))
}

/// The DuraVIP failover benchmark: for each system in `ECC_BENCH_SYSTEMS`
/// (default `eccluster:4,eccluster:1,keepalived:0.25,keepalived:1`), three
/// nodes and a client on a bridge, one VIP, `ECC_BENCH_TRIALS` (default 20)
/// crashes of its owner. The client connects to the VIP every ~20 ms; a
/// trial is the time from the kill to its first answer from a live node.
/// Prints every trial and the summary. `benches/duravip_failover.sh` runs
/// it in release mode.
#[test]
#[ignore = "a benchmark: benches/duravip_failover.sh runs it"]
fn failover_bench() {
    let trials: usize = std::env::var("ECC_BENCH_TRIALS")
        .ok()
        .map_or(20, |t| t.parse().expect("ECC_BENCH_TRIALS is a number"));
    let systems: Vec<System> = std::env::var("ECC_BENCH_SYSTEMS")
        .unwrap_or_else(|_| "eccluster:4,eccluster:1,keepalived:0.25,keepalived:1".into())
        .split(',')
        .map(System::parse)
        .collect();
    let crashes: Vec<Crash> = std::env::var("ECC_BENCH_CRASHES")
        .unwrap_or_else(|_| "process,host".into())
        .split(',')
        .map(Crash::parse)
        .collect();
    let mut rng = Rng(mono_ns() | 1);
    let mut summary: Vec<(Crash, System, Vec<f64>)> = Vec::new();
    let runs = crashes
        .iter()
        .flat_map(|c| systems.iter().map(move |s| (*c, *s)));
    for (k, (crash, system)) in runs.enumerate() {
        if matches!(system, System::Keepalived(_))
            && run("keepalived", &["--version"]).is_err()
            && Command::new("keepalived")
                .arg("--version")
                .output()
                .is_err()
        {
            eprintln!("skipped: {}: keepalived is not installed", system.label());
            continue;
        }
        let Some(lab) = lab_or_skip(&format!("b{k}"), 3) else {
            return;
        };
        eprintln!("{crash:?} crash, {}: {trials} trials", system.label());
        let results = bench_system(&lab, system, crash, trials, &mut rng);
        let mut totals: Vec<f64> = results.iter().map(|r| r.total).collect();
        totals.sort_by(f64::total_cmp);
        let line = format!(
            "{crash:?} crash, {}: n={} min {:.0}  median {:.0}  p90 {:.0}  p99 {:.0}  max {:.0} ms; \
             medians of the steps: detected {}, plumbed {}",
            system.label(),
            totals.len(),
            totals[0],
            percentile(&totals, 0.5),
            percentile(&totals, 0.9),
            percentile(&totals, 0.99),
            totals[totals.len() - 1],
            median_of(results.iter().filter_map(|r| r.detected))
                .map_or("-".into(), |d| format!("{d:.0} ms")),
            median_of(results.iter().filter_map(|r| r.plumbed))
                .map_or("-".into(), |d| format!("{d:.0} ms")),
        );
        eprintln!("{line}");
        summary.push((crash, system, totals));
    }
    eprintln!("\nsummary (kill of the VIP owner -> the client's next answer from a live node):");
    for (crash, system, totals) in &summary {
        eprintln!(
            "  {:8} {:48} median {:6.0}  p90 {:6.0}  p99 {:6.0}  max {:6.0} ms",
            format!("{crash:?}"),
            system.label(),
            percentile(totals, 0.5),
            percentile(totals, 0.9),
            percentile(totals, 0.99),
            totals[totals.len() - 1],
        );
    }
    for (crash, ecc, e) in summary
        .iter()
        .filter(|(_, s, _)| matches!(s, System::Eccluster(..)))
    {
        for (_, ka, k) in summary.iter().filter(|(c, s, _)| {
            c == crash && matches!(s, System::Keepalived(_)) && s.interval_ms() == ecc.interval_ms()
        }) {
            eprintln!(
                "  {crash:?} crash, ratio keepalived/eccluster at a {:.0} ms interval ({} vs {}): median {:.2}, p99 {:.2}",
                ecc.interval_ms(),
                ka.label(),
                ecc.label(),
                percentile(k, 0.5) / percentile(e, 0.5),
                percentile(k, 0.99) / percentile(e, 0.99),
            );
        }
    }
}
