//! Rebuilding the rollup from the heartbeat log when no snapshot holds it: at the first start
//! over a log directory from a release without history tiers (every retained heartbeat is
//! rolled up, and the closed buckets stored), or after a lost snapshot (only each node's lines
//! from the start of its oldest bucket not yet stored).

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;
use vaultmesh_proto::{CheckStatus, Metrics};

use crate::logdir::{self, LogName};
use crate::memory::Memory;
use crate::record::{self, kind};
use crate::replay::{Broken, for_each_line_tolerant};

/// How often a long rebuild says it is still going.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// What a rebuild read.
#[derive(Debug, Clone, Default)]
pub struct RebuildReport {
    /// Heartbeat lines rolled up.
    pub rolled_up: u64,
    /// Lines before their node's floor, skipped unparsed.
    pub skipped: u64,
    pub elapsed: Duration,
}

#[derive(Deserialize)]
struct Sampled {
    record: SampledHeartbeat,
}

#[derive(Deserialize)]
struct SampledHeartbeat {
    #[serde(default)]
    metrics: Option<Metrics>,
    #[serde(default)]
    checks: Vec<SampledCheck>,
}

#[derive(Deserialize)]
struct SampledCheck {
    status: CheckStatus,
}

/// Feeds every heartbeat line of `files`, each from its offset (the tail after a snapshot), into
/// `memory`'s rollup, in order.
pub fn roll_up_files(
    files: &[(std::path::PathBuf, u64)],
    memory: &Memory,
) -> std::io::Result<RebuildReport> {
    let started = Instant::now();
    let mut report = RebuildReport::default();
    let mut statuses = Vec::new();
    for (path, start) in files {
        let read = for_each_line_tolerant(path, *start, |_, _, line| {
            let Some(head) = record::head(line) else {
                return;
            };
            let (Some(node), true) = (head.node_id, head.kind == kind::HEARTBEAT) else {
                return;
            };
            let Some(ts) = head.time() else { return };
            let Ok(s) = serde_json::from_slice::<Sampled>(line) else {
                return;
            };
            statuses.clear();
            statuses.extend(s.record.checks.iter().map(|c| c.status));
            memory.roll_up(node, ts, s.record.metrics.as_ref(), &statuses);
            report.rolled_up += 1;
        })?;
        broken(path, read);
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Feeds every heartbeat line of `dir` received at or after its node's `floor` (Unix seconds)
/// into `memory`'s rollup, in log order, storing the buckets it closes.
pub fn roll_up_log(
    dir: &Path,
    memory: &Memory,
    floor: &HashMap<Uuid, i64>,
) -> std::io::Result<RebuildReport> {
    let started = Instant::now();
    let mut report = RebuildReport::default();
    let mut statuses = Vec::new();
    let mut told = Instant::now();
    for path in logdir::files(dir, LogName::Heartbeats)? {
        let read = for_each_line_tolerant(&path, 0, |_, _, line| {
            let Some(head) = record::head(line) else {
                return;
            };
            let (Some(node), true) = (head.node_id, head.kind == kind::HEARTBEAT) else {
                return;
            };
            let Some(ts) = head.time() else { return };
            // Nodes the fleet does not hold (over --max-nodes) are not rolled up.
            if floor.get(&node).is_none_or(|f| ts.timestamp() < *f) {
                report.skipped += 1;
                return;
            }
            // Unreadable lines are reported by the fleet's replay; here they are skipped.
            if roll_up_line(memory, node, ts, line, &mut statuses) {
                report.rolled_up += 1;
            }
            // A first start over a long log takes a while: systemd must not give up on it.
            if report.rolled_up.is_multiple_of(4096) && told.elapsed() >= PROGRESS_EVERY {
                told = Instant::now();
                let status = format!("rolling up history: {} heartbeats", report.rolled_up);
                tracing::info!("{status}");
                vaultmesh_process::service::notify_progress(&status, PROGRESS_EVERY * 6);
            }
        })?;
        broken(&path, read);
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// A compressed segment damaged on disk is rolled up as far as it reads; the fleet's replay
/// reports the damage as a skipped line (a warning), so here it is only noted.
fn broken(path: &Path, read: Result<u64, Broken>) {
    if let Err(b) = read {
        tracing::debug!(file = %path.display(), line = b.line, reason = %b.reason, "History rollup: segment read up to its damage.");
    }
}

/// Rolls up one heartbeat record line (as the log holds it) of `node`, received at `ts`,
/// parsing only its measurements; `statuses` is scratch space. False if the line is not a
/// readable heartbeat.
pub fn roll_up_line(
    memory: &Memory,
    node: Uuid,
    ts: DateTime<Utc>,
    line: &[u8],
    statuses: &mut Vec<CheckStatus>,
) -> bool {
    let Ok(s) = serde_json::from_slice::<Sampled>(line) else {
        return false;
    };
    statuses.clear();
    statuses.extend(s.record.checks.iter().map(|c| c.status));
    memory.roll_up(node, ts, s.record.metrics.as_ref(), statuses);
    true
}
