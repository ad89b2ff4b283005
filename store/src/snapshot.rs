//! `state.snapshot`: the state built from the heartbeat log, with the [`Position`] in that log
//! it is the state of, so a start loads it and reads only the lines after the position instead
//! of the whole log (`docs/LOGS.md`, "State snapshot").
//!
//! **Consistent.** The state is copied on the heartbeat log's writer thread
//! ([`crate::journal::Journal::at_position`], and its rotation hook), where heartbeats are
//! applied in log order once durable: every line before the position has been applied, none
//! after it. The copy is taken under the fleet's read lock; encoding and writing happen on the
//! snapshot thread ([`SnapshotWriter`]), so ingest waits only for the copy.
//!
//! **Atomic, checksummed, versioned.** The file is written to `state.snapshot.tmp`, fsynced,
//! renamed over `state.snapshot`, and the directory fsynced: a crash leaves the old snapshot or
//! the new one, never a mix. It is [`MAGIC`], the format [`VERSION`] (`u32` LE), the payload's
//! length (`u64` LE) and SHA-256, then the payload: a [`Body`] in postcard, whose nodes are in
//! chunks (each a postcard list of [`Node`]s) that a start decodes on every CPU while another
//! thread checks the SHA-256. Any other version, a checksum that does not match, limits (`--history-len`, `--max-nodes`) other than the
//! running ones, or a position no longer in the log make it unusable: the start then replays
//! the whole heartbeat log, with a warning naming why ([`restore_heartbeats`]) — never a
//! wrong state.
//!
//! **Adding a section** (another state built from heartbeats): one field in [`Body`] (and
//! what fills it in [`Captured`]), and [`VERSION`] + 1, so the snapshots of the previous
//! version are stale and the first start after the upgrade replays the whole log once.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;
use uuid::Uuid;
use vaultmesh_proto::api::HistoryPoint;
use vaultmesh_proto::{CheckStatus, NodeHeartbeat};

use super::StoreLimits;
use super::fleet::NodeState;
use super::logdir::{self, LogName, Lost, Position};
use super::memory::Memory;
use super::replay::{self, ReplayReport, SnapshotUse};

/// The snapshot, in the log directory.
pub const FILE: &str = "state.snapshot";
/// Where a snapshot is written before it is renamed over [`FILE`].
pub const TEMP: &str = "state.snapshot.tmp";
/// The first bytes of a snapshot (`\r\n` catches a text-mode copy, as in PNG).
pub const MAGIC: [u8; 8] = *b"VMSNAP\r\n";
/// The format version this build writes and reads; any other is stale.
pub const VERSION: u32 = 2;
/// Magic, version, payload length, payload SHA-256.
const HEADER: usize = 8 + 4 + 8 + 32;

/// The state a snapshot holds, copied at `position` on the heartbeat writer.
#[derive(Debug)]
pub struct Captured {
    pub position: Position,
    pub limits: StoreLimits,
    pub fleet: Vec<(Uuid, NodeState)>,
    /// The history rollup (raw samples, open buckets, disk trends) at the same position.
    pub history: crate::history::Rollup,
    /// Where the buckets the rollup closed are stored: flushed before the snapshot is written.
    pub tiers: std::sync::Arc<dyn crate::history::Tiers>,
}

impl Captured {
    /// Copies what a snapshot holds out of `memory` (sharing the latest heartbeats, which
    /// never change once stored), whose heartbeats end at `position`: call
    /// it where no heartbeat is applied meanwhile (the heartbeat writer).
    pub fn take(position: Position, memory: &Memory) -> Captured {
        Captured {
            position,
            limits: memory.fleet.limits(),
            fleet: memory.fleet.capture(),
            history: memory.history().clone(),
            tiers: std::sync::Arc::clone(memory.tiers()),
        }
    }
}

/// Nodes per chunk of [`Body::fleet`].
const CHUNK_NODES: usize = 256;

/// The payload. Field order is the format: change it only with [`VERSION`].
#[derive(Debug, Serialize, Deserialize)]
struct Body<'a> {
    written_at: Time,
    /// Where in the heartbeat log the state is.
    heartbeats: Position,
    history_len: u64,
    max_nodes: u64,
    /// The nodes, [`CHUNK_NODES`] to a chunk, each chunk a postcard `Vec<Node>`.
    #[serde(borrow)]
    fleet: Vec<&'a serde_bytes::Bytes>,
    /// The history rollup, a postcard [`crate::history::Rollup`] (version 2).
    history: &'a serde_bytes::Bytes,
}

#[derive(Debug, Serialize, Deserialize)]
struct Node {
    id: Uuid,
    /// The latest heartbeat as JSON, as the log holds it (its optional fields are left out
    /// when empty, which a positional encoding cannot express).
    latest: String,
    last_seen: Time,
    heartbeats: u64,
    history: Vec<Point>,
}

/// A [`HistoryPoint`], every field in place.
#[derive(Debug, Serialize, Deserialize)]
struct Point {
    received_at: Time,
    timestamp: Time,
    cloudflare_ok: bool,
    services_ok: bool,
    load1: Option<f64>,
    mem_used_pct: Option<f64>,
    disk_max_used_pct: Option<f64>,
    worst_check: Option<CheckStatus>,
}

/// A time as Unix seconds and nanoseconds: exact, and cheap to encode.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Time(i64, u32);

impl From<DateTime<Utc>> for Time {
    fn from(t: DateTime<Utc>) -> Time {
        Time(t.timestamp(), t.timestamp_subsec_nanos())
    }
}

