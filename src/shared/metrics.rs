//! The `metrics` and `eccmgr_metrics` objects: named audit series
//! (`msys.audit_series`) and gauge caches (`msys.gauge_cache`), on the hot
//! path and replicated as counts.
//!
//! # Audit series
//!
//! A series counts events per key (an IPv4 address, an IPv6 address or a
//! string) in fixed windows of `interval` seconds, keeping `num_windows` of
//! them; window 0 is the current one. Windows are aligned on the wall
//! clock (window index = now / interval), so every node puts an event of
//! the same second in the same window and their counts add up without
//! coordination. `count` sums windows `startv..=endv` of one key or, for
//! CIDR series, of every address in a prefix. Windows older than
//! `num_windows` are dropped by [`Metrics::maintain`] and ignored when a
//! peer's late update names one.
//!
//! # Gauge caches
//!
//! A gauge cache is a bounded table of key to gauge (`inc`, `dec`): a key
//! expires `ttl` seconds after its last modification (this node's or a
//! peer's), and when the cache is full the least recently modified key is
//! evicted to make room. An expired or evicted key loses this node's count
//! (sent to the peers as zero) and hides the peers' until they next change
//! it; every node applies the same TTL to the same modifications, so they
//! expire a key at about the same moment.
//!
//! # Replication
//!
//! To the engine, a `Metrics` object is a [`Counted`] table like any other:
//! one count per key and node. Only series and caches whose replication
//! mode is the object's (`cluster` for `metrics`, `manager` for
//! `eccmgr_metrics`) are drained and snapshotted; `none` ones stay local.
//! Their keys are encoded with length prefixes, never delimiters, since
//! keys are arbitrary bytes (the reference's bug #3149: keys containing `@`
//! did not replicate):
//!
//! ```text
//! byte 0        kind: 1 audit series, 2 gauge cache
//! byte 1        name length n (1..=64)
//! n bytes       the series' or cache's name
//! 1 byte        item length m
//! m bytes       the item: 4 (cidr) or 16 (cidr_ipv6) address bytes, or the string key
//! 8 bytes       series only: the window index, big-endian
//! ```
//!
//! The whole fits the wire's 255-byte replica keys, which caps an item at
//! 180 bytes. A peer's count for a name this node has not defined yet
//! (its policy may define series later, or a peer runs a newer policy) is
//! parked, up to a bound, and adopted when the name is defined; beyond the
//! bound it is dropped and comes back with the peer's next change or
//! snapshot.
//!
//! Peer updates carry no time: a peer's change touches a gauge cache key,
//! and a series window is judged too old, against the time of the last
//! [`Metrics::maintain`], which the engine runs on every pass.
//!
//! Windows roll on every node at once, so nothing is sent when one is
//! dropped (a window dropped while its change was still queued goes out as
//! zero). The receiving `Replica` still holds the origin's values for old
//! windows until the origin's next snapshot replaces its contribution;
//! bounding that between snapshots is the engine's to do.
//!
//! # Costs
//!
//! A series is split into shards by item, each a mutex over a map of
//! (item, window) to counts: an `add` or an exact `count` locks one shard.
//! A `count` over a CIDR prefix shorter than an address scans every cell
//! of the series under each shard's lock in turn: O(cells), which is fine
//! for the per-message policy queries series serve, not for per-packet
//! use. A gauge cache is one mutex over a map and a recency index
//! (O(log n) per modification); gauge caches are policy-level objects.
//! Every operation takes `now_ms` (wall-clock milliseconds) so that tests
//! are deterministic; callers pass [`super::wall_ms`].

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};

use super::hash::{Seeded, random_seed};
use super::{Counted, KeyCount, Scope};

const KIND_SERIES: u8 = 1;
const KIND_GAUGE_CACHE: u8 = 2;
/// Longest series or cache name.
const MAX_NAME_LEN: usize = 64;
/// Longest item key: an encoded key (module docs) must fit the wire's 255.
const MAX_ITEM_LEN: usize = 180;
/// Most windows a series keeps: bounds the work of one `count`.
const MAX_WINDOWS: u64 = 10_000;
const SHARDS: usize = 16;
/// Most peer counts parked for names not defined yet.
const MAX_ORPHANS: usize = 65_536;

/// Why a metrics call failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetricsError {
    /// No audit series of that name is defined.
    UnknownSeries(String),
    /// No gauge cache of that name is defined.
    UnknownGaugeCache(String),
    /// The name is defined already, with other parameters.
    Redefined(String),
    /// An unknown series type or replication mode.
    BadType(String),
    /// A key that does not fit the series' type, or is too long.
    BadKey(String),
    /// Any other argument out of range (name, interval, windows, size).
    BadArgument(String),
}

