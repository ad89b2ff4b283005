//! Reading logs back: a chunked line reader that reports bad lines by file and line number,
//! and the heartbeat replay that rebuilds [`FleetState`] in bounded memory.
//!
//! Heartbeat replay runs in two passes so it never parses more than it keeps. Pass one reads
//! only each line's header ([`super::record::head`]) and remembers, per node, where its last
//! `history_len` lines are and how many it has. Pass two parses just those lines. Memory is
//! bounded by nodes × history, never by log size.
//!
//! Segments may be plain or zstd-compressed ([`crate::compress`]); a line's place is its offset
//! in the segment's lines either way. Pass two reads kept lines of plain files in place
//! (`read_exact_at`, the nodes split across the CPUs); a compressed segment that holds kept
//! lines is decompressed once more, as a stream, and just those lines are parsed. A compressed
//! segment that cannot be read to its end (corrupt on disk) is reported as a skipped line at the
//! point it breaks, like any bad line: its lines before that point are replayed.

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

/// Calls `f(line_number, offset, line)` for every complete line of `path` (without its `\n`),
/// a plain or compressed log file alike ([`logdir::open_read`]); offsets count the lines' bytes.
/// A final line without `\n` is passed too; callers that write the file cut it first.
pub fn for_each_line(path: &Path, f: impl FnMut(u64, u64, &[u8])) -> std::io::Result<u64> {
    for_each_line_from(path, 0, f)
}

/// [`for_each_line`] from byte `start` of `path`'s lines, which must be 0 or just after a `\n`
/// (`InvalidData` otherwise, and `UnexpectedEof` if the file is shorter). Line numbers count
/// from `start`; offsets are the file's. Returns the offset of the end of the file.
pub fn for_each_line_from(
    path: &Path,
    start: u64,
    f: impl FnMut(u64, u64, &[u8]),
) -> std::io::Result<u64> {
    for_each_line_at(open_lines(path, start)?, start, f)
}

/// Where a compressed segment damaged on disk (corrupt, cut short) stops being readable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    /// The first line not read (1-based, counted like the lines passed).
    pub line: u64,
    pub reason: String,
}

/// [`for_each_line_from`], except that a compressed segment damaged on disk is no error: its
/// lines up to the damage are passed, and where it breaks is returned. A plain file's read
/// errors, a missing file, and failing to reach `start` (past the end, not a line boundary,
/// damage before it) are errors still: a place after `start` is only trusted if it is there.
pub fn for_each_line_tolerant(
    path: &Path,
    start: u64,
    mut f: impl FnMut(u64, u64, &[u8]),
) -> std::io::Result<Result<u64, Broken>> {
    let mut last = 0;
    let read = match open_lines(path, start) {
        Ok(r) => for_each_line_at(r, start, |n, offset, line| {
            last = n;
            f(n, offset, line);
        }),
        Err(e) if start > 0 => return Err(e),
        Err(e) => Err(e),
    };
    match read {
        Ok(end) => Ok(Ok(end)),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound && logdir::stored_compressed(path) => {
            Ok(Err(Broken {
                line: last + 1,
                reason: format!("compressed segment unreadable from here to its end: {e}"),
            }))
        }
        Err(e) => Err(e),
    }
}

/// Opens `path` (plain or compressed) to read its lines from byte `start`, which must be 0 or
/// just after a `\n`.
fn open_lines(path: &Path, start: u64) -> std::io::Result<logdir::LogReader> {
    let mut reader = logdir::open_read(path, start.saturating_sub(1))?;
    if start > 0 {
        let mut before = [0u8; 1];
        reader.read_exact(&mut before)?;
        if before[0] != b'\n' {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{}: byte {start} does not start a line",
                    reader.path().display()
                ),
            ));
        }
    }
    Ok(reader)
}

/// [`for_each_line`] over an open reader. Returns the bytes read.
pub fn for_each_line_in(file: impl Read, f: impl FnMut(u64, u64, &[u8])) -> std::io::Result<u64> {
    for_each_line_at(file, 0, f)
}

