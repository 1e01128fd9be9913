#![no_main]
//! Decodes a sequence of journal operations (appends, reads, checkpoints,
//! subscribers, reopening, crashes) from the input and runs it against a
//! real journal and its in-memory model; any disagreement panics with the
//! sequence. `eccluster::journal::model` describes the model;
//! tests/journal_model.rs runs the same driver on seeded inputs.

use eccluster::journal::model;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let ops = model::decode(data);
    if let Err(failure) = model::run(&ops) {
        panic!("{}", model::describe(&ops, &failure));
    }
});
