//! Journals in the jlog on-disk layout: a directory of segments that a
//! writer appends records to and named subscribers read, each from its own
//! checkpoint (DESIGN.md §6; the formats are in [`format`]).
//!
//! A journal written here is one `jlogctl` and libjlog read, and a journal
//! libjlog wrote is read here: `testdata/jlog/written-by-libjlog` is read in
//! the tests exactly as its description says. Index files are built lazily
//! by readers, as jlog does, and a missing one is rebuilt from the segment.
//!
//! Beyond jlog, a writer never leaves a torn record behind: when it opens,
//! a record cut short by a crash at the end of the current segment (a
//! header without its whole payload, or bytes that are not a header) is
//! cut off and reported ([`TornTail`]), never served. Readers already stop
//! before an incomplete record, as jlog's do. A power cut can also take
//! whole records that readers had seen: an index naming them is not
//! trusted, and a checkpoint past the last record left is pulled back when
//! a writer opens, so that the records which take those ids again reach
//! its subscriber. Durability of appends is the writer's [`Writer::sync`],
//! or an [`Appender`]'s group commit, which acknowledges an append only
//! once it is durable.
//!
//! Writers and readers in other processes, ours or libjlog's, coordinate
//! through jlog's file locks ([`lock`] says which and when); the metastore,
//! checkpoints and indexes are changed in place, as libjlog changes them.

pub mod aggregator;
pub mod appender;
pub mod format;
mod lock;
// The model-based checker, public for tests/journal_model.rs and the fuzz
// target; not API.
#[doc(hidden)]
pub mod model;
pub mod server;

pub use appender::{Appender, Durability};

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use format::{
    DEFAULT_UNIT_LIMIT, HEADER_LEN, Header, LogId, MAGIC, Meta, checkpoint_name, decode_index,
    segment_name, subscriber_of,
};

/// What went wrong, naming the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalError(pub String);

impl std::fmt::Display for JournalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for JournalError {}

pub type Result<T> = std::result::Result<T, JournalError>;

fn io_err(path: &Path, what: &str, e: std::io::Error) -> JournalError {
    JournalError(format!("{}: {what}: {e}", path.display()))
}

/// One record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub id: LogId,
    pub tv_sec: u32,
    pub tv_usec: u32,
    pub payload: Vec<u8>,
}

/// Where a new subscriber starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// Before the oldest record still held.
    Begin,
    /// After the last record written: it reads only what comes next.
    End,
}

/// A record cut short at the end of a segment, found and cut off when a
/// writer opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    pub segment: u32,
    /// Where the segment now ends.
    pub at: u64,
    pub bytes_cut: u64,
}

impl std::fmt::Display for TornTail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "segment {}: cut {} bytes of a torn record at offset {}",
            segment_name(self.segment),
            self.bytes_cut,
            self.at
        )
    }
}

/// A journal directory; see the module docs.
#[derive(Clone, Debug)]
pub struct Journal {
    dir: PathBuf,
}

impl Journal {
    /// Opens the journal in `dir`, creating it (with segments of
    /// `unit_limit` bytes, jlog's default when `None`) if it does not exist.
    pub fn create(dir: &Path, unit_limit: Option<u32>) -> Result<Journal> {
        fs::create_dir_all(dir).map_err(|e| io_err(dir, "cannot create", e))?;
        let journal = Journal {
            dir: dir.to_path_buf(),
        };
        let meta_path = journal.path("metastore");
        if !meta_path.exists() {
            let meta = Meta {
                storage_log: 0,
                unit_limit: unit_limit.unwrap_or(DEFAULT_UNIT_LIMIT),
                safety: 1,
                hdr_magic: MAGIC,
            };
            write_synced(&meta_path, &meta.encode())?;
        }
        journal.meta()?;
        Ok(journal)
    }

