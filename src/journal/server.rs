//! The node side of the log service: it answers a manager's [`LogPull`]s
//! with records of the journals this node publishes (`cluster { logs }`).
//!
//! A pull first moves the subscriber's checkpoint to what the manager has
//! durably written, deletes the segments every subscriber has passed, then
//! reads on from the checkpoint. Nothing is kept here between pulls but
//! pacing: the journal's checkpoint files are the only record of progress,
//! so a manager that restarts simply pulls again from them.
//!
//! Pacing is the reference's logmove's: while a log is active the answer
//! waits `log_active_interval` each time the reader moves on to another
//! segment; when there is nothing to send it waits `log_idle_interval`
//! and looks once more before answering (possibly with nothing).
//! `serve` blocks for those waits; the runtime calls it on a thread of
//! its own.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::format::LogId;
use super::{Journal, JournalError};
use crate::core::wire::{LogBatch, LogLine, LogPull, MAX_FRAME};

/// Payload bytes a batch carries at most, leaving room under
/// [`MAX_FRAME`] for the per-record overhead and the envelope.
pub(crate) const BATCH_BYTES: usize = MAX_FRAME / 2;
/// Records read from the journal at a time while filling a batch.
const READ_CHUNK: u32 = 1024;
/// How often a wait checks whether the node is stopping.
const WAIT_SLICE: Duration = Duration::from_millis(50);

/// Serves this node's published journals; see the module docs.
#[derive(Debug)]
pub struct LogServer {
    published: Vec<(String, PathBuf)>,
    active_interval: Duration,
    idle_interval: Duration,
    /// Per manager and log, the segment the last batch came from.
    last_segment: Mutex<HashMap<(String, String), u32>>,
}

impl LogServer {
    pub fn new(
        published: Vec<(String, PathBuf)>,
        active_interval: Duration,
        idle_interval: Duration,
    ) -> LogServer {
        LogServer {
            published,
            active_interval,
            idle_interval,
            last_segment: Mutex::new(HashMap::new()),
        }
    }

    /// Answers `pull` from manager `from`, after the pacing waits; returns
    /// early (with nothing) when `stopping` is raised.
    pub fn serve(&self, from: &str, pull: &LogPull, stopping: &AtomicBool) -> LogBatch {
        let answer = |subscriber: String, result: Result<(Vec<LogLine>, bool), String>| {
            let (records, more, error) = match result {
                Ok((records, more)) => (records, more, None),
                Err(e) => (Vec::new(), false, Some(e)),
            };
            LogBatch {
                job: pull.job,
                log: pull.log.clone(),
                subscriber,
                records,
                more,
                error,
            }
        };
        let journal = match self.journal(&pull.log) {
            Ok(j) => j,
            Err(e) => return answer(String::new(), Err(e)),
        };
        let subscriber = match chosen_subscriber(&journal, &pull.subscribers) {
            Ok(s) => s,
            Err(e) => return answer(String::new(), Err(e.0)),
        };
        if let Some((name, id)) = &pull.checkpoint
            && let Err(e) = advance(&journal, name, *id)
        {
            return answer(subscriber, Err(e.0));
        }
        let key = (from.to_string(), pull.log.clone());
        let mut interval = journal.read_interval(&subscriber);
        if matches!(interval, Ok(None)) {
            sleep_unless(self.idle_interval, stopping);
            interval = journal.read_interval(&subscriber);
        }
        let (first, last) = match interval {
            Ok(Some(found)) => found,
            Ok(None) => return answer(subscriber, Ok((Vec::new(), false))),
            Err(e) => return answer(subscriber, Err(e.0)),
        };
        let previous = self.last_segment.lock().insert(key, first.log);
        if previous.is_some_and(|p| p != first.log) {
            sleep_unless(self.active_interval, stopping);
        }
        let read = read_batch(&journal, first, last);
        answer(subscriber, read.map_err(|e| e.0))
    }

    fn journal(&self, log: &str) -> Result<Journal, String> {
        let (_, dir) = self
            .published
            .iter()
            .find(|(name, _)| name == log)
            .ok_or_else(|| format!("log '{log}' is not published on this node"))?;
        if !dir.join("metastore").exists() {
            return Err(format!("log '{log}': no journal in {} yet", dir.display()));
        }
        Journal::open(dir).map_err(|e| e.0)
    }
}

/// The first of `wanted` that `journal` has as a subscriber.
fn chosen_subscriber(journal: &Journal, wanted: &[String]) -> Result<String, JournalError> {
    let have = journal.subscribers()?;
    wanted
        .iter()
        .find(|w| have.iter().any(|(name, _)| name == *w))
        .cloned()
        .ok_or_else(|| {
            JournalError(format!(
                "the journal has none of the subscribers {}",
                wanted.join(", ")
            ))
        })
}

