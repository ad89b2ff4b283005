//! Operator events in memory: the most recent envelopes (a bounded window) and the incidents
//! derived from `incident`, `ack` and `resolve` events.
//!
//! Open and acknowledged incidents are always kept; resolved ones only the most recent
//! [`RESOLVED_KEPT`], so memory stays bounded however long the log grows.

use std::collections::{BTreeSet, HashMap, VecDeque};

use chrono::{DateTime, Utc};
use uuid::Uuid;
use vaultmesh_proto::event::{AttentionBody, Body};
use vaultmesh_proto::{EventEnvelope, Incident, IncidentState, NewEvent};

use super::StoreError;

/// Envelopes kept in memory.
pub const WINDOW: usize = 500;
/// Resolved incidents kept in memory (older ones stay in the log).
pub const RESOLVED_KEPT: usize = 1000;

/// A query over events (`GET /api/events`).
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub since: Option<DateTime<Utc>>,
    pub kinds: Option<BTreeSet<String>>,
    pub node_id: Option<Uuid>,
    pub limit: usize,
    /// Newest first (the default) or oldest first.
    pub newest_first: bool,
}

impl EventQuery {
    pub fn matches(&self, e: &EventEnvelope) -> bool {
        self.since.is_none_or(|s| e.ts >= s)
            && self.kinds.as_ref().is_none_or(|k| k.contains(&e.kind))
            && self.node_id.is_none_or(|n| e.node_id == Some(n))
    }
}

/// A silence as derived from its `silence` event (and the `resolve` that may end it).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Silence {
    pub id: Uuid,
    /// Absent: every node.
    pub node_id: Option<Uuid>,
    /// Absent: every rule; ending in `.`: a family of rules.
    pub rule: Option<String>,
    pub until: Option<DateTime<Utc>>,
    pub until_resolved: bool,
    pub by: String,
    pub at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
}

impl Silence {
    /// Whether it is in force at `now`.
    pub fn active(&self, now: DateTime<Utc>) -> bool {
        self.ended_at.is_none() && self.until.is_none_or(|u| now < u)
    }

    /// Whether it covers attention rule `rule` of node `node_id`.
    pub fn covers(&self, node_id: Uuid, rule: &str) -> bool {
        self.node_id.is_none_or(|n| n == node_id)
            && self
                .rule
                .as_deref()
                .is_none_or(|r| r == rule || (r.ends_with('.') && rule.starts_with(r)))
    }
}

/// Silences kept in memory after they end (older ones stay in the log).
pub const ENDED_SILENCES_KEPT: usize = 1000;

#[derive(Debug, Default)]
pub struct EventState {
    recent: VecDeque<EventEnvelope>,
    /// Envelopes pushed out of `recent`: if any, memory is not the whole log.
    evicted: u64,
    incidents: HashMap<Uuid, Incident>,
    resolved: VecDeque<Uuid>,
    silences: HashMap<Uuid, Silence>,
    ended_silences: VecDeque<Uuid>,
    /// Per node, the body of its latest `attention` event (level and reasons).
    attention: HashMap<Uuid, (DateTime<Utc>, AttentionBody)>,
    /// Per node, the labels admins set with `tag` events (the latest value of each key).
    tags: HashMap<Uuid, vaultmesh_proto::labels::Labels>,
    /// Per node, the display name its latest `node_renamed` event set.
    display_names: HashMap<Uuid, String>,
}

impl EventState {
    /// The display name admins gave `node` (`node_renamed` events), if any.
    pub fn display_name(&self, node: &Uuid) -> Option<&str> {
        self.display_names.get(node).map(String::as_str)
    }

    /// A `node_renamed` event sets (or clears) its node's display name; one whose name does
    /// not pass [`vaultmesh_proto::display_name::check`] (a log edited by hand) clears it.
    fn apply_rename(&mut self, e: &EventEnvelope, b: &vaultmesh_proto::event::NodeRenamedBody) {
        let Some(node) = e.node_id else { return };
        let name = b
            .display_name
            .as_deref()
            .and_then(|d| vaultmesh_proto::display_name::check(d).ok().flatten());
        match name {
            Some(d) => self.display_names.insert(node, d),
            None => self.display_names.remove(&node),
        };
    }

