//! The event queue: the node's news (membership changes, DuraVIPs gained
//! and lost, log group lines) for hosts that run their own event loop and
//! would rather take events when they choose than have hooks called on the
//! engine's threads.
//!
//! A host makes a queue ([`crate::Node::events`]), adds its file
//! descriptor to its poll set (epoll, libevent, a Lua event loop) and,
//! when it is readable, takes events with [`EventQueue::next`] until there
//! are none. The descriptor is an eventfd kept **level-triggered**: it is
//! readable exactly while events are pending. Every change of "empty" to
//! "not empty" and back happens under the queue's lock together with the
//! eventfd's counter (written on the first event, read back to zero when
//! the last is taken), so the two never disagree. The host must never
//! read or write the descriptor itself; it only polls it.
//!
//! **Bounded.** A queue holds at most its capacity of events. When it is
//! full, new events are dropped, never queued and never waited for (the
//! engine thread that publishes must not block on a slow host), and
//! counted: the loss shows up in the queue, in order, as one
//! [`Event::Overflow`] carrying how many were dropped at that point (it
//! may take one place beyond the capacity), and in
//! [`EventQueue::dropped`] as a running total. A host that sees an
//! overflow has missed changes and should read the state again (the
//! members, the DuraVIPs). The largest event is a log line (64 KiB), so
//! a queue never holds more than its capacity times that.
//!
//! **Several queues** may listen to one node; each gets every event. The
//! node publishes through an [`EventHub`], which holds its queues weakly:
//! a queue the host dropped is forgotten at the next event, and building
//! an event costs nothing while no queue listens.
//!
//! **Kinds** are open-ended: [`Event`] is `non_exhaustive`, and every
//! event describes itself as a kind name and named fields ([`Event::kind`],
//! [`Event::fields`]), which is all the Lua and C APIs read. A new kind (a
//! message moved in, say) is a new variant and its fields here, and
//! nothing else changes.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, UNIX_EPOCH};

use parking_lot::Mutex;

use crate::core::duravip::{Claim, Service};
use crate::core::logs::group::GroupLine;

/// A queue's capacity when the caller asks for the default (0).
const DEFAULT_CAPACITY: usize = 1024;
/// The largest capacity a queue may have.
const MAX_CAPACITY: usize = 1 << 20;

/// The capacity a queue asked for `requested` gets (0: the default), or
/// why it cannot have it.
pub fn capacity_for(requested: usize) -> Result<usize, String> {
    match requested {
        0 => Ok(DEFAULT_CAPACITY),
        n if n > MAX_CAPACITY => Err(format!(
            "an event queue holds at most {MAX_CAPACITY} events, not {n}"
        )),
        n => Ok(n),
    }
}

/// One piece of news from the node; see the module docs.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The view changed (as the membership hook sees it).
    Membership {
        /// Counts view changes on this node.
        view_number: u64,
        /// The view's id.
        view_id: u64,
        /// Member names, sorted.
        members: Vec<String>,
    },
    /// This node gained a DuraVIP: plumbed and announced.
    DuraVipGained(Claim),
    /// This node gave a DuraVIP up: unplumbed.
    DuraVipLost(Claim),
    /// A peer's paniclog line on this node's `log_group`.
    LogLine(GroupLine),
    /// `dropped` events were lost here because the queue was full.
    Overflow { dropped: u64 },
    /// A console command the host's loop answers (see
    /// [`crate::Node::register_queued_command`]).
    Console(ConsoleRequest),
}

/// What a console command queued for the host carries: its words, its
/// arguments, and where the answer goes. Every queue gets a copy; the
/// first host that [claims](ConsoleRequest::claim) it answers, once.
#[derive(Clone, Debug)]
pub struct ConsoleRequest {
    pub words: String,
    pub args: Vec<String>,
    reply: Arc<Mutex<Option<AnswerSender>>>,
}

/// What a console command answers: its text, or its error.
type AnswerSender = SyncSender<Result<String, String>>;

impl PartialEq for ConsoleRequest {
    fn eq(&self, other: &ConsoleRequest) -> bool {
        Arc::ptr_eq(&self.reply, &other.reply)
    }
}

impl Eq for ConsoleRequest {}

