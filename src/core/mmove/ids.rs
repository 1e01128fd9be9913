//! Which moves a receiver has seen and accepted: its duplicate suppression.
//!
//! A move is known by its sender and id ([`Key`]). Before the host's hook
//! runs, the receiver records the move as *seen* (durably, when it has a
//! `mmove_dir`); once the host accepted it, as *accepted*, before the
//! sender is told. So after a crash:
//!
//! - an accepted move that comes again (its acknowledgement was lost) is
//!   answered `duplicate` without asking the host;
//! - a move seen but never resolved (the process died inside the hook, or
//!   after the host accepted and before that was recorded) is given to the
//!   host again with `redelivery` set: the host looks in its own spool;
//! - a move the host rejected or deferred is forgotten (*released*): the
//!   next attempt is a fresh delivery.
//!
//! A move that arrives again while its hook still runs (the sender gave up
//! waiting and retried) is not given to the host twice: the running hook's
//! verdict answers both.
//!
//! Memory and disk are bounded: an accepted id is kept [`KEEP_SECONDS`]
//! (a week: longer than a host keeps retrying one move) and at most
//! [`KEEP_IDS`] are kept, the oldest going first. A move retried after its
//! id expired is delivered again as new.
//!
//! The store's file is a log of [`Record`]s, one text line each, replayed
//! at start and rewritten from the live entries when it has grown to
//! several times their number ([`should_compact`]).

use std::collections::{HashMap, VecDeque};

use super::MoveId;

/// How long an accepted id is remembered: a week.
pub(crate) const KEEP_SECONDS: u64 = 7 * 24 * 3600;
/// How many ids are remembered at most (about 100 bytes of memory each).
pub(crate) const KEEP_IDS: usize = 1_000_000;

/// A move: its sender and id.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub from: String,
    pub id: MoveId,
}

/// One line of the store's file. Times are seconds since the epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// `S <from> <id> <time>`: the hook is about to run.
    Seen { key: Key, at: u64 },
    /// `A <from> <id> <time>`: the host accepted it.
    Accepted { key: Key, at: u64 },
    /// `R <from> <id>`: the host rejected or deferred it; forgotten.
    Released { key: Key },
}

impl Record {
    /// The record as one line, with its newline.
    pub fn to_line(&self) -> String {
        match self {
            Record::Seen { key, at } => format!("S {} {} {at}\n", key.from, key.id),
            Record::Accepted { key, at } => format!("A {} {} {at}\n", key.from, key.id),
            Record::Released { key } => format!("R {} {}\n", key.from, key.id),
        }
    }

    /// Parses one line (without its newline).
    pub fn parse(line: &str) -> Result<Record, String> {
        let words: Vec<&str> = line.split(' ').collect();
        let key = |from: &str, id: &str| -> Result<Key, String> {
            if from.is_empty() || from.len() > crate::core::wire::MAX_NAME {
                return Err(format!("bad node name {from:?}"));
            }
            Ok(Key {
                from: from.to_string(),
                id: MoveId::parse(id)?,
            })
        };
        let time = |t: &str| t.parse::<u64>().map_err(|_| format!("bad time {t:?}"));
        match words.as_slice() {
            ["S", from, id, at] => Ok(Record::Seen {
                key: key(from, id)?,
                at: time(at)?,
            }),
            ["A", from, id, at] => Ok(Record::Accepted {
                key: key(from, id)?,
                at: time(at)?,
            }),
            ["R", from, id] => Ok(Record::Released {
                key: key(from, id)?,
            }),
            _ => Err(format!("not a record: {line:?}")),
        }
    }
}

/// What to do with a move that arrived.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Give it to the host, after persisting `record` durably.
    Deliver { redelivery: bool, record: Record },
    /// Its hook is running now; that verdict will answer.
    InProgress,
    /// Accepted before: answer `duplicate`.
    Duplicate,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// The hook runs now, in this process.
    Running,
    /// Seen before a restart and never resolved.
    Unresolved,
    Accepted,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    state: State,
    at: u64,
}

/// See the module docs.
#[derive(Debug)]
pub struct IdStore {
    entries: HashMap<Key, Entry>,
    /// Keys in the order their entries were written, for expiry. An entry
    /// rewritten later leaves its older place behind, skipped when reached
    /// (its time no longer matches).
    order: VecDeque<(u64, Key)>,
    keep_seconds: u64,
    keep_ids: usize,
}

impl IdStore {
    pub fn new(keep_seconds: u64, keep_ids: usize) -> IdStore {
        IdStore {
            entries: HashMap::new(),
            order: VecDeque::new(),
            keep_seconds,
            keep_ids,
        }
    }

