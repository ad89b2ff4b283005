//! Scan reports in memory: per node, the latest report (by arrival) and its drift. One report
//! per node is kept, plus a **baseline**: for each fact category, the facts of the last scan
//! in which its rule finished. Drift compares a new report's complete categories with that
//! baseline, so a change is reported even when a scan in between was partial. Every report
//! stays in `sovereign-scans.jsonl`, the log the ledger is built over.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use uuid::Uuid;
use vaultmesh_proto::scan::{Drift, diff};
use vaultmesh_proto::{Fingerprint, ScanReport};

/// Recent scan ids remembered per node, so a retried report is stored once.
const SEEN_PER_NODE: usize = 32;

#[derive(Debug, Default)]
struct NodeScans {
    latest: Option<Arc<ScanReport>>,
    /// Shared, not copied: every attention pass over the node reads it.
    drift: Arc<[Drift]>,
    seen: VecDeque<Uuid>,
    baseline: Fingerprint,
}

#[derive(Debug, Default)]
pub struct ScanState {
    nodes: HashMap<Uuid, NodeScans>,
}

/// The fact categories of `report` whose rule finished (a category is named after its rule).
fn complete_categories(report: &ScanReport) -> BTreeSet<&str> {
    report
        .rules
        .iter()
        .map(String::as_str)
        .chain(report.fingerprint.keys().map(String::as_str))
        .filter(|c| report.rules.iter().any(|r| r == c))
        .filter(|c| !report.errors.iter().any(|e| e.rule == *c))
        .collect()
}

/// `report`'s drift against a node's baseline and previous profile.
fn drift_against(n: &NodeScans, report: &ScanReport) -> Vec<Drift> {
    let mut out = Vec::new();
    if let Some(prev) = &n.latest
        && prev.profile != report.profile
    {
        out.push(Drift {
            category: "profile".into(),
            key: "os_profile".into(),
            before: Some(prev.profile.clone()),
            after: Some(report.profile.clone()),
        });
    }
    let empty = BTreeMap::new();
    for cat in complete_categories(report) {
        let Some(base) = n.baseline.get(cat) else {
            continue; // first complete run of this rule: nothing to compare with
        };
        let now = report.fingerprint.get(cat).unwrap_or(&empty);
        let before: Fingerprint = [(cat.to_string(), base.clone())].into();
        let after: Fingerprint = [(cat.to_string(), now.clone())].into();
        out.extend(diff(&before, &after));
    }
    out
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
        self.nodes
            .get(&report.node_id)
            .map(|n| drift_against(n, report))
            .unwrap_or_default()
    }

    /// Applies a stored report (live, or during replay in log order): it becomes the latest.
    pub fn apply(&mut self, report: ScanReport) {
        self.apply_with(report, None);
    }

    /// [`ScanState::apply`] with the drift already computed by [`ScanState::drift_of`] (the
    /// live path, serialized per store, computes it once for the reply and the state).
    pub fn apply_with(&mut self, report: ScanReport, drift: Option<Vec<Drift>>) {
        let n = self.nodes.entry(report.node_id).or_default();
        if n.seen.len() == SEEN_PER_NODE {
            n.seen.pop_front();
        }
        n.seen.push_back(report.scan_id);
        n.drift = drift.unwrap_or_else(|| drift_against(n, &report)).into();
        let complete: Vec<String> = complete_categories(&report)
            .into_iter()
            .map(str::to_string)
            .collect();
        for cat in complete {
            let facts = report.fingerprint.get(&cat).cloned().unwrap_or_default();
            n.baseline.insert(cat, facts);
        }
        n.latest = Some(Arc::new(report));
    }

    pub fn latest(&self, node_id: &Uuid) -> Option<Arc<ScanReport>> {
        self.nodes.get(node_id).and_then(|n| n.latest.clone())
    }

    pub fn drift(&self, node_id: &Uuid) -> Arc<[Drift]> {
        self.nodes
            .get(node_id)
            .map(|n| Arc::clone(&n.drift))
            .unwrap_or_default()
    }
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
    fn drift_is_against_the_last_complete_run_of_each_rule() {
        let node = Uuid::from_u128(7);
        let mut s = ScanState::default();
        s.apply(report(1, 0, &[("files", "/etc/passwd", "aa")]));
        assert!(s.drift(&node).is_empty(), "first scan: no drift");
        let mut next = report(2, 10, &[("files", "/etc/passwd", "bb")]);
        assert_eq!(s.drift_of(&next).len(), 1);
        next.profile = "DebianVault".into();
        s.apply(next);
        let d = s.drift(&node);
        assert_eq!(
            d.iter().map(|d| d.category.as_str()).collect::<Vec<_>>(),
            ["profile", "files"]
        );
        // The files rule failing is not "every file disappeared"...
        let mut failed = report(3, 20, &[]);
        failed.profile = "DebianVault".into();
        failed.errors.push(vaultmesh_proto::scan::RuleError {
            rule: "files".into(),
            error: "time budget spent".into(),
        });
        s.apply(failed);
        assert!(s.drift(&node).is_empty());
        // ... and a change across the partial scan is still reported.
        let mut after = report(4, 30, &[("files", "/etc/passwd", "cc")]);
        after.profile = "DebianVault".into();
        s.apply(after);
        let d = s.drift(&node);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(
            (d[0].before.as_deref(), d[0].after.as_deref()),
            (Some("bb"), Some("cc"))
        );
        assert!(s.is_duplicate(&node, &Uuid::from_u128(2)));
        // Arrival order decides the latest, not the node's clock.
        s.apply(report(5, -1_000_000, &[("files", "/etc/passwd", "cc")]));
        assert_eq!(s.latest(&node).unwrap().scan_id, Uuid::from_u128(5));
    }
}
