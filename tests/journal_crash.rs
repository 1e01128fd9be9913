//! Crashes of a journal's writer: a child process appends through an
//! [`Appender`] with group commit and prints every acknowledged record; the
//! parent kills it with SIGKILL mid-stream and checks that every
//! acknowledged record is there, that nothing else is (no garbage, nothing
//! out of order), and that a writer carries on after cutting a torn tail.
//! A second child runs into a file size limit, as into a full disk.
//!
//! SIGKILL leaves the page cache alone, so these tests catch an append
//! acknowledged before it was written, not one acknowledged before its
//! fdatasync: that would take a power cut (a dm-flakey device, say).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use eccluster::journal::format::LogId;
use eccluster::journal::{Appender, Durability, Journal, Start, Writer};

const CHILD_ENV: &str = "ECC_JOURNAL_CRASH_CHILD";
/// Records per thread after which the child stops (unset: it never stops).
const COUNT_ENV: &str = "ECC_JOURNAL_CRASH_COUNT";
const READER_ENV: &str = "ECC_JOURNAL_READER_CHILD";
const THREADS: u32 = 4;

/// Record `n` of thread `t` in round `round`: its number first, then bytes
/// that follow from it, of a length that varies so that a cut can fall
/// anywhere.
fn payload(round: u32, t: u32, n: u32) -> Vec<u8> {
    let mut p = format!("{round}:{t}:{n}:").into_bytes();
    let len = (n.wrapping_mul(7919) % 3000) as usize;
    p.extend((0..len).map(|i| ((i as u32 + n * 31 + t) % 251) as u8));
    p
}

/// The (round, thread, number) a payload says it is, if it is exactly what
/// [`payload`] makes of them.
fn parse(p: &[u8]) -> Option<(u32, u32, u32)> {
    let text: Vec<&[u8]> = p.splitn(4, |&b| b == b':').collect();
    let num = |b: &[u8]| std::str::from_utf8(b).ok()?.parse::<u32>().ok();
    let (round, t, n) = (num(text.first()?)?, num(text.get(1)?)?, num(text.get(2)?)?);
    (payload(round, t, n) == p).then_some((round, t, n))
}

/// The child: appends from [`THREADS`] threads as fast as it can and prints
/// `ack t n log marker` for each acknowledged record, or `err t message` and
/// stops that thread at the first error.
#[test]
#[ignore = "the child of the tests below, run with ECC_JOURNAL_CRASH_CHILD set"]
fn child() {
    let spec = std::env::var(CHILD_ENV).expect("ECC_JOURNAL_CRASH_CHILD is set by the tests");
    let mut words = spec.split(' ');
    let (dir, round, fsize) = (
        PathBuf::from(words.next().unwrap()),
        words.next().unwrap().parse::<u32>().unwrap(),
        words.next().map(|w| w.parse::<u64>().unwrap()),
    );
    if let Some(limit) = fsize {
        limit_file_size(limit);
    }
    let journal = Journal::open(&dir).unwrap();
    let (appender, _torn) = Appender::open(
        &journal,
        Durability::Group {
            interval: Duration::from_millis(1),
        },
    )
    .unwrap();
    let appender = Arc::new(appender);
    let count: u32 = std::env::var(COUNT_ENV).map_or(u32::MAX, |c| c.parse().unwrap());
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let appender = Arc::clone(&appender);
            std::thread::spawn(move || {
                for n in 0..count {
                    match appender.append(round, n, &payload(round, t, n)) {
                        // println! flushes each line: stdout is line-buffered.
                        Ok(id) => println!("ack {t} {n} {} {}", id.log, id.marker),
                        Err(e) => {
                            println!("err {t} {e}");
                            return;
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

/// Writes past `limit` bytes fail with EFBIG instead of killing the
/// process, as writes to a full disk fail with ENOSPC.
fn limit_file_size(limit: u64) {
    let rl = libc::rlimit {
        rlim_cur: limit,
        rlim_max: limit,
    };
    // SAFETY: `rl` is a valid rlimit for the call; ignoring SIGXFSZ installs
    // no handler, so no Rust code runs in signal context.
    #[allow(unsafe_code)]
    let ok = unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN) != libc::SIG_ERR
            && libc::setrlimit(libc::RLIMIT_FSIZE, &rl) == 0
    };
    assert!(ok, "cannot limit the file size");
}

/// An acknowledgement the child printed.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    Ack { t: u32, n: u32, id: LogId },
    Err { t: u32, message: String },
}

/// Runs the child for `round`; kills it once it has printed `kill_after`
/// acknowledgements and a little more (or waits for it to finish), and
/// returns what it printed. Counting acknowledgements rather than waiting a
/// fixed time keeps a slow machine from killing the child before it got
/// going.
fn run_child(dir: &Path, round: u32, kill_after: Option<usize>, fsize: Option<u64>) -> Vec<Line> {
    finish_child(start_child(dir, round, fsize, None), kill_after)
}

fn start_child(dir: &Path, round: u32, fsize: Option<u64>, count: Option<u32>) -> Child {
    let mut spec = format!("{} {round}", dir.display());
    if let Some(limit) = fsize {
        spec += &format!(" {limit}");
    }
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "--exact",
            "child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, spec)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(count) = count {
        command.env(COUNT_ENV, count.to_string());
    }
    command.spawn().expect("start the child")
}

fn finish_child(mut child: Child, kill_after: Option<usize>) -> Vec<Line> {
    let stdout = child.stdout.take().unwrap();
    let printed = Arc::new(AtomicUsize::new(0));
    // Read while it runs, so that it never blocks on a full pipe.
    let reader = {
        let printed = Arc::clone(&printed);
        std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(std::result::Result::ok)
                .inspect(|_| {
                    printed.fetch_add(1, Ordering::Relaxed);
                })
                .collect::<Vec<String>>()
        })
    };
    let status = match kill_after {
        Some(after) => {
            let deadline = Instant::now() + Duration::from_secs(120);
            while printed.load(Ordering::Relaxed) < after && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            // Then let it run on a little, so that the kill falls mid-append.
            std::thread::sleep(Duration::from_millis(20));
            child.kill().expect("SIGKILL the child");
            child.wait().unwrap();
            None
        }
        None => Some(child.wait().unwrap()),
    };
    let lines = reader.join().unwrap();
    if let Some(status) = status {
        assert!(status.success(), "the child failed: {status}");
    }
    lines
        .iter()
        // The test harness's own output ("running 1 test", and "test child
        // ... " with no line end, before our first line) is not ours.
        .filter_map(|l| {
            let at = l.find("ack ").or_else(|| l.find("err "))?;
            let w: Vec<&str> = l[at..].splitn(4, ' ').collect();
            match w.as_slice() {
                ["err", t, m1, m2] => Some(Line::Err {
                    t: t.parse().ok()?,
                    message: format!("{m1} {m2}"),
                }),
                ["ack", t, n, rest] => {
                    let (log, marker) = rest.split_once(' ')?;
                    Some(Line::Ack {
                        t: t.parse().ok()?,
                        n: n.parse().ok()?,
                        id: LogId {
                            log: log.parse().ok()?,
                            marker: marker.parse().ok()?,
                        },
                    })
                }
                _ => None,
            }
        })
        .collect()
}

