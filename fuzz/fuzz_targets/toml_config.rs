#![no_main]
//! Feeds arbitrary UTF-8 to the TOML configuration reader; it must never panic.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(text) = eccluster_fuzz::admissible(data) {
        let _ = eccluster::config::LoadedConfig::parse(text, eccluster::config::Format::Toml);
    }
});
