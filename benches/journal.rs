//! Journal throughput (issue 6), each case beside the same workload on a
//! plain file, so that the ratio says what the journal costs over the
//! cheapest way to put the same bytes on the same disk under the same
//! fsync policy. Records of 100 B and 1 KiB; for each:
//!
//! * `unbuffered`: a bare `Writer` (what jlog does), unsynced, each record
//!   written as it is appended, against one `write(2)` per record;
//! * `buffered`: the same with a 64 KiB buffer, against a 64 KiB
//!   `BufWriter<File>`; the journal also syncs each full segment (4 MiB)
//!   as it moves to the next, as jlog does, and the file does not;
//! * `every`: one `fdatasync` per record, an `Appender` with
//!   `EveryRecord` against `write` + `fdatasync` per record, from 1 and 4
//!   threads (serialised on a mutex, as the `Appender` serialises them);
//! * `group`: an `Appender` with `Group` (1 ms) against the textbook group
//!   commit on a file (a thread writes its record under a mutex, then
//!   syncs everything written so far unless a sync is under way, in which
//!   case it waits for that one and looks again), from 1 to 256 threads:
//!   an MTA has many threads logging, and each waits for its own record;
//! * `replay`: what the buffered case wrote, read back from the page cache
//!   (it was just written), not the disk: every segment with `read_range`
//!   (the first read, which builds the indexes as jlog's readers do), then
//!   again as a subscriber (`read_interval`, `read_range` and a checkpoint,
//!   an `fdatasync`, per interval); against reading the plain file in
//!   4 MiB chunks and copying each record's payload out.
//!
//! MB/s counts payload bytes. Each row runs the journal and the file in
//! turn, three times, and keeps the median of each: the disk is shared,
//! and its sync latency drifts with what else runs. Synced cases run for a
//! time (1 s a round) rather than a number of records. Prints a markdown
//! table, and the median `fdatasync` latency before and after it.
//!
//! `ECC_JOURNAL_BENCH_DIR` chooses where the files go (by default next to
//! this binary, on the build's disk: a tmpfs would make syncs free).
//! Arguments name the cases to run (`cargo bench --bench journal -- group
//! replay`); none runs all. `-- --test` (CI's smoke run) runs each once
//! with a few thousand records.

mod common;
use common::thousands;

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use eccluster::journal::format::LogId;
use eccluster::journal::{Appender, Durability, Journal, Start, Writer};

const SIZES: [usize; 2] = [100, 1024];
const THREADS: [u64; 4] = [1, 4, 64, 256];
const BUFFER: usize = 64 * 1024;
/// jlog's record header: magic, tv_sec, tv_usec, length.
const HEADER: usize = 16;
const GROUP: Durability = Durability::Group {
    interval: Duration::from_millis(1),
};

struct Run {
    test: bool,
    filters: Vec<String>,
}

impl Run {
    fn wants(&self, case: &str) -> bool {
        self.filters.is_empty() || self.filters.iter().any(|f| f == case)
    }

    /// Records for a case that is not time-bound.
    fn records(&self, size: usize) -> u64 {
        match (self.test, size) {
            (true, _) => 2_000,
            (false, s) if s <= 100 => 1_000_000,
            (false, _) => 200_000,
        }
    }

    /// How long a synced case runs, per round.
    fn budget(&self) -> Duration {
        if self.test {
            Duration::from_millis(100)
        } else {
            Duration::from_secs(1)
        }
    }

    /// Rounds of each row, the journal and the file taking turns: the
    /// disk is shared, and its sync latency drifts with what else runs,
    /// so one long run of each would compare two different disks.
    fn rounds(&self) -> usize {
        if self.test { 1 } else { 3 }
    }

    /// Runs both sides `rounds` times, turn about, and keeps the median
    /// round of each.
    fn pair(
        &self,
        mut journal: impl FnMut() -> Rate,
        mut file: impl FnMut() -> Rate,
    ) -> (Rate, Rate) {
        let (mut js, mut fs) = (Vec::new(), Vec::new());
        for _ in 0..self.rounds() {
            js.push(journal());
            fs.push(file());
        }
        (median(js), median(fs))
    }
}