    /// Moves remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn put(&mut self, key: Key, state: State, at: u64) {
        self.order.push_back((at, key.clone()));
        self.entries.insert(key, Entry { state, at });
    }

    /// Applies a record read back from the file: what was running when the
    /// process stopped is unresolved now.
    pub fn replay(&mut self, record: Record) {
        match record {
            Record::Seen { key, at } => self.put(key, State::Unresolved, at),
            Record::Accepted { key, at } => self.put(key, State::Accepted, at),
            Record::Released { key } => {
                self.entries.remove(&key);
            }
        }
    }

    /// Whether the host accepted this move.
    pub fn is_accepted(&self, key: &Key) -> bool {
        self.entries
            .get(key)
            .is_some_and(|e| e.state == State::Accepted)
    }

    /// A move arrived whole at `now`; see [`Admission`].
    pub fn admit(&mut self, key: Key, now: u64) -> Admission {
        let redelivery = match self.entries.get(&key).map(|e| e.state) {
            Some(State::Accepted) => return Admission::Duplicate,
            Some(State::Running) => return Admission::InProgress,
            Some(State::Unresolved) => true,
            None => false,
        };
        self.put(key.clone(), State::Running, now);
        Admission::Deliver {
            redelivery,
            record: Record::Seen { key, at: now },
        }
    }

    /// The host's hook answered for a move it was given: the record to
    /// persist (durably before telling the sender when accepted).
    pub fn resolve(&mut self, key: Key, accepted: bool, now: u64) -> Record {
        if accepted {
            self.put(key.clone(), State::Accepted, now);
            Record::Accepted { key, at: now }
        } else {
            self.entries.remove(&key);
            Record::Released { key }
        }
    }

    /// Forgets what is older than the time limit, then the oldest beyond
    /// the count limit; a move whose hook is running stays. Returns how
    /// many were forgotten.
    pub fn expire(&mut self, now: u64) -> usize {
        let before = self.entries.len();
        // Each place is looked at once per call, so running entries put
        // back at the end cannot make it loop.
        for _ in 0..self.order.len() {
            let Some((at, key)) = self.order.front().cloned() else {
                break;
            };
            let too_old = at.saturating_add(self.keep_seconds) <= now;
            let too_many = self.entries.len() > self.keep_ids;
            let current = self.entries.get(&key).filter(|e| e.at == at).copied();
            match current {
                // A place left behind: drop it whatever the limits say.
                None => {
                    self.order.pop_front();
                }
                Some(_) if !too_old && !too_many => break,
                Some(e) if e.state == State::Running => {
                    self.order.pop_front();
                    self.order.push_back((at, key));
                }
                Some(_) => {
                    self.order.pop_front();
                    self.entries.remove(&key);
                }
            }
        }
        before - self.entries.len()
    }

    /// The live entries as records, oldest first: what a compacted file
    /// holds (a running move is written as seen, as it was).
    pub fn records(&self) -> Vec<Record> {
        self.order
            .iter()
            .filter_map(|(at, key)| {
                let e = self.entries.get(key).filter(|e| e.at == *at)?;
                Some((e.state, *at, key))
            })
            // An entry rewritten within one second has two places with
            // its time: keep the last.
            .rev()
            .scan(
                std::collections::HashSet::new(),
                |written, (state, at, key)| {
                    Some(written.insert(key).then(|| match state {
                        State::Accepted => Record::Accepted {
                            key: key.clone(),
                            at,
                        },
                        State::Running | State::Unresolved => Record::Seen {
                            key: key.clone(),
                            at,
                        },
                    }))
                },
            )
            .flatten()
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect()
    }
}

