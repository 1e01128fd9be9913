//! What a console command costs: dispatch and rendering in process (what
//! `ecc_console_exec` does), and a round trip over the control socket (what
//! `eccluster console` and an operator's scripts do).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use eccluster::config::{Format, LoadedConfig};
use eccluster::io::control::ControlClient;
use eccluster::node::Node;

fn console(c: &mut Criterion) {
    let socket = std::env::temp_dir().join(format!("ecc-bench-console-{}", std::process::id()));
    let text = format!(
        "cluster {{ nodename = \"bench1\" nodeaddr = \"127.0.0.1\" }}\n\
         ECCluster_Listener {{ Listen \"127.0.0.1:0\" {{}} }}\n\
         Control_Listener {{ Listen \"{}\" {{}} }}\n",
        socket.display()
    );
    let config = LoadedConfig::parse(&text, Format::Ecelerity)
        .expect("bench config loads")
        .config;
    let node = Node::new(config);
    node.start().expect("bench node starts");

    c.bench_function("console/in-process cluster nodename", |b| {
        b.iter(|| node.console_exec(black_box("cluster nodename")))
    });
    c.bench_function("console/in-process cluster info", |b| {
        b.iter(|| node.console_exec(black_box("cluster info")))
    });
    let mut client = ControlClient::connect(&socket).expect("console socket accepts");
    c.bench_function("console/socket round trip cluster info", |b| {
        b.iter(|| {
            client
                .exec(black_box("cluster info"))
                .expect("socket works")
        })
    });
    node.stop();
}

criterion_group!(benches, console);
criterion_main!(benches);