    /// Opens an existing journal.
    pub fn open(dir: &Path) -> Result<Journal> {
        let journal = Journal {
            dir: dir.to_path_buf(),
        };
        journal.meta()?;
        Ok(journal)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The metastore, read afresh: a writer in another process moves it on.
    pub fn meta(&self) -> Result<Meta> {
        let path = self.path("metastore");
        let (file, writable) = open_to_read(&path)?;
        let _locked = lock_to_read(&file, writable, &path)?;
        read_meta(&file, &path)
    }

    /// Every subscriber and its checkpoint, by name.
    pub fn subscribers(&self) -> Result<Vec<(String, LogId)>> {
        let entries = fs::read_dir(&self.dir).map_err(|e| io_err(&self.dir, "cannot list", e))?;
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            if let Some(name) = file_name.to_str().and_then(subscriber_of) {
                let id = self.checkpoint(&name)?;
                out.push((name, id));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Adds a subscriber starting at `start`; false if it exists already
    /// (its checkpoint is left as it is).
    pub fn add_subscriber(&self, name: &str, start: Start) -> Result<bool> {
        check_subscriber(name)?;
        let path = self.path(&checkpoint_name(name));
        // Created exclusively, as jlog does, so two processes adding the
        // same subscriber agree on which of them did.
        let file = match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(io_err(&path, "cannot create", e)),
        };
        let id = match start {
            Start::Begin => LogId {
                log: self.oldest_segment()?,
                marker: 0,
            },
            Start::End => self.last_written()?,
        };
        write_checkpoint(&file, &path, id)?;
        sync_dir(&self.dir)?;
        Ok(true)
    }

    /// Removes a subscriber; false if there was none.
    pub fn remove_subscriber(&self, name: &str) -> Result<bool> {
        let path = self.path(&checkpoint_name(name));
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err(&path, "cannot remove", e)),
        }
    }

    /// The last record `name` consumed.
    pub fn checkpoint(&self, name: &str) -> Result<LogId> {
        let path = self.path(&checkpoint_name(name));
        let (file, writable) = open_to_read(&path).map_err(|e| {
            if path.exists() {
                e
            } else {
                JournalError(format!("no subscriber '{name}'"))
            }
        })?;
        let _locked = lock_to_read(&file, writable, &path)?;
        read_checkpoint(&file, &path)
    }

    /// `name` has consumed everything up to `id`; durable when this
    /// returns.
    pub fn set_checkpoint(&self, name: &str, id: LogId) -> Result<()> {
        let file = self.open_checkpoint(name)?;
        let path = self.path(&checkpoint_name(name));
        let _locked = lock::lock(&file).map_err(|e| io_err(&path, "cannot lock", e))?;
        write_checkpoint(&file, &path, id)
    }

