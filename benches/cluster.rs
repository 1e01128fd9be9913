//! Whole-cluster figures for membership (issue 3), measured on real
//! `eccluster node` processes on loopback:
//!
//! 1. **detection**: SIGKILL one of three nodes and time until *every*
//!    survivor's view no longer lists it (at 4 and at 1 heartbeats/s);
//! 2. **load**: three nodes at 4/s while busy loops saturate every core for
//!    60 s; counts false downs (`X is down` in the node logs) and late timers;
//! 3. **bytes**: heartbeat traffic per node in a 16-node cluster (4/s and 1/s).
//!
//! `cargo bench --bench cluster` runs everything (a few minutes);
//! `-- --test` or `ECC_BENCH_QUICK=1` makes a smoke run of a few seconds.
//! Positional arguments select sections by name (`-- detection`); an argument
//! that names no section runs nothing, as criterion does with a filter.
//! `ECC_BENCH_TRIALS=N` changes the number of detection trials per rate.
//!
//! This prints measurements; it asserts nothing about timing.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use eccluster::io::control::ControlClient;
use eccluster::io::seal;

const BIN: &str = env!("CARGO_BIN_EXE_eccluster");
/// How long a cluster may take to form (or re-form) before the bench gives up.
const CONVERGE_DEADLINE: Duration = Duration::from_secs(30);
/// Pause between two console polls while timing detection.
const POLL_SLEEP: Duration = Duration::from_millis(2);
/// IPv4 (20) + UDP (8) header bytes per datagram.
const IP_UDP_HEADER: u64 = 28;

// ---------------------------------------------------------------- options

#[derive(Clone, Debug)]
struct Options {
    quick: bool,
    trials: usize,
    load_secs: u64,
    busy_procs: usize,
    byte_nodes: usize,
    byte_secs: u64,
    filters: Vec<String>,
}

impl Options {
    fn parse() -> Options {
        let mut test = false;
        let mut filters = Vec::new();
        for arg in std::env::args().skip(1) {
            match arg.as_str() {
                "--test" => test = true,
                // cargo passes --bench; libtest-style flags are accepted and ignored.
                a if a.starts_with('-') => {}
                a => filters.push(a.to_string()),
            }
        }
        let quick = test
            || std::env::var("ECC_BENCH_QUICK")
                .is_ok_and(|v| !v.is_empty() && v != "0" && v != "false");
        let trials = std::env::var("ECC_BENCH_TRIALS")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|n| *n > 0);
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Options {
            quick,
            trials: trials.unwrap_or(if quick { 1 } else { 20 }),
            load_secs: if quick { 2 } else { 60 },
            busy_procs: (2 * cores).clamp(2, 8),
            byte_nodes: if quick { 4 } else { 16 },
            byte_secs: if quick { 2 } else { 10 },
            filters,
        }
    }

    fn wants(&self, section: &str) -> bool {
        self.filters.is_empty() || self.filters.iter().any(|f| section.contains(f.as_str()))
    }
}

// ---------------------------------------------------------------- processes

/// The scratch directory, removed when the bench ends (also on panic).
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One `eccluster node` process; killed and reaped when dropped.
struct NodeProc {
    name: String,
    config: PathBuf,
    socket: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    /// Kept open so that the node never writes to a closed pipe.
    _stdout: Option<BufReader<ChildStdout>>,
}

impl NodeProc {
    fn start(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("node log opens");
        let mut child = Command::new(BIN)
            .args(["node", "--config"])
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"));
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        // Stored before reading, so that a failed start is still reaped.
        self.child = Some(child);
        let mut ready = String::new();
        let _ = stdout.read_line(&mut ready);
        assert!(
            ready.starts_with("ready "),
            "{} did not start: {ready:?}\n{}",
            self.name,
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
        self._stdout = Some(stdout);
    }

    /// SIGKILL and reap.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self._stdout = None;
    }