impl Time {
    fn get(self) -> Result<DateTime<Utc>, Unusable> {
        DateTime::from_timestamp(self.0, self.1)
            .ok_or_else(|| Unusable::Decode(format!("a time out of range: {self:?}")))
    }
}

impl From<&HistoryPoint> for Point {
    fn from(p: &HistoryPoint) -> Point {
        Point {
            received_at: p.received_at.into(),
            timestamp: p.timestamp.into(),
            cloudflare_ok: p.cloudflare_ok,
            services_ok: p.services_ok,
            load1: p.load1,
            mem_used_pct: p.mem_used_pct,
            disk_max_used_pct: p.disk_max_used_pct,
            worst_check: p.worst_check,
        }
    }
}

impl Point {
    fn get(self) -> Result<HistoryPoint, Unusable> {
        Ok(HistoryPoint {
            received_at: self.received_at.get()?,
            timestamp: self.timestamp.get()?,
            cloudflare_ok: self.cloudflare_ok,
            services_ok: self.services_ok,
            load1: self.load1,
            mem_used_pct: self.mem_used_pct,
            disk_max_used_pct: self.disk_max_used_pct,
            worst_check: self.worst_check,
        })
    }
}

/// Why a snapshot cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum Unusable {
    #[error("cannot read it: {0}")]
    Io(#[source] std::io::Error),
    #[error("it is not a snapshot (its first bytes are not the snapshot magic)")]
    NotASnapshot,
    #[error("it is format version {0}; this build reads version {VERSION}")]
    Version(u32),
    #[error("it is truncated: {have} bytes, its header says {want}")]
    Truncated { have: u64, want: u64 },
    #[error("its checksum does not match: the file is corrupt")]
    Checksum,
    #[error("it cannot be decoded: {0}")]
    Decode(String),
    #[error(
        "it was written with --history-len {was_history} --max-nodes {was_nodes}, and this start has --history-len {history} --max-nodes {nodes}"
    )]
    Limits {
        was_history: u64,
        was_nodes: u64,
        history: usize,
        nodes: usize,
    },
    #[error("its place in the heartbeat log is gone: {0}")]
    Lost(Lost),
    #[error("its place in the heartbeat log is not where a line starts: {0}")]
    NotALine(std::io::Error),
    #[error("its place in the heartbeat log is past the end of its file: {0}")]
    PastTheEnd(std::io::Error),
    #[error("the heartbeat lines after its place cannot be read: {0}")]
    Tail(std::io::Error),
}

/// A snapshot read back.
#[derive(Debug)]
pub struct Loaded {
    pub position: Position,
    pub written_at: DateTime<Utc>,
    pub fleet: HashMap<Uuid, NodeState>,
    pub history: crate::history::Rollup,
}

/// What a written snapshot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub bytes: u64,
    pub nodes: usize,
}

