//! What an MTA thread pays for a cluster-wide throttle
//! (`shared_named_throttles`, `OBTM`, `OBTC`): a check and a consume, on
//! one thread and on two at once, with the wall clock read on every call
//! (`SystemTime::now`) and with the caller's own time (`_at`).

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use criterion::{Criterion, criterion_group, criterion_main};
use eccluster::shared::throttle::{Throttle, ThrottleTable};

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

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `iters` calls of `f` on each of `threads` threads at once; the time of
/// the slowest thread.
fn concurrent(x: &Arc<Throttle>, threads: usize, iters: u64, f: fn(&Throttle) -> bool) -> Duration {
    let start = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (x, start) = (Arc::clone(x), Arc::clone(&start));
            std::thread::spawn(move || {
                start.wait();
                let began = Instant::now();
                for _ in 0..iters {
                    black_box(f(&x));
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

fn bench(c: &mut Criterion) {
    let x = throttle();
    let now = now_ms();
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
        b.iter_custom(|iters| concurrent(&x, 2, iters, Throttle::check))
    });
    c.bench_function("throttle/consume (two threads, one throttle)", |b| {
        b.iter_custom(|iters| concurrent(&x, 2, iters, Throttle::consume))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
