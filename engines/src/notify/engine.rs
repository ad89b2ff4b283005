//! From bus events to queued messages: what is worth telling, to whom, and how often.
//!
//! - **Alerts** come from the bus: `attention` events (a node's level changed), `incident`
//!   events (opened; a ledger tamper alarm is one) and the `resolve` that closes one, and
//!   `command` events whose receipt broke the node's chain.
//! - **Routes** pick alerts by kind, profile, rule and level; quiet hours drop what is below
//!   their level.
//! - **Grouping**: a route's alerts within `group_window` of the first go out as one message.
//! - **Repeats**: a node still CRIT `repeat_interval` after the route last told about it is
//!   told again. Silences and acknowledgements lower the level, so they stop repeats.
//! - **Flapping**: a node whose level changed more than `flap_changes` times in `flap_window`
//!   is reported once as flapping; its changes are held until it has been stable for
//!   `flap_window`, then its settled level is sent.
//!
//! Only the instance that leads (see `Store::leads`) notifies.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use vaultmesh_proto::event::{AttentionBody, Body, IncidentBody, incident_level, kinds};
use vaultmesh_proto::labels::Labels;
use vaultmesh_proto::live::CommandEvent;
use vaultmesh_proto::{AttentionLevel, EventEnvelope, Reason};

use super::config::{AlertKind, NotifyConfig, Route};
use super::queue::{Queue, Record, Restored};
use super::{Alert, Message};
use crate::attention::AttentionEngine;
use vaultmesh_store::bus::{BusEvent, Event};
use vaultmesh_store::{EventQuery, Store};

/// The engine.
#[derive(Debug)]
pub struct Engine {
    config: NotifyConfig,
    queue: Arc<Queue>,
    store: Arc<dyn Store>,
    attention: Arc<AttentionEngine>,
    state: Mutex<State>,
    metrics: Option<Arc<dyn crate::Observer>>,
}

/// A route's open group: when its window closes, and the alerts with their `grouped` ids.
type Group = (DateTime<Utc>, Vec<(Uuid, Alert)>);

/// An incident seen opened: its node, title, level and the routes that took it.
/// Who an alert is about: how its title names it ([`NodeSummary::labelled`]: "Frankfurt edge 1
/// (vault-node-01)"), and its hostname, display name and profile.
///
/// [`NodeSummary::labelled`]: vaultmesh_proto::NodeSummary::labelled
#[derive(Debug, Clone)]
struct About {
    label: String,
    hostname: String,
    display_name: Option<String>,
    profile: Option<String>,
}

impl About {
    /// Not a node of the store: `name` stands for it.
    fn named(name: String) -> About {
        About {
            label: name.clone(),
            hostname: name,
            display_name: None,
            profile: None,
        }
    }
}

#[derive(Debug, Clone)]
struct OpenIncident {
    node: Option<Uuid>,
    title: String,
    level: AttentionLevel,
    routes: Vec<String>,
}

#[derive(Debug, Default)]
struct State {
    groups: HashMap<String, Group>,
    /// Per (route, node): when the route last told about a non-OK attention of the node.
    told: HashMap<(String, Uuid), DateTime<Utc>>,
    /// Each node's attention level as last seen by the engine (to reconcile after a lag).
    levels: HashMap<Uuid, AttentionLevel>,
    /// Per node: recent level changes.
    changes: HashMap<Uuid, VecDeque<DateTime<Utc>>>,
    /// Nodes held as flapping: their last change and the worst level they reached.
    flapping: HashMap<Uuid, (DateTime<Utc>, AttentionLevel)>,
    incidents: HashMap<Uuid, OpenIncident>,
    /// `told` has been rebuilt from current attention (once, on first leading).
    seeded: bool,
}

