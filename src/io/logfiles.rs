//! The aggregator's output files: a cache of open files that records are
//! appended to, bounded in number and idle time, with one durability point.
//!
//! The manager pulls a batch of records from a node's journal, appends each
//! to the file its `logfile` template names, and may checkpoint the journal
//! only once those lines are on disk (DESIGN §6): a checkpoint ahead of the
//! data would lose lines after a crash, whereas one behind only repeats them.
//! So writes are plain appends, and [`LogFiles::sync_all`] is the one place
//! that makes everything since the previous call durable: it fdatasyncs every
//! file written, and fsyncs every directory that gained an entry (a new file
//! or directory is not durable until its parent's entry is).
//!
//! Files are closed when more than `max_open` are open (least recently used
//! first) or after `max_idle` without a write. A file closed with unsynced
//! data is synced first, because after `close` a later fsync on a new
//! descriptor is not guaranteed to report a write-back error that happened
//! in between; any such failure is kept and reported by the next `sync_all`,
//! so the caller never checkpoints over lost lines.
//!
//! Modes: a created file gets exactly `file_mode` and a created directory
//! exactly `dir_mode`, whatever the process umask, because the operator wrote
//! the mode in the configuration and the daemon's umask is whatever its
//! service manager left. Existing files and directories are not changed.

use std::collections::{HashMap, HashSet};
use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug)]
struct Open {
    file: File,
    /// A logical clock for LRU order: a counter, not a time, so two uses in
    /// the same instant still have an order.
    used: u64,
    last_write: Instant,
    dirty: bool,
}

/// The set of open output files; see the module documentation.
#[derive(Debug)]
pub struct LogFiles {
    file_mode: u32,
    dir_mode: u32,
    max_open: usize,
    max_idle: Duration,
    open: HashMap<PathBuf, Open>,
    /// Directories whose entries changed since the last `sync_all`.
    dirs: HashSet<PathBuf>,
    tick: u64,
    /// The first sync failure since the last `sync_all`, on a file that
    /// has since been closed.
    failed: Option<io::Error>,
}

impl LogFiles {
    /// `max_open` of 0 is taken as 1: a file must be open to be written.
    pub fn new(file_mode: u32, dir_mode: u32, max_open: usize, max_idle: Duration) -> LogFiles {
        LogFiles {
            file_mode,
            dir_mode,
            max_open: max_open.max(1),
            max_idle,
            open: HashMap::new(),
            dirs: HashSet::new(),
            tick: 0,
            failed: None,
        }
    }

    /// Appends `lines` to the file at `path`, each ending in a newline (one
    /// is added where missing), creating the file and its directories as
    /// needed. The lines go in one write, so a failure leaves at most a
    /// partial last batch, which the caller repeats from its checkpoint.
    /// Durable only after the next [`LogFiles::sync_all`].
    pub fn append_lines(&mut self, path: &Path, lines: &[&[u8]]) -> io::Result<()> {
        let mut buf = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
        for line in lines {
            buf.extend_from_slice(line);
            if !line.ends_with(b"\n") {
                buf.push(b'\n');
            }
        }
        self.tick += 1;
        let tick = self.tick;
        let now = Instant::now();
        if !self.open.contains_key(path) {
            while self.open.len() >= self.max_open {
                self.evict_lru();
            }
            let file = self.open_file(path)?;
            self.open.insert(
                path.to_path_buf(),
                Open {
                    file,
                    used: tick,
                    last_write: now,
                    dirty: false,
                },
            );
        }
        let entry = self.open.get_mut(path).expect("inserted above");
        entry.used = tick;
        entry.last_write = now;
        if buf.is_empty() {
            return Ok(());
        }
        entry.dirty = true;
        entry.file.write_all(&buf)
    }