    /// Pulls every checkpoint past the last of segment `log`'s `records`
    /// back to it. Readers see records before they are durable: after a
    /// power cut a checkpoint can name records the segment lost, whose ids
    /// the next appends take again, and its reader would skip those. The
    /// caller, a writer opening, holds the segment's lock, so that no
    /// record is appended meanwhile. A checkpoint that does not read is
    /// left for its reader to find.
    fn pull_back_checkpoints(&self, log: u32, records: u32) -> Result<()> {
        let entries = fs::read_dir(&self.dir).map_err(|e| io_err(&self.dir, "cannot list", e))?;
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            if file_name.to_str().and_then(subscriber_of).is_none() {
                continue;
            }
            let path = entry.path();
            // Gone since it was listed (its subscriber removed), or not
            // ours to write: left alone.
            let Ok(file) = open_rw(&path, false) else {
                continue;
            };
            let _locked = lock::lock(&file).map_err(|e| io_err(&path, "cannot lock", e))?;
            match read_checkpoint(&file, &path) {
                Ok(id) if id.log == log && id.marker > records => {
                    write_checkpoint(
                        &file,
                        &path,
                        LogId {
                            log,
                            marker: records,
                        },
                    )?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn open_checkpoint(&self, name: &str) -> Result<File> {
        let path = self.path(&checkpoint_name(name));
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => JournalError(format!("no subscriber '{name}'")),
                _ => io_err(&path, "cannot open", e),
            })
    }

    /// The records after `name`'s checkpoint, first and last, within one
    /// segment (as jlog's intervals never cross a segment); `None` when it
    /// has read everything.
    pub fn read_interval(&self, name: &str) -> Result<Option<(LogId, LogId)>> {
        let storage_log = self.meta()?.storage_log;
        let mut at = self.checkpoint(name)?;
        loop {
            let n = self.records_in(at.log)?;
            if at.marker < n {
                return Ok(Some((
                    LogId {
                        log: at.log,
                        marker: at.marker + 1,
                    },
                    LogId {
                        log: at.log,
                        marker: n,
                    },
                )));
            }
            if at.log >= storage_log {
                return Ok(None);
            }
            at = LogId {
                log: at.log + 1,
                marker: 0,
            };
        }
    }

    /// The record at `id`.
    pub fn read(&self, id: LogId) -> Result<Record> {
        let offsets = self.index(id.log)?;
        let offset = usize::try_from(id.marker)
            .ok()
            .and_then(|m| m.checked_sub(1))
            .and_then(|i| offsets.get(i))
            .copied()
            .ok_or_else(|| JournalError(format!("no record {id}")))?;
        let path = self.path(&segment_name(id.log));
        let file = File::open(&path).map_err(|e| io_err(&path, "cannot open", e))?;
        let mut head = [0u8; HEADER_LEN];
        file.read_exact_at(&mut head, offset)
            .map_err(|e| io_err(&path, "cannot read a header", e))?;
        let header = Header::decode(&head)
            .map_err(|e| JournalError(format!("{} at {offset}: {e}", path.display())))?
            .ok_or_else(|| JournalError(format!("no record {id}")))?;
        let mut payload = vec![0u8; header.mlen as usize];
        file.read_exact_at(&mut payload, offset + HEADER_LEN as u64)
            .map_err(|e| io_err(&path, "cannot read a record", e))?;
        Ok(Record {
            id,
            tv_sec: header.tv_sec,
            tv_usec: header.tv_usec,
            payload,
        })
    }

    /// The records `first` to `last` of one segment, as
    /// `jlog_ctx_bulk_read_messages`: the index is brought up to date once
    /// and the records read 64 KiB at a time, where [`Journal::read`]
    /// does both per record.
    pub fn read_range(&self, first: LogId, last: LogId) -> Result<Vec<Record>> {
        if first.log != last.log || first.marker == 0 || first.marker > last.marker {
            return Err(JournalError(format!("no records {first} to {last}")));
        }
        let offsets = self.index(first.log)?;
        let at = |marker: u32| {
            offsets
                .get(marker as usize - 1)
                .copied()
                .ok_or_else(|| JournalError(format!("no record {}", LogId { marker, ..first })))
        };
        // The last one first: a range past the end allocates nothing.
        let last_at = at(last.marker)?;
        let path = self.path(&segment_name(first.log));
        let file = File::open(&path).map_err(|e| io_err(&path, "cannot open", e))?;
        let mut head = [0u8; HEADER_LEN];
        file.read_exact_at(&mut head, last_at)
            .map_err(|e| io_err(&path, "cannot read a header", e))?;
        let last_header = Header::decode(&head)
            .map_err(|e| JournalError(format!("{} at {last_at}: {e}", path.display())))?
            .ok_or_else(|| JournalError(format!("no record {last}")))?;
        let end = last_at + HEADER_LEN as u64 + u64::from(last_header.mlen);
        let mut chunks = Chunks::new(&file, &path, end);
        let mut records = Vec::with_capacity((last.marker - first.marker) as usize + 1);
        for marker in first.marker..=last.marker {
            let off = at(marker)?;
            let header = chunks
                .get(off, HEADER_LEN)?
                .and_then(|b| Header::decode(b).ok().flatten())
                .ok_or_else(|| JournalError(format!("{}: no record at {off}", path.display())))?;
            let payload = chunks
                .get(off + HEADER_LEN as u64, header.mlen as usize)?
                .ok_or_else(|| {
                    JournalError(format!("{}: a record runs past {end}", path.display()))
                })?
                .to_vec();
            records.push(Record {
                id: LogId { marker, ..first },
                tv_sec: header.tv_sec,
                tv_usec: header.tv_usec,
                payload,
            });
        }
        Ok(records)
    }

    /// The last record written (marker 0 when the current segment has
    /// none yet).
    pub fn last_written(&self) -> Result<LogId> {
        let log = self.meta()?.storage_log;
        Ok(LogId {
            log,
            marker: self.records_in(log)?,
        })
    }

    /// How many complete records segment `log` holds (0 for one that does
    /// not exist).
    pub fn records_in(&self, log: u32) -> Result<u32> {
        let n = self.index(log)?.len();
        u32::try_from(n).map_err(|_| JournalError(format!("segment {log:08x}: {n} records")))
    }

    /// Deletes the segments (and their indexes) that every subscriber has
    /// read past; returns how many. With no subscribers nothing is
    /// deleted: records wait for a reader.
    pub fn remove_consumed(&self) -> Result<usize> {
        let Some(oldest_needed) = self.subscribers()?.iter().map(|(_, id)| id.log).min() else {
            return Ok(0);
        };
        let mut removed = 0;
        for log in self.segments()? {
            if log < oldest_needed {
                for name in [segment_name(log), format!("{}.idx", segment_name(log))] {
                    let path = self.path(&name);
                    match fs::remove_file(&path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(io_err(&path, "cannot remove", e)),
                    }
                }
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// The segments present, in order.
    fn segments(&self) -> Result<Vec<u32>> {
        let entries = fs::read_dir(&self.dir).map_err(|e| io_err(&self.dir, "cannot list", e))?;
        let mut logs: Vec<u32> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name();
                let name = name.to_str()?;
                (name.len() == 8)
                    .then(|| u32::from_str_radix(name, 16).ok())
                    .flatten()
            })
            .collect();
        logs.sort_unstable();
        Ok(logs)
    }

    fn oldest_segment(&self) -> Result<u32> {
        match self.segments()?.first() {
            Some(&log) => Ok(log),
            None => Ok(self.meta()?.storage_log),
        }
    }

    /// The offsets of segment `log`'s complete records: from its index
    /// file, brought up to date from the segment and written back when it
    /// grew (jlog's lazy "resync"). A segment that is no longer written and
    /// is wholly indexed gets its index closed.
    fn index(&self, log: u32) -> Result<Vec<u64>> {
        let seg_path = self.path(&segment_name(log));
        let seg = match File::open(&seg_path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&seg_path, "cannot open", e)),
        };
        let idx_path = self.path(&format!("{}.idx", segment_name(log)));
        // An index is a cache: a reader that cannot open it for writing
        // (and so cannot lock it) still reads, from the segment alone.
        let idx = open_rw(&idx_path, true).ok();
        let _locked = match &idx {
            Some(f) => Some(lock::lock(f).map_err(|e| io_err(&idx_path, "cannot lock", e))?),
            None => None,
        };
        let mut bytes = Vec::new();
        if let Some(mut f) = idx.as_ref() {
            f.read_to_end(&mut bytes)
                .map_err(|e| io_err(&idx_path, "cannot read", e))?;
        }
        let (mut offsets, closed) = decode_index(&bytes);
        if closed {
            return Ok(offsets);
        }
        let size = seg
            .metadata()
            .map_err(|e| io_err(&seg_path, "cannot stat", e))?
            .len();
        let before = offsets.len();
        // Re-check the last two indexed records, then scan on from the end
        // of the last: only what is new is read, not the whole segment.
        let recheck = offsets.split_off(before.saturating_sub(2));
        let scan_from = |from: u64| scan(&seg, &seg_path, from, size);
        let mut found = scan_from(recheck.first().copied().unwrap_or(0))?;
        // Nothing syncs an index: after a power cut it can name records
        // the segment lost, and the segment may since have grown again
        // with bytes the crash left. What the index holds before the
        // re-checked records is trusted only while the first of them is
        // still whole and ends where the index says the next begins; else
        // the segment is scanned again from the start.
        let agrees = recheck.first().is_none_or(|&first| {
            let end_of_first = found.offsets.get(1).copied().unwrap_or(found.end);
            found.offsets.first() == Some(&first)
                && recheck.get(1).is_none_or(|&next| end_of_first == next)
        });
        let mut rebuilt = false;
        if !agrees {
            offsets.clear();
            found = scan_from(0)?;
            rebuilt = true;
        }
        offsets.extend(found.offsets);
        let at = found.end;
        let storage_log = self.meta()?.storage_log;
        // The writer writes a segment's last records before it moves
        // storage_log on: the segment is finished only if it has not grown
        // since we read it (jlog's recheck in ___jlog_resync_index).
        let unchanged = || fs::metadata(&seg_path).is_ok_and(|m| m.len() == size);
        let close = log < storage_log && at == size && unchanged();
        if let Some(f) = idx
            .as_ref()
            .filter(|_| rebuilt || offsets.len() != before || close)
        {
            let mut new: Vec<u8> = offsets.iter().flat_map(|o| o.to_ne_bytes()).collect();
            if close {
                new.extend_from_slice(&0u64.to_ne_bytes());
            }
            // Written over the old index, which it extends (unless it was
            // stale), and only then cut to length, so that a reader reading
            // without the lock (as libjlog's do first) never sees it
            // shorter than it was.
            let _ = f
                .write_all_at(&new, 0)
                .and_then(|()| f.set_len(new.len() as u64));
        }
        Ok(offsets)
    }
}

