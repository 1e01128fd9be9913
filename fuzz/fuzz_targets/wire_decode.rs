#![no_main]
//! Feeds arbitrary bytes to the message decoder and to envelope opening,
//! without a key and with one; none of them may panic.

use eccluster::core::wire::decode_message;
use eccluster::io::seal::{Key, Sealer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_message(data);
    for sealer in [
        Sealer::new(None),
        Sealer::new(Some(Key::from_bytes([0x42; 32]))),
    ] {
        // An opened envelope's body is what a node decodes next.
        if let Ok(envelope) = sealer.open(data) {
            let _ = decode_message(&envelope.body);
        }
    }
});
