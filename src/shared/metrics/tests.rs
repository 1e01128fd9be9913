//! Audit series, gauge caches, their replication keys, and convergence of
//! three nodes through real `Replica`s.

use std::collections::BTreeMap;

use super::*;
use crate::core::replicate::batch::{BatchConfig, Batcher};
use crate::core::replicate::{Entry, Replica};

const MIN: u64 = 60_000;
/// Some wall-clock time, on a window boundary of every interval used here.
const T0: u64 = 1_700_000_000_000 / (60 * MIN) * (60 * MIN);

fn cluster() -> Metrics {
    Metrics::new(Replication::Cluster)
}

#[test]
fn a_string_series_counts_per_window_and_rolls() {
    let m = cluster();
    let s = m
        .define_series("spam", SeriesType::String, 60, 3, Replication::None)
        .unwrap();
    s.add(b"a@b.example", 2, T0).unwrap();
    s.add(b"a@b.example", 1, T0 + 59_999).unwrap();
    s.add(b"a@b.example", 5, T0 + MIN).unwrap();
    let count = |from, to, now| {
        s.count(b"a@b.example", from, to, Scope::Local, now)
            .unwrap()
    };
    assert_eq!(count(0, 0, T0 + MIN), 5, "the current window");
    assert_eq!(count(1, 1, T0 + MIN), 3, "the previous one");
    assert_eq!(count(0, 2, T0 + MIN), 8);
    assert_eq!(count(0, 99, T0 + MIN), 8, "past the last window: empty");
    assert_eq!(count(3, 9, T0 + MIN), 0);
    assert_eq!(
        count(0, 2, T0 + 3 * MIN),
        5,
        "the first window is now 3 back"
    );
    m.maintain(T0 + 3 * MIN);
    assert_eq!(
        count(0, 2, T0 + 3 * MIN),
        5,
        "dropping old windows changes no count"
    );
    assert_eq!(s.0.shards.iter().map(|s| s.lock().len()).sum::<usize>(), 1);
    assert!(matches!(
        s.count(b"x", 2, 1, Scope::Local, T0),
        Err(MetricsError::BadArgument(_))
    ));
    s.remove_item(b"a@b.example").unwrap();
    assert_eq!(count(0, 2, T0 + 3 * MIN), 0);
}

#[test]
fn a_cidr_series_counts_addresses_and_prefixes() {
    let m = cluster();
    m.define_series("conn", SeriesType::Cidr, 300, 6, Replication::None)
        .unwrap();
    for (ip, n) in [
        ("10.1.2.3", 1),
        ("10.1.2.200", 2),
        ("10.1.3.1", 4),
        ("11.0.0.1", 8),
    ] {
        m.series_add("conn", ip.as_bytes(), n, T0).unwrap();
    }
    let count = |key: &str| {
        m.series_count("conn", key.as_bytes(), 0, 5, Scope::Global, T0)
            .unwrap()
    };
    assert_eq!(count("10.1.2.3"), 1);
    assert_eq!(count("10.1.2.3/32"), 1);
    assert_eq!(count("10.1.2.0/24"), 3);
    assert_eq!(count("10.1.2.77/24"), 3, "host bits are masked");
    assert_eq!(count("10.0.0.0/8"), 7);
    assert_eq!(count("0.0.0.0/0"), 15);
    assert_eq!(count("10.1.2.128/25"), 2);
    for bad in ["10.1.2.0/33", "::1", "10.1.2", "x", "10.1.2.3/a"] {
        assert!(
            matches!(
                m.series_count("conn", bad.as_bytes(), 0, 0, Scope::Local, T0),
                Err(MetricsError::BadKey(_))
            ),
            "{bad}"
        );
    }
    assert!(
        matches!(
            m.series_add("conn", b"10.1.2.0/24", 1, T0),
            Err(MetricsError::BadKey(_))
        ),
        "add takes one address"
    );
    assert!(m.series_add("conn", &[0xff, 0xfe], 1, T0).is_err());
    m.series_remove_item("conn", b"10.1.2.0/24").unwrap();
    assert_eq!(
        count("10.0.0.0/8"),
        4,
        "a prefix removes every address in it"
    );

    m.define_series("conn6", SeriesType::CidrIpv6, 300, 6, Replication::None)
        .unwrap();
    m.series_add("conn6", b"2001:db8::1", 1, T0).unwrap();
    m.series_add("conn6", b"2001:db8:0:1::1", 1, T0).unwrap();
    let c6 = |k: &str| m.series_count("conn6", k.as_bytes(), 0, 0, Scope::Local, T0);
    assert_eq!(c6("2001:db8::/48"), Ok(2));
    assert_eq!(c6("2001:db8::/64"), Ok(1));
    assert!(c6("10.0.0.1").is_err(), "an IPv4 key in an IPv6 series");
}