/// The records found from `from` on, and where the last complete one ends.
struct Scan {
    offsets: Vec<u64>,
    end: u64,
}

/// Scans the complete records of `file` from `from` up to `size`, stopping
/// there, at a record cut short, or at bytes that are not a header. Only
/// the headers are looked at.
fn scan(file: &File, path: &Path, from: u64, size: u64) -> Result<Scan> {
    let mut chunks = Chunks::new(file, path, size);
    let mut offsets = Vec::new();
    let mut at = from;
    while let Some(head) = chunks.get(at, HEADER_LEN)? {
        let Ok(Some(header)) = Header::decode(head) else {
            break;
        };
        let end = at + HEADER_LEN as u64 + u64::from(header.mlen);
        if end > size {
            break;
        }
        offsets.push(at);
        at = end;
    }
    Ok(Scan { offsets, end: at })
}

/// How much of a segment is read at a time. Under glibc's threshold for
/// giving an allocation its own mapping (128 KiB), the buffer comes from
/// the heap and is reused from one call to the next; a buffer the size of
/// a segment was mapped, faulted in and zeroed by the kernel on every
/// call, which cost more than reading the records.
const CHUNK: usize = 64 * 1024;

/// Reads a segment forward a chunk at a time, so that many records cost a
/// few large `pread`s (not one each) and no buffer as large as what is
/// read.
struct Chunks<'a> {
    file: &'a File,
    path: &'a Path,
    /// Where reading stops: the segment's size as the caller saw it.
    end: u64,
    buf: Vec<u8>,
    /// The segment offset of `buf[0]`.
    at: u64,
}

