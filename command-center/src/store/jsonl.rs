//! `JsonlStore`: state in memory, every record in append-only JSONL files, replayed on start.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;
use vaultmesh_proto::{NodeDetail, NodeHeartbeat, NodeSummary};

use std::sync::Mutex;

use vaultmesh_proto::auth::EnrollRequest;
use vaultmesh_proto::{EventEnvelope, NewEvent};

use super::CommandBuilder;
use super::commands::{CommandState, CommandStatus, CommandView, ReceiptRecord};
use super::events::{EventQuery, EventState};
use super::journal::{Journal, JournalError, OpenReport, Rotation};
use super::logdir::{self, LogName};
use super::record::{self, Line, kind};
use super::registry::{Binding, EnrollCheck, NodeRecord, Registry};
use super::replay::{self, BadLine, ReplayReport};
use super::scans::ScanState;
use super::{FleetState, Store, StoreError, StoreLimits};
use super::{NodeSnapshot, events::Silence};
use crate::bus::Bus;
use vaultmesh_proto::command::{SignedCommand, SignedReceipt};
use vaultmesh_proto::{IncidentState, ScanAccepted, ScanReport};

/// Where and how the store keeps its files.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub dir: PathBuf,
    pub limits: StoreLimits,
    /// Rotate the heartbeat log at this size (it also rotates daily).
    pub heartbeat_rotate_bytes: u64,
    /// Delete heartbeat segments older than this.
    pub heartbeat_retention: Duration,
    /// Where append latencies and replay time go, if anywhere.
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
}

