//! Replication lag under load: three nodes in this process on loopback,
//! talking over their real sockets, each with a writer doing 100,000
//! updates/s on its `inbound_cidr` tree and `outbound_domains` table (the
//! issue's "replication lag with 100,000 updates/s per node").
//!
//! How lag is measured: node A's writer also bumps a marker key of
//! `outbound_domains` by one about every millisecond and notes when each
//! value was reached. Readers on B and C sample A's share of that key
//! (global minus local; only A writes it) about every millisecond. A
//! sample's lag is its time minus the time A's own count first reached the
//! value seen, i.e. the age of the newest information B or C has. It
//! includes up to one marker period (~1 ms) and the readers' sampling; it is
//! an upper bound on the engine's part by about that much.
//!
//! `cargo bench --bench replication_lag` runs 10 s at `max_delay` 1.0 (the
//! reference default) and 0.05. `-- --test` (or `ECC_BENCH_QUICK=1`) makes
//! a ~1 s smoke run at a low rate. Options: `--secs=N`, `--rate=N`
//! (updates/s per node), `--max-delay=A,B,..`, `--max-pending=N`.
//!
//! This prints measurements; it asserts only that replication converges.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use eccluster::config::{Format, LoadedConfig};
use eccluster::node::Node;
use eccluster::shared::Scope;
use eccluster::shared::cidr::CidrCounts;
use eccluster::shared::gauge::GaugeTable;

const NAMES: [&str; 3] = ["lag1", "lag2", "lag3"];
/// Only node A (the first) writes it, so anyone else's global count of it
/// is A's count as replicated.
const MARKER: &[u8] = b"lag-marker.example";
/// Distinct /24 networks the writers draw client addresses from.
const NETS: u32 = 4096;
/// Distinct destination domains the writers count connections to.
const DOMAINS: usize = 1000;
/// Connections a writer keeps open per object: once reached, every open is
/// matched by a close, so counts stay bounded as with real traffic.
const OPEN: usize = 5000;
/// Cluster formation and link set-up; generous for a loaded CI box.
const FORM_DEADLINE: Duration = Duration::from_secs(30);
/// How long after the writers stop B and C may take to see A's last value
/// beyond `max_delay`, before the run counts as broken.
const CATCH_UP_SLACK: Duration = Duration::from_secs(10);
/// Sampling and pacing period.
const TICK: Duration = Duration::from_millis(1);

// ---------------------------------------------------------------- options

#[derive(Clone, Debug)]
struct Options {
    quick: bool,
    secs: f64,
    rate: u64,
    delays: Vec<f64>,
    max_pending: u32,
}

impl Options {
    fn parse() -> Result<Options, String> {
        let mut test = false;
        let (mut secs, mut rate, mut delays, mut max_pending) = (None, None, None, 100u32);
        for arg in std::env::args().skip(1) {
            let (key, value) = arg.split_once('=').unwrap_or((arg.as_str(), ""));
            let bad = |what: &str| format!("bad {what} in {arg:?}");
            match key {
                "--test" => test = true,
                "--secs" => secs = Some(value.parse::<f64>().map_err(|_| bad("seconds"))?),
                "--rate" => rate = Some(value.parse::<u64>().map_err(|_| bad("rate"))?),
                "--max-delay" => {
                    delays = Some(
                        value
                            .split(',')
                            .map(|v| v.parse::<f64>().map_err(|_| bad("max_delay")))
                            .collect::<Result<Vec<_>, _>>()?,
                    );
                }
                "--max-pending" => max_pending = value.parse().map_err(|_| bad("max_pending"))?,
                // cargo passes --bench; other harness flags mean nothing here.
                _ => {}
            }
        }
        let quick = test
            || std::env::var("ECC_BENCH_QUICK")
                .is_ok_and(|v| !v.is_empty() && v != "0" && v != "false");
        let secs = secs.unwrap_or(if quick { 1.0 } else { 10.0 });
        if !(secs > 0.0 && secs <= 3600.0) {
            return Err(format!("--secs={secs} is out of range"));
        }
        Ok(Options {
            quick,
            secs,
            rate: rate.unwrap_or(if quick { 5_000 } else { 100_000 }).max(1),
            // The short delay alone in a smoke run: with 1 s a 1 s run
            // would see hardly a batch.
            delays: delays.unwrap_or(if quick { vec![0.05] } else { vec![1.0, 0.05] }),
            max_pending: max_pending.max(1),
        })
    }
}

// ---------------------------------------------------------------- nodes

