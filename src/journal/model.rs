//! Model-based checking of the journal: a sequence of operations (appends
//! of every size, syncs, reads, checkpoints, subscribers coming and going,
//! removal of consumed segments, reopening, crashes) is applied both to a
//! real journal in a scratch directory and to an in-memory model of what
//! the journal must then hold, and the two are compared after every
//! operation.
//!
//! The operations are decoded from bytes ([`decode`]), so that one driver
//! serves `tests/journal_model.rs`, which feeds it seeded pseudo-random
//! bytes ([`random_input`]), and the cargo-fuzz target
//! `fuzz/fuzz_targets/journal_model.rs`, which feeds it libFuzzer's. Any
//! byte string decodes to some sequence, and every parameter is resolved
//! against the state when the operation runs (a checkpoint "somewhere
//! readable", a cut "inside the last record"), so a sequence stays
//! meaningful when an operation before it is removed or changed. The
//! module is public only for those two; it is not API.
//!
//! # The model
//!
//! The segment files there are, each with its records in order (a record's
//! id is its segment and its place there), how many of them are durable,
//! the segment being written (`storage_log`), and every subscriber's
//! checkpoint. An append goes to the current segment, or to the next one
//! when the current one holds at least one record and `unit_limit` bytes:
//! the model predicts every id exactly, which implies that ids increase.
//! A sync makes the records of the writer's segment durable; moving to the
//! next segment makes the old one's durable, as the writer syncs it first.
//! Up to two writers are open at once, taking turns as writers in two
//! processes do. Payloads follow from their record's number, and some
//! carry whole record headers, for a reader that loses its place to serve.
//!
//! # Crashes
//!
//! A crash kills every writer without a sync, then plays a power cut. What
//! of the current segment was never synced may be lost from its end: the
//! segment is cut at any point after its durable records, often inside its
//! last record. Bytes that are not a record may follow where a record
//! ended: zeros (what a file system leaves in a block whose size it kept
//! but whose data it lost), noise, or a header promising more than
//! follows. Index files, which nothing syncs, keep whatever readers wrote
//! into them, or are lost. Earlier segments are whole, as they were synced
//! when the writer moved on; a crash between that sync and `storage_log`
//! moving on leaves an empty next segment that nothing names yet. The
//! model then says:
//!
//! * the records wholly before the cut are there, with their ids, and no
//!   others: a reader stops before the torn bytes, whatever a stale index
//!   says, and a writer that opens cuts exactly those bytes and reports
//!   them ([`TornTail`]); a durable record is never cut;
//! * the next record appended takes the next id after the last one kept;
//! * a subscriber whose checkpoint lies past the last record kept had
//!   consumed records that are gone; a writer that opens pulls its
//!   checkpoint back to the last record kept, so that the records appended
//!   next, which take those ids, still reach it.
//!
//! A cut record is never followed by garbage: zeros after a cut header's
//! magic would complete an empty record, and jlog's format has no checksum
//! that could tell it from one written.
//!
//! # Invariants
//!
//! Checked after every operation, what readers see: the last record
//! ([`Journal::last_written`]), every subscriber's
//! [`Journal::read_interval`], and nothing past the current segment's last
//! record. After the operation that follows a crash, after reopening, a
//! writer opening, [`Journal::remove_consumed`], every few operations and
//! at the end, also the metastore, the subscribers and their checkpoints,
//! the segment files present (and no index without its segment), and every
//! record the model holds, read back byte-exact with its id one segment at
//! a time with [`Journal::read_range`]. The operations check their own
//! answers: an append's id (and its record, read back), the records a
//! read gets, what `remove_consumed` removed (exactly the segments before
//! every subscriber's checkpoint's), what a writer found torn.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::format::{HEADER_LEN, Header, LogId, MAGIC, segment_name};
use super::{Journal, Record, Start, TornTail, Writer};

/// Small segments, so that appends of a few KiB rotate them often.
const UNIT_LIMIT: u32 = 4096;

/// Operations decoded from one input at most: enough for dozens of
/// segments and several crashes, few enough that a fuzz input stays fast.
const MAX_OPS: usize = 300;

/// At most this many writers are open at once: two take turns as writers
/// in two processes would, each catching up with the other's appends.
const MAX_WRITERS: usize = 2;

/// Subscriber names; one is not ASCII, as checkpoint names are hex.
const NAMES: [&str; 4] = ["a", "b", "reader", "ü"];

/// A full check of every record after this many operations without one.
const FULL_CHECK_EVERY: usize = 16;

