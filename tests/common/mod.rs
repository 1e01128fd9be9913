//! Helpers shared by the integration tests.

// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

pub mod process;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long anything may take before a test gives up.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// A fresh directory under the system temp dir, removed on drop. Names carry
/// the process id and a counter, so parallel tests and test binaries never
/// share one.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("ecc-test-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write temp file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process that is killed (and reaped) if the test ends early.
pub struct Guard(pub Option<Child>);

impl Guard {
    pub fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("child already reaped")
    }

    pub fn pid(&mut self) -> libc::pid_t {
        libc::pid_t::try_from(self.child().id()).expect("pid fits")
    }

    /// Waits for the child to exit, polling until the deadline.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child().try_wait().expect("try_wait") {
                self.0 = None;
                return status;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "the process did not exit within {DEADLINE:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILLs the child and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.0.take() {
            child.kill().expect("kill the child");
            child.wait().expect("reap the child");
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Polls `cond` every 10 ms until it holds; fails the test after `deadline`.
/// Returns how long it took.
pub fn wait_until_within(
    what: &str,
    deadline: Duration,
    mut cond: impl FnMut() -> bool,
) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    start.elapsed()
}

/// [`wait_until_within`] the default deadline.
pub fn wait_until(what: &str, cond: impl FnMut() -> bool) -> Duration {
    wait_until_within(what, DEADLINE, cond)
}

/// Reads the first line of `stdout` within the deadline; the rest of the
/// output is drained in the background, so the child never writes to a
/// closed pipe.
pub fn first_line(stdout: ChildStdout) -> String {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let _ = tx.send(line);
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
    });
    rx.recv_timeout(DEADLINE)
        .expect("the process printed no line within the deadline")
}

/// Runs a command to completion, killing it if it outlives the deadline.
pub fn output_within_deadline(mut cmd: Command, input: Option<&str>) -> Output {
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut guard = Guard(Some(cmd.spawn().expect("spawn the command")));
    if let Some(input) = input {
        let mut stdin = guard.child().stdin.take().expect("stdin");
        stdin.write_all(input.as_bytes()).expect("write stdin");
    }
    let mut stdout = guard.child().stdout.take().expect("stdout");
    let mut stderr = guard.child().stderr.take().expect("stderr");
    let out_thread = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stdout.read_to_end(&mut s);
        s
    });
    let err_thread = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stderr.read_to_end(&mut s);
        s
    });
    let status = guard.wait_exit();
    Output {
        status,
        stdout: out_thread.join().expect("stdout reader"),
        stderr: err_thread.join().expect("stderr reader"),
    }
}

/// A loopback port that is free for both TCP and UDP right now. Candidates
/// start at an offset derived from the process id and advance with a
/// process-wide counter, so parallel tests (and test binaries run side by
/// side) get different ports; the bind check skips ports in use. Kept below
/// the usual ephemeral range (32768+) so outgoing connections do not take them.
pub fn free_port() -> u16 {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    const LOW: u32 = 12000;
    const SPAN: u32 = 20000;
    let offset = std::process::id().wrapping_mul(97) % SPAN;
    for _ in 0..SPAN {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let port = u16::try_from(LOW + (offset + n) % SPAN).expect("port fits");
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let tcp = TcpListener::bind(addr);
        let udp = UdpSocket::bind(addr);
        if tcp.is_ok() && udp.is_ok() {
            return port;
        }
    }
    panic!("no free loopback port");
}

/// Whether the process runs with effective uid 0 (what the network-namespace
/// tests need: `ip netns`, veth pairs, netlink address changes, AF_PACKET).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// Runs `cmd ARGS...` to completion: its stdout, or an error naming the
/// command with its stderr.
pub fn run(cmd: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// One request on a node's console socket, in the control socket's line
/// protocol (`OK <len>` / `ERR <len>` and that many bytes), with a read
/// timeout so that a hung node fails the test instead of hanging it.
pub fn console(socket: &Path, command: &str, timeout: Duration) -> Result<String, String> {
    let stream = UnixStream::connect(socket).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    writeln!(writer, "{command}").map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream);
    let mut header = String::new();
    reader.read_line(&mut header).map_err(|e| e.to_string())?;
    let (tag, len) = header
        .trim_end()
        .split_once(' ')
        .ok_or_else(|| format!("bad reply header {header:?}"))?;
    let len: usize = len.parse().map_err(|_| format!("bad length {header:?}"))?;
    let mut body = vec![0; len];
    reader.read_exact(&mut body).map_err(|e| e.to_string())?;
    let body = String::from_utf8_lossy(&body).into_owned();
    match tag {
        "OK" => Ok(body),
        _ => Err(body),
    }
}

/// Says why a network-namespace test cannot run: it passes with a
/// `skipped:` line on a developer's unprivileged machine, and fails where
/// `ECC_REQUIRE_NETNS=1` says the namespaces must work (CI, as root).
pub fn skip_netns(test: &str, why: &str) {
    let message =
        format!("skipped: {test}: {why} (network-namespace tests need root and `ip netns`)");
    assert!(
        std::env::var("ECC_REQUIRE_NETNS").as_deref() != Ok("1"),
        "{message}, and ECC_REQUIRE_NETNS=1 requires them"
    );
    eprintln!("{message}");
}

/// A node made from TOML configuration text and started, in this process.
pub fn started_node(text: &str) -> eccluster::node::Node {
    let config = eccluster::config::LoadedConfig::parse(text, eccluster::config::Format::Toml)
        .unwrap_or_else(|e| panic!("{e}\n{text}"))
        .config;
    let node = eccluster::node::Node::new(config);
    node.start().expect("node starts");
    node
}