impl std::fmt::Display for MetricsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MetricsError::UnknownSeries(n) => write!(f, "no audit series named '{n}'"),
            MetricsError::UnknownGaugeCache(n) => write!(f, "no gauge cache named '{n}'"),
            MetricsError::Redefined(n) => {
                write!(f, "'{n}' is already defined with other parameters")
            }
            MetricsError::BadType(s) | MetricsError::BadKey(s) | MetricsError::BadArgument(s) => {
                f.write_str(s)
            }
        }
    }
}

impl std::error::Error for MetricsError {}

/// What a series counts per key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeriesType {
    /// IPv4 addresses (`cidr`).
    Cidr,
    /// IPv6 addresses (`cidr_ipv6`).
    CidrIpv6,
    /// Arbitrary byte strings (`string`).
    String,
}

impl FromStr for SeriesType {
    type Err = MetricsError;
    fn from_str(s: &str) -> Result<SeriesType, MetricsError> {
        match s {
            "cidr" => Ok(SeriesType::Cidr),
            "cidr_ipv6" => Ok(SeriesType::CidrIpv6),
            "string" => Ok(SeriesType::String),
            other => Err(MetricsError::BadType(format!(
                "unknown series type '{other}' (cidr, cidr_ipv6 or string)"
            ))),
        }
    }
}

/// Where a series' or cache's counts go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replication {
    /// Nowhere: local only.
    None,
    /// Every node (`metrics`).
    Cluster,
    /// Manager nodes only (`eccmgr_metrics`).
    Manager,
}

impl FromStr for Replication {
    type Err = MetricsError;
    fn from_str(s: &str) -> Result<Replication, MetricsError> {
        match s {
            "none" => Ok(Replication::None),
            "cluster" => Ok(Replication::Cluster),
            "manager" => Ok(Replication::Manager),
            other => Err(MetricsError::BadType(format!(
                "unknown replication '{other}' (none, cluster or manager)"
            ))),
        }
    }
}

/// One cell's counts.
#[derive(Clone, Copy, Debug, Default)]
struct Cell {
    local: i64,
    peer: i64,
    /// `local` changed since the engine last drained this cell.
    dirty: bool,
}

type SeriesCells = HashMap<(Vec<u8>, u64), Cell, Seeded>;

/// What a `count` or `remove_item` covers.
#[derive(Clone, Debug)]
enum Query {
    Exact(Vec<u8>),
    /// Address bytes (masked) and a prefix length in bits.
    Prefix(Vec<u8>, u32),
}

impl Query {
    fn matches(&self, item: &[u8]) -> bool {
        match self {
            Query::Exact(k) => k == item,
            Query::Prefix(bytes, bits) => {
                item.len() == bytes.len() && masked(item, *bits).as_deref() == Some(&bytes[..])
            }
        }
    }
}

/// `bytes` with every bit past the first `bits` cleared.
fn masked(bytes: &[u8], bits: u32) -> Option<Vec<u8>> {
    let mut out = bytes.to_vec();
    for (i, b) in out.iter_mut().enumerate() {
        let start = u32::try_from(i).ok()?.checked_mul(8)?;
        let keep = bits.saturating_sub(start).min(8);
        *b &= if keep == 0 { 0 } else { 0xffu8 << (8 - keep) };
    }
    Some(out)
}

#[derive(Debug)]
struct Series {
    name: String,
    ty: SeriesType,
    interval_secs: u64,
    interval_ms: u64,
    num_windows: u64,
    replicate: Replication,
    shards: Vec<Mutex<SeriesCells>>,
    hasher: Seeded,
    /// Cells whose `dirty` flag was raised, in the order raised.
    changed: Mutex<Vec<(Vec<u8>, u64)>>,
}

impl Series {
    fn window(&self, now_ms: u64) -> u64 {
        now_ms / self.interval_ms
    }

    /// Whether window `w` is still kept at `now_ms`.
    fn kept(&self, w: u64, now_ms: u64) -> bool {
        w.saturating_add(self.num_windows) > self.window(now_ms)
    }

    fn shard(&self, item: &[u8]) -> &Mutex<SeriesCells> {
        &self.shards[(self.hasher.hash_bytes(item) >> 59) as usize % SHARDS]
    }

    /// The stored form of a key given to `add`.
    fn item(&self, key: &[u8]) -> Result<Vec<u8>, MetricsError> {
        match self.query(key)? {
            Query::Exact(item) => Ok(item),
            Query::Prefix(..) => Err(MetricsError::BadKey(format!(
                "series '{}' counts single addresses, not the prefix '{}'",
                self.name,
                String::from_utf8_lossy(key)
            ))),
        }
    }

