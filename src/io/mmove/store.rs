//! The receiver's id store (`core::mmove::ids`), in memory or, with a
//! `mmove_dir`, also on disk, so that duplicate suppression survives a
//! crash.
//!
//! On disk it is `<mmove_dir>/mmove-ids`, the store's records appended one
//! line each, and `<mmove_dir>/lock`, locked (flock) while a node uses the
//! directory: two nodes sharing one store would answer for each other's
//! moves. A *seen* record and an *accepted* one are durable (fdatasync)
//! before the store answers; appends that are under way together share one
//! sync. A *released* one is not synced: lost in a crash, it makes the next
//! attempt a redelivery, which the host handles anyway.
//!
//! At open the file is replayed; a last line cut short by a crash is cut
//! off, any other line that is not a record is an error naming it. When
//! the file has grown to several times the live entries
//! (`ids::should_compact`) it is rewritten from them (to a temporary file,
//! synced, renamed over the old one).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::core::mmove::ids::{self, Admission, IdStore, KEEP_IDS, KEEP_SECONDS, Key, Record};

/// The store's file, in `mmove_dir`.
const IDS_FILE: &str = "mmove-ids";
/// Held locked while a node uses the directory.
const LOCK_FILE: &str = "lock";

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Ids {
    state: Mutex<State>,
    /// Appends counted up to this one are durable. Taken before `state`
    /// when both are needed.
    synced: Mutex<u64>,
}

#[derive(Debug)]
struct State {
    store: IdStore,
    disk: Option<Disk>,
}

#[derive(Debug)]
struct Disk {
    path: PathBuf,
    file: Arc<File>,
    /// Records in the file, live or not.
    in_file: usize,
    /// Appends so far: the number the group commit compares.
    written: u64,
    _lock: File,
}

impl Ids {
    /// A store kept in memory only: a restart forgets every id.
    pub fn in_memory() -> Ids {
        Ids {
            state: Mutex::new(State {
                store: IdStore::new(KEEP_SECONDS, KEEP_IDS),
                disk: None,
            }),
            synced: Mutex::new(0),
        }
    }

    /// Opens (creating it if need be) the store in `dir` and replays it;
    /// `now` is the wall clock in seconds.
    pub fn open(dir: &Path, now: u64) -> Result<Ids, String> {
        Self::open_with(dir, now, KEEP_SECONDS, KEEP_IDS)
    }

    fn open_with(dir: &Path, now: u64, keep_seconds: u64, keep_ids: usize) -> Result<Ids, String> {
        let at =
            |path: &Path, what: &str, e: std::io::Error| format!("{}: {what}: {e}", path.display());
        std::fs::create_dir_all(dir).map_err(|e| at(dir, "cannot create", e))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = File::create(&lock_path).map_err(|e| at(&lock_path, "cannot create", e))?;
        lock.try_lock().map_err(|e| match e {
            std::fs::TryLockError::WouldBlock => format!(
                "{}: another node (or process) uses this mmove_dir; each node needs its own",
                dir.display()
            ),
            std::fs::TryLockError::Error(e) => at(&lock_path, "cannot lock", e),
        })?;
        let path = dir.join(IDS_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| at(&path, "cannot open", e))?;
        let mut text = Vec::new();
        file.read_to_end(&mut text)
            .map_err(|e| at(&path, "cannot read", e))?;
        // A crash may leave the last line unfinished: it never answered
        // anyone, so it is cut.
        let whole = cut_torn_line(&file, &text)
            .map_err(|e| at(&path, "cannot cut its torn last line", e))?;
        let mut store = IdStore::new(keep_seconds, keep_ids);
        let mut in_file = 0;
        for (n, line) in text[..whole].split(|b| *b == b'\n').enumerate() {
            if line.is_empty() {
                continue;
            }
            let record = std::str::from_utf8(line)
                .map_err(|_| "not UTF-8".to_string())
                .and_then(Record::parse)
                .map_err(|e| {
                    format!(
                        "{}:{}: {e} (the file is damaged; move it away to start with no ids)",
                        path.display(),
                        n + 1
                    )
                })?;
            store.replay(record);
            in_file += 1;
        }
        store.expire(now);
        let ids = Ids {
            state: Mutex::new(State {
                store,
                disk: Some(Disk {
                    path,
                    file: Arc::new(file),
                    in_file,
                    written: 0,
                    _lock: lock,
                }),
            }),
            synced: Mutex::new(0),
        };
        ids.state.lock().compact_if_worthwhile()?;
        Ok(ids)
    }

