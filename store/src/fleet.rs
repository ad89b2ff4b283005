//! Fleet state in memory: per node, the latest heartbeat, a bounded history and counters.
//!
//! The map is the seed's `Arc<RwLock<HashMap<Uuid, NodeState>>>`. It is what a store serves
//! reads from; the durable log underneath rebuilds it on start. Locks are held only to copy data
//! in or out, never across an `.await`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use uuid::Uuid;
use vaultmesh_proto::api::HistoryPoint;
use vaultmesh_proto::{CheckStatus, Metrics, NodeDetail, NodeHeartbeat, NodeSummary};

use super::{StoreError, StoreLimits};

/// What a node's latest heartbeat measured, as the per-node metrics show it
/// ([`Fleet::summaries_with_latest`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LatestMeasures {
    pub agent_version: Option<String>,
    pub uptime_s: Option<u64>,
    pub metrics: Option<Metrics>,
    /// Each check's name and latest verdict, in the heartbeat's order.
    pub checks: Vec<(String, CheckStatus)>,
}

impl LatestMeasures {
    pub fn of(hb: &NodeHeartbeat) -> LatestMeasures {
        LatestMeasures {
            agent_version: hb.agent_version.clone(),
            uptime_s: hb.uptime_s,
            metrics: hb.metrics.clone(),
            checks: hb
                .checks
                .iter()
                .map(|c| (c.name.clone(), c.status))
                .collect(),
        }
    }
}

/// Everything known about one node.
#[derive(Debug, Clone)]
pub struct NodeState {
    /// Shared, not copied: an attention pass and a snapshot's capture take a reference (a
    /// detail read too, copying it for its reply after the lock is let go).
    pub latest: Arc<NodeHeartbeat>,
    /// When the Command Center received `latest`.
    pub last_seen: DateTime<Utc>,
    pub history: VecDeque<HistoryPoint>,
    pub heartbeats: u64,
}

impl NodeState {
    pub fn summary(&self, node_id: Uuid) -> NodeSummary {
        let hb = &self.latest;
        let m = hb.metrics.as_ref();
        let fullest = m.and_then(|m| m.fullest_disk());
        NodeSummary {
            node_id,
            hostname: hb.hostname.clone(),
            hostname_shared: false,
            os_profile: hb.os_profile.clone(),
            last_seen: self.last_seen,
            cloudflare_ok: hb.cloudflare_ok,
            services_ok: hb.services_ok,
            services: hb.services(),
            agent_version: hb.agent_version.clone(),
            load1: m.and_then(|m| m.load).map(|l| l[0]),
            cpu_count: m.and_then(|m| m.cpu_count),
            mem_used_pct: m.and_then(|m| m.mem_used_pct()),
            disk_max_used_pct: fullest.map(|f| f.1),
            disk_max_mount: fullest.map(|f| f.0.to_string()),
            worst_check: worst_check(hb),
            checks_not_ok: {
                let mut bad: Vec<_> = hb
                    .checks
                    .iter()
                    .filter(|c| c.status != CheckStatus::Ok)
                    .collect();
                bad.sort_by_key(|c| std::cmp::Reverse(c.status.severity()));
                bad.iter()
                    .map(|c| format!("{}: {}", c.name, c.status))
                    .collect()
            },
            heartbeats: self.heartbeats,
            receipt_chain_ok: None,
            attention: Default::default(),
            last_scan: None,
            revoked: None,
            labels: hb.labels.clone(),
            display_name: None,
        }
    }
}

fn worst_check(hb: &NodeHeartbeat) -> Option<CheckStatus> {
    hb.checks
        .iter()
        .map(|c| c.status)
        .reduce(CheckStatus::worst)
}

pub(crate) fn history_point(hb: &NodeHeartbeat, received_at: DateTime<Utc>) -> HistoryPoint {
    let parts = PointParts {
        timestamp: hb.timestamp,
        cloudflare_ok: hb.cloudflare_ok,
        services_ok: hb.services_ok,
        metrics: hb.metrics.as_ref(),
        worst_check: worst_check(hb),
    };
    parts.point(received_at)
}

/// What a history point is made of; replay fills it without parsing a whole heartbeat.
#[derive(Debug)]
pub struct PointParts<'a> {
    pub timestamp: DateTime<Utc>,
    pub cloudflare_ok: bool,
    pub services_ok: bool,
    pub metrics: Option<&'a Metrics>,
    pub worst_check: Option<CheckStatus>,
}