impl<'a> Chunks<'a> {
    fn new(file: &'a File, path: &'a Path, end: u64) -> Chunks<'a> {
        Chunks {
            file,
            path,
            end,
            buf: Vec::new(),
            at: 0,
        }
    }

    /// The `len` bytes at `from`; `None` if they run past the end.
    fn get(&mut self, from: u64, len: usize) -> Result<Option<&[u8]>> {
        let Some(to) = from.checked_add(len as u64).filter(|&to| to <= self.end) else {
            return Ok(None);
        };
        if from < self.at || to > self.at + self.buf.len() as u64 {
            let n = usize::try_from(self.end - from)
                .unwrap_or(usize::MAX)
                .min(CHUNK.max(len));
            self.buf.resize(n, 0);
            self.file
                .read_exact_at(&mut self.buf, from)
                .map_err(|e| io_err(self.path, "cannot read", e))?;
            self.at = from;
        }
        let off = (from - self.at) as usize;
        Ok(self.buf.get(off..off + len))
    }
}

fn check_subscriber(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 255 {
        return Err(JournalError(format!(
            "subscriber name '{name}' must be 1 to 255 bytes"
        )));
    }
    Ok(())
}

/// Opens a journal file for reading and writing, as jlog opens all of
/// them: a write lock needs a descriptor open for writing.
fn open_rw(path: &Path, create: bool) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .open(path)
        .map_err(|e| io_err(path, "cannot open", e))
}

/// Opens a file to read it under its lock: for reading and writing, as jlog
/// does, or, where we may not write (another user's journal, a read-only
/// mount), for reading only; says which.
fn open_to_read(path: &Path) -> Result<(File, bool)> {
    match open_rw(path, false) {
        Ok(f) => Ok((f, true)),
        Err(_) => File::open(path)
            .map(|f| (f, false))
            .map_err(|e| io_err(path, "cannot open", e)),
    }
}

/// jlog's exclusive lock, or a shared one on a file we may only read: both
/// exclude a writer holding jlog's lock.
fn lock_to_read<'a>(file: &'a File, writable: bool, path: &Path) -> Result<lock::Locked<'a>> {
    if writable {
        lock::lock(file)
    } else {
        lock::lock_shared(file)
    }
    .map_err(|e| io_err(path, "cannot lock", e))
}

