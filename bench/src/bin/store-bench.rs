//! Store benchmarks, printed as a table (figures go to docs/PERFORMANCE.md):
//!
//! 1. Start-up of the real `vaultmesh-command-center serve` over a log of N realistic heartbeat
//!    lines (default 1,000,000) from K nodes (default 1,000): time to "listening" and peak RSS,
//!    for the first start (no state snapshot: the whole log is replayed) and for a restart
//!    after a clean stop (SIGTERM writes `state.snapshot`; the restart loads it and reads the
//!    lines after it, here none).
//! 2. `logs view --node X --kind scan` over an N-line scan log, side by side with
//!    `jq -c 'select(.node_id=="X" and .kind=="scan")'` on the same file.
//! 3. Append throughput of one journal with group commit, 64 concurrent appenders.
//!
//! Between 1 and 2, disk: one 256 MiB heartbeat segment of lines whose values move as a real
//! agent's do ([`live_heartbeat_line`]), 1 line per node every 30 s, compressed as the store
//! does after rotation: bytes per line and per node-day, plain and compressed, and the time the
//! compression takes; then the first start (full replay) over the replay log as a closed segment,
//! plain and compressed.
//!
//! Usage: `cargo run --release -p vaultmesh-bench --bin store-bench -- [LINES] [WORK_DIR] [NODES]`
//!
//! The nodes stay the same whatever the line count (at most 10,000, the store's limit), so
//! 1 M and 10 M lines compare the same fleet with a longer retained log. `REPLAY_ONLY=1` stops
//! after part 1's start-ups (no disk figures, no parts 2 and 3): what a 10 M-line run needs.

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use vaultmesh_bench::{
    arg_or, live_heartbeat_line, median_of, memory_kib, node_id, realistic_heartbeat,
    release_binary, timed,
};
use vaultmesh_store::journal::{Journal, Rotation};
use vaultmesh_store::logdir::LogName;
use vaultmesh_store::record;

