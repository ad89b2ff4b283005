//! Reading logs back: a chunked line reader that reports bad lines by file and line number,
//! and the heartbeat replay that rebuilds [`FleetState`] in bounded memory.
//!
//! Heartbeat replay runs in two passes so it never parses more than it keeps. Pass one reads
//! only each line's header ([`super::record::head`]) and remembers, per node, where its last
//! `history_len` lines are and how many it has. Pass two parses just those lines. Memory is
//! bounded by nodes × history, never by log size.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{Read, Seek};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;
use vaultmesh_proto::api::HistoryPoint;
use vaultmesh_proto::{CheckStatus, Metrics, NodeHeartbeat};

use super::fleet::{self, FleetState, NodeState, PointParts};
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
    /// Whether the heartbeat state came from a snapshot (`state.snapshot`) and its tail.
    pub snapshot: SnapshotUse,
}

/// How the heartbeat state was rebuilt at start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SnapshotUse {
    /// No snapshot (none written yet, or the PostgreSQL store): the whole heartbeat log was
    /// replayed.
    #[default]
    Missing,
    /// The snapshot was loaded, then only the `tail_lines` heartbeat lines after its position
    /// were read.
    Used { nodes: usize, tail_lines: u64 },
    /// A snapshot was there but could not be used (why): the whole heartbeat log was replayed.
    Refused(String),
}

/// Calls `f(line_number, offset, line)` for every complete line of `path` (without its `\n`).
/// A final line without `\n` is passed too; callers that write the file cut it first.
pub fn for_each_line(path: &Path, f: impl FnMut(u64, u64, &[u8])) -> std::io::Result<u64> {
    for_each_line_from(path, 0, f)
}

/// [`for_each_line`] from byte `start` of `path`, which must be 0 or just after a `\n`
/// (`InvalidData` otherwise, and `UnexpectedEof` if the file is shorter). Line numbers count
/// from `start`; offsets are the file's. Returns the offset of the end of the file.
pub fn for_each_line_from(
    path: &Path,
    start: u64,
    mut f: impl FnMut(u64, u64, &[u8]),
) -> std::io::Result<u64> {
    let mut file = File::open(path)?;
    if start > 0 {
        let mut before = [0u8; 1];
        file.read_exact_at(&mut before, start - 1)?;
        if before[0] != b'\n' {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: byte {start} does not start a line", path.display()),
            ));
        }
        file.seek(std::io::SeekFrom::Start(start))?;
    }
    let mut buf = vec![0u8; CHUNK];
    let mut filled = 0usize;
    let mut base: u64 = start; // file offset of buf[0]
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

/// The first line of `path` (without its `\n`; a file without one: all of it), `None` for an
/// empty file. Reads only as far as the first newline.
pub fn first_line(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::BufRead;
    let mut line = Vec::new();
    std::io::BufReader::with_capacity(16 << 10, File::open(path)?).read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Ok(None);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
    }
    Ok(Some(line))
}

/// Where one kept line is.
#[derive(Debug, Clone, Copy)]
struct Spot {
    file: u32,
    line: u64,
    offset: u64,
    len: u32,
}

