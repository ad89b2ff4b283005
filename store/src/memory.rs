//! [`Memory`]: the state every store keeps in memory, and the one place a [`Change`] is applied.
//!
//! Both backends feed it the same way: a change is applied only after its line is durable, in
//! log order, by [`Memory::apply`], which also publishes it on the bus. Reads never touch disk
//! or the database.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use uuid::Uuid;
use vaultmesh_proto::command::SignedCommand;
use vaultmesh_proto::{EventEnvelope, IncidentState, NodeDetail, NodeSummary, ScanReport};

use super::change::{Change, kinds};
use super::commands::{CommandState, CommandStatus, CommandView};
use super::events::{EventQuery, EventState, Silence};
use super::record::kind;
use super::registry::{Binding, Registry};
use super::scans::ScanState;
use super::{FleetState, NodeSnapshot, StoreLimits};
use crate::bus::Bus;

/// Fleet, events, registry, commands and scans, as of the last applied change.
#[derive(Debug)]
pub struct Memory {
    pub fleet: FleetState,
    events: Mutex<EventState>,
    registry: Mutex<Registry>,
    commands: Mutex<CommandState>,
    scans: Mutex<ScanState>,
    bus: Arc<Bus>,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Memory {
    pub fn new(limits: StoreLimits, bus: Arc<Bus>) -> Self {
        Memory {
            fleet: FleetState::new(limits),
            events: Mutex::default(),
            registry: Mutex::default(),
            commands: Mutex::default(),
            scans: Mutex::default(),
            bus,
        }
    }

    pub fn events(&self) -> MutexGuard<'_, EventState> {
        locked(&self.events)
    }