/// Moves `name`'s checkpoint forward to `id` (never back: a second
/// manager pulling under the same name, or a stale pull, must not make
/// records be served again), then deletes what every subscriber passed.
fn advance(journal: &Journal, name: &str, id: LogId) -> Result<(), JournalError> {
    if id > journal.last_written()? {
        return Err(JournalError(format!(
            "checkpoint {id} for '{name}' is past the last record written"
        )));
    }
    if id > journal.checkpoint(name)? {
        journal.set_checkpoint(name, id)?;
        journal.remove_consumed()?;
    }
    Ok(())
}

/// Records from `first` on, up to `last` (one segment's interval) and
/// [`BATCH_BYTES`]; whether more wait after them.
fn read_batch(
    journal: &Journal,
    first: LogId,
    last: LogId,
) -> Result<(Vec<LogLine>, bool), JournalError> {
    let mut records = Vec::new();
    let mut bytes = 0usize;
    let mut at = first.marker;
    while at <= last.marker {
        let upto = last.marker.min(at.saturating_add(READ_CHUNK - 1));
        let chunk = journal.read_range(
            LogId {
                marker: at,
                ..first
            },
            LogId {
                marker: upto,
                ..first
            },
        )?;
        for record in chunk {
            if !records.is_empty() && bytes + record.payload.len() > BATCH_BYTES {
                return Ok((records, true));
            }
            bytes += record.payload.len();
            records.push(LogLine {
                id: record.id,
                tv_sec: record.tv_sec,
                payload: fit(record.payload),
            });
        }
        at = upto + 1;
    }
    let more = journal.meta()?.storage_log > first.log;
    Ok((records, more))
}

/// A record too large for a frame is cut to fit, and says so: records of
/// a log are lines, and one of half a megabyte is an accident that must
/// not stop the log behind it.
fn fit(mut payload: Vec<u8>) -> Vec<u8> {
    if payload.len() <= BATCH_BYTES {
        return payload;
    }
    let total = payload.len();
    payload.truncate(BATCH_BYTES);
    payload.extend_from_slice(format!(" [eccluster: record of {total} bytes cut]").as_bytes());
    payload
}

