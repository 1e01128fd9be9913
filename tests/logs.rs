//! The log service as a node's console shows it: `cluster show logs` over
//! journals written by libjlog and by this library.

mod common;
use common::TempDir;

use eccluster::config::{Format, LoadedConfig};
use eccluster::journal::{Journal, Start, Writer};
use eccluster::node::Node;

fn node_publishing(logs: &[(&str, &std::path::Path)]) -> Node {
    let entries: String = logs
        .iter()
        .map(|(name, dir)| format!("{name} = {:?}\n", dir.display().to_string()))
        .collect();
    let text = format!("[cluster]\nnodename = \"l1\"\n[cluster.logs]\n{entries}");
    let config = LoadedConfig::parse(&text, Format::Toml)
        .unwrap_or_else(|e| panic!("{e}\n{text}"))
        .config;
    Node::new(config)
}

#[test]
fn cluster_show_logs_lists_sizes_and_checkpoints_in_the_reference_format() {
    let dir = TempDir::new("logs");
    // The libjlog journal, as its README describes it.
    let vector = dir.0.join("mainlog");
    std::fs::create_dir_all(&vector).unwrap();
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/testdata/jlog/written-by-libjlog");
    let mut bytes = 0;
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        bytes += std::fs::copy(entry.path(), vector.join(entry.file_name())).unwrap();
    }
    // One written here, with a subscriber that has read two records.
    let ours = dir.0.join("paniclog");
    let j = Journal::create(&ours, None).unwrap();
    j.add_subscriber("master", Start::Begin).unwrap();
    let (mut w, _) = Writer::open(&j).unwrap();
    w.append(1, 0, b"one").unwrap();
    let second = w.append(2, 0, b"two").unwrap();
    w.append(3, 0, b"three").unwrap();
    w.sync().unwrap();
    j.set_checkpoint("master", second).unwrap();
    let ours_bytes: u64 = std::fs::read_dir(&ours)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    let missing = dir.0.join("bouncelog");

    let node = node_publishing(&[
        ("mainlog", &vector),
        ("paniclog", &ours),
        ("bouncelog", &missing),
    ]);
    assert_eq!(
        node.console_exec("cluster show logs").unwrap(),
        format!(
            "mainlog\n\t[on disk: {bytes} bytes]\n\
             \t[subscriber: 'aggregator' @ 00000000:00000005]\n\
             \t[subscriber: 'master' @ 00000000:00000000]\n\
             paniclog\n\t[on disk: {ours_bytes} bytes]\n\
             \t[subscriber: 'master' @ 00000000:00000002]\n\
             bouncelog\n\t[on disk: 0 bytes]\n"
        )
    );
}

#[test]
fn a_logger_appends_through_its_destination_and_the_console_shows_it() {
    let dir = TempDir::new("logs-append");
    let journal = dir.0.join("mainlog.cluster");
    let node = node_publishing(&[("mainlog", &journal)]);
    let writer = node
        .open_log(
            &format!("cluster://{}=>master", journal.display()),
            eccluster::journal::Durability::Group {
                interval: std::time::Duration::from_millis(1),
            },
        )
        .expect("the destination opens");
    let ids: Vec<String> = ["first line", "second line"]
        .iter()
        .map(|l| writer.append(l.as_bytes()).unwrap().to_string())
        .collect();
    assert_eq!(ids, ["00000000:00000001", "00000000:00000002"]);
    let shown = node.console_exec("cluster show logs").unwrap();
    assert!(
        shown.starts_with("mainlog\n\t[on disk: ")
            && shown.ends_with("\t[subscriber: 'master' @ 00000000:00000000]\n"),
        "{shown}"
    );
    let e = node
        .open_log(
            "cluster://not/absolute=>master",
            eccluster::journal::Durability::EveryRecord,
        )
        .unwrap_err();
    assert!(!e.is_empty());
}