    /// The labels admins set on `node` with `tag` events.
    pub fn tags_of(&self, node: &Uuid) -> Option<&vaultmesh_proto::labels::Labels> {
        self.tags.get(node)
    }

    /// A node's `tag` with a `value` whose label and value are a label's
    /// ([`vaultmesh_proto::labels`]) sets that label, over the agent's; other tags (no node, no
    /// value, free text) are notes only. At most [`vaultmesh_proto::labels::MAX`] per node.
    fn apply_tag(&mut self, e: &EventEnvelope) {
        use vaultmesh_proto::labels;
        let (Some(node), Some(key), Some(value)) = (
            e.node_id,
            e.body.get("label").and_then(|v| v.as_str()),
            e.body.get("value").and_then(|v| v.as_str()),
        ) else {
            return;
        };
        if labels::check_key(key).is_err() || labels::check_value(key, value).is_err() {
            return;
        }
        let tags = self.tags.entry(node).or_default();
        if tags.len() < labels::MAX || tags.contains_key(key) {
            tags.insert(key.to_string(), value.to_string());
        }
    }

    /// Checks a new event against the incidents it answers. Returns the node it belongs to
    /// (an ack or resolve inherits its incident's node).
    pub fn check(
        &self,
        new: &NewEvent,
        node_known: impl Fn(Uuid) -> bool,
    ) -> Result<Option<Uuid>, StoreError> {
        if let Some(n) = new.node_id
            && !node_known(n)
        {
            return Err(StoreError::Invalid(format!(
                "node_id {n} is not a node this Command Center knows"
            )));
        }
        if new.kind != "ack" && new.kind != "resolve" {
            return Ok(new.node_id);
        }
        let Some(first) = new.refs.first() else {
            return Err(StoreError::Invalid(format!(
                "{} needs refs[0] to be the incident",
                new.kind
            )));
        };
        if new.kind == "resolve"
            && let Some(silence) = self.silences.get(first)
        {
            if let Some(at) = silence.ended_at {
                return Err(StoreError::Conflict(format!(
                    "silence {first} already ended at {}",
                    at.to_rfc3339()
                )));
            }
            return Ok(silence.node_id);
        }
        let incident = self.incidents.get(first).ok_or_else(|| {
            StoreError::Invalid(format!("refs[0] {first} is not a known incident"))
        })?;
        if let Some(n) = new.node_id
            && incident.node_id != Some(n)
        {
            return Err(StoreError::Invalid(format!(
                "node_id {n} is not the node of incident {first}"
            )));
        }
        match (new.kind.as_str(), incident.state) {
            (_, IncidentState::Resolved) => Err(StoreError::Conflict(format!(
                "incident {first} was already resolved by {} at {}",
                incident.resolved_by.as_deref().unwrap_or("?"),
                incident
                    .resolved_at
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default()
            ))),
            ("ack", IncidentState::Acknowledged) => Err(StoreError::Conflict(format!(
                "incident {first} was already acknowledged by {}",
                incident.acked_by.as_deref().unwrap_or("?")
            ))),
            _ => Ok(incident.node_id),
        }
    }

    /// Applies a stored envelope (live, or during replay).
    pub fn apply(&mut self, e: &EventEnvelope) {
        self.apply_read(e, &Body::read(&e.kind, &e.body));
    }

