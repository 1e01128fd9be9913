//! Where an MTA's loggers append: a journal named by a destination string
//! (`cluster:///var/log/ecelerity/mainlog.cluster=>master`), created on
//! demand with its subscribers, and appended to durably.
//!
//! Every destination with the same journal directory shares one
//! [`LogWriter`], so a process has one writer per journal (jlog's rule for
//! group commit to mean anything). The subscribers a destination names are
//! added at the beginning of the journal when missing, so nothing written
//! before a reader first subscribes is lost to it. A torn record left by a
//! crash is cut when the journal is opened, and said in the returned
//! [`Opened::torn`] for the caller to log.
//!
//! A writer may also have a [`Tee`]: the paniclog's, when the node has a
//! `log_group`, broadcasts each line once it is durable.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;

use crate::core::logs::destination::Destination;
use crate::journal::format::LogId;
use crate::journal::{Appender, Durability, Journal, Start, TornTail};

/// Where a writer also gives each line it appended, with the time it
/// stamped the record with (since the epoch). It must not fail the append,
/// so it returns nothing.
pub type Tee = Arc<dyn Fn(&[u8], Duration) + Send + Sync>;

/// A journal opened for appending; see the module docs.
pub struct LogWriter {
    dir: PathBuf,
    appender: Appender,
    tee: Option<Tee>,
}

impl std::fmt::Debug for LogWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogWriter")
            .field("dir", &self.dir)
            .field("tee", &self.tee.is_some())
            .finish_non_exhaustive()
    }
}

impl LogWriter {
    /// Appends `line` stamped with the current time; returns when it is
    /// durable under the writer's durability.
    pub fn append(&self, line: &[u8]) -> Result<LogId, String> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        // jlog's timestamps are u32 seconds (they wrap in 2106).
        let secs = u32::try_from(now.as_secs()).unwrap_or(u32::MAX);
        let id = self
            .appender
            .append(secs, now.subsec_micros(), line)
            .map_err(|e| format!("{}: {e}", self.dir.display()))?;
        // Only once durable: a listener never hears of a line the journal
        // could still lose.
        if let Some(tee) = &self.tee {
            tee(line, now);
        }
        Ok(id)
    }

    /// The journal's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// What [`LogWriters::open`] gives back.
#[derive(Debug)]
pub struct Opened {
    pub writer: Arc<LogWriter>,
    /// A torn record cut when the journal was opened for writing.
    pub torn: Option<TornTail>,
}

/// The journals a process writes, by directory; see the module docs.
#[derive(Debug, Default)]
pub struct LogWriters {
    open: Mutex<HashMap<PathBuf, Weak<LogWriter>>>,
}

impl LogWriters {
    /// The writer for `destination`, opening its journal (created with its
    /// subscribers if need be) unless this process has it open already;
    /// `durability` applies when it is opened here.
    pub fn open(&self, destination: &str, durability: Durability) -> Result<Opened, String> {
        self.open_with_tee(destination, durability, |_| None)
    }

