//! `JsonlStore`: state in memory, every record in append-only JSONL files, replayed on start.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;
use vaultmesh_proto::{NodeDetail, NodeHeartbeat, NodeSummary};

use super::journal::{Journal, JournalError, OpenReport, Rotation};
use super::logdir::LogName;
use super::record::{self, kind};
use super::replay::{self, ReplayReport};
use super::{FleetState, Store, StoreError, StoreLimits};

/// Where and how the store keeps its files.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub dir: PathBuf,
    pub limits: StoreLimits,
    /// Rotate the heartbeat log at this size (it also rotates daily).
    pub heartbeat_rotate_bytes: u64,
    /// Delete heartbeat segments older than this.
    pub heartbeat_retention: Duration,
}

impl StoreOptions {
    pub fn new(dir: PathBuf) -> Self {
        StoreOptions {
            dir,
            limits: StoreLimits::default(),
            heartbeat_rotate_bytes: 256 << 20,
            heartbeat_retention: Duration::from_secs(30 * 86_400),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreOpenError {
    #[error("{0}")]
    Journal(#[from] JournalError),
    #[error("replaying {dir}: {source}")]
    Replay {
        dir: PathBuf,
        source: std::io::Error,
    },
}

/// The embedded store.
#[derive(Debug)]
pub struct JsonlStore {
    fleet: Arc<FleetState>,
    heartbeats: Journal,
}

impl JsonlStore {
    /// Opens the log directory: cuts torn tails, replays every log into memory, then starts the
    /// writers. Bad lines are reported in the returned [`ReplayReport`], never fatal.
    pub fn open(opts: &StoreOptions) -> Result<(JsonlStore, ReplayReport), StoreOpenError> {
        let rotation = Rotation {
            max_bytes: Some(opts.heartbeat_rotate_bytes),
            daily: true,
            retention: Some(opts.heartbeat_retention),
        };
        let (heartbeats, OpenReport { torn_bytes }) =
            Journal::open(&opts.dir, LogName::Heartbeats, rotation)?;
        let fleet = Arc::new(FleetState::new(opts.limits));
        let report = replay::replay_heartbeats(&opts.dir, &fleet).map_err(|source| {
            StoreOpenError::Replay {
                dir: opts.dir.clone(),
                source,
            }
        })?;
        tracing::info!(
            lines = report.lines,
            nodes = report.nodes,
            skipped = report.skipped.len(),
            torn_bytes,
            ms = report.elapsed.as_millis() as u64,
            header_scan_ms = report.scan_elapsed.as_millis() as u64,
            "Replayed logs."
        );
        Ok((JsonlStore { fleet, heartbeats }, report))
    }
}

#[async_trait]
impl Store for JsonlStore {
    async fn record_heartbeat(
        &self,
        hb: NodeHeartbeat,
        received_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.fleet.admits(hb.node_id)?;
        let line = record::encode(kind::HEARTBEAT, received_at, Some(hb.node_id), &hb)
            .map_err(|e| StoreError::Unavailable(format!("cannot encode heartbeat: {e}")))?;
        let fleet = Arc::clone(&self.fleet);
        let apply = Box::new(move || fleet.apply_heartbeat(hb, received_at));
        self.heartbeats
            .append(line, Some(apply))
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))
    }

    fn summaries(&self) -> Vec<NodeSummary> {
        self.fleet.summaries()
    }

    fn detail(&self, node_id: Uuid) -> Option<NodeDetail> {
        self.fleet.detail(node_id)
    }

    fn node_count(&self) -> usize {
        self.fleet.node_count()
    }
}
