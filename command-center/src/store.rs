//! Fleet state in memory: per node, the latest heartbeat, a bounded history and counters.
//!
//! The map is the seed's `Arc<RwLock<HashMap<Uuid, NodeState>>>`, hidden behind [`Store`] so the
//! durable append-only log can slot in underneath without touching a handler. Locks are held
//! only to copy data in or out, never across an `.await`.

use std::collections::{HashMap, VecDeque};
use std::sync::RwLock;

use chrono::{DateTime, Utc};
use uuid::Uuid;
use vaultmesh_proto::api::HistoryPoint;
use vaultmesh_proto::{CheckStatus, NodeDetail, NodeHeartbeat, NodeSummary};

/// Limits that keep memory bounded whatever the agents send.
#[derive(Debug, Clone, Copy)]
pub struct StoreLimits {
    /// History points kept per node.
    pub history_len: usize,
    /// Distinct nodes tracked; heartbeats from further new nodes are refused.
    pub max_nodes: usize,
}

impl Default for StoreLimits {
    fn default() -> Self {
        StoreLimits {
            history_len: 240,
            max_nodes: 10_000,
        }
    }
}

/// Everything known about one node.
#[derive(Debug, Clone)]
pub struct NodeState {
    pub latest: NodeHeartbeat,
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
            os_profile: hb.os_profile.clone(),
            last_seen: self.last_seen,
            cloudflare_ok: hb.cloudflare_ok,
            services_ok: hb.services_ok,
            agent_version: hb.agent_version.clone(),
            load1: m.and_then(|m| m.load).map(|l| l[0]),
            cpu_count: m.and_then(|m| m.cpu_count),
            mem_used_pct: m.and_then(|m| m.mem_used_pct()),
            disk_max_used_pct: fullest.map(|f| f.1),
            disk_max_mount: fullest.map(|f| f.0.to_string()),
            worst_check: worst_check(hb),
            heartbeats: self.heartbeats,
        }
    }
}

fn worst_check(hb: &NodeHeartbeat) -> Option<CheckStatus> {
    hb.checks
        .iter()
        .map(|c| c.status)
        .reduce(CheckStatus::worst)
}

fn history_point(hb: &NodeHeartbeat, received_at: DateTime<Utc>) -> HistoryPoint {
    let m = hb.metrics.as_ref();
    HistoryPoint {
        received_at,
        timestamp: hb.timestamp,
        cloudflare_ok: hb.cloudflare_ok,
        services_ok: hb.services_ok,
        load1: m.and_then(|m| m.load).map(|l| l[0]),
        mem_used_pct: m.and_then(|m| m.mem_used_pct()),
        disk_max_used_pct: m.and_then(|m| m.fullest_disk()).map(|f| f.1),
        worst_check: worst_check(hb),
    }
}

/// Why the store refused a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("this Command Center already tracks {0} nodes, its limit")]
    NodeLimit(usize),
}

/// The fleet's state.
#[derive(Debug, Default)]
pub struct Store {
    nodes: RwLock<HashMap<Uuid, NodeState>>,
    limits: StoreLimits,
}

impl Store {
    pub fn new(limits: StoreLimits) -> Self {
        Store {
            nodes: RwLock::new(HashMap::new()),
            limits,
        }
    }

    /// Records a validated heartbeat received at `received_at`.
    pub fn record_heartbeat(
        &self,
        hb: NodeHeartbeat,
        received_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let point = history_point(&hb, received_at);
        let mut nodes = self.nodes.write().unwrap_or_else(|p| p.into_inner());
        let len = nodes.len();
        match nodes.get_mut(&hb.node_id) {
            Some(state) => {
                if state.history.len() >= self.limits.history_len {
                    state.history.pop_front();
                }
                state.history.push_back(point);
                state.latest = hb;
                state.last_seen = received_at;
                state.heartbeats += 1;
            }
            None => {
                if len >= self.limits.max_nodes {
                    return Err(StoreError::NodeLimit(self.limits.max_nodes));
                }
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
        Ok(())
    }

    /// One summary per node, sorted by hostname then id (stable for pages and tests).
    pub fn summaries(&self) -> Vec<NodeSummary> {
        let nodes = self.nodes.read().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<_> = nodes.iter().map(|(id, s)| s.summary(*id)).collect();
        v.sort_by(|a, b| a.hostname.cmp(&b.hostname).then(a.node_id.cmp(&b.node_id)));
        v
    }

    /// Summary, latest heartbeat and history of one node.
    pub fn detail(&self, node_id: Uuid) -> Option<NodeDetail> {
        let nodes = self.nodes.read().unwrap_or_else(|p| p.into_inner());
        nodes.get(&node_id).map(|s| NodeDetail {
            summary: s.summary(node_id),
            latest: s.latest.clone(),
            history: s.history.iter().cloned().collect(),
        })
    }

    pub fn node_count(&self) -> usize {
        self.nodes.read().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        }
    }

    #[test]
    fn latest_wins_and_history_is_bounded() {
        let store = Store::new(StoreLimits {
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
        let store = Store::default();
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
        let store = Store::new(StoreLimits {
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