    /// Applies a stored envelope whose body is read already.
    pub fn apply_read(&mut self, e: &EventEnvelope, body: &Body) {
        match (e.kind.as_str(), body) {
            ("incident", Body::Incident(b)) => {
                self.incidents.insert(
                    e.id,
                    Incident {
                        id: e.id,
                        node_id: e.node_id,
                        title: b.title.clone(),
                        severity: b.severity,
                        state: IncidentState::Open,
                        opened_at: e.ts,
                        opened_by: e.author.clone(),
                        acked_at: None,
                        acked_by: None,
                        resolved_at: None,
                        resolved_by: None,
                    },
                );
            }
            ("silence", _) => {
                // Silences that ran out long ago are history: the log keeps them.
                let horizon = e.ts - chrono::Duration::days(7);
                self.silences
                    .retain(|_, s| s.ended_at.is_some() || s.until.is_none_or(|u| u > horizon));
                if let Body::Silence(b) = body {
                    self.silences.insert(
                        e.id,
                        Silence {
                            id: e.id,
                            node_id: e.node_id,
                            rule: b.rule.clone(),
                            until: b.until,
                            until_resolved: b.until_resolved,
                            by: e.author.clone(),
                            at: e.ts,
                            ended_at: None,
                        },
                    );
                }
            }
            ("tag", _) => self.apply_tag(e),
            (vaultmesh_proto::event::kinds::NODE_RENAMED, Body::Renamed(b)) => {
                self.apply_rename(e, b);
            }
            ("attention", Body::Attention(b)) => {
                if let Some(n) = e.node_id {
                    self.attention.insert(n, (e.ts, b.clone()));
                }
            }
            ("resolve", _)
                if e.refs
                    .first()
                    .is_some_and(|r| self.silences.contains_key(r)) =>
            {
                if let Some(s) = e.refs.first().and_then(|r| self.silences.get_mut(r))
                    && s.ended_at.is_none()
                {
                    s.ended_at = Some(e.ts);
                    self.ended_silences.push_back(s.id);
                    if self.ended_silences.len() > ENDED_SILENCES_KEPT
                        && let Some(old) = self.ended_silences.pop_front()
                    {
                        self.silences.remove(&old);
                    }
                }
            }
            ("ack" | "resolve", _) => {
                if let Some(i) = e.refs.first().and_then(|r| self.incidents.get_mut(r)) {
                    if e.kind == "ack" && i.state == IncidentState::Open {
                        i.state = IncidentState::Acknowledged;
                        i.acked_at = Some(e.ts);
                        i.acked_by = Some(e.author.clone());
                    } else if e.kind == "resolve" && i.state != IncidentState::Resolved {
                        i.state = IncidentState::Resolved;
                        i.resolved_at = Some(e.ts);
                        i.resolved_by = Some(e.author.clone());
                        self.resolved.push_back(i.id);
                        if self.resolved.len() > RESOLVED_KEPT
                            && let Some(old) = self.resolved.pop_front()
                        {
                            self.incidents.remove(&old);
                        }
                    }
                }
            }
            _ => {}
        }
        if self.recent.len() == WINDOW {
            self.recent.pop_front();
            self.evicted += 1;
        }
        self.recent.push_back(e.clone());
    }

    /// What memory holds that matches `q` (possibly fewer than the log would give).
    pub fn query_memory(&self, q: &EventQuery) -> Vec<EventEnvelope> {
        let limit = q.limit.max(1);
        if q.newest_first {
            self.recent
                .iter()
                .rev()
                .filter(|e| q.matches(e))
                .take(limit)
                .cloned()
                .collect()
        } else {
            self.recent
                .iter()
                .filter(|e| q.matches(e))
                .take(limit)
                .cloned()
                .collect()
        }
    }

    /// Answers from memory, or `None` if older events outside the window could match.
    pub fn query(&self, q: &EventQuery) -> Option<Vec<EventEnvelope>> {
        let limit = q.limit.max(1);
        let mut out: Vec<EventEnvelope> = Vec::new();
        if q.newest_first {
            out.extend(
                self.recent
                    .iter()
                    .rev()
                    .filter(|e| q.matches(e))
                    .take(limit)
                    .cloned(),
            );
            // Enough matches, or the window reaches back past `since`, or it is the whole log.
            let covered = out.len() == limit
                || self.evicted == 0
                || q.since
                    .is_some_and(|s| self.recent.front().is_some_and(|f| f.ts < s));
            return covered.then_some(out);
        }
        let covered = self.evicted == 0
            || q.since
                .is_some_and(|s| self.recent.front().is_some_and(|f| f.ts < s));
        covered.then(|| {
            self.recent
                .iter()
                .filter(|e| q.matches(e))
                .take(limit)
                .cloned()
                .collect()
        })
    }

