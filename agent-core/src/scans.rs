//! The scan outbox: where a scanning check hands its [`ScanReport`] for delivery.
//!
//! Checks put reports here through [`crate::CheckContext::scans`]; the runtime sends the pending
//! one to `POST /api/agent/scans` (retrying on the next heartbeat tick if the Command Center is
//! unreachable) and the heartbeat builder copies [`ScanOutbox::last_scan`] into `last_scan`.
//!
//! Only the newest unsent report is kept: a newer scan supersedes an older one that never got
//! through, so a long outage costs memory for one report, not one per interval. When a state
//! directory is given, the pending report is also written there (`scan.pending.json`, mode
//! 0600) so it survives an agent restart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use vaultmesh_proto::ScanReport;
use vaultmesh_proto::heartbeat::LastScan;

const PENDING_FILE: &str = "scan.pending.json";

#[derive(Debug, Default)]
struct Inner {
    pending: Option<ScanReport>,
    last: Option<LastScan>,
}

/// Shared, cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct ScanOutbox {
    inner: Arc<Mutex<Inner>>,
    state_dir: Option<PathBuf>,
}

impl ScanOutbox {
    /// An outbox that keeps its report in memory only (`checks run`, tests).
    pub fn in_memory() -> ScanOutbox {
        ScanOutbox::default()
    }

    /// An outbox persisted under `state_dir`; picks up a report left pending by a previous run.
    pub fn persistent(state_dir: &Path) -> ScanOutbox {
        let outbox = ScanOutbox {
            inner: Arc::default(),
            state_dir: Some(state_dir.to_path_buf()),
        };
        let path = state_dir.join(PENDING_FILE);
        if let Ok(text) = std::fs::read_to_string(&path) {
            match serde_json::from_str::<ScanReport>(&text) {
                Ok(r) => {
                    let mut g = outbox.lock();
                    g.last = Some(r.last_scan());
                    g.pending = Some(r);
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "Ignoring an unreadable pending scan report.");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        outbox
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `report` for delivery, replacing any older unsent one.
    pub fn submit(&self, report: ScanReport) {
        if let Some(dir) = &self.state_dir {
            let text = serde_json::to_string(&report).unwrap_or_default();
            if let Err(e) = crate::identity::write_private(dir, PENDING_FILE, &text) {
                tracing::warn!(error = %e, "Cannot persist the pending scan report; keeping it in memory.");
            }
        }
        let mut g = self.lock();
        g.last = Some(report.last_scan());
        g.pending = Some(report);
    }

    /// The report waiting to be sent.
    pub fn pending(&self) -> Option<ScanReport> {
        self.lock().pending.clone()
    }

    /// Forgets the pending report if it is still `scan_id` (a newer one may have replaced it).
    pub fn mark_sent(&self, scan_id: uuid::Uuid) {
        let mut g = self.lock();
        if g.pending.as_ref().is_some_and(|r| r.scan_id == scan_id) {
            g.pending = None;
            if let Some(dir) = &self.state_dir {
                let _ = std::fs::remove_file(dir.join(PENDING_FILE));
            }
        }
    }

    /// The newest scan, sent or not, for the heartbeat.
    pub fn last_scan(&self) -> Option<LastScan> {
        self.lock().last.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(id: u128) -> ScanReport {
        let t = chrono::Utc::now();
        ScanReport {
            scan_id: uuid::Uuid::from_u128(id),
            node_id: uuid::Uuid::nil(),
            profile: "Generic".into(),
            started_at: t,
            finished_at: t,
            findings: vec![],
            fingerprint: Default::default(),
            counts: Default::default(),
            rules: vec![],
            errors: vec![],
            truncated: false,
        }
    }

    #[test]
    fn newest_report_wins_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let o = ScanOutbox::persistent(dir.path());
        o.submit(report(1));
        o.submit(report(2));
        o.mark_sent(uuid::Uuid::from_u128(1)); // stale id: no effect
        let again = ScanOutbox::persistent(dir.path());
        assert_eq!(again.pending().unwrap().scan_id, uuid::Uuid::from_u128(2));
        again.mark_sent(uuid::Uuid::from_u128(2));
        assert!(again.pending().is_none());
        assert!(again.last_scan().is_some(), "last_scan outlives delivery");
        assert!(ScanOutbox::persistent(dir.path()).pending().is_none());
    }
}
