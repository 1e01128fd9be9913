//! `eccluster node` processes for the multi-process tests: a node's
//! configuration ([`Spec`]), and the running process ([`NodeProcess`]),
//! killed on drop, restartable, with its console and its log.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::{DEADLINE, Guard, first_line, output_within_deadline};

pub const BIN: &str = env!("CARGO_BIN_EXE_eccluster");

/// How a node is configured.
#[derive(Clone)]
pub struct Spec {
    pub name: String,
    /// The peers map: every node this one knows, with its port (may include itself).
    pub peers: Vec<(String, u16)>,
    /// The cluster key file; `None` runs without one.
    pub key: Option<PathBuf>,
    /// Extra lines for the `[cluster]` table.
    pub extra: String,
    /// The `ECCluster_Listener` address; the node's own port on 127.0.0.1 if unset.
    pub listen: Option<String>,
    /// Extra arguments for `eccluster node`.
    pub args: Vec<String>,
    /// `node`, or `aggregate` for a manager that pulls logs.
    pub command: &'static str,
}

impl Spec {
    pub fn port(&self) -> u16 {
        self.peers
            .iter()
            .find(|(n, _)| *n == self.name)
            .map(|(_, p)| *p)
            .expect("a node is in its own peers map")
    }

    pub fn render(&self, socket: &Path) -> String {
        let peers: String = self
            .peers
            .iter()
            .map(|(n, p)| format!("{n} = \"127.0.0.1:{p}\"\n"))
            .collect();
        let key = self
            .key
            .as_ref()
            .map(|k| format!("auth_key_file = {:?}\n", k.display().to_string()))
            .unwrap_or_default();
        let listen = self
            .listen
            .clone()
            .unwrap_or_else(|| format!("127.0.0.1:{}", self.port()));
        format!(
            "[cluster]\n\
             nodename = \"{name}\"\n\
             nodeaddr = \"127.0.0.1\"\n\
             heartbeats_per_sec = 4\n\
             heartbeat_start_delay = 0\n\
             {key}{extra}\n\
             [msgc_server.peers]\n{peers}\n\
             [eccluster_listener.listen.\"{listen}\"]\n\n\
             [control_listener.listen.{socket:?}]\n",
            name = self.name,
            extra = self.extra,
            socket = socket.display().to_string(),
        )
    }
}

/// A running `eccluster node`; killed on drop.
pub struct NodeProcess {
    pub guard: Guard,
    pub name: String,
    pub command: &'static str,
    pub args: Vec<String>,
    pub config: PathBuf,
    pub socket: PathBuf,
    pub log: PathBuf,
}

impl NodeProcess {
    /// Writes the node's config into `dir` and starts it.
    pub fn start(dir: &Path, spec: &Spec) -> NodeProcess {
        let socket = dir.join(format!("{}.sock", spec.name));
        let config = dir.join(format!("{}.toml", spec.name));
        std::fs::write(&config, spec.render(&socket)).expect("write config");
        let mut node = NodeProcess {
            guard: Guard(None),
            name: spec.name.clone(),
            command: spec.command,
            args: spec.args.clone(),
            config,
            socket,
            log: dir.join(format!("{}.log", spec.name)),
        };
        node.spawn();
        node
    }

    /// Starts the process (again) and waits for its ready line. The log is
    /// appended to, so a restarted node keeps its earlier lines.
    pub fn spawn(&mut self) {
        assert!(self.guard.0.is_none(), "{} is already running", self.name);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open log");
        let child = Command::new(BIN)
            .args([self.command, "--config"])
            .arg(&self.config)
            .args(&self.args)
            .env_remove("EC_NODE_NAME")
            .env_remove("EC_SUB_CLUSTER")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn eccluster node");
        self.guard = Guard(Some(child));
        let stdout = self.guard.child().stdout.take().expect("stdout");
        let ready = first_line(stdout);
        assert!(
            ready.starts_with(&format!("ready node={} ", self.name)),
            "{} did not start: {ready:?}\nlog:\n{}",
            self.name,
            self.log_text()
        );
    }

    pub fn kill(&mut self) {
        self.guard.kill();
    }

    /// SIGTERM, as an init system stops a node, and waits for it to exit.
    pub fn terminate(&mut self) {
        let child = self.guard.child();
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {}", self.name);
        let exit = child.wait().expect("wait for the node");
        assert!(exit.success(), "{} exited with {exit}", self.name);
        self.guard.0 = None;
    }

    /// Runs a console command over the socket (no process per poll).
    pub fn console(&self, command: &str) -> Result<String, String> {
        super::console(&self.socket, command, DEADLINE)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log from byte `from` on (see [`Node::log_len`]).
    pub fn log_since(&self, from: usize) -> String {
        self.log_text().get(from..).unwrap_or_default().to_string()
    }

    pub fn log_len(&self) -> usize {
        self.log_text().len()
    }

    /// Runs a console command through the CLI, as an operator would.
    pub fn cli(&self, command: &str) -> Output {
        let mut cmd = Command::new(BIN);
        cmd.arg("console").arg("--socket").arg(&self.socket);
        cmd.args(command.split_whitespace());
        output_within_deadline(cmd, None)
    }
}