impl PointParts<'_> {
    pub fn point(&self, received_at: DateTime<Utc>) -> HistoryPoint {
        let m = self.metrics;
        HistoryPoint {
            received_at,
            timestamp: self.timestamp,
            cloudflare_ok: self.cloudflare_ok,
            services_ok: self.services_ok,
            load1: m.and_then(|m| m.load).map(|l| l[0]),
            mem_used_pct: m.and_then(|m| m.mem_used_pct()),
            disk_max_used_pct: m.and_then(|m| m.fullest_disk()).map(|f| f.1),
            worst_check: self.worst_check,
        }
    }
}

/// The fleet's state.
#[derive(Debug, Default)]
pub struct FleetState {
    nodes: RwLock<HashMap<Uuid, NodeState>>,
    /// How many nodes report each hostname (taken after `nodes`, never before).
    hostnames: std::sync::Mutex<HashMap<String, u32>>,
    limits: StoreLimits,
}

impl FleetState {
    pub fn new(limits: StoreLimits) -> Self {
        FleetState {
            nodes: RwLock::new(HashMap::new()),
            hostnames: std::sync::Mutex::default(),
            limits,
        }
    }

    /// Whether a heartbeat from `node_id` would be accepted (the node limit).
    pub fn admits(&self, node_id: Uuid) -> Result<(), StoreError> {
        let nodes = self.nodes.read().unwrap_or_else(|p| p.into_inner());
        if nodes.len() >= self.limits.max_nodes && !nodes.contains_key(&node_id) {
            return Err(StoreError::NodeLimit(self.limits.max_nodes));
        }
        Ok(())
    }

    /// Applies a heartbeat already admitted (and, with a durable store, already logged).
    pub fn apply_heartbeat(&self, hb: NodeHeartbeat, received_at: DateTime<Utc>) {
        let point = history_point(&hb, received_at);
        let hb = Arc::new(hb);
        let mut replaced = None;
        let mut nodes = self.nodes.write().unwrap_or_else(|p| p.into_inner());
        let before = nodes.get(&hb.node_id).map(|s| s.latest.hostname.as_str());
        self.rename(before, &hb.hostname);
        match nodes.get_mut(&hb.node_id) {
            Some(state) => {
                if state.history.len() >= self.limits.history_len {
                    state.history.pop_front();
                }
                state.history.push_back(point);
                // The heartbeat it replaces is freed after the lock is let go.
                replaced = Some(std::mem::replace(&mut state.latest, hb));
                state.last_seen = received_at;
                state.heartbeats += 1;
            }
            None => {
                let mut history = VecDeque::with_capacity(self.limits.history_len.min(16));
                history.push_back(point);
                nodes.insert(
                    hb.node_id,
                    NodeState {
                        latest: hb,
                        last_seen: received_at,
                        history,
                        heartbeats: 1,
                    },
                );
            }
        }
        drop(nodes);
        drop(replaced);
    }

    /// Installs a node rebuilt by replay: its latest heartbeat and when it was received, its
    /// history (oldest first; trimmed to `history_len`) and its total heartbeat count.
    pub fn restore_node(
        &self,
        latest: impl Into<Arc<NodeHeartbeat>>,
        last_seen: DateTime<Utc>,
        mut history: VecDeque<HistoryPoint>,
        total: u64,
    ) {
        let latest = latest.into();
        while history.len() > self.limits.history_len {
            history.pop_front();
        }
        let mut nodes = self.nodes.write().unwrap_or_else(|p| p.into_inner());
        let before = nodes
            .get(&latest.node_id)
            .map(|s| s.latest.hostname.as_str());
        self.rename(before, &latest.hostname);
        nodes.insert(
            latest.node_id,
            NodeState {
                latest,
                last_seen,
                history,
                heartbeats: total,
            },
        );
    }

    /// A copy of every node's state, taken under the read lock (what a snapshot holds); the
    /// latest heartbeats are shared, not copied (a stored heartbeat never changes).
    pub fn capture(&self) -> Vec<(Uuid, NodeState)> {
        let nodes = self.nodes.read().unwrap_or_else(|p| p.into_inner());
        nodes.iter().map(|(id, s)| (*id, s.clone())).collect()
    }