    fn query(&self, key: &[u8]) -> Result<Query, MetricsError> {
        if self.ty == SeriesType::String {
            if key.len() > MAX_ITEM_LEN {
                return Err(MetricsError::BadKey(format!(
                    "key of {} bytes exceeds {MAX_ITEM_LEN}",
                    key.len()
                )));
            }
            return Ok(Query::Exact(key.to_vec()));
        }
        let bad = || {
            MetricsError::BadKey(format!(
                "'{}' is not an {} address or prefix (series '{}')",
                String::from_utf8_lossy(key),
                if self.ty == SeriesType::Cidr {
                    "IPv4"
                } else {
                    "IPv6"
                },
                self.name
            ))
        };
        let text = std::str::from_utf8(key).map_err(|_| bad())?.trim();
        let (addr, bits) = match text.split_once('/') {
            Some((a, b)) => (a, Some(b.parse::<u32>().map_err(|_| bad())?)),
            None => (text, None),
        };
        let (bytes, full) = match (self.ty, addr.parse::<IpAddr>().map_err(|_| bad())?) {
            (SeriesType::Cidr, IpAddr::V4(a)) => (a.octets().to_vec(), 32),
            (SeriesType::CidrIpv6, IpAddr::V6(a)) => (a.octets().to_vec(), 128),
            _ => return Err(bad()),
        };
        match bits {
            None => Ok(Query::Exact(bytes)),
            Some(b) if b > full => Err(bad()),
            Some(b) if b == full => Ok(Query::Exact(bytes)),
            Some(b) => Ok(Query::Prefix(masked(&bytes, b).ok_or_else(bad)?, b)),
        }
    }

    fn add(&self, key: &[u8], count: i64, now_ms: u64) -> Result<(), MetricsError> {
        let item = self.item(key)?;
        let w = self.window(now_ms);
        let mut cells = self.shard(&item).lock();
        let cell = cells.entry((item.clone(), w)).or_default();
        cell.local = cell.local.saturating_add(count);
        if !cell.dirty {
            cell.dirty = true;
            self.changed.lock().push((item, w));
        }
        Ok(())
    }

    fn count(
        &self,
        key: &[u8],
        startv: u64,
        endv: u64,
        scope: Scope,
        now_ms: u64,
    ) -> Result<i64, MetricsError> {
        if startv > endv {
            return Err(MetricsError::BadArgument(format!(
                "window range {startv}..{endv} is empty"
            )));
        }
        let query = self.query(key)?;
        let last = endv.min(self.num_windows - 1);
        let cur = self.window(now_ms);
        // Windows past the series' last, or before the epoch, are empty.
        if startv > last || startv > cur {
            return Ok(0);
        }
        self.count_windows(&query, cur.saturating_sub(last), cur - startv, scope)
    }

    fn count_windows(
        &self,
        query: &Query,
        from: u64,
        to: u64,
        scope: Scope,
    ) -> Result<i64, MetricsError> {
        let value = |c: &Cell| match scope {
            Scope::Local => c.local,
            Scope::Global => c.local.saturating_add(c.peer),
        };
        let mut sum = 0i64;
        match query {
            Query::Exact(item) => {
                let cells = self.shard(item).lock();
                for w in from..=to {
                    if let Some(c) = cells.get(&(item.clone(), w)) {
                        sum = sum.saturating_add(value(c));
                    }
                }
            }
            Query::Prefix(..) => {
                for shard in &self.shards {
                    for ((item, w), c) in shard.lock().iter() {
                        if (from..=to).contains(w) && query.matches(item) {
                            sum = sum.saturating_add(value(c));
                        }
                    }
                }
            }
        }
        Ok(sum)
    }

    /// Zeroes this node's counts of the key (or prefix), sending the zeros,
    /// and hides the peers' until they change.
    fn remove_item(&self, key: &[u8]) -> Result<(), MetricsError> {
        let query = self.query(key)?;
        let shards: Vec<&Mutex<SeriesCells>> = match &query {
            Query::Exact(item) => vec![self.shard(item)],
            Query::Prefix(..) => self.shards.iter().collect(),
        };
        for shard in shards {
            let mut cells = shard.lock();
            cells.retain(|(item, w), c| {
                if !query.matches(item) {
                    return true;
                }
                if c.local != 0 && !c.dirty {
                    self.changed.lock().push((item.clone(), *w));
                }
                // Gone from the map: the drain sends zero for it.
                false
            });
        }
        Ok(())
    }

    fn drain(&self, out: &mut Vec<KeyCount>) {
        let keys = std::mem::take(&mut *self.changed.lock());
        for (item, w) in keys {
            let mut cells = self.shard(&item).lock();
            let local = match cells.get_mut(&(item.clone(), w)) {
                Some(c) => {
                    c.dirty = false;
                    let local = c.local;
                    if local == 0 && c.peer == 0 {
                        cells.remove(&(item.clone(), w));
                    }
                    local
                }
                None => 0,
            };
            drop(cells);
            out.push((encode(KIND_SERIES, &self.name, &item, Some(w)), local));
        }
    }

