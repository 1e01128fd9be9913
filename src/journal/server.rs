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

fn sleep_unless(total: Duration, stopping: &AtomicBool) {
    let until = Instant::now() + total;
    while !stopping.load(Ordering::SeqCst) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(WAIT_SLICE));
    }
}