/// The snapshot file in the log directory (`docs/LOGS.md`).
const SNAPSHOT: &str = "state.snapshot";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let lines: usize = args
        .get(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let work = args
        .get(2)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("vaultmesh-store-bench"));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let nodes = arg_or(3, "NODES", 1000)?.clamp(1, 10_000);
    let cc = release_binary("vaultmesh-command-center", "vaultmesh-command-center")?;
    println!(
        "store-bench: {lines} lines, {nodes} nodes, work dir {}",
        work.display()
    );
    println!(
        "machine: {} CPUs",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );

    // 1. Replay.
    let logs = work.join("replay");
    std::fs::create_dir_all(&logs)?;
    let (bytes, generated_in) =
        timed(|| write_heartbeats(&logs.join("heartbeats.jsonl"), lines, nodes));
    let bytes = bytes?;
    println!(
        "generated heartbeat log: {:.0} MiB ({:.0} bytes/line) in {:.1}s",
        bytes as f64 / 1048576.0,
        bytes as f64 / lines as f64,
        generated_in.as_secs_f64()
    );
    // The first start after an upgrade from a release without history tiers: the whole log
    // replayed, and every line rolled up into the tiers once.
    let (upgrade, hwm, _) = start_until_listening(&cc, &logs, &[], false)?;
    println!(
        "first start after the upgrade over {lines} heartbeat lines (full replay, every line rolled up into the history tiers once): start-up to listening {:.2}s, peak RSS {:.0} MiB",
        upgrade.as_secs_f64(),
        hwm as f64 / 1024.0
    );
    // A first start: no snapshot, the whole log replayed (each run starts without one: a
    // start that replayed writes one right away), the tiers already there.
    let (first, peak, rss) = median_start(&cc, &logs, true)?;
    println!(
        "first start over {lines} heartbeat lines from {nodes} nodes (full replay): start-up to listening {:.2}s (median of 3), peak RSS {:.0} MiB, RSS when listening {:.0} MiB",
        first.as_secs_f64(),
        peak as f64 / 1024.0,
        rss as f64 / 1024.0
    );
    // A clean stop writes the snapshot; restarts load it.
    let _ = std::fs::remove_file(logs.join(SNAPSHOT));
    start_until_listening(&cc, &logs, &[], true)?;
    let snapshot_bytes = std::fs::metadata(logs.join(SNAPSHOT))
        .context("no state.snapshot after a clean stop")?
        .len();
    let (restart, peak, rss) = median_start(&cc, &logs, false)?;
    println!(
        "restart over the same log with a state snapshot ({:.1} MiB): start-up to listening {:.2}s (median of 3; goal: at most 1 s with 1,000 nodes, and with 10 M lines at most 1.2x the figure at 1 M; before issue 23 every start replayed the whole log: 1.08 s at 1 M lines, 15.1 s at 10 M), peak RSS {:.0} MiB, RSS when listening {:.0} MiB",
        snapshot_bytes as f64 / 1048576.0,
        restart.as_secs_f64(),
        peak as f64 / 1024.0,
        rss as f64 / 1024.0
    );
    if std::env::var_os("REPLAY_ONLY").is_some() {
        let _ = std::fs::remove_dir_all(&work);
        return Ok(());
    }
    disk_per_node_day(&work.join("disk"), nodes)?;
    replay_compressed(&cc, &logs)?;

    // 2. logs view vs jq.
    let scans = work.join("scans");
    std::fs::create_dir_all(&scans)?;
    let scan_file = scans.join("sovereign-scans.jsonl");
    write_scans(&scan_file, lines, nodes)?;
    let target = node_id(nodes / 2).to_string();
    let ours = median_of(3, || {
        let (out, t) = timed(|| {
            Command::new(&cc)
                .args([
                    "logs",
                    "view",
                    "--node",
                    &target,
                    "--kind",
                    "scan",
                    "--limit",
                    "0",
                    "--json",
                    "--log-dir",
                ])
                .arg(&scans)
                .output()
        });
        let out = out?;
        anyhow::ensure!(
            out.status.success(),
            "logs view failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        anyhow::ensure!(
            out.stdout.iter().filter(|b| **b == b'\n').count() == lines / nodes,
            "logs view found the wrong count"
        );
        Ok(t)
    })?;
    let jq_filter = format!("select(.node_id==\"{target}\" and .kind==\"scan\")");
    let jq = median_of(1, || {
        let (out, t) = timed(|| {
            Command::new("jq")
                .args(["-c", &jq_filter])
                .arg(&scan_file)
                .stdout(Stdio::piped())
                .output()
        });
        let out = out.context("jq not found; install it: apt-get install -y jq")?;
        anyhow::ensure!(out.status.success(), "jq failed");
        anyhow::ensure!(
            out.stdout.iter().filter(|b| **b == b'\n').count() == lines / nodes,
            "jq found the wrong count"
        );
        Ok(t)
    })?;
    println!(
        "logs view --node X --kind scan over {lines} lines: {:.2}s; jq: {:.2}s; speed-up {:.1}x",
        ours.as_secs_f64(),
        jq.as_secs_f64(),
        jq.as_secs_f64() / ours.as_secs_f64()
    );

    // 3. Append throughput.
    let (per_sec, mib_s) = append_throughput(&work.join("append"), (lines * 10).min(200_000))?;
    println!(
        "append with group commit (64 concurrent appenders, fdatasync per batch): {per_sec:.0} lines/s, {mib_s:.1} MiB/s"
    );
    if std::env::var_os("KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&work);
    }
    Ok(())
}

fn write_heartbeats(path: &Path, lines: usize, nodes: usize) -> anyhow::Result<u64> {
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut bytes = 0u64;
    // Within the 30-day retention whatever the line count.
    let step_ms = (20 * 86_400_000 / lines.max(1) as i64).clamp(1, 1000);
    let start = Utc::now() - chrono::Duration::milliseconds(lines as i64 * step_ms);
    for n in 0..lines {
        let node = n % nodes;
        let hb = realistic_heartbeat(node, (n / nodes) as u64);
        let line = record::encode(
            "heartbeat",
            start + chrono::Duration::milliseconds(n as i64 * step_ms),
            Some(node_id(node)),
            &hb,
        )?;
        bytes += line.len() as u64;
        out.write_all(&line)?;
    }
    out.flush()?;
    Ok(bytes)
}