/// A scratch directory for the console sockets, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("ecc-lag-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `n` distinct loopback ports free for both TCP and UDP (a node listens
/// on both). The sockets are held until all are chosen so no two coincide.
fn free_ports(n: usize) -> Result<Vec<u16>, String> {
    let mut held = Vec::new();
    for _ in 0..1000 {
        if held.len() == n {
            break;
        }
        let Ok(udp) = UdpSocket::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))) else {
            continue;
        };
        let Ok(addr) = udp.local_addr() else {
            continue;
        };
        if let Ok(tcp) = TcpListener::bind(addr) {
            held.push((addr.port(), udp, tcp));
        }
    }
    if held.len() < n {
        return Err("no free loopback ports".into());
    }
    Ok(held.into_iter().map(|(port, ..)| port).collect())
}

fn start_node(
    dir: &TempDir,
    name: &str,
    ports: &[u16],
    max_delay: f64,
    max_pending: u32,
) -> Result<Node, String> {
    let port = ports[NAMES.iter().position(|n| *n == name).expect("known name")];
    let peers: String = NAMES
        .iter()
        .zip(ports)
        .map(|(n, p)| format!("{n} = \"127.0.0.1:{p}\"\n"))
        .collect();
    let replicate = |kind: &str| {
        format!(
            "[cluster.replicate.{kind}]\nmax_delay = {max_delay:?}\nmax_pending = {max_pending}\n"
        )
    };
    let text = format!(
        "[cluster]\nnodename = \"{name}\"\nheartbeats_per_sec = 10\nheartbeat_start_delay = 0\n\
         {}{}\
         [msgc_server.peers]\n{peers}\
         [eccluster_listener.listen.\"127.0.0.1:{port}\"]\n\
         [control_listener.listen.\"{socket}\"]\n",
        replicate("inbound_cidr"),
        replicate("outbound_domains"),
        socket = dir.0.join(format!("{name}.sock")).display(),
    );
    let config = LoadedConfig::parse(&text, Format::Toml)
        .map_err(|e| format!("{e}\n{text}"))?
        .config;
    let node = Node::new(config);
    node.start()
        .map_err(|e| format!("{name} does not start: {e}"))?;
    Ok(node)
}

fn wait_until(
    what: &str,
    deadline: Duration,
    mut cond: impl FnMut() -> bool,
) -> Result<(), String> {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > deadline {
            return Err(format!("timed out after {deadline:?} waiting for {what}"));
        }
        // Fine-grained: the catch-up time is read off this loop.
        std::thread::sleep(TICK);
    }
    Ok(())
}

/// Three nodes that see each other and whose replication links carry
/// updates: membership alone does not prove the TCP links are up, and a
/// run started before they are would measure link set-up, not lag.
struct Cluster {
    nodes: Vec<Node>,
    trees: Vec<Arc<CidrCounts>>,
    tables: Vec<Arc<GaugeTable>>,
    _dir: TempDir,
}

impl Cluster {
    fn start(max_delay: f64, max_pending: u32) -> Result<Cluster, String> {
        let dir = TempDir::new();
        let mut nodes = Vec::new();
        // The ports are free when chosen but not reserved: something else
        // may take one before a node binds it, so a failed start gets fresh
        // ports rather than failing the bench.
        for attempt in 1..=3 {
            let ports = free_ports(NAMES.len())?;
            let started: Result<Vec<Node>, String> = NAMES
                .iter()
                .map(|name| start_node(&dir, name, &ports, max_delay, max_pending))
                .collect();
            match started {
                Ok(n) => {
                    nodes = n;
                    break;
                }
                Err(e) if attempt == 3 => return Err(e),
                Err(_) => {}
            }
        }
        wait_until("three members on every node", FORM_DEADLINE, || {
            nodes.iter().all(|n| {
                n.console_exec("cluster membership")
                    .is_ok_and(|m| NAMES.iter().all(|name| m.contains(name)))
            })
        })?;
        let tables: Vec<_> = nodes
            .iter()
            .map(|n| {
                n.shared_gauge("outbound_domains")
                    .ok_or("no outbound_domains")
            })
            .collect::<Result<_, _>>()?;
        let trees: Vec<_> = nodes
            .iter()
            .map(|n| n.shared_cidr("inbound_cidr").ok_or("no inbound_cidr"))
            .collect::<Result<_, _>>()?;
        let probe = b"lag-probe.example";
        for t in &tables {
            t.add(probe, 1);
        }
        wait_until("every node's probe on every node", FORM_DEADLINE, || {
            tables.iter().all(|t| t.get(probe, Scope::Global) == 3)
        })?;
        for t in &tables {
            t.add(probe, -1);
        }
        wait_until("the probes gone everywhere", FORM_DEADLINE, || {
            tables.iter().all(|t| t.get(probe, Scope::Global) == 0)
        })?;
        Ok(Cluster {
            nodes,
            trees,
            tables,
            _dir: dir,
        })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &self.nodes {
            n.stop();
        }
    }
}

