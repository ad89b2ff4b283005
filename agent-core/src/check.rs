//! The `Check` trait: one thing on the node worth looking at.

use std::collections::BTreeMap;
use std::path::PathBuf;

use async_trait::async_trait;
use vaultmesh_proto::{CheckStatus, NodeHeartbeat};

/// What a check run may know about the node it runs on.
#[derive(Debug, Clone)]
pub struct CheckContext {
    pub node_id: uuid::Uuid,
    /// Root of the VaultMesh installation (`VAULTMESH_ROOT`).
    pub vaultmesh_root: PathBuf,
    /// The node's OS profile (`VAULTMESH_OS_PROFILE`).
    pub os_profile: String,
    /// The agent's configuration file, when it was read from one.
    pub config_file: Option<PathBuf>,
    /// Where a scanning check hands its report for delivery.
    pub scans: crate::scans::ScanOutbox,
    /// The run's timeout, set by the scheduler: a long check should finish (with partial
    /// results) before it.
    pub timeout: Option<std::time::Duration>,
}

impl CheckContext {
    /// A context for `node_id` with profile `Generic`, no config file and an in-memory outbox.
    pub fn new(node_id: uuid::Uuid, vaultmesh_root: impl Into<PathBuf>) -> Self {
        CheckContext {
            node_id,
            vaultmesh_root: vaultmesh_root.into(),
            os_profile: "Generic".to_string(),
            config_file: None,
            scans: crate::scans::ScanOutbox::in_memory(),
            timeout: None,
        }
    }
}

/// What a check reports. The scheduler adds the check's name, the time and the duration to make
/// a [`vaultmesh_proto::CheckResult`].
#[derive(Debug, Clone, PartialEq)]
pub struct CheckOutcome {
    pub status: CheckStatus,
    pub summary: String,
    pub metrics: BTreeMap<String, f64>,
    pub details: serde_json::Value,
}

impl CheckOutcome {
    pub fn new(status: CheckStatus, summary: impl Into<String>) -> Self {
        CheckOutcome {
            status,
            summary: summary.into(),
            metrics: BTreeMap::new(),
            details: serde_json::Value::Null,
        }
    }

    /// `unknown` with a reason: the check could not look.
    pub fn unknown(reason: impl Into<String>) -> Self {
        CheckOutcome::new(CheckStatus::Unknown, reason)
    }

    pub fn with_metric(mut self, key: impl Into<String>, value: f64) -> Self {
        self.metrics.insert(key.into(), value);
        self
    }

    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }
}

/// A check. Built once from its TOML table by the constructor in its
/// [`crate::CheckRegistration`], then run by the scheduler on its interval.
///
/// `run` must not block the async executor: wrap blocking system calls in
/// `tokio::task::spawn_blocking`. It may take as long as it needs; the scheduler enforces the
/// configured timeout and turns a panic into `unknown`.
#[async_trait]
pub trait Check: Send + Sync + std::fmt::Debug + 'static {
    async fn run(&self, ctx: &CheckContext) -> CheckOutcome;

    /// Copies what this check measured into the heartbeat's typed fields (metrics, the
    /// `services_ok`/`cloudflare_ok` flags). Called with this check's latest result, which may
    /// be an `unknown` produced by the scheduler, so read `result.details` defensively.
    fn contribute(&self, _result: &vaultmesh_proto::CheckResult, _heartbeat: &mut NodeHeartbeat) {}
}
