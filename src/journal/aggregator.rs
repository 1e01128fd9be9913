//! The manager side of the log service: pulls every MTA node's published
//! journals into files named by the `Logs` scope's `logfile` template.
//!
//! There is one *stream* per node and log, each with a thread that runs
//! *jobs*: a job is one pulling session, from when the node is seen alive
//! until its link breaks, an error, or an operator's `cluster abort ID`.
//! A job sends a pull, writes the batch that comes back to the output
//! files, makes them durable (`LogFiles::sync_all`), and only then takes
//! the batch's last id as its checkpoint, which the next pull carries to
//! the node. The node moves its journal's checkpoint there before reading
//! on (`journal::server`).
//!
//! Delivery is at least once. A line is checkpointed only after it is on
//! disk, so no crash of the manager, the node or the link loses one. A
//! line can be written twice only if the manager dies (or its output
//! files fail) after writing a batch and before its next pull reaches the
//! node: the node then serves that batch again. So duplicates are bounded
//! by one batch (at most half a megabyte of payload) per stream and
//! crash. An aborted job, a broken link or a node restart cause none: the
//! checkpoint stays with the stream and goes out with the next job's
//! first pull, and a batch that arrives after an abort is dropped unwritten.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::config::model::ManagerLogs;
use crate::core::logs::template::{BrokenTime, Template};
use crate::core::logs::{JobStatus, StreamStatus};
use crate::core::wire::{LogBatch, LogPull};
use crate::io::logfiles::LogFiles;
use crate::journal::server::sleep_unless;

/// What the aggregator needs of the cluster; the runtime in a node, a
/// direct call in tests.
pub trait Cluster: Send + Sync {
    /// The MTA nodes seen so far, alive or not, with their subclusters.
    fn mta_nodes(&self) -> Vec<(String, String)>;
    /// `node`'s generation while it is alive (a restart makes a new one).
    fn alive_generation(&self, node: &str) -> Option<u64>;
    /// Sends `pull` to `node` and waits for its batch, at most `timeout`,
    /// giving up early when `cancelled` says so.
    fn pull(
        &self,
        node: &str,
        pull: LogPull,
        timeout: Duration,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<LogBatch, String>;
}

/// How the aggregator runs.
#[derive(Clone, Debug)]
pub struct Settings {
    /// This manager's node name: its default subscriber name.
    pub me: String,
    /// The log keys to pull (the `cluster { logs }` dictionary's).
    pub logs: Vec<String>,
    pub scope: ManagerLogs,
    /// The nodes' `log_idle_interval`: a pull may wait that long for
    /// records before it is answered.
    pub idle_interval: Duration,
    pub active_interval: Duration,
}

/// How long a stream waits after a failed or aborted job before the next.
const RETRY_PAUSE: Duration = Duration::from_secs(1);
/// How often the aggregator looks for nodes that came up.
const SCAN_INTERVAL: Duration = Duration::from_millis(200);

struct Stream {
    node: String,
    log: String,
    /// What the console shows, but for the node and log above (filled in
    /// by `Aggregator::streams`).
    status: Mutex<StreamStatus>,
    /// The node's generation when the checkpoint was taken.
    generation: Mutex<Option<u64>>,
    subscribers: Vec<String>,
    subcluster: Mutex<String>,
}

struct Job {
    id: u64,
    stream: Arc<Stream>,
    started: Instant,
    lines: AtomicU64,
    aborted: AtomicBool,
}

struct State {
    settings: Settings,
    template: Template,
    cluster: Arc<dyn Cluster>,
    files: Mutex<LogFiles>,
    streams: Mutex<HashMap<(String, String), Arc<Stream>>>,
    jobs: Mutex<Vec<Arc<Job>>>,
    next_job: AtomicU64,
    stopping: AtomicBool,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// A running aggregator; see the module docs. Stops when dropped.
pub struct Aggregator {
    state: Arc<State>,
}

impl std::fmt::Debug for Aggregator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aggregator")
            .field("me", &self.state.settings.me)
            .finish_non_exhaustive()
    }
}

