//! Reading logs back: a chunked line reader that reports bad lines by file and line number,
//! and the heartbeat replay that rebuilds [`FleetState`] in bounded memory.
//!
//! Heartbeat replay runs in two passes so it never parses more than it keeps. Pass one reads
//! only each line's header ([`super::record::head`]) and remembers, per node, where its last
//! `history_len` lines are and how many it has. Pass two parses just those lines. Memory is
//! bounded by nodes × history, never by log size.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;
use vaultmesh_proto::api::HistoryPoint;
use vaultmesh_proto::{CheckStatus, Metrics, NodeHeartbeat};

use super::fleet::{self, FleetState, PointParts};
use super::logdir::{self, LogName};
use super::record::{self, Line, kind};

const CHUNK: usize = 8 << 20;

/// A line that was skipped, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    pub file: PathBuf,
    /// 1-based.
    pub line: u64,
    pub reason: String,
}

/// What replay read and skipped.
#[derive(Debug, Clone, Default)]
pub struct ReplayReport {
    pub files: usize,
    pub lines: u64,
    pub bytes: u64,
    pub nodes: usize,
    pub skipped: Vec<BadLine>,
    pub elapsed: Duration,
    /// Time spent reading headers (pass one) — the rest is parsing kept lines.
    pub scan_elapsed: Duration,
}

/// Calls `f(line_number, offset, line)` for every complete line of `path` (without its `\n`).
/// A final line without `\n` is passed too; callers that write the file cut it first.
pub fn for_each_line(path: &Path, mut f: impl FnMut(u64, u64, &[u8])) -> std::io::Result<u64> {
    let mut file = File::open(path)?;
    let mut buf = vec![0u8; CHUNK];
    let mut filled = 0usize;
    let mut base: u64 = 0; // file offset of buf[0]
    let mut line_no = 0u64;
    loop {
        let n = file.read(&mut buf[filled..])?;
        let eof = n == 0;
        filled += n;
        let mut start = 0usize;
        for nl in memchr::memchr_iter(b'\n', &buf[start..filled]) {
            line_no += 1;
            f(line_no, base + start as u64, &buf[start..nl]);
            start = nl + 1;
        }
        if eof {
            if start < filled {
                line_no += 1;
                f(line_no, base + start as u64, &buf[start..filled]);
            }
            return Ok(base + filled as u64);
        }
        // Keep the partial line; grow the buffer if one line fills it.
        buf.copy_within(start..filled, 0);
        base += start as u64;
        filled -= start;
        if filled == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
    }
}

/// Where one kept line is.
#[derive(Debug, Clone, Copy)]
struct Spot {
    file: u32,
    line: u64,
    offset: u64,
    len: u32,
}

/// A node rebuilt by pass two.
struct Restored {
    latest: NodeHeartbeat,
    last_seen: DateTime<Utc>,
    history: VecDeque<HistoryPoint>,
    total: u64,
}

/// Just what a history point needs from a heartbeat line; serde skips the rest unallocated.
#[derive(Deserialize)]
struct LeanLine {
    ts: DateTime<Utc>,
    record: LeanHeartbeat,
}

#[derive(Deserialize)]
struct LeanHeartbeat {
    timestamp: DateTime<Utc>,
    cloudflare_ok: bool,
    services_ok: bool,
    #[serde(default)]
    metrics: Option<Metrics>,
    #[serde(default)]
    checks: Vec<LeanCheck>,
}

#[derive(Deserialize)]
struct LeanCheck {
    status: CheckStatus,
}

fn rebuild(
    chunk: &[(Uuid, NodeScan)],
    handles: &[File],
    files: &[PathBuf],
) -> std::io::Result<(Vec<Restored>, Vec<BadLine>)> {
    let mut out = Vec::with_capacity(chunk.len());
    let mut bad = Vec::new();
    let mut buf = Vec::new();
    for (_, scan) in chunk {
        let mut history = VecDeque::with_capacity(scan.recent.len());
        let mut latest: Option<(NodeHeartbeat, DateTime<Utc>)> = None;
        let last = scan.recent.len().saturating_sub(1);
        for (i, spot) in scan.recent.iter().enumerate() {
            buf.resize(spot.len as usize, 0);
            handles[spot.file as usize].read_exact_at(&mut buf, spot.offset)?;
            let skip = |reason: String| BadLine {
                file: files[spot.file as usize].clone(),
                line: spot.line,
                reason,
            };
            if i == last {
                match serde_json::from_slice::<Line<NodeHeartbeat>>(&buf) {
                    Ok(l) => {
                        history.push_back(fleet::history_point(&l.record, l.ts));
                        latest = Some((l.record, l.ts));
                    }
                    Err(e) => bad.push(skip(format!("unreadable heartbeat: {e}"))),
                }
            } else {
                match serde_json::from_slice::<LeanLine>(&buf) {
                    Ok(l) => {
                        let r = l.record;
                        let parts = PointParts {
                            timestamp: r.timestamp,
                            cloudflare_ok: r.cloudflare_ok,
                            services_ok: r.services_ok,
                            metrics: r.metrics.as_ref(),
                            worst_check: r
                                .checks
                                .iter()
                                .map(|c| c.status)
                                .reduce(CheckStatus::worst),
                        };
                        history.push_back(parts.point(l.ts));
                    }
                    Err(e) => bad.push(skip(format!("unreadable heartbeat: {e}"))),
                }
            }
        }
        // If the newest line was unreadable, the newest readable one is the latest.
        if latest.is_none() {
            for spot in scan.recent.iter().rev() {
                buf.resize(spot.len as usize, 0);
                handles[spot.file as usize].read_exact_at(&mut buf, spot.offset)?;
                if let Ok(l) = serde_json::from_slice::<Line<NodeHeartbeat>>(&buf) {
                    latest = Some((l.record, l.ts));
                    break;
                }
            }
        }
        if let Some((hb, at)) = latest {
            out.push(Restored {
                latest: hb,
                last_seen: at,
                history,
                total: scan.total,
            });
        }
    }
    Ok((out, bad))
}