    /// Counts a node's hostname as `now` instead of `before` (`None`: a new node). Unchanged
    /// spelling is nothing to do; names that differ only as [`name_key`] ignores still move
    /// between equal keys, which is harmless.
    fn rename(&self, before: Option<&str>, now: &str) {
        if before == Some(now) {
            return;
        }
        let mut names = self.hostnames.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = before.map(name_key)
            && let Some(n) = names.get_mut(&b)
        {
            *n -= 1;
            if *n == 0 {
                names.remove(&b);
            }
        }
        *names.entry(name_key(now)).or_default() += 1;
    }

    /// Whether more than one node reports `hostname` (as [`name_key`] compares names).
    fn shared(&self, hostname: &str) -> bool {
        self.hostnames
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&name_key(hostname))
            .is_some_and(|n| *n > 1)
    }

    pub fn limits(&self) -> StoreLimits {
        self.limits
    }

    /// One summary per node, sorted by hostname then id (stable for pages and tests).
    pub fn summaries(&self) -> Vec<NodeSummary> {
        let nodes = self.nodes.read().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<_> = nodes.iter().map(|(id, s)| s.summary(*id)).collect();
        v.sort_by(|a, b| a.hostname.cmp(&b.hostname).then(a.node_id.cmp(&b.node_id)));
        for s in &mut v {
            s.hostname_shared = self.shared(&s.hostname);
        }
        v
    }

    /// [`Fleet::summaries`], each with what the node's latest heartbeat measured (for the
    /// per-node metrics): a copy of its measurements and its checks' names and statuses, not of
    /// the checks' summaries, metrics and details, which are most of a heartbeat's bytes.
    pub fn summaries_with_latest(&self) -> Vec<(NodeSummary, LatestMeasures)> {
        let nodes = self.nodes.read().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<_> = nodes
            .iter()
            .map(|(id, s)| (s.summary(*id), LatestMeasures::of(&s.latest)))
            .collect();
        drop(nodes);
        v.sort_by(|(a, _), (b, _)| a.hostname.cmp(&b.hostname).then(a.node_id.cmp(&b.node_id)));
        for (s, _) in &mut v {
            s.hostname_shared = self.shared(&s.hostname);
        }
        v
    }

    /// Summary, latest heartbeat and history of one node.
    pub fn detail(&self, node_id: Uuid) -> Option<NodeDetail> {
        let (summary, latest, history) = {
            let nodes = self.nodes.read().unwrap_or_else(|p| p.into_inner());
            let s = nodes.get(&node_id)?;
            let summary = NodeSummary {
                hostname_shared: self.shared(&s.latest.hostname),
                ..s.summary(node_id)
            };
            (summary, Arc::clone(&s.latest), s.history.clone())
        };
        // The heartbeat is copied for the reply after the lock is let go.
        Some(NodeDetail {
            summary,
            latest: NodeHeartbeat::clone(&latest),
            history: history.into(),
            incidents: Vec::new(),
            latest_scan: None,
            drift: Vec::new(),
        })
    }

    /// The latest heartbeat of one node, when it arrived, and how many arrived in all.
    pub fn latest(&self, node_id: Uuid) -> Option<(Arc<NodeHeartbeat>, DateTime<Utc>, u64)> {
        let nodes = self.nodes.read().unwrap_or_else(|p| p.into_inner());
        nodes
            .get(&node_id)
            .map(|s| (s.latest.clone(), s.last_seen, s.heartbeats))
    }

    /// Every node's id.
    pub fn node_ids(&self) -> Vec<Uuid> {
        let nodes = self.nodes.read().unwrap_or_else(|p| p.into_inner());
        nodes.keys().copied().collect()
    }

    /// The most recent `last_seen` across the fleet.
    pub fn newest_seen(&self) -> Option<DateTime<Utc>> {
        let nodes = self.nodes.read().unwrap_or_else(|p| p.into_inner());
        nodes.values().map(|s| s.last_seen).max()
    }

    /// The summary of one node.
    pub fn summary(&self, node_id: Uuid) -> Option<NodeSummary> {
        let nodes = self.nodes.read().unwrap_or_else(|p| p.into_inner());
        let mut s = nodes.get(&node_id).map(|s| s.summary(node_id))?;
        s.hostname_shared = self.shared(&s.hostname);
        Some(s)
    }

    pub fn node_count(&self) -> usize {
        self.nodes.read().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// How hostnames are compared for "same name": DNS names are case-insensitive and a trailing
/// dot names the same host, so `Vault-01`, `vault-01` and `vault-01.` are one name.
fn name_key(hostname: &str) -> String {
    hostname.trim_end_matches('.').to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{StoreError, StoreLimits};

    impl FleetState {
        /// What a store does with a heartbeat: admit, then apply.
        fn record_heartbeat(&self, hb: NodeHeartbeat, at: DateTime<Utc>) -> Result<(), StoreError> {
            self.admits(hb.node_id)?;
            self.apply_heartbeat(hb, at);
            Ok(())
        }
    }
    use vaultmesh_proto::{CheckResult, DiskUsage, Metrics};

    fn hb(id: u128, host: &str) -> NodeHeartbeat {
        NodeHeartbeat {
            node_id: Uuid::from_u128(id),
            hostname: host.into(),
            os_profile: "ArchVault".into(),
            cloudflare_ok: true,
            services_ok: true,
            vaultmesh_root: "/var/lib/vaultmesh".into(),
            timestamp: Utc::now(),
            agent_version: None,
            seq: None,
            uptime_s: None,
            metrics: None,
            checks: vec![],
            last_scan: None,
            labels: Default::default(),
        }
    }

    #[test]
    fn latest_wins_and_history_is_bounded() {
        let store = FleetState::new(StoreLimits {
            history_len: 3,
            max_nodes: 10,
        });
        for i in 0..5 {
            let mut h = hb(1, "a");
            h.seq = Some(i.to_string());
            store.record_heartbeat(h, Utc::now()).unwrap();
        }
        let d = store.detail(Uuid::from_u128(1)).unwrap();
        assert_eq!(d.latest.seq.as_deref(), Some("4"));
        assert_eq!(d.history.len(), 3);
        assert_eq!(d.summary.heartbeats, 5);
    }

    #[test]
    fn summaries_carry_key_metrics_sorted_by_hostname() {
        let store = FleetState::default();
        let mut h = hb(2, "b-node");
        h.metrics = Some(Metrics {
            load: Some([1.5, 1.0, 0.5]),
            cpu_count: Some(4),
            mem_total_bytes: Some(200),
            mem_used_bytes: Some(50),
            disks: vec![
                DiskUsage {
                    mount: "/".into(),
                    fs: "ext4".into(),
                    total_bytes: 10,
                    used_bytes: 5,
                    inodes_total: None,
                    inodes_used: None,
                },
                DiskUsage {
                    mount: "/srv".into(),
                    fs: "xfs".into(),
                    total_bytes: 10,
                    used_bytes: 9,
                    inodes_total: None,
                    inodes_used: None,
                },
            ],
            ..Metrics::default()
        });
        h.checks = vec![
            CheckResult::new("disk", CheckStatus::Warn, "x"),
            CheckResult::new("load", CheckStatus::Ok, "y"),
        ];
        store.record_heartbeat(h, Utc::now()).unwrap();
        store.record_heartbeat(hb(1, "a-node"), Utc::now()).unwrap();
        let s = store.summaries();
        assert_eq!(
            s.iter().map(|s| s.hostname.as_str()).collect::<Vec<_>>(),
            ["a-node", "b-node"]
        );
        let b = &s[1];
        assert_eq!(
            (b.load1, b.cpu_count, b.mem_used_pct),
            (Some(1.5), Some(4), Some(25.0))
        );
        assert_eq!(
            (b.disk_max_used_pct, b.disk_max_mount.as_deref()),
            (Some(90.0), Some("/srv"))
        );
        assert_eq!(b.worst_check, Some(CheckStatus::Warn));
        assert_eq!(s[0].worst_check, None);
    }

    #[test]
    fn node_limit_refuses_new_nodes_but_not_known_ones() {
        let store = FleetState::new(StoreLimits {
            history_len: 3,
            max_nodes: 1,
        });
        store.record_heartbeat(hb(1, "a"), Utc::now()).unwrap();
        assert_eq!(
            store.record_heartbeat(hb(2, "b"), Utc::now()),
            Err(StoreError::NodeLimit(1))
        );
        store.record_heartbeat(hb(1, "a"), Utc::now()).unwrap();
        assert_eq!(store.node_count(), 1);
    }
}