/// [`for_each_line_in`] for a reader already at byte `start` of the lines: offsets count from
/// the file's start. Returns the offset of the end of the file.
fn for_each_line_at(
    mut file: impl Read,
    start: u64,
    mut f: impl FnMut(u64, u64, &[u8]),
) -> std::io::Result<u64> {
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

/// The first line of `path`, plain or compressed (without its `\n`; a file without one: all
/// of it), `None` for an empty file. Reads only as far as the first newline.
pub fn first_line(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::BufRead;
    let mut line = Vec::new();
    std::io::BufReader::with_capacity(16 << 10, logdir::open_read(path, 0)?)
        .read_until(b'\n', &mut line)?;
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

/// A kept line, parsed: a history point, or (a node's newest line) the whole heartbeat.
#[derive(Clone)]
enum Parsed {
    Point(HistoryPoint),
    Full(Box<NodeHeartbeat>, DateTime<Utc>),
}

fn parse(line: &[u8], full: bool) -> Result<Parsed, String> {
    let unreadable = |e: serde_json::Error| format!("unreadable heartbeat: {e}");
    if full {
        let l = serde_json::from_slice::<Line<NodeHeartbeat>>(line).map_err(unreadable)?;
        return Ok(Parsed::Full(Box::new(l.record), l.ts));
    }
    let l = serde_json::from_slice::<LeanLine>(line).map_err(unreadable)?;
    let r = l.record;
    let parts = PointParts {
        timestamp: r.timestamp,
        cloudflare_ok: r.cloudflare_ok,
        services_ok: r.services_ok,
        metrics: r.metrics.as_ref(),
        worst_check: r.checks.iter().map(|c| c.status).reduce(CheckStatus::worst),
    };
    Ok(Parsed::Point(parts.point(l.ts)))
}

/// The heartbeat files pass one read, and how pass two gets at their kept lines.
struct Sources {
    /// Each file as opened (a segment listed plain may have been opened compressed).
    files: Vec<PathBuf>,
    /// Where in each file reading began (0, or where the snapshot ends).
    starts: Vec<u64>,
    compressed: Vec<bool>,
    /// Plain files holding kept lines, opened for `read_exact_at`.
    handles: Vec<Option<File>>,
    /// Kept lines of compressed files, parsed while streaming them: (file, offset) → line.
    streamed: HashMap<(u32, u64), Result<Parsed, String>>,
}

impl Sources {
    /// Parses the kept line at `spot` (`full`: the whole heartbeat, else a history point).
    fn get(
        &self,
        spot: &Spot,
        full: bool,
        buf: &mut Vec<u8>,
    ) -> std::io::Result<Result<Parsed, String>> {
        let fi = spot.file as usize;
        if !self.compressed[fi] {
            let handle = self.handles[fi]
                .as_ref()
                .ok_or_else(|| std::io::Error::other("replay: a kept line in an unopened file"))?;
            buf.resize(spot.len as usize, 0);
            handle.read_exact_at(buf, spot.offset)?;
            return Ok(parse(buf, full));
        }
        match self.streamed.get(&(spot.file, spot.offset)) {
            Some(Ok(Parsed::Point(_))) if full => {
                // Only the fallback for an unreadable newest line asks an older one whole:
                // read it again from the compressed file.
                let mut r = logdir::open_read(&self.files[fi], spot.offset)?;
                buf.resize(spot.len as usize, 0);
                r.read_exact(buf)?;
                Ok(parse(buf, true))
            }
            Some(parsed) => Ok(parsed.clone()),
            None => Ok(Err("unreadable compressed segment before this line".into())),
        }
    }
}

/// Streams each compressed file that holds kept lines and parses just those, the files
/// split across `workers` threads.
fn stream_compressed(
    order: &[(Uuid, NodeScan)],
    files: &[PathBuf],
    starts: &[u64],
    compressed: &[bool],
    workers: usize,
) -> HashMap<(u32, u64), Result<Parsed, String>> {
    // (file) → offset → whether the whole heartbeat is wanted.
    let mut wanted: HashMap<u32, HashMap<u64, bool>> = HashMap::new();
    for (_, scan) in order {
        let last = scan.recent.len().saturating_sub(1);
        for (i, spot) in scan.recent.iter().enumerate() {
            if compressed[spot.file as usize] {
                wanted
                    .entry(spot.file)
                    .or_default()
                    .insert(spot.offset, i == last);
            }
        }
    }
    let jobs: Vec<(u32, HashMap<u64, bool>)> = wanted.into_iter().collect();
    let per = jobs.len().div_ceil(workers.max(1)).max(1);
    let mut out = HashMap::new();
    std::thread::scope(|scope| {
        let tasks: Vec<_> = jobs
            .chunks(per)
            .map(|chunk| {
                scope.spawn(move || {
                    let mut got = Vec::new();
                    for (fi, want) in chunk {
                        let path = &files[*fi as usize];
                        let start = starts[*fi as usize];
                        let read = for_each_line_from(path, start, |_, offset, line| {
                            if let Some(full) = want.get(&offset) {
                                got.push(((*fi, offset), parse(line, *full)));
                            }
                        });
                        // Pass one reported where the file breaks; the lines past it are
                        // missing here and reported unreadable when asked for.
                        if let Err(e) = read {
                            tracing::debug!(file = %path.display(), error = %e, "Compressed segment unreadable in pass two.");
                        }
                    }
                    got
                })
            })
            .collect();
        for t in tasks {
            if let Ok(got) = t.join() {
                out.extend(got);
            }
        }
    });
    out
}

fn rebuild(
    chunk: &[(Uuid, NodeScan)],
    sources: &Sources,
) -> std::io::Result<(Vec<Restored>, Vec<BadLine>)> {
    let mut out = Vec::with_capacity(chunk.len());
    let mut bad = Vec::new();
    let mut buf = Vec::new();
    for (id, scan) in chunk {
        let mut history = VecDeque::with_capacity(scan.recent.len());
        let mut latest: Option<(NodeHeartbeat, DateTime<Utc>)> = None;
        let last = scan.recent.len().saturating_sub(1);
        for (i, spot) in scan.recent.iter().enumerate() {
            match sources.get(spot, i == last, &mut buf)? {
                Ok(Parsed::Full(hb, ts)) => {
                    history.push_back(fleet::history_point(&hb, ts));
                    latest = Some((*hb, ts));
                }
                Ok(Parsed::Point(p)) => history.push_back(p),
                Err(reason) => bad.push(bad_line(
                    &sources.files[spot.file as usize],
                    sources.starts[spot.file as usize],
                    spot.line,
                    reason,
                )),
            }
        }
        // If the newest line was unreadable, the newest readable one is the latest.
        if latest.is_none() {
            for spot in scan.recent.iter().rev() {
                if let Ok(Parsed::Full(hb, ts)) = sources.get(spot, true, &mut buf)? {
                    latest = Some((*hb, ts));
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
fn bad_line(file: &Path, start: u64, line: u64, reason: String) -> BadLine {
    let reason = if start > 0 {
        format!("{reason} (line counted from byte {start}, where the snapshot ends)")
    } else {
        reason
    };
    BadLine {
        file: file.to_path_buf(),
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

/// Rebuilds the fleet from every heartbeat segment in `dir`, plain or compressed.
pub fn replay_heartbeats(dir: &Path, fleet: &FleetState) -> std::io::Result<ReplayReport> {
    let files: Vec<(PathBuf, u64)> = logdir::files(dir, LogName::Heartbeats)?
        .into_iter()
        .map(|f| (f, 0))
        .collect();
    replay_heartbeat_files(&files, fleet, HashMap::new())
}

/// Rebuilds the fleet from `base` (the nodes as a snapshot holds them; empty for a full
/// replay) and the heartbeat lines of `listed` (plain or compressed), each read from its byte
/// offset on: each node's history continues `base`'s, its count adds up. `fleet` is only
/// changed once every file has been read, so an error (a position that is not a line boundary)
/// leaves it as it was.
pub fn replay_heartbeat_files(
    listed: &[(PathBuf, u64)],
    fleet: &FleetState,
    mut base: HashMap<Uuid, NodeState>,
) -> std::io::Result<ReplayReport> {
    let started = Instant::now();
    let history = fleet.limits().history_len.max(1);
    let mut report = ReplayReport {
        files: listed.len(),
        ..ReplayReport::default()
    };
    let mut nodes: HashMap<Uuid, NodeScan> = HashMap::new();
    let mut files = Vec::with_capacity(listed.len());
    let mut starts = Vec::with_capacity(listed.len());
    let mut compressed = Vec::with_capacity(listed.len());

    // Pass one: headers only.
    for (listed_path, start) in listed {
        let start = *start;
        let reader = match open_lines(listed_path, start) {
            Ok(r) => r,
            // A compressed segment that cannot even be opened. (Failing to reach a later
            // `start` is an error: the snapshot's place is not there.)
            Err(e)
                if start == 0
                    && e.kind() != std::io::ErrorKind::NotFound
                    && logdir::stored_compressed(listed_path) =>
            {
                report.skipped.push(bad_line(
                    listed_path,
                    start,
                    1,
                    format!("compressed segment unreadable from here to its end: {e}"),
                ));
                continue;
            }
            Err(e) => return Err(e),
        };
        let fi = files.len();
        let path = reader.path().to_path_buf();
        compressed.push(reader.is_compressed());
        let mut last_line = 0;
        let read = for_each_line_at(reader, start, |line_no, offset, line| {
            last_line = line_no;
            report.lines += 1;
            if line.is_empty() {
                return;
            }
            let Some(head) = record::head(line) else {
                report
                    .skipped
                    .push(bad_line(&path, start, line_no, "not a log record".into()));
                return;
            };
            let (Some(node_id), true) = (head.node_id, head.kind == kind::HEARTBEAT) else {
                report.skipped.push(bad_line(
                    &path,
                    start,
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
        });
        match read {
            Ok(bytes) => report.bytes += bytes - start,
            // A compressed segment broken on disk: what came before the break is replayed.
            Err(e) if compressed[fi] => report.skipped.push(bad_line(
                &path,
                start,
                last_line + 1,
                format!("compressed segment unreadable from here to its end: {e}"),
            )),
            Err(e) => return Err(e),
        }
        files.push(path);
        starts.push(start);
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
    // line is parsed whole; the others only as far as a history point needs. Plain files are
    // opened only if they hold a kept line (a long retention is many files).
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8);
    let mut needed = vec![false; files.len()];
    for (_, scan) in &order {
        for spot in &scan.recent {
            needed[spot.file as usize] = true;
        }
    }
    let handles = files
        .iter()
        .zip(&compressed)
        .zip(&needed)
        .map(|((path, &z), &n)| (n && !z).then(|| File::open(path)).transpose())
        .collect::<Result<Vec<_>, _>>()?;
    let streamed = stream_compressed(&order, &files, &starts, &compressed, workers);
    let sources = Sources {
        files,
        starts,
        compressed,
        handles,
        streamed,
    };
    let per = order.len().div_ceil(workers).max(1);
    let results: Vec<std::io::Result<(Vec<Restored>, Vec<BadLine>)>> =
        std::thread::scope(|scope| {
            let tasks: Vec<_> = order
                .chunks(per)
                .map(|chunk| scope.spawn(|| rebuild(chunk, &sources)))
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
                let latest = match n.latest {
                    Some((hb, at)) => (std::sync::Arc::new(hb), at),
                    None => (before.latest, before.last_seen),
                };
                (latest, history, before.heartbeats + n.total)
            }
            None => match n.latest {
                Some((hb, at)) => ((std::sync::Arc::new(hb), at), n.history, n.total),
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

    /// A heartbeat line in today's format (`record::encode` of a `NodeHeartbeat`).
    fn heartbeat_line(node: u128, seq: u64) -> Vec<u8> {
        let id = Uuid::from_u128(node);
        let ts = DateTime::parse_from_rfc3339("2026-11-29T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
            + chrono::Duration::seconds(seq as i64 * 30);
        let hb: NodeHeartbeat = serde_json::from_value(serde_json::json!({
            "node_id": id, "hostname": format!("host-{node}"), "os_profile": "ArchVault",
            "cloudflare_ok": true, "services_ok": !seq.is_multiple_of(3), "vaultmesh_root": "/var/lib/vaultmesh",
            "timestamp": ts, "seq": seq.to_string(),
            "metrics": {"load": [seq as f64 / 7.0, 0.4, 0.3], "cpu_count": 2, "mem_total_bytes": 1000, "mem_used_bytes": 10 * seq,
                        "disks": [{"mount": "/", "fs": "ext4", "total_bytes": 1000, "used_bytes": seq}]},
            "checks": [{"name": "disk", "status": if seq.is_multiple_of(4) { "warn" } else { "ok" }, "summary": "s",
                        "observed_at": ts, "duration_ms": 1}]
        }))
        .unwrap();
        record::encode(kind::HEARTBEAT, ts, Some(id), &hb).unwrap()
    }

    fn replayed(dir: &Path) -> (Vec<vaultmesh_proto::api::NodeDetail>, ReplayReport) {
        let fleet = FleetState::new(crate::StoreLimits {
            history_len: 5,
            max_nodes: 100,
        });
        let report = replay_heartbeats(dir, &fleet).unwrap();
        let mut ids = fleet.node_ids();
        ids.sort();
        (
            ids.iter().map(|id| fleet.detail(*id).unwrap()).collect(),
            report,
        )
    }

    #[test]
    fn compressed_segments_replay_to_the_state_plain_ones_do() {
        let dir = tempfile::tempdir().unwrap();
        let log = LogName::Heartbeats;
        let mut seq = 0;
        let mut segment = |nodes: &[u128], per_node: u64| {
            let mut text = Vec::new();
            for _ in 0..per_node {
                seq += 1;
                for n in nodes {
                    text.extend(heartbeat_line(*n, seq));
                }
            }
            text
        };
        let stamps = [
            "2026-11-29T01:00:00Z",
            "2026-11-29T02:00:00Z",
            "2026-11-29T03:00:00Z",
        ];
        // Node 4 stops after the second segment: its newest line is in a compressed segment.
        let texts = [
            segment(&[1, 2, 3, 4], 6),
            segment(&[1, 2, 3, 4], 6),
            segment(&[1, 2, 3], 6),
        ];
        let mut paths = Vec::new();
        for (stamp, text) in stamps.iter().zip(&texts) {
            let at = DateTime::parse_from_rfc3339(stamp)
                .unwrap()
                .with_timezone(&Utc);
            let p = logdir::rotated_path(dir.path(), log, at);
            std::fs::write(&p, text).unwrap();
            paths.push(p);
        }
        // The active file holds 2 of each node's 5 kept lines; the other 3 are in the last segment.
        std::fs::write(log.active(dir.path()), segment(&[1, 2, 3], 2)).unwrap();

        let (plain, plain_report) = replayed(dir.path());
        assert_eq!(plain.len(), 4);
        assert!(
            plain_report.skipped.is_empty(),
            "{:?}",
            plain_report.skipped
        );

        let stop = std::sync::atomic::AtomicBool::new(false);
        for p in &paths[1..] {
            crate::compress::compress_segment(p, 3, &stop).unwrap();
        }
        let (mixed, mixed_report) = replayed(dir.path());
        assert_eq!(mixed, plain, "plain and compressed segments mixed");
        assert_eq!(
            (mixed_report.lines, mixed_report.bytes, mixed_report.files),
            (plain_report.lines, plain_report.bytes, plain_report.files)
        );
        crate::compress::compress_segment(&paths[0], 3, &stop).unwrap();
        assert_eq!(replayed(dir.path()).0, plain, "every segment compressed");
    }

    #[test]
    fn a_broken_compressed_segment_is_reported_and_the_rest_replays() {
        let dir = tempfile::tempdir().unwrap();
        let log = LogName::Heartbeats;
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let first = logdir::rotated_path(dir.path(), log, at("2026-11-29T01:00:00Z"));
        let lines: Vec<u8> = (1..=2000).flat_map(|seq| heartbeat_line(1, seq)).collect();
        std::fs::write(&first, &lines).unwrap();
        let second = logdir::rotated_path(dir.path(), log, at("2026-11-29T02:00:00Z"));
        // Node 2's newest line has a good header but no heartbeat: the one before is its latest.
        let mut text = heartbeat_line(2, 1);
        text.extend(heartbeat_line(2, 2));
        text.extend(br#"{"kind":"heartbeat","ts":"2026-11-29T03:00:00Z","node_id":"00000000-0000-0000-0000-000000000002","record":{"bad":1}}"#);
        text.push(b'\n');
        std::fs::write(&second, &text).unwrap();
        let stop = std::sync::atomic::AtomicBool::new(false);
        for p in [&first, &second] {
            crate::compress::compress_segment(p, 3, &stop).unwrap();
        }
        // Flip bytes in the middle of the first segment's compressed frame.
        let zst = logdir::compressed_path(&first);
        let mut bytes = std::fs::read(&zst).unwrap();
        let mid = bytes.len() / 2;
        for b in &mut bytes[mid..mid + 64] {
            *b ^= 0xa5;
        }
        std::fs::write(&zst, bytes).unwrap();

        let (nodes, report) = replayed(dir.path());
        assert_eq!(
            nodes.len(),
            2,
            "the start did not fail: {:?}",
            &report.skipped[..report.skipped.len().min(5)]
        );
        let broken: Vec<_> = report.skipped.iter().filter(|b| b.file == zst).collect();
        assert_eq!(broken.len(), 1, "{:?}", report.skipped);
        assert!(
            broken[0].reason.contains("compressed segment unreadable"),
            "{}",
            broken[0].reason
        );
        assert!(
            broken[0].line > 1 && broken[0].line < 2000,
            "{}",
            broken[0].line
        );
        let node2 = &nodes[1];
        assert_eq!(node2.latest.seq.as_deref(), Some("2"));
        assert_eq!(node2.summary.heartbeats, 3);
        assert!(
            report
                .skipped
                .iter()
                .any(|b| b.file == logdir::compressed_path(&second) && b.line == 3),
            "{:?}",
            report.skipped
        );
    }
}