    /// Makes every line appended since the last call durable: fdatasyncs the
    /// files written and fsyncs the directories that gained entries. Returns
    /// an error if any of that failed, including a sync done earlier when a
    /// written file was closed; the caller must then not checkpoint.
    pub fn sync_all(&mut self) -> io::Result<()> {
        let mut first = self.failed.take();
        for entry in self.open.values_mut().filter(|e| e.dirty) {
            match entry.file.sync_data() {
                Ok(()) => entry.dirty = false,
                Err(e) => {
                    first.get_or_insert(e);
                }
            }
        }
        // The caller checkpoints only if both the data and the entries that
        // lead to it are durable, so the order of the two loops is free.
        let dirs: Vec<PathBuf> = self.dirs.drain().collect();
        for dir in dirs {
            if let Err(e) = File::open(&dir).and_then(|d| d.sync_all()) {
                first.get_or_insert(e);
                // Try again next time rather than forget the entry.
                self.dirs.insert(dir);
            }
        }
        match first {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Closes the files not written for longer than `max_idle` before `now`,
    /// syncing any with unsynced lines first. Returns how many were closed.
    pub fn close_idle(&mut self, now: Instant) -> usize {
        let idle: Vec<PathBuf> = self
            .open
            .iter()
            .filter(|(_, e)| now.saturating_duration_since(e.last_write) > self.max_idle)
            .map(|(p, _)| p.clone())
            .collect();
        for path in &idle {
            self.close(path);
        }
        idle.len()
    }

    /// How many files are open.
    pub fn open_count(&self) -> usize {
        self.open.len()
    }

    /// Whether the file at `path` is open.
    pub fn is_open(&self, path: &Path) -> bool {
        self.open.contains_key(path)
    }

    fn evict_lru(&mut self) {
        // A linear scan: `max_open` is a few hundred and eviction happens at
        // most once per file opened, so an ordered index would cost more in
        // every append than it saves here.
        let Some(path) = self
            .open
            .iter()
            .min_by_key(|(_, e)| e.used)
            .map(|(p, _)| p.clone())
        else {
            return;
        };
        self.close(&path);
    }

    fn close(&mut self, path: &Path) {
        if let Some(entry) = self.open.remove(path)
            && entry.dirty
            && let Err(e) = entry.file.sync_data()
            && self.failed.is_none()
        {
            self.failed = Some(e);
        }
    }

    fn open_file(&mut self, path: &Path) -> io::Result<File> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            self.create_dirs(parent)?;
        }
        match OpenOptions::new()
            .append(true)
            .create_new(true)
            .mode(self.file_mode)
            .open(path)
        {
            Ok(file) => {
                file.set_permissions(Permissions::from_mode(self.file_mode))?;
                if let Some(parent) = path.parent() {
                    self.dirs.insert(parent.to_path_buf());
                }
                Ok(file)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                OpenOptions::new().append(true).open(path)
            }
            Err(e) => Err(e),
        }
    }