impl Aggregator {
    /// Starts pulling from every MTA node `cluster` shows alive.
    pub fn start(settings: Settings, cluster: Arc<dyn Cluster>) -> Result<Aggregator, String> {
        let template =
            Template::parse(&settings.scope.logfile).map_err(|e| format!("Logs logfile: {e}"))?;
        let files = LogFiles::new(
            settings.scope.file_mode,
            settings.scope.dir_mode,
            settings.scope.max_open as usize,
            Duration::from_secs(u64::from(settings.scope.max_idle)),
        );
        let state = Arc::new(State {
            settings,
            template,
            cluster,
            files: Mutex::new(files),
            streams: Mutex::new(HashMap::new()),
            jobs: Mutex::new(Vec::new()),
            next_job: AtomicU64::new(1),
            stopping: AtomicBool::new(false),
            threads: Mutex::new(Vec::new()),
        });
        let scanner = {
            let state = Arc::clone(&state);
            spawn("ecc-aggregate", move || scan(&state))?
        };
        state.threads.lock().push(scanner);
        Ok(Aggregator { state })
    }

    /// Every stream, by node then log.
    pub fn streams(&self) -> Vec<StreamStatus> {
        let mut all: Vec<StreamStatus> = self
            .state
            .streams
            .lock()
            .values()
            .map(|s| StreamStatus {
                node: s.node.clone(),
                log: s.log.clone(),
                ..s.status.lock().clone()
            })
            .collect();
        all.sort_by(|a, b| (&a.node, &a.log).cmp(&(&b.node, &b.log)));
        all
    }

