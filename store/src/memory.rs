//! [`Memory`]: the state every store keeps in memory, and the one place a [`Change`] is applied.
//!
//! Both backends feed it the same way: a change is applied only after its line is durable, in
//! log order, by [`Memory::apply`], which also publishes it on the bus. Reads never touch disk
//! or the database.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use uuid::Uuid;
use vaultmesh_proto::api::NodeRevoked;
use vaultmesh_proto::event::AttentionBody;
use vaultmesh_proto::live::{CommandEvent, CommandSent, ScanEvent};
use vaultmesh_proto::{
    Attention, EventEnvelope, IncidentState, NodeDetail, NodeSummary, ScanReport,
};

use super::change::Change;
use super::commands::{CommandState, CommandStatus, CommandView};
use super::events::{EventQuery, EventState, Silence};
use super::fleet::LatestMeasures;
use super::registry::{Binding, Registry};
use super::scans::ScanState;
use super::{FleetState, NodeSnapshot, StoreLimits};
use crate::bus::{Bus, Event, Stored};
use crate::history::{Rollup, Tiers};

/// Fleet, events, registry, commands and scans, as of the last applied change.
#[derive(Debug)]
pub struct Memory {
    pub fleet: FleetState,
    events: Mutex<EventState>,
    registry: Mutex<Registry>,
    commands: Mutex<CommandState>,
    scans: Mutex<ScanState>,
    /// Each node's current attention (the attention engine's; not logged here).
    attention: Mutex<HashMap<Uuid, Attention>>,
    /// Each node's raw samples and open history buckets.
    history: Mutex<Rollup>,
    /// Where closed history buckets go.
    tiers: Arc<dyn Tiers>,
    bus: Arc<Bus>,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Memory {
    pub fn new(limits: StoreLimits, bus: Arc<Bus>, tiers: Arc<dyn Tiers>) -> Self {
        Memory {
            fleet: FleetState::new(limits),
            events: Mutex::default(),
            registry: Mutex::default(),
            commands: Mutex::default(),
            scans: Mutex::default(),
            attention: Mutex::default(),
            history: Mutex::default(),
            tiers,
            bus,
        }
    }

    /// The rollup of every node's history (raw samples and open buckets).
    pub fn history(&self) -> MutexGuard<'_, Rollup> {
        locked(&self.history)
    }

    /// Where closed history buckets are stored.
    pub fn tiers(&self) -> &Arc<dyn Tiers> {
        &self.tiers
    }

    /// One node's history over `range` (see [`crate::Store::history`]).
    pub async fn node_history(
        &self,
        node_id: Uuid,
        range: vaultmesh_proto::history::Range,
        metrics: &[String],
        now: DateTime<Utc>,
    ) -> Result<Option<vaultmesh_proto::history::NodeHistory>, crate::history::HistoryError> {
        use vaultmesh_proto::history::Tier;
        crate::history::check_metrics(metrics)?;
        let from = now.timestamp() - range.secs();
        let recent = match self.history().node(&node_id) {
            Some(node) => crate::history::recent(node, range, from),
            // Known only from what is stored (none of its heartbeats since the start).
            None if self.fleet.latest(node_id).is_some() => Default::default(),
            None => return Ok(None),
        };
        let tier = range.tier();
        let stored = if tier == Tier::Raw {
            Vec::new()
        } else {
            let width = i64::from(range.resolution_secs());
            let first = from - from.rem_euclid(width);
            self.tiers
                .read(node_id, tier, first, now.timestamp() + 1)
                .await?
        };
        Ok(Some(crate::history::answer(
            node_id, range, now, stored, recent, metrics,
        )))
    }

