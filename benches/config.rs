//! How long reading a configuration takes: the reference default file in
//! both syntaxes, and one option override (which re-checks everything).

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use eccluster::config::{Format, LoadedConfig};

fn read(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/config")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn config(c: &mut Criterion) {
    let conf = read("ecelerity-cluster.conf");
    let toml = read("ecelerity-cluster.toml");
    c.bench_function("config/parse ecelerity-cluster.conf", |b| {
        b.iter(|| LoadedConfig::parse(black_box(&conf), Format::Ecelerity).map(|c| c.config))
    });
    c.bench_function("config/parse ecelerity-cluster.toml", |b| {
        b.iter(|| LoadedConfig::parse(black_box(&toml), Format::Toml).map(|c| c.config))
    });
    let loaded = LoadedConfig::parse(&conf, Format::Ecelerity).expect("the reference config loads");
    c.bench_function("config/set cluster heartbeats_per_sec", |b| {
        b.iter(|| {
            let mut l = loaded.clone();
            l.set(black_box("cluster heartbeats_per_sec"), black_box("4"))
        })
    });
}

criterion_group!(benches, config);
criterion_main!(benches);
