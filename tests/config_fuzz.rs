//! A deterministic mutation fuzzer for both configuration readers: whatever
//! the input, parsing returns a configuration or errors, never panics, and
//! every error's line lies within the input.
//!
//! `ECC_FUZZ_ITERS` raises the number of mutants per seed input;
//! `ECC_FUZZ_SEED` replays a particular run.

use std::panic::{AssertUnwindSafe, catch_unwind};

use eccluster::config::{ConfigErrors, Format, LoadedConfig};

const CONF: &str = include_str!("../examples/config/ecelerity-cluster.conf");
const TOML: &str = include_str!("../examples/config/ecelerity-cluster.toml");

/// A small input using more of the grammar than the reference file does.
const EXTRA: &str = r#"
cluster {
  nodename = "a" heartbeats_per_sec = 2
  logs = [ "odd key" = '/x' , b = c ]
  Replicate "cache1" { type = "cache" max_size = 10 parameters = "snapshot;connect" }
  Topology "2001:db8::/32" { interface = eth0 cidrmask = 64 }
}
msgc_server { peers = [ a = "127.0.0.1:4802" b = "::1" ] }
Binding_Group "g" { Binding "b" { Bind_Address = 10.0.0.1 Enable_Duravip = true } }
ESMTP_Listener { Listen "10.0.0.2:25" { Duravip_Follow = b } }
/* a block comment */ Logs { Manager "m" { Node "n" { Subscriber = ( m master ) } } }
"#;

const EXTRA_TOML: &str = r#"
[cluster]
nodename = "a"
heartbeats_per_sec = 2.5
logs = { "odd key" = "/x", b = "c" }
[cluster.replicate.cache1]
type = "cache"
max_size = 10
[msgc_server.peers]
a = "127.0.0.1:4802"
[binding_group.g.binding.b]
bind_address = "10.0.0.1"
enable_duravip = true
[esmtp_listener.listen."10.0.0.2:25"]
duravip_follow = "b"
"#;

const PUNCTUATION: &[u8] = b"{}[]()\"'=#/*,\n \\";
const KEYWORDS: &[&str] = &[
    "include ",
    "readonly_include ",
    "Replicate ",
    "cluster ",
    "Topology ",
    "Listen ",
    "Binding ",
    "= ",
    "[cluster]\n",
    "[cluster.replicate.x]\n",
    "\"\" ",
    "/* ",
    " */",
    "0x10",
    "-1",
    "1e999",
    "\u{feff}",
    "é",
    "\u{0}",
];

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            usize::try_from(self.next() % n as u64).unwrap_or(0)
        }
    }
}

fn mutate(rng: &mut XorShift, input: &[u8]) -> Vec<u8> {
    let mut data = input.to_vec();
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        let len = data.len();
        let at = rng.below(len + 1);
        match rng.below(6) {
            // Flip a byte.
            0 if len > 0 => {
                let i = rng.below(len);
                data[i] ^= 1 << rng.below(8);
            }
            // Delete a range.
            1 if len > 0 => {
                let end = (at + 1 + rng.below(40)).min(len);
                data.drain(at.min(end)..end);
            }
            // Duplicate a range.
            2 if len > 0 => {
                let start = rng.below(len);
                let end = (start + 1 + rng.below(80)).min(len);
                let chunk = data[start..end].to_vec();
                data.splice(at..at, chunk);
            }
            // Insert punctuation.
            3 => {
                let c = PUNCTUATION[rng.below(PUNCTUATION.len())];
                data.insert(at, c);
            }
            // Insert a keyword.
            4 => {
                let k = KEYWORDS[rng.below(KEYWORDS.len())].as_bytes();
                data.splice(at..at, k.iter().copied());
            }
            // Replace a byte by punctuation.
            _ if len > 0 => {
                let i = rng.below(len);
                data[i] = PUNCTUATION[rng.below(PUNCTUATION.len())];
            }
            _ => data.push(b'{'),
        }
    }
    data
}

/// Whether an input could make an `include` read something other than a
/// missing relative path: an absolute or parent path, or a special file.
fn may_read_outside(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    if ["/dev", "/proc", "/sys"].iter().any(|p| lower.contains(p)) {
        return true;
    }
    lower.match_indices("include").any(|(i, _)| {
        let after: String = lower[i..].chars().take(80).collect();
        after.contains('/') || after.contains("..") || after.contains('\\')
    })
}

fn check(text: &str, format: Format, seed: u64, iteration: u64) {
    let result = catch_unwind(AssertUnwindSafe(|| LoadedConfig::parse(text, format)));
    let fail = |why: String| -> ! {
        panic!(
            "{why}\nseed {seed}, iteration {iteration}, format {format:?}; input ({} bytes):\n{text:?}",
            text.len()
        )
    };
    let result = match result {
        Ok(r) => r,
        Err(_) => fail("the parser panicked".into()),
    };
    let line_count = u32::try_from(text.lines().count()).unwrap_or(u32::MAX);
    match result {
        Ok(loaded) => {
            // What parsed also lists without panicking.
            if catch_unwind(AssertUnwindSafe(|| loaded.listing())).is_err() {
                fail("listing panicked".into());
            }
        }
        Err(ConfigErrors(errors)) => {
            if errors.is_empty() {
                fail("an error result without errors".into());
            }
            for e in &errors {
                if e.file == "<string>" && e.line > line_count.saturating_add(1) {
                    fail(format!(
                        "error at line {} of a {line_count}-line input: {e}",
                        e.line
                    ));
                }
                if e.message.is_empty() {
                    fail(format!("an error without a message: {e:?}"));
                }
            }
        }
    }
}

#[test]
fn mutated_configs_never_panic() {
    let iterations: u64 = std::env::var("ECC_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let seed: u64 = std::env::var("ECC_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_ecc1_2025);
    println!(
        "config fuzz: seed {seed}, {iterations} mutants per input (ECC_FUZZ_SEED / ECC_FUZZ_ITERS)"
    );

    let mut rng = XorShift(seed | 1);
    let mut skipped = 0u64;
    for (i, base) in [CONF, TOML, EXTRA, EXTRA_TOML].iter().enumerate() {
        // The unmutated inputs are fine in their own format.
        let own = if i % 2 == 0 {
            Format::Ecelerity
        } else {
            Format::Toml
        };
        assert!(LoadedConfig::parse(base, own).is_ok(), "base input {i}");
        for n in 0..iterations {
            let bytes = mutate(&mut rng, base.as_bytes());
            let text = String::from_utf8_lossy(&bytes);
            if may_read_outside(&text) {
                skipped += 1;
                continue;
            }
            check(&text, Format::Ecelerity, seed, n);
            check(&text, Format::Toml, seed, n);
        }
    }
    println!("config fuzz: {skipped} mutants skipped (include outside)");
}

#[test]
fn the_mutator_is_deterministic() {
    let a: Vec<Vec<u8>> = {
        let mut rng = XorShift(42);
        (0..20).map(|_| mutate(&mut rng, CONF.as_bytes())).collect()
    };
    let b: Vec<Vec<u8>> = {
        let mut rng = XorShift(42);
        (0..20).map(|_| mutate(&mut rng, CONF.as_bytes())).collect()
    };
    assert_eq!(a, b);
    assert!(a.iter().any(|m| m.as_slice() != CONF.as_bytes()));
}