    /// Moves remembered.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.state.lock().store.len()
    }

    /// Whether the host accepted this move.
    pub fn is_accepted(&self, key: &Key) -> bool {
        self.state.lock().store.is_accepted(key)
    }

    /// A move arrived whole; a delivery is recorded durably before this
    /// returns. When that fails the move is forgotten again.
    pub fn admit(&self, key: Key, now: u64) -> Result<Admission, String> {
        let (admission, ticket) = {
            let mut state = self.state.lock();
            state.store.expire(now);
            state.compact_if_worthwhile()?;
            let admission = state.store.admit(key.clone(), now);
            let Admission::Deliver { record, .. } = &admission else {
                return Ok(admission);
            };
            match state.append(record) {
                Ok(ticket) => (admission, ticket),
                Err(e) => {
                    state.store.resolve(key, false, now);
                    return Err(e);
                }
            }
        };
        if let Some(ticket) = ticket
            && let Err(e) = self.sync(ticket)
        {
            self.state.lock().store.resolve(key, false, now);
            return Err(e);
        }
        Ok(admission)
    }

    /// The host answered for a move it was given; an acceptance is durable
    /// when this returns.
    pub fn resolve(&self, key: Key, accepted: bool, now: u64) -> Result<(), String> {
        let ticket = {
            let mut state = self.state.lock();
            let record = state.store.resolve(key, accepted, now);
            state.append(&record)?
        };
        match ticket {
            Some(t) if accepted => self.sync(t),
            _ => Ok(()),
        }
    }

    /// Makes append number `ticket` durable: one fdatasync covers every
    /// append written before it starts, so concurrent callers share it.
    fn sync(&self, ticket: u64) -> Result<(), String> {
        let mut synced = self.synced.lock();
        if *synced >= ticket {
            return Ok(());
        }
        // What is written now is in the page cache, so this sync covers
        // it. A compaction in between synced the older appends itself.
        let (upto, file, path) = {
            let state = self.state.lock();
            let Some(disk) = &state.disk else {
                return Ok(());
            };
            (disk.written, Arc::clone(&disk.file), disk.path.clone())
        };
        file.sync_data()
            .map_err(|e| format!("{}: cannot sync: {e}", path.display()))?;
        *synced = upto;
        Ok(())
    }
}

impl State {
    /// Appends one record (nothing in memory): its ticket for the sync.
    fn append(&mut self, record: &Record) -> Result<Option<u64>, String> {
        let Some(disk) = &mut self.disk else {
            return Ok(None);
        };
        (&*disk.file)
            .write_all(record.to_line().as_bytes())
            .map_err(|e| format!("{}: cannot write: {e}", disk.path.display()))?;
        disk.in_file += 1;
        disk.written += 1;
        Ok(Some(disk.written))
    }

    fn compact_if_worthwhile(&mut self) -> Result<(), String> {
        let Some(disk) = &mut self.disk else {
            return Ok(());
        };
        if !ids::should_compact(disk.in_file, self.store.len()) {
            return Ok(());
        }
        let records = self.store.records();
        let text: String = records.iter().map(Record::to_line).collect();
        crate::journal::write_synced(&disk.path, text.as_bytes()).map_err(|e| e.to_string())?;
        disk.file = Arc::new(
            OpenOptions::new()
                .append(true)
                .open(&disk.path)
                .map_err(|e| format!("{}: cannot open: {e}", disk.path.display()))?,
        );
        disk.in_file = records.len();
        Ok(())
    }
}