    /// Creates `dir` and its missing ancestors one by one, so that each new
    /// one gets `dir_mode` and its parent is remembered for the next sync.
    fn create_dirs(&mut self, dir: &Path) -> io::Result<()> {
        if dir.is_dir() {
            return Ok(());
        }
        let missing: Vec<&Path> = dir.ancestors().take_while(|a| !a.is_dir()).collect();
        for d in missing.into_iter().rev() {
            if d.as_os_str().is_empty() {
                continue;
            }
            match DirBuilder::new().mode(self.dir_mode).create(d) {
                Ok(()) => {
                    fs::set_permissions(d, Permissions::from_mode(self.dir_mode))?;
                    if let Some(parent) = d.parent() {
                        self.dirs.insert(parent.to_path_buf());
                    }
                }
                // Another writer (or an earlier failed attempt) got there
                // first; the mode is then theirs.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && d.is_dir() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ecc-logfiles-{}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn creates_directories_and_files_with_the_configured_modes() {
        let root = temp_dir("modes");
        // 0o664 and 0o775 would be cut by the usual umask of 022: they
        // must come through exactly.
        let mut files = LogFiles::new(0o664, 0o775, 4, Duration::from_secs(60));
        fs::create_dir(root.join("2024")).unwrap();
        fs::set_permissions(root.join("2024"), Permissions::from_mode(0o700)).unwrap();
        let path = root.join("2024/05/21/mainlog/default/node1");
        files.append_lines(&path, &[b"one", b"two\n", b""]).unwrap();
        files.sync_all().unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"one\ntwo\n\n");
        assert_eq!(mode(&path), 0o664);
        for d in ["2024/05", "2024/05/21", "2024/05/21/mainlog/default"] {
            assert_eq!(mode(&root.join(d)), 0o775, "{d}");
        }
        // An existing directory keeps its mode.
        assert_eq!(mode(&root.join("2024")), 0o700);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn appends_to_existing_files_without_changing_their_mode() {
        let root = temp_dir("existing");
        let path = root.join("log");
        fs::write(&path, b"old\n").unwrap();
        fs::set_permissions(&path, Permissions::from_mode(0o600)).unwrap();
        let mut files = LogFiles::new(0o644, 0o755, 4, Duration::from_secs(60));
        files.append_lines(&path, &[b"new"]).unwrap();
        files.append_lines(&path, &[b"newer"]).unwrap();
        files.sync_all().unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"old\nnew\nnewer\n");
        assert_eq!(mode(&path), 0o600);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn keeps_at_most_max_open_closing_the_least_recently_used() {
        let root = temp_dir("lru");
        let mut files = LogFiles::new(0o640, 0o755, 2, Duration::from_secs(60));
        let (a, b, c) = (root.join("a"), root.join("b"), root.join("c"));
        files.append_lines(&a, &[b"a1"]).unwrap();
        files.append_lines(&b, &[b"b1"]).unwrap();
        files.append_lines(&a, &[b"a2"]).unwrap(); // b is now the oldest
        files.append_lines(&c, &[b"c1"]).unwrap();
        assert_eq!(files.open_count(), 2);
        assert!(files.is_open(&a) && files.is_open(&c) && !files.is_open(&b));
        // b reopens and appends; a is now the least recently used.
        files.append_lines(&b, &[b"b2"]).unwrap();
        assert!(!files.is_open(&a) && files.is_open(&b) && files.is_open(&c));
        files.sync_all().unwrap();
        assert_eq!(fs::read(&a).unwrap(), b"a1\na2\n");
        assert_eq!(fs::read(&b).unwrap(), b"b1\nb2\n");
        assert_eq!(fs::read(&c).unwrap(), b"c1\n");
        // max_open 0 still lets one file be written.
        let mut one = LogFiles::new(0o640, 0o755, 0, Duration::from_secs(60));
        one.append_lines(&a, &[b"a3"]).unwrap();
        one.append_lines(&b, &[b"b3"]).unwrap();
        assert_eq!(one.open_count(), 1);
        one.sync_all().unwrap();
        assert_eq!(fs::read(&a).unwrap(), b"a1\na2\na3\n");
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn closes_files_idle_longer_than_max_idle() {
        let root = temp_dir("idle");
        let mut files = LogFiles::new(0o640, 0o755, 8, Duration::from_secs(10));
        let (a, b) = (root.join("a"), root.join("b"));
        files.append_lines(&a, &[b"a"]).unwrap();
        files.append_lines(&b, &[b"b"]).unwrap();
        let now = Instant::now();
        assert_eq!(files.close_idle(now), 0);
        assert_eq!(files.close_idle(now + Duration::from_secs(5)), 0);
        assert_eq!(files.close_idle(now + Duration::from_secs(11)), 2);
        assert_eq!(files.open_count(), 0);
        // Closed with unsynced lines: they were synced on the way out, and
        // sync_all has nothing left to report.
        files.sync_all().unwrap();
        assert_eq!(fs::read(&a).unwrap(), b"a\n");
        // A file written recently stays open while an older one closes.
        files.append_lines(&a, &[b"again"]).unwrap();
        let later = Instant::now() + Duration::from_secs(11);
        files.append_lines(&b, &[b"b2"]).unwrap();
        let b_entry = files.open.get_mut(b.as_path()).unwrap();
        b_entry.last_write = later;
        assert_eq!(files.close_idle(later), 1);
        assert!(files.is_open(&b) && !files.is_open(&a));
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn sync_all_clears_dirty_files_and_new_directory_entries() {
        let root = temp_dir("sync");
        let mut files = LogFiles::new(0o640, 0o755, 8, Duration::from_secs(60));
        let path = root.join("x/y/log");
        files.append_lines(&path, &[b"line"]).unwrap();
        assert!(files.open[&path].dirty);
        let mut dirs: Vec<_> = files.dirs.iter().cloned().collect();
        dirs.sort();
        assert_eq!(dirs, [root.clone(), root.join("x"), root.join("x/y")]);
        files.sync_all().unwrap();
        assert!(!files.open[&path].dirty);
        assert!(files.dirs.is_empty());
        // Nothing written since: a second sync is a no-op that succeeds.
        files.sync_all().unwrap();
        // Appending to the open file dirties it again, without a new entry.
        files.append_lines(&path, &[b"more"]).unwrap();
        assert!(files.open[&path].dirty && files.dirs.is_empty());
        files.sync_all().unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"line\nmore\n");
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn errors_are_returned() {
        let root = temp_dir("errors");
        let mut files = LogFiles::new(0o640, 0o755, 8, Duration::from_secs(60));
        // A file where a directory is needed.
        fs::write(root.join("plain"), b"").unwrap();
        assert!(
            files
                .append_lines(&root.join("plain/log"), &[b"x"])
                .is_err()
        );
        // A directory where the file should be.
        fs::create_dir(root.join("dir")).unwrap();
        assert!(files.append_lines(&root.join("dir"), &[b"x"]).is_err());
        assert_eq!(files.open_count(), 0);
        fs::remove_dir_all(&root).unwrap();
    }
}
