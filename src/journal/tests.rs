//! The journal against libjlog's own files, and against itself.

use super::*;

/// A scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("ecc-journal-{}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn id(log: u32, marker: u32) -> LogId {
    LogId { log, marker }
}

/// `testdata/jlog/written-by-libjlog`, copied (readers write index files).
fn libjlog_copy(tag: &str) -> Scratch {
    let src =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/testdata/jlog/written-by-libjlog");
    let scratch = Scratch::new(tag);
    for entry in fs::read_dir(&src).expect("the jlog test vector") {
        let entry = entry.unwrap();
        fs::copy(entry.path(), scratch.0.join(entry.file_name())).unwrap();
    }
    scratch
}

/// `expected-records.txt`: (length, tv_sec, tv_usec, payload) per record.
fn expected_records() -> Vec<(usize, u32, u32, Vec<u8>)> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/testdata/jlog/expected-records.txt");
    fs::read_to_string(path)
        .expect("expected-records.txt")
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split(' ').collect();
            let payload = (0..f[4].len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&f[4][i..i + 2], 16).unwrap())
                .collect();
            (
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
                f[3].parse().unwrap(),
                payload,
            )
        })
        .collect()
}

/// Everything after `name`'s checkpoint, interval by interval, checkpointing
/// as a reader does.
fn drain(j: &Journal, name: &str) -> Vec<Record> {
    let mut out = Vec::new();
    while let Some((first, last)) = j.read_interval(name).unwrap() {
        for marker in first.marker..=last.marker {
            out.push(j.read(id(first.log, marker)).unwrap());
        }
        j.set_checkpoint(name, last).unwrap();
    }
    out
}

#[test]
fn the_libjlog_vector_reads_as_described() {
    let copy = libjlog_copy("vector");
    let j = Journal::open(&copy.0).unwrap();
    assert_eq!(
        j.subscribers().unwrap(),
        [
            ("aggregator".to_string(), id(0, 5)),
            ("master".to_string(), id(0, 0))
        ]
    );
    assert_eq!(j.last_written().unwrap().to_string(), "00000003:00000016");
    let (first, last) = j.read_interval("aggregator").unwrap().unwrap();
    assert_eq!(
        (first.to_string(), last.to_string()),
        ("00000000:00000006".into(), "00000000:0000001c".into())
    );

    let expected = expected_records();
    assert_eq!(expected.len(), 100);
    let read = drain(&j, "master");
    assert_eq!(read.len(), 100);
    for (i, (r, (len, sec, usec, payload))) in read.iter().zip(&expected).enumerate() {
        assert_eq!(
            (r.payload.len(), r.tv_sec, r.tv_usec, &r.payload),
            (*len, *sec, *usec, payload),
            "record {i} at {}",
            r.id
        );
    }
    // The aggregator, from its checkpoint, gets the rest.
    let rest = drain(&j, "aggregator");
    assert_eq!(rest.len(), 95);
    assert_eq!(rest[0].payload, expected[5].3);
    // The missing indexes were built, and closed for the closed segments.
    for log in 0..3 {
        let idx = fs::read(copy.0.join(format!("{log:08x}.idx"))).unwrap();
        assert!(decode_index(&idx).1, "segment {log} closed");
    }
}

#[test]
fn a_missing_or_stale_index_is_rebuilt() {
    let copy = libjlog_copy("noidx");
    fs::remove_file(copy.0.join("00000000.idx")).unwrap();
    // A torn index (a crash mid-write) is read as far as it goes.
    let idx3 = copy.0.join("00000003.idx");
    let bytes = fs::read(&idx3).unwrap();
    fs::write(&idx3, &bytes[..21]).unwrap();
    let j = Journal::open(&copy.0).unwrap();
    assert_eq!(j.records_in(0).unwrap(), 28);
    assert_eq!(j.records_in(3).unwrap(), 22);
    assert_eq!(drain(&j, "master").len(), 100);
}

