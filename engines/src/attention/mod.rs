//! Attention: which nodes need an admin, and why.
//!
//! - [`rules`]: pure rules from a node's state to reasons (`{rule, level, message}`).
//! - [`damping`]: flap damping of heartbeat-borne reasons.
//! - [`AttentionEngine`] (here): keeps each node's [`Attention`], re-evaluates it on every input
//!   (a bus event names the node) and on a ticker (staleness, silence expiry), applies silences
//!   and incident acknowledgements, and writes every change as an `attention` event — durable
//!   in `events.jsonl`, broadcast on `/events`.
//!
//! **Restarts.** The engine starts from each node's last logged attention (so an unchanged
//! node logs nothing) and, for a grace period, judges staleness as of the last moment the
//! previous process heard from the fleet: a node that was already stale stays so, one that
//! went quiet only because the Command Center was down is not raised unless it stays silent
//! past the grace period.

pub mod damping;
pub mod rules;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use vaultmesh_proto::event::{AttentionBody, Body};
use vaultmesh_proto::{Attention, AttentionLevel, Reason};

use damping::Damper;
use vaultmesh_store::Store;
use vaultmesh_store::bus::{Bus, BusEvent, Event, Stored};
use vaultmesh_store::health::StorageHealth;
use vaultmesh_store::policy::LivePolicies;

/// What identifies a change worth logging: the level and the set of (rule, level, suppressed).
type Shape = (AttentionLevel, BTreeSet<(String, AttentionLevel, bool)>);

fn shape(a: &Attention) -> Shape {
    (
        a.level,
        a.reasons
            .iter()
            .map(|r| (r.rule.clone(), r.level, r.suppressed_by.is_some()))
            .collect(),
    )
}

/// The body of an `attention` event (docs/EVENT_ENVELOPE.md), as the envelope holds it.
fn event_body(attention: &Attention, previous: AttentionLevel) -> serde_json::Value {
    // Plain data (string keys, finite numbers) always converts.
    serde_json::to_value(AttentionBody::new(attention, previous)).unwrap_or_default()
}

#[derive(Debug, Default)]
struct NodeAttention {
    damper: Damper,
    /// `heartbeats` of the snapshot last observed.
    seen: u64,
    current: Attention,
    /// The shape last written to the log.
    logged: Option<Shape>,
}

/// Engine settings (`serve` flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Args)]
pub struct EngineOptions {
    /// How often every node's attention is re-evaluated (staleness, silence expiry). Stale and
    /// critical thresholds are per profile, in the policy files.
    #[arg(
        id = "attention_tick",
        value_name = "ATTENTION_TICK",
        long = "attention-tick",
        default_value = "5s",
        value_parser = vaultmesh_process::duration::parse_nonzero
    )]
    pub tick: Duration,
    /// After a restart, judge staleness as of the last contact before it for this long, so a
    /// restart neither raises a storm nor hides nodes that were already silent.
    #[arg(long, default_value = "2m", value_parser = vaultmesh_process::duration::parse_nonzero)]
    pub restart_grace: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        vaultmesh_process::cli::defaults()
    }
}

/// A storage outage: when it began, and when it ended (`None` while it lasts).
type Outage = Option<(DateTime<Utc>, Option<DateTime<Utc>>)>;

