//! A fleet's past, written as the Command Center would have logged it: `days` of heartbeats from
//! `nodes` simulated nodes every `interval`, in daily heartbeat segments named as rotation names
//! them (the last day in the active file), so a Command Center started over the directory rolls
//! the whole history up into its tiers (`vaultmesh-fleet-sim --backfill-days`).
//!
//! The nodes' days are realistic enough to read on a chart: load and memory follow a daily
//! wave, one filesystem fills a little every day (its forecast says when it is full), and node 1
//! has a bad afternoon every week (its load spikes and a check goes crit).

use std::io::{BufWriter, Write};
use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use vaultmesh_store::logdir::{self, LogName};
use vaultmesh_store::record;

use crate::{node_id, realistic_heartbeat};

/// What [`backfill`] wrote.
#[derive(Debug, Clone, Copy)]
pub struct Backfilled {
    pub lines: u64,
    pub bytes: u64,
    pub segments: usize,
}

/// Node `i`'s heartbeat at `at`, `seq` its number.
pub fn heartbeat_at(
    i: usize,
    seq: u64,
    at: DateTime<Utc>,
    start: DateTime<Utc>,
) -> serde_json::Value {
    let mut hb = realistic_heartbeat(i, seq);
    let secs = at.timestamp();
    let day = (secs % 86_400) as f64 / 86_400.0;
    let wave = (day * std::f64::consts::TAU - 1.5).sin();
    let days_in = (at - start).num_seconds() as f64 / 86_400.0;
    let mut load = (0.6 + 0.5 * wave + (i % 5) as f64 * 0.15).max(0.01);
    // Node 1: a bad afternoon every seventh day.
    let bad = i == 1 && (days_in as i64) % 7 == 3 && (0.55..0.7).contains(&day);
    if bad {
        load = 9.5;
    }
    let round = |v: f64| (v * 100.0).round() / 100.0;
    hb["timestamp"] = serde_json::json!(at);
    hb["metrics"]["load"] = serde_json::json!([round(load), round(load * 0.9), round(load * 0.8)]);
    let mem_total = 8_589_934_592u64;
    hb["metrics"]["mem_used_bytes"] =
        serde_json::json!((mem_total as f64 * (0.35 + 0.1 * wave)) as u64);
    // The data volume fills 0.6 % a day from 40 %, plus node-to-node spread.
    let total = 536_870_912_000u64;
    let pct = 0.40 + (i % 4) as f64 * 0.05 + 0.006 * days_in;
    hb["metrics"]["disks"][1]["used_bytes"] =
        serde_json::json!((total as f64 * pct.min(0.99)) as u64);
    for c in hb["checks"].as_array_mut().into_iter().flatten() {
        c["observed_at"] = serde_json::json!(at);
        if bad && c["name"] == "load" {
            c["status"] = "crit".into();
            c["summary"] = "load 9.50 on 4 CPUs".into();
        }
    }
    hb
}

/// Writes the log: one segment per UTC day before `now`'s, then the active file.
pub fn backfill(
    dir: &Path,
    nodes: usize,
    days: u32,
    interval: std::time::Duration,
    now: DateTime<Utc>,
) -> anyhow::Result<Backfilled> {
    std::fs::create_dir_all(dir)?;
    let step = Duration::from_std(interval)?;
    anyhow::ensure!(step > Duration::zero(), "the interval must be positive");
    let start = now - Duration::days(i64::from(days));
    let mut out = Backfilled {
        lines: 0,
        bytes: 0,
        segments: 0,
    };
    let mut at = start;
    let mut seq = 0u64;
    while at < now {
        // This UTC day's lines, rotated at its end (the last day stays active).
        let day_end = (at.date_naive() + chrono::Days::new(1))
            .and_hms_opt(0, 0, 0)
            .map(|d| d.and_utc())
            .unwrap_or(now);
        let path = if day_end >= now {
            LogName::Heartbeats.active(dir)
        } else {
            out.segments += 1;
            logdir::rotated_path(dir, LogName::Heartbeats, day_end)
        };
        let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(&path)?);
        while at < day_end.min(now) {
            for i in 0..nodes {
                let line = record::encode(
                    "heartbeat",
                    at,
                    Some(node_id(i)),
                    &heartbeat_at(i, seq, at, start),
                )?;
                out.bytes += line.len() as u64;
                out.lines += 1;
                w.write_all(&line)?;
            }
            seq += 1;
            at += step;
        }
        w.flush()?;
    }
    Ok(out)
}
