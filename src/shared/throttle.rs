//! Cluster-wide rate limits (`shared_named_throttles`, `OBTM`, `OBTC`):
//! "at most N per S seconds across the whole cluster", decided on the hot
//! path without asking anyone.
//!
//! # Windows and keys
//!
//! A throttle `"N/S"` (`"N"` is `"N/1"`) counts admissions in fixed windows
//! of S seconds on the **wall clock**, window `w = now_ms / (S * 1000)`,
//! so that every node numbers windows alike. Each node replicates its own
//! count for the current window under the key
//!
//! ```text
//! name bytes (UTF-8, no NUL) | 0x00 | window index as u64 big-endian
//! ```
//!
//! and learns the peers' sum for that key through [`ThrottleTable::set_peer_sum`].
//! When a window ends the node reports 0 once for the window it last
//! reported, so that peers' sums forget it, and keeps state for the
//! current window only (plus the peers' sums of a few windows ahead, for
//! a peer whose clock runs a little fast). Memory is therefore bounded by
//! the number of defined throttles.
//!
//! # The admission rule
//!
//! The reference's `epsilon` is "the share of the throttle one node may use
//! up in one round of information circulating around the cluster". Here a
//! **round** is a fixed slice of `round_ms` of each window (rounds start at
//! the window start, so nodes agree on them as they agree on windows). At
//! the first call in a round (from an MTA thread or the engine's
//! [`maintain`](ThrottleTable::maintain)) a node sets its budget for the
//! round from its view `G` (own count + peers' sum for the window):
//!
//! ```text
//! m  = members in the view          R = N - G - U
//! budget = ceil(eps * R / m) if R > 0, else 0
//! U  = 0                                         in round 0
//!    = (m-1) * ceil(eps * N / m)                 in round 1
//!    = (m-1) * ceil(eps * c * max(0, N-H) / m)   in rounds k >= 2
//! c  = 1 / (1 + eps * (m-1) / m)
//! H  = this node's view when it started round k-3 (or the latest before; 0 if none)
//! ```
//!
//! Admitting one takes one token of the budget (a compare-and-swap) and
//! also requires `G < N` with the freshest peers' sum (a hard stop that
//! only ever admits less). Unspent budget is lost at the end of the round.
//! Everything on the hot path is atomics; the engine never has to be
//! waited for.
//!
//! Why `U`: budgets are decided on stale views. What peers admitted in the
//! previous round may still be on its way, so a node first subtracts the
//! most the other `m-1` nodes can have admitted in round `k-1` without it
//! knowing. Each peer's round-`k-1` budget is at most `ceil(eps*N/m)` in
//! round 0, and from round 1 on at most `ceil(eps*c*(N-G_peer)/m)`: its own
//! `U` took away at least `(m-1)*eps*c*(N-G_peer)/m`, and `c` is the fixed
//! point of `c = 1 - eps*c*(m-1)/m`. A peer's view when it set that budget
//! held everything admitted in rounds `<= k-3`, and `H` holds nothing
//! newer than that (below), so `N-H` bounds `N-G_peer`.
//!
//! # The bound
//!
//! Assume: (A1) everything admitted with a budget of round `r` is in every
//! node's view before that node starts round `r+2` ("updates reach every
//! peer within one round"); (A2) nothing admitted with a budget of round
//! `r+1` is in a node's view when it starts round `r` (clock skew is well
//! under a round); (A3) every node's `members` is at least the number of
//! nodes admitting. With `D` the delay from an admission to the peers'
//! view (engine pass + `max_delay` + transit + engine pass) and `s` the
//! clock skew, `round_ms >= D + 2s` gives (A1) and (A2).
//!
//! Let `R*_k = N - (everything admitted in rounds < k)`. By (A1) a node's
//! view at the start of round `k` holds all of rounds `<= k-2` and its own
//! round `k-1`, and `U` covers the peers' round `k-1`, so its `R <= R*_k`
//! and its budget is at most `ceil(eps*R*_k/m)` (0 if `R*_k <= 0`). Round
//! `k` then admits less than `eps*R*_k + m` in all, so
//! `R*_(k+1) > (1-eps)*R*_k - m >= -m` while `R*_k >= 1`, and nothing is
//! admitted once `R*_k <= 0`. Hence, per window,
//!
//! ```text
//! admitted <= N + (m - 1)
//! ```
//!
//! independent of `eps`. `eps` trades convergence speed against fairness:
//! a high `eps` lets the first node with demand take a large share of the
//! window early. Utilisation is the price of the bound: in a window of
//! only one or two rounds a single busy node gets about `eps*N/m`, since
//! it cannot know the others are idle. With ten rounds per window and
//! `eps >= 0.5`, the three-node simulation (`tests/replication_throttle.rs`)
//! admits at least 95% of N when every node wants more, 73% when one
//! node alone does, and 90% of a spread demand of N or less. A node holds
//! back one token per peer while any of theirs may be unseen, so up to
//! about `2*(m-1)` tokens can stay unused at a window's end, and a
//! throttle whose N is of the order of m may admit little after round 0.
//!
//! One more may slip through per MTA thread at a rollover: a call that
//! took its token from the old round's budget can land its count in the
//! new window. It is always counted; it is just not budgeted.
//!
//! **Partitions**: each side counts only its own members (`members` is the
//! view size), so each side enforces the limit on its own and the cluster
//! as a whole may admit up to about N per side.
//!
//! **Limitations**: a node that restarts within a window forgets what it
//! admitted (its new generation replaces its old contribution at the
//! peers), and a throttle defined on one node after peers' updates for it
//! arrived learns their usage only from their next update. Define
//! throttles alike on every node at start-up.
//!
//! # Time
//!
//! [`Throttle::consume`] and friends read the coarse wall clock
//! ([`super::wall_ms`], the last timer tick's time) on every call: the
//! precise `SystemTime::now` was most of their cost (45 of 55 ns on the
//! 2-core VM of `benches/shared_throttle.rs`). The `_at` variants take the
//! time instead, for hosts that keep a "now" per event-loop turn and for
//! simulations. A coarse clock only shifts this node's window and round
//! edges by its lag (a few milliseconds), which counts as clock skew in
//! the bound's assumptions: keep it well under a round.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};