/// The right to answer a [`ConsoleRequest`], held by the one host that
/// claimed it.
#[derive(Debug)]
pub struct ConsoleReply(AnswerSender);

impl ConsoleReply {
    /// Sends the answer (or the command's error) to the waiting console;
    /// lost if it stopped waiting meanwhile.
    pub fn send(self, answer: Result<String, String>) {
        let _ = self.0.send(answer);
    }
}

impl ConsoleRequest {
    /// A request, and where its answer will come.
    pub fn new(words: &str, args: &[String]) -> (ConsoleRequest, Receiver<Result<String, String>>) {
        let (send, receive) = std::sync::mpsc::sync_channel(1);
        let request = ConsoleRequest {
            words: words.to_string(),
            args: args.to_vec(),
            reply: Arc::new(Mutex::new(Some(send))),
        };
        (request, receive)
    }

    /// Takes the right to answer, unless another host took it or the
    /// console gave up ([`ConsoleRequest::withdraw`]).
    pub fn claim(&self) -> Option<ConsoleReply> {
        self.reply.lock().take().map(ConsoleReply)
    }

    /// The console stopped waiting: nobody runs the command after this.
    pub fn withdraw(&self) {
        self.reply.lock().take();
    }
}

/// One field of an event, as the Lua and C APIs read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Field<'a> {
    Integer(u64),
    /// Text or bytes (a log line may hold any byte).
    Bytes(Cow<'a, [u8]>),
    Strings(&'a [String]),
    Integers(Vec<u64>),
}

impl Event {
    /// The kind's name, as Lua's `event.kind` says it.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Membership { .. } => "membership",
            Event::DuraVipGained(_) => "duravip_gained",
            Event::DuraVipLost(_) => "duravip_lost",
            Event::LogLine(_) => "log_line",
            Event::Overflow { .. } => "overflow",
            Event::Console(_) => "console",
        }
    }

    /// Every field but the kind, by name.
    pub fn fields(&self) -> Vec<(&'static str, Field<'_>)> {
        match self {
            Event::Membership {
                view_number,
                view_id,
                members,
            } => vec![
                ("view_number", Field::Integer(*view_number)),
                ("view_id", Field::Integer(*view_id)),
                ("members", Field::Strings(members)),
            ],
            Event::DuraVipGained(claim) | Event::DuraVipLost(claim) => vec![
                (
                    "address",
                    Field::Bytes(Cow::Owned(claim.ip.to_string().into_bytes())),
                ),
                ("names", Field::Strings(&claim.names)),
                (
                    "listener_ports",
                    Field::Integers(
                        claim
                            .services
                            .iter()
                            .filter_map(|s| match s {
                                Service::Listener(port) => Some(u64::from(*port)),
                                Service::Binding => None,
                            })
                            .collect(),
                    ),
                ),
            ],
            Event::LogLine(line) => vec![
                (
                    "sender",
                    Field::Bytes(Cow::Borrowed(line.sender.as_bytes())),
                ),
                ("log", Field::Bytes(Cow::Borrowed(line.log.as_bytes()))),
                (
                    "time_us",
                    Field::Integer(
                        line.time
                            .duration_since(UNIX_EPOCH)
                            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
                    ),
                ),
                ("line", Field::Bytes(Cow::Borrowed(&line.line))),
            ],
            Event::Overflow { dropped } => vec![("dropped", Field::Integer(*dropped))],
            Event::Console(request) => vec![
                (
                    "words",
                    Field::Bytes(Cow::Borrowed(request.words.as_bytes())),
                ),
                ("args", Field::Strings(&request.args)),
            ],
        }
    }

    /// The field `name`, if this kind has it.
    pub fn field(&self, name: &str) -> Option<Field<'_>> {
        self.fields()
            .into_iter()
            .find_map(|(n, f)| (n == name).then_some(f))
    }
}

struct State {
    events: VecDeque<Event>,
    dropped_total: u64,
}

/// A bounded queue of events signalled by an eventfd; see the module docs.
/// Thread-safe.
pub struct EventQueue {
    state: Mutex<State>,
    capacity: usize,
    /// The eventfd, non-blocking; as a `File` for its `Read` and `Write`.
    signal: File,
}

