//! A value that many threads read on their hot path and few change (the
//! binding table, the set_binding hooks).
//!
//! A lock and a shared `Arc` would have every reader write to the same
//! cache lines (the lock word, the reference count), and two MTA threads
//! choosing bindings at once would take turns on them. Instead each
//! thread keeps its own copy of the current value, made when it first
//! reads it after a change; a read is then a load of the shared version
//! number, which only a change writes, and a look into the thread's own
//! cache. The copies are deep ([`Clone`]): a thread's copy shares no
//! reference count with another thread's.

use std::any::Any;
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

/// See the module docs.
#[derive(Debug)]
pub struct Published<T> {
    version: AtomicU64,
    value: Mutex<Arc<T>>,
    /// Whether this value still exists, for the threads' caches; also its
    /// identity there.
    alive: Arc<()>,
}

/// A thread's copy of one published value.
struct Copy {
    of: Weak<()>,
    version: u64,
    value: Arc<dyn Any + Send + Sync>,
}

thread_local! {
    static COPIES: RefCell<Vec<Copy>> = const { RefCell::new(Vec::new()) };
}

impl<T: Clone + Send + Sync + 'static> Published<T> {
    pub fn new(value: T) -> Published<T> {
        Published {
            version: AtomicU64::new(0),
            value: Mutex::new(Arc::new(value)),
            alive: Arc::new(()),
        }
    }

    /// Publishes a new value; each thread copies it on its next read.
    pub fn set(&self, value: T) {
        let mut current = self.value.lock();
        *current = Arc::new(value);
        self.version.fetch_add(1, Ordering::Release);
    }

    /// Publishes `change` of the current value.
    pub fn update(&self, change: impl FnOnce(&T) -> T) {
        let mut current = self.value.lock();
        *current = Arc::new(change(&current));
        self.version.fetch_add(1, Ordering::Release);
    }

    /// This thread's copy of the current value.
    pub fn get(&self) -> Arc<T> {
        let version = self.version.load(Ordering::Acquire);
        // By address: a `Weak` made here would write to the shared count.
        let me = Arc::as_ptr(&self.alive);
        let cached = COPIES.with_borrow(|copies| {
            copies
                .iter()
                .find(|c| std::ptr::eq(c.of.as_ptr(), me) && c.version == version)
                .map(|c| Arc::clone(&c.value))
        });
        if let Some(value) = cached.and_then(|v| v.downcast::<T>().ok()) {
            return value;
        }
        let (version, value) = {
            let current = self.value.lock();
            // Read under the lock: the version that goes with this value.
            (self.version.load(Ordering::Acquire), T::clone(&current))
        };
        let value = Arc::new(value);
        COPIES.with_borrow_mut(|copies| {
            copies.retain(|c| !std::ptr::eq(c.of.as_ptr(), me) && c.of.strong_count() > 0);
            copies.push(Copy {
                of: Arc::downgrade(&self.alive),
                version,
                value: Arc::clone(&value) as Arc<dyn Any + Send + Sync>,
            });
        });
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_see_each_change_and_threads_hold_copies_of_their_own() {
        let p = Arc::new(Published::new(vec![1]));
        let first = p.get();
        assert_eq!(*first, [1]);
        assert!(Arc::ptr_eq(&first, &p.get()), "unchanged: the same copy");
        p.update(|v| [v.as_slice(), &[2]].concat());
        assert_eq!(*p.get(), [1, 2]);
        assert_eq!(*first, [1], "a copy taken before stays as it was");
        let other = Arc::clone(&p);
        let theirs = std::thread::spawn(move || other.get()).join().unwrap();
        assert_eq!(*theirs, [1, 2]);
        assert!(!Arc::ptr_eq(&theirs, &p.get()), "another thread's own copy");
        p.set(vec![3]);
        assert_eq!(*p.get(), [3]);
    }

    #[test]
    fn copies_of_values_that_are_gone_are_dropped() {
        let gone = Published::new(String::from("old"));
        let _ = gone.get();
        drop(gone);
        let kept = Published::new(String::from("new"));
        let _ = kept.get();
        assert_eq!(COPIES.with_borrow(Vec::len), 1);
    }
}