use parking_lot::{Mutex, RwLock};

use super::wall_ms;

use super::{KeyCount, Scope};

/// The reference's default epsilon.
const DEFAULT_EPSILON: f64 = 0.95;
/// Counts stay far from i64 overflow and exact in the f64 budget maths.
const MAX_COUNT: u64 = 1 << 53;
/// A window's length in milliseconds must fit a u64 with room to spare.
const MAX_PERIOD_S: u64 = 1 << 32;
/// Peers' sums kept for windows this node has not reached yet.
const MAX_AHEAD: usize = 4;
/// Views remembered for `H` (rounds k-1 .. k-3 and one spare).
const HISTORY: usize = 4;
/// Not a window index any clock produces before the year 500 million.
const NO_WINDOW: u64 = u64::MAX;

/// A throttle's limit: `count` per `period_s` seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    pub count: u64,
    pub period_s: u64,
}

impl Limit {
    /// Parses the reference's `"N"` (N per second) or `"N/S"` (N per S
    /// seconds); `name` is for the error message.
    pub fn parse(name: &str, text: &str) -> Result<Limit, ThrottleError> {
        let err = |what: String| ThrottleError {
            name: name.to_string(),
            what,
        };
        let t = text.trim();
        let (n, s) = match t.split_once('/') {
            Some((n, s)) => (n.trim(), Some(s.trim())),
            None => (t, None),
        };
        let number = |part: &str| -> Option<u64> {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            // All digits: only an overflow can fail, reported as too large.
            Some(part.parse::<u64>().unwrap_or(u64::MAX))
        };
        let not_n_s = || err(format!("limit {text:?} is not N or N/S"));
        let count = number(n).ok_or_else(not_n_s)?;
        let period_s = match s {
            Some(s) => number(s).ok_or_else(not_n_s)?,
            None => 1,
        };
        if count == 0 {
            return Err(err(format!("limit {text:?}: N must be at least 1")));
        }
        if count > MAX_COUNT {
            return Err(err(format!(
                "limit {text:?}: N must be at most {MAX_COUNT}"
            )));
        }
        if period_s == 0 {
            return Err(err(format!("limit {text:?}: S must be at least 1 second")));
        }
        if period_s > MAX_PERIOD_S {
            return Err(err(format!(
                "limit {text:?}: S must be at most {MAX_PERIOD_S} seconds"
            )));
        }
        Ok(Limit { count, period_s })
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.count, self.period_s)
    }
}