    fn set_peer(&self, item: &[u8], w: u64, peer: i64, now_ms: u64) {
        if self.item_ok(item).is_err() || (now_ms != 0 && !self.kept(w, now_ms)) {
            return;
        }
        let mut cells = self.shard(item).lock();
        let key = (item.to_vec(), w);
        if peer == 0 {
            if let Some(c) = cells.get_mut(&key) {
                c.peer = 0;
                if c.local == 0 && !c.dirty {
                    cells.remove(&key);
                }
            }
            return;
        }
        cells.entry(key).or_default().peer = peer;
    }

    /// Whether a stored item from the wire fits this series' type.
    fn item_ok(&self, item: &[u8]) -> Result<(), ()> {
        match (self.ty, item.len()) {
            (SeriesType::Cidr, 4) | (SeriesType::CidrIpv6, 16) => Ok(()),
            (SeriesType::String, n) if n <= MAX_ITEM_LEN => Ok(()),
            _ => Err(()),
        }
    }

    fn local_values(&self, out: &mut Vec<KeyCount>) {
        for shard in &self.shards {
            for ((item, w), c) in shard.lock().iter() {
                if c.local != 0 {
                    out.push((encode(KIND_SERIES, &self.name, item, Some(*w)), c.local));
                }
            }
        }
    }