impl std::fmt::Debug for EventQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventQueue")
            .field("fd", &self.fd())
            .field("capacity", &self.capacity)
            .field("pending", &self.len())
            .finish()
    }
}

impl EventQueue {
    /// An empty queue holding at most `capacity` events (0: the default,
    /// 1024; at most 1,048,576).
    pub fn new(capacity: usize) -> io::Result<EventQueue> {
        let capacity =
            capacity_for(capacity).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: eventfd takes no pointers; it returns a new descriptor or -1.
        #[allow(unsafe_code)]
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a descriptor we just opened and own alone.
        #[allow(unsafe_code)]
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(EventQueue {
            state: Mutex::new(State {
                events: VecDeque::new(),
                dropped_total: 0,
            }),
            capacity,
            signal: File::from(fd),
        })
    }

    /// The descriptor to poll for reading: readable while events are
    /// pending. Valid while the queue lives; never read or write it.
    pub fn fd(&self) -> RawFd {
        self.signal.as_raw_fd()
    }

    /// The most events the queue holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Events pending (an overflow mark counts as one).
    pub fn len(&self) -> usize {
        self.state.lock().events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many events were dropped because the queue was full, in all.
    pub fn dropped(&self) -> u64 {
        self.state.lock().dropped_total
    }

    /// Queues `event`, or counts it as dropped when the queue is full.
    /// Never blocks beyond the queue's lock.
    pub fn push(&self, event: Event) {
        let mut state = self.state.lock();
        let was_empty = state.events.is_empty();
        if state.events.len() >= self.capacity {
            state.dropped_total += 1;
            match state.events.back_mut() {
                Some(Event::Overflow { dropped }) => *dropped += 1,
                _ => state.events.push_back(Event::Overflow { dropped: 1 }),
            }
        } else {
            state.events.push_back(event);
        }
        if was_empty {
            // The counter is 0 while the queue is empty (module docs), so
            // this cannot overflow it and never blocks.
            let _ = (&self.signal).write(&1u64.to_ne_bytes());
        }
    }

    /// The oldest pending event, or `None`.
    pub fn next(&self) -> Option<Event> {
        let mut state = self.state.lock();
        let event = state.events.pop_front()?;
        if state.events.is_empty() {
            // Back to zero: not readable until the next event.
            let mut counter = [0u8; 8];
            let _ = (&self.signal).read(&mut counter);
        }
        Some(event)
    }

    /// Waits until an event is pending or `timeout` passes (`None`: no
    /// limit) by polling the descriptor, as a host's loop would; true when
    /// one is pending. For hosts (and tests) without a loop of their own.
    pub fn wait(&self, timeout: Option<Duration>) -> io::Result<bool> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let ms = match deadline {
                None => -1,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    // Rounded up, so that a short wait still waits.
                    i32::try_from(left.as_nanos().div_ceil(1_000_000)).unwrap_or(i32::MAX)
                }
            };
            let mut pollfd = libc::pollfd {
                fd: self.fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd, and we say so.
            #[allow(unsafe_code)]
            let n = unsafe { libc::poll(&mut pollfd, 1, ms) };
            match n {
                n if n > 0 => return Ok(true),
                0 => return Ok(false),
                _ => {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::Interrupted {
                        return Err(e);
                    }
                }
            }
        }
    }
}

/// The node's side: every live queue gets every event; see the module docs.
#[derive(Debug, Default)]
pub struct EventHub {
    queues: Mutex<Vec<Weak<EventQueue>>>,
}

impl EventHub {
    /// Adds a queue; it hears every event from now on while it lives.
    pub fn subscribe(&self, queue: &Arc<EventQueue>) {
        let mut queues = self.queues.lock();
        // Forgets dropped queues here too, so that a host making queues
        // while nothing happens does not pile them up.
        queues.retain(|q| q.strong_count() > 0);
        queues.push(Arc::downgrade(queue));
    }

