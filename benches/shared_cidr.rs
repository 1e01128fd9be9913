//! The hot path's CIDR counts (src/shared/cidr.rs): what an MTA worker
//! pays to count a connection and to ask how many a prefix has, with one
//! million addresses tracked, and the memory that takes (printed before
//! criterion's figures). See BENCHMARKS.md.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use eccluster::shared::cidr::{CidrCounts, Scope};

const TRACKED: u32 = 1_000_000;

/// The `i`th of distinct addresses spread over the whole space (an odd
/// multiplier is a bijection on u32).
fn addr(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(i.wrapping_mul(0x9e37_79b1)))
}

fn filled() -> CidrCounts {
    let c = CidrCounts::new();
    for i in 0..TRACKED {
        c.increment(addr(i));
        c.set_peer_sum(&eccluster::shared::cidr::leaf_key(addr(i)), 2);
    }
    c.drain_changed();
    c
}

/// Resident bytes of this process (/proc/self/statm, second field).
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn memory() {
    let before = rss();
    let c = filled();
    let after = rss();
    println!(
        "shared_cidr/memory, {TRACKED} distinct IPv4 addresses (each with a peer sum): \
         own accounting {:.1} bytes/address ({:.1} MiB), RSS growth {:.1} bytes/address, \
         {} hash-map entries",
        c.memory_bytes() as f64 / f64::from(TRACKED),
        c.memory_bytes() as f64 / (1 << 20) as f64,
        after.saturating_sub(before) as f64 / f64::from(TRACKED),
        c.entries(),
    );
}

/// Two threads each doing `iters` increments on their own addresses at
/// once; the time per iteration is then each thread's time per operation.
fn two_threads(c: &CidrCounts, iters: u64, shared: bool) -> Duration {
    let start = Barrier::new(3);
    std::thread::scope(|s| {
        for t in 0..2u32 {
            let start = &start;
            s.spawn(move || {
                let base = if shared { 0 } else { t * 1000 };
                start.wait();
                for i in 0..iters {
                    c.increment(black_box(addr(base + (i % 1000) as u32)));
                }
            });
        }
        start.wait();
        let t0 = Instant::now();
        // The scope joins both threads before returning.
        t0
    })
    .elapsed()
}

fn cidr(crit: &mut Criterion) {
    memory();

    let small = CidrCounts::new();
    let mut i = 0u32;
    crit.bench_function("shared_cidr/increment, 1 thread, 1,000 addresses", |b| {
        b.iter(|| {
            i = (i + 1) % 1000;
            small.increment(black_box(addr(i)));
        })
    });
    crit.bench_function(
        "shared_cidr/increment, 2 threads, own 1,000 addresses each (per op per thread)",
        |b| b.iter_custom(|iters| two_threads(&small, iters, false)),
    );
    crit.bench_function(
        "shared_cidr/increment, 2 threads, the same 1,000 addresses (per op per thread)",
        |b| b.iter_custom(|iters| two_threads(&small, iters, true)),
    );

    let big = filled();
    let mut i = 0u32;
    crit.bench_function(
        "shared_cidr/increment, 1 thread, random among 1,000,000 tracked",
        |b| {
            b.iter(|| {
                i = (i + 7919) % TRACKED;
                big.increment(black_box(addr(i)));
            })
        },
    );
    for (name, len, scope) in [
        ("/24 count, Local", 24, Scope::Local),
        ("/24 count, Global", 24, Scope::Global),
        ("/20 count, Global", 20, Scope::Global),
        ("/28 count, Global", 28, Scope::Global),
        ("/16 count, Global", 16, Scope::Global),
    ] {
        let mut i = 0u32;
        crit.bench_function(
            &format!("shared_cidr/{name}, 1,000,000 tracked, random prefixes"),
            |b| {
                b.iter(|| {
                    i = (i + 7919) % TRACKED;
                    big.count(black_box(addr(i)), len, scope)
                })
            },
        );
        let mut i = 0u32;
        crit.bench_function(
            &format!("shared_cidr/{name}, 1,000,000 tracked, 1,000 hot prefixes"),
            |b| {
                b.iter(|| {
                    i = (i + 1) % 1000;
                    big.count(black_box(addr(i)), len, scope)
                })
            },
        );
    }
}

criterion_group!(benches, cidr);
criterion_main!(benches);