/// One operation. Numbers that pick something (a writer, a subscriber, a
/// checkpoint, a cut) are taken modulo what there is when it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Appends a record of `len` bytes through an open writer (one is
    /// opened if none is). `fake_headers` fills the payload with record
    /// headers, for a reader that loses its place to find.
    Append {
        writer: u8,
        len: u32,
        tv_usec: u32,
        fake_headers: bool,
    },
    Sync {
        writer: u8,
    },
    /// Opens another writer, unless [`MAX_WRITERS`] are open.
    OpenWriter,
    /// Drops a writer without a sync (no crash: what it wrote stays).
    CloseWriter {
        writer: u8,
    },
    /// Reads a subscriber's interval and then maybe moves its checkpoint.
    Read {
        sub: u8,
        how: ReadHow,
        advance: Advance,
    },
    /// Moves a subscriber's checkpoint to any id a reader could give:
    /// back, forward, to the start of a segment.
    SetCheckpoint {
        sub: u8,
        pick: u16,
    },
    AddSubscriber {
        sub: u8,
        at_end: bool,
    },
    RemoveSubscriber {
        sub: u8,
    },
    RemoveConsumed,
    /// Drops the writers (cleanly) and opens the journal afresh; with
    /// `create`, through [`Journal::create`] asking for other segment
    /// sizes, which must leave the journal as it is.
    Reopen {
        create: bool,
    },
    Crash(Crash),
}

/// How a [`Op::Read`] reads its interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadHow {
    Range,
    OneByOne,
    /// The first records only, with `read_range`.
    Prefix(u16),
}

/// Where a [`Op::Read`] leaves the checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Advance {
    Stay,
    ToLast,
    /// To one of the records read.
    Within(u16),
}

/// What a crash leaves; see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Crash {
    /// The writer died rotating: after syncing the full segment and
    /// creating the next, before moving `storage_log` on. Only when the
    /// current segment is due to rotate; then nothing else happens.
    pub mid_rotation: bool,
    pub cut: Cut,
    pub garbage: Garbage,
    pub lose_index: bool,
}

/// Where a crash cuts the current segment; only what is not durable goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    None,
    /// Inside the last record (past its first byte, before its last), if
    /// that record is not durable.
    InLast(u16),
    /// Between two records after the durable ones: the records after it
    /// are lost whole, and nothing is torn.
    AtRecord(u16),
    /// Anywhere after the durable records.
    InUnsynced(u16),
}

/// Bytes a crash leaves after the last whole record (never after a cut
/// record); the number is how many, less one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Garbage {
    None,
    Zeros(u8),
    /// Pseudo-random bytes that do not begin with a header's magic.
    Noise(u8),
    /// A header whose length runs past the bytes that follow it.
    Promise(u8),
}

/// Reads an input byte by byte; past its end every byte is 0, so the last
/// operation decodes even when its parameters are cut short.
struct Input<'a> {
    data: &'a [u8],
    at: usize,
}

impl Input<'_> {
    fn next(&mut self) -> Option<u8> {
        let b = self.data.get(self.at).copied();
        self.at += 1;
        b
    }

    fn u8(&mut self) -> u8 {
        self.next().unwrap_or(0)
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }
}

