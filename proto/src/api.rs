//! Bodies of the Command Center's HTTP API (requests other than heartbeats, and responses).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::check::CheckStatus;
use crate::heartbeat::NodeHeartbeat;
use crate::severity::Severity;

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

/// A node's revocation, as `GET /api/nodes` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeRevoked {
    pub at: DateTime<Utc>,
    /// Who revoked it (the admin's identity).
    pub by: String,
    /// An admin has re-admitted it; it is still refused until it enrolls again.
    pub readmitted: bool,
    /// The revocation is a decommission: the node is out of the fleet's lists, attention and
    /// notifications until it enrolls again (absent when false).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub decommissioned: bool,
}

/// One row of `GET /api/nodes`: who the node is, when we last heard from it, and its key numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeSummary {
    pub node_id: Uuid,
    pub hostname: String,
    /// Another node reports the same hostname: only the node id tells them apart (absent when
    /// false).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hostname_shared: bool,
    pub os_profile: String,
    /// When the Command Center received the latest heartbeat (its clock, not the node's).
    pub last_seen: DateTime<Utc>,
    pub cloudflare_ok: bool,
    /// The latest heartbeat's flag, as the agent sent it.
    pub services_ok: bool,
    /// What the Command Center reads from the heartbeat: `up`, `down`, or `unknown` when the
    /// node's `systemd` check could not reach systemd ([`crate::Services::judge`]).
    #[serde(default)]
    pub services: crate::heartbeat::Services,
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
    /// Whether the node needs an admin, and why (see `docs/ATTENTION.md`).
    #[serde(default)]
    pub attention: Attention,
    /// The latest scan the Command Center holds for this node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scan: Option<crate::heartbeat::LastScan>,
    /// Present while the node is revoked: its requests are refused, no command is issued to it,
    /// and its attention is the `revoked` reason alone (absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<NodeRevoked>,
    /// The node's labels: its agent's (from the latest heartbeat), with admins' `tag`s over
    /// them for the same key ([`crate::labels::merged`]); absent when it has none.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: crate::labels::Labels,
    /// The name an admin gave the node ([`crate::display_name`]), shown in place of its
    /// hostname, which stays beside it; absent when it has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

impl NodeSummary {
    /// The name people read first: the display name, else the hostname.
    pub fn name(&self) -> &str {
        self.display_name.as_deref().unwrap_or(&self.hostname)
    }

    /// "Frankfurt edge 1 (vault-node-01)", or the hostname alone
    /// ([`crate::display_name::labelled`]).
    pub fn labelled(&self) -> String {
        crate::display_name::labelled(&self.hostname, self.display_name.as_deref())
    }

    /// The `data` of the SSE `heartbeat` event the Command Center publishes once the heartbeat
    /// is stored: this summary **without `attention`**. Attention is judged right after the
    /// heartbeat is stored, so it cannot travel with it; it arrives as an `attention` event
    /// when it changes, and `GET /api/nodes` carries both. Every other member equals that of
    /// `GET /api/nodes` for the node as of this heartbeat.
    pub fn heartbeat_event_json(&self) -> String {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(m) = v.as_object_mut() {
            m.remove("attention");
        }
        v.to_string()
    }
}

/// How much a node needs an admin: `ok < attn < crit`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum AttentionLevel {
    #[default]
    Ok,
    Attn,
    Crit,
}

impl AttentionLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            AttentionLevel::Ok => "ok",
            AttentionLevel::Attn => "attn",
            AttentionLevel::Crit => "crit",
        }
    }

    /// The severity of an attention change to this level, on the one scale `logs view
    /// --min-severity` filters by (`docs/LOGS.md`): ok → info, attn → medium, crit → high —
    /// where a crit check and a high finding sit too, so `--min-severity high` shows every CRIT.
    pub fn severity(self) -> Severity {
        match self {
            AttentionLevel::Ok => Severity::Info,
            AttentionLevel::Attn => Severity::Medium,
            AttentionLevel::Crit => Severity::High,
        }
    }
}

impl std::fmt::Display for AttentionLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One reason a node is not OK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    /// The rule that raised it (`stale`, `services`, `check.disk`, `drift`, ...).
    pub rule: String,
    pub level: AttentionLevel,
    /// A few words an admin reads at a glance (`Tunnel down`, `Stale 5m`, `Disk / 91%`), at most
    /// [`Reason::LABEL_MAX`] characters; the whole story is in `message`. Empty in reasons
    /// recorded before labels existed.
    #[serde(default)]
    pub label: String,
    /// The detail: what was seen, with the check's own words or the raw error.
    pub message: String,
    /// Set when a silence or an incident acknowledgement keeps this reason from escalating;
    /// says which.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed_by: Option<String>,
}

impl Reason {
    /// The longest label, in characters: text a node names (a mount, a unit, a check, an
    /// incident's title) is cut to fit, with `…`.
    pub const LABEL_MAX: usize = 32;

    /// The label, or the rule for a reason recorded before labels existed.
    pub fn short(&self) -> &str {
        if self.label.is_empty() {
            &self.rule
        } else {
            &self.label
        }
    }
}

/// A node's attention: the level is the worst reason that is not suppressed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attention {
    pub level: AttentionLevel,
    #[serde(default)]
    pub reasons: Vec<Reason>,
    /// When the level last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
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
    /// The node's latest scan report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_scan: Option<crate::scan::ScanReport>,
    /// How the latest scan's fingerprint differs from the previous scan's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<crate::scan::Drift>,
}

/// Reply to `POST /api/agent/scans`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanAccepted {
    pub accepted: bool,
    pub scan_id: Uuid,
    /// The report was already stored (a retry); nothing changed.
    pub duplicate: bool,
    /// Facts that differ from the previous scan.
    pub drift: usize,
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
    /// `ok`; `degraded` while the logs refuse writes (a full disk: reads keep working); `alarm`
    /// while an alarm (the ledger's tamper alarm) stands.
    pub status: String,
    pub version: String,
    pub nodes: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alarm: Option<String>,
    /// Why writes are refused (`degraded`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degraded: Option<String>,
    /// The Command Center's own attention: its level and reasons (`cc.storage`,
    /// `cc.disk_free`).
    #[serde(default)]
    pub attention: Attention,
}