fn median(mut rates: Vec<Rate>) -> Rate {
    rates.sort_by(|a, b| a.per_sec().total_cmp(&b.per_sec()));
    rates.swap_remove(rates.len() / 2)
}

/// What one side of a row did.
struct Rate {
    records: u64,
    bytes: u64,
    elapsed: Duration,
}

impl Rate {
    fn per_sec(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64()
    }

    fn mb_per_sec(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64() / 1e6
    }
}

fn row(size: usize, case: &str, threads: u64, journal: &Rate, file: &Rate) {
    println!(
        "| {size} B | {case} | {threads} | {} | {:.1} | {} | {:.2} |",
        thousands(journal.per_sec()),
        journal.mb_per_sec(),
        thousands(file.per_sec()),
        journal.per_sec() / file.per_sec(),
    );
}

fn base_dir() -> PathBuf {
    std::env::var_os("ECC_JOURNAL_BENCH_DIR").map_or_else(
        || {
            std::env::current_exe()
                .ok()
                .and_then(|p| p.parent().map(|d| d.join("journal-bench")))
                .unwrap_or_else(|| std::env::temp_dir().join("journal-bench"))
        },
        PathBuf::from,
    )
}

fn fresh_journal(name: &str) -> Journal {
    let dir = base_dir().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    Journal::create(&dir, None).expect("create the bench journal")
}

fn fresh_file(name: &str) -> File {
    let path = base_dir().join(name);
    let _ = std::fs::remove_file(&path);
    std::fs::create_dir_all(base_dir()).unwrap();
    File::create(&path).expect("create the bench file")
}

/// A record as the journal lays it out, so that the file holds the same
/// bytes.
fn framed(size: usize) -> Vec<u8> {
    let mut r = Vec::with_capacity(HEADER + size);
    for word in [0x663A_7318u32, 0, 0, size as u32] {
        r.extend_from_slice(&word.to_ne_bytes());
    }
    r.resize(HEADER + size, b'x');
    r
}

fn writer_unsynced(name: &str, size: usize, n: u64, buffer: usize) -> Rate {
    let journal = fresh_journal(name);
    let payload = vec![b'x'; size];
    let (mut writer, _) = Writer::open(&journal).unwrap();
    writer.set_buffer(buffer).unwrap();
    let start = Instant::now();
    for i in 0..n {
        writer.append(i as u32, 0, &payload).unwrap();
    }
    writer.flush().unwrap();
    Rate {
        records: n,
        bytes: n * size as u64,
        elapsed: start.elapsed(),
    }
}

fn file_unsynced(name: &str, size: usize, n: u64, buffer: usize) -> Rate {
    let record = framed(size);
    let file = fresh_file(name);
    let start = Instant::now();
    if buffer == 0 {
        let mut file = &file;
        for _ in 0..n {
            file.write_all(&record).unwrap();
        }
    } else {
        let mut out = BufWriter::with_capacity(buffer, &file);
        for _ in 0..n {
            out.write_all(&record).unwrap();
        }
        out.flush().unwrap();
    }
    Rate {
        records: n,
        bytes: n * size as u64,
        elapsed: start.elapsed(),
    }
}

/// Runs `append` from `threads` threads until `n` records or the budget,
/// whichever comes first.
fn from_threads(
    threads: u64,
    size: usize,
    n: u64,
    budget: Duration,
    append: impl Fn(&[u8]) + Send + Sync + 'static,
) -> Rate {
    let append = Arc::new(append);
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let append = Arc::clone(&append);
            std::thread::spawn(move || {
                let payload = vec![b'x'; size];
                let mut done = 0u64;
                while done < n / threads && start.elapsed() < budget {
                    append(&payload);
                    done += 1;
                }
                done
            })
        })
        .collect();
    let records: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    Rate {
        records,
        bytes: records * size as u64,
        elapsed: start.elapsed(),
    }
}