impl StoreOptions {
    pub fn new(dir: PathBuf) -> Self {
        StoreOptions {
            dir,
            limits: StoreLimits::default(),
            heartbeat_rotate_bytes: 256 << 20,
            heartbeat_retention: Duration::from_secs(30 * 86_400),
            metrics: None,
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
    dir: PathBuf,
    fleet: Arc<FleetState>,
    heartbeats: Journal,
    events: Journal,
    event_state: Arc<Mutex<EventState>>,
    /// Serializes event check-and-append, so two resolves of one incident cannot both pass.
    event_gate: tokio::sync::Mutex<()>,
    nodes: Journal,
    registry: Arc<Mutex<Registry>>,
    commands: Journal,
    command_state: Arc<Mutex<CommandState>>,
    /// Serializes seq allocation and receipt chain checks.
    command_gate: tokio::sync::Mutex<()>,
    /// Serializes enroll/revoke check-and-append (one key per node, single-use tokens).
    node_gate: tokio::sync::Mutex<()>,
    scans: Journal,
    scan_state: Arc<Mutex<ScanState>>,
    /// Length of the scans log up to the last fsynced line.
    scans_durable: Arc<std::sync::atomic::AtomicU64>,
    /// Serializes the duplicate check and the append of scan reports.
    scan_gate: tokio::sync::Mutex<()>,
    bus: Arc<Bus>,
}

impl JsonlStore {
    /// Opens the log directory: cuts torn tails, replays every log into memory, then starts the
    /// writers. Bad lines are reported in the returned [`ReplayReport`], never fatal.
    pub fn open(
        opts: &StoreOptions,
        bus: Arc<Bus>,
    ) -> Result<(JsonlStore, ReplayReport), StoreOpenError> {
        let rotation = Rotation {
            max_bytes: Some(opts.heartbeat_rotate_bytes),
            daily: true,
            retention: Some(opts.heartbeat_retention),
        };
        let (mut heartbeats, OpenReport { torn_bytes }) =
            Journal::open(&opts.dir, LogName::Heartbeats, rotation)?;
        let (mut events, _) = Journal::open(&opts.dir, LogName::Events, Rotation::default())?;
        let (mut nodes, _) = Journal::open(&opts.dir, LogName::Nodes, Rotation::default())?;
        let (mut commands, _) = Journal::open(&opts.dir, LogName::Commands, Rotation::default())?;
        // Never rotated: the ledger is built over this file's lines.
        let (mut scans, _) = Journal::open(&opts.dir, LogName::Scans, Rotation::default())?;
        if let Some(m) = &opts.metrics {
            for (journal, log) in [
                (&mut heartbeats, LogName::Heartbeats),
                (&mut events, LogName::Events),
                (&mut nodes, LogName::Nodes),
                (&mut commands, LogName::Commands),
                (&mut scans, LogName::Scans),
            ] {
                journal.observe_latency(m.append_latency(log.stem()));
            }
        }
        // After the torn tail was cut: everything in the file is durable.
        let scans_durable = Arc::new(std::sync::atomic::AtomicU64::new(
            std::fs::metadata(LogName::Scans.active(&opts.dir)).map_or(0, |m| m.len()),
        ));
        let fleet = Arc::new(FleetState::new(opts.limits));
        let replay_err = |source| StoreOpenError::Replay {
            dir: opts.dir.clone(),
            source,
        };
        let mut report = replay::replay_heartbeats(&opts.dir, &fleet).map_err(replay_err)?;
        let event_state = Arc::new(Mutex::new(EventState::default()));
        replay_events(&opts.dir, &event_state, &mut report).map_err(replay_err)?;
        let registry = Arc::new(Mutex::new(Registry::default()));
        replay_nodes(&opts.dir, &registry, &mut report).map_err(replay_err)?;
        let command_state = Arc::new(Mutex::new(CommandState::default()));
        replay_commands(&opts.dir, &command_state, &mut report).map_err(replay_err)?;
        let scan_state = Arc::new(Mutex::new(ScanState::default()));
        replay_scans(&opts.dir, &scan_state, &mut report).map_err(replay_err)?;
        tracing::info!(
            lines = report.lines,
            nodes = report.nodes,
            skipped = report.skipped.len(),
            torn_bytes,
            ms = report.elapsed.as_millis() as u64,
            header_scan_ms = report.scan_elapsed.as_millis() as u64,
            "Replayed logs."
        );
        let store = JsonlStore {
            dir: opts.dir.clone(),
            fleet,
            heartbeats,
            events,
            event_state,
            event_gate: tokio::sync::Mutex::new(()),
            nodes,
            registry,
            node_gate: tokio::sync::Mutex::new(()),
            commands,
            command_state,
            command_gate: tokio::sync::Mutex::new(()),
            scans,
            scan_state,
            scans_durable,
            scan_gate: tokio::sync::Mutex::new(()),
            bus,
        };
        Ok((store, report))
    }
}

impl JsonlStore {
    /// Seals, logs durably, applies and publishes an event. Callers hold `event_gate`.
    async fn append_event(&self, envelope: EventEnvelope) -> Result<EventEnvelope, StoreError> {
        let envelope = envelope.sealed();
        let line = record::encode(&envelope.kind, envelope.ts, envelope.node_id, &envelope)
            .map_err(|e| StoreError::Unavailable(format!("cannot encode event: {e}")))?;
        let (state, bus, stored) = (
            Arc::clone(&self.event_state),
            Arc::clone(&self.bus),
            envelope.clone(),
        );
        let apply = Box::new(move || {
            state
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .apply(&stored);
            bus.publish(
                &stored.kind,
                stored.node_id,
                serde_json::to_string(&stored).unwrap_or_default(),
            );
        });
        self.events
            .append(line, Some(apply))
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(envelope)
    }
}

/// Rebuilds each node's latest scan and drift from `sovereign-scans.jsonl`.
fn replay_scans(
    dir: &std::path::Path,
    state: &Mutex<ScanState>,
    report: &mut ReplayReport,
) -> std::io::Result<()> {
    let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
    for path in logdir::files(dir, LogName::Scans)? {
        let bytes = replay::for_each_line(&path, |line_no, _, line| {
            report.lines += 1;
            match serde_json::from_slice::<Line<ScanReport>>(line) {
                Ok(l) => st.apply(l.record),
                Err(e) => {
                    let bad = BadLine {
                        file: path.clone(),
                        line: line_no,
                        reason: format!("not a scan record: {e}"),
                    };
                    tracing::warn!(file = %bad.file.display(), line = bad.line, reason = %bad.reason, "Skipped a bad scan line.");
                    report.skipped.push(bad);
                }
            }
        })?;
        report.bytes += bytes;
        report.files += 1;
    }
    Ok(())
}

/// Rebuilds commands, queues and receipt chains from `commands.jsonl`.
fn replay_commands(
    dir: &std::path::Path,
    state: &Mutex<CommandState>,
    report: &mut ReplayReport,
) -> std::io::Result<()> {
    let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
    for path in logdir::files(dir, LogName::Commands)? {
        let bytes = replay::for_each_line(&path, |line_no, _, line| {
            report.lines += 1;
            let ok = match record::head(line).map(|h| h.kind.to_string()).as_deref() {
                Some("command") => serde_json::from_slice::<Line<SignedCommand>>(line)
                    .map(|l| st.apply_command(&l.record))
                    .is_ok(),
                Some("receipt") => serde_json::from_slice::<Line<ReceiptRecord>>(line)
                    .map(|l| st.apply_receipt(&l.record))
                    .is_ok(),
                _ => false,
            };
            if !ok {
                report.skipped.push(BadLine {
                    file: path.clone(),
                    line: line_no,
                    reason: "not a command or receipt record".into(),
                });
            }
        })?;
        report.bytes += bytes;
        report.files += 1;
    }
    Ok(())
}

/// Rebuilds the node registry from `nodes.jsonl`.
fn replay_nodes(
    dir: &std::path::Path,
    registry: &Mutex<Registry>,
    report: &mut ReplayReport,
) -> std::io::Result<()> {
    let mut reg = registry.lock().unwrap_or_else(|p| p.into_inner());
    for path in logdir::files(dir, LogName::Nodes)? {
        let bytes = replay::for_each_line(&path, |line_no, _, line| {
            report.lines += 1;
            let applied = serde_json::from_slice::<Line<NodeRecord>>(line)
                .ok()
                .and_then(|l| Some(reg.apply(&l.kind, l.ts, l.node_id?, &l.record)))
                .unwrap_or(false);
            if !applied {
                let bad = BadLine {
                    file: path.clone(),
                    line: line_no,
                    reason: "not an enroll or revoke record".into(),
                };
                tracing::warn!(file = %bad.file.display(), line = bad.line, reason = %bad.reason, "Skipped a bad registry line.");
                report.skipped.push(bad);
            }
        })?;
        report.bytes += bytes;
        report.files += 1;
    }
    Ok(())
}

/// Rebuilds the event window and incidents from `events.jsonl`. A line whose hash does not match
/// its content was not written by us as it stands: it is reported and not applied.
fn replay_events(
    dir: &std::path::Path,
    state: &Mutex<EventState>,
    report: &mut ReplayReport,
) -> std::io::Result<()> {
    let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
    for path in logdir::files(dir, LogName::Events)? {
        let bytes = replay::for_each_line(&path, |line_no, _, line| {
            report.lines += 1;
            let bad = |reason: String| BadLine {
                file: path.clone(),
                line: line_no,
                reason,
            };
            match serde_json::from_slice::<Line<EventEnvelope>>(line) {
                Ok(l) if l.record.verify() => state.apply(&l.record),
                Ok(l) => report.skipped.push(bad(format!(
                    "event {} fails its hash check (altered after it was written?)",
                    l.record.id
                ))),
                Err(e) => report
                    .skipped
                    .push(bad(format!("not an event record: {e}"))),
            }
        })?;
        report.bytes += bytes;
        report.files += 1;
    }
    for bad in report
        .skipped
        .iter()
        .filter(|b| b.file.ends_with("events.jsonl"))
    {
        tracing::warn!(file = %bad.file.display(), line = bad.line, reason = %bad.reason, "Skipped a bad event line.");
    }
    Ok(())
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
        let bus = Arc::clone(&self.bus);
        let apply = Box::new(move || {
            let node_id = hb.node_id;
            fleet.apply_heartbeat(hb, received_at);
            if let Some(summary) = fleet.summary(node_id) {
                bus.publish(
                    kind::HEARTBEAT,
                    Some(node_id),
                    serde_json::to_string(&summary).unwrap_or_default(),
                );
            }
        });
        self.heartbeats
            .append(line, Some(apply))
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))
    }

    fn summaries(&self) -> Vec<NodeSummary> {
        let mut v = self.fleet.summaries();
        let commands = self.command_state.lock().unwrap_or_else(|p| p.into_inner());
        let scans = self.scan_state.lock().unwrap_or_else(|p| p.into_inner());
        for s in &mut v {
            s.receipt_chain_ok = commands.chain_ok(&s.node_id);
            s.last_scan = scans.latest(&s.node_id).map(|r| r.last_scan());
        }
        v
    }

    fn detail(&self, node_id: Uuid) -> Option<NodeDetail> {
        let mut d = self.fleet.detail(node_id)?;
        {
            let scans = self.scan_state.lock().unwrap_or_else(|p| p.into_inner());
            d.latest_scan = scans.latest(&node_id).map(|r| (*r).clone());
            d.drift = scans.drift(&node_id);
        }
        d.summary.last_scan = d.latest_scan.as_ref().map(ScanReport::last_scan);
        d.summary.receipt_chain_ok = self
            .command_state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .chain_ok(&node_id);
        d.incidents = self
            .event_state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .incidents_for(node_id);
        Some(d)
    }

    fn node_count(&self) -> usize {
        self.fleet.node_count()
    }

    async fn record_event(
        &self,
        new: NewEvent,
        author: String,
    ) -> Result<EventEnvelope, StoreError> {
        let _gate = self.event_gate.lock().await;
        let fleet = Arc::clone(&self.fleet);
        let node_id = {
            let state = self.event_state.lock().unwrap_or_else(|p| p.into_inner());
            state.check(&new, |n| fleet.detail(n).is_some())?
        };
        self.append_event(EventEnvelope {
            id: Uuid::now_v7(),
            kind: new.kind,
            ts: Utc::now(),
            node_id,
            author,
            body: new.body,
            refs: new.refs,
            hash: String::new(),
        })
        .await
    }

    fn binding(&self, node_id: Uuid) -> Option<Binding> {
        self.registry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .binding(&node_id)
            .cloned()
    }

    async fn enroll(
        &self,
        req: &EnrollRequest,
        token_id: String,
        single_use: bool,
    ) -> Result<DateTime<Utc>, StoreError> {
        let _gate = self.node_gate.lock().await;
        let check = {
            let reg = self.registry.lock().unwrap_or_else(|p| p.into_inner());
            match reg.check_enroll(&req.node_id, &req.public_key) {
                EnrollCheck::AlreadyEnrolled(at) => return Ok(at),
                EnrollCheck::Conflict => {
                    return Err(StoreError::Conflict(format!(
                        "node {} is enrolled with a different key; revoke it first (POST /api/nodes/{}/revoke)",
                        req.node_id, req.node_id
                    )));
                }
                EnrollCheck::New if single_use && reg.token_spent(&token_id) => {
                    return Err(StoreError::TokenSpent);
                }
                EnrollCheck::New => EnrollCheck::New,
            }
        };
        debug_assert_eq!(check, EnrollCheck::New);
        let ts = Utc::now();
        let record = NodeRecord {
            public_key: Some(req.public_key.clone()),
            hostname: Some(req.hostname.clone()),
            os_profile: Some(req.os_profile.clone()),
            token_id: Some(token_id),
            single_use,
        };
        let line = record::encode("enroll", ts, Some(req.node_id), &record)
            .map_err(|e| StoreError::Unavailable(format!("cannot encode enrollment: {e}")))?;
        let (reg, node_id) = (Arc::clone(&self.registry), req.node_id);
        let apply = Box::new(move || {
            reg.lock()
                .unwrap_or_else(|p| p.into_inner())
                .apply("enroll", ts, node_id, &record);
        });
        self.nodes
            .append(line, Some(apply))
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(ts)
    }

    async fn revoke(&self, node_id: Uuid) -> Result<(), StoreError> {
        let _gate = self.node_gate.lock().await;
        if self.binding(node_id).is_none() {
            return Err(StoreError::Invalid(format!(
                "node {node_id} is not enrolled"
            )));
        }
        let ts = Utc::now();
        let record = NodeRecord {
            public_key: None,
            hostname: None,
            os_profile: None,
            token_id: None,
            single_use: false,
        };
        let line = record::encode("revoke", ts, Some(node_id), &record)
            .map_err(|e| StoreError::Unavailable(format!("cannot encode revocation: {e}")))?;
        let reg = Arc::clone(&self.registry);
        let apply = Box::new(move || {
            reg.lock()
                .unwrap_or_else(|p| p.into_inner())
                .apply("revoke", ts, node_id, &record);
        });
        self.nodes
            .append(line, Some(apply))
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))
    }

    async fn issue_command(
        &self,
        node_id: Uuid,
        build: CommandBuilder,
    ) -> Result<SignedCommand, StoreError> {
        let _gate = self.command_gate.lock().await;
        let seq = self
            .command_state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .next_seq(&node_id);
        let signed = build(seq);
        let c = &signed.command;
        let line = record::encode("command", c.issued_at, Some(node_id), &signed)
            .map_err(|e| StoreError::Unavailable(format!("cannot encode command: {e}")))?;
        let (state, bus, stored) = (
            Arc::clone(&self.command_state),
            Arc::clone(&self.bus),
            signed.clone(),
        );
        let apply = Box::new(move || {
            // Published before the command becomes visible to the node's long-poll, so
            // "issued" always precedes "delivered" on the stream.
            bus.publish(
                "command",
                Some(stored.command.node_id),
                command_event(&stored, "issued"),
            );
            state
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .apply_command(&stored);
        });
        self.commands
            .append(line, Some(apply))
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(signed)
    }

    fn take_commands(&self, node_id: Uuid) -> Vec<SignedCommand> {
        let taken = self
            .command_state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take_pending(&node_id, Utc::now());
        for c in &taken {
            self.bus
                .publish("command", Some(node_id), command_event(c, "delivered"));
        }
        taken
    }

    fn command_notify(&self, node_id: Uuid) -> Arc<tokio::sync::Notify> {
        self.command_state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .notify(node_id)
    }

    async fn record_receipt(&self, receipt: SignedReceipt) -> Result<bool, StoreError> {
        let _gate = self.command_gate.lock().await;
        let chain_ok = self
            .command_state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .check_receipt(&receipt)
            .ok_or_else(|| {
                StoreError::Invalid(format!(
                    "receipt for unknown command {}",
                    receipt.receipt.command_id
                ))
            })?;
        let node_id = receipt.receipt.node_id;
        let rec = ReceiptRecord {
            signed: receipt,
            chain_ok,
        };
        let line = record::encode("receipt", Utc::now(), Some(node_id), &rec)
            .map_err(|e| StoreError::Unavailable(format!("cannot encode receipt: {e}")))?;
        let (state, bus) = (Arc::clone(&self.command_state), Arc::clone(&self.bus));
        let apply = Box::new(move || {
            let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
            st.apply_receipt(&rec);
            let r = &rec.signed.receipt;
            let data = serde_json::json!({"command_id": r.command_id, "node_id": r.node_id, "status": "completed",
                "result": r.status, "reason": r.reason, "chain_ok": rec.chain_ok});
            bus.publish("command", Some(r.node_id), data.to_string());
        });
        self.commands
            .append(line, Some(apply))
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        if !chain_ok {
            tracing::error!(%node_id, "Receipt chain broken: a receipt does not follow the node's previous one.");
        }
        Ok(chain_ok)
    }

    fn commands(
        &self,
        node_id: Option<Uuid>,
        status: Option<CommandStatus>,
        limit: usize,
    ) -> Vec<CommandView> {
        self.command_state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .list(node_id, status, limit)
    }

    async fn record_scan(
        &self,
        report: ScanReport,
        received_at: DateTime<Utc>,
    ) -> Result<ScanAccepted, StoreError> {
        let _gate = self.scan_gate.lock().await;
        let (node_id, scan_id) = (report.node_id, report.scan_id);
        let drift = {
            let st = self.scan_state.lock().unwrap_or_else(|p| p.into_inner());
            if st.is_duplicate(&node_id, &scan_id) {
                return Ok(ScanAccepted {
                    accepted: true,
                    scan_id,
                    duplicate: true,
                    drift: 0,
                });
            }
            st.drift_of(&report)
        };
        let drift_count = drift.len();
        let line = record::encode(kind::SCAN, received_at, Some(node_id), &report)
            .map_err(|e| StoreError::Unavailable(format!("cannot encode scan: {e}")))?;
        let (state, bus) = (Arc::clone(&self.scan_state), Arc::clone(&self.bus));
        let (durable, len) = (Arc::clone(&self.scans_durable), line.len() as u64);
        let apply = Box::new(move || {
            // Runs after the line is fsynced, in log order.
            durable.fetch_add(len, std::sync::atomic::Ordering::Release);
            let data = serde_json::json!({
                "scan_id": report.scan_id, "node_id": report.node_id,
                "finished_at": report.finished_at, "counts": report.counts,
                "findings": report.findings.len(), "drift": drift_count,
            });
            state
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .apply_with(report, Some(drift));
            bus.publish(kind::SCAN, Some(node_id), data.to_string());
        });
        self.scans
            .append(line, Some(apply))
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(ScanAccepted {
            accepted: true,
            scan_id,
            duplicate: false,
            drift: drift_count,
        })
    }

    fn snapshot(&self, node_id: Uuid) -> Option<NodeSnapshot> {
        let (latest, last_seen, heartbeats) = self.fleet.latest(node_id)?;
        let (latest_scan, drift) = {
            let st = self.scan_state.lock().unwrap_or_else(|p| p.into_inner());
            (st.latest(&node_id), st.drift(&node_id))
        };
        let incidents = self
            .event_state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .incidents_for(node_id)
            .into_iter()
            .filter(|i| i.state != IncidentState::Resolved)
            .collect();
        let receipt_chain_ok = self
            .command_state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .chain_ok(&node_id);
        Some(NodeSnapshot {
            node_id,
            latest,
            last_seen,
            heartbeats,
            latest_scan,
            drift,
            incidents,
            receipt_chain_ok,
        })
    }

    fn node_ids(&self) -> Vec<Uuid> {
        self.fleet.node_ids()
    }

    fn newest_seen(&self) -> Option<DateTime<Utc>> {
        self.fleet.newest_seen()
    }

    async fn record_system_event(
        &self,
        kind: &str,
        node_id: Option<Uuid>,
        body: serde_json::Value,
        refs: Vec<Uuid>,
    ) -> Result<EventEnvelope, StoreError> {
        let _gate = self.event_gate.lock().await;
        self.append_event(EventEnvelope {
            id: Uuid::now_v7(),
            kind: kind.to_string(),
            ts: Utc::now(),
            node_id,
            author: "command-center".to_string(),
            body,
            refs,
            hash: String::new(),
        })
        .await
    }

    fn silences(&self) -> Vec<Silence> {
        self.event_state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .silences()
    }

    fn attention_log(&self) -> std::collections::HashMap<Uuid, (DateTime<Utc>, serde_json::Value)> {
        self.event_state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .attention()
            .clone()
    }

    fn recent_events(&self, query: &EventQuery) -> Vec<EventEnvelope> {
        self.event_state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .query_memory(query)
    }

    fn summary(&self, node_id: Uuid) -> Option<NodeSummary> {
        let mut s = self.fleet.summary(node_id)?;
        s.receipt_chain_ok = self
            .command_state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .chain_ok(&node_id);
        s.last_scan = self.latest_scan(node_id).map(|r| r.last_scan());
        Some(s)
    }

    fn scans_durable_len(&self) -> u64 {
        self.scans_durable
            .load(std::sync::atomic::Ordering::Acquire)
    }

    fn latest_scan(&self, node_id: Uuid) -> Option<Arc<ScanReport>> {
        self.scan_state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .latest(&node_id)
    }

    async fn query_events(&self, query: EventQuery) -> Result<Vec<EventEnvelope>, StoreError> {
        if let Some(hit) = self
            .event_state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .query(&query)
        {
            return Ok(hit);
        }
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || events_from_log(&dir, &query))
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?
            .map_err(|e| StoreError::Unavailable(format!("reading the event log: {e}")))
    }
}