#[test]
fn written_records_read_back_across_segments_and_consumed_segments_go() {
    let dir = Scratch::new("write");
    let j = Journal::create(&dir.0, Some(256)).unwrap();
    assert!(j.add_subscriber("agg", Start::Begin).unwrap());
    assert!(!j.add_subscriber("agg", Start::End).unwrap(), "exists");
    let (mut w, torn) = Writer::open(&j).unwrap();
    assert_eq!(torn, None);
    let mut ids = Vec::new();
    for i in 0..50u32 {
        ids.push(
            w.append(1_700_000_000 + i, i, format!("line {i}").as_bytes())
                .unwrap(),
        );
    }
    w.sync().unwrap();
    assert!(j.meta().unwrap().storage_log >= 3, "rotated: {ids:?}");
    assert_eq!(j.last_written().unwrap(), *ids.last().unwrap());

    // A subscriber added at the end sees only what comes next.
    assert!(j.add_subscriber("late", Start::End).unwrap());
    assert_eq!(j.read_interval("late").unwrap(), None);

    let read = drain(&j, "agg");
    let lines: Vec<String> = read
        .iter()
        .map(|r| String::from_utf8(r.payload.clone()).unwrap())
        .collect();
    assert_eq!(
        lines,
        (0..50).map(|i| format!("line {i}")).collect::<Vec<_>>()
    );
    assert_eq!(read.iter().map(|r| r.id).collect::<Vec<_>>(), ids);

    // "late" holds the last segment; the others are consumed by everyone.
    let segments_before = j.segments().unwrap().len();
    let removed = j.remove_consumed().unwrap();
    assert_eq!(removed, segments_before - 1);
    let next = w.append(1, 2, b"after").unwrap();
    assert_eq!(j.read_interval("late").unwrap(), Some((next, next)));
    assert_eq!(j.read(next).unwrap().payload, b"after");

    assert!(j.remove_subscriber("late").unwrap());
    assert!(!j.remove_subscriber("late").unwrap());
    assert_eq!(
        j.subscribers().unwrap(),
        [("agg".to_string(), *ids.last().unwrap())]
    );
}

#[test]
fn a_torn_tail_is_never_served_and_the_writer_cuts_it() {
    let dir = Scratch::new("torn");
    let j = Journal::create(&dir.0, None).unwrap();
    j.add_subscriber("r", Start::Begin).unwrap();
    let (mut w, _) = Writer::open(&j).unwrap();
    for i in 0..3u32 {
        w.append(i, 0, b"whole").unwrap();
    }
    w.sync().unwrap();
    drop(w);
    // A crash mid-append: a header promising 100 bytes, and 7 of them.
    let seg = dir.0.join("00000000");
    let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
    let header = Header {
        tv_sec: 9,
        tv_usec: 9,
        mlen: 100,
    };
    f.write_all(&header.encode()).unwrap();
    f.write_all(b"partial").unwrap();
    drop(f);
    assert_eq!(j.records_in(0).unwrap(), 3, "readers stop before it");

    let (mut w, torn) = Writer::open(&j).unwrap();
    let torn = torn.expect("the torn record is found");
    assert_eq!(torn.bytes_cut, (HEADER_LEN + 7) as u64);
    assert_eq!(
        torn.to_string(),
        format!(
            "segment 00000000: cut 23 bytes of a torn record at offset {}",
            torn.at
        )
    );
    assert_eq!(w.append(10, 0, b"next").unwrap(), id(0, 4));
    let payloads: Vec<Vec<u8>> = drain(&j, "r").into_iter().map(|r| r.payload).collect();
    assert_eq!(payloads, [&b"whole"[..], b"whole", b"whole", b"next"]);

    // Bytes that are not a header at all are cut the same way.
    drop(w);
    let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(&[0xff; 40]).unwrap();
    drop(f);
    let (_, torn) = Writer::open(&j).unwrap();
    assert_eq!(torn.map(|t| t.bytes_cut), Some(40));
}