/// Why a throttle could not be defined.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThrottleError {
    /// The throttle's name as given.
    pub name: String,
    /// What was wrong.
    pub what: String,
}

impl fmt::Display for ThrottleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "throttle '{}': {}", self.name, self.what)
    }
}

impl std::error::Error for ThrottleError {}

/// The wire key of `name`'s count in `window` (module docs).
pub fn wire_key(name: &str, window: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(name.len() + 9);
    key.extend_from_slice(name.as_bytes());
    key.push(0);
    key.extend_from_slice(&window.to_be_bytes());
    key
}

/// The name and window of a wire key; `None` for anything else.
pub fn parse_wire_key(key: &[u8]) -> Option<(&str, u64)> {
    let split = key.len().checked_sub(9)?;
    let (name, tail) = key.split_at(split);
    if tail[0] != 0 || name.contains(&0) {
        return None;
    }
    let mut window = [0u8; 8];
    window.copy_from_slice(&tail[1..]);
    Some((std::str::from_utf8(name).ok()?, u64::from_be_bytes(window)))
}

/// What every throttle of a table shares.
#[derive(Debug)]
struct Ctx {
    round_ms: u64,
    members: AtomicUsize,
}

/// The engine's side of a throttle, and the hot path's rare rollovers.
#[derive(Debug)]
struct Slow {
    window: u64,
    round: u64,
    /// (round, view when this node started it), oldest first.
    history: Vec<(u64, i64)>,
    /// Peers' sums for windows not reached yet.
    ahead: BTreeMap<u64, i64>,
    /// The window whose non-zero count peers last heard of from us.
    reported: Option<u64>,
}

/// One named throttle; a cheap handle for any thread. See the module docs.
#[derive(Debug)]
pub struct Throttle {
    name: String,
    limit: Limit,
    epsilon: f64,
    period_ms: u64,
    ctx: Arc<Ctx>,
    /// When the current round (or window) ends: the hot path's only
    /// question about time.
    next_refresh_ms: AtomicU64,
    /// This node's admissions in the current window.
    local: AtomicI64,
    /// The peers' sum for the current window.
    peer: AtomicI64,
    /// Tokens left in this round.
    budget: AtomicI64,
    /// `local` changed since the engine last drained it.
    dirty: AtomicBool,
    slow: Mutex<Slow>,
}

impl Throttle {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn limit(&self) -> Limit {
        self.limit
    }

    pub fn epsilon(&self) -> f64 {
        self.epsilon
    }

    /// Would one more be admitted now? (The Sieve `ec_shared_throttle_check`
    /// answers the opposite: "over quota".)
    pub fn check(&self) -> bool {
        self.check_at(wall_ms())
    }

    /// Admits and counts one if the throttle allows it now.
    pub fn consume(&self) -> bool {
        self.consume_n_at(wall_ms(), 1)
    }

    /// Admits and counts `n` at once, or none. `n == 0` is admitted.
    pub fn consume_n(&self, n: u64) -> bool {
        self.consume_n_at(wall_ms(), n)
    }