fn encode(c: &Captured) -> Result<Vec<u8>, String> {
    let chunks = c
        .fleet
        .chunks(CHUNK_NODES)
        .map(|chunk| {
            let nodes = chunk
                .iter()
                .map(|(id, s)| {
                    Ok(Node {
                        id: *id,
                        latest: serde_json::to_string(&*s.latest).map_err(|e| e.to_string())?,
                        last_seen: s.last_seen.into(),
                        heartbeats: s.heartbeats,
                        history: s.history.iter().map(Point::from).collect(),
                    })
                })
                .collect::<Result<Vec<_>, String>>()?;
            postcard::to_stdvec(&nodes).map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, String>>()?;
    let history = postcard::to_stdvec(&c.history).map_err(|e| e.to_string())?;
    let body = Body {
        history: serde_bytes::Bytes::new(&history),
        written_at: Utc::now().into(),
        heartbeats: c.position,
        history_len: c.limits.history_len as u64,
        max_nodes: c.limits.max_nodes as u64,
        fleet: chunks.iter().map(|c| serde_bytes::Bytes::new(c)).collect(),
    };
    postcard::to_stdvec(&body).map_err(|e| e.to_string())
}

/// Decodes one chunk of [`Body::fleet`].
fn decode_chunk(chunk: &[u8]) -> Result<Vec<(Uuid, NodeState)>, Unusable> {
    let nodes: Vec<Node> =
        postcard::from_bytes(chunk).map_err(|e| Unusable::Decode(e.to_string()))?;
    nodes
        .into_iter()
        .map(|n| {
            let latest: NodeHeartbeat = serde_json::from_str(&n.latest)
                .map_err(|e| Unusable::Decode(format!("node {}: {e}", n.id)))?;
            let history = n
                .history
                .into_iter()
                .map(Point::get)
                .collect::<Result<VecDeque<_>, _>>()?;
            let state = NodeState {
                latest: latest.into(),
                last_seen: n.last_seen.get()?,
                history,
                heartbeats: n.heartbeats,
            };
            Ok((n.id, state))
        })
        .collect()
}

/// Writes `captured` to [`TEMP`] and fsyncs it; [`write`] then renames it into place.
pub fn write_temp(dir: &Path, captured: &Captured) -> std::io::Result<(PathBuf, Written)> {
    let payload = encode(captured).map_err(std::io::Error::other)?;
    let mut header = Vec::with_capacity(HEADER);
    header.extend_from_slice(&MAGIC);
    header.extend_from_slice(&VERSION.to_le_bytes());
    header.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    header.extend_from_slice(&Sha256::digest(&payload));
    let temp = dir.join(TEMP);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temp)?;
    file.write_all(&header)?;
    file.write_all(&payload)?;
    file.sync_all()?;
    let written = Written {
        bytes: (HEADER + payload.len()) as u64,
        nodes: captured.fleet.len(),
    };
    Ok((temp, written))
}

/// Writes `captured` as the snapshot of `dir`, atomically and durably. A failed write leaves
/// the previous snapshot, and no temp file (a full disk gets its space back).
pub fn write(dir: &Path, captured: &Captured) -> std::io::Result<Written> {
    captured
        .tiers
        .flush_blocking()
        .map_err(std::io::Error::other)?;
    let written = write_temp(dir, captured).and_then(|(temp, written)| {
        std::fs::rename(&temp, dir.join(FILE))?;
        Ok(written)
    });
    if written.is_err() {
        let _ = std::fs::remove_file(dir.join(TEMP));
    }
    let written = written?;
    logdir::sync_dir(dir)?;
    Ok(written)
}

/// Reads the snapshot of `dir`: `None` if there is none, [`Unusable`] if it cannot be used
/// with `limits`. A temp file left by a write that never finished is deleted.
pub fn load(dir: &Path, limits: StoreLimits) -> Result<Option<Loaded>, Unusable> {
    match std::fs::remove_file(dir.join(TEMP)) {
        Ok(()) => {
            tracing::info!(file = %dir.join(TEMP).display(), "Deleted a state snapshot whose writing never finished.")
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Unusable::Io(e)),
    }
    let bytes = match std::fs::read(dir.join(FILE)) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Unusable::Io(e)),
    };
    if bytes.len() < MAGIC.len() + 4 || bytes[..MAGIC.len()] != MAGIC {
        return Err(Unusable::NotASnapshot);
    }
    let word = |at: usize, n: usize| &bytes[at..at + n];
    let version = u32::from_le_bytes(word(8, 4).try_into().expect("4 bytes"));
    if version != VERSION {
        return Err(Unusable::Version(version));
    }
    if bytes.len() < HEADER {
        return Err(Unusable::Truncated {
            have: bytes.len() as u64,
            want: HEADER as u64,
        });
    }
    let len = u64::from_le_bytes(word(12, 8).try_into().expect("8 bytes"));
    let payload = &bytes[HEADER..];
    if payload.len() as u64 != len {
        return Err(Unusable::Truncated {
            have: bytes.len() as u64,
            want: HEADER as u64 + len,
        });
    }
    // Decoding bytes that turn out corrupt is harmless (postcard checks every length against
    // what is left), so the checksum is computed alongside, and checked before anything is used.
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8);
    let body = postcard::from_bytes::<Body<'_>>(payload);
    let (intact, decoded) = std::thread::scope(|scope| {
        let hash = scope.spawn(|| Sha256::digest(payload).as_slice() == word(20, 32));
        let decoded: Vec<Result<Vec<(Uuid, NodeState)>, Unusable>> = match &body {
            Err(_) => Vec::new(),
            Ok(body) => {
                let per = body.fleet.len().div_ceil(workers).max(1);
                let tasks: Vec<_> = body
                    .fleet
                    .chunks(per)
                    .map(|chunks| {
                        scope.spawn(move || {
                            let mut out = Vec::new();
                            for c in chunks {
                                out.extend(decode_chunk(c)?);
                            }
                            Ok(out)
                        })
                    })
                    .collect();
                tasks
                    .into_iter()
                    .map(|t| {
                        t.join().unwrap_or_else(|_| {
                            Err(Unusable::Decode("a decoding thread panicked".into()))
                        })
                    })
                    .collect()
            }
        };
        (hash.join().unwrap_or(false), decoded)
    });
    if !intact {
        return Err(Unusable::Checksum);
    }
    let body = body.map_err(|e| Unusable::Decode(e.to_string()))?;
    if body.history_len != limits.history_len as u64 || body.max_nodes != limits.max_nodes as u64 {
        return Err(Unusable::Limits {
            was_history: body.history_len,
            was_nodes: body.max_nodes,
            history: limits.history_len,
            nodes: limits.max_nodes,
        });
    }
    let mut fleet = HashMap::new();
    for part in decoded {
        fleet.extend(part?);
    }
    let history =
        postcard::from_bytes(body.history).map_err(|e| Unusable::Decode(e.to_string()))?;
    Ok(Some(Loaded {
        position: body.heartbeats,
        written_at: body.written_at.get()?,
        fleet,
        history,
    }))
}

