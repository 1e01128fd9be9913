//! Waiting for SIGTERM or SIGINT without a signal handler.
//!
//! The signals are blocked in the calling thread before any other thread is
//! started (threads inherit the mask), and then taken synchronously with
//! `sigwait`, so no code runs in signal context and the shutdown path is
//! ordinary code.

use std::io;

fn termination_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill a sigset_t we own;
    // a zeroed sigset_t is a valid starting value for sigemptyset.
    #[allow(unsafe_code)]
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        set
    }
}

/// Blocks SIGTERM and SIGINT in this thread and in threads it starts later.
pub fn block_termination() -> io::Result<()> {
    let set = termination_set();
    // SAFETY: `set` is initialised; the old-mask pointer may be null.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

/// Waits until SIGTERM or SIGINT arrives; returns the signal's name.
/// Call [`block_termination`] first.
pub fn wait_for_termination() -> io::Result<&'static str> {
    let set = termination_set();
    let mut sig: libc::c_int = 0;
    // SAFETY: `set` is initialised and `sig` is a valid out-pointer.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::sigwait(&set, &mut sig) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(if sig == libc::SIGINT {
        "SIGINT"
    } else {
        "SIGTERM"
    })
}