    fn info(&self) -> Option<Info> {
        let mut c = ControlClient::connect(&self.socket).ok()?;
        let text = c.exec("cluster info").ok()?.ok()?;
        Some(Info::parse(&text))
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A cluster of nodes in one scratch directory, on consecutive loopback ports.
struct Cluster {
    nodes: Vec<NodeProc>,
    // Dropped after the nodes (fields drop in order).
    _scratch: Scratch,
}

impl Cluster {
    fn new(tag: &str, names: &[String], first_port: u16, heartbeats_per_sec: f64) -> Cluster {
        let dir =
            std::env::temp_dir().join(format!("ecc-bench-cluster-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch directory");
        let scratch = Scratch(dir.clone());
        let key = dir.join("cluster.key");
        seal::generate_key_file(&key).expect("cluster key");
        let peers: String = names
            .iter()
            .zip(first_port..)
            .map(|(n, p)| format!("{n} = \"127.0.0.1:{p}\"\n"))
            .collect();
        let nodes = names
            .iter()
            .zip(first_port..)
            .map(|(name, port)| {
                let socket = dir.join(format!("{name}.sock"));
                let config = dir.join(format!("{name}.toml"));
                std::fs::write(
                    &config,
                    format!(
                        r#"[cluster]
nodename = "{name}"
heartbeats_per_sec = {heartbeats_per_sec}
heartbeat_start_delay = 0
auth_key_file = "{key}"

[msgc_server.peers]
{peers}
[eccluster_listener.listen."127.0.0.1:{port}"]

[control_listener.listen."{socket}"]
"#,
                        key = key.display(),
                        socket = socket.display(),
                    ),
                )
                .expect("node config");
                NodeProc {
                    name: name.clone(),
                    config,
                    socket,
                    log: dir.join(format!("{name}.log")),
                    child: None,
                    _stdout: None,
                }
            })
            .collect();
        Cluster {
            nodes,
            _scratch: scratch,
        }
    }

    fn start_all(&mut self) {
        for n in &mut self.nodes {
            n.start();
        }
    }

    /// Waits until every running node holds a view of `size` members, agreed
    /// by all of them; returns how long that took.
    fn wait_converged(&self, size: usize) -> Duration {
        let start = Instant::now();
        loop {
            let ok = self.nodes.iter().filter(|n| n.child.is_some()).all(|n| {
                n.info()
                    .is_some_and(|i| i.members.len() == size && i.agreed)
            });
            if ok {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < CONVERGE_DEADLINE,
                "the cluster did not converge on {size} members within {CONVERGE_DEADLINE:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn count_in_logs(&self, needle: &str) -> usize {
        self.nodes
            .iter()
            .map(|n| {
                std::fs::read_to_string(&n.log)
                    .unwrap_or_default()
                    .lines()
                    .filter(|l| l.contains(needle))
                    .count()
            })
            .sum()
    }

    fn log_lines(&self, needle: &str) -> Vec<String> {
        self.nodes
            .iter()
            .flat_map(|n| {
                std::fs::read_to_string(&n.log)
                    .unwrap_or_default()
                    .lines()
                    .filter(|l| l.contains(needle))
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

/// Busy loops that saturate the CPUs; killed and reaped when dropped.
struct Load(Vec<Child>);

impl Load {
    fn start(procs: usize) -> Load {
        let mut load = Load(Vec::new());
        for _ in 0..procs {
            let child = Command::new("sh")
                // Spins until killed, and stops by itself if the bench dies
                // without unwinding (`kill` is a shell builtin: no fork).
                .args(["-c", "while kill -0 $PPID 2>/dev/null; do :; done"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn a busy loop");
            load.0.push(child);
        }
        load
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
        }
        for c in &mut self.0 {
            let _ = c.wait();
        }
    }
}

// ---------------------------------------------------------------- console parsing

/// The parts of `cluster info` the bench reads.
#[derive(Clone, Debug, Default)]
struct Info {
    members: Vec<String>,
    agreed: bool,
    late_timers: u64,
    heartbeats_sent: u64,
    heartbeat_bytes: u64,
}

impl Info {
    fn parse(text: &str) -> Info {
        let mut info = Info::default();
        for line in text.lines() {
            if line.starts_with("View: ") {
                info.members = view_members(line);
            } else if line.starts_with("View Agreement: agreed") {
                info.agreed = true;
            } else if let Some(n) = line.strip_prefix("Late Timers: ") {
                info.late_timers = n.trim().parse().unwrap_or(0);
            } else if let Some(rest) = line.strip_prefix("Heartbeats Sent: ") {
                // "N (M bytes)"
                let mut parts = rest.split_whitespace();
                info.heartbeats_sent = parts.next().and_then(|n| n.parse().ok()).unwrap_or(0);
                info.heartbeat_bytes = parts
                    .next()
                    .map(|b| b.trim_start_matches('('))
                    .and_then(|b| b.parse().ok())
                    .unwrap_or(0);
            }
        }
        info
    }
}

/// The member names of a `View: N (id), K members: a, b, c` line.
fn view_members(line: &str) -> Vec<String> {
    line.split_once("members: ")
        .map(|(_, list)| {
            list.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------- statistics

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

fn summary(samples: &[f64]) -> String {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    format!(
        "min {:7.1}  median {:7.1}  p99 {:7.1}  max {:7.1}  (ms, n={})",
        s[0],
        percentile(&s, 50.0),
        percentile(&s, 99.0),
        s[s.len() - 1],
        s.len()
    )
}

/// A small deterministic jitter source (no rand dependency needed).
struct Jitter(u64);

impl Jitter {
    fn next_ms(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below.max(1)
    }
}

/// CPU time counters from /proc/stat: (busy, total) jiffies.
fn cpu_jiffies() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4).unwrap_or(&0);
    Some((total - idle, total))
}

// ---------------------------------------------------------------- 1. detection

struct Trial {
    /// Kill to the first survivor dropping the victim, and to the last.
    first: Duration,
    all: Duration,
    /// Longest gap between two polls of one survivor in this trial.
    worst_poll_gap: Duration,
    /// Polls of one survivor and the time they spanned, for the mean gap.
    polls: u32,
    polled_for: Duration,
}

fn detection(opts: &Options, base_port: u16, rate: f64, jitter: &mut Jitter) -> Vec<Trial> {
    let names: Vec<String> = (1..=3).map(|i| format!("det{i}")).collect();
    let tag = format!("det-{rate}");
    let mut cluster = Cluster::new(&tag, &names, base_port, rate);
    cluster.start_all();
    let formed = cluster.wait_converged(3);
    let interval_ms = 1000.0 / rate;
    println!(
        "  {rate}/s: 3 nodes formed an agreed view in {:.0} ms; expected detection window from the kill: \
         ({:.0}, {:.0}] ms + scheduling (down after 6 silent intervals, counted from the last heartbeat anyone heard)",
        ms(formed),
        5.0 * interval_ms,
        6.0 * interval_ms
    );
    let deadline =
        Duration::from_secs_f64(30.0 * interval_ms / 1000.0).max(Duration::from_secs(10));
    let mut trials = Vec::new();
    for t in 0..opts.trials {
        let victim = t % cluster.nodes.len();
        // Kill at a random phase of the heartbeat schedule.
        std::thread::sleep(Duration::from_millis(
            200 + jitter.next_ms(interval_ms as u64),
        ));
        let survivors: Vec<usize> = (0..cluster.nodes.len()).filter(|i| *i != victim).collect();
        let mut clients: Vec<ControlClient> = survivors
            .iter()
            .map(|i| ControlClient::connect(&cluster.nodes[*i].socket).expect("survivor console"))
            .collect();
        let victim_name = cluster.nodes[victim].name.clone();
        let killed = Instant::now();
        cluster.nodes[victim].kill();
        let mut seen: Vec<Option<Duration>> = vec![None; survivors.len()];
        let mut last_poll: Vec<Option<Instant>> = vec![None; survivors.len()];
        let mut worst_gap = Duration::ZERO;
        let (mut polls, mut polled_for) = (0u32, Duration::ZERO);
        while seen.iter().any(Option::is_none) {
            assert!(
                killed.elapsed() < deadline,
                "{victim_name} was not dropped within {deadline:?} at {rate}/s"
            );
            for (k, client) in clients.iter_mut().enumerate() {
                if seen[k].is_some() {
                    continue;
                }
                let text = client
                    .exec("cluster info")
                    .expect("survivor console answers")
                    .expect("cluster info succeeds");
                let now = Instant::now();
                if let Some(prev) = last_poll[k] {
                    worst_gap = worst_gap.max(now - prev);
                    polls += 1;
                    polled_for += now - prev;
                }
                last_poll[k] = Some(now);
                let view = text
                    .lines()
                    .find(|l| l.starts_with("View: "))
                    .map(view_members)
                    .unwrap_or_default();
                if !view.is_empty() && !view.contains(&victim_name) {
                    seen[k] = Some(now - killed);
                }
            }
            std::thread::sleep(POLL_SLEEP);
        }
        let times: Vec<Duration> = seen.into_iter().flatten().collect();
        let trial = Trial {
            first: *times.iter().min().expect("two survivors"),
            all: *times.iter().max().expect("two survivors"),
            worst_poll_gap: worst_gap,
            polls,
            polled_for,
        };
        println!(
            "    trial {:2}: killed {victim_name}: first survivor {:7.1} ms, every survivor {:7.1} ms (poll gap <= {:.1} ms)",
            t + 1,
            ms(trial.first),
            ms(trial.all),
            ms(trial.worst_poll_gap)
        );
        trials.push(trial);
        if t + 1 < opts.trials {
            cluster.nodes[victim].start();
            cluster.wait_converged(3);
        }
    }
    trials
}

fn run_detection(opts: &Options, base_port: u16) {
    println!(
        "== detection: SIGKILL one of 3 nodes, time until every survivor's view drops it ({} trial(s) per rate) ==",
        opts.trials
    );
    println!(
        "  polling: one persistent console connection per survivor, `cluster info` then a {} ms sleep",
        POLL_SLEEP.as_millis()
    );
    let mut jitter = Jitter(u64::from(std::process::id()));
    let mut results = Vec::new();
    for (i, rate) in [4.0, 1.0].into_iter().enumerate() {
        let trials = detection(opts, base_port + 4 * i as u16, rate, &mut jitter);
        results.push((rate, trials));
    }
    println!("  -- summary (kill -> every survivor's view no longer lists the victim) --");
    for (rate, trials) in &results {
        let all: Vec<f64> = trials.iter().map(|t| ms(t.all)).collect();
        let first: Vec<f64> = trials.iter().map(|t| ms(t.first)).collect();
        let gap = trials
            .iter()
            .map(|t| ms(t.worst_poll_gap))
            .fold(0.0, f64::max);
        println!("  {rate}/s every survivor: {}", summary(&all));
        println!("  {rate}/s first survivor: {}", summary(&first));
        let polls: u32 = trials.iter().map(|t| t.polls).sum();
        let span: Duration = trials.iter().map(|t| t.polled_for).sum();
        println!(
            "  {rate}/s polling resolution: mean gap between two polls of a survivor {:.2} ms, worst {gap:.1} ms",
            ms(span) / f64::from(polls.max(1))
        );
    }
    if let Some((_, trials)) = results.first() {
        let mut all: Vec<f64> = trials.iter().map(|t| ms(t.all)).collect();
        all.sort_by(f64::total_cmp);
        let p99 = percentile(&all, 99.0);
        println!(
            "  target (issue 3): p99 <= 1500 ms at 4/s: {} (p99 {p99:.1} ms; keepalived default 3610 ms)",
            if p99 <= 1500.0 { "met" } else { "MISSED" }
        );
    }
}

// ---------------------------------------------------------------- 2. load

fn run_load(opts: &Options, base_port: u16) {
    println!(
        "== load: 3 nodes at 4/s while {} busy loops saturate the CPUs for {} s ==",
        opts.busy_procs, opts.load_secs
    );
    let names: Vec<String> = (1..=3).map(|i| format!("load{i}")).collect();
    let mut cluster = Cluster::new("load", &names, base_port, 4.0);
    cluster.start_all();
    cluster.wait_converged(3);
    std::thread::sleep(Duration::from_secs(1));
    let before: Vec<Info> = cluster
        .nodes
        .iter()
        .map(|n| n.info().expect("console answers"))
        .collect();
    let downs_before = cluster.count_in_logs(" is down");
    let suspects_before = cluster.count_in_logs(" is suspect");
    let cpu_before = cpu_jiffies();
    let started = Instant::now();
    let mut smallest_view = 3;
    let mut samples = 0u64;
    {
        let _load = Load::start(opts.busy_procs);
        while started.elapsed() < Duration::from_secs(opts.load_secs) {
            std::thread::sleep(Duration::from_millis(250));
            for n in &cluster.nodes {
                if let Some(i) = n.info() {
                    smallest_view = smallest_view.min(i.members.len());
                    samples += 1;
                }
            }
        }
        // The busy loops are killed and reaped here.
    }
    let loaded = started.elapsed();
    let cpu_after = cpu_jiffies();
    let after: Vec<Info> = cluster
        .nodes
        .iter()
        .map(|n| n.info().expect("console answers after the load"))
        .collect();
    let downs = cluster.count_in_logs(" is down") - downs_before;
    let suspects = cluster.count_in_logs(" is suspect") - suspects_before;
    let late: u64 = after
        .iter()
        .zip(&before)
        .map(|(a, b)| a.late_timers - b.late_timers)
        .sum();
    if let (Some((b0, t0)), Some((b1, t1))) = (cpu_before, cpu_after) {
        let busy = 100.0 * (b1 - b0) as f64 / (t1 - t0).max(1) as f64;
        println!(
            "  CPU busy over the window (all cores, /proc/stat): {busy:.0}% for {:.1} s",
            loaded.as_secs_f64()
        );
    }
    println!(
        "  false downs (`X is down` lines in the 3 node logs): {downs}  [target: 0 -> {}]",
        if downs == 0 { "met" } else { "MISSED" }
    );
    println!("  suspicions (`X is suspect` lines): {suspects}");
    println!("  late-timer events (sum of `Late Timers:` increases): {late}");
    println!(
        "  smallest view seen by a 250 ms console sample: {smallest_view} members ({samples} samples)"
    );
    for line in cluster.log_lines(" is down") {
        println!("    {line}");
    }
}

// ---------------------------------------------------------------- 3. bytes

fn run_bytes(opts: &Options, base_port: u16) {
    let n = opts.byte_nodes;
    println!(
        "== heartbeat bytes: {n} nodes on loopback, counters read {} s apart ==",
        opts.byte_secs
    );
    for (i, rate) in [4.0, 1.0].into_iter().enumerate() {
        let names: Vec<String> = (1..=n).map(|k| format!("hb{k:02}")).collect();
        let mut cluster = Cluster::new(
            &format!("bytes-{rate}"),
            &names,
            base_port + (i * n) as u16,
            rate,
        );
        cluster.start_all();
        let formed = cluster.wait_converged(n);
        let read = |c: &Cluster| -> Vec<(Instant, Info)> {
            c.nodes
                .iter()
                .map(|node| (Instant::now(), node.info().expect("console answers")))
                .collect()
        };
        let t0 = read(&cluster);
        std::thread::sleep(Duration::from_secs(opts.byte_secs));
        let t1 = read(&cluster);
        let mut payload = Vec::new();
        let mut wire = Vec::new();
        let mut datagrams = Vec::new();
        let mut sizes = Vec::new();
        for ((a_at, a), (b_at, b)) in t0.iter().zip(&t1) {
            let secs = (*b_at - *a_at).as_secs_f64();
            let dg = b.heartbeats_sent - a.heartbeats_sent;
            let bytes = b.heartbeat_bytes - a.heartbeat_bytes;
            payload.push(bytes as f64 / secs);
            wire.push((bytes + IP_UDP_HEADER * dg) as f64 / secs);
            datagrams.push(dg as f64 / secs);
            sizes.push(bytes as f64 / dg.max(1) as f64);
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let range = |v: &[f64]| {
            (
                v.iter().copied().fold(f64::INFINITY, f64::min),
                v.iter().copied().fold(0.0, f64::max),
            )
        };
        let (pl, ph) = range(&payload);
        let (wl, wh) = range(&wire);
        let (dl, dh) = range(&datagrams);
        println!(
            "  {rate}/s, {n} nodes (formed in {:.0} ms), per node per second:",
            ms(formed)
        );
        println!(
            "    datagrams: mean {:.1} (min {dl:.1}, max {dh:.1}; expected {})",
            mean(&datagrams),
            (n - 1) as f64 * rate
        );
        println!(
            "    payload bytes (sealed UDP payload): mean {:.0} (min {pl:.0}, max {ph:.0}); mean datagram {:.0} bytes",
            mean(&payload),
            mean(&sizes)
        );
        println!(
            "    with IPv4+UDP headers (+{IP_UDP_HEADER} bytes/datagram): mean {:.0} (min {wl:.0}, max {wh:.0}) = {:.1} kbit/s",
            mean(&wire),
            mean(&wire) * 8.0 / 1000.0
        );
        println!(
            "    whole cluster: {:.0} bytes/s with headers",
            mean(&wire) * n as f64
        );
    }
}

// ---------------------------------------------------------------- main

fn main() {
    let opts = Options::parse();
    let started = Instant::now();
    // 48 free consecutive ports per run (detection 8, load 3, bytes up to
    // 2 x 16 after them), below the ephemeral range.
    let base = eccluster::io::host::free_loopback_ports(48).expect("free loopback ports");
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "eccluster cluster bench ({}; {cores} cores; node binary {BIN})",
        if opts.quick {
            "SMOKE RUN (--test / ECC_BENCH_QUICK): figures are not meaningful"
        } else {
            "full run"
        }
    );
    let mut ran = 0;
    if opts.wants("detection") {
        run_detection(&opts, base);
        ran += 1;
    }
    if opts.wants("load") {
        run_load(&opts, base + 8);
        ran += 1;
    }
    if opts.wants("bytes") {
        run_bytes(&opts, base + 11);
        ran += 1;
    }
    if ran == 0 {
        println!(
            "no section matches {:?} (sections: detection, load, bytes)",
            opts.filters
        );
    }
    println!(
        "cluster bench done in {:.1} s{}",
        started.elapsed().as_secs_f64(),
        if opts.quick { " (smoke run)" } else { "" }
    );
}