/// The metastore's contents; the caller holds its lock.
fn read_meta(file: &File, path: &Path) -> Result<Meta> {
    let mut bytes = Vec::new();
    let mut reader = file;
    reader
        .read_to_end(&mut bytes)
        .map_err(|e| io_err(path, "cannot read", e))?;
    Meta::decode(&bytes).map_err(|e| JournalError(format!("{}: {e}", path.display())))
}

/// A checkpoint's contents; the caller holds its lock.
fn read_checkpoint(file: &File, path: &Path) -> Result<LogId> {
    let mut bytes = Vec::new();
    let mut reader = file;
    reader
        .read_to_end(&mut bytes)
        .map_err(|e| io_err(path, "cannot read", e))?;
    LogId::decode(&bytes).ok_or_else(|| {
        JournalError(format!(
            "{}: a checkpoint is 8 bytes, not {}",
            path.display(),
            bytes.len()
        ))
    })
}

/// Writes a checkpoint in place and makes it durable; the caller holds its
/// lock. Eight bytes at offset 0 lie in one sector: a crash leaves the old
/// checkpoint or the new.
fn write_checkpoint(file: &File, path: &Path, id: LogId) -> Result<()> {
    file.write_all_at(&id.encode(), 0)
        .and_then(|()| file.sync_data())
        .map_err(|e| io_err(path, "cannot write", e))
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, "cannot sync", e))
}

/// Writes `bytes` to `path` and makes them durable: to a temporary file,
/// synced, renamed over `path`, and the directory synced, so a crash leaves
/// the old contents or the new, never a mix.
pub(crate) fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(|e| io_err(&tmp, "cannot create", e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_data())
        .map_err(|e| io_err(&tmp, "cannot write", e))?;
    fs::rename(&tmp, path).map_err(|e| io_err(path, "cannot replace", e))?;
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_err(dir, "cannot sync", e))?;
    }
    Ok(())
}

/// A writer of a journal: appends records to the current segment and
/// starts a new one when it passes the segment size. Other writers, ours or
/// libjlog's, may append to the same journal from other processes: records
/// go where the segment ends while the writer holds the segment's lock.
///
/// By default each append takes the lock, writes its record and lets go,
/// so readers see it at once and other writers wait only for one `pwrite`;
/// that is four system calls a record (lock, `fstat` to see what others
/// appended, `pwrite`, unlock), which bounds a writer to a few hundred
/// thousand records a second. [`Writer::set_buffer`] trades that for
/// speed, as jlog's pre-commit buffer does: records gather in memory and
/// go to the segment in one `pwrite` when the buffer fills, on
/// [`Writer::flush`], [`Writer::sync`], a segment change or drop. Unlike
/// jlog's, the buffer holds the segment's lock from its first record until
/// it is written, because [`Writer::append`] returns each record's id, its
/// place in the segment, which no other writer may take in the meantime.
/// The cost: a buffered record is not seen by readers, and other writers
/// (libjlog's too) wait, until the buffer is written; a buffering writer
/// that may sit idle should flush.
///
/// Readers never see a torn record either way. Records are appended past
/// the end of the segment, and Linux moves a file's size on only behind
/// the bytes copied in, so a reader looking while a `pwrite` is under way
/// sees a prefix of it: whole records, then perhaps one cut short, which
/// readers (ours and jlog's) leave for later, as they did when each
/// record had its own `pwrite` that could be caught half done.
#[derive(Debug)]
pub struct Writer {
    journal: Journal,
    file: File,
    /// The current segment's path, for errors.
    path: PathBuf,
    meta: Meta,
    /// Bytes in the current segment, and its records, as last seen, with
    /// those in `pending` counted.
    len: u64,
    records: u32,
    /// Records appended and not yet written, which go at
    /// `len - pending.len()`; `pending_records` of them.
    pending: Vec<u8>,
    pending_records: u32,
    /// Write once `pending` holds this many bytes (0: every record).
    buffer: usize,
    /// Whether we hold the segment's lock, kept from the first pending
    /// record until they are written.
    locked: bool,
}