/// Rebuilds `fleet` at start: from the snapshot and the heartbeat lines after its position
/// when it can be used, else (with a warning naming why) from the whole heartbeat log. With the
/// report, the position of the snapshot used.
pub fn restore_heartbeats(
    dir: &Path,
    memory: &crate::Memory,
) -> std::io::Result<(ReplayReport, Option<Position>)> {
    let fleet = &memory.fleet;
    let why = match load(dir, fleet.limits()) {
        Ok(None) => None,
        Err(why) => Some(why),
        Ok(Some(snap)) => match logdir::after(dir, LogName::Heartbeats, &snap.position)? {
            Err(lost) => Some(Unusable::Lost(lost)),
            Ok(files) => {
                let nodes = snap.fleet.len();
                *memory.history() = snap.history;
                // The rollup first: the fleet changes only once every file was read, so a
                // failure here or in the replay leaves it as it was for the full replay.
                match crate::history::rebuild::roll_up_files(&files, memory)
                    .and_then(|_| replay::replay_heartbeat_files(&files, fleet, snap.fleet))
                {
                    Ok(mut report) => {
                        report.snapshot = SnapshotUse::Used {
                            nodes,
                            tail_lines: report.lines,
                        };
                        tracing::info!(
                            written_at = %snap.written_at,
                            nodes,
                            tail_lines = report.lines,
                            "Loaded the state snapshot and the heartbeat lines after it."
                        );
                        return Ok((report, Some(snap.position)));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                        Some(Unusable::NotALine(e))
                    }
                    // Past the end of a compressed segment (a plain file's length is checked
                    // by `after`).
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                        Some(Unusable::PastTheEnd(e))
                    }
                    // Damage before the place in a compressed segment, say: the full replay
                    // reads what can be read, or fails naming the file.
                    Err(e) => Some(Unusable::Tail(e)),
                }
            }
        },
    };
    // Nothing of a snapshot that could not be used stays (the rollup is rebuilt after).
    *memory.history() = Default::default();
    if let Some(why) = &why {
        tracing::warn!(file = %dir.join(FILE).display(), reason = %why, "The state snapshot cannot be used; replaying the whole heartbeat log.");
    }
    let mut report = replay::replay_heartbeats(dir, fleet)?;
    report.snapshot = match why {
        None => SnapshotUse::Missing,
        Some(why) => SnapshotUse::Refused(why.to_string()),
    };
    Ok((report, None))
}

/// The answer to one [`SnapshotWriter::submit`]: what was written, or why not.
pub type Done = oneshot::Receiver<Result<Written, String>>;

/// Writes snapshots on its own thread, newest first: a capture submitted while another is being
/// written replaces any capture still waiting (whose waiters get the newer one's outcome).
/// Dropping it writes what is waiting, then stops the thread.
#[derive(Debug)]
pub struct SnapshotWriter {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct Shared {
    slot: Mutex<Slot>,
    wake: Condvar,
}

#[derive(Debug, Default)]
struct Slot {
    next: Option<(Captured, &'static str)>,
    waiters: Vec<oneshot::Sender<Result<Written, String>>>,
    closed: bool,
    /// The position of the snapshot on disk, as far as this writer knows.
    on_disk: Option<Position>,
}

impl SnapshotWriter {
    /// Starts the thread that writes the snapshots of `dir`.
    pub fn start(dir: &Path) -> std::io::Result<SnapshotWriter> {
        let shared = Arc::new(Shared::default());
        let (dir, inner) = (dir.to_path_buf(), Arc::clone(&shared));
        let thread = std::thread::Builder::new()
            .name("state-snapshot".into())
            .spawn(move || write_loop(&dir, &inner))?;
        Ok(SnapshotWriter {
            shared,
            thread: Some(thread),
        })
    }

    /// The position of the snapshot on disk: the last one written, or the one loaded at start
    /// ([`SnapshotWriter::loaded`]).
    pub fn on_disk(&self) -> Option<Position> {
        self.shared
            .slot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .on_disk
    }

    /// Notes that the snapshot on disk, loaded at start, is at `position`.
    pub fn loaded(&self, position: Position) {
        let mut slot = self.shared.slot.lock().unwrap_or_else(|p| p.into_inner());
        slot.on_disk.get_or_insert(position);
    }

    /// Queues `captured` to be written (`why`: what asked for it, for the log).
    pub fn submit(&self, captured: Captured, why: &'static str) -> Done {
        let (tx, rx) = oneshot::channel();
        let mut slot = self.shared.slot.lock().unwrap_or_else(|p| p.into_inner());
        slot.next = Some((captured, why));
        slot.waiters.push(tx);
        self.shared.wake.notify_one();
        rx
    }
}

fn write_loop(dir: &Path, shared: &Shared) {
    loop {
        let (job, waiters) = {
            let mut slot = shared.slot.lock().unwrap_or_else(|p| p.into_inner());
            while slot.next.is_none() && !slot.closed {
                slot = shared.wake.wait(slot).unwrap_or_else(|p| p.into_inner());
            }
            let Some(job) = slot.next.take() else {
                return;
            };
            (job, std::mem::take(&mut slot.waiters))
        };
        let (captured, why) = job;
        let started = std::time::Instant::now();
        let outcome = write(dir, &captured).map_err(|e| e.to_string());
        match &outcome {
            Ok(w) => tracing::info!(
                why,
                nodes = w.nodes,
                bytes = w.bytes,
                ms = started.elapsed().as_millis() as u64,
                "Wrote the state snapshot."
            ),
            Err(e) => {
                tracing::warn!(why, file = %dir.join(FILE).display(), error = %e, "Cannot write the state snapshot; the next start replays more of the heartbeat log.")
            }
        }
        if outcome.is_ok() {
            let mut slot = shared.slot.lock().unwrap_or_else(|p| p.into_inner());
            slot.on_disk = Some(captured.position);
        }
        drop(captured);
        for w in waiters {
            let _ = w.send(outcome.clone());
        }
    }
}

impl Drop for SnapshotWriter {
    fn drop(&mut self) {
        self.shared
            .slot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .closed = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonl::{HeartbeatLog, Snapshotted};
    use crate::{JsonlStore, Store, StoreOptions, snapshot};
    use std::time::Duration;
    use vaultmesh_proto::{CheckResult, DiskUsage, Metrics, NodeDetail, NodeSummary};

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(0x5eed_0000 + n)
    }

