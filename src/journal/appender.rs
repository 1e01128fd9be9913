//! Durable appends with group commit.
//!
//! jlog never fsyncs an append (ecosystem-notes §4.3): a record is in the
//! page cache when `jlog_ctx_write` returns, and a power loss can take it.
//! A mail server must not say "250 OK" for a message it may lose, so an
//! [`Appender`] acknowledges an append only once the record is on stable
//! storage.
//!
//! One thread owns the [`Writer`]; callers on any thread send it their
//! records and wait. Under [`Durability::Group`] the thread takes every
//! record queued (those that arrived while the previous batch was being
//! synced), appends them, issues one `fdatasync` for all of them and has
//! their callers woken: many concurrent appends cost one sync. It also
//! waits, up to `interval`, for records of callers that have already
//! entered [`Appender::append`] but not yet handed their record over; it
//! does not hold a batch open for callers who may or may not come, as a
//! lone caller would then pay `interval` for every record (PostgreSQL's
//! `commit_delay` waits only when `commit_siblings` transactions are
//! active, for the same reason). [`Durability::EveryRecord`] syncs after
//! each record.
//!
//! The writer buffers (see [`Writer::set_buffer`]), so a batch also costs
//! one `pwrite` and one turn of the segment's lock rather than one of each
//! per record. The lock is held while the batch gathers (at most
//! `interval`) and let go before the `fdatasync`: writers in other
//! processes wait for a batch, not for the disk. A second thread wakes the
//! callers of a large batch, while the first goes on with the next batch
//! (see `run`).
//!
//! When the journal fails (a full disk, an I/O error), the records of the
//! batch may or may not be on disk, and the writer's position is no longer
//! known: every append of that batch, every append still queued and every
//! later append gets the error. Reopening the journal (a new [`Appender`])
//! cuts a torn tail and carries on.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::format::LogId;
use super::{Journal, JournalError, Result, TornTail, Writer};

/// When an acknowledged append is durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// One `fdatasync` per record.
    EveryRecord,
    /// Records arriving within `interval` of the first of a batch, or while
    /// the previous batch is being synced, share one `fdatasync`.
    Group { interval: Duration },
}

struct Request {
    tv_sec: u32,
    tv_usec: u32,
    payload: Vec<u8>,
    reply: SyncSender<Result<LogId>>,
}

/// Appends durably from many threads; see the module docs.
#[derive(Debug)]
pub struct Appender {
    // `None` only while dropping, so the thread sees the channel close.
    tx: Option<Sender<Request>>,
    thread: Option<JoinHandle<()>>,
    /// Records promised (a caller has entered `append`) and not answered
    /// yet; the thread counts a batch's records off once it has synced
    /// them, as it hands their answers over to be sent.
    in_flight: Arc<AtomicUsize>,
}

impl Appender {
    /// Opens `journal` for writing under `durability`, starting the
    /// appending thread. A torn tail cut on opening is returned for the
    /// caller to log.
    pub fn open(journal: &Journal, durability: Durability) -> Result<(Appender, Option<TornTail>)> {
        let (writer, torn) = Writer::open(journal)?;
        let (tx, rx) = mpsc::channel();
        let in_flight = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&in_flight);
        let thread = std::thread::Builder::new()
            .name("ecc-journal".into())
            .spawn(move || run(writer, &rx, durability, &seen))
            .map_err(|e| JournalError(format!("cannot start the journal thread: {e}")))?;
        Ok((
            Appender {
                tx: Some(tx),
                thread: Some(thread),
                in_flight,
            },
            torn,
        ))
    }

    /// Appends a record and returns its id once it is durable under the
    /// policy. An error means the record may or may not have been written.
    pub fn append(&self, tv_sec: u32, tv_usec: u32, payload: &[u8]) -> Result<LogId> {
        // Refused here, so that the thread's only errors are the journal's
        // own, which fail it.
        if u32::try_from(payload.len()).is_err() {
            return Err(JournalError(format!(
                "a record of {} bytes is too long",
                payload.len()
            )));
        }
        let (reply, answer) = mpsc::sync_channel(1);
        let request = Request {
            tv_sec,
            tv_usec,
            payload: payload.to_vec(),
            reply,
        };
        let stopped = || JournalError("the journal thread has stopped".into());
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let sent = self
            .tx
            .as_ref()
            .ok_or_else(stopped)
            .and_then(|tx| tx.send(request).map_err(|_| stopped()));
        if sent.is_err() {
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
        sent.and_then(|()| answer.recv().map_err(|_| stopped())?)
    }
}

