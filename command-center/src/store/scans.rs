//! Scan reports in memory: per node, the latest report and how its fingerprint differs from the
//! one before (drift). One report per node is kept in memory; every report stays in
//! `sovereign-scans.jsonl`, the log the ledger is built over.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use uuid::Uuid;
use vaultmesh_proto::ScanReport;
use vaultmesh_proto::scan::{Drift, diff};

/// Recent scan ids remembered per node, so a retried report is stored once.
const SEEN_PER_NODE: usize = 32;

#[derive(Debug, Default)]
struct NodeScans {
    latest: Option<Arc<ScanReport>>,
    drift: Vec<Drift>,
    seen: VecDeque<Uuid>,
}

#[derive(Debug, Default)]
pub struct ScanState {
    nodes: HashMap<Uuid, NodeScans>,
}

impl ScanState {
    /// Whether `scan_id` was already stored for `node_id`.
    pub fn is_duplicate(&self, node_id: &Uuid, scan_id: &Uuid) -> bool {
        self.nodes
            .get(node_id)
            .is_some_and(|n| n.seen.contains(scan_id))
    }

    /// What applying `report` would report as drift (for the reply, before it is durable).
    pub fn drift_of(&self, report: &ScanReport) -> Vec<Drift> {
        match self
            .nodes
            .get(&report.node_id)
            .and_then(|n| n.latest.as_ref())
        {
            None => Vec::new(),
            Some(prev) => drift_between(prev, report),
        }
    }

    /// Applies a stored report (live or during replay). Reports older than the latest one
    /// (by `finished_at`) are remembered as seen but do not replace it.
    pub fn apply(&mut self, report: ScanReport) {
        let n = self.nodes.entry(report.node_id).or_default();
        if n.seen.len() == SEEN_PER_NODE {
            n.seen.pop_front();
        }
        n.seen.push_back(report.scan_id);
        if n.latest
            .as_ref()
            .is_some_and(|l| l.finished_at > report.finished_at)
        {
            return;
        }
        n.drift = match &n.latest {
            Some(prev) => drift_between(prev, &report),
            None => Vec::new(),
        };
        n.latest = Some(Arc::new(report));
    }

    pub fn latest(&self, node_id: &Uuid) -> Option<Arc<ScanReport>> {
        self.nodes.get(node_id).and_then(|n| n.latest.clone())
    }

    pub fn drift(&self, node_id: &Uuid) -> Vec<Drift> {
        self.nodes
            .get(node_id)
            .map(|n| n.drift.clone())
            .unwrap_or_default()
    }
}

/// Fingerprint differences, plus a `profile` drift when the node's OS profile changed. Only
/// categories of rules that ran in both scans without error are compared, so disabling a rule
/// or a rule failing is not mistaken for every fact disappearing.
pub fn drift_between(prev: &ScanReport, next: &ScanReport) -> Vec<Drift> {
    let comparable = |r: &ScanReport, cat: &str| {
        r.rules.iter().any(|x| x == cat) && !r.errors.iter().any(|e| e.rule == cat)
    };
    let keep = |fp: &vaultmesh_proto::Fingerprint, other: &ScanReport, this: &ScanReport| {
        fp.iter()
            .filter(|(cat, _)| comparable(other, cat) && comparable(this, cat))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<vaultmesh_proto::Fingerprint>()
    };
    let before = keep(&prev.fingerprint, next, prev);
    let after = keep(&next.fingerprint, prev, next);
    let mut out = diff(&before, &after);
    if prev.profile != next.profile {
        out.insert(
            0,
            Drift {
                category: "profile".into(),
                key: "os_profile".into(),
                before: Some(prev.profile.clone()),
                after: Some(next.profile.clone()),
            },
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(id: u128, secs: i64, facts: &[(&str, &str, &str)]) -> ScanReport {
        let t = chrono::DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap();
        let mut fingerprint = vaultmesh_proto::Fingerprint::new();
        for (c, k, v) in facts {
            fingerprint
                .entry(c.to_string())
                .or_default()
                .insert(k.to_string(), v.to_string());
        }
        ScanReport {
            scan_id: Uuid::from_u128(id),
            node_id: Uuid::from_u128(7),
            profile: "ArchVault".into(),
            started_at: t,
            finished_at: t,
            findings: vec![],
            fingerprint,
            counts: Default::default(),
            rules: vec!["files".into(), "listeners".into()],
            errors: vec![],
            truncated: false,
        }
    }

    #[test]
    fn drift_is_against_the_previous_scan_and_ignores_failed_rules() {
        let mut s = ScanState::default();
        s.apply(report(1, 0, &[("files", "/etc/passwd", "aa")]));
        assert!(
            s.drift(&Uuid::from_u128(7)).is_empty(),
            "first scan: no drift"
        );
        let mut next = report(2, 10, &[("files", "/etc/passwd", "bb")]);
        assert_eq!(s.drift_of(&next).len(), 1);
        next.profile = "DebianVault".into();
        s.apply(next);
        let d = s.drift(&Uuid::from_u128(7));
        assert_eq!(
            d.iter().map(|d| d.category.as_str()).collect::<Vec<_>>(),
            ["profile", "files"]
        );
        // The files rule failing in the next scan is not "every file disappeared".
        let mut failed = report(3, 20, &[]);
        failed.profile = "DebianVault".into();
        failed.errors.push(vaultmesh_proto::scan::RuleError {
            rule: "files".into(),
            error: "time budget spent".into(),
        });
        s.apply(failed);
        assert!(s.drift(&Uuid::from_u128(7)).is_empty());
        assert!(s.is_duplicate(&Uuid::from_u128(7), &Uuid::from_u128(2)));
        // An older report arriving late does not replace the latest.
        s.apply(report(4, 5, &[]));
        assert_eq!(
            s.latest(&Uuid::from_u128(7)).unwrap().scan_id,
            Uuid::from_u128(3)
        );
    }
}