    /// A heartbeat whose history point has every field (load, memory, disk, worst check).
    fn heartbeat(node: u128, seq: u64) -> NodeHeartbeat {
        let status = [CheckStatus::Ok, CheckStatus::Warn, CheckStatus::Crit][seq as usize % 3];
        NodeHeartbeat {
            node_id: id(node),
            hostname: format!("host-{node}"),
            os_profile: "ArchVault".into(),
            cloudflare_ok: !seq.is_multiple_of(4),
            services_ok: !seq.is_multiple_of(5),
            vaultmesh_root: "/var/lib/vaultmesh".into(),
            timestamp: Utc::now(),
            agent_version: Some("0.1.0".into()),
            seq: Some(seq.to_string()),
            uptime_s: Some(seq * 30),
            metrics: Some(Metrics {
                load: Some([seq as f64 / 7.0, 0.4, 0.3]),
                cpu_count: Some(2),
                mem_total_bytes: Some(1000),
                mem_used_bytes: Some(100 + seq * 3 % 800),
                disks: vec![DiskUsage {
                    mount: "/".into(),
                    fs: "ext4".into(),
                    total_bytes: 1000,
                    used_bytes: 400 + node as u64,
                    inodes_total: None,
                    inodes_used: None,
                }],
                ..Metrics::default()
            }),
            checks: vec![CheckResult::new("disk", status, "fine").with_metric("used_pct", 40.5)],
            last_scan: None,
            labels: Default::default(),
        }
    }

    fn options(dir: &Path, rotate_bytes: u64) -> StoreOptions {
        let mut opts = StoreOptions::new(dir.to_path_buf());
        opts.limits = StoreLimits {
            history_len: 6,
            max_nodes: 100,
        };
        opts.heartbeats = HeartbeatLog {
            rotate_bytes,
            ..HeartbeatLog::default()
        };
        opts
    }

    fn open(opts: &StoreOptions) -> (JsonlStore, ReplayReport) {
        JsonlStore::open(opts, Arc::new(crate::bus::Bus::new(16, 16))).unwrap()
    }

    async fn feed(store: &JsonlStore, nodes: u128, seqs: std::ops::Range<u64>) {
        for seq in seqs {
            for n in 0..nodes {
                store
                    .record_heartbeat(heartbeat(n, seq), Utc::now())
                    .await
                    .unwrap();
            }
        }
    }

    /// Writes a snapshot now.
    async fn snap(store: &JsonlStore) -> snapshot::Written {
        store
            .write_snapshot("test")
            .await
            .unwrap()
            .written()
            .unwrap()
    }

    /// Everything the API shows of the heartbeat state: the list, and each node's detail
    /// (latest heartbeat, history, count).
    fn state(store: &JsonlStore) -> (Vec<NodeSummary>, Vec<NodeDetail>) {
        let list = store.summaries();
        let details = list
            .iter()
            .map(|s| store.detail(s.node_id).unwrap())
            .collect();
        (list, details)
    }

    /// A store over `opts` fed `seqs` heartbeats of 3 nodes and snapshotted, then fed on until
    /// its log has `min` closed segments (and one more heartbeat), all compressed: the store,
    /// that early snapshot's bytes, and the segments.
    async fn early_snapshot_then_compressed(
        opts: &StoreOptions,
        seqs: u64,
        min: usize,
    ) -> (
        JsonlStore,
        Vec<u8>,
        Vec<(std::path::PathBuf, DateTime<Utc>)>,
    ) {
        let (store, _) = open(opts);
        feed(&store, 3, 0..seqs).await;
        snap(&store).await;
        let early = std::fs::read(opts.dir.join(FILE)).unwrap();
        let mut seq = seqs;
        while segments(&opts.dir) < min {
            feed(&store, 3, seq..seq + 1).await;
            seq += 1;
        }
        feed(&store, 3, seq..seq + 1).await;
        let segs = compressed(&opts.dir, min).await;
        (store, early, segs)
    }