/// Sleeps `total`, or less when `stopping` is raised meanwhile (the log
/// server's pacing and the aggregator's pauses).
pub(crate) fn sleep_unless(total: Duration, stopping: &AtomicBool) {
    let until = Instant::now() + total;
    while !stopping.load(Ordering::SeqCst) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(WAIT_SLICE));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{Start, Writer};

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ecc-logserver-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    /// A journal with a `master` subscriber and `n` records of `size`
    /// bytes, in segments of `unit` bytes.
    fn journal(dir: &std::path::Path, n: u32, size: usize, unit: u32) -> Journal {
        let j = Journal::create(dir, Some(unit)).unwrap();
        j.add_subscriber("master", Start::Begin).unwrap();
        let (mut w, _) = Writer::open(&j).unwrap();
        for i in 0..n {
            let mut line = format!("{i:08}").into_bytes();
            line.resize(size.max(8), b'.');
            w.append(i, 0, &line).unwrap();
        }
        w.sync().unwrap();
        j
    }

    fn pull(subscribers: &[&str], checkpoint: Option<LogId>) -> LogPull {
        LogPull {
            job: 1,
            log: "mainlog".into(),
            subscribers: subscribers.iter().map(|s| s.to_string()).collect(),
            checkpoint: checkpoint.map(|id| ("master".to_string(), id)),
        }
    }

    fn server(dir: &std::path::Path, active_ms: u64, idle_ms: u64) -> LogServer {
        LogServer::new(
            vec![("mainlog".into(), dir.to_path_buf())],
            Duration::from_millis(active_ms),
            Duration::from_millis(idle_ms),
        )
    }

    #[test]
    fn a_pull_checkpoints_then_serves_on_and_never_moves_back() {
        let dir = scratch("serve");
        let j = journal(&dir, 10, 20, 1 << 20);
        let s = server(&dir, 0, 0);
        let no = AtomicBool::new(false);
        let first = s.serve("mgr", &pull(&["mgr", "master"], None), &no);
        assert_eq!(
            (first.error.as_deref(), first.subscriber.as_str()),
            (None, "master")
        );
        assert_eq!(first.records.len(), 10);
        assert!(!first.more);
        let fifth = first.records[4].id;
        let again = s.serve("mgr", &pull(&["master"], Some(fifth)), &no);
        assert_eq!(j.checkpoint("master").unwrap(), fifth);
        assert_eq!(again.records.first().map(|r| r.id.marker), Some(6));
        // A stale checkpoint (another manager, an old pull) is ignored.
        let stale = s.serve("mgr", &pull(&["master"], Some(first.records[1].id)), &no);
        assert_eq!(j.checkpoint("master").unwrap(), fifth);
        assert_eq!(stale.records.first().map(|r| r.id.marker), Some(6));
        // One past the last record written is refused, and changes nothing.
        let past = LogId { log: 0, marker: 11 };
        let refused = s.serve("mgr", &pull(&["master"], Some(past)), &no);
        assert!(
            refused
                .error
                .as_deref()
                .is_some_and(|e| e.contains("past the last record")),
            "{refused:?}"
        );
        assert_eq!(j.checkpoint("master").unwrap(), fifth);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn what_cannot_be_served_says_why() {
        let dir = scratch("why");
        let s = LogServer::new(
            vec![("mainlog".into(), dir.clone())],
            Duration::ZERO,
            Duration::ZERO,
        );
        let no = AtomicBool::new(false);
        let mut other = pull(&["master"], None);
        other.log = "rejectlog".into();
        let e = |b: LogBatch| b.error.unwrap_or_default();
        assert_eq!(
            e(s.serve("mgr", &other, &no)),
            "log 'rejectlog' is not published on this node"
        );
        assert!(e(s.serve("mgr", &pull(&["master"], None), &no)).contains("no journal in"));
        journal(&dir, 1, 8, 1 << 20);
        assert_eq!(
            e(s.serve("mgr", &pull(&["mgr", "other"], None), &no)),
            "the journal has none of the subscribers mgr, other"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn batches_stop_at_the_byte_budget_and_at_a_segment_end() {
        let dir = scratch("budget");
        // 3,000 records of 1 KiB: three batches' worth, in 1 MiB segments.
        let j = journal(&dir, 3000, 1024, 1 << 20);
        let s = server(&dir, 0, 0);
        let no = AtomicBool::new(false);
        let mut at = None;
        let mut got = 0;
        let mut batches = 0;
        loop {
            let b = s.serve("mgr", &pull(&["master"], at), &no);
            let bytes: usize = b.records.iter().map(|r| r.payload.len()).sum();
            assert!(bytes <= BATCH_BYTES, "{bytes} bytes in a batch");
            let Some(last) = b.records.last() else { break };
            // Records of a batch are in order and one segment.
            assert!(b.records.iter().all(|r| r.id.log == last.id.log));
            for r in &b.records {
                assert_eq!(r.payload[..8], *format!("{got:08}").as_bytes());
                got += 1;
            }
            at = Some(last.id);
            batches += 1;
            if !b.more {
                break;
            }
        }
        assert_eq!(got, 3000);
        assert!(batches >= 6, "{batches} batches");
        // The last batch is checkpointed by the next pull, which finds
        // nothing; every segment before the last is gone.
        let done = s.serve("mgr", &pull(&["master"], at), &no);
        assert!(done.records.is_empty() && !done.more);
        assert_eq!(j.checkpoint("master").unwrap(), j.last_written().unwrap());
        assert!(!dir.join("00000000").exists() && !dir.join("00000001").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_idle_log_waits_the_idle_interval_and_a_new_segment_the_active_one() {
        let dir = scratch("pace");
        // Records of 100 KiB in 256 KiB segments: a new segment every two.
        let j = journal(&dir, 6, 100 * 1024, 256 * 1024);
        let s = server(&dir, 300, 600);
        let no = AtomicBool::new(false);
        let timed = |p: &LogPull| {
            let start = Instant::now();
            let b = s.serve("mgr", p, &no);
            (b, start.elapsed())
        };
        let (first, _) = timed(&pull(&["master"], None));
        assert_eq!(first.records[0].id.log, 0);
        let (second, waited) = timed(&pull(&["master"], first.records.last().map(|r| r.id)));
        assert_eq!(second.records[0].id.log, 1);
        assert!(
            waited >= Duration::from_millis(300),
            "{waited:?}: moved on without a pause"
        );
        let mut at = second.records.last().map(|r| r.id);
        while let (b, _) = timed(&pull(&["master"], at))
            && let Some(last) = b.records.last()
        {
            at = Some(last.id);
        }
        assert_eq!(at, Some(j.last_written().unwrap()));
        let (idle, waited) = timed(&pull(&["master"], at));
        assert!(idle.records.is_empty() && idle.error.is_none());
        assert!(
            waited >= Duration::from_millis(600),
            "{waited:?}: answered idle at once"
        );
        // Stopping cuts the wait short.
        let stop = AtomicBool::new(true);
        let start = Instant::now();
        s.serve("mgr", &pull(&["master"], at), &stop);
        assert!(start.elapsed() < Duration::from_millis(300));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
