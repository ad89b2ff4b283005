//! The JSONL store's tiers: one directory per node under `<log-dir>/history/`, one append-only
//! file per tier and period — `5m-YYYY-MM-DD.jsonl` (a UTC day) and `1h-YYYY-MM.jsonl` (a UTC
//! month) — one line per closed bucket:
//!
//! ```text
//! {"t":1765008000,"m":{"disk_used_pct:/":[41.2,41.25,41.3,10],"load1":[0.1,0.234,0.52,10]}}
//! ```
//!
//! `t` is the bucket's start (Unix seconds), each metric `[min, avg, max, samples]`. A file is
//! deleted whole once its period ended longer ago than the tier's retention. One writer thread
//! appends; a bucket whose start is not after the last one stored for its node and tier is
//! dropped (replay after a crash stores buckets again).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use vaultmesh_proto::history::Tier;

use super::{Bucket, Closed, HistoryOptions, StoredMetrics, Tiers};
use crate::StoreError;

/// The directory under the log directory.
pub const DIR: &str = "history";

#[derive(Serialize, Deserialize)]
struct Line {
    t: i64,
    m: StoredMetrics,
}

impl Line {
    fn of(b: &Bucket) -> Line {
        Line {
            t: b.start,
            m: b.stored_metrics(),
        }
    }

    fn bucket(self) -> Bucket {
        Bucket::from_stored(self.t, self.m)
    }
}

/// The file a bucket of `tier` starting at `start` goes to.
pub fn file_name(tier: Tier, start: i64) -> String {
    let at = Utc.timestamp_opt(start, 0).single().unwrap_or_default();
    match tier {
        Tier::Hour => format!("1h-{:04}-{:02}.jsonl", at.year(), at.month()),
        _ => format!("5m-{}.jsonl", at.format("%Y-%m-%d")),
    }
}

/// The tier and period `[start, end)` a file name covers.
fn period(name: &str) -> Option<(Tier, i64, i64)> {
    let stem = name.strip_suffix(".jsonl")?;
    if let Some(day) = stem.strip_prefix("5m-") {
        let d = NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()?;
        let start = d.and_hms_opt(0, 0, 0)?.and_utc().timestamp();
        return Some((Tier::FiveMinutes, start, start + 86_400));
    }
    let month = stem.strip_prefix("1h-")?;
    let d = NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d").ok()?;
    let next = if d.month() == 12 {
        NaiveDate::from_ymd_opt(d.year() + 1, 1, 1)?
    } else {
        NaiveDate::from_ymd_opt(d.year(), d.month() + 1, 1)?
    };
    Some((
        Tier::Hour,
        d.and_hms_opt(0, 0, 0)?.and_utc().timestamp(),
        next.and_hms_opt(0, 0, 0)?.and_utc().timestamp(),
    ))
}

/// A node's files of `tier` overlapping `[from, to)`, oldest first.
fn files(node_dir: &Path, tier: Tier, from: i64, to: i64) -> std::io::Result<Vec<PathBuf>> {
    let mut out: Vec<(i64, PathBuf)> = Vec::new();
    let entries = match std::fs::read_dir(node_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some((t, start, end)) = period(name)
            && t == tier
            && start < to
            && end > from
        {
            out.push((start, node_dir.join(name)));
        }
    }
    out.sort();
    Ok(out.into_iter().map(|(_, p)| p).collect())
}

/// Reads the buckets of the files, starting in `[from, to)`; a line that does not parse (a torn
/// last line) is skipped.
fn read_buckets(paths: &[PathBuf], from: i64, to: i64) -> std::io::Result<Vec<Bucket>> {
    let mut out = Vec::new();
    for p in paths {
        let text = match std::fs::read(p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for line in text.split(|b| *b == b'\n') {
            if line.is_empty() {
                continue;
            }
            // Lines this module wrote start with their time: skip those out of range unparsed.
            if let Some(t) = start_of(line)
                && (t < from || t >= to)
            {
                continue;
            }
            if let Ok(l) = serde_json::from_slice::<Line>(line)
                && l.t >= from
                && l.t < to
            {
                out.push(l.bucket());
            }
        }
    }
    Ok(out)
}

/// The start of the newest bucket of `tier` in a node's directory.
fn newest(node_dir: &Path, tier: Tier) -> std::io::Result<Option<i64>> {
    use std::io::{Read, Seek, SeekFrom};
    let Some(last) = files(node_dir, tier, i64::MIN, i64::MAX)?.pop() else {
        return Ok(None);
    };
    // The newest complete line is in the file's tail (a line is well under 16 KiB).
    let mut f = std::fs::File::open(&last)?;
    let len = f.metadata()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(16 << 10)))?;
    let mut tail = Vec::new();
    f.read_to_end(&mut tail)?;
    Ok(tail
        .split(|b| *b == b'\n')
        .rev()
        .find_map(|line| serde_json::from_slice::<Line>(line).ok())
        .map(|l| l.t))
}