    /// This window's count in `scope`.
    pub fn usage(&self, scope: Scope) -> i64 {
        self.usage_at(wall_ms(), scope)
    }

    /// [`check`](Self::check) at wall-clock time `now_ms`.
    pub fn check_at(&self, now_ms: u64) -> bool {
        self.catch_up(now_ms);
        self.local.load(Ordering::Acquire) + self.peer.load(Ordering::Acquire) < self.count()
            && self.budget.load(Ordering::Acquire) >= 1
    }

    /// [`consume_n`](Self::consume_n) at wall-clock time `now_ms`.
    pub fn consume_n_at(&self, now_ms: u64, n: u64) -> bool {
        if n == 0 {
            return true;
        }
        if n > self.limit.count {
            return false;
        }
        let n = n as i64;
        self.catch_up(now_ms);
        if self.local.load(Ordering::Acquire) + self.peer.load(Ordering::Acquire) + n > self.count()
        {
            return false;
        }
        let mut left = self.budget.load(Ordering::Acquire);
        loop {
            if left < n {
                return false;
            }
            match self.budget.compare_exchange_weak(
                left,
                left - n,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(now) => left = now,
            }
        }
        self.local.fetch_add(n, Ordering::AcqRel);
        // Read first: between drains the flag is already up, and a read
        // leaves the cache line shared where a swap would claim it.
        if !self.dirty.load(Ordering::Acquire) {
            self.dirty.store(true, Ordering::Release);
        }
        true
    }

    /// [`usage`](Self::usage) at wall-clock time `now_ms`.
    pub fn usage_at(&self, now_ms: u64, scope: Scope) -> i64 {
        self.catch_up(now_ms);
        let local = self.local.load(Ordering::Acquire);
        match scope {
            Scope::Local => local,
            Scope::Global => local + self.peer.load(Ordering::Acquire),
        }
    }

    fn count(&self) -> i64 {
        self.limit.count as i64
    }

    fn catch_up(&self, now_ms: u64) {
        if now_ms >= self.next_refresh_ms.load(Ordering::Acquire) {
            self.refresh(now_ms);
        }
    }

    /// Starts a new window and/or round if `now_ms` is in one.
    fn refresh(&self, now_ms: u64) {
        let mut slow = self.slow.lock();
        // Another thread may have done it while this one waited.
        if now_ms < self.next_refresh_ms.load(Ordering::Acquire) {
            return;
        }
        let window = now_ms / self.period_ms;
        if slow.window == NO_WINDOW || window > slow.window {
            // Reset the counts before the budget: a thread that takes a
            // token of the new budget then adds to the new count.
            self.local.store(0, Ordering::Release);
            let peer = slow.ahead.remove(&window).unwrap_or(0);
            self.peer.store(peer, Ordering::Release);
            slow.ahead.retain(|w, _| *w > window);
            slow.window = window;
            slow.history.clear();
            slow.round = u64::MAX;
        } else if window < slow.window {
            // The clock went back: stay in the window already reached.
            return;
        }
        let start = window * self.period_ms;
        let round = (now_ms - start) / self.ctx.round_ms;
        if round != slow.round {
            let view = self.local.load(Ordering::Acquire) + self.peer.load(Ordering::Acquire);
            let budget = self.budget_for(round, view, &slow.history);
            self.budget.store(budget, Ordering::Release);
            slow.round = round;
            slow.history.push((round, view));
            if slow.history.len() > HISTORY {
                slow.history.remove(0);
            }
        }
        let round_end = start.saturating_add((round + 1).saturating_mul(self.ctx.round_ms));
        let window_end = start + self.period_ms;
        self.next_refresh_ms
            .store(round_end.min(window_end), Ordering::Release);
    }