// ---------------------------------------------------------------- load

/// xorshift64*: the writers need cheap, not good, randomness.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// What one writer did.
struct Written {
    updates: u64,
    elapsed: Duration,
    /// For node A: `checkpoints[v]` is when the marker's own count became
    /// `v` (taken just before the add, so a lag is never under-counted by
    /// the add itself). Empty for the other writers.
    checkpoints: Vec<Instant>,
    /// This writer thread's CPU time, taken before it exits (later its
    /// /proc entry is gone).
    cpu: Option<Duration>,
}

struct Writer {
    tree: Arc<CidrCounts>,
    table: Arc<GaugeTable>,
    domains: Arc<Vec<Vec<u8>>>,
    rate: u64,
    marker: bool,
    seed: u64,
}

impl Writer {
    fn run(self, start: Instant, end: Instant) -> Written {
        let mut rng = Rng(self.seed | 1);
        let mut open_ips: VecDeque<IpAddr> = VecDeque::with_capacity(OPEN);
        let mut open_domains: VecDeque<usize> = VecDeque::with_capacity(OPEN);
        let mut checkpoints = vec![start];
        let mut updates = 0u64;
        // A preempted writer catches up, but in bursts of at most 10 ms of
        // work, so the marker still moves while it does.
        let max_burst = (self.rate / 100).max(1);
        let mut now = Instant::now();
        while now < end {
            if self.marker {
                let t = Instant::now();
                self.table.add(MARKER, 1);
                checkpoints.push(t);
                updates += 1;
            }
            let due = (self.rate as f64 * now.duration_since(start).as_secs_f64()) as u64;
            for _ in 0..due.saturating_sub(updates).min(max_burst) {
                if updates.is_multiple_of(2) {
                    if open_ips.len() >= OPEN {
                        self.tree.decrement(open_ips.pop_front().expect("full"));
                    } else {
                        let r = rng.next();
                        let net = ((r as u32) % NETS).wrapping_mul(0x9e37_79b1) & 0xffff_ff00;
                        let ip = IpAddr::V4(Ipv4Addr::from(net | ((r >> 32) as u32 & 0xff)));
                        self.tree.increment(ip);
                        open_ips.push_back(ip);
                    }
                } else if open_domains.len() >= OPEN {
                    let d = open_domains.pop_front().expect("full");
                    self.table.add(&self.domains[d], -1);
                } else {
                    let d = (rng.next() % DOMAINS as u64) as usize;
                    self.table.add(&self.domains[d], 1);
                    open_domains.push_back(d);
                }
                updates += 1;
            }
            std::thread::sleep(TICK);
            now = Instant::now();
        }
        Written {
            updates,
            elapsed: now.duration_since(start),
            checkpoints,
            cpu: schedstat_ns("/proc/thread-self/schedstat").map(Duration::from_nanos),
        }
    }
}

/// A's share of the marker as `table` (B's or C's) sees it, every tick
/// until `end`.
fn read_marker(table: &GaugeTable, end: Instant) -> Vec<(Instant, i64)> {
    let mut samples = Vec::new();
    loop {
        let t = Instant::now();
        if t >= end {
            return samples;
        }
        samples.push((
            t,
            table.get(MARKER, Scope::Global) - table.get(MARKER, Scope::Local),
        ));
        std::thread::sleep(TICK);
    }
}

// ---------------------------------------------------------------- CPU

/// User plus system CPU time of the whole process so far.
#[allow(unsafe_code)]
fn process_cpu() -> Option<Duration> {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `ru` is a live, aligned, writable rusage that getrusage fills
    // in; all-zero bytes are a valid rusage (integers only), so it is
    // initialised whether or not the call wrote it.
    let ru = unsafe {
        if libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr()) != 0 {
            return None;
        }
        ru.assume_init()
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    Some(tv(ru.ru_utime) + tv(ru.ru_stime))
}