impl Writer {
    /// Opens the journal for writing; a torn record at the end of the
    /// current segment is cut off and returned for the caller to log.
    /// Records are written as they are appended until
    /// [`Writer::set_buffer`] says otherwise.
    pub fn open(journal: &Journal) -> Result<(Writer, Option<TornTail>)> {
        let meta_path = journal.path("metastore");
        let meta_file = open_rw(&meta_path, false)?;
        // As __jlog_open_writer: the segment opened is the one storage_log
        // names while no one can move it on.
        let (meta, file) = {
            let _locked =
                lock::lock(&meta_file).map_err(|e| io_err(&meta_path, "cannot lock", e))?;
            let meta = read_meta(&meta_file, &meta_path)?;
            let file = open_rw(&journal.path(&segment_name(meta.storage_log)), true)?;
            (meta, file)
        };
        let path = journal.path(&segment_name(meta.storage_log));
        let _locked = lock::lock(&file).map_err(|e| io_err(&path, "cannot lock", e))?;
        let size = file
            .metadata()
            .map_err(|e| io_err(&path, "cannot stat", e))?
            .len();
        // Under the segment's lock no writer is part way through a record:
        // what does not parse is a crash's leftover.
        let found = scan(&file, &path, 0, size)?;
        // An index naming records the segment no longer has (a power cut
        // took them) would have readers take what is appended next for
        // them: it is rebuilt. Readers re-check only its last records, and
        // what is appended from here on may put records where it says
        // they are. One naming only records found here stays.
        let idx_path = journal.path(&format!("{}.idx", segment_name(meta.storage_log)));
        let stale = fs::read(&idx_path).is_ok_and(|bytes| {
            let (offsets, closed) = decode_index(&bytes);
            closed || !found.offsets.starts_with(&offsets)
        });
        if stale {
            let _ = fs::remove_file(&idx_path);
        }
        let mut torn = None;
        if found.end < size {
            file.set_len(found.end)
                .and_then(|()| file.sync_data())
                .map_err(|e| io_err(&path, "cannot cut a torn record", e))?;
            torn = Some(TornTail {
                segment: meta.storage_log,
                at: found.end,
                bytes_cut: size - found.end,
            });
        }
        let records = u32::try_from(found.offsets.len())
            .map_err(|_| JournalError(format!("{}: too many records", path.display())))?;
        journal.pull_back_checkpoints(meta.storage_log, records)?;
        drop(_locked);
        Ok((
            Writer {
                journal: journal.clone(),
                file,
                path,
                meta,
                len: found.end,
                records,
                pending: Vec::new(),
                pending_records: 0,
                buffer: 0,
                locked: false,
            },
            torn,
        ))
    }

    /// Gathers up to `bytes` of records in memory before writing them (0,
    /// the default: each record is written as it is appended); see the
    /// type's docs for what that costs other readers and writers.
    pub fn set_buffer(&mut self, bytes: usize) -> Result<()> {
        self.buffer = bytes;
        if self.pending.len() >= bytes {
            self.flush()?;
        }
        Ok(())
    }

    /// Appends a record stamped `tv_sec`.`tv_usec` and returns its id. It is
    /// in the segment (readers see it) when this returns, or, with a
    /// buffer, once the buffer is written; it is durable after the next
    /// [`Writer::sync`]. An error may also have lost the buffered records
    /// appended before this one, as a failed [`Writer::flush`] does.
    pub fn append(&mut self, tv_sec: u32, tv_usec: u32, payload: &[u8]) -> Result<LogId> {
        let mlen = u32::try_from(payload.len()).map_err(|_| {
            JournalError(format!("a record of {} bytes is too long", payload.len()))
        })?;
        loop {
            if !self.locked {
                lock::lock(&self.file)
                    .map_err(|e| io_err(&self.path, "cannot lock", e))?
                    .keep();
                self.locked = true;
                // Nothing is pending: the lock is taken afresh only once
                // the buffer has been written.
                if let Err(e) = catch_up(&self.file, &self.path, &mut self.len, &mut self.records) {
                    self.unlock();
                    return Err(e);
                }
            }
            if self.len >= u64::from(self.meta.unit_limit) && self.records > 0 {
                // As jlog: the segment's lock is let go (by the flush)
                // before the metastore's is taken, so no one holds both.
                self.flush()?;
                self.rotate()?;
                continue;
            }
            break;
        }
        let header = Header {
            tv_sec,
            tv_usec,
            mlen,
        }
        .encode();
        self.pending.extend_from_slice(&header);
        self.pending.extend_from_slice(payload);
        self.len += (HEADER_LEN + payload.len()) as u64;
        self.records += 1;
        self.pending_records += 1;
        let id = LogId {
            log: self.meta.storage_log,
            marker: self.records,
        };
        if self.pending.len() >= self.buffer {
            self.flush()?;
        }
        Ok(id)
    }