/// `t` of a line that begins `{"t":<digits>,`.
fn start_of(line: &[u8]) -> Option<i64> {
    let rest = line.strip_prefix(b"{\"t\":")?;
    let end = rest
        .iter()
        .position(|b| !b.is_ascii_digit() && *b != b'-')?;
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

enum Msg {
    Store(Vec<Closed>),
    Flush(tokio::sync::oneshot::Sender<Result<(), String>>),
    /// [`Msg::Flush`] for a caller that blocks (inside a runtime or not).
    FlushBlocking(mpsc::SyncSender<Result<(), String>>),
    /// Answered once everything queued before it is written (not fsynced): a read after it
    /// sees every bucket stored before the read began.
    Barrier(tokio::sync::oneshot::Sender<()>),
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the history writer has stopped".into())
}

/// Messages the tier writer may have waiting; a sender waits beyond that.
const QUEUE: usize = 4096;
/// Most closed buckets the writer stores in one batch.
const BATCH: usize = 65_536;

/// The tiers as files, written by one thread.
#[derive(Debug)]
pub struct TierFiles {
    dir: PathBuf,
    tx: Mutex<mpsc::SyncSender<Msg>>,
}

impl TierFiles {
    /// Starts the writer over `dir` (created if missing); it expires files past `options`'
    /// retention when it starts and every hour.
    pub fn open(dir: PathBuf, options: HistoryOptions) -> std::io::Result<TierFiles> {
        std::fs::create_dir_all(&dir)?;
        // Bounded: a first start rolling up a long log waits for the writer rather than queueing
        // every closed bucket in memory (1 M lines queued 0.8 GiB).
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let writer = Writer {
            dir: dir.clone(),
            options,
            last: HashMap::new(),
            dirty: HashSet::new(),
            new_dirs: HashSet::new(),
            failed: None,
        };
        std::thread::Builder::new()
            .name("history-writer".into())
            .spawn(move || writer.run(rx))?;
        Ok(TierFiles {
            dir,
            tx: Mutex::new(tx),
        })
    }

    /// One node's stored buckets of `tier` starting in `[from, to)`, read on this thread.
    pub fn read_now(
        &self,
        node: Uuid,
        tier: Tier,
        from: i64,
        to: i64,
    ) -> std::io::Result<Vec<Bucket>> {
        read_buckets(
            &files(&self.dir.join(node.to_string()), tier, from, to)?,
            from,
            to,
        )
    }

    /// The start of the newest bucket of `tier` stored for `node`.
    pub fn newest(&self, node: Uuid, tier: Tier) -> std::io::Result<Option<i64>> {
        newest(&self.dir.join(node.to_string()), tier)
    }

    fn send(&self, msg: Msg) -> bool {
        self.tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(msg)
            .is_ok()
    }
}

#[async_trait]
impl Tiers for TierFiles {
    fn store(&self, closed: Vec<Closed>) {
        if !closed.is_empty() && !self.send(Msg::Store(closed)) {
            tracing::error!("The history writer has stopped; closed buckets are not stored.");
        }
    }

    async fn flush(&self) -> Result<(), StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if !self.send(Msg::Flush(tx)) {
            return Err(stopped());
        }
        rx.await
            .map_err(|_| stopped())?
            .map_err(StoreError::Unavailable)
    }

    fn flush_blocking(&self) -> Result<(), StoreError> {
        let (tx, rx) = mpsc::sync_channel(1);
        if !self.send(Msg::FlushBlocking(tx)) {
            return Err(stopped());
        }
        rx.recv()
            .map_err(|_| stopped())?
            .map_err(StoreError::Unavailable)
    }

    async fn read(
        &self,
        node: Uuid,
        tier: Tier,
        from: i64,
        to: i64,
    ) -> Result<Vec<Bucket>, StoreError> {
        // Buckets still queued for the writer are read once written.
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.send(Msg::Barrier(tx)) {
            let _ = rx.await;
        }
        let node_dir = self.dir.join(node.to_string());
        tokio::task::spawn_blocking(move || {
            read_buckets(&files(&node_dir, tier, from, to)?, from, to)
        })
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?
        .map_err(|e| StoreError::Unavailable(format!("reading history: {e}")))
    }
}

