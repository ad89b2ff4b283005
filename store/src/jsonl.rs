//! The embedded backend: every record in append-only JSONL files under one directory,
//! replayed into [`Memory`] on start. [`JsonlStore`] is the default store.
//!
//! The heartbeat state is also kept in a snapshot ([`super::snapshot`]), written every
//! `--snapshot-interval`, at each rotation of the heartbeat log and at a clean shutdown, so a
//! start reads only the heartbeat lines written after it.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use vaultmesh_proto::EventEnvelope;

use super::change::Change;
use super::events::EventQuery;
use super::journal::{Journal, JournalError, OpenReport, RotateHook, Rotation};
use super::logdir::{self, LogName};
use super::logged::{Backend, Check, Gate, LoggedStore};
use super::memory::Memory;
use super::record::{self, Line};
use super::replay::{self, BadLine, ReplayReport, SnapshotUse};
use super::snapshot::{self, Captured, SnapshotWriter};
use super::{StoreError, StoreLimits};
use crate::bus::Bus;
use crate::history::{self, files::TierFiles};

/// A `--heartbeat-rotate-every` period: whole seconds (periods count whole seconds from the
/// Unix epoch), at least one.
fn rotation_period(text: &str) -> Result<Duration, String> {
    let d = vaultmesh_process::duration::parse(text)?;
    if d.as_secs() == 0 || d.subsec_nanos() != 0 {
        return Err(format!(
            "{text} is not a whole number of seconds of at least 1s (rotation periods start on whole seconds of UTC)"
        ));
    }
    Ok(d)
}

/// How the heartbeat log rotates, compresses and how long its segments are kept (`serve`
/// flags; scans, commands and events are kept forever, never rotated or compressed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Args)]
pub struct HeartbeatLog {
    /// Rotate the heartbeat log at this size (also every --heartbeat-rotate-every): e.g. 256MiB, 1GiB.
    #[arg(
        id = "heartbeat_rotate_size",
        value_name = "HEARTBEAT_ROTATE_SIZE",
        long = "heartbeat-rotate-size",
        default_value = "256MiB",
        value_parser = vaultmesh_process::size::parse
    )]
    pub rotate_bytes: u64,
    /// Rotate the heartbeat log when the UTC clock enters a new period of this length (1h: every
    /// hour, 1d: every day), so at most this much of it stays uncompressed.
    #[arg(
        id = "heartbeat_rotate_every",
        value_name = "HEARTBEAT_ROTATE_EVERY",
        long = "heartbeat-rotate-every",
        default_value = "1h",
        value_parser = rotation_period
    )]
    pub rotate_every: Duration,
    /// zstd level rotated heartbeat segments are compressed at, in the background (1 fastest,
    /// 19 smallest; 0 keeps them plain).
    #[arg(
        id = "heartbeat_zstd_level",
        value_name = "HEARTBEAT_ZSTD_LEVEL",
        long = "heartbeat-zstd-level",
        default_value_t = super::compress::DEFAULT_LEVEL,
        value_parser = clap::value_parser!(i32).range(0..=19)
    )]
    pub zstd_level: i32,
    /// Delete rotated heartbeat segments older than this: raw heartbeats are kept for a short
    /// window, the history tiers for longer (scans, commands and events are kept forever).
    #[arg(
        id = "heartbeat_retention",
        value_name = "HEARTBEAT_RETENTION",
        long = "heartbeat-retention",
        default_value = "48h",
        value_parser = vaultmesh_process::duration::parse_nonzero
    )]
    pub retention: Duration,
    /// Write the heartbeat state to `state.snapshot` this often (also at each rotation and at a
    /// clean shutdown), so a start reads only the heartbeat lines written since.
    #[arg(
        id = "snapshot_interval",
        value_name = "SNAPSHOT_INTERVAL",
        long = "snapshot-interval",
        default_value = "10m",
        value_parser = vaultmesh_process::duration::parse_nonzero
    )]
    pub snapshot_interval: Duration,
    /// Start at most one fdatasync of the heartbeat log per this window: under load, the
    /// heartbeats that arrive meanwhile are written and synced together (each is still
    /// acknowledged only once on disk); an idle log syncs at once. 0s: sync each batch as soon
    /// as the last sync ends.
    #[arg(
        id = "heartbeat_commit_window",
        value_name = "HEARTBEAT_COMMIT_WINDOW",
        long = "heartbeat-commit-window",
        default_value = "2ms",
        value_parser = vaultmesh_process::duration::parse
    )]
    pub commit_window: Duration,
}