    /// Writes the buffered records to the segment, where readers see them,
    /// and lets go of its lock. On an error they may or may not be there,
    /// in whole or in part; the ids they were given may go to other
    /// records, and a part written is a torn tail, which makes later
    /// appends fail until the journal is opened again and cuts it.
    pub fn flush(&mut self) -> Result<()> {
        if !self.locked {
            return Ok(());
        }
        let at = self.len - self.pending.len() as u64;
        let written = self.file.write_all_at(&self.pending, at);
        if written.is_err() {
            self.len = at;
            self.records -= self.pending_records;
        }
        self.pending.clear();
        self.pending_records = 0;
        self.unlock();
        written.map_err(|e| io_err(&self.path, "cannot append", e))
    }

    fn unlock(&mut self) {
        lock::unlock(&self.file);
        self.locked = false;
    }

    /// Makes every record appended so far durable, writing the buffer
    /// first.
    pub fn sync(&mut self) -> Result<()> {
        self.flush()?;
        self.file
            .sync_data()
            .map_err(|e| io_err(&self.path, "cannot sync", e))
    }

    /// Closes the current segment (synced) and goes on to the next: moves
    /// storage_log on under the metastore's lock, unless another writer
    /// already has (jlog's __jlog_metastore_atomic_increment).
    fn rotate(&mut self) -> Result<()> {
        self.sync()?;
        let meta_path = self.journal.path("metastore");
        let meta_file = open_rw(&meta_path, false)?;
        let _locked = lock::lock(&meta_file).map_err(|e| io_err(&meta_path, "cannot lock", e))?;
        let mut meta = read_meta(&meta_file, &meta_path)?;
        if meta.storage_log == self.meta.storage_log {
            meta.storage_log += 1;
            // The new segment exists before storage_log names it.
            open_rw(&self.journal.path(&segment_name(meta.storage_log)), true)?;
            // In place, as libjlog (which maps the metastore) expects; 16
            // bytes at offset 0 lie in one sector.
            meta_file
                .write_all_at(&meta.encode(), 0)
                .and_then(|()| meta_file.sync_data())
                .map_err(|e| io_err(&meta_path, "cannot write", e))?;
            sync_dir(&self.journal.dir)?;
        }
        let path = self.journal.path(&segment_name(meta.storage_log));
        self.file = open_rw(&path, true)?;
        self.path = path;
        self.meta = meta;
        // Another writer may have written there already: the next append
        // counts its records under the segment's lock.
        self.len = 0;
        self.records = 0;
        Ok(())
    }
}

impl Drop for Writer {
    /// Writes what is buffered, as a `BufWriter` does; whoever needs to
    /// know that it got there calls [`Writer::flush`] or [`Writer::sync`].
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// Counts what other writers appended since we last looked; the
/// caller holds the segment's lock.
fn catch_up(file: &File, path: &Path, len: &mut u64, records: &mut u32) -> Result<()> {
    // `lseek` rather than `fstat`: this runs for every record a writer
    // without a buffer appends, and the size is all we need.
    let size = (&*file)
        .seek(SeekFrom::End(0))
        .map_err(|e| io_err(path, "cannot stat", e))?;
    if size == *len {
        return Ok(());
    }
    let from = if size > *len { *len } else { 0 };
    let found = scan(file, path, from, size)?;
    if found.end != size {
        return Err(JournalError(format!(
            "{}: another writer left {} bytes that are not records at offset {}",
            path.display(),
            size - found.end,
            found.end
        )));
    }
    let seen = u32::try_from(found.offsets.len())
        .map_err(|_| JournalError(format!("{}: too many records", path.display())))?;
    *records = if from == 0 { seen } else { *records + seen };
    *len = size;
    Ok(())
}

#[cfg(test)]
mod tests;