/// Which routes an alert may go to.
#[derive(Debug, Clone, Copy)]
enum Routes<'a> {
    All,
    Only(&'a str),
    Among(&'a [String]),
}

impl Routes<'_> {
    fn admits(&self, name: &str) -> bool {
        match self {
            Routes::All => true,
            Routes::Only(o) => *o == name,
            Routes::Among(list) => list.iter().any(|l| l == name),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Engine {
    /// An engine over `queue`, resuming the groups it left open.
    pub fn new(
        config: NotifyConfig,
        queue: Arc<Queue>,
        restored: Restored,
        store: Arc<dyn Store>,
        attention: Arc<AttentionEngine>,
        metrics: Option<Arc<dyn crate::Observer>>,
    ) -> Engine {
        let mut state = State::default();
        let now = Utc::now();
        for (id, route, alert) in restored.grouped {
            let window = config
                .route(&route)
                .map_or(Duration::ZERO, |r| r.group_window);
            state
                .groups
                .entry(route)
                .or_insert_with(|| {
                    (
                        now + chrono::TimeDelta::from_std(window).unwrap_or_default(),
                        Vec::new(),
                    )
                })
                .1
                .push((id, alert));
        }
        Engine {
            config,
            queue,
            store,
            attention,
            state: Mutex::new(state),
            metrics,
        }
    }

    /// Runs until `cancel` on `rx` (subscribed before anything else starts publishing):
    /// alerts from the bus; every second, groups flushed, repeats and flapping checked.
    pub async fn run(
        self: Arc<Self>,
        mut rx: broadcast::Receiver<Arc<BusEvent>>,
        cancel: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                ev = rx.recv() => match ev {
                    Ok(ev) => {
                        if self.store.leads() {
                            self.on_event(&ev, Utc::now());
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "The notification engine fell behind the event bus; reconciling with current attention.");
                        if self.store.leads() {
                            self.reconcile(Utc::now());
                        }
                    }
                    Err(_) => return,
                },
                _ = tick.tick() => self.tick(Utc::now(), self.store.leads()),
            }
        }
    }

    fn link(&self, node: Option<Uuid>) -> String {
        let base = self.config.console_url.trim_end_matches('/');
        match node {
            Some(n) => format!("{base}/console?node={n}"),
            None => format!("{base}/console"),
        }
    }

    /// Who an alert is about: a node of the store, or what stands in for one.
    fn host(&self, node: Option<Uuid>) -> About {
        match node.and_then(|n| self.store.summary(n)) {
            Some(s) => About {
                label: s.labelled(),
                hostname: s.hostname,
                display_name: s.display_name,
                profile: Some(s.os_profile),
            },
            None => About::named(node.map_or_else(|| "the fleet".to_string(), |n| n.to_string())),
        }
    }

    /// Turns one bus event into alerts and routes them.
    pub fn on_event(&self, ev: &BusEvent, now: DateTime<Utc>) {
        match &ev.event {
            Event::Envelope(s) if s.envelope.kind == kinds::NODE_DECOMMISSIONED => {
                if let Some(node) = s.envelope.node_id {
                    self.forget(node);
                }
            }
            Event::Envelope(s) => match &s.body {
                // A decommissioned node's attention (it falls to OK, no reasons) is no news.
                Body::Attention(_) if s.envelope.node_id.is_some_and(|n| self.retired(n)) => {}
                Body::Attention(body) => {
                    let alert = self.attention_alert(s.envelope.node_id, body, now);
                    self.on_attention(alert, now);
                }
                Body::Incident(body) => self.on_incident(&s.envelope, body, now),
                Body::Resolve { text } => self.on_resolve(&s.envelope, text.as_deref(), now),
                _ => {}
            },
            Event::Command(CommandEvent::Completed {
                command_id,
                node_id,
                chain_ok: false,
                ..
            }) => {
                let alert = self.chain_break(*command_id, *node_id, now);
                self.route(alert, now, Routes::All);
            }
            _ => {}
        }
    }

    /// The labels of `node` (none for a fleet-wide alert), for routes' `match_labels`.
    fn labels(&self, node: Option<Uuid>) -> Labels {
        node.and_then(|n| self.store.summary(n))
            .map(|s| s.labels)
            .unwrap_or_default()
    }

    /// Whether `node` is decommissioned: out of notifications until it enrolls again.
    fn retired(&self, node: Uuid) -> bool {
        self.store
            .summary(node)
            .and_then(|s| s.revoked)
            .is_some_and(|r| r.decommissioned)
    }

    /// Closes what the engine keeps about a decommissioned node: no repeat, no recovery, no
    /// flapping report follows. (Alerts already grouped before the decommission still go out.)
    fn forget(&self, node: Uuid) {
        let mut st = lock(&self.state);
        st.told.retain(|(_, n), _| *n != node);
        st.levels.remove(&node);
        st.changes.remove(&node);
        st.flapping.remove(&node);
    }

    fn attention_alert(
        &self,
        node_id: Option<Uuid>,
        body: &AttentionBody,
        now: DateTime<Utc>,
    ) -> Alert {
        let who = match node_id {
            Some(_) => self.host(node_id),
            // The Command Center's own attention (its storage).
            None => About::named("the Command Center".to_string()),
        };
        Alert {
            kind: AlertKind::Attention,
            node_id,
            title: change_title(&who.label, body.level, body.previous),
            hostname: Some(who.hostname),
            display_name: who.display_name,
            profile: who.profile,
            level: body.level,
            previous: Some(body.previous),
            reasons: body.reasons.clone(),
            since: body.since,
            at: now,
            link: self.link(node_id),
        }
    }

    /// A level change: counted for flapping, then routed (or held, or replaced by the one
    /// flapping alert).
    fn on_attention(&self, alert: Alert, now: DateTime<Utc>) {
        let Some(node) = alert.node_id else {
            // The Command Center's own: changes seldom, never flaps per heartbeat.
            self.route(alert, now, Routes::All);
            return;
        };
        lock(&self.state).levels.insert(node, alert.level);
        match self.flapping(node, &alert, now) {
            Flap::Steady => {
                self.route(alert, now, Routes::All);
            }
            Flap::Held => {}
            Flap::Started(flap) => {
                self.route(flap, now, Routes::All);
            }
        }
    }

    fn on_incident(&self, e: &EventEnvelope, body: &IncidentBody, now: DateTime<Utc>) {
        let title = body.title.clone();
        let level = incident_level(body.severity);
        let who = self.host(e.node_id);
        let alert = Alert {
            kind: AlertKind::Incident,
            node_id: e.node_id,
            title: format!("Incident opened on {}: {title}", who.label),
            hostname: Some(who.hostname),
            display_name: who.display_name,
            profile: who.profile,
            level,
            previous: None,
            reasons: text_reason(body.text.as_deref()),
            since: Some(e.ts),
            at: now,
            link: self.link(e.node_id),
        };
        let routes = self.route(alert, now, Routes::All);
        lock(&self.state).incidents.insert(
            e.id,
            OpenIncident {
                node: e.node_id,
                title,
                level,
                routes,
            },
        );
    }

    /// A `resolve` of an incident goes to the routes that took its opening (all that take
    /// incidents, if this process did not see it open). A `resolve` ending a silence is not
    /// an alert.
    fn on_resolve(&self, e: &EventEnvelope, text: Option<&str>, now: DateTime<Utc>) {
        let Some(incident) = e.refs.iter().find_map(|r| {
            let seen = lock(&self.state).incidents.remove(r);
            seen.or_else(|| self.incident_from_store(*r))
        }) else {
            return;
        };
        let who = self.host(incident.node);
        let alert = Alert {
            kind: AlertKind::Incident,
            node_id: incident.node,
            title: format!("Incident resolved on {}: {}", who.label, incident.title),
            hostname: Some(who.hostname),
            display_name: who.display_name,
            profile: who.profile,
            level: AttentionLevel::Ok,
            previous: Some(incident.level),
            reasons: text_reason(text),
            since: Some(e.ts),
            at: now,
            link: self.link(incident.node),
        };
        let routes = if incident.routes.is_empty() {
            Routes::All
        } else {
            Routes::Among(&incident.routes)
        };
        self.route(alert, now, routes);
    }

    /// An incident opened before this process started (or before it led), from the events
    /// memory holds.
    fn incident_from_store(&self, id: Uuid) -> Option<OpenIncident> {
        let query = EventQuery {
            kinds: Some(["incident".to_string()].into()),
            limit: 1000,
            newest_first: true,
            ..EventQuery::default()
        };
        let e = self
            .store
            .recent_events(&query)
            .into_iter()
            .find(|e| e.id == id)?;
        let Body::Incident(body) = Body::read(&e.kind, &e.body) else {
            return None;
        };
        Some(OpenIncident {
            node: e.node_id,
            title: body.title,
            level: incident_level(body.severity),
            routes: Vec::new(),
        })
    }

    /// A receipt for `command_id` broke `node_id`'s receipt chain.
    fn chain_break(&self, command_id: Uuid, node_id: Uuid, now: DateTime<Utc>) -> Alert {
        let who = self.host(Some(node_id));
        Alert {
            kind: AlertKind::ChainBreak,
            node_id: Some(node_id),
            title: format!(
                "{}: a command receipt broke the node's receipt chain",
                who.label
            ),
            hostname: Some(who.hostname),
            display_name: who.display_name,
            profile: who.profile,
            level: AttentionLevel::Crit,
            previous: None,
            reasons: vec![Reason {
                rule: "receipt_chain".into(),
                level: AttentionLevel::Crit,
                label: "Receipt chain broken".into(),
                message: format!(
                    "the receipt for command {command_id} does not follow the node's previous receipt"
                ),
                suppressed_by: None,
            }],
            since: Some(now),
            at: now,
            link: self.link(Some(node_id)),
        }
    }

    fn flapping(&self, node: Uuid, alert: &Alert, now: DateTime<Utc>) -> Flap {
        let window = chrono::TimeDelta::from_std(self.config.flap_window).unwrap_or_default();
        let worst = alert.level.max(alert.previous.unwrap_or_default());
        let mut st = lock(&self.state);
        let changes = st.changes.entry(node).or_default();
        changes.push_back(now);
        while changes.front().is_some_and(|t| *t < now - window) {
            changes.pop_front();
        }
        let n = changes.len();
        if let Some((last, seen)) = st.flapping.get_mut(&node) {
            *last = now;
            *seen = (*seen).max(worst);
            return Flap::Held;
        }
        if n <= self.config.flap_changes {
            return Flap::Steady;
        }
        st.flapping.insert(node, (now, worst));
        let host = alert.name();
        Flap::Started(Alert {
            kind: AlertKind::Flapping,
            title: format!(
                "{host} is flapping: {n} level changes in {}; holding its changes until it settles",
                vaultmesh_process::duration::span(window.num_seconds())
            ),
            ..alert.clone()
        })
    }

    /// Puts `alert` in the group of every route that takes it (among `which`); returns
    /// their names. The alert is on disk (`grouped`) before this returns.
    fn route(&self, alert: Alert, now: DateTime<Utc>, which: Routes<'_>) -> Vec<String> {
        let labels = self.labels(alert.node_id);
        let mut st = lock(&self.state);
        let mut records = Vec::new();
        let mut taken = Vec::new();
        for r in self.config.routes.iter().filter(|r| which.admits(&r.name)) {
            let told_before = alert
                .node_id
                .is_some_and(|n| st.told.contains_key(&(r.name.clone(), n)));
            if !takes(r, &alert, &labels, told_before, now) {
                if let Some(m) = &self.metrics {
                    m.notification_suppressed(&r.name);
                }
                continue;
            }
            if let Some(node) = alert.node_id
                && matches!(
                    alert.kind,
                    AlertKind::Attention | AlertKind::Repeat | AlertKind::Flapping
                )
            {
                note_told(&mut st.told, &r.name, node, alert.level, now);
            }
            let id = Uuid::now_v7();
            records.push(Record::Grouped {
                id,
                route: r.name.clone(),
                alert: alert.clone(),
            });
            let window = chrono::TimeDelta::from_std(r.group_window).unwrap_or_default();
            st.groups
                .entry(r.name.clone())
                .or_insert_with(|| (now + window, Vec::new()))
                .1
                .push((id, alert.clone()));
            taken.push(r.name.clone());
        }
        if !records.is_empty()
            && let Err(e) = self.queue.write_all(&records)
        {
            tracing::error!(error = %e, "Cannot record an alert in the notification queue; it is kept in memory only.");
        }
        taken
    }

    /// Flushes due groups (whoever leads: they were taken while this instance led); when
    /// leading, also rebuilds what routes were told (once), sends repeats and releases
    /// settled flapping nodes.
    pub fn tick(&self, now: DateTime<Utc>, leads: bool) {
        if leads {
            self.seed(now);
            self.settle_flapping(now);
            self.repeats(now);
        }
        let due: Vec<(String, Vec<(Uuid, Alert)>)> = {
            let mut st = lock(&self.state);
            let names: Vec<String> = st
                .groups
                .iter()
                .filter(|(_, (closes, _))| *closes <= now)
                .map(|(k, _)| k.clone())
                .collect();
            names
                .into_iter()
                .filter_map(|k| st.groups.remove(&k).map(|(_, v)| (k, v)))
                .collect()
        };
        for (route, alerts) in due {
            let Some(r) = self.config.route(&route) else {
                continue;
            };
            let (ids, alerts): (Vec<Uuid>, Vec<Alert>) = alerts.into_iter().unzip();
            let message = Message {
                id: Uuid::now_v7(),
                route: route.clone(),
                alerts,
                created_at: now,
                test: false,
            };
            self.queue.push(&r.notifier, message, ids);
        }
    }

    /// After a start (or on becoming leader): every node not OK counts as told to the routes
    /// that would take it, so its recovery and repeats go there.
    fn seed(&self, now: DateTime<Utc>) {
        if lock(&self.state).seeded {
            return;
        }
        let mut told = Vec::new();
        let mut levels = Vec::new();
        for node in self.store.node_ids() {
            let level = self.attention.get(node).level;
            levels.push((node, level));
            if level == AttentionLevel::Ok {
                continue;
            }
            let alert = self.current(node, AlertKind::Attention, now, |h, l| {
                change_title(h, l, AttentionLevel::Ok)
            });
            let labels = self.labels(Some(node));
            for r in &self.config.routes {
                if takes(r, &alert, &labels, false, now) {
                    told.push((r.name.clone(), node));
                }
            }
        }
        let mut st = lock(&self.state);
        for key in told {
            st.told.entry(key).or_insert(now);
        }
        for (node, level) in levels {
            st.levels.entry(node).or_insert(level);
        }
        st.seeded = true;
    }

    /// After missed bus events: every node whose level differs from what the engine last saw
    /// gets an alert for its current level.
    fn reconcile(&self, now: DateTime<Utc>) {
        for node in self.store.node_ids() {
            let level = self.attention.get(node).level;
            let was = lock(&self.state).levels.get(&node).copied();
            if was.is_some_and(|w| w == level) || (was.is_none() && level == AttentionLevel::Ok) {
                continue;
            }
            if self.retired(node) {
                self.forget(node);
                continue;
            }
            let previous = was.unwrap_or_default();
            let mut alert = self.current(node, AlertKind::Attention, now, |h, l| {
                change_title(h, l, previous)
            });
            alert.previous = Some(previous);
            self.on_attention(alert, now);
        }
    }

    fn repeats(&self, now: DateTime<Utc>) {
        let mut due = Vec::new();
        {
            let mut st = lock(&self.state);
            let flapping: Vec<Uuid> = st.flapping.keys().copied().collect();
            for r in &self.config.routes {
                let Some(every) = r.repeat_interval else {
                    continue;
                };
                let every = chrono::TimeDelta::from_std(every).unwrap_or_default();
                for ((route, node), told) in st.told.iter_mut() {
                    if route == &r.name && now - *told >= every && !flapping.contains(node) {
                        // Checked again only after another interval, sent or not.
                        *told = now;
                        due.push((route.clone(), *node));
                    }
                }
            }
        }
        for (route, node) in due {
            if self.attention.get(node).level != AttentionLevel::Crit {
                continue;
            }
            let alert = self.current(node, AlertKind::Repeat, now, |host, _| {
                format!("{host} is still CRIT")
            });
            self.route(alert, now, Routes::Only(&route));
        }
    }

    /// An alert of `kind` about `node`'s current attention, titled by `title(host, level)`.
    fn current(
        &self,
        node: Uuid,
        kind: AlertKind,
        now: DateTime<Utc>,
        title: impl FnOnce(&str, AttentionLevel) -> String,
    ) -> Alert {
        let a = self.attention.get(node);
        let who = self.host(Some(node));
        Alert {
            kind,
            node_id: Some(node),
            title: title(&who.label, a.level),
            hostname: Some(who.hostname),
            display_name: who.display_name,
            profile: who.profile,
            level: a.level,
            previous: (kind == AlertKind::Repeat).then_some(a.level),
            reasons: a.reasons,
            since: a.since,
            at: now,
            link: self.link(Some(node)),
        }
    }

    fn settle_flapping(&self, now: DateTime<Utc>) {
        let window = chrono::TimeDelta::from_std(self.config.flap_window).unwrap_or_default();
        let settled: Vec<(Uuid, AttentionLevel)> = {
            let mut st = lock(&self.state);
            let done: Vec<(Uuid, AttentionLevel)> = st
                .flapping
                .iter()
                .filter(|(_, (last, _))| now - *last >= window)
                .map(|(n, (_, worst))| (*n, *worst))
                .collect();
            for (n, _) in &done {
                st.flapping.remove(n);
                st.changes.remove(n);
            }
            done
        };
        for (node, worst) in settled {
            let mut alert = self.current(node, AlertKind::Attention, now, |host, level| {
                format!("{host} stopped flapping; it is {}", upper(level))
            });
            // Judged against the worst it reached, so a node settling OK is still told.
            alert.previous = Some(worst);
            self.route(alert, now, Routes::All);
        }
    }
}

/// What flap damping decided about a level change.
enum Flap {
    Steady,
    Held,
    Started(Alert),
}

fn change_title(host: &str, level: AttentionLevel, previous: AttentionLevel) -> String {
    if level == AttentionLevel::Ok {
        format!("{host} is OK again (was {})", upper(previous))
    } else {
        format!("{host} is {} (was {})", upper(level), upper(previous))
    }
}

/// Whether route `r` takes `alert` now. `told_before`: the route has told about a non-OK
/// attention of this node, so its recovery goes to the route whatever the rules say.
fn takes(r: &Route, alert: &Alert, labels: &Labels, told_before: bool, now: DateTime<Utc>) -> bool {
    if !r.kinds.is_empty() && !r.kinds.contains(&alert.kind) {
        return false;
    }
    if !r
        .match_labels
        .iter()
        .all(|(k, v)| labels.get(k).is_some_and(|have| have == v))
    {
        return false;
    }
    if !r.profiles.is_empty()
        && !alert
            .profile
            .as_ref()
            .is_some_and(|p| r.profiles.contains(p))
    {
        return false;
    }
    let worst = alert.level.max(alert.previous.unwrap_or_default());
    let recovery = alert.level == AttentionLevel::Ok;
    if recovery && alert.kind == AlertKind::Attention && !told_before {
        return false;
    }
    if worst < r.min_level {
        return false;
    }
    if !recovery
        && !r.rules.is_empty()
        && !alert.reasons.iter().any(|reason| {
            r.rules.iter().any(|rule| {
                reason.rule == *rule
                    || (rule.ends_with('.') && reason.rule.starts_with(rule.as_str()))
            })
        })
    {
        return false;
    }
    if let Some(q) = &r.quiet_hours
        && q.contains(now)
        && worst < q.min_level
    {
        return false;
    }
    true
}

fn note_told(
    told: &mut HashMap<(String, Uuid), DateTime<Utc>>,
    route: &str,
    node: Uuid,
    level: AttentionLevel,
    at: DateTime<Utc>,
) {
    let key = (route.to_string(), node);
    if level == AttentionLevel::Ok {
        told.remove(&key);
    } else {
        told.insert(key, at);
    }
}

fn upper(l: AttentionLevel) -> String {
    l.as_str().to_uppercase()
}

fn text_reason(text: Option<&str>) -> Vec<Reason> {
    text.map(|t| {
        vec![Reason {
            rule: "incident".into(),
            level: AttentionLevel::Attn,
            label: String::new(),
            message: t.to_string(),
            suppressed_by: None,
        }]
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::config::QuietHours;
    use chrono::TimeZone;

    fn route(toml: &str) -> Route {
        toml::from_str(&format!("name = \"r\"\nnotifier = \"n\"\n{toml}"))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn alert(level: AttentionLevel, previous: AttentionLevel, rule: &str) -> Alert {
        Alert {
            kind: AlertKind::Attention,
            node_id: Some(Uuid::from_u128(1)),
            hostname: Some("n1".into()),
            display_name: None,
            profile: Some("ArchVault".into()),
            level,
            previous: Some(previous),
            title: String::new(),
            reasons: vec![Reason {
                rule: rule.into(),
                level,
                label: String::new(),
                message: String::new(),
                suppressed_by: None,
            }],
            since: None,
            at: Utc::now(),
            link: String::new(),
        }
    }

    fn noon() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 29, 12, 0, 0)
            .single()
            .unwrap_or_default()
    }

    #[test]
    fn a_route_with_match_labels_takes_only_nodes_with_all_of_them() {
        use AttentionLevel::{Crit, Ok};
        let r = route("match_labels = { site = \"fra1\", role = \"db\" }");
        let labels = |pairs: &[(&str, &str)]| -> Labels {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let a = alert(Crit, Ok, "tunnel");
        let both = labels(&[("site", "fra1"), ("role", "db"), ("rack", "2")]);
        assert!(takes(&r, &a, &both, false, noon()));
        let other_site = labels(&[("site", "ams3"), ("role", "db")]);
        assert!(!takes(&r, &a, &other_site, false, noon()));
        assert!(!takes(&r, &a, &labels(&[("site", "fra1")]), false, noon()));
        assert!(!takes(&r, &a, &Labels::new(), false, noon()));
        assert!(takes(&route(""), &a, &Labels::new(), false, noon()));
    }

    #[test]
    fn routes_filter_by_level_profile_rule_and_kind() {
        use AttentionLevel::{Attn, Crit, Ok};
        let crit_only = route("min_level = \"crit\"");
        assert!(!takes(
            &crit_only,
            &alert(Attn, Ok, "tunnel"),
            &Labels::new(),
            false,
            noon()
        ));
        assert!(takes(
            &crit_only,
            &alert(Crit, Ok, "tunnel"),
            &Labels::new(),
            false,
            noon()
        ));
        let debian = route("profiles = [\"DebianVault\"]");
        assert!(!takes(
            &debian,
            &alert(Crit, Ok, "tunnel"),
            &Labels::new(),
            false,
            noon()
        ));
        let checks = route("rules = [\"check.\", \"stale\"]");
        assert!(takes(
            &checks,
            &alert(Crit, Ok, "check.disk"),
            &Labels::new(),
            false,
            noon()
        ));
        assert!(takes(
            &checks,
            &alert(Crit, Ok, "stale"),
            &Labels::new(),
            false,
            noon()
        ));
        assert!(!takes(
            &checks,
            &alert(Crit, Ok, "tunnel"),
            &Labels::new(),
            false,
            noon()
        ));
        let incidents = route("kinds = [\"incident\"]");
        assert!(!takes(
            &incidents,
            &alert(Crit, Ok, "tunnel"),
            &Labels::new(),
            false,
            noon()
        ));
    }

    #[test]
    fn a_recovery_goes_only_to_routes_that_were_told() {
        use AttentionLevel::{Crit, Ok};
        let r = route("rules = [\"tunnel\"]");
        let mut recovered = alert(Ok, Crit, "tunnel");
        recovered.reasons.clear();
        assert!(!takes(&r, &recovered, &Labels::new(), false, noon()));
        assert!(takes(&r, &recovered, &Labels::new(), true, noon()));
    }

    #[test]
    fn quiet_hours_let_only_their_level_through() {
        use AttentionLevel::{Attn, Crit, Ok};
        let mut r = route("");
        r.quiet_hours = Some(QuietHours {
            start: "11:00".into(),
            end: "13:00".into(),
            utc_offset: None,
            min_level: Crit,
        });
        assert!(!takes(
            &r,
            &alert(Attn, Ok, "tunnel"),
            &Labels::new(),
            false,
            noon()
        ));
        assert!(takes(
            &r,
            &alert(Crit, Ok, "tunnel"),
            &Labels::new(),
            false,
            noon()
        ));
        let evening = noon() + chrono::TimeDelta::hours(6);
        assert!(takes(
            &r,
            &alert(Attn, Ok, "tunnel"),
            &Labels::new(),
            false,
            evening
        ));
    }
}