/// The outage followed one step: `failing` is when the current one began, if any.
fn outage_step(outage: Outage, failing: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Outage {
    match (failing, outage) {
        (Some(since), Some((s, None))) => Some((s.min(since), None)),
        (Some(since), _) => Some((since, None)),
        (None, Some((s, None))) => Some((s, Some(now))),
        (None, kept) => kept,
    }
}

/// The latest time staleness may be judged at because of `outage`: its start, while it lasts
/// and for `grace` after it ends (nodes need an interval to be heard again).
fn outage_clamp(
    outage: Outage,
    now: DateTime<Utc>,
    grace: chrono::Duration,
) -> Option<DateTime<Utc>> {
    let (since, ended) = outage?;
    ended.is_none_or(|e| now < e + grace).then_some(since)
}

/// Keeps every node's attention.
#[derive(Debug)]
pub struct AttentionEngine {
    store: Arc<dyn Store>,
    policies: Arc<LivePolicies>,
    nodes: Mutex<HashMap<Uuid, NodeAttention>>,
    options: EngineOptions,
    started_at: DateTime<Utc>,
    /// The newest contact replayed from the logs (the previous process's last).
    frozen_at: Option<DateTime<Utc>>,
    /// `until_resolved` silences that have suppressed a reason: only those can "resolve".
    engaged: Mutex<std::collections::HashSet<Uuid>>,
    /// Where the Command Center's own reasons come from.
    storage: Arc<StorageHealth>,
    /// The Command Center's own attention (fleet-wide: not any node's).
    fleet: Mutex<Attention>,
    /// The latest time the Command Center's own storage refused writes: `(since, ended)`.
    /// Heartbeats refused then are not the nodes' silence.
    outage: Mutex<Outage>,
    /// Each node's refusals for being over its byte budget.
    budgets: Option<Arc<crate::budget::Budgets>>,
}

impl AttentionEngine {
    /// Restores each node's last logged attention from the store.
    pub fn new(
        store: Arc<dyn Store>,
        policies: Arc<LivePolicies>,
        options: EngineOptions,
    ) -> AttentionEngine {
        let mut nodes = HashMap::new();
        let current = policies.get();
        for (node_id, (ts, body)) in store.attention_log() {
            let snap = store.snapshot(node_id);
            let raise_after = snap.as_ref().map_or(1, |s| {
                current.settings(&s.latest.os_profile).attention.raise_after
            });
            // The heartbeats replayed were judged before the restart: do not count them again.
            let seen = snap.as_ref().map_or(0, |s| s.heartbeats);
            let observed: Vec<Reason> = body
                .reasons
                .iter()
                .filter(|r| rules::is_observed(&r.rule))
                .cloned()
                .collect();
            let attention = Attention {
                since: body.since.or(Some(ts)),
                ..body.attention()
            };
            store.set_attention(node_id, attention.clone());
            nodes.insert(
                node_id,
                NodeAttention {
                    damper: Damper::restored(observed, raise_after),
                    seen,
                    logged: Some(shape(&attention)),
                    current: attention,
                },
            );
        }
        AttentionEngine {
            frozen_at: store.newest_seen(),
            store,
            policies,
            nodes: Mutex::new(nodes),
            options,
            started_at: Utc::now(),
            engaged: Mutex::new(std::collections::HashSet::new()),
            storage: Arc::default(),
            fleet: Mutex::default(),
            outage: Mutex::default(),
            budgets: None,
        }
    }

    /// Judges each node's byte budgets too (`budget.<kind>`).
    pub fn with_budgets(mut self, budgets: Arc<crate::budget::Budgets>) -> AttentionEngine {
        self.budgets = Some(budgets);
        self
    }

    /// Judges the Command Center's own storage too (its write failures and volume).
    pub fn with_storage(mut self, storage: Arc<StorageHealth>) -> AttentionEngine {
        self.storage = storage;
        self
    }

    /// The Command Center's own attention: `cc.storage`, `cc.disk_free`.
    pub fn fleet(&self) -> Attention {
        self.fleet.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Re-evaluates the Command Center's own reasons; a change is logged as an `attention`
    /// event without a node — and, when the log cannot take it (the very case of a full disk),
    /// published on the bus anyway, so live consoles and notifications still hear of it.
    async fn refresh_fleet(&self, bus: &Bus) {
        let now = Utc::now();
        let mut reasons = rules::command_center(&self.storage.state(), now);
        reasons.sort_by(|a, b| b.level.cmp(&a.level).then_with(|| a.rule.cmp(&b.rule)));
        let level = reasons.iter().map(|r| r.level).max().unwrap_or_default();
        let (previous, attention) = {
            let mut fleet = self.fleet.lock().unwrap_or_else(|p| p.into_inner());
            let previous = fleet.level;
            let next = Attention {
                since: if level == previous {
                    fleet.since
                } else {
                    Some(now)
                },
                level,
                reasons,
            };
            if shape(&next) == shape(&fleet) {
                // Same reasons; keep the messages current (free space, how long).
                *fleet = next;
                return;
            }
            *fleet = next.clone();
            (previous, next)
        };
        tracing::warn!(from = %previous, to = %attention.level,
            reasons = ?attention.reasons.iter().map(|r| r.rule.as_str()).collect::<Vec<_>>(),
            "The Command Center's own attention changed.");
        if !self.store.leads() {
            return;
        }
        let body = event_body(&attention, previous);
        if let Err(e) = self
            .store
            .record_system_event("attention", None, body.clone(), Vec::new())
            .await
        {
            tracing::warn!(error = %e, "Cannot log the Command Center's attention change; publishing it live only.");
            let event = vaultmesh_proto::EventEnvelope {
                id: Uuid::now_v7(),
                kind: "attention".into(),
                ts: now,
                node_id: None,
                author: vaultmesh_proto::event::SYSTEM_AUTHOR.into(),
                body,
                refs: Vec::new(),
                hash: String::new(),
            }
            .sealed();
            bus.publish(Event::Envelope(Box::new(Stored::new(event))));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, NodeAttention>> {
        self.nodes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A node's current attention (OK with no reasons if never evaluated).
    pub fn get(&self, node_id: Uuid) -> Attention {
        self.lock()
            .get(&node_id)
            .map(|n| n.current.clone())
            .unwrap_or_default()
    }

    /// How many of `total` nodes are OK, ATTN and CRIT (nodes never judged count as OK).
    pub fn level_counts(&self, total: usize) -> [usize; 3] {
        let nodes = self.lock();
        let (mut attn, mut crit) = (0, 0);
        for n in nodes.values() {
            match n.current.level {
                AttentionLevel::Ok => {}
                AttentionLevel::Attn => attn += 1,
                AttentionLevel::Crit => crit += 1,
            }
        }
        [total.saturating_sub(attn + crit), attn, crit]
    }

    /// The time staleness is judged at: during the grace period after a restart, no later than
    /// the previous process's last contact; while the Command Center's own storage refuses
    /// writes (heartbeats are answered 503 then) and for the same grace after it recovers, no
    /// later than when it began refusing — a full disk is not the fleet going silent.
    fn staleness_now(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let grace = chrono::Duration::from_std(self.options.restart_grace).unwrap_or_default();
        let mut at = match self.frozen_at {
            Some(frozen) if now < self.started_at + grace => now.min(frozen),
            _ => now,
        };
        let failing = self.storage.state().failing.map(|f| f.since);
        let mut outage = self.outage.lock().unwrap_or_else(|p| p.into_inner());
        *outage = outage_step(*outage, failing, now);
        if let Some(frozen) = outage_clamp(*outage, now, grace) {
            at = at.min(frozen);
        }
        at
    }

    /// Re-evaluates one node; logs and broadcasts a change.
    pub async fn refresh(&self, node_id: Uuid) {
        let Some(snap) = self.store.snapshot(node_id) else {
            return;
        };
        self.policies
            .note_reported_profile(node_id, &snap.latest.os_profile);
        let policies = self.policies.get();
        let settings = policies.settings(&snap.latest.os_profile);
        let now = Utc::now();
        let silences = self.store.silences();
        let (change, attention) = {
            let mut nodes = self.lock();
            let n = nodes.entry(node_id).or_default();
            if snap.heartbeats != n.seen {
                n.seen = snap.heartbeats;
                let a = &settings.attention;
                n.damper.observe(
                    rules::observed(&snap, settings),
                    a.raise_after,
                    a.clear_after,
                );
            }
            // A revoked node's last heartbeat and budgets say nothing any more: only the
            // `revoked` state reason applies.
            let mut reasons = if snap.revoked.is_some() {
                Vec::new()
            } else {
                n.damper.raised()
            };
            reasons.extend(rules::state(&snap, settings, self.staleness_now(now)));
            if let Some(b) = &self.budgets
                && snap.revoked.is_none()
            {
                reasons.extend(rules::budget(&b.refusals(node_id, now), |k| b.limit(k)));
            }
            for r in reasons.iter_mut().filter(|r| r.suppressed_by.is_none()) {
                if let Some(s) = silences
                    .iter()
                    .find(|s| s.active(now) && s.covers(node_id, &r.rule))
                {
                    if s.until_resolved {
                        self.engaged
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(s.id);
                    }
                    r.suppressed_by = Some(match s.until {
                        Some(u) if !s.until_resolved => {
                            format!("silenced by {} until {}", s.by, u.to_rfc3339())
                        }
                        _ => format!("silenced by {} until resolved", s.by),
                    });
                }
            }
            rules::order(&mut reasons);
            let level = reasons
                .iter()
                .filter(|r| r.suppressed_by.is_none())
                .map(|r| r.level)
                .max()
                .unwrap_or_default();
            let previous = n.current.level;
            // `since` is when the level last changed; a node OK from the start has none.
            let since = if level != previous {
                Some(now)
            } else {
                n.current.since
            };
            let next = Attention {
                level,
                reasons,
                since,
            };
            if next != n.current {
                // Under the engine's lock, so the store holds the latest of two refreshes.
                self.store.set_attention(node_id, next.clone());
                n.current = next;
            }
            let s = shape(&n.current);
            // A node never logged and plainly OK has nothing to say yet.
            let quiet_start = n.logged.is_none() && s == shape(&Attention::default());
            let change = (n.logged.as_ref() != Some(&s) && !quiet_start).then_some((previous, s));
            (change, n.current.clone())
        };
        let Some((previous, s)) = change else {
            return;
        };
        if attention.level != previous {
            tracing::info!(%node_id, from = %previous, to = %attention.level,
                reasons = ?attention.reasons.iter().map(|r| r.rule.as_str()).collect::<Vec<_>>(),
                "Attention changed.");
        }
        if !self.store.leads() {
            // Another instance (the leader) logs transitions; its event reaches this one's
            // attention log through the store.
            if let Some(n) = self.lock().get_mut(&node_id) {
                n.logged = Some(s);
            }
            return;
        }
        let body = event_body(&attention, previous);
        match self
            .store
            .record_system_event("attention", Some(node_id), body, Vec::new())
            .await
        {
            Ok(_) => {
                if let Some(n) = self.lock().get_mut(&node_id) {
                    n.logged = Some(s);
                }
            }
            Err(e) => {
                tracing::error!(%node_id, error = %e, "Cannot log an attention change; will retry.")
            }
        }
    }

    /// Re-evaluates every node, then ends `until_resolved` silences whose reasons cleared.
    pub async fn refresh_all(&self) {
        for node_id in self.store.node_ids() {
            self.refresh(node_id).await;
        }
        self.end_resolved_silences().await;
    }

    async fn end_resolved_silences(&self) {
        if !self.store.leads() {
            return;
        }
        let now = Utc::now();
        for s in self.store.silences() {
            // Only a silence that has held something back can see it resolve; one set ahead of
            // time (for maintenance) waits for its reasons to appear.
            let engaged = self
                .engaged
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&s.id);
            if !s.until_resolved || !s.active(now) || !engaged {
                continue;
            }
            let still_raised = self.lock().iter().any(|(node_id, n)| {
                n.current
                    .reasons
                    .iter()
                    .any(|r| s.covers(*node_id, &r.rule))
            });
            if still_raised {
                continue;
            }
            let body = serde_json::json!({"text": "the silenced reasons cleared"});
            match self
                .store
                .record_system_event("resolve", s.node_id, body, vec![s.id])
                .await
            {
                Ok(_) => tracing::info!(silence = %s.id, "Silence ended: its reasons cleared."),
                Err(e) => tracing::warn!(silence = %s.id, error = %e, "Cannot end a silence."),
            }
        }
    }

    /// Runs until `cancel`: re-evaluates the node an event names, and everything on the ticker.
    pub async fn run(self: Arc<Self>, bus: Arc<Bus>, cancel: CancellationToken) {
        let (mut rx, _) = bus.subscribe(None);
        let mut storage = self.storage.subscribe();
        self.refresh_fleet(&bus).await;
        self.refresh_all().await;
        let mut ticker = tokio::time::interval(self.options.tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = ticker.tick() => {
                    self.refresh_fleet(&bus).await;
                    self.refresh_all().await;
                }
                changed = storage.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    self.refresh_fleet(&bus).await;
                }
                ev = rx.recv() => match ev {
                    Ok(ev) => self.on_event(&ev).await,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => self.refresh_all().await,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    }

    async fn on_event(&self, ev: &BusEvent) {
        match (&ev.event, ev.node_id()) {
            // Its own judgement.
            (Event::Envelope(s), _) if matches!(s.body, Body::Attention(_)) => {}
            (_, Some(node_id)) => self.refresh(node_id).await,
            // A fleet-wide silence, or its end.
            (Event::Envelope(s), None)
                if matches!(s.envelope.kind.as_str(), "silence" | "resolve") =>
            {
                self.refresh_all().await
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    #[test]
    fn staleness_stands_still_through_a_storage_outage_and_its_grace() {
        let grace = chrono::Duration::seconds(120);
        // Storage fails at 100; nodes are judged as of 100 while it lasts.
        let o = outage_step(None, Some(t(100)), t(105));
        assert_eq!(outage_clamp(o, t(105), grace), Some(t(100)));
        let o = outage_step(o, Some(t(100)), t(900));
        assert_eq!(outage_clamp(o, t(900), grace), Some(t(100)));
        // Recovered at 1000: still as of 100 for the grace, then the clock runs again.
        let o = outage_step(o, None, t(1000));
        assert_eq!(o, Some((t(100), Some(t(1000)))));
        assert_eq!(outage_clamp(o, t(1100), grace), Some(t(100)));
        assert_eq!(outage_clamp(o, t(1121), grace), None);
        // A later outage starts a new one.
        let o = outage_step(o, Some(t(5000)), t(5001));
        assert_eq!(outage_clamp(o, t(5001), grace), Some(t(5000)));
        assert_eq!(outage_clamp(None, t(1), grace), None);
    }
}