    /// Drops windows no longer kept.
    fn roll(&self, now_ms: u64) {
        for shard in &self.shards {
            // A dropped dirty cell is still queued and goes out as zero:
            // the peers drop the window too.
            shard.lock().retain(|(_, w), _| self.kept(*w, now_ms));
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct GaugeCell {
    local: i64,
    peer: i64,
    /// When the key was last modified, and a tie-breaker for the index.
    touched: u64,
    seq: u64,
    dirty: bool,
}

#[derive(Debug, Default)]
struct GaugeInner {
    cells: HashMap<Vec<u8>, GaugeCell, Seeded>,
    /// (touched, seq, key) of every cell: the front is the least recently
    /// modified, the first to expire or be evicted.
    recency: BTreeSet<(u64, u64, Vec<u8>)>,
    seq: u64,
    /// Keys whose own count changed (or was dropped) since the last drain.
    changed: Vec<Vec<u8>>,
}

impl GaugeInner {
    fn touch(&mut self, key: &[u8], now_ms: u64) {
        self.seq += 1;
        let seq = self.seq;
        if let Some(c) = self.cells.get_mut(key) {
            self.recency.remove(&(c.touched, c.seq, key.to_vec()));
            c.touched = now_ms;
            c.seq = seq;
            self.recency.insert((now_ms, seq, key.to_vec()));
        }
    }

    /// Removes a cell; a non-zero own count is queued to go out as zero.
    fn drop_cell(&mut self, key: &[u8]) {
        if let Some(c) = self.cells.remove(key) {
            self.recency.remove(&(c.touched, c.seq, key.to_vec()));
            if c.local != 0 && !c.dirty {
                self.changed.push(key.to_vec());
            }
        }
    }
}

#[derive(Debug)]
struct GaugeCache {
    name: String,
    maxelems: usize,
    ttl_ms: u64,
    replicate: Replication,
    inner: Mutex<GaugeInner>,
}

impl GaugeCache {
    fn expired(&self, c: &GaugeCell, now_ms: u64) -> bool {
        self.ttl_ms != 0 && c.touched.saturating_add(self.ttl_ms) <= now_ms
    }

    fn check_key(key: &[u8]) -> Result<(), MetricsError> {
        if key.len() > MAX_ITEM_LEN {
            return Err(MetricsError::BadKey(format!(
                "key of {} bytes exceeds {MAX_ITEM_LEN}",
                key.len()
            )));
        }
        Ok(())
    }

    /// The cell for `key`, created (making room) if missing, emptied if
    /// it had expired.
    fn cell_for(&self, inner: &mut GaugeInner, key: &[u8], now_ms: u64) {
        if inner
            .cells
            .get(key)
            .is_some_and(|c| self.expired(c, now_ms))
        {
            inner.drop_cell(key);
        }
        if inner.cells.contains_key(key) {
            return;
        }
        while inner.cells.len() >= self.maxelems {
            let Some((_, _, oldest)) = inner.recency.first().cloned() else {
                break;
            };
            inner.drop_cell(&oldest);
        }
        inner.seq += 1;
        let seq = inner.seq;
        inner.cells.insert(
            key.to_vec(),
            GaugeCell {
                touched: now_ms,
                seq,
                ..GaugeCell::default()
            },
        );
        inner.recency.insert((now_ms, seq, key.to_vec()));
    }

    fn add(&self, key: &[u8], delta: i64, now_ms: u64) -> Result<i64, MetricsError> {
        Self::check_key(key)?;
        let mut inner = self.inner.lock();
        self.cell_for(&mut inner, key, now_ms);
        inner.touch(key, now_ms);
        let mut queue = false;
        let local = match inner.cells.get_mut(key) {
            Some(c) => {
                c.local = c.local.saturating_add(delta);
                queue = !c.dirty;
                c.dirty = true;
                c.local
            }
            None => 0,
        };
        if queue {
            inner.changed.push(key.to_vec());
        }
        Ok(local)
    }

    fn get(&self, key: &[u8], scope: Scope, now_ms: u64) -> i64 {
        let inner = self.inner.lock();
        inner
            .cells
            .get(key)
            .filter(|c| !self.expired(c, now_ms))
            .map_or(0, |c| match scope {
                Scope::Local => c.local,
                Scope::Global => c.local.saturating_add(c.peer),
            })
    }

    fn remove_item(&self, key: &[u8]) {
        self.inner.lock().drop_cell(key);
    }

    fn set_peer(&self, key: &[u8], peer: i64, now_ms: u64) {
        if Self::check_key(key).is_err() {
            return;
        }
        let mut inner = self.inner.lock();
        if peer == 0 && !inner.cells.contains_key(key) {
            return;
        }
        self.cell_for(&mut inner, key, now_ms);
        inner.touch(key, now_ms);
        let remove = match inner.cells.get_mut(key) {
            Some(c) => {
                c.peer = peer;
                c.local == 0 && c.peer == 0 && !c.dirty
            }
            None => false,
        };
        if remove {
            inner.drop_cell(key);
        }
    }

    fn drain(&self, out: &mut Vec<KeyCount>) {
        let mut inner = self.inner.lock();
        let mut keys = std::mem::take(&mut inner.changed);
        keys.sort();
        keys.dedup();
        for key in keys {
            let (local, remove) = match inner.cells.get_mut(&key) {
                Some(c) => {
                    c.dirty = false;
                    (c.local, c.local == 0 && c.peer == 0)
                }
                None => (0, false),
            };
            if remove {
                inner.drop_cell(&key);
            }
            out.push((encode(KIND_GAUGE_CACHE, &self.name, &key, None), local));
        }
    }

    fn local_values(&self, out: &mut Vec<KeyCount>) {
        for (key, c) in &self.inner.lock().cells {
            if c.local != 0 {
                out.push((encode(KIND_GAUGE_CACHE, &self.name, key, None), c.local));
            }
        }
    }

    fn expire(&self, now_ms: u64) {
        let mut inner = self.inner.lock();
        while let Some((touched, _, key)) = inner.recency.first().cloned() {
            if self.ttl_ms == 0 || touched.saturating_add(self.ttl_ms) > now_ms {
                break;
            }
            inner.drop_cell(&key);
        }
    }
}

/// A defined audit series, for calls without a name lookup.
#[derive(Clone, Debug)]
pub struct SeriesHandle(Arc<Series>);

impl SeriesHandle {
    /// Adds `count` to `key` in the current window.
    pub fn add(&self, key: &[u8], count: i64, now_ms: u64) -> Result<(), MetricsError> {
        self.0.add(key, count, now_ms)
    }

    /// The sum of windows `startv..=endv` (0 is the current one; windows
    /// past the series' last are empty) for `key`: an address, or for CIDR
    /// series a prefix such as `10.1.2.0/24`.
    pub fn count(
        &self,
        key: &[u8],
        startv: u64,
        endv: u64,
        scope: Scope,
        now_ms: u64,
    ) -> Result<i64, MetricsError> {
        self.0.count(key, startv, endv, scope, now_ms)
    }

    /// Forgets `key` (or every address in a prefix) in every window.
    pub fn remove_item(&self, key: &[u8]) -> Result<(), MetricsError> {
        self.0.remove_item(key)
    }

    pub fn name(&self) -> &str {
        &self.0.name
    }
}

/// A defined gauge cache, for calls without a name lookup.
#[derive(Clone, Debug)]
pub struct GaugeCacheHandle(Arc<GaugeCache>);

impl GaugeCacheHandle {
    /// Adds one to `key` (creating it); returns this node's new count.
    pub fn inc(&self, key: &[u8], now_ms: u64) -> Result<i64, MetricsError> {
        self.0.add(key, 1, now_ms)
    }

    /// Subtracts one from `key` (creating it); returns this node's count.
    pub fn dec(&self, key: &[u8], now_ms: u64) -> Result<i64, MetricsError> {
        self.0.add(key, -1, now_ms)
    }

    /// The gauge of `key` in `scope` (0 if absent or expired).
    pub fn get(&self, key: &[u8], scope: Scope, now_ms: u64) -> i64 {
        self.0.get(key, scope, now_ms)
    }

    /// Forgets `key`: this node's count goes to zero cluster-wide.
    pub fn remove_item(&self, key: &[u8]) {
        self.0.remove_item(key)
    }

    pub fn name(&self) -> &str {
        &self.0.name
    }
}

/// See the module docs.
#[derive(Debug)]
pub struct Metrics {
    /// The mode whose series and caches this object replicates.
    carries: Replication,
    series: RwLock<HashMap<String, Arc<Series>>>,
    caches: RwLock<HashMap<String, Arc<GaugeCache>>>,
    /// Peer counts for names not defined yet, by encoded key.
    orphans: Mutex<HashMap<Vec<u8>, i64>>,
    /// The latest `now_ms` seen, for peer updates (which carry no time).
    now_ms: AtomicU64,
}

impl Metrics {
    /// The `metrics` object (`Replication::Cluster`) or `eccmgr_metrics`
    /// (`Replication::Manager`).
    pub fn new(carries: Replication) -> Metrics {
        Metrics {
            carries,
            series: RwLock::new(HashMap::new()),
            caches: RwLock::new(HashMap::new()),
            orphans: Mutex::new(HashMap::new()),
            now_ms: AtomicU64::new(0),
        }
    }

    /// The mode this object replicates.
    pub fn carries(&self) -> Replication {
        self.carries
    }

    /// `msys.audit_series.define`: defining again with the same parameters
    /// returns the same series (policy `init` may run more than once).
    pub fn define_series(
        &self,
        name: &str,
        ty: SeriesType,
        interval_secs: u64,
        num_windows: u64,
        replicate: Replication,
    ) -> Result<SeriesHandle, MetricsError> {
        check_name(name)?;
        let interval_ms = interval_secs
            .checked_mul(1000)
            .filter(|ms| *ms > 0)
            .ok_or_else(|| {
                MetricsError::BadArgument(format!("interval {interval_secs} s is out of range"))
            })?;
        if num_windows == 0 || num_windows > MAX_WINDOWS {
            return Err(MetricsError::BadArgument(format!(
                "{num_windows} windows: must be 1 to {MAX_WINDOWS}"
            )));
        }
        let handle = {
            let mut all = self.series.write();
            if let Some(s) = all.get(name) {
                if (s.ty, s.interval_secs, s.num_windows, s.replicate)
                    != (ty, interval_secs, num_windows, replicate)
                {
                    return Err(MetricsError::Redefined(name.to_string()));
                }
                return Ok(SeriesHandle(Arc::clone(s)));
            }
            let hasher = random_seed();
            let s = Arc::new(Series {
                name: name.to_string(),
                ty,
                interval_secs,
                interval_ms,
                num_windows,
                replicate,
                shards: (0..SHARDS)
                    .map(|_| Mutex::new(HashMap::with_hasher(hasher)))
                    .collect(),
                hasher,
                changed: Mutex::new(Vec::new()),
            });
            all.insert(name.to_string(), Arc::clone(&s));
            SeriesHandle(s)
        };
        if replicate == self.carries {
            self.adopt_orphans(KIND_SERIES, name);
        }
        Ok(handle)
    }

    /// The series named `name`.
    pub fn series(&self, name: &str) -> Result<SeriesHandle, MetricsError> {
        self.series
            .read()
            .get(name)
            .map(|s| SeriesHandle(Arc::clone(s)))
            .ok_or_else(|| MetricsError::UnknownSeries(name.to_string()))
    }

    /// `msys.audit_series.add`.
    pub fn series_add(
        &self,
        name: &str,
        key: &[u8],
        count: i64,
        now_ms: u64,
    ) -> Result<(), MetricsError> {
        self.series(name)?.add(key, count, now_ms)
    }

    /// `msys.audit_series.count`; see [`SeriesHandle::count`].
    pub fn series_count(
        &self,
        name: &str,
        key: &[u8],
        startv: u64,
        endv: u64,
        scope: Scope,
        now_ms: u64,
    ) -> Result<i64, MetricsError> {
        self.series(name)?.count(key, startv, endv, scope, now_ms)
    }

    /// `msys.audit_series.remove_item`.
    pub fn series_remove_item(&self, name: &str, key: &[u8]) -> Result<(), MetricsError> {
        self.series(name)?.remove_item(key)
    }

    /// `msys.gauge_cache.define`: `ttl_secs` 0 never expires; `replicated`
    /// makes the cache this object's (`cluster` or `manager`) rather than
    /// local. Defining again with the same parameters returns the same
    /// cache.
    pub fn define_gauge_cache(
        &self,
        name: &str,
        maxelems: usize,
        ttl_secs: u64,
        replicated: bool,
    ) -> Result<GaugeCacheHandle, MetricsError> {
        check_name(name)?;
        if maxelems == 0 {
            return Err(MetricsError::BadArgument(
                "a gauge cache needs room for at least one element".into(),
            ));
        }
        let ttl_ms = ttl_secs.checked_mul(1000).ok_or_else(|| {
            MetricsError::BadArgument(format!("TTL {ttl_secs} s is out of range"))
        })?;
        let replicate = if replicated {
            self.carries
        } else {
            Replication::None
        };
        let handle = {
            let mut all = self.caches.write();
            if let Some(c) = all.get(name) {
                if (c.maxelems, c.ttl_ms, c.replicate) != (maxelems, ttl_ms, replicate) {
                    return Err(MetricsError::Redefined(name.to_string()));
                }
                return Ok(GaugeCacheHandle(Arc::clone(c)));
            }
            let c = Arc::new(GaugeCache {
                name: name.to_string(),
                maxelems,
                ttl_ms,
                replicate,
                inner: Mutex::new(GaugeInner {
                    cells: HashMap::with_hasher(random_seed()),
                    ..GaugeInner::default()
                }),
            });
            all.insert(name.to_string(), Arc::clone(&c));
            GaugeCacheHandle(c)
        };
        if replicated {
            self.adopt_orphans(KIND_GAUGE_CACHE, name);
        }
        Ok(handle)
    }

    /// The gauge cache named `name`.
    pub fn gauge_cache(&self, name: &str) -> Result<GaugeCacheHandle, MetricsError> {
        self.caches
            .read()
            .get(name)
            .map(|c| GaugeCacheHandle(Arc::clone(c)))
            .ok_or_else(|| MetricsError::UnknownGaugeCache(name.to_string()))
    }

    /// `msys.gauge_cache.inc`.
    pub fn gauge_inc(&self, name: &str, key: &[u8], now_ms: u64) -> Result<i64, MetricsError> {
        self.gauge_cache(name)?.inc(key, now_ms)
    }

    /// `msys.gauge_cache.dec`.
    pub fn gauge_dec(&self, name: &str, key: &[u8], now_ms: u64) -> Result<i64, MetricsError> {
        self.gauge_cache(name)?.dec(key, now_ms)
    }

    /// `msys.gauge_cache.get`.
    pub fn gauge_get(
        &self,
        name: &str,
        key: &[u8],
        scope: Scope,
        now_ms: u64,
    ) -> Result<i64, MetricsError> {
        Ok(self.gauge_cache(name)?.get(key, scope, now_ms))
    }

    /// `msys.gauge_cache.remove_item`.
    pub fn gauge_remove_item(&self, name: &str, key: &[u8]) -> Result<(), MetricsError> {
        self.gauge_cache(name)?.remove_item(key);
        Ok(())
    }

    /// Expires and evicts gauge cache keys and drops old windows.
    pub fn maintain(&self, now_ms: u64) {
        self.now_ms.fetch_max(now_ms, Ordering::Relaxed);
        for s in self.series.read().values() {
            s.roll(now_ms);
        }
        for c in self.caches.read().values() {
            c.expire(now_ms);
        }
    }

    /// Every non-zero count in `scope`, for `cluster shared show`: series
    /// cells as `series NAME ITEM window N` (N = 0 for the current
    /// window), gauge cache keys as `gauge_cache NAME ITEM`, sorted.
    pub fn rows(&self, scope: Scope, now_ms: u64) -> Vec<(String, String)> {
        let pick = |local: i64, peer: i64| match scope {
            Scope::Local => local,
            Scope::Global => local + peer,
        };
        let mut rows = Vec::new();
        for s in self.series.read().values() {
            for shard in &s.shards {
                for ((item, w), c) in shard.lock().iter() {
                    let n = pick(c.local, c.peer);
                    if n != 0 {
                        rows.push((series_label(s, item, *w, now_ms), n.to_string()));
                    }
                }
            }
        }
        for c in self.caches.read().values() {
            for (key, cell) in c.inner.lock().cells.iter() {
                let n = pick(cell.local, cell.peer);
                if n != 0 && !c.expired(cell, now_ms) {
                    rows.push((gauge_label(&c.name, key), n.to_string()));
                }
            }
        }
        rows.sort();
        rows
    }

    /// A replication key as [`Metrics::rows`] names it (a malformed one
    /// as its bytes).
    pub fn display_key(&self, key: &[u8]) -> String {
        let now_ms = self.now_ms.load(Ordering::Relaxed);
        match decode(key) {
            Some((KIND_SERIES, name, item, Some(w))) => match self.series.read().get(name) {
                Some(s) => series_label(s, item, w, now_ms),
                None => format!(
                    "series {name} {} window @{w}",
                    String::from_utf8_lossy(item)
                ),
            },
            Some((_, name, item, _)) => gauge_label(name, item),
            None => String::from_utf8_lossy(key).into_owned(),
        }
    }

    fn replicated_series(&self) -> Vec<Arc<Series>> {
        self.series
            .read()
            .values()
            .filter(|s| s.replicate == self.carries && self.carries != Replication::None)
            .cloned()
            .collect()
    }

    fn replicated_caches(&self) -> Vec<Arc<GaugeCache>> {
        self.caches
            .read()
            .values()
            .filter(|c| c.replicate == self.carries && self.carries != Replication::None)
            .cloned()
            .collect()
    }

    fn adopt_orphans(&self, kind: u8, name: &str) {
        let mut prefix = vec![kind, u8::try_from(name.len()).unwrap_or(u8::MAX)];
        prefix.extend_from_slice(name.as_bytes());
        let adopted: Vec<(Vec<u8>, i64)> = {
            let mut orphans = self.orphans.lock();
            let keys: Vec<Vec<u8>> = orphans
                .keys()
                .filter(|k| k.starts_with(&prefix))
                .cloned()
                .collect();
            keys.into_iter()
                .filter_map(|k| orphans.remove(&k).map(|v| (k, v)))
                .collect()
        };
        for (key, value) in adopted {
            self.set_peer_sum(&key, value);
        }
    }
}

impl Counted for Metrics {
    fn drain_changed(&self) -> Vec<KeyCount> {
        let mut out = Vec::new();
        for s in self.replicated_series() {
            s.drain(&mut out);
        }
        for c in self.replicated_caches() {
            c.drain(&mut out);
        }
        out
    }

    fn set_peer_sum(&self, key: &[u8], peer_sum: i64) {
        let Some((kind, name, item, window)) = decode(key) else {
            return;
        };
        let now_ms = self.now_ms.load(Ordering::Relaxed);
        // A name defined here but not replicated by this object is a
        // different, local thing: the peer's counts are not for it.
        match (kind, window) {
            (KIND_SERIES, Some(w)) => {
                let s = self.series.read().get(name).cloned();
                match s {
                    Some(s) if s.replicate == self.carries => {
                        return s.set_peer(item, w, peer_sum, now_ms);
                    }
                    Some(_) => return,
                    None => {}
                }
            }
            (KIND_GAUGE_CACHE, None) => {
                let c = self.caches.read().get(name).cloned();
                match c {
                    Some(c) if c.replicate == self.carries => {
                        return c.set_peer(item, peer_sum, now_ms);
                    }
                    Some(_) => return,
                    None => {}
                }
            }
            _ => return,
        }
        let mut orphans = self.orphans.lock();
        if peer_sum == 0 {
            orphans.remove(key);
        } else if orphans.len() < MAX_ORPHANS || orphans.contains_key(key) {
            orphans.insert(key.to_vec(), peer_sum);
        }
    }

    fn local_values(&self) -> Vec<KeyCount> {
        let mut out = Vec::new();
        for s in self.replicated_series() {
            s.local_values(&mut out);
        }
        for c in self.replicated_caches() {
            c.local_values(&mut out);
        }
        out
    }

    fn maintain(&self, now_ms: u64, _members: usize) {
        Metrics::maintain(self, now_ms)
    }
}

fn series_label(s: &Series, item: &[u8], w: u64, now_ms: u64) -> String {
    let item = match (s.ty, item.len()) {
        (SeriesType::Cidr, 4) | (SeriesType::CidrIpv6, 16) => {
            let ip = if let Ok(a) = <[u8; 4]>::try_from(item) {
                IpAddr::from(a)
            } else if let Ok(a) = <[u8; 16]>::try_from(item) {
                IpAddr::from(a)
            } else {
                return String::new();
            };
            ip.to_string()
        }
        _ => String::from_utf8_lossy(item).into_owned(),
    };
    let age = s.window(now_ms).saturating_sub(w);
    format!("series {} {item} window {age}", s.name)
}

fn gauge_label(name: &str, item: &[u8]) -> String {
    format!("gauge_cache {name} {}", String::from_utf8_lossy(item))
}

fn check_name(name: &str) -> Result<(), MetricsError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(MetricsError::BadArgument(format!(
            "name '{name}' must be 1 to {MAX_NAME_LEN} bytes"
        )));
    }
    Ok(())
}

/// The replication key of an item; see the module docs. Names and items
/// were length-checked on the way in, so the lengths fit a byte.
fn encode(kind: u8, name: &str, item: &[u8], window: Option<u64>) -> Vec<u8> {
    let mut k = Vec::with_capacity(3 + name.len() + item.len() + 8);
    k.push(kind);
    k.push(u8::try_from(name.len()).unwrap_or(u8::MAX));
    k.extend_from_slice(name.as_bytes());
    k.push(u8::try_from(item.len()).unwrap_or(u8::MAX));
    k.extend_from_slice(item);
    if let Some(w) = window {
        k.extend_from_slice(&w.to_be_bytes());
    }
    k
}

/// The parts of a replication key from the wire, or `None` if malformed.
fn decode(key: &[u8]) -> Option<(u8, &str, &[u8], Option<u64>)> {
    let (&kind, rest) = key.split_first()?;
    let (&n, rest) = rest.split_first()?;
    let (name, rest) = rest.split_at_checked(usize::from(n))?;
    let name = std::str::from_utf8(name).ok()?;
    let (&m, rest) = rest.split_first()?;
    let (item, rest) = rest.split_at_checked(usize::from(m))?;
    let window = match (kind, rest.len()) {
        (KIND_SERIES, 8) => Some(u64::from_be_bytes(rest.try_into().ok()?)),
        (KIND_GAUGE_CACHE, 0) => None,
        _ => return None,
    };
    Some((kind, name, item, window))
}

#[cfg(test)]
mod tests;