    /// Adds one heartbeat's measurements to the node's history, storing the buckets it closes.
    pub fn roll_up(
        &self,
        node_id: Uuid,
        received_at: DateTime<Utc>,
        metrics: Option<&vaultmesh_proto::Metrics>,
        statuses: &[vaultmesh_proto::CheckStatus],
    ) {
        let sample = vaultmesh_proto::history::measure(metrics, statuses);
        let closed = self.history().add(node_id, received_at, &sample);
        self.tiers.store(closed);
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
                let statuses: Vec<_> = hb.checks.iter().map(|c| c.status).collect();
                self.roll_up(node_id, received_at, hb.metrics.as_ref(), &statuses);
                self.fleet.apply_heartbeat(hb, received_at);
                if publish && let Some(summary) = self.summary(node_id) {
                    self.bus.publish(Event::Heartbeat(Box::new(summary)));
                }
            }
            Change::Event(e) => {
                let stored = Stored::new(e);
                self.events().apply_read(&stored.envelope, &stored.body);
                if publish {
                    self.bus.publish(Event::Envelope(Box::new(stored)));
                }
            }
            Change::Node {
                kind,
                node_id,
                ts,
                record,
            } => return self.registry().apply(&kind, ts, node_id, &record),
            Change::Token { kind, ts, record } => {
                return self.registry().apply_token(&kind, ts, &record);
            }
            Change::Command(signed) => {
                // Published before the command becomes visible to the node's long-poll, so
                // "issued" always precedes "delivered" on the stream.
                if publish {
                    let sent = CommandSent::of(&signed);
                    self.bus.publish(Event::Command(CommandEvent::Issued(sent)));
                }
                self.commands_state().apply_command(&signed);
            }
            Change::Delivered {
                node_id,
                at,
                commands,
            } => {
                let delivered: Vec<CommandSent> = {
                    let mut st = self.commands_state();
                    st.apply_delivered(&node_id, &commands, at);
                    commands
                        .iter()
                        .filter_map(|id| st.get(id).map(|v| CommandSent::of(&v.signed)))
                        .collect()
                };
                if publish {
                    for c in delivered {
                        self.bus.publish(Event::Command(CommandEvent::Delivered(c)));
                    }
                }
            }
            Change::Receipt { rec, .. } => {
                self.commands_state().apply_receipt(&rec);
                if publish {
                    let r = &rec.signed.receipt;
                    self.bus.publish(Event::Command(CommandEvent::Completed {
                        command_id: r.command_id,
                        node_id: r.node_id,
                        result: r.status,
                        reason: r.reason.clone(),
                        chain_ok: rec.chain_ok,
                    }));
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
                let drift = {
                    let mut st = self.scans();
                    st.apply_with(report, drift);
                    st.drift(&node_id).len()
                };
                if publish {
                    self.bus.publish(Event::Scan(ScanEvent {
                        counts,
                        drift,
                        findings,
                        finished_at,
                        node_id,
                        scan_id,
                    }));
                }
            }
        }
        true
    }

    /// One summary per node, sorted by hostname then id.
    pub fn summaries(&self) -> Vec<NodeSummary> {
        let mut v = self.fleet.summaries();
        self.complete(&mut v);
        v
    }

    /// [`Memory::summaries`], each with what the node's latest heartbeat measured.
    pub fn summaries_with_latest(&self) -> Vec<(NodeSummary, LatestMeasures)> {
        let (mut summaries, latest): (Vec<_>, Vec<_>) =
            self.fleet.summaries_with_latest().into_iter().unzip();
        self.complete(&mut summaries);
        summaries.into_iter().zip(latest).collect()
    }

    /// One node's summary: what `GET /api/nodes` shows and a `heartbeat` event carries.
    pub fn summary(&self, node_id: Uuid) -> Option<NodeSummary> {
        let mut s = self.fleet.summary(node_id)?;
        self.complete(std::slice::from_mut(&mut s));
        Some(s)
    }

    pub fn detail(&self, node_id: Uuid) -> Option<NodeDetail> {
        let mut d = self.fleet.detail(node_id)?;
        self.complete(std::slice::from_mut(&mut d.summary));
        {
            let scans = self.scans();
            d.latest_scan = scans.latest(&node_id).map(|r| (*r).clone());
            d.drift = scans.drift(&node_id).to_vec();
        }
        d.incidents = self.events().incidents_for(node_id);
        Some(d)
    }

    /// Completes summaries the fleet state made from heartbeats with what the rest of the
    /// store knows — the receipt chain, the latest scan, a revocation, tags and the display
    /// name — and the node's current attention: the one place a [`NodeSummary`] is put
    /// together, for `GET /api/nodes`, the console and the `heartbeat` event alike. One lock at
    /// a time, none held with another.
    fn complete(&self, v: &mut [NodeSummary]) {
        {
            let commands = self.commands_state();
            for s in v.iter_mut() {
                s.receipt_chain_ok = commands.chain_ok(&s.node_id);
            }
        }
        {
            let scans = self.scans();
            for s in v.iter_mut() {
                s.last_scan = scans.latest(&s.node_id).map(|r| r.last_scan());
            }
        }
        {
            let registry = self.registry();
            for s in v.iter_mut() {
                s.revoked = revocation(&registry, s.node_id);
            }
        }
        {
            let events = self.events();
            for s in v.iter_mut() {
                if let Some(tags) = events.tags_of(&s.node_id) {
                    s.labels = vaultmesh_proto::labels::merged(&s.labels, tags);
                }
                s.display_name = events.display_name(&s.node_id).map(str::to_string);
            }
        }
        let attention = locked(&self.attention);
        for s in v.iter_mut() {
            s.attention = attention.get(&s.node_id).cloned().unwrap_or_default();
        }
    }

    /// Sets a node's current attention, as the attention engine judged it (what summaries
    /// carry; its changes are logged as `attention` events by the engine).
    pub fn set_attention(&self, node_id: Uuid, attention: Attention) {
        locked(&self.attention).insert(node_id, attention);
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
        let forecasts = self
            .history()
            .node(&node_id)
            .map(|r| r.forecasts())
            .unwrap_or_default();
        Some(NodeSnapshot {
            forecasts,
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
    pub fn revoked(&self, node_id: Uuid) -> Option<NodeRevoked> {
        revocation(&self.registry(), node_id)
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

    pub fn attention_log(&self) -> HashMap<Uuid, (DateTime<Utc>, AttentionBody)> {
        self.events().attention().clone()
    }

    pub fn recent_events(&self, query: &EventQuery) -> Vec<EventEnvelope> {
        self.events().query_memory(query)
    }
}

fn revocation(registry: &Registry, node_id: Uuid) -> Option<NodeRevoked> {
    let b = registry.binding(&node_id)?;
    let rev = b.revoked.as_ref()?;
    Some(NodeRevoked {
        at: rev.at,
        by: rev.by.clone(),
        readmitted: b.readmitted.is_some(),
        decommissioned: rev.decommissioned,
    })
}
