//! What an MTA thread pays for a cluster-wide throttle
//! (`shared_named_throttles`, `OBTM`, `OBTC`): a check and a consume, on
//! one thread and on two at once, with the (coarse) wall clock read on
//! every call and with the caller's own time (`_at`).

mod common;

use std::hint::black_box;
use std::sync::Arc;

use common::slowest_thread;
use criterion::{Criterion, criterion_group, criterion_main};
use eccluster::shared::throttle::{Throttle, ThrottleTable};
use eccluster::shared::wall_ms;

/// A throttle that never runs out during a bench: consume keeps taking
/// tokens, so the limit is as large as allowed, in one long window.
fn throttle() -> Arc<Throttle> {
    let t = ThrottleTable::new(3_600_000);
    for i in 0..1000 {
        t.define(&format!("other{i}"), "100/60", None)
            .expect("valid");
    }
    t.define("bench", "9007199254740992/4294967296", Some(0.99))
        .expect("valid")
}

fn bench(c: &mut Criterion) {
    let x = throttle();
    let now = wall_ms();
    c.bench_function("throttle/check (one thread)", |b| {
        b.iter(|| black_box(&x).check())
    });
    c.bench_function("throttle/consume (one thread)", |b| {
        b.iter(|| black_box(&x).consume())
    });
    c.bench_function("throttle/check_at (one thread, caller's clock)", |b| {
        b.iter(|| black_box(&x).check_at(black_box(now)))
    });
    c.bench_function("throttle/consume_n_at (one thread, caller's clock)", |b| {
        b.iter(|| black_box(&x).consume_n_at(black_box(now), 1))
    });
    c.bench_function("throttle/check (two threads)", |b| {
        b.iter_custom(|iters| {
            slowest_thread(&x, 2, iters, |t, _| {
                black_box(t.check());
            })
        })
    });
    c.bench_function("throttle/consume (two threads, one throttle)", |b| {
        b.iter_custom(|iters| {
            slowest_thread(&x, 2, iters, |t, _| {
                black_box(t.consume());
            })
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