#[test]
fn bad_input_names_what_is_wrong() {
    let dir = Scratch::new("bad");
    let e = Journal::open(&dir.0).unwrap_err();
    assert!(
        e.0.contains("metastore") && e.0.contains("cannot open"),
        "{e}"
    );
    fs::write(dir.0.join("metastore"), [0u8; 16]).unwrap();
    let e = Journal::open(&dir.0).unwrap_err();
    assert!(e.0.contains("magic"), "{e}");
    fs::remove_file(dir.0.join("metastore")).unwrap();
    let j = Journal::create(&dir.0, None).unwrap();
    let e = j.checkpoint("nobody").unwrap_err();
    assert_eq!(e.0, "no subscriber 'nobody'");
    assert!(j.add_subscriber("", Start::Begin).is_err());
    let e = j.read(id(0, 1)).unwrap_err();
    assert_eq!(e.0, "no record 00000000:00000001");
    fs::write(dir.0.join(checkpoint_name("short")), [1, 2, 3]).unwrap();
    let e = j.checkpoint("short").unwrap_err();
    assert!(e.0.contains("8 bytes, not 3"), "{e}");
}

#[test]
fn a_range_reads_as_its_records_one_by_one() {
    let dir = Scratch::new("range");
    let j = Journal::create(&dir.0, Some(1024)).unwrap();
    let (mut w, _) = Writer::open(&j).unwrap();
    for i in 0..100u32 {
        w.append(
            i,
            i * 2,
            format!("record {i}").repeat(i as usize % 7).as_bytes(),
        )
        .unwrap();
    }
    j.add_subscriber("r", Start::Begin).unwrap();
    let mut seen = 0;
    while let Some((first, last)) = j.read_interval("r").unwrap() {
        let range = j.read_range(first, last).unwrap();
        let one_by_one: Vec<Record> = (first.marker..=last.marker)
            .map(|marker| j.read(id(first.log, marker)).unwrap())
            .collect();
        assert_eq!(range, one_by_one);
        seen += range.len();
        j.set_checkpoint("r", last).unwrap();
    }
    assert_eq!(seen, 100);
    assert!(j.read_range(id(0, 2), id(0, 1)).is_err());
    assert!(j.read_range(id(0, 1), id(1, 1)).is_err());
    assert!(j.read_range(id(0, 1), id(0, 999)).is_err());
}

/// Five records of 64 bytes each at 0, 64, ... 256, indexed by a reader,
/// none synced; the segment is then cut at `at` as a power cut would
/// leave it, the index as the reader wrote it.
fn indexed_then_cut(dir: &Path, at: u64) -> Journal {
    let j = Journal::create(dir, None).unwrap();
    let (mut w, _) = Writer::open(&j).unwrap();
    for i in 0..5u32 {
        w.append(i, 0, &[b'x'; 48]).unwrap();
    }
    assert_eq!(j.records_in(0).unwrap(), 5);
    drop(w);
    let seg = OpenOptions::new()
        .write(true)
        .open(dir.join("00000000"))
        .unwrap();
    seg.set_len(at).unwrap();
    j
}

#[test]
fn an_index_naming_records_a_power_cut_took_is_not_trusted() {
    // Cut inside the fourth record: the index names it and the fifth.
    let dir = Scratch::new("stale-cut");
    let j = indexed_then_cut(&dir.0, 3 * 64 + 20);
    assert_eq!(j.records_in(0).unwrap(), 3);
    assert!(j.read(id(0, 4)).is_err());

    // Cut after the first record, then zeros where the file system lost a
    // block's data but kept its size: the index's last records fall in
    // the zeros, the second before them.
    let dir = Scratch::new("stale-zeros");
    let j = indexed_then_cut(&dir.0, 64);
    let mut seg = OpenOptions::new()
        .append(true)
        .open(dir.0.join("00000000"))
        .unwrap();
    seg.write_all(&[0; 300]).unwrap();
    assert_eq!(j.records_in(0).unwrap(), 1);
    assert!(j.read(id(0, 2)).is_err());
    assert_eq!(j.read(id(0, 1)).unwrap().payload, [b'x'; 48]);
}

