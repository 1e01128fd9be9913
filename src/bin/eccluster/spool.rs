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
//!
//! The stand-in MTA also places messages as a real one would: its console
//! command `mta send <file> <mail from> <recipient> [<header>:<value> ...]`
//! runs set_binding (the node's policy scripts) on the message, and then
//! either sends it from the chosen binding here (it only says so) or moves
//! it to the node that owns the binding. A message moved in with `rebind`
//! (`unconditional_rebind`, the default) runs set_binding again on arrival,
//! and the spool says on standard error which binding it leaves from.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use std::time::Duration;

use eccluster::node::{
    MoveEnvelope, MoveRequest, MoveVerdict, MovedMessage, Node, NodeError, WeakNode,
};
use eccluster::policy::{Decision, Message};

/// The spool's record of what it took, one id a line.
const DELIVERIES: &str = "deliveries.log";

/// How long `mta send` waits for a move to be accepted.
const MOVE_TIMEOUT: Duration = Duration::from_secs(30);

struct Spool {
    /// For set_binding on a message moved in (weak: the node holds the hook).
    node: WeakNode,
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
    let whole = eccluster::io::mmove::cut_torn_line(&log, text.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let taken: HashSet<String> = text[..whole].lines().map(str::to_string).collect();
    let spool = Arc::new(Spool {
        node: node.downgrade(),
        dir: dir.to_path_buf(),
        taken: Mutex::new((taken, log)),
    });
    node.register_move_hook(Box::new(move |m| spool.take(m)));
    let weak = node.downgrade();
    node.register_console_command(
        "mta send",
        "<file> <mail from> <recipient> [<header>:<value> ...]",
        "Place the message in <file> as an MTA would: set_binding, then send it from the binding here or move it to the node that owns the binding.",
        Box::new(move |args| match weak.upgrade() {
            Some(node) => send(&node, args),
            None => Err("the node is gone".into()),
        }),
    )
    .map_err(|e: NodeError| e.to_string())
}

/// `mta send`: see the module docs.
fn send(node: &Node, args: &[String]) -> Result<String, String> {
    let [file, mail_from, recipient, headers @ ..] = args else {
        return Err("usage: mta send <file> <mail from> <recipient> [<header>:<value> ...]".into());
    };
    let body = std::fs::read(file).map_err(|e| format!("{file}: {e}"))?;
    let headers = headers
        .iter()
        .map(|h| {
            h.split_once(':')
                .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| format!("'{h}' is not a header: write <name>:<value>"))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let mut msg = message(mail_from, std::slice::from_ref(recipient), headers);
    match node.set_binding(&mut msg) {
        Decision::Send { binding } => Ok(format!("send from {binding} here\n")),
        Decision::Move {
            binding,
            node: owner,
        } => {
            let request = MoveRequest {
                id: None,
                envelope: MoveEnvelope {
                    mail_from: mail_from.clone(),
                    recipients: vec![recipient.clone()],
                    binding: binding.clone(),
                    binding_group: msg.binding_group.clone().unwrap_or_default(),
                    headers: msg.headers.clone(),
                },
                body: &body,
            };
            let receipt = node
                .move_message(&owner, &request, MOVE_TIMEOUT)
                .map_err(|e| e.to_string())?;
            Ok(format!(
                "{binding} is on {owner}: moved there as {}, accepted\n",
                receipt.id
            ))
        }
        Decision::Unchanged { reason } => Ok(format!("unchanged: {reason}\n")),
        Decision::Unavailable { reason } => Err(format!("no binding available: {reason}")),
    }
}

/// A message for set_binding: the recipients' domains, the headers.
fn message(mail_from: &str, recipients: &[String], headers: Vec<(String, String)>) -> Message {
    let mut msg = Message::new(mail_from);
    msg.recipient_domains = recipients
        .iter()
        .filter_map(|r| r.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()))
        .collect();
    msg.headers = headers;
    msg
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
                if m.rebind {
                    self.rebind(m);
                }
                MoveVerdict::Accept
            }
            Err(e) => MoveVerdict::Defer(format!("451 spool: {e}")),
        }
    }

    /// set_binding again for a message moved in, as the reference does
    /// with `unconditional_rebind`; says where it leaves from.
    fn rebind(&self, m: &MovedMessage) {
        let Some(node) = self.node.upgrade() else {
            return;
        };
        let mut msg = message(
            &m.envelope.mail_from,
            &m.envelope.recipients,
            m.envelope.headers.clone(),
        );
        msg.binding = Some(m.envelope.binding.clone());
        msg.binding_group = Some(m.envelope.binding_group.clone()).filter(|g| !g.is_empty());
        let decision = match node.set_binding(&mut msg) {
            Decision::Send { binding } => format!("send from {binding} here"),
            Decision::Move { binding, node } => {
                format!("{binding} is on {node} now: it will move again")
            }
            Decision::Unchanged { .. } => format!("send from {} here", m.envelope.binding),
            Decision::Unavailable { reason } => format!("no binding available: {reason}"),
        };
        eprintln!(
            "eccluster: spool: took {} from {}; set_binding here: {decision}",
            m.id.as_str(),
            m.from
        );
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