fn appender(durability: Durability, threads: u64, size: usize, run: &Run) -> Rate {
    let name = "appender";
    let journal = fresh_journal(name);
    let (appender, _) = Appender::open(&journal, durability).unwrap();
    let rate = from_threads(threads, size, u64::MAX, run.budget(), move |p| {
        appender.append(0, 0, p).unwrap();
    });
    let _ = std::fs::remove_dir_all(base_dir().join(name));
    rate
}

/// A file that one thread at a time writes to and syncs.
fn file_every_record(threads: u64, size: usize, run: &Run) -> Rate {
    let file = Mutex::new(fresh_file("every"));
    let record = framed(size);
    from_threads(threads, size, u64::MAX, run.budget(), move |_| {
        let file = file.lock().unwrap();
        (&*file).write_all(&record).unwrap();
        file.sync_data().unwrap();
    })
}

/// Group commit on a plain file, as databases do it: write under the
/// mutex, then sync everything written so far unless a sync is under way,
/// in which case wait for it and look again.
struct FileGroup {
    file: File,
    state: Mutex<GroupState>,
    synced: Condvar,
}

#[derive(Default)]
struct GroupState {
    written: u64,
    synced: u64,
    syncing: bool,
}

impl FileGroup {
    fn append(&self, record: &[u8]) {
        let mut state = self.state.lock().unwrap();
        (&self.file).write_all(record).unwrap();
        state.written += 1;
        let mine = state.written;
        while state.synced < mine {
            if state.syncing {
                state = self.synced.wait(state).unwrap();
                continue;
            }
            state.syncing = true;
            let upto = state.written;
            drop(state);
            self.file.sync_data().unwrap();
            state = self.state.lock().unwrap();
            state.synced = upto;
            state.syncing = false;
            self.synced.notify_all();
        }
    }
}

fn file_group(threads: u64, size: usize, run: &Run) -> Rate {
    let group = FileGroup {
        file: fresh_file("group"),
        state: Mutex::default(),
        synced: Condvar::new(),
    };
    let record = framed(size);
    from_threads(threads, size, u64::MAX, run.budget(), move |_| {
        group.append(&record);
    })
}

/// Reads every record of every segment with `read_range`, as a reader
/// that keeps no checkpoint; the first read of a segment builds its index
/// (jlog's readers do, lazily), so that is counted.
fn replay(journal: &Journal, size: usize) -> Rate {
    let start = Instant::now();
    let (mut records, mut bytes) = (0u64, 0u64);
    for log in 0..=journal.meta().unwrap().storage_log {
        let n = journal.records_in(log).unwrap();
        if n == 0 {
            continue;
        }
        let first = LogId { log, marker: 1 };
        for record in journal.read_range(first, LogId { log, marker: n }).unwrap() {
            assert_eq!(record.payload.len(), size);
            records += 1;
            bytes += record.payload.len() as u64;
        }
    }
    Rate {
        records,
        bytes,
        elapsed: start.elapsed(),
    }
}

/// Reads everything as a new subscriber does: `read_interval`,
/// `read_range`, and a checkpoint (one `fdatasync`) per interval.
fn replay_subscriber(journal: &Journal, size: usize) -> Rate {
    let _ = journal.remove_subscriber("replay");
    journal.add_subscriber("replay", Start::Begin).unwrap();
    let start = Instant::now();
    let (mut records, mut bytes) = (0u64, 0u64);
    while let Some((first, last)) = journal.read_interval("replay").unwrap() {
        for record in journal.read_range(first, last).unwrap() {
            assert_eq!(record.payload.len(), size);
            records += 1;
            bytes += record.payload.len() as u64;
        }
        journal.set_checkpoint("replay", last).unwrap();
    }
    Rate {
        records,
        bytes,
        elapsed: start.elapsed(),
    }
}

