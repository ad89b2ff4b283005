//! History at scale: a log directory holding NODES nodes (default 1,000) with DAYS days (default
//! 30) of history tiers, rolled up by the store's own code from a sample every 5 minutes, served
//! by the real `vaultmesh-command-center serve`; then
//!
//! 1. `GET /api/nodes/{id}/history?range=...` for each range over random nodes (median and p99
//!    of 50, next to the 50 ms goal for one node's 30 days),
//! 2. the tiers' bytes per node-day (next to the 1 MB goal for all tiers, with the raw heartbeat
//!    log's share measured by `store-bench`),
//! 3. start-up to listening over that directory.
//!
//! A year of hourly buckets is written for 20 of the nodes only (a query reads its own node's
//! files, so the other nodes' years would change nothing but the disk).
//!
//! `cargo run --release -p vaultmesh-bench --bin history-bench -- [NODES] [DAYS] [WORK_DIR]`

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, TimeZone, Utc};
use vaultmesh_bench::{arg_or, node_id, realistic_heartbeat, release_binary};
use vaultmesh_proto::history::{DISK_PREFIX, Range, Sample, Tier};
use vaultmesh_store::history::files::TierFiles;
use vaultmesh_store::history::{Agg, Bucket, Closed, HistoryOptions, Rollup, Tiers};
use vaultmesh_store::record;

/// Nodes with a year of hourly buckets.
const YEAR_NODES: usize = 20;