    pub fn registry(&self) -> MutexGuard<'_, Registry> {
        locked(&self.registry)
    }

    pub fn commands_state(&self) -> MutexGuard<'_, CommandState> {
        locked(&self.commands)
    }

    pub fn scans(&self) -> MutexGuard<'_, ScanState> {
        locked(&self.scans)
    }

    /// Applies a durable change; with `publish`, also tells the bus (not during start-up
    /// replay, when nobody listens yet). `false` if the change could not apply (a registry
    /// record that makes no sense), which replay reports.
    pub fn apply(&self, change: Change, publish: bool) -> bool {
        match change {
            Change::Heartbeat { hb, received_at } => {
                let node_id = hb.node_id;
                self.fleet.apply_heartbeat(hb, received_at);
                if publish && let Some(summary) = self.fleet.summary(node_id) {
                    self.bus.publish(
                        kind::HEARTBEAT,
                        Some(node_id),
                        summary.heartbeat_event_json(),
                    );
                }
            }
            Change::Event(e) => {
                self.events().apply(&e);
                if publish {
                    self.bus.publish(
                        &e.kind,
                        e.node_id,
                        serde_json::to_string(&e).unwrap_or_default(),
                    );
                }
            }
            Change::Node {
                kind,
                node_id,
                ts,
                record,
            } => return self.registry().apply(&kind, ts, node_id, &record),
            Change::Command(signed) => {
                // Published before the command becomes visible to the node's long-poll, so
                // "issued" always precedes "delivered" on the stream.
                if publish {
                    self.bus.publish(
                        kinds::COMMAND,
                        Some(signed.command.node_id),
                        command_event(&signed, "issued"),
                    );
                }
                self.commands_state().apply_command(&signed);
            }
            Change::Delivered {
                node_id,
                at,
                commands,
            } => {
                let delivered: Vec<SignedCommand> = {
                    let mut st = self.commands_state();
                    st.apply_delivered(&node_id, &commands, at);
                    commands
                        .iter()
                        .filter_map(|id| st.get(id).map(|v| v.signed.clone()))
                        .collect()
                };
                if publish {
                    for c in &delivered {
                        self.bus.publish(
                            kinds::COMMAND,
                            Some(node_id),
                            command_event(c, "delivered"),
                        );
                    }
                }
            }
            Change::Receipt { rec, .. } => {
                self.commands_state().apply_receipt(&rec);
                if publish {
                    let r = &rec.signed.receipt;
                    let data = serde_json::json!({"command_id": r.command_id, "node_id": r.node_id, "status": "completed",
                        "result": r.status, "reason": r.reason, "chain_ok": rec.chain_ok});
                    self.bus
                        .publish(kinds::COMMAND, Some(r.node_id), data.to_string());
                }
            }
            Change::Scan { report, drift, .. } => {
                let (node_id, scan_id, finished_at, counts, findings) = (
                    report.node_id,
                    report.scan_id,
                    report.finished_at,
                    report.counts.clone(),
                    report.findings.len(),
                );
                let drift_count = {
                    let mut st = self.scans();
                    st.apply_with(report, drift);
                    st.drift(&node_id).len()
                };
                if publish {
                    let data = serde_json::json!({
                        "scan_id": scan_id, "node_id": node_id,
                        "finished_at": finished_at, "counts": counts,
                        "findings": findings, "drift": drift_count,
                    });
                    self.bus
                        .publish(kind::SCAN, Some(node_id), data.to_string());
                }
            }
        }
        true
    }

    pub fn summaries(&self) -> Vec<NodeSummary> {
        let mut v = self.fleet.summaries();
        let commands = self.commands_state();
        let scans = self.scans();
        for s in &mut v {
            s.receipt_chain_ok = commands.chain_ok(&s.node_id);
            s.last_scan = scans.latest(&s.node_id).map(|r| r.last_scan());
        }
        drop((commands, scans));
        for s in &mut v {
            s.revoked = self.revoked(s.node_id);
        }
        v
    }

    pub fn summary(&self, node_id: Uuid) -> Option<NodeSummary> {
        let mut s = self.fleet.summary(node_id)?;
        s.receipt_chain_ok = self.commands_state().chain_ok(&node_id);
        s.last_scan = self.latest_scan(node_id).map(|r| r.last_scan());
        s.revoked = self.revoked(node_id);
        Some(s)
    }

    pub fn detail(&self, node_id: Uuid) -> Option<NodeDetail> {
        let mut d = self.fleet.detail(node_id)?;
        {
            let scans = self.scans();
            d.latest_scan = scans.latest(&node_id).map(|r| (*r).clone());
            d.drift = scans.drift(&node_id);
        }
        d.summary.last_scan = d.latest_scan.as_ref().map(ScanReport::last_scan);
        d.summary.receipt_chain_ok = self.commands_state().chain_ok(&node_id);
        d.incidents = self.events().incidents_for(node_id);
        Some(d)
    }

    pub fn snapshot(&self, node_id: Uuid) -> Option<NodeSnapshot> {
        let (latest, last_seen, heartbeats) = self.fleet.latest(node_id)?;
        let (latest_scan, drift) = {
            let st = self.scans();
            (st.latest(&node_id), st.drift(&node_id))
        };
        let incidents = self
            .events()
            .incidents_for(node_id)
            .into_iter()
            .filter(|i| i.state != IncidentState::Resolved)
            .collect();
        let receipt_chain_ok = self.commands_state().chain_ok(&node_id);
        let revoked = self.revoked(node_id);
        Some(NodeSnapshot {
            node_id,
            latest,
            last_seen,
            heartbeats,
            latest_scan,
            drift,
            incidents,
            receipt_chain_ok,
            revoked,
        })
    }

    /// The node's revocation, if its key is refused now (its own, or its key's with another
    /// node), with whether an admin has re-admitted it since.
    pub fn revoked(&self, node_id: Uuid) -> Option<vaultmesh_proto::api::NodeRevoked> {
        let reg = self.registry();
        let b = reg.binding(&node_id)?;
        let rev = b.revoked.as_ref()?;
        Some(vaultmesh_proto::api::NodeRevoked {
            at: rev.at,
            by: rev.by.clone(),
            readmitted: b.readmitted.is_some(),
        })
    }

    pub fn latest_scan(&self, node_id: Uuid) -> Option<Arc<ScanReport>> {
        self.scans().latest(&node_id)
    }

    pub fn binding(&self, node_id: Uuid) -> Option<Binding> {
        self.registry().binding(&node_id)
    }

    pub fn command_list(
        &self,
        node_id: Option<Uuid>,
        status: Option<CommandStatus>,
        limit: usize,
    ) -> Vec<CommandView> {
        self.commands_state().list(node_id, status, limit)
    }

    pub fn command_notify(&self, node_id: Uuid) -> Arc<tokio::sync::Notify> {
        self.commands_state().notify(node_id)
    }

    pub fn silences(&self) -> Vec<Silence> {
        self.events().silences()
    }

    pub fn attention_log(&self) -> HashMap<Uuid, (DateTime<Utc>, serde_json::Value)> {
        self.events().attention().clone()
    }

    pub fn recent_events(&self, query: &EventQuery) -> Vec<EventEnvelope> {
        self.events().query_memory(query)
    }
}

/// The `data` of a `command` SSE event.
fn command_event(c: &SignedCommand, status: &str) -> String {
    let c = &c.command;
    serde_json::json!({"command_id": c.command_id, "node_id": c.node_id, "action": c.action, "seq": c.seq, "status": status}).to_string()
}