impl Default for HeartbeatLog {
    fn default() -> Self {
        vaultmesh_process::cli::defaults()
    }
}

/// Where and how the store keeps its files.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub dir: PathBuf,
    pub limits: StoreLimits,
    /// How the heartbeat log rotates and how long its segments are kept.
    pub heartbeats: HeartbeatLog,
    /// Where append latencies go, if anywhere.
    pub observer: Option<Arc<dyn crate::Observer>>,
    /// Where the log writers report failures and recoveries.
    pub health: Arc<super::health::StorageHealth>,
    /// Most signed requests remembered within the replay window.
    pub seen_max: usize,
    /// How long the history tiers are kept.
    pub history: crate::history::HistoryOptions,
}

impl StoreOptions {
    pub fn new(dir: PathBuf) -> Self {
        StoreOptions {
            dir,
            limits: StoreLimits::default(),
            heartbeats: HeartbeatLog::default(),
            observer: None,
            health: Arc::default(),
            seen_max: super::seen::DEFAULT_MAX,
            history: Default::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreOpenError {
    #[error("{0}")]
    Journal(#[from] JournalError),
    #[error("replaying {dir}: {source}")]
    Replay {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("starting the compression of heartbeat segments in {dir}: {source}")]
    Compress {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start the state snapshot writer: {0}")]
    Snapshots(std::io::Error),
}

/// What [`JsonlStore::write_snapshot`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Snapshotted {
    Written(snapshot::Written),
    /// The snapshot on disk is already at the heartbeat log's position: nothing changed.
    Unchanged,
    /// Nothing says where the state is yet (the heartbeat log's active file is empty and its
    /// newest segment unreadable).
    PositionUnknown,
}

impl Snapshotted {
    /// What was written, if anything was.
    pub fn written(self) -> Option<snapshot::Written> {
        match self {
            Snapshotted::Written(w) => Some(w),
            _ => None,
        }
    }
}

/// Why a snapshot was not written.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{0}")]
    Journal(#[from] JournalError),
    #[error("writing {file}: {reason}", file = snapshot::FILE)]
    Write { reason: String },
    #[error("the snapshot writer stopped")]
    Stopped,
}

/// The embedded store: [`LoggedStore`] over JSONL files.
pub type JsonlStore = LoggedStore<JsonlBackend>;

/// The log files, one writer thread each, and a lock per [`Gate`].
#[derive(Debug)]
pub struct JsonlBackend {
    dir: PathBuf,
    memory: Arc<Memory>,
    heartbeats: Journal,
    events: Journal,
    nodes: Journal,
    commands: Journal,
    scans: Journal,
    /// Length of the scans log up to the last fsynced line.
    scans_durable: Arc<AtomicU64>,
    /// Signed requests accepted within the replay window (`seen-requests.bin`).
    seen: super::seen::SeenRequests,
    gates: [tokio::sync::Mutex<()>; 4],
    /// Writes `state.snapshot`.
    snapshots: Arc<SnapshotWriter>,
    /// The start did not load a snapshot but replayed heartbeat lines: write one soon.
    snapshot_due: bool,
}

impl JsonlStore {
    /// Opens the log directory: cuts torn tails, replays every log into memory, then starts the
    /// writers. Bad lines are reported in the returned [`ReplayReport`], never fatal.
    pub fn open(
        opts: &StoreOptions,
        bus: Arc<Bus>,
    ) -> Result<(JsonlStore, ReplayReport), StoreOpenError> {
        JsonlStore::open_feeding(opts, bus, None)
    }

    /// [`JsonlStore::open`], handing `ledger` each line of the scan log as replay reads it,
    /// so the log is read once at start for both.
    pub fn open_feeding(
        opts: &StoreOptions,
        bus: Arc<Bus>,
        mut ledger: Option<&mut crate::ledger::Leaves>,
    ) -> Result<(JsonlStore, ReplayReport), StoreOpenError> {
        let rotation = Rotation {
            max_bytes: Some(opts.heartbeats.rotate_bytes),
            every: Some(opts.heartbeats.rotate_every),
            retention: Some(opts.heartbeats.retention),
            commit_window: opts.heartbeats.commit_window,
        };
        let health = || Arc::clone(&opts.health);
        let tiers = Arc::new(
            TierFiles::open(opts.dir.join(history::files::DIR), opts.history).map_err(
                |source| StoreOpenError::Replay {
                    dir: opts.dir.join(history::files::DIR),
                    source,
                },
            )?,
        );
        let memory = Arc::new(Memory::new(opts.limits, bus, tiers.clone()));
        let snapshots =
            Arc::new(SnapshotWriter::start(&opts.dir).map_err(StoreOpenError::Snapshots)?);
        // At each rotation, on the writer: the state is then that of every line up to the
        // end of the segment just closed.
        let on_rotate: RotateHook = {
            let (memory, snapshots) = (Arc::clone(&memory), Arc::clone(&snapshots));
            Box::new(move |position| {
                drop(snapshots.submit(Captured::take(*position, &memory), "rotation"));
            })
        };
        let (mut heartbeats, OpenReport { torn_bytes }) = Journal::open_with(
            &opts.dir,
            LogName::Heartbeats,
            rotation,
            health(),
            Some(on_rotate),
        )?;
        let (mut events, _) =
            Journal::open(&opts.dir, LogName::Events, Rotation::default(), health())?;
        let (mut nodes, _) =
            Journal::open(&opts.dir, LogName::Nodes, Rotation::default(), health())?;
        let (mut commands, _) =
            Journal::open(&opts.dir, LogName::Commands, Rotation::default(), health())?;
        // Never rotated: the ledger is built over this file's lines.
        let (mut scans, _) =
            Journal::open(&opts.dir, LogName::Scans, Rotation::default(), health())?;
        if let Some(m) = &opts.observer {
            for (journal, log) in [
                (&mut heartbeats, LogName::Heartbeats),
                (&mut events, LogName::Events),
                (&mut nodes, LogName::Nodes),
                (&mut commands, LogName::Commands),
                (&mut scans, LogName::Scans),
            ] {
                journal.observe_latency(m.append_latency(log.stem()));
            }
        }
        // After the torn tail was cut: everything in the file is durable.
        let scans_durable = Arc::new(AtomicU64::new(
            std::fs::metadata(LogName::Scans.active(&opts.dir)).map_or(0, |m| m.len()),
        ));
        let seen = super::seen::SeenRequests::open(
            &opts.dir,
            opts.seen_max,
            chrono::Utc::now().timestamp(),
            Arc::clone(&opts.health),
        )
        .map_err(|source| StoreOpenError::Replay {
            dir: opts.dir.join(super::seen::FILE),
            source,
        })?;
        let replay_err = |source| StoreOpenError::Replay {
            dir: opts.dir.clone(),
            source,
        };
        let (mut report, loaded) =
            snapshot::restore_heartbeats(&opts.dir, &memory).map_err(replay_err)?;
        if let Some(position) = loaded {
            snapshots.loaded(position);
        }
        let snapshot_due = !matches!(report.snapshot, SnapshotUse::Used { .. }) && report.lines > 0;
        // Each log in its own order; no record refers across logs at replay.
        for log in [
            LogName::Events,
            LogName::Nodes,
            LogName::Commands,
            LogName::Scans,
        ] {
            let ledger = ledger.as_deref_mut().filter(|_| log == LogName::Scans);
            replay_log(&opts.dir, log, &memory, &mut report, ledger).map_err(replay_err)?;
        }
        // The snapshot holds the rollup, and the tail was rolled up with it; without one, the
        // rollup is rebuilt from the heartbeat log.
        if !matches!(report.snapshot, SnapshotUse::Used { .. }) {
            let rebuilt =
                history::rebuild_after_replay(&opts.dir, &memory, &tiers, chrono::Utc::now())
                    .map_err(replay_err)?;
            tracing::info!(
                rolled_up = rebuilt.rolled_up,
                skipped = rebuilt.skipped,
                ms = rebuilt.elapsed.as_millis() as u64,
                "Rebuilt the history rollup from the heartbeat log."
            );
        }
        // Only now: replay and the history rebuild read the segments in place, and compression
        // replaces them.
        if opts.heartbeats.zstd_level > 0 {
            heartbeats
                .compress_segments(&opts.dir, opts.heartbeats.zstd_level)
                .map_err(|source| StoreOpenError::Compress {
                    dir: opts.dir.clone(),
                    source,
                })?;
        }
        tracing::info!(
            lines = report.lines,
            nodes = report.nodes,
            skipped = report.skipped.len(),
            torn_bytes,
            ms = report.elapsed.as_millis() as u64,
            header_scan_ms = report.scan_elapsed.as_millis() as u64,
            snapshot = ?report.snapshot,
            "Replayed logs."
        );
        let backend = JsonlBackend {
            dir: opts.dir.clone(),
            memory,
            heartbeats,
            events,
            nodes,
            commands,
            scans,
            scans_durable,
            seen,
            gates: Default::default(),
            snapshots,
            snapshot_due,
        };
        Ok((LoggedStore::new(backend), report))
    }

    /// Writes the heartbeat state to `state.snapshot` now, unless the snapshot there is of the
    /// same position, and waits until it is durable (`why` names the occasion in the log).
    pub async fn write_snapshot(&self, why: &'static str) -> Result<Snapshotted, SnapshotError> {
        let b = self.backend();
        let now = b.heartbeats.at_position(|p| p.copied()).await?;
        if now.is_some() && now == b.snapshots.on_disk() && b.dir.join(snapshot::FILE).exists() {
            return Ok(Snapshotted::Unchanged);
        }
        let Some(captured) = self.capture().await? else {
            tracing::info!(
                why,
                "No state snapshot: the position in the heartbeat log is not known yet."
            );
            return Ok(Snapshotted::PositionUnknown);
        };
        match b.snapshots.submit(captured, why).await {
            Ok(Ok(w)) => Ok(Snapshotted::Written(w)),
            Ok(Err(reason)) => Err(SnapshotError::Write { reason }),
            Err(_) => Err(SnapshotError::Stopped),
        }
    }

    /// Copies the heartbeat state and where in the heartbeat log it is, on the log's writer.
    pub(crate) async fn capture(&self) -> Result<Option<Captured>, JournalError> {
        let b = self.backend();
        let memory = Arc::clone(&b.memory);
        b.heartbeats
            .at_position(move |position| position.map(|p| Captured::take(*p, &memory)))
            .await
    }

    /// Writes a snapshot every `every` until `stop` (and right away when the start replayed
    /// heartbeat lines without one). Failures are logged; the next tick tries again.
    pub async fn keep_snapshots(&self, every: Duration, stop: tokio_util::sync::CancellationToken) {
        let mut why = self
            .backend()
            .snapshot_due
            .then_some("start without a snapshot");
        loop {
            if let Some(why) = why
                && let Err(e) = self.write_snapshot(why).await
            {
                tracing::warn!(error = %e, "Cannot write the state snapshot.");
            }
            why = Some("interval");
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
        }
    }
}

/// Replays one of the small logs (everything but heartbeats) into `memory`, reporting lines
/// that do not decode or apply, and feeding the active file's lines to `ledger`.
fn replay_log(
    dir: &std::path::Path,
    log: LogName,
    memory: &Memory,
    report: &mut ReplayReport,
    mut ledger: Option<&mut crate::ledger::Leaves>,
) -> std::io::Result<()> {
    for path in logdir::files(dir, log)? {
        // Its torn tail was cut: every complete line is durable.
        let durable = match &ledger {
            Some(_) if path == log.active(dir) => std::fs::metadata(&path)?.len(),
            _ => 0,
        };
        let bytes = replay::for_each_line(&path, |line_no, offset, line| {
            if let Some(l) = ledger.as_deref_mut() {
                l.feed(offset, line, durable);
            }
            report.lines += 1;
            let outcome = Change::decode(log, line).and_then(|c| {
                memory
                    .apply(c, false)
                    .then_some(())
                    .ok_or_else(|| "a registry record that does not apply".to_string())
            });
            if let Err(reason) = outcome {
                let bad = BadLine {
                    file: path.clone(),
                    line: line_no,
                    reason,
                };
                tracing::warn!(file = %bad.file.display(), line = bad.line, reason = %bad.reason, "Skipped a bad log line.");
                report.skipped.push(bad);
            }
        })?;
        report.bytes += bytes;
        report.files += 1;
    }
    Ok(())
}

impl JsonlBackend {
    fn journal(&self, log: LogName) -> &Journal {
        match log {
            LogName::Heartbeats => &self.heartbeats,
            LogName::Events => &self.events,
            LogName::Nodes => &self.nodes,
            LogName::Commands => &self.commands,
            LogName::Scans => &self.scans,
        }
    }

    fn gate(&self, gate: Gate) -> &tokio::sync::Mutex<()> {
        &self.gates[gate as usize]
    }
}

#[async_trait]
impl Backend for JsonlBackend {
    fn memory(&self) -> &Arc<Memory> {
        &self.memory
    }

    async fn append(&self, change: Change) -> Result<(), StoreError> {
        let log = change.log();
        let line = change
            .encode()
            .map_err(|e| StoreError::Unavailable(format!("cannot encode a record: {e}")))?;
        let memory = Arc::clone(&self.memory);
        let durable =
            (log == LogName::Scans).then(|| (Arc::clone(&self.scans_durable), line.len() as u64));
        let apply = Box::new(move || {
            // Runs after the line is fsynced, in log order.
            if let Some((durable, len)) = durable {
                durable.fetch_add(len, Ordering::Release);
            }
            memory.apply(change, true);
        });
        self.journal(log)
            .append(line, Some(apply))
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))
    }

    async fn append_checked(&self, gate: Gate, check: Check) -> Result<(), StoreError> {
        let _gate = self.gate(gate).lock().await;
        for change in check(&self.memory)? {
            self.append(change).await?;
        }
        Ok(())
    }

    async fn query_log_events(&self, query: EventQuery) -> Result<Vec<EventEnvelope>, StoreError> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || events_from_log(&dir, &query))
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?
            .map_err(|e| StoreError::Unavailable(format!("reading the event log: {e}")))
    }