fn main() -> anyhow::Result<()> {
    let nodes = arg_or(1, "NODES", 1_000)?;
    let days = arg_or(2, "DAYS", 30)?;
    let work = std::env::args()
        .nth(3)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("vaultmesh-history-bench"));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let cc = release_binary("vaultmesh-command-center", "vaultmesh-command-center")?;
    println!(
        "history-bench: {nodes} nodes, {days} days of history, work dir {}",
        work.display()
    );

    let now = Utc::now();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let started = Instant::now();
    let lines = rt.block_on(write_tiers(&work, nodes, days, now))?;
    println!(
        "rolled up {lines} samples into tiers in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    // One heartbeat per node, so the Command Center knows them.
    let mut log = std::io::BufWriter::new(std::fs::File::create(work.join("heartbeats.jsonl"))?);
    for i in 0..nodes {
        log.write_all(&record::encode(
            "heartbeat",
            now,
            Some(node_id(i)),
            &realistic_heartbeat(i, 1),
        )?)?;
    }
    log.flush()?;
    drop(log);

    // 2. Bytes.
    let (mut five, mut hour) = (0u64, 0u64);
    for i in YEAR_NODES..nodes {
        for e in std::fs::read_dir(work.join("history").join(node_id(i).to_string()))? {
            let e = e?;
            let len = e.metadata()?.len();
            if e.file_name().to_string_lossy().starts_with("5m-") {
                five += len;
            } else {
                hour += len;
            }
        }
    }
    let node_days = ((nodes - YEAR_NODES.min(nodes)).max(1) * days) as f64;
    let line = record::encode(
        "heartbeat",
        now,
        Some(node_id(1)),
        &realistic_heartbeat(1, 1),
    )?;
    println!(
        "tiers per node-day: 5-minute {:.1} KB, 1-hour {:.1} KB, both {:.1} KB (goal: all tiers with the raw log ≤ 1,000 KB; raw plain would be {:.0} KB at 30 s — {} bytes a line; see store-bench for the compressed raw log)",
        five as f64 / node_days / 1000.0,
        hour as f64 / node_days / 1000.0,
        (five + hour) as f64 / node_days / 1000.0,
        line.len() as f64 * 2880.0 / 1000.0,
        line.len()
    );

    // 3. Start-up.
    let started = Instant::now();
    let (mut child, base) = serve(&cc, &work)?;
    println!(
        "start-up to listening over {nodes} nodes' tiers: {:.2}s",
        started.elapsed().as_secs_f64()
    );

    // 1. Queries.
    let result = rt.block_on(async {
        let http = vaultmesh_bench::sim::client(4)?;
        for range in Range::ALL {
            let pool = if range == Range::Year {
                YEAR_NODES.min(nodes)
            } else {
                nodes
            };
            let mut took = Vec::new();
            let mut points = 0;
            let mut size = 0;
            for k in 0..50 {
                let i = (k * 7919) % pool;
                let url = format!(
                    "{base}/api/nodes/{}/history?range={}",
                    node_id(i),
                    range.name()
                );
                let t = Instant::now();
                let r = http.get(&url).send().await?;
                anyhow::ensure!(r.status().is_success(), "{url}: {}", r.status());
                let body = r.bytes().await?;
                took.push(t.elapsed());
                let h: vaultmesh_proto::history::NodeHistory = serde_json::from_slice(&body)?;
                points = h.series.iter().map(|s| s.points.len()).max().unwrap_or(0);
                size = body.len();
            }
            took.sort();
            let goal = if range == Range::Month {
                "  (goal ≤ 50 ms; before: no history beyond the last 240 heartbeats)"
            } else {
                ""
            };
            println!(
                "history range={:<3} (tier {}, {} s points): median {:.1} ms, p99 {:.1} ms, {points} points per series, {} KB{goal}",
                range.name(),
                range.tier().name(),
                range.resolution_secs(),
                ms(took[took.len() / 2]),
                ms(took[took.len() * 99 / 100]),
                size / 1000
            );
        }
        anyhow::Ok(())
    });
    let _ = child.kill();
    let _ = child.wait();
    if std::env::var_os("KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&work);
    }
    result
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A node's sample at `t`: load with a daily wave, memory, no swap, six checks, three disks
/// (one filling slowly).
fn sample(i: usize, t: i64) -> Vec<Sample> {
    let day = (t % 86_400) as f64 / 86_400.0;
    let wave = (day * std::f64::consts::TAU).sin();
    let load = 0.5 + 0.4 * wave + (i % 7) as f64 * 0.1;
    vec![
        ("load1".into(), load),
        ("load5".into(), load * 0.9),
        ("load15".into(), load * 0.8),
        ("mem_used_pct".into(), 40.0 + 10.0 * wave),
        ("swap_used_pct".into(), 0.0),
        ("checks_ok".into(), 5.0),
        ("checks_warn".into(), 1.0),
        ("checks_crit".into(), 0.0),
        ("checks_unknown".into(), 0.0),
        (format!("{DISK_PREFIX}/").into(), 42.0),
        (
            format!("{DISK_PREFIX}/var/lib/vaultmesh").into(),
            24.0 + (t % 10_000_000) as f64 / 250_000.0,
        ),
        (format!("{DISK_PREFIX}/boot").into(), 31.5),
    ]
}

/// Rolls up a sample every 5 minutes for `days` days per node into the store's tier files
/// (and older hourly buckets for [`YEAR_NODES`]); returns the samples rolled up.
async fn write_tiers(
    dir: &Path,
    nodes: usize,
    days: usize,
    now: DateTime<Utc>,
) -> anyhow::Result<u64> {
    let tiers = Arc::new(TierFiles::open(
        dir.join("history"),
        HistoryOptions::default(),
    )?);
    let end = now.timestamp();
    let start = end - days as i64 * 86_400;
    let mut samples = 0u64;
    for i in 0..nodes {
        let node = node_id(i);
        if i < YEAR_NODES {
            // The year before, as hourly buckets.
            let mut old = Vec::new();
            let mut t = start - 335 * 86_400;
            t -= t % 3_600;
            while t < start - start % 3_600 {
                old.push(Closed {
                    node,
                    tier: Tier::Hour,
                    bucket: Bucket {
                        start: t,
                        metrics: sample(i, t)
                            .into_iter()
                            .map(|(n, v)| {
                                (
                                    n.to_string(),
                                    Agg {
                                        min: v * 0.9,
                                        max: v * 1.1,
                                        sum: v * 12.0,
                                        n: 12,
                                    },
                                )
                            })
                            .collect(),
                    },
                });
                t += 3_600;
            }
            tiers.store(old);
        }
        let mut rollup = Rollup::default();
        let mut closed = Vec::new();
        let mut t = start;
        while t < end {
            let at = Utc.timestamp_opt(t, 0).single().context("time")?;
            closed.extend(rollup.add(node, at, &sample(i, t)));
            samples += 1;
            t += 300;
        }
        tiers.store(closed);
        if i % 100 == 99 {
            tiers.flush().await?;
        }
    }
    tiers.flush().await?;
    Ok(samples)
}

/// Starts `serve` over `logs`; the child and its base URL once it listens.
fn serve(cc: &Path, logs: &Path) -> anyhow::Result<(Child, String)> {
    let mut child = Command::new(cc)
        .args(["serve", "--listen", "127.0.0.1:0", "--log-dir"])
        .arg(logs)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let base = line
        .trim()
        .rsplit(' ')
        .next()
        .filter(|u| u.starts_with("http://"))
        .with_context(|| format!("unexpected output {line:?}"))?
        .to_string();
    Ok((child, base))
}