    /// Waits until `dir` holds at least `min` heartbeat segments, every one compressed.
    async fn compressed(dir: &Path, min: usize) -> Vec<(std::path::PathBuf, DateTime<Utc>)> {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let segs = logdir::segments(dir, LogName::Heartbeats).unwrap();
            if segs.len() >= min && segs.iter().all(|(p, _)| logdir::is_compressed(p)) {
                return segs;
            }
            assert!(std::time::Instant::now() < deadline, "{segs:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn segments(dir: &Path) -> usize {
        logdir::segments(dir, LogName::Heartbeats).unwrap().len()
    }

    /// The state a full replay of `dir` builds (the snapshot set aside meanwhile).
    fn full_replay(opts: &StoreOptions) -> (Vec<NodeSummary>, Vec<NodeDetail>) {
        let path = opts.dir.join(FILE);
        let kept = std::fs::read(&path).ok();
        let _ = std::fs::remove_file(&path);
        let (store, report) = open(opts);
        assert_eq!(report.snapshot, SnapshotUse::Missing);
        let s = state(&store);
        drop(store);
        if let Some(bytes) = kept {
            std::fs::write(&path, bytes).unwrap();
        }
        s
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn snapshot_and_tail_equal_a_full_replay_across_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let opts = options(dir.path(), 64 << 10);
        let (store, _) = open(&opts);
        feed(&store, 5, 0..4).await;
        let w = snap(&store).await;
        assert_eq!(w.nodes, 5);
        let early = std::fs::read(dir.path().join(FILE)).unwrap();
        // After the snapshot: more heartbeats, across rotations, and a node it never saw.
        feed(&store, 6, 4..40).await;
        assert!(segments(dir.path()) >= 2, "the log rotated");
        let live = state(&store);
        let live_rollup = crate::Backend::memory(&store.backend).history().clone();
        assert_eq!(live_rollup.len(), 6);
        drop(store);

        // As if the process died before any later snapshot was written.
        std::fs::write(dir.path().join(FILE), &early).unwrap();
        let (store, report) = open(&opts);
        let SnapshotUse::Used { nodes, tail_lines } = report.snapshot else {
            panic!("{:?}", report.snapshot);
        };
        assert_eq!((nodes, tail_lines), (5, 36 * 6));
        assert_eq!(state(&store), live, "snapshot + tail = the live state");
        assert_eq!(
            *crate::Backend::memory(&store.backend).history(),
            live_rollup,
            "the history rollup too: the snapshot's, and the tail rolled up after it"
        );
        drop(store);
        assert_eq!(full_replay(&opts), live, "full replay = the live state");
        assert_eq!(live.0.len(), 6);
        assert_eq!(live.1[0].history.len(), 6);
        assert_eq!(live.0[0].heartbeats, 40);
    }

    /// A snapshot positioned in the active file stays usable once that file was rotated and
    /// its segment compressed: the tail is read from the same place in the segment's lines.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_position_in_a_segment_compressed_since_still_holds() {
        let dir = tempfile::tempdir().unwrap();
        let opts = options(dir.path(), 64 << 10);
        assert!(
            opts.heartbeats.zstd_level > 0,
            "segments are compressed by default"
        );
        let (store, _) = open(&opts);
        feed(&store, 5, 0..4).await;
        snap(&store).await;
        let early = std::fs::read(dir.path().join(FILE)).unwrap();
        assert!(matches!(
            load(dir.path(), opts.limits).unwrap().unwrap().position,
            Position::In { offset, .. } if offset > 0
        ));
        feed(&store, 6, 4..40).await;
        // Every closed segment compressed, the one the snapshot names first among them.
        compressed(dir.path(), 2).await;
        let live = state(&store);
        let live_rollup = crate::Backend::memory(&store.backend).history().clone();
        drop(store);

        std::fs::write(dir.path().join(FILE), &early).unwrap();
        let (store, report) = open(&opts);
        assert_eq!(
            report.snapshot,
            SnapshotUse::Used {
                nodes: 5,
                tail_lines: 36 * 6
            }
        );
        assert_eq!(state(&store), live);
        assert_eq!(
            *crate::Backend::memory(&store.backend).history(),
            live_rollup,
            "the compressed tail rolled up after the snapshot's rollup"
        );
        drop(store);
        assert_eq!(full_replay(&opts), live);
    }

    /// Compressed segments damaged on disk — bytes flipped, cut short, emptied — never stop a
    /// start, with the snapshot (positioned before the damage) or without: what they hold up
    /// to the damage is read, the damage is reported as a skipped line, and every node is
    /// there with its newest heartbeat.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn damaged_compressed_segments_never_stop_a_start() {
        let dir = tempfile::tempdir().unwrap();
        let opts = options(dir.path(), 16 << 10);
        let (store, early, segs) = early_snapshot_then_compressed(&opts, 2, 4).await;
        let newest = state(&store).1;
        drop(store);
        let zst = |i: usize| segs[i].0.clone();
        let mut bytes = std::fs::read(zst(0)).unwrap();
        let middle = bytes.len() / 2;
        for b in &mut bytes[middle..middle + 16] {
            *b ^= 0x5a;
        }
        std::fs::write(zst(0), &bytes).unwrap();
        let bytes = std::fs::read(zst(1)).unwrap();
        std::fs::write(zst(1), &bytes[..bytes.len() / 2]).unwrap();
        std::fs::write(zst(2), b"").unwrap();

        let check = |report: &ReplayReport, store: &JsonlStore| {
            let damaged: Vec<_> = report
                .skipped
                .iter()
                .filter(|b| b.reason.contains("compressed segment unreadable"))
                .map(|b| b.file.clone())
                .collect();
            assert!(
                damaged.contains(&zst(0)) && damaged.contains(&zst(1)),
                "{report:?}"
            );
            let details = state(store).1;
            assert_eq!(details.len(), 3);
            for (d, n) in details.iter().zip(&newest) {
                assert_eq!(
                    d.latest, n.latest,
                    "the newest heartbeat is in the active file"
                );
            }
        };
        // A snapshot positioned in the first (now damaged) segment.
        std::fs::write(dir.path().join(FILE), &early).unwrap();
        let (store, report) = open(&opts);
        assert!(
            matches!(
                report.snapshot,
                SnapshotUse::Used { .. } | SnapshotUse::Refused(_)
            ),
            "{:?}",
            report.snapshot
        );
        check(&report, &store);
        drop(store);
        // No snapshot at all.
        std::fs::remove_file(dir.path().join(FILE)).unwrap();
        let (store, report) = open(&opts);
        assert_eq!(report.snapshot, SnapshotUse::Missing);
        check(&report, &store);
    }