    /// The budget of `round` for a node whose view is `view`; see the
    /// module docs for the rule and why it holds.
    fn budget_for(&self, round: u64, view: i64, history: &[(u64, i64)]) -> i64 {
        let n = self.count();
        let m = self.ctx.members.load(Ordering::Acquire).max(1) as f64;
        let eps = self.epsilon;
        let share = |x: f64| (x / m).ceil() as i64;
        let unseen = match round {
            0 => 0,
            1 => share(eps * n as f64),
            _ => {
                let h = history
                    .iter()
                    .rev()
                    .find(|(r, _)| *r + 3 <= round)
                    .map_or(0, |(_, v)| *v);
                let c = 1.0 / (1.0 + eps * (m - 1.0) / m);
                share(eps * c * (n - h).max(0) as f64)
            }
        };
        let left = n - view - (m as i64 - 1) * unseen;
        if left > 0 {
            share(eps * left as f64)
        } else {
            0
        }
    }

    /// For the engine: what to send peers, under the slow lock.
    fn drain(&self, out: &mut Vec<KeyCount>) {
        let mut slow = self.slow.lock();
        if let Some(old) = slow.reported
            && old != slow.window
        {
            out.push((wire_key(&self.name, old), 0));
            slow.reported = None;
        }
        if slow.window == NO_WINDOW {
            return;
        }
        // Cleared before the read: an admission after this raises it
        // again and is sent with the next drain.
        if self.dirty.swap(false, Ordering::AcqRel) {
            let local = self.local.load(Ordering::Acquire);
            out.push((wire_key(&self.name, slow.window), local));
            if local != 0 {
                slow.reported = Some(slow.window);
            }
        }
    }

    fn set_peer(&self, window: u64, sum: i64) {
        let mut slow = self.slow.lock();
        if window == slow.window {
            self.peer.store(sum, Ordering::Release);
        } else if slow.window == NO_WINDOW || window > slow.window {
            slow.ahead.insert(window, sum);
            if slow.ahead.len() > MAX_AHEAD {
                // The furthest ahead is the least likely to be needed.
                slow.ahead.pop_last();
            }
        }
    }

    fn local_value(&self) -> Option<KeyCount> {
        let slow = self.slow.lock();
        let local = self.local.load(Ordering::Acquire);
        (slow.window != NO_WINDOW && local != 0).then(|| (wire_key(&self.name, slow.window), local))
    }
}

/// The named throttles of one replicated object; see the module docs.
#[derive(Debug)]
pub struct ThrottleTable {
    ctx: Arc<Ctx>,
    throttles: RwLock<HashMap<String, Arc<Throttle>>>,
}

impl ThrottleTable {
    /// A table whose rounds last `round_ms` (at least 1). Choose it no
    /// shorter than the delay from an admission to the peers' view: engine
    /// pass + `max_delay` + transit + engine pass, plus twice the clock
    /// skew; e.g. `max_delay` + 600 ms.
    pub fn new(round_ms: u64) -> ThrottleTable {
        ThrottleTable {
            ctx: Arc::new(Ctx {
                round_ms: round_ms.max(1),
                members: AtomicUsize::new(1),
            }),
            throttles: RwLock::new(HashMap::new()),
        }
    }