    /// The running jobs, oldest first.
    pub fn jobs(&self) -> Vec<JobStatus> {
        self.state
            .jobs
            .lock()
            .iter()
            .map(|j| JobStatus {
                id: j.id,
                node: j.stream.node.clone(),
                log: j.stream.log.clone(),
                running_for: j.started.elapsed(),
                lines: j.lines.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Stops job `id`: what it wrote stays checkpointed, a batch still
    /// on its way is dropped unwritten and served again to the stream's
    /// next job, which starts after a pause.
    pub fn abort(&self, id: u64) -> Result<(), String> {
        let jobs = self.state.jobs.lock();
        let job = jobs
            .iter()
            .find(|j| j.id == id)
            .ok_or_else(|| format!("no job {id} (see `cluster jobs`)"))?;
        job.aborted.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// The `logfile` template.
    pub fn logfile(&self) -> &str {
        &self.state.settings.scope.logfile
    }

    /// Stops every stream; a job in the middle of writing finishes its
    /// batch first.
    pub fn stop(&self) {
        self.state.stopping.store(true, Ordering::SeqCst);
        // The scanner may start a stream while we join: drain until empty.
        loop {
            let threads: Vec<JoinHandle<()>> = self.state.threads.lock().drain(..).collect();
            if threads.is_empty() {
                break;
            }
            for t in threads {
                let _ = t.join();
            }
        }
        let _ = self.state.files.lock().sync_all();
    }
}

impl Drop for Aggregator {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, String> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map_err(|e| format!("cannot start a thread: {e}"))
}

impl State {
    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    fn pause(&self, total: Duration) {
        sleep_unless(total, &self.stopping);
    }

    /// The subscriber names this manager pulls `node`'s journals under:
    /// the `Logs` scope's `Manager "<me>" { Node "<node>" { Subscriber } }`,
    /// or by default its own name, then `master`.
    fn subscribers_for(&self, node: &str) -> Vec<String> {
        let s = &self.settings;
        s.scope
            .managers
            .iter()
            .filter(|m| m.name == s.me)
            .flat_map(|m| m.nodes.iter())
            .find(|(n, _)| n == node)
            .map_or_else(
                || vec![s.me.clone(), "master".to_string()],
                |(_, subs)| subs.clone(),
            )
    }
}

/// Starts a stream for every log of every MTA node that comes up, and
/// closes idle output files.
fn scan(state: &Arc<State>) {
    while !state.stopping() {
        for (node, subcluster) in state.cluster.mta_nodes() {
            let subscribers = state.subscribers_for(&node);
            if subscribers.is_empty() {
                continue;
            }
            for log in &state.settings.logs {
                let key = (node.clone(), log.clone());
                let mut streams = state.streams.lock();
                if let Some(stream) = streams.get(&key) {
                    *stream.subcluster.lock() = subcluster.clone();
                    continue;
                }
                let stream = Arc::new(Stream {
                    node: node.clone(),
                    log: log.clone(),
                    status: Mutex::new(StreamStatus {
                        state: "starting".into(),
                        ..StreamStatus::default()
                    }),
                    subscribers: subscribers.clone(),
                    generation: Mutex::new(None),
                    subcluster: Mutex::new(subcluster.clone()),
                });
                streams.insert(key, Arc::clone(&stream));
                drop(streams);
                let runner = Arc::clone(state);
                if let Ok(t) = spawn("ecc-aggregate", move || run_stream(&runner, &stream)) {
                    state.threads.lock().push(t);
                }
            }
        }
        state.files.lock().close_idle(Instant::now());
        state.pause(SCAN_INTERVAL);
    }
}

/// Runs a stream's jobs, one after another, while its node is alive.
fn run_stream(state: &Arc<State>, stream: &Arc<Stream>) {
    let node = &stream.node;
    while !state.stopping() {
        let Some(generation) = state.cluster.alive_generation(node) else {
            stream.status.lock().state = "node down".into();
            state.pause(SCAN_INTERVAL);
            continue;
        };
        // A node that restarted may have lost records it had served but
        // not synced (a power cut), and will append new ones under the
        // same ids: its own checkpoint file, pulled back to what survived,
        // is then the truth, and ours must not push it forward again. The
        // price is one batch served twice when the restart was a plain
        // crash that lost nothing.
        if stream.generation.lock().replace(generation) != Some(generation) {
            stream.status.lock().checkpoint = None;
        }
        let job = Arc::new(Job {
            id: state.next_job.fetch_add(1, Ordering::SeqCst),
            stream: Arc::clone(stream),
            started: Instant::now(),
            lines: AtomicU64::new(0),
            aborted: AtomicBool::new(false),
        });
        state.jobs.lock().push(Arc::clone(&job));
        {
            let mut status = stream.status.lock();
            status.job = Some(job.id);
            status.state = "pulling".into();
        }
        let end = run_job(state, &job);
        state.jobs.lock().retain(|j| j.id != job.id);
        {
            let mut status = stream.status.lock();
            status.job = None;
            match &end {
                End::Aborted => status.state = format!("job {} aborted", job.id),
                End::Failed(e) => {
                    status.state = "retrying".into();
                    status.last_error = Some(e.clone());
                }
                End::Stopping => status.state = "stopped".into(),
            }
        }
        state.pause(RETRY_PAUSE);
    }
}

enum End {
    Aborted,
    Failed(String),
    Stopping,
}

fn run_job(state: &State, job: &Job) -> End {
    let stream = &job.stream;
    let (node, log) = (&stream.node, &stream.log);
    let timeout =
        state.settings.idle_interval + state.settings.active_interval + Duration::from_secs(10);
    let cancelled = || job.aborted.load(Ordering::SeqCst) || state.stopping();
    loop {
        if state.stopping() {
            return End::Stopping;
        }
        let pull = LogPull {
            job: job.id,
            log: log.clone(),
            subscribers: stream.subscribers.clone(),
            checkpoint: stream.status.lock().checkpoint.clone(),
        };
        let batch = match state.cluster.pull(node, pull, timeout, &cancelled) {
            Ok(batch) => batch,
            Err(_) if job.aborted.load(Ordering::SeqCst) => return End::Aborted,
            Err(_) if state.stopping() => return End::Stopping,
            Err(e) => return End::Failed(e),
        };
        if job.aborted.load(Ordering::SeqCst) {
            return End::Aborted;
        }
        if let Some(e) = batch.error {
            // The node's checkpoint file is what counts; ours is only sent
            // along, and a node that refuses it (its journal was made anew)
            // must be able to start over.
            stream.status.lock().checkpoint = None;
            return End::Failed(format!("{node} {log}: {e}"));
        }
        let Some(last) = batch.records.last().map(|r| r.id) else {
            continue;
        };
        let subcluster = stream.subcluster.lock().clone();
        let written = write_batch(state, &batch, node, &subcluster);
        let mut status = stream.status.lock();
        match written {
            Ok((bytes, file)) => {
                let lines = batch.records.len() as u64;
                status.checkpoint = Some((batch.subscriber, last));
                status.lines += lines;
                status.bytes += bytes;
                status.last_file = Some(file.display().to_string());
                status.last_error = None;
                job.lines.fetch_add(lines, Ordering::Relaxed);
            }
            Err(e) => return End::Failed(e),
        }
    }
}

/// Appends a batch's lines to their files and makes them durable; the
/// bytes written and the last file.
fn write_batch(
    state: &State,
    batch: &LogBatch,
    node: &str,
    subcluster: &str,
) -> Result<(u64, PathBuf), String> {
    let mut files = state.files.lock();
    let mut bytes = 0u64;
    let mut path = PathBuf::new();
    let mut run: Vec<&[u8]> = Vec::new();
    let mut run_path: Option<PathBuf> = None;
    for record in &batch.records {
        let file = state
            .template
            .expand(
                &BrokenTime::utc(i64::from(record.tv_sec)),
                &batch.log,
                node,
                subcluster,
            )
            .map(PathBuf::from)?;
        if run_path.as_ref().is_some_and(|p| *p != file) {
            let p = run_path.take().expect("checked above");
            append(&mut files, &p, &run)?;
            run.clear();
        }
        run_path = Some(file.clone());
        run.push(&record.payload);
        bytes += record.payload.len() as u64;
        path = file;
    }
    if let Some(p) = run_path {
        append(&mut files, &p, &run)?;
    }
    files
        .sync_all()
        .map_err(|e| format!("syncing the log files: {e}"))?;
    Ok((bytes, path))
}

fn append(files: &mut LogFiles, path: &std::path::Path, lines: &[&[u8]]) -> Result<(), String> {
    files
        .append_lines(path, lines)
        .map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::LogManager;
    use crate::journal::server::LogServer;
    use crate::journal::{Journal, Start, Writer};
    use std::path::Path;

    /// Nodes whose log servers are called directly, each with a journal
    /// in `dir/<node>`; a pull can be held back to abort the job under it.
    struct Direct {
        nodes: Vec<(String, LogServer)>,
        hold: AtomicBool,
        pulls: Mutex<Vec<(String, Vec<String>)>>,
    }

    impl Cluster for Direct {
        fn mta_nodes(&self) -> Vec<(String, String)> {
            self.nodes
                .iter()
                .map(|(n, _)| (n.clone(), "default".into()))
                .collect()
        }

        fn alive_generation(&self, _: &str) -> Option<u64> {
            Some(1)
        }

        fn pull(
            &self,
            node: &str,
            pull: LogPull,
            _: Duration,
            cancelled: &dyn Fn() -> bool,
        ) -> Result<LogBatch, String> {
            self.pulls
                .lock()
                .push((node.to_string(), pull.subscribers.clone()));
            while self.hold.load(Ordering::SeqCst) {
                if cancelled() {
                    return Err("cancelled".into());
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            let (_, server) = self.nodes.iter().find(|(n, _)| n == node).unwrap();
            Ok(server.serve("mgr", &pull, &AtomicBool::new(false)))
        }
    }

    fn journal_with(dir: &Path, subscriber: &str, lines: std::ops::Range<u32>) {
        let j = Journal::create(dir, None).unwrap();
        j.add_subscriber(subscriber, Start::Begin).unwrap();
        let (mut w, _) = Writer::open(&j).unwrap();
        for i in lines {
            w.append(0, 0, format!("line {i}").as_bytes()).unwrap();
        }
        w.sync().unwrap();
    }

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .map(|t| t.lines().map(str::to_string).collect())
            .unwrap_or_default()
    }

    fn wait(what: &str, mut cond: impl FnMut() -> bool) {
        let until = Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(Instant::now() < until, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn subscriber_lists_choose_what_is_pulled_and_an_abort_loses_and_repeats_nothing() {
        let dir = std::env::temp_dir().join(format!("ecc-aggregator-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // n1 has only "other"; n2 is configured to pull nothing; n3 takes
        // the default list (mgr, master).
        journal_with(&dir.join("n1"), "other", 0..10);
        journal_with(&dir.join("n2"), "master", 0..10);
        journal_with(&dir.join("n3"), "master", 0..10);
        let server = |n: &str| {
            let published = vec![("mainlog".to_string(), dir.join(n))];
            (
                n.to_string(),
                LogServer::new(published, Duration::ZERO, Duration::from_millis(50)),
            )
        };
        let cluster = Arc::new(Direct {
            nodes: vec![server("n1"), server("n2"), server("n3")],
            hold: AtomicBool::new(false),
            pulls: Mutex::new(Vec::new()),
        });
        let scope = ManagerLogs {
            logfile: format!("{}/out/%{{n}}", dir.display()),
            file_mode: 0o640,
            dir_mode: 0o755,
            max_open: 2,
            max_idle: 300,
            control_cache: None,
            managers: vec![
                LogManager {
                    name: "elsewhere".into(),
                    nodes: vec![("n3".into(), Vec::new())],
                },
                LogManager {
                    name: "mgr".into(),
                    nodes: vec![
                        ("n1".into(), vec!["other".into()]),
                        ("n2".into(), Vec::new()),
                    ],
                },
            ],
        };
        let settings = Settings {
            me: "mgr".into(),
            logs: vec!["mainlog".into()],
            scope,
            idle_interval: Duration::from_millis(50),
            active_interval: Duration::ZERO,
        };
        let aggregator =
            Aggregator::start(settings, Arc::clone(&cluster) as Arc<dyn Cluster>).unwrap();
        let out = |n: &str| dir.join("out").join(n);
        let ten: Vec<String> = (0..10).map(|i| format!("line {i}")).collect();
        wait("n1 and n3", || {
            lines(&out("n1")).len() == 10 && lines(&out("n3")).len() == 10
        });
        assert_eq!(lines(&out("n1")), ten);
        assert_eq!(lines(&out("n3")), ten);
        assert!(!out("n2").exists(), "n2 has Subscriber = () and was pulled");
        let asked: Vec<(String, Vec<String>)> = cluster.pulls.lock().clone();
        assert!(asked.iter().all(|(n, _)| n != "n2"));
        assert!(asked.contains(&("n1".into(), vec!["other".into()])));
        assert!(asked.contains(&("n3".into(), vec!["mgr".into(), "master".into()])));

        // A job held in its pull is aborted; the lines that come meanwhile
        // arrive through the next job, once.
        cluster.hold.store(true, Ordering::SeqCst);
        let job = aggregator
            .jobs()
            .into_iter()
            .find(|j| j.node == "n3")
            .expect("a job for n3");
        journal_with(&dir.join("n3"), "master", 10..20);
        aggregator.abort(job.id).unwrap();
        assert!(aggregator.abort(u64::MAX).is_err());
        wait("the aborted job to end", || {
            aggregator.jobs().iter().all(|j| j.id != job.id)
        });
        cluster.hold.store(false, Ordering::SeqCst);
        // The count follows the write: wait for it, then look at the file.
        let n3_lines = || {
            aggregator
                .streams()
                .into_iter()
                .find(|s| s.node == "n3")
                .map_or(0, |s| s.lines)
        };
        wait("n3's new lines", || n3_lines() >= 20);
        let twenty: Vec<String> = (0..20).map(|i| format!("line {i}")).collect();
        assert_eq!(lines(&out("n3")), twenty);
        assert_eq!(n3_lines(), 20);
        aggregator.stop();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