impl Drop for Appender {
    fn drop(&mut self) {
        // Closing the channel lets the thread finish what is queued and end.
        self.tx.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What a batch gathers before it is written, to bound the memory a
/// burst takes; a bigger batch goes in more than one `pwrite`.
const BATCH_BUFFER: usize = 1 << 20;

/// Batches of up to this many records are answered by the appending
/// thread itself.
const HAND_OVER_FROM: usize = 2;

/// A caller's reply channel and what to tell it.
type Answer = (SyncSender<Result<LogId>>, Result<LogId>);

/// The appending thread: batches, appends and syncs; a second thread
/// answers all but the smallest batches. Waking a caller costs a few microseconds of system time (a
/// futex wake, and on a VM an interrupt to another CPU): with 64 callers
/// waiting, answering a batch on this thread took as long as its
/// `fdatasync`, and the next batch waited for both. Handed over, the
/// answers are sent while this thread writes and syncs the next batch.
fn run(writer: Writer, rx: &Receiver<Request>, durability: Durability, in_flight: &AtomicUsize) {
    std::thread::scope(|scope| {
        let (to_answer, answers) = mpsc::channel::<Vec<Answer>>();
        let answerer = std::thread::Builder::new()
            .name("ecc-journal-ack".into())
            .spawn_scoped(scope, move || {
                for batch in answers {
                    send_answers(batch);
                }
            });
        // Without the second thread, this one answers.
        let to_answer = answerer.is_ok().then_some(to_answer);
        append_and_sync(writer, rx, durability, in_flight, to_answer.as_ref());
    });
}

fn append_and_sync(
    mut writer: Writer,
    rx: &Receiver<Request>,
    durability: Durability,
    in_flight: &AtomicUsize,
    to_answer: Option<&Sender<Vec<Answer>>>,
) {
    // Nothing is buffered yet, so this cannot fail.
    let _ = writer.set_buffer(BATCH_BUFFER);
    let mut batch: Vec<Answer> = Vec::new();
    // Blocks for the first record of each batch; ends when every Appender
    // handle is gone.
    while let Ok(first) = rx.recv() {
        let mut failed = None;
        let mut take = |req: Request, batch: &mut Vec<_>, failed: &mut Option<JournalError>| {
            let result = match failed {
                Some(e) => Err(e.clone()),
                None => writer.append(req.tv_sec, req.tv_usec, &req.payload),
            };
            if let Err(e) = &result {
                failed.get_or_insert_with(|| e.clone());
            }
            batch.push((req.reply, result));
        };
        take(first, &mut batch, &mut failed);
        if let Durability::Group { interval } = durability {
            let deadline = Instant::now() + interval;
            // Whatever queued during the last sync is taken at once; then
            // wait, until the deadline, only while a caller is between
            // entering `append` and handing its record over.
            loop {
                let next = match rx.try_recv() {
                    Ok(req) => Ok(req),
                    Err(_) if in_flight.load(Ordering::SeqCst) <= batch.len() => break,
                    Err(_) => {
                        // Short waits: the caller we wait for may be one
                        // that gives up (its send failing) instead.
                        let left = deadline.saturating_duration_since(Instant::now());
                        rx.recv_timeout(left.min(Duration::from_micros(50)))
                    }
                };
                match next {
                    Ok(req) => take(req, &mut batch, &mut failed),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => break,
                }
                if Instant::now() >= deadline {
                    // Take what is queued now without waiting any longer.
                    while let Ok(req) = rx.try_recv() {
                        take(req, &mut batch, &mut failed);
                    }
                    break;
                }
            }
        }
        if failed.is_none()
            && let Err(e) = writer.sync()
        {
            failed = Some(e);
        }
        if let Some(e) = &failed {
            for (_, result) in &mut batch {
                // A record appended before the failure is not durable either.
                if result.is_ok() {
                    *result = Err(e.clone());
                }
            }
        }
        // Counted off now, not when sent: the next batch must not wait
        // for callers that have been dealt with.
        in_flight.fetch_sub(batch.len(), Ordering::SeqCst);
        let answers = std::mem::take(&mut batch);
        match to_answer {
            // Handing over costs a wake too, and a lone caller the hop.
            Some(tx) if answers.len() > HAND_OVER_FROM => {
                if let Err(mpsc::SendError(answers)) = tx.send(answers) {
                    send_answers(answers);
                }
            }
            _ => send_answers(answers),
        }
        if let Some(e) = failed {
            let e = JournalError(format!("the journal has failed: {e}"));
            while let Ok(req) = rx.recv() {
                answer(&req.reply, Err(e.clone()), in_flight);
            }
            return;
        }
    }
}

/// Answers a caller, counting its record off.
fn answer(reply: &SyncSender<Result<LogId>>, result: Result<LogId>, in_flight: &AtomicUsize) {
    in_flight.fetch_sub(1, Ordering::SeqCst);
    // A caller that gave up waiting is no one's concern.
    let _ = reply.send(result);
}

fn send_answers(batch: Vec<Answer>) {
    for (reply, result) in batch {
        // As in `answer`.
        let _ = reply.send(result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn scratch(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("ecc-appender-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn concurrent_appends_read_back(durability: Durability, tag: &str) {
        let dir = scratch(tag);
        let journal = Journal::create(&dir, Some(1024)).unwrap();
        journal
            .add_subscriber("r", crate::journal::Start::Begin)
            .unwrap();
        let (appender, torn) = Appender::open(&journal, durability).unwrap();
        assert_eq!(torn, None);
        let appender = Arc::new(appender);
        let threads: Vec<_> = (0..4u32)
            .map(|t| {
                let appender = Arc::clone(&appender);
                std::thread::spawn(move || {
                    (0..50u32)
                        .map(|n| {
                            let payload = format!("{t}:{n}").into_bytes();
                            (appender.append(t, n, &payload).unwrap(), payload)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut acked: Vec<(LogId, Vec<u8>)> = threads
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        acked.sort();
        acked.dedup_by_key(|(id, _)| *id);
        assert_eq!(acked.len(), 200, "every append got its own id");
        assert!(acked.last().unwrap().0.log > 0, "segments rotated");
        for (id, payload) in &acked {
            assert_eq!(&journal.read(*id).unwrap().payload, payload, "{id}");
        }
        drop(appender);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn every_record_appends_from_many_threads_read_back() {
        concurrent_appends_read_back(Durability::EveryRecord, "every");
    }

    #[test]
    fn grouped_appends_from_many_threads_read_back() {
        concurrent_appends_read_back(
            Durability::Group {
                interval: Duration::from_millis(1),
            },
            "group",
        );
    }
}
