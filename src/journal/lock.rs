//! jlog's file locks, so that our writers and readers and libjlog's, in
//! other processes, take turns on the same journal.
//!
//! libjlog (`jlog_io.c`, `jlog_file_lock`) takes an exclusive fcntl lock
//! on a whole file (`F_WRLCK`, `F_SETLKW`, start 0, length 0) around every
//! change or read of shared state:
//!
//! * the `metastore` while reading it, opening the current segment for
//!   writing, and moving `storage_log` on (`__jlog_open_writer`,
//!   `__jlog_restore_metastore`, `__jlog_metastore_atomic_increment`);
//! * the current data segment while appending to it, its size read under
//!   the lock being where the record goes (`jlog_ctx_write_message`);
//! * a segment's `.idx` while resyncing it (`___jlog_resync_index`);
//! * a checkpoint `cp.*` while reading or writing it (`jlog_get_checkpoint`,
//!   `__jlog_set_checkpoint`, `jlog_pending_readers`).
//!
//! We take the same locks, as open file description locks
//! (`F_OFD_SETLKW`): on Linux these conflict with libjlog's classic fcntl
//! locks, so the protocol is the same for both, but they belong to our
//! file descriptor rather than to the process. Classic locks would let two
//! threads of ours hold "the" lock at once, and would be dropped silently
//! when any other descriptor of the file in this process is closed.
//!
//! A reader that may not open the metastore or a checkpoint for writing
//! (another user's journal, a read-only mount) reads it under a shared
//! lock instead, which libjlog's exclusive one still excludes; it keeps no
//! index then, reading the segment itself.
//!
//! The files themselves are changed in place (`pwrite` at offset 0), as
//! libjlog changes them: it maps the metastore and keeps checkpoints open,
//! so a file replaced by a rename would go unseen by a libjlog process.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// Holds an exclusive lock on a whole file until dropped.
#[derive(Debug)]
pub(crate) struct Locked<'a> {
    file: &'a File,
}

/// Locks all of `file`, waiting for whoever holds it.
pub(crate) fn lock(file: &File) -> io::Result<Locked<'_>> {
    lock_as(file, libc::F_WRLCK)
}

/// Locks all of `file` shared, for a reader that may not open it for
/// writing (a write lock needs a descriptor open for writing): it still
/// excludes, and waits for, every holder of jlog's exclusive lock.
pub(crate) fn lock_shared(file: &File) -> io::Result<Locked<'_>> {
    lock_as(file, libc::F_RDLCK)
}

fn lock_as(file: &File, kind: libc::c_int) -> io::Result<Locked<'_>> {
    loop {
        match fcntl_lock(file, kind) {
            // jlog retries EAGAIN too: some systems report a lock that
            // went away while we waited that way.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EAGAIN)) => {}
            Err(e) => return Err(e),
            Ok(()) => return Ok(Locked { file }),
        }
    }
}

impl Locked<'_> {
    /// Keeps the lock after this guard is gone, for a holder that keeps it
    /// across calls (a buffering [`super::Writer`]) and lets it go with
    /// [`unlock`]: a guard cannot live in the struct that owns its file.
    pub(crate) fn keep(self) {
        std::mem::forget(self);
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        unlock(self.file);
    }
}

/// Lets go of a lock on `file` that [`Locked::keep`] kept.
pub(crate) fn unlock(file: &File) {
    // Unlocking a lock we hold cannot fail but for EINTR; the lock goes
    // with the descriptor in any case.
    while let Err(e) = fcntl_lock(file, libc::F_UNLCK) {
        if e.raw_os_error() != Some(libc::EINTR) {
            break;
        }
    }
}

/// `F_OFD_SETLKW` of `kind` over the whole file.
fn fcntl_lock(file: &File, kind: libc::c_int) -> io::Result<()> {
    // SAFETY: flock is plain data, for which all zeroes is a valid value.
    #[allow(unsafe_code)]
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    // The constants fit the narrower field types by definition.
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = 0;
    // Length 0: to the end of the file however it grows, as jlog locks.
    fl.l_len = 0;
    // OFD locks require l_pid 0 (zeroed above).
    // SAFETY: the descriptor is open for the borrow's duration and `fl` is
    // a valid, initialised flock that fcntl reads (and, for a lock we hold,
    // leaves alone).
    #[allow(unsafe_code)]
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLKW, &mut fl) };
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Checks that `take`, run on another thread, waits until `held` (a
    /// lock guard) is dropped; `why` says what it means if it does not.
    fn waits_for<G>(held: G, take: impl FnOnce() + Send + 'static, why: &str) {
        let got = Arc::new(AtomicBool::new(false));
        let waiter = {
            let got = Arc::clone(&got);
            std::thread::spawn(move || {
                take();
                got.store(true, Ordering::SeqCst);
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(!got.load(Ordering::SeqCst), "{why}");
        drop(held);
        waiter.join().unwrap();
        assert!(got.load(Ordering::SeqCst));
    }

    #[test]
    fn a_lock_excludes_another_descriptor_until_dropped() {
        let path = std::env::temp_dir().join(format!("ecc-lock-{}", std::process::id()));
        let a = File::create(&path).unwrap();
        // A write lock needs a descriptor open for writing, as jlog opens
        // every file.
        let b = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let held = lock(&a).unwrap();
        waits_for(
            held,
            move || drop(lock(&b).unwrap()),
            "two descriptors held the lock",
        );
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_shared_lock_on_a_read_only_descriptor_excludes_the_exclusive_one() {
        let path = std::env::temp_dir().join(format!("ecc-lock-ro-{}", std::process::id()));
        let writer = File::create(&path).unwrap();
        let reader = File::open(&path).unwrap();
        let shared = lock_shared(&reader).unwrap();
        waits_for(
            shared,
            move || drop(lock(&writer).unwrap()),
            "a writer locked past a reader",
        );
        let _ = std::fs::remove_file(&path);
    }
}