/// Every record in the journal, read as a new subscriber from the
/// beginning: (id, round, thread, number); panics on a record that is not
/// one the children wrote.
fn read_all(journal: &Journal, subscriber: &str) -> Vec<(LogId, u32, u32, u32)> {
    journal.add_subscriber(subscriber, Start::Begin).unwrap();
    let mut out = Vec::new();
    while let Some((first, last)) = journal.read_interval(subscriber).unwrap() {
        for record in journal.read_range(first, last).unwrap() {
            let id = record.id;
            let (round, t, n) = parse(&record.payload)
                .unwrap_or_else(|| panic!("{id}: a record no child wrote: {:?}", record.payload));
            assert_eq!(record.tv_sec, round, "{id}: its timestamp");
            out.push((id, round, t, n));
        }
        journal.set_checkpoint(subscriber, last).unwrap();
    }
    out
}

/// Checks that `records` hold, for each round and thread, numbers 0, 1, 2,
/// ... in order, and that every acknowledged record of `round` is there at
/// its id. Returns how many records `round` left.
fn check(records: &[(LogId, u32, u32, u32)], round: u32, acks: &[Line]) -> usize {
    let mut next = std::collections::HashMap::new();
    for &(id, r, t, n) in records {
        let expected = next.entry((r, t)).or_insert(0u32);
        assert_eq!(n, *expected, "{id}: round {r} thread {t} out of order");
        *expected += 1;
    }
    let at: std::collections::HashMap<LogId, (u32, u32, u32)> = records
        .iter()
        .map(|&(id, r, t, n)| (id, (r, t, n)))
        .collect();
    for ack in acks {
        if let Line::Ack { t, n, id } = ack {
            assert_eq!(
                at.get(id),
                Some(&(round, *t, *n)),
                "acknowledged record {t}:{n} of round {round} at {id}"
            );
        }
    }
    records.iter().filter(|r| r.1 == round).count()
}

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ecc-journal-crash-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn acknowledged_appends_survive_sigkill_and_appends_carry_on() {
    let dir = scratch("kill");
    // Small segments, so that kills also fall around rotations.
    let journal = Journal::create(&dir, Some(256 * 1024)).unwrap();
    for round in 1..=4u32 {
        let acks = run_child(&dir, round, Some(300), None);
        let acked = acks
            .iter()
            .filter(|l| matches!(l, Line::Ack { .. }))
            .count();
        assert!(
            acked > 100,
            "round {round}: only {acked} acknowledged appends"
        );
        let records = read_all(&journal, &format!("round{round}"));
        let held = check(&records, round, &acks);
        assert!(
            held >= acked,
            "round {round}: {held} records, {acked} acknowledged"
        );
        eprintln!("round {round}: {acked} acknowledged, {held} in the journal");
        // A writer carries on after whatever the kill left.
        let (mut writer, torn) = Writer::open(&journal).unwrap();
        if let Some(torn) = torn {
            eprintln!("round {round}: {torn}");
        }
        let id = writer
            .append(round, 0, &payload(round, THREADS, 0))
            .unwrap();
        writer.sync().unwrap();
        assert_eq!(
            journal.read(id).unwrap().payload,
            payload(round, THREADS, 0)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_full_disk_fails_every_append_and_loses_no_acknowledged_one() {
    let dir = scratch("full");
    let journal = Journal::create(&dir, None).unwrap();
    let acks = run_child(&dir, 1, None, Some(200 * 1024));
    let failed: Vec<u32> = acks
        .iter()
        .filter_map(|l| match l {
            Line::Err { t, message } => {
                assert!(message.contains("journal"), "{message}");
                Some(*t)
            }
            Line::Ack { .. } => None,
        })
        .collect();
    assert_eq!(
        failed.len(),
        THREADS as usize,
        "every thread got the error: {acks:?}"
    );
    let acked = acks.len() - failed.len();
    assert!(acked > 10, "only {acked} appends before the disk filled");
    let records = read_all(&journal, "after");
    check(&records, 1, &acks);
    // The write cut short at the limit is a torn tail, cut off on opening.
    let (mut writer, torn) = Writer::open(&journal).unwrap();
    eprintln!("after the full disk: {torn:?}");
    let id = writer.append(2, 0, &payload(2, 0, 0)).unwrap();
    assert_eq!(journal.read(id).unwrap().payload, payload(2, 0, 0));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A reader in its own process: reads the journal in `ECC_JOURNAL_READER_CHILD`
/// as subscriber "live" while writers append, until a file `done` appears
/// and everything is read; checks every record as [`read_all`] does and
/// prints how many it read.
#[test]
#[ignore = "the reader child of the test below, run with ECC_JOURNAL_READER_CHILD set"]
fn reader_child() {
    let dir = PathBuf::from(std::env::var(READER_ENV).expect("set by the test below"));
    let journal = Journal::open(&dir).unwrap();
    let mut next = std::collections::HashMap::new();
    let mut read = 0usize;
    loop {
        // Looked at before reading, so that the last pass reads all.
        let done = dir.join("done").exists();
        while let Some((first, last)) = journal.read_interval("live").unwrap() {
            for record in journal.read_range(first, last).unwrap() {
                let id = record.id;
                let (round, t, n) = parse(&record.payload)
                    .unwrap_or_else(|| panic!("{id}: a record no writer wrote"));
                let expected = next.entry((round, t)).or_insert(0u32);
                assert_eq!(n, *expected, "{id}: writer {round} thread {t} out of order");
                *expected += 1;
                read += 1;
            }
            journal.set_checkpoint("live", last).unwrap();
        }
        if done {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    println!("read {read}");
}

#[test]
fn writers_and_a_reader_in_separate_processes_take_turns_through_jlog_locks() {
    const PER_THREAD: u32 = 300;
    let dir = scratch("locks");
    // Small segments: the writers rotate often, each finding the other has
    // moved storage_log on.
    let journal = Journal::create(&dir, Some(64 * 1024)).unwrap();
    journal.add_subscriber("live", Start::Begin).unwrap();
    let reader = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "reader_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(READER_ENV, &dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the reader");
    let writers: Vec<Child> = (1..=2)
        .map(|w| start_child(&dir, w, None, Some(PER_THREAD)))
        .collect();
    let acks: Vec<Vec<Line>> = writers.into_iter().map(|c| finish_child(c, None)).collect();
    std::fs::write(dir.join("done"), b"").unwrap();
    let out = reader.wait_with_output().unwrap();
    assert!(out.status.success(), "the reader failed: {}", out.status);
    let total = (2 * THREADS * PER_THREAD) as usize;
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("read {total}")),
        "the reader read all {total}: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let records = read_all(&journal, "after");
    assert_eq!(records.len(), total);
    let mut ids: Vec<LogId> = records.iter().map(|r| r.0).collect();
    ids.dedup();
    assert_eq!(ids.len(), total, "no id given twice");
    for (w, acks) in (1..=2).zip(&acks) {
        assert_eq!(acks.len(), (THREADS * PER_THREAD) as usize, "writer {w}");
        check(&records, w, acks);
    }
    assert!(
        journal.meta().unwrap().storage_log > 2,
        "the writers rotated"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