struct Writer {
    dir: PathBuf,
    options: HistoryOptions,
    /// The newest bucket start stored per node and tier (read from the files on first use).
    last: HashMap<(Uuid, Tier), i64>,
    /// Files written since the last flush.
    dirty: HashSet<PathBuf>,
    /// Directories made since the last flush.
    new_dirs: HashSet<PathBuf>,
    /// The first failure since the last flush.
    failed: Option<String>,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Msg>) {
        // First thing, then hourly: off the start-up path.
        self.expire(Utc::now());
        let mut swept = Instant::now();
        let mut pending: Option<Msg> = None;
        loop {
            let next = match pending.take() {
                Some(m) => Ok(m),
                None => rx.recv_timeout(Duration::from_secs(60)),
            };
            match next {
                Ok(Msg::Store(mut closed)) => {
                    // Whatever else is waiting to be stored goes in the same batch: each file
                    // is opened once for all its lines (a first start rolling up a long log
                    // sends a message per heartbeat line).
                    while closed.len() < BATCH {
                        match rx.try_recv() {
                            Ok(Msg::Store(more)) => closed.extend(more),
                            Ok(other) => {
                                pending = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    self.store(closed);
                }
                Ok(Msg::Flush(reply)) => {
                    let _ = reply.send(self.flush());
                }
                Ok(Msg::FlushBlocking(reply)) => {
                    let _ = reply.send(self.flush());
                }
                Ok(Msg::Barrier(reply)) => {
                    let _ = reply.send(());
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let _ = self.flush();
                    return;
                }
            }
            if swept.elapsed() >= Duration::from_secs(3_600) {
                self.expire(Utc::now());
                swept = Instant::now();
            }
        }
    }

    fn last_stored(&mut self, node: Uuid, tier: Tier) -> i64 {
        *self.last.entry((node, tier)).or_insert_with(|| {
            newest(&self.dir.join(node.to_string()), tier)
                .ok()
                .flatten()
                .unwrap_or(i64::MIN)
        })
    }

    fn store(&mut self, closed: Vec<Closed>) {
        let mut out: BTreeMap<PathBuf, Vec<u8>> = BTreeMap::new();
        for c in closed {
            if c.bucket.start <= self.last_stored(c.node, c.tier) {
                continue;
            }
            self.last.insert((c.node, c.tier), c.bucket.start);
            let path = self
                .dir
                .join(c.node.to_string())
                .join(file_name(c.tier, c.bucket.start));
            let buf = out.entry(path).or_default();
            if serde_json::to_writer(&mut *buf, &Line::of(&c.bucket)).is_ok() {
                buf.push(b'\n');
            }
        }
        for (path, bytes) in out {
            if let Err(e) = self.append(&path, &bytes) {
                tracing::error!(file = %path.display(), error = %e, "Cannot store history; it is rebuilt from the heartbeat log at the next start.");
                self.failed
                    .get_or_insert(format!("{}: {e}", path.display()));
            }
        }
    }

    fn append(&mut self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        if let Some(parent) = path.parent()
            && !parent.exists()
        {
            std::fs::create_dir_all(parent)?;
            self.new_dirs.insert(parent.to_path_buf());
        }
        let mut f = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)?;
        f.write_all(bytes)?;
        self.dirty.insert(path.to_path_buf());
        Ok(())
    }

    fn flush(&mut self) -> Result<(), String> {
        let mut failed = self.failed.take();
        for path in self.dirty.drain() {
            if let Err(e) = OpenOptions::new()
                .append(true)
                .open(&path)
                .and_then(|f| f.sync_data())
            {
                failed.get_or_insert(format!("{}: {e}", path.display()));
            }
        }
        let dirs: Vec<PathBuf> = self.new_dirs.drain().collect();
        for d in dirs.iter().map(|d| d.as_path()).chain([self.dir.as_path()]) {
            if let Err(e) = crate::logdir::sync_dir(d) {
                failed.get_or_insert(format!("{}: {e}", d.display()));
            }
        }
        match failed {
            Some(e) => Err(format!("storing history: {e}")),
            None => Ok(()),
        }
    }

    /// Deletes the files whose period ended longer ago than their tier's retention.
    fn expire(&mut self, now: DateTime<Utc>) {
        let Ok(nodes) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut deleted = 0usize;
        for node in nodes.flatten() {
            let Ok(entries) = std::fs::read_dir(node.path()) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some((tier, _, end)) = name.to_str().and_then(period) else {
                    continue;
                };
                let keep = self.options.retention(tier).as_secs() as i64;
                if end < now.timestamp() - keep && std::fs::remove_file(entry.path()).is_ok() {
                    deleted += 1;
                }
            }
        }
        if deleted > 0 {
            tracing::info!(files = deleted, "Deleted history files past retention.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_say_their_tier_and_period() {
        let t = 1_765_000_000; // 2025-12-06T05:46:40Z
        assert_eq!(file_name(Tier::FiveMinutes, t), "5m-2025-12-06.jsonl");
        assert_eq!(file_name(Tier::Hour, t), "1h-2025-12.jsonl");
        let (tier, start, end) = period("1h-2025-12.jsonl").unwrap();
        assert_eq!(tier, Tier::Hour);
        assert!(start <= t && t < end);
        assert_eq!(end - start, 31 * 86_400);
        let (tier, start, end) = period("5m-2025-12-06.jsonl").unwrap();
        assert_eq!((tier, end - start), (Tier::FiveMinutes, 86_400));
        assert!(start <= t && t < end);
        assert_eq!(period("heartbeats.jsonl"), None);
        assert_eq!(period("1h-2025-13.jsonl"), None);
        assert_eq!(start_of(br#"{"t":1765000000,"m":{}}"#), Some(1_765_000_000));
        assert_eq!(start_of(br#"{"m":{},"t":1}"#), None);
    }
}
