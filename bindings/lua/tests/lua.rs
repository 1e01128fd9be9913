//! Runs `tests/log.lua` with Debian's `lua5.4` against the module this
//! package builds, then reads the journal it wrote with the engine's own
//! reader: it must hold exactly the records the script was told were
//! durable (DESIGN.md §10: Lua tests run by the real interpreter).
//!
//! Needs `--features testing` (the script checks panics through
//! `ecc._testing`) and `lua5.4` on the PATH; without either it fails,
//! saying so, rather than skip.

use std::path::{Path, PathBuf};
use std::process::Command;

use eccluster::journal::Journal;
use eccluster::journal::format::LogId;

/// `libeccluster_lua.so`, beside the test in `target/<profile>/deps/`:
/// cargo builds it there, up to date, before running the test, because
/// the test depends on the library's rlib and cargo builds all of a
/// library's crate types at once. (The copy in `target/<profile>/` is
/// only refreshed by `cargo build`.)
fn module() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let so = exe.parent().unwrap().join("libeccluster_lua.so");
    assert!(so.exists(), "{} was not built", so.display());
    so
}

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ecc-lua-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("cpath")).unwrap();
    dir
}

fn parse_hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn log_lua_appends_exactly_the_records_it_was_told_are_durable() {
    let dir = scratch();
    // `require "eccluster"` looks for eccluster.so on the cpath.
    std::os::unix::fs::symlink(module(), dir.join("cpath/eccluster.so")).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/log.lua");
    let out = Command::new("lua5.4")
        .arg(&script)
        .arg(&dir)
        .env("LUA_CPATH", dir.join("cpath/?.so"))
        // The script's panics print their message; a backtrace each is noise.
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("lua5.4 runs (apt-get install lua5.4)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tests/log.lua failed:\n{stderr}");
    assert!(stderr.contains("log.lua: ok, 7 records"), "{stderr}");

    let told: Vec<(String, Vec<u8>)> = std::fs::read_to_string(dir.join("appended.txt"))
        .unwrap()
        .lines()
        .map(|l| {
            let (id, hex) = l.split_once(' ').unwrap();
            (id.to_string(), parse_hex(hex))
        })
        .collect();
    assert_eq!(told.len(), 7);
    assert_eq!(
        told[1].1, b"with\0a NUL\0",
        "a NUL byte is part of the line"
    );
    assert_eq!(told[2].1, b"", "an empty line is a record");

    // Everything the journal holds, from its subscriber's start.
    let journal = Journal::open(&dir.join("mainlog")).unwrap();
    let mut held = Vec::new();
    while let Some((from, to)) = journal.read_interval("master").unwrap() {
        for record in journal.read_range(from, to).unwrap() {
            held.push((record.id.to_string(), record.payload));
        }
        journal.set_checkpoint("master", to).unwrap();
    }
    // Compared in short first, so that a failure prints something readable.
    let short = |records: &[(String, Vec<u8>)]| -> Vec<String> {
        records
            .iter()
            .map(|(id, line)| {
                let head: String = line
                    .iter()
                    .take(32)
                    .map(|b| b.escape_ascii().to_string())
                    .collect();
                format!("{id} {} bytes: {head}", line.len())
            })
            .collect()
    };
    assert_eq!(
        short(&held),
        short(&told),
        "the journal holds exactly what Lua was told"
    );
    assert!(held == told, "the journal holds exactly what Lua was told");
    let last: LogId = journal.last_written().unwrap();
    assert_eq!(last.to_string(), told.last().unwrap().0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The module exports its entry point and nothing else: not the engine's
/// C ABI, which a host linking libeccluster as well could bind to (see
/// build.rs).
#[test]
fn the_module_exports_only_luaopen_eccluster() {
    let out = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(module())
        .output()
        .expect("nm runs (binutils)");
    assert!(out.status.success());
    let exported: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (kind, name) = (f.nth(1)?, f.next()?);
            // Functions and data the module defines for others to use.
            matches!(kind, "T" | "D" | "B" | "R").then(|| name.to_string())
        })
        .collect();
    assert_eq!(exported, ["luaopen_eccluster"]);
}