    /// Gives the event `make` builds to every live queue; `make` runs only
    /// when one listens. Returns how many queues it reached.
    pub fn publish(&self, make: impl FnOnce() -> Event) -> usize {
        let mut queues = self.queues.lock();
        let live: Vec<Arc<EventQueue>> = queues.iter().filter_map(Weak::upgrade).collect();
        if live.len() != queues.len() {
            queues.retain(|q| q.strong_count() > 0);
        }
        drop(queues);
        if live.is_empty() {
            return 0;
        }
        let event = make();
        for queue in &live {
            queue.push(event.clone());
        }
        live.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(n: u64) -> Event {
        Event::Membership {
            view_number: n,
            view_id: 7,
            members: vec!["a".into()],
        }
    }

    fn readable(q: &EventQueue) -> bool {
        q.wait(Some(Duration::ZERO)).unwrap()
    }

    #[test]
    fn the_fd_is_readable_exactly_while_events_are_pending() {
        let q = EventQueue::new(8).unwrap();
        assert!(!readable(&q));
        q.push(view(1));
        q.push(view(2));
        assert!(readable(&q));
        assert_eq!(q.next(), Some(view(1)));
        assert!(readable(&q), "one is still pending");
        assert_eq!(q.next(), Some(view(2)));
        assert!(!readable(&q));
        assert_eq!(q.next(), None);
        q.push(view(3));
        assert!(readable(&q), "readable again on the next event");
    }

    #[test]
    fn a_full_queue_drops_new_events_and_says_where_and_how_many() {
        let q = EventQueue::new(2).unwrap();
        for n in 1..=5 {
            q.push(view(n));
        }
        assert_eq!(q.dropped(), 3);
        assert_eq!(q.len(), 3, "the mark takes one place beyond the capacity");
        assert_eq!(q.next(), Some(view(1)));
        // Still full (the mark counts): dropped and added to the mark.
        q.push(view(6));
        assert_eq!(q.next(), Some(view(2)));
        q.push(view(7));
        assert_eq!(q.next(), Some(Event::Overflow { dropped: 4 }));
        assert_eq!(
            q.next(),
            Some(view(7)),
            "what came after the loss follows it"
        );
        assert_eq!(q.next(), None);
        assert_eq!(q.dropped(), 4);
    }

    #[test]
    fn capacities_are_checked() {
        assert_eq!(EventQueue::new(0).unwrap().capacity(), DEFAULT_CAPACITY);
        let e = EventQueue::new(MAX_CAPACITY + 1).unwrap_err();
        assert!(e.to_string().contains("at most 1048576"), "{e}");
    }

    #[test]
    fn wait_returns_when_another_thread_publishes() {
        let hub = Arc::new(EventHub::default());
        let q = Arc::new(EventQueue::new(4).unwrap());
        hub.subscribe(&q);
        let publisher = {
            let hub = Arc::clone(&hub);
            std::thread::spawn(move || hub.publish(|| view(1)))
        };
        assert!(q.wait(Some(Duration::from_secs(10))).unwrap());
        publisher.join().unwrap();
        assert_eq!(q.next(), Some(view(1)));
    }

    #[test]
    fn the_hub_forgets_dropped_queues_and_builds_nothing_for_nobody() {
        let hub = EventHub::default();
        hub.publish(|| unreachable!("no queue listens"));
        let q = Arc::new(EventQueue::new(4).unwrap());
        hub.subscribe(&q);
        let other = Arc::new(EventQueue::new(4).unwrap());
        hub.subscribe(&other);
        drop(other);
        hub.publish(|| view(1));
        assert_eq!(hub.queues.lock().len(), 1);
        assert_eq!(q.next(), Some(view(1)));
    }

    #[test]
    fn events_describe_themselves_by_named_fields() {
        let claim = Claim {
            ip: "10.0.0.1".parse().unwrap(),
            names: vec!["b1".into()],
            services: vec![Service::Binding, Service::Listener(25)],
            preference: None,
        };
        let e = Event::DuraVipGained(claim);
        assert_eq!(e.kind(), "duravip_gained");
        assert_eq!(
            e.field("address"),
            Some(Field::Bytes(Cow::Borrowed(b"10.0.0.1")))
        );
        assert_eq!(e.field("listener_ports"), Some(Field::Integers(vec![25])));
        assert_eq!(e.field("line"), None);
        let names: Vec<&str> = view(1).fields().iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["view_number", "view_id", "members"]);
    }
}
