//! `GET /metrics` with per-node series, at fleet scale: the release Command Center with N
//! enrolled nodes (one realistic heartbeat each, through the real agent API), scraped
//! repeatedly; beside it, in the same run, `prometheus-node-exporter` (Debian package) scraped
//! the same way — one host's exporter, the scrape Prometheus users know.
//!
//! `cargo run --release -p vaultmesh-bench --bin metrics-bench -- [NODES] [SCRAPES]`
//! (defaults 1000 and 50). Goal: a scrape under 50 ms at 1,000 nodes (issue 27).

use std::time::Instant;

use vaultmesh_bench::fleet::Server;
use vaultmesh_bench::sim::{self, SimConfig};
use vaultmesh_bench::{NodeExporter, arg_or, cpu_time};

const GOAL_MS: f64 = 50.0;

/// Scrapes `url` `n` times; (median ms, p99 ms, bytes, series) of the last scrape.
fn scrape(
    http: &reqwest::blocking::Client,
    url: &str,
    n: usize,
) -> anyhow::Result<(f64, f64, usize, usize)> {
    let mut times = Vec::with_capacity(n);
    let mut last = String::new();
    for _ in 0..n.max(1) {
        let t = Instant::now();
        let r = http.get(url).send()?;
        anyhow::ensure!(r.status().is_success(), "{url}: {}", r.status());
        last = r.text()?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    let pct = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize];
    let series = last
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count();
    Ok((pct(0.5), pct(0.99), last.len(), series))
}

fn main() -> anyhow::Result<()> {
    let nodes = arg_or(1, "NODES", 1000)?;
    let scrapes = arg_or(2, "SCRAPES", 50)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    println!("metrics-bench: {nodes} nodes, {scrapes} scrapes each");
    let cc = Server::start(&[])?;
    let t = Instant::now();
    rt.block_on(sim::run(&SimConfig {
        token: Some(vaultmesh_bench::fleet::TOKEN.to_string()),
        requests: 0,
        ..SimConfig::heartbeats(&cc.base, nodes, 0)
    }))?;
    println!(
        "enrolled {nodes} nodes, one heartbeat each, in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let http = reqwest::blocking::Client::new();
    let url = format!("{}/metrics", cc.base);
    scrape(&http, &url, 3)?; // warm
    let cpu0 = cpu_time(cc.child.id())?;
    let (p50, p99, bytes, series) = scrape(&http, &url, scrapes)?;
    let cpu = (cpu_time(cc.child.id())? - cpu0).as_secs_f64() * 1e3 / scrapes.max(1) as f64;
    println!(
        "  {:<44} {:>8} {:>8} {:>10} {:>8} {:>9}",
        "scrape", "p50 ms", "p99 ms", "bytes", "series", "CPU ms"
    );
    println!(
        "  {:<44} {p50:>8.1} {p99:>8.1} {bytes:>10} {series:>8} {cpu:>9.1}",
        format!("Command Center, {nodes} nodes")
    );
    match node_exporter(&http, scrapes) {
        Ok((p50, p99, bytes, series)) => println!(
            "  {:<44} {p50:>8.1} {p99:>8.1} {bytes:>10} {series:>8} {:>9}",
            "prometheus-node-exporter (this host)", "-"
        ),
        Err(e) => println!("  prometheus-node-exporter: not measured ({e})"),
    }
    println!(
        "  goal: a scrape under {GOAL_MS:.0} ms at 1,000 nodes: p99 {p99:.1} ms, {}",
        if p99 < GOAL_MS { "MET" } else { "MISSED" }
    );
    Ok(())
}

/// `prometheus-node-exporter` on a loopback port, scraped `n` times.
fn node_exporter(
    http: &reqwest::blocking::Client,
    n: usize,
) -> anyhow::Result<(f64, f64, usize, usize)> {
    let exporter = NodeExporter::start(http)?;
    scrape(http, &exporter.url, 3)?;
    scrape(http, &exporter.url, n)
}