/// A node rebuilt by pass two from the lines read (`latest`: `None` if none was readable).
struct Restored {
    id: Uuid,
    latest: Option<(NodeHeartbeat, DateTime<Utc>)>,
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
    files: &[(PathBuf, u64)],
) -> std::io::Result<(Vec<Restored>, Vec<BadLine>)> {
    let mut out = Vec::with_capacity(chunk.len());
    let mut bad = Vec::new();
    let mut buf = Vec::new();
    for (id, scan) in chunk {
        let mut history = VecDeque::with_capacity(scan.recent.len());
        let mut latest: Option<(NodeHeartbeat, DateTime<Utc>)> = None;
        let last = scan.recent.len().saturating_sub(1);
        for (i, spot) in scan.recent.iter().enumerate() {
            buf.resize(spot.len as usize, 0);
            handles[spot.file as usize].read_exact_at(&mut buf, spot.offset)?;
            let skip = |reason: String| bad_line(&files[spot.file as usize], spot.line, reason);
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
        out.push(Restored {
            id: *id,
            latest,
            history,
            total: scan.total,
        });
    }
    Ok((out, bad))
}

/// A bad line of `file` (read from byte `start`): line numbers of a file read from its
/// middle count from there, which the reason says.
fn bad_line((file, start): &(PathBuf, u64), line: u64, reason: String) -> BadLine {
    let reason = if *start > 0 {
        format!("{reason} (line counted from byte {start}, where the snapshot ends)")
    } else {
        reason
    };
    BadLine {
        file: file.clone(),
        line,
        reason,
    }
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
    let files: Vec<(PathBuf, u64)> = logdir::files(dir, LogName::Heartbeats)?
        .into_iter()
        .map(|f| (f, 0))
        .collect();
    replay_heartbeat_files(&files, fleet, HashMap::new())
}

/// Rebuilds the fleet from `base` (the nodes as a snapshot holds them; empty for a full
/// replay) and the heartbeat lines of `files`, each read from its byte offset on: each node's
/// history continues `base`'s, its count adds up. `fleet` is only changed once every file has
/// been read, so an error (a position that is not a line boundary) leaves it as it was.
pub fn replay_heartbeat_files(
    files: &[(PathBuf, u64)],
    fleet: &FleetState,
    mut base: HashMap<Uuid, NodeState>,
) -> std::io::Result<ReplayReport> {
    let started = Instant::now();
    let history = fleet.limits().history_len.max(1);
    let mut report = ReplayReport {
        files: files.len(),
        ..ReplayReport::default()
    };
    let mut nodes: HashMap<Uuid, NodeScan> = HashMap::new();

    // Pass one: headers only.
    for (fi, file) in files.iter().enumerate() {
        let (path, start) = file;
        let bytes = for_each_line_from(path, *start, |line_no, offset, line| {
            report.lines += 1;
            if line.is_empty() {
                return;
            }
            let Some(head) = record::head(line) else {
                report
                    .skipped
                    .push(bad_line(file, line_no, "not a log record".into()));
                return;
            };
            let (Some(node_id), true) = (head.node_id, head.kind == kind::HEARTBEAT) else {
                report.skipped.push(bad_line(
                    file,
                    line_no,
                    format!(
                        "a {:?} record without a node id in the heartbeat log",
                        head.kind
                    ),
                ));
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
        report.bytes += bytes - start;
    }

    report.scan_elapsed = started.elapsed();

    // Over the node limit (it was lowered): keep the most recently seen nodes.
    let max = fleet.limits().max_nodes;
    let only_base = base.keys().filter(|id| !nodes.contains_key(*id)).count();
    if nodes.len() + only_base > max {
        let time = |s: &NodeScan| {
            DateTime::parse_from_rfc3339(&s.last_ts_text)
                .ok()
                .map(|t| t.with_timezone(&Utc))
        };
        let mut seen: Vec<(Option<DateTime<Utc>>, Uuid)> =
            nodes.iter().map(|(id, s)| (time(s), *id)).collect();
        seen.extend(
            base.iter()
                .filter(|(id, _)| !nodes.contains_key(*id))
                .map(|(id, s)| (Some(s.last_seen), *id)),
        );
        seen.sort_by_key(|n| std::cmp::Reverse(n.0));
        tracing::warn!(
            nodes = seen.len(),
            max,
            "More nodes in the log than --max-nodes; keeping the most recently seen."
        );
        let keep: std::collections::HashSet<Uuid> =
            seen.into_iter().take(max).map(|n| n.1).collect();
        nodes.retain(|id, _| keep.contains(id));
        base.retain(|id, _| keep.contains(id));
    }
    let order: Vec<(Uuid, NodeScan)> = nodes.into_iter().collect();

    // Pass two: parse the kept lines, the nodes split across the CPUs. Only each node's last
    // line is parsed whole; the others only as far as a history point needs.
    let handles: Vec<File> = files
        .iter()
        .map(|(f, _)| File::open(f))
        .collect::<Result<_, _>>()?;
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8);
    let per = order.len().div_ceil(workers).max(1);
    let results: Vec<std::io::Result<(Vec<Restored>, Vec<BadLine>)>> =
        std::thread::scope(|scope| {
            let tasks: Vec<_> = order
                .chunks(per)
                .map(|chunk| scope.spawn(|| rebuild(chunk, &handles, files)))
                .collect();
            tasks
                .into_iter()
                .map(|t| {
                    t.join()
                        .unwrap_or_else(|_| Err(std::io::Error::other("replay worker panicked")))
                })
                .collect()
        });
    let mut rebuilt = Vec::with_capacity(order.len());
    for r in results {
        let (restored, bad) = r?;
        report.skipped.extend(bad);
        rebuilt.extend(restored);
    }
    // Every file was read: now the fleet changes.
    for n in rebuilt {
        let (latest, history, total) = match base.remove(&n.id) {
            Some(before) => {
                let mut history = before.history;
                history.extend(n.history);
                let latest = n.latest.unwrap_or((before.latest, before.last_seen));
                (latest, history, before.heartbeats + n.total)
            }
            None => match n.latest {
                Some(latest) => (latest, n.history, n.total),
                None => continue,
            },
        };
        report.nodes += 1;
        fleet.restore_node(latest.0, latest.1, history, total);
    }
    for (_, s) in base {
        report.nodes += 1;
        fleet.restore_node(s.latest, s.last_seen, s.history, s.heartbeats);
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