#[test]
fn a_writer_rebuilds_an_index_naming_records_a_power_cut_took() {
    // Records 2 to 5 lost whole: nothing is torn. The record appended next
    // lands at 64 and carries, in its payload, whole records where the
    // stale index says records 4 and 5 are: a reader trusting that index
    // would serve them.
    let dir = Scratch::new("stale-writer");
    let j = indexed_then_cut(&dir.0, 64);
    let (mut w, torn) = Writer::open(&j).unwrap();
    assert_eq!(torn, None);
    let fake = Header {
        tv_sec: 99,
        tv_usec: 99,
        mlen: 48,
    }
    .encode();
    let mut payload = vec![b'y'; 300];
    for at in (48..payload.len() - HEADER_LEN).step_by(64) {
        payload[at..at + HEADER_LEN].copy_from_slice(&fake);
    }
    assert_eq!(w.append(5, 0, &payload).unwrap(), id(0, 2));
    assert_eq!(j.records_in(0).unwrap(), 2);
    assert_eq!(j.read(id(0, 2)).unwrap().payload, payload);
    assert!(j.read(id(0, 3)).is_err());
}

#[test]
fn a_checkpoint_past_what_a_power_cut_left_is_pulled_back() {
    let dir = Scratch::new("pull-back");
    let j = Journal::create(&dir.0, None).unwrap();
    j.add_subscriber("r", Start::Begin).unwrap();
    j.add_subscriber("late", Start::Begin).unwrap();
    let (mut w, _) = Writer::open(&j).unwrap();
    w.append(0, 0, b"synced").unwrap();
    w.sync().unwrap();
    w.append(1, 0, b"lost").unwrap();
    w.append(2, 0, b"lost too").unwrap();
    // "r" reads and consumes records that are not durable yet.
    assert_eq!(drain(&j, "r").len(), 3);
    drop(w);
    // The power cut takes them; a writer opening gives their ids to new
    // records, which "r" must still read.
    let seg = OpenOptions::new()
        .write(true)
        .open(dir.0.join("00000000"))
        .unwrap();
    seg.set_len((HEADER_LEN + 6) as u64).unwrap();
    let (mut w, torn) = Writer::open(&j).unwrap();
    assert_eq!(torn, None);
    assert_eq!(j.checkpoint("r").unwrap(), id(0, 1));
    assert_eq!(j.checkpoint("late").unwrap(), id(0, 0), "left alone");
    assert_eq!(w.append(3, 0, b"new").unwrap(), id(0, 2));
    let payloads: Vec<Vec<u8>> = drain(&j, "r").into_iter().map(|r| r.payload).collect();
    assert_eq!(payloads, [b"new".to_vec()]);
}

#[test]
fn buffered_records_are_seen_once_written_and_keep_their_ids_across_segments() {
    let dir = Scratch::new("buffered");
    let j = Journal::create(&dir.0, Some(300)).unwrap();
    j.add_subscriber("r", Start::Begin).unwrap();
    let (mut w, _) = Writer::open(&j).unwrap();
    w.set_buffer(1 << 20).unwrap();
    let first = w.append(1, 0, b"one").unwrap();
    assert_eq!(first, id(0, 1));
    assert_eq!(j.records_in(0).unwrap(), 0, "buffered, not yet written");
    w.flush().unwrap();
    assert_eq!(j.read(first).unwrap().payload, b"one");
    // Segment changes write the buffer first: every id names its record.
    let ids: Vec<LogId> = (0..40u32)
        .map(|i| w.append(i, 0, format!("rec {i}").as_bytes()).unwrap())
        .collect();
    w.sync().unwrap();
    assert!(ids.last().unwrap().log >= 2, "rotated: {ids:?}");
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(j.read(*id).unwrap().payload, format!("rec {i}").as_bytes());
    }
    assert_eq!(drain(&j, "r").len(), 41);
    // A smaller buffer writes what it holds past its size at once, and
    // dropping the writer writes the rest.
    w.append(2, 0, b"kept").unwrap();
    w.set_buffer(0).unwrap();
    assert_eq!(drain(&j, "r").len(), 1);
    w.set_buffer(1 << 20).unwrap();
    let last = w.append(3, 0, b"at drop").unwrap();
    drop(w);
    assert_eq!(j.read(last).unwrap().payload, b"at drop");
}