    /// As [`LogWriters::open`], and the tee `tee` gives for the journal's
    /// directory applies when it is opened here.
    pub fn open_with_tee(
        &self,
        destination: &str,
        durability: Durability,
        tee: impl FnOnce(&Path) -> Option<Tee>,
    ) -> Result<Opened, String> {
        let dest = Destination::parse(destination).map_err(|e| e.to_string())?;
        let dir = PathBuf::from(&dest.path);
        let mut open = self.open.lock();
        let journal = Journal::create(&dir, None).map_err(|e| e.to_string())?;
        for name in &dest.subscribers {
            journal
                .add_subscriber(name, Start::Begin)
                .map_err(|e| e.to_string())?;
        }
        if let Some(writer) = open.get(&dir).and_then(Weak::upgrade) {
            return Ok(Opened { writer, torn: None });
        }
        let (appender, torn) = Appender::open(&journal, durability).map_err(|e| e.to_string())?;
        let writer = Arc::new(LogWriter {
            tee: tee(&dir),
            dir: dir.clone(),
            appender,
        });
        open.retain(|_, w| w.strong_count() > 0);
        open.insert(dir, Arc::downgrade(&writer));
        Ok(Opened { writer, torn })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ecc-logwriter-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_destination_opens_its_journal_with_its_subscribers_once() {
        let dir = scratch("open");
        let writers = LogWriters::default();
        let dest = format!("cluster://{}/mainlog=>master", dir.display());
        let a = writers.open(&dest, Durability::EveryRecord).unwrap();
        assert!(a.torn.is_none());
        let other = format!("jlog://{}/mainlog?subscribers=agg,master", dir.display());
        let b = writers.open(&other, Durability::EveryRecord).unwrap();
        assert!(Arc::ptr_eq(&a.writer, &b.writer), "one writer per journal");
        let first = a.writer.append(b"one").unwrap();
        let second = b.writer.append(b"two").unwrap();
        assert_eq!((first.marker, second.marker), (1, 2));

        let journal = Journal::open(&dir.join("mainlog")).unwrap();
        let subs: Vec<String> = journal
            .subscribers()
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(subs, ["agg", "master"]);
        // A subscriber added by the second destination still gets both.
        let (from, to) = journal.read_interval("agg").unwrap().unwrap();
        let lines: Vec<Vec<u8>> = journal
            .read_range(from, to)
            .unwrap()
            .into_iter()
            .map(|r| r.payload)
            .collect();
        assert_eq!(lines, [b"one".to_vec(), b"two".to_vec()]);

        // Once every handle is gone, the next open is a new writer.
        drop((a, b));
        let c = writers.open(&dest, Durability::EveryRecord).unwrap();
        assert_eq!(c.writer.append(b"three").unwrap().marker, 3);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_tee_hears_durable_lines_of_its_journal_only() {
        let dir = scratch("tee");
        let writers = LogWriters::default();
        type Heard = Vec<(Vec<u8>, Duration)>;
        let heard: Arc<Mutex<Heard>> = Arc::default();
        let sink = Arc::clone(&heard);
        let tee = |journal: &Path| -> Option<Tee> {
            (journal.file_name()? == "paniclog").then(|| {
                let sink = Arc::clone(&sink);
                let tee: Tee = Arc::new(move |line: &[u8], at: Duration| {
                    sink.lock().push((line.to_vec(), at));
                });
                tee
            })
        };
        let panics = format!("cluster://{}/paniclog=>master", dir.display());
        let main = format!("cluster://{}/mainlog=>master", dir.display());
        let p = writers
            .open_with_tee(&panics, Durability::EveryRecord, tee)
            .unwrap();
        let m = writers
            .open_with_tee(&main, Durability::EveryRecord, tee)
            .unwrap();
        p.writer.append(b"boom").unwrap();
        m.writer.append(b"delivered").unwrap();
        // A second open shares the writer, and its tee.
        let again = writers.open(&panics, Durability::EveryRecord).unwrap();
        again.writer.append(b"again").unwrap();
        let heard = heard.lock();
        let lines: Vec<&[u8]> = heard.iter().map(|(l, _)| l.as_slice()).collect();
        assert_eq!(lines, [b"boom".as_slice(), b"again"]);
        // The time is the record's stamp.
        let journal = Journal::open(&dir.join("paniclog")).unwrap();
        let (from, to) = journal.read_interval("master").unwrap().unwrap();
        let first = &journal.read_range(from, to).unwrap()[0];
        assert_eq!(
            (u64::from(first.tv_sec), first.tv_usec),
            (heard[0].1.as_secs(), heard[0].1.subsec_micros())
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_bad_destination_is_refused_by_what_is_wrong() {
        let writers = LogWriters::default();
        let e = writers
            .open("ftp:///var/log/x", Durability::EveryRecord)
            .unwrap_err();
        assert!(e.contains("ftp"), "{e}");
        let e = writers
            .open("cluster://relative/x=>m", Durability::EveryRecord)
            .unwrap_err();
        assert!(!e.is_empty());
    }
}