fn write_scans(path: &Path, lines: usize, nodes: usize) -> anyhow::Result<()> {
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let start = Utc::now() - chrono::Duration::seconds(lines as i64);
    for n in 0..lines {
        let node = n % nodes;
        let scan = serde_json::json!({"scan_id": format!("scan-{n}"), "node_id": node_id(node), "profile": "ArchVault",
            "started_at": "2026-11-29T10:00:00Z", "finished_at": "2026-11-29T10:00:02Z",
            "findings": [{"rule": "listening_sockets", "severity": "medium", "title": "unexpected listener on 0.0.0.0:8080", "detail": "not in the allowed list", "evidence": "tcp LISTEN 0.0.0.0:8080 pid 4242"},
                         {"rule": "sshd", "severity": "low", "title": "PasswordAuthentication yes", "detail": "", "evidence": "/etc/ssh/sshd_config:58"}],
            "counts": {"medium": 1, "low": 1}});
        out.write_all(&record::encode(
            "scan",
            start + chrono::Duration::seconds(n as i64),
            Some(node_id(node)),
            &scan,
        )?)?;
    }
    out.flush()?;
    Ok(())
}

/// Raw heartbeats a node sends a day at the default 30 s interval.
const LINES_PER_NODE_DAY: f64 = 2880.0;
/// The goal for heartbeat storage, all tiers (issue 23), and the raw log's share of it.
const GOAL_MB: f64 = 1.0;
const RAW_BUDGET_MB: f64 = 0.6;
/// Bytes per node-day before compression (issue 23: 2.7 KB a line).
const BEFORE_MB: f64 = 7.8;

/// Writes a 256 MiB segment of live heartbeat lines from `nodes` nodes, compresses it as the
/// store does, and prints bytes per line and per node-day.
fn disk_per_node_day(dir: &Path, nodes: usize) -> anyhow::Result<()> {
    use std::sync::atomic::AtomicBool;
    use vaultmesh_store::compress::{self, DEFAULT_LEVEL, Outcome};
    std::fs::create_dir_all(dir)?;
    const SEGMENT: u64 = 256 << 20;
    let start = Utc::now() - chrono::Duration::days(1);
    let path = vaultmesh_store::logdir::rotated_path(dir, LogName::Heartbeats, start);
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(&path)?);
    let (mut bytes, mut lines) = (0u64, 0u64);
    'write: for round in 0.. {
        for n in 0..nodes {
            let at = start
                + chrono::Duration::seconds(round * 30)
                + chrono::Duration::milliseconds((n * 30_000 / nodes) as i64);
            let line = live_heartbeat_line(n, round as u64, at);
            if bytes + line.len() as u64 > SEGMENT {
                break 'write;
            }
            bytes += line.len() as u64;
            lines += 1;
            out.write_all(&line)?;
        }
    }
    out.into_inner()?.sync_all()?;
    // Levels side by side on copies of the same segment: the CPU a level costs per heartbeat
    // is what the Command Center spends on every line it logs, once the segment rotates.
    for level in [1, 3, 9] {
        let copy = dir.join(format!("level-{level}.jsonl"));
        std::fs::copy(&path, &copy)?;
        let (outcome, took) =
            timed(|| compress::compress_segment(&copy, level, &AtomicBool::new(false)));
        if let Outcome::Compressed { plain, compressed } = outcome? {
            println!(
                "  zstd level {level}: {:.0} bytes/line ({:.1}x), {:.1} s for the segment = {:.1} us per heartbeat",
                compressed as f64 / lines as f64,
                plain as f64 / compressed as f64,
                took.as_secs_f64(),
                took.as_secs_f64() * 1e6 / lines as f64
            );
        }
        let _ = std::fs::remove_file(vaultmesh_store::logdir::compressed_path(&copy));
    }
    let (outcome, took) =
        timed(|| compress::compress_segment(&path, DEFAULT_LEVEL, &AtomicBool::new(false)));
    let Outcome::Compressed { plain, compressed } = outcome? else {
        anyhow::bail!("the segment was not compressed");
    };
    let per_line = |b: u64| b as f64 / lines as f64;
    let per_day = |b: u64| per_line(b) * LINES_PER_NODE_DAY / 1e6;
    println!(
        "raw heartbeats ({nodes} nodes, one every 30 s, live values): {lines} lines in a 256 MiB segment, {:.0} bytes/line plain, {:.0} bytes/line at zstd level {DEFAULT_LEVEL} ({:.1}x); compressed in {:.1}s",
        per_line(plain),
        per_line(compressed),
        plain as f64 / compressed as f64,
        took.as_secs_f64()
    );
    println!(
        "bytes per node-day of raw heartbeats: {:.2} MB plain, {:.2} MB compressed (goal: <= {GOAL_MB} MB all tiers, raw share <= {RAW_BUDGET_MB} MB; before: {BEFORE_MB} MB)",
        per_day(plain),
        per_day(compressed)
    );
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

