//! The receiving end of the `log_group` (see `core::logs::group`): the
//! lines kept for the console, and the host's hooks, shared by the node
//! (which outlives its runtime's restarts) and the links that deliver.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::core::logs::group::{GroupLine, Kept};
use crate::core::wire::LogGroupLine;

/// A log group hook: runs on the thread reading the sender's cluster link.
pub type LogGroupHook = Arc<dyn Fn(&GroupLine) + Send + Sync>;

/// See the module docs.
#[allow(missing_debug_implementations)] // holds closures
pub struct LogGroup {
    kept: Mutex<Kept>,
    hooks: RwLock<Vec<LogGroupHook>>,
}

impl LogGroup {
    /// Listens on `group` (`log_group`); with `None` every line is dropped.
    pub fn new(group: Option<String>) -> LogGroup {
        LogGroup {
            kept: Mutex::new(Kept::new(group)),
            hooks: RwLock::default(),
        }
    }

    /// The group this node sends and listens on.
    pub fn group(&self) -> Option<String> {
        self.kept.lock().group().map(str::to_string)
    }

    pub fn add_hook(&self, hook: LogGroupHook) {
        self.hooks.write().push(hook);
    }

    /// The kept lines, oldest first.
    pub fn lines(&self) -> Vec<GroupLine> {
        self.kept.lock().lines().cloned().collect()
    }

    /// A line that arrived from `sender`: kept and given to the hooks when
    /// it is on this node's group.
    pub fn receive(&self, sender: &str, message: LogGroupLine) {
        let Some(line) = self.kept.lock().receive(sender, message) else {
            return;
        };
        // Copied out of the lock, so that a hook may register another.
        let hooks = self.hooks.read().clone();
        for hook in &hooks {
            // A Rust hook that panics must not take the link's reader
            // thread with it; the panic hook has already printed why.
            let _ = catch_unwind(AssertUnwindSafe(|| hook(&line)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn message(group: &str) -> LogGroupLine {
        LogGroupLine {
            group: group.into(),
            log: "paniclog".into(),
            time_us: 0,
            line: b"boom".to_vec(),
        }
    }

    #[test]
    fn hooks_hear_the_group_only_and_a_panicking_one_stops_nothing() {
        let g = LogGroup::new(Some("panics".into()));
        let heard = Arc::new(AtomicUsize::new(0));
        g.add_hook(Arc::new(|_| panic!("a host bug")));
        let counter = Arc::clone(&heard);
        g.add_hook(Arc::new(move |line| {
            assert_eq!(line.sender, "n1");
            counter.fetch_add(1, Ordering::SeqCst);
        }));
        g.receive("n1", message("panics"));
        g.receive("n1", message("other"));
        assert_eq!(heard.load(Ordering::SeqCst), 1);
        assert_eq!(g.lines().len(), 1);
        assert_eq!(g.group().as_deref(), Some("panics"));
    }
}