#[test]
fn definitions_are_checked_and_idempotent() {
    let m = cluster();
    m.define_series("s", SeriesType::String, 60, 2, Replication::Cluster)
        .unwrap();
    assert!(
        m.define_series("s", SeriesType::String, 60, 2, Replication::Cluster)
            .is_ok()
    );
    assert_eq!(
        m.define_series("s", SeriesType::Cidr, 60, 2, Replication::Cluster)
            .unwrap_err(),
        MetricsError::Redefined("s".into())
    );
    assert!(
        m.define_series("", SeriesType::String, 60, 2, Replication::None)
            .is_err()
    );
    assert!(
        m.define_series(
            &"n".repeat(65),
            SeriesType::String,
            60,
            2,
            Replication::None
        )
        .is_err()
    );
    assert!(
        m.define_series("z", SeriesType::String, 0, 2, Replication::None)
            .is_err()
    );
    assert!(
        m.define_series("z", SeriesType::String, u64::MAX, 2, Replication::None)
            .is_err()
    );
    assert!(
        m.define_series("z", SeriesType::String, 60, 0, Replication::None)
            .is_err()
    );
    assert!(m.define_gauge_cache("g", 0, 1, false).is_err());
    assert_eq!("cidr_ipv6".parse(), Ok(SeriesType::CidrIpv6));
    assert!("ipv4".parse::<SeriesType>().is_err());
    assert_eq!("manager".parse(), Ok(Replication::Manager));
    assert!("all".parse::<Replication>().is_err());
    assert_eq!(
        m.series_add("nope", b"k", 1, T0),
        Err(MetricsError::UnknownSeries("nope".into()))
    );
    assert_eq!(
        m.gauge_inc("nope", b"k", T0),
        Err(MetricsError::UnknownGaugeCache("nope".into()))
    );
    assert!(
        m.series_add("s", &[b'k'; 181], 1, T0).is_err(),
        "key too long"
    );
    assert!(m.series_add("s", &[b'k'; 180], 1, T0).is_ok());
}

#[test]
fn gauge_caches_expire_from_the_last_modification_and_evict_the_oldest() {
    let m = cluster();
    let g = m.define_gauge_cache("g", 2, 10, true).unwrap();
    assert_eq!(g.inc(b"a", T0), Ok(1));
    assert_eq!(g.inc(b"a", T0 + 5_000), Ok(2));
    assert_eq!(g.get(b"a", Scope::Local, T0 + 14_999), 2);
    assert_eq!(
        g.get(b"a", Scope::Local, T0 + 15_000),
        0,
        "10 s after the last change"
    );
    assert_eq!(
        g.inc(b"a", T0 + 15_000),
        Ok(1),
        "an expired key starts again"
    );
    g.inc(b"b", T0 + 16_000).unwrap();
    g.dec(b"c", T0 + 17_000).unwrap();
    assert_eq!(
        g.get(b"a", Scope::Local, T0 + 17_000),
        0,
        "the oldest was evicted"
    );
    assert_eq!(g.get(b"c", Scope::Local, T0 + 17_000), -1);
    let mut drained = m.drain_changed();
    drained.sort();
    let key = |k: &[u8]| encode(KIND_GAUGE_CACHE, "g", k, None);
    assert_eq!(
        drained,
        [(key(b"a"), 0), (key(b"b"), 1), (key(b"c"), -1)],
        "the evicted key goes out as zero"
    );
    m.maintain(T0 + 26_000);
    assert_eq!(g.get(b"b", Scope::Local, T0 + 26_000), 0);
    assert_eq!(g.get(b"c", Scope::Local, T0 + 26_000), -1);
    assert_eq!(m.drain_changed(), [(key(b"b"), 0)], "expiry is sent too");
    g.remove_item(b"c");
    assert_eq!(m.drain_changed(), [(key(b"c"), 0)]);
    assert!(m.local_values().is_empty());
}