/// Cuts an unfinished last line a crash left in a log of lines (`text` is
/// what `file` holds), durably; returns the length of the whole lines.
/// The id store's file and a host's spool log (`eccluster node
/// --accept-moves`) are such logs.
pub fn cut_torn_line(file: &File, text: &[u8]) -> std::io::Result<usize> {
    let whole = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    if whole < text.len() {
        file.set_len(whole as u64)?;
        file.sync_data()?;
    }
    Ok(whole)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::mmove::MoveId;

    fn key(id: &str) -> Key {
        Key {
            from: "n1".into(),
            id: MoveId::parse(id).unwrap(),
        }
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ecc-mmove-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn delivered(a: Admission) -> Option<bool> {
        match a {
            Admission::Deliver { redelivery, .. } => Some(redelivery),
            _ => None,
        }
    }

    #[test]
    fn accepted_ids_and_unresolved_ones_survive_a_restart() {
        let dir = temp_dir("restart");
        {
            let ids = Ids::open(&dir, 100).unwrap();
            assert_eq!(delivered(ids.admit(key("done"), 100).unwrap()), Some(false));
            ids.resolve(key("done"), true, 100).unwrap();
            assert_eq!(
                delivered(ids.admit(key("crashed"), 100).unwrap()),
                Some(false)
            );
            assert_eq!(
                delivered(ids.admit(key("deferred"), 100).unwrap()),
                Some(false)
            );
            ids.resolve(key("deferred"), false, 100).unwrap();
            // A second store on the same directory is refused.
            let err = Ids::open(&dir, 100).unwrap_err();
            assert!(err.contains("another node"), "{err}");
        }
        // A crash in the middle of a line.
        let path = dir.join(IDS_FILE);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"A n1 torn").unwrap();
        drop(f);

        let ids = Ids::open(&dir, 200).unwrap();
        assert_eq!(ids.admit(key("done"), 200).unwrap(), Admission::Duplicate);
        assert_eq!(
            delivered(ids.admit(key("crashed"), 200).unwrap()),
            Some(true)
        );
        assert_eq!(
            delivered(ids.admit(key("deferred"), 200).unwrap()),
            Some(false)
        );
        assert!(std::fs::read_to_string(&path).unwrap().ends_with('\n'));
        drop(ids);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_damaged_line_is_named_and_memory_forgets() {
        let dir = temp_dir("damaged");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(IDS_FILE), "A n1 ok 5\nX what\nA n1 ok2 5\n").unwrap();
        let err = Ids::open(&dir, 10).unwrap_err();
        assert!(
            err.ends_with("mmove-ids:2: not a record: \"X what\" (the file is damaged; move it away to start with no ids)"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);

        let memory = Ids::in_memory();
        memory.admit(key("m"), 1).unwrap();
        memory.resolve(key("m"), true, 1).unwrap();
        assert_eq!(memory.admit(key("m"), 2).unwrap(), Admission::Duplicate);
    }

    #[test]
    fn the_file_is_compacted_and_expired_ids_go() {
        let dir = temp_dir("compact");
        std::fs::create_dir_all(&dir).unwrap();
        let lines: String = (0..3000).map(|i| format!("A n1 m{i} {i}\n")).collect();
        std::fs::write(dir.join(IDS_FILE), lines).unwrap();
        // Ten ids kept at most: the newest ten, and the file rewritten.
        let ids = Ids::open_with(&dir, 3000, 1000, 10).unwrap();
        assert_eq!(ids.len(), 10);
        let text = std::fs::read_to_string(dir.join(IDS_FILE)).unwrap();
        assert_eq!(text.lines().count(), 10);
        assert!(text.starts_with("A n1 m2990 2990\n"), "{text}");
        assert_eq!(ids.admit(key("m2999"), 3000).unwrap(), Admission::Duplicate);
        assert_eq!(
            delivered(ids.admit(key("m2989"), 3000).unwrap()),
            Some(false)
        );
        drop(ids);
        // By 10,000 every id has passed its time limit, the unresolved too.
        let ids = Ids::open_with(&dir, 10_000, 1000, 10).unwrap();
        assert_eq!(ids.len(), 0);
        drop(ids);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
