//! Journal throughput, to set beside libjlog's (ecosystem-notes §4.4:
//! 172–179k msg/s written unsynced, ~496k msg/s read + checkpoint, for
//! 200k × 256 B on ext4).
//!
//! Appends of 256 B: unsynced through a bare `Writer` (what jlog does),
//! then through an `Appender` with one fdatasync per record and with group
//! commit at 1 ms and 10 ms, from 1 and 4 threads. A synced case that
//! would take long (one sync per record, or one thread waiting out every
//! group interval) stops after a time budget; the table says how many
//! records it wrote. Then read + checkpoint of what the unsynced case
//! wrote, a range (one segment's interval) at a time and record by record.
//! Prints a markdown table.
//!
//! `ECC_JOURNAL_BENCH_DIR` chooses where the journals go (by default next
//! to this binary, on the build's disk: a tmpfs would make syncs free).
//! `-- --test` (CI's smoke run) does a few thousand records per case.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eccluster::journal::format::LogId;
use eccluster::journal::{Appender, Durability, Journal, Start, Writer};

const RECORD: usize = 256;

struct Row {
    case: String,
    records: u64,
    elapsed: Duration,
}

impl Row {
    fn print(&self) {
        let secs = self.elapsed.as_secs_f64();
        let rate = self.records as f64 / secs;
        println!(
            "| {} | {} | {:.2} | {:.0} | {:.1} |",
            self.case,
            self.records,
            secs,
            rate,
            rate * RECORD as f64 / 1e6
        );
    }
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

fn fresh(name: &str) -> Journal {
    let dir = base_dir().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    Journal::create(&dir, None).expect("create the bench journal")
}

fn unsynced(n: u64) -> (Row, Journal) {
    let journal = fresh("unsynced");
    let payload = [b'x'; RECORD];
    let (mut writer, _) = Writer::open(&journal).unwrap();
    let start = Instant::now();
    for i in 0..n {
        writer.append(i as u32, 0, &payload).unwrap();
    }
    let elapsed = start.elapsed();
    (
        Row {
            case: "Writer, unsynced (as jlog), 1 thread".into(),
            records: n,
            elapsed,
        },
        journal,
    )
}

fn synced(name: &str, durability: Durability, threads: u64, n: u64, budget: Duration) -> Row {
    let journal = fresh(name);
    let (appender, _) = Appender::open(&journal, durability).unwrap();
    let appender = Arc::new(appender);
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let appender = Arc::clone(&appender);
            std::thread::spawn(move || {
                let payload = [b'x'; RECORD];
                let mut done = 0u64;
                while done < n / threads && start.elapsed() < budget {
                    appender.append(0, 0, &payload).unwrap();
                    done += 1;
                }
                done
            })
        })
        .collect();
    let records = handles.into_iter().map(|h| h.join().unwrap()).sum();
    let elapsed = start.elapsed();
    drop(appender);
    let _ = std::fs::remove_dir_all(base_dir().join(name));
    Row {
        case: format!("Appender, {durability:?}, {threads} thread(s)"),
        records,
        elapsed,
    }
}

/// Reads everything as a new subscriber, checkpointing after each interval
/// (as jlog's readers do), record by record or a range at a time; stops
/// after `budget`.
fn read_and_checkpoint(journal: &Journal, ranges: bool, budget: Duration) -> Row {
    let name = if ranges { "ranges" } else { "single" };
    journal.add_subscriber(name, Start::Begin).unwrap();
    let start = Instant::now();
    let mut records = 0u64;
    while let Some((first, last)) = journal.read_interval(name).unwrap() {
        if start.elapsed() > budget {
            break;
        }
        if ranges {
            for record in journal.read_range(first, last).unwrap() {
                assert_eq!(record.payload.len(), RECORD);
                records += 1;
            }
        } else {
            for marker in first.marker..=last.marker {
                let id = LogId {
                    log: first.log,
                    marker,
                };
                assert_eq!(journal.read(id).unwrap().payload.len(), RECORD);
                records += 1;
            }
        }
        journal.set_checkpoint(name, last).unwrap();
    }
    Row {
        case: if ranges {
            "read_range + checkpoint per interval".into()
        } else {
            "read per record + checkpoint per interval".into()
        },
        records,
        elapsed: start.elapsed(),
    }
}

fn main() {
    let test = std::env::args().any(|a| a == "--test");
    let (n, budget) = if test {
        (2_000, Duration::from_millis(300))
    } else {
        (200_000, Duration::from_secs(5))
    };
    println!("journals in {}", base_dir().display());
    println!();
    println!("| case | records | s | msg/s | MB/s |");
    println!("|---|---|---|---|---|");
    let (row, journal) = unsynced(n);
    row.print();
    for threads in [1, 4] {
        synced("every", Durability::EveryRecord, threads, n, budget).print();
        for ms in [1, 10] {
            let durability = Durability::Group {
                interval: Duration::from_millis(ms),
            };
            synced("group", durability, threads, n, budget).print();
        }
    }
    read_and_checkpoint(&journal, true, budget).print();
    read_and_checkpoint(&journal, false, budget).print();
    let _ = std::fs::remove_dir_all(base_dir());
}