    /// Defines throttle `name` as `limit` (`"N"` or `"N/S"`) with
    /// `epsilon` (default 0.95, strictly between 0 and 1), or returns the
    /// one already defined with the same limit and epsilon. Redefining a
    /// name with a different limit or epsilon is an error: handles to the
    /// old one are live on MTA threads and must not change under them.
    pub fn define(
        &self,
        name: &str,
        limit: &str,
        epsilon: Option<f64>,
    ) -> Result<Arc<Throttle>, ThrottleError> {
        let err = |what: String| ThrottleError {
            name: name.to_string(),
            what,
        };
        if name.is_empty() {
            return Err(err("the name is empty".to_string()));
        }
        if name.contains('\0') {
            return Err(err("the name contains a NUL byte".to_string()));
        }
        let limit = Limit::parse(name, limit)?;
        let epsilon = epsilon.unwrap_or(DEFAULT_EPSILON);
        if !(epsilon > 0.0 && epsilon < 1.0) {
            return Err(err(format!(
                "epsilon {epsilon} is not strictly between 0 and 1"
            )));
        }
        if let Some(t) = self.throttles.read().get(name) {
            return Self::same(t, limit, epsilon, &err);
        }
        let mut throttles = self.throttles.write();
        if let Some(t) = throttles.get(name) {
            return Self::same(t, limit, epsilon, &err);
        }
        let t = Arc::new(Throttle {
            name: name.to_string(),
            limit,
            epsilon,
            period_ms: limit.period_s * 1000,
            ctx: Arc::clone(&self.ctx),
            next_refresh_ms: AtomicU64::new(0),
            local: AtomicI64::new(0),
            peer: AtomicI64::new(0),
            budget: AtomicI64::new(0),
            dirty: AtomicBool::new(false),
            slow: Mutex::new(Slow {
                window: NO_WINDOW,
                round: u64::MAX,
                history: Vec::with_capacity(HISTORY + 1),
                ahead: BTreeMap::new(),
                reported: None,
            }),
        });
        throttles.insert(name.to_string(), Arc::clone(&t));
        Ok(t)
    }

    fn same(
        t: &Arc<Throttle>,
        limit: Limit,
        epsilon: f64,
        err: &dyn Fn(String) -> ThrottleError,
    ) -> Result<Arc<Throttle>, ThrottleError> {
        if t.limit == limit && t.epsilon == epsilon {
            Ok(Arc::clone(t))
        } else {
            Err(err(format!(
                "already defined as {} with epsilon {}, not {} with epsilon {}",
                t.limit, t.epsilon, limit, epsilon
            )))
        }
    }

    /// The throttle named `name`, if defined.
    pub fn get(&self, name: &str) -> Option<Arc<Throttle>> {
        self.throttles.read().get(name).cloned()
    }

    /// Every throttle's name and count in `scope` for its window at
    /// `now_ms`, sorted by name (listings).
    pub fn rows(&self, now_ms: u64, scope: Scope) -> Vec<(String, i64)> {
        let mut rows: Vec<(String, i64)> = self
            .all()
            .iter()
            .map(|t| (t.name.clone(), t.usage_at(now_ms, scope)))
            .collect();
        rows.sort();
        rows
    }

    fn all(&self) -> Vec<Arc<Throttle>> {
        self.throttles.read().values().cloned().collect()
    }

    /// For the engine: each throttle's count for its current window if it
    /// changed, and a 0 for a window peers last heard of that has ended.
    pub fn drain_changed(&self) -> Vec<KeyCount> {
        let mut out = Vec::new();
        for t in self.all() {
            t.drain(&mut out);
        }
        out
    }

    /// For the engine: the peers' sum for a wire key. Keys that do not
    /// parse or name no throttle here, and windows already past, are
    /// ignored.
    pub fn set_peer_sum(&self, key: &[u8], peer_sum: i64) {
        let Some((name, window)) = parse_wire_key(key) else {
            return;
        };
        if let Some(t) = self.get(name) {
            t.set_peer(window, peer_sum);
        }
    }

    /// This node's non-zero counts for the current windows (a snapshot).
    pub fn local_values(&self) -> Vec<KeyCount> {
        let mut rows: Vec<KeyCount> = self.all().iter().filter_map(|t| t.local_value()).collect();
        rows.sort();
        rows
    }