#[test]
fn only_this_objects_mode_is_replicated() {
    let m = Metrics::new(Replication::Manager);
    m.define_series("local", SeriesType::String, 60, 1, Replication::None)
        .unwrap();
    m.define_series("all", SeriesType::String, 60, 1, Replication::Cluster)
        .unwrap();
    m.define_series("mgr", SeriesType::String, 60, 1, Replication::Manager)
        .unwrap();
    m.define_gauge_cache("lg", 10, 0, false).unwrap();
    m.define_gauge_cache("rg", 10, 0, true).unwrap();
    for name in ["local", "all", "mgr"] {
        m.series_add(name, b"k", 1, T0).unwrap();
    }
    m.gauge_inc("lg", b"k", T0).unwrap();
    m.gauge_inc("rg", b"k", T0).unwrap();
    let mut drained: Vec<Vec<u8>> = m.drain_changed().into_iter().map(|(k, _)| k).collect();
    drained.sort();
    assert_eq!(
        drained,
        [
            encode(KIND_SERIES, "mgr", b"k", Some(T0 / MIN)),
            encode(KIND_GAUGE_CACHE, "rg", b"k", None)
        ]
    );
    assert_eq!(m.local_values().len(), 2);
    // A peer's count for the local series' name is not for it.
    m.set_peer_sum(&encode(KIND_SERIES, "local", b"k", Some(T0 / MIN)), 5);
    assert_eq!(
        m.series_count("local", b"k", 0, 0, Scope::Global, T0),
        Ok(1)
    );
}

#[test]
fn replication_keys_use_lengths_so_any_byte_is_safe() {
    let m = cluster();
    m.define_series("a@b", SeriesType::String, 60, 2, Replication::Cluster)
        .unwrap();
    let tricky: &[&[u8]] = &[b"x@y@z", b"", &[0, 0xff, b'@', 1], &[b'@'; 180]];
    for k in tricky {
        m.series_add("a@b", k, 1, T0).unwrap();
    }
    let drained = m.drain_changed();
    assert_eq!(drained.len(), tricky.len());
    for (key, _) in &drained {
        assert!(key.len() <= 255, "fits the wire's replica keys");
        let (kind, name, item, w) = decode(key).unwrap();
        assert_eq!((kind, name, w), (KIND_SERIES, "a@b", Some(T0 / MIN)));
        assert!(tricky.contains(&item));
    }
    // What a peer would send back, as its sum.
    for (key, _) in &drained {
        m.set_peer_sum(key, 10);
    }
    for k in tricky {
        assert_eq!(m.series_count("a@b", k, 0, 0, Scope::Global, T0), Ok(11));
    }
    // Malformed keys from the wire are ignored, whatever they hold.
    let good = &drained[0].0;
    for end in 0..good.len() {
        m.set_peer_sum(&good[..end], 99);
    }
    let mut long = good.clone();
    long.push(0);
    m.set_peer_sum(&long, 99);
    m.set_peer_sum(&[3, 1, b'x', 0], 99);
    m.set_peer_sum(&[KIND_SERIES, 2, 0xff, 0xfe, 0, 0, 0, 0, 0, 0, 0, 0, 0], 99);
    assert!(m.orphans.lock().is_empty());
    for k in tricky {
        assert_eq!(m.series_count("a@b", k, 0, 0, Scope::Global, T0), Ok(11));
    }
}

#[test]
fn peer_counts_for_undefined_names_wait_for_the_definition() {
    let m = cluster();
    let key = encode(KIND_SERIES, "later", &[10, 0, 0, 1], Some(T0 / MIN));
    m.set_peer_sum(&key, 4);
    m.set_peer_sum(&encode(KIND_GAUGE_CACHE, "gc", b"k", None), 2);
    m.define_series("later", SeriesType::Cidr, 60, 5, Replication::Cluster)
        .unwrap();
    assert_eq!(
        m.series_count("later", b"10.0.0.0/8", 0, 4, Scope::Global, T0),
        Ok(4)
    );
    m.define_gauge_cache("gc", 5, 0, true).unwrap();
    assert_eq!(m.gauge_get("gc", b"k", Scope::Global, T0), Ok(2));
    assert!(m.orphans.lock().is_empty());
    // An item that does not fit the type is dropped on adoption.
    m.set_peer_sum(&encode(KIND_SERIES, "v4", b"abc", Some(T0 / MIN)), 1);
    m.define_series("v4", SeriesType::Cidr, 60, 5, Replication::Cluster)
        .unwrap();
    assert_eq!(
        m.series_count("v4", b"0.0.0.0/0", 0, 4, Scope::Global, T0),
        Ok(0)
    );
}

