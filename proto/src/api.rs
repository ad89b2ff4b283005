//! Bodies of the Command Center's HTTP API (requests other than heartbeats, and responses).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::check::CheckStatus;
use crate::heartbeat::NodeHeartbeat;

/// Every error response: `{"error": "..."}` with a 4xx or 5xx status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

/// Reply to `POST /api/agent/heartbeat`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatAccepted {
    pub accepted: bool,
    pub node_id: Uuid,
    pub received_at: DateTime<Utc>,
}

/// One row of `GET /api/nodes`: who the node is, when we last heard from it, and its key numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeSummary {
    pub node_id: Uuid,
    pub hostname: String,
    pub os_profile: String,
    /// When the Command Center received the latest heartbeat (its clock, not the node's).
    pub last_seen: DateTime<Utc>,
    pub cloudflare_ok: bool,
    pub services_ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
    /// 1-minute load average.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load1: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_used_pct: Option<f64>,
    /// Space used on the fullest disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_max_used_pct: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_max_mount: Option<String>,
    /// Worst status among the heartbeat's checks (absent when it carried none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worst_check: Option<CheckStatus>,
    /// The checks that are not ok, as `name: status`, worst first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks_not_ok: Vec<String>,
    /// Heartbeats received from this node (all that are in the logs).
    pub heartbeats: u64,
    /// `false` once a command receipt from this node did not continue its hash chain (absent
    /// before the node's first receipt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt_chain_ok: Option<bool>,
}

/// A compact point of a node's heartbeat history, cheap enough to keep many of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryPoint {
    pub received_at: DateTime<Utc>,
    pub timestamp: DateTime<Utc>,
    pub cloudflare_ok: bool,
    pub services_ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load1: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_used_pct: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_max_used_pct: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worst_check: Option<CheckStatus>,
}

/// `GET /api/nodes/{id}`: the summary, the full latest heartbeat, the recent history (oldest
/// first, bounded per node) and the node's incidents (open and acknowledged ones, then the most
/// recently resolved; newest first).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeDetail {
    pub summary: NodeSummary,
    pub latest: NodeHeartbeat,
    pub history: Vec<HistoryPoint>,
    #[serde(default)]
    pub incidents: Vec<Incident>,
}

/// Where an incident is in its lifecycle: open → acknowledged → resolved (or open → resolved).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IncidentState {
    Open,
    Acknowledged,
    Resolved,
}

/// An incident as derived from its `incident`, `ack` and `resolve` events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    /// The id of the `incident` event.
    pub id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<Uuid>,
    pub title: String,
    pub severity: crate::Severity,
    pub state: IncidentState,
    pub opened_at: DateTime<Utc>,
    pub opened_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acked_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acked_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_by: Option<String>,
}

/// `GET /healthz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
    pub version: String,
    pub nodes: usize,
}
