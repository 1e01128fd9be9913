//! What the benches share.

// Each bench compiles this module and uses only part of it.
#![allow(dead_code)]

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// `iters` calls of `op` on each of `threads` threads started together
/// (`op` gets the thread's index); the time of the slowest thread, which is
/// the time per call of one thread when divided by `iters`. Each thread
/// calls `op` once more before the clock starts, so that what it sets up
/// on its first call (a thread-local, a policy's Lua state) is not timed.
pub fn slowest_thread<S: Send + Sync + 'static>(
    state: &Arc<S>,
    threads: usize,
    iters: u64,
    op: fn(&S, usize),
) -> Duration {
    let start = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let (state, start) = (Arc::clone(state), Arc::clone(&start));
            std::thread::spawn(move || {
                op(&state, i);
                start.wait();
                let began = Instant::now();
                for _ in 0..iters {
                    op(&state, i);
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

/// `1234567` as `1,234,567`.
pub fn thousands(n: f64) -> String {
    let digits = format!("{n:.0}");
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