/// The operations `data` stands for (at most [`MAX_OPS`]). The first byte
/// of each picks the operation; the weights favour appends, so that
/// segments fill and rotate between the crashes.
pub fn decode(data: &[u8]) -> Vec<Op> {
    let mut input = Input { data, at: 0 };
    let mut ops = Vec::new();
    while ops.len() < MAX_OPS {
        let Some(kind) = input.next() else { break };
        let op = match kind % 40 {
            0..=16 => {
                let writer = input.u8();
                let class = input.u8();
                let n = u32::from(input.u16());
                // Empty records, records of the fake headers' stride, small
                // ones, and ones up to two and a half segments long.
                let len = match class % 8 {
                    0 => 0,
                    1 | 2 => FAKE_STRIDE - HEADER_LEN as u32,
                    3 => 1 + n % 64,
                    4 | 5 => n % 1024,
                    6 => n % UNIT_LIMIT,
                    _ => UNIT_LIMIT + n % (UNIT_LIMIT * 3 / 2),
                };
                Op::Append {
                    writer,
                    len,
                    tv_usec: u32::from(input.u16()),
                    fake_headers: class & 0x80 != 0,
                }
            }
            17..=19 => Op::Sync { writer: input.u8() },
            20..=25 => {
                let sub = input.u8();
                let how = match input.u8() % 3 {
                    0 => ReadHow::Range,
                    1 => ReadHow::OneByOne,
                    _ => ReadHow::Prefix(input.u16()),
                };
                let advance = match input.u8() % 4 {
                    0 => Advance::Stay,
                    1 | 2 => Advance::ToLast,
                    _ => Advance::Within(input.u16()),
                };
                Op::Read { sub, how, advance }
            }
            26 | 27 => Op::SetCheckpoint {
                sub: input.u8(),
                pick: input.u16(),
            },
            28..=30 => Op::AddSubscriber {
                sub: input.u8(),
                at_end: input.bool(),
            },
            31 => Op::RemoveSubscriber { sub: input.u8() },
            32 | 33 => Op::RemoveConsumed,
            34 => Op::Reopen {
                create: input.bool(),
            },
            35 => Op::OpenWriter,
            36 => Op::CloseWriter { writer: input.u8() },
            _ => {
                let flags = input.u8();
                let cut = match (flags >> 1) % 4 {
                    0 => Cut::None,
                    1 => Cut::InLast(input.u16()),
                    2 => Cut::AtRecord(input.u16()),
                    _ => Cut::InUnsynced(input.u16()),
                };
                let garbage = match (flags >> 3) % 5 {
                    0 | 1 => Garbage::None,
                    2 => Garbage::Zeros(input.u8()),
                    3 => Garbage::Noise(input.u8()),
                    _ => Garbage::Promise(input.u8()),
                };
                Op::Crash(Crash {
                    mid_rotation: flags & 1 != 0 && flags & 0x40 != 0,
                    cut,
                    garbage,
                    lose_index: flags & 0x80 != 0,
                })
            }
        };
        ops.push(op);
    }
    ops
}

/// `len` pseudo-random bytes from `seed` (splitmix64): the test's inputs.
pub fn random_input(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&splitmix(&mut state).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Fake records in a payload are this long, as are appended records of
/// one length class, so that both fall on the same offsets.
const FAKE_STRIDE: u32 = 64;

/// The payload of the `seq`th record appended: its bytes follow from `seq`,
/// so that a record served in another's place shows. With `fake_headers`
/// it is a chain of whole records from [`FAKE_STRIDE`] bytes after its
/// record's start on, which a reader that trusts an offset it should not
/// would serve.
fn payload(seq: u32, len: u32, fake_headers: bool) -> Vec<u8> {
    let mut p: Vec<u8> = (0..len)
        .map(|i| (seq.wrapping_mul(131).wrapping_add(i.wrapping_mul(7)) % 251) as u8)
        .collect();
    if fake_headers {
        let fake = Header {
            tv_sec: seq,
            tv_usec: 0,
            mlen: FAKE_STRIDE - HEADER_LEN as u32,
        }
        .encode();
        let first = (FAKE_STRIDE as usize) - HEADER_LEN;
        for at in (first..p.len()).step_by(FAKE_STRIDE as usize) {
            let n = (p.len() - at).min(HEADER_LEN);
            p[at..at + n].copy_from_slice(&fake[..n]);
        }
    }
    p
}

/// A record as the model holds it; its id is where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Rec {
    tv_sec: u32,
    tv_usec: u32,
    payload: Vec<u8>,
}

impl Rec {
    fn size(&self) -> u64 {
        (HEADER_LEN + self.payload.len()) as u64
    }
}

/// A segment file.
#[derive(Clone, Debug, Default)]
struct Segment {
    records: Vec<Rec>,
    /// The first `durable` records are synced.
    durable: usize,
}

impl Segment {
    /// Bytes of the first `n` records.
    fn bytes(&self, n: usize) -> u64 {
        self.records[..n].iter().map(Rec::size).sum()
    }

    fn len(&self) -> u64 {
        self.bytes(self.records.len())
    }

    fn count(&self) -> u32 {
        self.records.len() as u32
    }
}

/// What the journal must hold; see the module docs.
#[derive(Clone, Debug)]
struct Model {
    storage_log: u32,
    /// Every segment file there is.
    segments: BTreeMap<u32, Segment>,
    subscribers: BTreeMap<String, LogId>,
    /// Bytes after the current segment's last record, left by a crash for
    /// the next writer to cut.
    torn: u64,
}

impl Model {
    fn count(&self, log: u32) -> u32 {
        self.segments.get(&log).map_or(0, Segment::count)
    }

    fn last_written(&self) -> LogId {
        LogId {
            log: self.storage_log,
            marker: self.count(self.storage_log),
        }
    }