/// The `data` of a `command` SSE event.
fn command_event(c: &SignedCommand, status: &str) -> String {
    let c = &c.command;
    serde_json::json!({"command_id": c.command_id, "node_id": c.node_id, "action": c.action, "seq": c.seq, "status": status}).to_string()
}

/// Answers an event query from `events.jsonl` (older events than memory holds).
fn events_from_log(dir: &std::path::Path, q: &EventQuery) -> std::io::Result<Vec<EventEnvelope>> {
    let limit = q.limit.max(1);
    let mut kept: std::collections::VecDeque<EventEnvelope> = std::collections::VecDeque::new();
    for path in logdir::files(dir, LogName::Events)? {
        replay::for_each_line(&path, |_, _, line| {
            let Some(head) = record::head(line) else {
                return;
            };
            if q.kinds
                .as_ref()
                .is_some_and(|k| !k.contains(head.kind.as_ref()))
                || q.node_id.is_some_and(|n| head.node_id != Some(n))
            {
                return;
            }
            let Ok(l) = serde_json::from_slice::<Line<EventEnvelope>>(line) else {
                return;
            };
            if !q.matches(&l.record) || !l.record.verify() {
                return;
            }
            if q.newest_first {
                if kept.len() == limit {
                    kept.pop_front();
                }
                kept.push_back(l.record);
            } else if kept.len() < limit {
                kept.push_back(l.record);
            }
        })?;
    }
    let mut v: Vec<EventEnvelope> = kept.into();
    if q.newest_first {
        v.reverse();
    }
    Ok(v)
}
