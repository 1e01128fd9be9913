//! The threads move hooks run on: one per message being received, so a
//! slow hook holds up no other message, and kept for a while once idle,
//! so that a busy link does not pay a thread's start (tens of
//! microseconds, on the link's reader thread) for every message. A
//! stopping node ends them and waits for them: an idle thread would
//! otherwise outlive the node, holding what lives in its thread-locals
//! (its Lua policy state) past `ecc_node_free`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

/// How long an idle thread waits for more work before it ends.
const KEEP_IDLE: Duration = Duration::from_secs(10);

type Job = Box<dyn FnOnce() + Send>;

/// See the module docs.
#[derive(Default)]
pub(crate) struct Workers {
    state: Mutex<State>,
    work: Condvar,
    /// The threads started and not yet joined (finished ones are pruned
    /// at each start).
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.state.lock();
        f.debug_struct("Workers")
            .field("idle", &s.idle)
            .field("queued", &s.jobs.len())
            .finish()
    }
}

#[derive(Default)]
struct State {
    jobs: VecDeque<Job>,
    /// Threads waiting for a job. Each takes one queued job, so while
    /// there are more of them than jobs, a new job has a taker.
    idle: usize,
    /// Idle threads end instead of waiting for more work.
    stopping: bool,
}

impl Workers {
    /// Runs `job` on an idle thread, or a new one.
    pub fn run(self: &Arc<Self>, job: Job) -> std::io::Result<()> {
        {
            let mut s = self.state.lock();
            if s.idle > s.jobs.len() {
                s.jobs.push_back(job);
                self.work.notify_one();
                return Ok(());
            }
        }
        let workers = Arc::clone(self);
        let thread = std::thread::Builder::new()
            .name("ecc-mmove-hook".into())
            .spawn(move || workers.serve(job))?;
        let mut threads = self.threads.lock();
        threads.retain(|t| !t.is_finished());
        threads.push(thread);
        Ok(())
    }

    /// Ends the idle threads and waits for every thread, running jobs
    /// included, to end; later jobs start threads again. Not from a job.
    pub fn stop(&self) {
        self.state.lock().stopping = true;
        self.work.notify_all();
        let threads = std::mem::take(&mut *self.threads.lock());
        for thread in threads {
            let _ = thread.join();
        }
        self.state.lock().stopping = false;
    }

    fn serve(&self, first: Job) {
        first();
        loop {
            let mut s = self.state.lock();
            s.idle += 1;
            let job = loop {
                if let Some(job) = s.jobs.pop_front() {
                    break Some(job);
                }
                if s.stopping {
                    break None;
                }
                if self.work.wait_for(&mut s, KEEP_IDLE).timed_out() && s.jobs.is_empty() {
                    break None;
                }
            };
            s.idle -= 1;
            drop(s);
            match job {
                Some(job) => job(),
                None => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc;

    #[test]
    fn jobs_run_and_idle_threads_are_reused() {
        let workers = Arc::new(Workers::default());
        let (tx, rx) = mpsc::channel();
        let mut threads = HashSet::new();
        for _ in 0..20 {
            let tx = tx.clone();
            workers
                .run(Box::new(move || {
                    tx.send(std::thread::current().id()).unwrap()
                }))
                .unwrap();
            threads.insert(rx.recv().unwrap());
            // Until the thread waits again, so that the next job finds it.
            while workers.state.lock().idle == 0 {
                std::thread::yield_now();
            }
        }
        assert_eq!(threads.len(), 1);
    }

    /// Sets its flag when its thread's locals are destroyed.
    struct SetOnDrop(Option<Arc<AtomicBool>>);

    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            if let Some(flag) = &self.0 {
                flag.store(true, Ordering::SeqCst);
            }
        }
    }

    thread_local! {
        static LOCAL: RefCell<SetOnDrop> = const { RefCell::new(SetOnDrop(None)) };
    }

    #[test]
    fn stop_ends_idle_threads_and_waits_for_running_jobs() {
        let workers = Arc::new(Workers::default());
        let idle_ended = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&idle_ended);
        let (done, finished) = mpsc::channel();
        workers
            .run(Box::new(move || {
                LOCAL.with_borrow_mut(|l| l.0 = Some(flag));
                done.send(()).unwrap();
            }))
            .unwrap();
        finished.recv().unwrap();
        let slow_done = Arc::new(AtomicBool::new(false));
        let slow = Arc::clone(&slow_done);
        let (started, running) = mpsc::channel();
        workers
            .run(Box::new(move || {
                started.send(()).unwrap();
                std::thread::sleep(Duration::from_millis(200));
                slow.store(true, Ordering::SeqCst);
            }))
            .unwrap();
        running.recv().unwrap();
        workers.stop();
        // Well before KEEP_IDLE: the idle thread ended and its locals went.
        assert!(idle_ended.load(Ordering::SeqCst));
        assert!(slow_done.load(Ordering::SeqCst));
        // Jobs run again after a stop.
        let (tx, rx) = mpsc::channel();
        workers.run(Box::new(move || tx.send(()).unwrap())).unwrap();
        rx.recv().unwrap();
    }

    #[test]
    fn a_slow_job_does_not_hold_up_the_next() {
        let workers = Arc::new(Workers::default());
        let (release, blocked) = mpsc::channel::<()>();
        let (done, finished) = mpsc::channel();
        workers
            .run(Box::new(move || {
                blocked.recv().unwrap();
            }))
            .unwrap();
        workers
            .run(Box::new(move || done.send(()).unwrap()))
            .unwrap();
        finished.recv().unwrap();
        release.send(()).unwrap();
    }
}
