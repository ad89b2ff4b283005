//! The two stores side by side, on a throwaway PostgreSQL cluster on this machine:
//!
//! 1. Ingest at full speed (heartbeats, presigned, 32 connections): the JSONL store, one
//!    instance on PostgreSQL, and two instances on one database sharing the load.
//! 2. Cross-instance delivery: a heartbeat posted to instance A, until instance B's `/events`
//!    stream shows it — p50/p99/max over sequential heartbeats.
//! 3. Start-up: the time until a restarted instance answers, JSONL replay vs loading from
//!    PostgreSQL, with the logs the runs above left.
//!
//! `cargo run --release -p vaultmesh-bench --bin pg-bench -- [REQUESTS] [NODES] [PROBES]`
//! (defaults 40000, 1000 and 200; the CI smoke test runs it tiny).

use std::time::{Duration, Instant};

use vaultmesh_bench::fleet::{Server, TOKEN};
use vaultmesh_bench::sim::{self, OpKind, SimConfig};
use vaultmesh_bench::{arg_or, memory_kib};
use vaultmesh_testkit::auth::TestNode;
use vaultmesh_testkit::postgres::Postgres;
use vaultmesh_testkit::sse::SseClient;

fn main() -> anyhow::Result<()> {
    let requests = arg_or(1, "REQUESTS", 40_000)?;
    let nodes = arg_or(2, "NODES", 1_000)?;
    let probes = arg_or(3, "PROBES", 200)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    println!(
        "pg-bench: {requests} heartbeats per run from {nodes} nodes, 32 connections; {} CPUs shared by PostgreSQL, the Command Centers and the load generator",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let pg = Postgres::start();
    let url = pg.create_db("bench");
    let jsonl = Server::start(&[])?;
    let a = Server::start(&["--store", &url])?;
    let b = Server::start(&["--store", &url])?;

    let config = |base: &str, requests: usize, token: bool| SimConfig {
        token: token.then(|| TOKEN.to_string()),
        ..SimConfig::heartbeats(base, nodes, requests)
    };
    for server in [&jsonl, &a] {
        rt.block_on(sim::run(&config(&server.base, 0, true)))?;
    }

    println!("\n1. Maximum throughput (heartbeats only, {nodes} nodes)");
    println!(
        "  {:<38} {:>12} {:>9} {:>9} {:>7}",
        "store", "heartbeats/s", "p50 ms", "p99 ms", "errors"
    );
    let j = rt.block_on(sim::run(&config(&jsonl.base, requests, false)))?;
    println!("{}", j.heartbeat_row("JSONL files, one instance"));
    let one = rt.block_on(sim::run(&config(&a.base, requests, false)))?;
    println!("{}", one.heartbeat_row("PostgreSQL, one instance"));
    let half = |base: &str| SimConfig {
        concurrency: 16,
        ..config(base, requests / 2, false)
    };
    let (ha, hb) = (half(&a.base), half(&b.base));
    let (ra, rb) = rt.block_on(async { tokio::join!(sim::run(&ha), sim::run(&hb)) });
    let (ra, rb) = (ra?, rb?);
    let both = (ra.ok() + rb.ok()) as f64 / ra.elapsed.max(rb.elapsed).as_secs_f64();
    println!(
        "  {:<38} {:>12.0} {:>9.2} {:>9.2} {:>7}",
        "PostgreSQL, two instances (A + B)",
        both,
        ra.percentile(OpKind::Heartbeat, 0.5)
            .max(rb.percentile(OpKind::Heartbeat, 0.5)),
        ra.percentile(OpKind::Heartbeat, 0.99)
            .max(rb.percentile(OpKind::Heartbeat, 0.99)),
        ra.error_count() + rb.error_count()
    );
    for (name, server) in [
        ("JSONL", &jsonl),
        ("PostgreSQL A", &a),
        ("PostgreSQL B", &b),
    ] {
        let (_, now) = memory_kib(server.child.id());
        println!("  {name} RSS: {:.0} MiB", now as f64 / 1024.0);
    }
    let size = pg.psql("bench", "SELECT pg_size_pretty(pg_database_size('bench'))");
    let rows = pg.psql("bench", "SELECT count(*) FROM records");
    println!(
        "  database: {} rows, {}",
        rows.unwrap_or_default(),
        size.unwrap_or_default()
    );

    println!(
        "\n2. Cross-instance delivery: POST to A until B's /events shows it ({probes} probes)"
    );
    let mut delays = cross_instance(&a.base, &b.base, probes)?;
    delays.sort_by(f64::total_cmp);
    println!(
        "  p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        sim::percentile(&delays, 0.5),
        sim::percentile(&delays, 0.99),
        delays.iter().copied().fold(0.0, f64::max)
    );

    println!("\n3. Start-up with the logs above (until /healthz answers)");
    drop(b);
    let started = Instant::now();
    let jsonl = jsonl.restart()?;
    startup("JSONL replay", started, &jsonl)?;
    let started = Instant::now();
    let a = a.restart()?;
    startup("PostgreSQL load", started, &a)?;
    Ok(())
}

/// Sequential heartbeats from one node to `a`; the delay until `b`'s stream shows each.
fn cross_instance(a: &str, b: &str, probes: usize) -> anyhow::Result<Vec<f64>> {
    let node = TestNode::new(uuid::Uuid::now_v7());
    node.enroll_with(a, TOKEN);
    let sse = SseClient::connect(&format!("{b}/events?kinds=heartbeat"), None);
    std::thread::sleep(Duration::from_millis(300));
    let id = node.id.to_string();
    let mut delays = Vec::with_capacity(probes);
    for seq in 1..=probes as u64 {
        let hb = vaultmesh_testkit::heartbeat_json(&id, "probe", seq);
        let sent = Instant::now();
        let body = serde_json::to_vec(&hb)?;
        let r = node
            .signed(
                a,
                "POST",
                "/api/agent/heartbeat",
                Some("application/json"),
                body,
            )
            .send()?;
        anyhow::ensure!(r.status().is_success(), "POST to A: {}", r.status());
        loop {
            let (_, _, data) = sse
                .next_event(Duration::from_secs(5))
                .ok_or_else(|| anyhow::anyhow!("B did not stream heartbeat {seq} within 5 s"))?;
            if data.contains(&id) && data.contains(&format!("\"heartbeats\":{seq}")) {
                break;
            }
        }
        delays.push(sent.elapsed().as_secs_f64() * 1e3);
    }
    Ok(delays)
}

fn startup(name: &str, started: Instant, server: &Server) -> anyhow::Result<()> {
    let elapsed = started.elapsed();
    let v: serde_json::Value = vaultmesh_testkit::http()
        .get(format!("{}/api/nodes", server.base))
        .send()?
        .json()?;
    println!(
        "  {name:<18} {:>8.0} ms  ({} nodes)",
        elapsed.as_secs_f64() * 1e3,
        v.as_array().map_or(0, Vec::len)
    );
    Ok(())
}