/// CPU time per live thread (comm, ns on CPU), from schedstat: the
/// runtime names its threads, so this splits the engine's replication work
/// from the synthetic load without instrumenting the library.
fn thread_cpu() -> HashMap<u64, (String, u64)> {
    let mut out = HashMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in tasks.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let path = task.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if let Some(ns) = schedstat_ns(path.join("schedstat")) {
            out.insert(tid, (comm.trim().to_string(), ns));
        }
    }
    out
}

/// The first field of a schedstat file: nanoseconds on CPU.
fn schedstat_ns(path: impl AsRef<std::path::Path>) -> Option<u64> {
    std::fs::read_to_string(path)
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// CPU seconds by thread name between two [`thread_cpu`] snapshots;
/// threads born in between count from zero, threads gone by then (the
/// bench's own writers and readers) not at all.
fn cpu_by_name(
    before: &HashMap<u64, (String, u64)>,
    after: &HashMap<u64, (String, u64)>,
) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for (tid, (name, ns)) in after {
        let was = before.get(tid).map_or(0, |(_, ns)| *ns);
        *out.entry(name.clone()).or_insert(0.0) += ns.saturating_sub(was) as f64 / 1e9;
    }
    out
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

// ---------------------------------------------------------------- a run

struct Figures {
    max_delay: f64,
    rates: Vec<f64>,
    samples: usize,
    median: Duration,
    p99: Duration,
    max: Duration,
    catch_up: Duration,
    wall: Duration,
    process_cpu: Option<Duration>,
    threads: HashMap<String, f64>,
    load_before: String,
    load_after: String,
}

/// Nearest-rank percentile of sorted `v`.
fn percentile(v: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// A named thread that sleeps until `at`, then runs `f`.
fn spawn_at<T: Send + 'static>(
    name: &str,
    at: Instant,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<std::thread::JoinHandle<T>, String> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            std::thread::sleep(at.saturating_duration_since(Instant::now()));
            f()
        })
        .map_err(|e| format!("spawn {name}: {e}"))
}

fn run(opts: &Options, max_delay: f64) -> Result<Figures, String> {
    let cluster = Cluster::start(max_delay, opts.max_pending)?;
    let domains: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..DOMAINS)
            .map(|i| format!("domain-{i}.example").into_bytes())
            .collect(),
    );
    let load_before = loadavg();
    let duration = Duration::from_secs_f64(opts.secs);
    // Threads start a little ahead so none loses the first ticks to its
    // own spawn.
    let start = Instant::now() + Duration::from_millis(20);
    let end = start + duration;
    let cpu_before = process_cpu();
    let threads_before = thread_cpu();
    let mut writers = Vec::new();
    for i in 0..NAMES.len() {
        let w = Writer {
            tree: Arc::clone(&cluster.trees[i]),
            table: Arc::clone(&cluster.tables[i]),
            domains: Arc::clone(&domains),
            rate: opts.rate,
            marker: i == 0,
            seed: 0x9e37_79b9_7f4a_7c15 ^ (i as u64 + 1),
        };
        writers.push(spawn_at("lag-writer", start, move || w.run(start, end))?);
    }
    let mut readers = Vec::new();
    for table in &cluster.tables[1..] {
        let table = Arc::clone(table);
        readers.push(spawn_at("lag-reader", start, move || {
            read_marker(&table, end)
        })?);
    }
    let written: Vec<Written> = writers
        .into_iter()
        .map(|h| match h.join() {
            Ok(w) => Ok(w),
            Err(_) => Err("a writer panicked".to_string()),
        })
        .collect::<Result<_, _>>()?;
    let samples: Vec<Vec<(Instant, i64)>> = readers
        .into_iter()
        .map(|h| match h.join() {
            Ok(s) => Ok(s),
            Err(_) => Err("a reader panicked".to_string()),
        })
        .collect::<Result<_, _>>()?;
    let wall = Instant::now().duration_since(start);
    let process_cpu = cpu_before
        .zip(process_cpu())
        .map(|(a, b)| b.saturating_sub(a));
    let mut threads = cpu_by_name(&threads_before, &thread_cpu());
    let writers_cpu: Option<Duration> = written.iter().map(|w| w.cpu).sum();
    if let Some(cpu) = writers_cpu {
        threads.insert("lag-writer".into(), cpu.as_secs_f64());
    }
    let load_after = loadavg();

    let checkpoints = &written[0].checkpoints;
    let last = i64::try_from(checkpoints.len() - 1).expect("fits");
    let last_at = *checkpoints.last().expect("has the start");
    let patience = Duration::from_secs_f64(max_delay) + CATCH_UP_SLACK;
    wait_until("B and C to see A's last marker value", patience, || {
        cluster.tables[1..]
            .iter()
            .all(|t| t.get(MARKER, Scope::Global) == last)
    })?;
    let catch_up = last_at.elapsed();

    let mut lags = Vec::new();
    for (t, v) in samples.iter().flatten() {
        let seen = usize::try_from(*v)
            .ok()
            .and_then(|v| checkpoints.get(v))
            .ok_or_else(|| format!("a reader saw {v}, A only wrote up to {last}"))?;
        lags.push(t.saturating_duration_since(*seen));
    }
    if lags.is_empty() {
        return Err("no samples".into());
    }
    lags.sort();
    Ok(Figures {
        max_delay,
        rates: written
            .iter()
            .map(|w| w.updates as f64 / w.elapsed.as_secs_f64())
            .collect(),
        samples: lags.len(),
        median: percentile(&lags, 50.0),
        p99: percentile(&lags, 99.0),
        max: *lags.last().expect("non-empty"),
        catch_up,
        wall,
        process_cpu,
        threads,
        load_before,
        load_after,
    })
}