#[test]
fn a_buffering_writer_holds_the_segment_until_it_writes() {
    let dir = Scratch::new("held");
    let j = Journal::create(&dir.0, None).unwrap();
    let (mut a, _) = Writer::open(&j).unwrap();
    a.set_buffer(1 << 20).unwrap();
    for i in 0..3u32 {
        assert_eq!(a.append(i, 0, b"a").unwrap(), id(0, i + 1));
    }
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let other = {
        let (j, done) = (j.clone(), std::sync::Arc::clone(&done));
        std::thread::spawn(move || {
            let (mut b, _) = Writer::open(&j).unwrap();
            let got = b.append(9, 0, b"b").unwrap();
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            got
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert!(
        !done.load(std::sync::atomic::Ordering::SeqCst),
        "another writer took the place of a buffered record"
    );
    a.flush().unwrap();
    assert_eq!(other.join().unwrap(), id(0, 4));
    // And the first writer counts the other's record before its next.
    assert_eq!(a.append(4, 0, b"a").unwrap(), id(0, 5));
    a.flush().unwrap();
    let payloads: Vec<Vec<u8>> = (1..=5).map(|m| j.read(id(0, m)).unwrap().payload).collect();
    assert_eq!(payloads, [&b"a"[..], b"a", b"a", b"b", b"a"]);
}

#[test]
fn records_across_and_larger_than_a_read_chunk_read_back_whole() {
    let dir = Scratch::new("chunks");
    let j = Journal::create(&dir.0, Some(1 << 20)).unwrap();
    let (mut w, _) = Writer::open(&j).unwrap();
    // Small records that straddle 64 KiB boundaries, and some bigger
    // than a chunk.
    let sizes = [
        1000,
        3,
        70_000,
        65_536 - HEADER_LEN,
        0,
        200_000,
        5000,
        131_072,
    ];
    let payload =
        |i: usize, len: usize| -> Vec<u8> { (0..len).map(|b| (b * 7 + i) as u8).collect() };
    let mut ids = Vec::new();
    for round in 0..3 {
        for (i, &len) in sizes.iter().enumerate() {
            let n = round * sizes.len() + i;
            ids.push((w.append(n as u32, 0, &payload(n, len)).unwrap(), n, len));
        }
    }
    w.sync().unwrap();
    drop(w);
    let check = |j: &Journal| {
        let mut seen = 0;
        for log in 0..=j.meta().unwrap().storage_log {
            let n = j.records_in(log).unwrap();
            if n == 0 {
                continue;
            }
            let range = j.read_range(id(log, 1), id(log, n)).unwrap();
            for record in range {
                let (_, k, len) = ids.iter().find(|(i, ..)| *i == record.id).unwrap();
                assert_eq!(record.payload, payload(*k, *len), "{}", record.id);
                assert_eq!(record, j.read(record.id).unwrap());
                seen += 1;
            }
        }
        assert_eq!(seen, ids.len());
    };
    check(&j);
    // Indexes rebuilt from the segments alone find the same records.
    for entry in fs::read_dir(&dir.0).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "idx") {
            fs::remove_file(path).unwrap();
        }
    }
    check(&j);
    // A big record cut short is a torn tail, found past a chunk's length.
    let last = j.meta().unwrap().storage_log;
    let seg = dir.0.join(segment_name(last));
    let size = fs::metadata(&seg).unwrap().len();
    let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
    let header = Header {
        tv_sec: 1,
        tv_usec: 1,
        mlen: 300_000,
    };
    f.write_all(&header.encode()).unwrap();
    f.write_all(&[7; 150_000]).unwrap();
    drop(f);
    let (_, torn) = Writer::open(&j).unwrap();
    assert_eq!(
        torn.map(|t| (t.at, t.bytes_cut)),
        Some((size, (HEADER_LEN + 150_000) as u64))
    );
}