#[derive(Debug, Default)]
struct NodeScan {
    total: u64,
    /// `ts` of the node's last line, parsed only if the node limit forces a choice.
    last_ts_text: String,
    recent: VecDeque<Spot>,
}

/// Rebuilds the fleet from every heartbeat segment in `dir`.
pub fn replay_heartbeats(dir: &Path, fleet: &FleetState) -> std::io::Result<ReplayReport> {
    let started = Instant::now();
    let history = fleet.limits().history_len.max(1);
    let files = logdir::files(dir, LogName::Heartbeats)?;
    let mut report = ReplayReport {
        files: files.len(),
        ..ReplayReport::default()
    };
    let mut nodes: HashMap<Uuid, NodeScan> = HashMap::new();

    // Pass one: headers only.
    for (fi, path) in files.iter().enumerate() {
        let bytes = for_each_line(path, |line_no, offset, line| {
            report.lines += 1;
            if line.is_empty() {
                return;
            }
            let Some(head) = record::head(line) else {
                report.skipped.push(BadLine {
                    file: path.clone(),
                    line: line_no,
                    reason: "not a log record".into(),
                });
                return;
            };
            let (Some(node_id), true) = (head.node_id, head.kind == kind::HEARTBEAT) else {
                report.skipped.push(BadLine {
                    file: path.clone(),
                    line: line_no,
                    reason: format!(
                        "a {:?} record without a node id in the heartbeat log",
                        head.kind
                    ),
                });
                return;
            };
            let scan = nodes.entry(node_id).or_default();
            scan.total += 1;
            if scan.recent.len() == history {
                scan.recent.pop_front();
            }
            scan.recent.push_back(Spot {
                file: fi as u32,
                line: line_no,
                offset,
                len: line.len() as u32,
            });
            scan.last_ts_text.clear();
            scan.last_ts_text.push_str(&head.ts);
        })?;
        report.bytes += bytes;
    }

    report.scan_elapsed = started.elapsed();

    // Over the node limit (it was lowered): keep the most recently seen nodes.
    let max = fleet.limits().max_nodes;
    let mut order: Vec<(Uuid, NodeScan)> = nodes.into_iter().collect();
    if order.len() > max {
        let time = |s: &NodeScan| {
            DateTime::parse_from_rfc3339(&s.last_ts_text)
                .ok()
                .map(|t| t.with_timezone(&Utc))
        };
        order.sort_by_key(|n| std::cmp::Reverse(time(&n.1)));
        tracing::warn!(
            nodes = order.len(),
            max,
            "More nodes in the log than --max-nodes; keeping the most recently seen."
        );
        order.truncate(max);
    }

    // Pass two: parse the kept lines, the nodes split across the CPUs. Only each node's last
    // line is parsed whole; the others only as far as a history point needs.
    let handles: Vec<File> = files.iter().map(File::open).collect::<Result<_, _>>()?;
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8);
    let per = order.len().div_ceil(workers).max(1);
    let results: Vec<std::io::Result<(Vec<Restored>, Vec<BadLine>)>> =
        std::thread::scope(|scope| {
            let tasks: Vec<_> = order
                .chunks(per)
                .map(|chunk| scope.spawn(|| rebuild(chunk, &handles, &files)))
                .collect();
            tasks
                .into_iter()
                .map(|t| {
                    t.join()
                        .unwrap_or_else(|_| Err(std::io::Error::other("replay worker panicked")))
                })
                .collect()
        });
    for r in results {
        let (restored, bad) = r?;
        report.skipped.extend(bad);
        for n in restored {
            report.nodes += 1;
            fleet.restore_node(n.latest, n.last_seen, n.history, n.total);
        }
    }
    report.elapsed = started.elapsed();
    for bad in &report.skipped {
        tracing::warn!(file = %bad.file.display(), line = bad.line, reason = %bad.reason, "Skipped a bad log line.");
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_numbers_and_offsets_across_chunk_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let mut text = String::new();
        for i in 0..5000 {
            text.push_str(&format!("{i}:{}\n", "y".repeat(i % 7000)));
        }
        text.push_str("tail-without-newline");
        std::fs::write(&p, &text).unwrap();
        let mut seen = Vec::new();
        for_each_line(&p, |n, off, line| {
            assert_eq!(
                &text.as_bytes()[off as usize..off as usize + line.len()],
                line
            );
            seen.push((
                n,
                String::from_utf8_lossy(line)
                    .split(':')
                    .next()
                    .unwrap()
                    .to_string(),
            ));
        })
        .unwrap();
        assert_eq!(seen.len(), 5001);
        assert_eq!(seen[4999], (5000, "4999".to_string()));
        assert_eq!(seen[5000].1, "tail-without-newline");
    }
}