// ---------------------------------------------------------------- report

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn report(opts: &Options, figures: &[Figures]) {
    println!();
    println!(
        "replication lag, 3 nodes in one process on loopback, {} updates/s per node \
         for {} s, max_pending = {}, heartbeats_per_sec = 10",
        opts.rate, opts.secs, opts.max_pending
    );
    println!();
    println!(
        "| max_delay | achieved updates/s per node (min) | lag samples | median lag | p99 lag | max lag | last update seen everywhere after | process CPU | writers CPU | node threads (ecc-*) CPU |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for f in figures {
        let min_rate = f.rates.iter().copied().fold(f64::INFINITY, f64::min);
        let secs = f.wall.as_secs_f64();
        let cores = |s: f64| format!("{:.0}% of a core", 100.0 * s / secs);
        // The nodes' own threads (engine, links, dialers): what replication
        // costs on top of the writers' updates.
        let replication: f64 = f
            .threads
            .iter()
            .filter(|(name, _)| name.starts_with("ecc-"))
            .map(|(_, s)| s)
            .sum();
        let writers = f
            .threads
            .get("lag-writer")
            .map_or("?".into(), |s| cores(*s));
        println!(
            "| {} s | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} |",
            f.max_delay,
            min_rate,
            f.samples,
            ms(f.median),
            ms(f.p99),
            ms(f.max),
            ms(f.catch_up),
            f.process_cpu.map_or("?".into(), |c| cores(c.as_secs_f64())),
            writers,
            cores(replication),
        );
    }
    println!();
    for f in figures {
        let mut threads: Vec<_> = f.threads.iter().filter(|(_, s)| **s > 0.0).collect();
        threads.sort_by(|a, b| b.1.total_cmp(a.1));
        let threads: Vec<String> = threads
            .iter()
            .map(|(name, s)| format!("{name} {s:.2} s"))
            .collect();
        println!(
            "max_delay {} s: CPU by thread name over {:.1} s: {}; load average before {}, after {}",
            f.max_delay,
            f.wall.as_secs_f64(),
            threads.join(", "),
            f.load_before,
            f.load_after,
        );
    }
}

fn main() {
    let opts = match Options::parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("replication_lag: {e}");
            std::process::exit(2);
        }
    };
    // Whatever goes wrong (a node that never stops, a wait that never
    // ends), the bench ends: CI must not hang on it.
    let per_run = Duration::from_secs_f64(opts.secs) + FORM_DEADLINE * 3 + CATCH_UP_SLACK * 2;
    let budget = per_run * u32::try_from(opts.delays.len()).unwrap_or(u32::MAX);
    std::thread::spawn(move || {
        std::thread::sleep(budget);
        eprintln!("replication_lag: still running after {budget:?}; giving up");
        std::process::exit(3);
    });
    if opts.quick {
        println!("SMOKE RUN (--test / ECC_BENCH_QUICK): figures are not meaningful");
    }
    let mut figures = Vec::new();
    for &max_delay in &opts.delays {
        match run(&opts, max_delay) {
            Ok(f) => figures.push(f),
            Err(e) => {
                eprintln!("replication_lag: max_delay {max_delay} s: {e}");
                std::process::exit(1);
            }
        }
    }
    report(&opts, &figures);
}