    /// Silences that have not ended (expired ones included; callers check the time).
    pub fn silences(&self) -> Vec<Silence> {
        let mut v: Vec<Silence> = self
            .silences
            .values()
            .filter(|s| s.ended_at.is_none())
            .cloned()
            .collect();
        v.sort_by_key(|s| s.at);
        v
    }

    /// The latest `attention` event of every node: when, and its body.
    pub fn attention(&self) -> &HashMap<Uuid, (DateTime<Utc>, AttentionBody)> {
        &self.attention
    }

    /// The node's incidents: open and acknowledged first, then resolved; newest first in each.
    pub fn incidents_for(&self, node_id: Uuid) -> Vec<Incident> {
        let mut v: Vec<Incident> = self
            .incidents
            .values()
            .filter(|i| i.node_id == Some(node_id))
            .cloned()
            .collect();
        v.sort_by(|a, b| {
            (a.state == IncidentState::Resolved)
                .cmp(&(b.state == IncidentState::Resolved))
                .then(b.opened_at.cmp(&a.opened_at))
        });
        v.truncate(50);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env(kind: &str, body: serde_json::Value, refs: Vec<Uuid>, n: u32) -> EventEnvelope {
        EventEnvelope {
            id: Uuid::now_v7(),
            kind: kind.into(),
            ts: DateTime::from_timestamp(1_700_000_000 + i64::from(n), 0).unwrap(),
            node_id: Some(Uuid::from_u128(1)),
            author: "ops".into(),
            body,
            refs,
            hash: String::new(),
        }
        .sealed()
    }

    fn new(kind: &str, refs: Vec<Uuid>) -> NewEvent {
        NewEvent {
            kind: kind.into(),
            node_id: None,
            author: None,
            body: json!({}),
            refs,
        }
    }

    #[test]
    fn incident_lifecycle() {
        let mut s = EventState::default();
        let inc = env(
            "incident",
            json!({"title": "disk full", "severity": "critical"}),
            vec![],
            0,
        );
        s.apply(&inc);
        assert_eq!(
            s.check(&new("ack", vec![inc.id]), |_| true),
            Ok(Some(Uuid::from_u128(1)))
        );
        assert!(matches!(
            s.check(&new("ack", vec![Uuid::from_u128(9)]), |_| true),
            Err(StoreError::Invalid(_))
        ));
        s.apply(&env("ack", json!({}), vec![inc.id], 1));
        assert!(
            matches!(s.check(&new("ack", vec![inc.id]), |_| true), Err(StoreError::Conflict(m)) if m.contains("already acknowledged by ops"))
        );
        s.apply(&env("resolve", json!({}), vec![inc.id], 2));
        assert!(
            matches!(s.check(&new("resolve", vec![inc.id]), |_| true), Err(StoreError::Conflict(m)) if m.contains("already resolved"))
        );
        let i = &s.incidents_for(Uuid::from_u128(1))[0];
        assert_eq!(
            (i.state, i.acked_by.as_deref(), i.resolved_by.as_deref()),
            (IncidentState::Resolved, Some("ops"), Some("ops"))
        );
        let mut unknown_node = new("note", vec![]);
        unknown_node.node_id = Some(Uuid::from_u128(5));
        assert!(
            matches!(s.check(&unknown_node, |_| false), Err(StoreError::Invalid(m)) if m.contains("not a node"))
        );
    }

    #[test]
    fn memory_answers_only_when_it_holds_the_answer() {
        let mut s = EventState::default();
        for n in 0..(WINDOW as u32 + 10) {
            s.apply(&env("note", json!({"text": n.to_string()}), vec![], n));
        }
        let newest = EventQuery {
            limit: 5,
            newest_first: true,
            ..EventQuery::default()
        };
        let got = s.query(&newest).unwrap();
        assert_eq!(got[0].body["text"], (WINDOW + 9).to_string());
        let oldest = EventQuery {
            limit: 5,
            newest_first: false,
            ..EventQuery::default()
        };
        assert!(
            s.query(&oldest).is_none(),
            "the oldest events were evicted: read the log"
        );
        let all = EventQuery {
            limit: 1000,
            newest_first: true,
            ..EventQuery::default()
        };
        assert!(s.query(&all).is_none());
    }
}
