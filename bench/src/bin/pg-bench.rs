//! The two stores side by side, on a throwaway PostgreSQL cluster on this machine:
//!
//! 1. Ingest at full speed (heartbeats, presigned, 32 connections): the JSONL store, one
//!    instance on PostgreSQL, and two instances on one database sharing the load.
//! 2. Cross-instance delivery: a heartbeat posted to instance A, until instance B's `/events`
//!    stream shows it — p50/p99/max over sequential heartbeats.
//! 3. Start-up: the time until a restarted instance answers, JSONL replay vs loading from
//!    PostgreSQL, with the logs the runs above left.
//! 4. History: 30 days of 5-minute and 1-hour buckets stored for every node, in the JSONL
//!    store's files (written here in its format) and in PostgreSQL's tables (through the
//!    store's own insert task); then `GET /api/nodes/{id}/history` for one node, each range,
//!    on both, the rows and bytes per node-day, and the start-up with that history stored.
//!
//! `cargo run --release -p vaultmesh-bench --bin pg-bench -- [REQUESTS] [NODES] [PROBES]`
//! (defaults 40000, 1000 and 200; the CI smoke test runs it tiny).

use std::time::{Duration, Instant};

use vaultmesh_bench::fleet::{Server, TOKEN};
use vaultmesh_bench::sim::{self, OpKind, SimConfig};
use vaultmesh_bench::{arg_or, memory_kib, node_id, realistic_heartbeat, timed};
use vaultmesh_proto::history::Tier;
use vaultmesh_store::history::{Agg, Bucket, Closed, HistoryOptions, Tiers, files};
use vaultmesh_store::postgres::tiers::PgTiers;
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

    println!("\n3. Start-up with the logs above (process start until it listens)");
    drop(b);
    let (jsonl, a) = restart_both(jsonl, a)?;

    history(&rt, &pg, &url, jsonl, a, nodes)?;
    Ok(())
}

/// Days of history part 4 stores per node.
const HISTORY_DAYS: i64 = 30;

/// Requests per range and store in part 4.
const QUERIES: usize = 30;

/// Part 4 (see the module doc).
fn history(
    rt: &tokio::runtime::Runtime,
    pg: &Postgres,
    url: &str,
    jsonl: Server,
    a: Server,
    nodes: usize,
) -> anyhow::Result<()> {
    println!(
        "\n4. History: {nodes} nodes with {HISTORY_DAYS} days of 5-minute and 1-hour buckets stored"
    );
    let sample = realistic_sample()?;
    let now = chrono::Utc::now().timestamp();
    let tiers = rt.block_on(async { PgTiers::open(url, HistoryOptions::default()) });
    let (mut pg_time, mut files_time) = (Duration::ZERO, Duration::ZERO);
    for i in 0..nodes {
        let node = node_id(i);
        let mut closed = buckets(i, Tier::FiveMinutes, now, &sample, 0);
        closed.extend(buckets(i, Tier::Hour, now, &sample, 0));
        let ((), took) = timed(|| write_files(jsonl.log_dir(), node, &closed));
        files_time += took;
        let started = Instant::now();
        tiers.store(closed);
        if i % 10 == 9 || i + 1 == nodes {
            rt.block_on(tiers.flush())?;
        }
        pg_time += started.elapsed();
    }
    let count = |sql: &str| -> anyhow::Result<u64> {
        pg.psql("bench", sql)
            .map_err(anyhow::Error::msg)?
            .parse()
            .map_err(|e| anyhow::anyhow!("{sql}: {e}"))
    };
    let rows =
        count("SELECT (SELECT count(*) FROM history_5m) + (SELECT count(*) FROM history_1h)")?;
    let pg_bytes = count(
        "SELECT pg_total_relation_size('history_5m') + pg_total_relation_size('history_1h')",
    )?;
    let file_bytes = dir_size(&jsonl.log_dir().join(files::DIR))?;
    let node_days = (nodes as i64 * HISTORY_DAYS) as f64;
    println!(
        "  stored: {rows} rows, {:.0} per node-day; written in {:.1} s to PostgreSQL ({:.0} rows/s, the store's insert task), {:.1} s to files",
        rows as f64 / node_days,
        pg_time.as_secs_f64(),
        rows as f64 / pg_time.as_secs_f64().max(1e-9),
        files_time.as_secs_f64()
    );
    println!(
        "  bytes per node-day: PostgreSQL {:.0} KiB (tables, TOAST and indexes), JSONL files {:.0} KiB (goal: all tiers <= 1 MiB)",
        pg_bytes as f64 / node_days / 1024.0,
        file_bytes as f64 / node_days / 1024.0
    );
    // The node queried also has the year before its 30 days in hourly buckets (stored after
    // the sizes above, by a second insert task: each stores a node's buckets oldest first).
    let node = node_id(nodes / 2);
    let year: Vec<Closed> = buckets(nodes / 2, Tier::Hour, now, &sample, 365)
        .into_iter()
        .filter(|c| c.bucket.start < now - HISTORY_DAYS * 86_400)
        .collect();
    write_files(jsonl.log_dir(), node, &year);
    let older = rt.block_on(async { PgTiers::open(url, HistoryOptions::default()) });
    older.store(year);
    rt.block_on(older.flush())?;
    println!(
        "  GET /api/nodes/{{id}}/history, one node (with a year of hourly buckets), {QUERIES} requests each (goal for 30d: <= 50 ms)"
    );
    println!(
        "  {:<12} {:<6} {:>8} {:>9} {:>9} {:>8}",
        "store", "range", "points", "first ms", "p50 ms", "max ms"
    );
    for (name, server) in [("JSONL", &jsonl), ("PostgreSQL", &a)] {
        for range in ["24h", "7d", "30d", "1y"] {
            let q = query_times(&server.base, node, range)?;
            println!(
                "  {name:<12} {range:<6} {:>8} {:>9.1} {:>9.1} {:>8.1}",
                q.points, q.first, q.p50, q.max
            );
        }
    }

    println!("  start-up with this history stored (process start until it listens)");
    restart_both(jsonl, a)?;
    Ok(())
}