    fn record(&self, id: LogId) -> Option<&Rec> {
        let i = usize::try_from(id.marker).ok()?.checked_sub(1)?;
        self.segments.get(&id.log)?.records.get(i)
    }

    /// The id the next append takes, after rotating if it must.
    fn append(&mut self, rec: Rec) -> LogId {
        let current = self.segments.entry(self.storage_log).or_default();
        if current.len() >= u64::from(UNIT_LIMIT) && !current.records.is_empty() {
            current.durable = current.records.len();
            self.storage_log += 1;
        }
        let current = self.segments.entry(self.storage_log).or_default();
        current.records.push(rec);
        LogId {
            log: self.storage_log,
            marker: current.count(),
        }
    }

    /// A writer opens: it cuts the torn bytes (syncing the segment) and
    /// pulls back checkpoints past the last record; returns what it must
    /// report cut, and how many checkpoints it pulls back.
    fn open_writer(&mut self) -> (Option<TornTail>, usize) {
        let log = self.storage_log;
        let current = self.segments.entry(log).or_default();
        let records = current.count();
        let torn = (self.torn > 0).then(|| {
            current.durable = current.records.len();
            TornTail {
                segment: log,
                at: current.len(),
                bytes_cut: self.torn,
            }
        });
        self.torn = 0;
        let mut pulled_back = 0;
        for id in self.subscribers.values_mut() {
            if id.log == log && id.marker > records {
                id.marker = records;
                pulled_back += 1;
            }
        }
        (torn, pulled_back)
    }

    /// The first record after `after`, and the last of its segment.
    fn interval(&self, after: LogId) -> Option<(LogId, LogId)> {
        self.segments
            .range(after.log..=self.storage_log)
            .find_map(|(&log, seg)| {
                let from = if log == after.log { after.marker } else { 0 };
                (seg.count() > from).then_some((
                    LogId {
                        log,
                        marker: from + 1,
                    },
                    LogId {
                        log,
                        marker: seg.count(),
                    },
                ))
            })
    }

    /// Every id a checkpoint may name: before or at any record there is.
    fn readable(&self) -> Vec<LogId> {
        let mut ids: Vec<LogId> = self
            .segments
            .range(..=self.storage_log)
            .flat_map(|(&log, seg)| (0..=seg.count()).map(move |marker| LogId { log, marker }))
            .collect();
        if ids.is_empty() {
            ids.push(self.last_written());
        }
        ids
    }

    /// Where a subscriber added now starts.
    fn start(&self, start: Start) -> LogId {
        match start {
            Start::Begin => LogId {
                log: self
                    .segments
                    .keys()
                    .next()
                    .copied()
                    .unwrap_or(self.storage_log),
                marker: 0,
            },
            Start::End => self.last_written(),
        }
    }

    /// Removes the segments before every checkpoint's; how many.
    fn remove_consumed(&mut self) -> usize {
        let Some(needed) = self.subscribers.values().map(|id| id.log).min() else {
            return 0;
        };
        let before = self.segments.len();
        self.segments.retain(|&log, _| log >= needed);
        before - self.segments.len()
    }
}

/// An open writer, and the segment its file is (what its sync makes
/// durable).
#[derive(Debug)]
struct Open {
    writer: Writer,
    segment: u32,
}

/// Scratch directories, one per run, numbered within the process.
static RUNS: AtomicU64 = AtomicU64::new(0);

/// Where scratch journals go: memory if there is a tmpfs, as the runs make
/// thousands of fsyncs and durability here is the model's business.
fn scratch_root() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() && fs::metadata(shm).is_ok_and(|m| !m.permissions().readonly()) {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// The real journal beside its model.
#[derive(Debug)]
struct Driver {
    dir: PathBuf,
    journal: Journal,
    writers: Vec<Open>,
    model: Model,
    /// Records appended so far: the next payload's seed and `tv_sec`.
    appended: u32,
    stats: Stats,
}

/// What a run went through, for a test to see that its runs reach the
/// cases that matter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub appended: u64,
    /// Segments written past the first.
    pub rotations: u64,
    pub crashes: u64,
    /// Records a crash took (never durable ones).
    pub records_lost: u64,
    pub torn_tails_cut: u64,
    pub checkpoints_pulled_back: u64,
    pub segments_removed: u64,
    pub records_read: u64,
}

