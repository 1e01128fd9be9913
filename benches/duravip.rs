//! What DuraVIP costs in a 16-node cluster with 1,000 DuraVIPs: one
//! machine handling a peer's table (what every node does for every acquire
//! and release anywhere) and a tick; and, from the simulator, how long the
//! cluster takes to hand a newcomer its share, in cluster time, with the
//! default timings and with tuned ones.

#[path = "../tests/sim/mod.rs"]
mod sim;

use std::hint::black_box;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use eccluster::config::model::QuorumMode;
use eccluster::core::duravip::{DuraVip, DuraVipConfig, Handoff, Table};

use sim::LinkSpec;
use sim::duravip::{claim, cluster, ip, same_claims};

const NODES: usize = 16;
const VIPS: u32 = 1000;

fn name(i: usize) -> String {
    format!("n{i:02}")
}

/// Defaults of the reference: view_mature_time 5 s, view_balance_interval
/// 10 s, duravip_balance_set_size 1.
fn defaults() -> DuraVipConfig {
    DuraVipConfig {
        view_mature_ms: 5000,
        balance_interval_ms: 10_000,
        balance_set_size: 1,
        quorum: QuorumMode::None,
    }
}

/// Node n00 of a settled 16-node cluster where IP `i` is owned by node
/// `i % 16`, and the tables of its peers.
fn settled_node() -> (DuraVip, Vec<Table>, u64) {
    let claims: Arc<Vec<_>> = Arc::new((0..VIPS).map(|i| claim(i, None)).collect());
    let mut dv = DuraVip::new(&name(0), defaults(), 0);
    for c in claims.iter() {
        let _ = dv.set_claim(0, c.clone());
    }
    let view: Vec<(String, u64)> = (0..NODES).map(|i| (name(i), 1)).collect();
    let _ = dv.set_view(0, &view, true);
    let tables: Vec<Table> = (1..NODES)
        .map(|n| Table {
            version: 1,
            claims: claims.clone(),
            owned: (0..VIPS)
                .filter(|i| *i as usize % NODES == n)
                .map(ip)
                .collect(),
            handoffs: Vec::new(),
        })
        .collect();
    for (n, t) in tables.iter().enumerate() {
        let _ = dv.on_table(0, &name(n + 1), 1, t.clone());
    }
    let now = 5000;
    let _ = dv.tick(now);
    assert!(dv.owned().len() >= 60, "n00 took its share");
    (dv, tables, now)
}

fn machine(c: &mut Criterion) {
    let (mut dv, tables, now) = settled_node();
    // A planned move between two peers, as a bystander sees it: n01
    // releases an IP for n02 (its table), then n02 acquires it (its
    // table). Two updates per iteration, back and forth.
    let moving: IpAddr = ip(1);
    let (mut n01, mut n02) = (tables[0].clone(), tables[1].clone());
    let mut version = 1;
    let mut there = false;
    c.bench_function("duravip/peer table update (16 nodes, 1,000 VIPs)", |b| {
        b.iter(|| {
            version += 1;
            let (giver, taker, from, to) = if there {
                (&mut n02, &mut n01, "n02", "n01")
            } else {
                (&mut n01, &mut n02, "n01", "n02")
            };
            giver.version = version;
            giver.owned.retain(|i| *i != moving);
            giver.handoffs = vec![Handoff {
                ip: moving,
                to: to.to_string(),
                generation: 1,
                seq: version,
            }];
            black_box(dv.on_table(now, from, 1, giver.clone()));
            taker.version = version;
            taker.owned.push(moving);
            taker.handoffs.clear();
            black_box(dv.on_table(now, to, 1, taker.clone()));
            there = !there;
        })
    });
    let mut t = now;
    c.bench_function("duravip/tick (16 nodes, 1,000 VIPs)", |b| {
        b.iter(|| {
            t += 1;
            black_box(dv.tick(t))
        })
    });
}

/// From the simulator: 15 nodes own 1,000 DuraVIPs, balanced; a 16th
/// starts. Cluster time from its start until every IP has one owner and
/// the counts differ by at most one, and the real time the run took.
fn join_figures() {
    let tuned = DuraVipConfig {
        view_mature_ms: 2000,
        balance_interval_ms: 1000,
        balance_set_size: 4,
        quorum: QuorumMode::None,
    };
    for (label, cfg) in [
        ("defaults (5 s, 10 s, 1)", defaults()),
        ("tuned (2 s, 1 s, 4)", tuned),
    ] {
        let real = Instant::now();
        let names: Vec<String> = (0..NODES).map(name).collect();
        let nodes: Vec<&str> = names.iter().map(String::as_str).collect();
        let link = LinkSpec {
            loss: 0.0,
            delay_min: 1,
            delay_max: 20,
        };
        let mut sim = cluster(7, &nodes, cfg, same_claims(VIPS), link);
        for n in &nodes[..NODES - 1] {
            sim.start(n);
        }
        let all: Vec<IpAddr> = (0..VIPS).map(ip).collect();
        let balanced = |s: &sim::Sim<sim::duravip::DvNode>| {
            let loads = s.loads();
            let spread = loads.values().max().unwrap_or(&0) - loads.values().min().unwrap_or(&0);
            spread <= 1 && {
                let counts = sim::duravip_invariants::owner_counts(s);
                all.iter().all(|i| counts.get(i) == Some(&1))
            }
        };
        sim.wait_until(600_000, balanced).expect("15 nodes balance");
        sim.run_for(20_000);
        let joined = sim.now();
        sim.start(nodes[NODES - 1]);
        let at = sim
            .wait_until(joined + 600_000, balanced)
            .expect("the newcomer gets its share");
        println!(
            "duravip/join rebalance, {label}: {} ms of cluster time for {VIPS} VIPs on {NODES} nodes \
             (the newcomer owns {}); {:.1} s real for the whole run",
            at - joined,
            sim.dv_node(nodes[NODES - 1]).plumbed.len(),
            real.elapsed().as_secs_f64()
        );
    }
}

fn all(c: &mut Criterion) {
    machine(c);
    if std::env::args().all(|a| a != "--test") {
        join_figures();
    }
}

criterion_group!(benches, all);
criterion_main!(benches);
