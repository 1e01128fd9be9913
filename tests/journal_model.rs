//! The journal against its in-memory model (`eccluster::journal::model`
//! explains both): many seeds, each a few hundred random appends, reads,
//! checkpoints, subscriber changes, reopenings and crashes.
//!
//! A failure prints its seed, which `ECC_JOURNAL_MODEL_SEED` replays alone,
//! the operations (shrunk to fewer that still fail, and in full), and the
//! input as hex, which the fuzz target `journal_model` takes as a file.
//! `ECC_JOURNAL_MODEL_SEEDS` sets how many seeds run.

use eccluster::journal::model;

const SEED_VAR: &str = "ECC_JOURNAL_MODEL_SEED";
const SEEDS_VAR: &str = "ECC_JOURNAL_MODEL_SEEDS";

/// Bytes of input per seed: enough for the driver's 300 operations at most.
const INPUT_LEN: usize = 1200;

fn check_seed(seed: u64) -> model::Stats {
    let input = model::random_input(seed, INPUT_LEN);
    let ops = model::decode(&input);
    let failure = match model::run(&ops) {
        Ok(stats) => return stats,
        Err(failure) => failure,
    };
    {
        let shrunk = model::shrink(&ops, 400);
        let shrunk_report = match model::run(&shrunk) {
            Err(f) => model::describe(&shrunk, &f),
            Ok(_) => "(shrinking lost the failure)\n".to_string(),
        };
        let hex: String = input.iter().map(|b| format!("{b:02x}")).collect();
        panic!(
            "seed {seed} fails ({SEED_VAR}={seed} replays it): {failure}\n\
             shrunk to {} operations:\n{shrunk_report}\n\
             all {} operations:\n{}\ninput (hex): {hex}",
            shrunk.len(),
            ops.len(),
            model::describe(&ops, &failure),
        );
    }
}

#[test]
fn the_journal_agrees_with_its_model() {
    if let Ok(seed) = std::env::var(SEED_VAR) {
        check_seed(seed.parse().expect("a seed is a number"));
        return;
    }
    let seeds: u64 = std::env::var(SEEDS_VAR).map_or(64, |n| n.parse().expect("a count"));
    let mut total = model::Stats::default();
    for seed in 0..seeds {
        total += check_seed(seed);
    }
    eprintln!("{seeds} seeds: {total:?}");
    // The seeds reach what the model is for: a test whose runs never
    // crash, or never tear a record, would pass for nothing.
    let model::Stats {
        appended,
        rotations,
        crashes,
        records_lost,
        torn_tails_cut,
        checkpoints_pulled_back,
        segments_removed,
        records_read,
    } = total;
    for (what, n) in [
        ("appended", appended),
        ("rotations", rotations),
        ("crashes", crashes),
        ("records lost", records_lost),
        ("torn tails cut", torn_tails_cut),
        ("checkpoints pulled back", checkpoints_pulled_back),
        ("segments removed", segments_removed),
        ("records read", records_read),
    ] {
        assert!(n >= seeds.min(10), "only {n} {what} in {seeds} seeds");
    }
}

/// Every kind of operation appears in the seeds' sequences, so that none
/// is silently never run.
#[test]
fn the_seeds_run_every_kind_of_operation() {
    let mut seen = std::collections::HashSet::new();
    for seed in 0..8 {
        for op in model::decode(&model::random_input(seed, INPUT_LEN)) {
            seen.insert(std::mem::discriminant(&op));
        }
    }
    assert_eq!(seen.len(), 11, "kinds of operation decoded");
}