impl std::ops::AddAssign for Stats {
    fn add_assign(&mut self, o: Stats) {
        self.appended += o.appended;
        self.rotations += o.rotations;
        self.crashes += o.crashes;
        self.records_lost += o.records_lost;
        self.torn_tails_cut += o.torn_tails_cut;
        self.checkpoints_pulled_back += o.checkpoints_pulled_back;
        self.segments_removed += o.segments_removed;
        self.records_read += o.records_read;
    }
}

type Check = std::result::Result<(), String>;

/// Turns a journal error into a failure naming the call.
fn call<T>(what: impl fmt::Display, r: super::Result<T>) -> std::result::Result<T, String> {
    r.map_err(|e| format!("{what}: {e}"))
}

fn same<T: PartialEq + fmt::Debug>(what: impl fmt::Display, got: T, want: T) -> Check {
    if got == want {
        Ok(())
    } else {
        Err(format!(
            "{what}: the journal says {got:?}, the model {want:?}"
        ))
    }
}

impl Driver {
    fn new() -> std::result::Result<Driver, String> {
        let n = RUNS.fetch_add(1, Ordering::Relaxed);
        let dir = scratch_root().join(format!("ecc-journal-model-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let journal = call("create", Journal::create(&dir, Some(UNIT_LIMIT)))?;
        Ok(Driver {
            dir,
            journal,
            writers: Vec::new(),
            model: Model {
                storage_log: 0,
                segments: BTreeMap::new(),
                subscribers: BTreeMap::new(),
                torn: 0,
            },
            appended: 0,
            stats: Stats::default(),
        })
    }

    fn open_writer(&mut self) -> Check {
        let (writer, torn) = call("Writer::open", Writer::open(&self.journal))?;
        let (want, pulled_back) = self.model.open_writer();
        self.stats.torn_tails_cut += u64::from(torn.is_some());
        same("the torn tail a writer found", torn, want)?;
        self.stats.checkpoints_pulled_back += pulled_back as u64;
        self.writers.push(Open {
            writer,
            segment: self.model.storage_log,
        });
        Ok(())
    }

    /// A subscriber there is, if any.
    fn subscriber(&self, sub: u8) -> Option<String> {
        let names: Vec<&String> = self.model.subscribers.keys().collect();
        (!names.is_empty()).then(|| names[usize::from(sub) % names.len()].clone())
    }

    fn set_checkpoint(&mut self, name: &str, id: LogId) -> Check {
        call(
            format_args!("set_checkpoint({name}, {id})"),
            self.journal.set_checkpoint(name, id),
        )?;
        self.model.subscribers.insert(name.to_string(), id);
        Ok(())
    }

    /// Compares records read with the model's.
    fn compare(&self, what: impl fmt::Display, records: &[Record]) -> Check {
        for r in records {
            let Some(want) = self.model.record(r.id) else {
                return Err(format!(
                    "{what}: served {} ({} bytes), which the model does not hold",
                    r.id,
                    r.payload.len()
                ));
            };
            if (r.tv_sec, r.tv_usec) != (want.tv_sec, want.tv_usec) || r.payload != want.payload {
                let differs = r
                    .payload
                    .iter()
                    .zip(&want.payload)
                    .position(|(a, b)| a != b);
                return Err(format!(
                    "{what}: {} is {}.{} with {} bytes (first difference at {differs:?}), \
                     the model's {}.{} with {}",
                    r.id,
                    r.tv_sec,
                    r.tv_usec,
                    r.payload.len(),
                    want.tv_sec,
                    want.tv_usec,
                    want.payload.len()
                ));
            }
        }
        Ok(())
    }

    fn step(&mut self, op: &Op) -> Check {
        match *op {
            Op::Append {
                writer,
                len,
                tv_usec,
                fake_headers,
            } => {
                if self.writers.is_empty() {
                    self.open_writer()?;
                }
                let w = usize::from(writer) % self.writers.len();
                let seq = self.appended;
                self.appended += 1;
                let rec = Rec {
                    tv_sec: seq,
                    tv_usec,
                    payload: payload(seq, len, fake_headers),
                };
                let id = call(
                    "append",
                    self.writers[w]
                        .writer
                        .append(rec.tv_sec, rec.tv_usec, &rec.payload),
                )?;
                same("the id appended", id, self.model.append(rec))?;
                self.stats.appended += 1;
                self.stats.rotations = u64::from(id.log);
                self.writers[w].segment = id.log;
                let read = call(format_args!("read({id})"), self.journal.read(id))?;
                self.compare("read after append", &[read])?;
            }
            Op::Sync { writer } => {
                if !self.writers.is_empty() {
                    let w = usize::from(writer) % self.writers.len();
                    call("sync", self.writers[w].writer.sync())?;
                    let log = self.writers[w].segment;
                    if let Some(seg) = self.model.segments.get_mut(&log) {
                        seg.durable = seg.records.len();
                    }
                }
            }
            Op::OpenWriter => {
                if self.writers.len() < MAX_WRITERS {
                    self.open_writer()?;
                }
            }
            Op::CloseWriter { writer } => {
                if !self.writers.is_empty() {
                    let w = usize::from(writer) % self.writers.len();
                    self.writers.remove(w);
                }
            }
            Op::Read { sub, how, advance } => {
                let Some(name) = self.subscriber(sub) else {
                    return Ok(());
                };
                let cp = self.model.subscribers[&name];
                let got = call(
                    format_args!("read_interval({name})"),
                    self.journal.read_interval(&name),
                )?;
                let want = self.model.interval(cp);
                same(format_args!("read_interval({name}) after {cp}"), got, want)?;
                let Some((first, last)) = want else {
                    return Ok(());
                };
                let last = match how {
                    ReadHow::Prefix(p) => LogId {
                        marker: first.marker + u32::from(p) % (last.marker - first.marker + 1),
                        ..last
                    },
                    _ => last,
                };
                let records = match how {
                    ReadHow::OneByOne => (first.marker..=last.marker)
                        .map(|marker| {
                            let id = LogId { marker, ..first };
                            call(format_args!("read({id})"), self.journal.read(id))
                        })
                        .collect::<std::result::Result<Vec<_>, _>>()?,
                    _ => call(
                        format_args!("read_range({first}, {last})"),
                        self.journal.read_range(first, last),
                    )?,
                };
                same(
                    "records read",
                    records.len(),
                    (last.marker - first.marker + 1) as usize,
                )?;
                self.compare(format_args!("reading {first} to {last}"), &records)?;
                self.stats.records_read += records.len() as u64;
                match advance {
                    Advance::Stay => {}
                    Advance::ToLast => self.set_checkpoint(&name, last)?,
                    Advance::Within(p) => {
                        let marker = first.marker + u32::from(p) % (last.marker - first.marker + 1);
                        self.set_checkpoint(&name, LogId { marker, ..first })?;
                    }
                }
            }
            Op::SetCheckpoint { sub, pick } => {
                if let Some(name) = self.subscriber(sub) {
                    let ids = self.model.readable();
                    let id = ids[usize::from(pick) % ids.len()];
                    self.set_checkpoint(&name, id)?;
                }
            }
            Op::AddSubscriber { sub, at_end } => {
                let name = NAMES[usize::from(sub) % NAMES.len()];
                let start = if at_end { Start::End } else { Start::Begin };
                let added = call(
                    format_args!("add_subscriber({name})"),
                    self.journal.add_subscriber(name, start),
                )?;
                let new = !self.model.subscribers.contains_key(name);
                same(format_args!("add_subscriber({name}) added"), added, new)?;
                if new {
                    let id = self.model.start(start);
                    self.model.subscribers.insert(name.to_string(), id);
                }
            }
            Op::RemoveSubscriber { sub } => {
                let name = NAMES[usize::from(sub) % NAMES.len()];
                let removed = call(
                    format_args!("remove_subscriber({name})"),
                    self.journal.remove_subscriber(name),
                )?;
                let was = self.model.subscribers.remove(name).is_some();
                same(
                    format_args!("remove_subscriber({name}) removed"),
                    removed,
                    was,
                )?;
            }
            Op::RemoveConsumed => {
                let removed = call("remove_consumed", self.journal.remove_consumed())?;
                same("segments removed", removed, self.model.remove_consumed())?;
                self.stats.segments_removed += removed as u64;
            }
            Op::Reopen { create } => {
                self.writers.clear();
                self.journal = if create {
                    call("create", Journal::create(&self.dir, Some(UNIT_LIMIT * 2)))?
                } else {
                    call("Journal::open", Journal::open(&self.dir))?
                };
            }
            Op::Crash(crash) => self.crash(crash)?,
        }
        Ok(())
    }

    fn segment_path(&self, log: u32) -> PathBuf {
        self.dir.join(segment_name(log))
    }

    fn crash(&mut self, crash: Crash) -> Check {
        // Dropped unsynced: a killed process syncs nothing.
        self.writers.clear();
        self.stats.crashes += 1;
        let log = self.model.storage_log;
        let io = |what: &str, e: std::io::Error| format!("crash: cannot {what}: {e}");
        if crash.lose_index {
            let idx = self.dir.join(format!("{}.idx", segment_name(log)));
            match fs::remove_file(&idx) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(io("lose the index", e));
                }
                _ => {}
            }
        }
        // Nothing was written since a crash that left torn bytes: no writer
        // has opened since. And no writer ever opened: no segment yet.
        if self.model.torn > 0 {
            return Ok(());
        }
        let Some(seg) = self.model.segments.get_mut(&log) else {
            return Ok(());
        };
        if crash.mid_rotation && seg.len() >= u64::from(UNIT_LIMIT) && !seg.records.is_empty() {
            seg.durable = seg.records.len();
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(self.segment_path(log + 1))
                .map_err(|e| io("create the next segment", e))?;
            self.model.segments.entry(log + 1).or_default();
            return Ok(());
        }
        let durable = seg.bytes(seg.durable);
        let len = seg.len();
        let cut = match crash.cut {
            Cut::None => len,
            Cut::InLast(p) => match seg.records.last() {
                Some(last) if seg.durable < seg.records.len() => {
                    len - last.size() + 1 + u64::from(p) % (last.size() - 1)
                }
                _ => len,
            },
            Cut::AtRecord(p) => {
                let unsynced = seg.records.len() - seg.durable;
                seg.bytes(seg.durable + usize::from(p) % (unsynced + 1))
            }
            Cut::InUnsynced(p) => durable + u64::from(p) % (len - durable + 1),
        };
        // The records wholly before the cut stay.
        let mut kept = 0;
        let mut end = 0;
        while kept < seg.records.len() && end + seg.records[kept].size() <= cut {
            end += seg.records[kept].size();
            kept += 1;
        }
        if kept < seg.durable {
            return Err(format!(
                "model error: a crash cut durable record {kept} of segment {log}"
            ));
        }
        self.stats.records_lost += (seg.records.len() - kept) as u64;
        seg.records.truncate(kept);
        let garbage = if cut == end {
            garbage(crash.garbage, u64::from(self.appended))
        } else {
            Vec::new()
        };
        let path = self.segment_path(log);
        let file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| io("open the segment", e))?;
        file.set_len(cut).map_err(|e| io("cut the segment", e))?;
        file.write_all_at(&garbage, cut)
            .map_err(|e| io("write garbage", e))?;
        self.model.torn = cut - end + garbage.len() as u64;
        Ok(())
    }

    /// Compares the journal with the model: what readers see (the last
    /// record, every subscriber's interval, nothing past the current
    /// segment's end) after every operation; with `full`, also the
    /// metastore, the subscribers, the files, and every record.
    fn check(&mut self, full: bool) -> Check {
        let m = &self.model;
        let j = &self.journal;
        let current = m.last_written();
        same(
            "last_written",
            call("last_written", j.last_written())?,
            current,
        )?;
        for (name, cp) in &m.subscribers {
            same(
                format_args!("read_interval({name}) after {cp}"),
                call(format_args!("read_interval({name})"), j.read_interval(name))?,
                m.interval(*cp),
            )?;
        }
        let past = LogId {
            marker: current.marker + 1,
            ..current
        };
        if let Ok(r) = j.read(past) {
            return Err(format!(
                "read({past}) served {} bytes past the last record",
                r.payload.len()
            ));
        }
        if !full {
            return Ok(());
        }
        let meta = call("meta", j.meta())?;
        same("unit_limit", meta.unit_limit, UNIT_LIMIT)?;
        let subscribers: Vec<(String, LogId)> = m
            .subscribers
            .iter()
            .map(|(n, id)| (n.clone(), *id))
            .collect();
        same(
            "subscribers",
            call("subscribers", j.subscribers())?,
            subscribers,
        )?;
        let (mut segments, mut indexes) = (Vec::new(), Vec::new());
        for entry in fs::read_dir(&self.dir).map_err(|e| format!("list: {e}"))? {
            let name = entry.map_err(|e| format!("list: {e}"))?.file_name();
            let name = name.to_string_lossy();
            let hex = |s: &str| (s.len() == 8).then(|| u32::from_str_radix(s, 16).ok())?;
            if let Some(log) = hex(&name) {
                segments.push(log);
            } else if let Some(log) = name.strip_suffix(".idx").and_then(hex) {
                indexes.push(log);
            }
        }
        segments.sort_unstable();
        same(
            "segment files",
            segments.clone(),
            m.segments.keys().copied().collect(),
        )?;
        if let Some(log) = indexes.iter().find(|l| !segments.contains(l)) {
            return Err(format!("an index outlives segment {log:08x}"));
        }
        // Every segment reads back whole, and nothing past its last
        // record does; nor does anything from the one after the current.
        let logs = m.segments.keys().copied().chain([m.storage_log + 1]);
        for log in logs {
            let n = m.count(log);
            same(
                format_args!("records_in({log:08x})"),
                call("records_in", j.records_in(log))?,
                n,
            )?;
            let past = LogId { log, marker: n + 1 };
            if let Ok(r) = j.read(past) {
                return Err(format!(
                    "read({past}) served {} bytes past the last record",
                    r.payload.len()
                ));
            }
            if n > 0 {
                let (first, last) = (LogId { log, marker: 1 }, LogId { log, marker: n });
                let records = call(
                    format_args!("read_range({first}, {last})"),
                    j.read_range(first, last),
                )?;
                same(
                    format_args!("records in {log:08x}"),
                    records.len(),
                    n as usize,
                )?;
                self.compare(format_args!("read_range({first}, {last})"), &records)?;
                if j.read_range(first, past).is_ok() {
                    return Err(format!("read_range({first}, {past}) ran past the end"));
                }
            }
        }
        Ok(())
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.writers.clear();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Garbage of `kind`; `salt` varies the noise.
fn garbage(kind: Garbage, salt: u64) -> Vec<u8> {
    match kind {
        Garbage::None => Vec::new(),
        Garbage::Zeros(n) => vec![0; usize::from(n) + 1],
        Garbage::Noise(n) => {
            let mut bytes = random_input(salt, usize::from(n) + 1);
            // Not a header: its magic is what makes one.
            if bytes[0] == MAGIC.to_ne_bytes()[0] {
                bytes[0] ^= 0xff;
            }
            bytes
        }
        Garbage::Promise(n) => {
            let mut bytes = Header {
                tv_sec: 7,
                tv_usec: 7,
                mlen: u32::from(n) + 1,
            }
            .encode()
            .to_vec();
            bytes.extend(std::iter::repeat_n(0x5a, usize::from(n)));
            bytes
        }
    }
}

/// Where a run went wrong: the operation (its index in the sequence; the
/// sequence's length for the check after the last) and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub step: usize,
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "after operation {}: {}", self.step, self.message)
    }
}