/// The median time of `fdatasync` after a 116-byte write, which bounds
/// every synced row: printed before and after the table, as it drifts.
fn sync_latency(run: &Run) -> Duration {
    let mut file = fresh_file("latency");
    let record = framed(100);
    let mut times: Vec<Duration> = (0..if run.test { 20 } else { 300 })
        .map(|_| {
            file.write_all(&record).unwrap();
            let start = Instant::now();
            file.sync_data().unwrap();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

/// Reads the plain file back in 4 MiB chunks (a segment's size), copying
/// each record's payload out as `read_range` does.
fn file_replay(name: &str, size: usize) -> Rate {
    let mut file = File::open(base_dir().join(name)).unwrap();
    let start = Instant::now();
    let (mut records, mut bytes) = (0u64, 0u64);
    let mut chunk = vec![0u8; 4 << 20];
    let mut held = 0;
    loop {
        let got = file.read(&mut chunk[held..]).unwrap();
        if got == 0 {
            break;
        }
        held += got;
        let mut at = 0;
        while at + HEADER <= held {
            let len = u32::from_ne_bytes(chunk[at + 12..at + 16].try_into().unwrap()) as usize;
            if at + HEADER + len > held {
                break;
            }
            let payload = chunk[at + HEADER..at + HEADER + len].to_vec();
            assert_eq!(payload.len(), size);
            records += 1;
            bytes += len as u64;
            at += HEADER + len;
        }
        chunk.copy_within(at..held, 0);
        held -= at;
    }
    Rate {
        records,
        bytes,
        elapsed: start.elapsed(),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let run = Run {
        test: args.iter().any(|a| a == "--test"),
        filters: args.into_iter().filter(|a| !a.starts_with('-')).collect(),
    };
    println!("journals in {}", base_dir().display());
    println!("fdatasync before: {:?} (median)", sync_latency(&run));
    println!();
    println!(
        "| record | case | threads | journal msg/s | journal MB/s | file msg/s | journal ÷ file |"
    );
    println!("|---|---|---|---|---|---|---|");
    for size in SIZES {
        let n = run.records(size);
        if run.wants("unbuffered") {
            let (journal, file) = run.pair(
                || writer_unsynced("unbuffered", size, n, 0),
                || file_unsynced("unbuffered.file", size, n, 0),
            );
            row(size, "unsynced, each record written", 1, &journal, &file);
        }
        if run.wants("buffered") || run.wants("replay") {
            let (journal, file) = run.pair(
                || writer_unsynced("buffered", size, n, BUFFER),
                || file_unsynced("buffered.file", size, n, BUFFER),
            );
            if run.wants("buffered") {
                row(size, "unsynced, 64 KiB buffer", 1, &journal, &file);
            }
        }
        for threads in [1, 4] {
            if run.wants("every") {
                let (journal, file) = run.pair(
                    || appender(Durability::EveryRecord, threads, size, &run),
                    || file_every_record(threads, size, &run),
                );
                row(size, "fdatasync every record", threads, &journal, &file);
            }
        }
        for threads in THREADS {
            if run.wants("group") {
                let (journal, file) = run.pair(
                    || appender(GROUP, threads, size, &run),
                    || file_group(threads, size, &run),
                );
                row(size, "group commit (1 ms)", threads, &journal, &file);
            }
        }
        if run.wants("replay") {
            // What the last buffered round wrote; the file is read in
            // turn, so the page cache serves both.
            let journal = Journal::open(&base_dir().join("buffered")).unwrap();
            let first = replay(&journal, size);
            let file = file_replay("buffered.file", size);
            row(size, "replay, read_range", 1, &first, &file);
            let subscriber = replay_subscriber(&journal, size);
            row(size, "replay again, as a subscriber", 1, &subscriber, &file);
        }
    }
    println!();
    println!("fdatasync after: {:?} (median)", sync_latency(&run));
    let _ = std::fs::remove_dir_all(base_dir());
}
