//! Ingest, side by side in one run: the real Command Center (signature check, durable log,
//! state, attention, bus) and a bare axum server that only parses the same JSON (`ingest-floor`,
//! the floor on this machine), both driven by the fleet simulator with presigned requests.
//!
//! 1. Maximum throughput and p50/p99 latency at 1,000 and 10,000 nodes.
//! 2. Server CPU per heartbeat at a fixed 5,000 heartbeats/s.
//! 3. The realistic mix: heartbeats with scan reports and command round trips.
//!
//! `cargo run --release -p vaultmesh-bench --bin ingest-bench -- [REQUESTS] [RATE]`
//! (defaults 60000 and 5000; the CI smoke test runs it tiny).

use std::process::{Child, Command, Stdio};

use vaultmesh_bench::fleet::{Server, TOKEN, listening_base};
use vaultmesh_bench::sim::{self, OpKind, SimConfig, SimReport};
use vaultmesh_bench::{arg_or, cpu_time, memory_kib, release_binary};

fn main() -> anyhow::Result<()> {
    let requests = arg_or(1, "REQUESTS", 60_000)?;
    let rate = arg_or(2, "RATE", 5_000)? as f64;
    let big = arg_or(3, "NODES", 10_000)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    println!(
        "ingest-bench: {requests} requests per run, 32 connections, fixed rate {rate}/s; {} CPUs shared by server and load generator",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    let floor = Floor::start()?;
    let keys = tempfile::tempdir()?;
    let key = keys.path().join("cc.key");
    let cc_bin = release_binary("vaultmesh-command-center", "vaultmesh-command-center")?;
    let out = Command::new(&cc_bin)
        .args(["keygen", "--out"])
        .arg(&key)
        .output()?;
    anyhow::ensure!(out.status.success(), "keygen failed");
    let public = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("public key: "))
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("keygen printed no public key"))?;
    let key = key.to_string_lossy().into_owned();
    let policies = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let cc = Server::start(&[
        "--signing-key",
        &key,
        "--policy-dir",
        &policies.to_string_lossy(),
    ])?;
    let cc_pid = cc.child.id();

    let base = |url: &str, nodes, token: bool| SimConfig {
        token: token.then(|| TOKEN.to_string()),
        ..SimConfig::heartbeats(url, nodes, requests)
    };
    let enroll = std::time::Instant::now();
    rt.block_on(sim::run(&SimConfig {
        requests: 0,
        ..base(&cc.base, big, true)
    }))?;
    println!(
        "enrolled and warmed {big} nodes in {:.1} s",
        enroll.elapsed().as_secs_f64()
    );

    println!("\n1. Maximum throughput (heartbeats only)");
    println!(
        "  {:<38} {:>12} {:>9} {:>9} {:>7}",
        "server, nodes", "heartbeats/s", "p50 ms", "p99 ms", "errors"
    );
    let mut ratios = Vec::new();
    let small = big.min(1_000);
    let mut sizes = vec![small, big];
    sizes.dedup();
    for nodes in sizes {
        let f = rt.block_on(sim::run(&base(&floor.base, nodes, false)))?;
        line(&format!("bare axum parse, {nodes}"), &f);
        let c = rt.block_on(sim::run(&base(&cc.base, nodes, false)))?;
        line(&format!("Command Center, signatures, {nodes}"), &c);
        let m = rt.block_on(sim::run(&SimConfig {
            cc_public_key: Some(public.clone()),
            ..base(&cc.base, nodes, false)
        }))?;
        line(&format!("Command Center, session MACs, {nodes}"), &m);
        ratios.push((
            nodes,
            c.throughput() / f.throughput(),
            m.throughput() / f.throughput(),
        ));
    }
    for (nodes, signed, mac) in ratios {
        println!(
            "  Command Center / floor at {nodes} nodes: {signed:.2} signed, {mac:.2} with session MACs (target >= 0.5)"
        );
    }

    println!("\n2. Server CPU per heartbeat at {rate:.0} heartbeats/s ({small} nodes)");
    for (name, url, pid, mac) in [
        ("bare axum parse", &floor.base, floor.child.id(), false),
        ("CC, signatures", &cc.base, cc_pid, false),
        ("CC, session MACs", &cc.base, cc_pid, true),
    ] {
        let config = SimConfig {
            rate: Some(rate),
            cc_public_key: mac.then(|| public.clone()),
            ..base(url, small, false)
        };
        let before = cpu_time(pid)?;
        let r = rt.block_on(sim::run(&config))?;
        let cpu = cpu_time(pid)? - before;
        println!(
            "  {name:<18} {:>6.1} us CPU per heartbeat ({:.0}% of one CPU); achieved {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, {} errors",
            // The window also holds the run's warm-up: one heartbeat per node.
            cpu.as_secs_f64() * 1e6 / (r.ok() + small).max(1) as f64,
            cpu.as_secs_f64() / r.elapsed.as_secs_f64() * 100.0,
            r.throughput(),
            r.percentile(OpKind::Heartbeat, 0.5),
            r.percentile(OpKind::Heartbeat, 0.99),
            r.error_count()
        );
    }
    let (peak, now) = memory_kib(cc_pid);
    println!(
        "  Command Center RSS with {big} nodes: {:.0} MiB (peak {:.0} MiB)",
        now as f64 / 1024.0,
        peak as f64 / 1024.0
    );

    println!(
        "\n3. Realistic mix at {rate:.0}/s: 1 scan report per 500 requests, 1 command round trip per 1,000 (session MACs)"
    );
    let mix = rt.block_on(sim::run(&SimConfig {
        rate: Some(rate),
        cc_public_key: Some(public.clone()),
        scan_every: 500,
        command_every: 1000,
        presign: false,
        ..base(&cc.base, small, false)
    }))?;
    print!("{}", mix.render());
    anyhow::ensure!(mix.error_count() == 0, "the realistic mix had errors");
    Ok(())
}

fn line(name: &str, r: &SimReport) {
    println!("{}", r.heartbeat_row(name));
}

/// The `ingest-floor` server; killed on drop.
struct Floor {
    child: Child,
    base: String,
}

impl Floor {
    fn start() -> anyhow::Result<Floor> {
        let bin = release_binary("vaultmesh-bench", "ingest-floor")?;
        let mut child = Command::new(bin).stdout(Stdio::piped()).spawn()?;
        let base = listening_base(&mut child)?;
        Ok(Floor { child, base })
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