/// Runs `ops` against a fresh journal and its model, checking after each.
pub fn run(ops: &[Op]) -> Result<Stats, Failure> {
    let fail = |step| move |message| Failure { step, message };
    let mut driver = Driver::new().map_err(fail(0))?;
    let mut since_full = 0;
    let mut after_crash = false;
    for (step, op) in ops.iter().enumerate() {
        driver.step(op).map_err(fail(step))?;
        // Checking reads, and reading rebuilds indexes: after a crash the
        // next operation comes first, so that a writer, too, may be first
        // to find what the crash left. It is checked in full.
        if matches!(op, Op::Crash(_)) {
            after_crash = true;
            continue;
        }
        since_full += 1;
        let full = after_crash
            || since_full >= FULL_CHECK_EVERY
            || matches!(op, Op::Reopen { .. } | Op::OpenWriter | Op::RemoveConsumed);
        if full {
            since_full = 0;
        }
        after_crash = false;
        driver.check(full).map_err(fail(step))?;
    }
    driver.check(true).map_err(fail(ops.len()))?;
    Ok(driver.stats)
}

/// A shorter sequence that still fails, if one is found by dropping runs of
/// operations (halving their length down to one), within `budget` runs.
pub fn shrink(ops: &[Op], budget: usize) -> Vec<Op> {
    let mut ops = ops.to_vec();
    let mut runs = 0;
    let mut chunk = ops.len().div_ceil(2).max(1);
    loop {
        let mut at = 0;
        while at < ops.len() && runs < budget {
            let mut shorter = ops.clone();
            shorter.drain(at..(at + chunk).min(ops.len()));
            runs += 1;
            if run(&shorter).is_err() {
                ops = shorter;
            } else {
                at += chunk;
            }
        }
        if chunk == 1 || runs >= budget {
            return ops;
        }
        chunk /= 2;
    }
}

/// The sequence, one operation a line, the failing one marked.
pub fn describe(ops: &[Op], failure: &Failure) -> String {
    let mut out = String::new();
    for (i, op) in ops.iter().enumerate() {
        let mark = if i == failure.step { "=>" } else { "  " };
        out += &format!("{mark} {i:3} {op:?}\n");
    }
    out += &format!("{failure}\n");
    out
}