    fn scans_durable_len(&self) -> u64 {
        self.scans_durable.load(Ordering::Acquire)
    }

    async fn first_request(&self, digest: [u8; 32]) -> Result<super::seen::Seen, StoreError> {
        self.seen
            .first_time(digest, chrono::Utc::now().timestamp())
            .map_err(|e| {
                StoreError::Unavailable(format!("storage unavailable: {}: {e}", super::seen::FILE))
            })
    }
}

/// Answers an event query from `events.jsonl` (older events than memory holds).
fn events_from_log(dir: &std::path::Path, q: &EventQuery) -> std::io::Result<Vec<EventEnvelope>> {
    let limit = q.limit.max(1);
    let mut kept: std::collections::VecDeque<EventEnvelope> = std::collections::VecDeque::new();
    for path in logdir::files(dir, LogName::Events)? {
        replay::for_each_line(&path, |_, _, line| {
            let Some(head) = record::head(line) else {
                return;
            };
            if q.kinds
                .as_ref()
                .is_some_and(|k| !k.contains(head.kind.as_ref()))
                || q.node_id.is_some_and(|n| head.node_id != Some(n))
            {
                return;
            }
            let Ok(l) = serde_json::from_slice::<Line<EventEnvelope>>(line) else {
                return;
            };
            if !q.matches(&l.record) || !l.record.verify() {
                return;
            }
            if q.newest_first {
                if kept.len() == limit {
                    kept.pop_front();
                }
                kept.push_back(l.record);
            } else if kept.len() < limit {
                kept.push_back(l.record);
            }
        })?;
    }
    let mut v: Vec<EventEnvelope> = kept.into();
    if q.newest_first {
        v.reverse();
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Flags {
        #[command(flatten)]
        log: HeartbeatLog,
    }

    #[test]
    fn heartbeat_log_flags_refuse_a_level_out_of_range_naming_the_flag() {
        let ok = Flags::try_parse_from(["x", "--heartbeat-zstd-level", "0"]).unwrap();
        assert_eq!(ok.log.zstd_level, 0, "0 keeps segments plain");
        for bad in [
            "--heartbeat-zstd-level=20",
            "--heartbeat-zstd-level=-1",
            "--heartbeat-zstd-level=max",
        ] {
            let err = Flags::try_parse_from(["x", bad]).unwrap_err().to_string();
            assert!(err.contains("--heartbeat-zstd-level"), "{err}");
        }
        for bad in ["0s", "500ms", "1s 500ms"] {
            let err = Flags::try_parse_from(["x", "--heartbeat-rotate-every", bad])
                .unwrap_err()
                .to_string();
            assert!(err.contains("--heartbeat-rotate-every"), "{err}");
        }
    }
}