/// The first start (no snapshot: a full replay) over the replay log as one closed segment,
/// plain then compressed.
fn replay_compressed(cc: &Path, logs: &Path) -> anyhow::Result<()> {
    use std::sync::atomic::AtomicBool;
    use vaultmesh_store::compress::{self, DEFAULT_LEVEL};
    let segment = vaultmesh_store::logdir::rotated_path(logs, LogName::Heartbeats, Utc::now());
    std::fs::rename(LogName::Heartbeats.active(logs), &segment)?;
    // Segments stay as they are while measured.
    let plain_flags = ["--heartbeat-zstd-level", "0"];
    let first_start = || {
        let _ = std::fs::remove_file(logs.join(SNAPSHOT));
        Ok(start_until_listening(cc, logs, &plain_flags, false)?.0)
    };
    let plain = median_of(3, first_start)?;
    let size = std::fs::metadata(&segment)?.len();
    let (outcome, took) =
        timed(|| compress::compress_segment(&segment, DEFAULT_LEVEL, &AtomicBool::new(false)));
    outcome?;
    let zst = std::fs::metadata(vaultmesh_store::logdir::compressed_path(&segment))?.len();
    let compressed = median_of(3, first_start)?;
    println!(
        "the replay log as one segment ({:.0} MiB): compressed at level {DEFAULT_LEVEL} to {:.0} MiB in {:.1}s ({:.1}s per 256 MiB); first start (full replay) over it plain {:.2}s, compressed {:.2}s (median of 3)",
        size as f64 / 1048576.0,
        zst as f64 / 1048576.0,
        took.as_secs_f64(),
        took.as_secs_f64() * (256 << 20) as f64 / size as f64,
        plain.as_secs_f64(),
        compressed.as_secs_f64()
    );
    Ok(())
}

/// The median of 3 starts over `logs` (each without a snapshot if `without_snapshot`), and the
/// highest peak RSS and RSS when listening among them (KiB).
fn median_start(
    cc: &Path,
    logs: &Path,
    without_snapshot: bool,
) -> anyhow::Result<(Duration, u64, u64)> {
    let (mut peak, mut rss) = (0, 0);
    let median = median_of(3, || {
        if without_snapshot {
            let _ = std::fs::remove_file(logs.join(SNAPSHOT));
        }
        let (t, hwm, now) = start_until_listening(cc, logs, &[], false)?;
        peak = peak.max(hwm);
        rss = rss.max(now);
        Ok(t)
    })?;
    Ok((median, peak, rss))
}

/// Starts `serve` on the log dir with `extra` flags; returns the time until it printed its listening line, and its
/// peak and current RSS then (KiB). Then stops it: cleanly with SIGTERM if `clean` (it writes
/// its state snapshot), else with SIGKILL.
fn start_until_listening(
    cc: &Path,
    logs: &Path,
    extra: &[&str],
    clean: bool,
) -> anyhow::Result<(Duration, u64, u64)> {
    let start = Instant::now();
    let mut child = Command::new(cc)
        .args(["serve", "--listen", "127.0.0.1:0", "--log-dir"])
        .arg(logs)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let elapsed = start.elapsed();
    anyhow::ensure!(line.contains("listening on"), "unexpected output {line:?}");
    let (hwm, rss) = memory_kib(child.id());
    if clean {
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -TERM failed");
        let exit = child.wait()?;
        anyhow::ensure!(exit.success(), "serve exited with {exit} after SIGTERM");
    } else {
        let _ = child.kill();
        let _ = child.wait();
    }
    Ok((elapsed, hwm, rss))
}

fn append_throughput(dir: &Path, total: usize) -> anyhow::Result<(f64, f64)> {
    std::fs::create_dir_all(dir)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let (journal, _) = Journal::open(
            dir,
            LogName::Events,
            Rotation::default(),
            Default::default(),
        )?;
        let journal = Arc::new(journal);
        let line = Arc::new(record::encode(
            "note",
            Utc::now(),
            Some(node_id(1)),
            &realistic_heartbeat(1, 1),
        )?);
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let (j, line) = (journal.clone(), line.clone());
            tasks.push(tokio::spawn(async move {
                for _ in 0..total / 64 {
                    j.append(line.to_vec(), None).await?;
                }
                anyhow::Ok(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        let secs = start.elapsed().as_secs_f64();
        let n = (total / 64 * 64) as f64;
        Ok((n / secs, n * line.len() as f64 / secs / 1048576.0))
    })
}