/// Whether a file of `in_file` records, `live` of them still meaningful,
/// is worth rewriting: when most of it is garbage, and not for a handful.
pub fn should_compact(in_file: usize, live: usize) -> bool {
    in_file > 2 * live + 1024
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(from: &str, id: &str) -> Key {
        Key {
            from: from.into(),
            id: MoveId::parse(id).unwrap(),
        }
    }

    #[test]
    fn records_round_trip_and_bad_lines_are_named() {
        for r in [
            Record::Seen {
                key: key("n1", "abc"),
                at: 7,
            },
            Record::Accepted {
                key: key("n-2", "1F:00@x"),
                at: u64::MAX,
            },
            Record::Released {
                key: key("n1", "abc"),
            },
        ] {
            let line = r.to_line();
            assert!(line.ends_with('\n'));
            assert_eq!(Record::parse(line.trim_end_matches('\n')), Ok(r));
        }
        assert_eq!(
            Record::parse("A n1 abc"),
            Err("not a record: \"A n1 abc\"".into())
        );
        assert_eq!(Record::parse("A n1 abc x"), Err("bad time \"x\"".into()));
        assert!(Record::parse("S n1 a/b 1").unwrap_err().contains("'/'"));
        assert!(Record::parse("R  abc").is_err());
    }

    #[test]
    fn a_move_is_delivered_once_then_a_duplicate() {
        let mut s = IdStore::new(100, 10);
        let k = key("n1", "m1");
        assert_eq!(
            s.admit(k.clone(), 5),
            Admission::Deliver {
                redelivery: false,
                record: Record::Seen {
                    key: k.clone(),
                    at: 5
                }
            }
        );
        assert_eq!(s.admit(k.clone(), 6), Admission::InProgress);
        assert_eq!(
            s.resolve(k.clone(), true, 7),
            Record::Accepted {
                key: k.clone(),
                at: 7
            }
        );
        assert!(s.is_accepted(&k));
        assert_eq!(s.admit(k.clone(), 8), Admission::Duplicate);
        // Another sender's move of the same id is another move.
        assert!(matches!(
            s.admit(key("n2", "m1"), 8),
            Admission::Deliver {
                redelivery: false,
                ..
            }
        ));
    }

    #[test]
    fn a_deferred_move_is_forgotten() {
        let mut s = IdStore::new(100, 10);
        let k = key("n1", "m1");
        s.admit(k.clone(), 1);
        assert_eq!(
            s.resolve(k.clone(), false, 2),
            Record::Released { key: k.clone() }
        );
        assert!(s.is_empty());
        assert!(matches!(
            s.admit(k, 3),
            Admission::Deliver {
                redelivery: false,
                ..
            }
        ));
    }

    #[test]
    fn after_a_restart_seen_is_a_redelivery_and_accepted_a_duplicate() {
        let mut before = IdStore::new(100, 10);
        let mut file = Vec::new();
        for (id, accept) in [
            ("crashed", None),
            ("done", Some(true)),
            ("deferred", Some(false)),
        ] {
            let k = key("n1", id);
            if let Admission::Deliver { record, .. } = before.admit(k.clone(), 1) {
                file.push(record);
            }
            if let Some(accepted) = accept {
                file.push(before.resolve(k, accepted, 2));
            }
        }
        let mut after = IdStore::new(100, 10);
        for r in file {
            after.replay(r);
        }
        assert!(matches!(
            after.admit(key("n1", "crashed"), 3),
            Admission::Deliver {
                redelivery: true,
                ..
            }
        ));
        assert_eq!(after.admit(key("n1", "done"), 3), Admission::Duplicate);
        assert!(matches!(
            after.admit(key("n1", "deferred"), 3),
            Admission::Deliver {
                redelivery: false,
                ..
            }
        ));
    }

    #[test]
    fn ids_expire_by_age_and_by_count_but_not_while_running() {
        let mut s = IdStore::new(10, 3);
        for (i, id) in ["a", "b", "c"].iter().enumerate() {
            let k = key("n1", id);
            s.admit(k.clone(), i as u64);
            s.resolve(k, true, i as u64);
        }
        let running = key("n1", "r");
        s.admit(running.clone(), 3);
        // Four entries, three allowed: the oldest goes.
        assert_eq!(s.expire(3), 1);
        assert!(!s.is_accepted(&key("n1", "a")));
        assert!(s.is_accepted(&key("n1", "b")));
        // At 12, "b" (1) and "c" (2) are 10 s old; the running one is
        // older than its limit too, and stays.
        assert_eq!(s.expire(14), 2);
        assert_eq!(s.len(), 1);
        assert_eq!(s.admit(running.clone(), 14), Admission::InProgress);
        s.resolve(running.clone(), true, 15);
        assert_eq!(s.expire(24), 0);
        assert_eq!(s.expire(25), 1);
        assert!(s.is_empty());
    }

    #[test]
    fn records_are_the_live_entries_once_each() {
        let mut s = IdStore::new(100, 10);
        let (a, b, c) = (key("n1", "a"), key("n1", "b"), key("n2", "c"));
        s.admit(a.clone(), 1);
        s.resolve(a.clone(), true, 1);
        s.admit(b.clone(), 2);
        s.resolve(b.clone(), false, 2);
        s.admit(c.clone(), 3);
        assert_eq!(
            s.records(),
            vec![
                Record::Accepted { key: a, at: 1 },
                Record::Seen { key: c, at: 3 }
            ]
        );
        assert!(should_compact(3000, 10));
        assert!(!should_compact(1000, 10));
        assert!(!should_compact(3000, 1000));
    }
}