    /// A snapshot whose place is past the end of a compressed segment (a shorter copy restored
    /// over it, say) is not used: the start says so and replays the whole log.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_position_past_the_end_of_a_compressed_segment_is_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let opts = options(dir.path(), 16 << 10);
        let (store, early, segs) = early_snapshot_then_compressed(&opts, 4, 2).await;
        let first = segs[0].0.clone();
        drop(store);
        // The same segment, its first two lines only, compressed.
        let plain = zstd::decode_all(std::fs::File::open(&first).unwrap()).unwrap();
        let two = memchr::memchr_iter(b'\n', &plain).nth(1).unwrap();
        std::fs::write(&first, zstd::encode_all(&plain[..two + 1], 3).unwrap()).unwrap();
        std::fs::write(dir.path().join(FILE), &early).unwrap();
        let shorter = full_replay(&opts);
        let why = refused(&opts, &shorter);
        assert!(why.contains("past the end of its file"), "{why}");
    }

    /// Each rotation writes a snapshot positioned after the segment it closed; the next start
    /// reads only the active file.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_rotation_writes_a_snapshot_after_the_closed_segment() {
        let dir = tempfile::tempdir().unwrap();
        let opts = options(dir.path(), 16 << 10);
        let (store, _) = open(&opts);
        let mut seq = 0;
        while segments(dir.path()) == 0 {
            feed(&store, 3, seq..seq + 1).await;
            seq += 1;
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !dir.path().join(FILE).exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "no snapshot at rotation"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let loaded = load(dir.path(), opts.limits).unwrap().unwrap();
        assert!(
            matches!(loaded.position, Position::After { .. }),
            "{:?}",
            loaded.position
        );
        feed(&store, 3, seq..seq + 2).await;
        let live = state(&store);
        drop(store);
        let (store, report) = open(&opts);
        // Only the active file's lines were read.
        let active = std::fs::read(LogName::Heartbeats.active(dir.path())).unwrap();
        assert_eq!(
            report.snapshot,
            SnapshotUse::Used {
                nodes: 3,
                tail_lines: memchr::memchr_iter(b'\n', &active).count() as u64
            }
        );
        assert_eq!(state(&store), live);
    }

    /// Opens `dir` with a snapshot that cannot be used: the whole log is replayed, the report
    /// says why, and the state is the live one.
    fn refused(opts: &StoreOptions, live: &(Vec<NodeSummary>, Vec<NodeDetail>)) -> String {
        let (store, report) = open(opts);
        let SnapshotUse::Refused(why) = report.snapshot else {
            panic!("{:?}", report.snapshot);
        };
        assert_eq!(&state(&store), live, "{why}");
        why
    }