/// Restarts both servers, printing how long each took from its process's start until it
/// listened (the `cargo build` before each start is not counted).
fn restart_both(jsonl: Server, a: Server) -> anyhow::Result<(Server, Server)> {
    let jsonl = jsonl.restart()?;
    startup("JSONL replay", &jsonl)?;
    let a = a.restart()?;
    startup("PostgreSQL load", &a)?;
    Ok((jsonl, a))
}

/// The measurements of the benchmark's realistic heartbeat, as the rollup takes them.
fn realistic_sample() -> anyhow::Result<Vec<vaultmesh_proto::history::Sample>> {
    let hb: vaultmesh_proto::NodeHeartbeat = serde_json::from_value(realistic_heartbeat(0, 1))?;
    let statuses: Vec<_> = hb.checks.iter().map(|c| c.status).collect();
    Ok(vaultmesh_proto::history::measure(
        hb.metrics.as_ref(),
        &statuses,
    ))
}

/// Node `i`'s closed buckets of `tier` from `days` ago (30 when 0; within retention) until
/// an hour ago, oldest first: each metric moving around its realistic value, with the samples
/// of the default 30-second interval.
fn buckets(
    i: usize,
    tier: Tier,
    now: i64,
    sample: &[vaultmesh_proto::history::Sample],
    days: i64,
) -> Vec<Closed> {
    let width = i64::from(tier.secs());
    let aligned = |t: i64| t - t.rem_euclid(width);
    let days = if days == 0 { HISTORY_DAYS } else { days };
    let first = aligned(now - days * 86_400) + width;
    let last = aligned(now) - 3_600;
    let n = (width / 30) as u32;
    let node = node_id(i);
    (first..last)
        .step_by(width as usize)
        .map(|start| {
            let phase = ((start / width) as f64 * 0.37 + i as f64).sin();
            let metrics = sample
                .iter()
                .map(|(name, v)| {
                    // Counts of checks stay whole; measurements wander by up to 10 %.
                    let avg = if name.starts_with("checks_") {
                        *v
                    } else {
                        v * (1.0 + 0.1 * phase)
                    };
                    let agg = Agg {
                        min: avg * 0.9,
                        max: avg * 1.1,
                        sum: avg * f64::from(n),
                        n,
                    };
                    (name.to_string(), agg)
                })
                .collect();
            Closed {
                node,
                tier,
                bucket: Bucket { start, metrics },
            }
        })
        .collect()
}

/// Appends `closed` to `node`'s history files under `log_dir`, line for line as the JSONL
/// store's writer does.
fn write_files(log_dir: &std::path::Path, node: uuid::Uuid, closed: &[Closed]) {
    use std::io::Write as _;
    let dir = log_dir.join(files::DIR).join(node.to_string());
    let mut out: std::collections::BTreeMap<String, Vec<u8>> = Default::default();
    for c in closed {
        let buf = out
            .entry(files::file_name(c.tier, c.bucket.start))
            .or_default();
        let m = serde_json::to_string(&c.bucket.stored_metrics()).unwrap_or_default();
        let _ = writeln!(buf, "{{\"t\":{},\"m\":{m}}}", c.bucket.start);
    }
    let _ = std::fs::create_dir_all(&dir);
    for (name, bytes) in out {
        let appended = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(dir.join(&name))
            .and_then(|mut f| f.write_all(&bytes));
        if let Err(e) = appended {
            eprintln!("{}: {e}", dir.join(name).display());
        }
    }
}

/// Bytes of the files under `dir`.
fn dir_size(dir: &std::path::Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_size(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

struct QueryTimes {
    points: usize,
    first: f64,
    p50: f64,
    max: f64,
}

/// [`QUERIES`] requests for `node`'s history over `range`: the first one's time, the median
/// and the slowest (ms), and the points of the answer.
fn query_times(base: &str, node: uuid::Uuid, range: &str) -> anyhow::Result<QueryTimes> {
    let client = vaultmesh_testkit::http();
    let url = format!("{base}/api/nodes/{node}/history?range={range}");
    let mut times = Vec::with_capacity(QUERIES);
    let mut points = 0;
    for _ in 0..QUERIES {
        let started = Instant::now();
        let r = client.get(&url).send()?;
        anyhow::ensure!(r.status().is_success(), "{url}: {}", r.status());
        let v: serde_json::Value = r.json()?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
        points = v["series"].as_array().map_or(0, |s| {
            s.iter()
                .map(|s| s["points"].as_array().map_or(0, Vec::len))
                .sum()
        });
    }
    let first = times[0];
    times.sort_by(f64::total_cmp);
    Ok(QueryTimes {
        points,
        first,
        p50: sim::percentile(&times, 0.5),
        max: times.last().copied().unwrap_or_default(),
    })
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

fn startup(name: &str, server: &Server) -> anyhow::Result<()> {
    let elapsed = server.started_in;
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
