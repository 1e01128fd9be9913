//! `eccluster node --accept-moves DIR`: a stand-in MTA spool for tests and
//! the demo, as the move hook of the node.
//!
//! A message moved to the node is written to `DIR/<id>` (a temporary file,
//! synced, renamed, the directory synced), then its id is appended to
//! `DIR/deliveries.log` (synced), and only then accepted. The log is the
//! spool's record of what it took: an id already in it is accepted without
//! writing anything again (a redelivery: the node died after the spool took
//! the message and before the library recorded it), so each id is in the
//! log once. A message without recipients is rejected, as an MTA would.
//!
//! An id the spool has that comes without the redelivery flag is a
//! duplicate the library should have suppressed: it is accepted (the spool
//! has it) and reported on standard error, where tests look.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use eccluster::node::{MoveVerdict, MovedMessage, Node};

/// The spool's record of what it took, one id a line.
const DELIVERIES: &str = "deliveries.log";

struct Spool {
    dir: PathBuf,
    /// The ids in the log, and the log to append to.
    taken: Mutex<(HashSet<String>, File)>,
}

/// Makes `dir` the node's spool for moved messages.
pub fn accept_moves(node: &Node, dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join(DELIVERIES);
    let mut log = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut text = String::new();
    log.read_to_string(&mut text)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    // A line cut short by a crash was never acknowledged.
    let whole = text.rfind('\n').map_or(0, |i| i + 1);
    if whole < text.len() {
        log.set_len(whole as u64)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let taken: HashSet<String> = text[..whole].lines().map(str::to_string).collect();
    let spool = Arc::new(Spool {
        dir: dir.to_path_buf(),
        taken: Mutex::new((taken, log)),
    });
    node.register_move_hook(Box::new(move |m| spool.take(m)));
    Ok(())
}

impl Spool {
    fn take(&self, m: &MovedMessage) -> MoveVerdict {
        let id = m.id.as_str();
        if m.envelope.recipients.is_empty() {
            return MoveVerdict::Reject("550 5.5.1 no recipients".into());
        }
        if id == DELIVERIES {
            return MoveVerdict::Reject(format!("550 the id {id} names the spool's own log"));
        }
        // One at a time: a redelivery must find the first copy's line.
        let Ok(mut taken) = self.taken.lock() else {
            return MoveVerdict::Defer("451 the spool failed earlier".into());
        };
        if taken.0.contains(id) {
            if !m.redelivery {
                eprintln!(
                    "eccluster: spool: {id} from {} is spooled already but came without the redelivery flag",
                    m.from
                );
            }
            return MoveVerdict::Accept;
        }
        match self.write(id, &m.body, &mut taken.1) {
            Ok(()) => {
                taken.0.insert(id.to_string());
                MoveVerdict::Accept
            }
            Err(e) => MoveVerdict::Defer(format!("451 spool: {e}")),
        }
    }

    fn write(&self, id: &str, body: &[u8], log: &mut File) -> Result<(), String> {
        let path = self.dir.join(id);
        let tmp = self.dir.join(format!(".{id}.tmp"));
        let fail = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
        let mut f = File::create(&tmp).map_err(|e| fail(&tmp, e))?;
        f.write_all(body)
            .and_then(|()| f.sync_all())
            .map_err(|e| fail(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| fail(&path, e))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| fail(&self.dir, e))?;
        log.write_all(format!("{id}\n").as_bytes())
            .and_then(|()| log.sync_data())
            .map_err(|e| fail(&self.dir.join(DELIVERIES), e))
    }
}