#[test]
fn late_peer_counts_for_dropped_windows_are_ignored() {
    let m = cluster();
    m.define_series("s", SeriesType::String, 60, 2, Replication::Cluster)
        .unwrap();
    m.maintain(T0 + 10 * MIN);
    m.set_peer_sum(&encode(KIND_SERIES, "s", b"k", Some(T0 / MIN)), 7);
    m.set_peer_sum(&encode(KIND_SERIES, "s", b"k", Some(T0 / MIN + 9)), 3);
    let s = m.series("s").unwrap();
    assert_eq!(s.count(b"k", 0, 1, Scope::Global, T0 + 10 * MIN), Ok(3));
    assert_eq!(s.0.shards.iter().map(|s| s.lock().len()).sum::<usize>(), 1);
}

#[test]
fn threads_adding_at_once_lose_nothing() {
    let m = Arc::new(cluster());
    let s = m
        .define_series("s", SeriesType::Cidr, 60, 2, Replication::Cluster)
        .unwrap();
    let g = m.define_gauge_cache("g", 1000, 0, true).unwrap();
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let (m, s, g) = (Arc::clone(&m), s.clone(), g.clone());
            std::thread::spawn(move || {
                for n in 0..5000u32 {
                    s.add(format!("10.0.{i}.{}", n % 7).as_bytes(), 1, T0)
                        .unwrap();
                    g.inc(b"shared", T0).unwrap();
                    if n % 1000 == 0 {
                        m.drain_changed();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(s.count(b"10.0.0.0/16", 0, 1, Scope::Local, T0), Ok(20_000));
    assert_eq!(g.get(b"shared", Scope::Local, T0), 20_000);
    let last: BTreeMap<Vec<u8>, i64> = m.drain_changed().into_iter().collect();
    assert_eq!(
        last[&encode(KIND_GAUGE_CACHE, "g", b"shared", None)],
        20_000
    );
}

use crate::test_rng::Rng;

/// One simulated node: its metrics, its batcher and its replica of the
/// two others, wired as the engine does.
struct Node {
    name: &'static str,
    metrics: Metrics,
    batcher: Batcher,
    replica: Replica,
}

impl Node {
    fn apply(&mut self, from: &str, snapshot: Option<u64>, entries: &[Entry]) {
        let changes = match snapshot {
            Some(as_of) => self.replica.apply_snapshot(from, 1, as_of, entries),
            None => self.replica.apply(from, 1, entries),
        };
        for c in changes {
            self.metrics.set_peer_sum(&c.key, c.peer_sum);
        }
    }
}

/// Three nodes add to a CIDR series and a string series and move gauges
/// up and down, all within one window; the engine's batches reach the
/// others late, twice or not at all, in any order. After each node sends
/// the others its snapshot, every node reads the same cluster-wide counts,
/// and they are the sums of the nodes' own.
#[test]
fn three_nodes_converge_through_replicas() {
    for seed in 1..=100u64 {
        let mut rng = Rng::new(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let cfg = BatchConfig {
            max_delay_ms: 5,
            max_pending: 1 + rng.below(4) as u32,
        };
        let mut nodes: Vec<Node> = ["n1", "n2", "n3"]
            .into_iter()
            .map(|name| {
                let metrics = cluster();
                metrics
                    .define_series("ip", SeriesType::Cidr, 3600, 4, Replication::Cluster)
                    .unwrap();
                metrics
                    .define_series("who", SeriesType::String, 3600, 4, Replication::Cluster)
                    .unwrap();
                metrics.define_gauge_cache("g", 100, 0, true).unwrap();
                Node {
                    name,
                    metrics,
                    batcher: Batcher::new(cfg),
                    replica: Replica::new(),
                }
            })
            .collect();
        // (from, to, snapshot as_of, entries) in flight.
        let mut wire: Vec<(usize, usize, Option<u64>, Vec<Entry>)> = Vec::new();
        for step in 0..300u64 {
            let now = T0 + step;
            let n = rng.below(3) as usize;
            let m = &nodes[n].metrics;
            match rng.below(4) {
                0 => m
                    .series_add(
                        "ip",
                        format!("10.0.{}.{}", rng.below(2), rng.below(3)).as_bytes(),
                        1,
                        now,
                    )
                    .unwrap(),
                1 => m
                    .series_add(
                        "who",
                        format!("u{}@x", rng.below(3)).as_bytes(),
                        rng.below(5) as i64,
                        now,
                    )
                    .unwrap(),
                2 => {
                    m.gauge_inc("g", format!("k{}", rng.below(3)).as_bytes(), now)
                        .unwrap();
                }
                _ => {
                    m.gauge_dec("g", format!("k{}", rng.below(3)).as_bytes(), now)
                        .unwrap();
                }
            }
            for (i, node) in nodes.iter_mut().enumerate() {
                for (k, v) in node.metrics.drain_changed() {
                    node.batcher.note(now, k, v);
                }
                if node.batcher.due(now) {
                    let batch = node.batcher.take();
                    for to in (0..3).filter(|to| *to != i) {
                        wire.push((i, to, None, batch.clone()));
                    }
                }
            }
            if !wire.is_empty() && rng.below(2) == 0 {
                let at = rng.below(wire.len() as u64) as usize;
                let msg = if rng.below(4) == 0 {
                    wire[at].clone()
                } else {
                    wire.swap_remove(at)
                };
                if rng.below(10) != 0 {
                    let from = nodes[msg.0].name;
                    nodes[msg.1].apply(from, msg.2, &msg.3);
                }
            }
        }
        // Links reopen: pending batches, then a snapshot from each.
        let now = T0 + 300;
        for (i, node) in nodes.iter_mut().enumerate() {
            for (k, v) in node.metrics.drain_changed() {
                node.batcher.note(now, k, v);
            }
            let batch = node.batcher.take();
            let (as_of, snap) = node.batcher.snapshot(node.metrics.local_values());
            for to in (0..3).filter(|to| *to != i) {
                wire.push((i, to, None, batch.clone()));
                wire.push((i, to, Some(as_of), snap.clone()));
            }
        }
        while !wire.is_empty() {
            let at = rng.below(wire.len() as u64) as usize;
            let msg = wire.swap_remove(at);
            let from = nodes[msg.0].name;
            nodes[msg.1].apply(from, msg.2, &msg.3);
        }
        for i in 0..3 {
            let (as_of, snap) = nodes[i].batcher.snapshot(nodes[i].metrics.local_values());
            for to in (0..3).filter(|to| *to != i) {
                let from = nodes[i].name;
                nodes[to].apply(from, Some(as_of), &snap);
            }
        }
        let queries: Vec<(&str, String)> = ["10.0.0.0/16", "10.0.1.0/24", "10.0.0.2", "10.0.1.1"]
            .iter()
            .map(|k| ("ip", k.to_string()))
            .chain((0..3).map(|u| ("who", format!("u{u}@x"))))
            .collect();
        for (series, key) in &queries {
            let local: i64 = nodes
                .iter()
                .map(|n| {
                    n.metrics
                        .series_count(series, key.as_bytes(), 0, 3, Scope::Local, now)
                        .unwrap()
                })
                .sum();
            for n in &nodes {
                assert_eq!(
                    n.metrics
                        .series_count(series, key.as_bytes(), 0, 3, Scope::Global, now),
                    Ok(local),
                    "seed {seed}, {} {series} {key}",
                    n.name
                );
            }
        }
        for k in 0..3 {
            let key = format!("k{k}");
            let local: i64 = nodes
                .iter()
                .map(|n| {
                    n.metrics
                        .gauge_get("g", key.as_bytes(), Scope::Local, now)
                        .unwrap()
                })
                .sum();
            for n in &nodes {
                assert_eq!(
                    n.metrics.gauge_get("g", key.as_bytes(), Scope::Global, now),
                    Ok(local),
                    "seed {seed}, {} g {key}",
                    n.name
                );
            }
        }
    }
}
