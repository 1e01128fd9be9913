//! What an MTA thread pays for a replicated gauge (`outbound_domains` and
//! friends): an increment of an existing key, on one thread and on two at
//! once, and a cluster-wide read.

mod common;

use std::hint::black_box;
use std::sync::Arc;

use common::slowest_thread;

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

/// Each thread's domain: two that fall in different shards.
const THREAD_KEYS: [&[u8]; 2] = [b"domain0.example", b"domain7.example"];

fn gauge(c: &mut Criterion) {
    let t = table();
    c.bench_function("gauge/increment (one thread)", |b| {
        b.iter(|| t.add(black_box(b"domain42.example"), 1))
    });
    c.bench_function("gauge/increment (two threads, each its own key)", |b| {
        b.iter_custom(|iters| {
            slowest_thread(&t, 2, iters, |t, i| {
                t.add(black_box(THREAD_KEYS[i]), 1);
            })
        })
    });
    c.bench_function("gauge/global count", |b| {
        b.iter(|| t.get(black_box(b"domain42.example"), Scope::Global))
    });
}

criterion_group!(benches, gauge);
criterion_main!(benches);
