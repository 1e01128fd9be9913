//! What an MTA thread pays for a replicated gauge (`outbound_domains` and
//! friends): an increment of an existing key, on one thread and on two at
//! once, and a cluster-wide read.

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use eccluster::shared::gauge::{GaugeTable, Scope};

/// A table with many domains, as an MTA's outbound side has.
fn table() -> Arc<GaugeTable> {
    let t = Arc::new(GaugeTable::new());
    for i in 0..10_000 {
        let key = format!("domain{i}.example");
        t.add(key.as_bytes(), 1);
        t.set_peer_sum(key.as_bytes(), 3);
    }
    t.drain_changed();
    t
}

/// `iters` increments on each of `threads` threads at once; the time of
/// the slowest thread, per increment of one thread.
fn concurrent(t: &Arc<GaugeTable>, threads: usize, iters: u64) -> Duration {
    let start = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let (t, start) = (Arc::clone(t), Arc::clone(&start));
            std::thread::spawn(move || {
                let key = format!("domain{}.example", i * 7);
                start.wait();
                let began = Instant::now();
                for _ in 0..iters {
                    t.add(black_box(key.as_bytes()), 1);
                }
                began.elapsed()
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("bench thread"))
        .max()
        .unwrap_or_default()
}

fn gauge(c: &mut Criterion) {
    let t = table();
    c.bench_function("gauge/increment (one thread)", |b| {
        b.iter(|| t.add(black_box(b"domain42.example"), 1))
    });
    c.bench_function("gauge/increment (two threads, each its own key)", |b| {
        b.iter_custom(|iters| concurrent(&t, 2, iters))
    });
    c.bench_function("gauge/global count", |b| {
        b.iter(|| t.get(black_box(b"domain42.example"), Scope::Global))
    });
}

criterion_group!(benches, gauge);
criterion_main!(benches);
