//! Assembles a [`NodeHeartbeat`] from the node's identity and the checks' latest runs.
//!
//! Each run's result goes into `checks`; its typed [`crate::Contribution`] is moved into
//! `metrics` and the flags as it is, with no JSON in between, so a measurement is on the wire
//! once. The seed's two flags start from fixed defaults and are then set by the checks that
//! own them: `services_ok` starts `true` (no service is expected until a check says which),
//! `cloudflare_ok` starts `false` (a tunnel is not assumed up until a check has seen it).

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::Utc;
use uuid::Uuid;
use vaultmesh_proto::NodeHeartbeat;

use crate::check::CheckRun;

/// Builds heartbeats for one node; owns the `seq` counter.
#[derive(Debug)]
pub struct HeartbeatBuilder {
    node_id: Uuid,
    hostname: String,
    os_profile: String,
    vaultmesh_root: String,
    labels: vaultmesh_proto::labels::Labels,
    seq: AtomicU64,
    /// `/proc/uptime`, kept open.
    uptime: crate::procfile::Kept,
}

impl HeartbeatBuilder {
    /// `seq` starts at the current Unix time in milliseconds and grows by one per heartbeat, so
    /// it keeps increasing across agent restarts without writing to disk.
    pub fn new(
        node_id: Uuid,
        hostname: String,
        os_profile: String,
        vaultmesh_root: String,
    ) -> Self {
        let start = u64::try_from(Utc::now().timestamp_millis()).unwrap_or(0);
        HeartbeatBuilder {
            node_id,
            hostname,
            os_profile,
            vaultmesh_root,
            labels: Default::default(),
            seq: AtomicU64::new(start),
            uptime: crate::procfile::Kept::new("/proc/uptime"),
        }
    }

    /// Sends `labels` (the config's `[agent] labels`, checked) in every heartbeat.
    pub fn with_labels(mut self, labels: vaultmesh_proto::labels::Labels) -> Self {
        self.labels = labels;
        self
    }

    pub fn node_id(&self) -> Uuid {
        self.node_id
    }

    /// A heartbeat carrying the results of `runs`, each contributing its typed fields.
    pub fn build(&self, runs: Vec<CheckRun>) -> NodeHeartbeat {
        let mut hb = NodeHeartbeat {
            node_id: self.node_id,
            hostname: self.hostname.clone(),
            os_profile: self.os_profile.clone(),
            cloudflare_ok: false,
            services_ok: true,
            vaultmesh_root: self.vaultmesh_root.clone(),
            timestamp: Utc::now(),
            agent_version: Some(crate::AGENT_VERSION.to_string()),
            seq: Some(self.seq.fetch_add(1, Ordering::Relaxed).to_string()),
            uptime_s: crate::host::uptime_s(&self.uptime),
            metrics: None,
            checks: Vec::with_capacity(runs.len()),
            last_scan: None,
            labels: self.labels.clone(),
        };
        for run in runs {
            run.contributes.apply(&mut hb);
            hb.checks.push(run.result);
        }
        hb
    }
}