    /// For the engine, on every pass: the view's size, and rounds and
    /// windows started for throttles no MTA thread touched lately.
    pub fn maintain(&self, now_ms: u64, members: usize) {
        self.ctx.members.store(members.max(1), Ordering::Release);
        for t in self.all() {
            t.catch_up(now_ms);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_700_000_000_000;

    fn err(limit: &str) -> String {
        ThrottleTable::new(1000)
            .define("x", limit, None)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn limits_parse_as_n_or_n_per_s() {
        assert_eq!(
            Limit::parse("x", "10").unwrap(),
            Limit {
                count: 10,
                period_s: 1
            }
        );
        assert_eq!(
            Limit::parse("x", " 300/60 ").unwrap(),
            Limit {
                count: 300,
                period_s: 60
            }
        );
        assert_eq!(err("abc"), "throttle 'x': limit \"abc\" is not N or N/S");
        assert_eq!(err(""), "throttle 'x': limit \"\" is not N or N/S");
        assert_eq!(err("x/2"), "throttle 'x': limit \"x/2\" is not N or N/S");
        assert_eq!(err("-5"), "throttle 'x': limit \"-5\" is not N or N/S");
        assert_eq!(err("5/-1"), "throttle 'x': limit \"5/-1\" is not N or N/S");
        assert_eq!(
            err("1/2/3"),
            "throttle 'x': limit \"1/2/3\" is not N or N/S"
        );
        assert_eq!(err("1.5"), "throttle 'x': limit \"1.5\" is not N or N/S");
        assert_eq!(err("0"), "throttle 'x': limit \"0\": N must be at least 1");
        assert_eq!(
            err("1/0"),
            "throttle 'x': limit \"1/0\": S must be at least 1 second"
        );
        assert!(err("99999999999999999999999").contains("N must be at most"));
        assert!(err("1/99999999999999").contains("S must be at most"));
    }

    #[test]
    fn names_and_epsilons_are_checked_and_redefinition_is_idempotent_only() {
        let t = ThrottleTable::new(1000);
        for eps in [0.0, 1.0, -0.1, 1.5, f64::NAN, f64::INFINITY] {
            let e = t.define("x", "5", Some(eps)).unwrap_err().to_string();
            assert!(
                e.starts_with("throttle 'x': epsilon") && e.contains("strictly between 0 and 1"),
                "{e}"
            );
        }
        assert!(t.define("", "5", None).is_err());
        assert!(t.define("a\0b", "5", None).is_err());
        let a = t.define("x", "5/2", None).unwrap();
        assert_eq!(a.epsilon(), 0.95);
        let b = t.define("x", "5/2", Some(0.95)).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "the same throttle");
        let e = t.define("x", "6/2", None).unwrap_err().to_string();
        assert_eq!(
            e,
            "throttle 'x': already defined as 5/2 with epsilon 0.95, not 6/2 with epsilon 0.95"
        );
        assert!(t.define("x", "5/2", Some(0.5)).is_err());
        assert!(Arc::ptr_eq(&t.get("x").unwrap(), &a));
    }

    #[test]
    fn wire_keys_round_trip_and_junk_is_rejected() {
        let k = wire_key("mail.example", 0x0102_0304_0506_0708);
        assert_eq!(&k[..12], b"mail.example");
        assert_eq!(&k[12..], [0, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(
            parse_wire_key(&k),
            Some(("mail.example", 0x0102_0304_0506_0708))
        );
        assert_eq!(parse_wire_key(b""), None);
        assert_eq!(parse_wire_key(b"short"), None);
        assert_eq!(parse_wire_key(b"name\x01\0\0\0\0\0\0\0\x01"), None);
        assert_eq!(parse_wire_key(b"na\0me\0\0\0\0\0\0\0\0\x01"), None);
        assert_eq!(parse_wire_key(b"\xff\0\0\0\0\0\0\0\0\x01"), None);
        // Junk from the wire is ignored, not a panic.
        let t = ThrottleTable::new(1000);
        t.define("x", "5", None).unwrap();
        t.set_peer_sum(b"junk", 3);
        t.set_peer_sum(&wire_key("nosuch", 1), 3);
    }

    #[test]
    fn a_lone_node_admits_eps_of_the_limit_in_one_round_windows() {
        let t = ThrottleTable::new(60_000);
        let x = t.define("x", "100/10", None).unwrap();
        let admitted = (0..200).filter(|_| x.consume_n_at(MS, 1)).count();
        assert_eq!(admitted, 95, "ceil(0.95 * 100 / 1)");
        assert!(!x.check_at(MS + 1));
        assert_eq!(x.usage_at(MS + 1, Scope::Local), 95);
        // The next window starts afresh.
        let next = (MS / 10_000 + 1) * 10_000;
        assert!(x.check_at(next));
        assert_eq!(x.usage_at(next, Scope::Global), 0);
        assert!(x.consume_n_at(next, 95));
        assert!(!x.consume_n_at(next, 1));
        assert!(!x.consume_n_at(next, 101), "more than N at once never");
        assert!(x.consume_n_at(next, 0));
    }

    #[test]
    fn rounds_refill_the_budget_towards_the_limit_and_the_hard_stop_holds() {
        let t = ThrottleTable::new(1000);
        t.maintain(0, 1);
        let x = t.define("x", "100/10", None).unwrap();
        let start = MS / 10_000 * 10_000;
        let mut admitted = 0;
        for round in 0..10 {
            let now = start + round * 1000;
            admitted += (0..200).filter(|_| x.consume_n_at(now, 1)).count();
        }
        assert!((95..=100).contains(&admitted), "{admitted}");
        // Peers report usage: the hard stop follows the freshest view.
        let next = start + 10_000;
        assert!(x.check_at(next));
        t.set_peer_sum(&wire_key("x", next / 10_000), 100);
        assert!(!x.check_at(next));
        assert!(!x.consume_n_at(next, 1));
        assert_eq!(x.usage_at(next, Scope::Global), 100);
    }

    #[test]
    fn drain_and_peer_sums_round_trip_and_old_windows_are_zeroed_once() {
        let t = ThrottleTable::new(1000);
        t.maintain(MS, 3);
        let x = t.define("x", "300/10", None).unwrap();
        let y = t.define("y", "5", None).unwrap();
        let w = MS / 10_000;
        assert!(t.drain_changed().is_empty(), "nothing admitted yet");
        assert!(x.consume_n_at(MS, 7));
        assert_eq!(t.drain_changed(), [(wire_key("x", w), 7)]);
        assert!(t.drain_changed().is_empty());
        assert_eq!(t.local_values(), [(wire_key("x", w), 7)]);
        // Peers' sums: current window counts, a past one is ignored, one
        // ahead waits for its window.
        t.set_peer_sum(&wire_key("x", w), 20);
        t.set_peer_sum(&wire_key("x", w - 1), 99);
        t.set_peer_sum(&wire_key("x", w + 1), 4);
        assert_eq!(x.usage_at(MS, Scope::Global), 27);
        assert_eq!(x.usage_at(MS, Scope::Local), 7);
        // y never admitted: no key for it, ever.
        assert!(y.check_at(MS));
        // Rollover: the peers hear 0 for the old window, once, and the
        // sum already heard for the new window applies.
        let next = (w + 1) * 10_000;
        t.maintain(next, 3);
        assert_eq!(x.usage_at(next, Scope::Global), 4);
        assert_eq!(t.drain_changed(), [(wire_key("x", w), 0)]);
        assert!(t.drain_changed().is_empty());
        assert!(t.local_values().is_empty());
        assert!(x.consume_n_at(next + 5, 2));
        assert_eq!(t.drain_changed(), [(wire_key("x", w + 1), 2)]);
        // The clock going back does not reopen an old window.
        assert_eq!(x.usage_at(MS, Scope::Local), 2);
    }

    #[test]
    fn threads_consuming_at_once_never_exceed_the_budget() {
        let t = Arc::new(ThrottleTable::new(60_000));
        let x = t.define("x", "10000/60", Some(0.5)).unwrap();
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let x = Arc::clone(&x);
                std::thread::spawn(move || (0..10_000).filter(|_| x.consume_n_at(MS, 1)).count())
            })
            .collect();
        let total: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(total, 5000, "exactly ceil(0.5 * 10000 / 1)");
        assert_eq!(x.usage_at(MS, Scope::Local), 5000);
    }
}