    /// A store with a snapshot, and heartbeats after it; returns the live state.
    async fn with_snapshot(opts: &StoreOptions) -> (Vec<NodeSummary>, Vec<NodeDetail>) {
        let (store, _) = open(opts);
        feed(&store, 4, 0..5).await;
        snap(&store).await;
        feed(&store, 4, 5..8).await;
        state(&store)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_corrupt_snapshot_falls_back_to_a_full_replay() {
        let dir = tempfile::tempdir().unwrap();
        let opts = options(dir.path(), 1 << 30);
        let live = with_snapshot(&opts).await;
        let path = dir.path().join(FILE);
        let good = std::fs::read(&path).unwrap();
        // One bit anywhere in the payload.
        for at in [HEADER, HEADER + (good.len() - HEADER) / 2, good.len() - 1] {
            let mut bad = good.clone();
            bad[at] ^= 0x10;
            std::fs::write(&path, &bad).unwrap();
            let why = refused(&opts, &live);
            assert!(why.contains("checksum does not match"), "{why}");
        }
        // Cut short, and not a snapshot at all.
        std::fs::write(&path, &good[..good.len() - 100]).unwrap();
        assert!(refused(&opts, &live).contains("truncated"));
        std::fs::write(&path, b"{\"not\": \"a snapshot\"}").unwrap();
        assert!(refused(&opts, &live).contains("not a snapshot"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_snapshot_of_another_version_or_other_limits_is_stale() {
        let dir = tempfile::tempdir().unwrap();
        let opts = options(dir.path(), 1 << 30);
        let live = with_snapshot(&opts).await;
        let path = dir.path().join(FILE);
        let good = std::fs::read(&path).unwrap();
        let mut other = good.clone();
        other[8..12].copy_from_slice(&(VERSION + 1).to_le_bytes());
        std::fs::write(&path, &other).unwrap();
        let why = refused(&opts, &live);
        assert!(
            why.contains(&format!("format version {}", VERSION + 1)),
            "{why}"
        );

        // A longer history than the snapshot kept: only the log has the older points.
        std::fs::write(&path, &good).unwrap();
        let mut longer = opts.clone();
        longer.limits.history_len = 8;
        let (store, report) = open(&longer);
        let SnapshotUse::Refused(why) = report.snapshot else {
            panic!("{:?}", report.snapshot);
        };
        assert!(why.contains("--history-len 6"), "{why}");
        assert_eq!(store.detail(id(0)).unwrap().history.len(), 8);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_snapshot_whose_segment_retention_deleted_is_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let opts = options(dir.path(), 16 << 10);
        let (store, _) = open(&opts);
        feed(&store, 3, 0..2).await;
        snap(&store).await;
        let early = std::fs::read(dir.path().join(FILE)).unwrap();
        let mut seq = 2;
        while segments(dir.path()) < 2 {
            feed(&store, 3, seq..seq + 1).await;
            seq += 1;
        }
        drop(store);
        // Retention deletes the oldest segment: the file the early snapshot is in.
        let (oldest, _) = logdir::segments(dir.path(), LogName::Heartbeats).unwrap()[0].clone();
        std::fs::remove_file(oldest).unwrap();
        std::fs::write(dir.path().join(FILE), &early).unwrap();
        let why = refused(&opts, &full_replay(&opts));
        assert!(why.contains("retention deleted its segment"), "{why}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_position_past_the_end_of_its_file_is_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let opts = options(dir.path(), 1 << 30);
        let live = with_snapshot(&opts).await;
        // The active file loses its last lines (restored from an older copy, say).
        let active = LogName::Heartbeats.active(dir.path());
        let text = std::fs::read(&active).unwrap();
        let third_line = memchr::memchr_iter(b'\n', &text).nth(2).unwrap();
        std::fs::write(&active, &text[..third_line + 1]).unwrap();
        let shorter = full_replay(&opts);
        assert_ne!(shorter, live);
        let why = refused(&opts, &shorter);
        assert!(why.contains("fewer than the position"), "{why}");
    }

    /// A snapshot already at the log's position (written, or loaded at start) is not written
    /// again; a deleted one is.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unchanged_state_is_not_written_again() {
        let dir = tempfile::tempdir().unwrap();
        let opts = options(dir.path(), 1 << 30);
        let (store, _) = open(&opts);
        feed(&store, 2, 0..2).await;
        let again = || store.write_snapshot("test");
        assert!(matches!(again().await.unwrap(), Snapshotted::Written(_)));
        assert_eq!(again().await.unwrap(), Snapshotted::Unchanged);
        feed(&store, 2, 2..3).await;
        assert!(matches!(again().await.unwrap(), Snapshotted::Written(_)));
        drop(store);
        let (store, _) = open(&opts);
        assert_eq!(
            store.write_snapshot("test").await.unwrap(),
            Snapshotted::Unchanged,
            "the loaded snapshot is at the log's position"
        );
        std::fs::remove_file(dir.path().join(FILE)).unwrap();
        assert!(matches!(
            store.write_snapshot("test").await.unwrap(),
            Snapshotted::Written(_)
        ));
    }

    /// A process killed while writing a snapshot leaves its temp file (whole, or cut short):
    /// the next start deletes it and uses the previous snapshot.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_that_never_finished_leaves_the_previous_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let opts = options(dir.path(), 1 << 30);
        let (store, _) = open(&opts);
        feed(&store, 4, 0..5).await;
        snap(&store).await;
        feed(&store, 4, 5..9).await;
        let live = state(&store);
        // The write of a newer snapshot stops after its temp file, then a crash.
        let captured = store.capture().await.unwrap().unwrap();
        drop(store);
        for whole in [true, false] {
            let (temp, written) = write_temp(dir.path(), &captured).unwrap();
            if !whole {
                let f = std::fs::OpenOptions::new().write(true).open(&temp).unwrap();
                f.set_len(written.bytes / 2).unwrap();
            }
            let (store, report) = open(&opts);
            assert_eq!(
                report.snapshot,
                SnapshotUse::Used {
                    nodes: 4,
                    tail_lines: 16
                },
                "the previous snapshot and its tail"
            );
            assert!(!temp.exists(), "the unfinished temp file is deleted");
            assert_eq!(state(&store), live);
        }
    }

    /// 1,000 nodes with full 240-point histories come back whole (the time is printed; how fast
    /// a snapshot loads is measured by `store-bench`, not asserted here: a timed test fails on a
    /// busy machine — it took 5 s under a full test run beside three builds).
    #[test]
    fn a_thousand_full_nodes_load_quickly() {
        let dir = tempfile::tempdir().unwrap();
        let limits = StoreLimits::default();
        let now = Utc::now();
        let fleet = (0..1000u128)
            .map(|n| {
                let hb = heartbeat(n, 240);
                let history = (0..240)
                    .map(|s| crate::fleet::history_point(&heartbeat(n, s), now))
                    .collect();
                let state = NodeState {
                    latest: hb.into(),
                    last_seen: now,
                    history,
                    heartbeats: 240,
                };
                (id(n), state)
            })
            .collect();
        // An hour and more of each node's history in the rollup, as a running server has.
        let mut rollup = crate::history::Rollup::default();
        for (id, state) in &fleet as &Vec<(Uuid, NodeState)> {
            let statuses: Vec<_> = state.latest.checks.iter().map(|c| c.status).collect();
            let sample =
                vaultmesh_proto::history::measure(state.latest.metrics.as_ref(), &statuses);
            for s in 0..150 {
                rollup.add(
                    *id,
                    now - chrono::Duration::seconds(30 * (150 - s)),
                    &sample,
                );
            }
        }
        let captured = Captured {
            position: Position::Start,
            limits,
            fleet,
            history: rollup,
            tiers: std::sync::Arc::new(crate::history::MemTiers::default()),
        };
        let w = write(dir.path(), &captured).unwrap();
        let started = std::time::Instant::now();
        let loaded = load(dir.path(), limits).unwrap().unwrap();
        let took = started.elapsed();
        println!(
            "loaded {} nodes ({} bytes) in {took:?}",
            loaded.fleet.len(),
            w.bytes
        );
        assert_eq!(loaded.fleet.len(), 1000);
        assert_eq!(
            loaded.history, captured.history,
            "the rollup comes back as it was"
        );
        let (uid, want) = &captured.fleet[7];
        let got = &loaded.fleet[uid];
        assert_eq!(
            (&got.latest, got.last_seen, &got.history, got.heartbeats),
            (&want.latest, want.last_seen, &want.history, want.heartbeats)
        );
    }
}
